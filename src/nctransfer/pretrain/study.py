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
"""

from __future__ import annotations

import csv
import io
import json
import math
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, ContextManager, Sequence

import numpy as np
import torch

from nctransfer.exceptions import InputValueError
from nctransfer.pretrain.datasets import StudyData, load_study_data
from nctransfer.pretrain.grid import StudyGrid
from nctransfer.pretrain.nets import encoder_units
from nctransfer.pretrain.recipe import Recipe
from nctransfer.pretrain.trainer import PretrainedModel, _read_checkpoint, pretrain
from nctransfer.utils.io import write_json_atomic, write_text_atomic
from nctransfer.utils.threads import limit_threads as _limit_threads

RESULT_FORMAT = "nctransfer.pretrain.study/1"
PENULTIMATE = "penultimate"
#: Feature values kept in memory per tap before the study switches to streaming statistics only.
MAX_SAMPLE_VALUES = 50_000_000


@dataclass
class StudyConfig:
    """Data and evaluation settings of a study (the recipes come from the grid).

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

    source: str
    targets: list[str]
    out: str
    source_per_class: int | None = 1000
    source_test_per_class: int | None = 200
    target_train_per_class: int | None = 100
    target_test_per_class: int | None = 100
    image_size: int = 28
    seed: int = 0
    device: str = "cpu"
    methods: list[str] | None = None
    plots: bool = True
    data_root: str | None = None
    eval_batch_size: int = 512
    threads: int | None = None
    checkpoint_dir: str | None = None

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


# ---------------------------------------------------------------------------------------------- evaluation
def _tap_features(model: PretrainedModel, X: torch.Tensor, batch_size: int) -> dict[str, torch.Tensor]:
    """Pooled features ``{tap: [N, C]}`` at every encoder unit and ``penultimate`` (encoder output)."""
    from nctransfer.features import TapRecorder

    units = encoder_units(model.encoder)
    net = model.net.eval()
    chunks: dict[str, list[torch.Tensor]] = {u.name: [] for u in units}
    chunks[PENULTIMATE] = []
    with torch.no_grad():
        if units:
            rec = TapRecorder(model.encoder, units)
            with rec:
                for i in range(0, len(X), batch_size):
                    xb = model.normalize(X[i:i + batch_size].to(model.device))
                    out = net.encoder(xb)
                    for name, f in rec.collect().items():
                        chunks[name].append(f.float().cpu())
                    chunks[PENULTIMATE].append(out.float().cpu())
        else:
            for i in range(0, len(X), batch_size):
                chunks[PENULTIMATE].append(net.encoder(model.normalize(X[i:i + batch_size].to(model.device))).cpu())
    return {k: torch.cat(v) for k, v in chunks.items()}


def _collapse(features: torch.Tensor, y: np.ndarray, *, W: Any = None, b: Any = None) -> dict[str, float]:
    """Every collapse metric (``compute_all``); NaN-valued entries carry the reason in ``_errors``."""
    from nctransfer import FeatureStats
    from nctransfer.metrics import compute_all

    X = features.double()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if X.numel() <= MAX_SAMPLE_VALUES:
            return compute_all(X.numpy(), y, W=W, b=b)
        return compute_all(FeatureStats().update(X, y), W=W)


def _accuracy(model: PretrainedModel, X: torch.Tensor, y: np.ndarray, batch_size: int) -> float:
    logits = model.logits(X, batch_size)
    if logits is None or len(y) == 0:
        return float("nan")
    pred = np.asarray(model.classes)[logits.argmax(1).numpy()]
    return float((pred == y).mean())


