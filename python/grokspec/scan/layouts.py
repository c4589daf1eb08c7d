"""Folders that hold one checkpoint each, as training libraries lay them out.

A directory whose subfolders are named as checkpoints of a series
(:func:`~grokspec.scan.steps.folder_step`: ``checkpoint-N`` of the Hugging
Face Trainer, ``checkpoints/checkpoint_K`` of accelerate, ``global_stepN``
of DeepSpeed, ``step_N``, ``epoch_N``, ...) is one run; each folder is one
checkpoint. In a folder, the model weights are the first of
:data:`WEIGHT_NAMES` present (other copies of the same weights are skipped),
else its other checkpoint files, one series per file name; training state is
skipped by name (:mod:`grokspec.scan.roles`). A torch.distributed checkpoint
folder inside it counts as a file (accelerate's ``pytorch_model_fsdp_0/``,
OLMo-core's ``model_and_optim/``; ``optimizer_0/`` is training state).

A checkpoint folder without weights of its own may keep its models in
subfolders, one model each — diffusers' training scripts save
``checkpoint-N/unet/`` and ``checkpoint-N/unet_ema/`` beside accelerate's
training state: each such subfolder is a series of its own, named by the
subfolder.

Steps: the folder's number — except accelerate's ``checkpoint_K``, which
counts saves, not steps (flagged ``"order"``), and a Ray folder's, which take
the step of the report that saved them (``"ray_report"``). An HF output folder's final
model at its root gets ``global_step`` of the root ``trainer_state.json``
(``"trainer_state"``) and joins the series — or is skipped when a
checkpoint folder already holds that step; without a trainer state it is
compared with the newest checkpoint's weights, and if it differs it becomes
a run of its own (``<run>/final``), so one run name never holds two series
(:mod:`grokspec.scan.final_model`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from grokspec.errors import CheckpointError
from grokspec.scan import dcp, guards, ray_results
from grokspec.scan.foreign import foreign_bin
from grokspec.scan.pickled import PICKLE_SUFFIXES, holds_torch_file
from grokspec.scan.roles import SkippedFile, folder_role, name_role
from grokspec.scan.shard_index import check_shard_index
from grokspec.scan.steps import INIT_NAMES, folder_step

__all__ = [
    "EXTENSIONS",
    "MAX_COMPONENTS",
    "WEIGHT_NAMES",
    "Candidate",
    "checkpoint_folder_candidates",
    "checkpoint_names",
    "component_candidates",
    "FolderSeries",
    "folder_candidates",
    "megatron_partitions",
    "model_parallel_files",
    "model_parallel_warning",
    "megatron_weights",
    "folder_series",
    "group_key",
    "relative",
    "shard_files",
    "stem",
]

#: Weights file names, in order of preference (one checkpoint's weights).
WEIGHT_NAMES = (
    "model.safetensors.index.json",
    "model.safetensors",
    "pytorch_model.bin.index.json",
    "pytorch_model.bin",
    "adapter_model.safetensors",
    "adapter_model.bin",
    "mp_rank_00_model_states.pt",
    "model.pt",
    "model.pth",
    "pytorch_model_fsdp.bin",
    # diffusers' save_pretrained of one model (a UNet, a transformer, a VAE)
    "diffusion_pytorch_model.safetensors.index.json",
    "diffusion_pytorch_model.safetensors",
    "diffusion_pytorch_model.bin",
    MEGATRON_WEIGHTS := "mp_rank_00/model_optim_rng.pt",
)
#: How many subfolders of one checkpoint folder are looked into for its models.
MAX_COMPONENTS = 32
EXTENSIONS = (".safetensors.index.json", ".bin.index.json", ".safetensors", *PICKLE_SUFFIXES, ".npz")
_ACCELERATE = re.compile(r"^checkpoint_\d+$")
#: Megatron-LM's per-partition folders of an ``iter_N`` checkpoint (tensor rank, pipeline rank).
_MEGATRON_PARTITION = re.compile(r"^mp_rank_\d{2}(_\d{3})?$")
#: Files that are one model-parallel partition each, when a folder holds several.
_PARTITION_FILES = (re.compile(r"^mp_rank_\d{2}_model_states\.pt$"), re.compile(r"^consolidated\.\d{2}\.pth$"))
_RANDOM_STATES = re.compile(r"^random_states_\d+\.pkl$")


@dataclass(frozen=True)
class Candidate:
    """A checkpoint file of a folder: the file to open, and every file it is made of."""

    path: Path
    files: tuple[Path, ...]
    #: Its series within the folder: "" for the model weights, else the file's name pattern.
    series: str


@dataclass(frozen=True)
class FolderEntry:
    folder: Path
    step: int
    #: "name"; "order" for accelerate's save counter and Ray's unlisted saves; "ray_report".
    step_source: str
    candidates: tuple[Candidate, ...]


@dataclass(frozen=True)
class FolderSeries:
    """The checkpoint folders of one directory, and what was skipped in them."""

    kind: str
    entries: tuple[FolderEntry, ...]
    skipped: tuple[SkippedFile, ...]
    warnings: tuple[str, ...]


def is_accelerate_folder(folder: Path, names: list[str]) -> bool:
    """accelerate's save_state: checkpoint_K holding random_states_*.pkl."""
    return bool(_ACCELERATE.match(folder.name)) and any(_RANDOM_STATES.match(n) for n in names)


