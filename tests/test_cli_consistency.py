"""One command line: every sub-command speaks the vocabulary of ``nctransfer.cli.options``.

Walks every sub-command's parser (same idea -> same flag and ``dest``; same flag -> same ``dest``; old spellings
hidden but still parsed), checks that ``--json`` output is strict JSON (no ``NaN`` tokens), that the
``config.yaml`` every command writes is accepted back by ``--config`` and reproduces the resolved options, the
exit codes of a usage error (2) and a runtime error (1), the shared cache layout of ``layers`` and ``rank``, and that
``nctransfer rank a.npz b.npz | head -1`` ends without a traceback."""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import yaml

from nctransfer.cli import options as O
from nctransfer.cli.main import COMMANDS, build_parser, main

# the commands and, per command, the arguments it requires (so that a parse succeeds)
REQUIRED = {
    "metrics": ["f.npz"],
    "rank": [],
    "layers": ["--model", "m", "--data", "digits", "--out", "o"],
    "finetune": ["--model", "m", "--data", "digits", "--out", "o"],
    "finetune-sweep": ["--model", "m", "--data", "digits", "--out", "o"],
    "study": ["--source", "digits:0-4", "--target", "digits:5-9", "--grid", "g.yaml", "--out", "o"],
    "demo": [],
    "select": ["--models", "a,b", "--data", "digits", "--budget", "4"],
    "benchmark": ["--out", "o"],
}
#: commands that write an output directory, hence OUT/config.yaml
WRITES_CONFIG = ("rank", "layers", "finetune", "finetune-sweep", "study", "demo", "select", "benchmark")
#: visible flags that look like an old alias of a shared idea but mean something else in that command
OTHER_IDEA = {("finetune-sweep", "--methods"),  # fine-tuning methods (lp,layer,scl,full), not scores
              ("study", "--target")}  # target datasets, not the fine-tuning method


def _strict(text: str) -> object:
    def refuse(token: str) -> None:
        raise ValueError(f"non-standard JSON constant {token!r}")

    return json.loads(text, parse_constant=refuse)


@pytest.fixture(scope="module")
def parsers() -> dict[str, argparse.ArgumentParser]:
    return dict(build_parser()._nctransfer_commands)


def _long_flags(action: argparse.Action) -> list[str]:
    return [s for s in action.option_strings if s.startswith("--")]


def _hidden(action: argparse.Action) -> bool:
    return action.help == argparse.SUPPRESS


# ------------------------------------------------------------------------------------------------ the vocabulary
def test_every_command_is_built(parsers):
    assert set(parsers) == set(COMMANDS)


def test_same_idea_same_flag_and_dest(parsers):
    for cmd, p in parsers.items():
        for a in p._actions:
            for flag in _long_flags(a):
                for idea in O.VOCABULARY:
                    if flag in idea.flags:
                        assert a.dest == idea.dest, (cmd, flag, a.dest, idea)
                        assert not _hidden(a), (cmd, flag)
                    if flag in idea.aliases and (cmd, flag) not in OTHER_IDEA:
                        assert a.dest == idea.dest and _hidden(a), (cmd, flag, a.dest, idea)


def test_same_flag_same_dest_across_commands(parsers):
    seen: dict[str, tuple[str, str]] = {}
    for cmd, p in parsers.items():
        for a in p._actions:
            if _hidden(a):
                continue
            for flag in _long_flags(a):
                if flag in seen:
                    assert seen[flag][1] == a.dest, f"{flag}: dest {seen[flag][1]!r} in {seen[flag][0]}, " \
                                                    f"{a.dest!r} in {cmd}"
                else:
                    seen[flag] = (cmd, a.dest)


def test_same_dest_same_visible_flags_across_commands(parsers):
    flags: dict[str, dict[str, frozenset[str]]] = {}
    for cmd, p in parsers.items():
        for a in p._actions:
            if _hidden(a) or not a.option_strings or a.dest == "help":
                continue
            flags.setdefault(a.dest, {})[cmd] = flags.get(a.dest, {}).get(cmd, frozenset()) | set(a.option_strings)
    for dest, per_cmd in flags.items():
        assert len(set(per_cmd.values())) == 1, f"dest {dest!r} is spelled differently: {per_cmd}"


