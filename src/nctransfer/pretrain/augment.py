"""Augmentation levels 1-5 as batched tensor operations (docs/methods.md#pretraining; Li et al., TMLR 2024, appendix B, figure 4).

Level ``k`` applies exactly the transforms of levels ``1..k``:

====  ======================  ===============================================================================
level transform               details (defaults follow torchvision / SimCLR / SupCon)
====  ======================  ===============================================================================
1     ``normalize``           per-channel standardisation ``(x - mean) / std`` with the source data's statistics
2     ``random_crop``         zero-pad by ``crop_padding`` pixels (default ``max(1, round(H / 8))``: 4 for 28 px)
                              then crop back to ``H x W`` at a uniformly random offset
3     ``hflip``               horizontal flip with probability 0.5
4     ``color_jitter``        with probability 0.8: brightness, contrast, saturation factors in ``[0.6, 1.4]``
                              and a hue shift in ``[-0.1, 0.1]``, applied in that order
5     ``random_grayscale``    with probability 0.2, replace the image by its luminance (ITU-R 601-2)
====  ======================  ===============================================================================

The transforms 2-5 act on images in ``[0, 1]`` and the result is clamped to ``[0, 1]``; normalisation comes last so
that adversarial training (PGD, which works in pixel space) can run between the two: the trainer calls
:meth:`Augmenter.augment`, then PGD, then :meth:`Augmenter.normalize`.

On single-channel images (Fashion-MNIST, digits) saturation and hue have no meaning and are skipped, and random
grayscale is the identity, so levels 4 and 5 differ from level 3 only by brightness/contrast jitter: documented
rather than hidden. Every random draw comes from the ``torch.Generator`` passed in, one batch at a time, so a
seeded pipeline is reproducible and each level is the exact composition of its transforms (tested).
"""

from __future__ import annotations

from typing import Sequence

import torch

from nctransfer.exceptions import InputValueError, ShapeError

#: Transform of each augmentation level (index 0 = level 1).
LEVEL_TRANSFORMS: tuple[str, ...] = ("normalize", "random_crop", "hflip", "color_jitter", "random_grayscale")
_LUMA = (0.299, 0.587, 0.114)


def _check_images(x: torch.Tensor, name: str = "x") -> None:
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        raise ShapeError(f"{name} must be a float tensor of images [B, C, H, W]; got "
                         f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}.")
    if not x.dtype.is_floating_point:
        raise InputValueError(f"{name} must be a float tensor with values in [0, 1]; got dtype {x.dtype}.")


def _uniform(n: int, lo: float, hi: float, g: torch.Generator | None, like: torch.Tensor) -> torch.Tensor:
    u = torch.rand(n, generator=g, dtype=torch.float32)
    return (lo + (hi - lo) * u).to(device=like.device, dtype=like.dtype)


def _bernoulli(n: int, p: float, g: torch.Generator | None, like: torch.Tensor) -> torch.Tensor:
    return (torch.rand(n, generator=g) < p).to(like.device)


