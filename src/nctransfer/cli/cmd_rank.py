"""``nctransfer rank``: rank candidate models by transferability scores.

File mode (this module)::

    nctransfer rank A.npz B.npz C.npz [--scores logme,ncti] [--truth truth.csv] [--json] [--out DIR]

Each FILE is an ``.npz`` with ``X [N, d]``, ``y [N]`` and optionally ``P [N, C_src]`` (source-classifier
probabilities, needed by LEEP and NCE); the candidate's name is the file stem. ``--truth`` takes a CSV with
columns ``model,accuracy``. ``--json`` prints exactly one object::

    {"scores": {model: {method: value}}, "seconds": {method: total},
     "evaluation": {method: {"weighted_tau": .., "kendall": .., "spearman": .., "pearson": .., "top1_regret": ..}}}

(``evaluation`` is ``{}`` without ``--truth``; NaN values are ``null``). ``--intervals`` adds
``"evaluation_intervals": {method: {"weighted_tau_lo", "weighted_tau_hi", "spearman_lo", ..., "n_scored",
"n_pool", "coverage"}}``: 95% bootstrap intervals over the candidates and, when the truth CSV has a column ``se``
(standard error of each accuracy), the truth's noise. Without ``--json`` a readable table with the intervals; a
score computed on only part of the pool is marked ``partial``. With ``--out DIR`` the file mode also writes
``DIR/results.json``, ``DIR/scores.csv``, ``DIR/report.html``, ``DIR/report.md`` (with ``nctransfer[report]``)
and ``DIR/config.yaml``, as the models mode does.

FILE is an optional positional (``nargs="*"``) so that another mode (models + dataset end to end) can sit beside
:func:`run_files` in :func:`run`.

Models mode (:func:`run_models`, :func:`nctransfer.rank_models`)::

    nctransfer rank --models A,B,... --data D [--taps penultimate|all] [--truth probe|finetune|CSV] --out DIR

extracts (cached) the features of every candidate (a model, or each tap of each model with ``--taps all``), computes
every score and collapse metric, the ground truth (linear probe by default) and the evaluation of every score, and
writes ``DIR/results.json``, ``DIR/scores.csv``, ``DIR/report.html``, ``DIR/report.md`` and ``DIR/config.yaml``.
A model name prefixed ``random:`` is randomly initialised and marked as a control.
"""

from __future__ import annotations

import argparse
import math
import sys
import warnings
from pathlib import Path
from typing import Any

import yaml

from nctransfer.cli import options as O
from nctransfer.cli._distributed import run_distributed
from nctransfer.cli._output import print_ranking_outcome
from nctransfer.exceptions import InputValueError
from nctransfer.reports.records import write_results_json, write_scores_csv
from nctransfer.reports.schema import ranking_order
from nctransfer.utils.io import dumps_json, to_jsonable
from nctransfer.utils.repro import environment_stamp


def add_file_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the file mode."""
    parser.add_argument("files", nargs="*", metavar="FILE",
                        help=".npz features file per candidate model with arrays X [N, d], y [N] and optionally "
                             "P [N, C_src] (source probabilities, for leep/nce); the model name is the file stem")
    O.add_scores(parser, help="comma-separated score names (default: every method except the expensive nleep "
                              "and parc; 'all' for every one). See --list-methods")
    parser.add_argument("--option", action="append", default=None, metavar="METHOD.KEY=VALUE",
                        help="a method option, e.g. --option gbc.gaussian=diagonal (value parsed as YAML); repeatable")
    parser.add_argument("--truth", default=None, metavar="CSV",
                        help="ground truth CSV with columns model,accuracy: adds the ranking evaluation "
                             "(weighted Kendall tau, Kendall, Spearman, Pearson, top-1 regret)")
    O.add_json(parser, "the scores (and evaluation)")
    parser.add_argument("--out", default=None, metavar="DIR",
                        help="output directory: results.json, scores.csv, report.html, report.md, config.yaml "
                             "(required in models mode; optional with FILEs)")
    O.add_score(parser, alias=True)
    parser.add_argument("--intervals", action="store_true",
                        help="with --json: add 'evaluation_intervals' (95%% bootstrap intervals of weighted tau, "
                             "Spearman and top-1 regret, models scored / pool); the tables always show them")
    parser.add_argument("--list-methods", action="store_true", help="list the available methods and exit")


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the models mode (``--models``); ``--methods`` and ``--truth`` are shared with the file mode."""
    g = O.group(parser, "models mode (nctransfer rank --models A,B --data D --out DIR)")
    g.add_argument("--models", default=None, metavar="A,B,...",
                   help="candidate models (efficientnet_lite0, timm:<name>, torchvision:<name>, hf:<repo>, "
                        "file:<path>); prefix random: for a randomly initialised control")
    g.add_argument("--data", default=None, metavar="D",
                   help="target dataset: fashion-mnist, digits, an ImageFolder directory (with train/ and test/ "
                        "sub-directories: used as given), torchvision:<Name> or hf:<name> (a Hugging Face hub "
                        "dataset, online); with --test-data: the training set, used whole")
    g.add_argument("--test-data", default=None, metavar="D",
                   help="explicit test set (ground truth), used as given: --data is then the training set and "
                        "neither is re-split")
    g.add_argument("--taps", default="penultimate",
                   help="'penultimate' (one candidate per model), 'all' (every tap of every model, plus layer-wise "
                        "collapse curves), or comma-separated tap names, module paths (layer3.1,body.2) or regex "
                        "patterns; default %(default)s")
    g.add_argument("--per-class", type=int, default=50, help="training images per class (default %(default)s)")
    g.add_argument("--test-per-class", type=int, default=50, help="test images per class (default %(default)s)")
    g.add_argument("--image-size", type=int, default=None, help="input size (default: each model's own)")
    g.add_argument("--batch-size", type=int, default=64, help="extraction batch size (default %(default)s)")
    O.add_pretrained(g)
    O.add_compare_finetune(g, default=False)
    g.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: CUDA when available)")
    O.add_cache(g)
    g.add_argument("--seed", type=int, default=0, help="seed (default %(default)s)")
    O.add_progress(g)
    O.add_backend(g, "each model's extraction and per-model scores")
    O.add_allow_pickle(g)


