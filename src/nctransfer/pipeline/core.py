"""``rank_models``: the product end to end (issue 6).

Models (or every tap of every model) -> cached feature extraction (:mod:`nctransfer.extract`) -> every
transferability score (:func:`nctransfer.transferability.rank`, docs/methods.md#transferability) and collapse metric
(:func:`nctransfer.metrics.compute_all`, docs/methods.md#collapse-metrics) on the training split -> ground truth (linear-probe
accuracy on the test split, docs/methods.md#finetuning; or fine-tuning accuracy; or the user's CSV) -> evaluation of every
score (:func:`nctransfer.transferability.evaluate`: weighted Kendall tau, ...) -> the ranking by the recommended
score, layer-wise collapse curves, an optional linear-probe vs SCL FT comparison on the recommended model
(:mod:`nctransfer.finetune`) -> ``results.json``, ``scores.csv``, ``report.html``, ``report.md`` and the resolved
``config.yaml``.

Every stage is cached (features by :mod:`nctransfer.extract`, stage results by
:class:`~nctransfer.pipeline.cache.ResultCache`), so re-running a job, or extending its pool, only computes what
is new.
"""

from __future__ import annotations

import contextlib
import copy
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from nctransfer.exceptions import InputValueError
from nctransfer.pipeline.cache import ResultCache, array_digest
from nctransfer.pipeline.config import PROBE_C_GRID, RankConfig
from nctransfer.pipeline.checks import (
    check_out_dir,
    check_truth_arg,
    parse_models,
    read_truth_csv,
)
from nctransfer.pipeline.recommended import DEFAULT_RECOMMENDED
from nctransfer.pipeline.result import RankResult
from nctransfer.stats.correlation import spearman
from nctransfer.utils.threads import limit_threads

#: prefix of a model spec that asks for random initialisation and marks the model as a control
RANDOM_PREFIX = "random:"
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


@dataclass
class _Model:
    label: str
    spec: Any  # name to load, or an nn.Module
    pretrained: bool | None
    control: bool
    module: Any = None
    taps: list[str] = field(default_factory=list)


_POINT_KEYS = ("weighted_tau", "kendall", "spearman", "pearson", "top1_regret")


@dataclass
class _Candidate:
    name: str
    model: _Model
    tap: str
    tap_index: int
    n_taps: int
    dim: int = 0
    X_train: Any = None
    y_train: Any = None
    X_test: Any = None
    y_test: Any = None
    probs: Any = None
    digest: str = ""


class _Run:
    """Timings, warnings and cache bookkeeping of one pipeline run."""

    def __init__(self, progress: bool) -> None:
        self.timings: dict[str, float] = {}
        self.cached: list[str] = []
        self.warnings: list[str] = []
        self.progress = progress

    @contextlib.contextmanager
    def stage(self, name: str, cache: ResultCache | None = None) -> Iterator[None]:
        hits, misses = (cache.hits, cache.misses) if cache is not None else (0, 0)
        t0 = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                yield
            finally:
                self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - t0
                for w in caught:
                    msg = f"{name}: {w.category.__name__}: {w.message}"
                    if msg not in self.warnings:
                        self.warnings.append(msg)
        if cache is not None and cache.hits > hits and cache.misses == misses and name not in self.cached:
            self.cached.append(name)

    def say(self, text: str) -> None:
        if self.progress:
            from tqdm.auto import tqdm

            tqdm.write(text)

    @staticmethod
    def blas(threads: int | None) -> Any:
        """Limit BLAS threads (``None``: library default). Probes and metrics of a few hundred samples are small
        matrix products: one thread is faster than two, much faster when the cores are busy (OpenBLAS
        spin-waits); measured 0.02-0.17 CPU-s per logistic-regression fit with one thread vs seconds with two on a
        loaded 2-core machine."""
        return limit_threads(None if threads is None else int(threads), torch_threads=False, blas_only=True)

    def bar(self, items: Sequence[Any], desc: str) -> Any:
        from tqdm.auto import tqdm

        return tqdm(items, desc=desc, disable=not self.progress, leave=False, unit="cand")


