"""Typed settings of a budgeted selection: :class:`SelectConfig`, what :func:`nctransfer.pipeline.select.select` reads.

The models, the data and the output directory are the selection's inputs, not its settings: they stay arguments
of ``select``. Every other keyword of ``select`` is a field here, with the same name, default and meaning::

    cfg = SelectConfig(budget=12, target="lp", per_class=20)
    res = select(["efficientnet_lite0", "efficientnet_lite1"], "digits", config=cfg, out="runs/select")
    SelectConfig.from_dict(res.config, ignore_unknown=True) == cfg     # the settings of that run, read back

``SelectResult.config`` (and ``select.json``) records the resolved settings plus the models and the data, which
``ignore_unknown`` leaves out; fed back, they reproduce the selection.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Mapping

from nctransfer.exceptions import InputValueError
from nctransfer.finetune.config import canonical_method
from nctransfer.pipeline.config import BACKENDS, _changed_options
from nctransfer.pipeline.config import _int as _check_int
from nctransfer.utils.configs import ConfigBase, opt


def _int(cfg: Any, name: str, minimum: int, allow_none: bool = False) -> None:
    """:func:`nctransfer.pipeline.config._int` with an integral float (2.0 from a YAML file or a division) taken
    as its integer."""
    v = getattr(cfg, name)
    if isinstance(v, float) and v.is_integer():
        setattr(cfg, name, int(v))
    _check_int(cfg, name, minimum, allow_none, prefix="select: ")


def check_budget(budget: Any) -> float:
    """``budget`` as a float: a finite number >= 0 (else :class:`~nctransfer.exceptions.InputValueError`)."""
    try:
        budget = float(budget)
    except (TypeError, ValueError):
        raise InputValueError(f"select: budget must be a number of resource units; got {budget!r}.") from None
    if not budget >= 0 or math.isinf(budget):
        raise InputValueError(f"select: budget must be a finite number >= 0; got {budget!r}.")
    return budget


def _options(cfg: Any, name: str, what: str) -> None:
    v = getattr(cfg, name)
    if dataclasses.is_dataclass(v) and not isinstance(v, type):  # a FinetuneConfig: the fields it changes
        v = _changed_options(v)
    if v is None:
        v = {}
    if not isinstance(v, Mapping):
        raise InputValueError(f"select: {name} must be a mapping of {what} options; got {type(v).__name__}.")
    setattr(cfg, name, {str(k): x for k, x in v.items()})


@dataclass
class SelectConfig(ConfigBase):
    """Settings of :func:`~nctransfer.pipeline.select.select` (see its docstring for each one's full meaning)."""

    budget: Any = opt(None, "total fine-tuning epochs over all runs (required; never exceeded)")
    target: str = opt("scl_ft", "fine-tuning method of the runs: scl_ft, full_ft, layer_ft or linear_probe (or lp, "
                                "layer, scl, full)")
    score: Any = opt(None, "the transferability score that orders the candidates (None: the recommended score)")
    eta: int = opt(2, "halving rate: 1/eta of the candidates go on to the next round")
    min_resource: int = opt(1, "shortest run (epochs)")
    max_resource: Any = opt(None, "longest run (epochs; None: no cap)")
    per_class: Any = opt(50, "training images per class for scoring and runs, seeded and class-balanced (None: all)")
    test_per_class: Any = opt(50, "test images per class for scoring and runs (None: all)")
    image_size: Any = opt(None, "input resolution of scoring and runs (None: each model's own)")
    finetune_options: dict = opt({}, "further nctransfer.finetune.finetune options of the runs (a dict or a "
                                     "FinetuneConfig), e.g. {'unit': 'auto', 'lr': 0.01}")
    seed: int = opt(0, "seed of subsampling, scoring and fine-tuning")
    progress: bool = opt(True, "progress bars")
    rank_options: dict = opt({}, "further rank_models options of the scoring stage, e.g. {'cache_dir': None}")
    backend: str = opt("local", "'local' (this process) or 'ray' (scoring: one Ray task per model; every "
                                "unfinished fine-tuning run of a round: one Ray task)")
    ray_address: Any = opt(None, "Ray cluster address (None: the running instance or a new local one)")
    max_retries: int = opt(2, "Ray backend: re-runs of a failed task")

    def __post_init__(self) -> None:
        if self.budget is None:
            raise InputValueError("select: budget is required (total fine-tuning epochs over all runs).")
        if isinstance(self.budget, bool):
            raise InputValueError(f"select: budget must be a number of resource units; got {self.budget!r}.")
        self.budget = check_budget(self.budget)
        self.target = canonical_method(self.target, "select: target")
        if self.score is not None and not isinstance(self.score, str):
            raise InputValueError(f"select: score must be a score name or None; got {self.score!r}.")
        _int(self, "eta", 2)
        _int(self, "min_resource", 1)
        _int(self, "max_resource", 1, allow_none=True)
        if self.max_resource is not None and self.max_resource < self.min_resource:
            raise InputValueError(f"select: max_resource must be an integer >= min_resource; got "
                                  f"{self.max_resource!r}.")
        for name in ("per_class", "test_per_class", "image_size"):
            _int(self, name, 1, allow_none=True)
        _int(self, "seed", 0)
        _int(self, "max_retries", 0)
        if self.progress not in (True, False):
            raise InputValueError(f"select: progress must be True or False; got {self.progress!r}.")
        self.progress = bool(self.progress)
        _options(self, "finetune_options", "fine-tuning")
        _options(self, "rank_options", "rank_models")
        if self.backend not in BACKENDS:
            raise InputValueError(f"select: backend must be 'local' or 'ray'; got {self.backend!r}.")
        if self.ray_address is not None and not isinstance(self.ray_address, str):
            raise InputValueError(f"select: ray_address must be an address string or None; got {self.ray_address!r}.")


__all__ = ["SelectConfig"]
