"""Pre-training studies (docs/methods.md#pretraining; Li et al., TMLR 2024, section 3.1): how losses, projection heads, augmentation and
adversarial training shape collapse on the source data and transfer to a target.

- :class:`Recipe` / :class:`StudyGrid`: what to train (YAML grids with defaults, lists and products of axes);
- :func:`pretrain`: train a recipe with atomic, resumable checkpoints -> :class:`PretrainedModel`;
- losses (:func:`cross_entropy_loss`, :func:`mse_loss`, :func:`supcon_loss`), :class:`Augmenter` (levels 1-5),
  :func:`pgd_linf` (L-infinity PGD), :class:`SmallCNN`, :class:`MLP`, :class:`ProjectionHead`;
- :func:`load_study_data`: offline source/target datasets (``fashion-mnist:0-4``, ``digits``...);
- :func:`run_study`: pre-train every recipe, measure source collapse at every layer and transfer to each target,
  write ``study.json``, ``study.csv`` and the figures (resumable).
"""

from nctransfer.utils.extras import require_extra

require_extra("torch", "nctransfer.pretrain", ("torch",))  # fail now, naming the extra to install

from nctransfer.pretrain.adversarial import pgd_linf
from nctransfer.pretrain.augment import LEVEL_TRANSFORMS, Augmenter
from nctransfer.pretrain.datasets import OFFLINE_DATASETS, StudyData, load_study_data, parse_spec
from nctransfer.pretrain.grid import StudyGrid
from nctransfer.pretrain.losses import build_loss, cross_entropy_loss, mse_loss, supcon_loss
from nctransfer.pretrain.nets import MLP, PretrainNet, ProjectionHead, SmallCNN, build_net, encoder_units
from nctransfer.pretrain.recipe import LOSSES, SPEC_RADII_255, Recipe, parse_radius
from nctransfer.pretrain.trainer import PretrainedModel, load_pretrained, pretrain

__all__ = [
    "Augmenter",
    "LEVEL_TRANSFORMS",
    "LOSSES",
    "MLP",
    "OFFLINE_DATASETS",
    "PretrainNet",
    "PretrainedModel",
    "ProjectionHead",
    "Recipe",
    "SPEC_RADII_255",
    "SmallCNN",
    "StudyData",
    "StudyGrid",
    "build_loss",
    "build_net",
    "cross_entropy_loss",
    "encoder_units",
    "load_pretrained",
    "load_study_data",
    "mse_loss",
    "parse_radius",
    "parse_spec",
    "pgd_linf",
    "pretrain",
    "supcon_loss",
]
