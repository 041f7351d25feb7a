"""The candidates of a ranking run: the pool's models (:class:`Model`), one :class:`Candidate` per model or per
tap with its features, the run's bookkeeping (:class:`Run`: timings, warnings, progress), and the first stage,
:func:`extract_candidates` (cached feature extraction of every candidate on the training and test splits).
"""

from __future__ import annotations

import contextlib
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
from tqdm.auto import tqdm

from nctransfer.exceptions import InputValueError
from nctransfer.pipeline.cache import ResultCache, array_digest
from nctransfer.utils.threads import limit_threads

#: prefix of a model spec that asks for random initialisation and marks the model as a control
RANDOM_PREFIX = "random:"
#: the classifier-input tap (= nctransfer.features.PENULTIMATE; that package needs the [torch] extra)
PENULTIMATE = "penultimate"
@dataclass
class Model:
    """One model of the pool: its label, what to load (a name, or an ``nn.Module``), whether it is pre-trained or
    a random-weight control, the loaded module and its resolved taps."""

    label: str
    spec: Any  # name to load, or an nn.Module
    pretrained: bool | None
    control: bool
    module: Any = None
    taps: list[str] = field(default_factory=list)


@dataclass
class Candidate:
    """One candidate of the pool: a model (``name`` = its label) or one of its taps (``name`` = ``model@tap``),
    with its features ``[N, d]`` and labels on the training and test splits, the source classifier's
    probabilities (penultimate candidates), and the digest of those arrays that keys every cached stage."""

    name: str
    model: Model
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


class Run:
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
            tqdm.write(text)

    @staticmethod
    def blas(threads: int | None) -> Any:
        """Limit BLAS threads (``None``: library default). Probes and metrics of a few hundred samples are small
        matrix products: one thread is faster than two, much faster when the cores are busy (OpenBLAS
        spin-waits); measured 0.02-0.17 CPU-s per logistic-regression fit with one thread vs seconds with two on a
        loaded 2-core machine."""
        return limit_threads(None if threads is None else int(threads), torch_threads=False, blas_only=True)

    def bar(self, items: Sequence[Any], desc: str) -> Any:
        return tqdm(items, desc=desc, disable=not self.progress, leave=False, unit="cand")


# ------------------------------------------------------------------------------------------------- inputs
def _parse_model(spec: Any, pretrained: bool) -> Model:
    if isinstance(spec, (str, os.PathLike)):
        s = str(spec).strip()
        if s.startswith(RANDOM_PREFIX):
            return Model(label=s, spec=s[len(RANDOM_PREFIX):], pretrained=False, control=True)
        return Model(label=s, spec=s, pretrained=pretrained, control=False)
    if hasattr(spec, "forward") and hasattr(spec, "named_modules"):
        info = getattr(spec, "nctransfer_info", None)
        label = info.name if info is not None else type(spec).__name__
        return Model(label=label, spec=spec, pretrained=getattr(info, "pretrained", None), control=False,
                      module=spec)
    raise InputValueError(f"models: each model must be a name (e.g. 'efficientnet_lite0', 'timm:resnet18', "
                          f"'random:efficientnet_lite0') or a torch.nn.Module; got {type(spec).__name__}.")


def _load(m: Model, seed: int) -> Any:
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
def extract_candidates(models: list[Model], data: Any, taps: Any, cfg: dict[str, Any], run: Run
                 ) -> tuple[list[Candidate], dict[str, Any]]:
    candidates: list[Candidate] = []
    info: dict[str, Any] = {}
    for m in models:
        cands, info[m.label] = extract_model(m, data, taps, cfg, run.progress)
        candidates.extend(cands)
    return candidates, info


def extract_model(m: Model, data: Any, taps: Any, cfg: dict[str, Any], progress: bool
                   ) -> tuple[list[Candidate], dict[str, Any]]:
    """Features of one model's candidates (every tap in ``m.taps``) on the training and test splits (cached):
    the unit of work of a local run and of one task of the Ray backend (:mod:`nctransfer.pipeline.ray_backend`)."""
    from nctransfer.extract import extract

    feat_cache = None if cfg["cache_dir"] is None else Path(cfg["cache_dir"]) / "features"
    candidates: list[Candidate] = []
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
        name = candidate_name(m.label, tap, taps)
        c = Candidate(name=name, model=m, tap=tap, tap_index=i, n_taps=len(m.taps), dim=int(r_tr[tap].dim))
        c.X_train, c.y_train = r_tr[tap].features, r_tr[tap].labels
        c.X_test, c.y_test = r_te[tap].features, r_te[tap].labels
        if tap == PENULTIMATE:
            try:
                c.probs = _probs_from_classifier(model, c.X_train, cfg["device"])
            except Exception as exc:  # noqa: BLE001 - a head that does not take pooled features: no probs
                warnings.warn(f"{m.label}: no source probabilities ({type(exc).__name__}: {exc}); LEEP/NCE "
                              "skipped for it.", RuntimeWarning, stacklevel=2)
        c.digest = array_digest(c.X_train, c.y_train, c.X_test, c.y_test, c.probs)
        candidates.append(c)
    return candidates, info


def resolve_taps(m: Model, taps: Any) -> list[str]:
    """The tap names of model ``m`` that selector ``taps`` stands for (:func:`nctransfer.features.tap_names`)."""
    from nctransfer.features import tap_names  # deferred on purpose: nctransfer.features needs the [torch] extra

    return tap_names(m.module, taps)


def one_candidate_per_model(taps: Any) -> bool:
    """Whether a run's tap selector is ``"penultimate"``: then each model is one candidate named after the model
    (no ``@tap`` suffix, no layer-wise curves)."""
    return isinstance(taps, str) and taps == PENULTIMATE


def candidate_name(label: str, tap: str, taps: Any) -> str:
    """A candidate's name: ``"<model>"`` when the run selects only the penultimate feature, else
    ``"<model>@<tap>"``."""
    return label if one_candidate_per_model(taps) else f"{label}@{tap}"


__all__ = ["Candidate", "Model", "Run", "PENULTIMATE", "RANDOM_PREFIX", "candidate_name", "extract_candidates",
           "extract_model", "one_candidate_per_model", "resolve_taps"]
