"""L-infinity PGD adversarial examples for adversarial pre-training (docs/methods.md#pretraining; Li et al., TMLR 2024, appendix B).

Projected gradient ascent on the training loss (Madry et al., ICLR 2018): from a uniform random start in the
``eps``-ball, ``steps`` times ``x <- clip_[0,1]( Proj_{||x - x0||_inf <= eps}( x + alpha * sign(grad_x L) ) )``.
The radius is on the ``[0, 1]`` pixel scale of the un-normalised images (Li et al., TMLR 2024 uses ``{1,2,3,5,8}/255``), so the
attacked function must include the normalisation.
"""

from __future__ import annotations

from typing import Callable

import torch

from nctransfer.exceptions import InputValueError
from nctransfer.pretrain.recipe import parse_radius


def pgd_linf(
    loss_fn: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    eps: float,
    *,
    steps: int = 3,
    step_size: float | None = None,
    random_start: bool = True,
    generator: torch.Generator | None = None,
    bounds: tuple[float, float] = (0.0, 1.0),
) -> torch.Tensor:
    """L-infinity PGD: inputs within ``eps`` of ``x`` (and inside ``bounds``) that increase ``loss_fn``.

    Args:
        loss_fn: maps a batch of inputs to the scalar loss to maximise (e.g. ``lambda z: ce(model(norm(z)), y)``).
        x: clean inputs ``[B, ...]`` inside ``bounds``.
        eps: radius in ``[0, 1]``; 0 returns ``x`` unchanged.
        steps: ascent steps (>= 1).
        step_size: ``alpha``; ``None`` = ``2.5 * eps / steps``.
        random_start: start from a uniform point of the ball (Madry et al.) instead of ``x``.
        generator: source of the random start.
        bounds: valid input range.

    Returns:
        Detached adversarial inputs with ``||x_adv - x||_inf <= eps`` and values inside ``bounds``.

    Raises:
        InputValueError: ``eps`` outside ``[0, 1]``, ``steps < 1`` or a non-positive ``step_size``.
    """
    eps = parse_radius(eps, "eps")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise InputValueError(f"pgd_linf: steps must be an integer >= 1; got {steps!r}.")
    if step_size is None:
        step_size = 2.5 * eps / steps
    elif not step_size > 0:
        raise InputValueError(f"pgd_linf: step_size must be > 0; got {step_size!r}.")
    x0 = x.detach()
    if eps == 0:
        return x0.clone()
    lo, hi = bounds
    if random_start:
        noise = torch.rand(x0.shape, generator=generator, dtype=torch.float32).to(x0.device, x0.dtype)
        x_adv = (x0 + (2 * noise - 1) * eps).clamp(lo, hi)
    else:
        x_adv = x0.clone()
    for _ in range(steps):
        x_adv.requires_grad_(True)
        loss = loss_fn(x_adv)
        (grad,) = torch.autograd.grad(loss, x_adv)
        with torch.no_grad():
            x_adv = x_adv + step_size * grad.sign()
            x_adv = torch.min(torch.max(x_adv, x0 - eps), x0 + eps).clamp(lo, hi)
    return x_adv.detach()
