"""The model's own evaluation transform.

A model whose library defines its preprocessing gets exactly that (:class:`ModelTransform`, built by
:func:`eval_transform`): timm models (and the bundled EfficientNet-Lite models) ``timm.data.create_transform(
**timm.data.resolve_model_data_config(model))``, torchvision models ``weights.transforms()``, Hugging Face models
their image processor. Every input is made a PIL image in the mode the model expects first (grayscale repeated to
three channels only when the model expects three), so a picture gives the same model input from a file, a
``uint8`` array or a ``ToTensor()`` tensor. A ``ModelInfo``/dict, or a plain ``nn.Module`` with ``image_size``,
``mean`` and ``std``, gets the tensor transform below.

``eval_transform(model_or_info, image_size=None)`` reads the preprocessing a model carries
(``model.nctransfer_info``: input size, mean, std, interpolation, crop_pct; see :mod:`nctransfer.models`) and
returns an :class:`EvalTransform` that maps an image to the model's input:

1. to float ``[C, H, W]`` in ``[0, 1]`` (PIL images, ``uint8`` arrays /255, float tensors as given);
2. resize the shorter side to ``round(size / crop_pct)`` (antialiased when shrinking) and centre-crop ``size``;
3. grayscale repeated to three channels;
4. normalise with the model's mean and std.

:meth:`EvalTransform.batch` does the same on a ``[B, C, H, W]`` tensor in one call (this is how the small
grayscale datasets are transformed: much faster than PIL per image, and bit-identical to the per-image path,
which is the same code on a batch of one).

The conversions of one image (PIL, array, tensor) are in :mod:`nctransfer.data.images`, the library-defined
:class:`ModelTransform` in :mod:`nctransfer.data.native_transforms`. ``import nctransfer.data`` needs the core
dependencies only, so torch is imported where it is used.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Sequence

from nctransfer.data.images import is_pil_image, to_float_tensor, to_pil
from nctransfer.data.native_transforms import ModelTransform, native_transform, size_pair
from nctransfer.exceptions import InputValueError, ShapeError

_TORCH_MODES = {"bilinear": "bilinear", "bicubic": "bicubic", "nearest": "nearest-exact", "area": "area",
                "lanczos": "bicubic", "box": "area", "hamming": "bilinear"}


@dataclass(frozen=True)
class EvalTransform:
    """Deterministic eval preprocessing (see module docstring). Build it with :func:`eval_transform`.

    Attributes:
        size: output ``(H, W)``.
        mean, std: per-channel normalisation (length 3, or 1 for single-channel models).
        interpolation: ``"bilinear"``, ``"bicubic"``, ...
        crop_pct: fraction kept by the centre crop (1.0: the resize fills the output exactly for square inputs).
        channels: output channels (3 for RGB models; grayscale is repeated).
    """

    size: tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    interpolation: str = "bilinear"
    crop_pct: float = 1.0
    channels: int = 3

    @property
    def key(self) -> str:
        """Stable text identity (part of feature-cache keys)."""
        m = ",".join(f"{v:.6g}" for v in self.mean)
        s = ",".join(f"{v:.6g}" for v in self.std)
        return (f"eval(size={self.size[0]}x{self.size[1]},crop={self.crop_pct:.6g},interp={self.interpolation},"
                f"mean={m},std={s},ch={self.channels})")

    # ------------------------------------------------------------------ per image
    def __call__(self, img: Any) -> Any:
        """One image (PIL, ``[H, W]`` / ``[H, W, C]`` array, or ``[C, H, W]`` tensor) -> ``[C, S, S]`` tensor."""
        return self.batch(to_float_tensor(img).unsqueeze(0))[0]

    # ------------------------------------------------------------------ batched
    def batch(self, x: Any) -> Any:
        """``[B, C, H, W]`` float tensor in ``[0, 1]`` (``C`` 1 or 3) -> ``[B, channels, *size]`` normalised."""
        import torch  # deferred: nctransfer.data imports with the core only
        import torch.nn.functional as F

        if x.ndim != 4:
            raise ShapeError(f"EvalTransform.batch: expected [B, C, H, W]; got shape {tuple(x.shape)}.")
        if not torch.is_floating_point(x):
            x = x.float() / 255.0
        h, w = int(x.shape[-2]), int(x.shape[-1])
        th, tw = self.size
        if th == tw:
            scale_to = int(round(th / self.crop_pct))
            if h <= w:
                rh, rw = scale_to, max(int(round(w * scale_to / h)), scale_to)
            else:
                rh, rw = max(int(round(h * scale_to / w)), scale_to), scale_to
        else:  # non-square output: resize both sides, then crop
            rh, rw = int(round(th / self.crop_pct)), int(round(tw / self.crop_pct))
        if (rh, rw) != (h, w):
            mode = _TORCH_MODES.get(self.interpolation, "bilinear")
            kwargs: dict[str, Any] = {}
            if mode in ("bilinear", "bicubic"):
                kwargs = {"align_corners": False, "antialias": rh < h or rw < w}
            x = F.interpolate(x, size=(rh, rw), mode=mode, **kwargs)
            if mode == "bicubic":
                x = x.clamp_(0.0, 1.0)
        if (rh, rw) != (th, tw):
            top, left = (rh - th) // 2, (rw - tw) // 2
            if top < 0 or left < 0:
                raise ShapeError(f"EvalTransform: resized image {rh}x{rw} smaller than the crop {th}x{tw}.")
            x = x[..., top:top + th, left:left + tw]
        c = int(x.shape[1])
        if c == 1 and self.channels == 3:
            x = x.expand(-1, 3, -1, -1)
        elif c == 4 and self.channels == 3:
            x = x[:, :3]
        elif c != self.channels:
            raise ShapeError(f"EvalTransform: images have {c} channels; the model expects {self.channels}.")
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        return ((x - mean) / std).contiguous()



def _info_of(model_or_info: Any) -> Any:
    info = getattr(model_or_info, "nctransfer_info", model_or_info)
    if isinstance(info, dict):
        info = SimpleNamespace(**info)
    for attr in ("input_size", "mean", "std"):
        if not hasattr(info, attr):
            raise InputValueError(
                f"eval_transform: model_or_info must be a model loaded with nctransfer.models.load_model, a "
                f"ModelInfo or a dict with input_size/mean/std; got {type(model_or_info).__name__} without {attr!r}."
            )
    return info



def _in_chans(model: Any) -> int:
    """Input channels a plain ``nn.Module`` expects (its first convolution's ``in_channels``; default 3)."""
    for m in model.modules():
        c = getattr(m, "in_channels", None)
        if isinstance(c, int) and type(m).__name__.startswith("Conv"):
            return c
    return 3



def eval_transform(model_or_info: Any, image_size: int | Sequence[int] | None = None,
                   crop_pct: float | None = None, *, mean: Sequence[float] | None = None,
                   std: Sequence[float] | None = None, native: bool = True) -> Any:
    """The model's evaluation transform, optionally at another ``image_size``.

    A model whose library defines its preprocessing (timm, the bundled models, torchvision with weights, Hugging
    Face with its image processor) gets exactly that (:class:`ModelTransform`); a ``ModelInfo`` or dict, and a
    plain ``nn.Module`` given ``image_size``, ``mean`` and ``std``, get the tensor :class:`EvalTransform`
    (module docstring).

    Args:
        model_or_info: a model, a ``ModelInfo``, or a dict with ``input_size``, ``mean``, ``std`` (and optionally
            ``interpolation``, ``crop_pct``).
        image_size: output side (int) or ``(H, W)``; default the model's input size.
        crop_pct: override the model's centre-crop fraction (``1.0``: no crop).
        mean, std: normalisation for a plain ``nn.Module`` without preprocessing metadata (with ``image_size``);
            for other models they override the model's values (tensor transform).
        native: ``False``: always the tensor :class:`EvalTransform` built from the model's metadata.

    Raises:
        InputValueError: a plain ``nn.Module`` without ``image_size``/``mean``/``std``; invalid sizes.
    """
    if native and mean is None and std is None:
        t = native_transform(model_or_info, image_size, crop_pct)
        if t is not None:
            return t
    if hasattr(model_or_info, "named_modules") and getattr(model_or_info, "nctransfer_info", None) is None:
        if image_size is None or mean is None or std is None:
            raise InputValueError(
                f"eval_transform: {type(model_or_info).__name__} is a plain nn.Module without preprocessing metadata; "
                "pass transform= (your own torchvision transform), or image_size=, mean= and std= (e.g. "
                "image_size=224, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)).")
        size = size_pair(image_size)
        ch = _in_chans(model_or_info)
        model_or_info = {"input_size": (ch, *size), "mean": tuple(mean), "std": tuple(std), "crop_pct": 1.0}
    elif mean is not None or std is not None:
        info0 = _info_of(model_or_info)
        model_or_info = {"input_size": tuple(info0.input_size), "mean": tuple(mean or info0.mean),
                         "std": tuple(std or info0.std), "interpolation": getattr(info0, "interpolation", "bilinear"),
                         "crop_pct": getattr(info0, "crop_pct", 1.0)}
    info = _info_of(model_or_info)
    if image_size is None:
        size = (int(info.input_size[-2]), int(info.input_size[-1]))
    elif isinstance(image_size, int) and not isinstance(image_size, bool):
        size = (image_size, image_size)
    elif isinstance(image_size, (tuple, list)) and len(image_size) == 2:
        size = (int(image_size[0]), int(image_size[1]))
    else:
        raise InputValueError(f"image_size must be None, an int or (H, W); got {image_size!r}.")
    if min(size) < 1:
        raise InputValueError(f"image_size must be positive; got {image_size!r}.")
    cp = float(getattr(info, "crop_pct", 1.0) or 1.0) if crop_pct is None else float(crop_pct)
    if not 0.0 < cp <= 1.0:
        raise InputValueError(f"crop_pct must be in (0, 1]; got {crop_pct!r}.")
    channels = int(info.input_size[0]) if len(info.input_size) == 3 else 3
    return EvalTransform(size=size, mean=tuple(float(v) for v in info.mean), std=tuple(float(v) for v in info.std),
                         interpolation=str(getattr(info, "interpolation", "bilinear")), crop_pct=cp,
                         channels=channels)


def transform_key(transform: Any) -> str:
    """What identifies ``transform`` in a dataset's cache key: ``"raw"`` for none, an :class:`EvalTransform`'s
    ``key``, another transform's ``key`` attribute, else its ``repr``."""
    if transform is None:
        return "raw"
    if isinstance(transform, EvalTransform):
        return transform.key
    return getattr(transform, "key", None) or repr(transform)


__all__ = [
    "EvalTransform", "ModelTransform", "eval_transform", "is_pil_image", "native_transform", "to_float_tensor",
    "to_pil", "transform_key",
]