def evaluate_source(model: PretrainedModel, data: StudyData, *, batch_size: int = 512) -> dict[str, Any]:
    """Collapse metrics at every tap on the source training data, and the source classifier's accuracy.

    Returns:
        ``{"layers": {tap: {metric: value}}, "taps": [...], "train_accuracy", "test_accuracy", "ncc_test_accuracy"}``.
        At ``penultimate`` the classifier ``W, b`` is passed to ``compute_all`` (NC3, NC4) when it reads the
        encoder output directly (no projection head).
    """
    feats = _tap_features(model, data.X_train, batch_size)
    y = data.y_train
    layers: dict[str, dict[str, float]] = {}
    for tap, F in feats.items():
        W = b = None
        if tap == PENULTIMATE and model.net.classifier is not None and model.recipe.head_layers == 0:
            W = model.net.classifier.weight.detach().double().cpu().numpy()
            b = model.net.classifier.bias.detach().double().cpu().numpy()
        layers[tap] = _collapse(F, y, W=W, b=b)
    return {
        "taps": list(feats),
        "layers": layers,
        "train_accuracy": _accuracy(model, data.X_train, y, batch_size),
        "test_accuracy": _accuracy(model, data.X_test, data.y_test, batch_size),
    }


def transfer_scores(X: np.ndarray, y: np.ndarray, probs: np.ndarray | None, methods: Sequence[str] | None = None
                    ) -> tuple[dict[str, float], dict[str, Any], dict[str, str]]:
    """Every transferability score of one model's target features ``X [N, d]`` with labels ``y [N]``
    (docs/methods.md#transferability; higher = predicted to transfer better).

    Args:
        X, y: target training features and labels.
        probs: the source classifier's softmax on the same images ``[N, C_src]`` (LEEP, NCE); ``None`` when the
            recipe has no classifier (SupCon): those methods are then skipped.
        methods: names to compute (default: every registered method).

    Returns:
        ``(scores, pool_terms, skipped)``: ``scores`` maps method -> value; ``pool_terms`` holds the raw per-model
        terms of pool-relative methods (NCTI, ETran), combined across the recipes by :func:`combine_pool_scores`;
        ``skipped`` maps method -> reason (missing probabilities, or the error the method raised).
    """
    from nctransfer.exceptions import NCTransferError
    from nctransfer.transferability import METHODS, get_method, score

    names = list(METHODS) if methods is None else [get_method(m).name for m in methods]
    scores: dict[str, float] = {}
    pool_terms: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    for name in names:
        info = METHODS[name]
        if info.needs_probs and probs is None:
            skipped[name] = "needs the source classifier's probabilities (this recipe has no classifier)"
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                if info.pool_relative:
                    pool_terms[name] = {k: float(v) for k, v in dict(info.fn(X, y)).items()}
                else:
                    scores[name] = score(name, X, y, probs=probs) if info.needs_probs else score(name, X, y)
        except (NCTransferError, ValueError, ArithmeticError, np.linalg.LinAlgError) as exc:
            skipped[name] = f"{type(exc).__name__}: {exc}"
            if not info.pool_relative:
                scores[name] = float("nan")
    return scores, pool_terms, skipped


def evaluate_target(model: PretrainedModel, data: StudyData, *, methods: Sequence[str] | None = None,
                    batch_size: int = 512, seed: int = 0) -> dict[str, Any]:
    """Transfer of the frozen encoder to one target: probe accuracy, collapse per tap, transferability scores."""
    from nctransfer.metrics import pack_correct, probe_accuracy

    feats_tr = _tap_features(model, data.X_train, batch_size)
    Ftr = feats_tr[PENULTIMATE].double().numpy()
    Fte = model.features(data.X_test, batch_size).double().numpy()
    t0 = time.perf_counter()
    probe = probe_accuracy(Ftr, data.y_train, Fte, data.y_test, seed=seed)
    probe_seconds = time.perf_counter() - t0
    layers = {tap: _collapse(F, data.y_train) for tap, F in feats_tr.items()}
    probs = model.probs(data.X_train, batch_size)
    scores, pool_terms, skipped = transfer_scores(Ftr, data.y_train, probs, methods)
    return {
        "target": data.spec,
        "n_train": int(len(data.y_train)),
        "n_test": int(len(data.y_test)),
        "probe_accuracy": probe.accuracy,
        "probe_C": probe.C,
        "probe_train_accuracy": probe.train_accuracy,
        "probe_correct": pack_correct(probe.correct),  # per-test-sample correctness (metrics.pack_correct)
        "probe_seconds": probe_seconds,
        "layers": layers,
        "scores": scores,
        "pool_terms": pool_terms,
        "skipped_scores": skipped,
    }


