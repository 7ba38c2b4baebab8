r"""Running class centers and input checks shared by the center-based losses."""

from __future__ import annotations

import torch
from torch import nn

from grassmann_nn.distributed import reduce_class_sums

_LOW_PRECISION = (torch.float16, torch.bfloat16)

# torch.cdist mode that subtracts before squaring. The expanded form |x|^2 + |c|^2 - 2 x.c cancels
# catastrophically and can go negative when a feature equals a center.
_EXACT_EUCLIDEAN = "donot_use_mm_for_euclid_dist"


def compute_dtype(*dtypes: torch.dtype) -> torch.dtype:
    """Return the promotion of ``dtypes``, widened to float32 from float16 or bfloat16."""
    result = dtypes[0]
    for dtype in dtypes[1:]:
        result = torch.promote_types(result, dtype)

    if result in _LOW_PRECISION:
        return torch.float32
    return result


def center_distances(embeddings: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
    """Return the (batch, num_classes) Euclidean distances from each embedding to each center.

    Note: ``torch.cdist`` in its direct mode subtracts before squaring, so a feature equal to a
    center gets exactly 0, and its gradient at a zero distance is 0 rather than NaN.
    """
    return torch.cdist(embeddings, centers, compute_mode=_EXACT_EUCLIDEAN)


def check_int(name: str, value: int, minimum: int) -> None:
    """Raise ValueError unless ``value`` is an int (not a bool) of at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}.")


def is_integer_dtype(dtype: torch.dtype) -> bool:
    """Return whether ``dtype`` is a signed or unsigned integer dtype (bool excluded)."""
    return not dtype.is_floating_point and not dtype.is_complex and dtype != torch.bool


class _CenterBuffer(nn.Module):
    r"""Base class for losses that keep one running center per class.

    The buffer ``centers`` (``num_classes`` x ``feat_dim``) contains the centers and the bool buffer
    ``seen`` (``num_classes``) marks the classes whose center has been updated at least once or
    was given through ``initial_centers``. Both are in the ``state_dict``.

    In training mode (``module.training``) each call computes the loss with the centers as they
    are at the start of the call and then updates them without gradient, the order of Wen et
    al., "A Discriminative Feature Learning Approach for Deep Face Recognition" (ECCV 2016).
    Only the classes present in the batch move:

    $$ c_j \leftarrow c_j - \alpha \, \frac{\sum_{i: y_i = j} (c_j - f_i)}{1 + n_j} $$

    where $n_j$ is the number of samples of class $j$ in the batch. In evaluation mode the centers
    stay fixed. The update first builds per-class sums and counts, then passes them through
    `_reduce_class_sums`, then applies them. Under `torch.distributed` that method sums
    them over all ranks, so every rank applies the update of the concatenated batch and keeps
    identical centers. Each update is then a collective call, which every rank must make.

    Args:
        num_classes: Number of classes; labels must lie in ``[0, num_classes)``.
        feat_dim: Embedding dimension.
        alpha: Center learning rate in ``[0, 1]``; 0 freezes the centers.
        initial_centers: Optional ``(num_classes, feat_dim)`` floating tensor to start from,
            copied. All classes then count as seen. Default: zeros in the default dtype.
        distributed: Whether to all-reduce the center updates over the default process group.
            ``None`` (default) does so when `torch.distributed` is initialized with more than
            one rank, ``True`` requires an initialized process group, ``False`` never does.

    Raises:
        ValueError: On an invalid argument, with the value received.
    """

    centers: torch.Tensor
    seen: torch.Tensor

    def __init__(
        self,
        num_classes: int,
        feat_dim: int,
        alpha: float = 0.5,
        initial_centers: torch.Tensor | None = None,
        *,
        distributed: bool | None = None,
    ) -> None:
        super().__init__()
        check_int("num_classes", num_classes, 1)
        check_int("feat_dim", feat_dim, 1)
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha!r}.")

        self.num_classes = num_classes
        self.feat_dim = feat_dim
        self.alpha = float(alpha)
        self.distributed = distributed

        centers, seen = self._initial_state(initial_centers)
        self.register_buffer("centers", centers)
        self.register_buffer("seen", seen)

    def _initial_state(
        self, initial_centers: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        shape = (self.num_classes, self.feat_dim)
        if initial_centers is None:
            return torch.zeros(shape), torch.zeros(self.num_classes, dtype=torch.bool)

        if not isinstance(initial_centers, torch.Tensor) or not initial_centers.is_floating_point():
            raise ValueError(
                f"initial_centers must be a floating tensor of shape {shape}, "
                f"got {type(initial_centers).__name__}."
            )
        if tuple(initial_centers.shape) != shape:
            raise ValueError(
                f"initial_centers must have shape (num_classes, feat_dim) = {shape}, "
                f"got {tuple(initial_centers.shape)}."
            )
        if not torch.isfinite(initial_centers).all():
            raise ValueError("initial_centers contains NaN or infinite values.")

        centers = initial_centers.detach().clone()
        seen = torch.ones(self.num_classes, dtype=torch.bool, device=centers.device)
        return centers, seen

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, feat_dim={self.feat_dim}, alpha={self.alpha}"

    @torch.no_grad()
    def update_centers(self, embeddings: torch.Tensor, labels: torch.Tensor) -> None:
        """Move the centers of the classes in the batch by the center-loss rule.

        Runs in any mode. The losses call it themselves in training mode only.

        Args:
            embeddings: ``(batch, feat_dim)`` floating tensor.
            labels: ``(batch,)`` integer tensor with values in ``[0, num_classes)``.

        Raises:
            ValueError: On a shape mismatch, a non-integer or out-of-range label, or a non-finite
                embedding.
        """
        labels = self._check_batch(embeddings, labels)
        self._update_centers(embeddings, labels)

    @torch.no_grad()
    def _update_centers(self, embeddings: torch.Tensor, labels: torch.Tensor) -> None:
        sums, counts = self._class_sums(embeddings, labels)
        sums, counts = self._reduce_class_sums(sums, counts)
        self._apply_class_sums(sums, counts)

    def _class_sums(
        self, embeddings: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the per-class sums of the embeddings and the per-class sample counts."""
        dtype = compute_dtype(self.centers.dtype)
        features = embeddings.detach().to(dtype)

        sums = torch.zeros(self.num_classes, self.feat_dim, dtype=dtype, device=features.device)
        sums.index_add_(0, labels, features)

        counts = torch.zeros(self.num_classes, dtype=dtype, device=features.device)
        counts.index_add_(0, labels, torch.ones_like(labels, dtype=dtype))
        return sums, counts

    def _reduce_class_sums(
        self, sums: torch.Tensor, counts: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the class sums and counts that the update applies.

        With ``distributed`` on (see the class docstring) `reduce_class_sums` sums them over all
        ranks, otherwise it returns them unchanged. It is called on every update, even for an
        empty batch, so collective calls stay matched across ranks.
        """
        return reduce_class_sums(sums, counts, distributed=self.distributed)

    def _apply_class_sums(self, sums: torch.Tensor, counts: torch.Tensor) -> None:
        centers = self.centers.to(sums.dtype)
        counts = counts.unsqueeze(1)
        step = (counts * centers - sums) / (1.0 + counts)

        present = counts > 0
        # Absent classes have a zero step already. torch.where makes the rule explicit and, unlike
        # a boolean index, needs no host synchronization on CUDA.
        updated = torch.where(present, centers - self.alpha * step, centers)
        self.centers.copy_(updated)
        self.seen.logical_or_(present.squeeze(1))

    def _check_batch(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Validate a batch and return the labels on the embeddings' device.

        Raises:
            ValueError: On a shape mismatch, a non-integer or out-of-range label, a non-finite
                embedding, or embeddings on another device than the centers.
        """
        self._check_embeddings(embeddings)
        self._check_labels(labels, embeddings.shape[0])
        labels = labels.to(embeddings.device)
        self._check_values(embeddings, labels)
        return labels

    def _check_embeddings(self, embeddings: torch.Tensor) -> None:
        if not isinstance(embeddings, torch.Tensor) or not embeddings.is_floating_point():
            kind = getattr(embeddings, "dtype", type(embeddings).__name__)
            raise ValueError(f"embeddings must be a floating tensor, got {kind}.")
        if embeddings.ndim != 2 or embeddings.shape[1] != self.feat_dim:
            raise ValueError(
                f"embeddings must have shape (batch, feat_dim) = (batch, {self.feat_dim}), "
                f"got {tuple(embeddings.shape)}. Check feat_dim or flatten the embeddings."
            )
        if embeddings.device != self.centers.device:
            raise ValueError(
                f"embeddings are on {embeddings.device} but the centers are on "
                f"{self.centers.device}. Move the loss module with .to(device)."
            )

    def _check_labels(self, labels: torch.Tensor, batch_size: int) -> None:
        if not isinstance(labels, torch.Tensor) or not is_integer_dtype(labels.dtype):
            kind = getattr(labels, "dtype", type(labels).__name__)
            raise ValueError(
                f"labels must be an integer tensor of class indices, got {kind}. "
                "Convert them with labels.long()."
            )
        if labels.ndim != 1 or labels.shape[0] != batch_size:
            raise ValueError(
                f"labels must have shape (batch,) = ({batch_size},) to match the embeddings, "
                f"got {tuple(labels.shape)}."
            )

    def _check_values(self, embeddings: torch.Tensor, labels: torch.Tensor) -> None:
        # One host synchronization for all checks. The details are computed only on failure.
        out_of_range = (labels < 0) | (labels >= self.num_classes)
        non_finite = ~torch.isfinite(embeddings)
        if not bool(out_of_range.any() | non_finite.any()):
            return

        if out_of_range.any():
            index = int(out_of_range.nonzero()[0, 0])
            raise ValueError(
                f"labels must be in [0, num_classes) = [0, {self.num_classes}), got "
                f"{int(labels[index])} at index {index}. Remap the labels to class indices "
                "or increase num_classes."
            )

        row, column = (int(i) for i in non_finite.nonzero()[0])
        value = float(embeddings[row, column].detach())
        raise ValueError(
            f"embeddings contain a non-finite value {value} at "
            f"[{row}, {column}]. Check the model output for overflow or NaN."
        )

    def _loss_inputs(
        self, embeddings: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Validate a batch and return the embeddings, a copy of the centers and the labels.

        Both tensors are in the compute dtype: float32 or wider. The copy keeps the autograd
        graph valid after the in-place update of the buffer.
        """
        labels = self._check_batch(embeddings, labels)
        dtype = compute_dtype(embeddings.dtype, self.centers.dtype)
        centers = self.centers.to(dtype, copy=True)
        return embeddings.to(dtype), centers, labels

    def _finish(self, embeddings: torch.Tensor, labels: torch.Tensor) -> None:
        """Update the centers after the loss was computed, in training mode only."""
        if self.training:
            self._update_centers(embeddings, labels)
