"""nctransfer: neural collapse for transfer learning.

Three questions, one library:

1. How collapsed are these features?  ``nctransfer.metrics`` (NC1-NC4, CDNV, rank, VCI, ...).
2. Which pre-trained model or layer will transfer best?  ``nctransfer.transferability`` (NCTI, LogME, ...).
3. How do I fine-tune it cheaply?  ``nctransfer.finetune`` (linear probe, Layer FT, SCL FT, full FT).

Heavy modules (torch models, timm, matplotlib) are imported lazily: ``import nctransfer`` is cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

from nctransfer._version import __version__  # noqa: E402

from nctransfer.stats.feature_stats import FeatureStats  # noqa: E402

_LAZY_SUBMODULES = {
    "metrics", "transferability", "stats", "data", "models", "features", "extract", "layers",
    "finetune", "pretrain", "reports", "pipeline", "utils", "exceptions",
}
_LAZY_ATTRS = {"rank_models": "nctransfer.pipeline", "select": "nctransfer.pipeline"}


_ALIAS_MODULES = {"benchmark": "nctransfer.pipeline.benchmark"}


def __getattr__(name: str) -> Any:
    if name in _ALIAS_MODULES:
        return importlib.import_module(_ALIAS_MODULES[name])
    if name in _LAZY_SUBMODULES:
        return importlib.import_module(f"nctransfer.{name}")
    if name in _LAZY_ATTRS:
        return getattr(importlib.import_module(_LAZY_ATTRS[name]), name)
    raise AttributeError(f"module 'nctransfer' has no attribute {name!r}")


__all__ = ["FeatureStats", "__version__", "benchmark", "rank_models", "select", *sorted(_LAZY_SUBMODULES)]
