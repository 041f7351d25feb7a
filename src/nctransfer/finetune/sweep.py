"""Data-scarcity sweep: the four fine-tuning methods over growing training subsets (docs/methods.md#finetuning; Li et al., TMLR 2024
figure 11 and appendix B.1).

For each size ``n`` in ``sizes`` (default ``[10, 24, 59, 142, 344, 835, 2022, 4898]``, the paper's log-spaced
list) and each method, fine-tune a fresh copy of the pre-trained model on a class-balanced, seeded subset of the
training data and evaluate on the same test set.

- ``size_mode="total"`` (default, as in the paper): ``n`` training images in all, split as evenly as possible over
  the ``K`` classes (``n // K`` each, the remainder to a seeded choice of classes; with ``n < K`` only ``n``
  classes appear). ``size_mode="per_class"``: ``n`` images of every class.
- Subsets are nested: each class's images are taken as prefixes of one seeded permutation, so the subset of size
  ``n`` contains the subset of every smaller size.
- A subset smaller than ``batch_size`` trains with ``batch_size = n`` (recorded in the table).
- ``min_steps``: with few epochs a tiny subset gets only a handful of optimiser steps (10 images, batch 10,
  5 epochs: 5 steps), which measures under-training rather than data scarcity; ``min_steps`` raises the number of
  epochs of such runs so that each makes at least that many steps (recorded in the ``epochs`` column).
- Every run writes ``runs/n<size>_<method>/result.json``; with ``resume=True`` finished runs are read back and an
  interrupted run continues from its checkpoint.

Outputs: ``sweep.csv`` and ``sweep.md`` (one row per size and method) and ``sweep.png`` (test accuracy and
penultimate NC1 against the training-set size).
"""

from __future__ import annotations

import copy
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
from torch.utils.data import Subset
from tqdm.auto import tqdm

from nctransfer.data.splits import balanced_indices
from nctransfer.exceptions import InputValueError
from nctransfer.finetune._data import dataset_targets
from nctransfer.finetune.api import RESULT_NAME, FinetuneResult, _load_data, finetune
from nctransfer.finetune.config import SHORT_NAMES, FinetuneConfig, canonical_method
from nctransfer.models import load_model
from nctransfer.utils.io import atomic_path, write_text_atomic
from nctransfer.utils.ray_tasks import require_ray, run_tasks

DEFAULT_SIZES: tuple[int, ...] = (10, 24, 59, 142, 344, 835, 2022, 4898)
SIZE_MODES = ("total", "per_class")
TABLE_COLUMNS = ["size", "n_train", "method", "unit", "skip", "test_accuracy", "penultimate_nc1", "trainable_params",
                 "trainable_percent", "seconds_per_epoch", "peak_memory_mb", "batch_size", "epochs"]


def nested_subset_indices(labels: np.ndarray, size: int, size_mode: str = "total", seed: int = 0) -> np.ndarray:
    """Indices of a class-balanced subset of ``size`` images (module docstring); sorted.

    Uses :func:`nctransfer.data.splits.balanced_indices` (per-class permutations seeded by ``(seed, class)``, the
    classes taking the remainder drawn once per seed), so subsets of growing size are nested.

    Raises:
        InputValueError: more images requested than available (in total, or for some class).
    """
    labels = np.asarray(labels)
    if size_mode == "per_class":
        return balanced_indices(labels, per_class=size, seed=seed, strict=True)
    if size_mode != "total":
        raise InputValueError(f"size_mode must be one of {list(SIZE_MODES)}; got {size_mode!r}.")
    if size > len(labels):
        raise InputValueError(f"sizes: {size} training images requested but the training set has {len(labels)}.")
    return balanced_indices(labels, n=size, seed=seed, strict=True)


@dataclass
class SweepResult:
    """``table`` (pandas DataFrame, one row per size x method) and the written files."""

    table: Any
    csv_path: Path | None
    markdown_path: Path | None
    plot_path: Path | None
    results: dict[tuple[int, str], Any]


