"""Lightning's default layout: ``lightning_logs/version_N/`` holding
``checkpoints/epoch=E-step=S.ckpt`` and the logger's files — the CSVLogger's
``metrics.csv`` or the TensorBoardLogger's ``events.out.tfevents.*``. The
validation accuracy logged there is the run's test accuracy for the events
(T_grok), as ``trainer_state.json`` is for an HF Trainer's run. Written by a
real Trainer with the real loggers; the event files are also read back by
tensorboard's own EventAccumulator to check the reader, and fuzzed."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from grokspec.scan.scan import scan

pl = pytest.importorskip("lightning.pytorch")
from lightning_runs import LIGHTNING_WARNINGS, fit  # noqa: E402

pytestmark = LIGHTNING_WARNINGS


def train(root: Path, logger_class: str) -> Path:
    from lightning.pytorch import loggers

    fit(getattr(loggers, logger_class)(root))  # ModelCheckpoint's dirpath: version_0/checkpoints
    return root / "lightning_logs"


@pytest.fixture(scope="module")
def lightning_logs(tmp_path_factory) -> Path:
    """The CSVLogger: Lightning's default logger when tensorboard is not installed."""
    return train(tmp_path_factory.mktemp("lit"), "CSVLogger")


@pytest.fixture(scope="module")
def tensorboard_logs(tmp_path_factory) -> Path:
    """The TensorBoardLogger: Lightning's default logger when tensorboard is installed."""
    pytest.importorskip("tensorboard")
    return train(tmp_path_factory.mktemp("tb"), "TensorBoardLogger")


def logged(path: Path, column: str) -> dict[int, float]:
    with open(path, newline="") as handle:
        return {int(r["step"]): float(r[column]) for r in csv.DictReader(handle) if r.get(column)}


def test_the_folder_is_lightnings_default_layout(lightning_logs):
    version = lightning_logs / "version_0"
    assert (version / "metrics.csv").is_file()
    assert sorted(p.name for p in (version / "checkpoints").iterdir())[:1] == ["epoch=0-step=2.ckpt"]
    assert logged(version / "metrics.csv", "val_acc"), "the logger wrote validation accuracies"


def test_the_csv_loggers_metrics_join_the_checkpoints_run(lightning_logs):
    result = scan(lightning_logs)
    run = "version_0/checkpoints"
    assert result.failed_checkpoints == 0 and not result.warnings
    assert [r.run for r in result.report.runs] == [run]
    t = result.table
    for metric in ("val_acc", "train_loss"):
        want = logged(lightning_logs / "version_0" / "metrics.csv", metric)
        rows = t[(t["run"] == run) & (t["metric"] == metric)]
        got = dict(zip(rows["step"].astype(int), rows["value"]))
        assert got.keys() == want.keys() and all(math.isclose(got[s], want[s]) for s in want), metric
    assert set(t[(t["metric"] == "val_acc")]["step_source"]) == {"log"}
    # val_acc is the run's test accuracy: the report's accuracy series is built from it
    (series,) = [r for r in result.report.runs if r.run == run]
    assert series.grok_metric == "val_acc"


def test_a_damaged_metrics_csv_is_a_warning_not_a_failure(lightning_logs, tmp_path):
    import shutil

    copy = tmp_path / "logs"
    shutil.copytree(lightning_logs, copy)
    (copy / "version_0" / "metrics.csv").write_bytes(b"step,val_acc\n\xff\xfe,0.5\n")
    result = scan(copy)
    assert result.failed_checkpoints == 0
    assert any("metrics.csv" in w for w in result.warnings)


