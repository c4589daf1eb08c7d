"""``--every K`` and ``--steps A:B``: scanning part of a long series.

A series of 100+ large checkpoints (Pythia, OLMo) is often first scanned
coarsely. Before anything is opened, each run's checkpoints are put in step
order (the step their names or layout give) and filtered: ``steps`` keeps
those whose step lies in ``[A, B]``, then ``every`` keeps the first and
every K-th after it. A checkpoint whose step is not known before opening it
(only its metadata holds it) is kept by ``steps`` — it cannot be placed —
and counts in ``every`` at its place in the listing.
"""

from __future__ import annotations

import dataclasses

from grokspec.scan.discovery import CheckpointRef, RunSpec
from grokspec.scan.options import ScanOptions

__all__ = ["EXECUTORS", "check_subsample_options", "parse_steps", "subsample"]

EXECUTORS = ("local", "ray")


def parse_steps(text: str) -> tuple[int | None, int | None]:
    """``"A:B"``, ``"A:"`` or ``":B"`` as (first, last); ValueError otherwise."""
    first, sep, last = text.partition(":")
    try:
        if not sep:
            raise ValueError
        bounds = (int(first) if first.strip() else None, int(last) if last.strip() else None)
    except ValueError:
        raise ValueError(f"steps must look like A:B, A: or :B with integer steps, got {text!r}") from None
    if bounds[0] is not None and bounds[1] is not None and bounds[0] > bounds[1]:
        raise ValueError(f"steps {text!r}: the first step is after the last")
    return bounds


def check_subsample_options(options: ScanOptions) -> None:
    """ValueError (one line naming the option) for values outside their domain."""
    if isinstance(options.every, bool) or not isinstance(options.every, int) or options.every < 1:
        raise ValueError(f"every must be a positive integer, got {options.every!r}")
    if options.steps is not None:
        if not isinstance(options.steps, tuple) or len(options.steps) != 2:
            raise ValueError(f"steps must be a (first, last) pair, got {options.steps!r}")
        first, last = options.steps
        if first is not None and last is not None and first > last:
            raise ValueError(f"steps {options.steps!r}: the first step is after the last")
    if options.executor not in EXECUTORS:
        raise ValueError(f"executor must be one of {', '.join(EXECUTORS)}, got {options.executor!r}")
    if options.approx and options.power not in (1, 2):
        raise ValueError(f"--approx supports power 1 or 2, got {options.power:g}")


def subsample(runs: list[RunSpec], options: ScanOptions) -> list[RunSpec]:
    """Each run with only the checkpoints the options keep (all by default)."""
    check_subsample_options(options)
    if options.every == 1 and options.steps is None:
        return runs
    return [dataclasses.replace(run, checkpoints=_kept(run.checkpoints, options)) for run in runs]


def _kept(refs: tuple[CheckpointRef, ...], options: ScanOptions) -> tuple[CheckpointRef, ...]:
    ordered = sorted(range(len(refs)), key=lambda i: (refs[i].name_step is None, refs[i].name_step or 0, i))
    if options.steps is not None:
        first, last = options.steps
        ordered = [
            i
            for i in ordered
            if refs[i].name_step is None
            or ((first is None or refs[i].name_step >= first) and (last is None or refs[i].name_step <= last))  # type: ignore[operator]
        ]
    chosen = set(ordered[:: options.every])
    return tuple(ref for i, ref in enumerate(refs) if i in chosen)
