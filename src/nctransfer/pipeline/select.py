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

With ``backend="ray"`` the runs of one round, which are independent, are Ray tasks
(:func:`nctransfer.utils.ray_tasks.run_tasks`: one CPU, one GPU per task when the cluster has GPUs; a failed
task is re-run up to ``max_retries`` times and every retry is listed in ``SelectResult.warnings``), and the
scoring stage is :func:`~nctransfer.pipeline.rank_models`'s Ray backend. Each run is seeded as in this process, so
the accuracies, the rounds and the choice equal the local backend's; the ledger records each run as it finishes.
The settings are a :class:`~nctransfer.pipeline.select_config.SelectConfig`.

Example (a synthetic runner whose accuracy grows with the resource; the score ranks the best model last):
    >>> truth = {"a": 0.70, "b": 0.90, "c": 0.80, "d": 0.60}
    >>> run = lambda name, r: truth[name] - 0.1 / r
    >>> res = successive_halving({"a": 4.0, "b": 1.0, "c": 3.0, "d": 2.0}, run, budget=14)
    >>> res.chosen, res.cost, [(s["resource"], s["kept"]) for s in res.stages]
    ('b', 8, [(1, ['b', 'c']), (2, ['b'])])
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from nctransfer.exceptions import InputValueError
from nctransfer.finetune import finetune
from nctransfer.pipeline.core import rank_models
from nctransfer.pipeline.recommended import DEFAULT_RECOMMENDED
from nctransfer.pipeline.select_config import SelectConfig, check_budget
from nctransfer.utils.io import write_json_atomic
from nctransfer.utils.ray_tasks import ray_session, run_tasks

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
        config: the resolved settings (:class:`~nctransfer.pipeline.select_config.SelectConfig` as a dict, with
            ``models`` and ``data``) when made by :func:`select`.
        warnings: one line per retried Ray task (``backend="ray"``).
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
    config: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

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
    budget = check_budget(budget)
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
    write_json_atomic(path, {"schema": "nctransfer.select_runs/1", "runs": dict(runs)})


def _timed_run(runner: Callable[[str, int], float], name: str, resource: int) -> tuple[float, float]:
    """``(runner(name, resource), seconds)``: one run, in this process or in a Ray worker."""
    t0 = time.perf_counter()
    value = float(runner(name, resource))
    return value, time.perf_counter() - t0


def _run_round(jobs: list[tuple[str, int]], runner: Callable[[str, int], float], backend: str,
               record: Callable[[int, tuple[float, float]], None], *, ray_address: str | None, max_retries: int,
               on_retry: Callable[[str], Any]) -> None:
    """Run the unfinished runs ``jobs`` of one round; ``record(i, (accuracy, seconds))`` as each one finishes."""
    if backend == "ray" and jobs:
        shipped = runner.for_worker() if isinstance(runner, FinetuneRunner) else runner
        run_tasks(_timed_run, [(shipped, name, r) for name, r in jobs], [f"{name} ({r} epoch(s))" for name, r in jobs],
                  address=ray_address, max_retries=max_retries, what="fine-tuning run", on_retry=on_retry,
                  on_result=record)
        return
    for i, (name, r) in enumerate(jobs):
        record(i, _timed_run(runner, name, r))


