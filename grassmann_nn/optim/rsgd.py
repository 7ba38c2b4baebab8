"""RiemannianSGD: ``torch.optim.SGD`` semantics for plain and manifold parameters."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.optim.optimizer import Optimizer, ParamsT

from grassmann_nn._linalg import autocast_disabled
from grassmann_nn.optim._functional import (
    ParameterUpdate,
    apply_sgd_updates,
    check_finite_updates,
    compute_sgd_updates,
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

    Every step is all or nothing. All new parameter values and momentum buffers are computed
    first, then checked for inf and NaN, and only then copied in place. A failed check raises
    `FloatingPointError` naming the parameter (param group, index, shape) and leaves every
    parameter and momentum buffer as it was. Parameters and buffers are updated with ``copy_``,
    so their Python objects and storage (``data_ptr()``) never change, which
    ``DistributedDataParallel`` relies on. ``p.grad`` is never written.

    NOTE: The all-or-nothing step keeps the new values of all parameters and buffers at once, so
    its peak memory is about one extra copy of the parameters (and buffers) above
    ``torch.optim.SGD``'s. The finiteness check of the step costs one host synchronization per
    device. Each retraction of a manifold parameter adds its own: two for its finiteness
    checks and two more for the polar factor's conditioning branches. So the step cannot be
    captured in a CUDA graph, and it runs eagerly under ``torch.compile``.

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

    def _compute_updates(self) -> list[ParameterUpdate]:
        """Compute the updates of all param groups without applying them."""
        collected = [self._collect_group(group) for group in self.param_groups]

        updates: list[ParameterUpdate] = []
        for group_index, (group, (params, grads, buffers, indices)) in enumerate(
            zip(self.param_groups, collected, strict=True)
        ):
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
            updates = self._compute_updates()
            check_finite_updates(updates)
            new_buffers = apply_sgd_updates(updates)

        for update, buffer in zip(updates, new_buffers, strict=True):
            if buffer is not None:
                self.state[update.param]["momentum_buffer"] = buffer

        return loss


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
