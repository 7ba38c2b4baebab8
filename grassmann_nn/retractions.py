r"""Retractions onto matrices with orthonormal columns, as plain functions ``(x, u) -> y``.

A retraction $R_X(\Delta)$ maps a tangent vector $\Delta$ at a point $X$ (an $n \times p$ matrix
with $X^\top X = I_p$) back onto the manifold, with $R_X(0) = X$ and
$\frac{d}{dt} R_X(t\Delta)\big|_{t=0} = \Delta$. Every function here:

- accepts any number of leading batch dimensions (``x`` and ``u`` of shape ``(..., n, p)``);
- costs $O(np^2)$ and never forms an $n \times n$ matrix when $2p < n$;
- returns the input dtype, computing in float32 when given float16 or bfloat16;
- has finite gradients at orthonormal points, including $\Delta = 0$;
- raises ``FloatingPointError`` instead of returning NaN or infinity.

NOTE: `torch.vmap` over these functions fails with vmap's ".item()" error, because the
finiteness and conditioning checks read a value on the host. Stack the matrices along a leading
batch dimension instead: one call then handles the whole stack.

The registry `RETRACTIONS` maps the names accepted by ``Grassmann(retraction=...)`` and
``Stiefel(retraction=...)`` to these functions; `get_retraction` validates a name.

References:
    P.-A. Absil, R. Mahony, R. Sepulchre, "Optimization Algorithms on Matrix Manifolds",
    Princeton University Press, 2008 (retractions, Section 4.1).
    A. Edelman, T. A. Arias, S. T. Smith, "The Geometry of Algorithms with Orthogonality
    Constraints", SIAM J. Matrix Anal. Appl. 1998, arXiv:physics/9806030 (geodesics).
    Z. Wen, W. Yin, "A Feasible Method for Optimization with Orthogonality Constraints",
    Math. Program. 2013 (the low-rank Cayley transform).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from grassmann_nn._linalg import (
    diagonal_signs,
    in_working_precision,
    matrix_exp,
    max_abs_scale,
    sym_inv_sqrt,
    transpose,
)

__all__ = [
    "RETRACTIONS",
    "Retraction",
    "cayley",
    "get_retraction",
    "grassmann_exp",
    "polar",
    "polar_factor",
    "qr",
    "stiefel_exp",
]

Retraction = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""Signature of a retraction: ``(x, u) -> y``, all three of shape ``(..., n, p)``."""

# Above this condition number of the Gram matrix, the polar factor takes a second pass.
# One pass leaves an orthonormality error of about eps * cond(G). The second pass starts from
# a matrix with cond(G) close to 1, so it ends at a few eps.
_REFINE_CONDITION = 10.0

# Below lambda_min / lambda_max = _SINGULAR_RATIO * eps, the Gram route has lost too many digits
# (one pass leaves an error above 0.1), so the polar factor falls back to an SVD in float64.
_SINGULAR_RATIO = 10.0


def _check_point_and_step(x: torch.Tensor, u: torch.Tensor) -> None:
    """Raise ValueError unless x and u are equal-shaped stacks of n x p matrices, n >= p."""
    if x.dim() < 2:
        raise ValueError(
            f"x must have at least 2 dimensions (..., n, p), got shape {tuple(x.shape)}."
        )
    if u.shape != x.shape:
        raise ValueError(
            f"the tangent vector u must have the shape of x: expected {tuple(x.shape)}, "
            f"got {tuple(u.shape)}."
        )
    n, p = x.shape[-2:]
    if not 0 < p <= n:
        raise ValueError(
            f"x must be a tall n x p matrix with 0 < p <= n, got n = {n}, p = {p} "
            f"(shape {tuple(x.shape)}). Transpose it if its rows are the orthonormal side."
        )


def _all_finite(*tensors: torch.Tensor) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in tensors)