# ------------------------------------------------------------------------------------------------- inputs
def _parse_model(spec: Any, pretrained: bool) -> _Model:
    if isinstance(spec, (str, os.PathLike)):
        s = str(spec).strip()
        if s.startswith(RANDOM_PREFIX):
            return _Model(label=s, spec=s[len(RANDOM_PREFIX):], pretrained=False, control=True)
        return _Model(label=s, spec=s, pretrained=pretrained, control=False)
    if hasattr(spec, "forward") and hasattr(spec, "named_modules"):
        info = getattr(spec, "nctransfer_info", None)
        label = info.name if info is not None else type(spec).__name__
        return _Model(label=label, spec=spec, pretrained=getattr(info, "pretrained", None), control=False,
                      module=spec)
    raise InputValueError(f"models: each model must be a name (e.g. 'efficientnet_lite0', 'timm:resnet18', "
                          f"'random:efficientnet_lite0') or a torch.nn.Module; got {type(spec).__name__}.")


def _load(m: _Model, seed: int) -> Any:
    """Load the model; random initialisation is seeded (``torch.manual_seed(seed)``) so that a random-init control
    is the same network in every run (and its cached features are reused)."""
    if m.module is None:
        import torch

        from nctransfer.models import load_model

        torch.manual_seed(seed)
        m.module = load_model(str(m.spec), pretrained=bool(m.pretrained))
    return m.module


def _data_label(data: Any) -> str:
    if isinstance(data, (str, os.PathLike)):
        return str(data)
    if isinstance(data, (tuple, list)) and len(data) == 2:
        return f"arrays (N={len(data[1])})"
    if isinstance(data, Mapping):
        return ", ".join(f"{k}={_data_label(v)}" for k, v in data.items())
    return str(getattr(data, "name", None) or type(data).__name__)


def _is_named_spec(data: Any) -> bool:
    if isinstance(data, str) and data.lower().startswith("hf:"):  # a hub dataset: loaded once, like user data
        return False
    return isinstance(data, (str, os.PathLike)) or (isinstance(data, (tuple, list)) and len(data) == 2)


def _prepare_data(data: Any) -> Any:
    """The user's own data (a Dataset, a DataLoader, a Hugging Face dataset, explicit ``{"train", "test"}``
    splits) -> its training and test splits loaded once without a model (labels read, content hashed once), so
    that every model re-targets them with its own preprocessing (:func:`nctransfer.data.load_dataset` on a loaded
    dataset) instead of re-reading them. Names, folders and arrays are returned unchanged."""
    if _is_named_spec(data):
        return data
    from nctransfer.data import load_dataset

    return {"train": load_dataset(data, "train"), "test": load_dataset(data, "test")}


def _fingerprints(data: Any) -> Any:
    """Content fingerprints of prepared user data (part of stage-cache keys); ``None`` for names and arrays."""
    if not isinstance(data, Mapping):
        return None
    return {k: v.fingerprint() for k, v in data.items() if hasattr(v, "fingerprint")}


def _check_data(data: Any) -> dict[str, Any]:
    """Load the training split once without a model: fails fast on an unknown name or a single class."""
    from nctransfer.data import load_dataset

    ds = load_dataset(data, "train")
    classes = np.unique(np.asarray(ds.targets))
    if len(classes) < 2:
        raise InputValueError(f"data: {_data_label(data)!r} has {len(classes)} class in its training split; ranking "
                              "needs a labelled dataset with at least 2 classes.")
    return {"name": getattr(ds, "name", _data_label(data)), "classes": [str(c) for c in ds.classes],
            "n_classes": int(len(classes))}


def _load_split(data: Any, split: str, model: Any, image_size: int | None, per_class: int | None,
                seed: int) -> Any:
    from nctransfer.data import LoaderDataset, load_dataset

    if isinstance(data, Mapping) and isinstance(data.get(split), LoaderDataset):
        per_class = None  # a DataLoader is used as given (never subsampled)
    return load_dataset(data, split, model=model, image_size=image_size, per_class=per_class, seed=seed)


def _probs_from_classifier(model: Any, X: np.ndarray, device: Any) -> np.ndarray | None:
    """Source-classifier probabilities ``softmax(classifier(penultimate))`` (for LEEP/NCE), or ``None``."""
    import torch

    info = getattr(model, "nctransfer_info", None)
    if info is None or not info.classifier or not info.num_classes:
        return None
    head = model.get_submodule(info.classifier)
    dev = next((p.device for p in head.parameters()), torch.device("cpu"))
    with torch.inference_mode():
        logits = head(torch.as_tensor(X, dtype=torch.float32, device=dev))
    if logits.ndim != 2 or logits.shape[0] != len(X):
        return None
    return torch.softmax(logits.double(), dim=1).cpu().numpy()


