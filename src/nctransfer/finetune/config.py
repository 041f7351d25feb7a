"""Configuration dataclasses of the fine-tuning methods (docs/methods.md#finetuning; Li et al., TMLR 2024, section 3.3, appendix B).

Every option is a dataclass field with ``help`` metadata; ``__post_init__`` validates values and cross-field
rules, naming the field in its message; configs round-trip through ``to_dict``/``from_dict`` and JSON.
Method names have canonical long forms and the short CLI aliases:

=================  =========  ===============================================================
canonical          alias      trains
=================  =========  ===============================================================
``linear_probe``   ``lp``     the classifier only
``layer_ft``       ``layer``  one fine-tuning unit + the classifier
``scl_ft``         ``scl``    one unit + the classifier + the skip branch (``skip="conv"`` has weights)
``full_ft``        ``full``   every parameter
=================  =========  ===============================================================

Defaults follow Li et al., TMLR 2024, appendix B: SGD, momentum 0.9, weight decay 1e-4, cosine schedule from 0.1 down to
1e-4 (``min_lr_ratio=1e-3``), 200 epochs (the benchmarks here use fewer).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

from nctransfer.exceptions import InputValueError
from nctransfer.utils.configs import ConfigBase, opt

METHOD_ALIASES: dict[str, str] = {
    "lp": "linear_probe", "linear_probe": "linear_probe", "linear": "linear_probe", "probe": "linear_probe",
    "layer": "layer_ft", "layer_ft": "layer_ft",
    "scl": "scl_ft", "scl_ft": "scl_ft",
    "full": "full_ft", "full_ft": "full_ft",
}
METHODS: tuple[str, ...] = ("linear_probe", "layer_ft", "scl_ft", "full_ft")
SHORT_NAMES: dict[str, str] = {"linear_probe": "lp", "layer_ft": "layer", "scl_ft": "scl", "full_ft": "full"}
SKIP_MODES: tuple[str, ...] = ("pad", "conv")
BN_POLICIES: tuple[str, ...] = ("update", "frozen")
CANDIDATE_MODES: tuple[str, ...] = ("all", "stage_first")
AUTO_CRITERIA: tuple[str, ...] = ("train_nc1", "heldout_nc1", "heldout_accuracy")


def canonical_method(method: str, name: str = "method") -> str:
    """``"lp"``/``"layer"``/``"scl"``/``"full"`` (or the long names) -> the canonical long name.

    Raises:
        InputValueError: unknown name; the message lists the valid ones.
    """
    key = str(method).strip().lower().replace("-", "_")
    if key not in METHOD_ALIASES:
        raise InputValueError(
            f"{name}: unknown fine-tuning method {method!r}; expected one of "
            f"{sorted(set(SHORT_NAMES.values()))} (or {list(METHODS)})."
        )
    return METHOD_ALIASES[key]


def _check_int(obj: Any, name: str, minimum: int, allow_none: bool = False) -> None:
    v = getattr(obj, name)
    if v is None and allow_none:
        return
    if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
        raise InputValueError(
            f"{type(obj).__name__}.{name} must be an integer >= {minimum}{' or None' if allow_none else ''}; got {v!r}."
        )


def _check_float(obj: Any, name: str, low: float, high: float | None = None, *, low_open: bool = False,
                 allow_none: bool = False) -> None:
    v = getattr(obj, name)
    if v is None and allow_none:
        return
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and v == v
    if ok:
        ok = (v > low if low_open else v >= low) and (high is None or v <= high)
    if not ok:
        hi = "inf)" if high is None else f"{high}]"
        rng = f"{'(' if low_open else '['}{low}, {hi}"
        raise InputValueError(
            f"{type(obj).__name__}.{name} must be a number in {rng}{' or None' if allow_none else ''}; got {v!r}."
        )
    if v is not None:
        setattr(obj, name, float(v))


def _check_choice(obj: Any, name: str, choices: Sequence[str]) -> None:
    v = getattr(obj, name)
    if v not in choices:
        raise InputValueError(f"{type(obj).__name__}.{name} must be one of {list(choices)}; got {v!r}.")


@dataclass
class AutoUnitConfig(ConfigBase):
    """How ``unit="auto"`` chooses the fine-tuning unit (Li et al., TMLR 2024, section 3.3 conjecture).

    Each candidate unit is fine-tuned briefly with the requested method (a *probe*) on a balanced subset of the
    training data; the unit whose penultimate features are most collapsed afterwards (lowest NC1,
    docs/methods.md#nc1, on that training subset; or on other training images, ``criterion="heldout_nc1"``) wins. Candidates whose
    method would train more parameters than the budget are skipped (and reported).
    """

    candidates: Any = opt("all", "units to try: 'all', 'stage_first' (first unit of each stage, as the paper "
                                 "fine-tunes ResNets) or a list of unit names/indices")
    max_trainable_percent: float | None = opt(None, "budget: skip units whose run would train more than this "
                                                    "percentage of all parameters (classifier included)")
    max_trainable_params: int | None = opt(None, "budget: skip units whose run would train more parameters")
    probe_steps: int = opt(40, "optimiser steps of the probe run per candidate (whole epochs over the probe subset, "
                               "at least this many steps)")
    probe_per_class: int | None = opt(20, "training images per class used by the probe (None: all)")
    criterion: str = opt("train_nc1", "'train_nc1' (the paper's conjecture: lowest penultimate NC1 on the probe's "
                                      "training images), 'heldout_nc1' (NC1 on other training images) or "
                                      "'heldout_accuracy'")
    max_probe_fraction: float | None = opt(0.5, "time budget of the whole probe as a fraction of the run's estimated "
                                                "training time (None: no fraction cap); the deepest candidates "
                                                "are probed first, the rest are skipped when the budget is spent")
    min_probe_seconds: float = opt(30.0, "the fraction cap never goes below this many seconds (a few probes can "
                                         "still be ranked in a very short run)")
    max_probe_seconds: float | None = opt(None, "absolute time budget of the probe in seconds (None: none); wins "
                                                "over min_probe_seconds")
    cache_features: bool = opt(True, "probe on cached features of the frozen part before each candidate (computed "
                                     "once per image instead of at every step; nctransfer.finetune.prefix_cache)")

    def __post_init__(self) -> None:
        c = self.candidates
        if isinstance(c, str):
            _check_choice(self, "candidates", CANDIDATE_MODES)
        elif isinstance(c, (list, tuple)) and len(c) > 0 and all(isinstance(u, (str, int)) for u in c):
            self.candidates = list(c)
        else:
            raise InputValueError(
                f"AutoUnitConfig.candidates must be one of {list(CANDIDATE_MODES)} or a non-empty list of unit "
                f"names/indices; got {c!r}."
            )
        _check_float(self, "max_trainable_percent", 0.0, 100.0, low_open=True, allow_none=True)
        _check_int(self, "max_trainable_params", 1, allow_none=True)
        _check_int(self, "probe_steps", 1)
        _check_int(self, "probe_per_class", 1, allow_none=True)
        _check_choice(self, "criterion", AUTO_CRITERIA)
        _check_float(self, "max_probe_fraction", 0.0, low_open=True, allow_none=True)
        _check_float(self, "min_probe_seconds", 0.0)
        _check_float(self, "max_probe_seconds", 0.0, low_open=True, allow_none=True)
        if not isinstance(self.cache_features, bool):
            raise InputValueError(f"AutoUnitConfig.cache_features must be True or False; got {self.cache_features!r}.")


@dataclass
class FinetuneConfig(ConfigBase):
    """One fine-tuning run (docs/methods.md#finetuning).

    Examples:
        >>> cfg = FinetuneConfig(method="scl", unit="layer3.0", epochs=5)
        >>> cfg.method, cfg.skip
        ('scl_ft', 'pad')
        >>> FinetuneConfig.from_json(cfg.to_json()) == cfg
        True
    """

    method: str = opt("scl_ft", "linear_probe|layer_ft|scl_ft|full_ft (aliases lp|layer|scl|full)")
    unit: Any = opt(None, "fine-tuning unit for layer_ft/scl_ft: a name from nctransfer.features.discover_units, "
                          "an index (negative from the end) or 'auto'")
    skip: str = opt("pad", "SCL skip branch: 'pad' (zero-padding, Li et al., TMLR 2024) or 'conv' (1x1 conv + BatchNorm, "
                           "Li et al., 2022 preprint)")
    epochs: int = opt(200, "training epochs (Li et al., TMLR 2024: 200)")
    batch_size: int = opt(64, "mini-batch size")
    lr: float = opt(0.1, "initial learning rate of the classifier (and of the SCL skip branch)")
    backbone_lr: float | None = opt(None, "initial learning rate of backbone parameters (None: same as lr)")
    min_lr_ratio: float = opt(1e-3, "cosine schedule floor as a fraction of the initial rate (0.1 -> 1e-4)")
    momentum: float = opt(0.9, "SGD momentum")
    weight_decay: float = opt(1e-4, "SGD weight decay")
    nesterov: bool = opt(False, "Nesterov momentum")
    max_grad_norm: float | None = opt(None, "clip the gradient norm of the trainable parameters (None: off)")
    bn_policy: str = opt("update", "'update': every BatchNorm (frozen or not) is in train mode during training "
                                   "and updates its running statistics on the downstream data (Li et al., TMLR 2024 "
                                   "appendix B); 'frozen': BatchNorms outside the trained modules stay in eval mode")
    image_size: int | None = opt(None, "input resolution (None: the model's own)")
    seed: int = opt(0, "seed of initialisation, shuffling and dropout")
    device: str = opt("auto", "'auto' (CUDA when available), 'cpu', 'cuda' or 'cuda:N'")
    amp: bool = opt(True, "mixed precision (float16 autocast + grad scaling) on CUDA; ignored on CPU")
    num_workers: int = opt(0, "DataLoader worker processes")
    num_threads: int | None = opt(None, "torch intra-op CPU threads during the run (None: leave torch's setting; 1 "
                                        "is much faster on an oversubscribed machine)")
    eval_batch_size: int | None = opt(None, "batch size of evaluation passes (None: batch_size on the CPU, where "
                                            "larger batches were not faster, 2 x batch_size on CUDA)")
    eval_every: int = opt(1, "per-epoch evaluation (test accuracy and loss, train and test NC1 on the fixed "
                             "eval_per_class subsets) every this many epochs; 0: none. The final evaluation on the "
                             "whole sets always runs once, after the last epoch")
    eval_per_class: int | None = opt(10, "size of the fixed, seeded per-epoch evaluation subsets: images per class "
                                         "of the test data and of the training data (None: the whole sets "
                                         "every time)")
    nc1_taps: Any = opt(None, "also record NC1 of these taps every evaluation: None, 'all' or a list of tap names")
    reset_head: Any = opt("auto", "new classifier for the downstream classes: 'auto' (when the output size "
                                  "differs), True or False")
    checkpoint: bool = opt(True, "write checkpoint.pt after every epoch when an output directory is given")
    progress: bool = opt(True, "show tqdm progress bars")
    auto: AutoUnitConfig = field(default_factory=AutoUnitConfig,
                                 metadata={"help": "settings of unit='auto' (see AutoUnitConfig)"})

    def __post_init__(self) -> None:
        self.method = canonical_method(self.method, "FinetuneConfig.method")
        if isinstance(self.auto, dict):
            self.auto = AutoUnitConfig.from_dict(self.auto)
        elif not isinstance(self.auto, AutoUnitConfig):
            raise InputValueError(f"FinetuneConfig.auto must be an AutoUnitConfig or dict; got {self.auto!r}.")
        _check_choice(self, "skip", SKIP_MODES)
        _check_choice(self, "bn_policy", BN_POLICIES)
        u = self.unit
        if isinstance(u, bool) or not (u is None or isinstance(u, (str, int))):
            raise InputValueError(f"FinetuneConfig.unit must be a unit name, an integer index or 'auto'; got {u!r}.")
        if isinstance(u, str) and u.strip().lstrip("-").isdigit():
            self.unit = int(u)
        if self.method in ("layer_ft", "scl_ft") and self.unit is None:
            raise InputValueError(
                f"FinetuneConfig.unit is required for method {self.method!r}: pass a unit name, an index or 'auto' "
                "(nctransfer.features.discover_units(model) lists the units)."
            )
        if self.method in ("linear_probe", "full_ft") and self.unit is not None:
            raise InputValueError(
                f"FinetuneConfig.unit must be None for method {self.method!r} (it trains "
                f"{'only the classifier' if self.method == 'linear_probe' else 'every parameter'}); got {u!r}."
            )
        if self.method != "scl_ft" and self.skip != "pad":
            raise InputValueError(f"FinetuneConfig.skip applies to scl_ft only; got skip={self.skip!r} with "
                                  f"method {self.method!r}.")
        _check_int(self, "epochs", 1)
        _check_int(self, "batch_size", 1)
        _check_int(self, "eval_batch_size", 1, allow_none=True)
        _check_int(self, "eval_every", 0)
        _check_int(self, "eval_per_class", 1, allow_none=True)
        _check_int(self, "num_workers", 0)
        _check_int(self, "num_threads", 1, allow_none=True)
        _check_int(self, "image_size", 8, allow_none=True)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise InputValueError(f"FinetuneConfig.seed must be an integer; got {self.seed!r}.")
        _check_float(self, "lr", 0.0, low_open=True)
        _check_float(self, "backbone_lr", 0.0, allow_none=True)
        _check_float(self, "min_lr_ratio", 0.0, 1.0)
        _check_float(self, "momentum", 0.0, 1.0)
        _check_float(self, "weight_decay", 0.0)
        _check_float(self, "max_grad_norm", 0.0, low_open=True, allow_none=True)
        for name in ("nesterov", "amp", "checkpoint", "progress"):
            if not isinstance(getattr(self, name), bool):
                raise InputValueError(f"FinetuneConfig.{name} must be True or False; got {getattr(self, name)!r}.")
        if self.nesterov and self.momentum == 0:
            raise InputValueError("FinetuneConfig.nesterov=True needs momentum > 0; got momentum=0.")
        if self.reset_head not in ("auto", True, False):
            raise InputValueError(f"FinetuneConfig.reset_head must be 'auto', True or False; got {self.reset_head!r}.")
        t = self.nc1_taps
        if not (t is None or t == "all" or (isinstance(t, (list, tuple)) and all(isinstance(s, str) for s in t))):
            raise InputValueError(f"FinetuneConfig.nc1_taps must be None, 'all' or a list of tap names; got {t!r}.")
        if isinstance(t, tuple):
            self.nc1_taps = list(t)
        d = str(self.device)
        if not (d in ("auto", "cpu", "cuda") or (d.startswith("cuda:") and d[5:].isdigit())):
            raise InputValueError(f"FinetuneConfig.device must be 'auto', 'cpu', 'cuda' or 'cuda:N'; got {d!r}.")

    @property
    def short_method(self) -> str:
        """``lp``, ``layer``, ``scl`` or ``full``."""
        return SHORT_NAMES[self.method]

    @property
    def effective_backbone_lr(self) -> float:
        """Initial learning rate of backbone parameters."""
        return self.lr if self.backbone_lr is None else float(self.backbone_lr)

    @property
    def uses_unit(self) -> bool:
        """Whether the method fine-tunes one unit (layer_ft, scl_ft)."""
        return self.method in ("layer_ft", "scl_ft")

    def training_signature(self) -> dict[str, Any]:
        """Fields that must match for a checkpoint to be resumed (everything that changes the numbers)."""
        d = self.to_dict()
        for k in ("progress", "num_workers", "num_threads", "checkpoint", "eval_batch_size"):
            d.pop(k, None)
        return d
