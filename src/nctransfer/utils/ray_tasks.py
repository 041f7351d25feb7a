"""Independent tasks on Ray with retries that are reported (the Ray backend of ``rank_models``, ``finetune-sweep``,
``study`` and the fine-tuning runs of ``select``).

:func:`run_tasks` submits ``fn(*args)`` once per argument tuple as a Ray task (one CPU; one GPU when the cluster
has GPUs and ``gpus="auto"``), collects the results in submission order, and re-submits a task that failed (its
function raised, or its worker process died) up to ``max_retries`` times, reporting each retry through
``on_retry``. It connects to ``address`` or to the running Ray instance, or starts a local one that it shuts down
again. Ray is an optional extra (``pip install 'nctransfer[ray]'``); :func:`require_ray` says so when it is missing.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

from nctransfer.exceptions import NCTransferError
from nctransfer.utils.extras import require_extra


def require_ray(part: str = "the Ray backend (backend='ray', --backend ray)") -> Any:
    """Import and return ``ray``, or raise :class:`~nctransfer.utils.extras.MissingExtraError` naming the extra."""
    require_extra("ray", part, ["ray"])
    import ray  # optional extra: imported only when the Ray backend is asked for

    return ray


@contextlib.contextmanager
def ray_session(address: str | None = None) -> Iterator[Any]:
    """``ray`` connected for the duration of the block: to the running instance when there is one (left running),
    else to ``address`` (``None``: a new local instance), shut down again at the end. Several :func:`run_tasks`
    calls inside one block share one instance (a runner of several rounds starts Ray once)."""
    ray = require_ray()
    started = False
    if not ray.is_initialized():
        ray.init(address=address, ignore_reinit_error=True, log_to_driver=False, include_dashboard=False)
        started = True
    try:
        yield ray
    finally:
        if started:
            ray.shutdown()


@dataclass
class TaskReport:
    """What :func:`run_tasks` did: ``attempts[i]`` runs of task ``i`` and one message per retry."""

    attempts: list[int]
    retries: list[str] = field(default_factory=list)


def _message(exc: BaseException) -> str:
    cause = getattr(exc, "cause", None) or exc
    text = str(cause).strip()
    return f"{type(cause).__name__}: {text.splitlines()[-1] if text else ''}"


def run_tasks(fn: Callable[..., Any], args: Sequence[tuple[Any, ...]], labels: Sequence[str], *,
              address: str | None = None, max_retries: int = 2, gpus: str | float = "auto", num_cpus: float = 1,
              what: str = "task", on_retry: Callable[[str], Any] | None = None,
              on_done: Callable[[int], Any] | None = None,
              on_result: Callable[[int, Any], Any] | None = None) -> tuple[list[Any], TaskReport]:
    """Run ``fn(*a)`` for every ``a`` in ``args`` as Ray tasks; results in the order of ``args``.

    Args:
        fn: a picklable function (module level); it runs in a Ray worker.
        args, labels: one argument tuple and one label (for messages) per task.
        address: Ray address (``None``: the running instance, or a new local one that is shut down at the end).
        max_retries: re-submissions of a failed task; after that its last error is raised (an nctransfer error as
            it is, anything else as a ``RuntimeError`` naming the task).
        gpus: GPUs per task; ``"auto"``: 1 when the cluster has at least one GPU, else 0.
        num_cpus: CPUs per task.
        what: the task's kind in messages (``"model"``, ``"run"``).
        on_retry: called with a one-line message for every retry; on_done: called with the index of each task
            that finished; on_result: called with the index and the result of each task as it finishes (in the
            driver, in completion order: e.g. to record finished work before the others end).

    Returns:
        ``(results, TaskReport)``.
    """
    with ray_session(address) as ray:
        n_gpus = (1 if float(ray.cluster_resources().get("GPU", 0)) >= 1 else 0) if gpus == "auto" else float(gpus)
        remote = ray.remote(fn).options(num_cpus=num_cpus, num_gpus=n_gpus, max_retries=0)
        report = TaskReport(attempts=[1] * len(args))
        pending = {remote.remote(*a): i for i, a in enumerate(args)}
        done: dict[int, Any] = {}
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            i = pending.pop(ready[0])
            try:
                done[i] = ray.get(ready[0])
            except Exception as exc:  # noqa: BLE001 - RayTaskError, WorkerCrashedError, ...: retried, then raised
                cause = getattr(exc, "cause", None)
                if report.attempts[i] > max_retries:
                    if isinstance(cause, NCTransferError):
                        raise cause from None
                    raise RuntimeError(f"ray: the {what} {labels[i]!r} failed {report.attempts[i]} time(s); last "
                                       f"error: {_message(exc)}") from exc
                report.attempts[i] += 1
                text = (f"ray: the {what} {labels[i]!r} failed ({_message(exc)}); retried (attempt "
                        f"{report.attempts[i]} of {max_retries + 1}).")
                report.retries.append(text)
                if on_retry is not None:
                    on_retry(text)
                pending[remote.remote(*args[i])] = i
                continue
            if on_result is not None:
                on_result(i, done[i])
            if on_done is not None:
                on_done(i)
        return [done[i] for i in range(len(args))], report
