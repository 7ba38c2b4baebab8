"""Auxiliary losses on running class centers, called as ``loss(embeddings, labels)``."""

from grassmann_nn.losses.center import CenterLoss
from grassmann_nn.losses.contrastive_center import ContrastiveCenterLoss
from grassmann_nn.losses.silhouette import SilhouetteLoss

__all__ = ["CenterLoss", "ContrastiveCenterLoss", "SilhouetteLoss"]
