"""Rank pre-trained models for YOUR labelled images: which one (timm, torchvision, bundled) will transfer best?

Your data is an ImageFolder directory: one sub-directory per class (``cat/``, ``dog/``, ...), optionally split into
``train/`` and ``test/`` (otherwise a stratified 20% is held out as the test split). For every model nctransfer
extracts penultimate features of the training images, computes every transferability score (NCTI, LogME, ...),
measures the ground truth (a linear probe's accuracy on the test images) and writes a report.

    pip install 'nctransfer[torch,report,weights]'
    python examples/rank_models_on_imagefolder.py path/to/images --out runs/rank_mine
    python examples/rank_models_on_imagefolder.py path/to/images --models timm:resnet18,torchvision:resnet50

timm and torchvision weights are downloaded on first use (or taken from their local caches); the bundled
``efficientnet_lite0/1/2`` need no network. NCTRANSFER_EXAMPLE_TINY=1 runs a tiny, offline version (random weights,
32 px, a few images per class): that is how the test suite runs this script.
"""

import argparse
import os

import nctransfer

TINY = os.environ.get("NCTRANSFER_EXAMPLE_TINY") == "1"

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("data", help="ImageFolder directory (class sub-directories, optionally train/ and test/)")
parser.add_argument("--models", default="efficientnet_lite0,timm:resnet18,torchvision:mobilenet_v3_small",
                    help="comma-separated model names; prefix one with 'random:' to add a random-weights control")
parser.add_argument("--out", default="runs/rank_imagefolder", help="output directory (report.html, results.json)")
args = parser.parse_args()

res = nctransfer.rank_models(
    args.models.split(","),
    args.data,                                # an ImageFolder directory
    taps="penultimate",                       # one candidate per model; "all": every block of every model
    truth="probe",                            # ground truth: linear-probe accuracy on the test split
    per_class=8 if TINY else 100,             # training images per class used for the scores
    test_per_class=8 if TINY else 100,        # test images per class for the ground truth
    image_size=32 if TINY else None,          # None: each model's own input size
    pretrained=not TINY,                      # the tiny run uses random weights: offline and fast
    cache_dir=None if TINY else "default",    # features are cached (~/.cache/nctransfer) for re-runs
    progress=not TINY,
    out=args.out,
)

# best first, by the recommended score (NCTI); "evaluation" says how well each score ranked the pool
print("ranking (best first):", ", ".join(res["ranking"]))
for method in ("ncti", "logme"):
    tau = (res["evaluation"].get(method) or {}).get("weighted_tau", float("nan"))
    print(f"{method}: weighted Kendall tau against the probe accuracies = {tau:+.3f}")
print(f"report: {os.path.join(args.out, 'report.html')}")
