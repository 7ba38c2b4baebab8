r"""Functional kernel of `grassmann_nn.optim.RiemannianSGD`.

The kernel works in three phases so that a failed step changes nothing:

1. `compute_sgd_updates` computes the new value of every parameter and momentum buffer
   out of place, without writing into any tensor it was given;
2. `check_finite_updates` verifies, with one pass and one host synchronization per
   device, that every new value is finite, and on failure names the parameter and whether its
   gradient was the cause;
3. `apply_sgd_updates` copies the new values into the parameters and momentum buffers in
   place, so their storage (``data_ptr()``) never changes.

A plain tensor follows the arithmetic of ``torch.optim.SGD``'s single-tensor kernel operation by
operation, so it gets the same numbers. A `geoopt.ManifoldTensor` (or
`geoopt.ManifoldParameter`) is updated with its manifold's Riemannian gradient, retraction
and vector transport.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import geoopt
import torch
from torch import Tensor

__all__ = [
    "ParameterUpdate",
    "apply_sgd_updates",
    "check_gradients",
    "check_finite_updates",
    "compute_sgd_updates",
    "euclidean_steps_stay_finite",
    "riemannian_sgd",
    "sgd_step_in_place",
]


@dataclass(frozen=True)
class ParameterUpdate:
    """New values for one parameter and its momentum buffer, computed but not yet applied.

    Attributes:
        param: The parameter that the update is for.
        new_param: Its value after the step.
        momentum_buffer: Its momentum buffer before the step, or ``None`` when it has none yet.
        new_momentum_buffer: Its momentum buffer after the step, or ``None`` without momentum.
        group_index: Index of the parameter's param group, used in error messages.
        param_index: Index of the parameter inside its group, used in error messages.
        grad: The gradient the update was computed from, used to explain a failure.
    """

    param: Tensor
    new_param: Tensor
    momentum_buffer: Tensor | None
    new_momentum_buffer: Tensor | None
    group_index: int = 0
    param_index: int = 0
    grad: Tensor | None = None


def _describe_parameter(param: Tensor, group_index: int, param_index: int) -> str:
    """Name a parameter by its position in the optimizer, its shape and its manifold."""
    description = (
        f"parameter {param_index} of param group {group_index} (shape {tuple(param.shape)}, "
        f"dtype {param.dtype}"
    )
    if isinstance(param, geoopt.ManifoldTensor):
        description += f", manifold {repr(param.manifold).removesuffix(' manifold')}"
    return description + ")"


def _euclidean_gradient(
    param: Tensor, grad: Tensor, *, weight_decay: float, maximize: bool
) -> Tensor:
    r"""Return $\pm g + \lambda \theta$ without writing into ``grad``.

    The operations and their order are those of ``torch.optim.SGD``, so the result is the same
    floating-point value.
    """
    if maximize:
        grad = -grad

    if weight_decay != 0:
        grad = grad.add(param, alpha=weight_decay)

    return grad


def _momentum_direction(
    grad: Tensor,
    momentum_buffer: Tensor | None,
    *,
    momentum: float,
    dampening: float,
    nesterov: bool,
) -> tuple[Tensor, Tensor | None]:
    r"""Return the descent direction and the new momentum buffer for one parameter.

    With $\mu$ = ``momentum`` and $\tau$ = ``dampening`` the buffer is
    $b_1 = g_1$ and $b_t = \mu b_{t-1} + (1 - \tau) g_t$. The direction is
    $g_t + \mu b_t$ with Nesterov momentum and $b_t$ otherwise. The old buffer is
    read, never written.
    """
    if momentum == 0:
        return grad, None

    if momentum_buffer is None:
        new_buffer = grad.detach().clone()
    else:
        new_buffer = momentum_buffer.mul(momentum).add_(grad, alpha=1 - dampening)

    if nesterov:
        return grad.add(new_buffer, alpha=momentum), new_buffer
    return new_buffer, new_buffer


def _update_euclidean(
    param: Tensor,
    grad: Tensor,
    momentum_buffer: Tensor | None,
    *,
    lr: float,
    momentum: float,
    dampening: float,
    weight_decay: float,
    nesterov: bool,
    maximize: bool,
) -> tuple[Tensor, Tensor | None]:
    r"""Compute ``torch.optim.SGD``'s update $\theta - \gamma d$ of a plain tensor."""
    grad = _euclidean_gradient(param, grad, weight_decay=weight_decay, maximize=maximize)

    direction, new_buffer = _momentum_direction(
        grad, momentum_buffer, momentum=momentum, dampening=dampening, nesterov=nesterov
    )

    new_param = param.add(direction, alpha=-lr)
    return new_param, new_buffer


