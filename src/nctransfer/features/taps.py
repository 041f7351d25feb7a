"""Tap selection and the hook-based recorder (docs/methods.md#layer-wise).

A *tap* is a named place where features are read: every fine-tuning unit's output (see
:mod:`nctransfer.features.units`) and ``"penultimate"``, the input of the classifier (captured with a forward
pre-hook, so it equals the model's own pre-logits feature, e.g. timm's ``forward_head(x, pre_logits=True)``).
"""

from __future__ import annotations

import difflib
import re
from typing import Any, Callable, Iterable, Sequence

import torch

from nctransfer.exceptions import InputValueError, NotFoundError, NCTransferError, ShapeError
from nctransfer.features.pooling import check_pool, check_token_pool, first_tensor, pool_features
from nctransfer.features.units import PENULTIMATE, Unit, discover_units


class HookNotFiredError(NCTransferError, RuntimeError):
    """A registered tap was not reached by the forward pass (wrong model, or a branch not executed)."""


def list_taps(model: Any) -> list[str]:
    """Names of every tap of ``model`` in forward order: the units, then ``"penultimate"``."""
    return [u.name for u in discover_units(model, include_penultimate=True)]


def _close(name: str, candidates: Sequence[str]) -> list[str]:
    return difflib.get_close_matches(name, list(candidates), n=5, cutoff=0.5)


def _candidates_text(names: Sequence[str]) -> str:
    if len(names) <= 40:
        return ", ".join(names)
    return ", ".join(names[:20]) + f", ... ({len(names) - 25} more) ..., " + ", ".join(names[-5:])


def module_paths(model: Any) -> list[str]:
    """Every named submodule path of ``model`` in registration order (``""``, the model itself, excluded)."""
    return [n for n, _ in model.named_modules() if n]


def select_taps(model: Any, selector: Any = None) -> list[str]:
    """Resolve a tap selector to an ordered list of tap names.

    Selector semantics (timm's ``feature_take_indices`` for integers):

    - ``None`` or ``"all"``: every tap (units then ``penultimate``);
    - ``int n`` (``n >= 1``): the last ``n`` taps; ``0`` is an error;
    - a sequence of ints: those positions, negatives counting from the end (``-1`` = ``penultimate``);
    - a string: an exact tap name, ``"penultimate"``, ``"last"`` (= the last unit), or a regular expression
      matched with ``re.fullmatch`` against the names (e.g. ``"layer[12]\\..*"``, ``"blocks\\.\\d+\\.0"``);
    - **any module path** of the model (``model.get_submodule(path)``), e.g. ``"layer3.1.conv2"`` or ``"body.2"``
      on a hand-written network; a pattern that matches no automatic tap is matched against every module path;
    - a comma-separated string (``"layer3.1,body.2"``, as on the command line) or a sequence mixing the above:
      the union, in forward order (module registration order; ``penultimate`` last).

    Raises:
        NotFoundError: a name or pattern matches nothing (the message lists the nearest module names and the
            automatic taps).
        InputValueError: an index is out of range (the message states the valid range).
    """
    names = list_taps(model)
    return _select(names, selector, module_paths(model))


def tap_names(model: Any, selector: Any = None, *, exclude_penultimate: bool = False, exact: bool = False,
              what: str = "taps") -> list[str]:
    """The tap rules in one place: the tap names a selector stands for, used by extraction, ranking, layer-wise
    analysis and fine-tuning.

    - ``"penultimate"``: ``["penultimate"]``; ``None`` or ``"all"``: every tap (units, then ``penultimate``);
    - anything else: :func:`select_taps` (ints, names, module paths, patterns, comma-separated lists);
    - ``exact=True``: a sequence of exact tap names (no patterns), kept in the given order; an unknown name raises
      ``NotFoundError`` naming ``what`` and listing the valid taps;
    - ``exclude_penultimate=True``: ``penultimate`` is dropped (e.g. fine-tuning's per-tap NC1, where the
      penultimate feature is always recorded).

    Raises:
        NotFoundError, InputValueError: as :func:`select_taps` (or an unknown exact name).
    """
    if isinstance(selector, str) and selector == PENULTIMATE:
        names = [PENULTIMATE]
    elif selector is None or (isinstance(selector, str) and selector.lower() == "all"):
        names = list_taps(model)
    elif exact:
        items = [selector] if isinstance(selector, str) else list(selector)
        valid = set(list_taps(model))
        bad = [t for t in items if t not in valid]
        if bad:
            raise NotFoundError(f"{what}: unknown taps {bad}; valid taps: {sorted(valid)}.")
        names = items
    else:
        names = select_taps(model, selector)
    return [t for t in names if t != PENULTIMATE] if exclude_penultimate else names


