"""``rank_models``: the product end to end, from its configuration to its report through named stages.

1. **settings**: every keyword is read into one :class:`~nctransfer.pipeline.config.RankConfig` (validated), which
   hands each stage its typed settings (:mod:`nctransfer.stages.settings`: extraction, scoring, probe; fine-tuning
   as :class:`~nctransfer.finetune.FinetuneConfig` objects);
2. **checks**: output directory, device, models, truth, methods, before anything heavy or written;
3. **load**: the data once (:func:`~nctransfer.stages.candidates._prepare_data`), each model and its taps;
4. **extract** (:func:`nctransfer.stages.extract_candidates`; on Ray, :mod:`nctransfer.pipeline.ray_backend`):
   one candidate per model or per tap, features of the training and test splits (cached by
   :mod:`nctransfer.extract`);
5. **score** (:func:`nctransfer.stages.score_candidates`): every transferability score (docs/methods.md#transferability);
6. **collapse** (:func:`nctransfer.stages.collapse_metrics`): every collapse metric (docs/methods.md#collapse-metrics);
7. **ground truth**: the linear probe (:func:`nctransfer.stages.truth_by_probe`), fine-tuning
   (:func:`nctransfer.pipeline.stages.truth_by_finetuning`) or the user's CSV;
8. **evaluate** (:func:`nctransfer.stages.evaluate_candidates`): each score against the truth, with intervals and
   baselines; the ranking by the recommended score; layer curves (:func:`nctransfer.stages.layer_curves`); the
   optional linear probe vs SCL FT comparison (:func:`nctransfer.pipeline.stages.finetune_comparison`);
9. **report** (:func:`write_outputs`): ``results.json``, ``scores.csv``, ``report.html``, ``report.md`` and the
   resolved ``config.yaml``.

Every stage is cached (features by :mod:`nctransfer.extract`, stage results by
:class:`~nctransfer.stages.cache.ResultCache`), so re-running a job, or extending its pool, only computes what
is new.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from nctransfer.exceptions import InputValueError
from nctransfer.pipeline.checks import (
    check_out_dir,
    check_truth_arg,
    parse_models,
    read_truth_csv,
)
from nctransfer.pipeline.config import FINETUNE_DEFAULTS, PROBE_C_GRID, RankConfig
from nctransfer.pipeline.ray_backend import extract_and_score, require_ray
from nctransfer.pipeline.result import RankResult
from nctransfer.pipeline.stages import finetune_comparison, truth_by_finetuning
from nctransfer.reports import write_report, write_results_json, write_scores_csv
from nctransfer.reports.records import _clean
from nctransfer.reports.schema import ranking_order
from nctransfer.stages import (
    POINT_KEYS,
    RANDOM_PREFIX,
    Candidate,
    Model,
    ResultCache,
    Run,
    candidate_name,
    collapse_metrics,
    evaluate_candidates,
    extract_candidates,
    extract_model,
    layer_curves,
    method_meta,
    one_candidate_per_model,
    resolve_taps,
    score_candidates,
    truth_by_probe,
    truth_samples,
)
from nctransfer.stages.candidates import _check_data, _data_label, _load, _parse_model, _prepare_data
from nctransfer.transferability import METHODS
from nctransfer.utils.device import check_device
from nctransfer.utils.distributed import is_main
from nctransfer.utils.io import write_text_atomic
from nctransfer.utils.paths import check_output_dir
from nctransfer.utils.repro import environment_stamp

# the names older code imports from here
_extract_model, _truth_samples, _Candidate, _Model, _Run = extract_model, truth_samples, Candidate, Model, Run
_POINT_KEYS = POINT_KEYS


# ------------------------------------------------------------------------------------------------ main
def rank_models(
    models: Any,
    data: Any = None,
    *,
    train: Any = None,
    test: Any = None,
    val: Any = None,
    taps: Any = "penultimate",
    truth: Any = "probe",
    out: str | os.PathLike | None = None,
    methods: Any = None,
    method_options: Mapping[str, Mapping[str, Any]] | None = None,
    recommended_score: str | None = None,
    per_class: int | None = 50,
    test_per_class: int | None = 50,
    image_size: int | None = None,
    batch_size: int = 64,
    device: str | None = None,
    pretrained: bool = True,
    seed: int = 0,
    cache_dir: str | os.PathLike | None = "default",
    probe_C_grid: Sequence[float] | None = PROBE_C_GRID,
    probe_max_iter: int = 300,
    truth_finetune: Mapping[str, Any] | None = None,
    compare_finetune: bool = False,
    finetune_options: Mapping[str, Any] | None = None,
    title: str | None = None,
    progress: bool = True,
    blas_threads: int | None = 1,
    config: RankConfig | Mapping[str, Any] | None = None,
    backend: str = "local",
    ray_address: str | None = None,
    max_retries: int = 2,
) -> RankResult:
    """Rank candidate models (or every tap of every model) for a labelled target dataset.

    Args:
        models: model names for :func:`nctransfer.models.load_model` (a list, or one comma-separated string) and/or
            ``torch.nn.Module`` objects. A name prefixed ``random:`` (``"random:efficientnet_lite0"``) is loaded
            with random weights and marked as a control (a candidate that should rank last).
        data: a dataset spec for :func:`nctransfer.data.load_dataset` (``"fashion-mnist"``, ``"digits"``, an
            ImageFolder directory, ``"torchvision:<Name>"``, ``"hf:<name>"``), in-memory ``(images, labels)``, or
            the user's own ``Dataset`` / Hugging Face ``datasets.Dataset`` / ``DatasetDict`` (labels read, content
            fingerprinted for the cache). Its training split is scored, its test split gives the ground truth.
        train, test, val: explicit splits instead of ``data`` (any form above, or ``DataLoader`` objects used as
            given: their batches, never subsampled), used as given and never re-split; ``per_class`` /
            ``test_per_class`` still subsample map-style ones (``None``: use everything).
        taps: ``"penultimate"`` (one candidate per model, named after it), ``"all"`` (one candidate per tap of
            each model, named ``model@tap``, plus layer-wise collapse curves), or any tap selector of
            :func:`nctransfer.features.select_taps`.
        truth: ``"probe"`` (linear-probe test accuracy, docs/methods.md#finetuning), ``"finetune"`` (fine-tuning test
            accuracy: full FT of a penultimate candidate, SCL FT at a tap candidate; options in
            ``truth_finetune``), or the path of a CSV with columns ``model,accuracy``.
        out: directory for ``results.json``, ``scores.csv``, ``report.html``, ``report.md`` (+ ``figures/``) and
            ``config.yaml``; checked for writability before any work. ``None``: write nothing. Under
            ``torchrun`` (a ``torch.distributed`` process group) every rank extracts a slice of each dataset
            (:mod:`nctransfer.extract.distributed`) and only rank 0 writes.
        methods: transferability methods (names, ``"all"``, or ``None`` for every non-expensive one).
        method_options: per-method options, e.g. ``{"gbc": {"gaussian": "diagonal"}}``.
        recommended_score: the score that ranks the pool (default :data:`DEFAULT_RECOMMENDED`).
        per_class, test_per_class: seeded, class-balanced subsample sizes of the training and test splits
            (``None``: everything).
        image_size: input resolution (``None``: each model's own).
        batch_size, device: extraction batch size and device (``None``: CUDA when available).
        pretrained: load pre-trained weights for names without the ``random:`` prefix.
        seed: seed of subsampling, probes and fine-tuning.
        cache_dir: cache root (features under ``features/``, stage results under ``results/``); ``"default"``:
            ``$NCTRANSFER_CACHE``'s parent or ``~/.cache/nctransfer``; ``None``: no cache.
        probe_C_grid, probe_max_iter: options of :func:`nctransfer.metrics.probe_accuracy` for the ground truth.
        truth_finetune: options of :func:`nctransfer.finetune.finetune` for ``truth="finetune"``.
        compare_finetune: also fine-tune the recommended model: linear probe vs SCL FT (options in
            ``finetune_options``, default :data:`FINETUNE_DEFAULTS`; ``unit`` may be a unit name, ``"auto"``
            (chosen by collapse, :func:`nctransfer.finetune.auto.choose_unit`) or ``"recommended"``: the tap of the
            top-ranked candidate, ``"auto"`` when that is the penultimate feature).
        title: report title.
        progress: progress bars and stage messages.
        blas_threads: BLAS threads while computing collapse metrics and probes (``None``: library default; the
            transferability scores manage their own, see ``nctransfer.transferability.set_blas_threads``).
        config: a :class:`~nctransfer.pipeline.config.RankConfig` holding every setting above (keywords that
            differ from their defaults are applied on top of it), or extra entries for the resolved configuration
            (e.g. the CLI's options).
        backend: ``"local"`` (this process; data-parallel under ``torchrun``) or ``"ray"``: each model's
            extraction and per-model scoring run as one Ray task (one GPU per task when the cluster has GPUs), the
            pool-relative scores, collapse metrics, ground truth and evaluation on the driver; the results equal
            the local backend's (:mod:`nctransfer.pipeline.ray_backend`; ``pip install 'nctransfer[ray]'``).
        ray_address: Ray cluster to connect to (``None``: the running instance, or a new local one).
        max_retries: Ray backend: times a failed task (an error, or its worker killed) is re-run; every retry
            is listed in ``results["warnings"]`` and ``results["extraction"][model]["attempts"]``.

    Returns:
        A :class:`~nctransfer.pipeline.result.RankResult`: the results structure of
        :mod:`nctransfer.reports.schema` (a JSON-able dict: ``res["ranking"]``, ``res["scores"]``, ...) with
        ``.to_frame()`` (one row per candidate) and ``.evaluation_frame()`` (one row per score). Warnings raised by
        the stages (e.g. a probe that stopped at its iteration cap) are collected in ``results["warnings"]`` and
        listed in the report instead of being printed.

    Raises:
        NotFoundError: unknown model, dataset, tap or method; missing truth CSV.
        InputValueError: a dataset with fewer than 2 classes, a non-writable ``out``, a truth CSV missing
            candidates, ... All raised before anything is written to ``out``.
    """
    t_start = time.perf_counter()
    # every setting, typed and validated in one place (RankConfig); the run reads them from here on
    settings = RankConfig.from_call(
        config, taps=taps, truth=truth, methods=methods, method_options=method_options,
        recommended_score=recommended_score, per_class=per_class, test_per_class=test_per_class,
        image_size=image_size, batch_size=batch_size, device=device, pretrained=pretrained, seed=seed,
        cache_dir=cache_dir, probe_C_grid=probe_C_grid, probe_max_iter=probe_max_iter,
        truth_finetune=truth_finetune, compare_finetune=compare_finetune, finetune_options=finetune_options,
        title=title, progress=progress, blas_threads=blas_threads, backend=backend, ray_address=ray_address,
        max_retries=max_retries)
    extra_config = None if isinstance(config, RankConfig) else config
    s = settings
    taps, truth, device, pretrained, seed = s.taps, s.truth, s.device, s.pretrained, s.seed
    backend, progress = s.backend, s.progress
    run = Run(progress)
    if train is not None or test is not None or val is not None:
        if data is not None:
            raise InputValueError("rank_models: give either data or explicit train= and test= datasets, not both.")
        if train is None or test is None:
            raise InputValueError("rank_models: explicit splits need both train= (scored) and test= (ground truth).")
        data = {k: v for k, v in (("train", train), ("test", test), ("val", val)) if v is not None}
    if data is None:
        raise InputValueError("rank_models: data is required (a dataset name, a folder, (X, y), a Dataset, a Hugging "
                              "Face dataset), or explicit train= and test=.")
    # ---------------------------------------------------------------- checks (nothing heavy, nothing written)
    if backend == "ray":
        require_ray()
    # under torchrun every rank runs the pipeline (extraction is split across them); only rank 0 writes outputs
    out_dir = check_output_dir(out, "out") if (out is not None and is_main()) else None  # creates nothing yet
    check_device(device, "device")  # a missing GPU fails now, not after every model and image was loaded
    items = parse_models(models)
    truth_arg = check_truth_arg(truth)
    rec = s.recommended()  # unknown name -> NotFoundError with suggestions
    # the typed settings of each stage, from the one configuration
    scoring = s.scoring_settings()  # unknown method -> NotFoundError; the ranking score is always computed
    cache_root = s.cache_root()
    ext = s.extraction_settings(cache_root)
    probe = s.probe_settings()
    truth_ft = s.truth_finetune_config() if truth_arg == "finetune" else None  # a FinetuneConfig, checked now
    compare_ft = s.comparison_finetune_config() if s.compare_finetune else None
    cache = ResultCache(None if cache_root is None else cache_root / "results")
    mlist = [_parse_model(m, pretrained) for m in items]
    labels = [m.label for m in mlist]
    record = s.record(labels, _data_label(data), truth_arg, cache_root)  # results["config"], config.yaml
    dup = sorted({x for x in labels if labels.count(x) > 1})
    if dup:
        raise InputValueError(f"models: two models have the same name {dup}; give each a distinct name.")
    if out_dir is not None:  # every argument checked: now the output directory may be created
        out_dir = check_out_dir(out)
    with run.stage("load data"):
        data = _prepare_data(data)
        data_info = _check_data(data)
    with run.stage("load models"):
        for m in mlist:
            _load(m, seed)
            m.taps = resolve_taps(m, taps)
    names = [candidate_name(m.label, t, taps) for m in mlist for t in m.taps]
    truth_csv = read_truth_csv(truth_arg, names) if truth_arg not in ("probe", "finetune") else None

    # ---------------------------------------------------------------- features
    parts = None
    with run.stage("extract features"):
        if backend == "ray":
            cands, extraction, parts = extract_and_score(mlist, data, taps, ext, scoring, run,
                                                         address=s.ray_address, max_retries=s.max_retries)
        else:
            cands, extraction = extract_candidates(mlist, data, taps, ext, run)
    n_train = len(cands[0].y_train)
    n_test = len(cands[0].y_test)
    with run.stage("transferability scores", cache):
        sc = score_candidates(cands, scoring, cache, run, parts)
    with run.stage("collapse metrics", cache), run.blas(s.blas_threads):
        collapse = collapse_metrics(cands, cache, run)

    # ---------------------------------------------------------------- ground truth and evaluation
    if truth_arg == "probe":
        with run.stage("ground truth (linear probe)", cache), run.blas(s.blas_threads):
            acc, details = truth_by_probe(cands, probe, cache, run)
        truth_info = {"kind": "probe", "source": f"test accuracy of a multinomial logistic-regression probe on the "
                      f"candidate's features (L2 strength chosen on a validation split from "
                      f"{len(s.probe_C_grid or [1])} values; docs/methods.md#finetuning)"}
    elif truth_arg == "finetune":
        with run.stage("ground truth (fine-tuning)", cache):
            acc, details = truth_by_finetuning(cands, data, ext, truth_ft, cache, run)
        truth_info = {"kind": "finetune", "source": "test accuracy after fine-tuning each candidate (full FT of a "
                      "model, SCL FT at a tap)"}
    else:
        acc, details = dict(truth_csv or {}), {}
        truth_info = {"kind": "csv", "source": f"user-supplied accuracies from {truth_arg}"}
    truth_info.update({"accuracy": acc, "details": details})
    with run.stage("evaluation"):
        evaluation, intervals, baselines = evaluate_candidates(cands, mlist, sc, acc, details, truth_info,
                                                               truth_arg, n_test, seed)
    if not any(sc["scores"][c.name].get(rec) is not None for c in cands):
        # e.g. a pool-relative score (NCTI, ensembles) with a single candidate: rank by the first per-model score
        fallback = next((m for m in sc["columns"] if not METHODS[m].pool_relative
                         and any(sc["scores"][c.name].get(m) is not None for c in cands)), None)
        if fallback is None:
            raise InputValueError(f"recommended_score {rec!r} could not be computed for any candidate and no other "
                                  f"score is available (methods={scoring.methods!r}).")
        sc["notes"].append(f"{rec} could not be computed for this pool ({len(cands)} candidate(s)); ranked by "
                           f"{fallback} instead.")
        rec = fallback

    results: dict[str, Any] = {
        "schema": "nctransfer.results/1",
        "title": s.title,
        "data": {**data_info, "n_train": n_train, "n_test": n_test,
                 "image_size": s.image_size, "per_class": s.per_class, "test_per_class": s.test_per_class,
                 "seed": seed},
        "candidates": [{"name": c.name, "model": c.model.label, "tap": c.tap, "tap_index": c.tap_index,
                        "n_taps": c.n_taps, "dim": c.dim, "pretrained": c.model.pretrained,
                        "control": c.model.control, "has_probs": c.probs is not None} for c in cands],
        "methods": method_meta(sc["columns"]),
        "scores": sc["scores"],
        "score_seconds": sc["seconds"],
        "collapse": collapse,
        "truth": truth_info,
        "evaluation": evaluation,
        "evaluation_intervals": intervals,
        "baselines": baselines,
        "recommended_score": rec,
    }
    if s.title is None:
        results.pop("title")
    results["ranking"] = ranking_order(results, rec)
    results["recommended"] = results["ranking"][0]
    if not one_candidate_per_model(taps):
        results["layers"] = layer_curves(mlist, cands, collapse, truth_info)
    results["extraction"] = extraction
    if compare_ft is not None:
        by_name = {c.name: c for c in cands}
        top_c = by_name[next((n for n in results["ranking"] if not by_name[n].model.control), results["ranking"][0])]
        with run.stage("fine-tuning (linear probe vs SCL FT)", cache):
            results["finetune"] = finetune_comparison(top_c.model, top_c.tap, data, ext, compare_ft, out_dir, cache,
                                                      run)
    results["notes"] = sc["notes"]
    results["config"] = {**record, **dict(extra_config or {})}
    results["environment"] = environment_stamp()
    if out_dir is not None:
        with run.stage("report"):
            results["timings"] = dict(run.timings)
            write_outputs(results, out_dir)
    results["timings"] = dict(run.timings)
    results["timings_cached"] = list(run.cached)
    results["warnings"] = run.warnings
    results["seconds_total"] = time.perf_counter() - t_start
    if out_dir is not None:  # final timings and warnings (the report stage included)
        write_results_json(results, out_dir / "results.json")
    return RankResult(results)


def write_outputs(results: Mapping[str, Any], out: str | os.PathLike) -> dict[str, Path]:
    """Write ``results.json``, ``scores.csv``, ``config.yaml``, ``report.html`` and ``report.md`` (+ figures) into
    ``out``, each atomically."""
    out = Path(out)
    paths = {"results": write_results_json(results, out / "results.json"),
             "scores": write_scores_csv(results, out / "scores.csv")}
    if results.get("config"):
        paths["config"] = write_text_atomic(out / "config.yaml",
                                            yaml.safe_dump(_clean(dict(results["config"])), sort_keys=False))
    paths.update(write_report(results, out))
    return paths


__all__ = ["rank_models", "write_outputs", "RANDOM_PREFIX", "PROBE_C_GRID", "FINETUNE_DEFAULTS"]
