"""Budgeted model selection: score every candidate, then spend a fine-tuning budget by successive halving.

Scores alone are cheap and unreliable; fine-tuning every candidate is reliable and expensive. :func:`select`
does both in proportion:

1. **score** every candidate with a transferability score (default: the recommended score) -- or take scores the
   caller already has;
2. **plan** successive halving (Jamieson & Talwalkar, "Non-stochastic Best Arm Identification and Hyperparameter
   Optimization", AISTATS 2016; Li et al., "Hyperband", JMLR 2018) that fits the budget: the ``n`` best-scored
   candidates enter; round ``i`` runs ``n_i = ceil(n / eta^i)`` of them for ``r_i = r_0 eta^i`` resource units
   (capped at ``max_resource``) while ``n_i >= 2``; the plan's cost ``sum_i n_i r_i`` never exceeds the budget.
   The largest ``n`` whose plan fits with ``r_0 = min_resource`` is used, then the largest ``r_0`` that still
   fits; when not even two candidates fit, the best-scored one is chosen without any run;
3. **run** the rounds: each run is a short fine-tuning of one candidate for ``r_i`` resource units (epochs for the
   built-in runner; SCL FT, full FT or a linear probe), the best ``n_{i+1}`` by test accuracy go on (ties broken
   by the score), and the best of the last round is chosen.

Every finished run is recorded in ``out/select_runs.json`` (written atomically after each run): an interrupted
selection started again with the same ``out`` repeats no finished run. Runs start afresh in every round (a
survivor is not continued from its previous checkpoint), so a run's cost is its own resource.

Example (a synthetic runner whose accuracy grows with the resource; the score ranks the best model last):
    >>> truth = {"a": 0.70, "b": 0.90, "c": 0.80, "d": 0.60}
    >>> run = lambda name, r: truth[name] - 0.1 / r
    >>> res = successive_halving({"a": 4.0, "b": 1.0, "c": 3.0, "d": 2.0}, run, budget=14)
    >>> res.chosen, res.cost, [(s["resource"], s["kept"]) for s in res.stages]
    ('b', 8, [(1, ['b', 'c']), (2, ['b'])])
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from nctransfer.exceptions import InputValueError

LEDGER = "select_runs.json"


@dataclass(frozen=True)
class HalvingPlan:
    """``entrants``: candidates that enter (best-scored first); ``rounds``: ``(n_i, r_i)`` per round; ``cost``."""

    entrants: int
    rounds: tuple[tuple[int, int], ...]
    cost: int


@dataclass
class SelectResult:
    """The outcome of :func:`select` / :func:`successive_halving`.

    Attributes:
        chosen: the selected candidate.
        scores: the prior score of every candidate.
        plan: the :class:`HalvingPlan` that was run.
        stages: per round ``{"resource", "candidates", "accuracy": {name: acc}, "kept": [...]}``.
        runs: every run ``{"candidate", "resource", "accuracy", "cost", "seconds", "reused"}`` in order.
        cost: resource units spent (sum over runs, reused runs included); never above ``budget``.
        budget: the budget.
        unit: what a resource unit is (e.g. ``"epoch"``).
        score_method: the score that ordered the candidates.
    """

    chosen: str
    scores: dict[str, float]
    plan: HalvingPlan
    stages: list[dict[str, Any]] = field(default_factory=list)
    runs: list[dict[str, Any]] = field(default_factory=list)
    cost: int = 0
    budget: float = 0.0
    unit: str = "unit"
    score_method: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["plan"] = {"entrants": self.plan.entrants, "rounds": [list(r) for r in self.plan.rounds],
                     "cost": self.plan.cost}
        return d


def _rounds(n: int, r0: int, eta: int, max_resource: int | None) -> list[tuple[int, int]]:
    out, i = [], 0
    while True:
        ni = math.ceil(n / eta ** i)
        if ni < 2:
            break
        ri = r0 * eta ** i
        if max_resource is not None:
            ri = min(ri, int(max_resource))
        out.append((ni, ri))
        i += 1
    return out


def plan_halving(n_candidates: int, budget: float, *, eta: int = 2, min_resource: int = 1,
                 max_resource: int | None = None) -> HalvingPlan:
    """The successive-halving plan for ``n_candidates`` that fits ``budget`` (see the module docstring)."""
    if int(eta) != eta or eta < 2:
        raise InputValueError(f"select: eta must be an integer >= 2; got {eta!r}.")
    if int(min_resource) != min_resource or min_resource < 1:
        raise InputValueError(f"select: min_resource must be a positive integer; got {min_resource!r}.")
    if max_resource is not None and (int(max_resource) != max_resource or max_resource < min_resource):
        raise InputValueError(f"select: max_resource must be an integer >= min_resource; got {max_resource!r}.")
    try:
        budget = float(budget)
    except (TypeError, ValueError):
        raise InputValueError(f"select: budget must be a number of resource units; got {budget!r}.") from None
    if not budget >= 0 or math.isinf(budget):
        raise InputValueError(f"select: budget must be a finite number >= 0; got {budget!r}.")
    eta, min_resource = int(eta), int(min_resource)

    def cost(rounds: list[tuple[int, int]]) -> int:
        return sum(n * r for n, r in rounds)

    for n in range(int(n_candidates), 1, -1):
        if cost(_rounds(n, min_resource, eta, max_resource)) > budget:
            continue
        r0 = min_resource
        while True:  # grow r0 while the plan fits and the cap still lets it grow
            nxt = _rounds(n, r0 + 1, eta, max_resource)
            if cost(nxt) > budget or nxt == _rounds(n, r0, eta, max_resource):
                break
            r0 += 1
        rounds = _rounds(n, r0, eta, max_resource)
        return HalvingPlan(n, tuple(rounds), cost(rounds))
    return HalvingPlan(min(int(n_candidates), 1), (), 0)


def _load_ledger(path: Path | None) -> dict[str, dict[str, Any]]:
    if path is None or not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): v for k, v in (data.get("runs") or {}).items()} if isinstance(data, dict) else {}


def _save_ledger(path: Path | None, runs: Mapping[str, Any]) -> None:
    if path is None:
        return
    from nctransfer.utils.io import write_json_atomic

    write_json_atomic(path, {"schema": "nctransfer.select_runs/1", "runs": dict(runs)})


def successive_halving(scores: Mapping[str, float], runner: Callable[[str, int], float], budget: float, *,
                       eta: int = 2, min_resource: int = 1, max_resource: int | None = None,
                       out: str | Path | None = None, unit: str = "unit", score_method: str | None = None,
                       progress: bool = False) -> SelectResult:
    """Successive halving over candidates ordered by ``scores`` with ``runner(name, resource) -> accuracy``.

    Args:
        scores: ``{candidate: prior score}`` (higher = more promising; NaN scores enter last).
        runner: trains/evaluates one candidate for ``resource`` units and returns its accuracy.
        budget: total resource units the runs may use (never exceeded).
        eta, min_resource, max_resource: the halving rate, the smallest run and the cap of one run.
        out: directory of the run ledger (resume without repeating finished runs); ``None``: no ledger.
        unit: name of a resource unit, for the record.
        score_method: name of the score, for the record.

    Returns:
        :class:`SelectResult`.
    """
    if not scores:
        raise InputValueError("select: no candidates.")
    names = sorted(scores, key=lambda n: (-(scores[n] if scores[n] == scores[n] else -math.inf), list(scores).index(n)))
    plan = plan_halving(len(names), budget, eta=eta, min_resource=min_resource, max_resource=max_resource)
    ledger_path = None
    if out is not None:
        Path(out).mkdir(parents=True, exist_ok=True)
        ledger_path = Path(out) / LEDGER
    ledger = _load_ledger(ledger_path)
    res = SelectResult(chosen=names[0], scores={n: float(scores[n]) for n in names}, plan=plan, budget=float(budget),
                       unit=unit, score_method=score_method)
    alive = names[:plan.entrants]
    rank_of = {n: i for i, n in enumerate(names)}
    for i, (n_i, r_i) in enumerate(plan.rounds):
        alive = alive[:n_i]
        acc: dict[str, float] = {}
        for name in alive:
            key = f"{name}|{r_i}"
            hit = ledger.get(key)
            if hit is None:
                t0 = time.perf_counter()
                value = float(runner(name, r_i))
                hit = {"candidate": name, "resource": r_i, "accuracy": value, "cost": r_i,
                       "seconds": time.perf_counter() - t0}
                ledger[key] = hit
                _save_ledger(ledger_path, ledger)
                res.runs.append({**hit, "reused": False})
            else:
                res.runs.append({**hit, "reused": True})
            res.cost += r_i
            acc[name] = float(hit["accuracy"])
        order = sorted(alive, key=lambda n: (-(acc[n] if acc[n] == acc[n] else -math.inf), rank_of[n]))
        keep = order[:plan.rounds[i + 1][0]] if i + 1 < len(plan.rounds) else order[:1]
        res.stages.append({"round": i, "resource": r_i, "candidates": list(alive), "accuracy": acc,
                           "kept": list(keep)})
        alive = keep
    res.chosen = alive[0]
    if res.cost > budget:  # the plan guarantees this; kept as a hard check
        raise RuntimeError(f"select: spent {res.cost} > budget {budget}")
    return res


def select(models: Any, data: Any = None, *, budget: float, target: str = "scl_ft", score: str | None = None,
           scores: Mapping[str, float] | None = None, eta: int = 2, min_resource: int = 1,
           max_resource: int | None = None, out: str | Path | None = None, per_class: int | None = 50,
           test_per_class: int | None = 50, image_size: int | None = None,
           finetune_options: Mapping[str, Any] | None = None, seed: int = 0,
           runner: Callable[[str, int], float] | None = None, progress: bool = True,
           rank_options: Mapping[str, Any] | None = None) -> SelectResult:
    """Choose the best of ``models`` for ``data`` within a fine-tuning ``budget`` (in epochs).

    Args:
        models: model names (list or comma-separated string), as :func:`~nctransfer.pipeline.rank_models`.
        data: dataset spec (as :func:`~nctransfer.pipeline.rank_models`).
        budget: total fine-tuning epochs over all runs (e.g. 20% of ``len(models) x full epochs``).
        target: the fine-tuning method of the runs: ``"scl_ft"`` (default), ``"full_ft"``, ``"layer_ft"`` or
            ``"linear_probe"`` (when a linear probe is what will be deployed).
        score: the transferability score that orders the candidates (default: the recommended score).
        scores: precomputed ``{model: score}`` (skips the scoring stage).
        eta, min_resource, max_resource: successive-halving rate, shortest run and longest run (epochs).
        out: directory for the run ledger (``select_runs.json``, resume) and each run's fine-tuning output.
        per_class, test_per_class: training / test images per class (seeded) for scoring and the runs.
        image_size: input resolution of scoring and runs (``None``: each model's own).
        finetune_options: further :func:`nctransfer.finetune.finetune` options (e.g. ``unit``, ``lr``).
        seed: seed of subsampling and fine-tuning.
        runner: replace the built-in fine-tuning runner: ``runner(model, epochs) -> accuracy``.
        rank_options: further :func:`~nctransfer.pipeline.rank_models` options for the scoring stage.

    Returns:
        :class:`SelectResult` (``chosen``, ``stages``, ``runs``, ``cost``...).
    """
    from nctransfer.pipeline.core import rank_models
    from nctransfer.pipeline.recommended import DEFAULT_RECOMMENDED

    if isinstance(models, str):
        models = [m.strip() for m in models.split(",") if m.strip()]
    models = [str(m) for m in models]
    if len(models) < 1:
        raise InputValueError("select: give at least one model.")
    method = score or DEFAULT_RECOMMENDED
    if scores is None:
        res = rank_models(models, data, methods=[method], recommended_score=method, per_class=per_class,
                          test_per_class=test_per_class, image_size=image_size, seed=seed, progress=progress,
                          **dict(rank_options or {}))
        scores = {n: (v.get(method) if v.get(method) is not None else float("nan"))
                  for n, v in res["scores"].items()}
    if runner is None:
        opts = dict(finetune_options or {})
        if image_size is not None:
            opts.setdefault("image_size", image_size)
        runner = _finetune_runner(data, target, out, per_class, test_per_class, seed, opts, progress)
    return successive_halving(scores, runner, budget, eta=eta, min_resource=min_resource,
                              max_resource=max_resource, out=out, unit="epoch", score_method=method,
                              progress=progress)


def _finetune_runner(data: Any, target: str, out: str | Path | None, per_class: int | None,
                     test_per_class: int | None, seed: int, options: Mapping[str, Any] | None,
                     progress: bool) -> Callable[[str, int], float]:
    def run(name: str, epochs: int) -> float:
        from nctransfer.finetune import finetune

        run_dir = None if out is None else Path(out) / "runs" / f"{name.replace(':', '_').replace('/', '_')}_e{epochs}"
        opts = {"method": target, "epochs": int(epochs), "seed": seed, "progress": progress, **dict(options or {})}
        pretrained = not name.startswith("random:")
        model = name.split(":", 1)[1] if name.startswith("random:") else name
        r = finetune(model, data, data, out_dir=run_dir, resume=run_dir is not None, per_class=per_class,
                     test_per_class=test_per_class, pretrained=pretrained, **opts)
        return float(r.test_accuracy)
    return run


__all__ = ["HalvingPlan", "SelectResult", "plan_halving", "successive_halving", "select"]