def add_parser(parser: argparse.ArgumentParser) -> None:
    add_file_arguments(parser)
    add_model_arguments(parser)


def _parse_options(items: list[str] | None) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        method, dot, opt = key.partition(".")
        if not sep or not dot or not method or not opt:
            raise InputValueError(f"--option must look like METHOD.KEY=VALUE (e.g. gbc.gaussian=diagonal); "
                                  f"got {item!r}.")
        out.setdefault(method.strip(), {})[opt.strip()] = yaml.safe_load(value)
    return out


_clean = to_jsonable  # NaN/Inf -> None, also inside the (lo, hi) tuples of the intervals


def result_json(df: Any, evaluation: dict[str, dict[str, float]] | None) -> dict[str, Any]:
    """The ``--json`` object of a :func:`~nctransfer.transferability.rank` DataFrame."""
    scores = {str(m): {str(c): float(df.loc[m, c]) for c in df.columns} for m in df.index}
    seconds = {str(k): float(v) for k, v in df.attrs.get("seconds", {}).items()}
    return _clean({"scores": scores, "seconds": seconds, "evaluation": evaluation or {}})


def _interval(e: dict[str, Any], key: str, scale: float = 1.0, digits: int = 3) -> str:
    def num(v: Any) -> bool:
        return isinstance(v, (int, float)) and math.isfinite(v)

    v, lo, hi = e.get(key), e.get(f"{key}_lo"), e.get(f"{key}_hi")
    if not num(v):
        return "-"
    text = f"{scale * v:.{digits}f}"
    if num(lo) and num(hi):
        text += f" [{scale * lo:.{digits}f}, {scale * hi:.{digits}f}]"
    return text


def format_evaluation(evaluation: dict[str, dict[str, Any]]) -> str:
    """A readable table of :func:`~nctransfer.transferability.evaluate`'s output: weighted tau, Spearman and
    top-1 regret (points) with their 95% bootstrap intervals, Kendall, Pearson and the models scored; a score
    computed on only part of the pool is marked ``partial``."""
    import pandas as pd  # deferred on purpose: CLI start-up speed (pandas alone takes ~0.9 s to import)

    rows = {}
    for m, e in evaluation.items():
        n, pool = e.get("n_scored"), e.get("n_pool")
        scored = f"{int(n)}/{int(pool)}" if isinstance(n, (int, float)) and isinstance(pool, (int, float)) \
            and math.isfinite(n) and math.isfinite(pool) else "-"
        if scored != "-" and n < pool:
            scored += " partial"
        rows[m] = {"weighted_tau [95% CI]": _interval(e, "weighted_tau"),
                   "spearman [95% CI]": _interval(e, "spearman"),
                   "top1_regret, points [95% CI]": _interval(e, "top1_regret", 100.0, 1),
                   "kendall": _interval(e, "kendall"), "pearson": _interval(e, "pearson"),
                   "models scored": scored}
    ev = pd.DataFrame(rows).T
    ev.index.name = "method"
    return ev.to_string()


