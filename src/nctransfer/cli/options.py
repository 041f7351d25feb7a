"""One option vocabulary for every ``nctransfer`` command.

Each idea that more than one command needs (random weights, progress bars, the cache, the dataset folder, resuming,
which transferability scores, the output directory, the saved configuration, ``--json``) is added by one function
of this module, so it has one canonical flag, one ``dest`` (the key in ``config.yaml``) and one help text in every
command. Spellings that commands used before are kept as **hidden aliases** (``help=argparse.SUPPRESS``): they
parse into the same ``dest``, so every existing command line keeps working, but ``--help`` and the documentation
show one name. Old keys of saved configuration files are mapped too (:func:`legacy_keys`, applied by
:func:`nctransfer.utils.config.config_defaults`). :data:`VOCABULARY` is the table of those ideas; the CLI reference
page (``docs/cli.md``) and ``tests/test_cli_consistency.py`` are written from it.

Why a small layer over :mod:`argparse` rather than ``jsonargparse``:

- the commands already are argparse parsers with lazy imports (``nctransfer metrics`` never imports torch or timm);
  a generated parser would import every configuration class, and so their packages, before any command runs;
- ``jsonargparse`` would be a new core dependency of a package whose core is numpy/scipy/pandas/scikit-learn;
- the hidden aliases, ``BooleanOptionalAction`` pairs and the legacy configuration keys needed to keep every
  documented command line working are a few lines each here, and would be custom actions there anyway;
- the option types that matter (comma lists, ``0``/``all`` for "every image", ``none`` for "no cache") are plain
  callables.

The typed configuration dataclasses of the library (``FinetuneConfig``, ``StudyConfig``...) stay the source of
the defaults they own; the commands build them from the parsed namespace.
"""

from __future__ import annotations

import argparse
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import yaml

from nctransfer.utils.config import resolved_dict
from nctransfer.utils.io import to_jsonable, write_text_atomic

HIDDEN = argparse.SUPPRESS

_LEGACY_ATTR = "_nctransfer_legacy_keys"


@dataclass(frozen=True)
class Idea:
    """One entry of the shared vocabulary: the canonical flags, the ``dest`` (also the ``config.yaml`` key), the
    hidden old spellings and the commands that take it."""

    name: str
    flags: tuple[str, ...]
    dest: str
    aliases: tuple[str, ...] = ()
    meaning: str = ""
    old_keys: tuple[str, ...] = field(default=())


#: the shared vocabulary (table of docs/cli.md, checked by tests/test_cli_consistency.py)
VOCABULARY: tuple[Idea, ...] = (
    Idea("random weights", ("--pretrained", "--no-pretrained"), "pretrained", ("--random-init",),
         "pre-trained weights (default) or a random initialisation", ("no_pretrained", "random_init")),
    Idea("progress bars", ("--progress", "--no-progress"), "progress", (),
         "progress bars on stderr (default on; -q turns them off too)", ("no_progress",)),
    Idea("more output", ("-v", "--verbose"), "verbose", (),
         "-v: info log and the full traceback of an error; -vv: debug log"),
    Idea("less output", ("-q", "--quiet"), "quiet", (),
         "errors and warnings only, no progress bars (warnings are still shown)"),
    Idea("cache root", ("--cache-dir",), "cache_dir", (),
         "cache ROOT: features under ROOT/features, stage results under ROOT/results; 'none' disables it"),
    Idea("no cache", ("--no-cache",), "no_cache", (), "neither read nor write the cache"),
    Idea("dataset folder", ("--data-root",), "data_root", ("--root",),
         "folder of the dataset files (Fashion-MNIST IDX files, torchvision root)", ("root",)),
    Idea("resume", ("--resume", "--no-resume"), "resume", (), "continue (or reuse) finished work in --out"),
    Idea("transferability scores", ("--scores",), "scores", ("--methods",),
         "comma-separated score names ('all' for every one)", ("methods",)),
    Idea("ranking score", ("--score",), "score", ("--recommended",),
         "the one score that orders the candidates (default: the recommended score)", ("recommended",)),
    Idea("fine-tuning method", ("--method",), "method", ("--target",),
         "lp, layer, scl or full (also linear_probe, layer_ft, scl_ft, full_ft)", ("target",)),
    Idea("fine-tuning comparison", ("--compare-finetune", "--no-compare-finetune"), "compare_finetune",
         ("--no-finetune",), "also compare a linear probe with SCL FT on the top-ranked model", ("no_finetune",)),
    Idea("figures", ("--plots", "--no-plots"), "plots", ("--no-plot",), "draw the figures (default on)",
         ("no_plot",)),
    Idea("JSON output", ("--json",), "json", (), "print one strict JSON object on stdout (NaN/Inf as null)"),
    Idea("configuration file", ("--config",), "config", (),
         "YAML of options (keys = long flags); the config.yaml a command writes is accepted back"),
    Idea("output directory", ("--out",), "out", (), "output directory (config.yaml is written there)"),
    Idea("device", ("--device",), "device", (), "cpu, cuda, cuda:N"),
    Idea("seed", ("--seed",), "seed", (), "random seed"),
    Idea("training images per class", ("--per-class",), "per_class", (), "balanced, seeded subsample"),
    Idea("test images per class", ("--test-per-class",), "test_per_class", (), "balanced, seeded subsample"),
    Idea("execution backend", ("--backend",), "backend", (), "local (this process) or ray (one Ray task each)"),
    Idea("Ray cluster", ("--ray-address",), "ray_address", (), "address of the Ray cluster for --backend ray"),
    Idea("unsafe loading", ("--allow-pickle",), "allow_pickle", (),
         "allow files that need unpickling (can run code: only for files you trust)"),
)

