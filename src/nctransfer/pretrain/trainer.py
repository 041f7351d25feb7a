"""Pre-training loop with atomic, resumable checkpoints (docs/methods.md#pretraining).

One call, :func:`pretrain`, trains a :class:`~nctransfer.pretrain.recipe.Recipe` on in-memory images: SGD with
momentum and a per-step cosine schedule, the recipe's loss, projection head, augmentation level and (optionally)
L-infinity PGD adversarial examples. After every epoch the complete state (weights, optimiser, schedule, history,
recipe, normalisation statistics, a fingerprint of the data) is written atomically to ``checkpoint``; calling
:func:`pretrain` again with the same recipe and data resumes after the last finished epoch and returns at once when
training is complete. The random stream of epoch ``e`` is seeded from ``(recipe.seed, e)``, so a resumed run
produces the same weights as an uninterrupted one.
"""

from __future__ import annotations

import hashlib
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from nctransfer.exceptions import InputValueError, NotFoundError, ShapeError
from nctransfer.pretrain.adversarial import pgd_linf
from nctransfer.pretrain.augment import Augmenter, channel_stats
from nctransfer.pretrain.losses import build_loss
from nctransfer.pretrain.nets import PretrainNet, build_net
from nctransfer.pretrain.recipe import Recipe
from nctransfer.utils.io import atomic_path
from nctransfer.utils.torch_io import safe_torch_load

CHECKPOINT_FORMAT = "nctransfer.pretrain.checkpoint/1"


def as_image_tensor(X: Any, name: str = "X") -> torch.Tensor:
    """Images as a float32 tensor ``[N, C, H, W]`` in ``[0, 1]``.

    Accepts ``[N, H, W]`` (one channel added) or ``[N, C, H, W]``, numpy or torch; ``uint8`` is divided by 255.
    Float input must already lie in ``[0, 1]``.

    Raises:
        ShapeError: wrong number of dimensions. InputValueError: values outside ``[0, 1]`` or non-finite.
    """
    t = torch.as_tensor(np.asarray(X)) if not isinstance(X, torch.Tensor) else X
    if t.ndim == 3:
        t = t[:, None]
    if t.ndim != 4:
        raise ShapeError(f"{name} must hold images [N, H, W] or [N, C, H, W]; got shape {tuple(t.shape)}.")
    if t.dtype == torch.uint8:
        return t.float().div_(255.0)
    if not t.dtype.is_floating_point:
        raise InputValueError(f"{name} must be uint8 (0-255) or float in [0, 1]; got dtype {t.dtype}.")
    t = t.float()
    if t.numel() and (not bool(torch.isfinite(t).all()) or float(t.min()) < 0 or float(t.max()) > 1):
        raise InputValueError(f"{name} must hold pixel values in [0, 1] (rescale first, e.g. digits / 16); got "
                              f"range [{float(t.min()):.4g}, {float(t.max()):.4g}].")
    return t


def data_fingerprint(X: torch.Tensor, y: torch.Tensor) -> str:
    """SHA-256 (16 hex digits) of the images and labels: a checkpoint only resumes on the same data."""
    h = hashlib.sha256()
    h.update(str(tuple(X.shape)).encode())
    h.update(X.contiguous().numpy().tobytes())
    h.update(y.contiguous().numpy().astype(np.int64).tobytes())
    return h.hexdigest()[:16]


@dataclass
class PretrainedModel:
    """A pre-trained network with everything needed to use its encoder.

    Attributes:
        recipe: the recipe it was trained with.
        net: :class:`~nctransfer.pretrain.nets.PretrainNet` (encoder, projection head, classifier).
        mean, std: per-channel normalisation (augmentation level 1) applied before the encoder.
        classes: original source labels, in the order of the classifier's outputs.
        in_channels, image_size: input geometry.
        history: one record per epoch (``epoch``, ``loss``, ``train_accuracy``, ``seconds``, ``lr``).
        complete: whether all epochs ran.
    """

    recipe: Recipe
    net: PretrainNet
    mean: list[float]
    std: list[float]
    classes: list[Any]
    in_channels: int
    image_size: int
    history: list[dict[str, Any]] = field(default_factory=list)
    complete: bool = False

    @property
    def encoder(self) -> torch.nn.Module:
        """The transferred representation (the projection head and classifier are not part of it)."""
        return self.net.encoder

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return Augmenter(1, self.mean, self.std).normalize(x)

    @torch.no_grad()
    def _batched(self, X: Any, fn: Any, batch_size: int) -> torch.Tensor:
        X = as_image_tensor(X)
        self.net.eval()
        outs = [fn(self.normalize(X[i:i + batch_size].to(self.device))).float().cpu()
                for i in range(0, len(X), batch_size)]
        return torch.cat(outs) if outs else torch.empty(0)

    def features(self, X: Any, batch_size: int = 512) -> torch.Tensor:
        """Encoder features ``[N, d]`` of images in ``[0, 1]`` (eval mode, normalised)."""
        return self._batched(X, self.net.features, batch_size)

    def logits(self, X: Any, batch_size: int = 512) -> torch.Tensor | None:
        """Source-classifier logits ``[N, K]`` (through the projection head); ``None`` for SupCon."""
        if self.net.classifier is None:
            return None
        return self._batched(X, self.net, batch_size)

    def probs(self, X: Any, batch_size: int = 512) -> np.ndarray | None:
        """Softmax of :meth:`logits` as float64 ``[N, K]`` (for LEEP/NCE), ``None`` for SupCon.

        For MSE-trained models the outputs are regression targets, not logits; their softmax is still a valid
        probability vector whose argmax is the prediction, which is what NCE uses.
        """
        logits = self.logits(X, batch_size)
        return None if logits is None else torch.softmax(logits.double(), dim=1).numpy()


