r"""Center loss of Wen et al. on running class centers."""

from __future__ import annotations

import torch

from grassmann_nn.losses._centers import _CenterBuffer


class CenterLoss(_CenterBuffer):
    r"""Half the mean squared distance of each embedding to its running class center.

    $$ \mathcal{L} = \frac{1}{2B} \sum_{i=1}^{B} \lVert f_i - c_{y_i} \rVert^2 $$

    Source: Wen, Zhang, Li and Qiao, "A Discriminative Feature Learning Approach for Deep Face
    Recognition" (ECCV 2016). That paper sums over the mini-batch. This loss averages instead,
    so the weight $\lambda$ of the loss does not depend on the batch size; multiply
    $\lambda$ by $B$ to reproduce the sum.

    The centers are running averages updated by the center-loss rule (see the base class
    ``_CenterBuffer``). The loss uses the centers as they are at the start of the call and the
    update follows, in training mode only, the order of the paper. The centers are a buffer and
    receive no gradient. Distances are computed as differences, so an embedding equal to its
    center gives exactly 0. An empty batch gives 0.

    Args:
        num_classes: Number of classes.
        feat_dim: Embedding dimension.
        alpha: Center learning rate in ``[0, 1]``.
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
        >>> loss_fn = CenterLoss(num_classes=10, feat_dim=8)
        >>> loss = loss_fn(torch.randn(32, 8), torch.randint(0, 10, (32,)))
    """

    def __init__(
        self,
        num_classes: int,
        feat_dim: int,
        alpha: float = 0.5,
        *,
        initial_centers: torch.Tensor | None = None,
        distributed: bool | None = None,
    ) -> None:
        super().__init__(num_classes, feat_dim, alpha, initial_centers, distributed=distributed)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Return the center loss of the batch, then update the centers in training mode."""
        features, centers, labels = self._loss_inputs(embeddings, labels)

        squared = (features - centers[labels]).square().sum(dim=1)
        loss = 0.5 * squared.sum() / max(squared.shape[0], 1)

        self._finish(embeddings, labels)
        return loss
