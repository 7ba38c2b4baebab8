"""Numerical kernels shared by the retractions and the manifolds.

Everything here works on stacks of matrices with any number of leading batch dimensions.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable

import torch

LOW_PRECISION = (torch.float16, torch.bfloat16)


def working_dtype(dtype: torch.dtype) -> torch.dtype:
    """Return the dtype decompositions run in: float32 for float16/bfloat16, else ``dtype``."""
    return torch.float32 if dtype in LOW_PRECISION else dtype


def check_floating(name: str, tensor: torch.Tensor) -> None:
    """Raise TypeError unless ``tensor`` has a real floating-point dtype."""
    if not tensor.dtype.is_floating_point:
        raise TypeError(
            f"{name} must be a real floating-point tensor (float16, bfloat16, float32 or "
            f"float64), got dtype {tensor.dtype}. Convert it with .float() or .double()."
        )


def autocast_disabled(device_type: str) -> contextlib.AbstractContextManager[None]:
    """Return a context manager that turns autocast off for ``device_type`` while it is on.

    Note:
        Under ``torch.autocast`` a matrix product of float32 tensors runs in float16 or
        bfloat16. A polar retraction of a float32 point then came out about 8e-3 from
        orthonormal under bfloat16 autocast, instead of 6e-7.
    """
    if torch.amp.is_autocast_available(device_type) and torch.is_autocast_enabled(device_type):
        return torch.autocast(device_type, enabled=False)
    return contextlib.nullcontext()


def in_working_precision(fn: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    """Run ``fn`` on float32 copies of float16/bfloat16 arguments and cast the result back.

    Autocast is off inside ``fn``, so its matrix products also run in float32 or wider.

    Note:
        LAPACK and cuSOLVER have no half-precision kernels, and a 16-bit Gram matrix loses most
        of its digits, so the decompositions always run in float32 or wider.
    """

    @functools.wraps(fn)
    def wrapper(*tensors: torch.Tensor) -> torch.Tensor:
        for index, tensor in enumerate(tensors):
            check_floating(f"argument {index} of {fn.__name__}", tensor)

        dtype = tensors[0].dtype
        work = working_dtype(dtype)
        with autocast_disabled(tensors[0].device.type):
            result = fn(*(t.to(work) for t in tensors))
        return result.to(dtype)

    return wrapper


def transpose(x: torch.Tensor) -> torch.Tensor:
    """Transpose the last two dimensions."""
    return x.transpose(-1, -2)


def sym(x: torch.Tensor) -> torch.Tensor:
    """Return the symmetric part (X + X^T) / 2 of a stack of square matrices."""
    return (x + transpose(x)) / 2


def max_abs_scale(a: torch.Tensor) -> torch.Tensor:
    """Return max |a_ij| per matrix (shape ``(..., 1, 1)``, detached, > 0 even for a zero matrix).

    Dividing by it before a scale-invariant decomposition keeps the Gram matrix far from
    overflow and underflow. The value is detached because the result does not depend on it.
    """
    scale = a.detach().abs().amax(dim=(-2, -1), keepdim=True)
    # A zero matrix stays zero when divided by the smallest normal number, as when divided by 1.
    return scale.clamp_min(torch.finfo(a.dtype).tiny)


class _SymInvSqrt(torch.autograd.Function):
    """G^{-1/2} of symmetric positive definite matrices, with a gap-free backward pass.

    Note:
        The backward pass uses the Daleckii-Krein formula with the divided differences of
        f(lambda) = lambda^{-1/2} written in closed form,
        (f(l_i) - f(l_j)) / (l_i - l_j) = -1 / (s_i s_j (s_i + s_j)) with s = sqrt(l).
        No eigenvalue gap appears in a denominator, so the gradient is finite when
        eigenvalues coincide, for example at G = I, where the generic eigh backward
        divides by zero.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(gram: torch.Tensor) -> tuple[torch.Tensor, ...]:
        eigenvalues, eigenvectors = torch.linalg.eigh(gram)
        eps = torch.finfo(gram.dtype).eps
        tiny = torch.finfo(gram.dtype).tiny
        floor = (eigenvalues[..., -1:] * eps).clamp_min(tiny)
        roots = torch.maximum(eigenvalues, floor).sqrt()

        inv_sqrt = (eigenvectors / roots.unsqueeze(-2)) @ transpose(eigenvectors)
        return inv_sqrt, eigenvalues, eigenvectors, roots

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        _, eigenvalues, eigenvectors, roots = output
        ctx.save_for_backward(eigenvectors, roots)
        ctx.mark_non_differentiable(eigenvalues, eigenvectors, roots)

    @staticmethod
    def backward(ctx, grad_inv_sqrt: torch.Tensor, *unused_grads: torch.Tensor):
        # Autograd runs a backward pass with grad mode on only for create_graph=True. A second
        # derivative would need the derivative of the eigenvectors, which has the eigenvalue
        # gaps in its denominators that this function exists to avoid, so refuse loudly.
        if torch.is_grad_enabled():
            raise RuntimeError(
                "second derivatives (create_graph=True) through the polar factor and the "
                "exponential maps are not implemented. Use the 'qr' or 'cayley' retraction "
                "for Hessian-vector products, or differentiate once."
            )

        eigenvectors, roots = ctx.saved_tensors

        s_i = roots.unsqueeze(-1)
        s_j = roots.unsqueeze(-2)
        divided = -1.0 / (s_i * s_j * (s_i + s_j))

        inner = transpose(eigenvectors) @ sym(grad_inv_sqrt) @ eigenvectors
        grad_gram = eigenvectors @ (divided * inner) @ transpose(eigenvectors)
        return grad_gram


