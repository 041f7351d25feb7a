"""Typed settings of a layer-wise analysis: :class:`LayersConfig`, what :func:`nctransfer.layers.analyze` reads.

The model and the two datasets are the analysis' inputs; every other argument of ``analyze`` is a field here with
the same name, default and meaning::

    cfg = LayersConfig(taps="blocks.*", probe=False, seed=1)
    analyze(model, train, test, config=cfg)
    LayersConfig.from_yaml(cfg.to_yaml()) == cfg
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from nctransfer.exceptions import InputValueError
from nctransfer.metrics.probe import DEFAULT_C_GRID
from nctransfer.stages import CollapseSettings, ExtractionSettings, ProbeSettings
from nctransfer.stages.settings import PROBE_VAL_FRACTION
from nctransfer.utils.configs import ConfigBase, opt

TOKEN_POOLS = ("mean", "cls")


@dataclass
class LayersConfig(ConfigBase):
    """Settings of :func:`~nctransfer.layers.analyze` (see its docstring for each one's full meaning)."""

    taps: Any = opt("all", "taps to analyse: 'all', 'penultimate' or a selector of nctransfer.features.select_taps")
    metrics: Any = opt(None, "collapse metric names or patterns (None: every applicable one)")
    metric_options: Any = opt(None, "per-metric options, e.g. {'vci': {'ridge': 0.1}}")
    probe: bool = opt(True, "fit a linear probe per tap (False: nearest-class-centre accuracy only)")
    C_grid: Any = opt(DEFAULT_C_GRID, "inverse L2 strengths tried by the probe")
    probe_val_fraction: float = opt(PROBE_VAL_FRACTION, "share of the training split held out to choose C")
    probe_max_iter: int = opt(500, "iterations of the probe")
    seed: int = opt(0, "seed of the probe's validation split")
    batch_size: int = opt(64, "extraction batch size")
    device: Any = opt(None, "extraction device (None: CUDA when available)")
    dtype: Any = opt(None, "extraction precision: 'float32', 'float16', 'bfloat16' (None: float32; checked by "
                           "nctransfer.extract)")
    token_pool: str = opt("mean", "transformer token pooling: 'mean' or 'cls'")
    cache_dir: Any = opt(None, "feature cache directory (None: the default cache)")
    no_cache: bool = opt(False, "neither read nor write the feature cache")
    progress: bool = opt(True, "progress bars")
    threads: Any = opt(None, "torch and BLAS threads during the analysis (None: library defaults)")
    pool: Any = opt("auto", "pooling of spatial/token maps (see nctransfer.features)")

    def __post_init__(self) -> None:
        t = self.threads
        if t is not None and (isinstance(t, bool) or not isinstance(t, int) or t < 1):
            raise InputValueError(f"threads must be a positive integer or None; got {t!r}.")
        for name, low in (("batch_size", 1), ("probe_max_iter", 1), ("seed", 0)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise InputValueError(f"{name} must be an integer >= {low}; got {v!r}.")
        f = self.probe_val_fraction
        if isinstance(f, bool) or not isinstance(f, (int, float)) or not 0.0 < f < 1.0:
            raise InputValueError(f"probe_val_fraction must be a number in (0, 1); got {f!r}.")
        if self.token_pool not in TOKEN_POOLS:
            raise InputValueError(f"token_pool must be one of {TOKEN_POOLS}; got {self.token_pool!r}.")
        if self.metric_options is not None and not isinstance(self.metric_options, Mapping):
            raise InputValueError(f"metric_options must be a mapping metric -> options; got "
                                  f"{type(self.metric_options).__name__}.")
        if self.C_grid is not None:
            self.C_grid = tuple(float(c) for c in self.C_grid)
        if isinstance(self.metrics, (list, tuple)):
            self.metrics = list(self.metrics)
        for name in ("probe", "no_cache", "progress"):
            setattr(self, name, bool(getattr(self, name)))

    # ------------------------------------------------------------------ the settings of each shared stage
    def extraction_settings(self) -> ExtractionSettings:
        """Settings of the extraction stage (:func:`nctransfer.stages.extract_splits`)."""
        return ExtractionSettings(batch_size=self.batch_size, device=self.device, dtype=self.dtype,
                                  token_pool=self.token_pool, pool=self.pool, cache_dir=self.cache_dir,
                                  no_cache=self.no_cache, progress=self.progress)

    def collapse_settings(self) -> CollapseSettings:
        """Settings of the collapse stage (:func:`nctransfer.stages.collapse_values`)."""
        return CollapseSettings(metrics=self.metrics, options=self.metric_options)

    def probe_settings(self) -> ProbeSettings:
        """Settings of the linear probe (:func:`nctransfer.stages.probe_candidate`)."""
        return ProbeSettings(C_grid=self.C_grid, max_iter=self.probe_max_iter, seed=self.seed,
                             val_fraction=self.probe_val_fraction)


__all__ = ["LayersConfig"]
