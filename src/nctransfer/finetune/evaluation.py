"""Evaluation passes of a fine-tuning run: accuracy, loss and NC1 at the extractor's speed, and the evaluation policy.

Policy (:class:`EvalPlan`):

- *per-epoch* evaluations (every ``eval_every`` epochs; ``eval_every=0``: none) run on fixed, seeded,
  class-balanced subsets of ``eval_per_class`` images per class of the test data (accuracy, loss, NC1) and of the
  training data (penultimate NC1), the same images every epoch; ``eval_per_class=None`` uses the whole sets;
- the *final* evaluation runs once, after the last epoch, on the whole requested test split and the whole
  training set. Every history record says on which samples its numbers were measured (``eval_samples``).

Speed: a pass iterates the data the way :func:`nctransfer.extract.extract` does - whole batches transformed as
tensor operations (``get_batch`` of the :mod:`nctransfer.data` datasets), ``torch.inference_mode``, and the
penultimate features fed to their :class:`~nctransfer.stats.FeatureStats` in blocks by the extractor's
background feeder - so accuracy, loss and the test-set NC1 come from one pass at extraction throughput. The batches
keep the default memory layout: channels-last (:func:`nctransfer.finetune._data.inference_layout`, about 30% faster
on the CPU) changes float32 rounding at the 1e-6 level, and the recorded NC1 must equal
:func:`nctransfer.metrics.nc1` of the features a user extracts from the fine-tuned model
(``benchmarks/bench_finetune_time.py`` measures the ratio).

NC1 is the within-class variability relative to the between-class spread, ``NC1 = tr(Sigma_W Sigma_B^+) / K``
(Papyan, Han and Donoho, "Prevalence of neural collapse during the terminal phase of deep learning training",
PNAS 2020), computed by :func:`nctransfer.metrics.nc1` from the streamed statistics.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import Subset

from nctransfer.data.datasets import ArrayImageDataset
from nctransfer.data.splits import balanced_indices
from nctransfer.data.transforms import EvalTransform, ModelTransform
from nctransfer.exceptions import UndefinedMetricWarning
from nctransfer.extract.core import _StatsFeeder
from nctransfer.features import TapRecorder
from nctransfer.finetune._data import dataset_targets, iterate_batches
from nctransfer.finetune.selection import classifier_path
from nctransfer.metrics.collapse import nc1
from nctransfer.stats import FeatureStats

#: a per-epoch subset keeps its transformed batches (for the next epochs) up to this many bytes
CACHE_BATCHES_BYTES = 256 * 2**20

#: seed offsets of the per-epoch subsets (the run's seed plus these), so that they differ from training subsets
TRAIN_SUBSET_SEED, TEST_SUBSET_SEED = 101, 202


#: an evaluation keeps its penultimate features (float32) for NC1 up to this many bytes (past it: from the stats)
KEEP_FEATURES_BYTES = 64 * 2**20


def compute_nc1(stats: Any, features: np.ndarray | None = None, labels: np.ndarray | None = None) -> float:
    """NC1 of streamed statistics, or of the samples ``features [N, d]`` / ``labels [N]`` when given (the same
    value to rounding, about 1e-14 relative, without the ``d x d`` second-moment matrix: ``O(N d r)`` instead of
    ``O(N d^2)``, :func:`nctransfer.metrics.nc1`); NaN (with an :class:`~nctransfer.exceptions.UndefinedMetricWarning`)
    when it is undefined (e.g. one class in a tiny subset) - a degenerate subset must not stop a training run."""
    try:
        return float(nc1(features, labels) if features is not None else nc1(stats))
    except Exception as exc:  # noqa: BLE001
        warnings.warn(f"penultimate NC1 undefined: {exc}", UndefinedMetricWarning, stacklevel=2)
        return float("nan")


class _Capture:
    """Forward pre-hook on the classifier: its input (the penultimate feature ``[B, d]``) goes to the feeder."""

    def __init__(self, feeder: Any, keep_bytes: int = 0) -> None:
        self.feeder = feeder
        self.labels: np.ndarray | None = None
        self.keep_bytes = keep_bytes
        self.kept: list[tuple[np.ndarray, np.ndarray]] | None = [] if keep_bytes > 0 else None
        self.nbytes = 0

    def __call__(self, module: nn.Module, args: tuple) -> None:
        h = args[0].detach()
        h = h.float().reshape(h.shape[0], -1).contiguous()
        h_np = h.cpu().numpy() if h.device.type != "cpu" else h.numpy()
        self.feeder.add("penultimate", h_np, self.labels)
        if self.kept is not None:
            self.nbytes += h_np.nbytes
            if self.nbytes > self.keep_bytes:
                self.kept = None  # too many: NC1 from the streamed statistics
            else:
                self.kept.append((h_np, self.labels))

    def features(self) -> tuple[np.ndarray | None, np.ndarray | None]:
        """The kept ``(features [N, d] float32, labels [N])``, or ``(None, None)``."""
        if not self.kept:
            return None, None
        return np.concatenate([f for f, _ in self.kept]), np.concatenate([y for _, y in self.kept])


@torch.no_grad()
def evaluate(model: nn.Module, loader: Any, device: torch.device, *, amp: bool = False,
             penultimate: bool = False, taps: Sequence[str] | None = None) -> dict[str, Any]:
    """Accuracy and mean cross-entropy of ``model`` on the batches of ``loader`` in eval mode, in one pass.

    Args:
        loader: an iterable of ``(x [B, C, H, W], y [B])`` batches (:func:`batches` gives the extractor's path).
        amp: float16 autocast (CUDA only).
        penultimate: also accumulate :class:`~nctransfer.stats.FeatureStats` of the classifier input (streamed
            in blocks of 512 rows by the extractor's background feeder).
        taps: also accumulate FeatureStats of these taps (:class:`nctransfer.features.TapRecorder`).

    Returns:
        ``{"accuracy", "loss", "n", "stats" (or None), "tap_stats" (dict), "features", "labels"}``; with
        ``penultimate``, ``features [N, d]`` (float32) and ``labels [N]`` are the penultimate features themselves
        when they take at most :data:`KEEP_FEATURES_BYTES` (NC1 from them is cheaper than from the statistics,
        :func:`compute_nc1`), else ``None``.
    """
    model.eval()
    correct, loss_sum, n = 0, 0.0, 0
    stats = {"penultimate": FeatureStats()} if penultimate else {}
    tap_stats: dict[str, Any] = {t: FeatureStats() for t in taps} if taps else {}
    feeder = _StatsFeeder({**stats, **tap_stats}, flush_rows=512, background=True)
    cap = _Capture(feeder, KEEP_FEATURES_BYTES) if penultimate else None
    handle = model.get_submodule(classifier_path(model)).register_forward_pre_hook(cap) if cap else None
    recorder = None
    if taps:
        recorder = TapRecorder(model, list(taps))
    try:
        with (recorder if recorder is not None else _Null()), torch.inference_mode():
            for x, y in loader:
                y_np = np.asarray(y.cpu().numpy() if torch.is_tensor(y) else y, dtype=np.int64)
                x = x.to(device, non_blocking=True)
                yt = torch.as_tensor(y_np).to(device, non_blocking=True)
                if cap is not None:
                    cap.labels = y_np
                with torch.autocast(device.type, dtype=torch.float16, enabled=amp and device.type == "cuda"):
                    logits = model(x)
                loss_sum += float(nn.functional.cross_entropy(logits.float(), yt, reduction="sum"))
                correct += int((logits.argmax(1) == yt).sum())
                n += int(yt.numel())
                if recorder is not None:
                    feats = recorder.collect()
                    for t in taps:  # type: ignore[union-attr]
                        f = feats[t].float().contiguous()
                        feeder.add(t, f.cpu().numpy() if f.device.type != "cpu" else f.numpy(), y_np)
        feeder.flush_all()
    finally:
        feeder.close()
        if handle is not None:
            handle.remove()
    feats, labels = cap.features() if cap is not None else (None, None)
    return {"accuracy": correct / max(n, 1), "loss": loss_sum / max(n, 1), "n": n,
            "stats": stats.get("penultimate"), "tap_stats": tap_stats, "features": feats, "labels": labels}


class _Null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *a: Any) -> None:
        return None


def batches(data: Any, batch_size: int, num_workers: int = 0, pin_memory: bool = False) -> Any:
    """Sequential batches of ``data``, iterable many times: whole batches through ``get_batch`` (one tensor
    transform per batch, as in :func:`nctransfer.extract.extract`) when the dataset has it, else a DataLoader."""
    return _Reiterable(data, batch_size, num_workers, pin_memory)


class _Reiterable:
    def __init__(self, data: Any, batch_size: int, num_workers: int, pin_memory: bool) -> None:
        self.data, self.batch_size, self.num_workers, self.pin_memory = data, batch_size, num_workers, pin_memory

    def __len__(self) -> int:
        return len(self.data)

    def __iter__(self) -> Any:
        return iterate_batches(self.data, np.arange(len(self.data)), self.batch_size, num_workers=self.num_workers,
                               pin_memory=self.pin_memory)


# ---------------------------------------------------------------------------------------------- the policy
@dataclass
class EvalSet:
    """The samples of one evaluation: a dataset and where they come from.

    Attributes:
        data: the dataset (the whole set, or a ``Subset`` of it).
        split: ``"train"`` or ``"test"``.
        subset: ``"full"`` or ``"per_class=<n>, seed=<s>"``.
        n: number of images.
    """

    data: Any
    split: str
    subset: str
    n: int
    reuse: bool = False
    _kept: tuple[int, list[Any]] | None = field(default=None, repr=False, compare=False)

    def describe(self) -> dict[str, Any]:
        """``{"split", "subset", "n"}`` (what a history record stores)."""
        return {"split": self.split, "subset": self.subset, "n": int(self.n)}

    def batches(self, batch_size: int, num_workers: int = 0, pin_memory: bool = False) -> Any:
        """The batches of :attr:`data` (:func:`batches`). A set marked ``reuse`` (a per-epoch subset) of an
        in-memory :class:`~nctransfer.data.ArrayImageDataset` with a deterministic transform (none, or the
        model's evaluation transform) keeps its transformed batches, up to :data:`CACHE_BATCHES_BYTES`, after
        the first pass, so later epochs skip the image transform (about 1 ms per image with the bundled models'
        PIL preprocessing); other datasets (their transform may be random, their reads observable) are read
        every time."""
        if self._kept is not None and self._kept[0] == batch_size:
            return iter(self._kept[1])
        loader = batches(self.data, batch_size, num_workers, pin_memory)
        return self._keeping(loader, batch_size) if self.reuse and _deterministic(self.data) else loader

    def _keeping(self, loader: Any, batch_size: int) -> Any:
        kept: list[Any] | None = []
        size = 0
        for x, y in loader:
            if kept is not None:
                size += x.element_size() * x.numel()
                if size <= CACHE_BATCHES_BYTES:
                    kept.append((x, y))
                else:
                    kept = None
            yield x, y
        if kept is not None:
            self._kept = (batch_size, kept)

    def release(self) -> None:
        """Forget the kept batches."""
        self._kept = None


def _deterministic(data: Any) -> bool:
    """Whether ``data`` (or the dataset of a ``Subset``) is an in-memory ArrayImageDataset whose transform is
    none or one of the deterministic evaluation transforms of :mod:`nctransfer.data.transforms`."""
    base = data.dataset if isinstance(data, Subset) else data
    return isinstance(base, ArrayImageDataset) and (base.transform is None
                                                    or isinstance(base.transform, (EvalTransform, ModelTransform)))


def _subset(data: Any, labels: np.ndarray, per_class: int | None, seed: int, split: str) -> EvalSet:
    full = EvalSet(data, split, "full", len(labels))
    if per_class is None:
        return full
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a class smaller than per_class keeps all its images
        idx = balanced_indices(labels, per_class=per_class, seed=seed)
    if len(idx) >= len(labels):
        return full
    return EvalSet(Subset(data, idx.tolist()), split, f"per_class={per_class}, seed={seed}", len(idx))


@dataclass
class EvalPlan:
    """Which samples each evaluation uses (module docstring).

    Attributes:
        epoch_train, epoch_test: the per-epoch subsets; final_train, final_test: the whole sets.
        eval_every: per-epoch evaluation period (0: none).
    """

    epoch_train: EvalSet
    epoch_test: EvalSet
    final_train: EvalSet
    final_test: EvalSet
    eval_every: int

    @classmethod
    def build(cls, train_data: Any, test_data: Any, *, eval_every: int, per_class: int | None,
              seed: int) -> "EvalPlan":
        """The plan of a run (subsets drawn with seeds ``seed + 101`` (train) and ``seed + 202`` (test))."""
        y_tr = dataset_targets(train_data, "train_data")
        y_te = dataset_targets(test_data, "test_data")
        epoch_train = _subset(train_data, y_tr, per_class, seed + TRAIN_SUBSET_SEED, "train")
        epoch_test = _subset(test_data, y_te, per_class, seed + TEST_SUBSET_SEED, "test")
        epoch_train.reuse = epoch_test.reuse = True  # evaluated every eval_every epochs: keep their batches
        return cls(epoch_train=epoch_train, epoch_test=epoch_test,
                   final_train=EvalSet(train_data, "train", "full", len(y_tr)),
                   final_test=EvalSet(test_data, "test", "full", len(y_te)), eval_every=int(eval_every))

    def per_epoch_due(self, epoch: int, epochs: int) -> bool:
        """Whether epoch ``epoch`` (1-based) gets a per-epoch evaluation (the last one gets the final one)."""
        return self.eval_every > 0 and epoch < epochs and epoch % self.eval_every == 0

    def describe(self) -> dict[str, Any]:
        """JSON-ready summary (stored in ``result.json`` under ``evaluation``)."""
        return {"eval_every": self.eval_every,
                "per_epoch": {"train": self.epoch_train.describe(), "test": self.epoch_test.describe()},
                "final": {"train": self.final_train.describe(), "test": self.final_test.describe()}}
