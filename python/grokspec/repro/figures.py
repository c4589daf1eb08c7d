"""The figures of the reproduction report, drawn from the runs' metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from grokspec.events import REPRESENTATION_THRESHOLD
from grokspec.io_atomic import atomic_path
from grokspec.repro.events_table import run_events
from grokspec.repro.runs import RunSet, load_runs
from grokspec.scan.trajectories import accuracy_series, series_table

__all__ = ["make_figures"]


def _save(fig: Any, out: Path, name: str, figures: dict[str, str]) -> None:
    """Writes `fig` atomically to out/fig_<name>.png, closes it and records it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    with atomic_path(out / f"fig_{name}.png") as temporary:
        fig.savefig(temporary, dpi=110, format="png", bbox_inches="tight")
    plt.close(fig)
    figures[name] = f"fig_{name}.png"


def _legend(ax: Any, **kwargs: Any) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(**kwargs)


def _companion(runs: RunSet) -> list[str]:
    return [k for k in runs.keys("grokking") if runs.experiments[k].group == "companion"]


def _entropy_accuracy(plt: Any, runs: RunSet, out: Path, figures: dict[str, str]) -> None:
    keys = _companion(runs)
    fig, axes = plt.subplots(1, max(len(keys), 1), figsize=(4.6 * max(len(keys), 1), 3.4), squeeze=False)
    for ax, key in zip(axes[0], keys):
        twin = ax.twinx()
        for frame in runs.frames(key).values():
            ax.plot(frame["step"], frame["repr_entropy"], color="tab:blue", alpha=0.5, lw=1)
            twin.plot(frame["step"], frame["test_acc"], color="black", ls=":", alpha=0.5, lw=1)
        ax.axhline(REPRESENTATION_THRESHOLD, color="tab:red", ls="--", lw=1)
        config = runs.experiments[key].config_dict
        ax.set_title(f"({config['task']}) mod {config['p']}" if config["task"] != "s5" else "S5", fontsize=10)
        ax.set_xlabel("step")
        ax.set_ylabel("H̃ (blue)")
        twin.set_ylabel("test accuracy (dotted)")
        twin.set_ylim(-0.02, 1.02)
    _save(fig, out, "entropy_accuracy", figures)


def _norm_entropy(plt: Any, runs: RunSet, report: dict[str, Any], out: Path, figures: dict[str, str]) -> None:
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    for key in _companion(runs):
        task = runs.experiments[key].config_dict["task"]
        for seed, frame in runs.frames(key).items():
            t_grok = run_events(frame)["t_grok"]
            before = frame if t_grok is None else frame[frame["step"] < t_grok]
            left.scatter(before["param_norm"], before["repr_entropy"], s=4, alpha=0.4)
            if seed == min(runs.records[key]):
                right.plot(frame["step"], frame["param_norm"] / frame["param_norm"].iloc[0], label=f"{task}: norm / initial")
                right.plot(frame["step"], frame["repr_entropy"], ls="--", label=f"{task}: H̃")
    corr = report["two_phases"]["corr_norm_entropy_pre_grok"]
    left.set_xlabel("parameter norm")
    left.set_ylabel("H̃ (before T_grok)")
    left.set_title("corr = —" if corr is None else f"corr = {corr:.3f}", fontsize=10)
    right.set_xlabel("step")
    _legend(right, fontsize=7)
    right.set_title("first seed", fontsize=10)
    _save(fig, out, "norm_entropy", figures)


def _mlp_vs_transformer(plt: Any, runs: RunSet, report: dict[str, Any], out: Path, figures: dict[str, str]) -> None:
    control = report.get("mlp_control")
    if not control:
        return
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    for (name, key), color in zip(
        (("mlp", "control/mlp"), ("transformer", "comparison/transformer")), ("tab:purple", "tab:blue")
    ):
        for i, frame in enumerate(runs.frames(key).values()):
            left.plot(frame["step"], frame["repr_entropy"], color=color, alpha=0.6, lw=1, label=name if i == 0 else None)
            right.plot(frame["step"], frame["test_acc"], color=color, alpha=0.6, lw=1, label=name if i == 0 else None)
    left.axhline(REPRESENTATION_THRESHOLD, color="tab:red", ls="--", lw=1)
    right.axhline(control["chance"], color="gray", ls=":", lw=1, label="chance")
    left.set_ylabel("H̃")
    right.set_ylabel("test accuracy")
    for ax in (left, right):
        ax.set_xlabel("step")
        _legend(ax, fontsize=8)
    fig.suptitle(f"(a+b) mod {control['p']}, train fraction {control['train_fraction']}", fontsize=10)
    _save(fig, out, "mlp_vs_transformer", figures)


