"""The SCL skip branch: fine-tuned unit output -> penultimate feature (docs/methods.md#finetuning; Li et al., TMLR 2024, section 3.3,
appendix B; Li et al., 2022 preprint, appendix A for the 1x1-convolution variant).

With ``u`` the output of the fine-tuned unit and ``h`` the penultimate feature the classifier reads,

- pooling: ``p = mean_{h,w} u`` for a conv map ``[B, C, H, W]`` (adaptive average pooling to one value per
  channel); ``p = mean_t u`` over *all* tokens (class token included, as Li et al., TMLR 2024, appendix B averages the 145
  tokens of ViT-B/32) for a transformer ``[B, T, D]``; a ``[B, C]`` output is used as is;
- ``"pad"`` (Li et al., TMLR 2024): ``s = [p, 0, ..., 0]`` zero-padded to the penultimate width ``D`` (``C <= D`` required;
  for ViTs ``C == D`` and this is the identity);
- ``"conv"`` (Li et al., 2022 preprint): ``s = BN(Conv1x1(p))`` with ``Conv1x1: C -> D`` (no bias) and ``BatchNorm2d(D)``,
  applied to ``p`` viewed as ``[B, C, 1, 1]``;
- the classifier reads ``h + s`` instead of ``h``.

It is wired with two hooks (a forward hook on the unit that stores ``p``, a forward pre-hook on the classifier
that adds ``s``), so the model's own forward, parameter names and ``state_dict`` keys stay unchanged; the branch
is registered as the sub-module ``model.nctransfer_skip`` (so its parameters and BatchNorm statistics are part
of ``model.parameters()`` and ``model.state_dict()``).
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from nctransfer.exceptions import InputValueError, ShapeError
from nctransfer.features import discover_units, first_tensor, infer_widths, pool_features
from nctransfer.finetune.config import SKIP_MODES
from nctransfer.finetune.selection import SKIP_ATTR, classifier_path, resolve_unit
from nctransfer.models.info import get_model_info


def pool_unit_output(out: Any) -> torch.Tensor:
    """Pool a unit's output to ``[B, C]`` keeping gradients (:func:`nctransfer.features.pool_features` with token
    mean: ``[B, C, H, W] -> [B, C]`` spatial mean, ``[B, T, D] -> [B, D]`` token mean, ``[B, C]`` unchanged)."""
    return pool_features(first_tensor(out), "mean", name="SCL skip branch")


class SkipBranch(nn.Module):
    """Maps the pooled unit output ``[B, C]`` to the penultimate width ``[B, D]`` (module docstring).

    Args:
        in_features: ``C``, channels (or token width) of the unit output.
        out_features: ``D``, width of the penultimate feature.
        mode: ``"pad"`` (zero-padding, no parameters) or ``"conv"`` (1x1 conv + BatchNorm).
    """

    def __init__(self, in_features: int, out_features: int, mode: str = "pad") -> None:
        super().__init__()
        if mode not in SKIP_MODES:
            raise InputValueError(f"skip must be one of {list(SKIP_MODES)}; got {mode!r}.")
        if mode == "pad" and in_features > out_features:
            raise InputValueError(
                f"skip='pad': the unit output has {in_features} channels, more than the {out_features} of the "
                "penultimate feature, so zero-padding cannot match them; use skip='conv' (1x1 conv + BatchNorm)."
            )
        self.in_features = int(in_features)
        self.out_features = int(out_features)
        self.mode = mode
        if mode == "conv":
            self.conv = nn.Conv2d(in_features, out_features, kernel_size=1, bias=False)
            self.bn = nn.BatchNorm2d(out_features)
        self._pooled: torch.Tensor | None = None
        self._handles: list[Any] = []
        self.unit_path = ""
        self.classifier_path = ""

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        """``[B, C] -> [B, D]``."""
        if pooled.dim() != 2 or pooled.shape[1] != self.in_features:
            raise ShapeError(f"skip branch: expected pooled unit output [B, {self.in_features}]; "
                             f"got {tuple(pooled.shape)}.")
        if self.mode == "pad":
            return nn.functional.pad(pooled, (0, self.out_features - self.in_features))
        return self.bn(self.conv(pooled[:, :, None, None])).flatten(1)

    # hooks are bound methods so that copy.deepcopy(model) rewires them to the copied branch
    def _unit_hook(self, module: nn.Module, args: Any, output: Any) -> None:
        self._pooled = pool_unit_output(output)

    def _classifier_pre_hook(self, module: nn.Module, args: tuple) -> tuple:
        if self._pooled is None:
            raise RuntimeError(
                f"SCL skip branch: the unit {self.unit_path!r} did not run before the classifier "
                f"{self.classifier_path!r} in this forward pass."
            )
        pooled, self._pooled = self._pooled, None
        h = args[0]
        if h.dim() != 2 or h.shape[1] != self.out_features:
            raise ShapeError(
                f"SCL skip branch: the classifier {self.classifier_path!r} reads a feature of shape "
                f"{tuple(h.shape)}; expected [B, {self.out_features}]."
            )
        s = self(pooled.to(h.dtype) if pooled.dtype != h.dtype else pooled)
        return (h + s.to(h.dtype), *args[1:])

    def extra_repr(self) -> str:
        return f"{self.unit_path} [B, {self.in_features}] -> {self.classifier_path} [B, {self.out_features}], " \
               f"mode={self.mode!r}"


def _probe_widths(model: nn.Module, unit: Any, image_size: int | tuple[int, int] | None) -> tuple[int, int]:
    """Widths (pooled unit output, classifier input) from one dry forward (:func:`nctransfer.features.infer_widths`)."""
    info = get_model_info(model)
    input_size = None
    if image_size is not None:
        hw = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        input_size = (info.in_chans if info is not None else 3, *hw)
    pen = discover_units(model, include_penultimate=True)[-1]
    if not pen.is_penultimate:
        raise InputValueError(f"SCL: cannot find the classifier of {type(model).__name__}.")
    u, p = infer_widths(model, [copy.copy(unit), pen], input_size=input_size)
    if p.out_shape is None or len(p.out_shape) != 1:
        raise ShapeError(f"SCL: the classifier {p.path!r} reads a feature of shape [B, *{p.out_shape}]; expected "
                         "[B, D] (a pooled penultimate feature).")
    return int(u.width), int(p.width)


def attach_skip(model: nn.Module, unit: Any, mode: str = "pad",
                image_size: int | tuple[int, int] | None = None) -> SkipBranch:
    """Attach the SCL skip branch from ``unit`` to the classifier input of ``model`` (in place).

    Args:
        model: the network; must not already carry a skip branch.
        unit: unit name, index or resolved ``Unit`` (:func:`nctransfer.finetune.selection.resolve_unit`).
        mode: ``"pad"`` or ``"conv"``.
        image_size: input size of the shape-probing forward pass (default: the model's own).

    Returns:
        the :class:`SkipBranch`, registered as ``model.nctransfer_skip``.

    Examples:
        >>> import torchvision
        >>> m = torchvision.models.resnet18(num_classes=3)
        >>> b = attach_skip(m, "layer3.0", image_size=32)   # doctest: +SKIP
        >>> (b.in_features, b.out_features)                  # doctest: +SKIP
        (256, 512)
    """
    if mode not in SKIP_MODES:
        raise InputValueError(f"skip must be one of {list(SKIP_MODES)}; got {mode!r}.")
    if hasattr(model, SKIP_ATTR):
        raise InputValueError("attach_skip: the model already has a skip branch; call detach_skip(model) first.")
    u = unit if hasattr(unit, "path") and hasattr(unit, "module") else resolve_unit(model, unit)
    cpath = classifier_path(model)
    cls_module = model.get_submodule(cpath)
    c_in, d = _probe_widths(model, u, image_size)
    branch = SkipBranch(c_in, d, mode)
    branch.unit_path, branch.classifier_path = u.path, cpath
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    branch.to(device)
    model.add_module(SKIP_ATTR, branch)
    branch._handles = [
        u.module.register_forward_hook(branch._unit_hook),
        cls_module.register_forward_pre_hook(branch._classifier_pre_hook),
    ]
    return branch


def detach_skip(model: nn.Module) -> SkipBranch | None:
    """Remove the skip branch (hooks and sub-module) and return it; ``None`` when there is none."""
    branch = getattr(model, SKIP_ATTR, None)
    if branch is None:
        return None
    for h in branch._handles:
        h.remove()
    branch._handles = []
    delattr(model, SKIP_ATTR)
    return branch


def get_skip(model: nn.Module) -> SkipBranch | None:
    """The attached :class:`SkipBranch` or ``None``."""
    return getattr(model, SKIP_ATTR, None)
