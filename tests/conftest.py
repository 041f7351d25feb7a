"""Shared fixtures.

``one_thread`` (per test) and ``one_thread_module`` (per test module, so that module-scoped fixtures that train or
extract run under it too): one torch intra-op thread; ``one_thread_blas`` also one BLAS/OpenMP thread. Tiny models and
small matrices run as fast on one thread, and on a shared, oversubscribed CPU two threads can be 10-40x slower than
one. A test module opts in with ``pytestmark = pytest.mark.usefixtures("one_thread")``. torch is imported only by the modules that use
it (never here at collection time, so the core, torch-free paths stay torch-free in-process too).
"""

from __future__ import annotations

import contextlib
import sys
from typing import Iterator

import pytest
from threadpoolctl import threadpool_limits


@contextlib.contextmanager
def _single_thread(blas: bool = False) -> Iterator[None]:
    torch = sys.modules.get("torch")  # only when the test module already uses torch
    old = torch.get_num_threads() if torch is not None else None
    if torch is not None:
        torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1) if blas else contextlib.nullcontext():
            yield
    finally:
        if torch is not None:
            torch.set_num_threads(old)


@pytest.fixture
def one_thread() -> Iterator[None]:
    """One torch intra-op thread for the test."""
    with _single_thread():
        yield


@pytest.fixture
def one_thread_blas() -> Iterator[None]:
    """One torch thread and one BLAS/OpenMP thread for the test."""
    with _single_thread(blas=True):
        yield


@pytest.fixture(scope="module")
def one_thread_module() -> Iterator[None]:
    """One torch intra-op thread for the whole test module (module-scoped fixtures included)."""
    with _single_thread():
        yield
