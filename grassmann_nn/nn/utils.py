r"""Keep a module's manifold parameters on their manifolds after any optimizer step.

The recipe is "any torch optimizer step, then retract": train with ``torch.optim.Adam`` (or any
other optimizer that ignores manifolds) and call `retract_` after every
``optimizer.step()``. It is one reading of the step that the DEFRAG paper (arXiv:1806.07688)
describes as retracting the feature space onto a Grassmann manifold.
`orthonormality_error` measures how far each orthonormal weight has drifted, for logging.
"""

from __future__ import annotations

import geoopt
import torch
from torch import Tensor, nn

from grassmann_nn.manifolds import OrthonormalFrames, Transposed

__all__ = ["orthonormality_error", "retract_"]


def _is_frame_manifold(manifold: geoopt.Manifold) -> bool:
    """Return whether points of ``manifold`` are matrices with orthonormal columns."""
    return isinstance(manifold, (OrthonormalFrames, geoopt.Stiefel))


def _tall_frame(param: geoopt.ManifoldTensor) -> Tensor | None:
    """Return ``param`` oriented so its columns should be orthonormal, or ``None``.

    ``None`` means the parameter's manifold is not one of matrices with orthonormal columns or
    rows (geoopt's Sphere or PoincareBall, for example).
    """
    manifold = param.manifold
    if isinstance(manifold, Transposed) and _is_frame_manifold(manifold.base):
        return param.detach().transpose(-1, -2)
    if _is_frame_manifold(manifold):
        return param.detach()
    return None


def _frame_error(frame: Tensor) -> float:
    r"""Return $\max |X^\top X - I|$ over a stack of matrices, computed in float64.

    Computing in float64 measures the error of the stored values rather than the rounding of a
    float32 or float16 matrix product.
    """
    x = frame.to(torch.float64)
    gram = x.transpose(-1, -2) @ x
    eye = torch.eye(x.shape[-1], dtype=torch.float64, device=x.device)
    return float((gram - eye).abs().max())


def orthonormality_error(module: nn.Module) -> dict[str, float]:
    r"""Measure how far each orthonormal weight of ``module`` is from its manifold.

    Args:
        module: Any module.

    Returns:
        ``{parameter name: max |W^T W - I|}`` for every manifold parameter whose points have
        orthonormal columns (this package's Grassmann and Stiefel manifolds, geoopt's Stiefel
        manifolds) or orthonormal rows (`grassmann_nn.manifolds.Transposed` of those, where
        the error is $\max |W W^\top - I|$). The maximum runs over any batch dimensions.
        Parameters on other manifolds and plain parameters are left out.
    """
    errors = {}
    for name, param in module.named_parameters():
        if not isinstance(param, geoopt.ManifoldTensor):
            continue

        frame = _tall_frame(param)
        if frame is not None:
            errors[name] = _frame_error(frame)

    return errors


@torch.no_grad()
def retract_(module: nn.Module) -> float:
    r"""Project every manifold parameter of ``module`` onto its manifold, in place.

    Each `geoopt.ManifoldParameter` is overwritten (``copy_`` into the same storage, so
    optimizer state and ``DistributedDataParallel`` keep working) by its manifold's ``projx``:
    for orthonormal weights the polar factor, the closest matrix with orthonormal columns or
    rows in Frobenius norm. Plain parameters are left alone.

    Call it after every step of an optimizer that does not know about manifolds:

    ```python
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for inputs, labels in loader:
        optimizer.zero_grad()
        loss_fn(model(inputs), labels).backward()
        optimizer.step()
        drift = grassmann_nn.nn.retract_(model)
    ```

    NOTE: Optimizer state such as Adam's moment estimates is not projected. It stays in the
    ambient space, which is what makes the recipe "any optimizer, then retract" and not a
    Riemannian optimizer. The other optimizer also writes its step before ``retract_`` runs,
    so a NaN or infinite step is already in the weight: ``retract_`` then raises and leaves
    the parameters as they are, and only a checkpoint restores them.

    Args:
        module: Any module.

    Returns:
        The largest orthonormality error $\max |W^\top W - I|$ that the projection
        removed, over the parameters that `orthonormality_error` reports, measured
        before projecting. 0.0 when there are none. Parameters on other manifolds are
        projected but not measured.
    """
    largest = 0.0
    projected = []
    for name, param in module.named_parameters():
        if not isinstance(param, geoopt.ManifoldTensor):
            continue

        frame = _tall_frame(param)
        if frame is not None:
            largest = max(largest, _frame_error(frame))

        projected.append((param, _project(name, param)))

    # Copy only once every projection succeeded, so a failure leaves the module unchanged.
    for param, value in projected:
        param.copy_(value)
    return largest


def _project(name: str, param: geoopt.ManifoldTensor) -> torch.Tensor:
    """Return ``projx`` of a parameter, or raise FloatingPointError naming it."""
    if not bool(torch.isfinite(param).all()):
        raise FloatingPointError(
            f"parameter {name!r} (shape {tuple(param.shape)}) already contains NaN or infinite "
            "values, written by the optimizer step before retract_, which changed no "
            "parameter. Reload the last checkpoint and lower the learning rate, or use "
            "grassmann_nn.optim.RiemannianSGD, which rejects such a step before writing it."
        )

    try:
        return param.manifold.projx(param.detach())
    except FloatingPointError as error:
        raise FloatingPointError(
            f"retract_ could not project parameter {name!r} (shape {tuple(param.shape)}) onto "
            f"its manifold, and changed no parameter: {error}"
        ) from error
