"""grokspec's exceptions: one root, created once in the Rust engine.

Every error grokspec raises on purpose is a ``GrokspecError``; the
subclasses say which input was wrong. Wrong Python types raise ``TypeError``
and option values outside their domain raise ``ValueError``.
"""

from grokspec._core import (
    CheckpointError,
    DTypeError,
    GrokspecError,
    NonFiniteError,
    ShapeError,
)

__all__ = ["GrokspecError", "ShapeError", "DTypeError", "NonFiniteError", "CheckpointError"]
