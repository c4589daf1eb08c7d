"""The pandas-free scan table (issue #12: no fixed overhead): the same rows,
series and files as pandas would give, and a scan of a single safetensors
file that never imports pandas or matplotlib."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from safetensors.numpy import save_file

from fresh_process import modules_loaded_by_scan
from grokspec.scan.scan import scan
from grokspec.scan.table import COLUMNS, Row, ScanTable, StepSeries
from grokspec.scan.trajectories import REPRESENTATION, accuracy_series, series_table

NAN = float("nan")


def _rows() -> list[Row]:
    return [
        Row("a", "c1", 200, "name", "w", 8, 4, "float32", "entropy", 0.7),
        Row("a", "c0", 100, "name", "w", 8, 4, "float32", "entropy", 0.9),
        Row("a", "c0", 100, "name", "w", 8, 4, "float32", "entropy", 0.1),  # a duplicate step: the first wins
        Row("a", "c0", 100, "name", "", 8, 4, "float32", "repr_entropy", 0.5),
        Row("a", "log", 100, "log", "", None, None, "", "repr_entropy", 0.55),  # the log wins on a shared step
        Row("a", "log", 300, "log", "", None, None, "", "test_acc", 1.0),
        Row("a", "log", 100, "log", "", None, None, "", "test_acc", None),  # missing values are skipped
        Row("a", "log", 200, "log", "", None, None, "", "test_acc", 0.25),
        Row("b", "c0", 5, "mtime", "v", 3, 3, "bfloat16", "entropy", math.inf),
    ]


def test_series_follow_the_tables_rules():
    table = ScanTable(_rows())
    series = series_table(table, "a")
    assert list(series) == [REPRESENTATION, "w"]
    assert series["w"].steps.tolist() == [100, 200] and series["w"].values.tolist() == [0.9, 0.7]
    assert series[REPRESENTATION].values.tolist() == [0.55]
    accuracy = accuracy_series(table, "a", "test_acc")
    assert accuracy is not None and accuracy.steps.tolist() == [200, 300]
    assert accuracy_series(table, "a", "val_acc") is None and series_table(table, "nobody") == {}
    assert table.runs() == ["a", "b"]


def test_step_series_slices_and_lookups():
    s = StepSeries.from_pairs([(30, 3.0), (10, 1.0), (20, 2.0), (10, 9.0)])
    assert s.steps.tolist() == [10, 20, 30] and s.values.tolist() == [1.0, 2.0, 3.0]
    assert s.before(20).steps.tolist() == [10, 20] and s.before(20, inclusive=False).steps.tolist() == [10]
    assert len(s.before(5)) == 0
    got = s.at([20, 25])
    assert got[0] == 2.0 and math.isnan(got[1])


def test_files_read_back_as_the_table_pandas_builds():
    table = ScanTable(_rows())
    reference = pd.DataFrame([r._asdict() for r in table], columns=COLUMNS)
    handle = io.StringIO()
    table.write_csv(handle)
    back = pd.read_csv(io.StringIO(handle.getvalue()), keep_default_na=False, na_values=[""])
    assert list(back.columns) == COLUMNS
    for column in ("run", "checkpoint", "step_source", "metric"):
        assert back[column].tolist() == reference[column].tolist()
    assert back["tensor"].fillna("").tolist() == reference["tensor"].tolist()
    np.testing.assert_array_equal(back["rows"].to_numpy(float), reference["rows"].to_numpy(float))
    np.testing.assert_array_equal(back["value"].to_numpy(float), reference["value"].to_numpy(float))  # exact: repr
    records = json.loads(json.dumps(table.records()))
    assert [r["value"] for r in records] == [r.value if r.value is not None and math.isfinite(r.value) else None for r in table]
    again = ScanTable.from_frame(table.to_frame())
    assert [r.tensor for r in again] == [r.tensor for r in table] and [r.rows for r in again] == [r.rows for r in table]


def test_a_table_read_back_from_csv_gives_the_same_series():
    table = ScanTable(_rows())
    handle = io.StringIO()
    table.write_csv(handle)
    back = pd.read_csv(io.StringIO(handle.getvalue()))
    for run in ("a", "b"):
        expected, got = series_table(table, run), series_table(back, run)
        assert list(expected) == list(got)
        for name in expected:
            assert expected[name].steps.tolist() == got[name].steps.tolist()
            np.testing.assert_array_equal(expected[name].values, got[name].values)
    with pytest.raises(ValueError, match="missing: metric"):
        ScanTable.from_frame(back.drop(columns=["metric"]))


def test_frames_with_empty_cells_read_back_into_rows():
    frame = pd.DataFrame(
        {"run": ["r"], "checkpoint": ["c"], "step": [1], "step_source": ["log"], "tensor": [NAN],
         "rows": [NAN], "cols": [NAN], "dtype": [NAN], "metric": ["test_acc"], "value": [NAN]}
    )  # fmt: skip
    (row,) = ScanTable.from_frame(frame)
    assert row == Row("r", "c", 1, "log", "", None, None, "", "test_acc", None) and not row.has_value


@pytest.fixture
def one_model(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    save_file({"a.weight": rng.standard_normal((16, 8)).astype(np.float32)}, str(tmp_path / "model.safetensors"))
    return tmp_path


def test_scan_table_matches_a_float64_reference(one_model: Path):
    result = scan(one_model, cache_path=None)
    (row,) = [r for r in result.rows if r.metric == "entropy"]
    weights = np.asarray(result.table.query("metric == 'sigma_max'")["value"])
    matrix = np.random.default_rng(0).standard_normal((16, 8)).astype(np.float32).astype(np.float64)
    s = np.linalg.svd(matrix, compute_uv=False)
    p = s**2 / np.sum(s**2)
    assert row.value == pytest.approx(float(-(p * np.log(p)).sum() / np.log(8)), abs=1e-9)
    assert weights[0] == pytest.approx(s[0], rel=1e-9)


def test_a_cached_scan_of_one_model_imports_neither_pandas_nor_matplotlib(one_model: Path):
    loaded = modules_loaded_by_scan(one_model, runs=2)
    assert loaded == "", f"the scan loaded {loaded}"
    assert (one_model / "grokspec-scan" / "spectra.csv").read_text().startswith(",".join(COLUMNS))
