"""Ray Train and Ray Tune run folders, written by the real Ray on a local
cluster: one run per training run or trial, each checkpoint at the step of
the report that saved it, the reports' metrics beside them (T_grok from
``val_acc``), entropies equal to float64 LAPACK; damaged report files become
warnings, never a failure."""

from __future__ import annotations

import importlib.util
import json
import os
import warnings
from pathlib import Path

import pytest

from grokspec.scan import ray_results
from grokspec.scan.discovery import discover
from grokspec.scan.scan import ScanResult, scan
from reference import reference_entropy

ray = pytest.importorskip("ray")
pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

REPORTS = 4
#: The accuracy each report gives: it crosses 0.99 at the third report (index 2).
ACCURACY = (0.01, 0.05, 0.995, 1.0)


def _weights(index: int) -> dict[str, object]:
    import torch

    generator = torch.Generator().manual_seed(index)
    return {"layer.weight": torch.randn(24, 16, generator=generator), "layer.bias": torch.randn(24, generator=generator)}


def _train_loop(config: dict[str, object]) -> None:
    """Ray Train v2: a checkpoint at every report, the state dict alone (no step inside)."""
    import tempfile

    import torch
    from ray import train

    for index in range(REPORTS):
        with tempfile.TemporaryDirectory() as folder:
            torch.save(_weights(index), os.path.join(folder, "model.pt"))
            checkpoint = train.Checkpoint.from_directory(folder)
            train.report({"val_acc": ACCURACY[index], "loss": 1.0 / (index + 1)}, checkpoint=checkpoint)


def _trainable(config: dict[str, object]) -> None:
    """Ray Tune: four reports, a checkpoint at every other one."""
    import tempfile

    import torch
    from ray import tune

    for index in range(REPORTS):
        metrics = {"val_acc": ACCURACY[index], "lr": config["lr"]}
        if index % 2:
            tune.report(metrics)
            continue
        with tempfile.TemporaryDirectory() as folder:
            torch.save(_weights(index), os.path.join(folder, "model.pt"))
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))


def _lightning_loop(config: dict[str, object]) -> None:
    """A real Lightning Trainer under Ray's own callback: a checkpoint.ckpt per epoch,
    reported with the epoch and the global step."""
    import lightning
    import torch
    from ray.train.lightning import RayDDPStrategy, RayLightningEnvironment, RayTrainReportCallback, prepare_trainer

    class Model(lightning.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.hidden, self.out = torch.nn.Linear(8, 16), torch.nn.Linear(16, 2)

        def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], index: int) -> torch.Tensor:
            x, y = batch
            loss = torch.nn.functional.cross_entropy(self.out(torch.relu(self.hidden(x))), y)
            self.log("train_loss", loss)
            self.log("val_acc", float(self.current_epoch) / 2)
            return loss

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.1)

    generator = torch.Generator().manual_seed(0)
    inputs, labels = torch.randn(64, 8, generator=generator), torch.randint(0, 2, (64,), generator=generator)
    data = torch.utils.data.TensorDataset(inputs, labels)
    trainer = lightning.Trainer(
        max_epochs=3, accelerator="cpu", devices="auto", strategy=RayDDPStrategy(), plugins=[RayLightningEnvironment()],
        callbacks=[RayTrainReportCallback()], enable_checkpointing=False, logger=False, enable_progress_bar=False,
    )  # fmt: skip
    prepare_trainer(trainer).fit(Model(), torch.utils.data.DataLoader(data, batch_size=16))


def _transformers_loop(config: dict[str, object]) -> None:
    """A real Hugging Face Trainer under Ray's own callback: each checkpoint-N it saves is
    copied into checkpoint_<time>/checkpoint/ and reported with the merged log history."""
    import tempfile

    from ray.train.huggingface.transformers import RayTrainReportCallback, prepare_trainer

    from hf_runs import tiny_bert_trainer

    with tempfile.TemporaryDirectory() as out:
        trainer = tiny_bert_trainer(Path(out), max_steps=6, layers=1)
        trainer.add_callback(RayTrainReportCallback())
        prepare_trainer(trainer).train()