def _markdown(df: Any) -> str:
    cols = list(df.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for _, r in df.iterrows():
        cells = []
        for c in cols:
            v = r[c]
            if isinstance(v, float):
                cells.append("nan" if v != v else (f"{v:.4f}" if abs(v) < 100 else f"{v:.1f}"))
            else:
                cells.append("" if v is None else str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_sweep(table: Any, path: str | os.PathLike, title: str = "") -> Path:
    """Test accuracy and penultimate NC1 against training-set size, one line per method (Agg backend)."""
    import matplotlib  # deferred: matplotlib is the optional [report] extra

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for method, g in table.groupby("method", sort=False):
        g = g.sort_values("size")
        label = SHORT_NAMES.get(method, method)
        axes[0].plot(g["size"], 100 * g["test_accuracy"], marker="o", label=label)
        nc1 = g["penultimate_nc1"].where(g["penultimate_nc1"] > 0)  # NC1 = 0 (one image per class): off the log axis
        axes[1].plot(g["size"], nc1, marker="o", label=label)
    for ax, ylab in zip(axes, ("test accuracy (%)", "penultimate NC1 (train)")):
        ax.set_xscale("log")
        ax.set_xlabel("training images")
        ax.set_ylabel(ylab)
        ax.grid(alpha=0.3)
    axes[1].set_yscale("log")
    axes[0].legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lstrip(".") or "png", dpi=120)
    plt.close(fig)
    return path


def _sweep_run(model: Any, train_ds: Any, idx: np.ndarray, test_ds: Any, cfg: FinetuneConfig, run_dir: Any,
               resume: bool, k: int, pretrained: bool) -> Any:
    """One run of the sweep (in this process or in a Ray worker): a fresh model on the subset ``idx``."""
    net = model if isinstance(model, (str, os.PathLike)) else copy.deepcopy(model)
    res = finetune(net, Subset(train_ds, idx.tolist()), test_ds, cfg, out_dir=run_dir, resume=resume,
                   num_classes=k, pretrained=pretrained)
    res.model = None
    return res


def data_scarcity_sweep(
    model: Any,
    train_data: Any,
    test_data: Any,
    *,
    sizes: Sequence[int] = DEFAULT_SIZES,
    size_mode: str = "total",
    methods: Sequence[str] = ("linear_probe", "layer_ft", "scl_ft", "full_ft"),
    unit: Any = None,
    skip: str = "pad",
    config: FinetuneConfig | dict | None = None,
    out_dir: str | os.PathLike | None = None,
    resume: bool = True,
    test_per_class: int | None = None,
    pretrained: bool = True,
    subset_seed: int | None = None,
    min_steps: int | None = None,
    final_eval_only: bool = True,
    backend: str = "local",
    ray_address: str | None = None,
    max_retries: int = 2,
    **options: Any,
) -> SweepResult:
    """Run the methods over training subsets of the given sizes (module docstring).

    Args:
        model: a model name (loaded afresh for every run) or an ``nn.Module`` (deep-copied for every run).
        train_data, test_data: datasets or dataset specs (as :func:`nctransfer.finetune.finetune`).
        sizes: training-set sizes (Li et al., TMLR 2024: ``[10, 24, 59, 142, 344, 835, 2022, 4898]``).
        size_mode: ``"total"`` images or ``"per_class"``.
        methods: method names or aliases.
        unit: unit of ``layer_ft``/``scl_ft`` (name, index or ``"auto"``); required when they are run.
        skip: SCL skip branch (``"pad"``/``"conv"``).
        config, **options: base :class:`FinetuneConfig` and field overrides (epochs, lr, batch_size, ...).
        out_dir: directory of the per-run outputs, table and plot.
        resume: reuse finished runs and checkpoints in ``out_dir``.
        test_per_class: balanced subsample of the test set (images per class), the same for every run.
        subset_seed: seed of the subsets (default: the config's seed).
        min_steps: train small subsets for more epochs so that every run makes at least this many optimiser steps
            (``None``: the same number of epochs for every size, as in the paper, where 200 epochs gave even the
            smallest subset 200 steps).
        final_eval_only: no per-epoch evaluation (``eval_every=0``): only the final one after the last epoch, on
            the whole test set (the table needs only the final numbers).
        backend: ``"local"`` (one run after the other) or ``"ray"``: every run that is not already finished is a
            Ray task (one GPU per task when the cluster has GPUs; ``pip install 'nctransfer[ray]'``), with the same
            results; a failed run is retried up to ``max_retries`` times, with a warning per retry.
        ray_address: Ray cluster address (``None``: the running instance or a new local one).

    Returns:
        :class:`SweepResult`.
    """
    if size_mode not in SIZE_MODES:
        raise InputValueError(f"size_mode must be one of {list(SIZE_MODES)}; got {size_mode!r}.")
    sizes = [int(s) for s in sizes]
    if not sizes or any(s < 1 for s in sizes):
        raise InputValueError(f"sizes must be a non-empty list of positive integers; got {sizes!r}.")
    methods = [canonical_method(m, "methods") for m in methods]
    if any(m in ("layer_ft", "scl_ft") for m in methods) and unit is None:
        raise InputValueError("unit is required for layer_ft/scl_ft in the sweep (a unit name, an index or 'auto'); "
                              "Li et al., TMLR 2024, figure 11 uses ResNet18 block 5 (index 4, 'layer3.0').")
    if isinstance(config, dict):
        base = FinetuneConfig.from_dict({**config, "method": "linear_probe", "unit": None, "skip": "pad"})
    elif isinstance(config, FinetuneConfig):
        base = config.replace(method="linear_probe", unit=None, skip="pad")
    else:
        base = FinetuneConfig(method="linear_probe")
    if options:
        base = base.replace(**options)
    seed = base.seed if subset_seed is None else int(subset_seed)

    meta_model = model
    if isinstance(model, (str, os.PathLike)) and isinstance(train_data, (str, os.PathLike)):
        meta_model = load_model(str(model), pretrained=False)
    train_ds = _load_data(train_data, "train", meta_model, base.image_size, None, seed, "train_data")
    test_ds = _load_data(test_data, "test", meta_model, base.image_size, test_per_class, seed + 1, "test_data")
    labels = dataset_targets(train_ds, "train_data")
    k = int(max(labels.max(), dataset_targets(test_ds, "test_data").max())) + 1
    subsets = {n: nested_subset_indices(labels, n, size_mode, seed) for n in sizes}
    out = Path(out_dir) if out_dir is not None else None
    if backend not in ("local", "ray"):
        raise InputValueError(f"backend must be 'local' or 'ray'; got {backend!r}.")
    if backend == "ray":
        require_ray()
    rows, results = [], {}
    jobs = [(n, m) for n in sizes for m in methods]
    plan: list[tuple[int, str, Any, int, Any, Any]] = []
    todo: list[tuple[Any, ...]] = []
    for n, m in jobs:
        idx = subsets[n]
        if len(np.unique(labels[idx])) < 2:
            warnings.warn(f"sweep: size {n} has fewer than 2 classes; skipped.", stacklevel=2)
            continue
        bs = min(base.batch_size, len(idx))
        steps = len(idx) // bs if len(idx) % bs == 1 else -(-len(idx) // bs)
        epochs = base.epochs if min_steps is None else max(base.epochs, -(-int(min_steps) // steps))
        cfg = base.replace(method=m, unit=unit if m in ("layer_ft", "scl_ft") else None,
                           skip=skip if m == "scl_ft" else "pad", batch_size=bs, epochs=epochs,
                           eval_every=0 if final_eval_only else min(base.eval_every, epochs))
        run_dir = out / "runs" / f"n{n}_{SHORT_NAMES[m]}" if out is not None else None
        res = None
        if resume and run_dir is not None and (run_dir / RESULT_NAME).is_file():
            prev = FinetuneResult.load(run_dir / RESULT_NAME)
            if prev.config == cfg.to_dict() and prev.epochs_completed == cfg.epochs:
                res = prev
        if res is None:
            todo.append((len(plan), (model, train_ds, idx, test_ds, cfg, run_dir, resume, k, pretrained)))
        plan.append((n, m, idx, bs, cfg, res))
    if backend == "ray" and todo:
        names = [f"n{plan[j][0]}_{SHORT_NAMES[plan[j][1]]}" for j, _ in todo]
        done, _ = run_tasks(_sweep_run, [a for _, a in todo], names, address=ray_address, max_retries=max_retries,
                            what="sweep run", on_retry=lambda text: warnings.warn(text, RuntimeWarning, stacklevel=3))
        for (j, _), res in zip(todo, done):
            plan[j] = (*plan[j][:5], res)
    else:
        for j, a in tqdm(todo, desc="sweep", disable=not base.progress):
            plan[j] = (*plan[j][:5], _sweep_run(*a))
    for n, m, idx, bs, cfg, res in plan:
        results[(n, m)] = res
        rows.append({"size": n, "n_train": int(len(idx)), "method": m, "unit": res.unit or "-", "skip": res.skip or "-",
                     "test_accuracy": res.test_accuracy, "penultimate_nc1": res.penultimate_nc1,
                     "trainable_params": res.trainable_params, "trainable_percent": res.trainable_percent,
                     "seconds_per_epoch": res.seconds_per_epoch, "peak_memory_mb": res.peak_memory_mb,
                     "batch_size": bs, "epochs": cfg.epochs})
    table = pd.DataFrame(rows, columns=TABLE_COLUMNS)
    csv_path = md_path = plot_path = None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        csv_path = write_text_atomic(out / "sweep.csv", table.to_csv(index=False))
        md_path = write_text_atomic(out / "sweep.md", _markdown(table))
        if len(table):
            name = model if isinstance(model, str) else type(model).__name__
            plot_path = plot_sweep(table, out / "sweep.png", title=f"{name}: data-scarcity sweep ({size_mode})")
    return SweepResult(table=table, csv_path=csv_path, markdown_path=md_path, plot_path=plot_path, results=results)
