"""The model's own evaluation preprocessing as its library defines it (:class:`ModelTransform`): timm's
``create_transform`` of the model's data configuration (also the bundled EfficientNet-Lite models), torchvision's
``weights.transforms()``, the Hugging Face image processor. :func:`nctransfer.data.eval_transform` uses it when the
model carries one, else the tensor :class:`~nctransfer.data.transforms.EvalTransform`.

``import nctransfer.data`` needs the core dependencies only, so torch, timm and torchvision are imported where
they are used.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from nctransfer.data.images import to_pil
from nctransfer.exceptions import InputValueError


@dataclass(frozen=True, eq=False)
class ModelTransform:
    """The model's own evaluation preprocessing, as its library defines it.

    - timm (and the bundled EfficientNet-Lite models, built with timm): ``timm.data.create_transform(
      **timm.data.resolve_model_data_config(model))`` (``input_size`` / ``crop_pct`` overridden when asked);
    - torchvision: the weights' ``weights.transforms()`` (``ImageClassification``), rebuilt with another crop and
      resize size when ``image_size`` / ``crop_pct`` are overridden;
    - Hugging Face: the model's image processor (``processor(images=..., return_tensors="pt")``).

    Every input (PIL image, ``uint8`` or float tensor / array) is first made a PIL image in the mode the model
    expects (:func:`to_pil`: grayscale repeated to three channels only for a three-channel model), so that an
    image gives the same model input whether it comes from a file, an array or a tensor.

    Attributes:
        native: the library's transform (PIL image -> float tensor ``[C, H, W]``).
        source: ``"timm"``, ``"torchvision"`` or ``"hf"``.
        channels: channels the model expects.
        description: stable text of the transform's parameters (part of :attr:`key`).
    """

    native: Any
    source: str
    channels: int
    description: str

    @property
    def key(self) -> str:
        return f"native:{self.source}:" + hashlib.sha1(self.description.encode()).hexdigest()[:16]

    def __call__(self, img: Any) -> Any:
        import torch  # deferred: nctransfer.data imports with the core only

        out = self.native(to_pil(img, self.channels))
        if not torch.is_tensor(out):
            out = torch.as_tensor(out)
        return out.float()

    def batch(self, x: Any) -> Any:
        """``[B, C, H, W]`` (float in ``[0, 1]`` or ``uint8``) -> ``[B, channels, S, S]``, image by image."""
        import torch  # deferred: nctransfer.data imports with the core only

        return torch.stack([self(im) for im in x])

    def __repr__(self) -> str:
        return f"ModelTransform(source={self.source!r}, {self.description})"



def size_pair(image_size: Any) -> tuple[int, int] | None:
    """``image_size`` (None, an int or ``(H, W)``) as ``(H, W)`` (None stays None)."""
    if image_size is None:
        return None
    if isinstance(image_size, int) and not isinstance(image_size, bool):
        return (image_size, image_size)
    if isinstance(image_size, (tuple, list)) and len(image_size) == 2:
        return (int(image_size[0]), int(image_size[1]))
    raise InputValueError(f"image_size must be None, an int or (H, W); got {image_size!r}.")


def native_transform(model: Any, image_size: Any = None, crop_pct: float | None = None) -> ModelTransform | None:
    """The model's own preprocessing (:class:`ModelTransform`), or ``None`` when the model carries none (a plain
    ``nn.Module``, a ModelInfo or dict, a Hugging Face model asked for another size)."""
    if not hasattr(model, "named_modules"):
        return None
    info = getattr(model, "nctransfer_info", None)
    size = size_pair(image_size)
    if crop_pct is not None and not 0.0 < float(crop_pct) <= 1.0:
        raise InputValueError(f"crop_pct must be in (0, 1]; got {crop_pct!r}.")
    source = getattr(info, "source", None)
    if getattr(model, "pretrained_cfg", None) is not None:
        try:
            import timm.data  # deferred: nctransfer.data imports with the core only
        except ImportError:  # pragma: no cover - timm is a dependency of the torch extra
            return None
        cfg = dict(timm.data.resolve_model_data_config(model))
        if size is not None:
            cfg["input_size"] = (int(cfg["input_size"][0]), *size)
        if crop_pct is not None:
            cfg["crop_pct"] = float(crop_pct)
        t = timm.data.create_transform(**cfg, is_training=False)
        return ModelTransform(t, "timm", int(cfg["input_size"][0]), f"{sorted(cfg.items())}|{t!r}")
    if source == "torchvision" or (info is None and type(model).__module__.startswith("torchvision.models")):
        t = _torchvision_transform(info, size, crop_pct)
        return None if t is None else ModelTransform(t, "torchvision", 3, repr(t))
    processor = getattr(model, "image_processor", None)
    if source == "hf" and processor is not None and size is None and crop_pct is None:
        return ModelTransform(lambda im: processor(images=im, return_tensors="pt")["pixel_values"][0], "hf",
                              int(getattr(info, "input_size", (3,))[0]), repr(processor.to_dict()
                                                                              if hasattr(processor, "to_dict")
                                                                              else processor))
    return None


def _torchvision_transform(info: Any, size: tuple[int, int] | None, crop_pct: float | None) -> Any:
    try:
        import torchvision.models as tvm  # deferred: nctransfer.data imports with the core only
        from torchvision.transforms._presets import ImageClassification
    except ImportError:  # pragma: no cover
        return None
    name = str(getattr(info, "name", "")).split(":", 1)[-1]
    try:
        weights = tvm.get_weight(str(getattr(info, "weights", None)))
    except (ValueError, KeyError, AttributeError, TypeError):
        weights = None
    if weights is None and name:
        try:
            weights = tvm.get_model_weights(name).DEFAULT
        except (ValueError, KeyError, AttributeError):
            weights = None
    if weights is None:
        return None
    t = weights.transforms()
    if size is None and crop_pct is None:
        return t
    crop = size or (int(t.crop_size[0]), int(t.crop_size[0]))
    cp = float(crop_pct) if crop_pct is not None else int(t.crop_size[0]) / int(t.resize_size[0])
    return ImageClassification(crop_size=crop[0], resize_size=int(round(crop[0] / cp)), mean=t.mean, std=t.std,
                               interpolation=t.interpolation, antialias=t.antialias)