@pytest.fixture(scope="module")
def ray_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from ray import train, tune
    from ray.train.torch import TorchTrainer

    storage = tmp_path_factory.mktemp("ray_results")
    # The workers import the training functions from this module, by name.
    tests = os.pathsep.join(filter(None, [str(Path(__file__).parent), os.environ.get("PYTHONPATH")]))
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        _node_ip_address="127.0.0.1",
        runtime_env={"env_vars": {"PYTHONPATH": tests}},
    )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            TorchTrainer(
                _train_loop,
                scaling_config=train.ScalingConfig(num_workers=1),
                run_config=train.RunConfig(
                    name="train_run",
                    storage_path=str(storage),
                    checkpoint_config=train.CheckpointConfig(num_to_keep=3),
                ),
            ).fit()
            for library, loop in (("lightning", _lightning_loop), ("transformers", _transformers_loop)):
                if importlib.util.find_spec(library) is not None:  # each under Ray's own callback for it
                    TorchTrainer(
                        loop,
                        scaling_config=train.ScalingConfig(num_workers=1),
                        run_config=train.RunConfig(name=f"{library}_run", storage_path=str(storage)),
                    ).fit()
            tune.Tuner(
                _trainable,
                param_space={"lr": tune.grid_search([0.1, 0.01])},
                run_config=tune.RunConfig(name="tune_run", storage_path=str(storage)),
            ).fit()
    finally:
        ray.shutdown()
    return storage


def _entropies(result: ScanResult, run: str) -> dict[int, float]:
    table = result.table
    rows = table[(table["run"] == run) & (table["tensor"] == "layer.weight") & (table["metric"] == "entropy")]
    return {int(step): float(value) for step, value in zip(rows["step"], rows["value"])}


def _metric(result: ScanResult, run: str, metric: str) -> dict[int, float]:
    table = result.table
    rows = table[(table["run"] == run) & (table["tensor"] == "") & (table["metric"] == metric)]
    return {int(step): float(value) for step, value in zip(rows["step"], rows["value"])}


def test_a_ray_train_run_is_one_series_at_its_reports_steps(ray_runs: Path, tmp_path: Path) -> None:
    run = ray_runs / "train_run"
    saved = sorted(p.name for p in run.iterdir() if p.is_dir() and p.name.startswith("checkpoint_"))
    assert len(saved) == 3  # num_to_keep: the oldest was deleted, its report index stays
    assert (run / ray_results.SNAPSHOT_NAME).is_file()

    result = scan(run, cache_path=tmp_path / "cache.sqlite")
    assert [r.run for r in result.report.runs] == ["train_run"] and result.failed_checkpoints == 0
    entropies = _entropies(result, "train_run")
    assert sorted(entropies) == [1, 2, 3]
    for index, value in entropies.items():
        weight = _weights(index)["layer.weight"].numpy()  # type: ignore[attr-defined]
        assert abs(value - reference_entropy(weight)) <= 1e-6
    sources = set(result.table[result.table["tensor"] == "layer.weight"]["step_source"])
    assert sources == {"ray_report"}
    assert _metric(result, "train_run", "val_acc") == {i: ACCURACY[i] for i in (1, 2, 3)}
    assert result.report.runs[0].t_grok == 2


