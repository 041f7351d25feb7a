"""One verb per fine-tuning method: :func:`linear_probe`, :func:`layer_ft`, :func:`scl_ft`, :func:`full_ft`, and the
generic :func:`finetune` (docs/methods.md#finetuning; Li et al., TMLR 2024, section 3.3 and appendix B).

Example (real ImageNet weights, Fashion-MNIST, a few minutes on CPU):

    >>> from nctransfer.finetune import scl_ft
    >>> res = scl_ft("efficientnet_lite0", "fashion-mnist", "fashion-mnist", unit="auto", epochs=3,
    ...              per_class=100, test_per_class=100, image_size=64, lr=0.05, out_dir="runs/scl")  # doctest: +SKIP
    >>> res.test_accuracy, res.trainable_percent, res.auto["chosen"]                     # doctest: +SKIP
"""

from __future__ import annotations

import copy
import json
import os
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn
from torch.utils.data import Subset

from nctransfer.data import balanced_indices, load_dataset, subsample
from nctransfer.data.inputs import is_dataloader, is_hf_dataset, is_stream
from nctransfer.exceptions import InputValueError
from nctransfer.features import tap_names
from nctransfer.finetune._data import check_training_data, dataset_targets, sample_hw
from nctransfer.finetune.auto import choose_unit
from nctransfer.finetune.config import FinetuneConfig
from nctransfer.finetune.selection import (
    classifier_path,
    count_parameters,
    resolve_unit,
    trainable_parameter_names,
)
from nctransfer.finetune.skip import attach_skip
from nctransfer.finetune.trainer import Trainer
from nctransfer.models import load_model
from nctransfer.models.heads import reset_classifier
from nctransfer.utils.io import write_json_atomic
from nctransfer.utils.repro import environment_stamp, seed_everything

RESULT_NAME = "result.json"
AUTO_NAME = "auto_unit.json"


@dataclass
class FinetuneResult:
    """Outcome of one fine-tuning run; ``to_dict()`` is what ``result.json`` holds.

    Attributes:
        method: canonical method name.
        unit: fine-tuned unit name (``None`` for linear probe / full FT).
        test_accuracy: accuracy on the whole (requested) test set after the last epoch, computed once (the
            final evaluation; per-epoch numbers in ``history`` may come from a subset, see ``evaluation``).
        penultimate_nc1: NC1 (docs/methods.md#nc1) of the classifier input on the whole training set after the last
            epoch.
        trainable_params, total_params: parameter counts (elements); ``total`` includes classifier and skip branch.
        trainable_percent: ``100 * trainable / total``.
        trainable_names: the explicit list of trained parameter names.
        seconds_per_epoch: mean wall time of the training pass of an epoch (evaluation excluded).
        peak_memory_mb: peak memory added by a training pass (largest over the epochs; evaluation excluded;
            :mod:`nctransfer.finetune.memory`), ``memory_method`` says how it was measured.
        history: one dict per epoch (``train_loss``, ``lr``, ``seconds``; on evaluated epochs ``test_accuracy``,
            ``penultimate_nc1``, ``test_penultimate_nc1``... and ``eval_samples``: on which samples they were
            measured, ``{"train"|"test": {"split", "subset", "n"}}``).
        evaluation: the evaluation policy and the final evaluation (``eval_every``, the per-epoch and final
            sample sets, ``final``: the final numbers and the epoch they belong to).
        timing: wall seconds of the run by phase: ``train`` (training passes), ``eval`` (per-epoch and final
            evaluations), ``probe`` (``unit="auto"``), ``setup`` (loading, everything else) and ``total``.
        config: the resolved :class:`FinetuneConfig` as a dict.
        auto: the report of ``unit="auto"`` (candidates tried, their NC1 and sizes, the choice and why) or ``None``.
        model: the trained model (not serialised).
    """

    method: str
    unit: str | None
    skip: str | None
    test_accuracy: float
    penultimate_nc1: float
    trainable_params: int
    total_params: int
    trainable_percent: float
    trainable_names: list[str]
    seconds_per_epoch: float
    peak_memory_mb: float
    memory_method: str
    epochs_completed: int
    n_train: int
    n_test: int
    num_classes: int
    history: list[dict[str, Any]]
    config: dict[str, Any]
    environment: dict[str, Any]
    auto: dict[str, Any] | None = None
    model_name: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    evaluation: dict[str, Any] = field(default_factory=dict)
    timing: dict[str, Any] = field(default_factory=dict)
    model: Any = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (everything but the model)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "model"}

    def save(self, path: str | os.PathLike) -> Path:
        """Write :meth:`to_dict` as JSON atomically."""
        return write_json_atomic(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike) -> "FinetuneResult":
        """Read a ``result.json`` (the model is not restored)."""
        with open(path, encoding="utf-8") as fh:
            return cls(**json.load(fh))

    def summary(self) -> str:
        """One line: method, unit, accuracy, NC1, trainable share, time, memory."""
        unit = f"[{self.unit}{', ' + self.skip if self.skip else ''}]" if self.unit else ""
        return (f"{self.method}{unit}: test acc {100 * self.test_accuracy:.2f}%  penultimate NC1 "
                f"{self.penultimate_nc1:.4g}  trainable {self.trainable_params:,d}/{self.total_params:,d} "
                f"({self.trainable_percent:.2f}%)  {self.seconds_per_epoch:.2f} s/epoch  "
                f"peak mem {self.peak_memory_mb:.0f} MB")


