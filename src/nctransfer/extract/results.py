"""What :func:`~nctransfer.extract.extract` returns: :class:`ExtractionResult` (``{tap: TapResult}`` in forward order
plus run information) and :class:`TapResult` (a tap's statistics, width and, when stored, its features)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from nctransfer.exceptions import InputValueError
from nctransfer.stats import FeatureStats


@dataclass
class TapResult:
    """What extraction produced for one tap.

    Attributes:
        name: the tap.
        stats: :class:`~nctransfer.stats.FeatureStats` of the pooled features ``[N, dim]``.
        dim: feature width.
        features, labels: ``float32 [N, dim]`` and ``int64 [N]`` when features were stored (loaded lazily from
            the cache), else accessing them raises.
    """

    name: str
    stats: FeatureStats
    dim: int
    _features: np.ndarray | None = field(default=None, repr=False)
    _labels: np.ndarray | None = field(default=None, repr=False)
    _loader: Callable[[], tuple[np.ndarray, np.ndarray]] | None = field(default=None, repr=False)
    _batches: Callable[[], Iterator[tuple[np.ndarray, np.ndarray]]] | None = field(default=None, repr=False)

    def iter_batches(self, rows: int = 4096) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """The stored ``(features [b, dim], labels [b])`` in order, one feature-store shard (or ``rows`` rows of
        in-memory features) at a time: the re-iterable source of the streaming scores
        (``nctransfer.transferability.streaming.stream_score(name, tap_result.iter_batches)``), which never hold
        ``N x dim``."""
        if self._batches is not None and self._features is None:
            yield from self._batches()
            return
        X, y = self.features, self.labels
        for s in range(0, len(y), max(1, int(rows))):
            yield X[s:s + rows], y[s:s + rows]

    @property
    def has_features(self) -> bool:
        return self._features is not None or self._loader is not None

    def _load(self) -> None:
        if self._features is None:
            if self._loader is None:
                raise InputValueError(f"tap {self.name!r}: features were not stored; call extract(..., "
                                      "store_features=True).")
            self._features, self._labels = self._loader()

    @property
    def features(self) -> np.ndarray:
        self._load()
        return self._features  # type: ignore[return-value]

    @property
    def labels(self) -> np.ndarray:
        self._load()
        return self._labels  # type: ignore[return-value]


class ExtractionResult(Mapping):
    """``{tap: TapResult}`` in forward order, plus run information.

    Attributes:
        taps: tap names; n_samples: N; from_cache: True if nothing was computed; resumed_shards: shards reused
        from an interrupted run; computed_samples: images actually passed through the model; cache_path: the
        cache entry directory (or None); seconds: wall time; key: the cache key components.
    """

    def __init__(self, results: dict[str, TapResult], *, n_samples: int, from_cache: bool, resumed_shards: int,
                 computed_samples: int, cache_path: Path | None, seconds: float, key: dict[str, Any]) -> None:
        self._results = results
        self.taps = list(results)
        self.n_samples = n_samples
        self.from_cache = from_cache
        self.resumed_shards = resumed_shards
        self.computed_samples = computed_samples
        self.cache_path = cache_path
        self.seconds = seconds
        self.key = key

    def __getitem__(self, tap: str) -> TapResult:
        return self._results[tap]

    def __iter__(self) -> Iterator[str]:
        return iter(self._results)

    def __len__(self) -> int:
        return len(self._results)

    def stats(self) -> dict[str, FeatureStats]:
        return {t: r.stats for t, r in self._results.items()}

    def __repr__(self) -> str:
        return (f"ExtractionResult(taps={len(self.taps)}, n={self.n_samples}, from_cache={self.from_cache}, "
                f"resumed_shards={self.resumed_shards}, seconds={self.seconds:.2f})")


__all__ = ["ExtractionResult", "TapResult"]
