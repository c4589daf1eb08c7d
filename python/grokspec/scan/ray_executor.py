"""``grokspec scan --ray [ADDRESS]``: a group's matrices computed on a Ray cluster.

The driver keeps everything that is state — discovery, the cache, the
report and the outputs — and ships only work: the group's engine inputs,
cut into chunks of at most :data:`CHUNK_BYTES` (many small checkpoints
share a chunk; a very large checkpoint's matrices spread over several, one
matrix at most per chunk when it is that big). A safetensors tensor travels
as its reference ``(file, name, rows, cols)`` — workers read the file
themselves, so the checkpoints must sit on storage every node sees at the
same path — and a matrix already in memory travels through Ray's object
store. Each chunk is computed by :func:`grokspec.scan.dispatch.compute_local`,
the same code a local scan runs, so the numbers are the same. A worker that
dies mid-chunk (killed, out of memory, a lost node) is retried by Ray up to
:data:`MAX_RETRIES` times; the chunk is pure, so a retry loses nothing.

Ray is an optional extra (``pip install grokspec[ray]``); see
docs/DISTRIBUTED.md for running it on a real cluster.
"""

from __future__ import annotations

import dataclasses
import logging
import os

from grokspec.scan.dispatch import Columns, Errors, compute_local, merge_columns
from grokspec.scan.formats import Source
from grokspec.scan.options import ScanOptions

__all__ = ["CHUNK_BYTES", "FAIL_ONCE_ENV", "MAX_RETRIES", "compute_on_ray", "connect", "plan_chunks"]

#: Float32 bytes of matrices per task (a matrix larger than this is a task alone).
CHUNK_BYTES = 64 * 2**20
#: Times Ray reruns a task whose worker died.
MAX_RETRIES = 3
#: Fault injection for tests: a marker path; the first task to run where
#: the marker does not exist creates it and kills its worker process.
FAIL_ONCE_ENV = "GROKSPEC_RAY_FAIL_ONCE"


def connect(address: str | None) -> None:
    """Joins the cluster at `address` (``"auto"``, ``"ray://host:10001"``,
    ``"host:6379"``), or starts a local one for None; an existing connection
    is reused."""
    try:
        import ray
    except ImportError as error:
        raise ValueError("--ray needs Ray: pip install 'grokspec[ray]'") from error
    if ray.is_initialized():
        return
    try:
        # Ray's own INFO/WARNING lines would print under a --quiet scan.
        if address:
            ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR)
        else:
            ray.init(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    except (ConnectionError, RuntimeError, ValueError) as error:
        where = address or "a local cluster"
        raise ValueError(f"cannot connect to Ray at {where}: {str(error).splitlines()[0] if str(error) else error}") from error


def _size(source: Source) -> int:
    if isinstance(source, tuple):
        return source[2] * source[3] * 4
    return int(source.size) * 4


def plan_chunks(sources: list[Source], limit: int = CHUNK_BYTES) -> list[list[int]]:
    """Consecutive positions of `sources` grouped into chunks of at most
    `limit` bytes (as float32); a larger matrix is a chunk alone."""
    chunks: list[list[int]] = []
    used = 0
    for i, source in enumerate(sources):
        size = _size(source)
        if not chunks or used + size > limit:
            chunks.append([])
            used = 0
        chunks[-1].append(i)
        used += size
    return chunks


def _run_chunk(sources: list[Source], options: ScanOptions) -> tuple[Columns, list[tuple[int, str, str]]]:
    """One task on a worker: the local computation; errors as (index,
    class name, message) so that they travel whatever their class."""
    marker = os.environ.get(FAIL_ONCE_ENV)
    if marker:
        try:
            with open(marker, "x"):
                pass
            os._exit(1)  # the worker dies mid-task: Ray must retry
        except FileExistsError:
            pass
    columns, errors = compute_local(sources, options)
    return columns, [(i, type(e).__name__, str(e)) for i, e in errors]


def _rebuild(name: str, message: str) -> BaseException:
    from grokspec import errors as grokspec_errors

    kind = getattr(grokspec_errors, name, None)
    return kind(message) if isinstance(kind, type) and issubclass(kind, BaseException) else ValueError(message)


def compute_on_ray(sources: list[Source], options: ScanOptions) -> tuple[Columns, Errors]:
    """The group's columns and errors, computed by Ray tasks, in `sources` order."""
    import ray

    connect(options.ray_address)
    # One engine thread per task unless asked: Ray runs a task per CPU.
    local = dataclasses.replace(options, executor="local", threads=options.threads or 1)
    task = ray.remote(max_retries=MAX_RETRIES, retry_exceptions=False)(_run_chunk)
    chunks = plan_chunks(sources)
    futures = [task.remote([sources[i] for i in chunk], local) for chunk in chunks]
    parts: list[tuple[list[int], Columns, Errors]] = []
    for chunk, (columns, errors) in zip(chunks, ray.get(futures)):
        parts.append((chunk, columns, [(i, _rebuild(name, message)) for i, name, message in errors]))
    return merge_columns(len(sources), parts)
