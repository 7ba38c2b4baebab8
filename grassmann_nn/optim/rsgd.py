"""RiemannianSGD: ``torch.optim.SGD`` semantics for plain and manifold parameters."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from typing import Any

import geoopt
import torch
from torch import Tensor
from torch.optim.optimizer import Optimizer, ParamsT

from grassmann_nn._linalg import autocast_disabled
from grassmann_nn.optim._functional import (
    ParameterUpdate,
    apply_sgd_updates,
    check_finite_updates,
    compute_sgd_updates,
    euclidean_steps_stay_finite,
    sgd_step_in_place,
)

__all__ = ["RiemannianSGD"]


def _run_eagerly(method: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap ``method`` so that ``torch.compile`` runs it eagerly instead of tracing it.

    NOTE: torch.compile (checked with torch 2.14) loses the ManifoldParameter class of a
    parameter read from ``self.param_groups``, so a compiled step took the Euclidean update
    and left the manifold. The step also needs host synchronizations. ``torch.compiler.disable``
    imports ``torch._dynamo``, which takes seconds, so the wrapper is built at the first call,
    after the ``Optimizer`` constructor has imported it anyway.
    """
    eager_method = None

    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        nonlocal eager_method
        if eager_method is None:
            eager_method = torch.compiler.disable(method)
        return eager_method(*args, **kwargs)

    return wrapper


