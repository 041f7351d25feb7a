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

import numpy as np

from nctransfer.exceptions import InputValueError, NotFoundError
from nctransfer.utils.io import dumps_json, to_jsonable

X_KEYS = ("X", "x", "features", "feats", "embeddings", "X_train")
Y_KEYS = ("y", "labels", "label", "targets", "target", "y_train")
_STATS_KEYS = {"version", "gram", "counts", "sums", "sqnorms", "normsums"}


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
def _pick(keys: list[str], wanted: str | None, candidates: tuple[str, ...], what: str, path: Path) -> str:
    if wanted is not None:
        if wanted not in keys:
            raise NotFoundError(f"{path}: no key {wanted!r} for the {what}; available keys: {keys}.")
        return wanted
    for c in candidates:
        if c in keys:
            return c
    flag = "--x-key" if what == "features" else "--y-key"
    raise NotFoundError(f"{path}: could not find the {what} (tried {list(candidates)}); available keys: {keys}. "
                        f"Pass {flag} KEY.")


def _from_mapping(data: dict[str, Any], args: argparse.Namespace, path: Path) -> dict[str, Any]:
    from nctransfer import FeatureStats

    keys = [str(k) for k in data]
    looks_like_stats = _STATS_KEYS <= set(keys) or "classes_json" in keys or "classes_pickle" in keys
    if looks_like_stats and args.x_key is None:
        state = {k: data[k] for k in keys}
        if "classes_json" in state or "classes_pickle" in state:  # FeatureStats.save layout
            return {"stats": FeatureStats.load(path, allow_pickle=bool(getattr(args, "allow_pickle", False)))}
        state = {k: (v.numpy() if hasattr(v, "numpy") else v) for k, v in state.items()}
        return {"stats": FeatureStats.from_state_dict(state, source=f"statistics in {str(path)!r}")}
    out = {"X": data[_pick(keys, args.x_key, X_KEYS, "features", path)],
           "y": data[_pick(keys, args.y_key, Y_KEYS, "labels", path)]}
    for opt, name in (("w_key", "W"), ("b_key", "b")):
        key = getattr(args, opt)
        if key is not None:
            if key not in keys:
                raise NotFoundError(f"{path}: no key {key!r} for --{opt.replace('_', '-')}; available keys: {keys}.")
            out[name] = data[key]
    return out


def _read_csv(path: Path) -> dict[str, Any]:
    import pandas as pd

    try:
        df = pd.read_csv(path, header=None, skipinitialspace=True)
    except Exception as exc:  # pandas raises many types (ParserError, EmptyDataError, UnicodeDecodeError)
        raise InputValueError(f"could not read {path} as CSV: {exc}") from None
    if df.shape[1] < 2:
        raise InputValueError(f"{path}: a features CSV needs at least 2 columns (features..., label); "
                              f"got {df.shape[1]}.")
    first = df.iloc[0, :-1]
    if pd.to_numeric(first, errors="coerce").isna().any() and len(df) > 1:  # a header row
        df = df.iloc[1:].reset_index(drop=True)
        labels = pd.to_numeric(df.iloc[:, -1], errors="coerce")
        y = labels.to_numpy() if not labels.isna().any() else df.iloc[:, -1].to_numpy()
        if y.dtype.kind == "f" and np.all(y == np.round(y)):
            y = y.astype(np.int64)
    else:
        y = df.iloc[:, -1].to_numpy()
    feats = df.iloc[:, :-1].apply(pd.to_numeric, errors="coerce")
    bad = feats.isna().to_numpy() & ~df.iloc[:, :-1].isna().to_numpy()
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise InputValueError(f"{path}: non-numeric feature value {df.iloc[r, c]!r} in data row {r + 1}, column "
                              f"{c + 1} ({int(bad.sum())} such cells). The last column is the label; all others must "
                              "be numbers.")
    return {"X": feats.to_numpy(dtype=np.float64), "y": y}


def load_features_file(path: str | Path, args: argparse.Namespace | None = None) -> dict[str, Any]:
    """Read a features file into ``{"X", "y"[, "W", "b"]}`` or ``{"stats": FeatureStats}`` (see module doc).

    ``args`` supplies ``x_key``, ``y_key``, ``w_key``, ``b_key`` and ``allow_pickle`` (all optional).
    """
    defaults = dict(x_key=None, y_key=None, w_key=None, b_key=None, allow_pickle=False)
    ns = argparse.Namespace(**{k: getattr(args, k, v) for k, v in defaults.items()})
    from nctransfer.utils.paths import check_input_file

    p = check_input_file(path, "features file")
    suffix = p.suffix.lower()
    if suffix == ".npz":
        import zipfile

        if not zipfile.is_zipfile(p):
            raise InputValueError(f"could not read {p} as .npz: not a zip archive written by numpy.savez.")
        try:
            with open(p, "rb") as fh, np.load(fh, allow_pickle=ns.allow_pickle) as z:
                data = {k: z[k] for k in z.files}
        except ValueError as exc:
            if "allow_pickle" in str(exc):
                raise InputValueError(f"{p} holds pickled objects (e.g. labels of dtype object); pass --allow-pickle "
                                      "if you trust the file, or save plain numeric/string arrays.") from None
            raise InputValueError(f"could not read {p} as .npz: {exc}") from None
        except Exception as exc:  # zipfile.BadZipFile, OSError, ...
            raise InputValueError(f"could not read {p} as .npz: {exc}") from None
        return _from_mapping(data, ns, p)
    if suffix in (".pt", ".pth"):
        import torch

        try:
            obj = torch.load(p, map_location="cpu", weights_only=not ns.allow_pickle)
        except Exception as exc:  # UnpicklingError for refused objects, RuntimeError for corrupt files
            hint = (" It holds objects that torch.load(weights_only=True) refuses (e.g. numpy arrays): re-save "
                    "tensors, or pass --allow-pickle if you trust the file." if "weights_only" in str(exc) else "")
            raise InputValueError(f"could not read {p} with torch.load: {str(exc).splitlines()[0]}{hint}") from None
        if isinstance(obj, dict):
            return _from_mapping(obj, ns, p)
        if isinstance(obj, (tuple, list)) and len(obj) in (2, 3, 4):
            names = ["X", "y", "W", "b"][: len(obj)]
            return dict(zip(names, obj))
        length = f" of length {len(obj)}" if isinstance(obj, (tuple, list)) else ""
        raise InputValueError(f"{p}: expected a dict of tensors, a tuple (X, y) or a FeatureStats state_dict; got "
                              f"{type(obj).__name__}{length}.")
    if suffix == ".csv":
        return _read_csv(p)
    raise InputValueError(f"unsupported file type {suffix or '(none)'!r} for {p}; expected .npz, .pt/.pth or .csv.")


# ------------------------------------------------------------------------------------------------ output
def json_safe(values: dict[str, float]) -> dict[str, float | None]:
    """NaN/Inf -> None so that the output is strict JSON."""
    return to_jsonable(dict(values))


def describe(prepared: Any) -> str:
    src = "statistics" if not prepared.has_samples else "samples"
    return f"N={prepared.n} samples, d={prepared.d} features, K={prepared.K} classes (from {src})"


def run(args: argparse.Namespace) -> int:
    from nctransfer import metrics as M
    from nctransfer.utils.config import resolved_dict
    from nctransfer.utils.io import write_json_atomic
    from nctransfer.utils.paths import check_output_file

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
