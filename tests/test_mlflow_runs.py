"""Lightning's MLFlowLogger: checkpoints in ``<experiment id>/<run id>/checkpoints/``
and the metrics in MLflow's tracking store — the run's ``metrics/`` folder (the
file store) or a ``mlflow.db`` database (MLflow 3's default). Written by a real
Trainer with the real logger; the reference for every value is MLflow's own
client. Then the hostile variants: damaged lines, NaN, a view posing as the
metrics table, a database that is not one."""

from __future__ import annotations

import math
import shutil
import sqlite3
from pathlib import Path

import pytest

from grokspec.scan import mlflow_logs
from grokspec.scan.scan import scan

pl = pytest.importorskip("lightning.pytorch")
mlflow = pytest.importorskip("mlflow")
from lightning_runs import LIGHTNING_WARNINGS, fit  # noqa: E402

pytestmark = [
    *LIGHTNING_WARNINGS,
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
]


def train(root: Path, tracking_uri: str | None, log_model: bool | str = False) -> tuple[Path, str]:
    """A run logged to `tracking_uri` (None: the file store under root/mlruns);
    the run's checkpoints folder and its run id."""
    from lightning.pytorch.loggers import MLFlowLogger

    if tracking_uri is None:
        logger = MLFlowLogger(experiment_name="grok", save_dir=str(root / "mlruns"))
    else:
        logger = MLFlowLogger(experiment_name="grok", tracking_uri=tracking_uri, log_model=log_model)
    fit(logger, accuracy_key="val/acc", default_root_dir=str(root))  # a key with a slash
    (checkpoints,) = [p for p in root.rglob("checkpoints") if p.is_dir()]
    return checkpoints, logger.run_id


def history(tracking_uri: str, run_id: str, key: str) -> dict[int, float]:
    """MLflow's own client: the reference."""
    client = mlflow.tracking.MlflowClient(tracking_uri=tracking_uri)
    return {m.step: m.value for m in client.get_metric_history(run_id, key)}


@pytest.fixture(scope="module")
def file_store(tmp_path_factory) -> tuple[Path, Path, str]:
    root = tmp_path_factory.mktemp("mlflow-files")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 asks for it; 2.x used it by default
        checkpoints, run_id = train(root, None)
    return root, checkpoints, run_id


@pytest.fixture(scope="module")
def database(tmp_path_factory) -> tuple[Path, Path, str]:
    root = tmp_path_factory.mktemp("mlflow-db")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)  # where MLflow puts a database's artifact store (./mlruns), if it writes one
        checkpoints, run_id = train(root, f"sqlite:///{root / 'mlflow.db'}")
    return root, checkpoints, run_id


def scanned_metric(result, metric: str) -> dict[int, float]:
    t = result.table
    rows = t[t["metric"] == metric]
    return dict(zip(rows["step"].astype(int), rows["value"]))


def assert_same(got: dict[int, float], want: dict[int, float]) -> None:
    assert want, "the logger wrote values"
    assert got.keys() == want.keys()
    assert all(math.isclose(got[s], want[s], rel_tol=1e-9) for s in want)


def test_the_file_stores_metrics_join_the_checkpoints_run(file_store, monkeypatch):
    root, checkpoints, run_id = file_store
    assert (checkpoints.parent / "metrics" / "val" / "acc").is_file()
    result = scan(root / "mlruns")
    assert result.failed_checkpoints == 0 and not result.warnings
    (run,) = result.report.runs
    assert run.run.endswith(f"{run_id}/checkpoints") and run.checkpoints == 4
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    uri = (root / "mlruns").as_uri()
    assert_same(scanned_metric(result, "val/acc"), history(uri, run_id, "val/acc"))
    assert_same(scanned_metric(result, "train_loss"), history(uri, run_id, "train_loss"))
    assert run.grok_metric == "val/acc"


def test_the_databases_metrics_join_the_checkpoints_run_even_from_below(database):
    root, checkpoints, run_id = database
    assert (root / "mlflow.db").is_file() and not (checkpoints.parent / "metrics").exists()
    uri = f"sqlite:///{root / 'mlflow.db'}"
    for scanned in (root, checkpoints.parent.parent):  # the database lies above the second
        result = scan(scanned)
        assert result.failed_checkpoints == 0 and not result.warnings
        assert_same(scanned_metric(result, "val/acc"), history(uri, run_id, "val/acc"))
        assert_same(scanned_metric(result, "train_loss"), history(uri, run_id, "train_loss"))


