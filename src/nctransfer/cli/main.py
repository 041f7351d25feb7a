"""``nctransfer`` entry point. Each sub-command lives in its own module ``nctransfer.cli.cmd_<name>``
exposing ``add_parser(parser)`` (adds the command's options to its sub-parser) and ``run(args) -> int``.
Every command gets ``--config FILE.yaml``, ``-v/--verbose`` and ``-q/--quiet`` here; the options shared by several
commands come from :mod:`nctransfer.cli.options` (one flag per idea, old spellings as hidden aliases), and a command
with an output directory writes its resolved options there as ``config.yaml``, which ``--config`` accepts back;
modules are imported lazily so that ``nctransfer metrics`` never imports timm.

Errors and exit codes (the same for every command):

- ``0`` success;
- ``2`` the invocation is wrong: a usage error (argparse), or bad input (a missing or malformed file, an invalid
  value: every :class:`~nctransfer.exceptions.NCTransferError` but a memory shortage);
- ``1`` the run failed: an I/O error while reading or writing, not enough memory, an unexpected error;
- ``130`` interrupted (Ctrl-C); ``141`` the reader of the output went away (``nctransfer rank ... | head -1``).

Each failure prints one line ``nctransfer COMMAND: error: ...`` on stderr; the Python traceback only with
``-v``. Warnings print as one line ``nctransfer: warning: ...`` each and are shown with ``-q`` too (``-q`` only
lowers the log level to errors and warnings).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import sys
import traceback
import warnings
from typing import Any

from nctransfer._version import __version__
from nctransfer.exceptions import NCTransferError
from nctransfer.utils.config import add_config_argument, config_defaults
from nctransfer.utils.device import check_device
from nctransfer.utils.optins import pickle_allowed, skip_bad_images
from nctransfer.utils.paths import check_output_dir

# command name -> module (in nctransfer.cli) and one-line help. Every command module is imported to build the parser
# (`nctransfer --help` too), so at their top they import only light modules; each one defers the heavy packages
# (torch: pipeline, finetune, pretrain, data, models, extract; scikit-learn: metrics) to its run(), so that
# `nctransfer --help` stays fast and the torch-free commands stay torch-free.
COMMANDS: dict[str, tuple[str, str]] = {
    "metrics": ("cmd_metrics", "neural-collapse metrics of a features file (.npz, .pt, .csv)"),
    "rank": ("cmd_rank", "rank candidate models (feature files, or models on a dataset) by transferability"),
    "layers": ("cmd_layers", "layer-wise collapse and linear-probe accuracy of a model on a dataset"),
    "finetune": ("cmd_finetune", "linear probe, Layer FT, SCL FT or full fine-tuning of a model"),
    "finetune-sweep": ("cmd_finetune_sweep", "data-scarcity sweep of the four fine-tuning methods"),
    "study": ("cmd_study", "pre-training study: recipes -> source collapse -> transfer"),
    "demo": ("cmd_demo", "the main job on built-in defaults"),
    "select": ("cmd_select", "choose a model within a fine-tuning budget (scores, then successive halving)"),
    "benchmark": ("cmd_benchmark", "every score on the offline suite of real pools, with intervals and baselines"),
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nctransfer", description="Neural collapse for transfer learning.")
    parser.add_argument("--version", action="version", version=f"nctransfer {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    parser._nctransfer_commands = sub.choices  # type: ignore[attr-defined]  # name -> sub-parser
    for name, (module, help_text) in COMMANDS.items():
        if only is not None and name != only:
            sub.add_parser(name, help=help_text, add_help=False)
            continue
        try:
            mod = importlib.import_module(f"nctransfer.cli.{module}")  # each command's module, by name
        except ModuleNotFoundError as exc:
            if exc.name != f"nctransfer.cli.{module}":
                raise
            continue  # command not built yet
        p = sub.add_parser(name, help=help_text, description=help_text)
        mod.add_parser(p)
        add_config_argument(p)
        _add_verbosity(p)
        if any("--data" in a.option_strings for a in p._actions) and \
                not any("--skip-bad-images" in a.option_strings for a in p._actions):
            p.add_argument("--skip-bad-images", action="store_true",
                           help="image folders: leave out image files that cannot be decoded (listed in a warning) "
                                "instead of stopping at the first one")
        p.set_defaults(_run=mod.run, _parser=p)
    return parser


def _add_verbosity(p: argparse.ArgumentParser) -> None:
    """``-v/--verbose`` (repeatable) and ``-q`` (``--quiet`` too where the command has no ``--quiet`` of its own)."""
    p.add_argument("-v", "--verbose", action="count", default=0,
                   help="more log output (-vv: debug); show the full traceback of an error")
    own_quiet = any("--quiet" in a.option_strings for a in p._actions)
    flags = ("-q",) if own_quiet else ("-q", "--quiet")
    p.add_argument(*flags, dest="quiet", action="store_true",
                   help="less output: no progress bars, log errors and warnings only (warnings are still shown)")


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time of the record (it may be replaced after set-up)."""

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def setup_logging(verbose: int = 0, quiet: bool = False) -> None:
    """Route the ``nctransfer`` loggers to stderr: WARNING by default, INFO with -v, DEBUG with -vv, and
    Python warnings as one line each (``nctransfer: warning: Category: message``), shown even with -q."""
    level = logging.DEBUG if verbose >= 2 else logging.INFO if verbose == 1 else logging.WARNING  # -q: WARNING too
    logger = logging.getLogger("nctransfer")
    logger.setLevel(level)
    if not any(getattr(h, "_nctransfer_cli", False) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("nctransfer: %(levelname)s: %(message)s"))
        handler._nctransfer_cli = True  # type: ignore[attr-defined]
        logger.addHandler(handler)

    def show(message: Warning | str, category: type[Warning], filename: str, lineno: int, file: object = None,
             line: str | None = None) -> None:
        text = " ".join(str(message).split())
        where = f" ({filename}:{lineno})" if verbose else ""
        try:
            print(f"nctransfer: warning: {category.__name__}: {text}{where}", file=sys.stderr)
        except (OSError, ValueError):  # stderr closed
            pass

    warnings.showwarning = show