# ------------------------------------------------------------------------------------------------- stages
def _extract_all(models: list[_Model], data: Any, taps: Any, cfg: dict[str, Any], run: _Run
                 ) -> tuple[list[_Candidate], dict[str, Any]]:
    candidates: list[_Candidate] = []
    info: dict[str, Any] = {}
    for m in models:
        cands, info[m.label] = _extract_model(m, data, taps, cfg, run.progress)
        candidates.extend(cands)
    return candidates, info


def _extract_model(m: _Model, data: Any, taps: Any, cfg: dict[str, Any], progress: bool
                   ) -> tuple[list[_Candidate], dict[str, Any]]:
    """Features of one model's candidates (every tap in ``m.taps``) on the training and test splits (cached):
    the unit of work of a local run and of one task of the Ray backend (:mod:`nctransfer.pipeline.ray_backend`)."""
    from nctransfer.extract import extract

    penultimate_only = taps == "penultimate"
    feat_cache = None if cfg["cache_dir"] is None else Path(cfg["cache_dir"]) / "features"
    candidates: list[_Candidate] = []
    model = m.module
    train = _load_split(data, "train", model, cfg["image_size"], cfg["per_class"], cfg["seed"])
    test = _load_split(data, "test", model, cfg["image_size"], cfg["test_per_class"], cfg["seed"] + 1)
    common = dict(batch_size=cfg["batch_size"], device=cfg["device"], store_features=True, cache_dir=feat_cache,
                  no_cache=feat_cache is None, progress=progress)
    t0 = time.perf_counter()
    r_tr = extract(model, train, m.taps, desc=f"extract {m.label} (train)", **common)
    r_te = extract(model, test, m.taps, desc=f"extract {m.label} (test)", **common)
    info = {"seconds": time.perf_counter() - t0, "from_cache": bool(r_tr.from_cache and r_te.from_cache),
            "taps": len(m.taps), "n_train": len(train), "n_test": len(test)}
    for i, tap in enumerate(m.taps):
        name = m.label if penultimate_only else f"{m.label}@{tap}"
        c = _Candidate(name=name, model=m, tap=tap, tap_index=i, n_taps=len(m.taps), dim=int(r_tr[tap].dim))
        c.X_train, c.y_train = r_tr[tap].features, r_tr[tap].labels
        c.X_test, c.y_test = r_te[tap].features, r_te[tap].labels
        if tap == "penultimate":
            try:
                c.probs = _probs_from_classifier(model, c.X_train, cfg["device"])
            except Exception as exc:  # noqa: BLE001 - a head that does not take pooled features: no probs
                warnings.warn(f"{m.label}: no source probabilities ({type(exc).__name__}: {exc}); LEEP/NCE "
                              "skipped for it.", RuntimeWarning, stacklevel=2)
        c.digest = array_digest(c.X_train, c.y_train, c.X_test, c.y_test, c.probs)
        candidates.append(c)
    return candidates, info