def test_nan_values_and_other_runs_rows_are_not_taken(database, tmp_path):
    root, _, run_id = database
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    uri = f"sqlite:///{copy / 'mlflow.db'}"
    client = mlflow.tracking.MlflowClient(tracking_uri=uri)
    client.log_metric(run_id, "val/acc", float("nan"), step=9)  # stored as 0 with is_nan set
    other = client.create_run(client.get_run(run_id).info.experiment_id)
    client.log_metric(other.info.run_id, "val/acc", 0.123, step=3)
    got = scanned_metric(scan(copy), "val/acc")
    assert 9 not in got and 0.123 not in got.values()
    assert_same(got, {s: v for s, v in history(uri, run_id, "val/acc").items() if not math.isnan(v)})


def test_damaged_metric_lines_are_skipped_with_a_warning(file_store, tmp_path):
    root, _, _ = file_store
    copy = tmp_path / "mlruns"
    shutil.copytree(root / "mlruns", copy)
    metric = next(copy.rglob("metrics/val/acc"))
    good = metric.read_bytes()
    metric.write_bytes(good + b"not a line\n\xff\xfe garbage\n1 2 3 4 5\n")
    result = scan(copy)
    assert result.failed_checkpoints == 0
    assert any("val/acc: 3 damaged line(s) skipped" in w for w in result.warnings)
    assert len(scanned_metric(result, "val/acc")) == len(good.splitlines())


def sqlite_file(folder: Path, *statements: str) -> Path:
    """A hand-made ``mlflow.db`` in `folder`, built by `statements`."""
    database = folder / "mlflow.db"
    with sqlite3.connect(database) as connection:
        for statement in statements:
            connection.execute(statement)
    return database


def test_a_view_posing_as_the_metrics_table_is_never_queried(tmp_path):
    # A view could run anything (here: a recursive query that never ends).
    database = sqlite_file(
        tmp_path,
        "CREATE VIEW metrics AS WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) "
        "SELECT 'val_acc' AS key, 1.0 AS value, i AS step, 'x' AS run_uuid FROM n",
    )
    problems: list[str] = []
    assert mlflow_logs.sqlite_records(database, "x", problems) == []
    assert problems == ["mlflow.db has no metrics table"]


def test_a_query_that_runs_too_long_is_abandoned(tmp_path, monkeypatch):
    database = sqlite_file(
        tmp_path,
        "CREATE TABLE metrics (key TEXT, value REAL, step INTEGER, run_uuid TEXT)",
        "INSERT INTO metrics WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 19999)"
        " SELECT 'a', i, i, 'x' FROM n",
    )
    monkeypatch.setattr(mlflow_logs, "MAX_QUERY_STEPS", 1)
    problems: list[str] = []
    assert mlflow_logs.sqlite_records(database, "x", problems) == []
    assert problems and "interrupted" in problems[0]


def test_a_database_that_is_not_one_is_a_warning(database, tmp_path):
    root, _, _ = database
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    (copy / "mlflow.db").write_bytes(b"\x00" * 4096)
    result = scan(copy)
    assert result.failed_checkpoints == 0
    assert any("mlflow.db" in w for w in result.warnings)
    assert scanned_metric(result, "val/acc") == {}


def test_the_copies_in_mlflows_artifact_store_get_the_same_metrics(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a database's artifacts go to ./mlruns, as from a user's project folder
    _, run_id = train(tmp_path, f"sqlite:///{tmp_path / 'mlflow.db'}", log_model="all")
    artifacts = next(tmp_path.rglob(f"{run_id}/artifacts"))
    assert any(artifacts.rglob("*.ckpt")), "MLFlowLogger(log_model='all') copied the checkpoints"
    result = scan(tmp_path)
    assert result.failed_checkpoints == 0 and not result.warnings
    want = history(f"sqlite:///{tmp_path / 'mlflow.db'}", run_id, "val/acc")
    runs = {r.run for r in result.report.runs}
    assert len(runs) == 2
    t = result.table
    for run in runs:
        rows = t[(t["run"] == run) & (t["metric"] == "val/acc")]
        assert_same(dict(zip(rows["step"].astype(int), rows["value"])), want)


def test_a_generated_column_is_never_read(tmp_path):
    # Read, this one would build a 10 MB string per row (a gigabyte with a larger count).
    database = sqlite_file(
        tmp_path,
        "CREATE TABLE metrics (key TEXT, step INTEGER, run_uuid TEXT,"
        " value REAL GENERATED ALWAYS AS (length(hex(zeroblob(5000000)))))",
        "INSERT INTO metrics (key, step, run_uuid) VALUES ('val_acc', 1, 'x')",
    )
    problems: list[str] = []
    assert mlflow_logs.sqlite_records(database, "x", problems) == []
    assert problems == ["mlflow.db: its metrics table lacks key, value, step or run_uuid"]
