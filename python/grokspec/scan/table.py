"""The tidy scan table as typed rows, without pandas.

A scan's results are one long table (:data:`COLUMNS`): a row per run,
checkpoint, tensor and metric. The scan, its report and its outputs work on
:class:`ScanTable`, plain rows grouped by run, because importing pandas
alone costs more than a cached rescan of a single model (issue #12: a
cached rescan of a MiniLM folder should take well under a second);
:meth:`ScanTable.to_frame` gives the DataFrame to whoever wants one
(``ScanResult.table``, Parquet output, calibration).

:class:`StepSeries` is one series of a run, values by ascending step.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any, NamedTuple

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["COLUMNS", "Row", "ScanTable", "StepSeries"]

COLUMNS = ["run", "checkpoint", "step", "step_source", "tensor", "rows", "cols", "dtype", "metric", "value"]


class Row(NamedTuple):
    """One row of the tidy table. `tensor` is "" for run-level metrics
    (accuracies, losses, H̃); `rows`/`cols` are None there."""

    run: str
    checkpoint: str
    step: int
    step_source: str
    tensor: str
    rows: int | None
    cols: int | None
    dtype: str
    metric: str
    value: float | None

    @property
    def has_value(self) -> bool:
        """A finite or infinite number (None and NaN are missing)."""
        return self.value is not None and not math.isnan(self.value)


def _optional_int(value: Any) -> int | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return int(value)


def _optional_float(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return None if math.isnan(number) else number


def _text(value: Any) -> str:
    """A string cell; None and NaN (a DataFrame's empty cell) are ""."""
    if isinstance(value, str):
        return value
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)


def _row(record: Mapping[str, Any]) -> Row:
    return Row(
        run=str(record["run"]),
        checkpoint=_text(record["checkpoint"]),
        step=int(record["step"]),
        step_source=_text(record["step_source"]),
        tensor=_text(record["tensor"]),
        rows=_optional_int(record["rows"]),
        cols=_optional_int(record["cols"]),
        dtype=_text(record["dtype"]),
        metric=str(record["metric"]),
        value=_optional_float(record["value"]),
    )


class ScanTable:
    """The tidy table's rows in scan order, with each run's rows at hand."""

    def __init__(self, rows: Iterable[Row]) -> None:
        self.rows: tuple[Row, ...] = tuple(rows)
        self._by_run: dict[str, list[Row]] = {}
        for row in self.rows:
            self._by_run.setdefault(row.run, []).append(row)

    @classmethod
    def from_records(cls, records: Iterable[Mapping[str, Any]]) -> ScanTable:
        """From dicts with the COLUMNS keys (the scan's and the cache's form)."""
        return cls(_row(record) for record in records)

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> ScanTable:
        """From a DataFrame of the COLUMNS (a scan table read back or combined);
        `run`, `step` and `metric` are required, the others default to empty."""
        missing = [name for name in ("run", "step", "metric") if name not in frame.columns]
        if missing:
            raise ValueError(f"a scan table needs the columns run, step and metric; missing: {', '.join(missing)}")
        count = len(frame)
        columns = [frame[name].tolist() if name in frame.columns else [None] * count for name in COLUMNS]
        return cls.from_records(dict(zip(COLUMNS, values)) for values in zip(*columns))

    @classmethod
    def coerce(cls, table: ScanTable | pd.DataFrame) -> ScanTable:
        """`table` as a ScanTable (a DataFrame is converted)."""
        return table if isinstance(table, ScanTable) else cls.from_frame(table)

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[Row]:
        return iter(self.rows)

    def runs(self) -> list[str]:
        """The runs, in the order they first appear."""
        return list(self._by_run)

    def of_run(self, run: str) -> list[Row]:
        return self._by_run.get(run, [])

    def to_frame(self) -> pd.DataFrame:
        """The table as a pandas DataFrame (pandas is imported here, not before)."""
        import pandas as pd

        return pd.DataFrame([row._asdict() for row in self.rows], columns=COLUMNS)

    def records(self) -> list[dict[str, Any]]:
        """JSON-ready rows: missing numbers are None, infinities too (JSON has none)."""
        return [
            row._asdict() | {"value": row.value if row.value is not None and math.isfinite(row.value) else None}
            for row in self.rows
        ]

    def write_csv(self, handle: IO[str]) -> None:
        """CSV with a header; missing cells are empty, floats written exactly (repr)."""
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(COLUMNS)
        for row in self.rows:
            writer.writerow(["" if cell is None else cell for cell in row])


@dataclass(frozen=True, eq=False)
class StepSeries:
    """A series of one run: values at unique, ascending steps."""

    steps: np.ndarray
    values: np.ndarray

    @classmethod
    def from_pairs(cls, pairs: Iterable[tuple[int, float]]) -> StepSeries:
        """From (step, value) pairs in any order; the first pair of a step wins."""
        seen: dict[int, float] = {}
        for step, value in pairs:
            seen.setdefault(int(step), float(value))
        steps = sorted(seen)
        return cls(np.asarray(steps, dtype=np.int64), np.asarray([seen[s] for s in steps], dtype=float))

    def __len__(self) -> int:
        return len(self.steps)

    def before(self, step: float, *, inclusive: bool = True) -> StepSeries:
        """The points at steps up to `step` (excluding it unless `inclusive`)."""
        end = int(np.searchsorted(self.steps, step, side="right" if inclusive else "left"))
        return StepSeries(self.steps[:end], self.values[:end])

    def at(self, steps: Iterable[int]) -> np.ndarray:
        """The values at `steps` (NaN where the series has no point)."""
        lookup = dict(zip(self.steps.tolist(), self.values.tolist()))
        return np.asarray([lookup.get(int(s), math.nan) for s in steps], dtype=float)
