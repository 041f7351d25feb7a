"""Automatic choice of the fine-tuning unit by collapse (``unit="auto"``).

Li et al., TMLR 2024, section 3.3 conjectures that "the optimal transfer accuracy can be achieved by selectively fine-tuning
layers to make the penultimate layer's features as collapsed as possible for the downstream training data". The
paper picks the unit by hand; here it is picked by that criterion with a cheap probe:

1. candidates: every fine-tuning unit (or the first unit of each stage, or a given list);
2. budget: a candidate whose run would train more than ``max_trainable_percent`` % / ``max_trainable_params``
   parameters (classifier and skip branch included) is skipped;
3. probe: each remaining candidate is fine-tuned from the same starting weights with the requested method and
   the run's optimiser settings, on a balanced, seeded subset of ``probe_per_class`` training images per class,
   for whole epochs totalling at least ``probe_steps`` optimiser steps (cosine schedule over the probe). The
   frozen part below the candidate is computed once per image and replayed from a cache at every step
   (:mod:`nctransfer.finetune.prefix_cache`; ``cache_features``); it runs in eval mode, so with
   ``bn_policy="update"`` its BatchNorm statistics are first recalibrated on the probe images (the real run
   normalises them with downstream batch statistics too);
4. score (``criterion``): by default ``"train_nc1"``, the NC1 (docs/methods.md#nc1) of the penultimate features (the
   classifier input) of the probe's training images after the probe - the conjecture taken literally; the lowest
   wins (ties: fewer trainable parameters). ``"heldout_nc1"`` measures the NC1 on as many *other* training
   images instead (collapse that generalises; Li et al., TMLR 2024, appendix C.2 attributes the cases where lower NC1 did not
   give better accuracy to overfitting), ``"heldout_accuracy"`` ranks by their accuracy (not a collapse
   criterion; a baseline). Candidates whose probe fails (e.g. diverges) are reported and skipped.

Cost: the whole probe (training-time estimate, caches, probe runs) has a time budget, by default half the
estimated training time of the run (``max_probe_fraction=0.5``; the estimate is ``STEP_COST_IN_FORWARDS`` timed
forward passes per optimiser step), never below ``min_probe_seconds`` (30 s) unless ``max_probe_seconds`` says
so. Candidates are probed deepest first (their cached probes are the cheapest) and a candidate starts only if
``PROBE_GROWTH`` (2) times the last probe's time still fits; the ones left are reported as
``skipped_time_budget``; a probe still running when the budget is spent stops after its current epoch and is not
ranked. The first probe always completes (a choice needs one), so only it can take the probe past the budget.
The report gives ``probe_seconds`` and ``time_budget`` (``result.json`` carries it under ``auto``).

The test data are never used. The report lists every candidate with its parameter count, probe NC1 on the probe
and held-out images, probe loss and accuracies, time, and a sentence saying why the winner was chosen.

Why ``probe_steps`` matters: with the real ImageNet EfficientNet-Lite0 on Fashion-MNIST (200 probe images,
64 px) a 7-step probe ranked the stem block first (the NC1 after so few steps mostly reflects the pooled
low-level features added by the skip, not fine-tuning) and the full run with it was ~15 points worse than
``blocks.5.0``; with 35 steps the train-NC1 ranking put ``blocks.5.0`` first.
"""

from __future__ import annotations

import copy
import time
import warnings
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Subset
from tqdm.auto import tqdm

from nctransfer.data.splits import balanced_indices
from nctransfer.exceptions import InputValueError
from nctransfer.finetune._data import dataset_targets, inference_layout, sample_hw
from nctransfer.finetune.config import FinetuneConfig
from nctransfer.finetune.prefix_cache import PrefixReplay, SharedPrefixCache
from nctransfer.finetune.selection import (
    count_parameters,
    list_units,
    resolve_unit,
    stage_first_units,
    trainable_parameter_names,
)
from nctransfer.finetune.skip import attach_skip
from nctransfer.finetune.trainer import Trainer, iterate_batches, resolve_device