def _split_commas(s: str) -> list[str]:
    """``"a,b{1,2}"`` -> ``["a", "b{1,2}"]``: commas inside ``{}``/``[]``/``()`` belong to a pattern."""
    parts, depth, cur = [], 0, ""
    for ch in s:
        if ch in "{[(":
            depth += 1
        elif ch in "}])":
            depth = max(0, depth - 1)
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return [p.strip() for p in parts if p.strip()]


def _order(chosen: set[str], names: list[str], paths: Sequence[str]) -> list[str]:
    """Forward order: the automatic taps' own order when only they are chosen; with module paths, module
    registration order (``penultimate`` last)."""
    if chosen <= set(names):
        return [t for t in names if t in chosen]
    pos = {p: i for i, p in enumerate(paths)}
    tail = len(paths) + 1
    rank = {t: (pos.get(t, tail + i), i) for i, t in enumerate(names)}
    return sorted(chosen, key=lambda t: rank.get(t, (pos.get(t, tail), -1)))


def _select(names: list[str], selector: Any, paths: Sequence[str] = ()) -> list[str]:
    if isinstance(selector, str) and "," in selector and selector not in names and selector not in paths:
        selector = _split_commas(selector)
    if not paths:
        return _select_units(names, selector)
    known = set(names)
    extra = [p for p in paths if p not in known]
    if isinstance(selector, str):
        if selector.lower() == "all":
            return list(names)
        return _order(set(_select_str(names, selector, extra)), names, paths)
    if isinstance(selector, (list, tuple)) and any(isinstance(x, str) for x in selector):
        chosen: set[str] = set()
        for item in selector:
            if isinstance(item, str):
                chosen.update(_select_str(names, item, extra))
            else:
                chosen.update(_select_units(names, [item]))
        return _order(chosen, names, paths)
    return _select_units(names, selector)


def _select_units(names: list[str], selector: Any) -> list[str]:
    n = len(names)
    if selector is None or (isinstance(selector, str) and selector.lower() == "all"):
        return list(names)
    if isinstance(selector, bool):
        raise InputValueError(f"taps: expected None, 'all', an int, a name, a pattern or a list; got {selector!r}.")
    if isinstance(selector, int):
        if not 1 <= selector <= n:
            raise InputValueError(f"taps={selector}: an integer selects the last n taps, so it must be in [1, {n}] "
                                  f"for this model ({n} taps: {_candidates_text(names)}). Use [{selector}] for a "
                                  "single position.")
        return names[n - selector:]
    if isinstance(selector, str):
        return _select_str(names, selector)
    if isinstance(selector, Iterable):
        chosen: set[str] = set()
        for item in selector:
            if isinstance(item, bool):
                raise InputValueError(f"taps: invalid item {item!r}.")
            if isinstance(item, int):
                if not -n <= item < n:
                    raise InputValueError(f"taps: index {item} out of range [-{n}, {n - 1}] for this model "
                                          f"({n} taps: {_candidates_text(names)}).")
                chosen.add(names[item])
            elif isinstance(item, str):
                chosen.update(_select_str(names, item))
            else:
                raise InputValueError(f"taps: items must be ints or strings; got {type(item).__name__} {item!r}.")
        return [t for t in names if t in chosen]
    raise InputValueError(f"taps: expected None, 'all', an int, a name, a pattern or a list; got "
                          f"{type(selector).__name__} {selector!r}.")


