"""Pre-training study runner (docs/methods.md#pretraining; Li et al., TMLR 2024, section 3.1, figures 2-5, table 1).

For every recipe of a :class:`~nctransfer.pretrain.grid.StudyGrid`:

1. pre-train it on the source training subset (:func:`~nctransfer.pretrain.trainer.pretrain`, checkpointed under
   ``OUT/runs/<recipe>/checkpoint.pt``);
2. on the **source training data** (clean, normalised; the same images it was trained on) record every collapse
   metric of :func:`nctransfer.metrics.compute_all` at every tap of the encoder (its blocks, then
   ``penultimate`` = the encoder output) -- progressive collapse, Li et al., TMLR 2024, figure 2; plus the source classifier's
   train/test accuracy;
3. on each **target**: the linear-probe accuracy of the frozen encoder features (docs/methods.md#finetuning; the transfer
   accuracy), every collapse metric of the target training features at every tap (NC1 on the target: Li et al., TMLR 2024
   figure 5), and every transferability score of ``nctransfer.transferability`` on the target training features
   (LEEP / NCE with the source classifier's softmax when the recipe trains one; pool-level scores such as NCTI are
   combined across the recipes at the end);
4. write ``OUT/runs/<recipe>/result.json`` atomically.

Finished recipes are skipped when the study runs again (same recipe fingerprint, same data settings); a recipe
interrupted mid-training resumes from its last epoch. After every recipe ``OUT/study.json`` and ``OUT/study.csv``
are rewritten, and at the end the figures (:mod:`nctransfer.pretrain.plots`).

The study is split in four modules: its settings (:mod:`nctransfer.pretrain.study_config`), the evaluation of one
pre-trained model (:mod:`nctransfer.pretrain.study_eval`), running and resuming the grid (here), and the pool's
scores and tables (:mod:`nctransfer.pretrain.study_tables`). Every name stays importable from this module.
"""

from __future__ import annotations

import json
import time
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, ContextManager

import torch
from tqdm.auto import tqdm

from nctransfer.exceptions import InputValueError
from nctransfer.pretrain.datasets import StudyData, load_study_data
from nctransfer.pretrain.grid import StudyGrid
from nctransfer.pretrain.plots import write_study_plots
from nctransfer.pretrain.recipe import Recipe
from nctransfer.pretrain.study_config import RESULT_FORMAT, StudyConfig, StudyResult
from nctransfer.pretrain.study_eval import (  # the evaluation of one model (re-exported: older imports)
    MAX_SAMPLE_VALUES,
    PENULTIMATE,
    _accuracy,  # noqa: F401
    _collapse,  # noqa: F401
    _tap_features,  # noqa: F401
    evaluate_model,
    evaluate_source,
    evaluate_target,
    transfer_scores,
)
from nctransfer.pretrain.study_tables import (  # the pool's scores and the tables (re-exported: older imports)
    _RECIPE_COLUMNS,  # noqa: F401
    _fmt,  # noqa: F401
    combine_pool_scores,
    flat_rows,
    pool_table,
    write_tables,
)
from nctransfer.pretrain.trainer import PretrainedModel, _read_checkpoint, pretrain
from nctransfer.utils.io import write_json_atomic
from nctransfer.utils.ray_tasks import require_ray, run_tasks
from nctransfer.utils.repro import environment_stamp
from nctransfer.utils.threads import limit_threads as _limit_threads

_write_tables, _pool_table = write_tables, pool_table  # the names before the split


def _load_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def _check_study_dir(out: Path, config: StudyConfig) -> None:
    """A study directory belongs to one data configuration: refuse to mix results."""
    meta = _load_json(out / "study_config.json")
    if meta is None:
        return
    old = meta.get("data")
    if old is not None and old != json.loads(json.dumps(config.data_settings())):
        changed = sorted(k for k in set(old) | set(config.data_settings())
                         if old.get(k) != json.loads(json.dumps(config.data_settings())).get(k))
        raise InputValueError(f"study: {out} holds a study with other data settings (changed: {changed}; before "
                              f"{ {k: old.get(k) for k in changed} }). Use another --out directory.")