# ---------------------------------------------------------------------------------------------- helpers
def _load_data(spec: Any, split: str, model: Any, image_size: int | None, per_class: int | None, seed: int,
               name: str) -> Any:
    """A dataset object (optionally subsampled to ``per_class`` images per class), or a dataset spec loaded with
    :func:`nctransfer.data.load_dataset` and the model's evaluation transform at ``image_size``."""
    if is_dataloader(spec) or is_stream(spec):
        raise InputValueError(f"{name}: fine-tuning shuffles and batches the data itself, so it needs a map-style "
                              f"dataset; got a {type(spec).__name__}. Pass loader.dataset (or the dataset itself).")
    if is_hf_dataset(spec) or (type(spec).__name__ == "DatasetDict"):  # HF: columns found, model transform applied
        return load_dataset(spec, split=None if is_hf_dataset(spec) else split, model=model, image_size=image_size,
                            per_class=per_class, seed=seed)
    if isinstance(spec, (str, os.PathLike)) or (isinstance(spec, (tuple, list)) and len(spec) == 2):
        if isinstance(spec, os.PathLike):
            spec = str(spec)
        return load_dataset(spec, split=split, model=model, image_size=image_size, per_class=per_class, seed=seed)
    if per_class is None:
        return spec
    if hasattr(spec, "subset") and hasattr(spec, "targets"):
        return subsample(spec, per_class=per_class, seed=seed)
    idx = balanced_indices(dataset_targets(spec, name), per_class=per_class, seed=seed)
    return Subset(spec, idx.tolist())


def _is_spec(data: Any) -> bool:
    return isinstance(data, (str, os.PathLike)) or (isinstance(data, (tuple, list)) and len(data) == 2)


def _describe_data(data: Any) -> Any:
    if isinstance(data, (str, os.PathLike)):
        return str(data)
    if isinstance(data, (tuple, list)):
        return "arrays"
    describe = getattr(data, "describe", None)
    if callable(describe):
        try:
            return describe()
        except Exception:  # noqa: BLE001 - description only
            pass
    return type(data).__name__


def _model_out_width(model: nn.Module) -> int:
    head = model.get_submodule(classifier_path(model))
    for attr in ("out_features", "out_channels"):
        if hasattr(head, attr):
            return int(getattr(head, attr))
    last = [m for m in head.modules() if isinstance(m, nn.Linear)]
    return int(last[-1].out_features) if last else -1


