"""The machine a reproduction ran on, for its report."""

from __future__ import annotations

import os
import platform
from typing import Any

from grokspec import __version__

__all__ = ["machine_description"]


def machine_description(device: str = "auto") -> dict[str, Any]:
    import torch

    from grokspec import _core
    from grokspec.lab.seeding import select_device

    chosen = select_device(device)
    return {
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "threads": _core.default_threads(),
        "device": str(chosen),
        "gpu": torch.cuda.get_device_name(0) if chosen.type == "cuda" else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "grokspec_version": __version__,
    }
