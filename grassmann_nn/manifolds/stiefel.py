"""The Stiefel manifold St(n, p) of n x p matrices with orthonormal columns."""

from __future__ import annotations

import torch

from grassmann_nn import retractions
from grassmann_nn._linalg import sym, transpose
from grassmann_nn.manifolds._frames import OrthonormalFrames

__all__ = ["Stiefel"]


class Stiefel(OrthonormalFrames):
    r"""Stiefel manifold $\mathrm{St}(n, p) = \{X \in \mathbb{R}^{n \times p} : X^\top X = I_p\}$
    with the Euclidean metric $\langle U, V \rangle = \operatorname{tr}(U^\top V)$.

    A point is an ordered orthonormal basis: $X$ and $XQ$ are different points. Tangent
    vectors at $X$ satisfy $X^\top \Delta + \Delta^\top X = 0$, and the projection of a
    Euclidean gradient $G$ is $G - X \operatorname{sym}(X^\top G)$.

    Use it when the cost depends on the basis itself, not only on its span: a layer output
    $W^\top x$ changes when $W$ is replaced by $WQ$. Use `Grassmann` when the cost depends only
    on the subspace (for example on distances $\|W^\top (x - y)\|$, or when a following
    learnable layer can absorb any rotation $Q$); its gradients then have no component along
    the $p(p-1)/2$ rotation directions that leave the cost unchanged.

    Args:
        retraction: ``"polar"`` (alias ``"svd"``), ``"qr"``, ``"cayley"`` or ``"exp"`` (the
            exact Euclidean-metric geodesic, `grassmann_nn.retractions.stiefel_exp`).

    Raises:
        ValueError: ``retraction`` is not one of the names above.

    Example:
        >>> import geoopt
        >>> from grassmann_nn import Stiefel
        >>> manifold = Stiefel(retraction="qr")
        >>> weight = geoopt.ManifoldParameter(manifold.random(256, 8), manifold=manifold)
    """

    name = "Stiefel"

    def _lookup_retraction(self, name: str) -> retractions.Retraction:
        function = retractions.get_retraction(name)
        return retractions.stiefel_exp if function is retractions.grassmann_exp else function

    def proju(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        r"""Project ``u`` onto the tangent space at ``x``: $U - X \operatorname{sym}(X^\top U)$."""
        self._require_same_shape(x, u)
        return u - x @ sym(transpose(x) @ u)

    def expmap(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Exact geodesic of the Euclidean metric (`grassmann_nn.retractions.stiefel_exp`)."""
        self._require_shape(x)
        return retractions.stiefel_exp(x, u)

    def _check_vector_on_tangent(
        self, x: torch.Tensor, u: torch.Tensor, *, atol: float, rtol: float | None = None
    ) -> tuple[bool, str | None]:
        product = transpose(x.detach()) @ u.detach()
        error = float((product + transpose(product)).abs().max())
        if error <= atol:
            return True, None
        return False, f"max |X^T U + U^T X| = {error:.3e} exceeds atol {atol:.3e}"