def _scores(cands: list[_Candidate], cfg: dict[str, Any], cache: ResultCache, run: _Run,
            parts: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Scores of the pool (cached): :func:`~nctransfer.transferability.rank`, or, when the per-model ``parts``
    were computed by workers (Ray backend), their pool-relative combination on the driver (the same numbers)."""
    from nctransfer.transferability import rank
    from nctransfer.transferability.ranking import combine_candidates

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


def _collapse(cands: list[_Candidate], cache: ResultCache, run: _Run) -> dict[str, dict[str, float | None]]:
    from nctransfer.metrics import compute_all

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


def _truth_probe(cands: list[_Candidate], cfg: dict[str, Any], cache: ResultCache, run: _Run
                 ) -> tuple[dict[str, float], dict[str, Any]]:
    from nctransfer.metrics import pack_correct, probe_accuracy

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


def _truth_samples(details: Mapping[str, Any], names: Sequence[str]) -> dict[str, np.ndarray] | None:
    """``{candidate: per-test-sample correctness}`` when every candidate has it on one shared test set (then the
    bootstrap resamples the test samples, the same draw for every candidate), else ``None``."""
    from nctransfer.metrics import unpack_correct

    packed = [(details.get(n) or {}).get("correct") for n in names]
    if not names or any(p is None for p in packed):
        return None
    out = {n: unpack_correct(p) for n, p in zip(names, packed)}
    return out if len({len(v) for v in out.values()}) == 1 else None


def _finetune_key(m: _Model, data: Any, cfg: dict[str, Any], options: Mapping[str, Any]) -> dict[str, Any]:
    from nctransfer.extract import weights_fingerprint

    return {"model": m.label, "weights": weights_fingerprint(m.module), "data": _data_label(data),
            "content": _fingerprints(data),
            "per_class": cfg["per_class"], "test_per_class": cfg["test_per_class"], "image_size": cfg["image_size"],
            "seed": cfg["seed"], "options": dict(options)}


def _run_finetune(m: _Model, data: Any, cfg: dict[str, Any], options: Mapping[str, Any], out_dir: Path | None,
                  cache: ResultCache, run: _Run) -> dict[str, Any]:
    """One fine-tuning run (cached); returns the JSON-able summary of a ``FinetuneResult``."""
    from nctransfer.finetune import finetune

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


def _truth_finetune(cands: list[_Candidate], data: Any, cfg: dict[str, Any], cache: ResultCache, run: _Run
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


def _layers(models: list[_Model], cands: list[_Candidate], collapse: Mapping[str, Any], truth: Mapping[str, Any]
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


def _compare_finetune(model: _Model, top_tap: str, data: Any, cfg: dict[str, Any], out: Path | None,
                      cache: ResultCache, run: _Run) -> dict[str, Any]:
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


def _method_meta(columns: Sequence[str]) -> dict[str, Any]:
    from nctransfer.transferability import METHODS

    out = {}
    for m in columns:
        info = METHODS.get(m)
        if info is None:
            continue
        out[m] = {"label": info.title, "higher_is_better": info.higher_is_better,
                  "pool_relative": info.pool_relative, "needs_probs": info.needs_probs, "reference": info.reference}
    return out


def _resolve_taps(m: _Model, taps: Any) -> list[str]:
    from nctransfer.features import PENULTIMATE, list_taps, select_taps

    if taps == "penultimate":
        return [PENULTIMATE]
    if taps == "all":
        return list(list_taps(m.module))
    sel = select_taps(m.module, taps)
    return [getattr(u, "name", u) for u in sel]


# ------------------------------------------------------------------------------------------------ main
def rank_models(
    models: Any,
    data: Any = None,
    *,
    train: Any = None,
    test: Any = None,
    val: Any = None,
    taps: Any = "penultimate",
    truth: Any = "probe",
    out: str | os.PathLike | None = None,
    methods: Any = None,
    method_options: Mapping[str, Mapping[str, Any]] | None = None,
    recommended_score: str | None = None,
    per_class: int | None = 50,
    test_per_class: int | None = 50,
    image_size: int | None = None,
    batch_size: int = 64,
    device: str | None = None,
    pretrained: bool = True,
    seed: int = 0,
    cache_dir: str | os.PathLike | None = "default",
    probe_C_grid: Sequence[float] | None = PROBE_C_GRID,
    probe_max_iter: int = 300,
    truth_finetune: Mapping[str, Any] | None = None,
    compare_finetune: bool = False,
    finetune_options: Mapping[str, Any] | None = None,
    title: str | None = None,
    progress: bool = True,
    blas_threads: int | None = 1,
    config: RankConfig | Mapping[str, Any] | None = None,
    backend: str = "local",
    ray_address: str | None = None,
    max_retries: int = 2,
) -> RankResult:
    """Rank candidate models (or every tap of every model) for a labelled target dataset.

    Args:
        models: model names for :func:`nctransfer.models.load_model` (a list, or one comma-separated string) and/or
            ``torch.nn.Module`` objects. A name prefixed ``random:`` (``"random:efficientnet_lite0"``) is loaded
            with random weights and marked as a control (a candidate that should rank last).
        data: a dataset spec for :func:`nctransfer.data.load_dataset` (``"fashion-mnist"``, ``"digits"``, an
            ImageFolder directory, ``"torchvision:<Name>"``, ``"hf:<name>"``), in-memory ``(images, labels)``, or
            the user's own ``Dataset`` / Hugging Face ``datasets.Dataset`` / ``DatasetDict`` (labels read, content
            fingerprinted for the cache). Its training split is scored, its test split gives the ground truth.
        train, test, val: explicit splits instead of ``data`` (any form above, or ``DataLoader`` objects used as
            given: their batches, never subsampled), used as given and never re-split; ``per_class`` /
            ``test_per_class`` still subsample map-style ones (``None``: use everything).
        taps: ``"penultimate"`` (one candidate per model, named after it), ``"all"`` (one candidate per tap of
            each model, named ``model@tap``, plus layer-wise collapse curves), or any tap selector of
            :func:`nctransfer.features.select_taps`.
        truth: ``"probe"`` (linear-probe test accuracy, docs/methods.md#finetuning), ``"finetune"`` (fine-tuning test
            accuracy: full FT of a penultimate candidate, SCL FT at a tap candidate; options in
            ``truth_finetune``), or the path of a CSV with columns ``model,accuracy``.
        out: directory for ``results.json``, ``scores.csv``, ``report.html``, ``report.md`` (+ ``figures/``) and
            ``config.yaml``; checked for writability before any work. ``None``: write nothing. Under
            ``torchrun`` (a ``torch.distributed`` process group) every rank extracts a slice of each dataset
            (:mod:`nctransfer.extract.distributed`) and only rank 0 writes.
        methods: transferability methods (names, ``"all"``, or ``None`` for every non-expensive one).
        method_options: per-method options, e.g. ``{"gbc": {"gaussian": "diagonal"}}``.
        recommended_score: the score that ranks the pool (default :data:`DEFAULT_RECOMMENDED`).
        per_class, test_per_class: seeded, class-balanced subsample sizes of the training and test splits
            (``None``: everything).
        image_size: input resolution (``None``: each model's own).
        batch_size, device: extraction batch size and device (``None``: CUDA when available).
        pretrained: load pre-trained weights for names without the ``random:`` prefix.
        seed: seed of subsampling, probes and fine-tuning.
        cache_dir: cache root (features under ``features/``, stage results under ``results/``); ``"default"``:
            ``$NCTRANSFER_CACHE``'s parent or ``~/.cache/nctransfer``; ``None``: no cache.
        probe_C_grid, probe_max_iter: options of :func:`nctransfer.metrics.probe_accuracy` for the ground truth.
        truth_finetune: options of :func:`nctransfer.finetune.finetune` for ``truth="finetune"``.
        compare_finetune: also fine-tune the recommended model: linear probe vs SCL FT (options in
            ``finetune_options``, default :data:`FINETUNE_DEFAULTS`; ``unit`` may be a unit name, ``"auto"``
            (chosen by collapse, :func:`nctransfer.finetune.auto.choose_unit`) or ``"recommended"``: the tap of the
            top-ranked candidate, ``"auto"`` when that is the penultimate feature).
        title: report title.
        progress: progress bars and stage messages.
        blas_threads: BLAS threads while computing collapse metrics and probes (``None``: library default; the
            transferability scores manage their own, see ``nctransfer.transferability.set_blas_threads``).
        config: a :class:`~nctransfer.pipeline.config.RankConfig` holding every setting above (keywords that
            differ from their defaults are applied on top of it), or extra entries for the resolved configuration
            (e.g. the CLI's options).
        backend: ``"local"`` (this process; data-parallel under ``torchrun``) or ``"ray"``: each model's
            extraction and per-model scoring run as one Ray task (one GPU per task when the cluster has GPUs), the
            pool-relative scores, collapse metrics, ground truth and evaluation on the driver; the results equal
            the local backend's (:mod:`nctransfer.pipeline.ray_backend`; ``pip install 'nctransfer[ray]'``).
        ray_address: Ray cluster to connect to (``None``: the running instance, or a new local one).
        max_retries: Ray backend: times a failed task (an error, or its worker killed) is re-run; every retry
            is listed in ``results["warnings"]`` and ``results["extraction"][model]["attempts"]``.

    Returns:
        A :class:`~nctransfer.pipeline.result.RankResult`: the results structure of
        :mod:`nctransfer.reports.schema` (a JSON-able dict: ``res["ranking"]``, ``res["scores"]``, ...) with
        ``.to_frame()`` (one row per candidate) and ``.evaluation_frame()`` (one row per score). Warnings raised by
        the stages (e.g. a probe that stopped at its iteration cap) are collected in ``results["warnings"]`` and
        listed in the report instead of being printed.

    Raises:
        NotFoundError: unknown model, dataset, tap or method; missing truth CSV.
        InputValueError: a dataset with fewer than 2 classes, a non-writable ``out``, a truth CSV missing
            candidates, ... All raised before anything is written to ``out``.
    """
    from nctransfer.utils.repro import environment_stamp

    t_start = time.perf_counter()
    # every setting, typed and validated in one place (RankConfig); the run reads them from here on
    settings = RankConfig.from_call(
        config, taps=taps, truth=truth, methods=methods, method_options=method_options,
        recommended_score=recommended_score, per_class=per_class, test_per_class=test_per_class,
        image_size=image_size, batch_size=batch_size, device=device, pretrained=pretrained, seed=seed,
        cache_dir=cache_dir, probe_C_grid=probe_C_grid, probe_max_iter=probe_max_iter,
        truth_finetune=truth_finetune, compare_finetune=compare_finetune, finetune_options=finetune_options,
        title=title, progress=progress, blas_threads=blas_threads, backend=backend, ray_address=ray_address,
        max_retries=max_retries)
    extra_config = None if isinstance(config, RankConfig) else config
    s = settings
    taps, truth, methods, method_options, recommended_score = (s.taps, s.truth, s.methods, s.method_options,
                                                                s.recommended_score)
    per_class, test_per_class, image_size, batch_size, device = (s.per_class, s.test_per_class, s.image_size,
                                                                 s.batch_size, s.device)
    pretrained, seed, cache_dir, probe_C_grid, probe_max_iter = (s.pretrained, s.seed, s.cache_dir, s.probe_C_grid,
                                                                 s.probe_max_iter)
    truth_finetune, compare_finetune, finetune_options, title, progress = (s.truth_finetune, s.compare_finetune,
                                                                           s.finetune_options, s.title, s.progress)
    blas_threads, backend, ray_address, max_retries = s.blas_threads, s.backend, s.ray_address, s.max_retries
    run = _Run(progress)
    if train is not None or test is not None or val is not None:
        if data is not None:
            raise InputValueError("rank_models: give either data or explicit train= and test= datasets, not both.")
        if train is None or test is None:
            raise InputValueError("rank_models: explicit splits need both train= (scored) and test= (ground truth).")
        data = {k: v for k, v in (("train", train), ("test", test), ("val", val)) if v is not None}
    if data is None:
        raise InputValueError("rank_models: data is required (a dataset name, a folder, (X, y), a Dataset, a Hugging "
                              "Face dataset), or explicit train= and test=.")
    # ---------------------------------------------------------------- checks (nothing heavy, nothing written)
    if backend == "ray":
        from nctransfer.pipeline.ray_backend import require_ray

        require_ray()
    from nctransfer.utils.distributed import is_main

    # under torchrun every rank runs the pipeline (extraction is split across them); only rank 0 writes outputs
    from nctransfer.utils.paths import check_output_dir

    out_dir = check_output_dir(out, "out") if (out is not None and is_main()) else None  # creates nothing yet
    from nctransfer.utils.device import check_device

    check_device(device, "device")  # a missing GPU fails now, not after every model and image was loaded
    items = parse_models(models)
    truth_arg = check_truth_arg(truth)
    from nctransfer.transferability import METHODS, get_method

    rec = recommended_score or DEFAULT_RECOMMENDED
    get_method(rec)  # unknown name -> NotFoundError with suggestions
    if methods is not None and not (isinstance(methods, str) and methods.strip().lower() == "all"):
        wanted = [s.strip() for s in methods.split(",") if s.strip()] if isinstance(methods, str) else list(methods)
        wanted = [get_method(w).name for w in wanted]
        if get_method(rec).name not in wanted:  # the ranking score is always computed
            wanted.append(get_method(rec).name)
        methods = wanted
    if cache_dir == "default":
        from nctransfer.extract import default_cache_dir

        cache_root: Path | None = default_cache_dir().parent
    else:
        cache_root = None if cache_dir is None else Path(cache_dir).expanduser()
    cache = ResultCache(None if cache_root is None else cache_root / "results")
    cfg: dict[str, Any] = {
        "models": [_parse_model(m, pretrained).label for m in items], "data": _data_label(data), "taps": taps,
        "truth": truth_arg, "methods": methods, "method_options": dict(method_options or {}),
        "recommended_score": rec, "per_class": per_class, "test_per_class": test_per_class, "image_size": image_size,
        "batch_size": batch_size, "device": device, "pretrained": pretrained, "seed": seed,
        "cache_dir": None if cache_root is None else str(cache_root), "probe_C_grid": probe_C_grid,
        "probe_max_iter": probe_max_iter, "truth_finetune": dict(truth_finetune or {}),
        "compare_finetune": compare_finetune, "finetune_options": dict(finetune_options or {}),
    }
    mlist = [_parse_model(m, pretrained) for m in items]
    labels = [m.label for m in mlist]
    dup = sorted({x for x in labels if labels.count(x) > 1})
    if dup:
        raise InputValueError(f"models: two models have the same name {dup}; give each a distinct name.")
    if out_dir is not None:  # every argument checked: now the output directory may be created
        out_dir = check_out_dir(out)
    with run.stage("load data"):
        data = _prepare_data(data)
        data_info = _check_data(data)
    with run.stage("load models"):
        for m in mlist:
            _load(m, seed)
            m.taps = _resolve_taps(m, taps)
    names = [m.label if taps == "penultimate" else f"{m.label}@{t}" for m in mlist for t in m.taps]
    truth_csv = read_truth_csv(truth_arg, names) if truth_arg not in ("probe", "finetune") else None

    # ---------------------------------------------------------------- features
    parts = None
    with run.stage("extract features"):
        if backend == "ray":
            from nctransfer.pipeline.ray_backend import extract_and_score

            cands, extraction, parts = extract_and_score(mlist, data, taps, cfg, run, address=ray_address,
                                                         max_retries=max_retries)
        else:
            cands, extraction = _extract_all(mlist, data, taps, cfg, run)
    n_train = len(cands[0].y_train)
    n_test = len(cands[0].y_test)
    with run.stage("transferability scores", cache):
        sc = _scores(cands, cfg, cache, run, parts)
    with run.stage("collapse metrics", cache), run.blas(blas_threads):
        collapse = _collapse(cands, cache, run)

    # ---------------------------------------------------------------- ground truth and evaluation
    if truth_arg == "probe":
        with run.stage("ground truth (linear probe)", cache), run.blas(blas_threads):
            acc, details = _truth_probe(cands, cfg, cache, run)
        truth_info = {"kind": "probe", "source": f"test accuracy of a multinomial logistic-regression probe on the "
                      f"candidate's features (L2 strength chosen on a validation split from "
                      f"{len(probe_C_grid or [1])} values; docs/methods.md#finetuning)"}
    elif truth_arg == "finetune":
        with run.stage("ground truth (fine-tuning)", cache):
            acc, details = _truth_finetune(cands, data, cfg, cache, run)
        truth_info = {"kind": "finetune", "source": "test accuracy after fine-tuning each candidate (full FT of a "
                      "model, SCL FT at a tap)"}
    else:
        acc, details = dict(truth_csv or {}), {}
        truth_info = {"kind": "csv", "source": f"user-supplied accuracies from {truth_arg}"}
    truth_info.update({"accuracy": acc, "details": details})
    with run.stage("evaluation"):
        import pandas as pd

        from nctransfer.transferability import evaluate

        from nctransfer.pipeline.baselines import baseline_verdicts, evaluate_baselines

        df = pd.DataFrame({m: [sc["scores"][c.name].get(m) for c in cands] for m in sc["columns"]},
                          index=[c.name for c in cands], dtype=float)
        # the truth's noise: with the probe's per-sample correctness, the bootstrap resamples the shared test set
        # (one draw for every candidate: their errors are paired); otherwise the binomial standard error of each
        # accuracy on the n_test test images (independent across candidates -- conservative)
        truth_samples = _truth_samples(details, [c.name for c in cands]) if truth_arg == "probe" else None
        truth_se = ({n: float(np.sqrt(max(a * (1 - a), 0.0) / max(n_test, 1))) for n, a in acc.items()}
                    if truth_arg in ("probe", "finetune") and truth_samples is None else None)
        truth_info["noise"] = ("per-sample (test set resampled, paired across candidates)" if truth_samples
                               else "binomial standard error" if truth_se else "none")
        full = {m: {k: (float(v) if np.isfinite(v) else None) for k, v in e.items()}
                for m, e in evaluate(df, acc, intervals=True, truth_samples=truth_samples, truth_se=truth_se,
                                     seed=seed).items()} if len(cands) >= 2 else {}
        # results.json keeps the five point measures in "evaluation" and the 95% bootstrap intervals and the
        # coverage (models scored / pool) beside them in "evaluation_intervals"
        evaluation = {m: {k: v for k, v in e.items() if k in _POINT_KEYS} for m, e in full.items()}
        intervals = {m: {k: v for k, v in e.items() if k not in _POINT_KEYS} for m, e in full.items()}
        cand_meta = [{"name": c.name, "model": c.model.label, "tap_index": c.tap_index, "n_taps": c.n_taps,
                      "dim": c.dim, "control": c.model.control} for c in cands]
        params = {m.label: int(sum(p.numel() for p in m.module.parameters())) for m in mlist
                  if m.module is not None and hasattr(m.module, "parameters")}
        baselines = evaluate_baselines(cand_meta, acc, params=params, truth_se=truth_se,
                                       truth_samples=truth_samples, seed=seed) \
            if len(cands) >= 2 else {}
        if baselines:
            baselines["evaluation"] = {b: {k: (float(v) if np.isfinite(v) else None) for k, v in e.items()}
                                       for b, e in baselines["evaluation"].items()}
            baselines["verdicts"] = baseline_verdicts(evaluation, baselines)
    if not any(sc["scores"][c.name].get(rec) is not None for c in cands):
        # e.g. a pool-relative score (NCTI, ensembles) with a single candidate: rank by the first per-model score
        fallback = next((m for m in sc["columns"] if not METHODS[m].pool_relative
                         and any(sc["scores"][c.name].get(m) is not None for c in cands)), None)
        if fallback is None:
            raise InputValueError(f"recommended_score {rec!r} could not be computed for any candidate and no other "
                                  f"score is available (methods={methods!r}).")
        sc["notes"].append(f"{rec} could not be computed for this pool ({len(cands)} candidate(s)); ranked by "
                           f"{fallback} instead.")
        rec = fallback

    results: dict[str, Any] = {
        "schema": "nctransfer.results/1",
        "title": title,
        "data": {**data_info, "name": data_info["name"], "n_train": n_train, "n_test": n_test,
                 "image_size": image_size, "per_class": per_class, "test_per_class": test_per_class, "seed": seed},
        "candidates": [{"name": c.name, "model": c.model.label, "tap": c.tap, "tap_index": c.tap_index,
                        "n_taps": c.n_taps, "dim": c.dim, "pretrained": c.model.pretrained,
                        "control": c.model.control, "has_probs": c.probs is not None} for c in cands],
        "methods": _method_meta(sc["columns"]),
        "scores": sc["scores"],
        "score_seconds": sc["seconds"],
        "collapse": collapse,
        "truth": truth_info,
        "evaluation": evaluation,
        "evaluation_intervals": intervals,
        "baselines": baselines,
        "recommended_score": rec,
    }
    if title is None:
        results.pop("title")
    from nctransfer.reports.schema import ranking_order

    results["ranking"] = ranking_order(results, rec)
    results["recommended"] = results["ranking"][0]
    if taps != "penultimate":
        results["layers"] = _layers(mlist, cands, collapse, truth_info)
    results["extraction"] = extraction
    if compare_finetune:
        top = next((c for c in results["ranking"] if not next(x for x in cands if x.name == c).model.control),
                   results["ranking"][0])
        top_c = next(x for x in cands if x.name == top)
        with run.stage("fine-tuning (linear probe vs SCL FT)", cache):
            results["finetune"] = _compare_finetune(top_c.model, top_c.tap, data, cfg, out_dir, cache, run)
    results["notes"] = sc["notes"]
    results["config"] = {**cfg, **dict(extra_config or {})}
    results["environment"] = environment_stamp()
    if out_dir is not None:
        with run.stage("report"):
            results["timings"] = dict(run.timings)
            write_outputs(results, out_dir)
    results["timings"] = dict(run.timings)
    results["timings_cached"] = list(run.cached)
    results["warnings"] = run.warnings
    results["seconds_total"] = time.perf_counter() - t_start
    if out_dir is not None:  # final timings and warnings (the report stage included)
        from nctransfer.reports import write_results_json

        write_results_json(results, out_dir / "results.json")
    return RankResult(results)


def write_outputs(results: Mapping[str, Any], out: str | os.PathLike) -> dict[str, Path]:
    """Write ``results.json``, ``scores.csv``, ``config.yaml``, ``report.html`` and ``report.md`` (+ figures) into
    ``out``, each atomically."""
    import yaml

    from nctransfer.reports import write_report, write_results_json, write_scores_csv
    from nctransfer.reports.records import _clean
    from nctransfer.utils.io import write_text_atomic

    out = Path(out)
    paths = {"results": write_results_json(results, out / "results.json"),
             "scores": write_scores_csv(results, out / "scores.csv")}
    if results.get("config"):
        paths["config"] = write_text_atomic(out / "config.yaml",
                                            yaml.safe_dump(_clean(dict(results["config"])), sort_keys=False))
    paths.update(write_report(results, out))
    return paths


__all__ = ["rank_models", "write_outputs", "RANDOM_PREFIX", "PROBE_C_GRID", "FINETUNE_DEFAULTS"]
