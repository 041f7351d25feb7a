"""Ray backend of :func:`nctransfer.rank_models`: one task per candidate model, combined on the driver.

Each task loads its model (a name is loaded in the worker; a ``torch.nn.Module`` travels to it), extracts the
features of the training and test splits into the shared feature cache (file-locked, so many workers may share
one directory: :mod:`nctransfer.utils.locking`) and computes the per-model part of every score
(:func:`nctransfer.transferability.ranking.score_candidate`). The driver combines the pool-relative scores
(NCTI, ETran), computes the collapse metrics and the ground truth and evaluates, exactly as the local backend does,
so the results are the same numbers.

Tasks request one CPU, and one GPU when the cluster has GPUs. A task that fails (an error, or its worker
killed) is submitted again up to ``max_retries`` times; every retry is reported in ``results["warnings"]`` and
``results["extraction"][model]["attempts"]``. Ray is an optional extra: ``pip install 'nctransfer[ray]'``.

Launch::

    ray start --head                                   # or an existing cluster
    nctransfer rank --models efficientnet_lite0,efficientnet_lite1,efficientnet_lite2 --data digits \\
        --out runs/rank --backend ray --ray-address auto
"""

from __future__ import annotations

import os
from typing import Any

from nctransfer.stages import ExtractionSettings, ScoringSettings, candidate_entry, extract_model, score_one
from nctransfer.stages.candidates import _load
from nctransfer.utils.ray_tasks import require_ray, run_tasks  # require_ray: re-exported


def _model_task(m: Any, data: Any, taps: Any, extraction: ExtractionSettings, scoring: ScoringSettings,
                pool_size: int) -> tuple[list[Any], dict[str, Any], dict[str, Any]]:
    """One model: load (in the worker when given by name), extract, per-model scores (the stages' extract and
    score-one-candidate steps). Runs in a Ray worker."""
    _load(m, extraction.seed)
    cands, info = extract_model(m, data, taps, extraction, progress=False)
    parts = {}
    for c in cands:
        parts[c.name] = score_one(c.name, candidate_entry(c), scoring, pool_size=pool_size)
        c.model = None  # the driver re-attaches its own model object (no weights shipped back)
        c.stats = None  # nor the d x d statistics (the driver's stages read the features)
    info["worker"] = {"pid": os.getpid(), "node": _node_id()}
    return cands, info, parts


def _node_id() -> str | None:
    try:
        import ray  # optional extra: only ever imported inside a Ray worker

        return ray.get_runtime_context().get_node_id()
    except Exception:  # noqa: BLE001 - informative only
        return None


def extract_and_score(models: list[Any], data: Any, taps: Any, extraction: ExtractionSettings,
                      scoring: ScoringSettings, run: Any, *, address: str | None = None,
                      max_retries: int = 2) -> tuple[list[Any], dict[str, Any], dict[str, Any]]:
    """Run every model's task on Ray; returns ``(candidates in model order, extraction info, score parts)``.
    ``extraction`` and ``scoring`` (the typed settings of :mod:`nctransfer.stages.settings`) travel to the workers.

    Connects to ``address`` (or the running Ray instance, or starts a local one, shut down again at the end).
    """
    pool_size = sum(len(m.taps) for m in models)
    shipped = []
    for m in models:
        # a name is loaded in the worker (seeded like the local backend); an nn.Module travels as it is
        shipped.append(type(m)(label=m.label, spec=m.spec, pretrained=m.pretrained, control=m.control,
                               module=m.module if not isinstance(m.spec, str) else None, taps=list(m.taps)))
    args = [(sm, data, taps, extraction, scoring, pool_size) for sm in shipped]
    bar = run.bar(models, "extract + score (ray)")

    def retried(text: str) -> None:
        if text not in run.warnings:
            run.warnings.append(text)
        run.say(text)

    try:
        results, report = run_tasks(_model_task, args, [m.label for m in models], address=address,
                                    max_retries=max_retries, what="task of model", on_retry=retried,
                                    on_done=lambda i: bar.update(1))
    finally:
        bar.close()
    candidates: list[Any] = []
    info: dict[str, Any] = {}
    parts: dict[str, Any] = {}
    for i, (m, (cands, inf, pts)) in enumerate(zip(models, results)):
        for c in cands:
            c.model = m
        candidates.extend(cands)
        inf["attempts"] = report.attempts[i]
        inf["backend"] = "ray"
        info[m.label] = inf
        parts.update(pts)
    return candidates, info, parts


__all__ = ["extract_and_score", "require_ray"]
