"""The training loop shared by the four fine-tuning methods (docs/methods.md#finetuning; Li et al., TMLR 2024, appendix B).

- SGD (momentum 0.9, weight decay 1e-4 by default) over the trainable parameters only, in two groups: the head
  (classifier and SCL skip branch) at ``lr`` and the backbone parameters (the fine-tuned unit, or everything
  else for full FT) at ``backbone_lr``.
- Cosine schedule per optimiser step: ``lr_t = lr0 * (r + (1 - r) (1 + cos(pi t / T)) / 2)`` with ``T`` the total
  number of steps and ``r = min_lr_ratio`` (paper: 0.1 -> 1e-4, ``r = 1e-3``).
- Modes: during training the whole model is in train mode (``model.train()``), so every BatchNorm - frozen or
  not - normalises with batch statistics and updates its running statistics on the downstream data in all four
  methods (Li et al., TMLR 2024, appendix B, "for a fair comparison"); dropout/drop-path behave as the model defines them.
  With ``bn_policy="frozen"`` the normalisation layers outside the trained modules stay in eval mode instead.
  Evaluation is in eval mode.
- A training batch of one sample cannot be batch-normalised: when ``N % batch_size == 1`` the last batch of each
  epoch is dropped.
- Determinism: the shuffling order of epoch ``e`` comes from a generator seeded with ``(seed, e)``; the global
  RNG states (torch, CUDA, NumPy, Python) are saved in every checkpoint and restored on resume, so on CPU a run
  stopped after epoch ``k`` and resumed gives the same numbers as an uninterrupted one.
- Evaluation (:mod:`nctransfer.finetune.evaluation`, eval mode, one pass per set at extraction speed): every
  ``eval_every`` epochs (``0``: never) on fixed, seeded subsets of ``eval_per_class`` images per class of the
  test data (accuracy, loss, NC1 ``test_penultimate_nc1``) and of the training data (the penultimate NC1, spec
  section 1.1, of the classifier's input after the SCL sum; optionally NC1 of other taps); after the last epoch,
  once, the final evaluation on the whole test split and the whole training set. Each record's
  ``eval_samples`` says which samples were used (``split``, ``subset``, ``n``). A run stopped early by
  ``on_epoch_end`` gets its final evaluation after the stop (``final_eval_``; the history is unchanged).
- ``checkpoint.pt`` is written atomically after every epoch; an interrupted run loses at most one epoch.
- Memory: :class:`~nctransfer.finetune.memory.PeakMemory` around each epoch's training pass; the history records
  it per epoch and ``peak_memory_mb_`` is the maximum.
"""

from __future__ import annotations

import math
import random
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from nctransfer.exceptions import InputValueError
from nctransfer.finetune._data import iterate_batches
from nctransfer.finetune.config import FinetuneConfig
from nctransfer.finetune.evaluation import EvalPlan, EvalSet, compute_nc1, evaluate
from nctransfer.finetune.memory import PeakMemory
from nctransfer.finetune.memory import memory_method as _memory_method
from nctransfer.finetune.selection import apply_trainable, classifier_path, head_parameter_names
from nctransfer.utils.io import atomic_path
from nctransfer.utils.torch_io import safe_torch_load

CHECKPOINT_NAME = "checkpoint.pt"
_CKPT_FORMAT = 1
_NORM_TYPES = (nn.modules.batchnorm._NormBase,)


