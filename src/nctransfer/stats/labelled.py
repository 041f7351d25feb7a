"""Labelled features of one feature set with lazily cached class statistics: the workspace shared by the collapse
metrics (:func:`nctransfer.metrics.prepare` accepts it) and the transferability scores
(:class:`nctransfer.transferability.Workspace` extends it with scatter matrices, eigendecompositions and PCA).

Validated once (shape, finiteness, labels, class sizes); every derived quantity is computed here, on first use,
and cached: the float64 copy ``X`` (the input array itself when it already is C-contiguous float64), class
counts, the global mean ``mu_G``, class means ``mu_k``, centred class means ``mu_k - mu_G`` (summed from
centred samples in row chunks: exact for large offsets, memory ``O(chunk * d)``), centred features ``X - mu_G``
(whole, or chunk by chunk for the metrics' streaming passes), the class-indicator matrix and, in the Gram domain
(``gram_domain``: ``N < d``, where covariance computations use the ``N x N`` matrix ``Xc Xc^T``), that matrix.
CUDA tensors stay on the GPU for the means (copied to the host on first use of ``X``).
"""

from __future__ import annotations

from typing import Any, Callable, Hashable, Iterator

import numpy as np
import scipy.sparse as sp
from scipy.linalg import blas

from nctransfer.exceptions import InputValueError, NCTransferError
from nctransfer.utils.validation import (
    LabelEncoder,
    check_class_sizes,
    check_features,
    check_labels,
    check_n_classes,
    is_torch,
    to_numpy,
)

CHUNK_ROWS = 4096  # rows per block of the chunked passes over the samples



def prefix_errors(fname: str | None) -> Callable:
    """``exc -> exc`` with the scoring function's name in front of its message (to re-raise; unchanged when
    ``fname`` is ``None`` or the message already starts with it)."""
    def wrap(exc: NCTransferError) -> NCTransferError:
        msg = str(exc)
        if fname is None or msg.startswith(f"{fname}:"):
            return exc
        return type(exc)(f"{fname}: {msg}")
    return wrap


def encode_labels(y_np: np.ndarray) -> tuple[list[Hashable], np.ndarray]:
    """Sorted classes and codes ``0..K-1`` (first-seen order when labels cannot be sorted)."""
    try:
        classes, codes = np.unique(y_np, return_inverse=True)
        return [c.item() if isinstance(c, np.generic) else c for c in classes], codes.reshape(-1).astype(np.int64)
    except TypeError:
        enc = LabelEncoder()
        raw = enc.encode(np.asarray(y_np, dtype=object))
        order = enc.sorted_order()
        rank = np.empty(len(order), dtype=np.int64)
        rank[order] = np.arange(len(order))
        return [enc.classes[i] for i in order], rank[raw]


def class_indicator(codes: np.ndarray, K: int) -> sp.csr_matrix:
    """Sparse ``[K, N]`` class-indicator matrix of codes ``[N]`` in ``0..K-1``."""
    n = len(codes)
    return sp.csr_matrix((np.ones(n), (codes, np.arange(n))), shape=(K, n))


def class_sums(values: np.ndarray, codes: np.ndarray, K: int) -> np.ndarray:
    """``[K, m]`` per-class sums of the rows of ``values [N, m]`` with codes ``[N]`` in ``0..K-1`` (a sparse
    class-indicator product, ``O(N m)``)."""
    return np.asarray(class_indicator(codes, K) @ values)