def test_old_spellings_are_hidden_everywhere(parsers):
    old = {"--random-init", "--root", "--no-plot", "--recommended", "--no-finetune"}
    for cmd, p in parsers.items():
        visible = {f for a in p._actions if not _hidden(a) for f in a.option_strings}
        assert not (old & visible), (cmd, old & visible)
        help_text = p.format_help()
        for flag in old:
            assert f"{flag} " not in help_text and f"{flag}," not in help_text, (cmd, flag)


def test_shared_options_everywhere(parsers):
    for cmd, p in parsers.items():
        flags = {f for a in p._actions for f in a.option_strings}
        assert {"--config", "-v", "--verbose", "-q", "--quiet", "--json"} <= flags, cmd
        if cmd in WRITES_CONFIG:
            assert "--out" in flags, cmd
        if cmd != "metrics":
            assert {"--progress", "--no-progress"} <= flags, cmd
    for cmd in ("rank", "layers", "finetune", "finetune-sweep"):
        assert {"--pretrained", "--no-pretrained"} <= {f for a in parsers[cmd]._actions for f in a.option_strings}
    for cmd in ("rank", "layers", "demo", "benchmark"):
        assert {"--cache-dir", "--no-cache"} <= {f for a in parsers[cmd]._actions for f in a.option_strings}


# every old command line still parses, into the canonical dest
ALIASES = [
    ("layers", ["--random-init"], {"pretrained": False}),
    ("layers", ["--no-pretrained"], {"pretrained": False}),
    ("layers", ["--root", "/data"], {"data_root": "/data"}),
    ("layers", ["--no-plot", "--quiet"], {"plots": False, "quiet": True}),
    ("layers", ["--cache-dir", "/c", "--no-cache"], {"cache_dir": "/c", "no_cache": True}),
    ("rank", ["--no-pretrained"], {"pretrained": False}),
    ("rank", ["--methods", "logme,ncti"], {"scores": "logme,ncti"}),
    ("rank", ["--recommended", "hscore"], {"score": "hscore"}),
    ("rank", ["--compare-finetune", "--quiet"], {"compare_finetune": True, "quiet": True}),
    ("rank", [], {"pretrained": True, "compare_finetune": False, "progress": True, "cache_dir": "default"}),
    ("finetune", ["--no-progress", "--resume", "--no-pretrained"], {"progress": False, "resume": True,
                                                                      "pretrained": False}),
    ("finetune", [], {"resume": False, "pretrained": True, "progress": True}),
    ("finetune-sweep", ["--no-resume", "--methods", "lp,scl"], {"resume": False, "methods": "lp,scl"}),
    ("finetune-sweep", [], {"resume": True}),
    ("study", ["--methods", "logme", "ncti"], {"scores": "logme,ncti"}),
    ("study", ["--methods", "logme,ncti"], {"scores": "logme,ncti"}),
    ("study", ["--no-plots", "--data-root", "/d", "--quiet"], {"plots": False, "data_root": "/d", "quiet": True}),
    ("demo", ["--no-finetune", "--quiet"], {"compare_finetune": False, "quiet": True}),
    ("demo", [], {"compare_finetune": True}),
    ("select", ["--target", "full_ft"], {"method": "full_ft"}),
    ("select", ["--method", "lp"], {"method": "lp"}),
    ("benchmark", ["--methods", "logme", "--no-cache"], {"scores": "logme", "no_cache": True}),
]


@pytest.mark.parametrize("cmd,argv,expected", ALIASES, ids=[f"{c}:{' '.join(a) or 'defaults'}" for c, a, _ in ALIASES])
def test_old_spellings_still_parse(cmd, argv, expected):
    args = build_parser(cmd).parse_args([cmd, *REQUIRED[cmd], *argv])
    for dest, value in expected.items():
        assert getattr(args, dest) == value, (dest, getattr(args, dest))


def test_every_alias_of_the_vocabulary_is_parsed_somewhere(parsers):
    """Each hidden alias listed in the vocabulary exists in at least one command (no dead table entries)."""
    hidden = {f for p in parsers.values() for a in p._actions if _hidden(a) for f in a.option_strings}
    for idea in O.VOCABULARY:
        for alias in idea.aliases:
            assert alias in hidden, alias


ROOT = Path(__file__).resolve().parents[1]