def folder_series(
    here: Path, subfolders: list[str], base: Path, report_steps: Mapping[str, int] | None = None
) -> FolderSeries | None:
    """The checkpoint folders among `subfolders` of `here` (None if there are none).
    `report_steps`: a Ray folder's checkpoint folders with the steps of the reports that
    saved them (:mod:`grokspec.scan.ray_results`); its other folders keep their order."""
    entries: list[FolderEntry] = []
    skipped: list[SkippedFile] = []
    warnings: list[str] = []
    kinds: set[str] = set()
    saved_in_order = ray_results.timestamp_order(subfolders) if report_steps is not None else {}
    for name in subfolders:
        step, source = folder_step(name), "name"
        if report_steps is not None and name in report_steps:
            step, source = report_steps[name], "ray_report"
        elif name in saved_in_order:  # a Ray Train save its snapshot does not list
            step, source = saved_in_order[name], "order"
        if step is None:
            continue
        folder = here / name
        try:
            names = checkpoint_names(folder)
        except OSError as error:
            warnings.append(f"cannot list {folder}: {error.strerror}")
            continue
        found, folder_skipped, folder_warnings = checkpoint_folder_candidates(folder, names, base)
        if not found:
            continue
        skipped.extend(folder_skipped)
        warnings.extend(folder_warnings)
        accelerate = is_accelerate_folder(folder, names)
        kinds.add(
            "ray" if report_steps is not None else "accelerate" if accelerate
            else "huggingface" if "trainer_state.json" in names
            else "deepspeed" if name.startswith("global_step") else "folders"
        )  # fmt: skip
        entries.append(FolderEntry(folder, step, "order" if accelerate else source, tuple(found)))
    if not entries:
        return None
    entries.sort(key=lambda e: (e.step, e.folder.name))
    kind = next(iter(kinds)) if len(kinds) == 1 else "folders"
    return FolderSeries(kind, tuple(entries), tuple(skipped), tuple(warnings))


def checkpoint_names(folder: Path) -> list[str]:
    """The names in a checkpoint folder that may hold weights: its files, its
    torch.distributed checkpoint folders, and any shard index whatever it is (a
    folder, a named pipe or a link loop in an index's place then fails, named,
    when it is opened, instead of vanishing and leaving its shards to become
    series of their own; OSError when the folder cannot be listed)."""
    return sorted(p.name for p in folder.iterdir() if p.is_file() or dcp.is_dcp_folder(p) or p.name.endswith(".index.json"))


def checkpoint_folder_candidates(
    folder: Path, names: list[str], base: Path
) -> tuple[list[Candidate], list[SkippedFile], list[str]]:
    """One checkpoint folder's weights (`names` from :func:`checkpoint_names`): its own
    files, Megatron's ``mp_rank_00/`` file, else the models in its subfolders."""
    found, skipped, warnings = folder_candidates(folder, names + megatron_weights(folder), base)
    if not found:
        return component_candidates(folder, base, skipped, warnings)
    return found, skipped, warnings