def _config_dict(recipe: Recipe, mean: Sequence[float], std: Sequence[float], classes: list, in_channels: int,
                 image_size: int, data_fp: str) -> dict[str, Any]:
    return {"recipe": recipe.to_dict(), "fingerprint": recipe.fingerprint(), "mean": list(mean), "std": list(std),
            "classes": classes, "in_channels": in_channels, "image_size": image_size, "data_fingerprint": data_fp}


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write a checkpoint dict atomically (``torch.save`` to a temporary file, then rename)."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return Path(path)


def _read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise NotFoundError(f"checkpoint {str(p)!r} does not exist.")
    state = safe_torch_load(p, "pre-training checkpoint", "Delete it to start over.")  # no code runs from the file
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise InputValueError(f"{p} is not an nctransfer pre-training checkpoint (expected format "
                              f"{CHECKPOINT_FORMAT!r}).")
    return state


def load_pretrained(path: str | os.PathLike, device: str | torch.device = "cpu") -> PretrainedModel:
    """Load a checkpoint written by :func:`pretrain` (complete or not) as a :class:`PretrainedModel`."""
    state = _read_checkpoint(path)
    cfg = state["config"]
    recipe = Recipe(**cfg["recipe"])
    net = build_net(recipe, in_channels=cfg["in_channels"], image_size=cfg["image_size"],
                    num_classes=len(cfg["classes"]))
    net.load_state_dict(state["model"])
    net.to(device).eval()
    return PretrainedModel(recipe, net, cfg["mean"], cfg["std"], cfg["classes"], cfg["in_channels"],
                           cfg["image_size"], list(state["history"]), bool(state["complete"]))


