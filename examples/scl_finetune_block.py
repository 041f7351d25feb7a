"""SCL FT of a chosen block: fine-tune one block plus a skip connection to the penultimate feature.

Skip-connection layer fine-tuning (SCL FT; Li et al., TMLR 2024, section 3.3) trains one block of a pre-trained
model and the classifier, and adds the block's pooled output to the penultimate feature through a skip connection,
so that the features the classifier reads become more collapsed on the downstream data. It trains a few percent
of the parameters and is compared here with a linear probe (only the new classifier trains).

    pip install 'nctransfer[torch,weights]'
    python examples/scl_finetune_block.py --model efficientnet_lite0 --unit blocks.4.0 --data fashion-mnist
    python examples/scl_finetune_block.py --model timm:resnet18 --unit layer3.0 --data path/to/ImageFolder

``--unit auto`` lets nctransfer choose the block whose short probe run leaves the penultimate features most
collapsed. NCTRANSFER_EXAMPLE_TINY=1: random weights, 32 px, 5 images per class, one epoch (the test suite's run).
"""

import argparse
import os

from nctransfer.features import list_taps
from nctransfer.finetune import linear_probe, scl_ft
from nctransfer.models import load_model

TINY = os.environ.get("NCTRANSFER_EXAMPLE_TINY") == "1"
parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--model", default="efficientnet_lite0")
parser.add_argument("--unit", default="blocks.4.0", help="a block name (see the list printed first), an index or auto")
parser.add_argument("--data", default="digits", help="fashion-mnist, digits or an ImageFolder directory")
parser.add_argument("--out", default="runs/scl_ft")
args = parser.parse_args()

# the blocks you can choose from (the last entry, 'penultimate', is the classifier input, not a block)
print("blocks:", ", ".join(list_taps(load_model(args.model, pretrained=not TINY))[:-1]))

options = dict(
    epochs=1 if TINY else 5,
    per_class=5 if TINY else 100,          # training images per class
    test_per_class=5 if TINY else 100,
    image_size=32 if TINY else 64,
    batch_size=10 if TINY else 32,
    lr=0.05, backbone_lr=0.01,             # new classifier / fine-tuned block
    eval_per_class=2 if TINY else 10,
    num_threads=1,                          # one torch thread: faster on a shared CPU
    pretrained=not TINY,
    progress=not TINY,
)
results = {
    "linear probe": linear_probe(args.model, args.data, args.data, out_dir=os.path.join(args.out, "lp"), **options),
    f"SCL FT ({args.unit})": scl_ft(args.model, args.data, args.data, unit=args.unit,
                                    out_dir=os.path.join(args.out, "scl"), **options),
}
for name, r in results.items():
    print(f"{name:22s} test accuracy {100 * r.test_accuracy:5.1f}%   penultimate NC1 {r.penultimate_nc1:.3g}   "
          f"trains {r.trainable_percent:.2f}% of the parameters")
