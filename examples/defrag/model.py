"""The convolutional network of the DEFRAG paper with a choice of feature layer.

Paper: "DEFRAG: Deep Euclidean Feature Representations through Adaptation on the Grassmann
Manifold", Minnehan & Savakis, arXiv:1806.07688.

The network takes 1 x 28 x 28 images and uses no padding:

    Conv 32 5x5, ReLU, max-pool 2      -> 32 x 12 x 12
    Conv 256 5x5, ReLU, max-pool 2     -> 256 x 4 x 4 = 4096
    FC 4096 -> 256, ReLU
    feature layer 256 -> feature_dim   (the variants below)
    FC feature_dim -> num_classes

With ``feature_dim=8`` and 10 classes it has 1,256,866 parameters in every variant. The
Grassmann variant stores the same 8 x 256 weight and 8 biases as the linear one, but the
weight is a point of Gr(256, 8), which has 8 * (256 - 8) = 1,984 degrees of freedom instead
of 2,048.
"""

from __future__ import annotations

import torch
from torch import nn

FEATURE_KINDS = ("relu", "linear", "softplus", "grassmann")

_HIDDEN_FEATURES = 256


class DefragNet(nn.Module):
    """The DEFRAG convolutional network; ``forward`` returns the logits and the features.

    Args:
        feature: Feature layer variant. ``"relu"``: Linear then ReLU (the paper's sparse
            baseline). ``"linear"``: Linear. ``"softplus"``: Linear then Softplus.
            ``"grassmann"``: ``grassmann_nn.nn.GrassmannLinear``, whose weight has orthonormal
            columns or rows and is kept on the Grassmann manifold by the optimizer.
        feature_dim: Width of the feature layer.
        num_classes: Number of classes of the final layer.
        retraction: Retraction of the Grassmann weight, by name (``"polar"``, ``"qr"``,
            ``"cayley"``, ``"exp"``). Used only by the ``"grassmann"`` variant.

    Raises:
        ValueError: When ``feature`` is unknown, or ``feature_dim`` is not in
            [1, 256) for the Grassmann variant.
    """

    def __init__(
        self,
        feature: str = "relu",
        feature_dim: int = 8,
        num_classes: int = 10,
        *,
        retraction: str = "polar",
    ) -> None:
        super().__init__()
        self.backbone = nn.Sequential(
            nn.Conv2d(1, 32, kernel_size=5),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 256, kernel_size=5),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(256 * 4 * 4, _HIDDEN_FEATURES),
            nn.ReLU(),
        )
        self.feature = build_feature_layer(feature, _HIDDEN_FEATURES, feature_dim, retraction)
        self.feature_activation = build_feature_activation(feature)
        self.classifier = nn.Linear(feature_dim, num_classes)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the class logits (N x num_classes) and the features (N x feature_dim)."""
        hidden = self.backbone(images)
        features = self.feature_activation(self.feature(hidden))
        return self.classifier(features), features


def build_feature_layer(
    feature: str, in_features: int, out_features: int, retraction: str = "polar"
) -> nn.Module:
    """Build the linear map of a feature layer variant, without its activation.

    Args:
        feature: One of ``FEATURE_KINDS``.
        in_features: Input width.
        out_features: Output width, the feature dimension.
        retraction: Retraction name for the ``"grassmann"`` variant.

    Raises:
        ValueError: When ``feature`` is unknown, or ``out_features`` is not in
            [1, in_features) for the Grassmann variant.
    """
    if feature not in FEATURE_KINDS:
        raise ValueError(
            f"Unknown feature layer {feature!r}. Expected one of {', '.join(FEATURE_KINDS)}."
        )
    if feature != "grassmann":
        return nn.Linear(in_features, out_features)

    if not 0 < out_features < in_features:
        raise ValueError(
            f"A Grassmann feature layer needs 0 < feature_dim < {in_features}, "
            f"got feature_dim {out_features}."
        )
    # Imported here so that the other variants work without the manifold layers.
    from grassmann_nn.nn import GrassmannLinear

    return GrassmannLinear(in_features, out_features, bias=True, retraction=retraction)


def build_feature_activation(feature: str) -> nn.Module:
    """Return the activation that follows the feature layer of a variant."""
    if feature == "relu":
        return nn.ReLU()
    if feature == "softplus":
        return nn.Softplus()
    return nn.Identity()


def count_parameters(model: nn.Module) -> int:
    """Return the number of scalar parameters (manifold parameters count every entry)."""
    return sum(parameter.numel() for parameter in model.parameters())
