"""Run under torchrun by tests/test_distributed_extract.py: sharded extraction, each rank saves what it got."""

import json
import sys

import numpy as np
import torch

from nctransfer.data import load_dataset
from nctransfer.extract import extract
from nctransfer.models import load_model
from nctransfer.utils.distributed import init_from_env, rank_and_world, shutdown

TAPS = ["blocks.4.0", "penultimate"]

torch.set_num_threads(1)
out, cache = sys.argv[1], sys.argv[2]
assert init_from_env(backend="gloo", timeout_s=120)
try:
    rank, world = rank_and_world()
    model = load_model("efficientnet_lite0")
    data = load_dataset("digits", "train", model=model, image_size=32, n=45)
    res = extract(model, data, TAPS, batch_size=8, store_features=True, progress=False,
                  cache_dir=None if cache == "none" else cache, shard_size=16)
    for t in TAPS:
        res[t].stats.save(f"{out}/stats-{cache != 'none'}-{rank}-{t}.npz")
        np.save(f"{out}/feat-{cache != 'none'}-{rank}-{t}.npy", res[t].features)
        np.save(f"{out}/lab-{cache != 'none'}-{rank}-{t}.npy", res[t].labels)
    with open(f"{out}/meta-{cache != 'none'}-{rank}.json", "w") as fh:
        json.dump({"slice": list(res.slice), "computed": res.computed_samples, "n": res.n_samples,
                   "shards": [str(p) for p in getattr(res, "shard_paths", [])]}, fh)
finally:
    shutdown()
