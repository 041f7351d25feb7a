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

from nctransfer.exceptions import NCTransferError


def require_ray() -> Any:
    """Import Ray or raise a clear error naming the extra to install."""
    from nctransfer.utils.extras import require_extra

    require_extra("ray", "the Ray backend (backend='ray', --backend ray)", ["ray"])
    import ray

    return ray


def _model_task(m: Any, data: Any, taps: Any, cfg: dict[str, Any], methods: Any, options: Any, pool_size: int,
                seed: int) -> tuple[list[Any], dict[str, Any], dict[str, Any]]:
    """One model: load (in the worker when given by name), extract, per-model scores. Runs in a Ray worker."""
    from nctransfer.pipeline.core import _extract_model, _load
    from nctransfer.transferability.ranking import resolve_methods, score_candidate

    _load(m, seed)
    cands, info = _extract_model(m, data, taps, cfg, progress=False)
    infos, opts, _ = resolve_methods(methods, options)
    parts = {}
    for c in cands:
        entry = (c.X_train, c.y_train, c.probs) if c.probs is not None else (c.X_train, c.y_train)
        parts[c.name] = score_candidate(c.name, entry, infos, opts, pool_size=pool_size)
        c.model = None  # the driver re-attaches its own model object (no weights shipped back)
    info["worker"] = {"pid": os.getpid(), "node": _node_id()}
    return cands, info, parts


def _node_id() -> str | None:
    try:
        import ray

        return ray.get_runtime_context().get_node_id()
    except Exception:  # noqa: BLE001 - informative only
        return None


def extract_and_score(models: list[Any], data: Any, taps: Any, cfg: dict[str, Any], run: Any, *,
                      address: str | None = None, max_retries: int = 2) -> tuple[list[Any], dict[str, Any],
                                                                                  dict[str, Any]]:
    """Run every model's task on Ray; returns ``(candidates in model order, extraction info, score parts)``.

    Connects to ``address`` (or the running Ray instance, or starts a local one, shut down again at the end).
    """
    ray = require_ray()
    started = False
    if not ray.is_initialized():
        ray.init(address=address, ignore_reinit_error=True, log_to_driver=False, include_dashboard=False)
        started = True
    try:
        gpus = 1 if float(ray.cluster_resources().get("GPU", 0)) >= 1 else 0
        remote = ray.remote(_model_task).options(num_cpus=1, num_gpus=gpus, max_retries=0)
        pool_size = sum(len(m.taps) for m in models)
        shipped = []
        for m in models:
            # a name is loaded in the worker (seeded like the local backend); an nn.Module travels as it is
            shipped.append(type(m)(label=m.label, spec=m.spec, pretrained=m.pretrained, control=m.control,
                                   module=m.module if not isinstance(m.spec, str) else None, taps=list(m.taps)))
        args = [(sm, data, taps, cfg, cfg["methods"], cfg["method_options"], pool_size, cfg["seed"])
                for sm in shipped]
        attempts = {m.label: 1 for m in models}
        pending = {remote.remote(*a): i for i, a in enumerate(args)}
        done: dict[int, Any] = {}
        bar = run.bar(models, "extract + score (ray)")
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            ref = ready[0]
            i = pending.pop(ref)
            label = models[i].label
            try:
                done[i] = ray.get(ref)
                bar.update(1)
            except Exception as exc:  # noqa: BLE001 - RayTaskError, WorkerCrashedError, ... : retry, then give up
                cause = getattr(exc, "cause", None) or exc
                msg = f"{type(cause).__name__}: {str(cause).strip().splitlines()[-1] if str(cause).strip() else ''}"
                if attempts[label] > max_retries:
                    if isinstance(cause, NCTransferError):
                        raise cause from None
                    raise RuntimeError(f"ray backend: the task of model {label!r} failed {attempts[label]} time(s); "
                                       f"last error: {msg}") from exc
                attempts[label] += 1
                text = (f"ray: the task of model {label!r} failed ({msg}); retried (attempt {attempts[label]} of "
                        f"{max_retries + 1}).")
                if text not in run.warnings:
                    run.warnings.append(text)
                run.say(text)
                pending[remote.remote(*args[i])] = i
        bar.close()
    finally:
        if started:
            ray.shutdown()
    candidates: list[Any] = []
    info: dict[str, Any] = {}
    parts: dict[str, Any] = {}
    for i, m in enumerate(models):
        cands, inf, pts = done[i]
        for c in cands:
            c.model = m
        candidates.extend(cands)
        inf["attempts"] = attempts[m.label]
        inf["backend"] = "ray"
        info[m.label] = inf
        parts.update(pts)
    return candidates, info, parts


__all__ = ["extract_and_score", "require_ray"]
