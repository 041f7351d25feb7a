"""``--config FILE.yaml`` for every command: YAML values become argparse defaults, explicit flags win,
and the resolved configuration is written next to the outputs."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import yaml

from nctransfer.exceptions import InputValueError, NotFoundError


def load_config(path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML mapping; keys may use dashes or underscores (``per-class`` == ``per_class``)."""
    p = Path(path)
    if p.is_dir():
        raise InputValueError(f"--config: {str(p)!r} is a directory; expected a YAML file.")
    if not p.is_file():
        raise NotFoundError(f"--config: file {str(p)!r} does not exist.")
    try:
        with open(p, encoding="utf-8") as fh:
            data = yaml.safe_load(fh) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise InputValueError(f"--config: {str(p)!r} is not valid YAML ({problem} at{where or ' an unknown place'})."
                              ) from None
    except UnicodeDecodeError:
        raise InputValueError(f"--config: {str(p)!r} is not a UTF-8 text file.") from None
    if not isinstance(data, dict):
        raise InputValueError(f"--config: {p} must hold a YAML mapping of option: value; got {type(data).__name__}.")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def add_config_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE.yaml", default=None,
                        help="YAML file of options (keys as the long flags); explicit flags override it")


#: keys of a written configuration record that are not options
_RECORD_KEYS = ("command", "config")


def _options_of(values: dict[str, Any], command: str | None, path: str | os.PathLike) -> dict[str, Any]:
    """The options in a configuration mapping: a flat mapping of options (hand-written, or the ``config.yaml`` a
    command writes: ``command`` + options), or a record with the options under ``cli`` (``rank --models`` and
    ``demo``: the pipeline's configuration with the command line's options) or ``options`` (the older
    ``config.json`` / ``command.json`` files)."""
    written_by = values.get("command")
    for key in ("cli", "options"):
        if isinstance(values.get(key), dict):
            inner = {str(k).replace("-", "_"): v for k, v in values[key].items()}
            written_by = inner.get("command", written_by)
            values = inner
            break
    if command and isinstance(written_by, str) and written_by != command:
        raise InputValueError(f"--config {path}: this configuration was written by `nctransfer {written_by}`, not "
                              f"`nctransfer {command}`.")
    return {k: v for k, v in values.items() if k not in _RECORD_KEYS}


def config_defaults(subparser: argparse.ArgumentParser, path: str | os.PathLike) -> dict[str, Any]:
    """YAML values checked against the options of ``subparser``; unknown keys raise listing the valid ones.

    Accepts a flat mapping of options and the configuration files the commands write (see :func:`_options_of`);
    old option names recorded on the parser (``_nctransfer_legacy_keys``: ``{old: (dest, convert)}``, e.g.
    ``methods`` -> ``scores``, ``no_pretrained`` -> ``pretrained``) are mapped to the current ones."""
    command = subparser.prog.split()[-1] if subparser.prog else None
    values = _options_of(load_config(path), command, path)
    valid = {a.dest for a in subparser._actions if a.dest not in ("help", "config")}
    for old, (dest, convert) in getattr(subparser, "_nctransfer_legacy_keys", {}).items():
        if old in values and old not in valid:
            value = convert(values.pop(old))
            values.setdefault(dest, value)
    unknown = sorted(set(values) - valid)
    if unknown:
        raise InputValueError(f"--config {path}: unknown option(s) {unknown}; valid options: {sorted(valid)}.")
    return values


def resolved_dict(args: argparse.Namespace) -> dict[str, Any]:
    """The effective options of a command as a plain dict (private fields dropped)."""
    return {k: v for k, v in vars(args).items() if not k.startswith("_") and not callable(v)}
