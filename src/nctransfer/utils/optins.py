"""Process-wide opt-ins that the command line turns on for everything a command runs, however deep inside a
pipeline a model or a dataset is loaded: loading model files that need full unpickling (``--allow-pickle``, read by
:func:`nctransfer.models.load_model`) and skipping image files that cannot be decoded (``--skip-bad-images``, read
by :func:`nctransfer.data.load_dataset`).

This module imports nothing heavy, so the command line imports it at start-up (``nctransfer.models`` and
``nctransfer.data.datasets`` need PyTorch). The context managers are re-exported there as
``nctransfer.models.loading.pickle_allowed`` and ``nctransfer.data.datasets.skip_bad_images``.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

_STATE = {"allow_pickle": False, "skip_bad_images": False}


@contextlib.contextmanager
def pickle_allowed(allowed: bool = True) -> Iterator[None]:
    """Within this block ``load_model("file:...")`` behaves as if ``allow_pickle=allowed`` was passed (used by the
    CLI's ``--allow-pickle`` so that commands that load models deep inside a pipeline honour the opt-in)."""
    old, _STATE["allow_pickle"] = _STATE["allow_pickle"], bool(allowed)
    try:
        yield
    finally:
        _STATE["allow_pickle"] = old


def pickle_is_allowed() -> bool:
    """Whether the caller is inside a :func:`pickle_allowed` block."""
    return _STATE["allow_pickle"]


@contextlib.contextmanager
def skip_bad_images(enabled: bool = True) -> Iterator[None]:
    """Within this block :func:`~nctransfer.data.load_dataset` skips unreadable image files as if
    ``skip_bad_images=True`` was passed (the CLI's ``--skip-bad-images`` uses it so that pipelines that load data
    deep inside honour it)."""
    old, _STATE["skip_bad_images"] = _STATE["skip_bad_images"], bool(enabled)
    try:
        yield
    finally:
        _STATE["skip_bad_images"] = old


def skipping_bad_images(skip_bad_images: bool | None = None) -> bool:
    """Whether to skip unreadable image files: ``skip_bad_images`` when given, else (None) whether the caller is
    inside a :func:`skip_bad_images` block."""
    return bool(skip_bad_images) or (skip_bad_images is None and _STATE["skip_bad_images"])


__all__ = ["pickle_allowed", "pickle_is_allowed", "skip_bad_images", "skipping_bad_images"]