def _intervention(plt: Any, runs: RunSet, report: dict[str, Any], out: Path, figures: dict[str, str]) -> None:
    inter = report.get("intervention")
    if not inter:
        return
    window = inter["window"]
    seeds = set(runs.setup["intervention_seeds"])
    groups = {
        "baseline": {s: f for s, f in runs.frames("transformer/add").items() if s in seeds},
        "mixing": runs.frames("intervention/mixing"),
        "norm-matched mixing": runs.frames("intervention/norm_matched"),
    }
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    for (name, frames), color in zip(groups.items(), ("tab:blue", "tab:orange", "tab:green")):
        for i, frame in enumerate(frames.values()):
            left.plot(frame["step"], frame["repr_entropy"], color=color, alpha=0.5, lw=1, label=name if i == 0 else None)
            right.plot(frame["step"], frame["test_acc"], color=color, alpha=0.5, lw=1, label=name if i == 0 else None)
    for ax in (left, right):
        ax.axvspan(window[0], window[1], color="gray", alpha=0.15)
        ax.set_xlabel("step")
        _legend(ax, fontsize=8)
    left.axhline(REPRESENTATION_THRESHOLD, color="tab:red", ls="--", lw=1)
    left.set_ylabel("H̃")
    right.set_ylabel("test accuracy")
    fig.suptitle(f"representation mixing over steps {window[0]}–{window[1]} (shaded)", fontsize=10)
    _save(fig, out, "intervention", figures)


def _time_to_grok(plt: Any, runs: RunSet, report: dict[str, Any], out: Path, figures: dict[str, str]) -> None:
    calibration = report["calibration"]
    law = calibration.get("power_law")
    if not law:
        return
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    for key in _companion(runs):
        for frame in runs.frames(key).values():
            t_grok = run_events(frame)["t_grok"]
            if t_grok is None:
                continue
            before = frame[frame["step"] < t_grok].reset_index(drop=True)
            after_peak = before.loc[before["repr_entropy"].idxmax() :].iloc[1:]
            gap = after_peak["repr_entropy"] - calibration["h_star"]
            keep = gap > 0
            ax.scatter(t_grok - after_peak["step"][keep], law["c1"] * gap[keep] ** law["gamma"], s=6, alpha=0.5)
    top = ax.get_xlim()[1]
    ax.plot([0, top], [0, top], color="black", lw=1)
    ax.set_xlabel("actual steps to T_grok")
    ax.set_ylabel("predicted: C1 (H̃ − H*)^γ")
    ax.set_title(f"C1 = {law['c1']:.3g}, γ = {law['gamma']:.2f}, R² = {law['r2']:.2f}", fontsize=9)
    _save(fig, out, "time_to_grok", figures)


