"""One image between its forms: PIL image, numpy array ``[H, W]`` / ``[H, W, C]`` / ``[C, H, W]``, tensor
``[C, H, W]``. The model transforms (:mod:`nctransfer.data.transforms`) start from these conversions.

``import nctransfer.data`` needs the core dependencies only, so torch and Pillow are imported where they are used.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from nctransfer.exceptions import InputValueError, ShapeError


def is_pil_image(x: Any) -> bool:
    """``isinstance(x, PIL.Image.Image)`` (never duck typing: a tensor also has ``.mode``-like attributes)."""
    try:
        from PIL import Image  # deferred: nctransfer.data imports with the core only
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
    import torch  # deferred: nctransfer.data imports with the core only

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



def to_pil(img: Any, channels: int = 3, what: str = "image") -> Any:
    """An image as a ``PIL.Image.Image`` in mode ``RGB`` (``channels=3``: grayscale repeated, alpha dropped) or
    ``L`` (``channels=1``). ``uint8`` arrays/tensors convert exactly; float images in ``[0, 1]`` are rounded to
    ``uint8`` (``round(255 x)``), so a ``ToTensor()`` image of a ``uint8`` picture converts back exactly."""
    import torch  # deferred: nctransfer.data imports with the core only
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