def _is_finite(tensor: torch.Tensor) -> bool:
    """Return whether ``tensor`` is free of inf and NaN, testing its sum first.

    Inf and NaN always make the sum non-finite, and the sum reads the tensor once without the
    boolean temporary of ``isfinite``. Finite entries whose sum overflows fail the fast test,
    and then the exact ``isfinite`` check decides.
    """
    if math.isfinite(tensor.sum().item()):
        return True
    return _all_finite(tensor)


def _raise_non_finite(name: str, *inputs: torch.Tensor) -> None:
    finite = ", ".join(
        f"{label} finite: {_all_finite(t)}" for label, t in zip("xu", inputs, strict=False)
    )
    raise FloatingPointError(
        f"the {name} retraction got or produced non-finite values for input of shape "
        f"{tuple(inputs[0].shape)} ({finite}). Check the gradient and learning rate for NaN "
        "or overflow, and that x has orthonormal columns."
    )


def _retract_checked(name: str, kernel: Retraction, *inputs: torch.Tensor) -> torch.Tensor:
    """Run ``kernel`` and return its result if finite, else raise FloatingPointError.

    Only the result is checked on success: inf or NaN in the input reaches the result through
    every kernel here, so one check covers both. The inputs are examined only after a failure,
    to name the non-finite one in the message.
    """
    try:
        result = kernel(*inputs)
    except torch.linalg.LinAlgError as error:
        if not _all_finite(*inputs):
            _raise_non_finite(name, *inputs)
        # A decomposition met overflowed intermediate values (a step of norm ~1e30, say).
        raise FloatingPointError(
            f"the {name} retraction failed for input of shape {tuple(inputs[0].shape)}: "
            f"{error} Check the step size: the learning rate times the gradient is too large."
        ) from error

    if not _is_finite(result):
        _raise_non_finite(name, *inputs)
    return result


def _needs_grad(*tensors: torch.Tensor) -> bool:
    """Return whether autograd records operations on any of ``tensors``."""
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def _svd_polar(a: torch.Tensor) -> torch.Tensor:
    """U V^T from a float64 SVD: defined for rank-deficient a, where the Gram route fails."""
    u, _, vh = torch.linalg.svd(a.double(), full_matrices=False)
    return (u @ vh).to(a.dtype)


