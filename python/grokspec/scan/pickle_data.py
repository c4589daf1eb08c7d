"""The data a pickle may build, and what unknown names become.

:class:`Opaque` stands for every class or function a pickle names that is
not on the allowlist; the allowlist (:data:`BASE_ALLOWLIST`) maps the names
of plain data constructors — builtin containers, ordered dicts, numpy arrays
and dtypes rebuilt from raw bytes, copyreg's helpers — to implementations
that check their arguments and touch nothing but builtin data.
:mod:`grokspec.scan.safe_pickle` hands them to CPython's unpickler.
"""

from __future__ import annotations

import math
import pickle
import re
from collections import Counter, OrderedDict
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, cast

import numpy as np

__all__ = [
    "BASE_ALLOWLIST",
    "MAX_NDIM",
    "NumpyArray",
    "Opaque",
    "OpaqueCall",
    "Refused",
    "UnreadablePickle",
    "opaque_fields",
    "resolve",
]

#: The most dimensions an array built from a pickle may have.
MAX_NDIM = 64


class UnreadablePickle(ValueError):
    """The bytes are not a pickle this reader can finish (truncated, malformed,
    or asking for something no data constructor here provides)."""


class Opaque:
    """What an unknown class (or function) of a pickle becomes.

    Subclasses are made per name by :class:`SafeUnpickler`; :attr:`qualname`
    is the name the pickle used. An instance records the arguments it was
    made with and every piece of state the pickle gives it; it has no
    behaviour (no iteration, no comparison by value), so no allowlisted
    constructor can be tricked into doing work on it.
    """

    qualname: ClassVar[str] = "?"
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    state: Any
    items: list[tuple[Any, Any]]
    elements: list[Any]

    def __new__(cls, *args: Any, **kwargs: Any) -> Opaque:
        self = object.__new__(cls)
        self.args, self.kwargs, self.state, self.items, self.elements = args, dict(kwargs), None, [], []
        return self

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """Everything was recorded by __new__ (NEWOBJ calls only __new__)."""

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __setitem__(self, key: Any, value: Any) -> None:
        self.items.append((key, value))

    def append(self, value: Any) -> None:
        self.elements.append(value)

    def extend(self, values: Any) -> None:
        if not isinstance(values, (list, tuple)):
            raise TypeError("extend() takes a list")
        self.elements.extend(values)

    def add(self, value: Any) -> None:
        self.elements.append(value)

    def __call__(self, *args: Any, **kwargs: Any) -> OpaqueCall:
        return OpaqueCall(self, args, kwargs)

    def __repr__(self) -> str:
        return f"<{self.qualname} (not imported)>"


class OpaqueCall(Opaque):
    """The recorded result of calling an :class:`Opaque` instance."""

    qualname = "<call>"

    def __new__(cls, *args: Any, **kwargs: Any) -> OpaqueCall:
        self = super().__new__(cls, *args, **kwargs)
        assert isinstance(self, OpaqueCall)
        return self


def opaque_fields(value: Opaque) -> dict[str, Any]:
    """The named state of an opaque object: its __dict__ (BUILD's state, or the
    dict half of a (state, slots) pair), its keyword arguments and its dict items."""
    fields: dict[str, Any] = {}
    state = value.state
    if isinstance(state, tuple) and len(state) == 2 and (state[0] is None or isinstance(state[0], dict)):
        for part in state:
            if isinstance(part, dict):
                fields.update((str(k), v) for k, v in part.items())
    elif isinstance(state, dict):
        fields.update((str(k), v) for k, v in state.items())
    fields.update(value.kwargs)
    fields.update((str(k), v) for k, v in value.items if isinstance(k, (str, int)))
    return fields


# --- numpy, from bytes only ----------------------------------------------------------

_NUMPY_CODE = re.compile(r"^[<>|=]?(b1|[iu][1248]|f[248]|c(8|16)|\?|O8?|[bBhHiIlLqQefdgFD])$")