def _result_is_valid(res: dict[str, Any] | None, recipe: Recipe, config: StudyConfig) -> bool:
    return bool(res) and res.get("format") == RESULT_FORMAT and res.get("fingerprint") == recipe.fingerprint() \
        and res.get("eval") == json.loads(json.dumps(config.eval_settings())) \
        and [t.get("target") for t in res.get("targets", [])] == list(config.targets)


def run_study(
    grid: StudyGrid | dict[str, Any] | str | Path,
    config: StudyConfig,
    *,
    progress: bool = True,
    max_recipes: int | None = None,
    on_recipe_done: Callable[[str, dict[str, Any]], None] | None = None,
    backend: str = "local",
    ray_address: str | None = None,
    max_retries: int = 2,
) -> StudyResult:
    """Run (or resume) a pre-training study; see the module docstring.

    Args:
        grid: a :class:`StudyGrid`, a grid mapping, or the path of a grid YAML file.
        config: :class:`StudyConfig`.
        progress: tqdm bars over recipes and epochs.
        max_recipes: stop after this many recipes were *newly* processed in this call (the study stays resumable).
        on_recipe_done: callback ``(name, record)`` after each recipe.
        backend: ``"local"`` (one recipe after the other) or ``"ray"``: every recipe still to run is one Ray task
            (pre-training, then its source and target evaluation; one GPU per task when the cluster has GPUs;
            ``pip install 'nctransfer[ray]'``); the pool-relative scores and tables are made on the driver, so the
            study's files are those of the local backend. A failed recipe is retried up to ``max_retries`` times,
            with a warning per retry. ``config.out`` must be on a file system every worker can see.
        ray_address: Ray cluster address (``None``: the running instance or a new local one).

    Returns:
        :class:`StudyResult`.
    """
    if backend not in ("local", "ray"):
        raise InputValueError(f"backend must be 'local' or 'ray'; got {backend!r}.")
    ray_opts = None
    if backend == "ray":
        require_ray()
        ray_opts = {"address": ray_address, "max_retries": max_retries}
    if config.threads is None:
        return _run_study(grid, config, progress=progress, max_recipes=max_recipes, on_recipe_done=on_recipe_done,
                          ray_opts=ray_opts)
    with limit_threads(config.threads):
        return _run_study(grid, config, progress=progress, max_recipes=max_recipes, on_recipe_done=on_recipe_done,
                          ray_opts=ray_opts)


def _train_recipe(recipe: Recipe, source: StudyData, targets: list[StudyData], config: StudyConfig, ckpt: Path,
                  res_path: Path, progress: bool) -> tuple[dict[str, Any], str]:
    """Pre-train one recipe (resuming its checkpoint), evaluate it, write its ``result.json``; returns the record and
    its status. The unit of work of both backends (in a Ray worker with ``backend="ray"``)."""
    resumed = ckpt.is_file()
    reused = resumed and bool(_read_checkpoint(ckpt).get("complete"))
    t0 = time.perf_counter()
    if config.threads is not None:
        torch.set_num_threads(int(config.threads))
    model = pretrain(recipe, source.X_train, source.y_train, checkpoint=ckpt, device=config.device,
                     progress=progress)
    record = evaluate_model(model, source, targets, config)
    record["wall_seconds"] = time.perf_counter() - t0
    write_json_atomic(res_path, record)
    return record, "reused" if reused else "resumed" if resumed else "trained"


def limit_threads(n: int) -> ContextManager[None]:
    """Limit torch's intra-op threads and every BLAS/OpenMP pool to ``n`` inside the block (restored after):
    :func:`nctransfer.utils.threads.limit_threads` with scipy and scikit-learn loaded first (they load their own
    BLAS lazily, and a limit only applies to libraries already loaded)."""
    return _limit_threads(n, preload=("scipy.linalg", "sklearn.linear_model"))


