"""The tap rules in one place: nctransfer.features.tap_names (used by ranking, extraction and fine-tuning) and the
candidate naming switch of a run (nctransfer.pipeline.candidates)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from nctransfer.exceptions import NotFoundError  # noqa: E402
from nctransfer.features import list_taps, select_taps, tap_names  # noqa: E402
from nctransfer.finetune.api import _resolve_taps  # noqa: E402
from nctransfer.pipeline.candidates import Model, candidate_name, one_candidate_per_model, resolve_taps  # noqa: E402


@pytest.fixture(scope="module")
def net():
    import torchvision

    return torchvision.models.resnet18(num_classes=3)


def test_tap_names_rules(net):
    allt = list_taps(net)
    assert allt[-1] == "penultimate" and len(allt) == 9  # 8 residual blocks, then the classifier input
    assert tap_names(net, "penultimate") == ["penultimate"]
    assert tap_names(net) == tap_names(net, "all") == tap_names(net, "ALL") == allt
    assert tap_names(net, 2) == select_taps(net, 2) == ["layer4.1", "penultimate"]
    assert tap_names(net, "all", exclude_penultimate=True) == allt[:-1]
    # exact names keep the given order; unknown names are named with the caller's option
    assert tap_names(net, ["layer2.0", "layer1.0", "penultimate"], exact=True, exclude_penultimate=True) == \
        ["layer2.0", "layer1.0"]
    with pytest.raises(NotFoundError, match=r"nc1_taps: unknown taps \['layer9'\]; valid taps: \["):
        tap_names(net, ["layer9"], exact=True, what="nc1_taps")


def test_every_caller_uses_the_same_rules(net):
    m = Model(label="r18", spec=net, pretrained=False, control=False, module=net)
    for sel in ("penultimate", "all", 2, "layer3.1,layer1.0"):
        assert resolve_taps(m, sel) == tap_names(net, sel)
    assert resolve_taps(m, "layer3.1,layer1.0") == ["layer1.0", "layer3.1"]  # forward order
    assert _resolve_taps(net, None) == [] and _resolve_taps(net, "all") == list_taps(net)[:-1]
    assert _resolve_taps(net, ["layer4.1", "penultimate"]) == ["layer4.1"]


def test_candidate_names_switch():
    assert one_candidate_per_model("penultimate") and not one_candidate_per_model("all")
    assert not one_candidate_per_model(["penultimate"])  # a list is a selector: candidates named model@tap
    assert candidate_name("r18", "penultimate", "penultimate") == "r18"
    assert candidate_name("r18", "penultimate", "all") == "r18@penultimate"
    assert candidate_name("r18", "layer4.1", 2) == "r18@layer4.1"
