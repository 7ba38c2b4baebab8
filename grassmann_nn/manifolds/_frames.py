"""Base class of the Stiefel and Grassmann manifolds, whose points have orthonormal columns."""

from __future__ import annotations

import geoopt
import torch
from geoopt.utils import size2shape

from grassmann_nn import retractions
from grassmann_nn._linalg import sign_fixed_qr, tolerance, transpose

__all__ = ["OrthonormalFrames"]


class OrthonormalFrames(geoopt.Manifold):
    r"""Base class for manifolds whose points are $n \times p$ matrices with $X^\top X = I_p$.

    It carries what the Stiefel and Grassmann manifolds share: the Euclidean inner product
    $\langle U, V \rangle = \operatorname{tr}(U^\top V)$, the retractions of
    `grassmann_nn.retractions` selected by name, the polar projection onto the manifold,
    transport by projection, Haar sampling and the membership check. Subclasses define the
    tangent projection, the exponential map and the allowed shapes.

    Args:
        retraction: Name of the retraction used by ``retr`` (and so by every geoopt optimizer):
            ``"polar"`` (alias ``"svd"``), ``"qr"``, ``"cayley"`` or ``"exp"``.

    Raises:
        ValueError: ``retraction`` is not one of the names above.
    """

    ndim = 2
    reversible = False

    def __init__(self, retraction: str = "polar") -> None:
        super().__init__()
        self._retract = self._lookup_retraction(retraction)
        self.retraction = retraction

    def _lookup_retraction(self, name: str) -> retractions.Retraction:
        return retractions.get_retraction(name)

    def extra_repr(self) -> str:
        return f"retraction={self.retraction!r}"

    # Shapes.

    def _shape_rule(self) -> str:
        return "0 < p <= n"

    def _shape_ok(self, n: int, p: int) -> bool:
        return 0 < p <= n

    def _check_shape(self, shape: tuple[int, ...], name: str) -> tuple[bool, str | None]:
        if len(shape) < 2:
            return False, (
                f"{name} on {self.name} needs at least 2 dimensions (..., n, p), got shape "
                f"{tuple(shape)}."
            )
        n, p = shape[-2:]
        if not self._shape_ok(n, p):
            return False, (
                f"{name} on {self.name} must have shape (..., n, p) with {self._shape_rule()}, "
                f"got shape {tuple(shape)} (n = {n}, p = {p})."
            )
        return True, None

    def _require_shape(self, tensor: torch.Tensor, name: str = "x") -> None:
        ok, reason = self._check_shape(tuple(tensor.shape), name)
        if not ok:
            raise ValueError(reason)

    def _require_same_shape(self, x: torch.Tensor, u: torch.Tensor) -> None:
        if x.shape != u.shape:
            raise ValueError(
                f"the tangent vector must have the shape of the point: expected "
                f"{tuple(x.shape)}, got {tuple(u.shape)}."
            )

    # Membership.

    def _orthonormality_error(self, x: torch.Tensor) -> float:
        x = x.detach()
        gram = transpose(x) @ x
        eye = torch.eye(x.shape[-1], dtype=gram.dtype, device=gram.device)
        return float((gram - eye).abs().max())

    def _default_atol(self, x: torch.Tensor) -> float:
        return tolerance(x.dtype, x.shape[-2])

    def check_point_on_manifold(
        self,
        x: torch.Tensor,
        *,
        explain: bool = False,
        atol: float | None = None,
        rtol: float | None = None,
    ) -> bool | tuple[bool, str | None]:
        """Check that ``x`` has orthonormal columns: max |X^T X - I| <= atol.

        Args:
            x: Candidate point, shape ``(..., n, p)``.
            explain: Also return the reason of a failure.
            atol: Absolute tolerance; ``None`` derives it from the dtype and ``n``
                (`grassmann_nn.testing.tolerance`).
            rtol: Ignored (the target I has a fixed scale); kept for geoopt's signature.

        Returns:
            ``ok``, or ``(ok, reason)`` when ``explain`` is true.
        """
        if atol is None and len(x.shape) >= 2:
            atol = self._default_atol(x)
        return super().check_point_on_manifold(x, explain=explain, atol=atol, rtol=rtol)

    def check_vector_on_tangent(
        self,
        x: torch.Tensor,
        u: torch.Tensor,
        *,
        ok_point: bool = False,
        explain: bool = False,
        atol: float | None = None,
        rtol: float | None = None,
    ) -> bool | tuple[bool, str | None]:
        """Check that ``u`` is a tangent vector at ``x``; ``atol=None`` derives the tolerance."""
        if atol is None and len(x.shape) >= 2:
            atol = self._default_atol(x) * max(1.0, float(u.detach().abs().max()))
        return super().check_vector_on_tangent(
            x, u, ok_point=ok_point, explain=explain, atol=atol, rtol=rtol
        )

    def _check_point_on_manifold(
        self, x: torch.Tensor, *, atol: float, rtol: float | None = None
    ) -> tuple[bool, str | None]:
        error = self._orthonormality_error(x)
        if error <= atol:
            return True, None
        return False, f"max |X^T X - I| = {error:.3e} exceeds atol {atol:.3e}"

    # Metric, projection onto the manifold, retraction and transport.

    def inner(
        self, x: torch.Tensor, u: torch.Tensor, v: torch.Tensor | None = None, *, keepdim=False
    ) -> torch.Tensor:
        r"""Euclidean inner product $\operatorname{tr}(U^\top V)$ of tangent vectors at ``x``."""
        if v is None:
            v = u
        return (u * v).sum(dim=(-2, -1), keepdim=keepdim)

    def egrad2rgrad(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Riemannian gradient: with the Euclidean metric, the tangent projection of ``u``."""
        return self.proju(x, u)

    def projx(self, x: torch.Tensor) -> torch.Tensor:
        """Nearest point of the manifold in Frobenius norm: the polar factor of ``x``."""
        self._require_shape(x)
        return retractions.polar_factor(x)

    def retr(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Retract the tangent vector ``u`` at ``x`` with the retraction chosen at construction."""
        self._require_shape(x)
        return self._retract(x, u)

    def transp(self, x: torch.Tensor, y: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Transport ``v`` from ``x`` to ``y`` by projecting it onto the tangent space at ``y``."""
        return self.proju(y, v)

    # Sampling.

    def random(
        self,
        *size: int | tuple[int, ...],
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Sample from the Haar (uniform) distribution: the sign-fixed Q factor of a Gaussian.

        Args:
            size: Shape ``(..., n, p)``, as integers or one tuple.
            dtype: Floating-point dtype (default: torch's default dtype).
            device: Device of the result.
            generator: Optional random number generator.
        """
        shape = size2shape(*size)
        self._require_shape(torch.empty(shape, device="meta"), "the sample")

        dtype = dtype or torch.get_default_dtype()
        gaussian = torch.randn(shape, dtype=torch.float64, device=device, generator=generator)
        q, _ = sign_fixed_qr(gaussian)
        return geoopt.ManifoldTensor(q.to(dtype), manifold=self)

    def origin(
        self,
        *size: int | tuple[int, ...],
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
        seed: int | None = 42,
    ) -> torch.Tensor:
        """Return the first ``p`` columns of the ``n x n`` identity, broadcast to ``size``."""
        shape = size2shape(*size)
        self._require_shape(torch.empty(shape, device="meta"), "the origin")

        eye = torch.eye(shape[-2], shape[-1], dtype=dtype, device=device)
        return geoopt.ManifoldTensor(eye.expand(shape).clone(), manifold=self)