def prepare_model(model: Any, num_classes: int, config: FinetuneConfig, pretrained: bool = True,
                  force_reset: bool = False) -> nn.Module:
    """Give ``model`` a freshly initialised ``num_classes`` classifier (seeded with ``config.seed``).

    ``model`` may be a name for :func:`nctransfer.models.load_model` (the head is always replaced) or a module,
    whose head is replaced when ``config.reset_head`` asks for it (``"auto"``: when its output width differs from
    ``num_classes``) or ``force_reset``.
    """
    if isinstance(model, (str, os.PathLike)):
        model, force_reset = load_model(str(model), pretrained=pretrained), True
    if not isinstance(model, nn.Module):
        raise InputValueError(f"model must be a torch.nn.Module or a model name; got {type(model).__name__}.")
    reset = True if force_reset else config.reset_head
    if reset == "auto":
        reset = _model_out_width(model) != num_classes
    if reset:
        torch.manual_seed(config.seed)
        path = reset_classifier(model, num_classes, classifier_path(model))
        info = getattr(model, "nctransfer_info", None)
        if info is not None:
            model.nctransfer_info = info.replace(classifier=path, num_classes=num_classes)
    elif _model_out_width(model) < num_classes:
        raise InputValueError(f"reset_head=False but the classifier has {_model_out_width(model)} outputs for "
                              f"{num_classes} classes.")
    return model


def _resolve_taps(model: nn.Module, taps: Any) -> list[str]:
    """``nc1_taps``: none, ``"all"`` or exact tap names (the penultimate feature is always recorded)."""
    return tap_names(model, taps, exclude_penultimate=True, exact=True, what="nc1_taps") if taps else []