def _update_on_manifold(
    param: geoopt.ManifoldTensor,
    grad: Tensor,
    momentum_buffer: Tensor | None,
    *,
    lr: float,
    momentum: float,
    dampening: float,
    weight_decay: float,
    nesterov: bool,
    maximize: bool,
) -> tuple[Tensor, Tensor | None]:
    r"""Compute the Riemannian SGD update of a tensor on a manifold.

    The Euclidean gradient (with the weight decay term) becomes the Riemannian gradient
    $\operatorname{grad} f(x)$ through ``manifold.egrad2rgrad``. The momentum buffer, a
    tangent vector at $x$, is started from that Riemannian gradient and combined with it as
    in ``torch.optim.SGD``. The new point is $R_x(-\gamma d)$ with the manifold's retraction
    $R$, and the new buffer is the old one carried to $R_x(-\gamma d)$ by the
    manifold's vector transport (``manifold.retr_transp``). This is Riemannian SGD as in
    "Stochastic gradient descent on Riemannian manifolds" (Bonnabel, arXiv:1111.5280), with
    momentum transported like geoopt's ``RiemannianSGD`` but started as ``torch.optim.SGD``
    starts it (geoopt 0.5.1 starts its buffer differently, so the two differ from step one).
    """
    manifold = param.manifold

    egrad = _euclidean_gradient(param, grad, weight_decay=weight_decay, maximize=maximize)
    rgrad = manifold.egrad2rgrad(param, egrad)

    direction, new_buffer = _momentum_direction(
        rgrad, momentum_buffer, momentum=momentum, dampening=dampening, nesterov=nesterov
    )

    step = direction.mul(-lr)
    try:
        if new_buffer is None:
            return manifold.retr(param, step), None
        return manifold.retr_transp(param, step, new_buffer)
    except torch.linalg.LinAlgError as error:
        # A finite gradient times a huge learning rate can overflow, and the decompositions
        # inside a retraction then fail. Report that as the floating-point error it is.
        if bool(torch.isfinite(step).all()):
            raise
        raise FloatingPointError(
            f"the retraction step -lr * direction (lr = {lr}) contains inf or NaN"
        ) from error


