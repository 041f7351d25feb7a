"""Cached features of the frozen part of a network before a fine-tuning unit, replayed instead of recomputed.

Layer FT and SCL FT train one unit and the classifier; everything computed *before* the unit is frozen. In eval
mode that part is a fixed function of the image, so the probe runs of ``unit="auto"``
(:mod:`nctransfer.finetune.auto`) compute it once per image and replay it at every optimiser step and
evaluation, instead of repeating the forward pass of the frozen part tens of times.

How, for any architecture (no model-specific code):

1. *trace*: one forward pass with hooks on every module records the module calls that complete before the unit
   starts; the *maximal* ones (those called directly by the unit's ancestors, e.g. ``conv1``, ``layer1``,
   ``layer2`` and ``layer3.0`` before ``layer3.1`` of a ResNet) make up the frozen prefix;
2. *cache*: for every image, the output of the last maximal call (or, if needed, of all of them) is stored
   (float32, CPU, in the default memory layout; the caching pass itself runs on channels-last CPU batches,
   :func:`nctransfer.finetune._data.inference_layout`), the pass stopping at the unit;
3. *replay*: the ``forward`` of those modules is replaced by a lookup of the cached rows of the current batch
   (the other maximal calls return zero placeholders of the right shape, they feed nothing but the cached one);
   the unit, the rest of the network, the skip branch and the classifier run as usual;
4. *verify*: on one batch the replayed model must give the same logits as the real one in eval mode, else the
   next level (all maximal calls cached) is tried, else no cache is used.

The images become placeholders (:class:`CachedView` yields zero tensors of the image shape and sets the rows to
replay), so a :class:`~nctransfer.finetune.trainer.Trainer` trains and evaluates on a :class:`CachedView` as on
the dataset itself (with ``num_workers=0``).
"""

from __future__ import annotations

import itertools
import time
from collections import Counter
from typing import Any

import numpy as np
import torch
from torch import nn

from nctransfer.finetune._data import dataset_targets, inference_layout, iterate_batches

#: the largest cache (MiB) built; beyond it the probe runs without one
MAX_CACHE_MB = 2048.0


class _Stop(Exception):
    """Raised by the unit's pre-hook to end a pass at the unit."""


def _trace_many(model: nn.Module, units: list[nn.Module], x: torch.Tensor, stop: nn.Module | None = None
                ) -> dict[int, list[tuple[tuple[str, int], Any]]]:
    """For every unit reached by ``model(x)``: its maximal prefix calls ``[((name, k), output)]`` in completion
    order (keyed by ``id(unit)``). With ``stop`` the pass ends when that unit starts."""
    names: dict[int, str] = {}
    for n, m in model.named_modules():
        names.setdefault(id(m), n)
    wanted = {id(u) for u in units}
    stack: list[tuple[str, int]] = []
    counts: Counter = Counter()
    done: list[tuple[tuple[str, int], tuple[str, int] | None, Any]] = []
    snap: dict[int, tuple[set, int]] = {}

    def pre(mod: nn.Module, args: Any) -> None:
        if id(mod) in wanted and id(mod) not in snap:
            snap[id(mod)] = (set(stack), len(done))
        if mod is stop:
            raise _Stop
        n = names[id(mod)]
        stack.append((n, counts[n]))
        counts[n] += 1

    def post(mod: nn.Module, args: Any, out: Any) -> None:
        key = stack.pop()
        done.append((key, stack[-1] if stack else None, out))

    handles = []
    try:
        for m in model.modules():
            if m is model:
                continue
            handles.append(m.register_forward_pre_hook(pre))
            handles.append(m.register_forward_hook(post))
        try:
            model(x)
        except _Stop:
            pass
    finally:
        for h in handles:
            h.remove()
    return {uid: [(key, out) for key, parent, out in done[:n_done] if parent is None or parent in open_calls]
            for uid, (open_calls, n_done) in snap.items()}


def _trace(model: nn.Module, unit: nn.Module, x: torch.Tensor) -> tuple[list[tuple[tuple[str, int], Any]], bool]:
    """Maximal prefix calls ``[((name, k), output)]`` of ``unit`` in completion order, and whether it was reached."""
    got = _trace_many(model, [unit], x, stop=unit)
    return got.get(id(unit), []), id(unit) in got


