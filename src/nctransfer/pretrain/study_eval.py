"""Evaluation of one pre-trained model of a study (docs/methods.md#pretraining; Li et al., "Understanding and
Improving Transfer Learning of Deep Models via Neural Collapse", TMLR 2024, section 3.1):

- :func:`evaluate_source`: every collapse metric (:func:`nctransfer.metrics.compute_all`) at every tap of the encoder
  on the source training data, and the source classifier's accuracy;
- :func:`evaluate_target`: on one target, the linear-probe accuracy of the frozen encoder features, the collapse
  metrics per tap, and every transferability score (:func:`transfer_scores`, the shared stages' score-one-candidate
  step);
- :func:`evaluate_model`: the record of ``OUT/runs/<recipe>/result.json``.
"""

from __future__ import annotations

import json
import time
import warnings
from typing import Any, Sequence

import numpy as np
import torch

from nctransfer.features import TapRecorder
from nctransfer.metrics import compute_all, pack_correct, probe_accuracy
from nctransfer.pretrain.datasets import StudyData
from nctransfer.pretrain.nets import encoder_units
from nctransfer.pretrain.study_config import RESULT_FORMAT, StudyConfig
from nctransfer.pretrain.trainer import PretrainedModel
from nctransfer.stages import ScoringSettings, score_one
from nctransfer.stats import FeatureStats
from nctransfer.transferability import METHODS, get_method

PENULTIMATE = "penultimate"
#: Feature values kept in memory per tap before the study switches to streaming statistics only.
MAX_SAMPLE_VALUES = 50_000_000


def _tap_features(model: PretrainedModel, X: torch.Tensor, batch_size: int) -> dict[str, torch.Tensor]:
    """Pooled features ``{tap: [N, C]}`` at every encoder unit and ``penultimate`` (encoder output)."""
    units = encoder_units(model.encoder)
    net = model.net.eval()
    chunks: dict[str, list[torch.Tensor]] = {u.name: [] for u in units}
    chunks[PENULTIMATE] = []
    with torch.no_grad():
        if units:
            rec = TapRecorder(model.encoder, units)
            with rec:
                for i in range(0, len(X), batch_size):
                    xb = model.normalize(X[i:i + batch_size].to(model.device))
                    out = net.encoder(xb)
                    for name, f in rec.collect().items():
                        chunks[name].append(f.float().cpu())
                    chunks[PENULTIMATE].append(out.float().cpu())
        else:
            for i in range(0, len(X), batch_size):
                chunks[PENULTIMATE].append(net.encoder(model.normalize(X[i:i + batch_size].to(model.device))).cpu())
    return {k: torch.cat(v) for k, v in chunks.items()}


def _collapse(features: torch.Tensor, y: np.ndarray, *, W: Any = None, b: Any = None) -> dict[str, float]:
    """Every collapse metric (``compute_all``); NaN-valued entries carry the reason in ``_errors``."""
    X = features.double()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if X.numel() <= MAX_SAMPLE_VALUES:
            return compute_all(X.numpy(), y, W=W, b=b)
        return compute_all(FeatureStats().update(X, y), W=W)


def _accuracy(model: PretrainedModel, X: torch.Tensor, y: np.ndarray, batch_size: int) -> float:
    logits = model.logits(X, batch_size)
    if logits is None or len(y) == 0:
        return float("nan")
    pred = np.asarray(model.classes)[logits.argmax(1).numpy()]
    return float((pred == y).mean())


def evaluate_source(model: PretrainedModel, data: StudyData, *, batch_size: int = 512) -> dict[str, Any]:
    """Collapse metrics at every tap on the source training data, and the source classifier's accuracy.

    Returns:
        ``{"layers": {tap: {metric: value}}, "taps": [...], "train_accuracy", "test_accuracy", "ncc_test_accuracy"}``.
        At ``penultimate`` the classifier ``W, b`` is passed to ``compute_all`` (NC3, NC4) when it reads the
        encoder output directly (no projection head).
    """
    feats = _tap_features(model, data.X_train, batch_size)
    y = data.y_train
    layers: dict[str, dict[str, float]] = {}
    for tap, F in feats.items():
        W = b = None
        if tap == PENULTIMATE and model.net.classifier is not None and model.recipe.head_layers == 0:
            W = model.net.classifier.weight.detach().double().cpu().numpy()
            b = model.net.classifier.bias.detach().double().cpu().numpy()
        layers[tap] = _collapse(F, y, W=W, b=b)
    return {
        "taps": list(feats),
        "layers": layers,
        "train_accuracy": _accuracy(model, data.X_train, y, batch_size),
        "test_accuracy": _accuracy(model, data.X_test, data.y_test, batch_size),
    }