def _select_str(names: list[str], s: str, extra: Sequence[str] = ()) -> list[str]:
    if s in names:
        return [s]
    if s == "last" and len(names) >= 2:
        return [names[-2]]
    if s in extra:  # any module path
        return [s]
    try:
        rx = re.compile(s)
    except re.error:
        rx = None
    hits = [t for t in names if rx is not None and rx.fullmatch(t)]
    if hits:
        return hits
    hits = [p for p in extra if rx is not None and rx.fullmatch(p)]
    if hits:
        return hits
    close = _close(s, list(names) + [p for p in extra if p not in names])
    raise NotFoundError(
        f"taps: {s!r} matches no tap" + (" and no module path" if extra else "") + " of this model."
        + (f" Did you mean: {', '.join(close)}?" if close else "")
        + f" Candidates ({len(names)}): {_candidates_text(names)}."
        + (" Any module path of model.named_modules() is accepted as well." if extra else "")
    )


def resolve_taps(model: Any, selector: Any = None) -> list[Unit]:
    """Like :func:`select_taps` but returns the :class:`Unit` objects (module, path, kind); a module path that
    is not an automatic tap becomes a ``Unit`` recording that module's output."""
    units = discover_units(model, include_penultimate=True)
    by_name = {u.name: u for u in units}
    out = []
    for i, name in enumerate(_select([u.name for u in units], selector, module_paths(model))):
        u = by_name.get(name) or Unit(name=name, path=name, module=model.get_submodule(name), index=i)
        out.append(u)
    return out


class TapRecorder:
    """Context manager recording pooled features ``[B, C]`` at taps during forward passes.

    Hooks pool inside the hook (so a ``[B, C, H, W]`` map never outlives the forward), detach, and either keep the
    latest batch (read it with :meth:`collect`) or hand it to ``sink(tap_name, features)``. Hooks are removed in
    ``finally`` on exit, also on error.

    Args:
        model: the model.
        taps: a selector (see :func:`select_taps`) or a list of :class:`Unit`.
        token_pool: ``"mean"`` (default) or ``"cls"`` for transformer outputs ``[B, T, C]`` (docs/methods.md#layer-wise).
        sink: optional callable ``sink(name, tensor)`` called from inside the hook.
        detach: detach the recorded tensors (default). ``False`` keeps the autograd graph (for SCL-style use).
        pool: ``"auto"`` (by output shape) or an override: ``"avg"``, ``"max"``, ``"cls"``, ``"flatten"`` or a
            callable (:mod:`nctransfer.features.pooling`).

    Examples:
        >>> with TapRecorder(model, taps=["layer4.1", "penultimate"]) as rec:  # doctest: +SKIP
        ...     logits = model(x)
        ...     feats = rec.collect()          # {"layer4.1": [B, 512], "penultimate": [B, 512]}
    """

    def __init__(self, model: Any, taps: Any = None, token_pool: str = "mean",
                 sink: Callable[[str, Any], None] | None = None, detach: bool = True, pool: Any = "auto") -> None:
        self.model = model
        self.token_pool = check_token_pool(token_pool)
        self.pool = check_pool(pool)
        if isinstance(taps, (list, tuple)) and taps and all(isinstance(t, Unit) for t in taps):
            self.units = list(taps)
        else:
            self.units = resolve_taps(model, taps)
        if not self.units:
            raise InputValueError("TapRecorder: no taps selected.")
        self.sink = sink
        self.detach = detach
        self._handles: list[Any] = []
        self._out: dict[str, Any] = {}
        self._fired: dict[str, int] = {}

    @property
    def names(self) -> list[str]:
        return [u.name for u in self.units]

    def _record(self, name: str, value: Any) -> None:
        t = first_tensor(value)
        if self.detach:
            t = t.detach()
        pooled = pool_features(t, self.token_pool, name=name, pool=self.pool)
        self._fired[name] = self._fired.get(name, 0) + 1
        if self.sink is not None:
            self.sink(name, pooled)
        else:
            self._out[name] = pooled

    def _make_hook(self, unit: Unit) -> Any:
        name = unit.name
        if unit.kind == "input":
            def pre_hook(module: Any, args: Any, kwargs: Any = None) -> None:
                value = args[0] if args else next(iter((kwargs or {}).values()), None)
                if value is None:
                    raise ShapeError(f"tap {name!r}: the classifier was called without an input tensor.")
                self._record(name, value)
            return unit.module.register_forward_pre_hook(pre_hook, with_kwargs=True)

        def hook(module: Any, args: Any, output: Any) -> None:
            self._record(name, output)
        return unit.module.register_forward_hook(hook)

    def __enter__(self) -> "TapRecorder":
        try:
            for u in self.units:
                self._handles.append(self._make_hook(u))
        except BaseException:
            self.remove()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        self.remove()

    def remove(self) -> None:
        """Remove every hook (idempotent)."""
        handles, self._handles = self._handles, []
        for h in handles:
            h.remove()

    def check_fired(self) -> None:
        """Raise :class:`HookNotFiredError` if some tap was not reached since the last :meth:`collect`."""
        missing = [n for n in self.names if self._fired.get(n, 0) == 0]
        if missing:
            raise HookNotFiredError(
                f"tap(s) {missing} were not reached by the forward pass (modules "
                f"{[u.path for u in self.units if u.name in missing]}); is this the model the taps were selected on?"
            )
        twice = [n for n in self.names if self._fired.get(n, 0) > 1 and self.sink is None]
        if twice:
            raise HookNotFiredError(f"tap(s) {twice} fired more than once in one forward pass (a module used twice, or "
                                    "collect() not called between forwards); record a different module.")

    def collect(self) -> dict[str, Any]:
        """Features of the last forward pass as ``{tap: [B, C]}`` (in tap order) and reset; raises if a hook never
        fired."""
        self.check_fired()
        out = {n: self._out[n] for n in self.names if n in self._out}
        self._out = {}
        self._fired = {}
        return out

    def reset(self) -> None:
        self._out = {}
        self._fired = {}