def _print_tables(df: Any, evaluation: dict[str, dict[str, float]] | None, out: Any = None) -> None:
    import pandas as pd  # deferred on purpose (with the scores): CLI start-up speed

    from nctransfer.transferability import METHODS

    out = sys.stdout if out is None else out

    with pd.option_context("display.width", 200, "display.max_columns", 50):
        print("Scores (higher = predicted to transfer better):", file=out)
        print(df.to_string(float_format=lambda v: f"{v:.4g}"), file=out)
        print("", file=out)
        secs = pd.Series(df.attrs.get("seconds", {}), name="seconds")
        print("Seconds per method (all candidates):", file=out)
        print(secs.to_frame().T.to_string(float_format=lambda v: f"{v:.3f}"), file=out)
        if evaluation:
            print("", file=out)
            print("Ranking vs ground truth:", file=out)
            print(format_evaluation(evaluation), file=out)
            tops = [f"{METHODS[m].title if m in METHODS else m}={df[m].idxmax()}"
                    for m in df.columns if df[m].notna().any()]
            print("", file=out)
            print("Top-ranked model per method: " + ", ".join(tops), file=out)


def run_files(args: argparse.Namespace) -> int:
    """File mode: score ``.npz`` feature files, optionally evaluate against ``--truth``."""
    # deferred on purpose: the scores load only when the command runs (CLI start-up speed)
    from nctransfer.transferability import EVALUATION_KEYS, evaluate, rank, read_truth_csv
    from nctransfer.transferability.ranking import read_truth_se_csv

    files = list(args.files or [])
    names = [Path(f).stem for f in files]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise InputValueError(f"rank: two FILEs have the same stem {dup}; the stem is the model name.")
    candidates = dict(zip(names, files))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        truth = read_truth_csv(args.truth) if args.truth else None  # inputs first: no scoring before a bad truth
        if truth is not None:
            missing = [n for n in names if n not in truth]
            if missing:
                raise InputValueError(f"rank: the truth file {args.truth!r} has no accuracy for {missing}; it has "
                                      f"rows for {sorted(truth)[:10]}.")
        df = rank(candidates, methods=args.scores, options=_parse_options(getattr(args, "option", None)),
                  progress=args.progress and sys.stderr.isatty())
    seen: set[str] = set()
    for w in caught:  # one concise line per distinct message instead of Python's file:line warnings
        msg = f"{w.category.__name__}: {w.message}"
        if msg not in seen:
            seen.add(msg)
            print(f"warning: {msg}", file=sys.stderr)
    evaluation = None
    if truth is not None:
        evaluation = evaluate(df, truth, intervals=True, truth_se=read_truth_se_csv(args.truth))
    for note in df.attrs.get("notes", []):
        print(f"note: {note}", file=sys.stderr)
    if args.out:
        write_files_outputs(args, df, truth, evaluation, sorted(seen))
    if args.json:
        points = {m: {k: e[k] for k in EVALUATION_KEYS} for m, e in (evaluation or {}).items()} or None
        obj = result_json(df, points)
        if getattr(args, "intervals", False) and evaluation:
            obj["evaluation_intervals"] = _clean({m: {k: v for k, v in e.items() if k not in EVALUATION_KEYS}
                                                  for m, e in evaluation.items()})
        print(dumps_json(obj, indent=2))
    else:
        _print_tables(df, evaluation)
    return 0


def files_results(args: argparse.Namespace, df: Any, truth: dict[str, float] | None,
                  evaluation: dict[str, dict[str, Any]] | None, warnings_seen: list[str]) -> dict[str, Any]:
    """The results structure (:mod:`nctransfer.reports.schema`) of a file-mode ranking: candidates = the files,
    ranked by ``--score`` (default: the recommended score when it was computed, else the first score)."""
    # deferred on purpose: the pipeline and the scores load only when the command runs (CLI start-up speed)
    from nctransfer.pipeline import DEFAULT_RECOMMENDED
    from nctransfer.stages import method_meta
    from nctransfer.transferability import EVALUATION_KEYS, get_method

    columns = [str(c) for c in df.columns]
    rec = get_method(args.score).name if args.score else DEFAULT_RECOMMENDED
    if rec not in columns:
        if args.score:
            raise InputValueError(f"rank --score {args.score}: that score was not computed; add it to --scores "
                                  f"(computed: {columns}).")
        rec = next((c for c in columns if df[c].notna().any()), columns[0] if columns else None)
    files = dict(zip((str(n) for n in df.index), args.files))
    results: dict[str, Any] = {
        "schema": "nctransfer.results/1",
        "title": f"nctransfer rank: {len(files)} feature files",
        "candidates": [{"name": n, "model": n, "tap": "penultimate", "source_file": str(f)} for n, f in files.items()],
        "methods": method_meta(columns),
        "scores": {n: {m: _clean(float(df.loc[n, m])) for m in columns} for n in files},
        "score_seconds": {str(k): float(v) for k, v in df.attrs.get("seconds", {}).items()},
        "recommended_score": rec,
        "notes": list(df.attrs.get("notes", [])),
        "warnings": list(warnings_seen),
        "config": O.config_record(args),
        "environment": environment_stamp(),
    }
    if truth is not None:
        results["truth"] = {"kind": "csv", "source": f"accuracies from {args.truth}",
                            "accuracy": {n: truth[n] for n in files}}
        results["evaluation"] = _clean({m: {k: e[k] for k in EVALUATION_KEYS} for m, e in (evaluation or {}).items()})
        results["evaluation_intervals"] = _clean({m: {k: v for k, v in e.items() if k not in EVALUATION_KEYS}
                                                  for m, e in (evaluation or {}).items()})
    if rec is not None:
        results["ranking"] = ranking_order(results, rec)
        results["recommended"] = results["ranking"][0]
    return results


