"""Layer-wise collapse of YOUR OWN model: NC1, VCI, CDNV and linear-probe accuracy at every block.

Neural collapse progresses with depth in a well-trained network: the within-class variability of each block's
features shrinks relative to the between-class variability (NC1 falls), and linear separability rises with it
(Li et al., TMLR 2024, figure 9; see the documentation's methods page). This script does it for a model you
define yourself: any ``torch.nn.Module`` whose blocks are its child modules and whose last ``nn.Linear`` is the
classifier. Here a small CNN is trained for a few epochs on scikit-learn's digits; replace it with your model
(``model.load_state_dict(torch.load("my_weights.pt"))``) and the data with your own
(``load_dataset("path/to/ImageFolder", "train", model=model)``).

    pip install 'nctransfer[torch,report]'
    python examples/layerwise_collapse_own_model.py --out runs/layers_mine

NCTRANSFER_EXAMPLE_TINY=1: one training epoch on a subset (the test suite's setting).
"""

import argparse
import os

import torch
from torch import nn

from nctransfer.data import load_dataset
from nctransfer.layers import analyze

TINY = os.environ.get("NCTRANSFER_EXAMPLE_TINY") == "1"
parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--out", default="runs/layers_own_model")
parser.add_argument("--epochs", type=int, default=1 if TINY else 15)
args = parser.parse_args()
torch.manual_seed(0)
torch.set_num_threads(1)


class MyNet(nn.Module):
    """Your architecture: every child with parameters (except the classifier) is a block nctransfer taps."""

    def __init__(self, num_classes=10):
        super().__init__()
        self.block1 = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        self.block2 = nn.Sequential(nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2))
        self.block3 = nn.Sequential(nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(64, num_classes)   # its input is the "penultimate" tap

    def forward(self, x):
        return self.classifier(self.pool(self.block3(self.block2(self.block1(x)))).flatten(1))


# data: digits, images [1, 8, 8] in [0, 1]; the test split is held out and never trained on
train = load_dataset("digits", "train", per_class=30 if TINY else None)
test = load_dataset("digits", "test", per_class=10 if TINY else None)
model = MyNet(num_classes=len(train.classes))

# a short training run (skip it when you load your own trained weights)
opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
loader = torch.utils.data.DataLoader(train, batch_size=32, shuffle=True)
for epoch in range(args.epochs):
    for x, y in loader:
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
model.eval()

# every block's output (average-pooled per channel) -> collapse metrics + linear-probe accuracy
result = analyze(model, train, test, taps="all", no_cache=True, progress=False, threads=1,
                 C_grid=[1.0] if TINY else None)    # None: the default grid of L2 strengths for the probe
print(result.table())                               # one row per tap: nc1, vci, cdnv, ..., probe_accuracy
os.makedirs(args.out, exist_ok=True)
result.plot(os.path.join(args.out, "layers.png"))   # NC1 and accuracy per tap (needs the [report] extra)
print("written", os.path.join(args.out, "layers.png"))