# ---------------------------------------------------------------------------------------------- transforms
def random_crop(x: torch.Tensor, padding: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Zero-pad ``x [B, C, H, W]`` by ``padding`` pixels and crop each image back at a random offset."""
    _check_images(x)
    if padding <= 0:
        return x
    B, C, H, W = x.shape
    padded = torch.nn.functional.pad(x, (padding, padding, padding, padding))
    off = torch.randint(0, 2 * padding + 1, (2, B), generator=generator).to(x.device)
    rows = (off[0][:, None] + torch.arange(H, device=x.device)[None, :])  # [B, H]
    cols = (off[1][:, None] + torch.arange(W, device=x.device)[None, :])  # [B, W]
    b = torch.arange(B, device=x.device)[:, None, None, None]
    c = torch.arange(C, device=x.device)[None, :, None, None]
    return padded[b, c, rows[:, None, :, None], cols[:, None, None, :]]


def hflip(x: torch.Tensor, p: float = 0.5, generator: torch.Generator | None = None) -> torch.Tensor:
    """Flip each image of ``x [B, C, H, W]`` left-right with probability ``p``."""
    _check_images(x)
    mask = _bernoulli(len(x), p, generator, x)[:, None, None, None]
    return torch.where(mask, x.flip(-1), x)


def grayscale(x: torch.Tensor) -> torch.Tensor:
    """Luminance ``0.299 R + 0.587 G + 0.114 B`` repeated over the channels (identity for one channel)."""
    if x.shape[1] == 1:
        return x
    if x.shape[1] != 3:
        return x.mean(dim=1, keepdim=True).expand_as(x)
    w = torch.tensor(_LUMA, dtype=x.dtype, device=x.device)[None, :, None, None]
    return (x * w).sum(dim=1, keepdim=True).expand_as(x)


def random_grayscale(x: torch.Tensor, p: float = 0.2, generator: torch.Generator | None = None) -> torch.Tensor:
    """Replace each image by its grayscale version with probability ``p`` (identity on 1-channel images)."""
    _check_images(x)
    mask = _bernoulli(len(x), p, generator, x)[:, None, None, None]
    return torch.where(mask, grayscale(x), x)


def _rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    r, g, b = x.unbind(1)
    maxc, _ = x.max(dim=1)
    minc, _ = x.min(dim=1)
    cr = maxc - minc
    s = cr / torch.where(maxc == 0, torch.ones_like(maxc), maxc)
    crd = torch.where(cr == 0, torch.ones_like(cr), cr)
    rc, gc, bc = (maxc - r) / crd, (maxc - g) / crd, (maxc - b) / crd
    hr = (maxc == r) * (bc - gc)
    hg = ((maxc == g) & (maxc != r)) * (2.0 + rc - bc)
    hb = ((maxc != g) & (maxc != r)) * (4.0 + gc - rc)
    h = torch.remainder((hr + hg + hb) / 6.0 + 1.0, 1.0)
    return torch.stack((h, s, maxc), dim=1)


def _hsv_to_rgb(x: torch.Tensor) -> torch.Tensor:
    h, s, v = x.unbind(1)
    i = torch.floor(h * 6.0)
    f = h * 6.0 - i
    i = i.to(torch.int64) % 6
    p = (v * (1.0 - s)).clamp(0.0, 1.0)
    q = (v * (1.0 - s * f)).clamp(0.0, 1.0)
    t = (v * (1.0 - s * (1.0 - f))).clamp(0.0, 1.0)
    table = torch.stack([
        torch.stack((v, q, p, p, t, v), dim=1),  # R for i = 0..5
        torch.stack((t, v, v, q, p, p), dim=1),  # G
        torch.stack((p, p, t, v, v, q), dim=1),  # B
    ], dim=1)  # [B, 3, 6, H, W]
    idx = i[:, None, None].expand(-1, 3, 1, -1, -1)
    return table.gather(2, idx).squeeze(2)


def adjust_hue(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate the hue of RGB images ``x [B, 3, H, W]`` by ``shift [B]`` (fraction of a turn, in [-0.5, 0.5])."""
    hsv = _rgb_to_hsv(x)
    h = torch.remainder(hsv[:, 0] + shift[:, None, None], 1.0)
    return _hsv_to_rgb(torch.stack((h, hsv[:, 1], hsv[:, 2]), dim=1))


def color_jitter(x: torch.Tensor, brightness: float = 0.4, contrast: float = 0.4, saturation: float = 0.4,
                 hue: float = 0.1, p: float = 0.8, generator: torch.Generator | None = None) -> torch.Tensor:
    """Per-image random brightness, contrast, saturation and hue, applied with probability ``p``.

    Factors are uniform in ``[1 - a, 1 + a]`` (hue shift in ``[-hue, hue]``), as torchvision's ``ColorJitter``;
    the order is fixed (brightness, contrast, saturation, hue). Saturation and hue are skipped for
    one-channel images. The random numbers for all four factors are always drawn, so the generator advances the
    same way whatever the number of channels.
    """
    _check_images(x)
    B, C = x.shape[:2]
    apply = _bernoulli(B, p, generator, x)[:, None, None, None]
    fb = _uniform(B, max(0.0, 1 - brightness), 1 + brightness, generator, x)[:, None, None, None]
    fc = _uniform(B, max(0.0, 1 - contrast), 1 + contrast, generator, x)[:, None, None, None]
    fs = _uniform(B, max(0.0, 1 - saturation), 1 + saturation, generator, x)[:, None, None, None]
    fh = _uniform(B, -hue, hue, generator, x)
    out = (x * fb).clamp(0, 1)
    mean = grayscale(out).mean(dim=(1, 2, 3), keepdim=True)
    out = (fc * out + (1 - fc) * mean).clamp(0, 1)
    if C == 3:
        out = (fs * out + (1 - fs) * grayscale(out)).clamp(0, 1)
        if hue > 0:
            out = adjust_hue(out, fh).clamp(0, 1)
    return torch.where(apply, out, x)


def normalize(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """``(x - mean) / std`` with per-channel ``mean`` and ``std`` of shape ``[C]``."""
    _check_images(x)
    mean = torch.as_tensor(mean, dtype=x.dtype, device=x.device).reshape(1, -1, 1, 1)
    std = torch.as_tensor(std, dtype=x.dtype, device=x.device).reshape(1, -1, 1, 1)
    return (x - mean) / std


def channel_stats(x: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean and standard deviation of images ``x [N, C, H, W]`` (float64 accumulation)."""
    _check_images(x)
    xd = x.double().transpose(0, 1).reshape(x.shape[1], -1)
    std = xd.std(dim=1).clamp_min(1e-6)
    return xd.mean(dim=1).tolist(), std.tolist()


# ---------------------------------------------------------------------------------------------- pipeline
class Augmenter:
    """Augmentation pipeline of one level (1-5); see the module docstring for the transforms.

    Args:
        level: augmentation level, 1-5.
        mean, std: per-channel normalisation statistics (level 1), length ``C``.
        crop_padding: padding of the random crop; ``None`` = ``max(1, round(H / 8))``.
        flip_p, jitter, jitter_p, gray_p: probabilities and strengths (brightness, contrast, saturation, hue).

    Examples:
        >>> import torch
        >>> aug = Augmenter(3, mean=[0.5], std=[0.25])
        >>> aug.transforms
        ('normalize', 'random_crop', 'hflip')
        >>> aug(torch.rand(8, 1, 28, 28), torch.Generator().manual_seed(0)).shape
        torch.Size([8, 1, 28, 28])
    """

    def __init__(self, level: int, mean: Sequence[float], std: Sequence[float], *, crop_padding: int | None = None,
                 flip_p: float = 0.5, jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.4, 0.1),
                 jitter_p: float = 0.8, gray_p: float = 0.2) -> None:
        if isinstance(level, bool) or not isinstance(level, int) or not 1 <= level <= len(LEVEL_TRANSFORMS):
            raise InputValueError(f"Augmenter: level must be an integer in [1, {len(LEVEL_TRANSFORMS)}]; "
                                  f"got {level!r}.")
        if len(mean) != len(std):
            raise ShapeError(f"Augmenter: mean and std must have one value per channel; got {len(mean)} and "
                             f"{len(std)}.")
        if any(float(s) <= 0 for s in std):
            raise InputValueError(f"Augmenter: std must be > 0 per channel; got {list(std)}.")
        self.level = level
        self.mean = [float(m) for m in mean]
        self.std = [float(s) for s in std]
        self.crop_padding = crop_padding
        self.flip_p = flip_p
        self.jitter = tuple(jitter)
        self.jitter_p = jitter_p
        self.gray_p = gray_p

    @property
    def transforms(self) -> tuple[str, ...]:
        """Names of the transforms applied, in order of their levels."""
        return LEVEL_TRANSFORMS[: self.level]

    def padding_for(self, height: int) -> int:
        return self.crop_padding if self.crop_padding is not None else max(1, round(height / 8))

    def augment(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Levels 2..k on images in ``[0, 1]`` (no normalisation)."""
        _check_images(x)
        if len(self.mean) != x.shape[1]:
            raise ShapeError(f"Augmenter: images have {x.shape[1]} channels but the normalisation statistics have "
                             f"{len(self.mean)}.")
        if self.level >= 2:
            x = random_crop(x, self.padding_for(x.shape[2]), generator)
        if self.level >= 3:
            x = hflip(x, self.flip_p, generator)
        if self.level >= 4:
            b, c, s, h = self.jitter
            x = color_jitter(x, b, c, s, h, self.jitter_p, generator)
        if self.level >= 5:
            x = random_grayscale(x, self.gray_p, generator)
        return x

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """Level 1: per-channel standardisation."""
        return normalize(x, torch.tensor(self.mean), torch.tensor(self.std))

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.normalize(self.augment(x, generator))

    def __repr__(self) -> str:
        return f"Augmenter(level={self.level}, transforms={list(self.transforms)})"
