"""Pre-training losses (docs/methods.md#pretraining; Li et al., TMLR 2024, section 3.1, table 1).

All losses take the output of the network's last trainable module for a batch and integer labels ``y [B]``
in ``0..K-1`` and return a scalar mean over the batch:

- ``ce``: cross-entropy of the logits ``[B, K]``, optionally with label smoothing ``s``
  (targets ``(1 - s) e_y + s / K``; Szegedy et al. 2016).
- ``ls``: the same with ``s = 0.1`` by default.
- ``mse``: ``(1/B) sum_i ||f(x_i) - e_{y_i}||^2`` with one-hot targets ``e_y`` (Hui & Belkin, ICLR 2021),
  summed over classes, averaged over the batch.
- ``supcon``: supervised contrastive loss ``L_out`` of Khosla et al. (NeurIPS 2020, eq. 2) on L2-normalised
  embeddings ``z [B, p]``:
  ``L = (1/|A|) sum_{i in A} -1/|P(i)| sum_{p in P(i)} log( exp(z_i.z_p / tau) / sum_{a != i} exp(z_i.z_a / tau) )``
  with ``P(i)`` the other samples of ``i``'s class and ``A`` the anchors that have at least one positive.
  nctransfer uses one view per sample (positives are the other same-class samples of the batch), which keeps
  the cost of a CPU study at one forward pass per image; the augmentation level still applies to that view.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from nctransfer.exceptions import InputValueError, ShapeError
from nctransfer.pretrain.recipe import canonical_loss


def _check(out: torch.Tensor, y: torch.Tensor, name: str) -> None:
    if out.ndim != 2:
        raise ShapeError(f"{name}: the network output must be [B, C]; got shape {tuple(out.shape)}.")
    if y.ndim != 1 or len(y) != len(out):
        raise ShapeError(f"{name}: labels must be [B] with B = {len(out)}; got shape {tuple(y.shape)}.")


def cross_entropy_loss(logits: torch.Tensor, y: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """Cross-entropy of ``logits [B, K]`` against labels ``y [B]``, with label smoothing in ``[0, 1)``."""
    _check(logits, y, "cross_entropy_loss")
    if not 0.0 <= label_smoothing < 1.0:
        raise InputValueError(f"label_smoothing must lie in [0, 1); got {label_smoothing!r}.")
    return F.cross_entropy(logits, y, label_smoothing=float(label_smoothing))


def mse_loss(outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``(1/B) sum_i ||outputs_i - onehot(y_i)||^2`` for ``outputs [B, K]`` (Hui & Belkin 2021)."""
    _check(outputs, y, "mse_loss")
    target = F.one_hot(y, outputs.shape[1]).to(outputs.dtype)
    return (outputs - target).pow(2).sum(dim=1).mean()


def supcon_loss(embeddings: torch.Tensor, y: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """Supervised contrastive loss ``L_out`` (Khosla et al. 2020, eq. 2) of ``embeddings [B, p]``.

    The embeddings are L2-normalised here. Anchors without a positive in the batch are skipped; a batch where no
    anchor has a positive gives a zero loss that still carries a graph (so ``backward`` works).
    """
    _check(embeddings, y, "supcon_loss")
    if not temperature > 0:
        raise InputValueError(f"temperature must be > 0; got {temperature!r}.")
    z = F.normalize(embeddings, dim=1)
    B = len(z)
    logits = z @ z.T / temperature
    self_mask = torch.eye(B, dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(self_mask, float("-inf"))
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    pos = (y[:, None] == y[None, :]) & ~self_mask
    n_pos = pos.sum(dim=1)
    anchors = n_pos > 0
    if not bool(anchors.any()):
        return embeddings.sum() * 0.0
    mean_log_prob_pos = log_prob.masked_fill(~pos, 0.0).sum(dim=1)[anchors] / n_pos[anchors]
    return -mean_log_prob_pos.mean()


def build_loss(loss: str, *, label_smoothing: float = 0.0, temperature: float = 0.1
               ) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The loss function ``f(outputs, y) -> scalar`` of a canonical loss name (see :data:`recipe.LOSSES`)."""
    name = canonical_loss(loss)
    if name in ("ce", "ls"):
        return lambda out, y: cross_entropy_loss(out, y, label_smoothing)
    if name == "mse":
        return mse_loss
    return lambda out, y: supcon_loss(out, y, temperature)