def test_each_tune_trial_is_a_run_with_every_report_and_its_checkpoints_at_their_reports(ray_runs: Path, tmp_path: Path) -> None:
    result = scan(ray_runs / "tune_run", cache_path=tmp_path / "cache.sqlite")
    trials = sorted(r.run for r in result.report.runs)
    assert len(trials) == 2 and all(t.startswith("_trainable_") for t in trials), trials
    for trial in trials:
        # checkpoint_000000 and checkpoint_000001 were saved by reports 0 and 2, not 0 and 1.
        assert sorted(_entropies(result, trial)) == [0, 2]
        assert _metric(result, trial, "val_acc") == dict(enumerate(ACCURACY))
        assert next(r for r in result.report.runs if r.run == trial).t_grok == 2
    for index in (0, 2):
        weight = _weights(index)["layer.weight"].numpy()  # type: ignore[attr-defined]
        assert abs(_entropies(result, trials[0])[index] - reference_entropy(weight)) <= 1e-6


def _scan_one_run(run: Path, tmp_path: Path, library: str) -> tuple[Path, ScanResult]:
    """The scan of a run folder the fixture wrote with `library` (skipped when it is not installed): one run, no failure."""
    if not run.exists():
        pytest.skip(f"{library} is not installed")
    result = scan(run, cache_path=tmp_path / "cache.sqlite")
    assert [r.run for r in result.report.runs] == [run.name] and result.failed_checkpoints == 0
    return run, result


def test_a_lightning_run_under_ray_reports_and_saves_the_same_global_steps(ray_runs: Path, tmp_path: Path) -> None:
    import torch

    run, result = _scan_one_run(ray_runs / "lightning_run", tmp_path, "lightning")
    table = result.table
    weights = table[(table["tensor"] == "hidden.weight") & (table["metric"] == "entropy")]
    # 64 examples in batches of 16: 4 steps an epoch; the checkpoints' global_step and the
    # reports' "step" agree, so the accuracy lands on the checkpoints' steps.
    assert sorted(weights["step"]) == [4, 8, 12]
    assert set(weights["step_source"]) == {"metadata:global_step"}
    assert _metric(result, "lightning_run", "val_acc") == {4: 0.0, 8: 0.5, 12: 1.0}
    for folder, value in zip(sorted(run.glob("checkpoint_*/checkpoint.ckpt")), weights.sort_values("step")["value"]):
        state = torch.load(folder, map_location="cpu", weights_only=False)["state_dict"]
        assert abs(value - reference_entropy(state["hidden.weight"].numpy())) <= 1e-6


def test_a_transformers_run_under_ray_is_one_series_of_its_checkpoint_subfolders(ray_runs: Path, tmp_path: Path) -> None:
    from safetensors.numpy import load_file

    run, result = _scan_one_run(ray_runs / "transformers_run", tmp_path, "transformers")
    table = result.table
    weights = table[(table["tensor"] != "") & (table["metric"] == "entropy")]
    # saved every 2 steps; the reports carry the Trainer's global step as "step"
    assert sorted(set(weights["step"])) == [2, 4, 6] and set(weights["step_source"]) == {"ray_report"}
    assert sorted(_metric(result, "transformers_run", "eval_loss")) == [2, 4, 6]
    roles = {s.role for s in result.report.skipped}
    assert {"optimizer", "scheduler", "rng_state", "training_args"} <= roles
    saved_models = sorted(run.glob("checkpoint_*/checkpoint/model.safetensors"))
    assert len(saved_models) == 3
    for saved in saved_models:
        step = int(json.loads((saved.parent / "trainer_state.json").read_text())["global_step"])
        for name, matrix in load_file(saved).items():
            if matrix.ndim == 2 and min(matrix.shape) >= 2:
                got = weights[(weights["step"] == step) & (weights["tensor"] == name)]["value"]
                assert abs(float(got.iloc[0]) - reference_entropy(matrix)) <= 1e-6, (step, name)


