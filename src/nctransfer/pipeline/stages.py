"""The stages of a ranking run after extraction, each a function of the candidates (cached by
:class:`~nctransfer.pipeline.cache.ResultCache`): :func:`score_candidates` (every transferability score),
:func:`collapse_metrics`, the ground truth (:func:`truth_by_probe`, :func:`truth_by_finetuning`),
:func:`layer_curves` (layer-wise collapse vs accuracy) and :func:`finetune_comparison` (linear probe vs SCL FT on
the recommended model). :func:`nctransfer.pipeline.rank_models` calls them in that order.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from nctransfer.metrics import compute_all, pack_correct, probe_accuracy, unpack_correct
from nctransfer.pipeline.baselines import baseline_verdicts, evaluate_baselines
from nctransfer.pipeline.cache import ResultCache
from nctransfer.pipeline.candidates import Candidate, Model, Run, _data_label, _fingerprints, _load_split
from nctransfer.stats.correlation import spearman
from nctransfer.transferability import METHODS, evaluate, rank
from nctransfer.transferability.ranking import combine_candidates

#: the point measures of an evaluation (results.json "evaluation"); the rest are its intervals
POINT_KEYS = ("weighted_tau", "kendall", "spearman", "pearson", "top1_regret")
#: options of the fine-tuning comparison (linear probe vs SCL FT) when not given. A short run on a few hundred
#: images: BatchNorm statistics frozen outside the trained unit (``bn_policy="frozen"``) and a small learning rate.
#: Measured on Fashion-MNIST (EfficientNet-Lite1, 400 images, 64 px, 3 epochs): with Li et al.'s (TMLR 2024) protocol
#: (BatchNorm statistics updated on the downstream data, lr 0.05) the linear probe's test accuracy fell epoch by
#: epoch (55 -> 44 -> 37.5 %); frozen statistics and lr 0.01 gave 68 -> 71 -> 72 % (linear probe) and 71 -> 75 -> 76 %
#: (SCL FT at blocks.4.0).
FINETUNE_DEFAULTS: dict[str, Any] = {"epochs": 3, "batch_size": 32, "lr": 0.01, "backbone_lr": 0.01,
                                     "bn_policy": "frozen", "unit": "auto", "skip": "pad"}
#: options of truth="finetune" when not given (per candidate: full FT of a model, SCL FT at a tap)
TRUTH_FINETUNE_DEFAULTS: dict[str, Any] = {"epochs": 2, "batch_size": 32, "lr": 0.05, "backbone_lr": 0.01}


def score_candidates(cands: list[Candidate], cfg: dict[str, Any], cache: ResultCache, run: Run,
            parts: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Scores of the pool (cached): :func:`~nctransfer.transferability.rank`, or, when the per-model ``parts``
    were computed by workers (Ray backend), their pool-relative combination on the driver (the same numbers)."""
    key = {"pool": [(c.name, c.digest) for c in cands], "methods": cfg["methods"],
           "options": cfg["method_options"]}
    hit = cache.get("scores", key)
    if hit is not None:
        return hit
    if parts is not None:
        df = combine_candidates({c.name: parts[c.name] for c in cands}, cfg["methods"],
                                options=cfg["method_options"])
    else:
        pool = {c.name: ((c.X_train, c.y_train, c.probs) if c.probs is not None else (c.X_train, c.y_train))
                for c in cands}
        df = rank(pool, methods=cfg["methods"], options=cfg["method_options"], progress=run.progress)
    value = {
        "columns": list(df.columns),
        "scores": {n: {m: (float(df.loc[n, m]) if np.isfinite(df.loc[n, m]) else None) for m in df.columns}
                   for n in df.index},
        "seconds": {k: float(v) for k, v in df.attrs.get("seconds", {}).items()},
        "notes": list(df.attrs.get("notes", [])),
    }
    return cache.put("scores", key, value)


