"""Optional dependencies ("extras") and the error that names the one to install.

The core of nctransfer (collapse metrics, transferability scores, :class:`~nctransfer.FeatureStats`) needs
numpy, scipy, pandas and scikit-learn only. Models, extraction and fine-tuning need the ``[torch]`` extra,
plots and reports the ``[report]`` extra, Hugging Face models the ``[hf]`` extra. A part whose extra is missing
raises :class:`MissingExtraError` when it is imported, e.g.::

    nctransfer.models needs PyTorch (torch, torchvision, timm, safetensors): pip install 'nctransfer[torch]'
"""

from __future__ import annotations

import importlib.util
from typing import Iterable

from nctransfer.exceptions import NCTransferError

#: extra name -> (what it provides, in words; the importable modules it installs)
EXTRAS: dict[str, tuple[str, tuple[str, ...]]] = {
    "torch": ("PyTorch (torch, torchvision, timm, safetensors)", ("torch", "torchvision", "timm", "safetensors")),
    "report": ("matplotlib", ("matplotlib",)),
    "hf": ("Hugging Face transformers", ("transformers",)),
    "ray": ("Ray", ("ray",)),
}

#: top-level module name -> extra that installs it
EXTRA_OF_MODULE: dict[str, str] = {mod: extra for extra, (_, mods) in EXTRAS.items() for mod in mods}


class MissingExtraError(NCTransferError, ImportError):
    """A part of nctransfer was used without the optional dependencies it needs; the message names the extra."""


def extra_message(part: str, extra: str, missing: Iterable[str] = ()) -> str:
    """One-line message: ``"<part> needs <what>: pip install 'nctransfer[<extra>]'"`` (+ the missing modules)."""
    what = EXTRAS[extra][0] if extra in EXTRAS else extra
    missing = sorted(set(missing))
    tail = f" (missing: {', '.join(missing)})" if missing else ""
    return f"{part} needs {what}: pip install 'nctransfer[{extra}]'{tail}"


def missing_modules(modules: Iterable[str]) -> list[str]:
    """The names in ``modules`` that cannot be imported (checked with ``find_spec``, nothing is imported)."""
    return [m for m in modules if importlib.util.find_spec(m) is None]


def require_extra(extra: str, part: str, modules: Iterable[str] | None = None) -> None:
    """Raise :class:`MissingExtraError` naming ``extra`` when any of its modules (or ``modules``) is absent.

    Checks with ``importlib.util.find_spec`` so that the check itself imports nothing heavy.
    """
    mods = tuple(modules) if modules is not None else EXTRAS[extra][1]
    missing = missing_modules(mods)
    if missing:
        raise MissingExtraError(extra_message(part, extra, missing))


def error_for_missing_module(exc: ModuleNotFoundError, part: str = "this command") -> MissingExtraError | None:
    """Translate a ``ModuleNotFoundError`` for an optional dependency into a :class:`MissingExtraError`.

    Returns ``None`` when the missing module is not one that an extra installs (a genuine bug).
    """
    top = (exc.name or "").split(".")[0]
    extra = EXTRA_OF_MODULE.get(top)
    if extra is None:
        return None
    return MissingExtraError(extra_message(part, extra, [top]))
