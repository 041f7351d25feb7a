"""Layer taps: ordered fine-tuning units, tap selection (automatic units, any module path, patterns), pooling of
any output shape and the hook recorder (docs/methods.md#layer-wise #finetuning)."""

from nctransfer.utils.extras import require_extra

require_extra("torch", "nctransfer.features", ("torch",))  # fail now, naming the extra to install

from nctransfer.features.pooling import POOLS, TOKEN_POOLS, first_tensor, pool_features
from nctransfer.features.taps import (
    HookNotFiredError,
    TapRecorder,
    infer_widths,
    list_taps,
    module_paths,
    resolve_taps,
    select_taps,
    tap_names,
    tap_widths,
)
from nctransfer.features.units import PENULTIMATE, Unit, discover_units

__all__ = [
    "HookNotFiredError",
    "PENULTIMATE",
    "POOLS",
    "TOKEN_POOLS",
    "TapRecorder",
    "Unit",
    "discover_units",
    "first_tensor",
    "infer_widths",
    "list_taps",
    "module_paths",
    "pool_features",
    "resolve_taps",
    "select_taps",
    "tap_names",
    "tap_widths",
]
