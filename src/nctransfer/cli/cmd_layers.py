"""``nctransfer layers``: layer-wise collapse and linear-probe accuracy of a model on a dataset
(Li et al., TMLR 2024, figure 9; docs/methods.md#layer-wise #finetuning).

Example::

    nctransfer layers --model efficientnet_lite0 --data fashion-mnist --per-class 300 --image-size 64 --out runs/l0

writes ``runs/l0/layers.json`` (``{"taps": [{"tap", "index", "dim", "nc1", "vci", "cdnv", ...,
"probe_accuracy"}, ...], "correlations": {...}, ...}``), ``runs/l0/layers.png`` (NC1 and accuracy per tap;
accuracy against NC1), ``runs/l0/layers.csv``, ``runs/l0/config.yaml`` (the resolved options:
``nctransfer layers --config runs/l0/config.yaml`` runs it again) and ``runs/l0/config.json`` (the same options and
the environment stamp), and prints a table (``--json``: the content of ``layers.json`` instead).

``--cache-dir`` is the cache root shared with ``rank`` and ``demo``: features go to ``ROOT/features``.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from nctransfer.cli import options as O
from nctransfer.exceptions import InputValueError
from nctransfer.utils.io import dumps_json, write_json_atomic, write_text_atomic
from nctransfer.utils.repro import environment_stamp, seed_everything


def add_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True,
                        help="efficientnet_lite0/1/2 (bundled), timm:<name>, torchvision:<name>, hf:<repo>, "
                             "file:<path>[?arch=<name>]")
    parser.add_argument("--data", required=True,
                        help="fashion-mnist, digits, an ImageFolder directory, torchvision:<DatasetName> or hf:<name> "
                             "(Hugging Face hub, online); with --test-data: the training set, used whole")
    parser.add_argument("--test-data", default=None,
                        help="explicit test set, used as given (--data is then the training set; no re-split)")
    parser.add_argument("--out", required=True, metavar="DIR", help="output directory")
    parser.add_argument("--per-class", type=int, default=100,
                        help="training images per class (seeded balanced subsample; default 100)")
    parser.add_argument("--test-per-class", type=int, default=None,
                        help="test images per class (default: same as --per-class; 0 = the whole test split)")
    parser.add_argument("--image-size", type=int, default=None, help="resize images to this size "
                        "(default: the model's input size)")
    parser.add_argument("--taps", default="all",
                        help="comma-separated tap names, module paths (layer3.1.conv2, body.2), indices or regex "
                             "patterns (default: all units + penultimate)")
    parser.add_argument("--token-pool", choices=("mean", "cls"), default="mean", help="transformer token pooling")
    parser.add_argument("--metrics", default=None, help="comma-separated metric names/patterns (default: all)")
    parser.add_argument("--no-probe", action="store_true", help="skip the linear probe (NCC accuracy only)")
    parser.add_argument("--c-grid", default=None,
                        help="comma-separated inverse L2 strengths for the probe (default: 7 values in [1e-3, 1e3])")
    parser.add_argument("--seed", type=int, default=0, help="subsampling and probe seed")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    parser.add_argument("--dtype", default=None, choices=("float32", "float16", "bfloat16"),
                        help="autocast dtype of the forward pass (default float32)")
    parser.add_argument("--threads", type=int, default=None, help="torch/BLAS threads (default: library default)")
    O.add_data_root(parser)
    parser.add_argument("--download", action="store_true", help="allow torchvision datasets to download")
    O.add_cache(parser)
    O.add_pretrained(parser)
    O.add_plots(parser)
    O.add_progress(parser)
    O.add_json(parser, "layers.json")
    O.add_allow_pickle(parser)


def _taps(text: str) -> object:
    if text.strip().lower() == "all":
        return "all"
    items: list[object] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            items.append(int(part))
        except ValueError:
            items.append(part)
    return items


def run(args: argparse.Namespace) -> int:
    # deferred on purpose: torch, timm and the data loaders load only when the command runs (CLI start-up speed)
    from nctransfer.data import load_dataset
    from nctransfer.layers import analyze
    from nctransfer.models import load_model

    if args.per_class is not None and args.per_class < 1:
        raise InputValueError(f"--per-class must be a positive integer; got {args.per_class}.")
    if args.test_per_class is not None and args.test_per_class < 0:
        raise InputValueError(f"--test-per-class must be >= 0; got {args.test_per_class}.")
    c_grid = None
    if args.c_grid:
        try:
            c_grid = tuple(float(v) for v in args.c_grid.split(","))
        except ValueError as exc:
            raise InputValueError(f"--c-grid must be comma-separated numbers; got {args.c_grid!r}.") from exc
    out = Path(args.out)
    seed_everything(args.seed)
    model = load_model(args.model, pretrained=args.pretrained)
    common = dict(model=model, image_size=args.image_size, root=args.data_root, download=args.download,
                  seed=args.seed)
    # a split with fewer samples than requested is reported (one line, even with --quiet)
    data = {"train": args.data, "test": args.test_data} if getattr(args, "test_data", None) else args.data
    train = load_dataset(data, "train", per_class=args.per_class, **common)
    tpc = args.per_class if args.test_per_class is None else (args.test_per_class or None)
    test = load_dataset(data, "test", per_class=tpc, **common)
    cache_dir = O.features_cache_dir(args)  # ROOT/features, as rank and demo (an old features folder is read as is)
    kwargs = {}
    if c_grid is not None:
        kwargs["C_grid"] = c_grid
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # per-tap metric warnings are recorded in layers.json instead
        result = analyze(model, train, test, _taps(args.taps),
                         metrics=[m.strip() for m in args.metrics.split(",")] if args.metrics else None,
                         probe=not args.no_probe, seed=args.seed, batch_size=args.batch_size, device=args.device,
                         dtype=args.dtype, token_pool=args.token_pool, cache_dir=cache_dir,
                         no_cache=cache_dir is None, progress=args.progress, threads=args.threads, **kwargs)
    out.mkdir(parents=True, exist_ok=True)
    payload = result.to_dict()
    payload["info"]["model_info"] = model.nctransfer_info.to_dict()
    payload["info"]["data"] = args.data
    write_json_atomic(out / "layers.json", payload)
    df = result.to_dataframe()
    if "warnings" in df:
        df["warnings"] = df["warnings"].map(lambda w: "; ".join(w) if isinstance(w, list) else "")
    write_text_atomic(out / "layers.csv", df.to_csv(index=False))
    O.write_config(out, args)
    write_json_atomic(out / "config.json", {"command": "layers", "options": O.config_options(args),
                                            "environment": environment_stamp()})
    if args.plots:
        result.plot(out / "layers.png", title=f"{model.nctransfer_info.name} on {args.data} "
                                              f"({len(train)} train / {len(test)} test images)")
    if args.json:
        print(dumps_json(payload, indent=None))
    elif not args.quiet:
        print(f"{model.nctransfer_info.name} on {args.data}: {len(train)} train / {len(test)} test images, "
              f"{len(result.rows)} taps")
        print(result.table())
    if not args.quiet:
        print(f"wrote {out / 'layers.json'}" + (f", {out / 'layers.png'}" if args.plots else ""), file=sys.stderr)
    return 0
