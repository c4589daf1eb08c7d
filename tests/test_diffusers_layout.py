"""diffusers' training scripts: accelerate ``save_state`` into ``checkpoint-N/``
with the models saved by a pre-hook into subfolders (``unet/``, ``unet_ema/``),
and the final pipeline at the output folder's root (``unet/``, ``scheduler/``,
``model_index.json``).

Written as ``examples/unconditional_image_generation/train_unconditional.py``
writes them: a real UNet2DModel and EMAModel, a real Accelerator with the
script's save hook, a real DDPMPipeline.save_pretrained. Every matrix is
compared with LAPACK on the weights the safetensors library reads back."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

from grokspec.scan.scan import ScanResult, scan
from reference import reference_entropy

diffusers = pytest.importorskip("diffusers")
accelerate = pytest.importorskip("accelerate")
from diffusers.training_utils import EMAModel  # noqa: E402

WEIGHTS = "diffusion_pytorch_model.safetensors"


def tiny_unet() -> diffusers.UNet2DModel:
    return diffusers.UNet2DModel(
        sample_size=8,
        in_channels=1,
        out_channels=1,
        layers_per_block=1,
        block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
        norm_num_groups=4,
    )


@pytest.fixture(scope="module")
def diffusers_out(tmp_path_factory) -> Path:
    """Four training steps, checkpoints at steps 2 and 4, then the final pipeline."""
    out = tmp_path_factory.mktemp("diffusers") / "ddpm-out"
    torch.manual_seed(0)
    accelerator = accelerate.Accelerator(cpu=True)
    unet = tiny_unet()
    ema = EMAModel(unet.parameters(), decay=0.5, model_cls=diffusers.UNet2DModel, model_config=unet.config)

    def save_model_hook(models, weights, output_dir):  # the script's hook, as written there
        ema.save_pretrained(str(Path(output_dir) / "unet_ema"))
        for model in models:
            model.save_pretrained(str(Path(output_dir) / "unet"))
            weights.pop()

    accelerator.register_save_state_pre_hook(save_model_hook)
    optimizer = torch.optim.AdamW(unet.parameters(), lr=1e-2)
    scheduler = diffusers.DDPMScheduler(num_train_timesteps=10)
    unet, optimizer = accelerator.prepare(unet, optimizer)
    for step in range(1, 5):
        images = torch.randn(2, 1, 8, 8)
        noise = torch.randn_like(images)
        timesteps = torch.randint(0, 10, (2,))
        loss = torch.nn.functional.mse_loss(unet(scheduler.add_noise(images, noise, timesteps), timesteps).sample, noise)
        accelerator.backward(loss)
        optimizer.step()
        optimizer.zero_grad()
        ema.step(unet.parameters())
        if step % 2 == 0:
            accelerator.save_state(str(out / f"checkpoint-{step}"))
    torch.manual_seed(1)
    with torch.no_grad():  # trained on after the last checkpoint: the final model differs from it
        for p in unet.parameters():
            p.add_(0.01 * torch.randn_like(p))
    diffusers.DDPMPipeline(unet=accelerator.unwrap_model(unet), scheduler=scheduler).save_pretrained(str(out))
    return out


def matrices(path: Path) -> dict[str, np.ndarray]:
    """The ≥ 2-D tensors of a weights file as SPEC §5's matrices (4-D conv: out × in·kh·kw)."""
    out = {}
    for name, value in load_file(path).items():
        if value.ndim >= 2 and min(value.shape[0], int(np.prod(value.shape[1:]))) >= 2:
            out[name] = value.astype(np.float64).reshape(value.shape[0], -1)
    return out


def entropies(result: ScanResult, run: str) -> dict[tuple[int, str], float]:
    t = result.table
    rows = t[(t["run"] == run) & (t["metric"] == "entropy")]
    return {(int(r.step), r.tensor): float(r.value) for r in rows.itertuples()}


