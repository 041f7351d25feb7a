"""Pre-training: checkpoints, resume, data handling and the MSE-vs-CE collapse direction (Li et al., TMLR 2024, table 1)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nctransfer.exceptions import InputValueError, NotFoundError, ShapeError
from nctransfer.metrics import nc1
from nctransfer.pretrain import Recipe, load_pretrained, load_study_data, pretrain
from nctransfer.pretrain.trainer import as_image_tensor


pytestmark = pytest.mark.usefixtures("one_thread_module")  # one thread (tests/conftest.py)


@pytest.fixture(scope="module")
def digits5():
    """Real data: digits 0-4, 40 per class, 8x8 (upsampled nothing)."""
    d = load_study_data("digits:0-4", image_size=8, train_per_class=40, test_per_class=10)
    return d.X_train, d.y_train


def test_checkpoint_resume_matches_uninterrupted_run(tmp_path, digits5):
    X, y = digits5
    r = Recipe(arch="small_cnn", width=8, depth=3, epochs=4, batch_size=32, augment=3, seed=3)
    full = pretrain(r, X, y, progress=False)
    ckpt = tmp_path / "ck.pt"
    part = pretrain(r, X, y, checkpoint=ckpt, progress=False, max_epochs=2)
    assert not part.complete and len(part.history) == 2 and ckpt.is_file()
    state = torch.load(ckpt, weights_only=False)
    assert state["epoch"] == 2 and state["complete"] is False and state["config"]["recipe"]["epochs"] == 4
    resumed = pretrain(r, X, y, checkpoint=ckpt, progress=False)
    assert resumed.complete and [h["epoch"] for h in resumed.history] == [0, 1, 2, 3]
    for a, b in zip(full.net.state_dict().values(), resumed.net.state_dict().values()):
        torch.testing.assert_close(a, b)
    # finished: calling again trains nothing and returns the same weights
    again = pretrain(r, X, y, checkpoint=ckpt, progress=False)
    torch.testing.assert_close(again.features(X), resumed.features(X))
    loaded = load_pretrained(ckpt)
    assert loaded.complete and loaded.recipe.fingerprint() == r.fingerprint()
    torch.testing.assert_close(loaded.features(X), resumed.features(X))
    # no temporary files left behind by the atomic writes
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck.pt"]


def test_checkpoint_refuses_other_recipe_or_data(tmp_path, digits5):
    X, y = digits5
    ckpt = tmp_path / "ck.pt"
    pretrain(Recipe(arch="mlp", width=16, depth=1, epochs=1, batch_size=64), X, y, checkpoint=ckpt, progress=False)
    with pytest.raises(InputValueError, match="another recipe"):
        pretrain(Recipe(arch="mlp", width=16, depth=1, epochs=1, batch_size=64, loss="mse"), X, y,
                 checkpoint=ckpt, progress=False)
    with pytest.raises(InputValueError, match="other training data"):
        pretrain(Recipe(arch="mlp", width=16, depth=1, epochs=1, batch_size=64), X[:-5], y[:-5], checkpoint=ckpt,
                 progress=False)
    with pytest.raises(NotFoundError, match="does not exist"):
        load_pretrained(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"")
    torch.save({"a": 1}, tmp_path / "junk.pt")
    with pytest.raises(InputValueError, match="not an nctransfer pre-training checkpoint"):
        load_pretrained(tmp_path / "junk.pt")


def test_image_input_checks():
    assert as_image_tensor(np.zeros((2, 5, 5), np.uint8)).shape == (2, 1, 5, 5)
    torch.testing.assert_close(as_image_tensor(np.full((1, 1, 2, 2), 255, np.uint8)), torch.ones(1, 1, 2, 2))
    with pytest.raises(InputValueError, match=r"\[0, 1\].*digits / 16"):
        as_image_tensor(np.full((1, 4, 4), 16.0))
    with pytest.raises(ShapeError, match=r"\[N, H, W\]"):
        as_image_tensor(np.zeros((4, 4)))
    with pytest.raises(InputValueError, match="at least 2 classes"):
        pretrain(Recipe(epochs=1), np.zeros((4, 8, 8), np.uint8), [1, 1, 1, 1], progress=False)
    with pytest.raises(ShapeError, match="one label per image"):
        pretrain(Recipe(epochs=1), np.zeros((4, 8, 8), np.uint8), [0, 1, 1], progress=False)


def test_labels_are_reencoded_and_classes_kept(digits5):
    X, y = digits5
    model = pretrain(Recipe(arch="mlp", width=16, depth=1, epochs=3, batch_size=32), X, y + 5, progress=False)
    assert model.classes == [5, 6, 7, 8, 9]
    assert model.net.classifier.out_features == 5
    probs = model.probs(X)
    assert probs.shape == (len(X), 5) and np.allclose(probs.sum(1), 1)
    sup = pretrain(Recipe(arch="mlp", width=16, depth=1, epochs=1, batch_size=32, loss="supcon"), X, y,
                   progress=False)
    assert sup.logits(X) is None and sup.probs(X) is None


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mse_collapses_more_than_ce(digits5, seed):
    """Li et al., TMLR 2024, table 1: MSE pre-training gives the most collapsed source features (NC1 0.001 vs 0.771 for CE).

    Same small CNN, data, seed and schedule; only the loss differs. Seeded and deterministic on CPU; measured margins
    are about 3x at every seed.
    """
    X, y = digits5
    values = {}
    for loss in ("ce", "mse"):
        r = Recipe(arch="small_cnn", width=8, depth=3, loss=loss, epochs=30, batch_size=32, lr=0.05, seed=seed)
        model = pretrain(r, X, y, progress=False)
        assert model.history[-1]["train_accuracy"] >= 0.95
        values[loss] = nc1(model.features(X).double().numpy(), y)
    assert values["mse"] < 0.7 * values["ce"], values


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["timm:resnet18", "torchvision:resnet18"])
def test_external_architecture_pretrains_and_exposes_block_taps(arch, digits5, tmp_path):
    """Any timm/torchvision architecture (random init) as the encoder: 1-channel input repeated to RGB,
    classifier removed, residual blocks as layer-wise taps."""
    from nctransfer.pretrain import encoder_units
    from nctransfer.pretrain.study import _tap_features

    X, y = digits5
    X16 = torch.nn.functional.interpolate(X[:60], size=16, mode="bilinear", align_corners=False).clamp(0, 1)
    r = Recipe(arch=arch, epochs=1, batch_size=20, head_layers=1, head_dim=16)
    model = pretrain(r, X16, y[:60], checkpoint=tmp_path / "ck.pt", progress=False)
    assert model.encoder.num_features == 512
    assert [u.name for u in encoder_units(model.encoder)] == [f"layer{i}.{j}" for i in range(1, 5) for j in (0, 1)]
    feats = _tap_features(model, X16, 32)
    assert list(feats)[-1] == "penultimate" and feats["penultimate"].shape == (60, 512)
    assert feats["layer1.0"].shape == (60, 64)
    torch.testing.assert_close(load_pretrained(tmp_path / "ck.pt").features(X16), model.features(X16))
