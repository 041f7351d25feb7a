"""Transferability scores from features you saved yourself -- no PyTorch needed (the core install).

Extract each candidate model's features on your labelled target data however you like, save one ``.npz`` per
model with ``X`` ``[N, d]`` (features), ``y`` ``[N]`` (labels) and optionally ``P`` ``[N, C_src]`` (the model's
source-classifier probabilities, for LEEP and NCE), then:

    pip install nctransfer
    python examples/scores_from_saved_features.py feats/resnet50.npz feats/vit.npz --truth truth.csv

``truth.csv`` (optional) has columns ``model,accuracy`` (your fine-tuning or linear-probe results; the model name is
the file stem); with it, every score's ranking is checked against the truth (weighted Kendall tau, ...).

Without files the script makes a small demo pool from scikit-learn's digits (raw pixels, PCA to 16 and 4
dimensions, random projections) and its ground truth, so it runs anywhere. NCTRANSFER_EXAMPLE_TINY=1 is accepted
for uniformity with the other examples (the demo pool is already small).
"""

import argparse
import os
import tempfile
import warnings

import numpy as np

from nctransfer import transferability as tr
from nctransfer.metrics import probe_accuracy

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("features", nargs="*", help=".npz files with X, y (and optionally P); one per model")
parser.add_argument("--truth", help="CSV with columns model,accuracy")
args = parser.parse_args()


def demo_pool(folder):
    """Write a demo pool of 'feature extractors' on digits and return (paths, truth)."""
    from sklearn.datasets import load_digits
    from sklearn.decomposition import PCA
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    Xtr, Xte, ytr, yte = train_test_split(X / 16.0, y, test_size=0.5, stratify=y, random_state=0)
    rng = np.random.default_rng(0)
    extractors = {
        "pixels": lambda A: A,
        "pca16": PCA(16, random_state=0).fit(Xtr).transform,
        "pca4": PCA(4, random_state=0).fit(Xtr).transform,
        "random_proj8": (lambda R: (lambda A: A @ R))(rng.normal(size=(64, 8))),
    }
    paths, truth = [], {}
    for name, f in extractors.items():
        path = os.path.join(folder, f"{name}.npz")
        np.savez(path, X=f(Xtr), y=ytr)                      # the features you would have saved
        truth[name] = probe_accuracy(f(Xtr), ytr, f(Xte), yte).accuracy   # ground truth: a linear probe
        paths.append(path)
    return paths, truth


tmp = tempfile.TemporaryDirectory()
paths, truth = (args.features, args.truth) if args.features else demo_pool(tmp.name)

with warnings.catch_warnings():
    warnings.simplefilter("ignore")           # small demo features: PCA-based scores warn that they keep fewer dims
    table = tr.rank(paths)                    # one row per model, one column per score; higher = better
table = table.dropna(axis=1, how="all")       # LEEP and NCE are NaN without the source probabilities P
print("scores (higher = predicted to transfer better):")
print(table.round(4).to_string())

if truth is not None:
    if isinstance(truth, str):
        truth = tr.read_truth_csv(truth)
    evaluation = tr.evaluate(table, truth)    # {score: {"weighted_tau", "kendall", "spearman", "pearson", ...}}
    print("\nhow well each score ranked the models (weighted Kendall tau, 1 = perfect):")
    for method, ev in sorted(evaluation.items(), key=lambda kv: -np.nan_to_num(kv[1]["weighted_tau"], nan=-9)):
        print(f"  {method:14s} {ev['weighted_tau']:+.3f}")
