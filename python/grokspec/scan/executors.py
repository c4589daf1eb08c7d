"""Where a scan group's matrices are computed: in this process
(:func:`grokspec.scan.dispatch.compute_local`) or on a Ray cluster
(:func:`grokspec.scan.ray_executor.compute_on_ray`), as the options say.
Both executors import the local computation; this module alone knows both,
so neither imports the other."""

from __future__ import annotations

from grokspec.scan.dispatch import Columns, Errors, compute_local
from grokspec.scan.formats import Source
from grokspec.scan.options import ScanOptions

__all__ = ["compute_sources"]


def compute_sources(sources: list[Source], options: ScanOptions) -> tuple[Columns, Errors]:
    """The columns and errors of a group's matrices, wherever the options say."""
    if options.executor == "ray":
        from grokspec.scan.ray_executor import compute_on_ray

        return compute_on_ray(sources, options)
    return compute_local(sources, options)