def compute_sgd_updates(
    params: Sequence[Tensor],
    grads: Sequence[Tensor],
    momentum_buffer_list: Sequence[Tensor | None],
    *,
    lr: float | Tensor,
    momentum: float,
    dampening: float,
    weight_decay: float,
    nesterov: bool,
    maximize: bool = False,
    group_index: int = 0,
    param_indices: Sequence[int] | None = None,
) -> list[ParameterUpdate]:
    r"""Compute one Riemannian SGD step for a list of parameters without applying it.

    Nothing given to this function is written: not the parameters, not their gradients, not the
    momentum buffers.

    Args:
        params: Parameters to update, plain tensors or `geoopt.ManifoldTensor`.
        grads: Their Euclidean gradients, dense, one per parameter.
        momentum_buffer_list: Their momentum buffers, ``None`` where a parameter has none yet.
            Ignored when ``momentum`` is 0.
        lr: Learning rate $\gamma$, a float or a one-element tensor.
        momentum: Momentum factor $\mu$.
        dampening: Dampening $\tau$ for momentum.
        weight_decay: L2 penalty $\lambda$, added to the Euclidean gradient as
            $\lambda \theta$ before the Riemannian gradient is formed.
        nesterov: Whether to use Nesterov momentum.
        maximize: Whether to maximize the objective instead of minimizing it.
        group_index: Index of the param group, used in error messages only.
        param_indices: Index of each parameter inside its group, used in error messages only.
            Defaults to the position in ``params``.

    Returns:
        One `ParameterUpdate` per parameter, in order.

    Raises:
        ValueError: If the three lists differ in length.
        TypeError: If a gradient is sparse.
        FloatingPointError: If a manifold's retraction raises it; the message names the
            parameter.
    """
    if not len(params) == len(grads) == len(momentum_buffer_list):
        raise ValueError(
            "params, grads and momentum_buffer_list must have the same length, got "
            f"{len(params)}, {len(grads)} and {len(momentum_buffer_list)}."
        )

    if param_indices is None:
        param_indices = range(len(params))

    lr = float(lr)
    updates = []
    for param_index, param, grad, momentum_buffer in zip(
        param_indices, params, grads, momentum_buffer_list, strict=True
    ):
        if grad.is_sparse:
            raise _sparse_gradient_error(param, group_index, param_index)

        if momentum == 0:
            momentum_buffer = None

        if isinstance(param, geoopt.ManifoldTensor):
            update_fn = _update_on_manifold
        else:
            update_fn = _update_euclidean

        try:
            new_param, new_buffer = update_fn(
                param,
                grad,
                momentum_buffer,
                lr=lr,
                momentum=momentum,
                dampening=dampening,
                weight_decay=weight_decay,
                nesterov=nesterov,
                maximize=maximize,
            )
        except FloatingPointError as error:
            # Retractions raise FloatingPointError rather than return inf or NaN. Name the
            # parameter, which their message cannot, and blame the gradient when it is the cause.
            if not bool(torch.isfinite(grad).all()):
                raise _non_finite_gradient_error(param, group_index, param_index) from error
            raise FloatingPointError(
                f"The update of {_describe_parameter(param, group_index, param_index)} failed, "
                f"so the optimizer step was rejected and no parameter or momentum buffer was "
                f"changed: {error}"
            ) from error
        updates.append(
            ParameterUpdate(
                param, new_param, momentum_buffer, new_buffer, group_index, param_index, grad
            )
        )

    return updates


def _all_finite(tensors: Sequence[Tensor]) -> bool:
    """Return whether every tensor is free of inf and NaN, with one host sync per device.

    Note:
        The fast test sums each tensor, because inf and NaN always make the sum non-finite.
        A sum reads its input once without the boolean temporary of ``isfinite``, which made
        it about 10x faster for the 1.26M parameters of the DEFRAG network on one CPU thread.
        Finite values whose sum overflows can fail the fast test, and then the exact
        ``isfinite`` check decides.
    """
    sums_by_device: dict[torch.device, list[Tensor]] = {}
    for tensor in tensors:
        sums_by_device.setdefault(tensor.device, []).append(tensor.sum())

    if all(bool(torch.isfinite(torch.stack(sums)).all()) for sums in sums_by_device.values()):
        return True
    return all(bool(torch.isfinite(tensor).all()) for tensor in tensors)


def _non_finite_gradient_error(
    param: Tensor, group_index: int, param_index: int
) -> FloatingPointError:
    return FloatingPointError(
        f"The gradient of {_describe_parameter(param, group_index, param_index)} contains "
        "inf or NaN, so the optimizer step was rejected and no parameter or momentum buffer "
        "was changed. Check the loss for overflow or skip this step."
    )