#: ideas by dest
BY_DEST: dict[str, Idea] = {i.dest: i for i in VOCABULARY}


# ------------------------------------------------------------------------------------------------ value types
def comma_list(text: str | Sequence[str] | None) -> list[str] | None:
    """``"a, b,c"`` -> ``["a", "b", "c"]``; a list is split item by item; ``None``/empty -> ``None``."""
    if text is None:
        return None
    items = [text] if isinstance(text, str) else list(text)
    out = [p.strip() for item in items for p in str(item).split(",") if p.strip()]
    return out or None


class _JoinList(argparse.Action):
    """A hidden alias that took a space-separated list (``--methods a b``): stored as the canonical comma string."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        setattr(namespace, self.dest, ",".join(comma_list(values) or []) or None)


# ------------------------------------------------------------------------------------------------ registration
def legacy_keys(parser: argparse.ArgumentParser) -> dict[str, tuple[str, Callable[[Any], Any]]]:
    """Old configuration keys accepted by ``parser``: ``{old_key: (dest, convert)}``."""
    return getattr(parser, _LEGACY_ATTR, {})


def legacy_key(parser: argparse.ArgumentParser, old: str, dest: str, convert: Callable[[Any], Any] = lambda v: v
               ) -> None:
    """Accept the old configuration key ``old`` for ``dest`` in ``--config`` files (``convert`` maps its value)."""
    table = dict(getattr(parser, _LEGACY_ATTR, {}))
    table[old] = (dest, convert)
    setattr(parser, _LEGACY_ATTR, table)


def _root(p: Any) -> argparse.ArgumentParser:
    """The parser an argument group belongs to (legacy keys are recorded on the parser)."""
    return getattr(p, "_nctransfer_parser", p)


def group(parser: argparse.ArgumentParser, title: str) -> Any:
    """``parser.add_argument_group(title)`` that remembers its parser (so the functions below accept groups)."""
    g = parser.add_argument_group(title)
    g._nctransfer_parser = parser  # type: ignore[attr-defined]
    return g


def _negate(v: Any) -> bool:
    return not bool(v)


def add_pretrained(p: Any) -> None:
    """``--pretrained/--no-pretrained`` (dest ``pretrained``, default on); hidden ``--random-init``."""
    p.add_argument("--pretrained", dest="pretrained", action=argparse.BooleanOptionalAction, default=True,
                   help="pre-trained weights (default) or, with --no-pretrained, a random initialisation")
    p.add_argument("--random-init", dest="pretrained", action="store_false", default=HIDDEN, help=HIDDEN)
    legacy_key(_root(p), "no_pretrained", "pretrained", _negate)
    legacy_key(_root(p), "random_init", "pretrained", _negate)


def add_progress(p: Any) -> None:
    """``--progress/--no-progress`` (dest ``progress``): progress bars on stderr; ``-q`` turns them off too."""
    p.add_argument("--progress", dest="progress", action=argparse.BooleanOptionalAction, default=True,
                   help="progress bars on stderr (default on; -q also turns them off)")
    legacy_key(_root(p), "no_progress", "progress", _negate)


def add_cache(p: Any, *, default: str = "default") -> None:
    """``--cache-dir ROOT`` (the cache root: features under ``ROOT/features``, stage results under
    ``ROOT/results``; ``none`` disables it) and ``--no-cache``."""
    p.add_argument("--cache-dir", dest="cache_dir", default=default, metavar="ROOT",
                   help="cache root: features under ROOT/features, stage results under ROOT/results ('default': "
                        "$NCTRANSFER_CACHE's parent or ~/.cache/nctransfer; 'none' disables it)")
    p.add_argument("--no-cache", dest="no_cache", action="store_true",
                   help="neither read nor write the cache (same as --cache-dir none)")


def add_data_root(p: Any) -> None:
    """``--data-root DIR`` (dest ``data_root``); hidden ``--root``."""
    p.add_argument("--data-root", dest="data_root", default=None, metavar="DIR",
                   help="folder of the dataset files (Fashion-MNIST IDX files, torchvision root)")
    p.add_argument("--root", dest="data_root", default=HIDDEN, help=HIDDEN)
    legacy_key(_root(p), "root", "data_root")


def add_resume(p: Any, *, default: bool) -> None:
    """``--resume/--no-resume`` (dest ``resume``) with the command's own default."""
    p.add_argument("--resume", dest="resume", action=argparse.BooleanOptionalAction, default=default,
                   help="continue from (or reuse) what a previous run left in --out (default: "
                        f"{'on' if default else 'off'})")


