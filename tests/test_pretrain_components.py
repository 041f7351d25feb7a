"""Recipes, losses, projection heads, augmentation levels and PGD of nctransfer.pretrain (docs/methods.md#pretraining)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nctransfer.exceptions import InputValueError, ShapeError
from nctransfer.pretrain import (
    LEVEL_TRANSFORMS,
    Augmenter,
    ProjectionHead,
    Recipe,
    StudyGrid,
    build_net,
    cross_entropy_loss,
    load_study_data,
    mse_loss,
    parse_radius,
    pgd_linf,
    pretrain,
    supcon_loss,
)
from nctransfer.pretrain import augment as A


pytestmark = pytest.mark.usefixtures("one_thread_module")  # one thread (tests/conftest.py)


# ---------------------------------------------------------------------------------------------- recipes
def test_recipe_defaults_and_names():
    r = Recipe()
    assert r.loss == "ce" and r.head_layers == 0 and r.augment == 1 and r.adv_eps == 0
    assert r.name == "ce-h0"
    r2 = Recipe(loss="MSE", head_layers=2, augment=3, adv_eps="2/255")
    assert r2.name == "mse-h2-aug3-adv2"
    assert r2.adv_eps == pytest.approx(2 / 255)
    assert Recipe(loss="label_smoothing").smoothing == pytest.approx(0.1)
    assert Recipe(loss="ce").smoothing == 0.0
    # JSON round trip and fingerprints
    assert Recipe.from_dict(r2.to_dict()).fingerprint() == r2.fingerprint()
    assert Recipe(name="other").fingerprint() == Recipe().fingerprint()
    assert Recipe(epochs=3).fingerprint() != Recipe().fingerprint()


@pytest.mark.parametrize("key,value,match", [
    ("loss", "hinge", "loss must be one of"),
    ("loss", "supcom", "Did you mean 'supcon'"),
    ("adv_eps", 8, r"must lie in \[0, 1\].*8/255"),
    ("adv_eps", -0.1, r"must lie in \[0, 1\]"),
    ("adv_eps", float("nan"), r"must lie in \[0, 1\]"),
    ("adv_eps", "eight", "fraction"),
    ("head_layers", 4, r"head_layers must be an integer in \[0, 3\]"),
    ("augment", 0, r"augment must be an integer in \[1, 5\]"),
    ("augment", 6, r"augment must be an integer in \[1, 5\]"),
    ("label_smoothing", 1.0, r"label_smoothing must lie in \[0, 1\)"),
    ("lr", 0, "lr must be > 0"),
    ("epochs", 1.5, "epochs must be an integer"),
    ("name", "a/b", "directory name"),
])
def test_recipe_bad_values(key, value, match):
    with pytest.raises(InputValueError, match=match):
        Recipe.from_dict({key: value})


def test_recipe_unknown_key_is_named_with_suggestion():
    with pytest.raises(InputValueError, match=r"unknown recipe key 'head_layer'.*Did you mean 'head_layers'"):
        Recipe.from_dict({"loss": "ce", "head_layer": 2})
    with pytest.raises(InputValueError, match="label_smoothing applies to losses 'ce'/'ls' only"):
        Recipe(loss="mse", label_smoothing=0.2)


def test_parse_radius_accepts_spec_radii():
    for r in (1, 2, 3, 5, 8):
        assert parse_radius(f"{r}/255") == pytest.approx(r / 255)
    assert parse_radius(0) == 0.0 and parse_radius(1) == 1.0
    with pytest.raises(InputValueError, match="adv_eps"):
        parse_radius(1.5)


def test_grid_expansion_and_errors():
    grid = StudyGrid.from_dict({
        "defaults": {"epochs": 2},
        "recipes": [{"name": "base", "loss": "ce"}],
        "product": {"loss": ["mse", "supcon"], "head_layers": [0, 2]},
    })
    assert grid.names == ["base", "mse-h0", "mse-h2", "supcon-h0", "supcon-h2"]
    assert all(r.epochs == 2 for r in grid)
    with pytest.raises(InputValueError, match="grid is empty"):
        StudyGrid.from_dict({"defaults": {"epochs": 2}})
    with pytest.raises(InputValueError, match="grid is empty"):
        StudyGrid.from_dict({"recipes": []})
    with pytest.raises(InputValueError, match="empty list"):
        StudyGrid.from_dict({"product": {"loss": []}})
    with pytest.raises(InputValueError, match=r"unknown top-level key\(s\) \['loss'\]"):
        StudyGrid.from_dict({"loss": "ce"})
    with pytest.raises(InputValueError, match=r"recipes\[0\]: unknown recipe key 'optimiser'"):
        StudyGrid.from_dict({"recipes": [{"optimiser": "adam"}]})
    with pytest.raises(InputValueError, match="loss must be one of"):
        StudyGrid.from_dict({"product": {"loss": ["ce", "focal"]}})
    with pytest.raises(InputValueError, match="used twice"):
        StudyGrid.from_dict({"recipes": [{"name": "a"}, {"name": "a", "loss": "mse"}]})
    with pytest.raises(InputValueError, match="identical training settings"):
        StudyGrid.from_dict({"recipes": [{"name": "a"}, {"name": "b"}]})


def test_grid_yaml_errors(tmp_path):
    p = tmp_path / "g.yaml"
    p.write_text("")
    with pytest.raises(InputValueError, match="is empty"):
        StudyGrid.from_yaml(p)
    p.write_text("product:\n  adv_eps: [0, 2/255, 300/255]\n")
    with pytest.raises(InputValueError, match=r"adv_eps must lie in \[0, 1\]"):
        StudyGrid.from_yaml(p)
    p.write_text("product:\n  adv_eps: [0, 2/255, 8/255]\n")
    assert [round(r.adv_eps * 255) for r in StudyGrid.from_yaml(p)] == [0, 2, 8]


# ---------------------------------------------------------------------------------------------- losses
def test_loss_reference_values():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    y = torch.tensor([0, 1])
    ref = -0.5 * (math.log(math.exp(2) / (math.exp(2) + 1)) + math.log(math.e / (math.e + 1)))
    assert float(cross_entropy_loss(logits, y)) == pytest.approx(ref, rel=1e-6)
    # label smoothing s=0.2 with K=2: targets (0.9, 0.1)
    lp = torch.log_softmax(logits, 1)
    ref_ls = -0.5 * float(0.9 * lp[0, 0] + 0.1 * lp[0, 1] + 0.1 * lp[1, 0] + 0.9 * lp[1, 1])
    assert float(cross_entropy_loss(logits, y, 0.2)) == pytest.approx(ref_ls, rel=1e-6)
    # MSE with one-hot targets: ((2-1)^2 + 0^2 + 0^2 + (1-1)^2) / 2
    assert float(mse_loss(logits, y)) == pytest.approx(0.5)
    # SupCon by hand: z = unit vectors, tau = 1
    z = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    yz = torch.tensor([0, 0, 1])
    # anchors 0 and 1 each have one positive (cos 1) and one negative (cos 0); anchor 2 has none
    ref_sc = -math.log(math.e / (math.e + 1))
    assert float(supcon_loss(z, yz, temperature=1.0)) == pytest.approx(ref_sc, rel=1e-6)
    with pytest.raises(ShapeError):
        mse_loss(torch.zeros(3), torch.zeros(3, dtype=torch.long))
    with pytest.raises(InputValueError, match="temperature"):
        supcon_loss(z, yz, temperature=0)


def test_supcon_without_positives_is_zero_with_graph():
    z = torch.randn(3, 4, requires_grad=True)
    loss = supcon_loss(z, torch.tensor([0, 1, 2]))
    loss.backward()
    assert float(loss.detach()) == 0.0 and z.grad is not None


@pytest.fixture(scope="module")
def tiny_digits():
    """Real data, tiny: 40 images per class of digits 0-3 at 8x8."""
    d = load_study_data("digits:0-3", image_size=8, train_per_class=40, test_per_class=10)
    return d.X_train, d.y_train


def _ncc_accuracy(F: torch.Tensor, y: np.ndarray) -> float:
    F = F.double()
    classes = np.unique(y)
    means = torch.stack([F[torch.from_numpy(y == c)].mean(0) for c in classes])
    pred = classes[torch.cdist(F, means).argmin(1).numpy()]
    return float((pred == y).mean())


@pytest.mark.parametrize("loss,head", [("ce", 0), ("mse", 0), ("ls", 0), ("supcon", 0), ("supcon", 1),
                                       ("supcon", 2)])
def test_each_loss_trains_on_a_tiny_problem(tiny_digits, loss, head):
    X, y = tiny_digits
    r = Recipe(arch="mlp", width=64, depth=2, loss=loss, head_layers=head, head_dim=32, epochs=25, batch_size=32,
               lr=0.05, seed=0)
    model = pretrain(r, X, y, progress=False)
    losses = [h["loss"] for h in model.history]
    # SupCon's minimum is about log(#positives per anchor) = log(B/K - 1), not 0
    floor = math.log(32 / 4 - 1) if loss == "supcon" else 0.0
    assert losses[-1] - floor < 0.5 * (losses[0] - floor), losses
    feats = model.features(X)
    assert _ncc_accuracy(feats, y) >= 0.95
    if loss != "supcon":
        acc = float((model.logits(X).argmax(1).numpy() == np.searchsorted(model.classes, y)).mean())
        assert acc >= 0.95 and model.history[-1]["train_accuracy"] >= 0.9


# ---------------------------------------------------------------------------------------------- heads
def test_projection_head_structure():
    h0 = ProjectionHead(16, 0, 8, final_activation=True)
    assert h0.out_dim == 16 and len(h0.layers) == 0
    h2 = ProjectionHead(16, 2, 8, final_activation=False)  # SupCon MLP: Linear-ReLU-Linear
    assert [type(m).__name__ for m in h2.layers] == ["Linear", "ReLU", "Linear"]
    h2c = ProjectionHead(16, 2, 8, final_activation=True)  # before a classifier
    assert [type(m).__name__ for m in h2c.layers] == ["Linear", "ReLU", "Linear", "ReLU"]
    net = build_net(Recipe(loss="supcon", head_layers=1, head_dim=8), in_channels=1, image_size=8, num_classes=3)
    assert net.classifier is None and net(torch.rand(2, 1, 8, 8)).shape == (2, 8)


def test_projection_head_is_trained_then_dropped(tiny_digits):
    X, y = tiny_digits
    r = Recipe(arch="mlp", width=32, depth=2, loss="ce", head_layers=2, head_dim=12, epochs=2, batch_size=32)
    init = build_net(r, in_channels=1, image_size=8, num_classes=4)
    model = pretrain(r, X, y, progress=False)
    # used in training: the head's weights moved and the classifier reads the head's output (width 12)
    for (name, p0), p1 in zip(init.head.named_parameters(), model.net.head.parameters()):
        assert not torch.equal(p0, p1), name
    assert model.net.classifier.in_features == 12
    # dropped for evaluation: features are the encoder's (width 32), identical to running the encoder alone
    feats = model.features(X)
    assert feats.shape == (len(X), 32)
    with torch.no_grad():
        model.encoder.eval()
        direct = model.encoder(model.normalize(X))
    torch.testing.assert_close(feats, direct)
    assert not any(m is model.net.head for m in model.encoder.modules())
    # perturbing the head changes the logits but not the evaluated features
    with torch.no_grad():
        for p in model.net.head.parameters():
            p.add_(1.0)
    torch.testing.assert_close(model.features(X), feats)


# ---------------------------------------------------------------------------------------------- augmentation
def _manual(level: int, x: torch.Tensor, seed: int, aug: Augmenter) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if level >= 2:
        x = A.random_crop(x, aug.padding_for(x.shape[2]), g)
    if level >= 3:
        x = A.hflip(x, 0.5, g)
    if level >= 4:
        x = A.color_jitter(x, 0.4, 0.4, 0.4, 0.1, 0.8, g)
    if level >= 5:
        x = A.random_grayscale(x, 0.2, g)
    return A.normalize(x, torch.tensor(aug.mean), torch.tensor(aug.std))


@pytest.mark.parametrize("level", [1, 2, 3, 4, 5])
def test_augmentation_level_k_applies_exactly_levels_1_to_k(level):
    x = torch.rand(64, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    aug = Augmenter(level, mean=[0.5, 0.4, 0.3], std=[0.2, 0.25, 0.3])
    assert aug.transforms == LEVEL_TRANSFORMS[:level]
    out = aug(x, torch.Generator().manual_seed(7))
    torch.testing.assert_close(out, _manual(level, x, 7, aug))
    if level > 1:  # the extra transform of this level changes the output (so it is really applied)
        prev = _manual(level - 1, x, 7, aug)
        assert not torch.allclose(out, prev)
    else:  # level 1 is exactly the standardisation
        torch.testing.assert_close(out, (x - torch.tensor([0.5, 0.4, 0.3])[:, None, None])
                                   / torch.tensor([0.2, 0.25, 0.3])[:, None, None])


def test_individual_transforms_reference_behaviour():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(32, 3, 8, 8, generator=g)
    # crop: every output is an 8x8 window of the zero-padded input
    out = A.random_crop(x, 2, torch.Generator().manual_seed(3))
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(len(x)):
        assert any(torch.equal(out[i], padded[i, :, r:r + 8, c:c + 8]) for r in range(5) for c in range(5))
    # flip: each image is either itself or its mirror, both occur
    f = A.hflip(x, 0.5, torch.Generator().manual_seed(3))
    same = [torch.equal(f[i], x[i]) for i in range(len(x))]
    mirrored = [torch.equal(f[i], x[i].flip(-1)) for i in range(len(x))]
    assert all(a or b for a, b in zip(same, mirrored)) and any(same) and any(mirrored)
    # grayscale: luminance in all channels
    gr = A.grayscale(x)
    torch.testing.assert_close(gr[:, 0], 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2])
    torch.testing.assert_close(gr[:, 0], gr[:, 2])
    # hue: a full turn is the identity, a third of a turn permutes pure colours
    torch.testing.assert_close(A.adjust_hue(x, torch.ones(len(x))), x, atol=1e-5, rtol=0)
    red = torch.zeros(1, 3, 2, 2)
    red[:, 0] = 1
    torch.testing.assert_close(A.adjust_hue(red, torch.tensor([1 / 3])), torch.roll(red, 1, dims=1), atol=1e-5,
                               rtol=0)
    # every transform keeps [0, 1]
    for fn in (lambda t: A.color_jitter(t, generator=g), lambda t: A.random_grayscale(t, 1.0, g)):
        o = fn(x)
        assert float(o.min()) >= 0 and float(o.max()) <= 1


def test_augmentation_single_channel_levels_are_documented_identities():
    x = torch.rand(16, 1, 12, 12)
    torch.testing.assert_close(A.random_grayscale(x, 1.0), x)
    a4 = Augmenter(4, [0.5], [0.2])(x, torch.Generator().manual_seed(0))
    a5 = Augmenter(5, [0.5], [0.2])(x, torch.Generator().manual_seed(0))
    torch.testing.assert_close(a4, a5)


def test_augmenter_bad_input():
    with pytest.raises(InputValueError, match=r"level must be an integer in \[1, 5\]"):
        Augmenter(6, [0.5], [0.2])
    with pytest.raises(ShapeError, match="one value per channel"):
        Augmenter(1, [0.5, 0.5], [0.2])
    with pytest.raises(ShapeError, match=r"\[B, C, H, W\]"):
        Augmenter(2, [0.5], [0.2])(torch.rand(3, 8, 8))
    with pytest.raises(ShapeError, match="channels"):
        Augmenter(2, [0.5], [0.2])(torch.rand(3, 3, 8, 8))


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), level=st.integers(1, 5), channels=st.sampled_from([1, 3]))
def test_augmentation_is_seeded_and_stays_in_range(seed, level, channels):
    x = torch.rand(4, channels, 10, 10, generator=torch.Generator().manual_seed(seed))
    aug = Augmenter(level, [0.0] * channels, [1.0] * channels)
    a = aug.augment(x, torch.Generator().manual_seed(seed))
    b = aug.augment(x, torch.Generator().manual_seed(seed))
    torch.testing.assert_close(a, b)
    assert a.shape == x.shape and float(a.min()) >= 0 and float(a.max()) <= 1


# ---------------------------------------------------------------------------------------------- PGD
@pytest.fixture(scope="module")
def trained_for_pgd(tiny_digits):
    X, y = tiny_digits
    model = pretrain(Recipe(arch="mlp", width=32, depth=2, epochs=10, batch_size=32), X, y, progress=False)
    return model, X, torch.as_tensor(np.searchsorted(model.classes, y))


@pytest.mark.parametrize("r255", [1, 2, 3, 5, 8])
def test_pgd_stays_in_ball_and_increases_the_loss(trained_for_pgd, r255):
    model, X, y = trained_for_pgd
    net = model.net.eval()
    eps = r255 / 255

    def loss_fn(z):
        return torch.nn.functional.cross_entropy(net(model.normalize(z)), y)

    x_adv = pgd_linf(loss_fn, X, eps, steps=5, generator=torch.Generator().manual_seed(0))
    assert float((x_adv - X).abs().max()) <= eps + 1e-6
    assert float(x_adv.min()) >= 0 and float(x_adv.max()) <= 1
    with torch.no_grad():
        clean, adv = float(loss_fn(X)), float(loss_fn(x_adv))
        noise = (X + eps * torch.sign(torch.randn(X.shape, generator=torch.Generator().manual_seed(1)))).clamp(0, 1)
        rand = float(loss_fn(noise))
    assert adv > clean and adv > rand


def test_pgd_bad_input():
    x = torch.rand(2, 1, 4, 4)
    with pytest.raises(InputValueError, match=r"eps must lie in \[0, 1\]"):
        pgd_linf(lambda z: z.sum(), x, 2.0)
    with pytest.raises(InputValueError, match="steps"):
        pgd_linf(lambda z: z.sum(), x, 0.1, steps=0)
    torch.testing.assert_close(pgd_linf(lambda z: z.sum(), x, 0.0), x)


def test_adversarial_training_runs_and_records(tiny_digits):
    X, y = tiny_digits
    r = Recipe(arch="mlp", width=32, depth=2, epochs=2, batch_size=32, adv_eps="8/255", adv_steps=2)
    plain = pretrain(Recipe(**{**r.to_dict(), "adv_eps": 0, "name": ""}), X, y, progress=False)
    adv = pretrain(r, X, y, progress=False)
    assert adv.recipe.name.endswith("adv8")
    # the adversarial loss is higher than the clean loss at the same settings
    assert adv.history[-1]["loss"] > plain.history[-1]["loss"]