def assert_series(result: ScanResult, run: str, files: dict[int, Path]) -> None:
    got = entropies(result, run)
    want = {(step, name): reference_entropy(w) for step, path in files.items() for name, w in matrices(path).items()}
    assert set(got) == set(want) and len(want) >= 2 * 10, run
    for key, value in want.items():
        assert abs(got[key] - value) <= 1e-6, (run, key)


def test_the_written_folder_is_what_the_script_leaves(diffusers_out):
    for step in (2, 4):
        names = {p.name for p in (diffusers_out / f"checkpoint-{step}").iterdir()}
        assert {"unet", "unet_ema", "optimizer.bin", "random_states_0.pkl"} <= names
        assert not any(n.endswith(".safetensors") for n in names), "the models live in the subfolders only"
    assert (diffusers_out / "model_index.json").is_file() and (diffusers_out / "unet" / WEIGHTS).is_file()


def test_each_model_subfolder_is_a_series_and_the_final_model_is_apart(diffusers_out):
    result = scan(diffusers_out)
    name = diffusers_out.name
    assert result.failed_checkpoints == 0
    runs = {r.run: (r.checkpoints, r.steps) for r in result.report.runs}
    assert runs == {f"{name}/unet": (2, (2, 4)), f"{name}/unet_ema": (2, (2, 4)), f"{name}/unet/final": (1, (0, 0))}
    for model in ("unet", "unet_ema"):
        assert_series(result, f"{name}/{model}", {s: diffusers_out / f"checkpoint-{s}" / model / WEIGHTS for s in (2, 4)})
    skipped = {s.path: s.role for s in result.report.skipped}
    assert skipped["checkpoint-4/optimizer.bin"] == "optimizer" and skipped["checkpoint-4/random_states_0.pkl"] == "rng_state"


def test_a_final_model_equal_to_the_last_checkpoint_is_a_duplicate(diffusers_out, tmp_path):
    copy = tmp_path / "ddpm-out"
    shutil.copytree(diffusers_out, copy)
    shutil.copyfile(copy / "checkpoint-4" / "unet" / WEIGHTS, copy / "unet" / WEIGHTS)
    result = scan(copy)
    assert {r.run for r in result.report.runs} == {"ddpm-out/unet", "ddpm-out/unet_ema"}
    assert {s.path: s.role for s in result.report.skipped}[f"unet/{WEIGHTS}"] == "duplicate"


def test_one_model_subfolder_scanned_alone_gets_its_checkpoint_step(diffusers_out):
    result = scan(diffusers_out / "checkpoint-2" / "unet_ema")
    assert set(result.table["step"]) == {2}
    assert_series(result, "unet_ema", {2: diffusers_out / "checkpoint-2" / "unet_ema" / WEIGHTS})


def test_lora_checkpoints_of_one_file_each_are_the_folders_run(tmp_path):
    """The LoRA scripts' hook saves ``checkpoint-N/pytorch_lora_weights.safetensors``
    alone: the one weights file of each folder is that checkpoint (the run was named
    ``<out>/*`` before)."""
    out = tmp_path / "lora-out"
    for step in (100, 200):
        torch.manual_seed(step)
        layers = {
            f"down.{i}.lora_{ab}.weight": torch.randn(*shape) for i in range(2) for ab, shape in (("A", (4, 32)), ("B", (32, 4)))
        }
        diffusers.StableDiffusionPipeline.save_lora_weights(
            save_directory=str(out / f"checkpoint-{step}"), unet_lora_layers=layers
        )
        torch.save(
            torch.optim.SGD([torch.nn.Parameter(torch.zeros(2, 2))], lr=0.1).state_dict(),
            out / f"checkpoint-{step}" / "optimizer.bin",
        )
    result = scan(out)
    assert {r.run: r.steps for r in result.report.runs} == {"lora-out": (100, 200)}
    files = {s: out / f"checkpoint-{s}" / "pytorch_lora_weights.safetensors" for s in (100, 200)}
    got = entropies(result, "lora-out")
    want = {(s, n): reference_entropy(w) for s, p in files.items() for n, w in matrices(p).items()}
    assert set(got) == set(want) and len(want) == 8
    assert all(abs(got[k] - v) <= 1e-6 for k, v in want.items())