def successive_halving(scores: Mapping[str, float], runner: Callable[[str, int], float], budget: float, *,
                       eta: int = 2, min_resource: int = 1, max_resource: int | None = None,
                       out: str | Path | None = None, unit: str = "unit", score_method: str | None = None,
                       progress: bool = False, backend: str = "local", ray_address: str | None = None,
                       max_retries: int = 2) -> SelectResult:
    """Successive halving over candidates ordered by ``scores`` with ``runner(name, resource) -> accuracy``.

    Args:
        scores: ``{candidate: prior score}`` (higher = more promising; NaN scores enter last).
        runner: trains/evaluates one candidate for ``resource`` units and returns its accuracy.
        budget: total resource units the runs may use (never exceeded).
        eta, min_resource, max_resource: the halving rate, the smallest run and the cap of one run.
        out: directory of the run ledger (resume without repeating finished runs); ``None``: no ledger.
        unit: name of a resource unit, for the record.
        score_method: name of the score, for the record.
        backend: ``"local"`` (one run after the other) or ``"ray"``: the unfinished runs of a round are Ray tasks
            (``runner`` must be picklable; the built-in fine-tuning runner is), recorded as each one finishes.
        ray_address, max_retries: the Ray cluster (``None``: the running instance or a new local one) and the
            re-runs of a failed task (each one listed in ``SelectResult.warnings``).

    Returns:
        :class:`SelectResult`.
    """
    if not scores:
        raise InputValueError("select: no candidates.")
    if backend not in ("local", "ray"):
        raise InputValueError(f"select: backend must be 'local' or 'ray'; got {backend!r}.")
    names = sorted(scores, key=lambda n: (-(scores[n] if scores[n] == scores[n] else -math.inf), list(scores).index(n)))
    plan = plan_halving(len(names), budget, eta=eta, min_resource=min_resource, max_resource=max_resource)
    ledger_path = None
    if out is not None:
        Path(out).mkdir(parents=True, exist_ok=True)
        ledger_path = Path(out) / LEDGER
    ledger = _load_ledger(ledger_path)
    res = SelectResult(chosen=names[0], scores={n: float(scores[n]) for n in names}, plan=plan, budget=float(budget),
                       unit=unit, score_method=score_method)

    def retried(text: str) -> None:
        res.warnings.append(text)
        warnings.warn(text, RuntimeWarning, stacklevel=4)

    alive = names[:plan.entrants]
    rank_of = {n: i for i, n in enumerate(names)}
    for i, (n_i, r_i) in enumerate(plan.rounds):
        alive = alive[:n_i]
        todo = [(name, r_i) for name in alive if f"{name}|{r_i}" not in ledger]
        fresh: set[str] = set()

        def record(j: int, result: tuple[float, float], todo: list[tuple[str, int]] = todo,
                   fresh: set[str] = fresh) -> None:
            name, r = todo[j]
            value, seconds = result
            ledger[f"{name}|{r}"] = {"candidate": name, "resource": r, "accuracy": float(value), "cost": r,
                                     "seconds": float(seconds)}
            fresh.add(name)
            _save_ledger(ledger_path, ledger)

        _run_round(todo, runner, backend, record, ray_address=ray_address, max_retries=max_retries,
                   on_retry=retried)
        acc: dict[str, float] = {}
        for name in alive:
            hit = ledger[f"{name}|{r_i}"]
            res.runs.append({**hit, "reused": name not in fresh})
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


