"""The hostile corpus (issue 10): one bad file never stops a scan.

Each case of tests/hostile_corpus.py writes one bad thing beside two good
checkpoints; the scan must finish, keep the good ones, and say what it
did with the bad one — never a traceback, a hang (pytest-timeout), a
signal or a silent skip. Most cases run the library in-process; a
representative few run the command line (CliRunner and a subprocess).
Further families: races (files that change between discovery, opening and
computing), the cache, outputs, hostile grokspec run folders, numerics and
the API's argument types; and hypothesis fuzzing of every loader.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import grokspec
from grokspec.cli import main
from grokspec.errors import CheckpointError
from grokspec.scan.cache import checkpoint_key
from grokspec.scan.formats import open_checkpoint
from grokspec.scan.guards import check_npz, check_torch_zip
from grokspec.scan.options import ScanOptions
from grokspec.scan.outputs import OutputError, check_output_dir, write_scan_outputs
from grokspec.scan.scan import ScanResult, scan
from grokspec.scan.shard_index import check_shard_index
from hostile_corpus import BAD, GOOD_STEPS, UNTILED_SAFETENSORS, Case, scan_cases, valid_bytes, weights, write_good

pytestmark = pytest.mark.timeout(60)


def _checked(result: ScanResult) -> str:
    """Asserts what every case needs: the good neighbours scanned, and every
    output encodable; returns the warnings as one text."""
    table = result.table
    weights_rows = table[table["tensor"] != ""]
    for step in GOOD_STEPS:
        got = weights_rows[(weights_rows["step"] == step) & (weights_rows["metric"] == "entropy")]
        assert set(got["tensor"]) >= {"layer.weight", "embed"}, f"the good checkpoint of step {step} was lost"
    table.to_csv(index=False).encode("utf-8")  # every name can be written
    json.dumps(result.report.to_json()).encode("utf-8")
    text = "\n".join(result.warnings)
    text.encode("utf-8")
    assert all("\n" not in w for w in result.warnings), "a warning is one line"
    assert "Traceback" not in text
    return text


def _bad_rows(result: ScanResult) -> pd.DataFrame:
    table = result.table
    return table[(table["tensor"] != "") & (~table["step"].isin(GOOD_STEPS))]


def _assert_case(case: Case, result: ScanResult) -> None:
    text = _checked(result)
    assert "a bug; please report it" not in text, "an unexpected exception: bad input must get its own message"
    skipped = " ".join(f"{s.path} {s.reason}" for s in result.report.skipped) if hasattr(result.report, "skipped") else ""
    if case.expect == "failed":
        assert result.failed_checkpoints == 1, (result.failed_checkpoints, text)
        assert case.names in text, text
    elif case.expect == "warned":
        assert result.failed_checkpoints == 0, text
        assert case.names in text, text
    elif case.expect == "named":
        assert case.names in text, text
    elif case.expect == "ignored":
        assert result.failed_checkpoints == 0 and not len(_bad_rows(result)), text
    elif case.expect == "scanned":
        rows = _bad_rows(result)
        assert len(rows), f"the checkpoint was not scanned: {text}"
        assert set(rows["step"]) == {case.step}, (set(rows["step"]), text)
    else:  # handled: scanned, or named in a warning or in the skipped list
        said = result.failed_checkpoints > 0 or bool(result.warnings) or bool(skipped)
        assert len(_bad_rows(result)) or said, "a checkpoint vanished without a word"


@pytest.mark.parametrize("case", scan_cases(), ids=lambda c: c.id)
def test_hostile_file_beside_good_checkpoints(tmp_path, monkeypatch, case):
    folder = tmp_path / "checkpoints"
    write_good(folder)
    case.build(folder)
    for key, value in case.env.items():
        monkeypatch.setenv(key, value)
    result = scan(folder, ScanOptions(), cache_path=None)
    _assert_case(case, result)


def test_the_corpus_is_large_and_covers_every_family():
    cases = scan_cases()
    assert len({c.id for c in cases}) == len(cases)
    families = {c.family for c in cases}
    expected = {
        "unreadable",
        "metadata-step",
        "pt-content",
        "special-file",
        "names",
        "shard-index",
        "bombs",
        "safetensors-layout",
    }
    assert families >= expected
    assert len(cases) >= 150


@pytest.mark.parametrize("label", sorted(UNTILED_SAFETENSORS))
def test_the_format_s_own_reader_refuses_the_untiled_files_too(tmp_path, label):
    # The reference for "corrupt": what safetensors itself will not load.
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    path = tmp_path / "w.safetensors"
    path.write_bytes(UNTILED_SAFETENSORS[label]())
    with pytest.raises(SafetensorError):
        load_file(str(path))


def test_a_failed_group_is_retried_one_checkpoint_at_a_time(tmp_path, monkeypatch):
    import grokspec.scan.compute as compute

    write_good(tmp_path)
    (tmp_path / f"{BAD}.safetensors").write_bytes(valid_bytes(".safetensors"))
    real, calls = compute.compute_sources, []

    def poisoned(sources, options):
        calls.append(len(sources))
        if any(isinstance(s, tuple) and BAD in s[0] for s in sources):
            raise RuntimeError("the engine failed on this batch")
        return real(sources, options)

    monkeypatch.setattr(compute, "compute_sources", poisoned)
    result = scan(tmp_path, cache_path=None)
    text = _checked(result)
    assert calls == [6, 2, 2, 2], "one batch of three checkpoints, then each alone"
    assert result.failed_checkpoints == 1 and f"{BAD}.safetensors: unexpected RuntimeError" in text, text


# --- the command line on a representative few ------------------------------------------------------


@pytest.mark.parametrize("case_id", ["unreadable.pt-one-byte-q", "fifo.safetensors", "index-dot-dot", "name-non-utf8-folder"])
def test_cli_exit_code_and_warning(tmp_path, case_id):
    case = next(c for c in scan_cases() if c.id == case_id)
    folder = tmp_path / "checkpoints"
    write_good(folder)
    case.build(folder)
    result = CliRunner().invoke(main, ["scan", str(folder), "--quiet", "--no-representation"])
    assert "Traceback" not in result.output
    expected = 1 if case.expect == "failed" else 0
    assert result.exit_code in ((expected,) if case.expect == "failed" else (0, 1)), result.output
    if case.expect == "failed":
        assert case.names in result.output
    table = pd.read_csv(folder / "grokspec-scan" / "spectra.csv")
    assert set(GOOD_STEPS) <= set(table["step"])


def test_cli_subprocess_one_bad_file_is_exit_1_with_the_file_named(tmp_path):
    folder = tmp_path / "checkpoints"
    write_good(folder)
    (folder / f"{BAD}.pt").write_bytes(b"q")
    os.mkfifo(folder / f"{BAD}.npz")
    done = subprocess.run(
        [sys.executable, "-m", "grokspec.cli", "scan", str(folder), "--quiet"], capture_output=True, text=True, timeout=120
    )
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert "Traceback" not in output and f"{BAD}.pt" in output and f"{BAD}.npz" in output
    report = json.loads((folder / "grokspec-scan" / "report.json").read_text())
    assert report["failed_checkpoints"] == 2


def test_an_internal_error_is_reported_as_such(tmp_path, monkeypatch):
    import grokspec.scan.scan as scan_module

    write_good(tmp_path)

    def broken(*args, **kwargs):
        raise KeyError("a bug")

    monkeypatch.setattr(scan_module, "build_report", broken)
    result = CliRunner().invoke(main, ["scan", str(tmp_path), "--quiet", "--no-cache"])
    assert result.exit_code == 3, result.output
    assert "internal error" in result.output and grokspec.__version__ in result.output and "report" in result.output
    assert "Traceback" not in result.output


# --- races: the file changes after it was found ---------------------------------------------------------


def _race(monkeypatch, target: str, change):
    """Runs `change(path)` on the bad checkpoint right after `target` (the
    scan module's discover or open_checkpoint) has seen it."""
    import grokspec.scan.scan as scan_module

    real = getattr(scan_module, target)

    def wrapped(*args, **kwargs):
        value = real(*args, **kwargs)
        path = args[0] if target == "open_checkpoint" else None
        if target == "discover":
            change(Path(args[0]) / next(n for n in os.listdir(args[0]) if n.startswith(BAD)))
        elif path is not None and path.name.startswith(BAD):
            change(path)
        return value

    monkeypatch.setattr(scan_module, target, wrapped)


def _truncate(path: Path) -> None:
    os.truncate(path, path.stat().st_size // 2)


def _to_fifo(path: Path) -> None:
    path.unlink()
    os.mkfifo(path)


@pytest.mark.parametrize("extension", [".pt", ".safetensors", ".npz"])
@pytest.mark.parametrize("when", ["discover", "open_checkpoint"])
@pytest.mark.parametrize("change", [Path.unlink, _truncate, _to_fifo], ids=["deleted", "truncated", "fifo"])
def test_file_changed_between_discovery_opening_and_computing(tmp_path, monkeypatch, extension, when, change):
    folder = tmp_path / "checkpoints"
    write_good(folder)
    (folder / f"{BAD}{extension}").write_bytes(valid_bytes(extension))
    _race(monkeypatch, when, change)
    result = scan(folder, cache_path=None)
    text = _checked(result)
    assert result.failed_checkpoints == 1 and f"{BAD}{extension}" in text, text


_TRUNCATE_WHILE_COMPUTING = textwrap.dedent(
    """
    import os, sys, threading, time
    from pathlib import Path
    import torch
    from safetensors.torch import save_file
    import grokspec.scan.compute as compute
    from grokspec.scan.scan import scan
    folder, name, count = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    tensors = {f"w{i}": torch.randn(1500, 1500) for i in range(count)}  # 6: long enough to be caught mid-read
    save_file(tensors, folder / name) if name.endswith(".safetensors") else torch.save(tensors, folder / name)
    real = compute.compute_sources
    def truncating(sources, options):
        def shrink():  # while the engine works through the file's matrices
            time.sleep(0.02)
            os.truncate(folder / name, 4096)
        threading.Thread(target=shrink).start()
        return real(sources, options)
    compute.compute_sources = truncating
    result = scan(folder, cache_path=None)
    print("failed", result.failed_checkpoints, "rows", len(result.table))
    """
)


@pytest.mark.parametrize("extension", [".safetensors", ".pt"])
def test_file_truncated_while_the_engine_reads_it_is_not_a_signal(tmp_path, extension):
    tensors = 6 if extension == ".safetensors" else 2  # a .pt's bytes are read before computing: any size shows it
    done = subprocess.run(
        [sys.executable, "-c", _TRUNCATE_WHILE_COMPUTING, str(tmp_path), f"{BAD}{extension}", str(tensors)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, f"killed by signal {-done.returncode}" if done.returncode < 0 else done.stderr[-2000:]
    assert "failed" in done.stdout and "Traceback" not in done.stderr


# --- the cache ------------------------------------------------------------------------------------------


def _damage_cache(kind: str, path: Path, folder: Path) -> None:
    if kind == "random-bytes":
        path.write_bytes(np.random.default_rng(1).bytes(8192))
    elif kind == "empty-file":
        path.write_bytes(b"")
    elif kind == "truncated":
        scan(folder, cache_path=path)
        data = path.read_bytes()
        for companion in (path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            companion.unlink(missing_ok=True)
        path.write_bytes(data[: len(data) // 2 + 100])
    elif kind == "wrong-schema":
        with sqlite3.connect(path) as db:
            db.execute("CREATE TABLE results (a INTEGER, b BLOB, c TEXT)")
    elif kind == "results-is-a-view":
        with sqlite3.connect(path) as db:
            db.execute("CREATE VIEW results AS SELECT 1 AS key, 2 AS value")
    elif kind in ("row-not-json", "row-wrong-shape", "row-missing-keys"):
        values = {
            "row-not-json": "{broken",
            "row-wrong-shape": "[1, 2, 3]",
            "row-missing-keys": json.dumps({"rows": [{"tensor": "x"}], "warnings": [], "matrices": 1, "metadata_step": None}),
        }
        with sqlite3.connect(path) as db:
            db.execute("CREATE TABLE results (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            for name in ("step_100.safetensors", "step_200.pt"):
                key = checkpoint_key([folder / name], ScanOptions().fingerprint())
                db.execute("INSERT INTO results VALUES (?, ?)", (key, values[kind]))
    elif kind == "folder":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "wal-garbage":
        scan(folder, cache_path=path)
        path.with_name(path.name + "-wal").write_bytes(np.random.default_rng(2).bytes(5000))


CACHE_DAMAGE = [
    "random-bytes",
    "empty-file",
    "truncated",
    "wrong-schema",
    "results-is-a-view",
    "row-not-json",
    "row-wrong-shape",
    "row-missing-keys",
    "folder",
    "fifo",
    "wal-garbage",
]


@pytest.mark.parametrize("kind", CACHE_DAMAGE)
def test_damaged_cache_never_breaks_a_scan(tmp_path, kind):
    folder = tmp_path / "checkpoints"
    write_good(folder)
    path = tmp_path / "out" / "cache.sqlite"
    path.parent.mkdir()
    _damage_cache(kind, path, folder)
    first = scan(folder, cache_path=path)
    _checked(first)
    second = scan(folder, cache_path=path)  # and every later scan works too
    _checked(second)
    entropy = lambda r: sorted(r.table[r.table["metric"] == "entropy"]["value"])
    assert entropy(first) == entropy(second)
    if kind in ("random-bytes", "wrong-schema", "results-is-a-view", "truncated"):
        assert any("moved it to" in w for w in first.warnings), first.warnings
        assert list(path.parent.glob("cache.sqlite.damaged-*"))
    if kind in ("folder", "fifo"):
        assert any("without a cache" in w for w in first.warnings)


# --- outputs ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "layout",
    [
        "under-a-file",
        "under-proc",
        "out-is-a-file",
        "spectra-is-a-folder",
        "report-is-a-folder",
        "plot-is-a-folder",
        "cache-is-a-folder",
    ],
)
def test_unwritable_out_is_one_line_before_any_work(tmp_path, monkeypatch, layout):
    import grokspec.scan.scan as scan_module

    folder = tmp_path / "checkpoints"
    write_good(folder)
    out = tmp_path / "out"
    if layout == "under-a-file":
        (tmp_path / "file").write_text("x")
        out = tmp_path / "file" / "out"
    elif layout == "under-proc":
        out = Path("/proc/grokspec-out")
    elif layout == "out-is-a-file":
        out.write_text("x")
    else:
        name = {"spectra": "spectra.csv", "report": "report.json", "plot": "trajectories.png", "cache": "cache.sqlite"}[
            layout.split("-")[0]
        ]
        (out / name).mkdir(parents=True)
    monkeypatch.setattr(scan_module, "discover", lambda *a: pytest.fail("work started before --out was checked"))
    result = CliRunner().invoke(main, ["scan", str(folder), "--out", str(out), "--quiet"])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    last = result.output.strip().splitlines()[-1]  # click's own usage error for an --out that is a file
    assert last.lower().startswith("error: ") and ("out" in last or str(out) in last), result.output


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_outputs_respect_the_umask(tmp_path, umask):
    folder = tmp_path / "checkpoints"
    write_good(folder)
    previous = os.umask(umask)
    try:
        result = scan(folder, cache_path=tmp_path / "out" / "cache.sqlite")
        paths = write_scan_outputs(result, tmp_path / "out")
    finally:
        os.umask(previous)
    for path in paths.values():
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask, path.name


def test_an_existing_output_keeps_its_mode(tmp_path):
    folder = tmp_path / "checkpoints"
    write_good(folder)
    out = tmp_path / "out"
    result = scan(folder, cache_path=None)
    write_scan_outputs(result, out)
    (out / "report.json").chmod(0o640)
    write_scan_outputs(result, out)
    assert stat.S_IMODE((out / "report.json").stat().st_mode) == 0o640


def test_output_check_is_a_library_function(tmp_path):
    with pytest.raises(OutputError, match="not a folder"):
        (tmp_path / "f").write_text("x")
        check_output_dir(tmp_path / "f")
    check_output_dir(tmp_path / "fine")
    assert (tmp_path / "fine").is_dir() and not list((tmp_path / "fine").iterdir())


# --- hostile grokspec run folders ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A grokspec run folder written as training writes it, without the
    training: the TINY model's initial weights as checkpoints 0, 50, 100."""
    from configs import TINY
    from grokspec.lab.models import build_model
    from grokspec.lab.rundir import RunDir

    run = RunDir(tmp_path_factory.mktemp("run") / "run")
    run.claim(TINY)
    for step in (0, 50, 100):
        run.save_checkpoint(step, build_model(TINY, TINY.p, [step]).seed_state_dict(0))
    keys = ("train_loss", "train_acc", "test_loss", "test_acc", "param_norm", "repr_entropy")
    run.write_metrics([{"step": s, **{k: 0.5 for k in keys}, "intervention": False} for s in range(0, 101, 20)])
    return run.path


def _edit_config(change):
    def apply(run: Path) -> None:
        config = json.loads((run / "config.json").read_text())
        change(config)
        (run / "config.json").write_text(json.dumps(config))

    return apply


def _write(name: str, data: bytes):
    return lambda run: (run / name).write_bytes(data)


def _append(text: str | bytes):
    def apply(run: Path) -> None:
        with open(run / "metrics.jsonl", "ab") as handle:
            handle.write(text.encode() if isinstance(text, str) else text)

    return apply


def _replace_with_fifo(name: str):
    def apply(run: Path) -> None:
        (run / name).unlink()
        os.mkfifo(run / name)

    return apply


RUN_DAMAGE = {
    "config-is-a-list": _write("config.json", b"[1]"),
    "config-garbage": _write("config.json", b"\xff\xfe{{"),
    "config-fifo": _replace_with_fifo("config.json"),
    "absurd-p": _edit_config(lambda c: c.update(p=10**9)),
    "p-is-a-string": _edit_config(lambda c: c.update(p="abc")),
    "d-model-mismatch": _edit_config(lambda c: c.update(d_model=64)),
    "mlp-hidden-int": _edit_config(lambda c: c.update(model="mlp", mlp_hidden=5)),
    "unknown-activation": _edit_config(lambda c: c.update(activation="evil")),
    "metrics-line-not-object": _append('[1, 2]\n42\n"text"\n'),
    "metrics-not-json": _append("{broken\n"),
    "metrics-non-utf8": _append(b'{"step": 5, "x": "\xff"}\n'),
    "metrics-huge-numbers": _append('{"step": 1e400, "x": 1}\n{"step": 7, "x": 1' + "0" * 400 + "}\n"),
    "metrics-step-string": _append('{"step": "10", "test_acc": 1}\n'),
    "metrics-fifo": _replace_with_fifo("metrics.jsonl"),
    "metrics-folder": lambda run: ((run / "metrics.jsonl").unlink(), (run / "metrics.jsonl").mkdir()),
    "checkpoint-fifo": lambda run: os.mkfifo(run / "checkpoints" / "step_00000075.safetensors"),
    "resume-garbage": _write("checkpoints/resume.pt", b"garbage"),
}


@pytest.mark.parametrize("damage", list(RUN_DAMAGE))
def test_hostile_grokspec_run_folder(tmp_path, trained_run, damage):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    RUN_DAMAGE[damage](run)
    result = scan(tmp_path, cache_path=None)
    text = "\n".join(result.warnings)
    assert "Traceback" not in text
    weights_rows = result.table[(result.table["tensor"] != "") & (result.table["metric"] == "entropy")]
    assert {0, 50, 100} <= set(weights_rows["step"]), f"the run's weights were lost: {text}"
    result.table.to_csv(index=False).encode("utf-8")
    if damage.startswith(("absurd", "p-is", "d-model", "mlp-hidden", "unknown-act")):
        assert "no representation entropy" in text or "representation entropy not computed" in text, text
    if damage.startswith("metrics") and damage not in ("metrics-huge-numbers", "metrics-step-string"):
        assert "metrics.jsonl" in text, text
    if damage == "checkpoint-fifo":
        assert result.failed_checkpoints == 1 and "step_00000075" in text


def test_hostile_huggingface_trainer_state(tmp_path):
    from safetensors.torch import save_file

    for step, damage in ((100, b"\xff not json"), (200, b'{"log_history": 5}'), (300, None)):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        save_file(weights(step), folder / "model.safetensors")
        if damage is None:
            os.mkfifo(folder / "trainer_state.json")
        else:
            (folder / "trainer_state.json").write_bytes(damage)
    result = scan(tmp_path, cache_path=None)
    assert set(result.table[result.table["tensor"] != ""]["step"]) == {100, 200, 300}
    assert any("trainer_state.json" in w for w in result.warnings), result.warnings


# --- numerics (the engine) ----------------------------------------------------------------------------------


def _reference_entropy(matrix: np.ndarray) -> float:
    """float64 LAPACK, scale-free: entropy is invariant to scaling, so the
    reference works on the matrix divided by its largest entry."""
    scaled = matrix / np.max(np.abs(matrix))
    sigma = np.linalg.svd(scaled, compute_uv=False)
    weights_ = sigma**2
    p = weights_[weights_ > 0] / weights_.sum()
    return float(-(p * np.log(p)).sum() / math.log(min(matrix.shape)))


def _scaled(scale: float) -> np.ndarray:
    return np.random.default_rng(3).standard_normal((40, 24)) * scale


@pytest.mark.parametrize(
    "scale",
    [
        1e300,
        1e-300,
        1e-310,  # denormal entries
        1e150,
        1e-150,
        1.0,
    ],
    ids=lambda s: f"{s:g}",
)
def test_entropy_at_extreme_scales_matches_the_reference(scale):
    matrix = _scaled(scale)
    got = grokspec.spectral_entropy(matrix)
    assert got == pytest.approx(_reference_entropy(matrix), abs=1e-6)
    stats = grokspec.spectral_stats(matrix)
    assert math.isfinite(stats.sigma_max) and stats.sigma_max > 0


def test_mixed_scales_within_one_matrix():
    matrix = _scaled(1.0)
    matrix[0] *= 1e200
    assert grokspec.spectral_entropy(matrix) == pytest.approx(_reference_entropy(matrix), abs=1e-6)


def _stack_seconds(count: int) -> float:
    import time

    stack = np.random.default_rng(0).standard_normal((count, 2, 2))
    best = math.inf
    for _ in range(2):
        started = time.perf_counter()
        values = grokspec.spectral_entropy(stack)
        best = min(best, time.perf_counter() - started)
    assert values.shape == (count,) and np.all(np.isfinite(values))
    return best


@pytest.mark.timeout(60)
def test_a_stack_of_many_small_matrices_takes_linear_time():
    small, large = _stack_seconds(8_000), _stack_seconds(32_000)
    # 4x the matrices: linear time is ~4x; quadratic would be ~16x.
    assert large < 8 * small + 0.05, f"{small:.3f} s for 8,000 and {large:.3f} s for 32,000 2x2 matrices"


def test_scan_of_extreme_scale_weights(tmp_path):
    from safetensors.torch import save_file

    write_good(tmp_path)
    big = torch.from_numpy(_scaled(1e300))
    save_file({"huge": big, "tiny": torch.from_numpy(_scaled(1e-300))}, tmp_path / f"{BAD}.safetensors")
    result = scan(tmp_path, cache_path=None)
    _checked(result)
    rows = result.table[(result.table["step"] == 300) & (result.table["metric"] == "entropy")].set_index("tensor")["value"]
    assert rows["huge"] == pytest.approx(_reference_entropy(_scaled(1e300)), abs=1e-6)
    assert rows["tiny"] == pytest.approx(_reference_entropy(_scaled(1e-300)), abs=1e-6)


# --- the API's argument types -----------------------------------------------------------------------------------


def test_threads_out_of_range_is_a_clear_error():
    matrix = _scaled(1.0)
    for threads in (2**64, 0, -1, 10**6):
        with pytest.raises(ValueError, match="threads"):
            grokspec.spectral_entropy(matrix, threads=threads)
    assert grokspec.spectral_entropy(matrix, threads=np.int64(2)) == grokspec.spectral_entropy(matrix)
    with pytest.raises(TypeError):
        grokspec.spectral_entropy(matrix, threads=2.0)


def test_numpy_scalar_powers_are_accepted():
    matrix = _scaled(1.0)
    for power in (np.float32(2), np.float64(2), np.int64(2)):
        assert grokspec.spectral_entropy(matrix, power=power) == grokspec.spectral_entropy(matrix, power=2)
    with pytest.raises(TypeError):
        grokspec.spectral_entropy(matrix, power=np.bool_(True))


def test_a_meta_tensor_is_refused_clearly():
    with pytest.raises(ValueError, match="meta"):
        grokspec.spectral_entropy(torch.empty(5, 4, device="meta"))


@pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta")
def test_sparse_tensors_and_masked_arrays_are_refused_clearly():
    for sparse in (torch.eye(5).to_sparse(), torch.eye(5).to_sparse_csr()):
        with pytest.raises(TypeError, match="to_dense"):
            grokspec.spectral_entropy(sparse)
    masked = np.ma.masked_array(_scaled(1.0), mask=_scaled(1.0) > 0)
    with pytest.raises(TypeError, match="mask"):
        grokspec.spectral_entropy(masked)


def test_scan_options_out_of_range_are_refused_before_work(tmp_path):
    write_good(tmp_path)
    for options in (ScanOptions(threads=2**64), ScanOptions(power=float("nan")), ScanOptions(min_dim=0), ScanOptions(persist=0)):
        with pytest.raises(ValueError):
            scan(tmp_path, options, cache_path=None)
    result = CliRunner().invoke(main, ["scan", str(tmp_path), "--threads", str(2**64)])
    assert result.exit_code == 2 and "threads" in result.output and "Traceback" not in result.output


# --- fuzzing every loader ------------------------------------------------------------------------------------------

_FUZZ = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
_EXTENSIONS = [".pt", ".ckpt", ".bin", ".safetensors", ".npz", ".safetensors.index.json", ".bin.index.json"]


def _open_fully(path: Path) -> None:
    """Opens `path` and reads every tensor it offers: data or CheckpointError, nothing else."""
    try:
        checkpoint = open_checkpoint(path)
        for info in checkpoint.tensors():
            shape = info.shape
            if info.is_float and len(shape) >= 2 and 0 < math.prod(shape) < 10**6:
                rows, cols = shape[0], math.prod(shape[1:])
                checkpoint.sources([(info.name, rows, cols)])
    except CheckpointError:
        return


@_FUZZ
@given(extension=st.sampled_from(_EXTENSIONS), data=st.binary(max_size=2048))
def test_fuzzed_bytes_are_read_or_refused(tmp_path, extension, data):
    path = tmp_path / f"fuzz{extension}"
    path.write_bytes(data)
    _open_fully(path)


def _mutations(extension: str):
    valid = valid_bytes(extension)
    positions = st.integers(0, len(valid) - 1)
    flip = st.tuples(st.just("flip"), positions, st.integers(1, 255))
    cut = st.tuples(st.just("cut"), positions, st.just(0))
    insert = st.tuples(st.just("insert"), positions, st.integers(0, 255))
    return st.lists(st.one_of(flip, cut, insert), min_size=1, max_size=4).map(lambda edits: _apply(valid, edits))


def _apply(data: bytes, edits) -> bytes:
    raw = bytearray(data)
    for kind, where, value in edits:
        where = min(where, max(len(raw) - 1, 0))
        if kind == "flip" and raw:
            raw[where] ^= value
        elif kind == "cut":
            del raw[where:]
        else:
            raw[where:where] = bytes([value])
    return bytes(raw)


@pytest.mark.parametrize("extension", [".pt", ".safetensors", ".npz"])
@_FUZZ
@given(data=st.data())
def test_fuzzed_valid_files_are_read_or_refused(tmp_path, extension, data):
    path = tmp_path / f"fuzz{extension}"
    path.write_bytes(data.draw(_mutations(extension)))
    _open_fully(path)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@_FUZZ
@given(weight_map=_json, shard=st.text(max_size=20))
def test_fuzzed_shard_indexes_are_read_or_refused(tmp_path, weight_map, shard):
    (tmp_path / "model-0001.safetensors").write_bytes(valid_bytes(".safetensors"))
    index = tmp_path / "m.safetensors.index.json"
    for content in ({"weight_map": weight_map}, {"weight_map": {"w": shard}}, weight_map):
        index.write_text(json.dumps(content))
        try:
            shards = check_shard_index(index).shards
        except CheckpointError:
            continue
        assert all(tmp_path in s.parents or s.parent == tmp_path for s in shards)


@_FUZZ
@given(data=st.binary(max_size=600))
def test_fuzzed_archives_pass_the_guards_or_are_refused(tmp_path, data):
    for name, guard in (("a.npz", check_npz), ("a.pt", check_torch_zip)):
        path = tmp_path / name
        path.write_bytes(b"PK\x03\x04" + data if data[:1] == b"\x00" else data)
        with contextlib.suppress(CheckpointError):  # refused is fine; any other exception fails the test
            guard(path)


@_FUZZ
@given(lines=st.lists(st.one_of(_json.map(json.dumps), st.binary(max_size=40).map(lambda b: b.decode("latin-1"))), max_size=8))
def test_fuzzed_metrics_lines_are_read_or_reported(tmp_path, lines):
    from grokspec.lab.rundir import RunDir

    (tmp_path / "metrics.jsonl").write_text("\n".join(lines), encoding="utf-8", errors="surrogateescape")
    reading = RunDir(tmp_path).read_metrics_checked(("test_acc",))
    assert all(isinstance(r, dict) and isinstance(r["step"], int) for r in reading.records)
    physical = [line for line in (tmp_path / "metrics.jsonl").read_bytes().split(b"\n") if line.strip()]
    assert len(reading.records) + len(reading.problems) == len(physical), "every line is either read or reported"


@_FUZZ
@given(
    config=st.dictionaries(
        st.sampled_from(["p", "task", "d_model", "mlp_hidden", "lr", "seed", "device", "steps", "model"]), _json, max_size=5
    )
)
def test_fuzzed_configs_are_valid_or_one_value_error(config):
    from grokspec.lab.config import TrainConfig

    try:
        TrainConfig.from_dict(config)
    except ValueError as error:
        assert "\n" not in str(error)


@pytest.mark.parametrize("name, guard", [("a.npz", check_npz), ("a.pt", check_torch_zip)])
def test_an_archive_whose_directory_points_before_its_start_is_refused(tmp_path, name, guard):
    """The end record's directory offset raised by 1000: zipfile still finds the
    directory, and gives the first member a negative offset (a seek to it raised
    OSError, found by the fuzzer above)."""
    data = bytearray(valid_bytes(Path(name).suffix))
    # torch writes a zip64 end record (its offset field at +48, 8 bytes); numpy the classic one (+16, 4 bytes)
    end, at, width = (data.rfind(b"PK\x06\x06"), 48, 8) if b"PK\x06\x06" in data else (data.rindex(b"PK\x05\x06"), 16, 4)
    offset = int.from_bytes(data[end + at : end + at + width], "little")
    data[end + at : end + at + width] = (offset + 1000).to_bytes(width, "little")
    (tmp_path / name).write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="starts before the archive"):
        guard(tmp_path / name)


def _sharded_checkpoint(folder: Path, seed: int) -> None:
    """An HF-style sharded checkpoint: two safetensors shards and their index."""
    from safetensors.numpy import save_file

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    shards = {"model-00001-of-00002.safetensors": ["a.weight", "b.weight"], "model-00002-of-00002.safetensors": ["c.weight"]}
    weight_map = {}
    for shard, names in shards.items():
        save_file({name: rng.standard_normal((16, 24)).astype(np.float32) for name in names}, str(folder / shard))
        weight_map.update(dict.fromkeys(names, shard))
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))


@pytest.mark.parametrize("kind", ["link-loop", "folder", "fifo"])
def test_an_unreadable_shard_index_in_a_checkpoint_folder_is_named(tmp_path, kind):
    """Found by fuzzing: a checkpoint-N/ folder whose model.safetensors.index.json
    is a link loop, a folder or a named pipe lost the index without a word (its
    shards became a series of their own, one of them dropped as a duplicate)."""
    for step in (100, 200):
        _sharded_checkpoint(tmp_path / f"checkpoint-{step}", step)
    index = tmp_path / "checkpoint-200" / "model.safetensors.index.json"
    index.unlink()
    if kind == "link-loop":
        os.symlink(index.with_name("loop"), index)
        os.symlink(index, index.with_name("loop"))
    elif kind == "folder":
        index.mkdir()
    else:
        os.mkfifo(index)
    result = scan(tmp_path, ScanOptions(), cache_path=None)
    text = "\n".join(result.warnings)
    assert "checkpoint-200/model.safetensors.index.json" in text, text
    assert result.failed_checkpoints == 1, text
    healthy = result.table[(result.table["step"] == 100) & (result.table["metric"] == "entropy")]
    assert set(healthy["tensor"]) == {"a.weight", "b.weight", "c.weight"}