def evaluate_model(model: PretrainedModel, source: StudyData, targets: Sequence[StudyData],
                   config: StudyConfig) -> dict[str, Any]:
    """The study record of one pre-trained model: source collapse per tap, transfer to every target.

    This is what ``OUT/runs/<recipe>/result.json`` holds; usable on any :class:`PretrainedModel` (e.g. an untrained
    network as a "random features" reference, as the benchmark does).
    """
    recipe = model.recipe
    src = evaluate_source(model, source, batch_size=config.eval_batch_size)
    tgts = [evaluate_target(model, t, methods=config.methods, batch_size=config.eval_batch_size, seed=config.seed)
            for t in targets]
    return {
        "format": RESULT_FORMAT, "recipe": recipe.to_dict(), "settings": recipe.training_dict(), "name": recipe.name,
        "fingerprint": recipe.fingerprint(), "eval": json.loads(json.dumps(config.eval_settings())),
        "source": {"spec": source.spec, **src}, "targets": tgts, "history": model.history,
        "epochs_trained": len(model.history), "train_seconds": sum(h["seconds"] for h in model.history),
        "n_parameters_encoder": sum(p.numel() for p in model.encoder.parameters()),
        "feature_dim": int(model.encoder.num_features),
    }


# ---------------------------------------------------------------------------------------------- the runner
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
        from nctransfer.utils.ray_tasks import require_ray

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
    from tqdm.auto import tqdm

    from nctransfer.utils.repro import environment_stamp

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
        ckpt = (Path(config.checkpoint_dir) / recipe.name if config.checkpoint_dir else run_dir) / "checkpoint.pt"
        record, status[recipe.name] = _train_recipe(recipe, source, targets, config, ckpt, res_path, progress)
        records.append(record)
        new += 1
        if on_recipe_done is not None:
            on_recipe_done(recipe.name, record)
        _write_tables(out, records, config)
    bar.close()
    combine_pool_scores(records)
    rows = _write_tables(out, records, config)
    for r in records:  # keep the combined pool-relative scores in each result file too
        write_json_atomic(out / "runs" / r["name"] / "result.json", r)
    files = {"json": str(out / "study.json"), "csv": str(out / "study.csv")}
    complete = len(records) == len(grid.recipes)
    if config.plots and records:
        from nctransfer.pretrain.plots import write_study_plots

        files.update(write_study_plots(records, out))
    write_json_atomic(out / "study.json", {
        "format": RESULT_FORMAT, "complete": complete, "config": asdict(config), "recipes": records,
        "pool_scores": {t: r for t, r in _pool_table(records).items()}, "files": files,
    })
    return StudyResult(records, rows, status, out, files)


