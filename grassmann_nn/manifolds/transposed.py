"""The transposes of a matrix manifold's points: wide matrices with orthonormal rows."""

from __future__ import annotations

from typing import Any

import geoopt
from geoopt.utils import size2shape
from torch import Tensor

__all__ = ["Transposed"]


def _t(x: Tensor) -> Tensor:
    """Transpose the last two dimensions."""
    return x.transpose(-1, -2)


class Transposed(geoopt.Manifold):
    r"""The manifold of transposes $\{X^\top : X \in M\}$ of a matrix manifold $M$.

    Every operation transposes its matrix arguments, calls ``base`` and transposes the result
    back, so the points of ``Transposed(Stiefel())`` are wide matrices with orthonormal rows.
    Metric, retraction and transport are those of ``base``, so geoopt's optimizers and
    `grassmann_nn.optim.RiemannianSGD` treat a wide parameter exactly as they would treat
    its tall transpose.

    Args:
        base: A geoopt manifold of matrices (``base.ndim == 2``).

    Raises:
        ValueError: If ``base`` is not a manifold of matrices.
    """

    ndim = 2
    name = "Transposed"

    def __init__(self, base: geoopt.Manifold) -> None:
        if base.ndim != 2:
            raise ValueError(
                f"Transposed needs a manifold of matrices (ndim 2), got {base!r} with ndim "
                f"{base.ndim}."
            )
        super().__init__()
        self.base = base
        self.reversible = base.reversible

    @property
    def retraction(self) -> str | None:
        """Name of the base manifold's retraction, where it has one."""
        return getattr(self.base, "retraction", None)

    def extra_repr(self) -> str:
        return repr(self.base).removesuffix(" manifold")

    def _check_shape(self, shape: tuple[int, ...], name: str) -> tuple[bool, str | None]:
        if len(shape) < 2:
            return self.base._check_shape(shape, name)
        transposed = (*shape[:-2], shape[-1], shape[-2])
        return self.base._check_shape(transposed, f"the transpose of {name}")

    def check_point_on_manifold(self, x: Tensor, *, explain: bool = False, **tolerances: Any):
        """Check that ``x`` is on the manifold, that is ``x^T`` on ``base`` (same arguments)."""
        return self.base.check_point_on_manifold(_t(x), explain=explain, **tolerances)

    def check_vector_on_tangent(self, x: Tensor, u: Tensor, **options: Any):
        """Check that ``u`` is tangent at ``x``, that is ``u^T`` tangent at ``x^T`` on ``base``."""
        return self.base.check_vector_on_tangent(_t(x), _t(u), **options)

    def _check_point_on_manifold(self, x: Tensor, **tolerances: Any):
        return self.base._check_point_on_manifold(_t(x), **tolerances)

    def _check_vector_on_tangent(self, x: Tensor, u: Tensor, **tolerances: Any):
        return self.base._check_vector_on_tangent(_t(x), _t(u), **tolerances)

    def inner(
        self, x: Tensor, u: Tensor, v: Tensor | None = None, *, keepdim: bool = False
    ) -> Tensor:
        """Return the base manifold's inner product of ``u^T`` and ``v^T`` at ``x^T``."""
        v = None if v is None else _t(v)
        return self.base.inner(_t(x), _t(u), v, keepdim=keepdim)

    def component_inner(self, x: Tensor, u: Tensor, v: Tensor | None = None) -> Tensor:
        """Return the base manifold's componentwise inner product, transposed back."""
        v = None if v is None else _t(v)
        result = self.base.component_inner(_t(x), _t(u), v)
        return _t(result) if result.dim() >= 2 else result

    def norm(self, x: Tensor, u: Tensor, *, keepdim: bool = False) -> Tensor:
        """Return the base manifold's norm of ``u^T`` at ``x^T``."""
        return self.base.norm(_t(x), _t(u), keepdim=keepdim)

    def dist(self, x: Tensor, y: Tensor, *, keepdim: bool = False) -> Tensor:
        """Return the base manifold's distance between ``x^T`` and ``y^T``."""
        return self.base.dist(_t(x), _t(y), keepdim=keepdim)

    def dist2(self, x: Tensor, y: Tensor, *, keepdim: bool = False) -> Tensor:
        """Return the base manifold's squared distance between ``x^T`` and ``y^T``."""
        return self.base.dist2(_t(x), _t(y), keepdim=keepdim)

    def proju(self, x: Tensor, u: Tensor) -> Tensor:
        """Project ``u`` onto the tangent space at ``x`` through the base projection of ``u^T``."""
        return _t(self.base.proju(_t(x), _t(u)))

    def egrad2rgrad(self, x: Tensor, u: Tensor) -> Tensor:
        """Convert a Euclidean gradient to the Riemannian one through the base manifold."""
        return _t(self.base.egrad2rgrad(_t(x), _t(u)))

    def projx(self, x: Tensor) -> Tensor:
        """Project ``x`` onto the manifold: the base projection of ``x^T``, transposed."""
        return _t(self.base.projx(_t(x)))

    def retr(self, x: Tensor, u: Tensor) -> Tensor:
        """Retract ``u`` at ``x`` with the base manifold's retraction, on the transposes."""
        return _t(self.base.retr(_t(x), _t(u)))

    def expmap(self, x: Tensor, u: Tensor) -> Tensor:
        """Follow the base exponential map from ``x^T`` along ``u^T``, transposed back."""
        return _t(self.base.expmap(_t(x), _t(u)))

    def logmap(self, x: Tensor, y: Tensor) -> Tensor:
        """Return the base manifold's logarithm of ``y^T`` at ``x^T``, transposed back."""
        return _t(self.base.logmap(_t(x), _t(y)))

    def transp(self, x: Tensor, y: Tensor, v: Tensor) -> Tensor:
        """Transport ``v`` from ``x`` to ``y`` with the base manifold's vector transport."""
        return _t(self.base.transp(_t(x), _t(y), _t(v)))

    def retr_transp(self, x: Tensor, u: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Retract ``u`` at ``x`` and transport ``v`` along, through the base manifold."""
        y, v_transported = self.base.retr_transp(_t(x), _t(u), _t(v))
        return _t(y), _t(v_transported)

    def expmap_transp(self, x: Tensor, u: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Follow the exponential map along ``u`` and transport ``v``, through the base."""
        y, v_transported = self.base.expmap_transp(_t(x), _t(u), _t(v))
        return _t(y), _t(v_transported)

    def transp_follow_retr(self, x: Tensor, u: Tensor, v: Tensor) -> Tensor:
        """Transport ``v`` along the retraction of ``u`` at ``x``, through the base."""
        return _t(self.base.transp_follow_retr(_t(x), _t(u), _t(v)))

    def transp_follow_expmap(self, x: Tensor, u: Tensor, v: Tensor) -> Tensor:
        """Transport ``v`` along the exponential map of ``u`` at ``x``, through the base."""
        return _t(self.base.transp_follow_expmap(_t(x), _t(u), _t(v)))

    def random(self, *size: Any, **options: Any) -> geoopt.ManifoldTensor:
        """Sample ``base.random`` of the transposed shape and transpose it (same options)."""
        shape = size2shape(*size)
        sample = self.base.random(*shape[:-2], shape[-1], shape[-2], **options)
        return geoopt.ManifoldTensor(_t(sample).contiguous(), manifold=self)

    def origin(self, *size: Any, **options: Any) -> geoopt.ManifoldTensor:
        """Return the transpose of ``base.origin`` of the transposed shape (same options)."""
        shape = size2shape(*size)
        point = self.base.origin(*shape[:-2], shape[-1], shape[-2], **options)
        return geoopt.ManifoldTensor(_t(point).contiguous(), manifold=self)