def write_files_outputs(args: argparse.Namespace, df: Any, truth: dict[str, float] | None,
                        evaluation: dict[str, dict[str, Any]] | None, warnings_seen: list[str]) -> None:
    """``--out DIR`` in file mode: ``results.json``, ``scores.csv``, ``config.yaml`` and, when matplotlib is
    installed (``nctransfer[report]``), ``report.html`` and ``report.md``."""
    out = Path(args.out)
    results = files_results(args, df, truth, evaluation, warnings_seen)
    out.mkdir(parents=True, exist_ok=True)
    write_results_json(results, out / "results.json")
    write_scores_csv(results, out / "scores.csv")
    O.write_config(out, args)
    try:
        from nctransfer.reports import write_report  # deferred on purpose: the [report] extra may be missing

        write_report(results, out)
    except ImportError as exc:  # the report extra is not installed: the data files are written anyway
        print(f"nctransfer: warning: no report.html/report.md ({exc}); pip install 'nctransfer[report]'",
              file=sys.stderr)
    print(f"wrote {out / 'results.json'}, scores.csv, config.yaml" +
          (", report.html" if (out / "report.html").is_file() else ""), file=sys.stderr)


def _list_methods() -> int:
    import pandas as pd  # deferred on purpose (with the scores): CLI start-up speed

    from nctransfer.transferability import methods_table

    t = methods_table()[["title", "direction", "inputs", "pool_relative", "default_in_rank", "paper"]]

    with pd.option_context("display.width", 250, "display.max_colwidth", 70):
        print(t.to_string())
    return 0


def run_models(args: argparse.Namespace) -> int:
    """Models mode: :func:`nctransfer.rank_models` end to end, then a short summary and the report's path."""
    # deferred on purpose: the pipeline (torch, timm) loads only when the command runs (CLI start-up speed)
    from nctransfer.pipeline import rank_models

    if getattr(args, "files", None):
        raise InputValueError("rank: give either FILE.npz arguments (file mode) or --models (models mode), not both.")
    if not args.data:
        raise InputValueError("rank --models: --data is required (fashion-mnist, digits, an ImageFolder directory "
                              "or torchvision:<Name>).")
    if not args.out:
        raise InputValueError("rank --models: --out DIR is required (results.json, scores.csv, report.html go there).")
    data_kw = ({"train": args.data, "test": args.test_data} if getattr(args, "test_data", None)
               else {"data": args.data})
    results = rank_models(
        args.models, **data_kw, taps=args.taps, truth=args.truth or "probe", out=args.out, methods=args.scores,
        method_options=_parse_options(getattr(args, "option", None)) or None, recommended_score=args.score,
        per_class=args.per_class, test_per_class=args.test_per_class, image_size=args.image_size,
        batch_size=args.batch_size, device=args.device, pretrained=args.pretrained, seed=args.seed,
        cache_dir=O.cache_arg(args), compare_finetune=args.compare_finetune, progress=args.progress,
        config={"command": "rank", "cli": O.config_options(args)},
        backend=getattr(args, "backend", "local"), ray_address=getattr(args, "ray_address", None),
    )
    return print_ranking_outcome(results, args.out, args.json)


def run(args: argparse.Namespace) -> int:
    if getattr(args, "list_methods", False):
        return _list_methods()
    if getattr(args, "models", None):
        return run_distributed(run_models, args)  # under torchrun: data-parallel extraction, rank 0 reports
    if getattr(args, "files", None):
        return run_files(args)
    raise InputValueError("give one or more FILE.npz (arrays X, y, optional P), e.g. "
                          "`nctransfer rank a.npz b.npz --truth truth.csv`, or models and a dataset: "
                          "`nctransfer rank --models A,B --data fashion-mnist --out DIR`; `--list-methods` lists "
                          "the scores.")
