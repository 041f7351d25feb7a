"""Taps by any module path and pattern, nearest-name suggestions, and pooling of any output shape (automatic and
overridden), on hand-written networks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

from nctransfer.exceptions import InputValueError, NotFoundError, ShapeError
from nctransfer.extract import extract
from nctransfer.features import TapRecorder, pool_features, resolve_taps, select_taps


class Net(nn.Module):
    """A custom network whose blocks the automatic heuristic does not list one by one."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 6, 3), nn.ReLU())
        self.tokens = nn.Linear(6, 5)
        self.head = nn.Linear(5, 2)

    def forward(self, x):
        f = self.body(x)                                   # [B, 6, H, W]
        t = self.tokens(f.flatten(2).transpose(1, 2))      # [B, T, 5] token sequence
        return self.head(t.mean(1))


def test_tap_custom_module_by_path_pattern_and_comma_list():
    m = Net()
    assert select_taps(m) == ["body", "tokens", "penultimate"]  # the automatic units
    assert select_taps(m, "body.2") == ["body.2"]
    assert select_taps(m, "penultimate,body.2, body.0") == ["body.0", "body.2", "penultimate"]
    assert select_taps(m, r"body\.[02]") == ["body.0", "body.2"]  # a pattern over module paths
    assert select_taps(m, ["tokens", "body.1"]) == ["body.1", "tokens"]
    x = torch.rand(2, 3, 8, 8)
    with TapRecorder(m, "body.2,tokens,penultimate") as rec, torch.no_grad():
        m(x)
        got = rec.collect()
    with torch.no_grad():
        f2 = m.body[:3](x)
        tok = m.tokens(m.body(x).flatten(2).transpose(1, 2))
    torch.testing.assert_close(got["body.2"], f2.mean((2, 3)))     # conv map: spatial average
    torch.testing.assert_close(got["tokens"], tok.mean(1))         # tokens: mean over tokens
    torch.testing.assert_close(got["penultimate"], tok.mean(1))    # flat vector: unchanged


def test_sequential_tapped_by_index_path():
    seq = nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(64, 2))
    units = resolve_taps(seq, "2")
    assert [(u.name, u.path, u.kind) for u in units] == [("2", "2", "output")]
    data = [(torch.rand(1, 8, 8), i % 2) for i in range(6)]
    r = extract(seq, data, "1,2", store_features=True, progress=False, device="cpu")
    assert r.taps == ["1", "2"] and r["1"].dim == 3 and r["2"].dim == 4


def test_unknown_path_lists_nearest_module_names():
    m = Net()
    with pytest.raises(NotFoundError, match=r"'body\.5' matches no tap and no module path.*Did you mean: .*body\.3"):
        select_taps(m, "body.5")
    with pytest.raises(NotFoundError, match=r"Did you mean: tokens"):
        select_taps(m, "token")
    with pytest.raises(NotFoundError, match="body.7"):
        select_taps(m, ["body.0", "body.7"])


def test_pooling_automatic_and_overrides_exact_values():
    t = torch.arange(24.0).reshape(2, 3, 2, 2)  # [B, C, H, W]
    assert pool_features(t).tolist() == [[1.5, 5.5, 9.5], [13.5, 17.5, 21.5]]
    assert pool_features(t, pool="max").tolist() == [[3, 7, 11], [15, 19, 23]]
    assert pool_features(t, pool="flatten").shape == (2, 12)
    tok = torch.arange(12.0).reshape(2, 3, 2)  # [B, T, C]
    assert pool_features(tok, pool="cls").tolist() == [[0, 1], [6, 7]]
    assert pool_features(tok, pool="max").tolist() == [[4, 5], [10, 11]]
    assert pool_features(tok, pool=lambda z: z[:, -1]).tolist() == [[4, 5], [10, 11]]
    flat = torch.ones(2, 4)
    assert torch.equal(pool_features(flat, pool="avg"), flat)
    with pytest.raises(ShapeError, match="pool='cls' needs a token sequence"):
        pool_features(t, pool="cls")
    with pytest.raises(ShapeError, match="must return \\[B, D\\]"):
        pool_features(t, pool=lambda z: z)
    with pytest.raises(InputValueError, match="pool must be one of"):
        TapRecorder(Net(), "body", pool="median")


def test_pool_override_changes_features_and_cache_key(tmp_path):
    m = Net()
    data = [(torch.rand(3, 8, 8), i % 2) for i in range(8)]
    kw = dict(store_features=True, progress=False, device="cpu", cache_dir=tmp_path, dataset_id="eight")
    avg = extract(m, data, "body.2", **kw)
    mx = extract(m, data, "body.2", pool="max", **kw)
    assert not mx.from_cache and mx.cache_path != avg.cache_path
    assert not np.allclose(avg["body.2"].features, mx["body.2"].features)
    assert extract(m, data, "body.2", pool="max", **kw).from_cache
