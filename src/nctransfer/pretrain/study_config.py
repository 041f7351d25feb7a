"""Settings and result of a pre-training study (:func:`nctransfer.pretrain.study.run_study`): :class:`StudyConfig`
(the data and evaluation settings; the recipes come from the grid) and :class:`StudyResult`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nctransfer.exceptions import InputValueError
from nctransfer.utils.configs import ConfigBase, opt

#: format tag of a study's ``result.json``, ``study.json`` and ``study_config.json``
RESULT_FORMAT = "nctransfer.pretrain.study/1"


@dataclass
class StudyConfig(ConfigBase):
    """Data and evaluation settings of a study (the recipes come from the grid), with the dict/JSON/YAML round
    trip of every nctransfer configuration (``StudyConfig.from_yaml(cfg.to_yaml()) == cfg``).

    Attributes:
        source: source dataset spec (``"fashion-mnist:0-4"``; see :mod:`nctransfer.pretrain.datasets`).
        targets: one or more target dataset specs (``["fashion-mnist:5-9", "digits"]``).
        out: output directory.
        source_per_class: source training images per class (balanced, seeded); ``None`` = all.
        source_test_per_class: source test images per class for the source accuracy.
        target_train_per_class, target_test_per_class: target images per class for the probe (train/test).
        image_size: square image side for every dataset.
        seed: data subsampling seed (recipes carry their own training seed).
        device: torch device.
        methods: transferability methods to compute (``None`` = every registered method).
        plots: write the figures.
        data_root: directory of the Fashion-MNIST IDX files (default: the Debian location).
        eval_batch_size: batch size of feature extraction.
        threads: limit torch's intra-op threads and the BLAS/OpenMP pools (numpy, scikit-learn) to this many
            during the study (``None`` = leave them). Studies of small models gain little from more threads, and on
            a shared or oversubscribed CPU one thread is often many times faster (measured here: a scikit-learn
            probe on 100 x 8 features took 4.8 s with 2 OpenBLAS threads next to other jobs, 0.11 s with 1).
        checkpoint_dir: where the checkpoints live (``<checkpoint_dir>/<recipe>/checkpoint.pt``; default
            ``OUT/runs``). Point several studies that share the source settings but evaluate other targets or
            target sizes at one directory to pre-train each recipe once (a checkpoint refuses other data).
    """

    source: str = field(metadata={"help": "source dataset spec, e.g. fashion-mnist:0-4"})
    targets: list[str] = field(metadata={"help": "one or more target dataset specs"})
    out: str = field(metadata={"help": "output directory"})
    source_per_class: int | None = opt(1000, "source training images per class (balanced, seeded; None: all)")
    source_test_per_class: int | None = opt(200, "source test images per class for the source accuracy")
    target_train_per_class: int | None = opt(100, "target training images per class for the probe")
    target_test_per_class: int | None = opt(100, "target test images per class for the probe")
    image_size: int = opt(28, "square image side for every dataset")
    seed: int = opt(0, "data subsampling seed (recipes carry their own training seed)")
    device: str = opt("cpu", "torch device")
    methods: list[str] | None = opt(None, "transferability methods to compute (None: every registered method)")
    plots: bool = opt(True, "write the figures")
    data_root: str | None = opt(None, "directory of the Fashion-MNIST IDX files (default: the Debian location)")
    eval_batch_size: int = opt(512, "batch size of feature extraction")
    threads: int | None = opt(None, "limit torch and BLAS threads to this many during the study (None: leave them)")
    checkpoint_dir: str | None = opt(None, "where the checkpoints live (default: OUT/runs)")

    def __post_init__(self) -> None:
        if isinstance(self.targets, str):
            self.targets = [self.targets]
        if not self.targets:
            raise InputValueError("study: give at least one --target dataset.")
        if len(set(self.targets)) != len(self.targets):
            raise InputValueError(f"study: --target lists a dataset twice: {self.targets}.")
        for name in ("source_per_class", "source_test_per_class", "target_train_per_class",
                     "target_test_per_class"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise InputValueError(f"study: {name} must be a positive integer or None; got {v!r}.")
        if self.threads is not None and (isinstance(self.threads, bool) or not isinstance(self.threads, int)
                                         or self.threads < 1):
            raise InputValueError(f"study: threads must be a positive integer or None; got {self.threads!r}.")

    def data_settings(self) -> dict[str, Any]:
        """The settings that determine the data (a study directory is tied to them)."""
        keys = ("source", "targets", "source_per_class", "source_test_per_class", "target_train_per_class",
                "target_test_per_class", "image_size", "seed")
        return {k: getattr(self, k) for k in keys}

    def eval_settings(self) -> dict[str, Any]:
        return {"methods": self.methods}

    def checkpoint_path(self, recipe: str) -> Path:
        """``<checkpoint_dir>/<recipe>/checkpoint.pt`` (default ``checkpoint_dir``: ``OUT/runs``)."""
        root = Path(self.checkpoint_dir) if self.checkpoint_dir else Path(self.out) / "runs"
        return root / recipe / "checkpoint.pt"


@dataclass
class StudyResult:
    """What :func:`run_study` returns.

    Attributes:
        records: one dict per finished recipe (the content of its ``result.json``).
        rows: the flat table of ``study.csv`` (one row per recipe and target).
        status: recipe name -> ``"trained"``, ``"resumed"`` (checkpoint of an interrupted run), ``"reused"``
            (complete checkpoint, evaluated only) or ``"skipped"`` (result already there) in this call.
        out: the output directory; ``files``: written files by kind.
    """

    records: list[dict[str, Any]]
    rows: list[dict[str, Any]]
    status: dict[str, str]
    out: Path
    files: dict[str, str] = field(default_factory=dict)


__all__ = ["RESULT_FORMAT", "StudyConfig", "StudyResult"]
