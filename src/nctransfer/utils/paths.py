"""Checks of input and output locations that run before any computation and create nothing.

Every failure is one :class:`~nctransfer.exceptions.InputValueError` (or :class:`NotFoundError` for a missing
input) naming the argument, the path and what is wrong: a directory where a file is expected (and the reverse), a
parent that is a file, a location that cannot be written.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from nctransfer.exceptions import InputValueError, NotFoundError


def check_input_file(path: str | os.PathLike, what: str = "input file") -> Path:
    """Return ``path`` if it is an existing readable file.

    Raises:
        NotFoundError: it does not exist. InputValueError: it is a directory, or it cannot be read.
    """
    p = Path(path).expanduser()
    if p.is_dir():
        raise InputValueError(f"{what} {str(p)!r} is a directory; expected a file.")
    if not p.exists():
        raise NotFoundError(f"{what} {str(p)!r} does not exist.")
    if not p.is_file():
        raise InputValueError(f"{what} {str(p)!r} is not a regular file.")
    if not os.access(p, os.R_OK):
        raise InputValueError(f"{what} {str(p)!r} is not readable (permission denied).")
    return p


def _existing_ancestor(p: Path, what: str) -> Path:
    """The nearest existing ancestor of ``p`` (which must be a writable directory)."""
    for parent in p.parents:
        if parent.exists():
            if not parent.is_dir():
                raise InputValueError(f"{what}: cannot create {str(p)!r}: {str(parent)!r} is a file, not a "
                                      "directory.")
            return parent
    return Path.cwd()  # pragma: no cover - a relative path always has '.' as an ancestor


def _probe_writable(directory: Path, what: str, target: Path) -> None:
    """Create and remove a temporary file in ``directory`` (``os.access`` is wrong under root and on some mounts)."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".nctransfer-write-test-", dir=directory)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise InputValueError(f"{what}: cannot write {str(target)!r}: {str(directory)!r} is not writable "
                              f"({exc.strerror or exc}).") from None


def check_output_file(path: str | os.PathLike, what: str = "output file") -> Path:
    """Check that a file can be written at ``path`` (missing parent directories would be created), creating
    nothing.

    Raises:
        InputValueError: ``path`` is a directory, a parent is a file, or the location is not writable.
    """
    p = Path(path).expanduser()
    if p.is_dir():
        raise InputValueError(f"{what}: {str(p)!r} is a directory; expected a file path.")
    if p.exists():
        _probe_writable(p.parent, what, p)
        if not os.access(p, os.W_OK):
            raise InputValueError(f"{what}: {str(p)!r} exists and is not writable.")
        return p
    _probe_writable(_existing_ancestor(p, what), what, p)
    return p


def check_output_dir(path: str | os.PathLike, what: str = "output directory") -> Path:
    """Check that ``path`` is (or can be created as) a writable directory, creating nothing.

    Raises:
        InputValueError: ``path`` is a file, a parent is a file, or the location is not writable.
    """
    p = Path(path).expanduser()
    if p.exists():
        if not p.is_dir():
            raise InputValueError(f"{what}: {str(p)!r} exists and is not a directory.")
        _probe_writable(p, what, p)
        return p
    _probe_writable(_existing_ancestor(p, what), what, p)
    return p
