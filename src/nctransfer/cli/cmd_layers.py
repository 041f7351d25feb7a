"""``nctransfer layers``: layer-wise collapse and linear-probe accuracy of a model on a dataset
(Li et al., TMLR 2024, figure 9; docs/methods.md#layer-wise #finetuning).

Example::

    nctransfer layers --model efficientnet_lite0 --data fashion-mnist --per-class 300 --image-size 64 --out runs/l0

writes ``runs/l0/layers.json`` (``{"taps": [{"tap", "index", "dim", "nc1", "vci", "cdnv", ...,
"probe_accuracy"}, ...], "correlations": {...}, ...}``), ``runs/l0/layers.png`` (NC1 and accuracy per tap;
accuracy against NC1), ``runs/l0/layers.csv`` and ``runs/l0/config.json`` (resolved options and environment), and
prints a table.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nctransfer.exceptions import InputValueError


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
    parser.add_argument("--root", default=None, help="dataset directory (Fashion-MNIST IDX files, torchvision root)")
    parser.add_argument("--download", action="store_true", help="allow torchvision datasets to download")
    parser.add_argument("--cache-dir", default=None,
                        help="feature cache (default: $NCTRANSFER_CACHE or ~/.cache/nctransfer/features)")
    parser.add_argument("--no-cache", action="store_true", help="neither read nor write the feature cache")
    parser.add_argument("--random-init", action="store_true", help="random weights instead of pre-trained ones")
    parser.add_argument("--no-plot", action="store_true", help="do not draw layers.png")
    parser.add_argument("--quiet", action="store_true", help="no progress bar and no table")
    parser.add_argument("--allow-pickle", action="store_true",
                        help="also load file: models that need full unpickling (a whole pickled module); unpickling "
                             "can run code, so only for files you trust")


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
    import warnings

    from nctransfer.data import load_dataset
    from nctransfer.extract import default_cache_dir
    from nctransfer.layers import analyze
    from nctransfer.models import load_model
    from nctransfer.utils.config import resolved_dict
    from nctransfer.utils.io import write_json_atomic, write_text_atomic
    from nctransfer.utils.repro import environment_stamp, seed_everything

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
    model = load_model(args.model, pretrained=not args.random_init)
    common = dict(model=model, image_size=args.image_size, root=args.root, download=args.download, seed=args.seed)
    # a split with fewer samples than requested is reported (one line, even with --quiet)
    data = {"train": args.data, "test": args.test_data} if getattr(args, "test_data", None) else args.data
    train = load_dataset(data, "train", per_class=args.per_class, **common)
    tpc = args.per_class if args.test_per_class is None else (args.test_per_class or None)
    test = load_dataset(data, "test", per_class=tpc, **common)
    cache_dir = None if args.no_cache else (args.cache_dir or default_cache_dir())
    kwargs = {}
    if c_grid is not None:
        kwargs["C_grid"] = c_grid
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # per-tap metric warnings are recorded in layers.json instead
        result = analyze(model, train, test, _taps(args.taps),
                         metrics=[m.strip() for m in args.metrics.split(",")] if args.metrics else None,
                         probe=not args.no_probe, seed=args.seed, batch_size=args.batch_size, device=args.device,
                         dtype=args.dtype, token_pool=args.token_pool, cache_dir=cache_dir, no_cache=args.no_cache,
                         progress=not args.quiet, threads=args.threads, **kwargs)
    out.mkdir(parents=True, exist_ok=True)
    payload = result.to_dict()
    payload["info"]["model_info"] = model.nctransfer_info.to_dict()
    payload["info"]["data"] = args.data
    write_json_atomic(out / "layers.json", payload)
    df = result.to_dataframe()
    if "warnings" in df:
        df["warnings"] = df["warnings"].map(lambda w: "; ".join(w) if isinstance(w, list) else "")
    write_text_atomic(out / "layers.csv", df.to_csv(index=False))
    write_json_atomic(out / "config.json", {"command": "layers", "options": resolved_dict(args),
                                            "environment": environment_stamp()})
    if not args.no_plot:
        result.plot(out / "layers.png", title=f"{model.nctransfer_info.name} on {args.data} "
                                              f"({len(train)} train / {len(test)} test images)")
    if not args.quiet:
        print(f"{model.nctransfer_info.name} on {args.data}: {len(train)} train / {len(test)} test images, "
              f"{len(result.rows)} taps")
        print(result.table())
        print(f"wrote {out / 'layers.json'}" + ("" if args.no_plot else f", {out / 'layers.png'}"), file=sys.stderr)
    return 0