def documented_command_lines() -> list[tuple[str, str, list[str]]]:
    """``(file, command, argv)`` of every ``nctransfer CMD ...`` line in a fenced block of README.md and docs/
    (elided lines with ``...``, error messages and ``--config`` lines that need their file are left out)."""
    import re
    import shlex

    found = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        if not path.is_file():
            continue
        for block in re.findall(r"```[a-z]*\n(.*?)```", path.read_text(), flags=re.S):
            for line in block.replace("\\\n", " ").splitlines():
                line = re.sub(r"^\$\s+", "", line.strip())
                m = re.match(r"(?:[A-Z_]+=\S+\s+)*(?:torchrun\s.*?\s-m\s+nctransfer\.cli\.main|nctransfer)\s+"
                             r"([a-z-]+)(\s.*)?$", line)
                if not m or m.group(1) not in COMMANDS or "..." in line or "--config" in line:
                    continue
                rest = re.split(r"\s(?:\||&&|;|>|2>)\s|\s+#", m.group(2) or "")[0]
                found.append((path.name, m.group(1), shlex.split(rest)))
    return found


def test_documented_command_lines_still_parse(capsys):
    lines = documented_command_lines()
    assert len(lines) >= 10
    for name, cmd, argv in lines:
        try:
            build_parser(cmd).parse_args([cmd, *argv])
        except SystemExit as exc:
            assert not exc.code, f"{name}: nctransfer {cmd} {' '.join(argv)}: {capsys.readouterr().err}"


def test_cli_page_lists_the_vocabulary():
    """docs/cli.md shows every canonical flag and every hidden old spelling of the shared vocabulary."""
    page = (ROOT / "docs" / "cli.md").read_text()
    for idea in O.VOCABULARY:
        for flag in (*idea.flags, *idea.aliases):
            assert f"`{flag}" in page or f"`{flag.lstrip('-')}" in page or f" {flag}" in page, (idea.name, flag)


# ------------------------------------------------------------------------------------------------ config.yaml
TYPICAL = {
    "rank": ["--models", "efficientnet_lite0,random:efficientnet_lite0", "--data", "digits", "--scores",
             "logme,ncti", "--score", "ncti", "--no-pretrained", "--per-class", "7", "--out", "o"],
    "layers": ["--taps", "blocks.1.0,-1", "--random-init", "--no-plot", "--per-class", "6", "--c-grid", "1"],
    "finetune": ["--method", "scl", "--unit", "layer3.0", "--test-per-class", "all", "--no-progress", "--resume"],
    "finetune-sweep": ["--sizes", "10,20", "--methods", "lp,scl", "--no-resume", "--unit", "auto"],
    "study": ["--methods", "logme", "ncti", "--no-plots", "--data-root", "/d"],
    "demo": ["--no-finetune", "--cache-dir", "none", "--models", "efficientnet_lite0", "--out", "o"],
    "select": ["--target", "full_ft", "--score", "hscore", "--out", "o", "--no-progress"],
    "benchmark": ["--quick", "--methods", "logme", "--no-cache"],
}


def _parse(cmd: str, argv: list[str]) -> argparse.Namespace:
    return build_parser(cmd).parse_args([cmd, *argv])


@pytest.mark.parametrize("cmd", WRITES_CONFIG)
def test_written_config_reproduces_the_options(cmd, tmp_path, monkeypatch):
    """What ``write_config`` writes, fed back alone through ``--config``, gives the same resolved options (the
    required options come from the file)."""
    monkeypatch.chdir(tmp_path)
    args = _parse(cmd, [*REQUIRED[cmd], *TYPICAL[cmd]])
    path = O.write_config(tmp_path / "out", args)
    saved = yaml.safe_load(path.read_text())
    assert saved["command"] == cmd and "config" not in saved
    from nctransfer.cli.main import _apply_config

    parser = build_parser(cmd)
    _apply_config(parser, cmd, ["--config", str(path)])
    again = parser.parse_args([cmd, "--config", str(path)])
    assert O.config_options(again) == O.config_options(args)
    # an explicit flag still wins over the file
    parser = build_parser(cmd)
    _apply_config(parser, cmd, ["--config", str(path), "--seed", "5"])
    assert parser.parse_args([cmd, "--config", str(path), "--seed", "5"]).seed == 5