def pretrain(
    recipe: Recipe | dict[str, Any],
    X: Any,
    y: Any,
    *,
    checkpoint: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    progress: bool = True,
    max_epochs: int | None = None,
) -> PretrainedModel:
    """Pre-train ``recipe`` on images ``X`` with labels ``y``; resume from ``checkpoint`` when it exists.

    Args:
        recipe: a :class:`Recipe` or a mapping accepted by :meth:`Recipe.from_dict`.
        X: images ``[N, H, W]`` or ``[N, C, H, W]``, ``uint8`` or float in ``[0, 1]``.
        y: labels ``[N]`` (any values; re-encoded to ``0..K-1`` in sorted order, at least 2 classes).
        checkpoint: file for the atomic per-epoch checkpoint (``None``: no checkpointing).
        device: torch device.
        progress: show a tqdm bar over the epochs.
        max_epochs: stop after this many epochs in total (the checkpoint stays resumable); used to interrupt
            runs deliberately, e.g. in tests.

    Returns:
        :class:`PretrainedModel` (``complete`` is false when stopped by ``max_epochs``).

    Raises:
        InputValueError: bad recipe/data, or a checkpoint written for another recipe or other data.
    """
    if not isinstance(recipe, Recipe):
        recipe = Recipe.from_dict(recipe)
    Xt = as_image_tensor(X)
    y_np = np.asarray(y.cpu() if isinstance(y, torch.Tensor) else y)
    if y_np.ndim != 1 or len(y_np) != len(Xt):
        raise ShapeError(f"y must be a 1-D array with one label per image ({len(Xt)}); got shape {y_np.shape}.")
    classes, codes = np.unique(y_np, return_inverse=True)
    if len(classes) < 2:
        raise InputValueError(f"pre-training needs at least 2 classes; y has {len(classes)}.")
    yt = torch.as_tensor(codes, dtype=torch.int64)
    N, C, H, W = Xt.shape
    if H != W:
        raise ShapeError(f"X must hold square images; got {H}x{W}.")
    mean, std = channel_stats(Xt)
    data_fp = data_fingerprint(Xt, yt)
    class_list = [c.item() if hasattr(c, "item") else c for c in classes]
    config = _config_dict(recipe, mean, std, class_list, C, H, data_fp)

    net = build_net(recipe, in_channels=C, image_size=H, num_classes=len(classes)).to(device)
    opt = torch.optim.SGD(net.parameters(), lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay)
    steps_per_epoch = max(1, math.ceil(N / recipe.batch_size) - (1 if N % recipe.batch_size == 1 else 0))
    total_steps = steps_per_epoch * recipe.epochs
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total_steps)
                                                                                 / total_steps)))
    history: list[dict[str, Any]] = []
    start_epoch = 0
    if checkpoint is not None and Path(checkpoint).is_file():
        state = _read_checkpoint(checkpoint)
        old = state["config"]
        if old["fingerprint"] != config["fingerprint"]:
            raise InputValueError(f"checkpoint {checkpoint} was written for another recipe ({old['recipe']}); "
                                  f"delete it or choose another path to train {recipe.to_dict()}.")
        if old["data_fingerprint"] != data_fp:
            raise InputValueError(f"checkpoint {checkpoint} was written for other training data (fingerprint "
                                  f"{old['data_fingerprint']} != {data_fp}); delete it or choose another path.")
        net.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        history = list(state["history"])
        start_epoch = int(state["epoch"])
    loss_fn = build_loss(recipe.loss, label_smoothing=recipe.smoothing, temperature=recipe.temperature)
    aug = Augmenter(recipe.augment, mean, std)
    stop = recipe.epochs if max_epochs is None else min(recipe.epochs, max_epochs)
    bar = tqdm(range(start_epoch, stop), desc=f"pretrain {recipe.name}", disable=not progress or start_epoch >= stop,
               leave=False, initial=start_epoch, total=stop)
    for epoch in bar:
        rec = _train_epoch(net, opt, sched, recipe, aug, loss_fn, Xt, yt, epoch, device)
        history.append(rec)
        bar.set_postfix(loss=f"{rec['loss']:.3f}", acc=f"{rec['train_accuracy']:.3f}")
        if checkpoint is not None:
            save_checkpoint(checkpoint, {
                "format": CHECKPOINT_FORMAT, "config": config, "epoch": epoch + 1,
                "complete": epoch + 1 >= recipe.epochs, "model": net.state_dict(), "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(), "history": history,
            })
    net.eval()
    done = (history[-1]["epoch"] + 1 if history else 0) >= recipe.epochs
    return PretrainedModel(recipe, net, mean, std, class_list, C, H, history, done)


def _train_epoch(net: PretrainNet, opt: torch.optim.Optimizer, sched: Any, recipe: Recipe, aug: Augmenter,
                 loss_fn: Any, X: torch.Tensor, y: torch.Tensor, epoch: int, device: Any) -> dict[str, Any]:
    g = torch.Generator().manual_seed((recipe.seed * 1_000_003 + epoch) % (2**63 - 1))
    N = len(X)
    perm = torch.randperm(N, generator=g)
    net.train()
    t0 = time.perf_counter()
    total_loss, n_seen, n_correct = 0.0, 0, 0
    lr = opt.param_groups[0]["lr"]
    for start in range(0, N, recipe.batch_size):
        idx = perm[start:start + recipe.batch_size]
        if len(idx) < 2:  # BatchNorm needs two samples; the last singleton of an epoch is skipped
            continue
        xb = aug.augment(X[idx], g).to(device)
        yb = y[idx].to(device)
        if recipe.adv_eps > 0:
            net.eval()  # attack with frozen BatchNorm statistics
            xb = pgd_linf(lambda z: loss_fn(net(aug.normalize(z)), yb), xb, recipe.adv_eps, steps=recipe.adv_steps,
                          step_size=recipe.step_size, generator=g)
            net.train()
        out = net(aug.normalize(xb))
        loss = loss_fn(out, yb)
        if not torch.isfinite(loss):
            raise InputValueError(f"recipe {recipe.name!r}: the loss became {float(loss.detach())} at epoch "
                                  f"{epoch + 1}; lower lr (now {recipe.lr}).")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        total_loss += float(loss.detach()) * len(idx)
        n_seen += len(idx)
        if net.classifier is not None:
            n_correct += int((out.argmax(dim=1) == yb).sum())
    return {
        "epoch": epoch, "loss": total_loss / max(n_seen, 1),
        "train_accuracy": n_correct / max(n_seen, 1) if net.classifier is not None else float("nan"),
        "seconds": time.perf_counter() - t0, "lr": lr,
    }
