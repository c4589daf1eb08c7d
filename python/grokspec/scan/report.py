"""The scan report: section 1's events for each run and series, as typed records.

Series of a run: the representation entropy H̃ (metric ``repr_entropy``,
threshold 0.61 unless ``--threshold`` or a calibration says otherwise) and
the entropy of each weight matrix (no default threshold: thresholds do not
carry over between representations and weights, so only a calibration
supplies one). T_grok and T_onset come from the run's accuracy metric
(:mod:`grokspec.scan.trajectories`). With a calibration, each series whose
latest value lies above its H* gets a predicted T_grok from
ΔT = C1 (v − H*)^γ with the calibration's interval.

:class:`ScanReport` is what cli, plot, calibrate and the reproduction read;
``report.json`` is its :meth:`ScanReport.to_json`.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from grokspec import __version__
from grokspec.alarms import Alarm, Trajectory, default_rule, first_alarm
from grokspec.events import REPRESENTATION_THRESHOLD, Events, detect_events
from grokspec.scan.options import ScanOptions
from grokspec.scan.roles import SkippedFile
from grokspec.scan.table import Row, ScanTable, StepSeries
from grokspec.scan.trajectories import (
    REPRESENTATION,
    REPRESENTATION_METRIC,
    RunTrajectories,
    accuracy_series,
    run_trajectories,
)

if TYPE_CHECKING:
    from grokspec.scan.discovery import RunSpec

__all__ = [
    "ScanReport",
    "RunReport",
    "SeriesReport",
    "Prediction",
    "build_report",
    "load_calibration",
    "predict",
    "REPORT_FORMAT",
    "CALIBRATION_FORMAT",
]

REPORT_FORMAT = "grokspec-report/1"
CALIBRATION_FORMAT = "grokspec-calibration/1"


@dataclass(frozen=True)
class Prediction:
    """Time-to-grok from the calibrated power law at a series' latest point."""

    from_step: int
    value: float
    predicted_t_grok: int
    #: [low, high] steps.
    interval: tuple[int, int]


@dataclass(frozen=True)
class SeriesReport:
    """The events of one entropy series of a run."""

    series: str
    metric: str
    threshold: float | None
    #: "option", "calibration", "default" or "none".
    threshold_source: str
    points: int
    first: float | None
    last: float | None
    min: float | None
    events: Events
    prediction: Prediction | None


@dataclass(frozen=True)
class RunReport:
    """One run: its headline events (from the primary series) and every series."""

    run: str
    kind: str
    checkpoints: int
    #: [first, last] checkpoint step.
    steps: tuple[int, int] | None
    step_sources: dict[str, int]
    grok_metric: str | None
    primary_series: str | None
    threshold: float | None
    threshold_source: str | None
    status: str
    crossing: int | None
    t_collapse: int | None
    t_grok: int | None
    #: T_onset: the first step with the accuracy at the onset level (SPEC §1).
    onset: int | None
    #: The default alarm rule's first firing (docs/ALARMS.md), or None.
    alarm: Alarm | None
    lead_cross: int | None
    lead_collapse: int | None
    prediction: Prediction | None
    weight_series: int
    weight_series_collapsed_before_grok: int
    series: tuple[SeriesReport, ...]


