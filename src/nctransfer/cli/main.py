"""``nctransfer`` entry point. Each sub-command lives in its own module ``nctransfer.cli.cmd_<name>``
exposing ``add_parser(parser)`` (adds the command's options to its sub-parser) and ``run(args) -> int``.
Every command gets ``--config FILE.yaml`` here; ``nctransfer.utils.config.resolved_dict(args)`` gives the
resolved options to write next to the outputs; modules are imported lazily so that
``nctransfer metrics`` never imports timm.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from nctransfer.utils.config import add_config_argument, config_defaults

# command name -> module (in nctransfer.cli) and one-line help
COMMANDS: dict[str, tuple[str, str]] = {
    "metrics": ("cmd_metrics", "neural-collapse metrics of a features file (.npz, .pt, .csv)"),
    "rank": ("cmd_rank", "rank candidate models (feature files, or models on a dataset) by transferability"),
    "layers": ("cmd_layers", "layer-wise collapse and linear-probe accuracy of a model on a dataset"),
    "finetune": ("cmd_finetune", "linear probe, Layer FT, SCL FT or full fine-tuning of a model"),
    "finetune-sweep": ("cmd_finetune_sweep", "data-scarcity sweep of the four fine-tuning methods"),
    "study": ("cmd_study", "pre-training study: recipes -> source collapse -> transfer"),
    "demo": ("cmd_demo", "the main job on built-in defaults"),
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nctransfer", description="Neural collapse for transfer learning.")
    from nctransfer._version import __version__

    parser.add_argument("--version", action="version", version=f"nctransfer {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        if only is not None and name != only:
            sub.add_parser(name, help=help_text, add_help=False)
            continue
        try:
            mod = importlib.import_module(f"nctransfer.cli.{module}")
        except ModuleNotFoundError as exc:
            if exc.name != f"nctransfer.cli.{module}":
                raise
            continue  # command not built yet
        p = sub.add_parser(name, help=help_text, description=help_text)
        mod.add_parser(p)
        add_config_argument(p)
        p.set_defaults(_run=mod.run, _parser=p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    only = argv[0] if argv and argv[0] in COMMANDS else None
    parser = build_parser(only)
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 0 if args.command is None else 2
    from nctransfer.exceptions import NCTransferError

    try:
        if getattr(args, "config", None):  # YAML values become defaults; explicit flags still win
            args._parser.set_defaults(**config_defaults(args._parser, args.config))
            args = parser.parse_args(argv)
        return int(args._run(args) or 0)
    except NCTransferError as exc:
        print(f"nctransfer {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