# ---------------------------------------------------------------------------------------------- entry points
def finetune(
    model: Any,
    train_data: Any,
    test_data: Any,
    config: FinetuneConfig | dict | None = None,
    *,
    out_dir: str | os.PathLike | None = None,
    resume: bool = False,
    per_class: int | None = None,
    test_per_class: int | None = None,
    num_classes: int | None = None,
    pretrained: bool = True,
    on_epoch_end: Callable[[dict[str, Any]], Any] | None = None,
    **options: Any,
) -> FinetuneResult:
    """Fine-tune ``model`` on ``train_data`` with ``config.method`` and evaluate on ``test_data``.

    Args:
        model: a ``torch.nn.Module`` (modified in place: trained, and for SCL given the skip branch; pass
            ``copy.deepcopy(model)`` to keep the original) or a model name for :func:`nctransfer.models.load_model`.
        train_data, test_data: map-style datasets of ``(image tensor [C, H, W], int label)``, or dataset specs for
            :func:`nctransfer.data.load_dataset` (``"fashion-mnist"``, ``"digits"``, a folder...; the training
            and test splits are taken; images get the model's evaluation transform at ``config.image_size``).
        config: a :class:`FinetuneConfig` (or dict); ``**options`` override its fields.
        out_dir: where ``result.json``, ``config.json`` and the per-epoch ``checkpoint.pt`` go (``None``: nowhere).
        resume: continue from ``out_dir/checkpoint.pt`` (and reuse ``auto_unit.json``) when present.
        per_class, test_per_class: balanced, seeded subsampling of the training / test data (images per class).
            The final test accuracy is computed once, after the last epoch, on exactly this test split; per-epoch
            numbers come from fixed subsets of ``config.eval_per_class`` images per class
            (:mod:`nctransfer.finetune.evaluation`).
        num_classes: classifier width (default: ``max label + 1``).
        pretrained: when ``model`` is a name, load pre-trained weights (False: random initialisation).
        on_epoch_end: ``callback(epoch_record) -> bool``; True stops after that epoch (the checkpoint is kept).

    Returns:
        :class:`FinetuneResult` (also written to ``out_dir/result.json``).

    Raises:
        InputValueError: bad configuration, fewer than 2 classes, fewer samples than the batch size, a model
            without fine-tuning units (layer/SCL), ...
        NotFoundError: unknown unit (the message lists the valid ones), model or dataset.
    """
    t_start = time.perf_counter()
    if config is None:
        cfg = FinetuneConfig(**options)
    elif isinstance(config, dict):
        cfg = FinetuneConfig.from_dict({**config, **options})
    elif isinstance(config, FinetuneConfig):
        cfg = config.replace(**options) if options else config
    else:
        raise InputValueError(f"config must be a FinetuneConfig, a dict or None; got {type(config).__name__}.")
    seed_everything(cfg.seed)
    torch.manual_seed(cfg.seed)
    model_name = str(model) if isinstance(model, (str, os.PathLike)) else getattr(
        getattr(model, "nctransfer_info", None), "name", type(model).__name__)

    # the model first (string dataset specs take its evaluation transform), then the data, then the new head
    from_name = isinstance(model, (str, os.PathLike))
    if from_name:
        model = load_model(str(model), pretrained=pretrained)
    data_info = {"train": _describe_data(train_data), "test": _describe_data(test_data), "per_class": per_class,
                 "test_per_class": test_per_class, "image_size": cfg.image_size}
    train_ds = _load_data(train_data, "train", model, cfg.image_size, per_class, cfg.seed, "train_data")
    test_ds = _load_data(test_data, "test", model, cfg.image_size, test_per_class, cfg.seed + 1, "test_data")
    y_train = dataset_targets(train_ds, "train_data")
    y_test = dataset_targets(test_ds, "test_data")
    k = check_training_data(y_train, y_test, cfg.batch_size, num_classes)
    net = prepare_model(model, k, cfg, pretrained=pretrained, force_reset=from_name)
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)

    auto_report = None
    unit_name = None
    if cfg.uses_unit:
        if cfg.unit == "auto":
            auto_report = _auto(net, train_ds, cfg, k, out, resume)
            unit = resolve_unit(net, auto_report["chosen"])
        else:
            unit = resolve_unit(net, cfg.unit)
        unit_name = unit.name
        if cfg.method == "scl_ft":
            attach_skip(net, unit, cfg.skip, image_size=sample_hw(train_ds) or cfg.image_size)
    else:
        unit = None
    trainable = trainable_parameter_names(net, cfg.method, unit)
    n_tr, n_tot = count_parameters(net, trainable)
    taps = _resolve_taps(net, cfg.nc1_taps)
    if out is not None:
        write_json_atomic(out / "config.json", {"config": cfg.to_dict(), "model": model_name, "data": data_info,
                                                "unit": unit_name})
    trainer = Trainer(net, trainable, cfg, train_ds, test_ds, out_dir=out, nc1_taps=taps,
                      on_epoch_end=on_epoch_end, extra_state={"unit": unit_name, "auto": auto_report})
    history = trainer.fit(resume=resume)
    last_eval = trainer.final_eval_
    secs = [h["seconds"] for h in history]
    evaluation = {**trainer.eval_plan_.describe(), "final": dict(last_eval)}
    timing = _timing(trainer, auto_report, time.perf_counter() - t_start)
    result = FinetuneResult(
        method=cfg.method, unit=unit_name, skip=cfg.skip if cfg.method == "scl_ft" else None,
        test_accuracy=float(last_eval.get("test_accuracy", float("nan"))),
        penultimate_nc1=float(last_eval.get("penultimate_nc1", float("nan"))),
        trainable_params=n_tr, total_params=n_tot, trainable_percent=100.0 * n_tr / n_tot,
        trainable_names=list(trainable), seconds_per_epoch=float(sum(secs) / len(secs)) if secs else float("nan"),
        peak_memory_mb=float(trainer.peak_memory_mb_), memory_method=trainer.memory_method_,
        epochs_completed=len(history), n_train=len(train_ds), n_test=len(test_ds), num_classes=k,
        history=history, config=cfg.to_dict(), environment=environment_stamp(), auto=auto_report,
        model_name=model_name, data=data_info, evaluation=evaluation, timing=timing, model=net,
    )
    if out is not None:
        result.save(out / RESULT_NAME)
    return result