def test_a_damaged_snapshot_is_a_warning_and_the_saves_keep_their_order(ray_runs: Path, tmp_path: Path) -> None:
    import shutil

    run = tmp_path / "train_run"
    shutil.copytree(ray_runs / "train_run", run)
    (run / ray_results.SNAPSHOT_NAME).write_text('{"checkpoint_results": [')
    found = discover(run)
    assert [r.name for r in found.runs] == ["train_run"]
    assert [ref.name_step for ref in found.runs[0].checkpoints] == [0, 1, 2]
    assert {ref.step_source for ref in found.runs[0].checkpoints} == {"order"}
    assert any("cannot read checkpoint_manager_snapshot.json" in w for w in found.warnings), found.warnings


def test_report_files_are_read_defensively(tmp_path: Path) -> None:
    trial = tmp_path / "trial"
    trial.mkdir()
    (trial / "params.json").write_text("{}")
    lines = [
        json.dumps({"val_acc": 0.5, "training_iteration": 1, "checkpoint_dir_name": "checkpoint_000000"}),
        '{"val_acc": 0.7, "training_iter',  # cut short by a crash
        json.dumps({"val_acc": 0.9, "big": 10**400, "flag": True, "training_iteration": 3}),
        json.dumps({"val_acc": 1.0, "step": 7.0, "training_iteration": 4, "checkpoint_dir_name": "checkpoint_000001"}),
        json.dumps(["not", "a", "report"]),
    ]
    (trial / "result.json").write_text("\n".join(lines) + "\n")
    reports = ray_results.read_reports(trial / "result.json")
    assert [(r.step, r.checkpoint) for r in reports] == [(0, "checkpoint_000000"), (2, None), (7, "checkpoint_000001")]
    assert reports[1].metrics == {"val_acc": 0.9}  # no integer beyond float range, no bool, no bookkeeping
    steps, problems = ray_results.folder_steps(trial, ["params.json", "result.json"])
    assert steps == {"checkpoint_000000": 0, "checkpoint_000001": 7} and problems == []
    # result.json alone is a common name: without Ray's other files it is not a Ray trial.
    assert ray_results.folder_steps(trial, ["result.json"]) == (None, [])


def test_a_huge_line_is_passed_over_not_held(tmp_path: Path) -> None:
    trial = tmp_path / "trial"
    trial.mkdir()
    (trial / "progress.csv").write_text("")
    huge = json.dumps({"val_acc": 0.3, "junk": "x" * (17 << 20), "training_iteration": 2})
    lines = [json.dumps({"val_acc": 0.1, "training_iteration": 1}), huge, json.dumps({"val_acc": 0.5, "training_iteration": 3})]
    (trial / "result.json").write_text("\n".join(lines) + "\n")
    assert [(r.step, r.metrics) for r in ray_results.read_reports(trial / "result.json")] == [
        (0, {"val_acc": 0.1}),
        (2, {"val_acc": 0.5}),
    ]


def test_a_fifo_or_an_oversized_snapshot_is_not_read(tmp_path: Path) -> None:
    trial = tmp_path / "trial"
    trial.mkdir()
    os.mkfifo(trial / ray_results.SNAPSHOT_NAME)
    steps, problems = ray_results.folder_steps(trial, [ray_results.SNAPSHOT_NAME])
    assert steps == {} and "not a regular file" in problems[0]
    (trial / ray_results.SNAPSHOT_NAME).unlink()
    with open(trial / ray_results.SNAPSHOT_NAME, "wb") as sparse:
        sparse.truncate(65 << 20)  # parsed whole, a snapshot is capped at 64 MB
    steps, problems = ray_results.folder_steps(trial, [ray_results.SNAPSHOT_NAME])
    assert steps == {} and "at most 64 MB" in problems[0]


def test_ray_train_v2_checkpoint_folders_sort_by_their_save_time() -> None:
    names = ["checkpoint_2026-11-27_06-11-08.993427", "checkpoint_2026-11-27_06-11-07.221591", "other", "checkpoint_3"]
    assert ray_results.timestamp_order(names) == {
        "checkpoint_2026-11-27_06-11-07.221591": 0,
        "checkpoint_2026-11-27_06-11-08.993427": 1,
    }
