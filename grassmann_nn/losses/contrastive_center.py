r"""Contrastive-center loss of Qi and Su on running class centers."""

from __future__ import annotations

import torch

from grassmann_nn.losses._centers import _CenterBuffer, center_distances


class ContrastiveCenterLoss(_CenterBuffer):
    r"""Distance to the own center relative to the distances to all other centers.

    $$ \mathcal{L} = \frac{1}{2B} \sum_{i=1}^{B}
       \frac{\lVert f_i - c_{y_i} \rVert^2}{\sum_{j \ne y_i} \lVert f_i - c_j \rVert^2 + \delta} $$

    Source: Qi and Su, "Contrastive-center loss for deep neural networks", arXiv:1707.07391.
    That paper sums over the mini-batch. This loss averages instead, like ``CenterLoss``, so
    the weight $\lambda$ of the loss does not depend on the batch size; multiply $\lambda$ by
    $B$ to reproduce the sum.

    All ``num_classes`` centers enter the denominator, including centers still at their initial
    value, as in the paper's formula. The centers are running averages updated by the
    center-loss rule (see the base class ``_CenterBuffer``). The loss uses the centers as they
    are at the start of the call and the update follows, in training mode only. The centers are
    a buffer and receive no gradient. Distances are computed as differences, so they are never
    negative and their gradients are finite at 0. An empty batch gives 0.

    Args:
        num_classes: Number of classes.
        feat_dim: Embedding dimension.
        alpha: Center learning rate in ``[0, 1]``.
        delta: Positive constant that keeps the denominator away from 0.
        initial_centers: Optional ``(num_classes, feat_dim)`` starting centers. Default zeros.
        distributed: Whether to all-reduce the center updates over the ranks of
            `torch.distributed`. ``None`` (default) does so when it is initialized with more
            than one rank.

    Shape:
        - embeddings: ``(batch, feat_dim)``, any floating dtype; float16 and bfloat16 are
          computed in float32.
        - labels: ``(batch,)`` integer class indices in ``[0, num_classes)``.
        - output: scalar in the compute dtype (float32 or wider).

    Raises:
        ValueError: On an invalid argument, or at call time on a shape mismatch, a non-integer
            or out-of-range label, or a non-finite embedding.

    Example:
        >>> loss_fn = ContrastiveCenterLoss(num_classes=10, feat_dim=8)
        >>> loss = loss_fn(torch.randn(32, 8), torch.randint(0, 10, (32,)))
    """

    def __init__(
        self,
        num_classes: int,
        feat_dim: int,
        alpha: float = 0.5,
        delta: float = 1.0,
        *,
        initial_centers: torch.Tensor | None = None,
        distributed: bool | None = None,
    ) -> None:
        if not delta > 0:
            raise ValueError(f"delta must be positive, got {delta!r}.")
        super().__init__(num_classes, feat_dim, alpha, initial_centers, distributed=distributed)
        self.delta = float(delta)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, delta={self.delta}"

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Return the contrastive-center loss of the batch, then update the centers."""
        features, centers, labels = self._loss_inputs(embeddings, labels)

        own = (features - centers[labels]).square().sum(dim=1)
        squared = center_distances(features, centers).square()
        classes = torch.arange(self.num_classes, device=labels.device)
        is_own = classes.unsqueeze(0) == labels.unsqueeze(1)
        # Masking rather than subtracting the own term from the row sum avoids cancellation.
        others = squared.masked_fill(is_own, 0.0).sum(dim=1)
        ratio = own / (others + self.delta)
        loss = 0.5 * ratio.sum() / max(ratio.shape[0], 1)

        self._finish(embeddings, labels)
        return loss
