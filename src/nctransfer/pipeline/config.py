"""Typed settings of a ranking run: :class:`RankConfig`, what :func:`nctransfer.pipeline.rank_models` reads.

The models, the data and the output directory are the run's inputs, not its settings: they stay arguments of
``rank_models``. Every other keyword of ``rank_models`` is a field here, with the same name, default and meaning::

    cfg = RankConfig(taps="all", methods=["logme", "ncti"], per_class=20)
    rank_models(["efficientnet_lite0", "efficientnet_lite1"], "fashion-mnist", config=cfg, out="runs/a")
    RankConfig.from_yaml("runs/a/config.yaml", ignore_unknown=True)   # the settings of that run, read back

``config.yaml`` of a run records the resolved settings (plus the models and the data, which ``ignore_unknown``
leaves out); fed back, it reproduces the run.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from nctransfer.exceptions import InputValueError
from nctransfer.pipeline.recommended import DEFAULT_RECOMMENDED
from nctransfer.stages import ExtractionSettings, ProbeSettings, ScoringSettings
from nctransfer.transferability import get_method
from nctransfer.utils.configs import ConfigBase, opt

#: default probe grid of the ranking ground truth: 5 inverse L2 strengths (docs/methods.md#finetuning allows a smaller grid)
PROBE_C_GRID: tuple[float, ...] = (1e-2, 1e-1, 1.0, 1e1, 1e2)
BACKENDS = ("local", "ray")
#: options of the fine-tuning comparison (linear probe vs SCL FT) when not given. A short run on a few hundred
#: images: BatchNorm statistics frozen outside the trained unit (``bn_policy="frozen"``) and a small learning rate.
#: Measured on Fashion-MNIST (EfficientNet-Lite1, 400 images, 64 px, 3 epochs): with Li et al.'s (TMLR 2024) protocol
#: (BatchNorm statistics updated on the downstream data, lr 0.05) the linear probe's test accuracy fell epoch by
#: epoch (55 -> 44 -> 37.5 %); frozen statistics and lr 0.01 gave 68 -> 71 -> 72 % (linear probe) and 71 -> 75 -> 76 %
#: (SCL FT at blocks.4.0).
FINETUNE_DEFAULTS: dict[str, Any] = {"epochs": 3, "batch_size": 32, "lr": 0.01, "backbone_lr": 0.01,
                                     "bn_policy": "frozen", "unit": "auto", "skip": "pad"}
#: options of truth="finetune" when not given (per candidate: full FT of a model, SCL FT at a tap)
TRUTH_FINETUNE_DEFAULTS: dict[str, Any] = {"epochs": 2, "batch_size": 32, "lr": 0.05, "backbone_lr": 0.01}


def _int(cfg: Any, name: str, minimum: int, allow_none: bool = False, prefix: str = "") -> None:
    v = getattr(cfg, name)
    if v is None and allow_none:
        return
    if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
        raise InputValueError(f"{prefix}{name} must be an integer >= {minimum}{' or None' if allow_none else ''}; "
                              f"got {v!r}.")


def _mapping(cfg: Any, name: str) -> None:
    v = getattr(cfg, name)
    if v is None:
        setattr(cfg, name, {})
    elif not isinstance(v, Mapping):
        raise InputValueError(f"{name} must be a mapping of options; got {type(v).__name__}.")
    else:
        setattr(cfg, name, {str(k): (dict(x) if isinstance(x, Mapping) else x) for k, x in v.items()})


def _changed_options(cfg: Any) -> dict[str, Any]:
    """The options a fine-tuning configuration object (a :class:`~nctransfer.finetune.FinetuneConfig`) sets
    away from its defaults, as the options dict the pipeline passes on (``method`` is the pipeline's to choose)."""
    out = {}
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        default = f.default_factory() if callable(f.default_factory) else f.default  # type: ignore[misc]
        if f.name != "method" and v != default:
            out[f.name] = v.to_dict() if hasattr(v, "to_dict") else v
    return out


@dataclass
class RankConfig(ConfigBase):
    """Settings of :func:`~nctransfer.pipeline.rank_models` (see its docstring for each one's full meaning)."""

    taps: Any = opt("penultimate", "'penultimate' (one candidate per model), 'all' (every tap, named model@tap) or "
                                   "a tap selector of nctransfer.features.select_taps")
    truth: Any = opt("probe", "ground truth: 'probe' (linear-probe test accuracy), 'finetune' or the path of a "
                              "CSV with columns model,accuracy")
    methods: Any = opt(None, "transferability methods: names, 'all', or None for every non-expensive one")
    method_options: dict = opt({}, "per-method options, e.g. {'gbc': {'gaussian': 'diagonal'}}")
    recommended_score: Any = opt(None, "the score that ranks the pool (None: the default recommended score)")
    per_class: Any = opt(50, "training images per class, seeded and class-balanced (None: all)")
    test_per_class: Any = opt(50, "test images per class for the ground truth (None: all)")
    image_size: Any = opt(None, "input resolution (None: each model's own)")
    batch_size: int = opt(64, "extraction batch size")
    device: Any = opt(None, "extraction device (None: CUDA when available)")
    pretrained: bool = opt(True, "pre-trained weights for model names without the random: prefix")
    seed: int = opt(0, "seed of subsampling, probes and fine-tuning")
    cache_dir: Any = opt("default", "cache root ('default': $NCTRANSFER_CACHE's parent or ~/.cache/nctransfer; "
                                    "None: no cache)")
    probe_C_grid: Any = opt(PROBE_C_GRID, "inverse L2 strengths tried by the ground-truth probe")
    probe_max_iter: int = opt(300, "iterations of the ground-truth probe")
    truth_finetune: Any = opt(None, "fine-tuning options for truth='finetune' (a dict or a FinetuneConfig)")
    compare_finetune: bool = opt(False, "also fine-tune the recommended model: linear probe vs SCL FT")
    finetune_options: Any = opt(None, "fine-tuning options of the comparison (a dict or a FinetuneConfig; "
                                      "default FINETUNE_DEFAULTS)")
    title: Any = opt(None, "report title")
    progress: bool = opt(True, "progress bars and stage messages")
    blas_threads: Any = opt(1, "BLAS threads for collapse metrics and probes (None: library default)")
    backend: str = opt("local", "'local' or 'ray' (one Ray task per model)")
    ray_address: Any = opt(None, "Ray cluster address (None: the running instance or a new local one)")
    max_retries: int = opt(2, "Ray backend: re-runs of a failed task")

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise InputValueError(f"backend must be 'local' or 'ray'; got {self.backend!r}.")
        t = self.taps
        if t not in ("penultimate", "all") and not isinstance(t, (list, tuple, int, str)):
            raise InputValueError(f"taps: expected 'penultimate', 'all' or a tap selector; got {t!r}.")
        if isinstance(self.truth, os.PathLike):
            self.truth = os.fspath(self.truth)
        if not isinstance(self.truth, str):
            raise InputValueError(f"truth: expected 'probe', 'finetune' or the path of a CSV with columns "
                                  f"model,accuracy; got {self.truth!r}.")
        if isinstance(self.cache_dir, os.PathLike):
            self.cache_dir = os.fspath(self.cache_dir)
        if self.cache_dir is not None and not isinstance(self.cache_dir, str):
            raise InputValueError(f"cache_dir must be a path, 'default' or None; got {self.cache_dir!r}.")
        if self.methods is not None and not isinstance(self.methods, str):
            if not all(isinstance(m, str) for m in self.methods):
                raise InputValueError(f"methods must be names (a list or a comma-separated string), 'all' or "
                                      f"None; got {self.methods!r}.")
            self.methods = list(self.methods)
        if self.recommended_score is not None and not isinstance(self.recommended_score, str):
            raise InputValueError(f"recommended_score must be a method name or None; got {self.recommended_score!r}.")
        for name in ("per_class", "test_per_class", "image_size"):
            _int(self, name, 1, allow_none=True)
        _int(self, "batch_size", 1)
        _int(self, "seed", 0)
        _int(self, "probe_max_iter", 1)
        _int(self, "blas_threads", 1, allow_none=True)
        _int(self, "max_retries", 0)
        self.progress = bool(self.progress)
        for name in ("pretrained", "compare_finetune"):
            v = getattr(self, name)
            if v not in (True, False):  # also 0/1 and numpy booleans
                raise InputValueError(f"{name} must be True or False; got {v!r}.")
            setattr(self, name, bool(v))
        if self.probe_C_grid is not None:
            grid = list(self.probe_C_grid)
            if not grid or not all(isinstance(c, (int, float)) and not isinstance(c, bool) and c > 0 for c in grid):
                raise InputValueError(f"probe_C_grid must be positive numbers (or None); got {self.probe_C_grid!r}.")
            self.probe_C_grid = tuple(float(c) for c in grid)
        _mapping(self, "method_options")
        for name in ("truth_finetune", "finetune_options"):
            v = getattr(self, name)
            if dataclasses.is_dataclass(v) and not isinstance(v, type):
                setattr(self, name, v := _changed_options(v))
            if v is not None and not isinstance(v, Mapping):
                raise InputValueError(f"{name} must be a mapping of fine-tuning options or a FinetuneConfig; got "
                                      f"{type(v).__name__}.")

    # ------------------------------------------------------------------ the settings of each stage
    def recommended(self) -> str:
        """The score that ranks the pool (``recommended_score`` or :data:`DEFAULT_RECOMMENDED`); an unknown name
        raises :class:`~nctransfer.exceptions.NotFoundError` with suggestions."""
        rec = self.recommended_score or DEFAULT_RECOMMENDED
        get_method(rec)
        return rec

    def resolved_methods(self) -> Any:
        """``methods`` as the scores stage reads it: ``None`` or ``"all"`` as given, else the canonical names, with
        the recommended score appended when missing (the ranking score is always computed)."""
        methods = self.methods
        if methods is None or (isinstance(methods, str) and methods.strip().lower() == "all"):
            return methods
        wanted = [m.strip() for m in methods.split(",") if m.strip()] if isinstance(methods, str) else list(methods)
        wanted = [get_method(w).name for w in wanted]
        rec = get_method(self.recommended()).name
        if rec not in wanted:
            wanted.append(rec)
        return wanted

    def cache_root(self) -> Path | None:
        """The cache root: features under ``features/``, stage results under ``results/`` (``None``: no cache)."""
        if self.cache_dir == "default":
            from nctransfer.extract import default_cache_dir  # deferred on purpose: extract needs the [torch] extra

            return default_cache_dir().parent
        return None if self.cache_dir is None else Path(self.cache_dir).expanduser()

    def extraction_settings(self, cache_root: Path | None) -> ExtractionSettings:
        """Settings of the extraction stage (features cached under ``cache_root/features``)."""
        features = None if cache_root is None else Path(cache_root) / "features"
        return ExtractionSettings(batch_size=self.batch_size, device=self.device, cache_dir=features,
                                  no_cache=features is None, progress=self.progress, per_class=self.per_class,
                                  test_per_class=self.test_per_class, image_size=self.image_size, seed=self.seed)

    def scoring_settings(self) -> ScoringSettings:
        """Settings of the scores stage: :meth:`resolved_methods` and ``method_options``."""
        return ScoringSettings(methods=self.resolved_methods(), options=dict(self.method_options or {}))

    def probe_settings(self) -> ProbeSettings:
        """Settings of the linear-probe ground truth."""
        return ProbeSettings(C_grid=self.probe_C_grid, max_iter=self.probe_max_iter, seed=self.seed)

    def truth_finetune_config(self) -> Any:
        """The :class:`~nctransfer.finetune.FinetuneConfig` of ``truth="finetune"``: :data:`TRUTH_FINETUNE_DEFAULTS`
        with ``truth_finetune`` on top; full FT (or the method given) for a model, SCL FT at a tap (set per
        candidate by the stage)."""
        opts = self._finetune_options(TRUTH_FINETUNE_DEFAULTS, self.truth_finetune)
        opts.pop("unit", None)
        return self._finetune_config({**opts, "method": opts.get("method") or "full_ft"})

    def comparison_finetune_config(self) -> Any:
        """The :class:`~nctransfer.finetune.FinetuneConfig` of the comparison (``compare_finetune``):
        :data:`FINETUNE_DEFAULTS` with ``finetune_options`` on top, as SCL FT at ``unit`` (a unit, ``"auto"`` or
        ``"recommended"``, resolved by the stage); the linear probe is the same run with ``method="linear_probe"``."""
        opts = self._finetune_options(FINETUNE_DEFAULTS, self.finetune_options)
        return self._finetune_config({**opts, "method": "scl_ft"})

    def _finetune_options(self, defaults: Mapping[str, Any], given: Mapping[str, Any] | None) -> dict[str, Any]:
        opts = {"image_size": self.image_size, "seed": self.seed, "progress": self.progress, **defaults,
                **dict(given or {})}
        if self.device is not None:
            opts.setdefault("device", str(self.device))
        return opts

    @staticmethod
    def _finetune_config(options: Mapping[str, Any]) -> Any:
        from nctransfer.finetune import FinetuneConfig  # deferred on purpose: nctransfer.finetune needs [torch]

        return FinetuneConfig.from_dict(options)

    def record(self, models: Sequence[str], data: str, truth: str, cache_root: Path | None) -> dict[str, Any]:
        """The resolved settings a run records (``results["config"]``, ``config.yaml``): with the models' labels
        and the data's description; fed back (``RankConfig.from_yaml(..., ignore_unknown=True)``), they reproduce
        the run."""
        return {
            "models": list(models), "data": data, "taps": self.taps, "truth": truth, "methods": self.resolved_methods(),
            "method_options": dict(self.method_options or {}), "recommended_score": self.recommended(),
            "per_class": self.per_class, "test_per_class": self.test_per_class, "image_size": self.image_size,
            "batch_size": self.batch_size, "device": self.device, "pretrained": self.pretrained, "seed": self.seed,
            "cache_dir": None if cache_root is None else str(cache_root), "probe_C_grid": self.probe_C_grid,
            "probe_max_iter": self.probe_max_iter, "truth_finetune": dict(self.truth_finetune or {}),
            "compare_finetune": self.compare_finetune, "finetune_options": dict(self.finetune_options or {}),
        }


__all__ = ["RankConfig", "PROBE_C_GRID", "BACKENDS", "FINETUNE_DEFAULTS", "TRUTH_FINETUNE_DEFAULTS"]