def test_old_config_keys_are_mapped(tmp_path):
    """A configuration written before the shared vocabulary (old keys, the pipeline's record with ``cli``)."""
    from nctransfer.utils.config import config_defaults

    old = tmp_path / "old.yaml"
    old.write_text(yaml.safe_dump({"command": "rank", "per_class": 9, "recommended_score": "ncti",
                                   "cli": {"command": "rank", "no_pretrained": True, "methods": "logme,ncti",
                                           "recommended": "ncti", "quiet": True, "config": None}}))
    parsers = build_parser()._nctransfer_commands
    values = config_defaults(parsers["rank"], old)
    assert values == {"pretrained": False, "scores": "logme,ncti", "score": "ncti", "quiet": True}
    lay = tmp_path / "layers_config.json"  # the config.json `layers` wrote
    lay.write_text(json.dumps({"command": "layers", "options": {"random_init": True, "root": "/d", "no_plot": True,
                                                                "model": "m"}, "environment": {}}))
    assert config_defaults(parsers["layers"], lay) == {"pretrained": False, "data_root": "/d", "plots": False,
                                                       "model": "m"}
    study = tmp_path / "s.yaml"
    study.write_text("methods: [logme, ncti]\n")
    assert config_defaults(parsers["study"], study) == {"scores": "logme,ncti"}
    from nctransfer.exceptions import InputValueError

    with pytest.raises(InputValueError, match="written by `nctransfer layers`"):
        config_defaults(parsers["rank"], lay)


# ------------------------------------------------------------------------------------------------ feature files
@pytest.fixture(scope="module")
def feature_files(tmp_path_factory) -> list[str]:
    d = tmp_path_factory.mktemp("feats")
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 12)
    files = []
    for i, name in enumerate("abc"):
        X = rng.normal(size=(len(y), 6)) + (i + 1) * np.eye(3, 6)[y]
        np.savez(d / f"{name}.npz", X=X, y=y)
        files.append(str(d / f"{name}.npz"))
    (d / "truth.csv").write_text("model,accuracy\na,0.5\nb,0.6\nc,0.7\n")
    return files


def test_metrics_json_is_strict(feature_files, capsys):
    assert main(["metrics", feature_files[0], "--json"]) == 0
    values = _strict(capsys.readouterr().out)
    assert isinstance(values, dict) and values["nc1"] > 0


def test_rank_files_json_is_strict_and_out_writes_files(feature_files, tmp_path, capsys):
    truth = str(Path(feature_files[0]).parent / "truth.csv")
    out = tmp_path / "out"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rc = main(["rank", *feature_files, "--scores", "logme,hscore,ncti", "--truth", truth, "--json",
                   "--out", str(out), "--no-progress"])
    assert rc == 0
    captured = capsys.readouterr()
    obj = _strict(captured.out)  # stdout holds the JSON object and nothing else
    assert set(obj["scores"]) == {"a", "b", "c"} and set(obj["evaluation"]) == {"logme", "hscore", "ncti"}
    for f in ("results.json", "scores.csv", "config.yaml"):
        assert (out / f).is_file(), f
    saved = _strict((out / "results.json").read_text())
    assert saved["recommended_score"] == "ncti" and saved["ranking"][0] == max(
        obj["scores"], key=lambda n: obj["scores"][n]["ncti"])
    assert saved["truth"]["accuracy"] == {"a": 0.5, "b": 0.6, "c": 0.7}
    import pandas as pd

    csv = pd.read_csv(out / "scores.csv", index_col=0)
    assert list(csv.index) == saved["ranking"] and math.isclose(csv.loc["a", "logme"], obj["scores"]["a"]["logme"])
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        pass
    else:
        assert (out / "report.html").is_file() and (out / "report.md").is_file()
    # the written config.yaml alone runs the same ranking again
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["rank", "--config", str(out / "config.yaml")]) == 0
    assert _strict(capsys.readouterr().out)["scores"] == obj["scores"]


def test_rank_files_score_must_be_computed(feature_files, tmp_path, capsys):
    rc = main(["rank", *feature_files, "--scores", "logme", "--score", "hscore", "--out", str(tmp_path / "o")])
    assert rc == 2 and "--score hscore" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------ exit codes
def test_usage_error_exits_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["rank", "--no-such-flag"])
    assert exc.value.code == 2
    assert "unrecognized arguments: --no-such-flag" in capsys.readouterr().err


