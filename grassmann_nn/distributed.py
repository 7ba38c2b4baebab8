r"""Helpers for data-parallel training with `torch.distributed`.

The center losses keep running class centers in buffers of the loss module, which
`DistributedDataParallel` does not wrap, and copying rank 0's centers would drop the samples
of the other ranks. Instead, their center update sums the per-class sums and counts of all
ranks with `all_reduce_class_sums` before applying the center-loss rule. Every rank then
applies the update of the concatenated batch and keeps identical centers:

$$ c_j \leftarrow c_j - \alpha \, \frac{N_j c_j - S_j}{1 + N_j}, \qquad
   S_j = \sum_{r} \sum_{i \in B_r,\, y_i = j} f_i, \qquad N_j = \sum_r n_{r,j} $$

where $B_r$ is the batch of rank $r$ and $n_{r,j}$ the number of its samples of class $j$.
`reduce_class_sums` decides whether to all-reduce. `broadcast_centers` copies rank 0's centers
to all ranks at startup or after a resume, and `mismatched_replicas` finds the parameters and
buffers that differ between ranks.

Every function here that communicates is a collective call, so all ranks of the group must
call it in the same order. A rank that raises before the call leaves the others waiting until
the process group's timeout.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.distributed as dist
from torch import Tensor, nn

if TYPE_CHECKING:
    from torch.distributed import ProcessGroup

__all__ = [
    "all_reduce_class_sums",
    "broadcast_centers",
    "is_distributed",
    "mismatched_replicas",
    "reduce_class_sums",
]


def is_distributed(group: ProcessGroup | None = None) -> bool:
    """Return whether `torch.distributed` is initialized with more than one rank in ``group``.

    Args:
        group: The process group to check. ``None`` is the default group.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return False
    return dist.get_world_size(group) > 1


def _require_initialized(caller: str) -> None:
    """Raise RuntimeError unless the default process group exists."""
    if not dist.is_available():
        raise RuntimeError(
            f"{caller} needs torch.distributed, which this build of PyTorch does not include."
        )
    if not dist.is_initialized():
        raise RuntimeError(
            f"{caller} needs an initialized process group. Call "
            "torch.distributed.init_process_group first (torchrun sets the environment for it)."
        )


def _check_class_sums(sums: Tensor, counts: Tensor) -> None:
    """Raise ValueError unless ``sums`` is (classes, features) and ``counts`` is (classes,)."""
    if sums.ndim != 2 or counts.ndim != 1 or sums.shape[0] != counts.shape[0]:
        raise ValueError(
            "Expected sums of shape (num_classes, feat_dim) and counts of shape (num_classes,), "
            f"got {tuple(sums.shape)} and {tuple(counts.shape)}."
        )
    if sums.device != counts.device:
        raise ValueError(
            f"sums and counts must be on one device, got {sums.device} and {counts.device}."
        )
    if not sums.is_floating_point():
        raise ValueError(f"sums must be a floating-point tensor, got dtype {sums.dtype}.")


def all_reduce_class_sums(
    sums: Tensor, counts: Tensor, group: ProcessGroup | None = None
) -> tuple[Tensor, Tensor]:
    """Sum per-class embedding sums and sample counts over all ranks, in one all-reduce.

    The inputs are left unchanged. Both are packed into one buffer in the dtype of ``sums``, so
    one collective carries them. A count is exact in that buffer up to 2**24 samples per class
    and step in float32.

    Args:
        sums: ``(num_classes, feat_dim)`` floating tensor, the sum of the embeddings of each
            class in this rank's batch.
        counts: ``(num_classes,)`` tensor, the number of samples of each class in this rank's
            batch.
        group: The process group to reduce over. ``None`` is the default group.

    Returns:
        ``(sums, counts)`` summed over the ranks of ``group``, new tensors with the dtypes of
        the inputs.

    Raises:
        ValueError: If the shapes do not match, the tensors are on different devices or
            ``sums`` is not floating point.
        RuntimeError: If no process group is initialized.
    """
    _check_class_sums(sums, counts)
    _require_initialized("all_reduce_class_sums")

    packed = torch.cat([sums.detach().reshape(-1), counts.detach().reshape(-1).to(sums.dtype)])
    dist.all_reduce(packed, op=dist.ReduceOp.SUM, group=group)

    total_sums, total_counts = packed.split([sums.numel(), counts.numel()])
    return total_sums.view_as(sums), total_counts.to(counts.dtype)


