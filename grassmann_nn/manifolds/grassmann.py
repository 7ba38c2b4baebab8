"""The Grassmann manifold Gr(n, p) of p-dimensional subspaces of R^n."""

from __future__ import annotations

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
    if x.shape != y.shape:
        raise ValueError(
            f"x and y must have the same shape, got {tuple(x.shape)} and {tuple(y.shape)}."
        )
    return _principal_angles(x, y)


# logmap uses the matrix-function form while every squared sine is at most this (about 77
# degrees), and the SVD form closer to the cut locus at 90 degrees. The matrix-function form
# has a finite gradient where principal angles coincide, for example at y = x; near the cut
# locus its factor (G (I - G))^{-1/2} grows without bound.
_MATRIX_FUNCTION_MAX_SINE2 = 0.95

# Below these squared sines, the sine ratio and its derivative come from their Taylor series,
# because the closed forms cancel digits there. The truncation error of the series at these
# bounds is below the unit roundoff of the dtype for the ratio, and within a few units for its
# derivative.
_SERIES_BELOW = {torch.float32: 0.03, torch.float64: 1e-3}


def _sine_ratio(sine2: torch.Tensor) -> torch.Tensor:
    r"""Return $\psi(s) = \arcsin(\sqrt s) / \sqrt{s (1 - s)}$ for squared sines $s$ in [0, 1).

    The Taylor series is $\psi(s) = \sum_k (2^k k!)^2 s^k / (2k + 1)!$.
    """
    small = sine2 < _SERIES_BELOW[sine2.dtype]
    safe = torch.where(small, 0.5, sine2)
    closed = torch.asin(safe.sqrt()) / (safe * (1 - safe)).sqrt()
    s = sine2
    series = 1 + s * (2 / 3 + s * (8 / 15 + s * (16 / 35 + s * (128 / 315 + s * 256 / 693))))
    return torch.where(small, series, closed)


def _sine_ratio_derivative(sine2: torch.Tensor) -> torch.Tensor:
    r"""Return $\psi'(s)$ for the sine ratio $\psi$ of `_sine_ratio`."""
    small = sine2 < _SERIES_BELOW[sine2.dtype]
    safe = torch.where(small, 0.5, sine2)
    product = safe * (1 - safe)
    closed = 1 / (2 * product) - torch.asin(safe.sqrt()) * (1 - 2 * safe) / (2 * product**1.5)
    s = sine2
    series = 2 / 3 + s * (16 / 15 + s * (48 / 35 + s * (512 / 315 + s * 1280 / 693)))
    return torch.where(small, series, closed)


class _SineRatioOfGram(torch.autograd.Function):
    r"""$\psi(G)$ of the sine ratio $\psi$ for symmetric G with eigenvalues in [0, 1).

    Note:
        The backward pass uses the Daleckii-Krein formula: with $G = V \Lambda V^\top$, the
        gradient is $V (\Gamma \circ V^\top \bar F V) V^\top$, where
        $\Gamma_{ij} = (\psi(\lambda_i) - \psi(\lambda_j)) / (\lambda_i - \lambda_j)$, or
        $\psi'$ at the midpoint when the two eigenvalues are within $\sqrt{\varepsilon}$.
        It is finite when eigenvalues coincide, where the generic eigh backward divides by 0.
    """

    @staticmethod
    def forward(ctx, gram: torch.Tensor) -> torch.Tensor:
        eigenvalues, eigenvectors = torch.linalg.eigh(gram)
        eigenvalues = eigenvalues.clamp_min(0)
        ctx.save_for_backward(eigenvalues, eigenvectors)
        return (eigenvectors * _sine_ratio(eigenvalues).unsqueeze(-2)) @ transpose(eigenvectors)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_ratio: torch.Tensor) -> torch.Tensor:
        eigenvalues, eigenvectors = ctx.saved_tensors
        values = _sine_ratio(eigenvalues)

        gaps = eigenvalues.unsqueeze(-1) - eigenvalues.unsqueeze(-2)
        close = gaps.abs() <= torch.finfo(gaps.dtype).eps ** 0.5
        divided = (values.unsqueeze(-1) - values.unsqueeze(-2)) / torch.where(close, 1.0, gaps)
        midpoints = (eigenvalues.unsqueeze(-1) + eigenvalues.unsqueeze(-2)) / 2
        kernel = torch.where(close, _sine_ratio_derivative(midpoints), divided)

        inner = transpose(eigenvectors) @ sym(grad_ratio) @ eigenvectors
        return eigenvectors @ (kernel * inner) @ transpose(eigenvectors)


def _logmap_matrix_function(overlap: torch.Tensor, normal: torch.Tensor) -> torch.Tensor:
    r"""Return $N \psi(N^\top N) M^\top$, the log map for $M = X^\top Y$ and $N = Y - XM$."""
    return normal @ _SineRatioOfGram.apply(transpose(normal) @ normal) @ transpose(overlap)


@in_working_precision
def _logmap(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    overlap = transpose(x) @ y
    normal = y - x @ overlap
    sines2 = torch.linalg.eigvalsh(transpose(normal.detach()) @ normal.detach())
    if bool((sines2 <= _MATRIX_FUNCTION_MAX_SINE2).all()):
        return _logmap_matrix_function(overlap, normal)
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

            While every principal angle is below about 77 degrees, the same map is computed as
            the matrix function $N \psi(N^\top N) (X^\top Y)^\top$ with
            $N = (I - XX^\top) Y$ and $\psi(s) = \arcsin(\sqrt s) / \sqrt{s (1 - s)}$,
            whose gradient is finite where principal angles coincide, for example at
            ``y = x``. NOTE: beyond 77 degrees the SVD form is used, and its gradient is not
            defined (NaN) where two principal angles coincide there. Second derivatives are
            not implemented.
        """
        self._require_shape(x)
        if x.shape != y.shape:
            raise ValueError(
                f"x and y must have the same shape, got {tuple(x.shape)} and {tuple(y.shape)}."
            )
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
