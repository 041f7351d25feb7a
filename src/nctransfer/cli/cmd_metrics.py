"""``nctransfer metrics FILE``: every neural-collapse metric of a features file (docs/methods.md#collapse-metrics).

Accepted files:

- ``.npz``: arrays ``X`` ``[N, d]`` and ``y`` ``[N]`` (keys chosen with ``--x-key`` / ``--y-key``; common names such
  as ``features`` / ``labels`` are found automatically), or statistics written by ``FeatureStats.save`` (then only
  the statistics-based metrics are computed);
- ``.pt`` / ``.pth``: ``torch.save`` of a dict of tensors, a tuple/list ``(X, y)`` or a ``FeatureStats.state_dict()``;
- ``.csv``: one sample per row, last column = label, optional header row.

Prints a table (metric, direction, value), or with ``--json`` one JSON object ``{metric: value}`` (NaN -> null).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import Any

from nctransfer.stats.features_file import X_KEYS, Y_KEYS
from nctransfer.stats.features_file import load_features_file as read_features_file
from nctransfer.utils.config import resolved_dict
from nctransfer.utils.io import dumps_json, to_jsonable, write_json_atomic
from nctransfer.utils.paths import check_output_file


def add_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE", help="features file: .npz, .pt/.pth or .csv (last column = label)")
    parser.add_argument("--x-key", default=None, help=f"key of the features [N, d] (default: first of {X_KEYS})")
    parser.add_argument("--y-key", default=None, help=f"key of the labels [N] (default: first of {Y_KEYS})")
    parser.add_argument("--w-key", default=None, help="key of classifier weights [K, d] (enables nc3 and nc4 vs W)")
    parser.add_argument("--b-key", default=None, help="key of the classifier bias [K] (with --w-key)")
    parser.add_argument("--metrics", default=None,
                        help="comma-separated metric names or patterns (default: all applicable); "
                             "see `python -c 'import nctransfer.metrics as m; print(m.list_metrics())'`")
    parser.add_argument("--ridge", type=float, default=None, help="VCI ridge variant lambda (default: pseudo-inverse)")
    parser.add_argument("--nc1-rank", type=int, default=None, help="eigenpairs of Sigma_B kept by nc1/fuzziness")
    parser.add_argument("--center", action="store_true", help="numerical_rank on class-centred features")
    parser.add_argument("--domain", choices=("auto", "features", "gram"), default="auto",
                        help="d x d ('features') or N x N ('gram') computation; auto: gram when N < d")
    parser.add_argument("--allow-pickle", action="store_true",
                        help="allow pickled objects in .npz/.pt files (only for files you trust)")
    parser.add_argument("--json", action="store_true", help="print one JSON object {metric: value}")
    parser.add_argument("--output", default=None, metavar="FILE.json",
                        help="also write the values and the resolved options to this JSON file (atomically)")


# ------------------------------------------------------------------------------------------------ loading
def load_features_file(path: str | Path, args: argparse.Namespace | None = None) -> dict[str, Any]:
    """Read a features file into ``{"X", "y"[, "W", "b"]}`` or ``{"stats": FeatureStats}`` (see module doc) with
    :func:`nctransfer.stats.features_file.load_features_file`.

    ``args`` supplies ``x_key``, ``y_key``, ``w_key``, ``b_key`` and ``allow_pickle`` (all optional).
    """
    return read_features_file(path, x_key=getattr(args, "x_key", None), y_key=getattr(args, "y_key", None),
                              w_key=getattr(args, "w_key", None), b_key=getattr(args, "b_key", None),
                              allow_pickle=bool(getattr(args, "allow_pickle", False)))


# ------------------------------------------------------------------------------------------------ output
def json_safe(values: dict[str, float]) -> dict[str, float | None]:
    """NaN/Inf -> None so that the output is strict JSON."""
    return to_jsonable(dict(values))


def describe(prepared: Any) -> str:
    src = "statistics" if not prepared.has_samples else "samples"
    return f"N={prepared.n} samples, d={prepared.d} features, K={prepared.K} classes (from {src})"


def run(args: argparse.Namespace) -> int:
    from nctransfer import metrics as M  # deferred: scikit-learn, for the start-up of every command (see cli.main)

    if args.output:  # before loading or computing anything: a bad --output must not lose the results
        check_output_file(args.output, "--output")
    data = load_features_file(args.file, args)
    source = data["stats"] if "stats" in data else data["X"]
    y = None if "stats" in data else data["y"]
    options: dict[str, dict[str, Any]] = {}
    if args.ridge is not None:
        options["vci"] = {"ridge": args.ridge}
    if args.nc1_rank is not None:
        options["nc1"] = options["fuzziness"] = {"rank": args.nc1_rank}
    if args.center:
        options["numerical_rank"] = {"center": True}
    names = None if not args.metrics else [m.strip() for m in args.metrics.split(",") if m.strip()]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        prepared = M.prepare(source, y, domain=args.domain)
        values = M.compute_all(prepared, metrics=names, W=data.get("W"), b=data.get("b"), options=options)
    seen = set()
    for w in caught:
        msg = f"warning ({w.category.__name__}): {w.message}"
        if msg not in seen:
            seen.add(msg)
            print(msg, file=sys.stderr)
    if args.json:
        print(dumps_json(values, indent=None))
    else:
        print(f"{args.file}: {describe(prepared)}")
        print(M.format_table(values))
    if args.output:
        write_json_atomic(args.output, {"file": str(args.file), "n": prepared.n, "d": prepared.d, "K": prepared.K,
                                        "metrics": json_safe(values), "config": resolved_dict(args)})
    return 0
