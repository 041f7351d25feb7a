"""The model's own evaluation transform, applied per image or to whole batches as tensor operations.

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
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

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
        import torch
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


def is_pil_image(x: Any) -> bool:
    """``isinstance(x, PIL.Image.Image)`` (never duck typing: a tensor also has ``.mode``-like attributes)."""
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow is a torchvision dependency
        return False
    return isinstance(x, Image.Image)


def to_float_tensor(img: Any, what: str = "image") -> Any:
    """An image as a float ``[C, H, W]`` tensor in ``[0, 1]``.

    Accepted: a ``PIL.Image.Image`` (modes ``L`` and ``RGB`` kept, ``RGBA``/``P``/``LA``/``CMYK``/``I;16``...
    converted to ``RGB``), a numpy array ``[H, W]`` / ``[H, W, C]`` / ``[C, H, W]``, or a tensor ``[C, H, W]`` /
    ``[H, W]`` (e.g. the output of ``torchvision.transforms.ToTensor``). ``uint8`` values are divided by 255;
    float values are kept as given.

    Raises:
        InputValueError: ``img`` is not an image (its type is named; ``what`` says where it came from).
        ShapeError: an array/tensor that is not one image.
    """
    import numpy as np
    import torch

    if is_pil_image(img):
        if img.mode not in ("L", "RGB"):
            img = img.convert("RGB")
        img = np.array(img)  # a writable copy
    if isinstance(img, np.ndarray):
        arr = img
        if arr.dtype == np.bool_ or arr.dtype.kind not in "uif":
            raise InputValueError(f"{what}: expected a numeric image array; got dtype {arr.dtype}.")
        if arr.ndim == 2:
            arr = arr[None]
        elif arr.ndim == 3 and arr.shape[-1] in (1, 3, 4) and arr.shape[0] not in (1, 3, 4):
            arr = np.moveaxis(arr, -1, 0)
        if arr.dtype not in (np.uint8, np.float32, np.float64, np.float16):
            arr = arr.astype(np.float32)
        t = torch.from_numpy(np.ascontiguousarray(arr))
    elif torch.is_tensor(img):
        t = img.unsqueeze(0) if img.ndim == 2 else img
    else:
        raise InputValueError(f"{what}: expected an image (PIL.Image.Image, numpy array [H, W] / [H, W, C] or "
                              f"tensor [C, H, W]); got {type(img).__name__}"
                              + (f" {img!r}" if isinstance(img, (str, int, float)) else "") + ".")
    if t.ndim != 3:
        raise ShapeError(f"{what}: expected one image [H, W], [H, W, C] or [C, H, W]; got shape "
                         f"{tuple(t.shape)}.")
    if t.dtype == torch.uint8:
        return t.float() / 255.0
    if t.dtype == torch.bool or not (torch.is_floating_point(t) or t.dtype in (torch.int16, torch.int32,
                                                                              torch.int64)):
        raise InputValueError(f"{what}: expected a uint8 or float image tensor; got dtype {t.dtype}.")
    return t.float()


def _info_of(model_or_info: Any) -> Any:
    info = getattr(model_or_info, "nctransfer_info", model_or_info)
    if isinstance(info, dict):
        from types import SimpleNamespace

        info = SimpleNamespace(**info)
    for attr in ("input_size", "mean", "std"):
        if not hasattr(info, attr):
            raise InputValueError(
                f"eval_transform: model_or_info must be a model loaded with nctransfer.models.load_model, a "
                f"ModelInfo or a dict with input_size/mean/std; got {type(model_or_info).__name__} without {attr!r}."
            )
    return info


def eval_transform(model_or_info: Any, image_size: int | Sequence[int] | None = None,
                   crop_pct: float | None = None) -> EvalTransform:
    """The model's evaluation transform (module docstring), optionally at another ``image_size``.

    Args:
        model_or_info: model with ``nctransfer_info``, a ``ModelInfo``, or a dict with ``input_size``, ``mean``,
            ``std`` (and optionally ``interpolation``, ``crop_pct``).
        image_size: output side (int) or ``(H, W)``; default the model's input size.
        crop_pct: override the model's centre-crop fraction (``1.0``: no crop).
    """
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
