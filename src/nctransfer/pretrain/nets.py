"""Networks for pre-training studies: a small CNN and an MLP that train in minutes on a CPU, any
``nctransfer.models`` architecture as an encoder, projection heads, and the training-time wrapper.

The evaluated representation is always the **encoder's** output (Li et al., TMLR 2024, section 3.1: "we only used the encoder
network as the pre-trained model for downstream tasks and abandoned the projection head"). During pre-training the
network is ``encoder -> projection head (0-3 layers) -> classifier`` for CE/MSE/label smoothing and
``encoder -> projection head -> L2 normalisation`` for SupCon.

Projection heads (Li et al., TMLR 2024, figure 3 and table 1, "MLP with ReLU activation, we vary the number of its layers"):

- before a classifier (CE, MSE, LS): ``n`` blocks ``Linear(., head_dim) -> ReLU``; the linear classifier follows;
- for SupCon: ``n`` linear layers with ReLU between them (1 = the "linear projection", 2 = the two-layer MLP of
  SupCon/SimCLR), output width ``head_dim``;
- ``n = 0``: no head (the classifier, or SupCon, reads the encoder output directly).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from nctransfer.exceptions import InputValueError
from nctransfer.features import Unit, discover_units
from nctransfer.models import load_model


class SmallCNN(nn.Module):
    """``depth`` conv blocks ``block1..blockD`` (3x3 conv, BatchNorm, ReLU, 2x2 max-pool except the last) and a
    global average pool. Channels ``width * 2^i`` (capped at ``8 * width``); output ``[B, num_features]``.

    With the defaults (width 16, depth 4) it has about 0.1 M parameters and trains on a few thousand 28-px images
    in seconds per epoch on one CPU core. The blocks are named children, so ``nctransfer.features`` discovers them
    as taps for layer-wise (progressive) collapse.
    """

    def __init__(self, in_channels: int = 1, width: int = 16, depth: int = 4) -> None:
        super().__init__()
        c_in = in_channels
        for i in range(depth):
            c_out = width * min(2 ** i, 8)
            layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
                                       nn.ReLU(inplace=True)]
            if i < depth - 1:
                layers.append(nn.MaxPool2d(2))
            self.add_module(f"block{i + 1}", nn.Sequential(*layers))
            c_in = c_out
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.num_features = c_in
        self.depth = depth
        self.tap_names = [f"block{i + 1}" for i in range(depth)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(self.depth):
            x = getattr(self, f"block{i + 1}")(x)
        return self.pool(x)


class MLP(nn.Module):
    """Flatten, then ``depth`` blocks ``fc1..fcD`` of ``Linear -> BatchNorm1d -> ReLU`` of width ``width``
    (Li et al., TMLR 2024, figure 2 uses 9 layers of width 784 on MNIST/Fashion-MNIST)."""

    def __init__(self, in_features: int, width: int = 256, depth: int = 4) -> None:
        super().__init__()
        self.flatten = nn.Flatten()
        d = in_features
        for i in range(depth):
            self.add_module(f"fc{i + 1}", nn.Sequential(nn.Linear(d, width, bias=False), nn.BatchNorm1d(width),
                                                         nn.ReLU(inplace=True)))
            d = width
        self.num_features = width
        self.depth = depth
        self.tap_names = [f"fc{i + 1}" for i in range(depth)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.flatten(x)
        for i in range(self.depth):
            x = getattr(self, f"fc{i + 1}")(x)
        return x


class ChannelAdapter(nn.Module):
    """Repeat a 1-channel image to the 3 channels an external architecture expects, then run it."""

    def __init__(self, backbone: nn.Module, in_channels: int, expected: int, num_features: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.repeat = expected if in_channels == 1 and expected != 1 else 1
        self.num_features = num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.repeat > 1:
            x = x.expand(-1, self.repeat, -1, -1)
        out = self.backbone(x)
        if out.ndim == 4:  # a backbone that returns a feature map: average-pool it
            out = out.mean(dim=(2, 3))
        return out.flatten(1)


class ProjectionHead(nn.Module):
    """``n_layers`` linear layers of width ``dim`` (see the module docstring); ``n_layers = 0`` is the identity.

    Args:
        in_dim: encoder output width.
        n_layers: 0-3.
        dim: width of every layer.
        final_activation: ReLU after the last layer too (heads followed by a linear classifier).
    """

    def __init__(self, in_dim: int, n_layers: int, dim: int, final_activation: bool) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        d = in_dim
        for i in range(n_layers):
            layers.append(nn.Linear(d, dim))
            if i < n_layers - 1 or final_activation:
                layers.append(nn.ReLU(inplace=True))
            d = dim
        self.layers = nn.Sequential(*layers)
        self.n_layers = n_layers
        self.out_dim = d

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class PretrainNet(nn.Module):
    """``encoder -> head -> classifier`` used during pre-training; ``features(x)`` is the evaluated output.

    Attributes:
        encoder: the representation kept after pre-training.
        head: :class:`ProjectionHead` (identity when 0 layers), discarded after pre-training.
        classifier: ``nn.Linear(head.out_dim, K)`` for CE/MSE/LS, ``None`` for SupCon.
    """

    def __init__(self, encoder: nn.Module, head: ProjectionHead, classifier: nn.Module | None) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = head
        self.classifier = classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The quantity the loss reads: logits ``[B, K]`` or the SupCon projection ``[B, p]``."""
        z = self.head(self.encoder(x))
        return self.classifier(z) if self.classifier is not None else z

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Encoder output ``[B, num_features]`` (the representation that is transferred)."""
        return self.encoder(x)

    def source_logits(self, x: torch.Tensor) -> torch.Tensor | None:
        """Logits of the source classifier (through the projection head), or ``None`` for SupCon."""
        if self.classifier is None:
            return None
        return self.classifier(self.head(self.encoder(x)))


def encoder_units(encoder: nn.Module) -> list[Any]:
    """The layer-wise taps of an encoder as ``nctransfer.features.Unit`` objects, in forward order.

    Built-in encoders list their blocks (``block1..`` / ``fc1..``); external ones use
    :func:`nctransfer.features.discover_units` on the wrapped backbone (residual blocks, timm blocks, ...). The
    encoder's output itself (the transferred feature) is not a unit: studies record it as ``"penultimate"``.
    """
    names = getattr(encoder, "tap_names", None)
    if names is not None:
        return [Unit(name=n, path=n, module=encoder.get_submodule(n), index=i) for i, n in enumerate(names)]
    root = encoder.backbone if isinstance(encoder, ChannelAdapter) else encoder
    units = discover_units(root)
    prefix = "backbone." if root is not encoder else ""
    return [Unit(name=u.name, path=prefix + u.path, module=u.module, index=u.index) for u in units]


def build_encoder(arch: str, *, in_channels: int, image_size: int, width: int = 16, depth: int = 4,
                  pretrained: bool = False) -> nn.Module:
    """The encoder of a recipe: ``small_cnn``, ``mlp`` or any ``nctransfer.models.load_model`` name.

    The returned module maps normalised images ``[B, C, H, W]`` to features ``[B, num_features]`` and carries a
    ``num_features`` attribute. External models lose their classifier (replaced by the identity) and are fed
    1-channel images repeated to 3 channels.

    Raises:
        NotFoundError: an unknown architecture (from ``nctransfer.models``).
    """
    if arch == "small_cnn":
        return SmallCNN(in_channels, width, depth)
    if arch == "mlp":
        return MLP(in_channels * image_size * image_size, width, depth)
    return _external_encoder(arch, in_channels=in_channels, image_size=image_size, pretrained=pretrained)


def _external_encoder(arch: str, *, in_channels: int, image_size: int, pretrained: bool) -> nn.Module:
    model = load_model(arch, pretrained=pretrained, num_classes=0)  # classifier -> identity
    expected = 3
    first_conv = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    if first_conv is not None:
        expected = first_conv.in_channels
    if in_channels not in (1, expected):
        raise InputValueError(f"arch {arch!r} expects {expected}-channel images; the data has {in_channels}.")
    model.eval()
    with torch.no_grad():
        probe = torch.zeros(2, expected, image_size, image_size)
        out = model(probe)
    if out.ndim == 4:
        num_features = out.shape[1]
    else:
        num_features = out.flatten(1).shape[1]
    model.train()
    return ChannelAdapter(model, in_channels, expected, int(num_features))


def build_net(recipe: Any, *, in_channels: int, image_size: int, num_classes: int) -> PretrainNet:
    """The training network of a :class:`~nctransfer.pretrain.recipe.Recipe` (seeded by ``recipe.seed``)."""
    torch.manual_seed(recipe.seed)
    encoder = build_encoder(recipe.arch, in_channels=in_channels, image_size=image_size, width=recipe.encoder_width,
                            depth=recipe.depth, pretrained=recipe.pretrained)
    d = int(encoder.num_features)
    head = ProjectionHead(d, recipe.head_layers, recipe.head_dim, final_activation=recipe.has_classifier)
    classifier = nn.Linear(head.out_dim, num_classes) if recipe.has_classifier else None
    return PretrainNet(encoder, head, classifier)
