"""The candidates of a run and the first stage, extraction.

- :class:`Model`: one model of the pool (its label, what to load, pre-trained or a random-weight control, its taps);
- :class:`Candidate`: a model (named after it) or one of its taps (``model@tap``), with its features ``[N, d]`` and
  labels on the training and test splits, the source classifier's probabilities, and the digest that keys every
  cached stage;
- :class:`Run`: the run's bookkeeping (timings per stage, warnings collected, cache hits, progress);
- :func:`extract_candidates` / :func:`extract_model`: each model's splits loaded with its own preprocessing and
  its features extracted once at every tap (:func:`extract_splits`, cached by :mod:`nctransfer.extract`), turned
  into candidates (:func:`candidates_of`).

``rank_models`` extracts from a dataset spec (:func:`extract_candidates`); ``layers.analyze`` extracts from the
datasets it is given (:func:`extract_splits` + :func:`candidates_of`). The torch-dependent packages (``data``,
``extract``, ``features``, ``models``) are imported where they are used, so that the stages import without the [torch] extra.
"""

from __future__ import annotations

import contextlib
import os
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
from tqdm.auto import tqdm

from nctransfer.exceptions import InputValueError
from nctransfer.stages.cache import ResultCache, array_digest
from nctransfer.stages.settings import ExtractionSettings
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
    probabilities ``[N, C_src]`` (penultimate candidates), the digest of those arrays that keys every cached stage,
    and the streamed statistics of its training features (a ``FeatureStats``: class means for nearest-class-mean
    accuracy)."""

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
    stats: Any = None


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
        import torch  # deferred on purpose (with nctransfer.models): they need the [torch] extra

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
    from nctransfer.data import load_dataset  # deferred on purpose: nctransfer.data needs the [torch] extra

    return {"train": load_dataset(data, "train"), "test": load_dataset(data, "test")}


def _fingerprints(data: Any) -> Any:
    """Content fingerprints of prepared user data (part of stage-cache keys); ``None`` for names and arrays."""
    if not isinstance(data, Mapping):
        return None
    return {k: v.fingerprint() for k, v in data.items() if hasattr(v, "fingerprint")}


def _check_data(data: Any) -> dict[str, Any]:
    """Load the training split once without a model: fails fast on an unknown name or a single class."""
    from nctransfer.data import load_dataset  # deferred on purpose: nctransfer.data needs the [torch] extra

    ds = load_dataset(data, "train")
    classes = np.unique(np.asarray(ds.targets))
    if len(classes) < 2:
        raise InputValueError(f"data: {_data_label(data)!r} has {len(classes)} class in its training split; ranking "
                              "needs a labelled dataset with at least 2 classes.")
    return {"name": getattr(ds, "name", _data_label(data)), "classes": [str(c) for c in ds.classes],
            "n_classes": int(len(classes))}


def _load_split(data: Any, split: str, model: Any, image_size: int | None, per_class: int | None,
                seed: int) -> Any:
    from nctransfer.data import LoaderDataset, load_dataset  # deferred on purpose: the [torch] extra

    if isinstance(data, Mapping) and isinstance(data.get(split), LoaderDataset):
        per_class = None  # a DataLoader is used as given (never subsampled)
    return load_dataset(data, split, model=model, image_size=image_size, per_class=per_class, seed=seed)


def _probs_from_classifier(model: Any, X: np.ndarray, device: Any) -> np.ndarray | None:
    """Source-classifier probabilities ``softmax(classifier(penultimate))`` (for LEEP/NCE), or ``None``."""
    import torch  # deferred on purpose: torch is the [torch] extra

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
def extract_candidates(models: list[Model], data: Any, taps: Any, settings: ExtractionSettings, run: Run
                       ) -> tuple[list[Candidate], dict[str, Any]]:
    """Stage 1 of a run: the features of every candidate of every model (:func:`extract_model`), in model order.

    Returns:
        ``(candidates, info)``: ``info[model]`` holds the extraction time, whether both splits came from the
        cache, the number of taps and the split sizes.
    """
    candidates: list[Candidate] = []
    info: dict[str, Any] = {}
    for m in models:
        cands, info[m.label] = extract_model(m, data, taps, settings, run.progress)
        candidates.extend(cands)
    return candidates, info


def extract_model(m: Model, data: Any, taps: Any, settings: ExtractionSettings, progress: bool
                  ) -> tuple[list[Candidate], dict[str, Any]]:
    """Features of one model's candidates (every tap in ``m.taps``) on the training and test splits (cached):
    the unit of work of a local run and of one task of the Ray backend (:mod:`nctransfer.pipeline.ray_backend`).
    Each split is loaded from ``data`` with the model's own preprocessing (``settings.per_class`` /
    ``test_per_class`` images per class, seeds ``settings.seed`` and ``seed + 1``)."""
    s = settings
    train = _load_split(data, "train", m.module, s.image_size, s.per_class, s.seed)
    test = _load_split(data, "test", m.module, s.image_size, s.test_per_class, s.seed + 1)
    t0 = time.perf_counter()
    r_tr, r_te = extract_splits(m.module, train, test, m.taps, s, progress=progress,
                                desc=(f"extract {m.label} (train)", f"extract {m.label} (test)"))
    info = {"seconds": time.perf_counter() - t0, "from_cache": bool(r_tr.from_cache and r_te.from_cache),
            "taps": len(m.taps), "n_train": len(train), "n_test": len(test)}
    return candidates_of(m, r_tr, r_te, taps, device=s.device), info


def extract_splits(module: Any, train: Any, test: Any, taps: Any, settings: ExtractionSettings, *,
                   progress: bool | None = None, desc: tuple[str, str] = ("extract (train)", "extract (test)")
                   ) -> tuple[Any, Any]:
    """The features of ``module`` at ``taps`` on both splits, kept in memory (and cached as ``settings`` say):
    two :class:`~nctransfer.extract.ExtractionResult`; the test split is extracted at the taps the training split
    resolved to."""
    from nctransfer.extract import extract  # deferred on purpose: nctransfer.extract needs the [torch] extra

    opts = settings.extract_options(progress)
    r_tr = extract(module, train, taps, desc=desc[0], **opts)
    r_te = extract(module, test, r_tr.taps, desc=desc[1], **opts)
    return r_tr, r_te


def candidates_of(m: Model, r_tr: Any, r_te: Any, taps: Any, *, device: Any = None, probs: bool = True,
                  digest: bool = True) -> list[Candidate]:
    """One :class:`Candidate` per tap of two extraction results (training and test split) of model ``m``,
    named by :func:`candidate_name`; with the source classifier's probabilities at the penultimate tap
    (``probs``) and the digest of its arrays that keys every cached stage (``digest``)."""
    candidates: list[Candidate] = []
    for i, tap in enumerate(r_tr.taps):
        c = Candidate(name=candidate_name(m.label, tap, taps), model=m, tap=tap, tap_index=i,
                      n_taps=len(r_tr.taps), dim=int(r_tr[tap].dim))
        c.X_train, c.y_train = r_tr[tap].features, r_tr[tap].labels
        c.X_test, c.y_test = r_te[tap].features, r_te[tap].labels
        c.stats = r_tr[tap].stats
        if probs and tap == PENULTIMATE:
            try:
                c.probs = _probs_from_classifier(m.module, c.X_train, device)
            except Exception as exc:  # noqa: BLE001 - a head that does not take pooled features: no probs
                warnings.warn(f"{m.label}: no source probabilities ({type(exc).__name__}: {exc}); LEEP/NCE "
                              "skipped for it.", RuntimeWarning, stacklevel=2)
        if digest:
            c.digest = array_digest(c.X_train, c.y_train, c.X_test, c.y_test, c.probs)
        candidates.append(c)
    return candidates


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


__all__ = ["Candidate", "Model", "Run", "PENULTIMATE", "RANDOM_PREFIX", "candidate_name", "candidates_of",
           "extract_candidates", "extract_model", "extract_splits", "one_candidate_per_model", "resolve_taps"]
