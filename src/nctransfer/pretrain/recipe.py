"""Pre-training recipes (docs/methods.md#pretraining; Li et al., TMLR 2024, section 3.1).

A :class:`Recipe` is everything that defines one pre-training run: the architecture, the loss (CE, MSE with
one-hot targets, SupCon, label-smoothed CE), the projection head (0-3 layers, discarded after pre-training),
the augmentation level (1-5), the L-infinity PGD adversarial-training radius and the optimiser settings.
Recipes are plain dataclasses validated on creation; they round-trip through ``to_dict`` / ``from_dict``
(unknown keys are errors that list the valid ones) and hash to a stable ``fingerprint`` used to decide whether a
checkpoint or a study result belongs to the same recipe.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Mapping

from nctransfer.exceptions import InputValueError

#: Losses and their accepted aliases (docs/methods.md#pretraining).
LOSSES: dict[str, str] = {
    "ce": "cross-entropy on the linear classifier's logits",
    "mse": "squared error between the logits and one-hot targets (Hui & Belkin 2021), summed over classes",
    "supcon": "supervised contrastive loss (Khosla et al. 2020) on the L2-normalised projection",
    "ls": "cross-entropy with label smoothing (default smoothing 0.1)",
}
_LOSS_ALIASES = {
    "cross_entropy": "ce", "cross-entropy": "ce", "crossentropy": "ce",
    "label_smoothing": "ls", "label-smoothing": "ls",
    "squared_error": "mse", "l2": "mse",
    "sup_con": "supcon", "contrastive": "supcon",
}
#: Adversarial radii studied by Li et al., TMLR 2024 (appendix B, figure 4), in units of 1/255 of the [0, 1] pixel range.
SPEC_RADII_255: tuple[int, ...] = (1, 2, 3, 5, 8)
#: Built-in architectures that train in minutes on a CPU (anything else goes through ``nctransfer.models``).
BUILTIN_ARCHS = ("small_cnn", "mlp")
MAX_HEAD_LAYERS = 3
DEFAULT_LABEL_SMOOTHING = 0.1


def parse_radius(value: Any, name: str = "adv_eps") -> float:
    """An L-infinity radius on the ``[0, 1]`` pixel scale from a number or a string such as ``"8/255"``.

    Raises:
        InputValueError: not a number, or outside ``[0, 1]``.

    Examples:
        >>> parse_radius("8/255") == 8 / 255
        True
    """
    if isinstance(value, bool):
        raise InputValueError(f"{name} must be a number in [0, 1] (e.g. 0.0314 or '8/255'); got {value!r}.")
    if isinstance(value, str):
        try:
            eps = float(Fraction(value.strip().replace(" ", "")))
        except (ValueError, ZeroDivisionError):
            raise InputValueError(
                f"{name} must be a number in [0, 1] or a fraction such as '8/255'; got {value!r}."
            ) from None
    else:
        try:
            eps = float(value)
        except (TypeError, ValueError):
            raise InputValueError(f"{name} must be a number in [0, 1]; got {value!r}.") from None
    if not (0.0 <= eps <= 1.0):  # also rejects NaN
        raise InputValueError(
            f"{name} must lie in [0, 1] (pixel scale of images in [0, 1]; Li et al., TMLR 2024 uses "
            f"{{1,2,3,5,8}}/255); got {value!r}. Hint: write 8/255 rather than 8."
        )
    return eps


def canonical_loss(loss: Any) -> str:
    """Canonical loss name (``ce``, ``mse``, ``supcon``, ``ls``) from a name or alias; raises on unknown names."""
    if not isinstance(loss, str):
        raise InputValueError(f"loss must be one of {sorted(LOSSES)}; got {loss!r}.")
    key = loss.strip().lower()
    key = _LOSS_ALIASES.get(key, key)
    if key not in LOSSES:
        close = difflib.get_close_matches(key, list(LOSSES) + list(_LOSS_ALIASES), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise InputValueError(f"loss must be one of {sorted(LOSSES)} (aliases {sorted(_LOSS_ALIASES)}); "
                              f"got {loss!r}.{hint}")
    return key


@dataclass
class Recipe:
    """One pre-training recipe (docs/methods.md#pretraining).

    Attributes:
        name: label used in tables, plots and file names; derived from the non-default fields when empty.
        arch: ``"small_cnn"`` (4 conv blocks), ``"mlp"`` (``depth`` fully connected layers), or any name
            accepted by ``nctransfer.models.load_model`` (``"timm:resnet18"``, ``"torchvision:resnet18"``, ...),
            built with random weights unless ``pretrained`` is true.
        width: base width: channels of the first conv block (doubling per block) or MLP hidden width;
            ``None`` = 16 for ``small_cnn``, 256 for ``mlp`` (ignored by external architectures).
        depth: number of conv blocks (``small_cnn``, 1-5) or hidden layers (``mlp``).
        pretrained: start an external architecture from its published weights (needs them available offline).
        loss: ``"ce"``, ``"mse"`` (one-hot targets), ``"supcon"`` or ``"ls"`` (label-smoothed CE); aliases accepted.
        label_smoothing: smoothing of CE targets in ``[0, 1)``; ``None`` = 0 for ``ce``, 0.1 for ``ls``.
        temperature: SupCon temperature ``tau``.
        head_layers: projection-head depth 0-3 (linear layers between the encoder and the loss), discarded after
            pre-training. For SupCon, 1 = the linear projection and 2-3 = MLP projections of Li et al., TMLR 2024, table 1.
        head_dim: width of the projection head.
        augment: augmentation level 1-5 (1 normalise, 2 + random crop, 3 + horizontal flip, 4 + colour jitter,
            5 + random grayscale).
        adv_eps: L-infinity PGD radius on the ``[0, 1]`` pixel scale (``"8/255"`` accepted); 0 = no adversarial
            training. Li et al., TMLR 2024 uses ``{1,2,3,5,8}/255``.
        adv_steps: PGD steps per batch.
        adv_step_size: PGD step size; ``None`` = ``2.5 * adv_eps / adv_steps`` (Madry et al. 2018).
        epochs, batch_size, lr, momentum, weight_decay: SGD with momentum and a cosine schedule from ``lr``
            (Li et al., TMLR 2024, appendix B uses 0.1, 0.9, 1e-4 and 200 epochs; the defaults here are for CPU minutes).
        seed: seeds the initialisation, the batch order, the augmentation and PGD's random start.
    """

    name: str = ""
    arch: str = "small_cnn"
    width: int | None = None
    depth: int = 4
    pretrained: bool = False
    loss: str = "ce"
    label_smoothing: float | None = None
    temperature: float = 0.1
    head_layers: int = 0
    head_dim: int = 128
    augment: int = 1
    adv_eps: float = 0.0
    adv_steps: int = 3
    adv_step_size: float | None = None
    epochs: int = 5
    batch_size: int = 128
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    seed: int = 0
    _explicit: tuple[str, ...] = field(default=(), repr=False, compare=False)

    def __post_init__(self) -> None:
        self.loss = canonical_loss(self.loss)
        if not isinstance(self.arch, str) or not self.arch.strip():
            raise InputValueError(f"Recipe.arch must be a non-empty string such as {BUILTIN_ARCHS[0]!r} or "
                                  f"'timm:resnet18'; got {self.arch!r}.")
        if self.width is not None:
            _check_int(self, "width", 1, 4096)
        _check_int(self, "depth", 1, 64)
        if self.arch == "small_cnn" and self.depth > 5:
            raise InputValueError(f"Recipe.depth for arch 'small_cnn' must be 1-5 (each block halves 28-px "
                                  f"images); got {self.depth}.")
        _check_int(self, "head_layers", 0, MAX_HEAD_LAYERS)
        _check_int(self, "head_dim", 1, 65536)
        _check_int(self, "augment", 1, 5)
        _check_int(self, "adv_steps", 1, 1000)
        _check_int(self, "epochs", 1, 100000)
        _check_int(self, "batch_size", 2, 1 << 20)
        _check_int(self, "seed", 0, 2**63 - 1)
        self.adv_eps = parse_radius(self.adv_eps, "Recipe.adv_eps")
        if self.adv_step_size is not None:
            self.adv_step_size = parse_radius(self.adv_step_size, "Recipe.adv_step_size")
        if self.label_smoothing is not None:
            ls = _check_float(self, "label_smoothing")
            if not 0.0 <= ls < 1.0:
                raise InputValueError(f"Recipe.label_smoothing must lie in [0, 1); got {self.label_smoothing!r}.")
            if ls > 0 and self.loss not in ("ce", "ls"):
                raise InputValueError(f"Recipe.label_smoothing applies to losses 'ce'/'ls' only; got loss "
                                      f"{self.loss!r} with label_smoothing={ls}.")
        for name in ("temperature", "lr"):
            if not _check_float(self, name) > 0:
                raise InputValueError(f"Recipe.{name} must be > 0; got {getattr(self, name)!r}.")
        if not 0 <= _check_float(self, "momentum") < 1:
            raise InputValueError(f"Recipe.momentum must lie in [0, 1); got {self.momentum!r}.")
        if not _check_float(self, "weight_decay") >= 0:
            raise InputValueError(f"Recipe.weight_decay must be >= 0; got {self.weight_decay!r}.")
        if not isinstance(self.pretrained, bool):
            raise InputValueError(f"Recipe.pretrained must be true or false; got {self.pretrained!r}.")
        if not isinstance(self.name, str):
            raise InputValueError(f"Recipe.name must be a string; got {self.name!r}.")
        if not self.name:
            self.name = self.auto_name()
        bad = set('/\\:*?"<>|') & set(self.name)
        if bad or self.name in (".", ".."):
            raise InputValueError(f"Recipe.name {self.name!r} is used as a directory name: it must not contain "
                                  f"any of {sorted(bad)}.")

    # ------------------------------------------------------------------ derived values
    @property
    def smoothing(self) -> float:
        """Effective label smoothing (0 unless loss is ``ce``/``ls``; 0.1 by default for ``ls``)."""
        if self.label_smoothing is not None:
            return float(self.label_smoothing)
        return DEFAULT_LABEL_SMOOTHING if self.loss == "ls" else 0.0

    @property
    def encoder_width(self) -> int:
        """``width`` or the architecture's default (16 for ``small_cnn``, 256 for ``mlp``)."""
        if self.width is not None:
            return int(self.width)
        return 256 if self.arch == "mlp" else 16

    @property
    def step_size(self) -> float:
        """PGD step size: ``adv_step_size`` or ``2.5 * adv_eps / adv_steps``."""
        return self.adv_step_size if self.adv_step_size is not None else 2.5 * self.adv_eps / self.adv_steps

    @property
    def has_classifier(self) -> bool:
        """Whether pre-training trains a source classifier (all losses except SupCon)."""
        return self.loss != "supcon"

    def auto_name(self) -> str:
        """A readable name from the fields that differ from the defaults, e.g. ``"mse-h2-aug3-adv2"``."""
        parts = [self.loss]
        if self.label_smoothing is not None and self.smoothing != (DEFAULT_LABEL_SMOOTHING if self.loss == "ls"
                                                                    else 0.0):
            parts.append(f"s{self.smoothing:g}")
        if self.arch != "small_cnn":
            parts.insert(0, self.arch.replace(":", "_").replace("/", "_"))
        parts.append(f"h{self.head_layers}")
        if self.augment != 1:
            parts.append(f"aug{self.augment}")
        if self.adv_eps > 0:
            r255 = self.adv_eps * 255
            parts.append(f"adv{round(r255)}" if abs(r255 - round(r255)) < 1e-6 else f"adv{self.adv_eps:.4g}")
        skip = {"name", "arch", "loss", "label_smoothing", "head_layers", "augment", "adv_eps", "_explicit"}
        defaults = {f.name: f.default for f in dataclasses.fields(Recipe)}
        for key in self._explicit:
            if key not in skip and getattr(self, key) != defaults.get(key):
                parts.append(f"{key}{getattr(self, key)}")
        return "-".join(parts)

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict[str, Any]:
        """Plain dict of every field (JSON/YAML friendly)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if not f.name.startswith("_")}

    def training_dict(self) -> dict[str, Any]:
        """The fields that determine the trained weights, with defaults resolved and the settings that have no
        effect normalised away (PGD settings without adversarial training, temperature without SupCon, head width
        without a head), so that two recipes training identically have the same dict."""
        d = self.to_dict()
        d.pop("name")
        d["label_smoothing"] = self.smoothing
        d["width"] = self.encoder_width
        if self.adv_eps > 0:
            d["adv_step_size"] = self.step_size
        else:
            d["adv_steps"] = d["adv_step_size"] = None
        if self.loss != "supcon":
            d["temperature"] = None
        if self.head_layers == 0:
            d["head_dim"] = None
        return d

    def fingerprint(self) -> str:
        """Stable 12-hex-digit hash of :meth:`training_dict` (same weights <=> same fingerprint)."""
        blob = json.dumps(self.training_dict(), sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:12]

    @classmethod
    def fields(cls) -> list[str]:
        """Names of the recipe keys accepted by :meth:`from_dict`."""
        return [f.name for f in dataclasses.fields(cls) if not f.name.startswith("_")]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, where: str = "recipe",
                  name_keys: Any = None) -> "Recipe":
        """Build a recipe from a mapping; keys may use dashes. Unknown keys raise, naming the closest valid key.

        ``name_keys`` (default: every key given) are the keys whose non-default values may appear in the
        automatic name (a study passes the per-recipe keys, not the shared defaults).

        Raises:
            InputValueError: not a mapping, unknown key, or an invalid value.
        """
        if not isinstance(data, Mapping):
            raise InputValueError(f"{where} must be a mapping of recipe keys to values; got "
                                  f"{type(data).__name__} {data!r}.")
        valid = cls.fields()
        clean: dict[str, Any] = {}
        for key, value in data.items():
            k = str(key).replace("-", "_")
            if k not in valid:
                close = difflib.get_close_matches(k, valid, n=1)
                hint = f" Did you mean {close[0]!r}?" if close else ""
                raise InputValueError(f"{where}: unknown recipe key {key!r}.{hint} Valid keys: {valid}.")
            clean[k] = value
        keys = clean if name_keys is None else [str(k).replace("-", "_") for k in name_keys]
        return cls(**clean, _explicit=tuple(sorted(keys)))


def _check_int(recipe: Recipe, name: str, lo: int, hi: int) -> int:
    value = getattr(recipe, name)
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
            setattr(recipe, name, value)
        else:
            raise InputValueError(f"Recipe.{name} must be an integer in [{lo}, {hi}]; got {value!r}.")
    if not lo <= value <= hi:
        raise InputValueError(f"Recipe.{name} must be an integer in [{lo}, {hi}]; got {value}.")
    return value


def _check_float(recipe: Recipe, name: str) -> float:
    value = getattr(recipe, name)
    if isinstance(value, bool):
        raise InputValueError(f"Recipe.{name} must be a number; got {value!r}.")
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise InputValueError(f"Recipe.{name} must be a number; got {value!r}.") from None
    if f != f:
        raise InputValueError(f"Recipe.{name} must be a finite number; got NaN.")
    setattr(recipe, name, f)
    return f