def collapse_metrics(cands: list[Candidate], cache: ResultCache, run: Run) -> dict[str, dict[str, float | None]]:
    out = {}
    for c in run.bar(cands, "collapse metrics"):
        key = {"features": c.digest}
        hit = cache.get("collapse", key)
        if hit is None:
            vals = compute_all(c.X_train, c.y_train)
            hit = cache.put("collapse", key, {k: (float(v) if np.isfinite(v) else None) for k, v in vals.items()
                                              if isinstance(v, (int, float, np.floating))})
        out[c.name] = hit
    return out


def truth_by_probe(cands: list[Candidate], cfg: dict[str, Any], cache: ResultCache, run: Run
                 ) -> tuple[dict[str, float], dict[str, Any]]:
    acc, details = {}, {}
    grid = list(cfg["probe_C_grid"]) if cfg["probe_C_grid"] else None
    for c in run.bar(cands, "ground truth: linear probe"):
        key = {"features": c.digest, "C_grid": grid, "max_iter": cfg["probe_max_iter"], "seed": cfg["seed"]}
        hit = cache.get("probe", key)
        if hit is None:
            r = probe_accuracy(c.X_train, c.y_train, c.X_test, c.y_test, C_grid=grid, max_iter=cfg["probe_max_iter"],
                               seed=cfg["seed"])
            hit = cache.put("probe", key, {"accuracy": float(r.accuracy), "C": float(r.C),
                                           "train_accuracy": float(r.train_accuracy),
                                           "correct": pack_correct(r.correct)})
        acc[c.name] = float(hit["accuracy"])
        details[c.name] = {"C": hit["C"], "train_accuracy": hit["train_accuracy"]}
        if "correct" in hit:  # per-test-sample correctness (metrics.pack_correct); older cache entries lack it
            details[c.name]["correct"] = hit["correct"]
    return acc, details


def truth_samples(details: Mapping[str, Any], names: Sequence[str]) -> dict[str, np.ndarray] | None:
    """``{candidate: per-test-sample correctness}`` when every candidate has it on one shared test set (then the
    bootstrap resamples the test samples, the same draw for every candidate), else ``None``."""
    packed = [(details.get(n) or {}).get("correct") for n in names]
    if not names or any(p is None for p in packed):
        return None
    out = {n: unpack_correct(p) for n, p in zip(names, packed)}
    return out if len({len(v) for v in out.values()}) == 1 else None


def _finetune_key(m: Model, data: Any, cfg: dict[str, Any], options: Mapping[str, Any]) -> dict[str, Any]:
    from nctransfer.extract import weights_fingerprint  # deferred: extraction needs torch (an extra)

    return {"model": m.label, "weights": weights_fingerprint(m.module), "data": _data_label(data),
            "content": _fingerprints(data),
            "per_class": cfg["per_class"], "test_per_class": cfg["test_per_class"], "image_size": cfg["image_size"],
            "seed": cfg["seed"], "options": dict(options)}


def _run_finetune(m: Model, data: Any, cfg: dict[str, Any], options: Mapping[str, Any], out_dir: Path | None,
                  cache: ResultCache, run: Run) -> dict[str, Any]:
    """One fine-tuning run (cached); returns the JSON-able summary of a ``FinetuneResult``."""
    from nctransfer.finetune import finetune  # deferred: fine-tuning needs torch (an extra)

    key = _finetune_key(m, data, cfg, options)
    hit = cache.get("finetune", key)
    if hit is not None:
        return hit
    model = copy.deepcopy(m.module)
    train = _load_split(data, "train", model, cfg["image_size"], cfg["per_class"], cfg["seed"])
    test = _load_split(data, "test", model, cfg["image_size"], cfg["test_per_class"], cfg["seed"] + 1)
    opts = {"image_size": cfg["image_size"], "seed": cfg["seed"], "progress": run.progress, **options}
    if cfg["device"] is not None:
        opts.setdefault("device", str(cfg["device"]))
    res = finetune(model, train, test, out_dir=out_dir, resume=out_dir is not None, **opts)
    summary = {k: getattr(res, k) for k in ("method", "unit", "skip", "test_accuracy", "penultimate_nc1",
                                            "trainable_params", "total_params", "trainable_percent",
                                            "seconds_per_epoch", "peak_memory_mb", "epochs_completed")}
    summary["history"] = [{k: v for k, v in h.items() if isinstance(v, (int, float, str))} for h in res.history]
    if res.auto:
        summary["auto"] = {k: res.auto[k] for k in ("chosen", "reason") if k in res.auto}
    del model, res
    return cache.put("finetune", key, summary)


