"""Lightning's WandbLogger: checkpoints in ``<project>/<run id>/checkpoints/`` and
the metrics in W&B's run file, ``wandb/offline-run-<time>-<run id>/run-<run id>.wandb``,
read without the wandb package. Written by a real Trainer with the real logger
(offline), the reference being a CSVLogger attached to the same Trainer; a long
run written by ``wandb.log`` itself checks the file's 32 KiB blocks; then damaged
and random files."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from grokspec.scan import wandb_logs
from grokspec.scan.scan import scan

pl = pytest.importorskip("lightning.pytorch")
wandb = pytest.importorskip("wandb")
from lightning_runs import LIGHTNING_WARNINGS, fit  # noqa: E402

pytestmark = [
    *LIGHTNING_WARNINGS,
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
]


def go_offline(patch: pytest.MonkeyPatch, home: Path) -> None:
    """W&B offline and quiet, its settings and cache in `home` (never the user's)."""
    for name in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        patch.setenv(name, str(home))
    patch.setenv("WANDB_MODE", "offline")
    patch.setenv("WANDB_SILENT", "true")


@pytest.fixture(autouse=True)
def offline_wandb(tmp_path_factory, monkeypatch):
    go_offline(monkeypatch, tmp_path_factory.mktemp("wandb-home"))


@pytest.fixture(scope="module")
def lightning_run(tmp_path_factory) -> tuple[Path, Path]:
    """A Trainer logging to W&B (first: it places the checkpoints) and to a CSVLogger."""
    from lightning.pytorch.loggers import CSVLogger, WandbLogger

    root = tmp_path_factory.mktemp("wandb-run")
    with pytest.MonkeyPatch.context() as patch:
        go_offline(patch, tmp_path_factory.mktemp("wandb-home"))
        loggers = [WandbLogger(project="grok", save_dir=str(root / "runs"), offline=True), CSVLogger(str(root / "csv"))]
        fit(loggers)
        wandb.finish()
    return root / "runs", next((root / "csv").rglob("metrics.csv"))


def logged(path: Path, column: str) -> dict[int, float]:
    import csv

    with open(path, newline="") as handle:
        return {int(r["step"]): float(r[column]) for r in csv.DictReader(handle) if r.get(column)}


def scanned(result, metric: str) -> dict[int, float]:
    t = result.table
    rows = t[t["metric"] == metric]
    return dict(zip(rows["step"].astype(int), rows["value"]))


def test_the_wandb_loggers_metrics_join_the_checkpoints_run(lightning_run):
    runs, reference = lightning_run
    (run_file,) = list(runs.rglob("run-*.wandb"))
    assert (runs / "grok" / run_file.parent.name.rsplit("-", 1)[1] / "checkpoints").is_dir()
    result = scan(runs)
    assert result.failed_checkpoints == 0 and not result.warnings
    (run,) = result.report.runs
    assert run.checkpoints == 4 and run.grok_metric == "val_acc"
    for metric in ("val_acc", "train_loss"):
        want = logged(reference, metric)
        got = scanned(result, metric)
        assert want and got.keys() == want.keys(), metric  # Lightning's step, not W&B's _step
        assert all(math.isclose(got[s], want[s], rel_tol=1e-6) for s in want), metric
    assert not any(m.startswith("_") for m in set(result.table["metric"]))


def test_a_long_run_across_many_blocks_reads_back_every_value(tmp_path):
    values = {step: {"val_acc": step / 4096, "loss": 1 / (step + 1), "note": f"{step:04d}" * 8} for step in range(3000)}
    run = wandb.init(project="long", dir=str(tmp_path), mode="offline")
    for step, row in values.items():
        run.log(row, step=step)
    run.finish()
    (path,) = list(tmp_path.rglob("run-*.wandb"))
    assert path.stat().st_size > 4 * 32 * 1024, "the file spans several blocks"
    problems: list[str] = []
    rows = wandb_logs.read_history(path, problems)
    assert problems == []
    got = {r["step"]: (r["val_acc"], r["loss"]) for r in rows if "val_acc" in r}
    assert got == {s: (v["val_acc"], v["loss"]) for s, v in values.items()}
    assert all("note" not in r for r in rows), "text is no number"


def test_a_cut_file_keeps_the_rows_before_the_cut(lightning_run, tmp_path):
    runs, _ = lightning_run
    copy = tmp_path / "runs"
    shutil.copytree(runs, copy, symlinks=True)
    (path,) = list(copy.rglob("run-*.wandb"))
    whole = wandb_logs.read_history(path, [])
    path.write_bytes(path.read_bytes()[: path.stat().st_size * 2 // 3])
    problems: list[str] = []
    cut = wandb_logs.read_history(path, problems)
    assert 0 < len(cut) < len(whole) and cut == whole[: len(cut)]
    assert problems and "the rows before it are kept" in problems[0]
    result = scan(copy)
    assert result.failed_checkpoints == 0
    assert any(".wandb" in w for w in result.warnings)


def test_a_file_that_is_not_a_run_file_is_a_warning(lightning_run, tmp_path):
    runs, _ = lightning_run
    copy = tmp_path / "runs"
    shutil.copytree(runs, copy, symlinks=True)
    (path,) = list(copy.rglob("run-*.wandb"))
    path.write_bytes(b"PK\x03\x04" + b"\x00" * 100)
    result = scan(copy)
    assert result.failed_checkpoints == 0
    assert any("not a W&B run file" in w for w in result.warnings)
    assert scanned(result, "val_acc") == {}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=3000), st.integers(min_value=0, max_value=2))
def test_random_bytes_never_raise(tmp_path, payload, where):
    # After the header, as a damaged tail of pieces, or as a piece's contents.
    body = [payload, b"\x00\x00\x00\x00" + len(payload).to_bytes(2, "little") + b"\x01" + payload, payload[:7]][where]
    path = tmp_path / "run-x.wandb"
    path.write_bytes(b":W&B\xe1\xbe\x00" + body)
    problems: list[str] = []
    rows = wandb_logs.read_history(path, problems)
    assert isinstance(rows, list) and all(isinstance(r["step"], int) for r in rows)


def test_a_run_file_given_with_metrics_applies_to_checkpoints_saved_elsewhere(lightning_run, tmp_path):
    from grokspec.scan.scan import ScanInputError, ScanOptions

    runs, reference = lightning_run
    (run_file,) = list(runs.rglob("run-*.wandb"))
    elsewhere = tmp_path / "ckpts"
    shutil.copytree(next(runs.rglob("checkpoints")), elsewhere)
    result = scan(elsewhere, ScanOptions(metrics_file=run_file))
    assert result.failed_checkpoints == 0
    want = logged(reference, "val_acc")
    got = scanned(result, "val_acc")
    assert got.keys() == want.keys() and all(math.isclose(got[s], want[s], rel_tol=1e-6) for s in want)
    empty = tmp_path / "run-empty.wandb"
    empty.write_bytes(b":W&B\xe1\xbe\x00")
    with pytest.raises(ScanInputError, match="holds no values"):
        scan(elsewhere, ScanOptions(metrics_file=empty))


def test_a_file_of_empty_pieces_ends_at_the_bound(tmp_path, monkeypatch):
    monkeypatch.setattr(wandb_logs, "MAX_PIECES", 1000)
    first = b"\x00" * 4 + b"\x00\x00" + b"\x02"  # a record's first piece, empty
    middle = b"\x00" * 4 + b"\x00\x00" + b"\x03"  # empty middle pieces, forever
    path = tmp_path / "run-x.wandb"
    path.write_bytes(b":W&B\xe1\xbe\x00" + first + middle * 5000)
    problems: list[str] = []
    assert wandb_logs.read_history(path, problems) == []
    assert problems == ["a damaged record (more than 1,000 pieces); the rows before it are kept"]