def _gram_polar(a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Return A (A^T A)^{-1/2} and the eigenvalues of A^T A."""
    inv_sqrt, eigenvalues = sym_inv_sqrt(transpose(a) @ a)
    return a @ inv_sqrt, eigenvalues


def _well_conditioned_polar(a: torch.Tensor) -> torch.Tensor | None:
    """Return A (A^T A)^{-1/2} without rescaling A, or None unless that is safe and accurate.

    Safe means that every eigenvalue of A^T A lies within a factor 10 of ``sqrt(finfo.tiny)``
    and ``sqrt(finfo.max)``, so nothing overflows or underflows, and accurate that no matrix of
    the stack needs a refining pass (lambda_min / lambda_max >= 1 / _REFINE_CONDITION). This
    is the case for a retraction of a point by a moderate step. It skips the max-abs scaling and
    the eigenvalue floor of `sym_inv_sqrt`, but its gradient is not the gap-free one, so it
    serves only calls that record no gradient.
    """
    eigenvalues, eigenvectors = torch.linalg.eigh(transpose(a) @ a)
    smallest = eigenvalues[..., 0]
    largest = eigenvalues[..., -1]

    # Clamping both ends turns an out-of-range stack into a small ratio, with one host sync:
    # a ratio >= 0.1 implies 0.1 * low <= smallest <= largest <= 10 * high.
    info = torch.finfo(a.dtype)
    low, high = math.sqrt(info.tiny), math.sqrt(info.max)
    ratio = smallest.clamp(max=high) / largest.clamp(min=low)
    if not ratio.amin().item() * _REFINE_CONDITION >= 1:
        return None

    inv_sqrt = (eigenvectors / eigenvalues.sqrt().unsqueeze(-2)) @ transpose(eigenvectors)
    return a @ inv_sqrt


def _polar_factor(a: torch.Tensor) -> torch.Tensor:
    """Polar factor in the working dtype; see `polar_factor`."""
    if not _needs_grad(a):
        y = _well_conditioned_polar(a)
        if y is not None:
            return y

    a = a / max_abs_scale(a)
    try:
        y, eigenvalues = _gram_polar(a)
    except torch.linalg.LinAlgError:
        # NOTE: eigh can fail to converge (seen with float32 on nearly singular input). The
        # float64 SVD is slower but converges, and its result is orthonormal all the same.
        return _svd_polar(a)

    smallest = eigenvalues[..., 0]
    largest = eigenvalues[..., -1]

    # One host synchronization in the common case: when the worst ratio lambda_min / lambda_max
    # of the stack is above 1 / _REFINE_CONDITION, no matrix needs a second pass or the SVD.
    # A zero, negative or NaN largest eigenvalue gives a ratio that takes the slow path.
    tiny = torch.finfo(a.dtype).tiny
    worst_ratio = (smallest / largest.clamp_min(tiny)).amin().item()
    if worst_ratio * _REFINE_CONDITION >= 1:
        return y
    return _repair_ill_conditioned(a, y, smallest, largest)


def _repair_ill_conditioned(
    a: torch.Tensor, y: torch.Tensor, smallest: torch.Tensor, largest: torch.Tensor
) -> torch.Tensor:
    """Refine or replace by the SVD route the polar factors ``y`` of ill-conditioned ``a``."""
    eps = torch.finfo(a.dtype).eps
    refine = smallest * _REFINE_CONDITION < largest
    singular = smallest <= largest * (_SINGULAR_RATIO * eps)

    if bool(refine.any()):
        refined, _ = _gram_polar(y)
        y = torch.where(refine[..., None, None], refined, y)
    if bool(singular.any()):
        y = torch.where(singular[..., None, None], _svd_polar(a), y)
    return y


@in_working_precision
def polar_factor(a: torch.Tensor) -> torch.Tensor:
    r"""Return the orthonormal polar factor of ``a``, the nearest matrix with orthonormal columns.

    For $A = U \Sigma V^\top$ (thin SVD) the polar factor is $U V^\top =
    A (A^\top A)^{-1/2}$, the minimizer of $\|Y - A\|_F$ over $Y^\top Y = I$ (Fan and
    Hoffman, 1955).

    Args:
        a: Tensor of shape ``(..., n, p)`` with ``n >= p``.

    Returns:
        Tensor of the shape and dtype of ``a`` with orthonormal columns.

    Note:
        The factor is computed as $A (A^\top A)^{-1/2}$ through an eigendecomposition of the
        $p \times p$ Gram matrix, about 3x faster than an SVD of $A$ at 4096 x 256. The
        input is first divided by its largest entry (the factor is scale-invariant), so
        huge or tiny input neither overflows nor underflows. The backward pass of the
        inverse square root has no eigenvalue gaps in its denominators, so gradients are
        finite at $A^\top A = I$, where an SVD-based ``U @ Vh`` returns NaN.

    Note:
        When $A$ is rank-deficient or nearly so ($\lambda_{\min}(A^\top A) \le 10\,
        \varepsilon\,\lambda_{\max}$), the factor falls back to $U V^\top$ from a float64
        SVD. The result still has orthonormal columns but is not unique, and its gradient is
        not defined.
    """
    if a.dim() < 2 or a.shape[-1] > a.shape[-2]:
        raise ValueError(
            f"polar_factor expects a tall (..., n, p) matrix with n >= p, got shape "
            f"{tuple(a.shape)}."
        )
    return _retract_checked("polar", _polar_factor, a)


@in_working_precision
def _polar(x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    return _polar_factor(x + u)


def polar(x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    r"""Polar (SVD) retraction $R_X(\Delta) = \operatorname{polar}(X + \Delta)$.

    For a tangent vector of the Stiefel or Grassmann manifold,
    $(X + \Delta)^\top (X + \Delta) = I + \Delta^\top \Delta$, so
    $R_X(\Delta) = (X + \Delta)(I + \Delta^\top \Delta)^{-1/2}$: the nearest matrix with
    orthonormal columns to $X + \Delta$. It is a second-order retraction on both manifolds.

    Args:
        x: Points with orthonormal columns, shape ``(..., n, p)``.
        u: Tangent vectors at ``x``, same shape.

    Returns:
        The retracted points, shape and dtype of ``x``.

    Raises:
        ValueError: The shapes of ``x`` and ``u`` differ or are not ``(..., n, p)``, n >= p.
        FloatingPointError: The input contains NaN or infinity.
    """
    _check_point_and_step(x, u)
    return _retract_checked("polar", _polar, x, u)


@in_working_precision
def _qr(x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    # Householder QR is scale-invariant and its column norms are computed without overflow
    # (LAPACK's nrm2), so unlike the Gram-based polar factor it needs no rescaling.
    q, r = torch.linalg.qr(x + u)
    return q * diagonal_signs(r).unsqueeze(-2)


def qr(x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    r"""QR retraction $R_X(\Delta) = \operatorname{qf}(X + \Delta)$, signs fixed so diag(R) > 0.

    Args:
        x: Points with orthonormal columns, shape ``(..., n, p)``.
        u: Tangent vectors at ``x``, same shape.

    Returns:
        The Q factor of $X + \Delta$, shape and dtype of ``x``.

    Raises:
        ValueError: The shapes of ``x`` and ``u`` differ or are not ``(..., n, p)``, n >= p.
        FloatingPointError: The input contains NaN or infinity.

    Note:
        Without the sign fix, Householder QR may flip columns, so $R_X(0)$ would return
        $-X$ in some columns and a zero step would move a parameter. With it, $R_X(0) = X$
        up to rounding. For rank-deficient $X + \Delta$ the Q factor is still orthonormal
        but its gradient is not defined.
    """
    _check_point_and_step(x, u)
    return _retract_checked("qr", _qr, x, u)


def _block(top_left, top_right, bottom_left, bottom_right) -> torch.Tensor:
    top = torch.cat([top_left, top_right], dim=-1)
    bottom = torch.cat([bottom_left, bottom_right], dim=-1)
    return torch.cat([top, bottom], dim=-2)


def _cayley_low_rank(x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    r"""Cayley retraction through the $2p \times 2p$ Woodbury system, for $2p < n$.

    With $A = X^\top \Delta$, $P\Delta = \Delta - X A / 2$, $S = (P\Delta)^\top P\Delta$ and
    $X^\top X = I$, the blocks of $L = [P\Delta, X]$ and $R = [X, -P\Delta]$ are
    $R^\top L = \begin{pmatrix} A/2 & I \\ -S & -A^\top/2 \end{pmatrix}$ and
    $R^\top X = \begin{pmatrix} I \\ -A^\top/2 \end{pmatrix}$. Assembling them from
    $p \times p$ pieces takes three $n \times p \times p$ products instead of the six of the
    $n \times 2p$ products $R^\top L$ and $R^\top X$.
    """
    p = x.shape[-1]
    along = transpose(x) @ u
    projected = u - x @ along / 2
    gram = transpose(projected) @ projected

    eye = torch.eye(p, dtype=x.dtype, device=x.device).expand_as(gram)
    half_along = along / 2
    half_along_t = transpose(half_along)
    # kernel = I - R^T L / 2 and rhs = R^T X, written out block by block.
    kernel = _block(eye - half_along / 2, -eye / 2, gram / 2, eye + half_along_t / 2)
    rhs = torch.cat([eye, -half_along_t], dim=-2)

    coefficients = torch.linalg.solve(kernel, rhs)
    return x + projected @ coefficients[..., :p, :] + x @ coefficients[..., p:, :]


def _cayley_square(x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    r"""Cayley retraction of a square orthogonal $X$ through its Lie-algebra form.

    For $n = p$, $X X^\top = I$, so the skew matrix $W = P\Delta X^\top - X (P\Delta)^\top$
    equals $X \Omega X^\top$ with $\Omega = (A - A^\top)/2$ and $A = X^\top \Delta$, and
    $(I - W/2)^{-1}(I + W/2) X = X (I - \Omega/2)^{-1}(I + \Omega/2)$. This takes two
    $n \times n$ products and one solve instead of five products and one solve.
    """
    along = transpose(x) @ u
    omega = (along - transpose(along)) / 4  # Omega / 2
    eye = torch.eye(x.shape[-1], dtype=x.dtype, device=x.device)
    return x @ torch.linalg.solve(eye - omega, eye + omega)


@in_working_precision
def _cayley(x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    n, p = x.shape[-2:]
    if 2 * p < n:
        return _cayley_low_rank(x, u)
    if n == p:
        return _cayley_square(x, u)

    projected = u - x @ (transpose(x) @ u) / 2
    skew = projected @ transpose(x) - x @ transpose(projected)
    eye = torch.eye(n, dtype=x.dtype, device=x.device)
    return torch.linalg.solve(eye - skew / 2, x + skew @ x / 2)


def cayley(x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    r"""Cayley retraction $R_X(\Delta) = (I - W/2)^{-1} (I + W/2) X$.

    Here $W = P \Delta X^\top - X \Delta^\top P$ with $P = I - X X^\top / 2$ is skew-symmetric,
    so $(I - W/2)^{-1}(I + W/2)$ is orthogonal and the result keeps $X^\top X = I$. For a
    Stiefel tangent vector the first-order term is $X + \Delta$; for a horizontal Grassmann
    vector $W = \Delta X^\top - X \Delta^\top$.

    When $2p < n$, $W = L R^\top$ with $L = [P\Delta, X]$ and $R = [X, -P\Delta]$, and the
    Sherman-Morrison-Woodbury identity gives
    $R_X(\Delta) = X + L (I_{2p} - R^\top L / 2)^{-1} R^\top X$: one $2p \times 2p$ solve,
    $O(np^2)$. Otherwise ($n \le 2p$) the $n \times n$ solve is cheaper and still $O(np^2)$.

    Args:
        x: Points with orthonormal columns, shape ``(..., n, p)``.
        u: Tangent vectors at ``x``, same shape.

    Returns:
        The retracted points, shape and dtype of ``x``.

    Raises:
        ValueError: The shapes of ``x`` and ``u`` differ or are not ``(..., n, p)``, n >= p.
        FloatingPointError: The input contains NaN or infinity, or the step overflowed.

    Note:
        The Cayley map only rotates ``x``, so rounding errors in $X^\top X = I$ add up over
        many steps instead of being removed. Re-project now and then (``manifold.projx``)
        in long runs.

    Reference:
        Z. Wen, W. Yin, "A Feasible Method for Optimization with Orthogonality Constraints",
        Math. Program. 142, 2013.
    """
    _check_point_and_step(x, u)
    return _retract_checked("cayley", _cayley, x, u)


def _step_scale(u: torch.Tensor) -> torch.Tensor:
    """Return max(1, ||u||_F) per matrix, detached, shape ``(..., 1, 1)``.

    The exponentials below are computed for u / r with the block matrix scaled to match. The
    result does not depend on r, so r carries no gradient, and large steps keep the block
    matrix well balanced for the scaling-and-squaring algorithm of ``matrix_exp``.
    """
    # The norm is taken in float64 so that a float32 step of norm above ~1e19 does not overflow.
    norm = torch.linalg.matrix_norm(u.detach().double()).to(u.dtype)
    return norm.unsqueeze(-1).unsqueeze(-1).clamp_min(1.0)


def _orthonormalize_near(y: torch.Tensor) -> torch.Tensor:
    r"""Return the polar factor of ``y``, by one Newton-Schulz step when ``y`` is near it.

    With $E = Y^\top Y - I$, the step $Y (I - E/2)$ agrees with the polar factor
    $Y (I + E)^{-1/2}$ up to $O(E^2)$ and leaves an orthonormality error of about
    $\tfrac{3}{4} \max|E|^2$. For $\max|E| \le \sqrt{\varepsilon}$ both are at rounding level,
    and the step costs two products instead of an eigendecomposition. Otherwise, as after a
    non-horizontal step of `grassmann_exp`, the full `_polar_factor` runs.
    """
    error = transpose(y) @ y
    error.diagonal(dim1=-2, dim2=-1).sub_(1)
    if error.abs().amax().item() <= math.sqrt(torch.finfo(y.dtype).eps):
        return y - y @ error / 2
    return _polar_factor(y)


def _grassmann_exp_generator(x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Grassmann exponential through the 2p x 2p matrix exponential, differentiable everywhere."""
    p = x.shape[-1]
    scale = _step_scale(u)
    direction = u / scale
    gram = transpose(direction) @ direction

    eye = torch.eye(p, dtype=x.dtype, device=x.device).expand_as(gram)
    zero = torch.zeros_like(gram)
    generator = _block(zero, -gram, eye, zero) * scale
    columns = matrix_exp(generator)[..., :p]

    y = x @ columns[..., :p, :] + direction @ columns[..., p:, :]
    return _polar_factor(y)


def _grassmann_exp_eigh(x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    r"""Grassmann exponential through an eigendecomposition of $G = \Delta^\top \Delta$.

    With $G = V \operatorname{diag}(\theta^2) V^\top$, $\cos(\sqrt{G}) = V \cos(\theta) V^\top$
    and $\operatorname{sinc}(\sqrt{G}) = V \operatorname{sinc}(\theta) V^\top$. A p x p ``eigh``
    costs less than the 2p x 2p matrix exponential, but its gradient is not finite at repeated
    angles, so this route serves only calls that record no gradient.
    """
    scale = _step_scale(u)
    direction = u / scale
    eigenvalues, eigenvectors = torch.linalg.eigh(transpose(direction) @ direction)

    # The angles theta are the singular values of u = scale * direction.
    angles = eigenvalues.clamp_min(0).sqrt() * scale.squeeze(-1)
    cos = torch.cos(angles).unsqueeze(-2)
    # scale * sin(theta) / theta, because the sinc multiplies u and the product takes direction.
    sinc = (torch.sinc(angles / math.pi) * scale.squeeze(-1)).unsqueeze(-2)

    rotated = (x @ eigenvectors) * cos + (direction @ eigenvectors) * sinc
    return _orthonormalize_near(rotated @ transpose(eigenvectors))


@in_working_precision
def _grassmann_exp(x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    if _needs_grad(x, u):
        return _grassmann_exp_generator(x, u)
    return _grassmann_exp_eigh(x, u)


def grassmann_exp(x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    r"""Exponential map of the Grassmann manifold: the exact geodesic from ``x`` along ``u``.

    For a horizontal $\Delta$ ($X^\top \Delta = 0$) with thin SVD $\Delta = U \Sigma V^\top$,
    $\operatorname{Exp}_X(\Delta) = X V \cos(\Sigma) V^\top + U \sin(\Sigma) V^\top
    = X \cos(\sqrt{G}) + \Delta \operatorname{sinc}(\sqrt{G})$ with $G = \Delta^\top \Delta$
    (Edelman, Arias and Smith 1998, Theorem 2.3). The result is then re-orthonormalized with
    the polar factor, which keeps its column span.

    Args:
        x: Points with orthonormal columns, shape ``(..., n, p)``.
        u: Horizontal tangent vectors at ``x``, same shape.

    Returns:
        $\operatorname{Exp}_X(\Delta)$, shape and dtype of ``x``.

    Raises:
        ValueError: The shapes of ``x`` and ``u`` differ or are not ``(..., n, p)``, n >= p.
        FloatingPointError: The input contains NaN or infinity.

    Note:
        $\cos(\sqrt{G})$ and $\operatorname{sinc}(\sqrt{G})$ are read off
        $\exp\begin{pmatrix} 0 & -G \\ I & 0 \end{pmatrix}$ (a $2p \times 2p$ matrix
        exponential) instead of an SVD of $\Delta$. Both are analytic in $G$, so the gradient
        is finite at $\Delta = 0$ and at repeated singular values, where SVD gradients are
        NaN. The map assumes $X^\top \Delta = 0$; a non-horizontal step gives a point of
        the manifold that is not on the geodesic.
    """
    _check_point_and_step(x, u)
    return _retract_checked("exp", _grassmann_exp, x, u)


def _orthogonal_exp(x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    r"""Exponential map of the orthogonal group ($n = p$): $X \exp(X^\top \Delta)$.

    A square $X$ has $X X^\top = I$, so every tangent vector is $\Delta = X A$ with $A$
    skew-symmetric, and the $2p \times 2p$ formula of `stiefel_exp` reduces to one
    $n \times n$ matrix exponential. The skew part of $X^\top \Delta$ is taken, which is all
    of it for a tangent vector.
    """
    along = transpose(x) @ u
    y = x @ matrix_exp((along - transpose(along)) / 2)
    if _needs_grad(x, u):
        return _polar_factor(y)
    return _orthonormalize_near(y)


@in_working_precision
def _stiefel_exp(x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    n, p = x.shape[-2:]
    if n == p:
        return _orthogonal_exp(x, u)
    scale = _step_scale(u)
    direction = u / scale
    along = transpose(x) @ direction
    gram = transpose(direction) @ direction

    eye = torch.eye(p, dtype=x.dtype, device=x.device).expand_as(gram)
    generator = _block(along, -gram, eye, along) * scale
    columns = matrix_exp(generator)[..., :p]

    y = torch.cat([x, direction], dim=-1) @ columns
    y = y @ matrix_exp(-along * scale)
    if _needs_grad(x, u):
        return _polar_factor(y)
    return _orthonormalize_near(y)


def stiefel_exp(x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    r"""Exponential map of the Stiefel manifold with the Euclidean metric.

    With $A = X^\top \Delta$ (skew-symmetric for a tangent vector) and $S = \Delta^\top \Delta$,
    $\operatorname{Exp}_X(\Delta) = [X, \Delta]\,
    \exp\begin{pmatrix} A & -S \\ I & A \end{pmatrix} \begin{pmatrix} I \\ 0 \end{pmatrix}
    \exp(-A)$ (Edelman, Arias and Smith 1998, equation 2.45), followed by the polar factor to
    remove rounding errors.

    Args:
        x: Points with orthonormal columns, shape ``(..., n, p)``.
        u: Tangent vectors at ``x`` ($X^\top \Delta$ skew-symmetric), same shape.

    Returns:
        $\operatorname{Exp}_X(\Delta)$, shape and dtype of ``x``.

    Raises:
        ValueError: The shapes of ``x`` and ``u`` differ or are not ``(..., n, p)``, n >= p.
        FloatingPointError: The input contains NaN or infinity.
    """
    _check_point_and_step(x, u)
    return _retract_checked("exp", _stiefel_exp, x, u)


RETRACTIONS: dict[str, Retraction] = {
    "polar": polar,
    "svd": polar,
    "qr": qr,
    "cayley": cayley,
    "exp": grassmann_exp,
}
"""Retraction names and their functions. ``"svd"`` is an alias of ``"polar"``; ``"exp"`` is
the Grassmann exponential (``Stiefel(retraction="exp")`` uses `stiefel_exp` instead)."""


def get_retraction(name: str) -> Retraction:
    """Return the retraction registered under ``name``.

    Raises:
        TypeError: ``name`` is not a string.
        ValueError: ``name`` is not a registered retraction; the message lists the valid names.
    """
    if not isinstance(name, str):
        raise TypeError(
            f"a retraction is chosen by name, a str, got {type(name).__name__} {name!r}; "
            f"expected one of {', '.join(repr(key) for key in RETRACTIONS)}."
        )
    if name not in RETRACTIONS:
        valid = ", ".join(repr(key) for key in RETRACTIONS)
        raise ValueError(f"unknown retraction {name!r}; expected one of {valid}.")
    return RETRACTIONS[name]