def sym_inv_sqrt(gram: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (G^{-1/2}, eigenvalues of G) for a stack of symmetric positive definite G.

    Eigenvalues below ``eps * max eigenvalue`` are clamped to that floor, so the result stays
    finite for singular input; callers detect that case from the returned eigenvalues.
    Without a gradient to record, the forward pass runs directly, which skips the bookkeeping
    of ``torch.autograd.Function.apply``.
    """
    if torch.is_grad_enabled() and gram.requires_grad:
        inv_sqrt, eigenvalues, _, _ = _SymInvSqrt.apply(gram)
    else:
        inv_sqrt, eigenvalues, _, _ = _SymInvSqrt.forward(gram)
    return inv_sqrt, eigenvalues


def diagonal_signs(r: torch.Tensor) -> torch.Tensor:
    """Return the signs of the diagonal of ``r``: -1, or +1 for positive and zero entries.

    A NaN or infinite diagonal entry gives NaN, so that a Q factor scaled by these signs shows
    the non-finite input that made R non-finite. The last column of a square matrix, for
    example, enters R but not Q.
    """
    diagonal = torch.diagonal(r.detach(), dim1=-2, dim2=-1)
    signs = diagonal.sign().masked_fill_(diagonal == 0, 1.0)
    # diagonal - diagonal is 0 for finite entries and NaN for inf and NaN.
    return signs + (diagonal - diagonal)


def sign_fixed_qr(a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Reduced QR with the signs chosen so that diag(R) >= 0 (a zero diagonal counts as +).

    Note:
        Householder QR returns R with diagonal entries of either sign. Flipping the matching
        columns of Q makes the factorization unique for full-rank input, so that
        qf(X) = X for orthonormal X, and a Gaussian matrix gives a Haar-distributed Q.
    """
    q, r = torch.linalg.qr(a)
    signs = diagonal_signs(r)
    return q * signs.unsqueeze(-2), r * signs.unsqueeze(-1)


def tolerance(dtype: torch.dtype, size: int, factor: float = 10.0) -> float:
    r"""Return an absolute tolerance for identities like $X^\top X = I$ of an ``size``-long sum.

    For float32 and float64 the tolerance is ``factor * size * eps(dtype)``: each entry of
    $X^\top X$ sums ``size`` products, and each product carries a rounding error of about eps.
    For float16 and bfloat16, whose arithmetic here runs in float32, what dominates is the
    rounding of the stored entries, which moves each entry of $X^\top X$ by about
    ``eps(dtype)`` for unit columns whatever ``size`` is (Cauchy-Schwarz). The tolerance is then
    ``factor * eps(dtype) + factor * size * eps(float32)``.

    Args:
        dtype: The floating-point dtype of the stored tensors.
        size: Length of the sums behind the checked entries, usually ``n`` for an n x p point.
        factor: Safety factor.

    Returns:
        The tolerance as a Python float.
    """
    if not dtype.is_floating_point:
        raise TypeError(f"tolerance needs a floating-point dtype, got {dtype}.")
    if size < 1:
        raise ValueError(f"size must be a positive integer, got {size}.")

    if dtype in LOW_PRECISION:
        storage = factor * torch.finfo(dtype).eps
        return storage + factor * size * torch.finfo(torch.float32).eps
    return factor * size * torch.finfo(dtype).eps


def matrix_exp(a: torch.Tensor) -> torch.Tensor:
    """``torch.linalg.matrix_exp`` that keeps full accuracy for a lone matrix.

    Note:
        Measured with torch 2.14 on the CPU: for one float64 4 x 4 matrix of norm 0.01 to
        0.03, ``torch.linalg.matrix_exp`` is off by up to 6e-12 from ``scipy.linalg.expm``.
        The same matrix inside a batch of two is exact to 4e-16. A lone float64 matrix is
        therefore computed in a batch with a zero matrix, which doubles the cost of the call.
        A lone float32 matrix was as accurate as a batched one (errors of 1e-7 to 8e-7 against
        scipy for sizes 4 to 64 and norms 0.01 to 3), so it skips the padding.
    """
    square = a.shape[-2:]
    flat = a.reshape(-1, *square)
    if flat.shape[0] != 1 or a.dtype != torch.float64:
        return torch.linalg.matrix_exp(a)

    padded = torch.cat([flat, torch.zeros_like(flat)])
    return torch.linalg.matrix_exp(padded)[:1].reshape(a.shape)