def _sparse_gradient_error(param: Tensor, group_index: int, param_index: int) -> TypeError:
    return TypeError(
        "RiemannianSGD does not support sparse gradients, but "
        f"{_describe_parameter(param, group_index, param_index)} has one. Use dense gradients "
        "(for example nn.Embedding(sparse=False)) or torch.optim.SGD."
    )


def check_gradients(
    params: Sequence[Tensor],
    grads: Sequence[Tensor],
    *,
    group_indices: Sequence[int] | None = None,
    param_indices: Sequence[int] | None = None,
) -> None:
    """Raise if any gradient is sparse or contains inf or NaN, naming the first such parameter.

    Checking the gradients before the step keeps non-finite input away from the retractions,
    whose matrix decompositions can fail on it with a less helpful error.

    Args:
        params: The parameters, used to describe the failure.
        grads: Their gradients.
        group_indices: Param group of each parameter, for the message. Defaults to 0.
        param_indices: Index of each parameter in its group, for the message. Defaults to the
            position in ``params``.

    Raises:
        TypeError: If a gradient is sparse.
        FloatingPointError: If a gradient is not finite.
    """
    if group_indices is None:
        group_indices = [0] * len(params)
    if param_indices is None:
        param_indices = range(len(params))

    labelled = list(zip(params, grads, group_indices, param_indices, strict=True))
    for param, grad, group_index, param_index in labelled:
        if grad.is_sparse:
            raise _sparse_gradient_error(param, group_index, param_index)

    if _all_finite(grads):
        return

    for param, grad, group_index, param_index in labelled:
        if bool(torch.isfinite(grad).all()):
            continue

        raise _non_finite_gradient_error(param, group_index, param_index)


def _max_abs(tensor: Tensor) -> Tensor:
    """Return max |tensor| as a 0-d tensor, NaN if it contains NaN, without an |tensor| copy."""
    if tensor.numel() == 0:
        return tensor.new_zeros(())
    smallest, largest = torch.aminmax(tensor)
    return torch.maximum(-smallest, largest)


def _step_bounds(
    param_bound: float, grad_bound: float, buffer_bound: float | None, group: dict
) -> tuple[float, ...]:
    """Return bounds on max |.| of the gradient term, new buffer, direction and new parameter.

    The arguments bound max |param|, max |grad| and max |momentum buffer| (``None`` without
    one); ``group`` contains the hyperparameters. Each bound follows the arithmetic of
    `sgd_step_in_place` with the triangle inequality.
    """
    momentum = group["momentum"]
    grad_term = grad_bound + group["weight_decay"] * param_bound
    if momentum == 0:
        new_buffer = 0.0
        direction = grad_term
    else:
        if buffer_bound is None:
            new_buffer = grad_term
        else:
            new_buffer = momentum * buffer_bound + abs(1 - group["dampening"]) * grad_term
        direction = grad_term + momentum * new_buffer if group["nesterov"] else new_buffer

    new_param = param_bound + float(group["lr"]) * direction
    return grad_term, new_buffer, direction, new_param