def _weights(plt: Any, runs: RunSet, out: Path, figures: dict[str, str]) -> None:
    """The weight side, averaged over runs on a grid aligned to T_grok."""
    table = runs.table(_companion(runs))
    if not len(table):
        return
    eval_every = int(runs.experiments["transformer/add"].config_dict["eval_every"])
    aligned: dict[str, list[pd.Series]] = {}
    for run in table.runs():
        accuracy = accuracy_series(table, run, "test_acc")
        if accuracy is None or not (accuracy.values >= 0.99).any():
            continue
        t_grok = int(accuracy.steps[accuracy.values >= 0.99][0])
        for name, series in series_table(table, run).items():
            key = name if name == "representation" or "." not in name else name.split(".")[-2]
            offsets = series.steps.astype(float) - t_grok
            grid = np.arange(np.ceil(offsets.min() / eval_every) * eval_every, offsets.max() + 1, eval_every)
            aligned.setdefault(key, []).append(pd.Series(np.interp(grid, offsets, series.values), index=grid))
    fig, ax = plt.subplots(figsize=(7.5, 4))
    for name, series_list in sorted(aligned.items()):
        mean = pd.concat(series_list, axis=1).sort_index().mean(axis=1)
        ax.plot(mean.index, mean.values, lw=2.2 if name == "representation" else 1, label=name)
    ax.axvline(0, color="tab:green", lw=1)
    ax.set_xlabel("step − T_grok")
    ax.set_ylabel("normalized entropy (mean over runs)")
    _legend(ax, fontsize=7, ncol=2)
    _save(fig, out, "weights", figures)


def _alarms(plt: Any, runs: RunSet, report: dict[str, Any], out: Path, figures: dict[str, str]) -> None:
    """The plateau regime's scored runs aligned to onset, and the controls, with the default rule's alarms."""
    alarms = report.get("alarms", {}).get("best_rule_alarms", {})
    plateau = [k for k in runs.keys("grokking") if runs.experiments[k].group == "plateau"]
    if not alarms or not plateau:
        return
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8))
    for key in plateau:
        for seed, frame in runs.frames(key).items():
            hit = alarms.get(f"{key}/seed_{seed}")
            if hit is None or hit["onset"] is None:
                continue  # a tuning seed, or a run without onset
            x = frame["step"] - hit["onset"]
            left.plot(x, frame["repr_entropy"], color="tab:blue", alpha=0.35, lw=1)
            left.plot(x, frame["test_acc"], color="black", ls=":", alpha=0.35, lw=1)
            if hit["step"] is not None:
                at = frame.loc[frame["step"] == hit["step"], "repr_entropy"]
                left.scatter([hit["step"] - hit["onset"]], at.values[:1], color="tab:orange", s=18, zorder=3)
    left.axvline(0, color="tab:purple", ls="-.", lw=1.2, label="onset")
    left.scatter([], [], color="tab:orange", s=18, label="alarm")
    left.set_xlabel("step − T_onset")
    left.set_ylabel("H̃ (blue), test accuracy (dotted)")
    left.set_title("plateau regime (scored seeds)", fontsize=10)
    _legend(left, fontsize=8)
    colors = dict(
        zip(
            sorted({runs.experiments[k].group for k in runs.keys("control")}),
            ("tab:purple", "tab:gray", "tab:brown", "tab:olive"),
        )
    )
    for key in runs.keys("control"):
        group = runs.experiments[key].group
        for i, (seed, frame) in enumerate(runs.frames(key).items()):
            right.plot(
                frame["step"], frame["repr_entropy"], color=colors[group], alpha=0.5, lw=1, label=group if i == 0 else None
            )
            hit = alarms.get(f"{key}/seed_{seed}")
            if hit and hit["step"] is not None:
                at = frame.loc[frame["step"] == hit["step"], "repr_entropy"]
                right.scatter([hit["step"]], at.values[:1], color="tab:red", marker="x", s=30, zorder=3)
    right.scatter([], [], color="tab:red", marker="x", s=30, label="false alarm")
    right.set_xlabel("step")
    right.set_ylabel("H̃")
    right.set_title("negative controls", fontsize=10)
    _legend(right, fontsize=8)
    fig.suptitle(f"default alarm: {report['alarms']['best_rule']}", fontsize=10)
    _save(fig, out, "alarms", figures)


def make_figures(out: Path, report: dict[str, Any]) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = load_runs(Path(out))
    figures: dict[str, str] = {}
    _entropy_accuracy(plt, runs, out, figures)
    _norm_entropy(plt, runs, report, out, figures)
    _mlp_vs_transformer(plt, runs, report, out, figures)
    _intervention(plt, runs, report, out, figures)
    _time_to_grok(plt, runs, report, out, figures)
    _weights(plt, runs, out, figures)
    _alarms(plt, runs, report, out, figures)
    return figures
