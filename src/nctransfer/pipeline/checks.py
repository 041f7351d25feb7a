"""Up-front checks of :func:`nctransfer.rank_models` inputs: they run before any model is loaded, so that a
bad argument fails in a second with a clear message and nothing already written is touched."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Iterable, Mapping

from nctransfer.exceptions import InputValueError, NotFoundError
from nctransfer.transferability.ranking import read_truth_csv as read_truth_table

TRUTH_KINDS = ("probe", "finetune")


def check_out_dir(out: str | os.PathLike, name: str = "out") -> Path:
    """Create ``out`` if needed and prove it is writable by writing and removing a probe file.

    Raises:
        InputValueError: ``out`` is an existing file, lies under a file, or cannot be written.
    """
    path = Path(out).expanduser()
    if path.exists() and not path.is_dir():
        raise InputValueError(f"{name}: {str(path)!r} exists and is not a directory; give a directory for the "
                              "results (it is created if missing).")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise InputValueError(f"{name}: cannot create {str(path)!r}: {str(parent)!r} is a file, not a "
                                      "directory.")
            break
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".nctransfer-write-test-", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise InputValueError(f"{name}: output directory {str(path)!r} is not writable ({exc.strerror or exc}); "
                              "choose another directory with --out.") from exc
    return path


def parse_models(models: Any, name: str = "models") -> list[Any]:
    """A comma-separated string, or a sequence of names and/or ``torch.nn.Module`` objects -> a list.

    Raises:
        InputValueError: empty, or duplicate names.
    """
    if isinstance(models, str):
        items: list[Any] = [m.strip() for m in models.split(",") if m.strip()]
    elif isinstance(models, Iterable):
        items = list(models)
    else:
        items = [models]
    if not items:
        raise InputValueError(f"{name}: expected at least one model (e.g. 'efficientnet_lite0,efficientnet_lite1'); "
                              f"got {models!r}.")
    names = [m for m in items if isinstance(m, str)]
    dup = sorted({m for m in names if names.count(m) > 1})
    if dup:
        raise InputValueError(f"{name}: model(s) {dup} given more than once.")
    return items


def check_truth_arg(truth: Any) -> str:
    """``"probe"``, ``"finetune"`` or an existing CSV path.

    Raises:
        NotFoundError: a path that does not exist.
        InputValueError: neither a kind nor a ``.csv``-like path.
    """
    if isinstance(truth, (str, os.PathLike)):
        t = str(truth)
        if t in TRUTH_KINDS:
            return t
        if Path(t).expanduser().is_file():
            return str(Path(t).expanduser())
        if t.lower().endswith(".csv") or os.sep in t:
            raise NotFoundError(f"truth: CSV file {t!r} does not exist (expected columns model,accuracy).")
    raise InputValueError(f"truth: expected 'probe', 'finetune' or the path of a CSV with columns model,accuracy; "
                          f"got {truth!r}.")


def read_truth_csv(path: str | os.PathLike, candidates: Iterable[str]) -> dict[str, float]:
    """Read the user's ground truth for ``candidates``: a CSV with columns ``model,accuracy`` read and range-checked
    by :func:`nctransfer.transferability.read_truth_csv` (accuracy in ``[0, 1]``; a percent-scale column is divided
    by 100 with a warning).

    A row may name a candidate (``model@tap``) or, for penultimate candidates, the bare model name.

    Raises:
        InputValueError: missing columns, a non-numeric or out-of-range accuracy, duplicate rows, or
            candidates without a row (all of them are listed).
    """
    rows = read_truth_table(path)
    out: dict[str, float] = {}
    missing = []
    for c in candidates:
        key = c if c in rows else (c[: -len("@penultimate")] if c.endswith("@penultimate") else None)
        if key is not None and key in rows:
            out[c] = float(rows[key])
        else:
            missing.append(c)
    if missing:
        raise InputValueError(f"truth CSV {str(path)!r} has no accuracy for candidate(s) {missing}; it has rows for "
                              f"{sorted(rows)}. Add a 'model,accuracy' row per candidate.")
    return out


def check_recommended(name: str | None, methods: Mapping[str, Any] | Iterable[str]) -> None:
    """Raise if ``name`` is not one of ``methods``."""
    if name is not None and name not in methods:
        raise NotFoundError(f"recommended_score: unknown method {name!r}; valid: {sorted(methods)}.")