def _dummy_input(model: Any, input_size: Sequence[int] | None, batch: int = 2) -> Any:
    if input_size is None:
        info = getattr(model, "nctransfer_info", None)
        input_size = tuple(info.input_size) if info is not None else (3, 224, 224)
    if len(input_size) == 2:
        input_size = (3, *input_size)
    try:
        p = next(model.parameters())
        device, dtype = p.device, p.dtype
    except StopIteration:
        device, dtype = torch.device("cpu"), torch.float32
    return torch.zeros((batch, *input_size), device=device, dtype=dtype)


def infer_widths(model: Any, units: Sequence[Unit] | None = None, input_size: Sequence[int] | None = None,
                 token_pool: str = "mean") -> list[Unit]:
    """Dry forward (zeros, batch 2, eval mode, no grad) that fills ``unit.width`` (pooled ``C``) and
    ``unit.out_shape`` for each unit; returns the units. ``input_size``: ``(C, H, W)`` or ``(H, W)``; default the
    model's ``nctransfer_info.input_size``. The model's train/eval mode is restored afterwards.
    """
    units = list(units) if units is not None else discover_units(model, include_penultimate=True)
    shapes: dict[str, tuple[int, ...]] = {}

    def make(u: Unit) -> Any:
        if u.kind == "input":
            def pre(m: Any, args: Any) -> None:
                shapes[u.name] = tuple(first_tensor(args[0]).shape[1:])
            return u.module.register_forward_pre_hook(pre)

        def post(m: Any, args: Any, out: Any) -> None:
            shapes[u.name] = tuple(first_tensor(out).shape[1:])
        return u.module.register_forward_hook(post)

    was_training = model.training
    handles = []
    try:
        handles = [make(u) for u in units]
        model.eval()
        with torch.no_grad():
            model(_dummy_input(model, input_size))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    for u in units:
        if u.name not in shapes:
            raise HookNotFiredError(f"infer_widths: tap {u.name!r} ({u.path}) was not reached by the forward pass.")
        s = shapes[u.name]
        u.out_shape = s
        u.width = int(s[0]) if len(s) in (1, 3, 4) else int(s[-1])
    return units


def tap_widths(model: Any, taps: Any = None, input_size: Sequence[int] | None = None) -> dict[str, int]:
    """``{tap: pooled width}`` for the selected taps (one dry forward)."""
    return {u.name: int(u.width) for u in infer_widths(model, resolve_taps(model, taps), input_size)}