def accumulated(version: Path, tag: str) -> dict[int, float]:
    """tensorboard's own reader of the event files."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(version), size_guidance={"scalars": 0})
    events.Reload()
    return {e.step: e.value for e in events.Scalars(tag)}


def test_the_tensorboard_loggers_scalars_join_the_checkpoints_run(tensorboard_logs):
    version = tensorboard_logs / "version_0"
    assert any(p.name.startswith("events.out.tfevents.") for p in version.iterdir())
    result = scan(tensorboard_logs)
    run = "version_0/checkpoints"
    assert result.failed_checkpoints == 0 and not result.warnings
    t = result.table
    for metric in ("val_acc", "train_loss"):
        want = accumulated(version, metric)
        rows = t[(t["run"] == run) & (t["metric"] == metric)]
        got = dict(zip(rows["step"].astype(int), rows["value"]))
        assert want and got.keys() == want.keys(), metric
        assert all(math.isclose(got[s], want[s], rel_tol=1e-7) for s in want), metric
    (series,) = [r for r in result.report.runs if r.run == run]
    assert series.grok_metric == "val_acc"


def test_new_style_scalars_and_step_zero(tmp_path):
    pytest.importorskip("tensorboard")
    from torch.utils.tensorboard import SummaryWriter

    from grokspec.scan.tensorboard import read_scalars

    writer = SummaryWriter(str(tmp_path))
    writer.add_scalar("acc", 0.25, 0)
    writer.add_scalar("acc", 0.5, 3, new_style=True)  # a TensorProto instead of simple_value
    writer.add_histogram("weights", torch.randn(100), 3)  # skipped by its length
    writer.add_text("note", "hello", 3)
    writer.close()
    (path,) = tmp_path.iterdir()
    read = read_scalars(path)
    assert read.problem is None
    assert [(r["step"], r.get("acc")) for r in read.records if "acc" in r] == [(0, 0.25), (3, 0.5)]


def test_damaged_event_files_keep_what_came_before(tmp_path):
    pytest.importorskip("tensorboard")
    from torch.utils.tensorboard import SummaryWriter

    from grokspec.scan.tensorboard import read_scalars

    writer = SummaryWriter(str(tmp_path))
    for step in range(5):
        writer.add_scalar("acc", step / 10, step)
    writer.close()
    (path,) = tmp_path.iterdir()
    whole = path.read_bytes()
    cut = tmp_path / "events.out.tfevents.cut"
    cut.write_bytes(whole[:-7])
    read = read_scalars(cut)
    assert read.problem is not None and "truncated" in read.problem
    assert [r["step"] for r in read.records] == [0, 1, 2, 3]
    huge = tmp_path / "events.out.tfevents.huge"
    huge.write_bytes(whole + (1 << 62).to_bytes(8, "little") + b"\0" * 8)
    read = read_scalars(huge)
    assert "damaged" in (read.problem or "") and len(read.records) == 5


@given(data=st.binary(max_size=400), cut=st.integers(0, 400))
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_fuzzed_event_files_are_read_or_reported(tmp_path, data, cut):
    from grokspec.scan.tensorboard import read_scalars

    path = tmp_path / "events.out.tfevents.fuzz"
    valid = b"".join(
        len(body).to_bytes(8, "little") + b"\0" * 4 + body + b"\0" * 4
        for body in (b"\x10\x05\x2a\x0c\x0a\x0a\x0a\x03acc\x15\x00\x00\x80\x3f", data)
    )
    path.write_bytes(valid[:cut] + data)  # a valid record (acc = 1.0 at step 5), then anything
    read = read_scalars(path)  # never raises
    assert all(isinstance(r["step"], int) and r["step"] >= 0 for r in read.records)
    if cut >= 32:  # the whole first record (12 + 16 + 4 bytes)
        assert read.records[0] == {"acc": 1.0, "step": 5}


def test_an_event_file_given_as_metrics_joins_every_run(tmp_path):
    """--metrics with a TensorBoard file (an HF Trainer's runs/<date>/events.out.tfevents.*)."""
    pytest.importorskip("tensorboard")
    from torch.utils.tensorboard import SummaryWriter

    from grokspec.scan.options import ScanOptions
    from grokspec.scan.scan import ScanInputError

    for step in (10, 20):
        torch.manual_seed(step)
        torch.save({"w": torch.randn(8, 8)}, tmp_path / f"step_{step}.pt")
    writer = SummaryWriter(str(tmp_path / "runs"))
    writer.add_scalar("test_acc", 0.1, 10)
    writer.add_scalar("test_acc", 0.99, 20)
    writer.close()
    (events,) = (tmp_path / "runs").iterdir()
    result = scan(tmp_path, ScanOptions(metrics_file=events), cache_path=None)
    acc = result.table[result.table["metric"] == "test_acc"]
    assert [round(v, 6) for v in acc["value"]] == [0.1, 0.99]
    assert result.report.runs[0].t_grok == 20
    empty = tmp_path / "events.out.tfevents.empty"
    empty.write_bytes(b"")
    with pytest.raises(ScanInputError, match="no scalars"):
        scan(tmp_path, ScanOptions(metrics_file=empty), cache_path=None)


def test_an_event_file_of_endless_tiny_records_is_read_only_so_far(tmp_path, monkeypatch):
    """A hostile file of millions of tiny records would keep the parser busy for minutes."""
    from grokspec.scan import tensorboard

    body = b"\x10\x05\x2a\x0c\x0a\x0a\x0a\x03acc\x15\x00\x00\x80\x3f"
    record = len(body).to_bytes(8, "little") + b"\0" * 4 + body + b"\0" * 4
    path = tmp_path / "events.out.tfevents.many"
    path.write_bytes(record * 50)
    monkeypatch.setattr(tensorboard, "MAX_RECORDS", 20)
    read = tensorboard.read_scalars(path)
    assert len(read.records) == 20 and read.problem == "stopped after 20 records"


def test_a_huge_metrics_csv_is_read_only_so_far(lightning_logs, tmp_path, monkeypatch):
    import shutil

    from grokspec.scan import logs

    copy = tmp_path / "logs"
    shutil.copytree(lightning_logs, copy)
    lines = ["epoch,step,val_acc"] + [f"0,{step},0.5" for step in range(30)]
    (copy / "version_0" / "metrics.csv").write_text("\n".join(lines) + "\n")
    monkeypatch.setattr(logs, "MAX_CSV_ROWS", 10)
    result = scan(copy)
    acc = result.table[result.table["metric"] == "val_acc"]
    assert sorted(acc["step"]) == list(range(10))
    assert any("only its first 10 rows" in w for w in result.warnings)
