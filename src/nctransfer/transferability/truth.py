"""Reading ground-truth transfer accuracies (and their standard errors) from a CSV file ``model,accuracy[,se]``:
the one truth-CSV reader of nctransfer (range-checked; percentages recognised)."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from nctransfer.exceptions import InputValueError, NotFoundError


def read_truth_csv(path: str | os.PathLike) -> dict[str, float]:
    """Read ground truth from a CSV with columns ``model,accuracy`` (extra columns ignored).

    Accuracies must lie in ``[0, 1]``; a column on the percent scale (some value above 1, all within
    ``[0, 100]``) is recognised, divided by 100 and reported with a warning.

    Raises:
        NotFoundError: missing file. InputValueError: a directory, an unreadable CSV, missing columns,
        non-numeric, non-finite or out-of-range accuracies.
    """
    p = Path(path)
    if p.is_dir():
        raise InputValueError(f"truth file {str(p)!r} is a directory; expected a CSV file with columns "
                              "model,accuracy.")
    if not p.is_file():
        raise NotFoundError(f"truth file {str(p)!r} does not exist.")
    try:
        df = pd.read_csv(p)
    except Exception as exc:  # noqa: BLE001 - pandas raises many types (ParserError, EmptyDataError, ...)
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputValueError(f"truth file {str(p)!r} could not be read as CSV: {first}") from None
    cols = {str(c).strip().lower(): c for c in df.columns}
    if "model" not in cols or "accuracy" not in cols:
        raise InputValueError(f"truth file {str(p)!r} must have columns 'model' and 'accuracy'; "
                              f"got {list(df.columns)}.")
    try:
        acc = df[cols["accuracy"]].astype(float)
    except (TypeError, ValueError):
        raise InputValueError(f"truth file {str(p)!r}: column 'accuracy' must be numeric.") from None
    values = acc.to_numpy(dtype=float)
    if not np.all(np.isfinite(values)):
        raise InputValueError(f"truth file {str(p)!r}: column 'accuracy' contains NaN, Inf or empty cells.")
    if len(values) and (values.min() < 0 or values.max() > 1):
        if values.min() >= 0 and values.max() <= 100:
            warnings.warn(f"truth file {str(p)!r}: accuracies up to {values.max():g} look like percentages; "
                          "dividing by 100.", UserWarning, stacklevel=2)
            acc = acc / 100.0
        else:
            bad = values[(values < 0) | (values > 100)][:3].tolist()
            raise InputValueError(f"truth file {str(p)!r}: accuracies must be in [0, 1] (or percentages in "
                                  f"[0, 100]); got {bad}.")
    models = df[cols["model"]].astype(str).str.strip()
    if models.duplicated().any():
        raise InputValueError(f"truth file {str(p)!r}: duplicated models {sorted(set(models[models.duplicated()]))}.")
    return dict(zip(models, acc))


def read_truth_se_csv(path: str | os.PathLike) -> dict[str, float] | None:
    """The standard errors of a truth CSV (column ``se`` or ``stderr``, same units as ``accuracy``), or ``None``
    when it has no such column. Call after :func:`read_truth_csv` (which validates the file)."""
    df = pd.read_csv(Path(path))
    cols = {str(c).strip().lower(): c for c in df.columns}
    key = cols.get("se", cols.get("stderr"))
    if key is None or "model" not in cols:
        return None
    try:
        se = df[key].astype(float).to_numpy()
    except (TypeError, ValueError):
        raise InputValueError(f"truth file {str(path)!r}: column {key!r} must be numeric.") from None
    if not np.all(np.isfinite(se)) or np.any(se < 0):
        raise InputValueError(f"truth file {str(path)!r}: column {key!r} must hold finite values >= 0.")
    acc = df[cols["accuracy"]].astype(float).to_numpy() if "accuracy" in cols else None
    if acc is not None and len(acc) and acc.max() > 1 and acc.max() <= 100:
        se = se / 100.0  # percentages, as read_truth_csv
    return dict(zip(df[cols["model"]].astype(str).str.strip(), se.tolist()))


__all__ = ["read_truth_csv", "read_truth_se_csv"]