def _verify(model: nn.Module, rep: "PrefixReplay", x: torch.Tensor, ref: torch.Tensor) -> bool:
    """Whether the replayed model gives the real logits ``ref`` on the first ``len(x)`` cached images."""
    try:
        with torch.no_grad():
            rep.idx = torch.arange(len(x))
            out = model(torch.zeros((1, *rep.image_shape), device=x.device).expand(len(x), *rep.image_shape))
        return out.shape == ref.shape and bool(torch.allclose(out.float(), ref, rtol=1e-3,
                                                              atol=1e-4 * max(1.0, float(ref.abs().max()))))
    except Exception:  # noqa: BLE001 - a placeholder that was used for real
        return False


#: images of the verification batch
VERIFY_IMAGES = 16


class SharedPrefixCache:
    """The frozen prefixes of several units of one network, cached for the images of ``data`` in **one** pass
    (the outputs every unit needs: the last maximal prefix call before it); :meth:`replay` installs the replay
    for one unit on a copy of the network. Used by the ``unit="auto"`` probe (every candidate, one pass).

    Attributes:
        tensors: ``{(module name, call): [N, ...] float32 CPU}``; calls: per unit name, its maximal prefix calls
        ``[((name, k), (shape, dtype))]``; labels; image_shape; nbytes; seconds; x0: the verification images.
    """

    def __init__(self) -> None:
        self.tensors: dict[tuple[str, int], torch.Tensor] = {}
        self.calls: dict[str, list[tuple[tuple[str, int], tuple[tuple[int, ...], torch.dtype]]]] = {}
        self.labels = np.zeros(0, dtype=np.int64)
        self.image_shape: tuple[int, ...] = ()
        self.nbytes, self.seconds = 0, 0.0
        self.x0 = torch.zeros(0)

    @classmethod
    def build(cls, model: nn.Module, units: dict[str, nn.Module], data: Any, *, batch_size: int = 64,
              device: Any = "cpu", max_mb: float = MAX_CACHE_MB) -> "SharedPrefixCache":
        """One traced pass of ``model`` (eval mode, unchanged) over ``data`` caching what every unit of ``units``
        (name -> module) needs; units that cannot be cached (not reached, a non-tensor output, over ``max_mb``
        in total, deepest kept first) are left out of :attr:`calls`."""
        t0 = time.perf_counter()
        self = cls()
        dev = torch.device(device)
        was = model.training
        model.eval().to(dev)
        self.labels = dataset_targets(data, "train_data")
        n = len(self.labels)
        order = np.arange(n)
        ids = {id(m): name for name, m in units.items()}
        try:
            first = next(iterate_batches(data, order[:batch_size], batch_size))[0].to(dev)
            self.image_shape = tuple(first.shape[1:])
            self.x0 = first[:VERIFY_IMAGES]
            with torch.no_grad():
                traced = _trace_many(model, list(units.values()), self.x0)
            need: dict[tuple[str, int], int] = {}
            budget = max_mb * 2**20
            for uid in sorted(traced, key=lambda u: -list(units).index(ids[u])):  # deepest first
                calls = traced[uid]
                if not calls or not all(torch.is_tensor(o) for _, o in calls):
                    continue
                key, out = calls[-1]
                extra = 0 if key in need else out[0].numel() * 4 * n
                if sum(need.values()) + extra > budget:
                    continue
                need[key] = extra
                self.calls[ids[uid]] = [(k, (tuple(o.shape[1:]), o.dtype)) for k, o in calls]
            parts: dict[tuple[str, int], list[torch.Tensor]] = {k: [] for k in need}
            if parts:
                with torch.no_grad():
                    rest = iterate_batches(data, order[batch_size:], batch_size)  # one iterator, not one per batch
                    for xb in itertools.chain([first], (b[0].to(dev) for b in rest)):
                        _record(model, set(parts), inference_layout(xb), parts)
            self.tensors = {k: torch.cat(v) for k, v in parts.items()}
            self.nbytes = int(sum(t.numel() * t.element_size() for t in self.tensors.values()))
        finally:
            model.train(was)
        self.seconds = time.perf_counter() - t0
        return self

    def replay(self, model: nn.Module, unit_name: str, unit: nn.Module) -> "PrefixReplay | None":
        """Install the replay of ``unit`` (named ``unit_name``) on ``model`` (a copy of the cached network,
        possibly with a skip branch); ``None`` if the unit is not cached or the replay does not reproduce the
        real logits (then nothing is installed)."""
        calls = self.calls.get(unit_name)
        if not calls:
            return None
        keep = calls[-1][0]
        rep = PrefixReplay(model)
        rep.level, rep.n, rep.labels, rep.image_shape = "last", len(self.labels), self.labels, self.image_shape
        rep.cached = {keep: self.tensors[keep]}
        rep.placeholders = {k: meta for k, meta in calls if k != keep}
        rep.nbytes = int(self.tensors[keep].numel() * 4)
        was = model.training
        model.eval()
        with torch.no_grad():
            ref = model(self.x0).float()
        rep.install()
        ok = _verify(model, rep, self.x0, ref)
        model.train(was)
        if not ok:
            rep.remove()
            return None
        return rep


