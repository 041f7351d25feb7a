"""A cache directory shared by many processes: file locks around the feature store and the result cache."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from nctransfer.extract.store import CacheEntry
from nctransfer.pipeline.cache import ResultCache
from nctransfer.utils.locking import entry_lock, lock_path_for

_WRITER = textwrap.dedent("""
    import json, sys, time
    import numpy as np, torch
    torch.set_num_threads(1)
    from nctransfer.data import load_dataset
    from nctransfer.extract import extract
    from nctransfer.models import load_model

    cache, out, delay = sys.argv[1], sys.argv[2], float(sys.argv[3])
    model = load_model("efficientnet_lite0")
    base = load_dataset("digits", "train", model=model, image_size=32, per_class=4)

    class Slow:
        # the same data and fingerprint as ``base``, each batch delayed: a writer that is slow enough to be
        # caught in the middle of its write
        def __len__(self):
            return len(base)

        def fingerprint(self):
            return base.fingerprint()

        def get_batch(self, idx):
            time.sleep(delay)
            return base.get_batch(idx)

    r = extract(model, Slow(), ["blocks.4.0", "penultimate"], batch_size=8, shard_size=8, store_features=True,
                cache_dir=cache, progress=False)
    np.save(out + ".npy", r["penultimate"].features)
    json.dump({"computed": r.computed_samples, "from_cache": r.from_cache, "path": str(r.cache_path)},
              open(out + ".json", "w"))
""")


def _spawn(script: Path, cache: Path, out: Path, delay: float) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NCTRANSFER_LOCK_TIMEOUT": "240"}
    return subprocess.Popen([sys.executable, str(script), str(cache), str(out), str(delay)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(p: subprocess.Popen, timeout: float = 240) -> str:
    try:
        out, _ = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()
        pytest.fail("a cache writer did not finish in time")
    assert p.returncode == 0, out
    return out


@pytest.mark.slow
def test_two_processes_writing_the_same_feature_entry(tmp_path):
    """A slow writer and a second process started in the middle of its write: no error, one complete entry, no
    partial file; the second waited for the entry and reused it instead of writing it again."""
    script = tmp_path / "writer.py"
    script.write_text(_WRITER)
    cache = tmp_path / "cache"
    a = _spawn(script, cache, tmp_path / "a", delay=0.4)
    b = None
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and a.poll() is None:  # wait until A has committed a shard
            done = [json.loads(m.read_text()).get("done", 0) for m in cache.rglob("manifest.json")]
            if done and max(done) >= 1:
                break
            time.sleep(0.2)
        assert a.poll() is None, "writer A finished before the second process could start mid-write"
        b = _spawn(script, cache, tmp_path / "b", delay=0.0)
        _finish(a)
        _finish(b)
    finally:
        for p in (a, b):
            if p is not None and p.poll() is None:
                p.kill()
                p.communicate()
    ra = json.loads((tmp_path / "a.json").read_text())
    rb = json.loads((tmp_path / "b.json").read_text())
    assert ra["computed"] == 40 and not ra["from_cache"]
    assert rb["computed"] == 0 and rb["from_cache"], "the second writer should have waited and reused the entry"
    assert ra["path"] == rb["path"]
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy"), np.load(tmp_path / "b.npy"))
    manifests = list(cache.rglob("manifest.json"))
    assert len(manifests) == 1
    entry = CacheEntry.open(manifests[0].parent)
    assert entry is not None and entry.complete and entry.verify()
    assert not [p for p in cache.rglob("*") if p.name.endswith(".tmp") or ".tmp." in p.name]


def _locked_put(root: str, started: "mp.synchronize.Event", release: "mp.synchronize.Event") -> None:
    """Hold the entry's lock (as a writer in the middle of its write), then write the new value."""
    cache = ResultCache(root)
    path = cache._path("scores", {"k": 1})
    with entry_lock(path):
        started.set()
        release.wait(60)
        cache.put("scores", {"k": 1}, {"v": "new"})


def test_result_cache_reader_during_a_write_sees_old_or_new(tmp_path):
    cache = ResultCache(tmp_path)
    cache.put("scores", {"k": 1}, {"v": "old"})
    ctx = mp.get_context("spawn")
    started, release = ctx.Event(), ctx.Event()
    p = ctx.Process(target=_locked_put, args=(str(tmp_path), started, release))
    p.start()
    try:
        assert started.wait(60)
        assert cache.get("scores", {"k": 1}) == {"v": "old"}  # a plain read is never blocked, never partial
        t0 = time.monotonic()
        release.set()
        # get_or_compute waits for the writer's lock, then reads its value instead of computing
        value = cache.get_or_compute("scores", {"k": 1}, lambda: pytest.fail("computed although cached"))
        assert value == {"v": "new"}
        p.join(60)
        assert p.exitcode == 0
        assert cache.get("scores", {"k": 1}) == {"v": "new"}
        assert time.monotonic() - t0 < 60
    finally:
        if p.is_alive():
            p.kill()
            p.join()


def test_get_or_compute_computes_once_and_caches(tmp_path):
    cache = ResultCache(tmp_path)
    calls = []
    assert cache.get_or_compute("probe", {"a": [1, 2]}, lambda: calls.append(1) or {"acc": 0.5}) == {"acc": 0.5}
    assert cache.get_or_compute("probe", {"a": [1, 2]}, lambda: calls.append(1) or {"acc": 0.9}) == {"acc": 0.5}
    assert calls == [1]
    assert ResultCache(None).get_or_compute("probe", {}, lambda: 7) == 7
    assert lock_path_for(cache._path("probe", {"a": [1, 2]})).is_file()


def test_lock_is_reentrant_and_released(tmp_path):
    from filelock import FileLock

    with entry_lock(tmp_path / "e") as outer:
        with entry_lock(tmp_path / "e") as inner:
            assert inner is outer and outer.is_locked
    other = FileLock(str(lock_path_for(tmp_path / "e")))  # another lock object: free again
    other.acquire(timeout=1)
    other.release()
    with entry_lock(tmp_path / "busy"):
        ctx = mp.get_context("spawn")
        q = ctx.Queue()
        p = ctx.Process(target=_try_lock, args=(str(tmp_path / "busy"), q))
        p.start()
        p.join(60)
        assert q.get(timeout=5) == "timeout"
    busy = FileLock(str(lock_path_for(tmp_path / "busy")))
    busy.acquire(timeout=1)  # released on exit of the outermost context
    busy.release()


def _try_lock(path: str, q: "mp.Queue") -> None:
    from filelock import Timeout

    try:
        with entry_lock(path, timeout=0.2):
            q.put("acquired")
    except Timeout:
        q.put("timeout")
