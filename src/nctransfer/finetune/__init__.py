"""Collapse-aware fine-tuning (docs/methods.md#finetuning; Li et al., TMLR 2024, section 3.3 and appendix B; Li et al., 2022 preprint, appendix A).

Four methods, one verb each, all returning a :class:`FinetuneResult` (and writing ``result.json``):

- :func:`linear_probe` - a new classifier on the frozen penultimate feature;
- :func:`layer_ft` - one fine-tuning unit (a residual block, timm block or ViT encoder layer) + the classifier;
- :func:`scl_ft` - Layer FT + a skip connection from the unit to the penultimate feature (``skip="pad"`` or
  ``"conv"``), optionally with the unit chosen by collapse (``unit="auto"``, :func:`choose_unit`);
- :func:`full_ft` - every parameter;

plus :func:`finetune` (method in the config), the data-scarcity sweep :func:`data_scarcity_sweep`, and the
building blocks: :class:`FinetuneConfig`, :func:`trainable_parameter_names`, :func:`count_parameters`,
:func:`attach_skip`, :class:`Trainer`.

Examples:
    >>> from nctransfer.finetune import FinetuneConfig, count_parameters
    >>> FinetuneConfig(method="lp").method
    'linear_probe'
"""

from nctransfer.utils.extras import require_extra

require_extra("torch", "nctransfer.finetune", ("torch",))  # fail now, naming the extra to install

from nctransfer.finetune.api import (
    FinetuneResult,
    finetune,
    full_ft,
    layer_ft,
    linear_probe,
    prepare_model,
    scl_ft,
)
from nctransfer.finetune.auto import choose_unit
from nctransfer.finetune.config import METHODS, AutoUnitConfig, FinetuneConfig, canonical_method
from nctransfer.finetune.memory import PeakMemory
from nctransfer.finetune.selection import (
    apply_trainable,
    classifier_path,
    count_parameters,
    format_parameter_count,
    head_parameter_names,
    list_units,
    resolve_unit,
    stage_first_units,
    trainable_parameter_names,
)
from nctransfer.finetune.skip import SkipBranch, attach_skip, detach_skip, get_skip
from nctransfer.finetune.sweep import DEFAULT_SIZES, data_scarcity_sweep
from nctransfer.finetune.trainer import Trainer, cosine_lr, evaluate

__all__ = [
    "DEFAULT_SIZES",
    "METHODS",
    "AutoUnitConfig",
    "FinetuneConfig",
    "FinetuneResult",
    "PeakMemory",
    "SkipBranch",
    "Trainer",
    "apply_trainable",
    "attach_skip",
    "canonical_method",
    "choose_unit",
    "classifier_path",
    "cosine_lr",
    "count_parameters",
    "data_scarcity_sweep",
    "detach_skip",
    "evaluate",
    "finetune",
    "format_parameter_count",
    "full_ft",
    "get_skip",
    "head_parameter_names",
    "layer_ft",
    "linear_probe",
    "list_units",
    "prepare_model",
    "resolve_unit",
    "scl_ft",
    "stage_first_units",
    "trainable_parameter_names",
]
