"""FeatureStats.all_reduce across two torch.distributed processes (gloo) equals the one-process statistics."""

from __future__ import annotations

import socket

import numpy as np
import pytest

from nctransfer import FeatureStats

pytestmark = pytest.mark.distributed


def _data():
    rng = np.random.default_rng(0)
    N, d = 301, 7
    y = np.array(["a", "b", "c", "d"])[rng.integers(0, 4, N)]
    y[:150] = np.where(y[:150] == "d", "a", y[:150])  # class "d" only seen by rank 1
    X = rng.normal(size=(N, d)) + 1e6
    return X, y


def _worker(rank: int, world: int, port: int, out_dir: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        X, y = _data()
        half = slice(0, 150) if rank == 0 else slice(150, None)
        s = FeatureStats(chunk_size=40)
        for start in range(half.start or 0, half.stop or len(X), 64):
            stop = min(start + 64, half.stop or len(X))
            s.update(X[start:stop], y[start:stop])
        s.all_reduce()
        s.save(f"{out_dir}/rank{rank}.npz")
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_process_all_reduce_equals_one_process(tmp_path):
    mp = pytest.importorskip("torch.multiprocessing")
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    X, y = _data()
    ref = FeatureStats().update(X, y)
    for rank in (0, 1):
        s = FeatureStats.load(tmp_path / f"rank{rank}.npz")
        assert s.classes == ["a", "b", "c", "d"] and s.n_samples == len(X)
        np.testing.assert_array_equal(s.class_counts(), ref.class_counts())
        for view in ("sigma_W", "sigma_B", "sigma_Bw", "sigma_T", "class_variances", "class_unit_sums"):
            a, b = getattr(s, view)(), getattr(ref, view)()
            assert np.linalg.norm(a - b) <= 1e-10 * np.linalg.norm(b), view
        np.testing.assert_allclose(s.class_means() - 1e6, ref.class_means() - 1e6, rtol=0, atol=1e-9)


def test_all_reduce_without_process_group_is_a_no_op():
    pytest.importorskip("torch.distributed")
    X, y = _data()
    s = FeatureStats().update(X, y)
    before = s.sigma_T()
    assert s.all_reduce() is s
    np.testing.assert_array_equal(s.sigma_T(), before)