def _run_recipes_on_ray(grid: Any, config: StudyConfig, source: StudyData, targets: list[StudyData], out: Path,
                        max_recipes: int | None, on_recipe_done: Callable[[str, dict[str, Any]], None] | None,
                        ray_opts: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """The recipes of the grid with ``backend="ray"``: finished ones reused, the others as Ray tasks; records in
    grid order (as the local backend lists them)."""
    from nctransfer.utils.ray_tasks import run_tasks

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
        run_dir = out / "runs" / recipe.name
        ckpt = (Path(config.checkpoint_dir) / recipe.name if config.checkpoint_dir else run_dir) / "checkpoint.pt"
        args.append((recipe, source, targets, config, ckpt, run_dir / "result.json", False))
    done, _ = run_tasks(_train_recipe, args, [r.name for r in todo], address=ray_opts["address"],
                        max_retries=ray_opts["max_retries"], what="recipe",
                        on_retry=lambda text: warnings.warn(text, RuntimeWarning, stacklevel=2))
    for recipe, (record, st) in zip(todo, done):
        found[recipe.name], status[recipe.name] = record, st
        if on_recipe_done is not None:
            on_recipe_done(recipe.name, record)
    records = [found[r.name] for r in grid.recipes if r.name in found]
    if todo:
        _write_tables(out, records, config)
    return records, status


# ---------------------------------------------------------------------------------------------- pool scores
def combine_pool_scores(records: list[dict[str, Any]]) -> None:
    """Pool-relative scores (NCTI, ETran; docs/methods.md#ncti #etran) across the recipes of each target, in place:
    ``record["targets"][i]["scores"][method]`` from the stored per-model ``pool_terms``. Needs two recipes or more
    (a single model has no pool-relative score)."""
    from nctransfer.transferability import METHODS

    if len(records) < 2:
        return
    for i in range(len(records[0]["targets"])):
        terms = [r["targets"][i].get("pool_terms", {}) for r in records]
        for method in sorted(set().union(*[t.keys() for t in terms])):
            info = METHODS.get(method)
            if info is None or info.combine is None or not all(method in t for t in terms):
                continue
            df = info.combine({r["name"]: t[method] for r, t in zip(records, terms)})
            for r in records:
                r["targets"][i]["scores"][method] = float(df.loc[r["name"], method])


def _pool_table(records: list[dict[str, Any]]) -> dict[str, Any]:
    if not records:
        return {}
    out: dict[str, Any] = {}
    for i, t in enumerate(records[0]["targets"]):
        out[t["target"]] = {r["name"]: {k: r["targets"][i]["scores"].get(k) for k in r["targets"][i]["pool_terms"]}
                            for r in records}
    return out


# ---------------------------------------------------------------------------------------------- tables
_RECIPE_COLUMNS = ("arch", "loss", "label_smoothing", "head_layers", "augment", "adv_eps", "epochs", "seed")


def flat_rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One flat row per (recipe, target): recipe settings, penultimate source metrics (``source_*``), source
    accuracy, probe accuracy, penultimate target metrics (``target_*``) and scores (``score_*``)."""
    rows = []
    for r in records:
        rec = {**r["recipe"], **r.get("settings", {})}
        base: dict[str, Any] = {"recipe": r["name"], "fingerprint": r["fingerprint"]}
        for k in _RECIPE_COLUMNS:
            base[k] = rec.get(k)
        base["adv_eps_255"] = round(float(rec.get("adv_eps") or 0) * 255, 3)
        base["train_seconds"] = round(float(r.get("train_seconds", float("nan"))), 2)
        base["source_train_accuracy"] = r["source"]["train_accuracy"]
        base["source_test_accuracy"] = r["source"]["test_accuracy"]
        for m, v in r["source"]["layers"][PENULTIMATE].items():
            base[f"source_{m}"] = v
        for t in r["targets"]:
            row = dict(base)
            row["target"] = t["target"]
            row["probe_accuracy"] = t["probe_accuracy"]
            for m, v in t["layers"][PENULTIMATE].items():
                row[f"target_{m}"] = v
            for m, v in t["scores"].items():
                row[f"score_{m}"] = v
            rows.append(row)
    return rows


def _fmt(v: Any) -> Any:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else repr(v)
    return v


def _write_tables(out: Path, records: list[dict[str, Any]], config: StudyConfig) -> list[dict[str, Any]]:
    rows = flat_rows(records)
    columns: list[str] = []
    for row in rows:
        columns += [c for c in row if c not in columns]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _fmt(row.get(k, "")) for k in columns})
    write_text_atomic(out / "study.csv", buf.getvalue())
    write_json_atomic(out / "study.json", {"format": RESULT_FORMAT, "complete": False, "config": asdict(config),
                                           "recipes": records})
    return rows
