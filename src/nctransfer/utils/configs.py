"""The shape of nctransfer's typed configurations: dataclasses whose fields carry ``help`` metadata, validated in
``__post_init__`` and round-tripped through dicts, JSON and YAML.

Example:
    >>> from dataclasses import dataclass
    >>> @dataclass
    ... class Demo(ConfigBase):
    ...     seed: int = opt(0, "random seed")
    >>> Demo.from_yaml(Demo(seed=3).to_yaml()) == Demo(seed=3)
    True
    >>> Demo.help()
    {'seed': 'random seed'}
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import field
from pathlib import Path
from typing import Any, Mapping

import yaml

from nctransfer.exceptions import InputValueError
from nctransfer.utils.io import dumps_json, to_jsonable, write_text_atomic


def opt(default: Any, help: str, **metadata: Any) -> Any:  # noqa: A002 - mirrors argparse
    """A dataclass field with ``help`` text (mutable defaults are copied per instance)."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help, **metadata})
    return field(default=default, metadata={"help": help, **metadata})


def _read(text_or_path: str | os.PathLike, kind: str) -> str:
    """The text itself, or the content of the file it names: a path object; for JSON a string not starting with
    ``{``; for YAML a one-line string ending in ``.yaml``/``.yml`` or naming an existing file."""
    s = text_or_path if isinstance(text_or_path, str) else None
    if s is not None:
        if kind == "json":
            is_text = s.lstrip().startswith("{")
        else:
            is_text = "\n" in s or not (s.lower().endswith((".yaml", ".yml")) or Path(s).expanduser().is_file())
        if is_text:
            return s
    p = Path(text_or_path).expanduser()
    if not p.is_file():
        raise InputValueError(f"configuration file {str(p)!r} does not exist.")
    return p.read_text(encoding="utf-8")


class ConfigBase:
    """Dict/JSON/YAML round trip, field help and validated copies, shared by the configuration dataclasses."""

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/YAML-ready dict (nested configurations become dicts, tuples lists, NaN ``None``)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            v = getattr(self, f.name)
            out[f.name] = v.to_dict() if isinstance(v, ConfigBase) else to_jsonable(v)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, ignore_unknown: bool = False) -> Any:
        """Inverse of :meth:`to_dict`. Unknown keys raise, listing the valid ones (or are left out with
        ``ignore_unknown``, e.g. to read the settings back from a run's recorded configuration)."""
        if not isinstance(data, Mapping):
            raise InputValueError(f"{cls.__name__}.from_dict: expected a dict; got {type(data).__name__}.")
        names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
        unknown = sorted(set(data) - set(names))
        if unknown and not ignore_unknown:
            raise InputValueError(f"{cls.__name__}: unknown option(s) {unknown}; valid options: {sorted(names)}.")
        return cls(**{k: v for k, v in data.items() if k in names})

    def to_json(self, path: str | os.PathLike | None = None) -> str:
        """Strict JSON text; written atomically to ``path`` when given."""
        text = dumps_json(self.to_dict(), indent=2, sort_keys=True)
        if path is not None:
            write_text_atomic(path, text + "\n")
        return text

    @classmethod
    def from_json(cls, text_or_path: str | os.PathLike, *, ignore_unknown: bool = False) -> Any:
        """Parse JSON text, or read a ``.json`` file."""
        return cls.from_dict(json.loads(_read(text_or_path, "json")), ignore_unknown=ignore_unknown)

    def to_yaml(self, path: str | os.PathLike | None = None) -> str:
        """YAML text (fields in declaration order); written atomically to ``path`` when given."""
        text = yaml.safe_dump(self.to_dict(), sort_keys=False)
        if path is not None:
            write_text_atomic(path, text)
        return text

    @classmethod
    def from_yaml(cls, text_or_path: str | os.PathLike, *, ignore_unknown: bool = False) -> Any:
        """Parse YAML text, or read a ``.yaml``/``.yml`` file."""
        try:
            data = yaml.safe_load(_read(text_or_path, "yaml"))
        except yaml.YAMLError as exc:
            raise InputValueError(f"{cls.__name__}: not valid YAML: {str(exc).splitlines()[0]}") from None
        return cls.from_dict({} if data is None else data, ignore_unknown=ignore_unknown)

    @classmethod
    def help(cls) -> dict[str, str]:
        """Field name -> help text."""
        return {f.name: f.metadata.get("help", "") for f in dataclasses.fields(cls)}  # type: ignore[arg-type]

    def replace(self, **changes: Any) -> Any:
        """A validated copy with some fields changed."""
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]

    @classmethod
    def from_call(cls, config: Any = None, /, **keywords: Any) -> Any:
        """The settings of one call of a function that takes both keywords and ``config=``: the ``keywords`` alone,
        or, when ``config`` is an instance of this class, that configuration with the keywords that differ from
        their defaults applied on top."""
        if not isinstance(config, cls):
            return cls(**keywords)
        changed = {}
        for k, v in keywords.items():
            f = cls.__dataclass_fields__[k]  # type: ignore[attr-defined]
            default = f.default_factory() if callable(f.default_factory) else f.default
            if not _same(v, default):
                changed[k] = v
        return config.replace(**changed)


def _same(a: Any, b: Any) -> bool:
    """``a`` and ``b`` are the same setting (equal and of the same type; lists and tuples element-wise)."""
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    try:
        return type(a) is type(b) and bool(a == b)
    except Exception:  # noqa: BLE001 - e.g. arrays: never equal to a default
        return False
