"""A pickle reader that never runs code and needs no foreign library.

Unpickling normally imports whatever module a pickle names and calls
whatever callable it names: a checkpoint can run ``os.system``, and one
that carries a ``TrainingArguments`` or ``HookedTransformerConfig`` cannot
be read where that library is missing. :class:`SafeUnpickler` does neither:

- every name a pickle refers to goes through :meth:`SafeUnpickler.find_class`
  (the one door CPython's unpickler has to globals: GLOBAL, STACK_GLOBAL,
  INST, OBJ and the EXT opcodes all use it);
- a name on the allowlist resolves to a data constructor that grokspec
  itself implements or vets (sets, complex numbers, ordered dicts, numpy
  arrays and dtypes from raw bytes, and — through ``extra`` — torch's tensor
  rebuild functions, see :mod:`grokspec.scan.torch_pickle`); each checks its
  arguments before building anything;
- every other name becomes an :class:`Opaque` class made on the spot: calling
  it, ``__new__``, ``__setstate__``, item and list assignment only *record*
  what the pickle asked for, so the state of an unknown object is kept (and
  tensors inside it can still be found) while nothing is imported or run.

Names that are plainly code-execution primitives (``os.system``,
``builtins.eval``, ``subprocess.Popen``, ...) are collected in
:attr:`SafeUnpickler.suspicious` so that the scan can say a file asked for
them. Memory stays bounded by the input: every constructor here checks the
sizes it is given against the bytes it holds.
"""

from __future__ import annotations

import _compat_pickle
import io
import math
import pickle
import re
import struct
from collections import Counter, OrderedDict
from collections.abc import Callable, Mapping
from typing import IO, Any, ClassVar, cast

import numpy as np

__all__ = [
    "BASE_ALLOWLIST",
    "Constructor",
    "Opaque",
    "OpaqueCall",
    "SafeUnpickler",
    "UnreadablePickle",
    "opaque_fields",
    "resolve",
    "safe_load",
]

#: The most dimensions an array built from a pickle may have.
MAX_NDIM = 64
#: Modules whose every name is a way to run code or touch the system.
_SUSPICIOUS_MODULES = frozenset(
    [
        "os",
        "posix",
        "nt",
        "subprocess",
        "sys",
        "shutil",
        "socket",
        "importlib",
        "runpy",
        "code",
        "codeop",
        "pty",
        "ctypes",
        "webbrowser",
        "pickle",
        "_pickle",
        "marshal",
        "types",
        "multiprocessing",
        "signal",
        "platform",
        "ctypes.util",
        "commands",
        "popen2",
        "timeit",
        "pdb",
        "bdb",
    ]
)
_SUSPICIOUS_NAMES = frozenset(
    [
        "builtins.eval",
        "builtins.exec",
        "builtins.compile",
        "builtins.getattr",
        "builtins.setattr",
        "builtins.delattr",
        "builtins.__import__",
        "builtins.open",
        "builtins.input",
        "builtins.breakpoint",
        "builtins.globals",
        "builtins.locals",
        "builtins.vars",
        "builtins.exit",
        "builtins.quit",
        "builtins.help",
        "operator.attrgetter",
        "operator.methodcaller",
        "operator.itemgetter",
        "functools.partial",
        "functools.reduce",
        "io.open",
        "torch.load",
        "numpy.load",
    ]
)


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


#: Builtin types handed to a pickle as they are: immutable (a pickle cannot
#: set their attributes) and harmless to call on any value.
_IMMUTABLE_TYPES = (complex, slice, object, float, bool)


class Constructor:
    """An allowlisted callable as a pickle sees it: callable, nothing more.
    A pickle can BUILD (set attributes of) whatever find_class hands it, so
    grokspec's own functions and classes are never handed out bare."""

    __slots__ = ("function", "name")
    function: Callable[..., Any]
    name: str

    def __init__(self, function: Callable[..., Any], name: str) -> None:
        object.__setattr__(self, "function", function)
        object.__setattr__(self, "name", name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.function(*args, **kwargs)

    def __setattr__(self, name: str, value: Any) -> None:
        raise UnreadablePickle(f"a pickle may not change {self.name}")

    def __setstate__(self, state: Any) -> None:
        raise UnreadablePickle(f"a pickle may not change {self.name}")


class SafeUnpickler(pickle.Unpickler):
    """CPython's unpickler with every global replaced as the module docstring says.

    `extra` adds names to the allowlist; `persistent` answers persistent ids
    (torch's storages); without it a persistent id is an error.
    """

    def __init__(
        self,
        file: IO[bytes],
        *,
        extra: Mapping[str, Any] | None = None,
        persistent: Callable[[Any], Any] | None = None,
    ) -> None:
        super().__init__(file, encoding="latin1")
        self._allowed = {**BASE_ALLOWLIST, **(extra or {})}
        self._persistent = persistent
        self._opaque: dict[str, type[Opaque]] = {}
        #: Names of code-execution primitives the pickle referred to (none was run).
        self.suspicious: set[str] = set()

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        key = f"{module}.{name}"
        if key in self._allowed:
            value = self._allowed[key]
            if value in _IMMUTABLE_TYPES or not callable(value):
                return value  # immutable types, and values such as torch dtypes (slotted, frozen)
            return Constructor(value, key)
        if module.split(".")[0] in _SUSPICIOUS_MODULES or module in _SUSPICIOUS_MODULES or key in _SUSPICIOUS_NAMES:
            self.suspicious.add(key)
        if key not in self._opaque:
            self._opaque[key] = type("Opaque", (Opaque,), {"qualname": key, "__module__": __name__})
        return self._opaque[key]

    def persistent_load(self, pid: Any) -> Any:
        if self._persistent is None:
            raise UnreadablePickle("the pickle refers to external data (a persistent id) that this file cannot hold")
        return self._persistent(pid)


def safe_load(
    file: IO[bytes] | bytes,
    *,
    extra: Mapping[str, Any] | None = None,
    persistent: Callable[[Any], Any] | None = None,
) -> tuple[Any, frozenset[str]]:
    """One pickle from `file` (left positioned after it), and the suspicious
    names it referred to. Every failure is an :class:`UnreadablePickle`."""
    stream = io.BytesIO(file) if isinstance(file, bytes) else file
    unpickler = SafeUnpickler(stream, extra=extra, persistent=persistent)
    try:
        value = unpickler.load()
    except UnreadablePickle:
        raise
    except MemoryError as error:
        raise UnreadablePickle("the pickle declares more data than it holds") from error
    except RecursionError as error:
        raise UnreadablePickle("the pickle nests too deeply") from error
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, KeyError, IndexError) as error:
        raise UnreadablePickle(_describe(error)) from error
    except (OverflowError, struct.error, UnicodeError, ImportError) as error:
        raise UnreadablePickle(_describe(error)) from error
    return value, frozenset(unpickler.suspicious)


def _describe(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__