def _timing(trainer: Trainer, auto_report: dict | None, total: float) -> dict[str, Any]:
    """Wall seconds of this call by phase (epochs restored from a checkpoint are not counted)."""
    train, ev = float(trainer.train_seconds_), float(trainer.eval_seconds_)
    probe = float(auto_report.get("probe_seconds", 0.0)) if auto_report and not auto_report.get("reused") else 0.0
    return {"train": train, "eval": ev, "probe": probe, "setup": max(total - train - ev - probe, 0.0),
            "total": total, "train_share": train / total if total > 0 else float("nan")}


def _auto(net: nn.Module, train_ds: Any, cfg: FinetuneConfig, k: int, out: Path | None, resume: bool) -> dict:
    path = out / AUTO_NAME if out is not None else None
    if resume and path is not None and path.is_file():
        with open(path, encoding="utf-8") as fh:
            report = json.load(fh)
        if report.get("signature") == _auto_signature(cfg):
            return {**report, "reused": True}
    report = choose_unit(net, train_ds, cfg, num_classes=k)
    report["signature"] = _auto_signature(cfg)
    if path is not None:
        write_json_atomic(path, report)
    return report


def _auto_signature(cfg: FinetuneConfig) -> dict[str, Any]:
    d = cfg.training_signature()
    d.pop("epochs", None)
    d.pop("eval_every", None)
    d.pop("nc1_taps", None)
    return d


def linear_probe(model: Any, train_data: Any, test_data: Any, **options: Any) -> FinetuneResult:
    """Linear probe: train only a new classifier on the frozen penultimate feature (docs/methods.md#finetuning).

    Keyword options are those of :func:`finetune` and the fields of :class:`FinetuneConfig`. BatchNorm running
    statistics still update on the downstream data (``bn_policy="update"``, Li et al., TMLR 2024, appendix B).
    """
    return finetune(model, train_data, test_data, method="linear_probe", **options)


def layer_ft(model: Any, train_data: Any, test_data: Any, unit: Any, **options: Any) -> FinetuneResult:
    """Layer FT: train one fine-tuning ``unit`` (name, index or ``"auto"``) plus the classifier (docs/methods.md#finetuning)."""
    return finetune(model, train_data, test_data, method="layer_ft", unit=unit, **options)


def scl_ft(model: Any, train_data: Any, test_data: Any, unit: Any, skip: str = "pad",
           **options: Any) -> FinetuneResult:
    """SCL FT: Layer FT plus a skip connection from ``unit`` to the penultimate feature (docs/methods.md#finetuning).

    Args:
        unit: a unit name (``nctransfer.features.discover_units``), an index, or ``"auto"`` (chosen by collapse,
            :func:`nctransfer.finetune.auto.choose_unit`).
        skip: ``"pad"`` (zero-padding, Li et al., TMLR 2024) or ``"conv"`` (1x1 conv + BatchNorm, Li et al., 2022 preprint).
    """
    return finetune(model, train_data, test_data, method="scl_ft", unit=unit, skip=skip, **options)


def full_ft(model: Any, train_data: Any, test_data: Any, **options: Any) -> FinetuneResult:
    """Full FT: train every parameter (docs/methods.md#finetuning)."""
    return finetune(model, train_data, test_data, method="full_ft", **options)


def clone_model(model: nn.Module) -> nn.Module:
    """``copy.deepcopy`` that keeps ``nctransfer_info`` and rewires an attached skip branch."""
    return copy.deepcopy(model)
