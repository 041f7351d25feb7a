"""``ModelInfo``: the preprocessing and head metadata every model loaded by nctransfer carries.

Attached as ``model.nctransfer_info`` by :func:`nctransfer.models.load_model`; read by
:func:`nctransfer.data.eval_transform` (resize/normalise), :mod:`nctransfer.features` (which module is the
classifier, so that the ``penultimate`` tap is its input) and the feature cache (model identity).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
INTERPOLATIONS = ("bilinear", "bicubic", "nearest", "area", "lanczos", "box", "hamming")


@dataclass
class ModelInfo:
    """Metadata of a loaded model (timm's ``pretrained_cfg`` idea, for every source).

    Attributes:
        name: the name the model was loaded with (e.g. ``"efficientnet_lite0"``, ``"timm:resnet18"``).
        source: ``"bundled"``, ``"timm"``, ``"torchvision"``, ``"hf"`` or ``"file"``.
        pretrained: whether pre-trained weights were loaded.
        input_size: ``(C, H, W)`` the model was trained at.
        mean, std: per-channel normalisation applied to images scaled to ``[0, 1]``.
        interpolation: resize interpolation (``"bilinear"``, ``"bicubic"``, ...).
        crop_pct: fraction of the resized image kept by the centre crop at evaluation (1.0: no crop).
        classifier: module path (``model.get_submodule(path)``) of the final classifier; its input is the
            ``penultimate`` feature.
        num_features: width of the penultimate feature (input width of the classifier).
        num_classes: output width of the classifier (0 when the classifier was removed).
        arch: architecture actually built (e.g. ``"timm:tf_efficientnet_lite0"``).
        weights: human-readable identity of the weights (file path, hub tag, ``"random-init"``).
        extra: anything source-specific (e.g. the bundled package version).
    """

    name: str
    source: str
    pretrained: bool
    input_size: tuple[int, int, int] = (3, 224, 224)
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    interpolation: str = "bilinear"
    crop_pct: float = 0.875
    classifier: str = ""
    num_features: int = 0
    num_classes: int = 0
    arch: str = ""
    weights: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def image_size(self) -> tuple[int, int]:
        """``(H, W)`` of :attr:`input_size`."""
        return int(self.input_size[1]), int(self.input_size[2])

    @property
    def in_chans(self) -> int:
        return int(self.input_size[0])

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["input_size"] = list(self.input_size)
        d["mean"] = list(self.mean)
        d["std"] = list(self.std)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelInfo":
        d = dict(d)
        for k in ("input_size", "mean", "std"):
            if k in d and d[k] is not None:
                d[k] = tuple(d[k])
        return cls(**d)

    def replace(self, **changes: Any) -> "ModelInfo":
        return replace(self, **changes)


def get_model_info(model: Any) -> ModelInfo | None:
    """The :class:`ModelInfo` attached to ``model`` (or ``None``); accepts a ModelInfo and returns it."""
    if isinstance(model, ModelInfo):
        return model
    return getattr(model, "nctransfer_info", None)