def euclidean_steps_stay_finite(
    params: Sequence[Tensor],
    grads: Sequence[Tensor],
    momentum_buffer_list: Sequence[Tensor | None],
    hyperparameters: Sequence[dict],
) -> bool:
    """Return whether ``torch.optim.SGD``'s in-place update of these plain tensors stays finite.

    The test bounds every intermediate value (gradient with weight decay, momentum buffer,
    direction and new parameter) by the largest absolute entries of the inputs, read with one
    pass per tensor and one host synchronization per device. It returns True only when every
    bound is finite and at most a quarter of the dtype's largest value, which leaves room for
    rounding, so an in-place step that passes cannot write inf or NaN. A False result does not
    mean that the step fails: the caller then takes the exact out-of-place route, which also
    reports sparse gradients, for which the result is always False.

    Args:
        params: Plain tensor parameters.
        grads: Their gradients.
        momentum_buffer_list: Their momentum buffers, ``None`` where there is none yet.
        hyperparameters: The param group of each parameter (``lr``, ``momentum``,
            ``dampening``, ``weight_decay``, ``nesterov``).
    """
    if any(grad.is_sparse for grad in grads):
        return False

    maxima_by_device: dict[torch.device, list[Tensor]] = {}
    for param, grad, buffer in zip(params, grads, momentum_buffer_list, strict=True):
        maxima = maxima_by_device.setdefault(param.device, [])
        maxima += [_max_abs(param), _max_abs(grad)]
        if buffer is not None:
            maxima.append(_max_abs(buffer))

    values_by_device = {
        device: torch.stack([m.float() for m in maxima]).tolist()
        for device, maxima in maxima_by_device.items()
    }
    positions = dict.fromkeys(values_by_device, 0)

    for param, buffer, group in zip(params, momentum_buffer_list, hyperparameters, strict=True):
        values = values_by_device[param.device]
        position = positions[param.device]
        count = 2 if buffer is None else 3
        positions[param.device] = position + count

        bounds = values[position : position + count]
        buffer_bound = bounds[2] if buffer is not None and group["momentum"] != 0 else None
        limit = torch.finfo(param.dtype).max / 4
        for bound in _step_bounds(bounds[0], bounds[1], buffer_bound, group):
            if not (math.isfinite(bound) and bound <= limit):
                return False

    return True


def sgd_step_in_place(
    param: Tensor,
    grad: Tensor,
    momentum_buffer: Tensor | None,
    *,
    lr: float,
    momentum: float,
    dampening: float,
    weight_decay: float,
    nesterov: bool,
    maximize: bool,
) -> Tensor | None:
    """Apply ``torch.optim.SGD``'s single-tensor update to a plain tensor in place.

    The operations are those of ``torch.optim.SGD``, in place like there, so the numbers are
    the same. Call it only after `euclidean_steps_stay_finite` has returned True for the
    parameter: it writes without checking.

    Returns:
        The momentum buffer after the step, the given one updated in place, or a new tensor
        when there was none; ``None`` without momentum.
    """
    if maximize:
        grad = -grad
    if weight_decay != 0:
        grad = grad.add(param, alpha=weight_decay)

    if momentum != 0:
        if momentum_buffer is None:
            momentum_buffer = grad.detach().clone()
        else:
            momentum_buffer.mul_(momentum).add_(grad, alpha=1 - dampening)
        grad = grad.add(momentum_buffer, alpha=momentum) if nesterov else momentum_buffer
    else:
        momentum_buffer = None

    param.add_(grad, alpha=-lr)
    return momentum_buffer


def _checked_values(updates: Sequence[ParameterUpdate]) -> list[Tensor]:
    """Return the new values whose finiteness implies that of the whole step.

    A plain tensor's new momentum buffer enters its new value as ``-lr * buffer`` (even
    ``lr = 0`` turns inf into NaN), so checking the new value covers it. A manifold's transport
    can produce a buffer independently of the point, so those buffers are checked too.
    """
    values = [update.new_param for update in updates]
    for update in updates:
        on_manifold = isinstance(update.param, geoopt.ManifoldTensor)
        if on_manifold and update.new_momentum_buffer is not None:
            values.append(update.new_momentum_buffer)
    return values


