"""Models from every source with their preprocessing metadata: :func:`load_model` (timm, torchvision, Hugging Face,
files, and the bundled real ImageNet EfficientNet-Lite0/1/2)."""

from nctransfer.utils.extras import require_extra

require_extra("torch", "nctransfer.models")  # fail now, naming the extra to install

from nctransfer.models.bundled import BUNDLED_MODELS, bundled_weights_path
from nctransfer.models.heads import find_classifier, reset_classifier
from nctransfer.models.info import IMAGENET_MEAN, IMAGENET_STD, ModelInfo, get_model_info
from nctransfer.models.loading import (
    SOURCES,
    WeightsUnavailableError,
    list_models,
    load_model,
    load_state_dict_flexible,
    save_model,
    wrap_hf_model,
)

__all__ = [
    "BUNDLED_MODELS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ModelInfo",
    "SOURCES",
    "WeightsUnavailableError",
    "bundled_weights_path",
    "find_classifier",
    "get_model_info",
    "list_models",
    "load_model",
    "load_state_dict_flexible",
    "reset_classifier",
    "save_model",
    "wrap_hf_model",
]
