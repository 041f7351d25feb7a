"""``nctransfer finetune``: linear probe, Layer FT, SCL FT or full fine-tuning of a model on a dataset (docs/methods.md#finetuning).

Examples:
    nctransfer finetune --model efficientnet_lite0 --data fashion-mnist --method scl --unit auto \\
        --epochs 3 --per-class 100 --test-per-class 100 --image-size 64 --lr 0.05 --out runs/scl

Writes ``DIR/result.json`` (accuracy, penultimate NC1, trainable parameters and percentage, seconds per epoch, peak
memory, per-epoch history, resolved configuration, environment stamp), ``DIR/config.json``, ``DIR/config.yaml``
(the resolved command-line options: ``nctransfer finetune --config DIR/config.yaml`` runs it again; the same options
also in ``DIR/command.json``) and ``DIR/checkpoint.pt`` (every epoch; ``--resume`` continues from it).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from nctransfer.cli import options as O
from nctransfer.utils.io import dumps_json, write_json_atomic

METHOD_CHOICES = ("lp", "layer", "scl", "full", "linear_probe", "layer_ft", "scl_ft", "full_ft")


def _int_or_none(s: str) -> int | None:
    return None if s.lower() in ("none", "all", "") else int(s)


def _float_or_none(s: str) -> float | None:
    return None if str(s).strip().lower() in ("none", "") else float(s)


def _per_class(s: str) -> int | None:
    """``N`` images per class; ``0``/``all``/``none``: everything (``None``)."""
    if str(s).strip().lower() in ("none", "all", "", "0"):
        return None
    v = int(s)
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected a number of images per class >= 0 (0: all); got {s!r}")
    return v


def add_data_model_options(parser: argparse.ArgumentParser) -> None:
    """Options shared by ``finetune`` and ``finetune-sweep``: model, data, training hyper-parameters, auto unit."""
    g = O.group(parser, "model and data")
    g.add_argument("--model", required=True, help="model name for nctransfer.models.load_model (efficientnet_lite0, "
                                                  "timm:resnet18, torchvision:resnet50, hf:<repo>, file:<path>)")
    O.add_pretrained(g)
    g.add_argument("--data", required=True, help="downstream dataset: fashion-mnist, digits, an ImageFolder "
                                                  "directory or torchvision:<Name> (training split used)")
    g.add_argument("--test-data", default=None, help="test dataset (default: the test split of --data)")
    g.add_argument("--test-per-class", type=_per_class, default=50,
                   help="balanced, seeded subsample of the test set: images per class (default %(default)s, as "
                        "rank; 0 or 'all': the whole test split). The final test accuracy is computed once, on "
                        "exactly these images")
    g.add_argument("--image-size", type=int, default=None, help="input resolution (default: the model's own)")

    t = O.group(parser, "training (defaults: Li et al., TMLR 2024, appendix B)")
    t.add_argument("--skip", choices=("pad", "conv"), default="pad",
                   help="SCL skip branch: zero-padding (Li et al., TMLR 2024) or 1x1 conv + BatchNorm (Li et al., 2022 preprint)")
    t.add_argument("--epochs", type=int, default=200, help="training epochs (paper: 200)")
    t.add_argument("--batch-size", type=int, default=64, help="mini-batch size")
    t.add_argument("--lr", type=float, default=0.1, help="initial learning rate of the classifier (and skip branch)")
    t.add_argument("--backbone-lr", type=float, default=None, help="initial learning rate of backbone parameters "
                                                                  "(default: --lr)")
    t.add_argument("--min-lr-ratio", type=float, default=1e-3, help="cosine floor as a fraction of the initial rate")
    t.add_argument("--momentum", type=float, default=0.9, help="SGD momentum")
    t.add_argument("--weight-decay", type=float, default=1e-4, help="SGD weight decay")
    t.add_argument("--bn-policy", choices=("update", "frozen"), default="update",
                   help="'update': every BatchNorm updates its running statistics on the downstream data (paper); "
                        "'frozen': those outside the trained modules stay in eval mode")
    t.add_argument("--seed", type=int, default=0, help="seed of initialisation, subsets, shuffling and dropout")
    t.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    t.add_argument("--no-amp", dest="amp", action="store_false", help="disable mixed precision on CUDA")
    t.add_argument("--num-workers", type=int, default=0, help="DataLoader workers")
    t.add_argument("--threads", type=int, default=None, help="torch CPU threads during training (default: torch's)")
    t.add_argument("--eval-every", type=int, default=1,
                   help="per-epoch evaluation on the fixed --eval-per-class subsets every this many epochs; 0: only "
                        "the final evaluation (whole test split, once, after the last epoch)")
    t.add_argument("--eval-per-class", type=_per_class, default=10,
                   help="per-epoch evaluation subsets: images per class of the test and training data (fixed, "
                        "seeded; default %(default)s; 0 or 'all': the whole sets every time)")
    t.add_argument("--nc1-taps", default=None, help="also record the NC1 of these taps every evaluation: 'all' or a "
                                                   "comma-separated list (Li et al., TMLR 2024, figure 10)")
    O.add_progress(t)

    a = parser.add_argument_group("automatic unit choice (--unit auto)")
    a.add_argument("--auto-candidates", default="all",
                   help="'all', 'stage_first' (first unit of each stage) or a comma-separated list of units")
    a.add_argument("--auto-max-percent", type=float, default=None,
                   help="parameter budget: skip units whose run trains more than this %% of the parameters")
    a.add_argument("--auto-max-params", type=int, default=None, help="parameter budget in parameters")
    a.add_argument("--auto-probe-steps", type=int, default=40,
                   help="optimiser steps of the probe run per candidate (whole epochs over the probe subset)")
    a.add_argument("--auto-criterion", choices=("train_nc1", "heldout_nc1", "heldout_accuracy"), default="train_nc1",
                   help="train_nc1: lowest penultimate NC1 on the probe images (Li et al., TMLR 2024, conjecture); heldout_nc1: "
                        "on other training images; heldout_accuracy: accuracy on other training images")
    a.add_argument("--auto-probe-per-class", type=_int_or_none, default=20,
                   help="training images per class used by the probe ('all' for every image)")
    a.add_argument("--auto-max-probe-fraction", type=_float_or_none, default=0.5,
                   help="time budget of the probe as a fraction of the run's estimated training time (default "
                        "%(default)s; 'none': no fraction cap); deepest candidates first, the rest skipped")
    a.add_argument("--auto-min-probe-seconds", type=float, default=30.0,
                   help="the fraction cap never goes below this many seconds (default %(default)s)")
    a.add_argument("--auto-max-probe-seconds", type=_float_or_none, default=None,
                   help="absolute time budget of the probe in seconds (wins over --auto-min-probe-seconds)")
    a.add_argument("--auto-no-cache", dest="auto_cache", action="store_false",
                   help="recompute the frozen part at every probe step instead of replaying cached features")


def add_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--method", choices=METHOD_CHOICES, default="scl",
                        help="lp (linear probe), layer (Layer FT), scl (SCL FT) or full (full fine-tuning)")
    parser.add_argument("--unit", default=None, help="fine-tuning unit for layer/scl: a unit name (e.g. layer3.0, "
                                                     "blocks.5.0), an index (negative from the end) or 'auto'")
    parser.add_argument("--per-class", type=int, default=None, help="balanced subsample of the training set "
                                                                    "(images per class)")
    add_data_model_options(parser)
    O.add_resume(parser, default=False)
    O.add_allow_pickle(parser)
    parser.add_argument("--out", required=True, metavar="DIR", help="output directory")
    O.add_json(parser, "result.json (without the history)")


def _split_list(s: Any) -> Any:
    if s is None or isinstance(s, (list, tuple)):
        return s
    s = str(s).strip()
    if s in ("all", "stage_first"):
        return s
    items = [x.strip() for x in s.split(",") if x.strip()]
    return [int(x) if x.lstrip("-").isdigit() else x for x in items]


def config_from_args(args: argparse.Namespace, method: str = "linear_probe", unit: Any = None) -> Any:
    """A validated :class:`~nctransfer.finetune.FinetuneConfig` from the parsed options."""
    # deferred: imports torch (see cli.main)
    from nctransfer.finetune import AutoUnitConfig, FinetuneConfig, canonical_method

    method = canonical_method(method, "--method")
    taps = _split_list(args.nc1_taps)
    auto = AutoUnitConfig(candidates=_split_list(args.auto_candidates), max_trainable_percent=args.auto_max_percent,
                          max_trainable_params=args.auto_max_params, probe_steps=args.auto_probe_steps,
                          criterion=args.auto_criterion,
                          probe_per_class=args.auto_probe_per_class,
                          max_probe_fraction=args.auto_max_probe_fraction,
                          min_probe_seconds=args.auto_min_probe_seconds,
                          max_probe_seconds=args.auto_max_probe_seconds, cache_features=args.auto_cache)
    return FinetuneConfig(
        method=method, unit=unit if method in ("layer_ft", "scl_ft") else None,
        skip=args.skip if method == "scl_ft" else "pad", epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        backbone_lr=args.backbone_lr, min_lr_ratio=args.min_lr_ratio, momentum=args.momentum,
        weight_decay=args.weight_decay, bn_policy=args.bn_policy, image_size=args.image_size, seed=args.seed,
        device=args.device, amp=args.amp, num_workers=args.num_workers, num_threads=args.threads,
        eval_every=args.eval_every, eval_per_class=args.eval_per_class or None,
        nc1_taps=taps if taps != "stage_first" else None, progress=args.progress, auto=auto,
    )


def write_command(out: str, args: argparse.Namespace, command_json: bool = True) -> None:
    """``DIR/config.yaml`` (the resolved options, accepted back by ``--config``) and, for ``finetune``, the same
    options in ``DIR/command.json`` (the name earlier versions wrote)."""
    O.write_config(out, args)
    if command_json:
        write_json_atomic(Path(out) / "command.json", {"command": args.command, "options": O.config_options(args)})


def run(args: argparse.Namespace) -> int:
    from nctransfer.finetune import finetune  # deferred: imports torch (see cli.main)

    unit = args.unit
    cfg = config_from_args(args, args.method, unit)
    write_command(args.out, args)
    res = finetune(args.model, args.data, args.test_data if args.test_data is not None else args.data, cfg,
                   out_dir=args.out, resume=args.resume, per_class=args.per_class,
                   test_per_class=args.test_per_class or None, pretrained=args.pretrained)
    if args.json:
        d = res.to_dict()
        d.pop("history", None)
        d.pop("trainable_names", None)
        print(dumps_json(d, indent=None))
    else:
        print(res.summary())
        if res.auto:
            print(f"auto unit: {res.auto['reason']}")
            tb = res.auto.get("time_budget")
            if tb and not res.auto.get("reused"):
                cap = "no cap" if tb["seconds"] is None else f"budget {tb['seconds']:.0f} s"
                print(f"auto unit probe: {tb['probed']} candidate(s) probed in {res.auto['probe_seconds']:.1f} s "
                      f"({cap}; {tb['not_probed']} not probed)")
        t = res.timing
        if t:
            print(f"time: {t['total']:.1f} s (training {t['train']:.1f} s = {100 * t['train_share']:.0f}%, "
                  f"evaluation {t['eval']:.1f} s, unit probe {t['probe']:.1f} s); test accuracy on "
                  f"{res.n_test} images")
        print(f"wrote {args.out}/result.json", file=sys.stderr)
    return 0
