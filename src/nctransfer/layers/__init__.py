"""Layer-wise collapse and linear-probe accuracy of a model on a dataset (Li et al., TMLR 2024, fig. 9; docs/methods.md#layer-wise #finetuning)."""

from nctransfer.utils.extras import require_extra

require_extra("torch", "nctransfer.layers", ("torch",))  # fail now, naming the extra to install

from nctransfer.layers.analysis import LayerAnalysis, analyze, spearman
from nctransfer.layers.config import LayersConfig

__all__ = ["LayerAnalysis", "LayersConfig", "analyze", "spearman"]
