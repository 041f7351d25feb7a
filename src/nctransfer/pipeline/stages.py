"""The stages of a ranking run that fine-tune, a layer above the shared stages of :mod:`nctransfer.stages`:
the ground truth by fine-tuning (:func:`truth_by_finetuning`: full FT of a model, SCL FT at a tap) and the
comparison of a linear probe with SCL FT on the recommended model (:func:`finetune_comparison`). Both take their
options as a :class:`~nctransfer.finetune.FinetuneConfig` (:meth:`RankConfig.truth_finetune_config
<nctransfer.pipeline.config.RankConfig.truth_finetune_config>`, :meth:`~nctransfer.pipeline.config.RankConfig.\
comparison_finetune_config`) and cache each run's summary by :class:`~nctransfer.stages.cache.ResultCache`.

The other stages (extract, score, collapse, probe, evaluate, layer curves) live in :mod:`nctransfer.stages` and
stay importable from here.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from nctransfer.pipeline.config import FINETUNE_DEFAULTS, TRUTH_FINETUNE_DEFAULTS
from nctransfer.stages import (  # moved: the stages below nctransfer.layers, shared with the other runners
    POINT_KEYS,
    Candidate,
    ExtractionSettings,
    Model,
    ResultCache,
    Run,
    collapse_metrics,
    evaluate_candidates,
    layer_curves,
    method_meta,
    score_candidates,
    truth_by_probe,
    truth_samples,
)
from nctransfer.stages.candidates import PENULTIMATE, _data_label, _fingerprints, _load_split


def _finetune_key(m: Model, data: Any, ext: ExtractionSettings, config: Any) -> dict[str, Any]:
    from nctransfer.extract import weights_fingerprint  # deferred: extraction needs torch (an extra)

    options = {k: v for k, v in config.training_signature().items() if k != "device"}
    return {"model": m.label, "weights": weights_fingerprint(m.module), "data": _data_label(data),
            "content": _fingerprints(data), "per_class": ext.per_class, "test_per_class": ext.test_per_class,
            "image_size": ext.image_size, "seed": ext.seed, "options": options}


def _run_finetune(m: Model, data: Any, ext: ExtractionSettings, config: Any, out_dir: Path | None,
                  cache: ResultCache) -> dict[str, Any]:
    """One fine-tuning run of ``config`` (a ``FinetuneConfig``; cached); returns the JSON-able summary of a
    ``FinetuneResult``."""
    from nctransfer.finetune import finetune  # deferred: fine-tuning needs torch (an extra)

    key = _finetune_key(m, data, ext, config)
    hit = cache.get("finetune", key)
    if hit is not None:
        return hit
    model = copy.deepcopy(m.module)
    train = _load_split(data, "train", model, ext.image_size, ext.per_class, ext.seed)
    test = _load_split(data, "test", model, ext.image_size, ext.test_per_class, ext.seed + 1)
    res = finetune(model, train, test, config, out_dir=out_dir, resume=out_dir is not None)
    summary = {k: getattr(res, k) for k in ("method", "unit", "skip", "test_accuracy", "penultimate_nc1",
                                            "trainable_params", "total_params", "trainable_percent",
                                            "seconds_per_epoch", "peak_memory_mb", "epochs_completed")}
    summary["history"] = [{k: v for k, v in h.items() if isinstance(v, (int, float, str))} for h in res.history]
    if res.auto:
        summary["auto"] = {k: res.auto[k] for k in ("chosen", "reason") if k in res.auto}
    del model, res
    return cache.put("finetune", key, summary)


def truth_by_finetuning(cands: list[Candidate], data: Any, ext: ExtractionSettings, config: Any, cache: ResultCache,
                        run: Run) -> tuple[dict[str, float], dict[str, Any]]:
    """The ground truth by fine-tuning each candidate with ``config`` (a ``FinetuneConfig``): its method (full FT
    by default) for a model's penultimate candidate, SCL FT at the tap of a tap candidate. Returns
    ``({candidate: test accuracy}, {candidate: {"method", "unit", "epochs"}})``."""
    acc, details = {}, {}
    for c in cands:
        one = config if c.tap == PENULTIMATE else config.replace(method="scl_ft", unit=c.tap)
        run.say(f"ground truth: fine-tuning {c.name} ({one.method})")
        r = _run_finetune(c.model, data, ext, one, None, cache)
        acc[c.name] = float(r["test_accuracy"])
        details[c.name] = {"method": r["method"], "unit": r["unit"], "epochs": r["epochs_completed"]}
    return acc, details


def finetune_comparison(model: Model, top_tap: str, data: Any, ext: ExtractionSettings, config: Any,
                        out: Path | None, cache: ResultCache, run: Run) -> dict[str, Any]:
    """A linear probe and SCL FT of the recommended model with ``config`` (a ``FinetuneConfig`` of SCL FT whose
    ``unit`` may be ``"recommended"``: the tap of the top-ranked candidate, ``"auto"`` when that is the
    penultimate feature). Returns the results' ``"finetune"`` entry."""
    unit = config.unit
    why = ""
    if unit == "recommended":  # the top-ranked tap of the model is the unit; "auto" when it is the penultimate
        if top_tap != PENULTIMATE:
            unit, why = top_tap, f" SCL FT unit: {top_tap}, the recommended candidate's tap."
        else:
            unit = "auto"
    if unit != "auto":  # the automatic choice's settings play no part
        config = config.replace(auto=type(config.auto)())
    runs = {"linear_probe": config.replace(method="linear_probe", unit=None, skip="pad"),
            "scl_ft": config.replace(unit=unit)}
    methods: dict[str, Any] = {}
    for method, one in runs.items():
        run.say(f"fine-tuning {model.label}: {method}" + (f" (unit {unit})" if method == "scl_ft" else ""))
        sub = None if out is None else out / "finetune" / method
        methods[method] = _run_finetune(model, data, ext, one, sub, cache)
    scl = methods["scl_ft"]
    desc = (f"{config.epochs} epochs of SGD (lr {config.lr}, backbone lr {config.backbone_lr}, cosine), "
            f"batch {config.batch_size}, BatchNorm statistics {config.bn_policy}"
            f"{' outside the trained unit' if config.bn_policy == 'frozen' else ''}, on the same training "
            "images as the ranking; test accuracy on the ranking's test images.")
    desc += why
    if scl.get("auto"):
        desc += f" SCL FT unit chosen automatically: {scl['auto'].get('reason', scl['auto'].get('chosen'))}"
    return {"model": model.label, "unit": scl.get("unit"), "epochs": config.epochs, "description": desc,
            "methods": methods}


__all__ = ["FINETUNE_DEFAULTS", "TRUTH_FINETUNE_DEFAULTS", "POINT_KEYS", "evaluate_candidates", "score_candidates",
           "collapse_metrics", "truth_by_probe", "truth_samples", "truth_by_finetuning", "layer_curves",
           "finetune_comparison", "method_meta"]