def select(models: Any, data: Any = None, *, budget: float | None = None, target: str = "scl_ft",
           score: str | None = None, scores: Mapping[str, float] | None = None, eta: int = 2, min_resource: int = 1,
           max_resource: int | None = None, out: str | Path | None = None, per_class: int | None = 50,
           test_per_class: int | None = 50, image_size: int | None = None,
           finetune_options: Mapping[str, Any] | None = None, seed: int = 0,
           runner: Callable[[str, int], float] | None = None, progress: bool = True,
           rank_options: Mapping[str, Any] | None = None, backend: str = "local", ray_address: str | None = None,
           max_retries: int = 2, config: SelectConfig | Mapping[str, Any] | None = None) -> SelectResult:
    """Choose the best of ``models`` for ``data`` within a fine-tuning ``budget`` (in epochs).

    Args:
        models: model names (list or comma-separated string), as :func:`~nctransfer.pipeline.rank_models`.
        data: dataset spec (as :func:`~nctransfer.pipeline.rank_models`).
        budget: total fine-tuning epochs over all runs (e.g. 20% of ``len(models) x full epochs``); required
            (here or in ``config``).
        target: the fine-tuning method of the runs: ``"scl_ft"`` (default), ``"full_ft"``, ``"layer_ft"`` or
            ``"linear_probe"`` (when a linear probe is what will be deployed).
        score: the transferability score that orders the candidates (default: the recommended score).
        scores: precomputed ``{model: score}`` (skips the scoring stage).
        eta, min_resource, max_resource: successive-halving rate, shortest run and longest run (epochs).
        out: directory for the run ledger (``select_runs.json``, resume) and each run's fine-tuning output; with
            ``backend="ray"`` on several machines it must be on a shared file system.
        per_class, test_per_class: training / test images per class (seeded) for scoring and the runs.
        image_size: input resolution of scoring and runs (``None``: each model's own).
        finetune_options: further :func:`nctransfer.finetune.finetune` options (e.g. ``unit``, ``lr``).
        seed: seed of subsampling and fine-tuning.
        runner: replace the built-in fine-tuning runner: ``runner(model, epochs) -> accuracy`` (picklable for
            ``backend="ray"``).
        rank_options: further :func:`~nctransfer.pipeline.rank_models` options for the scoring stage.
        backend: ``"local"`` or ``"ray"``: each model's scoring is one Ray task (the Ray backend of
            ``rank_models``) and every unfinished fine-tuning run of a round is one Ray task; the results equal
            the local backend's (``pip install 'nctransfer[ray]'``).
        ray_address: Ray cluster address (``None``: the running instance, or a new local one, started once for the
            whole selection and shut down at its end).
        max_retries: Ray backend: re-runs of a failed task (each one listed in ``SelectResult.warnings``).
        config: a :class:`~nctransfer.pipeline.select_config.SelectConfig` (or its dict) holding every setting
            above; keywords that differ from their defaults are applied on top of it.

    Returns:
        :class:`SelectResult` (``chosen``, ``stages``, ``runs``, ``cost``, ``config``...).
    """
    if isinstance(config, Mapping):
        config = SelectConfig.from_dict(config)
    cfg = SelectConfig.from_call(
        config, budget=budget, target=target, score=score, eta=eta, min_resource=min_resource,
        max_resource=max_resource, per_class=per_class, test_per_class=test_per_class, image_size=image_size,
        finetune_options=finetune_options, seed=seed, progress=progress, rank_options=rank_options,
        backend=backend, ray_address=ray_address, max_retries=max_retries)
    if isinstance(models, str):
        models = [m.strip() for m in models.split(",") if m.strip()]
    models = [str(m) for m in models]
    if len(models) < 1:
        raise InputValueError("select: give at least one model.")
    method = cfg.score or DEFAULT_RECOMMENDED
    record = {"models": models, "data": os.fspath(data) if isinstance(data, (str, os.PathLike)) else
              type(data).__name__, **cfg.to_dict()}
    session = ray_session(cfg.ray_address) if cfg.backend == "ray" else contextlib.nullcontext()
    with session:  # Ray: one instance for the scoring and every round
        if scores is None:
            rank_opts = {"backend": cfg.backend, "ray_address": cfg.ray_address, "max_retries": cfg.max_retries,
                         **cfg.rank_options}
            ranked = rank_models(models, data, methods=[method], recommended_score=method, per_class=cfg.per_class,
                                 test_per_class=cfg.test_per_class, image_size=cfg.image_size, seed=cfg.seed,
                                 progress=cfg.progress, **rank_opts)
            scores = {n: (v.get(method) if v.get(method) is not None else float("nan"))
                      for n, v in ranked["scores"].items()}
        if runner is None:
            opts = dict(cfg.finetune_options)
            if cfg.image_size is not None:
                opts.setdefault("image_size", cfg.image_size)
            runner = FinetuneRunner(data, cfg.target, None if out is None else str(out), cfg.per_class,
                                    cfg.test_per_class, cfg.seed, opts, cfg.progress)
        res = successive_halving(scores, runner, cfg.budget, eta=cfg.eta, min_resource=cfg.min_resource,
                                 max_resource=cfg.max_resource, out=out, unit="epoch", score_method=method,
                                 progress=cfg.progress, backend=cfg.backend, ray_address=cfg.ray_address,
                                 max_retries=cfg.max_retries)
    res.config = record
    return res


@dataclass
class FinetuneRunner:
    """The built-in runner of :func:`select`: ``runner(model, epochs) -> test accuracy`` of one fine-tuning run
    (:func:`nctransfer.finetune.finetune` of a freshly loaded ``model``, seeded, output in
    ``out/runs/<model>_e<epochs>``). A plain dataclass, so that it travels to Ray workers."""

    data: Any
    target: str
    out: str | None
    per_class: int | None
    test_per_class: int | None
    seed: int
    options: dict[str, Any]
    progress: bool

    def for_worker(self) -> "FinetuneRunner":
        """The runner shipped to a Ray worker (no progress bars there)."""
        return dataclasses.replace(self, progress=False)

    def run_dir(self, name: str, epochs: int) -> Path | None:
        return None if self.out is None else Path(self.out) / "runs" / \
            f"{name.replace(':', '_').replace('/', '_')}_e{epochs}"

    def __call__(self, name: str, epochs: int) -> float:
        run_dir = self.run_dir(name, epochs)
        opts = {"method": self.target, "epochs": int(epochs), "seed": self.seed, "progress": self.progress,
                **self.options}
        pretrained = not name.startswith("random:")
        model = name.split(":", 1)[1] if name.startswith("random:") else name
        r = finetune(model, self.data, self.data, out_dir=run_dir, resume=run_dir is not None,
                     per_class=self.per_class, test_per_class=self.test_per_class, pretrained=pretrained, **opts)
        return float(r.test_accuracy)


__all__ = ["HalvingPlan", "SelectResult", "SelectConfig", "FinetuneRunner", "plan_halving", "successive_halving",
           "select"]