def truth_by_finetuning(cands: list[Candidate], data: Any, cfg: dict[str, Any], cache: ResultCache, run: Run
                    ) -> tuple[dict[str, float], dict[str, Any]]:
    acc, details = {}, {}
    opts_base = {**TRUTH_FINETUNE_DEFAULTS, **(cfg["truth_finetune"] or {})}
    for c in cands:
        opts = dict(opts_base)
        if c.tap == "penultimate":
            opts.setdefault("method", "full_ft")
            opts.pop("unit", None)
        else:
            opts["method"], opts["unit"] = "scl_ft", c.tap
        run.say(f"ground truth: fine-tuning {c.name} ({opts['method']})")
        r = _run_finetune(c.model, data, cfg, opts, None, cache, run)
        acc[c.name] = float(r["test_accuracy"])
        details[c.name] = {"method": r["method"], "unit": r["unit"], "epochs": r["epochs_completed"]}
    return acc, details


def layer_curves(models: list[Model], cands: list[Candidate], collapse: Mapping[str, Any], truth: Mapping[str, Any]
            ) -> dict[str, Any]:
    out: dict[str, Any] = {}
    acc = truth.get("accuracy") or {}
    acc_key = "probe_accuracy" if truth.get("kind") == "probe" else "accuracy"
    for m in models:
        rows = []
        for c in cands:
            if c.model is not m:
                continue
            col = collapse.get(c.name) or {}
            row = {"tap": c.tap, "index": c.tap_index, "dim": c.dim}
            for k in ("nc1", "vci", "cdnv", "ncc_accuracy", "numerical_rank"):
                if k in col:
                    row[k] = col[k]
            if c.name in acc:
                row[acc_key] = acc[c.name]
            rows.append(row)
        if len(rows) < 2:
            continue
        corr: dict[str, float | None] = {}
        rho, _, n_pairs = spearman([r.get("nc1") for r in rows], [r.get(acc_key) for r in rows])
        if n_pairs >= 3:
            corr["spearman_nc1_accuracy"] = rho if np.isfinite(rho) else None
        out[m.label] = {"taps": rows, "correlations": corr}
    return out


def finetune_comparison(model: Model, top_tap: str, data: Any, cfg: dict[str, Any], out: Path | None,
                      cache: ResultCache, run: Run) -> dict[str, Any]:
    opts = {**FINETUNE_DEFAULTS, **(cfg["finetune_options"] or {})}
    unit, skip = opts.pop("unit"), opts.pop("skip")
    why = ""
    if unit == "recommended":  # the top-ranked tap of the model is the unit; "auto" when it is the penultimate
        if top_tap != "penultimate":
            unit, why = top_tap, f" SCL FT unit: {top_tap}, the recommended candidate's tap."
            opts.pop("auto", None)
        else:
            unit = "auto"
    if unit != "auto":
        opts.pop("auto", None)
    methods: dict[str, Any] = {}
    for method, extra in (("linear_probe", {}), ("scl_ft", {"unit": unit, "skip": skip})):
        run.say(f"fine-tuning {model.label}: {method}" + (f" (unit {unit})" if extra else ""))
        sub = None if out is None else out / "finetune" / method
        methods[method] = _run_finetune(model, data, cfg, {"method": method, **opts, **extra}, sub, cache, run)
    scl = methods["scl_ft"]
    desc = (f"{opts['epochs']} epochs of SGD (lr {opts['lr']}, backbone lr {opts.get('backbone_lr')}, cosine), "
            f"batch {opts['batch_size']}, BatchNorm statistics {opts.get('bn_policy', 'update')}"
            f"{' outside the trained unit' if opts.get('bn_policy') == 'frozen' else ''}, on the same training "
            "images as the ranking; test accuracy on the ranking's test images.")
    desc += why
    if scl.get("auto"):
        desc += f" SCL FT unit chosen automatically: {scl['auto'].get('reason', scl['auto'].get('chosen'))}"
    return {"model": model.label, "unit": scl.get("unit"), "epochs": opts["epochs"], "description": desc,
            "methods": methods}


