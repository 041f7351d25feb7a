"""Atomic file writes: a file is either the old version or the complete new one, never half-written."""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import numpy as np


def _default_mode() -> int:
    """``0o666`` minus the process umask (the mode ``open()`` would give a new file)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in the target's directory; on success it is renamed onto ``path``.

    Examples:
        >>> with atomic_path("out.npz") as tmp:   # doctest: +SKIP
        ...     np.savez(tmp, x=1)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + "".join(path.suffixes), dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp_path, _default_mode())  # mkstemp creates 0600; give the usual umask-based mode
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically and return the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically and return the path."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 hex digest of a file's bytes, read in 4 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def to_jsonable(obj: Any) -> Any:
    """A strict-JSON copy of ``obj``: NaN and ``+-inf`` become ``None`` (``null``), numpy scalars and arrays become
    Python numbers and lists, tuples become lists, paths become strings (mapping keys other than strings and
    numbers too).

    Examples:
        >>> to_jsonable({"a": float("nan"), "b": (1, float("inf")), 2: [0.5]})
        {'a': None, 'b': [1, None], 2: [0.5]}
    """
    if isinstance(obj, Mapping):
        return {(k if k is None or isinstance(k, (str, int, float)) else str(k)): to_jsonable(v)
                for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist") and not isinstance(obj, (str, bytes)):  # numpy scalar or array, CPU tensor
        return to_jsonable(obj.tolist())
    return obj


def _json_default(obj: Any) -> Any:
    """``default=`` hook of :func:`json.dumps` for objects :func:`to_jsonable` leaves alone (numpy types reached
    through other containers, paths)."""
    if isinstance(obj, (np.generic, np.ndarray)):
        return to_jsonable(obj.tolist())
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serialisable")


def dumps_json(obj: Any, *, indent: int | None = 2, default: Callable[[Any], Any] | None = _json_default,
               **kwargs: Any) -> str:
    """The one JSON encoder of nctransfer: strict JSON text of ``obj`` (see :func:`to_jsonable`; never a ``NaN`` or
    ``Infinity`` token, ``allow_nan=False``). ``default`` handles other types (e.g. ``str`` for anything)."""
    return json.dumps(to_jsonable(obj), indent=indent, default=default, allow_nan=False, **kwargs)


def write_json_atomic(path: str | os.PathLike, obj: Any, indent: int = 2) -> Path:
    """Serialise ``obj`` as strict JSON (:func:`dumps_json`: numpy scalars and arrays allowed, NaN/Inf written as
    ``null``) and write it atomically."""
    return write_text_atomic(path, dumps_json(obj, indent=indent) + "\n")