def _record(model: nn.Module, keys: set, x: torch.Tensor, parts: dict[tuple[str, int], list[torch.Tensor]]) -> None:
    """Run ``model(x)`` recording the outputs of the module calls ``keys`` (``(name, k)``) into ``parts``."""
    counts: Counter = Counter()
    handles = []

    def hook(name: str) -> Any:
        def f(mod: nn.Module, args: Any, out: Any) -> None:
            key = (name, counts[name])
            counts[name] += 1
            if key in keys:
                parts[key].append(out.detach().to("cpu", torch.float32).contiguous())  # the default layout
        return f

    try:
        for name in sorted({k[0] for k in keys}):
            handles.append(model.get_submodule(name).register_forward_hook(hook(name)))
        model(x)
    finally:
        for h in handles:
            h.remove()


class PrefixReplay:
    """The frozen prefix of ``model`` before ``unit``, cached for the images of ``data`` (module docstring).

    Use :meth:`build` (returns ``None`` when the model cannot be replayed), then :meth:`view` for datasets of
    cached rows. The replay is installed on ``model`` itself (use it on a copy); :meth:`remove` uninstalls it.

    Attributes:
        n: cached images; nbytes: cache size; level: ``"last"`` (one cached call) or ``"all"``; seconds: time of
        the caching pass; image_shape: ``[C, H, W]`` of the images.
    """

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.cached: dict[tuple[str, int], torch.Tensor] = {}
        self.placeholders: dict[tuple[str, int], tuple[tuple[int, ...], torch.dtype]] = {}
        self.idx = torch.zeros(0, dtype=torch.int64)
        self.device = torch.device("cpu")
        self.counts: Counter = Counter()
        self._installed: list[nn.Module] = []
        self._root_hook: Any = None
        self.level, self.nbytes, self.n, self.seconds = "", 0, 0, 0.0
        self.image_shape: tuple[int, ...] = ()
        self.labels = np.zeros(0, dtype=np.int64)

    # ------------------------------------------------------------------ build
    @classmethod
    def build(cls, model: nn.Module, unit: nn.Module, data: Any, *, batch_size: int = 64,
              device: Any = "cpu", max_mb: float = MAX_CACHE_MB) -> "PrefixReplay | None":
        """Trace, cache the prefix outputs of every image of ``data`` (eval mode) and install the replay.

        Args:
            model: the network (with the downstream classifier and, for SCL, the skip branch); modified (replay).
            unit: the fine-tuning unit module (the prefix is everything computed before it).
            data: a map-style dataset of ``(image, label)``.
            batch_size: images per caching pass.
            device: where the caching passes run.
            max_mb: do not build a cache larger than this (MiB).

        Returns:
            the installed replay, or ``None`` (no cache: unit not reached, a non-tensor prefix output, a cache over
            ``max_mb``, or logits that differ from the real model's).
        """
        t0 = time.perf_counter()
        dev = torch.device(device)
        was_training = model.training
        model.eval().to(dev)
        labels = dataset_targets(data, "train_data")
        n = len(labels)
        order = np.arange(n)
        first = next(iterate_batches(data, order[:batch_size], batch_size))
        x0 = first[0].to(dev)
        with torch.no_grad():
            calls, reached = _trace(model, unit, x0)
            if not reached or not calls or not all(torch.is_tensor(o) for _, o in calls):
                model.train(was_training)
                return None
            ref = model(x0[:VERIFY_IMAGES]).float()
        for level, keep in (("last", [calls[-1][0]]), ("all", [k for k, _ in calls])):
            per_image = sum(o[0].numel() * o.element_size() for k, o in calls if k in keep)
            if per_image * n / 2**20 > max_mb:
                continue
            rep = cls(model)
            rep.level, rep.n, rep.labels, rep.image_shape = level, n, labels, tuple(x0.shape[1:])
            rep.placeholders = {k: (tuple(o.shape[1:]), o.dtype) for k, o in calls if k not in keep}
            parts: dict[tuple[str, int], list[torch.Tensor]] = {k: [] for k in keep}
            with torch.no_grad():
                for xb in itertools.chain([first[0]], (b[0] for b in iterate_batches(data, order[batch_size:],
                                                                                     batch_size))):
                    got, _ = _trace(model, unit, inference_layout(xb.to(dev)))
                    for k, o in got:
                        if k in parts:
                            parts[k].append(o.detach().to("cpu", torch.float32 if o.is_floating_point() else o.dtype)
                                            .contiguous())
            rep.cached = {k: torch.cat(v) for k, v in parts.items()}
            rep.nbytes = int(sum(t.numel() * t.element_size() for t in rep.cached.values()))
            rep.install()
            ok = _verify(model, rep, x0[:VERIFY_IMAGES], ref)
            if ok:
                rep.seconds = time.perf_counter() - t0
                model.train(was_training)
                return rep
            rep.remove()
        model.train(was_training)
        return None

    # ------------------------------------------------------------------ replay
    def install(self) -> None:
        """Replace the ``forward`` of the prefix modules by the cache lookup."""
        keys = set(self.cached) | set(self.placeholders)
        for name in sorted({n for n, _ in keys}):
            mod = self.model.get_submodule(name)
            mod.forward = self._stub(name, mod.forward)  # type: ignore[method-assign]
            self._installed.append(mod)

        def reset(module: nn.Module, args: Any) -> None:
            self.counts.clear()
            x = args[0] if args and torch.is_tensor(args[0]) else None
            if x is not None:
                self.device = x.device

        self._root_hook = self.model.register_forward_pre_hook(reset)

    def _stub(self, name: str, original: Any) -> Any:
        def forward(*args: Any, **kwargs: Any) -> Any:
            k = self.counts[name]
            self.counts[name] += 1
            key = (name, k)
            if key in self.cached:
                return self.cached[key].index_select(0, self.idx).to(self.device, non_blocking=True)
            if key in self.placeholders:
                shape, dtype = self.placeholders[key]
                return torch.zeros((1, *shape), dtype=dtype, device=self.device).expand(len(self.idx), *shape)
            return original(*args, **kwargs)

        return forward

    def remove(self) -> None:
        """Restore the modules' own ``forward``."""
        for mod in self._installed:
            if "forward" in mod.__dict__:
                del mod.forward
        self._installed = []
        if self._root_hook is not None:
            self._root_hook.remove()
            self._root_hook = None

    def view(self, positions: Any) -> "CachedView":
        """A dataset of the cached images at ``positions`` (of ``data`` given to :meth:`build`)."""
        return CachedView(self, np.asarray(positions, dtype=np.int64))

    def describe(self) -> dict[str, Any]:
        """``{"level", "images", "mb", "seconds", "modules"}``."""
        return {"level": self.level, "images": int(self.n), "mb": round(self.nbytes / 2**20, 3),
                "seconds": float(self.seconds), "modules": sorted({n for n, _ in self.cached})}


class CachedView(torch.utils.data.Dataset):
    """Images of a :class:`PrefixReplay` as a dataset: ``get_batch`` sets the rows to replay and returns zero
    placeholders of the image shape with the labels (``targets``)."""

    def __init__(self, replay: PrefixReplay, positions: np.ndarray) -> None:
        self.replay = replay
        self.positions = positions
        self.targets = replay.labels[positions]

    def __len__(self) -> int:
        return len(self.positions)

    def get_batch(self, indices: Any) -> tuple[torch.Tensor, torch.Tensor]:
        idx = np.asarray(indices, dtype=np.int64)
        self.replay.idx = torch.as_tensor(self.positions[idx])
        shape = self.replay.image_shape
        return torch.zeros((1, *shape)).expand(len(idx), *shape), torch.as_tensor(self.targets[idx])

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        x, y = self.get_batch([i])
        return x[0], int(y[0])