def _probe_indices(labels: np.ndarray, per_class: int | None, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Balanced seeded probe subset and a disjoint held-out subset of the same size (when there is room)."""
    everything = np.arange(len(labels))
    if per_class is None:
        return everything, np.zeros(0, dtype=np.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        probe = balanced_indices(labels, per_class=per_class, seed=seed)
        rest = np.setdiff1d(everything, probe)
        held = rest[balanced_indices(labels[rest], per_class=per_class, seed=seed + 7)] if len(rest) else rest
    return probe, held


def _candidates(model: Any, cfg: FinetuneConfig) -> list[Any]:
    spec = cfg.auto.candidates
    units = list_units(model)
    if spec == "all":
        return units
    if spec == "stage_first":
        return stage_first_units(units)
    out, seen = [], set()
    for u in spec:
        r = resolve_unit(model, u)
        if r.name not in seen:
            seen.add(r.name)
            out.append(r)
    return out


def _trainable_count(model: Any, unit: Any, cfg: FinetuneConfig, hw: Any) -> tuple[int, int]:
    if cfg.method == "layer_ft" or cfg.skip == "pad":  # the zero-padding branch has no parameters: no copy needed
        return count_parameters(model, trainable_parameter_names(model, "layer_ft", resolve_unit(model, unit.name)))
    m = copy.deepcopy(model)
    u = resolve_unit(m, unit.name)
    if cfg.method == "scl_ft":
        attach_skip(m, u, cfg.skip, image_size=hw)
    return count_parameters(m, trainable_parameter_names(m, cfg.method, u))


#: the next (shallower) candidate's probe is predicted to take this many times the last one (it back-propagates
#: through one more unit; 1.8-2.1x measured with EfficientNet-Lite0 at 64 px on the CPU)
PROBE_GROWTH = 2.0

#: a layer/SCL training step costs about this many forward passes (forward, and backward through the part above
#: the unit); used to estimate the run's training time from a timed forward pass
STEP_COST_IN_FORWARDS = 2.0


def estimate_training_seconds(model: Any, train_data: Any, config: FinetuneConfig) -> dict[str, Any]:
    """Estimated wall time of the run's training passes: ``steps x STEP_COST_IN_FORWARDS x t_forward``, with
    ``t_forward`` the faster of two timed forward passes of one training batch (eval mode, no gradients; ``model``
    is left unchanged) and ``steps = epochs x steps per epoch``."""
    n = len(train_data)
    bs = min(config.batch_size, n)
    steps = config.epochs * (n // bs if n % bs == 1 else -(-n // bs))
    dev = resolve_device(config.device)
    was = model.training
    model.eval().to(dev)
    x = next(iterate_batches(train_data, np.arange(bs), bs))[0].to(dev)
    times = []
    with torch.no_grad():
        for _ in range(2):
            t0 = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - t0)
    model.train(was)
    t = min(times)
    return {"seconds": steps * STEP_COST_IN_FORWARDS * t, "steps": steps, "forward_seconds": t,
            "step_cost_in_forwards": STEP_COST_IN_FORWARDS, "batch_size": bs}


def probe_budget_seconds(auto: Any, estimated_training_seconds: float) -> float | None:
    """``min(max(max_probe_fraction x estimate, min_probe_seconds), max_probe_seconds)``; ``None``: no cap."""
    caps = []
    if auto.max_probe_fraction is not None:
        caps.append(max(auto.max_probe_fraction * estimated_training_seconds, auto.min_probe_seconds))
    if auto.max_probe_seconds is not None:
        caps.append(auto.max_probe_seconds)
    return min(caps) if caps else None


def recalibrate_batchnorm(model: Any, data: Any, batch_size: int, device: str = "cpu") -> None:
    """Replace the running statistics of every BatchNorm of ``model`` by the population statistics of ``data``
    (one pass in train mode without gradients, cumulative averages, channels-last CPU batches); parameters are
    not changed."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not norms:
        return
    dev = resolve_device(device)
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    was = model.training
    model.train().to(dev)
    try:
        with torch.no_grad():
            for x, _ in iterate_batches(data, np.arange(len(data)), batch_size, drop_singleton=True):
                model(inference_layout(x.to(dev)))
    finally:
        for m, mom in zip(norms, momenta):
            m.momentum = mom
        model.train(was)


def choose_unit(model: Any, train_data: Any, config: FinetuneConfig, *, num_classes: int | None = None
                ) -> dict[str, Any]:
    """Pick the unit for ``config.method`` (``layer_ft`` or ``scl_ft``) by probe collapse (module docstring).

    Args:
        model: the model with its downstream classifier; not modified (probes train deep copies).
        train_data: the downstream training dataset.
        config: the run's configuration; ``config.auto`` holds the candidates, budget and probe size.
        num_classes: classifier width (default: max label + 1).

    Returns:
        ``{"chosen", "criterion", "reason", "candidates": [...], "skipped_over_budget": [...], "probe": {...}}``.

    Raises:
        InputValueError: the method does not use a unit, or no candidate fits the budget or survives its probe.
    """
    if config.method not in ("layer_ft", "scl_ft"):
        raise InputValueError(f"unit='auto' applies to layer_ft and scl_ft; got method {config.method!r}.")
    a = config.auto
    labels = dataset_targets(train_data, "train_data")
    k = int(num_classes or labels.max() + 1)
    hw = sample_hw(train_data) or config.image_size
    probe_idx, held_idx = _probe_indices(labels, a.probe_per_class, config.seed)
    if a.criterion != "train_nc1" and not len(held_idx):
        raise InputValueError(f"unit='auto': criterion {a.criterion!r} needs training images outside the probe subset; "
                              f"all {len(probe_idx)} are used by the probe (lower probe_per_class).")
    t_start = time.perf_counter()
    bs = min(config.batch_size, len(probe_idx))
    steps_per_epoch = len(probe_idx) // bs if len(probe_idx) % bs == 1 else -(-len(probe_idx) // bs)
    epochs = max(1, -(-a.probe_steps // max(steps_per_epoch, 1)))
    _, total = count_parameters(model)
    base = copy.deepcopy(model)  # timing, BatchNorm recalibration and the probes never touch ``model``
    estimate = estimate_training_seconds(base, train_data, config)
    time_cap = probe_budget_seconds(a, estimate["seconds"])
    pool_idx = np.concatenate([probe_idx, held_idx])
    pool = Subset(train_data, pool_idx.tolist())
    probe_sub, held_sub = Subset(train_data, probe_idx.tolist()), Subset(train_data, held_idx.tolist())
    if a.cache_features and config.bn_policy == "update":
        # the cached frozen part runs in eval mode: give its BatchNorms the statistics of the downstream images, as
        # the batch statistics of the real run would (bn_policy="frozen" keeps the pre-trained ones, as the run does)
        recalibrate_batchnorm(base, probe_sub, bs, config.device)
    probe_cfg = config.replace(epochs=epochs, batch_size=bs, eval_every=0, nc1_taps=None, checkpoint=False,
                               progress=False, num_workers=0 if a.cache_features else config.num_workers)

    rows, over, no_time = [], [], []
    cands = _candidates(model, config)
    within = []
    for u in cands:
        n_tr, n_tot = _trainable_count(model, u, config, hw)
        pct = 100.0 * n_tr / n_tot
        row: dict[str, Any] = {"unit": u.name, "index": int(getattr(u, "index", len(within) + len(over))),
                               "trainable_params": n_tr, "trainable_percent": pct}
        if (a.max_trainable_percent is not None and pct > a.max_trainable_percent) or (
                a.max_trainable_params is not None and n_tr > a.max_trainable_params):
            over.append(row)
        else:
            within.append((u, row))
    spent: list[float] = []
    caches: list[dict[str, Any]] = []
    shared = None
    if a.cache_features and within:
        # one pass over the probe images caches the frozen part of every candidate
        shared = SharedPrefixCache.build(base, {u.name: resolve_unit(base, u.name).module for u, _ in within}, pool,
                                         batch_size=2 * bs, device=resolve_device(config.device))
    for u, row in tqdm(list(reversed(within)), desc="auto unit probe", disable=not config.progress, leave=False):
        # deepest first; a candidate starts only if PROBE_GROWTH x the last probe's time still fits in the budget
        if spent and time_cap is not None and (time.perf_counter() - t_start) + PROBE_GROWTH * spent[-1] > time_cap:
            no_time.append(row)
            continue
        t0 = time.perf_counter()
        m = copy.deepcopy(base)
        mu = resolve_unit(m, u.name)
        torch.manual_seed(config.seed)
        if config.method == "scl_ft":
            attach_skip(m, mu, config.skip, image_size=hw)
        names = trainable_parameter_names(m, config.method, mu)
        probe_ds, held_ds = probe_sub, held_sub
        replay = None
        if shared is not None:
            replay = shared.replay(m, u.name, mu.module)
            if replay is None:  # not in the shared cache, or its replay differs: cache this one alone
                replay = PrefixReplay.build(m, mu.module, pool, batch_size=2 * bs,
                                            device=resolve_device(config.device))
            if replay is not None:
                probe_ds = replay.view(np.arange(len(probe_idx)))
                held_ds = replay.view(np.arange(len(probe_idx), len(pool_idx)))
                caches.append(replay.describe())
        if not len(held_idx):
            held_ds = probe_ds
        row["prefix_cache"] = replay.describe() if replay is not None else None
        deadline = None if time_cap is None or not any(r.get("status") == "ok" for r in rows) else t_start + time_cap
        try:
            # a probe that runs past the budget stops after its current epoch and is not ranked (unless no probe
            # has finished yet: one candidate always completes)
            tr = Trainer(m, names, probe_cfg, probe_ds, held_ds,
                         on_epoch_end=None if deadline is None else (lambda r: time.perf_counter() > deadline))
            hist = tr.fit()
            last = {**hist[-1], **tr.final_eval_}
            row.update({"train_nc1": float(last["penultimate_nc1"]),
                        "heldout_nc1": float(last["test_penultimate_nc1"]) if len(held_idx) else float("nan"),
                        "heldout_accuracy": float(last["test_accuracy"]) if len(held_idx) else float("nan"),
                        "probe_train_loss": float(last["train_loss"]),
                        "probe_train_accuracy": float(last["train_accuracy"]),
                        "status": "ok" if len(hist) == epochs else
                        f"stopped after {len(hist)} of {epochs} epochs: time budget spent (not ranked)"})
        except (FloatingPointError, RuntimeError) as exc:
            row.update({"train_nc1": float("nan"), "heldout_nc1": float("nan"), "heldout_accuracy": float("nan"),
                        "status": f"failed: {exc}"})
        row["score"] = row[a.criterion]
        row["probe_seconds"] = time.perf_counter() - t0
        spent.append(row["probe_seconds"])
        rows.append(row)
        del m, replay
    rows.sort(key=lambda r: r["index"])
    no_time.sort(key=lambda r: r["index"])
    if not rows:
        raise InputValueError(
            f"unit='auto': no candidate fits the parameter budget (max_trainable_percent={a.max_trainable_percent}, "
            f"max_trainable_params={a.max_trainable_params}); the smallest needs "
            f"{min(r['trainable_percent'] for r in over):.2f}% ({min(r['trainable_params'] for r in over):,d} "
            "parameters). Raise the budget."
        )
    ok = [r for r in rows if r["status"] == "ok" and np.isfinite(r["score"])]
    if not ok:
        raise InputValueError(f"unit='auto': every probe failed: {[(r['unit'], r['status']) for r in rows]}.")
    sign = -1.0 if a.criterion == "heldout_accuracy" else 1.0  # NC1: lower is better; accuracy: higher
    ranked = sorted(ok, key=lambda r: (sign * r["score"], r["trainable_params"]))
    best = ranked[0]
    for rank, r in enumerate(ranked, 1):
        r["rank"] = rank
    budget = []
    if a.max_trainable_percent is not None:
        budget.append(f"<= {a.max_trainable_percent:g}% of parameters")
    if a.max_trainable_params is not None:
        budget.append(f"<= {a.max_trainable_params:,d} parameters")
    what = {"train_nc1": ("gave the most collapsed penultimate features (lowest NC1 {:.4g}) on the {} probe "
                          "images"),
            "heldout_nc1": ("gave the most collapsed penultimate features (lowest NC1 {:.4g}) on {} held-out "
                            "training images"),
            "heldout_accuracy": "gave the highest accuracy ({:.4g}) on {} held-out training images"}[a.criterion]
    n_scored = len(probe_idx) if a.criterion == "train_nc1" else len(held_idx)
    runner = (f"; runner-up {ranked[1]['unit']!r} reached {ranked[1]['score']:.4g}" if len(ranked) > 1 else "")
    reason = (
        f"{best['unit']!r} " + what.format(best["score"], n_scored)
        + f" after a {epochs * steps_per_epoch}-step {config.method} probe on {len(probe_idx)} training images "
          f"({a.probe_per_class or 'all'} per class), among {len(ok)} candidate(s)"
        + (f" ({len(no_time)} shallower one(s) not probed: the time budget of {time_cap:.0f} s was spent)"
           if no_time else "")
        + (f" within the budget ({', '.join(budget)}; {len(over)} over budget)" if budget else "")
        + f"{runner}; it trains {best['trainable_percent']:.2f}% of the parameters"
        + (" (Li et al., TMLR 2024, section 3.3 conjecture: the most collapsed penultimate features on the downstream training "
           "data transfer best)." if a.criterion != "heldout_accuracy" else ".")
    )
    probe_seconds = time.perf_counter() - t_start
    return {
        "chosen": best["unit"], "criterion": a.criterion,
        "reason": reason, "candidates": rows, "skipped_over_budget": over, "skipped_time_budget": no_time,
        "probe_seconds": probe_seconds,
        "time_budget": {"seconds": time_cap, "max_probe_fraction": a.max_probe_fraction,
                        "min_probe_seconds": a.min_probe_seconds, "max_probe_seconds": a.max_probe_seconds,
                        "estimated_training_seconds": estimate["seconds"], "estimate": estimate,
                        "respected": time_cap is None or probe_seconds <= time_cap, "probed": len(rows),
                        "not_probed": len(no_time)},
        "budget": {"max_trainable_percent": a.max_trainable_percent, "max_trainable_params": a.max_trainable_params},
        "probe": {"epochs": epochs, "steps": epochs * steps_per_epoch, "per_class": a.probe_per_class,
                  "n_images": int(len(probe_idx)),
                  "n_heldout": int(len(held_idx)), "batch_size": bs, "method": config.method,
                  "cached_frozen_part": len(caches), "order": "deepest first",
                  "shared_cache": None if shared is None else {
                      "units": len(shared.calls), "mb": round(shared.nbytes / 2**20, 3),
                      "seconds": shared.seconds},
                  "total_params": total, "num_classes": k},
    }