def add_scores(p: Any, *, default: str | None = None, help: str | None = None, space_alias: bool = False) -> None:
    """``--scores A,B`` (dest ``scores``: a comma-separated string of transferability score names, or ``'all'``);
    hidden ``--methods`` (a space-separated list too where ``space_alias``)."""
    p.add_argument("--scores", dest="scores", default=default, metavar="A,B",
                   help=help or "comma-separated transferability scores ('all' for every one; default: every score "
                                "except the expensive nleep and parc); `nctransfer rank --list-methods` lists them")
    if space_alias:
        p.add_argument("--methods", dest="scores", nargs="+", action=_JoinList, default=HIDDEN, help=HIDDEN)
    else:
        p.add_argument("--methods", dest="scores", default=HIDDEN, help=HIDDEN)
    legacy_key(_root(p), "methods", "scores", lambda v: ",".join(comma_list(v) or []) or None)


def add_score(p: Any, *, alias: bool = False) -> None:
    """``--score NAME`` (dest ``score``): the one score that orders the candidates; hidden ``--recommended``."""
    p.add_argument("--score", dest="score", default=None, metavar="NAME",
                   help="the score that orders the candidates (default: nctransfer's recommended score)")
    if alias:
        p.add_argument("--recommended", dest="score", default=HIDDEN, help=HIDDEN)
        legacy_key(_root(p), "recommended", "score")


def add_plots(p: Any) -> None:
    """``--plots/--no-plots`` (dest ``plots``); hidden ``--no-plot``."""
    p.add_argument("--plots", dest="plots", action=argparse.BooleanOptionalAction, default=True,
                   help="draw the figures (default on)")
    p.add_argument("--no-plot", dest="plots", action="store_false", default=HIDDEN, help=HIDDEN)
    legacy_key(_root(p), "no_plot", "plots", _negate)


def add_compare_finetune(p: Any, *, default: bool) -> None:
    """``--compare-finetune/--no-compare-finetune`` (dest ``compare_finetune``); hidden ``--no-finetune``."""
    p.add_argument("--compare-finetune", dest="compare_finetune", action=argparse.BooleanOptionalAction,
                   default=default, help="also compare a linear probe with SCL FT on the top-ranked model "
                                         f"(default: {'on' if default else 'off'})")
    p.add_argument("--no-finetune", dest="compare_finetune", action="store_false", default=HIDDEN, help=HIDDEN)
    legacy_key(_root(p), "no_finetune", "compare_finetune", _negate)


def add_json(p: Any, what: str = "the result") -> None:
    """``--json``: print one strict JSON object on stdout (NaN/Inf as ``null``) instead of tables."""
    p.add_argument("--json", dest="json", action="store_true",
                   help=f"print {what} as one JSON object on stdout (strict JSON: NaN/Inf as null)")


def add_backend(p: Any, task: str) -> None:
    """``--backend local|ray`` and ``--ray-address ADDR``; ``task`` names what one Ray task runs."""
    p.add_argument("--backend", choices=("local", "ray"), default="local",
                   help=f"'local' (this process) or 'ray' ({task} as one Ray task; needs pip install "
                        "'nctransfer[ray]'); default %(default)s")
    p.add_argument("--ray-address", default=None, metavar="ADDR",
                   help="Ray cluster address for --backend ray ('auto', 'ray://host:10001'; default: the running "
                        "instance or a new local one)")