def check_finite_updates(updates: Sequence[ParameterUpdate]) -> None:
    """Raise if any new parameter value or momentum buffer contains inf or NaN.

    The test costs one pass over the new values and one host synchronization per device. Only
    when it fails are the gradients and each value examined, to name the first culprit.

    Args:
        updates: The output of `compute_sgd_updates`, possibly for several param groups.

    Raises:
        FloatingPointError: Naming the first parameter whose gradient, new value or new momentum
            buffer is not finite.
    """
    if _all_finite(_checked_values(updates)):
        return

    with_grads = [update for update in updates if update.grad is not None]
    check_gradients(
        [update.param for update in with_grads],
        [update.grad for update in with_grads],
        group_indices=[update.group_index for update in with_grads],
        param_indices=[update.param_index for update in with_grads],
    )

    for update in updates:
        description = _describe_parameter(update.param, update.group_index, update.param_index)
        if not bool(torch.isfinite(update.new_param).all()):
            failed_value = "new value (the result of the update or retraction)"
        elif update.new_momentum_buffer is not None and not bool(
            torch.isfinite(update.new_momentum_buffer).all()
        ):
            failed_value = "new momentum buffer"
        else:
            continue

        raise FloatingPointError(
            f"The {failed_value} of {description} contains inf or NaN although its gradient is "
            "finite, so the optimizer step was rejected and no parameter or momentum buffer was "
            "changed. "
            "Lower the learning rate, or check the parameter's value and its manifold's "
            "retraction."
        )


def apply_sgd_updates(updates: Sequence[ParameterUpdate]) -> list[Tensor | None]:
    """Copy computed updates into the parameters and momentum buffers in place.

    Existing momentum buffers are overwritten with ``copy_``, so parameters and buffers keep
    their storage. A parameter without a buffer gets the newly computed tensor.

    Args:
        updates: The output of `compute_sgd_updates`, after `check_finite_updates`.

    Returns:
        The momentum buffer of each parameter after the step (``None`` without momentum), in the
        order of ``updates``.
    """
    momentum_buffers: list[Tensor | None] = []
    with torch.no_grad():
        for update in updates:
            update.param.copy_(update.new_param)

            buffer = update.momentum_buffer
            if update.new_momentum_buffer is None:
                buffer = None
            elif buffer is None:
                # A manifold may return a view, such as a transpose. Store a dense tensor.
                buffer = update.new_momentum_buffer.contiguous()
            else:
                buffer.copy_(update.new_momentum_buffer)
            momentum_buffers.append(buffer)

    return momentum_buffers


def riemannian_sgd(
    params: list[Tensor],
    grads: list[Tensor],
    momentum_buffer_list: list[Tensor | None],
    *,
    lr: float | Tensor,
    momentum: float,
    dampening: float,
    weight_decay: float,
    nesterov: bool,
    maximize: bool = False,
) -> None:
    r"""Perform one Riemannian SGD step on a list of parameters, all or nothing.

    The functional counterpart of `grassmann_nn.optim.RiemannianSGD` for one param group,
    with the calling convention of ``torch.optim.sgd``: parameters and existing momentum buffers
    are updated in place, and ``None`` entries of ``momentum_buffer_list`` are replaced by the
    new buffers.

    Args:
        params: Parameters to update, plain tensors or `geoopt.ManifoldTensor`.
        grads: Their Euclidean gradients, dense, one per parameter.
        momentum_buffer_list: Their momentum buffers, ``None`` where a parameter has none yet.
            Ignored when ``momentum`` is 0.
        lr: Learning rate $\gamma$, a float or a one-element tensor.
        momentum: Momentum factor $\mu$.
        dampening: Dampening $\tau$ for momentum.
        weight_decay: L2 penalty $\lambda$, added to the Euclidean gradient as
            $\lambda \theta$ before the Riemannian gradient is formed.
        nesterov: Whether to use Nesterov momentum.
        maximize: Whether to maximize the objective instead of minimizing it.

    Raises:
        TypeError: If a gradient is sparse.
        FloatingPointError: If a gradient or a computed value contains inf or NaN, or a
            retraction raises it. Nothing has been written when it is raised.
    """
    updates = compute_sgd_updates(
        params,
        grads,
        momentum_buffer_list,
        lr=lr,
        momentum=momentum,
        dampening=dampening,
        weight_decay=weight_decay,
        nesterov=nesterov,
        maximize=maximize,
    )
    check_finite_updates(updates)

    new_buffers = apply_sgd_updates(updates)
    if momentum != 0:
        momentum_buffer_list[:] = new_buffers
