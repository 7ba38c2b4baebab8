r"""Silhouette loss on running class centers, the auxiliary loss of DEFRAG."""

from __future__ import annotations

import torch

from grassmann_nn.losses._centers import _CenterBuffer, center_distances


class SilhouetteLoss(_CenterBuffer):
    r"""Silhouette loss of each embedding against running class centers.

    For an embedding $f_i$ of class $y_i$ and class centers $c_k$:

    $$ a_i = \lVert f_i - c_{y_i} \rVert, \qquad
       b_i = \min_{k \ne y_i} \lVert f_i - c_k \rVert, \qquad
       s_i = \frac{b_i - a_i}{\max(a_i, b_i)}, \qquad
       \mathcal{L} = \frac{1}{|V|} \sum_{i \in V} (1 - s_i) $$

    Source: DEFRAG, Minnehan & Savakis, arXiv:1806.07688. The equations are missing from the
    text of that paper, so this loss is a reconstruction. It is the silhouette score of
    Rousseeuw, "Silhouettes: a graphical aid to the interpretation and validation of cluster
    analysis" (Journal of Computational and Applied Mathematics, 1987), with each cluster
    replaced by its center and $b_i$ taken on the nearest other class. The loss lies in
    $[0, 2]$ and is 0 when every embedding sits on its own center.

    The centers are running averages updated by the center-loss rule (see the base class
    ``_CenterBuffer``). The loss uses the centers as they are at the start of the call and the
    update follows, in training mode only. The centers are a buffer, so they never receive
    gradients and the loss treats them as constants.

    Which samples count: $V$ is the set of samples whose own class and at least one other
    class have been seen, meaning their centers were updated at least once or given through
    ``initial_centers``. $b_i$ runs over the seen classes other than $y_i$. A center still at its
    initial value would otherwise act as a class at the origin, and the minimum would lock
    onto it. The loss is 0 with zero gradient when $V$ is empty, for example on the first batch
    of a fresh module. A batch of a single class gets a finite loss from the centers of the
    other classes seen before. With ``initial_centers`` given, every sample counts.

    Degenerate samples: $s_i = 0$ when $a_i = b_i = 0$, the convention of scikit-learn for
    identical points. Gradients are finite at zero distances.

    Args:
        num_classes: Number of classes, at least 2.
        feat_dim: Embedding dimension.
        alpha: Center learning rate in ``[0, 1]``.
        squared: Variant. Use squared distances for $a_i$ and $b_i$, which weights far outliers
            more and changes the scale of $s_i$. Default False, the silhouette score's
            distances.
        soft_min_temperature: Variant. When set, $b_i$ is a softmax-weighted mean of the
            distances to the other seen centers, $b_i = \sum_k w_{ik} d_{ik}$ with
            $w_{ik} \propto \exp(-d_{ik} / T)$, which passes gradient to every other center and
            tends to the hard minimum as $T \to 0$. $T$ is in distance units. The weighted mean
            stays within the range of the distances, so $b_i \ge 0$ and $s_i \in [-1, 1]$.
            The log-sum-exp soft minimum $-T \log \sum_k e^{-d_{ik}/T}$ is not used because it
            falls below 0 for distances under $T \log(K - 1)$. Default None, the hard minimum.
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
        >>> loss_fn = SilhouetteLoss(num_classes=10, feat_dim=8)
        >>> loss = loss_fn(torch.randn(32, 8), torch.randint(0, 10, (32,)))
    """

    def __init__(
        self,
        num_classes: int,
        feat_dim: int,
        alpha: float = 0.5,
        *,
        squared: bool = False,
        soft_min_temperature: float | None = None,
        initial_centers: torch.Tensor | None = None,
        distributed: bool | None = None,
    ) -> None:
        if isinstance(num_classes, int) and num_classes < 2:
            raise ValueError(
                f"SilhouetteLoss needs num_classes >= 2 because b_i is the distance to another "
                f"class, got {num_classes}."
            )
        if soft_min_temperature is not None and not soft_min_temperature > 0:
            raise ValueError(
                f"soft_min_temperature must be positive or None, got {soft_min_temperature!r}."
            )
        super().__init__(num_classes, feat_dim, alpha, initial_centers, distributed=distributed)
        self.squared = bool(squared)
        self.soft_min_temperature = soft_min_temperature

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, squared={self.squared}, "
            f"soft_min_temperature={self.soft_min_temperature}"
        )

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Return the silhouette loss of the batch, then update the centers in training mode."""
        features, centers, labels = self._loss_inputs(embeddings, labels)

        distances = center_distances(features, centers)
        if self.squared:
            distances = distances.square()

        loss = silhouette_from_distances(
            distances, labels, self.seen, soft_min_temperature=self.soft_min_temperature
        )

        self._finish(embeddings, labels)
        return loss


def silhouette_from_distances(
    distances: torch.Tensor,
    labels: torch.Tensor,
    seen: torch.Tensor,
    *,
    soft_min_temperature: float | None = None,
) -> torch.Tensor:
    """Return the mean of ``1 - s_i`` over the valid samples, given distances to the centers.

    Args:
        distances: ``(batch, num_classes)`` non-negative distances to every center.
        labels: ``(batch,)`` class indices.
        seen: ``(num_classes,)`` bool mask of the centers that may serve as another class.
        soft_min_temperature: None for the hard minimum over other classes, else the
            temperature of the softmax-weighted mean.
    """
    classes = torch.arange(distances.shape[1], device=distances.device)
    others = seen.unsqueeze(0) & (classes.unsqueeze(0) != labels.unsqueeze(1))
    valid = seen[labels] & others.any(dim=1)

    own = distances.gather(1, labels.unsqueeze(1)).squeeze(1)
    if soft_min_temperature is None:
        nearest = _hard_min(distances, others, valid)
    else:
        nearest = _soft_min(distances, others, valid, soft_min_temperature)

    scores = _safe_silhouette(own, nearest)

    # Invalid samples contribute neither value nor gradient. torch.where routes their gradient
    # to 0 because every intermediate value above is finite.
    terms = torch.where(valid, 1.0 - scores, torch.zeros_like(scores))
    return terms.sum() / valid.sum().clamp_min(1)


def _hard_min(distances: torch.Tensor, others: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    # Rows without another class get 0 instead of inf, which keeps the later arithmetic finite.
    masked = distances.masked_fill(~others, torch.inf)
    nearest = masked.amin(dim=1)
    return torch.where(valid, nearest, torch.zeros_like(nearest))


def _soft_min(
    distances: torch.Tensor, others: torch.Tensor, valid: torch.Tensor, temperature: float
) -> torch.Tensor:
    logits = (-distances / temperature).masked_fill(~others, -torch.inf)
    # A row without another class would be all -inf and its softmax NaN, so it gets uniform
    # weights here and is dropped later through `valid`.
    logits = torch.where(valid.unsqueeze(1), logits, torch.zeros_like(logits))
    weights = torch.softmax(logits, dim=1)

    other_distances = distances.masked_fill(~others, 0.0)
    return (weights * other_distances).sum(dim=1)


def _safe_silhouette(own: torch.Tensor, nearest: torch.Tensor) -> torch.Tensor:
    """Return (b - a) / max(a, b), and 0 where a = b = 0, with finite gradients everywhere."""
    scale = torch.maximum(own, nearest)
    positive = scale > 0
    safe_scale = torch.where(positive, scale, torch.ones_like(scale))
    scores = (nearest - own) / safe_scale
    return torch.where(positive, scores, torch.zeros_like(scores))
