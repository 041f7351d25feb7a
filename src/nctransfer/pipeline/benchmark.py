"""The benchmark suite: many real candidate pools, offline, every score with intervals and static baselines.

One pool is a set of candidates (models, or every tap of some models) and one target dataset; its ground truth is
the linear-probe test accuracy of each candidate (cached by the pipeline). :func:`run_suite` runs
:func:`~nctransfer.pipeline.rank_models` on every pool and summarises across pools:

- per pool: every score's weighted tau, Spearman and top-1 regret with 95% bootstrap intervals, the coverage, the
  static baselines and the random score (:mod:`nctransfer.pipeline.baselines`);
- across pools: each score's mean weighted tau, the number of pools where it beats every static baseline and the
  random score, and a **leave-one-pool-out** choice of the recommended score: for each pool, the score with the
  best mean weighted tau on the *other* pools is chosen and judged on the held-out one, against the best static
  baseline chosen the same way.

Default pools (:func:`default_pools`, bundled models and data only): every tap of EfficientNet-Lite0/1/2 plus the
random-init control on Fashion-MNIST (digits when the Debian package is missing), on digits, on a few-shot version
of each (10 training images per class) and on Fashion-MNIST's four look-alike tops (T-shirt, pullover, coat,
shirt); and the penultimate features of the three models plus the control on both datasets. Model pools from the
checkpoints of a pre-training study (``nctransfer study``, recipes x seeds, one pool per target) are added with
:class:`~nctransfer.pipeline.study_pools.StudyPoolSpec` (:func:`default_study_pool`). The ground truth is the linear-probe
accuracy (default) or, with ``truth="finetune"``, the fine-tuning accuracy (SCL FT at the tap for layer pools, full
FT for model pools, full or SCL FT of a study checkpoint's encoder), each with its standard error (the test set:
per-sample resampling or binomial; the seeds: ``truth_seeds``). A new score is
registered with :func:`nctransfer.transferability.register` and runs with the others
(``run_suite(methods=[..., "my_score"])``; on the command line ``nctransfer benchmark --import my_module``).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from nctransfer.data.arrays import find_fashion_mnist, load_fashion_mnist_arrays
from nctransfer.exceptions import InputValueError
from nctransfer.pipeline.core import rank_models
from nctransfer.pipeline.study_pools import StudyPoolSpec, combine_seeds, evaluate_pool, run_study_pools
from nctransfer.pretrain.study import StudyConfig
from nctransfer.utils.io import write_json_atomic, write_text_atomic

MODELS = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2", "random:efficientnet_lite0")
TOPS = (0, 2, 4, 6)  # Fashion-MNIST: T-shirt/top, pullover, coat, shirt


@dataclass(frozen=True)
class PoolSpec:
    """One pool: ``name``, candidate ``models``, target ``data`` (a dataset spec, or a zero-argument callable
    returning ``{"train": (images, labels), "test": (images, labels)}``), ``taps`` (``"penultimate"``/``"all"``
    or a selector), training / test images per class, input size and a description."""

    name: str
    models: tuple[str, ...]
    data: Any
    taps: Any = "penultimate"
    per_class: int | None = 50
    test_per_class: int | None = 100
    image_size: int | None = 64
    description: str = ""


def _fashion_available() -> bool:
    try:
        find_fashion_mnist(None)
        return True
    except Exception:  # noqa: BLE001 - any failure means: not installed
        return False


def fashion_subset(classes: Sequence[int]) -> Callable[[], dict[str, Any]]:
    """A data callable: Fashion-MNIST restricted to ``classes`` (relabelled ``0..len-1``)."""
    def load() -> dict[str, Any]:
        out = {}
        lut = {c: i for i, c in enumerate(classes)}
        for split in ("train", "test"):
            X, y = load_fashion_mnist_arrays(split)
            keep = np.isin(y, list(classes))
            out[split] = (X[keep], np.array([lut[int(v)] for v in y[keep]], dtype=np.int64))
        return out
    return load


def default_pools(quick: bool = False) -> list[PoolSpec]:
    """The offline suite (see the module docstring). ``quick``: two models (lite0 and its control), 20 training
    and 30 test images per class, 32 px -- a smoke run in minutes."""
    fm = "fashion-mnist" if _fashion_available() else "digits"
    models = ("efficientnet_lite0", "random:efficientnet_lite0") if quick else MODELS
    pc, tpc, size = (20, 30, 32) if quick else (50, 100, 64)
    pools = [
        PoolSpec(f"layers/{fm}", models, fm, "all", pc, tpc, size, f"every tap, {fm}"),
        PoolSpec("layers/digits", models, "digits", "all", pc, tpc, size, "every tap, digits"),
        PoolSpec(f"layers/{fm}/10-shot", models, fm, "all", 10, tpc, size, f"every tap, {fm}, 10 images per class"),
        PoolSpec("layers/digits/10-shot", models, "digits", "all", 10, tpc, size, "every tap, digits, 10 per class"),
        PoolSpec(f"models/{fm}", models, fm, "penultimate", pc, tpc, size, f"penultimate features, {fm}"),
        PoolSpec("models/digits", models, "digits", "penultimate", pc, tpc, size, "penultimate features, digits"),
    ]
    if fm == "fashion-mnist":
        pools.insert(4, PoolSpec("layers/fashion-mnist-tops", models, fashion_subset(TOPS), "all", pc, tpc, size,
                                 "every tap, Fashion-MNIST's four look-alike tops (fine-grained)"))
    return pools


def default_study_pool(out: str | Path, *, quick: bool = False, name: str = "study") -> StudyPoolSpec:
    """A pre-training study for the suite: small CNNs pre-trained on Fashion-MNIST's classes 0-4 (digits 0-4
    when it is missing) with cross-entropy, label smoothing and SupCon, two seeds each (6 checkpoints; quick: CE and SupCon, 4), transferred
    to the other five classes and to digits 5-9; the study runs (or resumes) under ``out``. ``quick``: 2 epochs, 40
    source / 20 target training images per class, 16 px (a test-sized study in seconds)."""
    fm = "fashion-mnist" if _fashion_available() else "digits"
    epochs, src, tgt, size = (2, 40, 20, 16) if quick else (10, 500, 50, 28)
    grid = {"defaults": {"arch": "small_cnn", "width": 8 if quick else 16, "depth": 2 if quick else 4,
                         "epochs": epochs, "batch_size": 64},
            "product": {"loss": ["ce", "ls", "supcon"] if not quick else ["ce", "supcon"], "seed": [0, 1]}}
    targets = [f"{fm}:5-9"] + (["digits:5-9"] if fm != "digits" else [])
    cfg = StudyConfig(source=f"{fm}:0-4", targets=targets, out=str(out), source_per_class=src,
                      source_test_per_class=20 if quick else 100, target_train_per_class=tgt,
                      target_test_per_class=20 if quick else 100, image_size=size, plots=False, threads=1)
    return StudyPoolSpec(name=name, config=cfg, grid=grid)


@dataclass
class SuiteResult:
    """``pools``: per pool ``{"spec", "evaluation", "intervals", "baselines", "n_candidates", "seconds"}``;
    ``summary``: per score ``{"mean_weighted_tau", "pools", "partial_pools", "beats_baselines", "beats_random"}``
    (means over full-coverage pools only);
    ``lopo``: the leave-one-pool-out folds; ``recommended``: the score chosen most often by them."""

    pools: dict[str, dict[str, Any]] = field(default_factory=dict)
    summary: dict[str, dict[str, Any]] = field(default_factory=dict)
    lopo: list[dict[str, Any]] = field(default_factory=list)
    recommended: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def summarize(pools: Mapping[str, Mapping[str, Any]]) -> tuple[dict[str, Any], list[dict[str, Any]], str | None]:
    """Across-pool summary, leave-one-pool-out folds and the recommended score (see the module docstring)."""
    taus: dict[str, dict[str, float]] = {}
    base_taus: dict[str, dict[str, float]] = {}
    summary: dict[str, dict[str, Any]] = {}
    partial: dict[str, int] = {}
    for p, r in pools.items():
        for m, e in (r.get("evaluation") or {}).items():
            cov = ((r.get("intervals") or {}).get(m) or {}).get("coverage")
            if _num(cov) and cov < 1:  # judged on part of the pool only: not comparable, left out of the means
                partial[m] = partial.get(m, 0) + 1
                continue
            if _num(e.get("weighted_tau")):
                taus.setdefault(m, {})[p] = float(e["weighted_tau"])
        for b, e in ((r.get("baselines") or {}).get("evaluation") or {}).items():
            if _num(e.get("weighted_tau")):
                base_taus.setdefault(b, {})[p] = float(e["weighted_tau"])
        for m, v in ((r.get("baselines") or {}).get("verdicts") or {}).items():
            s = summary.setdefault(m, {"beats_baselines": 0, "beats_random": 0})
            s["beats_baselines"] += int(not v.get("not_beaten") and v.get("beats_random") is not None)
            s["beats_random"] += int(bool(v.get("beats_random")))
    for m, t in taus.items():
        s = summary.setdefault(m, {"beats_baselines": 0, "beats_random": 0})
        s["mean_weighted_tau"] = float(np.mean(list(t.values())))
        s["pools"] = len(t)
    for m, n in partial.items():
        summary.setdefault(m, {"beats_baselines": 0, "beats_random": 0})["partial_pools"] = n
    for b, t in base_taus.items():
        summary[f"baseline:{b}"] = {"mean_weighted_tau": float(np.mean(list(t.values()))), "pools": len(t)}
    names = list(pools)
    folds = []
    if len(names) >= 2:
        for held in names:
            def best(table: Mapping[str, Mapping[str, float]]) -> tuple[str | None, float]:
                scored = {k: np.mean([v for p, v in t.items() if p != held]) for k, t in table.items()
                          if any(p != held for p in t) and held in t}
                if not scored:
                    return None, float("nan")
                k = max(scored, key=scored.get)
                return k, float(table[k][held])
            m, tau = best(taus)
            b, btau = best(base_taus)
            folds.append({"held_out": held, "chosen": m, "weighted_tau": tau, "baseline": b,
                          "baseline_weighted_tau": btau})
    chosen = [f["chosen"] for f in folds if f["chosen"]]
    rec = max(set(chosen), key=lambda m: (chosen.count(m), summary[m].get("mean_weighted_tau", -9))) \
        if chosen else None
    return summary, folds, rec


def run_suite(pools: Sequence[Any] | None = None, *, methods: Any = None, out: str | Path | None = None,
              cache_dir: Any = "default", quick: bool = False, seed: int = 0, progress: bool = True,
              probe_C_grid: Sequence[float] | None = None, rank_options: Mapping[str, Any] | None = None,
              truth: str = "probe", truth_finetune: Mapping[str, Any] | None = None, truth_seeds: int = 1
              ) -> SuiteResult:
    """Run every pool and summarise.

    Args:
        pools: the pools: :class:`PoolSpec` (run by ``rank_models``) and
            :class:`~nctransfer.pipeline.study_pools.StudyPoolSpec` (the checkpoints of a pre-training study, one
            pool per target); default :func:`default_pools`.
        methods: scores to run (names, ``"all"``, or ``None`` for every non-expensive one; a study pool has the
            scores its study computed).
        out: directory for ``benchmark.json``, ``benchmark.md`` and each pool's report (``out/<pool>/``).
        cache_dir: the pipeline's cache (features, probe and fine-tuning results are reused across runs).
        quick: the quick default pools.
        seed: seed of subsampling, probes and bootstrap.
        probe_C_grid: the probe's L2 grid (default: the pipeline's).
        rank_options: further :func:`~nctransfer.pipeline.rank_models` options.
        truth: ``"probe"`` (linear-probe test accuracy, default; its per-sample correctness gives the bootstrap
            its test-set resampling) or ``"finetune"``: SCL FT at the tap for layer pools, full FT for model pools
            (``rank_models(truth="finetune")``), full FT (or SCL FT) of each checkpoint's encoder for study pools.
        truth_finetune: fine-tuning options (``epochs``, ``lr``, ``method``...) for ``truth="finetune"``.
        truth_seeds: fine-tuning seeds per candidate for ``truth="finetune"``; the truth is their mean, with the
            standard error ``sqrt(p (1 - p) / n_test + s^2 / k)`` (:func:`~nctransfer.pipeline.study_pools.combine_seeds`).
    """
    if truth not in ("probe", "finetune"):
        raise InputValueError(f"run_suite: truth must be 'probe' or 'finetune'; got {truth!r}.")
    if int(truth_seeds) != truth_seeds or truth_seeds < 1:
        raise InputValueError(f"run_suite: truth_seeds must be a positive integer; got {truth_seeds!r}.")
    pools = list(pools) if pools is not None else default_pools(quick)
    if not pools:
        raise InputValueError("run_suite: no pools.")
    res = SuiteResult()
    for spec in pools:
        if isinstance(spec, StudyPoolSpec):
            res.pools.update(run_study_pools(spec, truth=truth, finetune=truth_finetune, seeds=int(truth_seeds),
                                             seed=seed, progress=progress))
            continue
        if not isinstance(spec, PoolSpec):
            raise InputValueError(f"run_suite: pools must be PoolSpec or StudyPoolSpec; got {type(spec).__name__}.")
        t0 = time.perf_counter()
        data = spec.data() if callable(spec.data) else spec.data
        kw: dict[str, Any] = dict(rank_options or {})
        if probe_C_grid is not None:
            kw["probe_C_grid"] = tuple(probe_C_grid)
        if isinstance(data, Mapping) and "train" in data:
            kw.update(train=data["train"], test=data["test"])
            data = None
        pool_out = None if out is None else Path(out) / spec.name.replace("/", "_")
        runs = []
        for k in range(int(truth_seeds) if truth == "finetune" else 1):
            if truth == "finetune":
                kw["truth_finetune"] = {**dict(truth_finetune or {}), "seed": seed + k}
            runs.append(rank_models(list(spec.models), data, taps=spec.taps, truth=truth, methods=methods,
                                    out=pool_out if k == 0 else None, per_class=spec.per_class,
                                    test_per_class=spec.test_per_class, image_size=spec.image_size, seed=seed,
                                    cache_dir=cache_dir, progress=progress, **kw))
        r = runs[0]
        entry = {"n_candidates": len(r["candidates"]), "evaluation": r.get("evaluation") or {},
                 "intervals": r.get("evaluation_intervals") or {}, "baselines": r.get("baselines") or {},
                 "truth": {k: v for k, v in (r.get("truth") or {}).items() if k != "details"}}
        if len(runs) > 1:  # several fine-tuning seeds: the mean and its standard error, evaluated again
            acc, se = combine_seeds([x["truth"]["accuracy"] for x in runs], int(r["data"]["n_test"]))
            bscores = (r.get("baselines") or {}).get("scores") or {}
            params = {c["model"]: int(bscores[c["name"]]["params"]) for c in r["candidates"]
                      if (bscores.get(c["name"]) or {}).get("params") is not None}
            entry.update(evaluate_pool(r["scores"], acc, r["candidates"], params=params, truth_se=se, seed=seed))
            entry["truth"] = {"kind": "finetune", "accuracy": acc, "se": se,
                              "noise": f"standard error of the mean over {len(runs)} seeds and the test set",
                              "seed_accuracies": {n: [x["truth"]["accuracy"][n] for x in runs] for n in acc}}
        res.pools[spec.name] = {
            "spec": {k: v for k, v in asdict(spec).items() if k != "data"} | {"data": _data_name(spec.data)},
            **entry, "seconds": time.perf_counter() - t0,
        }
    res.summary, res.lopo, res.recommended = summarize(res.pools)
    if out is not None:
        Path(out).mkdir(parents=True, exist_ok=True)
        write_json_atomic(Path(out) / "benchmark.json", res.to_dict())
        write_text_atomic(Path(out) / "benchmark.md", format_suite_md(res))
    return res


def _data_name(data: Any) -> str:
    return data if isinstance(data, str) else getattr(data, "__qualname__", type(data).__name__)


def _ci(e: Mapping[str, Any], iv: Mapping[str, Any], key: str, scale: float = 1.0, digits: int = 3) -> str:
    v = e.get(key)
    if not _num(v):
        return "—"
    text = f"{scale * v:+.{digits}f}" if scale == 1.0 else f"{scale * v:.{digits}f}"
    lo, hi = iv.get(f"{key}_lo"), iv.get(f"{key}_hi")
    if _num(lo) and _num(hi):
        text += f" [{scale * lo:.{digits}f}, {scale * hi:.{digits}f}]"
    return text


def _count(v: Any) -> str:
    return str(int(v)) if _num(v) else "?"


def format_suite_md(res: SuiteResult) -> str:
    """One Markdown table per pool and the summary across pools."""
    lines = ["# Benchmark suite", ""]
    for name, p in res.pools.items():
        tr = p.get("truth") or {}
        lines += [f"## {name} ({p['n_candidates']} candidates)", ""]
        if tr.get("kind"):
            lines += [f"Ground truth: {tr['kind']} ({tr.get('noise', 'noise not modelled')}).", ""]
        lines += ["| score | weighted τ [95% CI] | Spearman [95% CI] | top-1 regret, points [95% CI] | scored |",
                  "| --- | ---: | ---: | ---: | ---: |"]
        ev, iv = p["evaluation"], p["intervals"]
        b = p.get("baselines") or {}
        def order(m: str) -> tuple[int, float]:
            cov = (iv.get(m) or {}).get("coverage")
            tau = ev[m].get("weighted_tau")
            return (int(_num(cov) and cov < 1), -(tau if _num(tau) else -9))
        rows = sorted(ev, key=order)  # partial-coverage scores last
        for m in rows:
            i = iv.get(m) or {}
            cov = f"{_count(i.get('n_scored'))}/{_count(i.get('n_pool'))}"
            if _num(i.get("n_scored")) and _num(i.get("n_pool")) and i["n_scored"] < i["n_pool"]:
                cov = f"**{cov} partial**"
            lines.append(f"| {m} | {_ci(ev[m], i, 'weighted_tau')} | {_ci(ev[m], i, 'spearman')} | "
                         f"{_ci(ev[m], i, 'top1_regret', 100.0, 1)} | {cov} |")
        for bn, e in (b.get("evaluation") or {}).items():
            lines.append(f"| *baseline: {bn}* | {_ci(e, e, 'weighted_tau')} | {_ci(e, e, 'spearman')} | "
                         f"{_ci(e, e, 'top1_regret', 100.0, 1)} | {_count(e.get('n_scored'))}/"
                         f"{_count(e.get('n_pool'))} |")
        rnd = b.get("random") or {}
        if _num(rnd.get("weighted_tau_mean")):
            lines.append(f"| *random score* | {rnd['weighted_tau_mean']:+.3f} [{rnd['weighted_tau_lo']:.3f}, "
                         f"{rnd['weighted_tau_hi']:.3f}] | {rnd['spearman_mean']:+.3f} | "
                         f"{100 * rnd['top1_regret_mean']:.1f} | |")
        lines.append("")
    lines += ["## Summary across pools", "", "Means over the pools where the score covers every candidate (pools "
              "where it scored only part of them are counted under 'partial').", "",
              "| score | mean weighted τ | pools | partial | beats every baseline | beats random |",
              "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for m, s in sorted(res.summary.items(), key=lambda kv: -kv[1].get("mean_weighted_tau", -9)):
        lines.append(f"| {m} | {s.get('mean_weighted_tau', float('nan')):+.3f} | {s.get('pools', 0)} | "
                     f"{s.get('partial_pools', 0)} | "
                     f"{s.get('beats_baselines', '—') if not m.startswith('baseline:') else '—'} | "
                     f"{s.get('beats_random', '—') if not m.startswith('baseline:') else '—'} |")
    if res.lopo:
        lines += ["", "Leave one pool out (the score / baseline with the best mean weighted τ on the other pools, "
                  "judged on the held-out pool):", "", "| held-out pool | chosen score | its τ | best baseline | its τ |",
                  "| --- | --- | ---: | --- | ---: |"]
        for f in res.lopo:
            lines.append(f"| {f['held_out']} | {f['chosen']} | {f['weighted_tau']:+.3f} | {f['baseline']} | "
                         f"{f['baseline_weighted_tau']:+.3f} |")
        lines += ["", f"Recommended by leave-one-pool-out: **{res.recommended}**."]
    return "\n".join(lines) + "\n"


__all__ = ["PoolSpec", "StudyPoolSpec", "SuiteResult", "default_pools", "default_study_pool", "fashion_subset",
           "run_suite", "summarize", "format_suite_md"]