def megatron_partitions(subfolders: list[str]) -> list[str]:
    """Megatron-LM's per-partition folders among `subfolders` (``mp_rank_00``, ``mp_rank_01_002``, ...)."""
    return sorted(n for n in subfolders if _MEGATRON_PARTITION.match(n))


def model_parallel_files(names: list[str]) -> list[str]:
    """Files among `names` that are model-parallel partitions of one model, when there
    are several: DeepSpeed's ``mp_rank_NN_model_states.pt``, Meta's ``consolidated.NN.pth``."""
    out: list[str] = []
    for pattern in _PARTITION_FILES:
        matches = sorted(n for n in names if pattern.match(n))
        out += matches if len(matches) > 1 else []
    return out


def model_parallel_warning(folder: Path, partitions: list[str], base: Path) -> str:
    """Why a checkpoint split over model-parallel ranks (tensor or pipeline) is not scanned."""
    return (
        f"{relative(folder, base)}: one model split over {len(partitions)} model-parallel "
        f"partitions ({', '.join(partitions[:3])}, ...): each holds slices of the matrices, whose entropies "
        "are not the model's; merge them into one (e.g. Megatron's checkpoint converter, DeepSpeed's "
        "zero_to_fp32.py, Meta's conversion script) to scan it"
    )


def megatron_weights(folder: Path) -> list[str]:
    """Megatron-LM's legacy checkpoint, ``iter_N/mp_rank_00/model_optim_rng.pt``, as a
    name inside `folder` — only when the model is in one partition (a split one
    is reported by discovery)."""
    try:
        partitions = megatron_partitions([p.name for p in folder.iterdir() if p.is_dir()])
    except OSError:
        return []
    return [MEGATRON_WEIGHTS] if partitions == ["mp_rank_00"] and guards.is_regular_file(folder / MEGATRON_WEIGHTS) else []


def stem(name: str) -> str | None:
    """The name without its checkpoint extension; None if it has none."""
    for extension in EXTENSIONS:
        if name.endswith(extension):
            return name[: -len(extension)]
    return None


def group_key(file_stem: str) -> str:
    """The name with every number (and 'init') replaced: files of one series
    share it. Files without any number (last.pt, best.pt) form one series
    per directory, ordered by modification time."""
    if file_stem.lower() in INIT_NAMES:
        return "#"
    if not re.search(r"\d", file_stem):
        return "*"
    return re.sub(r"\d+", "#", file_stem)


def shard_files(index: Path) -> tuple[tuple[Path, ...], str | None]:
    """The shards an index lists (and the index itself), or a warning why it cannot be used."""
    if not guards.is_small_regular_file(index):  # a FIFO would block discovery; opening reports it
        return (index,), None
    try:  # JSON object, weight_map of file names confined beside it, each a regular file
        shards = check_shard_index(index).shards
    except CheckpointError as error:
        return (index,), f"{error}; its shards are scanned as files"
    return (*shards, index), None


