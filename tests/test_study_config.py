"""StudyConfig: every setting survives a YAML round trip, and the ``config.yaml`` that ``nctransfer study`` writes,
fed back alone with ``--config``, builds the same StudyConfig (the study itself is replaced by a recorder)."""

from __future__ import annotations

import dataclasses
import importlib
from pathlib import Path

import pytest
import yaml

from nctransfer.exceptions import InputValueError

from nctransfer.pretrain.study import StudyConfig, StudyResult


def test_study_config_yaml_round_trip():
    cfg = StudyConfig(source="digits:0-4", targets=["digits:5-9", "fashion-mnist"], out="runs/s", source_per_class=30,
                      source_test_per_class=None, target_train_per_class=12, target_test_per_class=7, image_size=16,
                      seed=4, device="cpu", methods=["logme", "ncti"], plots=False, data_root="/d", eval_batch_size=64,
                      threads=1, checkpoint_dir="/shared/ckpt")
    text = yaml.safe_dump(dataclasses.asdict(cfg), sort_keys=False)
    assert StudyConfig(**yaml.safe_load(text)) == cfg
    assert StudyConfig(**yaml.safe_load(yaml.safe_dump(dataclasses.asdict(StudyConfig("a", ["b"], "o"))))) == \
        StudyConfig("a", ["b"], "o")


def test_study_config_is_a_typed_configuration():
    cfg = StudyConfig(source="digits:0-4", targets=["digits:5-9"], out="runs/s", image_size=16, methods=["ncti"])
    assert StudyConfig.from_yaml(cfg.to_yaml()) == cfg
    assert StudyConfig.from_json(cfg.to_json()) == cfg
    assert cfg.to_dict() == dataclasses.asdict(cfg)
    assert set(StudyConfig.help()) == {f.name for f in dataclasses.fields(StudyConfig)}
    assert all(StudyConfig.help().values())
    with pytest.raises(InputValueError, match="unknown option"):
        StudyConfig.from_dict({**cfg.to_dict(), "epochs": 3})
    with pytest.raises(InputValueError, match="threads"):
        cfg.replace(threads=0)


def test_study_cli_config_yaml_rebuilds_the_same_study_config(tmp_path, monkeypatch):
    from nctransfer.cli.main import main

    seen: list[StudyConfig] = []

    def record(grid, config, **kw):  # noqa: ANN001, ANN003, ANN202 - stands in for the study
        seen.append(config)
        return StudyResult(records=[], rows=[], status={}, out=Path(config.out))

    monkeypatch.setattr(importlib.import_module("nctransfer.pretrain.study"), "run_study", record)
    grid = tmp_path / "g.yaml"
    grid.write_text("defaults: {arch: small_cnn, width: 4, depth: 2, epochs: 1}\nrecipes:\n  - {loss: ce}\n")
    out = tmp_path / "o"
    assert main(["study", "--source", "digits:0-4", "--target", "digits:5-9", "--grid", str(grid), "--out", str(out),
                 "--scores", "logme,ncti", "--image-size", "16", "--seed", "3", "--no-plots", "--no-progress",
                 "--quiet"]) == 0
    assert main(["study", "--config", str(out / "config.yaml")]) == 0
    assert len(seen) == 2 and seen[1] == seen[0]
    assert seen[0].methods == ["logme", "ncti"] and seen[0].image_size == 16 and seen[0].plots is False
