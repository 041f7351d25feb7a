"""One way to limit the threads of a block of work: torch's intra-op threads and the BLAS/OpenMP pools.

Small matrix products and tiny forwards run as fast on one thread, and on a loaded machine extra BLAS threads
spin-wait: on a busy 2-core machine one thread was measured faster than two for probes, collapse metrics and tiny
models (seconds instead of tens of milliseconds per logistic-regression fit).
"""

from __future__ import annotations

import contextlib
import importlib
from typing import Iterator, Sequence

from threadpoolctl import ThreadpoolController, threadpool_limits

from nctransfer.exceptions import InputValueError


@contextlib.contextmanager
def limit_threads(n: int | None, *, torch_threads: bool = True, blas_only: bool = False,
                  preload: Sequence[str] = ()) -> Iterator[None]:
    """Limit the thread pools to ``n`` threads inside the block; the previous settings are restored after it.

    Args:
        n: threads; ``None`` leaves everything as it is.
        torch_threads: also set ``torch.set_num_threads(n)`` (imports torch).
        blas_only: limit only the BLAS libraries (``user_api="blas"``), not OpenMP.
        preload: modules imported before limiting: a limit applies only to libraries already loaded, and scipy and
            scikit-learn load their own BLAS/OpenMP lazily (e.g. ``("scipy.linalg", "sklearn.linear_model")``).

    Raises:
        InputValueError: ``n`` is not a positive integer or ``None``.
    """
    if n is None:
        yield
        return
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise InputValueError(f"threads must be a positive integer or None; got {n!r}.")
    for name in preload:
        importlib.import_module(name)
    torch = None
    if torch_threads:
        import torch  # deferred: torch is an optional extra and the core paths never load it
    before = torch.get_num_threads() if torch is not None else None
    if torch is not None:
        torch.set_num_threads(n)
    try:
        with threadpool_limits(limits=n, user_api="blas" if blas_only else None):
            yield
    finally:
        if torch is not None:
            torch.set_num_threads(before)


_CONTROLLER: ThreadpoolController | None = None


@contextlib.contextmanager
def limit_blas_threads(n: int) -> Iterator[None]:
    """Limit only the BLAS pools to ``n`` threads inside the block, through one cached controller: microseconds per
    entry instead of a scan of the loaded libraries, for limits entered once per score (scipy is loaded before the
    libraries are listed once: it may bundle its own BLAS; libraries loaded after that first listing are not
    limited)."""
    global _CONTROLLER
    if _CONTROLLER is None:
        import scipy.linalg  # noqa: F401  deferred (import time of the core paths); loaded before the listing

        _CONTROLLER = ThreadpoolController()
    with _CONTROLLER.limit(limits=int(n), user_api="blas"):
        yield