class NumpyDtype:
    """numpy.dtype(name, align, copy) as a pickle builds it; BUILD may set the
    byte order. Kept apart from numpy until used: calling numpy's own
    dtype.__setstate__ would mutate numpy's shared builtin dtypes."""

    def __init__(self, name: Any, align: Any = False, copy: Any = True) -> None:
        if not isinstance(name, str) or not _NUMPY_CODE.match(name):
            raise UnreadablePickle(f"unsupported numpy dtype {name!r}")
        self.name = name
        self.byteorder: str | None = None
        self.structured = False

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) >= 2 and state[1] in ("<", ">", "|", "="):
            self.byteorder = state[1]
        if isinstance(state, tuple) and len(state) >= 5 and (state[2] is not None or state[3] is not None):
            self.structured = True

    def to_numpy(self) -> np.dtype[Any]:
        if self.structured:
            raise UnreadablePickle("structured numpy dtypes are not read")
        dtype = np.dtype(self.name)
        if self.byteorder == "<" and dtype.itemsize > 1:
            dtype = dtype.newbyteorder("<")
        elif self.byteorder == ">" and dtype.itemsize > 1:
            dtype = dtype.newbyteorder(">")
        return dtype


def _array_from_bytes(raw: Any, dtype: np.dtype[Any], shape: Any, fortran: bool) -> np.ndarray:
    if isinstance(raw, str):  # Python 2 pickles carry bytes as latin-1 text
        raw = raw.encode("latin1")
    if not isinstance(raw, (bytes, bytearray)):
        raise UnreadablePickle("numpy array data is not bytes")
    dims = _dims(shape)
    if dtype.hasobject:
        raise UnreadablePickle("object arrays are not read from bytes")
    if math.prod(dims) * dtype.itemsize != len(raw):
        raise UnreadablePickle(
            f"numpy array of shape {dims} needs {math.prod(dims) * dtype.itemsize} bytes, the pickle holds {len(raw)}"
        )
    return np.frombuffer(bytes(raw), dtype=dtype).reshape(dims, order="F" if fortran else "C")


def _dims(shape: Any) -> tuple[int, ...]:
    if isinstance(shape, int) and not isinstance(shape, bool):
        shape = (shape,)
    if not isinstance(shape, (tuple, list)) or len(shape) > MAX_NDIM:
        raise UnreadablePickle(f"bad array shape {shape!r}")
    if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape):
        raise UnreadablePickle(f"bad array shape {shape!r}")
    return tuple(shape)


class NumpyArray:
    """numpy.core.multiarray._reconstruct(ndarray, shape, typecode): the
    array itself arrives with BUILD; :func:`resolve` gives it."""

    def __init__(self, cls: Any = None, shape: Any = (0,), typecode: Any = b"b") -> None:
        self.value: np.ndarray | list[Any] | None = None

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise UnreadablePickle("bad numpy array state")
        shape, dtype, fortran, raw = state[-4:]
        if not isinstance(dtype, NumpyDtype):
            raise UnreadablePickle("numpy array without a dtype")
        if dtype.name.lstrip("<>|=").startswith("O"):
            self.value = list(raw) if isinstance(raw, list) else None  # object arrays arrive as a list of items
            return
        self.value = _array_from_bytes(raw, dtype.to_numpy(), shape, bool(fortran))


def _numpy_scalar(dtype: Any, data: Any = None) -> Any:
    if not isinstance(dtype, NumpyDtype):
        raise UnreadablePickle("numpy scalar without a dtype")
    if dtype.name.lstrip("<>|=").startswith("O"):
        return data
    return _array_from_bytes(data, dtype.to_numpy(), (), False)[()].item()


def _numpy_frombuffer(buffer: Any, dtype: Any, shape: Any, order: Any = "C") -> np.ndarray:
    if isinstance(buffer, pickle.PickleBuffer):
        buffer = bytes(buffer.raw())
    if not isinstance(dtype, NumpyDtype):
        raise UnreadablePickle("numpy buffer without a dtype")
    return _array_from_bytes(buffer, dtype.to_numpy(), shape, order == "F")


def resolve(value: Any) -> Any:
    """A value as the pickle meant it: a numpy array for a rebuilt array."""
    return value.value if isinstance(value, NumpyArray) else value


# --- other data constructors -----------------------------------------------------------