class RiemannianSGD(Optimizer):
    r"""Stochastic gradient descent with momentum on Riemannian manifolds.

    A plain tensor parameter gets exactly the update of ``torch.optim.SGD`` (its single-tensor
    kernel, which is what ``torch.optim.SGD`` runs on CPU): the same floating-point numbers and
    the same ``state_dict`` layout, so state dicts load from one optimizer into the other.

    A `geoopt.ManifoldParameter` $x$ on any geoopt manifold takes the step

    $$
    \begin{aligned}
        g_t &= \operatorname{egrad2rgrad}
               \big(x_{t-1},\ \nabla f(x_{t-1}) + \lambda x_{t-1}\big) \\
        b_t &= \mu\, b_{t-1} + (1 - \tau)\, g_t \qquad (b_1 = g_1) \\
        d_t &= g_t + \mu\, b_t \ \text{(Nesterov)} \quad\text{or}\quad d_t = b_t \\
        x_t &= R_{x_{t-1}}(-\gamma\, d_t), \qquad
        b_t \leftarrow \mathcal{T}_{x_{t-1} \to x_t}(b_t)
    \end{aligned}
    $$

    where $R$ is the retraction and $\mathcal{T}$ the vector transport chosen by the
    parameter's manifold (``manifold.retr_transp``). See "Stochastic gradient descent on
    Riemannian manifolds" (Bonnabel, arXiv:1111.5280).

    Weight decay on a manifold parameter adds $\lambda x$ to the Euclidean gradient before
    the Riemannian gradient is formed, so it is the Riemannian gradient of
    $f(x) + \tfrac{\lambda}{2} \lVert x \rVert_F^2$, as in geoopt's optimizers. On the
    Stiefel, Grassmann and sphere manifolds $\lVert x \rVert_F$ is constant, so the term is
    normal to the manifold, the projection removes it and weight decay changes the trajectory
    only by rounding. On other manifolds, for example geoopt's Euclidean, it is a real
    penalty.

    Every step is all or nothing. A failed step raises `FloatingPointError` naming the
    parameter (param group, index, shape) and leaves every parameter and momentum buffer as it
    was. Manifold parameters get their new values and momentum buffers computed out of place,
    checked for inf and NaN, and only then copied in. Plain tensors are first bounded by the
    largest absolute entries of the parameter, gradient and buffer. When the bounds show that
    ``torch.optim.SGD``'s in-place update cannot overflow, they are updated in place, after the
    manifold checks. Otherwise they take the out-of-place route with the finiteness check.
    Parameters and buffers are updated in place, so their Python objects and storage
    (``data_ptr()``) never change, which ``DistributedDataParallel`` relies on. ``p.grad`` is
    never written.

    NOTE: The out-of-place route keeps the new values of the manifold parameters (and of plain
    ones when their bounds fail) and buffers at once, so its peak memory is up to one extra
    copy of them above ``torch.optim.SGD``'s. The bound test and the finiteness check each cost
    one host synchronization per device, and each retraction of a manifold parameter adds
    about two: one for its finiteness check and one for the polar factor's conditioning
    test (more on ill-conditioned input). So the step cannot be captured in a CUDA graph, and
    it runs eagerly under ``torch.compile``.

    Args:
        params: Iterable of parameters or of dicts defining param groups.
        lr: Learning rate $\gamma$.
        momentum: Momentum factor $\mu$.
        dampening: Dampening $\tau$ for momentum.
        weight_decay: L2 penalty $\lambda$, see above for manifold parameters.
        nesterov: Enables Nesterov momentum. Requires ``momentum > 0`` and ``dampening == 0``.
        maximize: Maximize the objective instead of minimizing it, as in ``torch.optim.SGD``.

    Raises:
        ValueError: If a hyperparameter is out of range.

    Example:
        >>> import geoopt, torch
        >>> from grassmann_nn.optim import RiemannianSGD
        >>> manifold = geoopt.Stiefel(canonical=False)
        >>> w = geoopt.ManifoldParameter(manifold.random(256, 8), manifold=manifold)
        >>> optimizer = RiemannianSGD([w], lr=0.1, momentum=0.9)
        >>> (w.sum() ** 2).backward()
        >>> optimizer.step()
    """

    def __init__(
        self,
        params: ParamsT,
        lr: float | Tensor,
        momentum: float = 0,
        dampening: float = 0,
        weight_decay: float = 0,
        nesterov: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        _check_hyperparameters(lr, momentum, dampening, weight_decay, nesterov)
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "dampening": dampening,
            "weight_decay": weight_decay,
            "nesterov": nesterov,
            "maximize": maximize,
        }
        super().__init__(params, defaults)

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        for group in self.param_groups:
            group.setdefault("nesterov", False)
            group.setdefault("maximize", False)

    def _collect_group(
        self, group: dict[str, Any]
    ) -> tuple[list[Tensor], list[Tensor], list[Tensor | None], list[int]]:
        """Return the parameters of a group that have a gradient, with their state."""
        params: list[Tensor] = []
        grads: list[Tensor] = []
        momentum_buffers: list[Tensor | None] = []
        indices: list[int] = []
        for index, param in enumerate(group["params"]):
            if param.grad is None:
                continue

            params.append(param)
            grads.append(param.grad)
            # self.state is a defaultdict, so .get avoids creating empty entries for new params.
            momentum_buffers.append(self.state.get(param, {}).get("momentum_buffer"))
            indices.append(index)

        return params, grads, momentum_buffers, indices

    def _compute_updates(self, *, manifold_only: bool = False) -> list[ParameterUpdate]:
        """Compute the updates of all param groups, or of their manifold tensors, unapplied."""
        collected = [self._collect_group(group) for group in self.param_groups]

        updates: list[ParameterUpdate] = []
        for group_index, (group, (params, grads, buffers, indices)) in enumerate(
            zip(self.param_groups, collected, strict=True)
        ):
            if manifold_only:
                params, grads, buffers, indices = _manifold_subset(params, grads, buffers, indices)
            updates += compute_sgd_updates(
                params,
                grads,
                buffers,
                lr=group["lr"],
                momentum=group["momentum"],
                dampening=group["dampening"],
                weight_decay=group["weight_decay"],
                nesterov=group["nesterov"],
                maximize=group["maximize"],
                group_index=group_index,
                param_indices=indices,
            )

        return updates

    def _autocast_disabled(self) -> contextlib.ExitStack:
        """Return an entered context that turns autocast off for the parameters' device types."""
        stack = contextlib.ExitStack()
        device_types = {p.device.type for group in self.param_groups for p in group["params"]}
        for device_type in sorted(device_types):
            stack.enter_context(autocast_disabled(device_type))
        return stack

    @_run_eagerly
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """Perform a single optimization step, on all param groups or on none.

        The step runs eagerly under `torch.compile`, and with autocast off under
        `torch.autocast`, so it computes the same values inside both as outside.

        Args:
            closure: A closure that reevaluates the model and returns the loss.

        Returns:
            The loss returned by ``closure``, or ``None`` without one.

        Raises:
            TypeError: If a gradient is sparse.
            FloatingPointError: If a gradient, new parameter value or new momentum buffer contains
                inf or NaN, or a retraction raises it. No parameter or momentum buffer has been
                changed when it is raised.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()

        with torch.no_grad(), self._autocast_disabled():
            euclidean = self._euclidean_parameters()
            in_place = euclidean_steps_stay_finite(*euclidean)
            updates = self._compute_updates(manifold_only=in_place)
            check_finite_updates(updates)
            new_buffers = apply_sgd_updates(updates)
            if in_place:
                self._step_euclidean_in_place(*euclidean)

        for update, buffer in zip(updates, new_buffers, strict=True):
            if buffer is not None:
                self.state[update.param]["momentum_buffer"] = buffer

        return loss

    def _euclidean_parameters(
        self,
    ) -> tuple[list[Tensor], list[Tensor], list[Tensor | None], list[dict[str, Any]]]:
        """Return the plain tensor parameters with a dense gradient, their state and groups."""
        params: list[Tensor] = []
        grads: list[Tensor] = []
        buffers: list[Tensor | None] = []
        groups: list[dict[str, Any]] = []
        for group in self.param_groups:
            for param, grad, buffer, _ in zip(*self._collect_group(group), strict=True):
                if isinstance(param, geoopt.ManifoldTensor):
                    continue
                params.append(param)
                grads.append(grad)
                buffers.append(buffer if group["momentum"] != 0 else None)
                groups.append(group)
        return params, grads, buffers, groups

    def _step_euclidean_in_place(
        self,
        params: list[Tensor],
        grads: list[Tensor],
        buffers: list[Tensor | None],
        groups: list[dict[str, Any]],
    ) -> None:
        """Update plain tensors in place, as ``torch.optim.SGD`` does, after the finiteness test."""
        for param, grad, buffer, group in zip(params, grads, buffers, groups, strict=True):
            new_buffer = sgd_step_in_place(
                param,
                grad,
                buffer,
                lr=float(group["lr"]),
                momentum=group["momentum"],
                dampening=group["dampening"],
                weight_decay=group["weight_decay"],
                nesterov=group["nesterov"],
                maximize=group["maximize"],
            )
            if new_buffer is not None:
                self.state[param]["momentum_buffer"] = new_buffer


def _manifold_subset(
    params: list[Tensor], grads: list[Tensor], buffers: list[Tensor | None], indices: list[int]
) -> tuple[list[Tensor], list[Tensor], list[Tensor | None], list[int]]:
    """Return the entries of a collected group whose parameter is a `geoopt.ManifoldTensor`."""
    manifold_entries = [
        entry
        for entry in zip(params, grads, buffers, indices, strict=True)
        if isinstance(entry[0], geoopt.ManifoldTensor)
    ]
    if not manifold_entries:
        return [], [], [], []
    columns = zip(*manifold_entries, strict=True)
    manifold_params, manifold_grads, manifold_buffers, manifold_indices = map(list, columns)
    return manifold_params, manifold_grads, manifold_buffers, manifold_indices


def _check_hyperparameters(
    lr: float | Tensor, momentum: float, dampening: float, weight_decay: float, nesterov: bool
) -> None:
    """Raise ValueError for the hyperparameters that ``torch.optim.SGD`` also rejects."""
    if isinstance(lr, Tensor) and lr.numel() != 1:
        raise ValueError(f"A tensor lr must have one element, got shape {tuple(lr.shape)}.")
    if lr < 0.0:
        raise ValueError(f"Invalid learning rate: {float(lr)}. Use lr >= 0.")
    if momentum < 0.0:
        raise ValueError(f"Invalid momentum value: {momentum}. Use momentum >= 0.")
    if weight_decay < 0.0:
        raise ValueError(f"Invalid weight_decay value: {weight_decay}. Use weight_decay >= 0.")
    if nesterov and (momentum <= 0 or dampening != 0):
        raise ValueError(
            "Nesterov momentum requires momentum > 0 and dampening == 0, got "
            f"momentum={momentum} and dampening={dampening}."
        )