def _error_line(command: str | None, exc: BaseException) -> str:
    raw = str(exc)
    if "Original Traceback" in raw:  # re-raised from a DataLoader worker: keep the original error's own message
        last = [ln for ln in raw.strip().splitlines() if ln.strip()][-1]
        raw = last.split(": ", 1)[1] if ": " in last and "Error" in last.split(": ", 1)[0] else last
    text = " ".join(raw.split()) if isinstance(exc, NCTransferError) else _describe(exc)
    return f"nctransfer{' ' + command if command else ''}: error: {text}"


def _describe(exc: BaseException) -> str:
    """One line for an error that is not an nctransfer error (I/O, memory, YAML, an unexpected bug)."""
    if isinstance(exc, OSError):
        where = f" {exc.filename!r}" if getattr(exc, "filename", None) else ""
        return f"{exc.strerror or type(exc).__name__}{where} ({type(exc).__name__})"
    if isinstance(exc, MemoryError):
        return (f"out of memory ({' '.join(str(exc).split())[:200] or type(exc).__name__}). Use fewer samples or "
                "features, the Gram domain (--domain gram) for N < d, or precision='fast'.")
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {first} (run with -v for the full traceback)"


def _exit_code(exc: BaseException) -> int:
    if isinstance(exc, MemoryError):
        return 1
    if isinstance(exc, NCTransferError):
        return 2
    return 1


def main(argv: list[str] | None = None) -> int:
    shown = warnings.showwarning
    try:
        return _main(argv)
    finally:
        warnings.showwarning = shown  # the one-line warning format lasts as long as the command


def _main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = None
    verbose = sum(a.count("v") for a in argv if a.startswith("-v") and set(a[1:]) == {"v"}) + argv.count("--verbose")
    try:
        only = argv[0] if argv and argv[0] in COMMANDS else None
        parser = build_parser(only)
        if only is not None:
            command = only
            _apply_config(parser, only, argv[1:])
        args = parser.parse_args(argv)
        if not getattr(args, "_run", None):
            parser.print_help()
            return 0 if args.command is None else 2
        command = args.command
        verbose = int(getattr(args, "verbose", 0) or 0)
        setup_logging(verbose, bool(getattr(args, "quiet", False)))
        if getattr(args, "quiet", False) and getattr(args, "progress", None) is True:
            args.progress = False  # -q also silences the progress bars of commands that spell it --no-progress
        _check_common(args)
        with contextlib.ExitStack() as stack:  # opt-ins that must reach loaders deep inside the pipelines
            if getattr(args, "allow_pickle", False):
                stack.enter_context(pickle_allowed())
            if getattr(args, "skip_bad_images", False):
                stack.enter_context(skip_bad_images())
            code = int(args._run(args) or 0)
        sys.stdout.flush()  # a closed pipe fails here, inside the handlers below, not at interpreter exit
        return code
    except KeyboardInterrupt:
        _quiet_print(f"nctransfer{' ' + command if command else ''}: interrupted")
        return 130
    except BrokenPipeError:
        # the reader closed the pipe (`... | head -1`): stop quietly; point stdout at /dev/null so that the
        # interpreter's final flush does not fail again
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except Exception:  # noqa: BLE001 - stdout without a file descriptor (tests, embedding)
            pass
        return 141
    except SystemExit:
        raise
    except Exception as exc:  # noqa: BLE001 - every failure becomes one line (the traceback with -v)
        if verbose:
            traceback.print_exc()
        _quiet_print(_error_line(command, exc))
        return _exit_code(exc)


def _apply_config(parser: argparse.ArgumentParser, command: str, argv: list[str]) -> None:
    """``--config FILE``: its values become the sub-parser's defaults (explicit flags still win), and options it
    sets are no longer required on the command line (``nctransfer layers --config OUT/config.yaml`` alone runs
    the configuration a command wrote)."""
    pre = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    pre.add_argument("--config", default=None)
    known, _ = pre.parse_known_args(argv)
    sub = getattr(parser, "_nctransfer_commands", {}).get(command)
    if not known.config or sub is None:
        return
    values = config_defaults(sub, known.config)
    sub.set_defaults(**values)
    for action in sub._actions:
        if action.required and action.dest in values and values[action.dest] is not None:
            action.required = False


def _quiet_print(line: str) -> None:
    try:
        print(line, file=sys.stderr)
    except (OSError, ValueError):
        pass


def _check_common(args: argparse.Namespace) -> None:
    """Checks shared by every command, run before any work: the device exists; output and cache locations can be
    written (nothing is created here)."""
    device = getattr(args, "device", None)
    if device is not None:
        check_device(device, "--device")
    cache = getattr(args, "cache_dir", None)
    if cache is not None and str(cache).lower() not in ("none", "default", ""):
        check_output_dir(cache, "--cache-dir")
    out = getattr(args, "out", None)
    if isinstance(out, str) and out:
        check_output_dir(out, "--out")


if __name__ == "__main__":
    sys.exit(main())
