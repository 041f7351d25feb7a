"""Tidy tables and files of a ranking run: ``results.json`` and ``scores.csv``."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

import pandas as pd

from nctransfer.reports.schema import candidate_names, check_results, is_number, method_names, true_ranks
from nctransfer.utils.io import dumps_json, to_jsonable, write_text_atomic

_clean = to_jsonable  # JSON-safe copy (NaN/Inf -> None); the name stays for callers


def results_to_json(results: Mapping[str, Any]) -> str:
    """Strict JSON text of the results (NaN and Inf written as ``null``)."""
    return dumps_json(check_results(results), indent=2, default=str) + "\n"


def write_results_json(results: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Write ``results.json`` atomically."""
    return write_text_atomic(path, results_to_json(results))


def load_results(path: str | os.PathLike) -> dict[str, Any]:
    """Read a ``results.json`` back (checked)."""
    with open(path, encoding="utf-8") as fh:
        return check_results(json.load(fh))


def scores_frame(results: Mapping[str, Any]) -> Any:
    """One row per candidate (in ranking order when a recommended score is set): model, tap, dim, every score,
    every collapse metric (prefixed ``collapse_``), the true accuracy and true rank.

    Returns:
        pandas.DataFrame indexed by candidate name.
    """
    r = check_results(results)
    cmap = {c["name"]: c for c in r["candidates"]}
    order = r.get("ranking") or candidate_names(r)
    acc = (r.get("truth") or {}).get("accuracy") or {}
    tranks = true_ranks(r)
    collapse = r.get("collapse") or {}
    rows = []
    for i, n in enumerate(order):
        c = cmap[n]
        row: dict[str, Any] = {"candidate": n, "model": c.get("model", n), "tap": c.get("tap", "penultimate"),
                               "dim": c.get("dim"), "pretrained": c.get("pretrained"), "control": c.get("control")}
        if r.get("recommended_score"):
            row["rank"] = i + 1
        for m in method_names(r):
            v = r["scores"][n].get(m)
            row[m] = float(v) if is_number(v) else float("nan")
        for k, v in (collapse.get(n) or {}).items():
            row[f"collapse_{k}"] = float(v) if is_number(v) else float("nan")
        if acc:
            row["true_accuracy"] = float(acc[n]) if is_number(acc.get(n)) else float("nan")
            row["true_rank"] = tranks.get(n)
        rows.append(row)
    return pd.DataFrame(rows).set_index("candidate")


def write_scores_csv(results: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Write ``scores.csv`` (see :func:`scores_frame`) atomically."""
    return write_text_atomic(path, scores_frame(results).to_csv(float_format="%.10g"))
