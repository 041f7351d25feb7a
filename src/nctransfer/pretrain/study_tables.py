"""The pool of a study and its tables: the pool-relative scores combined across the recipes
(:func:`combine_pool_scores`), ``study.csv`` (:func:`flat_rows`, one row per recipe and target) and the running
``study.json`` (:func:`write_tables`)."""

from __future__ import annotations

import csv
import io
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

from nctransfer.pretrain.study_config import RESULT_FORMAT, StudyConfig
from nctransfer.pretrain.study_eval import PENULTIMATE
from nctransfer.stages import ScoringSettings, combine_pool
from nctransfer.transferability import METHODS
from nctransfer.utils.io import write_json_atomic, write_text_atomic


# ---------------------------------------------------------------------------------------------- pool scores
def combine_pool_scores(records: list[dict[str, Any]]) -> None:
    """Pool-relative scores (NCTI, ETran; docs/methods.md#ncti #etran) across the recipes of each target, in place:
    ``record["targets"][i]["scores"][method]`` from the stored per-model ``pool_terms``, combined by the shared
    stages' combine-the-pool step (:func:`nctransfer.stages.combine_pool`). Needs two recipes or more (a single
    model has no pool-relative score); a method is combined only when every recipe has its terms."""
    if len(records) < 2:
        return
    for i in range(len(records[0]["targets"])):
        terms = [r["targets"][i].get("pool_terms", {}) for r in records]
        methods = [m for m in sorted(set().union(*[t.keys() for t in terms]))
                   if m in METHODS and METHODS[m].combine is not None and all(m in t for t in terms)]
        if not methods:
            continue
        parts = {r["name"]: {"values": {}, "terms": {m: t[m] for m in methods}, "seconds": {}, "no_probs": [],
                             "stats_only": []} for r, t in zip(records, terms)}
        df = combine_pool(parts, ScoringSettings(methods=methods))
        for r in records:
            for method in methods:
                r["targets"][i]["scores"][method] = float(df.loc[r["name"], method])


def pool_table(records: list[dict[str, Any]]) -> dict[str, Any]:
    """``{target: {recipe: {pool-relative method: score}}}`` (``study.json``'s ``pool_scores``)."""
    if not records:
        return {}
    out: dict[str, Any] = {}
    for i, t in enumerate(records[0]["targets"]):
        out[t["target"]] = {r["name"]: {k: r["targets"][i]["scores"].get(k) for k in r["targets"][i]["pool_terms"]}
                            for r in records}
    return out


# ---------------------------------------------------------------------------------------------- tables
_RECIPE_COLUMNS = ("arch", "loss", "label_smoothing", "head_layers", "augment", "adv_eps", "epochs", "seed")


def flat_rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One flat row per (recipe, target): recipe settings, penultimate source metrics (``source_*``), source
    accuracy, probe accuracy, penultimate target metrics (``target_*``) and scores (``score_*``)."""
    rows = []
    for r in records:
        rec = {**r["recipe"], **r.get("settings", {})}
        base: dict[str, Any] = {"recipe": r["name"], "fingerprint": r["fingerprint"]}
        for k in _RECIPE_COLUMNS:
            base[k] = rec.get(k)
        base["adv_eps_255"] = round(float(rec.get("adv_eps") or 0) * 255, 3)
        base["train_seconds"] = round(float(r.get("train_seconds", float("nan"))), 2)
        base["source_train_accuracy"] = r["source"]["train_accuracy"]
        base["source_test_accuracy"] = r["source"]["test_accuracy"]
        for m, v in r["source"]["layers"][PENULTIMATE].items():
            base[f"source_{m}"] = v
        for t in r["targets"]:
            row = dict(base)
            row["target"] = t["target"]
            row["probe_accuracy"] = t["probe_accuracy"]
            for m, v in t["layers"][PENULTIMATE].items():
                row[f"target_{m}"] = v
            for m, v in t["scores"].items():
                row[f"score_{m}"] = v
            rows.append(row)
    return rows


def _fmt(v: Any) -> Any:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else repr(v)
    return v


def write_tables(out: Path, records: list[dict[str, Any]], config: StudyConfig) -> list[dict[str, Any]]:
    """Write ``study.csv`` (:func:`flat_rows`) and a running ``study.json`` (``complete: false``), each atomically;
    returns the rows."""
    rows = flat_rows(records)
    columns: list[str] = []
    for row in rows:
        columns += [c for c in row if c not in columns]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _fmt(row.get(k, "")) for k in columns})
    write_text_atomic(out / "study.csv", buf.getvalue())
    write_json_atomic(out / "study.json", {"format": RESULT_FORMAT, "complete": False, "config": asdict(config),
                                           "recipes": records})
    return rows


__all__ = ["combine_pool_scores", "flat_rows", "pool_table", "write_tables"]