def _codecs_encode(text: Any, encoding: Any = "utf-8", errors: Any = "strict") -> bytes:
    """How protocols 0–2 write bytes: _codecs.encode(latin-1 text, 'latin1')."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1", "utf-8", "utf8", "ascii"):
        raise UnreadablePickle("_codecs.encode is read only for text in latin-1, utf-8 or ascii")
    return text.encode(encoding)


def _bytearray(data: Any = b"", encoding: Any = None) -> bytearray:
    if isinstance(data, str) and encoding in ("latin1", "latin-1"):
        return bytearray(data.encode("latin1"))
    if isinstance(data, (bytes, bytearray)):
        return bytearray(data)
    raise UnreadablePickle("bytearray is read only from bytes")


_SEQUENCES = (list, tuple, set, frozenset, str, bytes, dict)


class Refused(Opaque):
    """A data constructor called on something other than builtin data (an
    opaque object, say): the call is recorded, not made."""

    qualname = "<refused call>"


def _from_sequence(kind: Callable[[Any], Any]) -> Callable[..., Any]:
    """set/frozenset/list/tuple/... of builtin data only, so an opaque
    object is never iterated and no lazy source can be expanded."""

    def build(items: Any = ()) -> Any:
        return kind(items) if isinstance(items, _SEQUENCES) else Refused(kind, items)

    return build


def _ordered_dict(items: Any = ()) -> Any:
    return OrderedDict(cast(Any, items)) if isinstance(items, _SEQUENCES) else Refused(OrderedDict, items)


def _defaultdict(factory: Any = None, *items: Any) -> Any:
    """A plain dict: the default factory is a callable and is never kept."""
    if not items:
        return {}
    return dict(cast(Any, items[0])) if isinstance(items[0], _SEQUENCES) else Refused(dict, items[0])


def _reconstructor(cls: Any, base: Any, state: Any = None) -> Any:
    """copyreg._reconstructor (protocols 0 and 1): only opaque classes are
    instantiated (with the base's state recorded); the base is never called."""
    if isinstance(cls, type) and issubclass(cls, Opaque):
        return cls.__new__(cls, *(() if state is None else (state,)))
    raise UnreadablePickle(f"copyreg._reconstructor of {cls!r}")


def _newobj(cls: Any, *args: Any, **kwargs: Any) -> Any:
    if isinstance(cls, type) and issubclass(cls, Opaque):
        return cls.__new__(cls, *args, **kwargs)
    raise UnreadablePickle(f"copyreg.__newobj__ of {cls!r}")


def _newobj_ex(cls: Any, args: Any, kwargs: Any) -> Any:
    return _newobj(cls, *tuple(args), **dict(kwargs))


def _numpy_names(*modules: str) -> dict[str, Any]:
    names: dict[str, Any] = {}
    for module in modules:
        names[f"{module}.multiarray._reconstruct"] = NumpyArray
        names[f"{module}.multiarray.scalar"] = _numpy_scalar
        names[f"{module}.numeric._frombuffer"] = _numpy_frombuffer
    return names


#: name -> the constructor that stands for it. Plain builtin types appear only
#: where calling them on any pickle value is harmless and bounded by the input.
BASE_ALLOWLIST: Mapping[str, Any] = {
    "builtins.set": _from_sequence(set),
    "builtins.frozenset": _from_sequence(frozenset),
    "builtins.list": _from_sequence(list),
    "builtins.tuple": _from_sequence(tuple),
    "builtins.complex": complex,
    "builtins.slice": slice,
    "builtins.object": object,
    "builtins.bytearray": _bytearray,
    "builtins.float": float,
    "builtins.bool": bool,
    "_codecs.encode": _codecs_encode,
    "collections.OrderedDict": _ordered_dict,
    "collections.Counter": _from_sequence(Counter),
    "collections.defaultdict": _defaultdict,
    "copyreg._reconstructor": _reconstructor,
    "copyreg.__newobj__": _newobj,
    "copyreg.__newobj_ex__": _newobj_ex,
    "numpy.dtype": NumpyDtype,
    **_numpy_names("numpy.core", "numpy._core"),
}
