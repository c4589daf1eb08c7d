"""Writing a scan's results: the tidy table, report.json and trajectories.png,
each atomically (a crash leaves the previous version, never half a file)."""

from __future__ import annotations

import json
from pathlib import Path

from grokspec.io_atomic import atomic_open, atomic_path, write_json
from grokspec.scan.plot import plot_trajectories
from grokspec.scan.scan import ScanResult

__all__ = ["write_scan_outputs", "TABLE_FORMATS"]

TABLE_FORMATS = ("csv", "parquet", "json")


def write_scan_outputs(result: ScanResult, out_dir: Path, table_format: str = "csv") -> dict[str, Path]:
    """Writes spectra.<format>, report.json and trajectories.png into `out_dir`."""
    if table_format not in TABLE_FORMATS:
        raise ValueError(f"table format must be one of {', '.join(TABLE_FORMATS)}, got {table_format!r}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    table_path = out_dir / f"spectra.{table_format}"
    if table_format == "csv":
        with atomic_open(table_path, "w", encoding="utf-8", newline="") as handle:
            result.table.to_csv(handle, index=False)
    elif table_format == "parquet":
        with atomic_path(table_path) as temporary:
            result.table.to_parquet(temporary, index=False)
    else:
        with atomic_open(table_path, "w", encoding="utf-8") as handle:
            json.dump(json.loads(result.table.to_json(orient="records")), handle)
    report_path = out_dir / "report.json"
    write_json(report_path, result.report.to_json())
    plot_path = plot_trajectories(result.table, result.report, out_dir / "trajectories.png")
    return {"table": table_path, "report": report_path, "plot": plot_path}
