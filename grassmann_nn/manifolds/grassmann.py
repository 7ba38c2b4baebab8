"""The Grassmann manifold Gr(n, p) of p-dimensional subspaces of R^n."""

from __future__ import annotations

import math

import torch
from torch.autograd.function import once_differentiable

from grassmann_nn import retractions
from grassmann_nn._linalg import in_working_precision, sym, transpose
from grassmann_nn.manifolds._frames import OrthonormalFrames

__all__ = ["Grassmann", "principal_angles"]


@in_working_precision
def _principal_angles(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    overlap = transpose(x) @ y
    cosines = torch.linalg.svdvals(overlap)
    sines = torch.linalg.svdvals(y - x @ overlap).flip(-1)
    return torch.atan2(sines, cosines)


def principal_angles(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    r"""Return the principal angles $0 \le \theta_1 \le \dots \le \theta_p \le \pi/2$ between
    the column spans of ``x`` and ``y``.

    Args:
        x: Matrices with orthonormal columns, shape ``(..., n, p)``.
        y: Matrices with orthonormal columns, shape ``(..., n, p)``.

    Returns:
        Angles in ascending order, shape ``(..., p)``.

    Note:
        $\cos\theta_i$ are the singular values of $X^\top Y$ and $\sin\theta_i$ those of
        $(I - XX^\top) Y$. A bare $\arccos$ of the cosines loses all digits below about
        $\sqrt{\varepsilon}$ (1e-8 in float64) and returns NaN when rounding puts a cosine
        above 1; pairing the sorted sines and cosines in $\operatorname{atan2}$ is accurate
        at small and large angles alike (Knyazev and Argentati, "Principal Angles between
        Subspaces in an A-Based Scalar Product", SIAM J. Sci. Comput. 2002).
    """
    _check_pair(x, y)
    return _principal_angles(x, y)


def _check_pair(x: torch.Tensor, y: torch.Tensor) -> None:
    """Raise ValueError unless x and y are equal-shaped, finite stacks of tall n x p matrices.

    The decompositions behind the angles fail on NaN or inf with a LAPACK message about
    conditioning, which hides the cause, so the input is checked first.
    """
    if x.shape != y.shape:
        raise ValueError(
            f"x and y must have the same shape, got {tuple(x.shape)} and {tuple(y.shape)}."
        )
    if x.dim() < 2 or not 0 < x.shape[-1] <= x.shape[-2]:
        raise ValueError(
            f"x and y must be tall n x p matrices with 0 < p <= n, got shape {tuple(x.shape)}. "
            "Transpose them if their rows are the orthonormal side."
        )
    for name, tensor in (("x", x), ("y", y)):
        if not bool(torch.isfinite(tensor).all()):
            raise ValueError(
                f"{name} contains NaN or infinite values, so its column span is undefined. "
                f"Check the computation that produced {name}."
            )


# logmap uses the polar form while every squared sine is at most this, so every cosine is at
# least 0.01 (angles up to about 89.4 degrees). Closer to the cut locus at 90 degrees, X^T Y
# becomes singular and its polar factor is not defined, so the SVD form takes over.
_POLAR_FORM_MAX_SINE2 = 1 - 1e-4

# Below these squared sines, the arcsine ratio and its derivative come from their Taylor series,
# because the closed forms cancel digits there. At these bounds, nine terms of the series are
# accurate to the unit roundoff of the dtype.
_SERIES_BELOW = {torch.float32: 0.1, torch.float64: 1e-2}

# Taylor coefficients of arcsin(sqrt(s)) / sqrt(s) = sum_k (2k)! / (4^k (k!)^2 (2k + 1)) s^k.
_ARCSINE_RATIO_SERIES = tuple(
    math.factorial(2 * k) / (4**k * math.factorial(k) ** 2 * (2 * k + 1)) for k in range(9)
)


def _power_series(coefficients: tuple[float, ...], s: torch.Tensor) -> torch.Tensor:
    """Evaluate ``sum_k coefficients[k] * s**k`` by Horner's rule."""
    total = torch.full_like(s, coefficients[-1])
    for coefficient in reversed(coefficients[:-1]):
        total = total * s + coefficient
    return total


def _arcsine_ratio(sine2: torch.Tensor) -> torch.Tensor:
    r"""Return $\chi(s) = \arcsin(\sqrt s) / \sqrt s$ for squared sines $s$ in [0, 1]."""
    small = sine2 < _SERIES_BELOW[sine2.dtype]
    safe = torch.where(small, 0.5, sine2)
    closed = torch.asin(safe.sqrt()) / safe.sqrt()
    return torch.where(small, _power_series(_ARCSINE_RATIO_SERIES, sine2), closed)


def _arcsine_ratio_derivative(sine2: torch.Tensor) -> torch.Tensor:
    r"""Return $\chi'(s) = 1 / (2 s \sqrt{1 - s}) - \arcsin(\sqrt s) / (2 s^{3/2})$ for s in
    [0, 1)."""
    small = sine2 < _SERIES_BELOW[sine2.dtype]
    safe = torch.where(small, 0.5, sine2)
    root = safe.sqrt()
    closed = 1 / (2 * safe * (1 - safe).sqrt()) - torch.asin(root) / (2 * safe * root)
    slopes = tuple(k * c for k, c in enumerate(_ARCSINE_RATIO_SERIES))[1:]
    return torch.where(small, _power_series(slopes, sine2), closed)


class _ArcsineRatioOfGram(torch.autograd.Function):
    r"""$\chi(G)$ of the arcsine ratio $\chi$ for symmetric G with eigenvalues in [0, 1).

    Note:
        The backward pass uses the Daleckii-Krein formula: with $G = V \Lambda V^\top$, the
        gradient is $V (\Gamma \circ V^\top \bar F V) V^\top$, where
        $\Gamma_{ij} = (\chi(\lambda_i) - \chi(\lambda_j)) / (\lambda_i - \lambda_j)$, or
        $\chi'$ at the midpoint when the two eigenvalues are within $\sqrt{\varepsilon}$.
        It is finite when eigenvalues coincide, where the generic eigh backward divides by 0.
    """

    @staticmethod
    def forward(ctx, gram: torch.Tensor) -> torch.Tensor:
        eigenvalues, eigenvectors = torch.linalg.eigh(gram)
        eigenvalues = eigenvalues.clamp(0, 1)
        ctx.save_for_backward(eigenvalues, eigenvectors)
        ratios = _arcsine_ratio(eigenvalues)
        return (eigenvectors * ratios.unsqueeze(-2)) @ transpose(eigenvectors)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_ratio: torch.Tensor) -> torch.Tensor:
        eigenvalues, eigenvectors = ctx.saved_tensors
        values = _arcsine_ratio(eigenvalues)

        gaps = eigenvalues.unsqueeze(-1) - eigenvalues.unsqueeze(-2)
        close = gaps.abs() <= torch.finfo(gaps.dtype).eps ** 0.5
        divided = (values.unsqueeze(-1) - values.unsqueeze(-2)) / torch.where(close, 1.0, gaps)
        midpoints = (eigenvalues.unsqueeze(-1) + eigenvalues.unsqueeze(-2)) / 2
        kernel = torch.where(close, _arcsine_ratio_derivative(midpoints), divided)

        inner = transpose(eigenvectors) @ sym(grad_ratio) @ eigenvectors
        return eigenvectors @ (kernel * inner) @ transpose(eigenvectors)


def _logmap_polar(overlap: torch.Tensor, normal: torch.Tensor) -> torch.Tensor:
    r"""Return $N \chi(N^\top N) \operatorname{polar}(M)^\top$, the log map for $M = X^\top Y$
    and $N = Y - XM$."""
    ratio = _ArcsineRatioOfGram.apply(transpose(normal) @ normal)
    return normal @ ratio @ transpose(retractions._polar_factor(overlap))


@in_working_precision
def _logmap(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    overlap = transpose(x) @ y
    normal = y - x @ overlap
    sines2 = torch.linalg.eigvalsh(transpose(normal.detach()) @ normal.detach())
    if bool((sines2 <= _POLAR_FORM_MAX_SINE2).all()):
        return _logmap_polar(overlap, normal)
    return _logmap_svd(x, y)


def _logmap_svd(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    overlap = transpose(x) @ y
    left, cosines, right_h = torch.linalg.svd(overlap)

    normal = (y - x @ overlap) @ transpose(right_h)
    sines = torch.linalg.vector_norm(normal, dim=-2)
    angles = torch.atan2(sines, cosines)

    tiny = torch.finfo(x.dtype).tiny
    nonzero = sines > tiny
    ratio = torch.where(nonzero, angles / torch.where(nonzero, sines, 1.0), 1.0)
    return (normal * ratio.unsqueeze(-2)) @ transpose(left)


class Grassmann(OrthonormalFrames):
    r"""Grassmann manifold $\mathrm{Gr}(n, p)$ of $p$-dimensional subspaces of $\mathbb{R}^n$.

    A point is stored as an $n \times p$ matrix $X$ with orthonormal columns, $0 < p < n$;
    $X$ and $XQ$ for any orthogonal $Q \in O(p)$ are the same subspace. Tangent vectors are
    represented in the horizontal space $\{\Delta : X^\top \Delta = 0\}$, the metric is
    $\operatorname{tr}(U^\top V)$, and the projection of a Euclidean gradient $G$ is
    $(I - XX^\top) G$. Distances are the 2-norm of the principal angles.

    A cost is a function on the Grassmann manifold when $f(XQ) = f(X)$ for every orthogonal
    $Q$: then $X^\top G$ is symmetric for its Euclidean gradient $G$, so the Stiefel gradient
    $G - X \operatorname{sym}(X^\top G) = (I - XX^\top) G$ is already horizontal and equals
    the Grassmann gradient. The feature map $x \mapsto W^\top x$
    of a layer is not: it depends on the basis. What is basis-invariant is the geometry of the
    features, $\|W^\top x - W^\top y\| = \|W W^\top (x - y)\|$, so a network whose following
    layers are learnable (and can absorb $Q$) or whose loss depends only on feature distances
    is served by the Grassmann manifold. Otherwise use `Stiefel`.

    Args:
        retraction: ``"polar"`` (alias ``"svd"``), ``"qr"``, ``"cayley"`` or ``"exp"`` (the
            exact geodesic, `grassmann_nn.retractions.grassmann_exp`).

    Raises:
        ValueError: ``retraction`` is not one of the names above.

    Example:
        >>> import geoopt
        >>> from grassmann_nn import Grassmann
        >>> manifold = Grassmann(retraction="polar")
        >>> basis = geoopt.ManifoldParameter(manifold.random(256, 8), manifold=manifold)

    References:
        A. Edelman, T. A. Arias, S. T. Smith, "The Geometry of Algorithms with Orthogonality
        Constraints", SIAM J. Matrix Anal. Appl. 1998, arXiv:physics/9806030.
        P.-A. Absil, R. Mahony, R. Sepulchre, "Riemannian Geometry of Grassmann Manifolds with a
        View on Algorithmic Computation", Acta Appl. Math. 2004.
    """

    name = "Grassmann"

    def _shape_rule(self) -> str:
        return "0 < p < n (Gr(n, n) is a single point)"

    def _shape_ok(self, n: int, p: int) -> bool:
        return 0 < p < n

    def proju(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        r"""Project ``u`` onto the horizontal space at ``x``: $(I - XX^\top) U$."""
        self._require_same_shape(x, u)
        return u - x @ (transpose(x) @ u)

    def expmap(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Exact geodesic (`grassmann_nn.retractions.grassmann_exp`)."""
        self._require_shape(x)
        return retractions.grassmann_exp(x, u)

    def logmap(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        r"""Logarithm map: the horizontal $\Delta$ at ``x`` with $\operatorname{Exp}_X(\Delta)$
        spanning the same subspace as ``y``, of norm equal to the distance.

        With $X^\top Y = Q_1 \cos(\Theta) Q_2^\top$ (SVD) and
        $N = (I - XX^\top) Y Q_2 = U \sin(\Theta)$, the result is $U \Theta Q_1^\top$.
        It is unchanged when $Y$ is replaced by $YQ$.

        Args:
            x: Base points, shape ``(..., n, p)``.
            y: Target points, same shape.

        Returns:
            Horizontal tangent vectors at ``x``.

        Note:
            This equals the textbook form $U \arctan(S) V^\top$ from the SVD of
            $(I - XX^\top) Y (X^\top Y)^{-1}$, but needs no inverse, so it stays finite when
            a principal angle reaches $\pi/2$. There ``y`` lies on the cut locus of ``x``:
            several shortest geodesics exist and one of them is returned.

            While every principal angle is below about 89.4 degrees, the same map is computed
            as $N \chi(N^\top N) \operatorname{polar}(X^\top Y)^\top$ with
            $N = (I - XX^\top) Y$ and $\chi(s) = \arcsin(\sqrt s) / \sqrt s$. Its gradient
            has no gaps between angles in a denominator, so it is correct where principal
            angles coincide, for example at ``y = x``. NOTE: closer to the cut locus the SVD
            form is used, and its gradient is wrong or NaN where two principal angles
            coincide. Second derivatives are not implemented.
        """
        self._require_shape(x)
        _check_pair(x, y)
        return _logmap(x, y)

    def dist(self, x: torch.Tensor, y: torch.Tensor, *, keepdim: bool = False) -> torch.Tensor:
        r"""Geodesic distance $\sqrt{\sum_i \theta_i^2}$ over the principal angles $\theta_i$.

        It is 0 for ``y = x Q``, $\pi/2 \sqrt{p}$ for mutually orthogonal subspaces, accurate
        for small angles (see `principal_angles`), and its gradient is finite at 0.
        """
        self._require_shape(x)
        distance = torch.linalg.vector_norm(principal_angles(x, y), dim=-1)
        if keepdim:
            return distance.unsqueeze(-1).unsqueeze(-1)
        return distance

    def _check_vector_on_tangent(
        self, x: torch.Tensor, u: torch.Tensor, *, atol: float, rtol: float | None = None
    ) -> tuple[bool, str | None]:
        error = float((transpose(x.detach()) @ u.detach()).abs().max())
        if error <= atol:
            return True, None
        return False, f"max |X^T U| = {error:.3e} exceeds atol {atol:.3e} (not horizontal)"
