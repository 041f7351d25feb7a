"""The accumulation kernels of :class:`~nctransfer.stats.FeatureStats` (a private base class): rows are centred
into a ``chunk_size x d`` buffer, class sums come from one sparse indicator product per block, and the shifted
second moment from one large BLAS ``syrk`` per full buffer (upper triangle, folded into the symmetric ``gram_``
when read); CUDA tensors are reduced on their device in float64.

The state arrays (``shift_``, ``counts_``, ``sums_``, ``sqnorms_``, ``normsums_``) and ``precision`` /
``chunk_size`` belong to :class:`FeatureStats`; this class owns the pending ``syrk`` buffer and accumulator.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.linalg import blas


class _Accumulator:
    """Buffered ``syrk`` accumulation of the second moment and per-class sums (see the module docstring)."""

    shift_: Any
    sums_: np.ndarray
    sqnorms_: np.ndarray
    normsums_: np.ndarray
    precision: str
    chunk_size: int
    dim: Any

    @property
    def gram_(self) -> np.ndarray:
        """Full symmetric shifted second moment ``[d, d]`` (pending BLAS ``syrk`` results folded in)."""
        self._flush()
        return self._gram

    @gram_.setter
    def gram_(self, value: np.ndarray) -> None:
        self._gram = value
        self._acc = None  # pending float64 upper-triangular syrk accumulator (Fortran order)
        self._buf = None  # centred rows waiting for one large syrk (shared across update calls)
        self._buf_rows = 0
        self._c32 = None  # float32 scratch result of the fast mode's ssyrk

    def _flush(self) -> None:
        """Run the pending ``syrk`` on the buffered rows and fold the accumulator into the symmetric ``_gram``."""
        self._syrk_buffer()
        if self._acc is not None:  # only the upper triangle was written (the lower one is still 0)
            acc = self._acc
            self._gram += acc
            self._gram += acc.T
            idx = np.arange(len(acc))
            self._gram[idx, idx] -= acc[idx, idx]
            self._acc = None

    def _syrk_buffer(self) -> None:
        """``acc += buf^T buf`` (upper triangle) for the buffered centred rows, then empty the buffer."""
        if not self._buf_rows:
            return
        rows = self._buf[: self._buf_rows]
        if self._acc is None:
            self._acc = np.zeros(self._gram.shape, dtype=np.float64, order="F")
        if rows.dtype == np.float64:  # exact: BLAS dsyrk accumulates in place (beta = 1)
            out = blas.dsyrk(1.0, rows.T, beta=1.0, c=self._acc, overwrite_c=1)
            if out is not self._acc:
                self._acc = out
        else:  # fast: one float32 ssyrk per buffer (into a reused scratch matrix), accumulated in float64
            if getattr(self, "_c32", None) is None or self._c32.shape != self._acc.shape:
                self._c32 = np.zeros(self._acc.shape, dtype=np.float32, order="F")
            out = blas.ssyrk(1.0, rows.T, beta=0.0, c=self._c32, overwrite_c=1)  # upper triangle; lower stays 0
            if out is not self._c32:
                self._c32 = out
            self._acc += self._c32
        self._buf_rows = 0

    def __getstate__(self) -> dict[str, Any]:
        self._flush()  # pickles and deep copies carry no pending buffer
        state = self.__dict__.copy()
        state["_buf"] = None
        state["_c32"] = None
        return state

    @staticmethod
    def _class_matrix(codes: np.ndarray, weights: np.ndarray, K: int, dtype: Any) -> Any:
        """Sparse ``[2K, B]`` matrix: rows ``k`` are class indicators, rows ``K + k`` indicators times ``weights``.

        One sparse-dense product then gives the per-class sums and weighted sums in ``O(B d)`` on one thread (a
        dense one-hot GEMM costs ``O(B K d)``, and many small multi-threaded BLAS calls stall on a busy machine).
        """
        n = len(codes)
        indices = np.empty(2 * n, dtype=np.int64)
        indices[0::2] = codes
        indices[1::2] = codes + K
        data = np.empty(2 * n, dtype=dtype)
        data[0::2] = 1.0
        data[1::2] = weights
        return sp.csc_matrix((data, indices, np.arange(0, 2 * n + 1, 2)), shape=(2 * K, n)).tocsr()

    def _update_numpy(self, X: np.ndarray, codes: np.ndarray, K: int) -> None:
        """Centre each block of rows into the row buffer (one pass), take the class sums with a sparse indicator
        product and the squared norms from it, and run one large ``syrk`` whenever ``chunk_size`` rows are buffered
        (few large BLAS calls whatever the batch size)."""
        fast = self.precision == "fast"
        if fast:
            shift32 = self.shift_.astype(np.float32)
            fast = bool(np.array_equal(shift32.astype(np.float64), self.shift_))  # else: exact path (rare)
        dtype = np.float32 if fast else np.float64
        if self._buf is None or self._buf.dtype != dtype:
            self._syrk_buffer()
            self._buf = np.empty((self.chunk_size, self.dim), dtype=dtype)
        start = 0
        while start < X.shape[0]:
            stop = min(X.shape[0], start + self.chunk_size - self._buf_rows)
            block, c = X[start:stop], codes[start:stop]
            dest = self._buf[self._buf_rows: self._buf_rows + (stop - start)]
            # 1/||x_i|| of the raw rows (accumulated in float64 in exact mode)
            sq = np.einsum("ij,ij->i", block, block) if fast else np.einsum("ij,ij->i", block, block, dtype=np.float64)
            inv = _inverse_norms(sq.astype(np.float64))
            if fast and block.dtype == np.float32:
                np.subtract(block, shift32, out=dest)  # float32 minus a float32 shift
            else:  # centre in float64 (a large offset must not eat a float32 mantissa), store in the buffer dtype
                np.subtract(block, self.shift_, out=dest, casting="same_kind")
            both = np.asarray(self._class_matrix(c, inv, K, dtype) @ dest, dtype=np.float64)
            self.sums_ += both[:K]
            # sum x_i/||x_i|| = sum (x_i - a)/||x_i|| + a * sum 1/||x_i||
            self.normsums_ += both[K:] + np.bincount(c, weights=inv, minlength=K)[:, None] * self.shift_
            self.sqnorms_ += np.bincount(c, weights=np.einsum("ij,ij->i", dest, dest), minlength=K)
            self._buf_rows += stop - start
            if self._buf_rows == self.chunk_size:
                self._syrk_buffer()
            start = stop

    def _update_torch(self, X: Any, codes: np.ndarray, K: int) -> None:
        import torch  # deferred: only CUDA tensors reach this path; the core install has no torch

        dev = X.device
        work = torch.float32 if self.precision == "fast" else torch.float64
        shift = torch.as_tensor(self.shift_, device=dev)
        c_all = torch.as_tensor(codes, device=dev)
        gram = torch.zeros(self.gram_.shape, dtype=torch.float64, device=dev)
        sums = torch.zeros((K, X.shape[1]), dtype=torch.float64, device=dev)
        normsums = torch.zeros_like(sums)
        sq = torch.zeros(K, dtype=torch.float64, device=dev)
        for start in range(0, X.shape[0], self.chunk_size):
            raw = X[start:start + self.chunk_size].detach().to(torch.float64)
            c = c_all[start:start + self.chunk_size]
            centred = raw - shift
            cw = centred.to(work)
            gram += (cw.T @ cw).to(torch.float64)
            sums.index_add_(0, c, centred)
            sq.index_add_(0, c, (centred * centred).sum(1))
            normsums.index_add_(0, c, raw / raw.norm(dim=1, keepdim=True).clamp_min(torch.finfo(torch.float64).tiny))
        self.gram_ += gram.cpu().numpy()
        self.sums_ += sums.cpu().numpy()
        self.sqnorms_ += sq.cpu().numpy()
        self.normsums_ += normsums.cpu().numpy()


def _inverse_norms(sq: np.ndarray) -> np.ndarray:
    """``1/sqrt(sq)``, with 0 for zero vectors (a zero vector contributes nothing to the unit-vector sums)."""
    inv = np.zeros_like(sq)
    nz = sq > 0
    inv[nz] = 1.0 / np.sqrt(sq[nz])
    return inv