@dataclass(frozen=True)
class ScanReport:
    """Everything report.json holds."""

    format: str
    grokspec_version: str
    options: dict[str, Any]
    calibration: str | None
    runs: tuple[RunReport, ...]
    warnings: tuple[str, ...]
    failed_checkpoints: int
    #: Files found and deliberately not scanned (training state, duplicates), with the reason.
    skipped: tuple[SkippedFile, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The JSON object of report.json (non-finite numbers become null)."""
        encoded: dict[str, Any] = _finite(asdict(self))
        return encoded

    def run(self, name: str) -> RunReport:
        return next(r for r in self.runs if r.run == name)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def load_calibration(path: Path | str) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ValueError(f"cannot read the calibration {path}: {error}") from error
    if not isinstance(data, dict) or data.get("format") != CALIBRATION_FORMAT:
        found = data.get("format") if isinstance(data, dict) else None
        raise ValueError(f"{path} is not a grokspec calibration (format {found!r})")
    return data


def predict(last_step: int, last_value: float, law: dict[str, Any], h_star: float) -> Prediction:
    """Time-to-grok from the calibrated power law at the latest point."""
    gap = last_value - h_star
    delta = law["c1"] * gap ** law["gamma"] if gap > 0 else 0.0
    predicted = last_step + delta
    interval = float(law.get("interval_steps", 0.0))
    return Prediction(
        from_step=int(last_step),
        value=float(last_value),
        predicted_t_grok=round(predicted),
        interval=(round(max(last_step, predicted - interval)), round(predicted + interval)),
    )


def _threshold(name: str, options: ScanOptions, calibration: dict[str, Any] | None) -> tuple[float | None, str]:
    calibrated = (calibration or {}).get("series", {}).get(name)
    if name == REPRESENTATION:
        if options.threshold is not None:
            return options.threshold, "option"
        if calibrated:
            return float(calibrated["h_star"]), "calibration"
        return REPRESENTATION_THRESHOLD, "default"
    if calibrated:
        return float(calibrated["h_star"]), "calibration"
    return None, "none"


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _series_report(
    name: str, values: StepSeries, trajectories: RunTrajectories, options: ScanOptions, calibration: dict[str, Any] | None
) -> SeriesReport:
    threshold, source = _threshold(name, options, calibration)
    accuracy = trajectories.accuracy
    events = detect_events(
        values.steps.tolist(),
        values.values.tolist(),
        None if accuracy is None else accuracy.values.tolist(),
        accuracy_steps=None if accuracy is None else accuracy.steps.tolist(),
        threshold=threshold,
        persist=options.persist,
        level=options.grok_level,
    )
    calibrated = (calibration or {}).get("series", {}).get(name)
    prediction = None
    if calibrated and calibrated.get("power_law") and events.t_grok is None and len(values):
        prediction = predict(
            int(values.steps[-1]), float(values.values[-1]), calibrated["power_law"], float(calibrated["h_star"])
        )
    return SeriesReport(
        series=name,
        metric=REPRESENTATION_METRIC if name == REPRESENTATION else "entropy",
        threshold=threshold,
        threshold_source=source,
        points=len(values),
        first=_finite_or_none(float(values.values[0])) if len(values) else None,
        last=_finite_or_none(float(values.values[-1])) if len(values) else None,
        min=_finite_or_none(float(values.values.min())) if len(values) else None,
        events=events,
        prediction=prediction,
    )


def _alarm(table: ScanTable, run: str, trajectories: RunTrajectories, options: ScanOptions) -> Alarm | None:
    """The default alarm on H̃, where the run has H̃, test and train accuracy
    (the default rule arms once the training set is memorized)."""
    entropy = trajectories.series.get(REPRESENTATION)
    train_acc = accuracy_series(table, run, "train_acc")
    if entropy is None or trajectories.accuracy is None or train_acc is None:
        return None
    # The training log's evaluations only: checkpoint steps in between would
    # change the cadence the rule counts in.
    logged = set(train_acc.steps.tolist())
    steps = [t for t in entropy.steps.tolist() if t in logged]
    trajectory = Trajectory(
        steps=tuple(steps),
        train_acc=tuple(train_acc.at(steps).tolist()),
        test_acc=tuple(trajectories.accuracy.at(steps).tolist()),
        series={"representation": tuple(entropy.at(steps).tolist())},
    )
    return first_alarm(default_rule(), trajectory, grok_level=options.grok_level)


def _primary(series: list[SeriesReport]) -> SeriesReport | None:
    """H̃ when the run has it; else the calibrated weight series that crossed first."""
    representation = next((s for s in series if s.series == REPRESENTATION), None)
    if representation is not None:
        return representation
    crossed = [s for s in series if s.threshold is not None and s.events.crossing is not None]
    return min(crossed, key=lambda s: s.events.crossing or 0, default=None)


def _run_report(table: ScanTable, run: RunSpec, options: ScanOptions, calibration: dict[str, Any] | None) -> RunReport:
    checkpoint_rows = [r for r in table.of_run(run.name) if r.step_source != "log"]
    first_rows: dict[str, Row] = {}  # the first row of each checkpoint
    for r in checkpoint_rows:
        first_rows.setdefault(r.checkpoint, r)
    checkpoint_steps = [r.step for r in checkpoint_rows]
    trajectories = run_trajectories(table, run.name, grok_metric=options.grok_metric, grok_level=options.grok_level)
    series = [_series_report(n, v, trajectories, options, calibration) for n, v in trajectories.series.items()]
    primary = _primary(series)
    t_grok = trajectories.t_grok
    if primary is not None:
        headline = primary.events
    else:
        headline = Events(None, None, None, t_grok, None, None, "grokked" if t_grok is not None else "not-crossed")
    sources = Counter(r.step_source for r in first_rows.values()).most_common()
    weights = [s for s in series if s.series != REPRESENTATION]
    return RunReport(
        run=run.name,
        kind=run.kind,
        checkpoints=len(first_rows),
        steps=(min(checkpoint_steps), max(checkpoint_steps)) if checkpoint_steps else None,
        step_sources={str(k): int(v) for k, v in sources},
        grok_metric=trajectories.accuracy_metric,
        primary_series=primary.series if primary else None,
        threshold=primary.threshold if primary else None,
        threshold_source=primary.threshold_source if primary else None,
        status=headline.status,
        crossing=headline.crossing,
        t_collapse=headline.t_collapse,
        t_grok=headline.t_grok,
        onset=trajectories.t_onset,
        alarm=_alarm(table, run.name, trajectories, options),
        lead_cross=headline.lead_cross,
        lead_collapse=headline.lead_collapse,
        prediction=primary.prediction if primary else None,
        weight_series=len(weights),
        weight_series_collapsed_before_grok=sum(
            1 for s in weights if s.events.lead_collapse is not None and s.events.lead_collapse > 0
        ),
        series=tuple(series),
    )


def build_report(
    table: ScanTable,
    runs: list[RunSpec],
    options: ScanOptions,
    calibration: dict[str, Any] | None,
    warnings: list[str],
    failed_checkpoints: int,
    skipped: list[SkippedFile] | None = None,
) -> ScanReport:
    """Section 1's events for every run of a scan table."""
    return ScanReport(
        format=REPORT_FORMAT,
        grokspec_version=__version__,
        options=options.as_json(),
        calibration=str(options.calibration) if options.calibration else None,
        runs=tuple(_run_report(table, run, options, calibration) for run in runs),
        warnings=tuple(warnings),
        failed_checkpoints=failed_checkpoints,
        skipped=tuple(skipped or ()),
    )
