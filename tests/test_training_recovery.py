"""Training survives crashes and bad input (issue 10).

Resume picks the newest step with both a checkpoint and a resume state of
that step in every run, so a crash between the two files (or between the
seeds of a multi-seed run) costs the steps since the pair before, never the
whole run; a damaged metrics.jsonl is repaired and reported; every bad
option or config file is one line naming it, exit 2; sizes are checked
before anything is allocated.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from configs import TINY
from grokspec.cli import main
from grokspec.lab.budget import MAX_PARAMETERS, example_count, parameter_count, size_problems
from grokspec.lab.config import TrainConfig
from grokspec.lab.models import build_model
from grokspec.lab.resume import ResumeError
from grokspec.lab.rundir import RunDir
from grokspec.lab.train import train, train_seeds

pytestmark = pytest.mark.timeout(300)

#: Checkpoints at 0, 50, 100; evaluations every 20 steps.
SHORT = dataclasses.replace(TINY, steps=100, batch_size=64)


class Killed(BaseException):
    """Stands for kill -9: nothing after it runs (not even except Exception)."""


def metrics(run: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "wall_seconds"} for r in RunDir(run).read_metrics()]


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> Path:
    """The uninterrupted run every recovered run must reproduce."""
    run = tmp_path_factory.mktemp("straight") / "run"
    train(SHORT, run)
    return run


def _kill_at_resume_write(monkeypatch, step: int, *, after_rotation: bool, run_name: str | None = None) -> None:
    original = RunDir.save_resume_state

    def dying(self, state):
        if state["step"] == step and (run_name is None or self.path.name == run_name):
            if after_rotation and self.resume_path.exists():
                self.resume_path.replace(self.previous_resume_path)
            raise Killed
        return original(self, state)

    monkeypatch.setattr(RunDir, "save_resume_state", dying)


@pytest.mark.parametrize("after_rotation", [False, True], ids=["before-resume-write", "after-rotation"])
def test_crash_between_checkpoint_and_resume_state_resumes_from_the_pair_before(tmp_path, monkeypatch, straight, after_rotation):
    run = tmp_path / "run"
    _kill_at_resume_write(monkeypatch, 100, after_rotation=after_rotation)
    with pytest.raises(Killed):
        train(SHORT, run)
    monkeypatch.undo()
    assert RunDir(run).checkpoint_path(100).exists(), "the crash came after the checkpoint"
    log: list[str] = []
    summary = train(SHORT, run, log=log.append)
    assert any("resuming from step 50" in line for line in log), log
    assert any("step 100" in line and "no matching resume state" in line for line in log), log
    assert summary.steps == 100
    assert metrics(run) == metrics(straight), "the recovered run reproduces the uninterrupted one"
    for name, tensor in RunDir(straight).load_checkpoint(100).items():
        assert torch.equal(RunDir(run).load_checkpoint(100)[name], tensor), name


def test_crash_between_the_seeds_of_a_multi_seed_checkpoint(tmp_path, monkeypatch, straight):
    _kill_at_resume_write(monkeypatch, 100, after_rotation=False, run_name="seed_1")
    with pytest.raises(Killed):
        train_seeds(SHORT, [0, 1], tmp_path / "group")
    monkeypatch.undo()
    assert RunDir(tmp_path / "group" / "seed_0").load_resume_state()["step"] == 100
    assert RunDir(tmp_path / "group" / "seed_1").load_resume_state()["step"] == 50
    log: list[str] = []
    train_seeds(SHORT, [0, 1], tmp_path / "group", log=log.append)
    assert any("resuming from step 50" in line for line in log), log
    grouped = metrics(tmp_path / "group" / "seed_0")
    single = metrics(straight)
    assert [r["step"] for r in grouped] == [r["step"] for r in single]
    for g, s in zip(grouped, single):
        assert g["train_loss"] == pytest.approx(s["train_loss"], rel=1e-4, abs=1e-5)


def test_garbage_resume_state_falls_back_to_the_previous_pair(tmp_path, straight):
    run = tmp_path / "run"
    train(dataclasses.replace(SHORT, steps=60), run)  # checkpoints 0, 50, 60: resume.pt = 60, previous = 50
    RunDir(run).resume_path.write_bytes(b"garbage")
    log: list[str] = []
    train(SHORT, run, log=log.append)
    assert any("resume.pt is damaged" in line for line in log), log
    assert any("resuming from step 50" in line for line in log), log
    assert metrics(run) == metrics(straight)


def test_no_consistent_pair_is_said_and_nothing_is_touched(tmp_path):
    run = tmp_path / "run"
    train(dataclasses.replace(SHORT, steps=50), run)
    rd = RunDir(run)
    rd.resume_path.write_bytes(b"garbage")
    rd.previous_resume_path.unlink()
    files = lambda: {p.name: p.read_bytes() for p in run.rglob("*") if p.is_file() and p.name != "config.json"}
    before = files()
    with pytest.raises(ResumeError, match=r"cannot resume .*newest checkpoint is step 50"):
        train(SHORT, run)
    assert files() == before, "a failed resume leaves the checkpoints and metrics as they were"
    result = CliRunner().invoke(main, ["train", "--out", str(run), *_tiny_options(), "--quiet"])
    assert result.exit_code == 2 and result.output.startswith("error: cannot resume") and "Traceback" not in result.output


def test_a_new_seed_beside_existing_ones_is_refused_not_restarted(tmp_path):
    train_seeds(dataclasses.replace(SHORT, steps=50), [0], tmp_path / "group")
    with pytest.raises(ResumeError, match="seed_1 has no checkpoint"):
        train_seeds(SHORT, [0, 1], tmp_path / "group")


def test_truncated_metrics_are_repaired_and_reported(tmp_path, straight):
    run = tmp_path / "run"
    train(dataclasses.replace(SHORT, steps=50), run)
    text = (run / "metrics.jsonl").read_text()
    cut = text.index("\n", text.index("\n") + 1) + 20  # two whole lines, then part of the third
    (run / "metrics.jsonl").write_text(text[:cut])
    log: list[str] = []
    train(SHORT, run, log=log.append)
    assert any("1 damaged line" in line for line in log), log
    assert any("lacks 1 evaluation(s) (steps 40)" in line for line in log), log
    got = metrics(run)
    want = [r for r in metrics(straight) if r["step"] != 40]
    assert got == want, "everything but the lost evaluation, the rest reproduced"


def test_a_garbage_line_in_the_middle_is_dropped_and_reported(tmp_path, straight):
    run = tmp_path / "run"
    train(dataclasses.replace(SHORT, steps=50), run)
    lines = (run / "metrics.jsonl").read_text().splitlines()
    lines[1] = "\x00\x00 not json"
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    log: list[str] = []
    train(SHORT, run, log=log.append)
    assert any("line 2: not JSON" in line for line in log), log
    # 50 was the short run's last evaluation; 20 is lost for good.
    assert [r["step"] for r in metrics(run)] == [0, 40, 50, 60, 80, 100]


# --- bad input: one line naming the option or file, exit 2 ------------------------------------------------


def _tiny_options() -> list[str]:
    return ["--p", "11", "--d-model", "32", "--n-heads", "2", "--d-ff", "64", "--batch-size", "64", "--steps", "100",
            "--eval-every", "20", "--checkpoint-every", "50", "--probe-size", "60", "--device", "cpu"]  # fmt: skip


def _config_file(tmp_path: Path, content: str) -> Path:
    run = tmp_path / "existing"
    run.mkdir()
    (run / "config.json").write_text(content)
    return run


@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        (["--device", "bogus"], "device"),
        (["--device", "cuda:99"], "cuda"),
        (["--seeds", "abc"], "--seeds"),
        (["--seeds", "5-3"], "--seeds"),
        (["--seeds", "0,0"], "--seeds"),
        (["--seeds", "-1"], "--seeds"),
        (["--mlp-hidden", "x"], "--mlp-hidden"),
        (["--p", "1000003"], "p=1000003"),
        (["--p", "30011"], "p=30011"),
        (["--d-model", "100000"], "parameters"),
        (["--seed", "-1"], "seed"),
        (["--lr", "nan"], "lr"),
        (["--steps", str(10**30)], "steps"),
        (["--task", "div", "--p", str(10**18)], "p="),
    ],
)
def test_bad_options_are_one_line(tmp_path, arguments, named):
    result = CliRunner().invoke(main, ["train", "--out", str(tmp_path / "run"), *_tiny_options(), *arguments, "--quiet"])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and result.output.count("\n") == 1, result.output
    assert result.output.startswith("error: ") and named in result.output, result.output
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.parametrize(
    ("content", "named"),
    [
        ("[1]", "config.json"),
        ("\xff\xfe garbage", "config.json"),
        ('{"format": "grokspec-config/1", "mlp_hidden": 5}', "mlp_hidden"),
        ('{"format": "grokspec-config/1", "p": "abc"}', "p must be"),
        ('{"format": "grokspec-config/1", "d_model": null}', "d_model"),
        ('{"format": "grokspec-config/1", "task": 5}', "task"),
    ],
)
def test_a_bad_config_json_in_out_is_one_line(tmp_path, content, named):
    run = _config_file(tmp_path, content)
    result = CliRunner().invoke(main, ["train", "--out", str(run), *_tiny_options(), "--quiet"])
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert result.output.startswith("error: ") and named in result.output and result.output.count("\n") == 1, result.output


@pytest.mark.parametrize("where", ["under-a-file", "under-proc", "a-file"])
def test_an_unusable_out_is_one_line(tmp_path, where):
    (tmp_path / "file").write_text("x")
    out = {"under-a-file": tmp_path / "file" / "run", "under-proc": Path("/proc/grokspec-run"), "a-file": tmp_path / "file"}[
        where
    ]
    result = CliRunner().invoke(main, ["train", "--out", str(out), *_tiny_options(), "--quiet"])
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert result.output.strip().splitlines()[-1].lower().startswith("error"), result.output


# --- sizes before allocation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "changes",
    [{}, {"model": "mlp", "mlp_hidden": (24, 16)}, {"n_layers": 3, "d_ff": 48}, {"task": "s5"}, {"task": "div", "p": 13}],
)
def test_parameter_count_matches_the_built_model(changes):
    config = dataclasses.replace(TINY, **changes)
    vocab = 120 if config.task == "s5" else config.p
    model = build_model(config, vocab, [0, 1])
    assert parameter_count(config) * 2 == sum(p.numel() for p in model.parameters())


def test_example_count_matches_the_dataset():
    from grokspec.lab.tasks import make_dataset

    for task, p in (("add", 11), ("div", 13), ("s5", 97)):
        assert example_count(task, p) == len(make_dataset(task, p))


def test_too_big_is_refused_before_anything_is_allocated(tmp_path, monkeypatch):
    import grokspec.lab.train as train_module

    monkeypatch.setattr(train_module, "make_dataset", lambda *a: pytest.fail("allocated before the size check"))
    with pytest.raises(ValueError, match=r"parameters, above the budget .* GB"):
        dataclasses.replace(TINY, d_model=4096, n_heads=4, d_ff=16384, n_layers=4)
    with pytest.raises(ValueError, match="p=30011 gives 900,660,121 examples"):
        TrainConfig(p=30011)
    # One seed fits; 400 at once do not, and train_seeds says so before allocating.
    medium = dataclasses.replace(TINY, d_model=512, n_heads=4, d_ff=2048)
    assert not size_problems(medium) and parameter_count(medium) * 400 > MAX_PARAMETERS
    with pytest.raises(ValueError, match=r"\(400 seeds\)"):
        train_seeds(medium, list(range(400)), tmp_path / "many")
    assert not (tmp_path / "many").exists()


def test_config_types_are_checked_before_values(tmp_path):
    for bad in (
        {"p": "97"},
        {"lr": "0.1"},
        {"mlp_hidden": [1, "a"]},
        {"steps": True},
        {"log_weight_entropies": 1},
        {"device": None},
    ):
        with pytest.raises(ValueError, match=f"{next(iter(bad))} must be"):
            TrainConfig.from_dict({**TINY.to_dict(), **bad})
    (tmp_path / "config.json").write_text(json.dumps([1]))
    with pytest.raises(ValueError, match=r"config\.json is not a grokspec config: a JSON list"):
        TrainConfig.load(tmp_path / "config.json")


def test_weight_entropy_logging_is_a_flag_and_matches_the_checkpoints(tmp_path):
    from safetensors.numpy import load_file

    from grokspec import spectral_entropy

    logged = tmp_path / "logged"
    result = CliRunner().invoke(main, ["train", "--out", str(logged), *_tiny_options(), "--log-weight-entropies", "--quiet"])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in (logged / "metrics.jsonl").read_text().splitlines()]
    last = records[-1]
    weights = load_file(str(sorted((logged / "checkpoints").glob("step_*.safetensors"))[-1]))
    matrices = {n: w.reshape(w.shape[0], -1) for n, w in weights.items() if w.ndim >= 2 and min(w.shape[0], w[0].size) >= 2}
    assert set(last["weight_entropy"]) == set(matrices)
    for name, w in matrices.items():
        assert last["weight_entropy"][name] == pytest.approx(float(spectral_entropy(w.astype("float64"))), abs=1e-6)
    plain = tmp_path / "plain"
    result = CliRunner().invoke(main, ["train", "--out", str(plain), *_tiny_options(), "--no-log-weight-entropies", "--quiet"])
    assert result.exit_code == 0, result.output
    assert all("weight_entropy" not in json.loads(line) for line in (plain / "metrics.jsonl").read_text().splitlines())