def _run_study(grid: Any, config: StudyConfig, *, progress: bool, max_recipes: int | None,
               on_recipe_done: Callable[[str, dict[str, Any]], None] | None,
               ray_opts: dict[str, Any] | None = None) -> StudyResult:
    if isinstance(grid, (str, Path)):
        grid = StudyGrid.from_yaml(grid)
    elif not isinstance(grid, StudyGrid):
        grid = StudyGrid.from_dict(grid)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    _check_study_dir(out, config)
    write_json_atomic(out / "study_config.json", {
        "format": RESULT_FORMAT, "config": asdict(config), "data": config.data_settings(), "grid": grid.to_dict(),
        "grid_spec": grid.spec, "environment": environment_stamp(),
    })
    source = load_study_data(config.source, image_size=config.image_size, train_per_class=config.source_per_class,
                             test_per_class=config.source_test_per_class, seed=config.seed, root=config.data_root)
    targets = [load_study_data(t, image_size=config.image_size, train_per_class=config.target_train_per_class,
                               test_per_class=config.target_test_per_class, seed=config.seed, root=config.data_root)
               for t in config.targets]
    records: list[dict[str, Any]] = []
    status: dict[str, str] = {}
    new = 0
    if ray_opts is not None:
        records, status = _run_recipes_on_ray(grid, config, source, targets, out, max_recipes, on_recipe_done,
                                              ray_opts)
    bar = tqdm([] if ray_opts is not None else grid.recipes, desc="study", disable=not progress)
    for recipe in bar:
        bar.set_postfix_str(recipe.name)
        run_dir = out / "runs" / recipe.name
        res_path = run_dir / "result.json"
        res = _load_json(res_path)
        if _result_is_valid(res, recipe, config):
            records.append(res)  # type: ignore[arg-type]
            status[recipe.name] = "skipped"
            continue
        if max_recipes is not None and new >= max_recipes:
            break
        record, status[recipe.name] = _train_recipe(recipe, source, targets, config,
                                                    config.checkpoint_path(recipe.name), res_path, progress)
        records.append(record)
        new += 1
        if on_recipe_done is not None:
            on_recipe_done(recipe.name, record)
        write_tables(out, records, config)
    bar.close()
    combine_pool_scores(records)
    rows = write_tables(out, records, config)
    for r in records:  # keep the combined pool-relative scores in each result file too
        write_json_atomic(out / "runs" / r["name"] / "result.json", r)
    files = {"json": str(out / "study.json"), "csv": str(out / "study.csv")}
    complete = len(records) == len(grid.recipes)
    if config.plots and records:
        files.update(write_study_plots(records, out))
    write_json_atomic(out / "study.json", {
        "format": RESULT_FORMAT, "complete": complete, "config": asdict(config), "recipes": records,
        "pool_scores": {t: r for t, r in pool_table(records).items()}, "files": files,
    })
    return StudyResult(records, rows, status, out, files)


def _run_recipes_on_ray(grid: Any, config: StudyConfig, source: StudyData, targets: list[StudyData], out: Path,
                        max_recipes: int | None, on_recipe_done: Callable[[str, dict[str, Any]], None] | None,
                        ray_opts: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """The recipes of the grid with ``backend="ray"``: finished ones reused, the others as Ray tasks; records in
    grid order (as the local backend lists them)."""
    found: dict[str, dict[str, Any]] = {}
    status: dict[str, str] = {}
    todo: list[Recipe] = []
    for recipe in grid.recipes:
        res = _load_json(out / "runs" / recipe.name / "result.json")
        if _result_is_valid(res, recipe, config):
            found[recipe.name], status[recipe.name] = res, "skipped"  # type: ignore[assignment]
        elif max_recipes is None or len(todo) < max_recipes:
            todo.append(recipe)
    args = []
    for recipe in todo:
        args.append((recipe, source, targets, config, config.checkpoint_path(recipe.name),
                     out / "runs" / recipe.name / "result.json", False))
    done, _ = run_tasks(_train_recipe, args, [r.name for r in todo], address=ray_opts["address"],
                        max_retries=ray_opts["max_retries"], what="recipe",
                        on_retry=lambda text: warnings.warn(text, RuntimeWarning, stacklevel=2))
    for recipe, (record, st) in zip(todo, done):
        found[recipe.name], status[recipe.name] = record, st
        if on_recipe_done is not None:
            on_recipe_done(recipe.name, record)
    records = [found[r.name] for r in grid.recipes if r.name in found]
    if todo:
        write_tables(out, records, config)
    return records, status


__all__ = [
    "MAX_SAMPLE_VALUES", "PENULTIMATE", "RESULT_FORMAT", "PretrainedModel", "StudyConfig", "StudyData",
    "StudyResult", "combine_pool_scores", "evaluate_model", "evaluate_source", "evaluate_target", "flat_rows",
    "limit_threads", "run_study", "transfer_scores",
]