def transfer_scores(X: np.ndarray, y: np.ndarray, probs: np.ndarray | None, methods: Sequence[str] | None = None
                    ) -> tuple[dict[str, float], dict[str, Any], dict[str, str]]:
    """Every transferability score of one model's target features ``X [N, d]`` with labels ``y [N]``
    (docs/methods.md#transferability; higher = predicted to transfer better): the score-one-candidate step of the
    shared stages (:func:`nctransfer.stages.score_one`), each recipe being one candidate of the pool that
    :func:`~nctransfer.pretrain.study_tables.combine_pool_scores` combines.

    Args:
        X, y: target training features and labels.
        probs: the source classifier's softmax on the same images ``[N, C_src]`` (LEEP, NCE); ``None`` when the
            recipe has no classifier (SupCon): those methods are then skipped.
        methods: names to compute (default: every registered method).

    Returns:
        ``(scores, pool_terms, skipped)``: ``scores`` maps method -> value; ``pool_terms`` holds the raw per-model
        terms of pool-relative methods (NCTI, ETran), combined across the recipes by :func:`combine_pool_scores`;
        ``skipped`` maps method -> reason (missing probabilities, or the error the method raised).
    """
    names = list(METHODS) if methods is None else [get_method(m).name for m in methods]
    if not names:
        return {}, {}, {}
    settings = ScoringSettings(methods=names)
    entry = (X, y, probs) if probs is not None else (X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # the pool is the grid's recipes: every recipe computes the raw terms of the pool-relative scores
        part = score_one("recipe", entry, settings, pool_size=2, skip_errors=True)
    scores: dict[str, float] = {}
    pool_terms: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    for name in names:
        if name in part["no_probs"]:
            skipped[name] = "needs the source classifier's probabilities (this recipe has no classifier)"
        elif name in part["errors"]:
            skipped[name] = part["errors"][name]
            if not METHODS[name].pool_relative:
                scores[name] = float("nan")
        elif name in part["terms"]:
            pool_terms[name] = {k: float(v) for k, v in part["terms"][name].items()}
        elif name in part["values"]:
            scores[name] = float(part["values"][name])
    return scores, pool_terms, skipped


def evaluate_target(model: PretrainedModel, data: StudyData, *, methods: Sequence[str] | None = None,
                    batch_size: int = 512, seed: int = 0) -> dict[str, Any]:
    """Transfer of the frozen encoder to one target: probe accuracy, collapse per tap, transferability scores."""
    feats_tr = _tap_features(model, data.X_train, batch_size)
    Ftr = feats_tr[PENULTIMATE].double().numpy()
    Fte = model.features(data.X_test, batch_size).double().numpy()
    t0 = time.perf_counter()
    probe = probe_accuracy(Ftr, data.y_train, Fte, data.y_test, seed=seed)
    probe_seconds = time.perf_counter() - t0
    layers = {tap: _collapse(F, data.y_train) for tap, F in feats_tr.items()}
    probs = model.probs(data.X_train, batch_size)
    scores, pool_terms, skipped = transfer_scores(Ftr, data.y_train, probs, methods)
    return {
        "target": data.spec,
        "n_train": int(len(data.y_train)),
        "n_test": int(len(data.y_test)),
        "probe_accuracy": probe.accuracy,
        "probe_C": probe.C,
        "probe_train_accuracy": probe.train_accuracy,
        "probe_correct": pack_correct(probe.correct),  # per-test-sample correctness (metrics.pack_correct)
        "probe_seconds": probe_seconds,
        "layers": layers,
        "scores": scores,
        "pool_terms": pool_terms,
        "skipped_scores": skipped,
    }


def evaluate_model(model: PretrainedModel, source: StudyData, targets: Sequence[StudyData],
                   config: StudyConfig) -> dict[str, Any]:
    """The study record of one pre-trained model: source collapse per tap, transfer to every target.

    This is what ``OUT/runs/<recipe>/result.json`` holds; usable on any :class:`PretrainedModel` (e.g. an untrained
    network as a "random features" reference, as the benchmark does).
    """
    recipe = model.recipe
    src = evaluate_source(model, source, batch_size=config.eval_batch_size)
    tgts = [evaluate_target(model, t, methods=config.methods, batch_size=config.eval_batch_size, seed=config.seed)
            for t in targets]
    return {
        "format": RESULT_FORMAT, "recipe": recipe.to_dict(), "settings": recipe.training_dict(), "name": recipe.name,
        "fingerprint": recipe.fingerprint(), "eval": json.loads(json.dumps(config.eval_settings())),
        "source": {"spec": source.spec, **src}, "targets": tgts, "history": model.history,
        "epochs_trained": len(model.history), "train_seconds": sum(h["seconds"] for h in model.history),
        "n_parameters_encoder": sum(p.numel() for p in model.encoder.parameters()),
        "feature_dim": int(model.encoder.num_features),
    }


__all__ = ["MAX_SAMPLE_VALUES", "PENULTIMATE", "evaluate_model", "evaluate_source", "evaluate_target",
           "transfer_scores"]