def resolve_device(device: str) -> torch.device:
    """``"auto"`` -> CUDA when available else CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputValueError(f"device: {device!r} requested but CUDA is not available; use device='cpu'.")
    return torch.device(device)


def cosine_lr(base: float, step: int, total: int, min_ratio: float) -> float:
    """Learning rate at optimiser step ``step`` of ``total`` (module docstring)."""
    if total <= 1:
        return base
    t = min(max(step, 0), total - 1) / (total - 1)
    return base * (min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * t)))


def set_train_modes(model: nn.Module, trainable: Sequence[str], bn_policy: str) -> None:
    """``model.train()``; with ``bn_policy="frozen"`` normalisation layers without trainable parameters (and not
    inside a module being trained) go back to eval mode."""
    model.train()
    if bn_policy == "update":
        return
    keep = set(trainable)
    trained_prefixes = {n.rsplit(".", 1)[0] for n in keep}
    for name, m in model.named_modules():
        if isinstance(m, _NORM_TYPES):
            inside = any(name == p or name.startswith(p + ".") or p.startswith(name + ".") for p in trained_prefixes)
            if not inside:
                m.eval()


def _read_checkpoint(p: Path) -> dict[str, Any]:
    """A checkpoint read with the restricted unpickler (:func:`nctransfer.utils.torch_io.safe_torch_load`): no code
    runs from the file; a truncated or corrupt one is one :class:`InputValueError`."""
    state = safe_torch_load(p, "resume: checkpoint", "Delete it to start over, or use a new --out directory.")
    if not isinstance(state, dict):
        raise InputValueError(f"resume: {p} is not a fine-tuning checkpoint (it holds {type(state).__name__}).")
    return state


def _rng_state() -> dict[str, Any]:
    st = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def _set_rng_state(st: dict[str, Any]) -> None:
    torch.set_rng_state(st["torch"])
    np.random.set_state(st["numpy"])
    random.setstate(st["python"])
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


_EVAL_KEYS = ("train_accuracy", "test_accuracy", "test_loss", "penultimate_nc1", "test_penultimate_nc1", "tap_nc1",
              "eval_samples", "eval_seconds")


def _is_final(record: dict[str, Any], plan: EvalPlan) -> bool:
    """Whether a history record holds the final evaluation (both whole sets)."""
    s = record.get("eval_samples") or {}
    return (s.get("train", {}).get("subset") == "full" and s.get("test", {}).get("subset") == "full"
            and s["train"].get("n") == plan.final_train.n and s["test"].get("n") == plan.final_test.n)


class Trainer:
    """Fine-tunes ``model`` (trainable parameters ``trainable``) on ``train_data``; see the module docstring.

    Args:
        model: the network, already carrying the downstream classifier (and the SCL branch for ``scl_ft``).
        trainable: explicit parameter names to train (:func:`nctransfer.finetune.trainable_parameter_names`).
        config: the :class:`FinetuneConfig` (method-independent fields are used here).
        train_data, test_data: map-style datasets of ``(image [C, H, W], label)``.
        out_dir: directory of ``checkpoint.pt`` (``None``: no checkpoints, no resume).
        nc1_taps: taps whose NC1 is recorded at every evaluation (besides the penultimate feature).
        on_epoch_end: ``callback(record) -> bool``; returning True stops training after that epoch
            (the checkpoint is already written).

    Attributes (after :meth:`fit`): ``history_`` (one dict per epoch), ``final_eval_`` (the numbers of the final
    evaluation on the whole sets, with ``eval_samples``, ``eval_seconds`` and ``epoch``), ``eval_plan_``
    (:class:`~nctransfer.finetune.evaluation.EvalPlan`), ``train_seconds_`` / ``eval_seconds_`` (wall time of the
    training passes / evaluations of this call), ``peak_memory_mb_``, ``memory_method_``,
    ``resumed_from_`` (epochs restored from a checkpoint, 0 for a fresh run).
    """

    def __init__(self, model: nn.Module, trainable: Sequence[str], config: FinetuneConfig, train_data: Any,
                 test_data: Any, *, out_dir: str | Path | None = None, nc1_taps: Sequence[str] | None = None,
                 on_epoch_end: Callable[[dict[str, Any]], Any] | None = None,
                 extra_state: dict[str, Any] | None = None) -> None:
        self.model = model
        self.trainable = list(trainable)
        self.config = config
        self.train_data = train_data
        self.test_data = test_data
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.nc1_taps = list(nc1_taps) if nc1_taps else []
        self.on_epoch_end = on_epoch_end
        self.extra_state = dict(extra_state or {})

    # ------------------------------------------------------------------ setup
    def _optimizer(self) -> torch.optim.Optimizer:
        cfg = self.config
        params = dict(self.model.named_parameters())
        head = set(head_parameter_names(self.model))
        groups = []
        head_params = [params[n] for n in self.trainable if n in head]
        body_params = [params[n] for n in self.trainable if n not in head]
        if head_params:
            groups.append({"params": head_params, "lr": cfg.lr, "initial_lr": cfg.lr, "name": "head"})
        if body_params:
            blr = cfg.effective_backbone_lr
            groups.append({"params": body_params, "lr": blr, "initial_lr": blr, "name": "backbone"})
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                               nesterov=cfg.nesterov)

    def _train_loader(self, epoch: int) -> Any:
        cfg = self.config
        g = torch.Generator()
        g.manual_seed(int(cfg.seed) * 1_000_003 + epoch)
        n = len(self.train_data)
        order = torch.randperm(n, generator=g).numpy()
        return iterate_batches(self.train_data, order, cfg.batch_size, drop_singleton=True,
                               num_workers=cfg.num_workers, pin_memory=self.device.type == "cuda")

    def _eval_loader(self, eval_set: EvalSet) -> Any:
        bs = self.config.eval_batch_size or (2 if self.device.type == "cuda" else 1) * self.config.batch_size
        return eval_set.batches(bs, self.config.num_workers, self.device.type == "cuda")

    def _evaluate(self, train_set: EvalSet, test_set: EvalSet, amp: bool) -> dict[str, Any]:
        """One pass over ``train_set`` (penultimate NC1, accuracy, taps) and one over ``test_set`` (accuracy,
        loss and NC1 from the same pass); the numbers plus ``eval_samples`` and ``eval_seconds``."""
        t1 = time.perf_counter()
        tr = evaluate(self.model, self._eval_loader(train_set), self.device, amp=amp, penultimate=True,
                      taps=self.nc1_taps or None)
        te = evaluate(self.model, self._eval_loader(test_set), self.device, amp=amp, penultimate=True)
        out: dict[str, Any] = {
            "train_accuracy": tr["accuracy"], "test_accuracy": te["accuracy"], "test_loss": te["loss"],
            "penultimate_nc1": compute_nc1(tr["stats"], tr["features"], tr["labels"]),
            "test_penultimate_nc1": compute_nc1(te["stats"], te["features"], te["labels"]),
        }
        if self.nc1_taps:
            out["tap_nc1"] = {t: compute_nc1(s) for t, s in tr["tap_stats"].items()}
        out["eval_samples"] = {"train": train_set.describe(), "test": test_set.describe()}
        out["eval_seconds"] = time.perf_counter() - t1
        self.eval_seconds_ += out["eval_seconds"]
        return out

    def steps_per_epoch(self) -> int:
        n, bs = len(self.train_data), self.config.batch_size
        return n // bs if n % bs == 1 else math.ceil(n / bs)

    # ------------------------------------------------------------------ checkpoint
    @property
    def checkpoint_path(self) -> Path | None:
        return self.out_dir / CHECKPOINT_NAME if self.out_dir is not None else None

    def _save(self, epoch: int, step: int, opt: Any, scaler: Any, history: list, peak_mb: float) -> None:
        if self.checkpoint_path is None or not self.config.checkpoint:
            return
        state = {
            "format": _CKPT_FORMAT, "epoch": epoch, "step": step, "model": self.model.state_dict(),
            "optimizer": opt.state_dict(), "scaler": scaler.state_dict() if scaler is not None else None,
            "history": history, "rng": _rng_state(), "signature": self.config.training_signature(),
            "trainable": self.trainable, "peak_memory_mb": peak_mb, "extra": self.extra_state,
        }
        with atomic_path(self.checkpoint_path) as tmp:
            torch.save(state, tmp)

    def load_checkpoint(self) -> dict[str, Any] | None:
        """The checkpoint in ``out_dir`` after checking it belongs to this configuration; ``None`` if absent."""
        p = self.checkpoint_path
        if p is None or not p.is_file():
            return None
        state = _read_checkpoint(p)
        if state.get("format") != _CKPT_FORMAT:
            raise InputValueError(f"resume: {p} has checkpoint format {state.get('format')}; expected {_CKPT_FORMAT}.")
        sig = self.config.training_signature()
        diff = sorted(k for k in set(sig) | set(state["signature"]) if sig.get(k) != state["signature"].get(k))
        if diff:
            raise InputValueError(
                f"resume: {p} was written with a different configuration (fields {diff} differ: checkpoint "
                f"{ {k: state['signature'].get(k) for k in diff} }, now { {k: sig.get(k) for k in diff} }); use a new "
                "--out directory or drop --resume."
            )
        if list(state["trainable"]) != self.trainable:
            raise InputValueError(f"resume: {p} trained different parameters; use a new output directory.")
        return state

    # ------------------------------------------------------------------ fit
    def fit(self, resume: bool = False) -> list[dict[str, Any]]:
        """Train; return the per-epoch history. With ``resume`` and a checkpoint in ``out_dir``, continue it."""
        threads = torch.get_num_threads()
        if self.config.num_threads is not None:
            torch.set_num_threads(self.config.num_threads)
        try:
            return self._fit(resume)
        finally:
            torch.set_num_threads(threads)

    def _fit(self, resume: bool) -> list[dict[str, Any]]:
        cfg = self.config
        self.device = resolve_device(cfg.device)
        model = self.model.to(self.device)
        apply_trainable(model, self.trainable)
        opt = self._optimizer()
        use_amp = cfg.amp and self.device.type == "cuda"
        scaler = torch.amp.GradScaler("cuda") if use_amp else None
        total_steps = cfg.epochs * self.steps_per_epoch()
        history: list[dict[str, Any]] = []
        start_epoch, step, peak = 0, 0, 0.0
        memory_method = _memory_method(self.device)
        self.resumed_from_ = 0
        self.train_seconds_, self.eval_seconds_ = 0.0, 0.0
        if resume:
            state = self.load_checkpoint()
            if state is not None:
                model.load_state_dict(state["model"])
                opt.load_state_dict(state["optimizer"])
                if scaler is not None and state.get("scaler"):
                    scaler.load_state_dict(state["scaler"])
                history = list(state["history"])
                start_epoch, step, peak = int(state["epoch"]), int(state["step"]), float(state["peak_memory_mb"])
                _set_rng_state(state["rng"])
                self.resumed_from_ = start_epoch
        else:
            torch.manual_seed(cfg.seed)
        plan = EvalPlan.build(self.train_data, self.test_data, eval_every=cfg.eval_every,
                              per_class=cfg.eval_per_class, seed=cfg.seed)
        self.eval_plan_ = plan
        params = [p for n, p in model.named_parameters() if p.requires_grad]
        bar = tqdm(total=cfg.epochs, initial=start_epoch, desc=f"{cfg.short_method}", unit="epoch",
                   disable=not cfg.progress, leave=False)
        for epoch in range(start_epoch, cfg.epochs):
            set_train_modes(model, self.trainable, cfg.bn_policy)
            t0 = time.perf_counter()
            loss_sum, n_seen, correct = 0.0, 0, 0
            inner = tqdm(self._train_loader(epoch), desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False,
                         total=self.steps_per_epoch(), disable=not cfg.progress, unit="batch")
            with PeakMemory(self.device) as mem:
                for x, y in inner:
                    x = x.to(self.device, non_blocking=True)
                    y = torch.as_tensor(y).long().to(self.device, non_blocking=True)
                    for g in opt.param_groups:
                        g["lr"] = cosine_lr(g["initial_lr"], step, total_steps, cfg.min_lr_ratio)
                    with torch.autocast(self.device.type, dtype=torch.float16, enabled=use_amp):
                        logits = model(x)
                        loss = nn.functional.cross_entropy(logits.float(), y)
                    if not torch.isfinite(loss):
                        raise FloatingPointError(
                            f"training diverged at epoch {epoch + 1}, step {step + 1}: loss is "
                            f"{float(loss.detach())}; lower "
                            f"lr (now {cfg.lr}) / backbone_lr (now {cfg.effective_backbone_lr})."
                        )
                    opt.zero_grad(set_to_none=True)
                    if scaler is not None:
                        scaler.scale(loss).backward()
                        if cfg.max_grad_norm is not None:
                            scaler.unscale_(opt)
                            nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
                        scaler.step(opt)
                        scaler.update()
                    else:
                        loss.backward()
                        if cfg.max_grad_norm is not None:
                            nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
                        opt.step()
                    step += 1
                    b = int(y.numel())
                    loss_sum += float(loss.detach()) * b
                    correct += int((logits.detach().argmax(1) == y).sum())
                    n_seen += b
                    inner.set_postfix(loss=f"{loss_sum / n_seen:.4f}")
            inner.close()
            train_seconds = time.perf_counter() - t0
            self.train_seconds_ += train_seconds
            peak = max(peak, mem.peak_mb)
            memory_method = mem.method
            record: dict[str, Any] = {
                "epoch": epoch + 1, "train_loss": loss_sum / max(n_seen, 1),
                "train_batch_accuracy": correct / max(n_seen, 1),
                "lr": opt.param_groups[0]["lr"], "seconds": train_seconds, "peak_memory_mb": mem.peak_mb,
            }
            if epoch + 1 == cfg.epochs:  # the final evaluation: the whole sets, once
                record.update(self._evaluate(plan.final_train, plan.final_test, use_amp))
            elif plan.per_epoch_due(epoch + 1, cfg.epochs):  # the fixed per-epoch subsets
                record.update(self._evaluate(plan.epoch_train, plan.epoch_test, use_amp))
            history.append(record)
            self._save(epoch + 1, step, opt, scaler, history, peak)
            bar.update(1)
            bar.set_postfix({k: f"{record[k]:.4g}" for k in ("train_loss", "test_accuracy", "penultimate_nc1")
                             if k in record})
            if self.on_epoch_end is not None and self.on_epoch_end(record):
                break
        bar.close()
        last = history[-1] if history else {}
        if _is_final(last, plan):
            self.final_eval_ = {k: v for k, v in last.items() if k in _EVAL_KEYS}
            self.final_eval_["epoch"] = last["epoch"]
        else:  # stopped early (or an old checkpoint): the final evaluation of the weights reached
            self.final_eval_ = {**self._evaluate(plan.final_train, plan.final_test, use_amp),
                                "epoch": last.get("epoch", 0)}
        plan.epoch_train.release()
        plan.epoch_test.release()
        self.history_ = history
        self.peak_memory_mb_ = peak
        self.memory_method_ = memory_method
        model.eval()
        return history