def reduce_class_sums(
    sums: Tensor,
    counts: Tensor,
    *,
    distributed: bool | None = None,
    group: ProcessGroup | None = None,
) -> tuple[Tensor, Tensor]:
    """Return the class sums and counts that a center update applies on this rank.

    This is the policy of the center losses' ``distributed`` option:

    - ``None`` all-reduces when `is_distributed` is true for ``group``, and otherwise returns
      the inputs unchanged, so single-process training is not affected;
    - ``True`` always all-reduces and needs an initialized process group. With one rank the
      values pass through the collective unchanged;
    - ``False`` never all-reduces, so each rank keeps its own centers.

    Args:
        sums: ``(num_classes, feat_dim)`` per-class sums of this rank's embeddings.
        counts: ``(num_classes,)`` per-class sample counts of this rank's batch.
        distributed: ``None``, ``True`` or ``False``, see above.
        group: The process group to reduce over. ``None`` is the default group.

    Returns:
        ``(sums, counts)``: the inputs themselves when nothing is reduced, otherwise the sums
        over all ranks.

    Raises:
        TypeError: If ``distributed`` is not ``None``, ``True`` or ``False``.
        RuntimeError: If ``distributed`` is ``True`` and no process group is initialized.
    """
    if distributed is not None and not isinstance(distributed, bool):
        raise TypeError(
            f"distributed must be None, True or False, got {type(distributed).__name__} "
            f"{distributed!r}."
        )

    if distributed is None:
        distributed = is_distributed(group)
    if not distributed:
        return sums, counts

    _require_initialized("distributed=True")
    return all_reduce_class_sums(sums, counts, group)


def _center_losses(module: nn.Module) -> list[nn.Module]:
    """Return ``module`` and its submodules that keep running class centers."""
    # Imported here because the center losses import this module.
    from grassmann_nn.losses._centers import _CenterBuffer

    return [submodule for submodule in module.modules() if isinstance(submodule, _CenterBuffer)]


@torch.no_grad()
def broadcast_centers(module: nn.Module, src: int = 0, group: ProcessGroup | None = None) -> int:
    """Copy the centers and ``seen`` flags of every center loss in ``module`` from rank ``src``.

    Call it on every rank after creating the losses or loading a checkpoint, so that all ranks
    start from the same centers. The buffers are overwritten in place.

    Args:
        module: A center loss (`SilhouetteLoss`, `CenterLoss`, `ContrastiveCenterLoss`) or a
            module that contains some.
        src: Global rank whose centers the others receive.
        group: The process group to broadcast in. ``None`` is the default group.

    Returns:
        The number of center losses found in ``module``.

    Raises:
        ValueError: If ``module`` contains no center loss.
        RuntimeError: If no process group is initialized.
    """
    losses = _center_losses(module)
    if not losses:
        raise ValueError(
            f"{type(module).__name__} contains no center loss (SilhouetteLoss, CenterLoss or "
            "ContrastiveCenterLoss). Pass the loss module itself."
        )
    _require_initialized("broadcast_centers")

    for loss in losses:
        dist.broadcast(loss.centers, src=src, group=group)
        dist.broadcast(loss.seen, src=src, group=group)
    return len(losses)


def _bits(tensor: Tensor) -> Tensor:
    """Return the bytes of ``tensor`` as a flat uint8 tensor, so that NaNs compare equal."""
    return tensor.detach().contiguous().reshape(-1).view(torch.uint8)


@torch.no_grad()
def mismatched_replicas(module: nn.Module, group: ProcessGroup | None = None) -> list[str]:
    """Return the names of the parameters and buffers that differ from rank 0's, bit for bit.

    Every rank returns the same list: a name is in it when the tensor differs on any rank. Use
    it to check that data-parallel replicas stay in sync, for example after a resume. It costs
    one broadcast per tensor and one all-reduce, so call it now and then, not every step.

    Args:
        module: The module to check, the same architecture on every rank, with its tensors on
            a device that the backend communicates on (CUDA for NCCL).
        group: The process group to compare in. ``None`` is the default group, and the
            reference is the group's rank 0.

    Returns:
        Names as in ``module.named_parameters()`` and ``module.named_buffers()``, in that
        order. An empty list when all ranks agree.

    Raises:
        RuntimeError: If no process group is initialized.
    """
    _require_initialized("mismatched_replicas")
    src = dist.get_global_rank(group, 0) if group is not None else 0

    named = [*module.named_parameters(), *module.named_buffers()]
    if not named:
        return []

    mismatched = []
    for _, tensor in named:
        reference = tensor.detach().clone(memory_format=torch.contiguous_format)
        dist.broadcast(reference, src=src, group=group)
        mismatched.append(not torch.equal(_bits(reference), _bits(tensor)))

    flags = torch.tensor(mismatched, dtype=torch.int32, device=named[0][1].device)
    dist.all_reduce(flags, op=dist.ReduceOp.MAX, group=group)
    return [name for (name, _), flag in zip(named, flags.tolist(), strict=True) if flag]