class LabelledFeatures:
    """Validated features ``[N, d]`` and labels ``[N]`` with lazily cached class statistics (see module doc).

    Attributes:
        n, d, K: samples, feature width, classes. ``classes``: sorted labels; ``codes``: ``[N]`` in ``0..K-1``.
        counts: ``n_k`` (float64 ``[K]``). ``fname``: the name errors are prefixed with.

    Examples:
        >>> lf = LabelledFeatures([[0.0, 1.0], [2.0, 1.0], [4.0, 3.0], [6.0, 3.0]], ["a", "a", "b", "b"])
        >>> lf.class_means.tolist(), lf.counts.tolist()
        ([[1.0, 1.0], [5.0, 3.0]], [2.0, 2.0])
    """

    def __init__(self, X: Any, y: Any, fname: str | None = "features", *, labels_required: bool = True,
                 name: str = "X") -> None:
        """``fname``: the prefix of error messages (``None``: none); ``name``: what the features are called in them."""
        wrap = prefix_errors(fname)
        try:
            Xv = check_features(X, name)
            self._torch = Xv if (is_torch(Xv) and Xv.device.type != "cpu") else None
            self.n, self.d = int(Xv.shape[0]), int(Xv.shape[1])
            self._raw = None if self._torch is not None else to_numpy(Xv)  # validated, input dtype
            self._X: np.ndarray | None = None
            if y is None:
                if labels_required:
                    raise InputValueError("labels y are required; got y=None.")
                self.classes, self.codes, self.K = [], np.zeros(self.n, dtype=np.int64), 0
            else:
                y_np = check_labels(y, self.n, "y")
                self.classes, self.codes = encode_labels(y_np)
                self.K = len(self.classes)
                check_n_classes(self.K, 2, "y")
                check_class_sizes(np.bincount(self.codes, minlength=self.K), "y")
        except NCTransferError as exc:
            raise wrap(exc) from None
        self._cache: dict[str, Any] = {}
        self.fname = fname

    # -------------------------------------------------------------------------------------------- basics
    def cached(self, key: str, fn: Callable[[], Any]) -> Any:
        if key not in self._cache:
            self._cache[key] = fn()
        return self._cache[key]

    @property
    def X(self) -> np.ndarray:
        """Features as C-contiguous float64 numpy ``[N, d]`` (copied from the GPU on first use)."""
        if self._X is None:
            src = self._raw if self._torch is None else to_numpy(self._torch.double())
            self._X = np.ascontiguousarray(src, dtype=np.float64)
        return self._X

    @property
    def samples(self) -> np.ndarray:
        """The validated features as numpy ``[N, d]`` in their own dtype (``X`` once converted): what chunked passes
        read, converting one block at a time to float64."""
        if self._X is not None or self._raw is None:
            return self.X
        return self._raw

    def chunks(self, centred: bool = True, rows: int = CHUNK_ROWS) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(X_block - mu_G, codes_block)`` (``centred=False``: the raw block) as fresh float64 arrays of
        ``rows`` rows (callers may modify them in place): the centred features without an ``[N, d]`` copy."""
        X = self.samples
        mean = self.mean if centred else None
        for start in range(0, self.n, rows):
            X64 = np.array(X[start:start + rows], dtype=np.float64)
            if mean is not None:
                X64 -= mean
            yield X64, self.codes[start:start + rows]

    @property
    def on_gpu(self) -> bool:
        return self._torch is not None

    @property
    def counts(self) -> np.ndarray:
        return self.cached("counts", lambda: np.bincount(self.codes, minlength=self.K).astype(np.float64))

    @property
    def priors(self) -> np.ndarray:
        return self.counts / self.n

    def indicator(self) -> Any:
        """Sparse ``[K, N]`` class-indicator matrix."""
        return self.cached("indicator", lambda: class_indicator(self.codes, self.K))

    def class_sum(self, V: np.ndarray) -> np.ndarray:
        """Per-class sums of the rows of ``V`` ``[N, m]`` -> ``[K, m]``."""
        return np.asarray(self.indicator() @ V)

    @property
    def mean(self) -> np.ndarray:
        def compute() -> np.ndarray:
            if self.on_gpu:
                return to_numpy(self._torch.double().mean(0))
            return self.samples.mean(0, dtype=np.float64)  # equal to X.mean(0), without converting X first
        return self.cached("mean", compute)

    @property
    def class_means(self) -> np.ndarray:
        """``mu_k`` ``[K, d]`` (raw)."""
        return self.cached("class_means", lambda: self.centred_class_means + self.mean)

    @property
    def centred_class_means(self) -> np.ndarray:
        """``mu_k - mu_G`` ``[K, d]``, summed from centred samples (exact for large offsets)."""
        def compute() -> np.ndarray:
            if self.on_gpu:
                import torch  # deferred: only CUDA tensors reach this branch; the core never loads torch

                Xc = self._torch.double() - torch.as_tensor(self.mean, device=self._torch.device)
                out = torch.zeros((self.K, self.d), dtype=torch.float64, device=Xc.device)
                out.index_add_(0, torch.as_tensor(self.codes, device=Xc.device), Xc)
                return to_numpy(out) / self.counts[:, None]
            total = np.zeros((self.K, self.d))
            for Xc, codes in self.chunks():
                total += class_sums(Xc, codes, self.K)
            return total / self.counts[:, None]
        return self.cached("centred_class_means", compute)

    @property
    def Xc(self) -> np.ndarray:
        """Centred features ``X - mu_G`` ``[N, d]``."""
        return self.cached("Xc", lambda: self.X - self.mean)

    @property
    def scatter(self) -> np.ndarray:
        """Total scatter ``sum_i (x_i - mu_G)(x_i - mu_G)^T = N Sigma_T`` ``[d, d]``, float64, exactly symmetric.

        Accumulated by a symmetric rank-k update (``dsyrk``) over row blocks of the centred features (the cached
        ``Xc`` when another quantity already built it, else blocks centred on the fly: no ``[N, d]`` copy), so the
        metrics' ``Sigma_T`` and the scores' scatter are one computation on a shared workspace.
        """
        def compute() -> np.ndarray:
            acc = np.zeros((self.d, self.d), order="F")
            if "Xc" in self._cache:
                Xc = self._cache["Xc"]
                blocks: Iterator[np.ndarray] = (Xc[s:s + CHUNK_ROWS] for s in range(0, self.n, CHUNK_ROWS))
            else:
                blocks = (b for b, _ in self.chunks(True, CHUNK_ROWS))
            for B in blocks:
                out = blas.dsyrk(1.0, B.T, beta=1.0, c=acc, overwrite_c=1)
                if out is not acc:
                    acc = out
            full = acc + acc.T  # dsyrk wrote the upper triangle only
            idx = np.arange(self.d)
            full[idx, idx] -= acc[idx, idx]
            return full
        return self.cached("scatter", compute)

    @property
    def gram_domain(self) -> bool:
        """True when ``N < d``: covariance quantities are computed from the ``N x N`` Gram matrix."""
        return self.n < self.d

    @property
    def gram_c(self) -> np.ndarray:
        """``Xc Xc^T`` ``[N, N]`` (exactly symmetric; the Gram-domain counterpart of the ``d x d`` scatter)."""
        def compute() -> np.ndarray:
            G = self.Xc @ self.Xc.T
            return (G + G.T) * 0.5
        return self.cached("gram_c", compute)


__all__ = ["CHUNK_ROWS", "LabelledFeatures", "class_indicator", "class_sums", "encode_labels", "prefix_errors"]