def add_allow_pickle(p: Any) -> None:
    p.add_argument("--allow-pickle", dest="allow_pickle", action="store_true",
                   help="also load files that need full unpickling (e.g. a whole pickled module); unpickling can "
                        "run code, so only for files you trust")


# ------------------------------------------------------------------------------------------------ the cache
def cache_root(args: argparse.Namespace) -> Path | None:
    """The cache root of ``--cache-dir``/``--no-cache``: ``None`` when disabled; ``default`` (or unset) is
    ``$NCTRANSFER_CACHE``'s parent or ``~/.cache/nctransfer``, as in :func:`nctransfer.rank_models`."""
    value = getattr(args, "cache_dir", None)
    if getattr(args, "no_cache", False) or (value is not None and str(value).strip().lower() in ("none", "")):
        return None
    if value is None or str(value).strip().lower() == "default":
        from nctransfer.extract import default_cache_dir  # deferred: the extract package needs torch

        return default_cache_dir().parent
    return Path(os.path.expanduser(str(value)))


def cache_arg(args: argparse.Namespace) -> str | Path | None:
    """``cache_dir=`` of :func:`nctransfer.rank_models` and the benchmark: ``"default"``, a root, or ``None``."""
    value = getattr(args, "cache_dir", None)
    if value is None or str(value).strip().lower() == "default":
        return None if getattr(args, "no_cache", False) else "default"
    return cache_root(args)


def _looks_like_features_folder(path: Path) -> bool:
    """A folder laid out as a feature store itself (``<base>/<entry>/manifest.json``), not as a cache root."""
    if not path.is_dir() or (path / "features").is_dir():
        return False
    return any(True for _ in path.glob("*/*/manifest.json"))


def features_cache_dir(args: argparse.Namespace) -> Path | None:
    """The feature store of the cache root (``ROOT/features``), shared by ``layers``, ``rank`` and ``demo``.

    Before this vocabulary ``layers --cache-dir DIR`` took the features folder itself; such a folder (entries
    directly under it, no ``features/`` inside) is still read as it is, with a warning saying how to pass its
    root instead, so old caches are not recomputed."""
    root = cache_root(args)
    if root is None:
        return None
    if _looks_like_features_folder(root):
        warnings.warn(f"--cache-dir {str(root)!r} holds feature entries directly (the layout `nctransfer layers` "
                      f"used before --cache-dir meant the cache root); it is used as the features folder. Pass "
                      f"its parent if it is named 'features', or move it to {str(root / 'features')!r}, to share "
                      "it with `nctransfer rank` and `demo`.", UserWarning, stacklevel=2)
        return root
    return root / "features"


# ------------------------------------------------------------------------------------------------ config.yaml
CONFIG_NAME = "config.yaml"
#: entries of the namespace that are not options of the command
_NOT_OPTIONS = ("config", "command")


def config_options(args: argparse.Namespace) -> dict[str, Any]:
    """The resolved options of a command (every ``dest`` but ``config``), JSON/YAML-safe."""
    return to_jsonable({k: v for k, v in resolved_dict(args).items() if k not in _NOT_OPTIONS})


def config_record(args: argparse.Namespace) -> dict[str, Any]:
    """``{"command": NAME, **options}``: what ``config.yaml`` holds (the key ``command`` is checked, not an
    option, when the file is read back by ``--config``)."""
    return {"command": getattr(args, "command", None), **config_options(args)}


def write_config(out: str | os.PathLike, args: argparse.Namespace, name: str = CONFIG_NAME) -> Path:
    """Write ``OUT/config.yaml`` (atomically): the command and its resolved options, flat, keys as the long flags
    (``nctransfer CMD --config OUT/config.yaml`` runs the same command again)."""
    rec = config_record(args)
    head = (f"# nctransfer {rec['command']}: resolved options. Run again with\n"
            f"#   nctransfer {rec['command']} --config {Path(out) / name}\n")
    Path(out).mkdir(parents=True, exist_ok=True)
    return write_text_atomic(Path(out) / name, head + yaml.safe_dump(rec, sort_keys=False))


__all__ = ["VOCABULARY", "BY_DEST", "Idea", "comma_list", "legacy_keys", "legacy_key", "group", "add_pretrained", "add_progress",
           "add_cache", "add_data_root", "add_resume", "add_scores", "add_score", "add_plots",
           "add_compare_finetune", "add_json", "add_allow_pickle", "cache_root", "cache_arg", "features_cache_dir",
           "config_options", "config_record", "write_config", "CONFIG_NAME"]