def folder_candidates(folder: Path, names: list[str], base: Path) -> tuple[list[Candidate], list[SkippedFile], list[str]]:
    """A checkpoint folder's weights (see the module docstring), its training
    state (skipped) and warnings about unusable shard indexes. `names` may
    include torch.distributed checkpoint folders: each is one checkpoint, or
    training state (``optimizer_0/``); a folder's only model one counts as its weights."""
    skipped = skipped_by_name(folder, names, base)
    warnings: list[str] = []
    partitions = model_parallel_files(names)
    if partitions:
        warnings.append(model_parallel_warning(folder, partitions, base))
        names = [n for n in names if n not in partitions]
    sharded: set[str] = set()
    files: dict[str, tuple[Path, ...]] = {}
    distributed = [n for n in names if (folder / n).is_dir() and not n.endswith(".index.json")]
    for name in distributed:
        role = folder_role(name)
        if role is not None:
            skipped.append(SkippedFile(relative(folder / name, base), *role))
        else:
            files[name] = dcp.checkpoint_files(folder / name)
    for name in names:
        if name in distributed:
            continue
        if name_role(name) is None and stem(name) is not None and _not_an_archive(folder, name):
            if name.endswith(".index.json"):
                shards, warning = shard_files(folder / name)
                if warning:
                    warnings.append(f"{relative(folder / name, base)}: {warning}")
                    continue
                sharded.update(p.name for p in shards[:-1])
                files[name] = shards
            elif name.endswith(".bin") and (other := foreign_bin(folder / name)) is not None:
                skipped.append(SkippedFile(relative(folder / name, base), "foreign", f"{other} weights, not a torch.save file"))
            else:
                files.setdefault(name, (folder / name,))
    files = {n: f for n, f in files.items() if n not in sharded}
    primary = next((n for n in WEIGHT_NAMES if n in files), None)
    models = [n for n in distributed if n in files]
    if primary is None and len(models) == 1 and len(files) == 1:
        primary = models[0]
    found: list[Candidate] = []
    safetensors = {stem(n): n for n in files if ".safetensors" in n}
    for name, parts in sorted(files.items(), key=lambda item: (stem(item[0]) or item[0], _format_rank(item[0]))):
        if primary is not None and name in WEIGHT_NAMES and name != primary and not _adapter_beside_model(name, primary):
            skipped.append(SkippedFile(relative(folder / name, base), "duplicate", f"the same weights as {primary}"))
            continue
        twin = safetensors.get(stem(name))
        if twin is not None and twin != name and name.endswith(PICKLE_SUFFIXES):
            # one file saved twice, as torchtune saves adapter_model.safetensors and adapter_model.pt
            skipped.append(SkippedFile(relative(folder / name, base), "duplicate", f"the same weights as {twin}"))
            continue
        series = "" if name == primary else _series_key(stem(name) or name)
        found.append(Candidate(folder / name, parts, series))
    return found, skipped, warnings


def _format_rank(name: str) -> int:
    """Where a file's format stands in EXTENSIONS: sharded safetensors, safetensors, then the pickles."""
    return next((i for i, extension in enumerate(EXTENSIONS) if name.endswith(extension)), len(EXTENSIONS))


def component_candidates(
    folder: Path, base: Path, skipped: list[SkippedFile], warnings: list[str]
) -> tuple[list[Candidate], list[SkippedFile], list[str]]:
    """The models a checkpoint folder keeps in subfolders (``unet/``, ``unet_ema/``,
    ``text_encoder/``), each the series of its subfolder's name; the folder's own
    training state (`skipped`) is kept with theirs."""
    try:
        subfolders = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError:
        return [], skipped, warnings
    found: list[Candidate] = []
    for sub in subfolders[:MAX_COMPONENTS]:
        if dcp.is_dcp_folder(sub) or folder_role(sub.name) or megatron_partitions([sub.name]):
            continue
        try:
            names = sorted(p.name for p in sub.iterdir() if p.is_file())
        except OSError:
            continue
        candidates, sub_skipped, sub_warnings = folder_candidates(sub, names, base)
        skipped = skipped + sub_skipped
        warnings = warnings + sub_warnings
        key = _series_key(sub.name)  # unet, unet_ema; global_step# alike in every checkpoint folder
        for c in candidates:
            found.append(Candidate(c.path, c.files, key if c.series == "" else f"{key}/{c.series}"))
    return found, skipped, warnings


def _not_an_archive(folder: Path, name: str) -> bool:
    """A bare ``.tar`` is a checkpoint only when it holds a torch.save file (``.pth.tar`` always is)."""
    if not name.endswith(".tar") or name.endswith((".pth.tar", ".pt.tar", ".ckpt.tar")):
        return True
    return holds_torch_file(folder / name)


def _adapter_beside_model(name: str, primary: str) -> bool:
    """A LoRA adapter saved beside the full (merged) model, as torchtune's epoch folders hold
    them: another matrix set, its own series — not a copy of the model's weights."""
    return name.startswith("adapter_model.") and not primary.startswith("adapter_model.")


def _series_key(file_stem: str) -> str:
    """A checkpoint folder's other file's series: its name (its numbers replaced)."""
    key = group_key(file_stem)
    return file_stem if key == "*" else key


def skipped_by_name(folder: Path, names: list[str], base: Path) -> list[SkippedFile]:
    """The training-state files of a folder, by name."""
    out = []
    for name in names:
        role = name_role(name)
        if role is not None:
            out.append(SkippedFile(relative(folder / name, base), *role))
    return out


def relative(path: Path, base: Path) -> str:
    try:
        return str(path.relative_to(base))
    except ValueError:
        return str(path)
