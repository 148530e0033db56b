"""Load pickles that may only contain numpy arrays and builtin containers.

A pickle is a program: ``pickle.load`` calls any importable global the file names
(``os.system``, ``builtins.eval``, ...). ScenarioNet stores its scenarios as pickles of
plain dicts of numpy arrays, so :class:`RestrictedUnpickler` resolves only the globals
numpy needs to rebuild arrays, dtypes and scalars, plus builtin containers and scalars.
Any other global raises :class:`LogError` naming the file and the global, BEFORE it is
imported or called.

Allowed globals and why:
- ``numpy(._)core.multiarray._reconstruct``, ``numpy.ndarray``: ``ndarray.__reduce__``
  (protocols 0-4).
- ``numpy(._)core.numeric._frombuffer``: ``ndarray.__reduce_ex__(5)``.
- ``numpy.dtype``, ``numpy(._)core.multiarray.scalar``: dtypes and numpy scalars.
- ``_codecs.encode``: how protocol 2 writes ``bytes``; only the latin-1 codec is admitted.
- builtins ``dict list tuple set frozenset str int float bool complex bytes bytearray``,
  ``collections.OrderedDict``. ``None`` needs no global.
- ``collections.defaultdict``, loaded as a plain dict, when its factory is one of the builtin
  types above (or None): MetaDrive's summary code puts ``defaultdict(int)`` into
  ``metadata.number_summary``, and every file ScenarioNet's converters and MetaDrive's
  ``save_dataset`` write carries it. A factory is never called: a dict has no missing-key hook.
- ``metadrive.scenario.scenario_description.ScenarioDescription`` (a dict subclass), loaded as a dict.
Object arrays rebuild their elements through this same unpickler, so they are no way out.
"""

from __future__ import annotations

import builtins
import codecs
import collections
import io
import pickle
from pathlib import Path

import numpy as np

from drive_drail.logs.base import LogError

try:  # numpy >= 2 keeps the implementation in numpy._core; numpy 1.x in numpy.core
    from numpy._core import multiarray as _multiarray
    from numpy._core import numeric as _numeric
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core import multiarray as _multiarray  # type: ignore[no-redef]
    from numpy.core import numeric as _numeric  # type: ignore[no-redef]


def _latin1_encode(obj: str, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """``_codecs.encode`` as protocol 2 uses it for bytes; other codecs are refused."""
    if codecs.lookup(encoding).name not in ("iso8859-1", "latin-1") or not isinstance(obj, str):
        raise pickle.UnpicklingError(f"forbidden codec {encoding!r} in _codecs.encode")
    return obj.encode("latin-1", errors)


_ALLOWED: dict[tuple[str, str], object] = {
    **{(m, "_reconstruct"): _multiarray._reconstruct for m in ("numpy.core.multiarray", "numpy._core.multiarray")},
    **{(m, "scalar"): _multiarray.scalar for m in ("numpy.core.multiarray", "numpy._core.multiarray")},
    **{(m, "_frombuffer"): _numeric._frombuffer for m in ("numpy.core.numeric", "numpy._core.numeric")},
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_encode,
    ("collections", "OrderedDict"): collections.OrderedDict,
    **{
        ("builtins", name): getattr(builtins, name)
        for name in (
            "dict",
            "list",
            "tuple",
            "set",
            "frozenset",
            "str",
            "int",
            "float",
            "bool",
            "complex",
            "bytes",
            "bytearray",
        )
    },
}
_FACTORIES = tuple(obj for (mod, _), obj in _ALLOWED.items() if mod == "builtins")


def _defaultdict_as_dict(default_factory: object = None, *args: object) -> dict:
    """``collections.defaultdict(factory, ...)`` as a pickle rebuilds it, returned as a plain dict (its items
    follow as SETITEMS). The factory must be an admitted builtin type, or None: a pickle could name any
    callable here, and a defaultdict would call it on every missing key."""
    if default_factory is not None and not any(default_factory is f for f in _FACTORIES):
        raise pickle.UnpicklingError(f"forbidden defaultdict factory {default_factory!r}")
    return dict(*args)


_ALLOWED[("collections", "defaultdict")] = _defaultdict_as_dict
_ALLOWED[("metadrive.scenario.scenario_description", "ScenarioDescription")] = dict
# Protocol 0-2 pickles written by Python 2 name the builtins module "__builtin__".
_ALLOWED.update({("__builtin__", name): obj for (mod, name), obj in list(_ALLOWED.items()) if mod == "builtins"})


class ForbiddenGlobal(pickle.UnpicklingError):
    """The pickle names a global outside the allow-list."""

    def __init__(self, module: str, name: str):
        self.module, self.name = module, name
        super().__init__(f"forbidden global {module}.{name}")


class RestrictedUnpickler(pickle.Unpickler):
    """A :class:`pickle.Unpickler` whose ``find_class`` admits only ``_ALLOWED``."""

    def find_class(self, module: str, name: str) -> object:
        obj = _ALLOWED.get((module, name))
        if obj is None:
            raise ForbiddenGlobal(module, name)
        return obj

    def persistent_load(self, pid: object) -> object:
        raise pickle.UnpicklingError("persistent ids are not allowed")


def safe_loads(data: bytes, path: str | Path = "<bytes>") -> object:
    """Unpickle ``data`` with :class:`RestrictedUnpickler`; every failure is a one-line LogError."""
    if len(data) == 0:
        raise LogError(path, "empty file")
    try:
        return RestrictedUnpickler(io.BytesIO(data)).load()
    except ForbiddenGlobal as exc:
        raise LogError(path, f"{exc} (only numpy arrays and builtin containers are allowed in a pickle)") from None
    except (EOFError, pickle.UnpicklingError) as exc:
        raise LogError(path, f"truncated or corrupt pickle ({type(exc).__name__}: {exc})".replace("\n", " ")) from None
    except (ValueError, TypeError, AttributeError, IndexError, KeyError, MemoryError, OverflowError) as exc:
        raise LogError(path, f"corrupt pickle ({type(exc).__name__}: {exc})".replace("\n", " ")) from None


def safe_load(path: str | Path) -> object:
    """Read and unpickle the file at ``path`` safely (see :func:`safe_loads`)."""
    path = Path(path)
    if not path.is_file():
        raise LogError(path, "no such file")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise LogError(path, f"cannot read file ({exc})") from None
    return safe_loads(data, path)
