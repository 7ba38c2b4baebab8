"""Named presets of ``train`` options for the configurations that the DEFRAG paper compares.

Paper: "DEFRAG: Deep Euclidean Feature Representations through Adaptation on the Grassmann
Manifold", Minnehan & Savakis, arXiv:1806.07688. Its Table 2 reports Fashion-MNIST test
accuracy for six configurations, and its Figure 3 shows 2-D MNIST features for five.

Every baseline with an auxiliary loss (silhouette, center, contrastive center) keeps the linear
feature layer of the Linear row, so each row differs from Linear in one thing: the auxiliary
loss. DEFRAG then replaces the linear layer with a Grassmann layer and keeps the silhouette
loss. The paper does not name the feature activation of its center-loss rows. Linear features
are our choice, because a ReLU or Softplus would confine the features to the positive orthant,
which is what the paper argues against.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Variant:
    """One configuration of the comparison.

    Attributes:
        name: Name on the command line, such as ``"contrastive-center"``.
        label: Row label in tables and plot titles.
        options: ``train`` options that select the configuration.
        paper_accuracy: Fashion-MNIST test accuracy in Table 2 of the paper, or None for a
            configuration that the table does not list.
    """

    name: str
    label: str
    options: tuple[str, ...]
    paper_accuracy: float | None = None

    @property
    def feature(self) -> str:
        """The ``--feature`` value of the preset."""
        return self.options[self.options.index("--feature") + 1]

    @property
    def loss(self) -> str:
        """The ``--loss`` value of the preset."""
        return self.options[self.options.index("--loss") + 1]

    @property
    def has_aux_loss(self) -> bool:
        """Whether the preset adds an auxiliary loss, so that --lambda and --alpha apply."""
        return self.loss != "ce"

    @property
    def has_manifold(self) -> bool:
        """Whether the feature layer is a Grassmann layer, so that the retraction applies."""
        return self.feature == "grassmann"


VARIANTS: dict[str, Variant] = {
    variant.name: variant
    for variant in (
        Variant("relu", "Sparse (ReLU)", ("--feature", "relu", "--loss", "ce"), 0.9347),
        Variant("softplus", "Softplus", ("--feature", "softplus", "--loss", "ce")),
        Variant("linear", "Linear", ("--feature", "linear", "--loss", "ce"), 0.9369),
        Variant(
            "silhouette", "Silhouette", ("--feature", "linear", "--loss", "silhouette"), 0.9375
        ),
        Variant("center", "Center", ("--feature", "linear", "--loss", "center"), 0.9371),
        Variant(
            "contrastive-center",
            "Contrastive Center",
            ("--feature", "linear", "--loss", "contrastive-center"),
            0.9368,
        ),
        Variant("defrag", "DEFRAG", ("--feature", "grassmann", "--loss", "silhouette"), 0.9393),
    )
}

# The rows of the paper's Table 2, in its order.
TABLE2_VARIANTS = ("relu", "linear", "silhouette", "center", "contrastive-center", "defrag")

# The panels of the paper's Figure 3 (2-D MNIST features), in its order.
FIGURE3_VARIANTS = ("softplus", "linear", "center", "contrastive-center", "defrag")

# The configuration that the paired tests compare every other one against.
BASELINE_VARIANT = "linear"


def variant_of(config: Mapping[str, Any]) -> Variant | None:
    """Return the preset whose feature layer and loss match a run's ``config.json``, or None."""
    for variant in VARIANTS.values():
        if (variant.feature, variant.loss) == (config.get("feature"), config.get("loss")):
            return variant
    return None


def describe_run(config: Mapping[str, Any]) -> str:
    """Return a short label for a run: the preset label, plus retraction and optimizer.

    A run that matches no preset is described by its feature layer and loss.
    """
    variant = variant_of(config)
    label = variant.label if variant else f"{config.get('feature')} + {config.get('loss')}"
    if config.get("feature") == "grassmann":
        label += f" ({config.get('retraction')}, {config.get('optimizer')})"
    return label
