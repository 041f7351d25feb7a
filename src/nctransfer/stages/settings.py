"""Typed settings the stages read: one small frozen dataclass per stage, built by each runner from its own
configuration (:meth:`nctransfer.pipeline.config.RankConfig.extraction_settings` and friends,
:meth:`nctransfer.layers.config.LayersConfig.extraction_settings` and friends).

- :class:`ExtractionSettings`: how features are extracted (batch, device, precision, pooling, cache) and, for a
  runner that loads the data itself from a dataset spec, which images (per-class subsample sizes, resolution, seed);
- :class:`ScoringSettings`: which transferability scores and their per-method options;
- :class:`CollapseSettings`: which collapse metrics and their options;
- :class:`ProbeSettings`: the linear probe of the ground truth (L2 grid, validation share, iterations, seed).

They are plain values (picklable: the Ray backend ships them to its workers) and never hold data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from nctransfer.metrics.probe import DEFAULT_C_GRID

#: default share of the training features held out by the probe to choose its L2 strength
PROBE_VAL_FRACTION = 0.2


@dataclass(frozen=True)
class ExtractionSettings:
    """How the features of a model's candidates are extracted (:func:`nctransfer.extract.extract`).

    Attributes:
        batch_size, device, dtype, token_pool, pool: extraction options (``dtype=None``: float32; ``pool="auto"``:
            by the tap's output shape).
        cache_dir: feature cache directory (``None`` with ``no_cache=False``: the default cache).
        no_cache: neither read nor write the feature cache.
        progress: progress bars.
        per_class, test_per_class: seeded, class-balanced subsample sizes of the training and test splits when the
            data is loaded from a spec (``None``: everything).
        image_size: input resolution when the data is loaded from a spec (``None``: each model's own).
        seed: seed of that subsampling (the test split uses ``seed + 1``) and of random-weight controls.
    """

    batch_size: int = 64
    device: Any = None
    dtype: Any = None
    token_pool: str = "mean"
    pool: Any = "auto"
    cache_dir: Any = None
    no_cache: bool = False
    progress: bool = True
    per_class: int | None = 50
    test_per_class: int | None = 50
    image_size: int | None = None
    seed: int = 0

    def extract_options(self, progress: bool | None = None) -> dict[str, Any]:
        """Keyword arguments of :func:`nctransfer.extract.extract` (features kept in memory for the stages)."""
        return {"batch_size": self.batch_size, "device": self.device, "dtype": self.dtype,
                "token_pool": self.token_pool, "pool": self.pool, "store_features": True,
                "cache_dir": self.cache_dir, "no_cache": self.no_cache,
                "progress": self.progress if progress is None else progress}


@dataclass(frozen=True)
class ScoringSettings:
    """Which transferability scores (:mod:`nctransfer.transferability`) a run computes.

    Attributes:
        methods: ``None`` (every non-expensive method), ``"all"`` or method names in order.
        options: per-method keyword options, e.g. ``{"gbc": {"gaussian": "diagonal"}}``.
    """

    methods: Any = None
    options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class CollapseSettings:
    """Which collapse metrics (:func:`nctransfer.metrics.compute_all`) a run computes.

    Attributes:
        metrics: metric names or shell patterns (``None``: every applicable one).
        options: per-metric keyword options, e.g. ``{"vci": {"ridge": 1e-3}}``.
    """

    metrics: Any = None
    options: Mapping[str, Mapping[str, Any]] | None = None

    def is_default(self) -> bool:
        return self.metrics is None and not self.options


@dataclass(frozen=True)
class ProbeSettings:
    """The linear probe (:func:`nctransfer.metrics.probe_accuracy`): multinomial logistic regression on a
    candidate's training features, L2 strength ``C`` chosen on a stratified validation share of them, test accuracy
    on its test features.

    Attributes:
        C_grid: inverse L2 strengths tried (``None``: the probe's single default).
        max_iter: solver iterations.
        seed: seed of the validation split.
        val_fraction: share of the training features held out to choose ``C``.
    """

    C_grid: tuple[float, ...] | None = DEFAULT_C_GRID
    max_iter: int = 500
    seed: int = 0
    val_fraction: float = PROBE_VAL_FRACTION


__all__ = ["CollapseSettings", "ExtractionSettings", "PROBE_VAL_FRACTION", "ProbeSettings", "ScoringSettings"]