def test_bad_input_exits_2_and_runtime_error_exits_1(feature_files, tmp_path, monkeypatch, capsys):
    assert main(["metrics", str(tmp_path / "missing.npz")]) == 2
    assert "Traceback" not in capsys.readouterr().err
    import nctransfer.metrics as M

    def boom(*a, **k):  # noqa: ANN002, ANN003, ANN202
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(M, "compute_all", boom)
    assert main(["metrics", feature_files[0]]) == 1
    err = capsys.readouterr().err
    assert err.strip().splitlines() == ["nctransfer metrics: error: RuntimeError: disk on fire (run with -v for the "
                                        "full traceback)"]
    assert main(["metrics", feature_files[0], "-v"]) == 1
    assert "Traceback" in capsys.readouterr().err


def _cli(cmdline: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    exe = f"{sys.executable} -m nctransfer.cli.main"
    return subprocess.run(["bash", "-c", cmdline.replace("NCT", exe)], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def test_rank_into_head_exits_cleanly(feature_files, tmp_path):
    files = " ".join(feature_files)
    r = _cli(f"NCT rank {files} --scores logme,hscore | head -1; echo \"rc=${{PIPESTATUS[0]}}\"", tmp_path)
    assert "Traceback" not in r.stderr and "BrokenPipeError" not in r.stderr, r.stderr
    assert r.stdout.splitlines()[0].startswith("Scores")
    assert r.stdout.strip().splitlines()[-1] in ("rc=0", "rc=141"), r.stdout
    # a reader that is gone before the first write: the broken pipe itself, quietly, exit 141
    r = _cli(f"NCT rank {files} --scores logme --json | true; echo \"rc=${{PIPESTATUS[0]}}\"", tmp_path)
    assert "Traceback" not in r.stderr and "BrokenPipeError" not in r.stderr, r.stderr
    assert r.stdout.strip() == "rc=141", (r.stdout, r.stderr)


# ------------------------------------------------------------------------------------------------ the cache
def test_cache_dir_is_the_root_for_layers_and_rank(tmp_path):
    ns = argparse.Namespace(cache_dir=str(tmp_path / "c"), no_cache=False)
    assert O.cache_root(ns) == tmp_path / "c"
    assert O.features_cache_dir(ns) == tmp_path / "c" / "features"  # the folder rank_models uses
    assert O.cache_arg(ns) == tmp_path / "c"
    for off in (argparse.Namespace(cache_dir="none", no_cache=False), argparse.Namespace(cache_dir="x", no_cache=True),
                argparse.Namespace(cache_dir="default", no_cache=True)):
        assert O.cache_root(off) is None and O.features_cache_dir(off) is None and O.cache_arg(off) is None
    default = argparse.Namespace(cache_dir="default", no_cache=False)
    from nctransfer.extract import default_cache_dir

    assert O.cache_arg(default) == "default" and O.features_cache_dir(default) == default_cache_dir().parent / "features"


def test_old_layers_features_folder_is_still_read(tmp_path):
    old = tmp_path / "feats"
    (old / "base1" / "entry1").mkdir(parents=True)
    (old / "base1" / "entry1" / "manifest.json").write_text("{}")
    ns = argparse.Namespace(cache_dir=str(old), no_cache=False)
    with pytest.warns(UserWarning, match="holds feature entries directly"):
        assert O.features_cache_dir(ns) == old
    (old / "features").mkdir()  # once it has a features/ folder it is a root
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert O.features_cache_dir(ns) == old / "features"


# ------------------------------------------------------------------------------------------------ each command
class _Obj:
    def __init__(self, d: dict) -> None:
        self._d = d

    def to_dict(self) -> dict:
        return dict(self._d)


NAN_RESULTS = {"candidates": [{"name": "a"}, {"name": "b"}], "scores": {"a": {"logme": float("nan")},
                                                                       "b": {"logme": 1.0}}}


def _fake_heavy(monkeypatch, tmp_path):
    """Replace the long computations of demo/select/benchmark/study/finetune(-sweep) by stand-ins returning NaN."""
    import pandas as pd

    import importlib

    F, B, D, S, ST = (importlib.import_module(f"nctransfer.{m}") for m in  # modules, not same-named functions
                      ("finetune", "pipeline.benchmark", "pipeline.demo", "pipeline.select", "pretrain.study"))
    from nctransfer.finetune.sweep import SweepResult
    from nctransfer.pipeline.benchmark import SuiteResult
    from nctransfer.pretrain.study import StudyResult

    def demo(**kw):  # noqa: ANN003, ANN202 - as rank_models: the outputs with the configuration (config.yaml)
        from nctransfer.pipeline.core import write_outputs

        results = {**NAN_RESULTS, "config": {"models": ["a", "b"], **kw["config"]}}
        write_outputs(results, kw["out"])
        return results

    monkeypatch.setattr(D, "run_demo", demo)
    monkeypatch.setattr(S, "select", lambda *a, **kw: _Obj({"chosen": "a", "cost": 1, "acc": float("nan")}))
    monkeypatch.setattr(B, "run_suite", lambda *a, **kw: SuiteResult(summary={"logme": {"mean": float("nan")}}))
    monkeypatch.setattr(ST, "run_study", lambda grid, config, **kw: StudyResult(
        records=[{"name": "r", "nc1": float("nan")}], rows=[], status={"r": "done"}, out=Path(config.out)))
    monkeypatch.setattr(F, "finetune", lambda *a, **kw: _Obj({"test_accuracy": float("nan"), "history": []}))
    monkeypatch.setattr(F, "data_scarcity_sweep", lambda *a, **kw: SweepResult(
        table=pd.DataFrame({"size": [10], "method": ["lp"], "accuracy": [float("nan")]}), csv_path=None,
        markdown_path=None, plot_path=None, results={}))
    (tmp_path / "g.yaml").write_text("defaults: {arch: small_cnn, width: 4, depth: 2, epochs: 1}\nrecipes:\n"
                                     "  - {loss: ce}\n")


@pytest.mark.parametrize("cmd", ["demo", "select", "benchmark", "study", "finetune", "finetune-sweep"])
def test_commands_write_config_yaml_and_strict_json(cmd, tmp_path, monkeypatch, capsys):
    """Each command writes OUT/config.yaml that --config accepts back alone, and its --json is strict JSON (the
    long computation replaced by a stand-in returning NaN)."""
    _fake_heavy(monkeypatch, tmp_path)
    monkeypatch.chdir(tmp_path)
    argv = [cmd, *REQUIRED[cmd], "--json", "--out", str(tmp_path / "o"), "--no-progress"]
    if cmd == "finetune-sweep":
        argv += ["--methods", "lp"]
    if cmd == "finetune":
        argv += ["--method", "lp"]
    assert main(argv) == 0
    obj = _strict(capsys.readouterr().out)
    assert obj
    path = tmp_path / "o" / "config.yaml"
    saved = yaml.safe_load(path.read_text())
    options = saved.get("cli", saved)  # demo: the pipeline's record, the command line's options under 'cli'
    assert saved["command"] == cmd and options["json"] is True and options["progress"] is False
    assert main([cmd, "--config", str(path)]) == 0  # alone: the required options come from the file
    assert _strict(capsys.readouterr().out) == obj


@pytest.mark.slow
def test_layers_tiny_json_config_and_shared_cache(tmp_path, capsys):
    """A tiny real model: ``layers --json`` is strict JSON, the features land in ROOT/features (as rank's do),
    and the written config.yaml alone runs it again from the cache."""
    out, cache = tmp_path / "out", tmp_path / "cache"
    argv = ["layers", "--model", "timm:resnet10t", "--random-init", "--data", "digits", "--per-class", "4",
            "--image-size", "32", "--taps", "layer1,-1", "--c-grid", "1", "--out", str(out), "--no-plot",
            "--cache-dir", str(cache), "--threads", "1", "--json", "--no-progress"]
    assert main(argv) == 0
    obj = _strict(capsys.readouterr().out)
    assert [t["tap"] for t in obj["taps"]] == ["layer1", "penultimate"]
    assert list((cache / "features").glob("*/*/manifest.json"))  # the layout rank_models uses
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["pretrained"] is False and saved["plots"] is False and saved["cache_dir"] == str(cache)
    assert json.loads((out / "config.json").read_text())["options"]["per_class"] == 4
    assert main(["layers", "--config", str(out / "config.yaml")]) == 0
    assert _strict(capsys.readouterr().out)["taps"] == obj["taps"]


def test_building_every_parser_imports_no_heavy_module():
    """``nctransfer --help`` (and ``--version``, which a core-only install runs) imports every command module to build
    its parser: those modules defer torch, timm, matplotlib, Ray, transformers and scikit-learn (start-up time) to
    the command's run()."""
    code = ("import sys\nfrom nctransfer.cli.main import build_parser\nbuild_parser()\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'torchvision', 'timm', 'matplotlib', "
            "'ray', 'transformers', 'sklearn'}))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
