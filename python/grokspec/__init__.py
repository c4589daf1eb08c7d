"""grokspec: predict grokking from the collapse of spectral entropy.

``from grokspec import spectral_entropy`` is the library face; the command
line is ``grokspec`` (``demo``, ``train``, ``scan``, ``calibrate``,
``bench``).
"""

from grokspec._core import __version__ as _engine_version
from grokspec.errors import CheckpointError, DTypeError, GrokspecError, NonFiniteError, ShapeError
from grokspec.spectral import (
    REPRESENTATION_THRESHOLD,
    SpectralStats,
    representation_entropy,
    singular_values,
    spectral_entropy,
    spectral_stats,
)

__version__ = _engine_version

__all__ = [
    "__version__",
    "REPRESENTATION_THRESHOLD",
    "SpectralStats",
    "singular_values",
    "spectral_entropy",
    "spectral_stats",
    "representation_entropy",
    "GrokspecError",
    "ShapeError",
    "DTypeError",
    "NonFiniteError",
    "CheckpointError",
]
