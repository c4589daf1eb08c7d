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
import pickle
import struct
from collections.abc import Callable, Mapping
from typing import IO, Any

from grokspec.scan.pickle_data import (
    BASE_ALLOWLIST,
    MAX_NDIM,
    NumpyArray,
    Opaque,
    OpaqueCall,
    UnreadablePickle,
    opaque_fields,
    resolve,
)

__all__ = [
    "BASE_ALLOWLIST",
    "MAX_NDIM",
    "Constructor",
    "NumpyArray",
    "Opaque",
    "OpaqueCall",
    "SafeUnpickler",
    "UnreadablePickle",
    "opaque_fields",
    "resolve",
    "safe_load",
]

#: Modules whose every name is a way to run code or touch the system.
_SUSPICIOUS_MODULES = frozenset((
    "os", "posix", "nt", "subprocess", "sys", "shutil", "socket", "importlib", "runpy", "code", "codeop", "pty",
    "ctypes", "webbrowser", "pickle", "_pickle", "marshal", "types", "multiprocessing", "signal", "platform",
    "commands", "popen2", "timeit", "pdb", "bdb",
))  # fmt: skip
_SUSPICIOUS_NAMES = frozenset((
    "builtins.eval", "builtins.exec", "builtins.compile", "builtins.getattr", "builtins.setattr", "builtins.delattr",
    "builtins.__import__", "builtins.open", "builtins.input", "builtins.breakpoint", "builtins.globals",
    "builtins.locals", "builtins.vars", "builtins.exit", "builtins.quit", "builtins.help", "operator.attrgetter",
    "operator.methodcaller", "operator.itemgetter", "functools.partial", "functools.reduce", "io.open",
    "torch.load", "numpy.load", "numpy.testing._private.utils.runstring",
))  # fmt: skip


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