def evaluate_candidates(cands: list[Candidate], models: list[Model], sc: Mapping[str, Any], acc: Mapping[str, float],
                        details: Mapping[str, Any], truth_info: dict[str, Any], truth_arg: str, n_test: int,
                        seed: int) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Evaluation of every score against the ground truth (:func:`nctransfer.transferability.evaluate`, with
    bootstrap intervals) and of the baselines (:mod:`nctransfer.pipeline.baselines`).

    Returns:
        ``(evaluation, intervals, baselines)``: the five point measures per score, their intervals and coverage,
        and the baselines' evaluation and verdicts (empty with fewer than two candidates). ``truth_info["noise"]``
        records how the truth's noise entered the intervals.
    """
    df = pd.DataFrame({m: [sc["scores"][c.name].get(m) for c in cands] for m in sc["columns"]},
                      index=[c.name for c in cands], dtype=float)
    # the truth's noise: with the probe's per-sample correctness, the bootstrap resamples the shared test set
    # (one draw for every candidate: their errors are paired); otherwise the binomial standard error of each
    # accuracy on the n_test test images (independent across candidates -- conservative)
    samples = truth_samples(details, [c.name for c in cands]) if truth_arg == "probe" else None
    truth_se = ({n: float(np.sqrt(max(a * (1 - a), 0.0) / max(n_test, 1))) for n, a in acc.items()}
                if truth_arg in ("probe", "finetune") and samples is None else None)
    truth_info["noise"] = ("per-sample (test set resampled, paired across candidates)" if samples
                           else "binomial standard error" if truth_se else "none")
    full = {m: {k: (float(v) if np.isfinite(v) else None) for k, v in e.items()}
            for m, e in evaluate(df, acc, intervals=True, truth_samples=samples, truth_se=truth_se,
                                 seed=seed).items()} if len(cands) >= 2 else {}
    # results.json keeps the five point measures in "evaluation" and the 95% bootstrap intervals and the
    # coverage (models scored / pool) beside them in "evaluation_intervals"
    evaluation = {m: {k: v for k, v in e.items() if k in POINT_KEYS} for m, e in full.items()}
    intervals = {m: {k: v for k, v in e.items() if k not in POINT_KEYS} for m, e in full.items()}
    cand_meta = [{"name": c.name, "model": c.model.label, "tap_index": c.tap_index, "n_taps": c.n_taps,
                  "dim": c.dim, "control": c.model.control} for c in cands]
    params = {m.label: int(sum(p.numel() for p in m.module.parameters())) for m in models
              if m.module is not None and hasattr(m.module, "parameters")}
    baselines = evaluate_baselines(cand_meta, acc, params=params, truth_se=truth_se,
                                   truth_samples=samples, seed=seed) \
        if len(cands) >= 2 else {}
    if baselines:
        baselines["evaluation"] = {b: {k: (float(v) if np.isfinite(v) else None) for k, v in e.items()}
                                   for b, e in baselines["evaluation"].items()}
        baselines["verdicts"] = baseline_verdicts(evaluation, baselines)
    return evaluation, intervals, baselines


def method_meta(columns: Sequence[str]) -> dict[str, Any]:
    out = {}
    for m in columns:
        info = METHODS.get(m)
        if info is None:
            continue
        out[m] = {"label": info.title, "higher_is_better": info.higher_is_better,
                  "pool_relative": info.pool_relative, "needs_probs": info.needs_probs, "reference": info.reference}
    return out


__all__ = ["FINETUNE_DEFAULTS", "TRUTH_FINETUNE_DEFAULTS", "POINT_KEYS", "evaluate_candidates", "score_candidates", "collapse_metrics", "truth_by_probe",
           "truth_samples", "truth_by_finetuning", "layer_curves", "finetune_comparison", "method_meta"]
