"""Helpers for property-based tests of manifolds: a tolerance rule and hypothesis strategies.

The strategies work with any geoopt manifold that implements ``projx`` and ``proju``, so they
serve for testing your own manifolds too:

```python
from hypothesis import given
from grassmann_nn import Grassmann
from grassmann_nn.testing import point_and_tangent, tolerance

manifold = Grassmann()

@given(point_and_tangent(manifold, n=(3, 20)))
def test_retraction_stays_on_manifold(case):
    x, u = case
    y = manifold.retr(x, u)
    assert manifold.check_point_on_manifold(y, atol=tolerance(y.dtype, y.shape[-2]))
```

Tensors are built from a seed that hypothesis draws, so a failing example shrinks to a small
shape and a seed and replays exactly. Requires the ``test`` extra (hypothesis).
"""

from __future__ import annotations

import geoopt
import torch

from grassmann_nn._linalg import tolerance

try:
    from hypothesis import strategies as st
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError(
        "grassmann_nn.testing needs hypothesis; install it with "
        "pip install 'grassmann-nn[test]' (or pip install hypothesis)."
    ) from error

__all__ = ["point_and_tangent", "points", "shapes", "tangent_vectors", "tolerance"]

_SEEDS = st.integers(min_value=0, max_value=2**31 - 1)
_TANGENT_SEED_OFFSET = 2**31


def _accepts(manifold: geoopt.Manifold, shape: tuple[int, ...]) -> bool:
    ok, _ = manifold._check_shape(shape, "x")
    return bool(ok)


def shapes(
    manifold: geoopt.Manifold,
    *,
    n: tuple[int, int] = (2, 16),
    p: tuple[int, int] = (1, 8),
    max_batch_dims: int = 1,
    max_batch_size: int = 3,
) -> st.SearchStrategy[tuple[int, ...]]:
    """Strategy for point shapes ``(*batch, n, p)`` that ``manifold`` accepts.

    Args:
        manifold: The manifold; its shape check filters the drawn shapes (for example
            ``p < n`` on the Grassmann manifold).
        n: Inclusive range of the number of rows.
        p: Inclusive range of the number of columns.
        max_batch_dims: Largest number of leading batch dimensions.
        max_batch_size: Largest size of each batch dimension.
    """
    batch = st.lists(
        st.integers(min_value=1, max_value=max_batch_size), min_size=0, max_size=max_batch_dims
    )
    rows = st.integers(min_value=n[0], max_value=n[1])
    columns = st.integers(min_value=p[0], max_value=p[1])
    drawn = st.tuples(batch, rows, columns).map(lambda t: (*t[0], t[1], t[2]))
    return drawn.filter(lambda shape: _accepts(manifold, shape))


def _gaussian(shape, seed: int, dtype: torch.dtype, device) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    sample = torch.randn(shape, generator=generator, dtype=torch.float64)
    return sample.to(dtype=dtype, device=device)


def points(
    manifold: geoopt.Manifold,
    shape: tuple[int, ...] | st.SearchStrategy[tuple[int, ...]] | None = None,
    *,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
) -> st.SearchStrategy[torch.Tensor]:
    """Strategy for points of ``manifold``: ``manifold.projx`` of a seeded Gaussian matrix.

    For the Stiefel and Grassmann manifolds this is Haar-distributed.

    Args:
        manifold: The manifold.
        shape: A fixed shape, a strategy of shapes, or ``None`` for ``shapes(manifold)``.
        dtype: dtype of the points.
        device: Device of the points.
    """
    shape_strategy = _shape_strategy(manifold, shape)
    return st.tuples(shape_strategy, _SEEDS).map(
        lambda drawn: manifold.projx(_gaussian(drawn[0], drawn[1], dtype, device))
    )


def tangent_vectors(
    manifold: geoopt.Manifold,
    x: torch.Tensor,
    *,
    norm: tuple[float, float] = (0.0, 1.0),
) -> st.SearchStrategy[torch.Tensor]:
    """Strategy for tangent vectors at ``x``: ``manifold.proju`` of a Gaussian, rescaled.

    Args:
        manifold: The manifold.
        x: The base point.
        norm: Inclusive range of the Frobenius norm of each vector (per batch item).
    """
    norms = st.floats(min_value=norm[0], max_value=norm[1], allow_nan=False)
    return st.tuples(_SEEDS, norms).map(lambda drawn: _tangent(manifold, x, *drawn))


def _tangent(manifold: geoopt.Manifold, x: torch.Tensor, seed: int, norm: float) -> torch.Tensor:
    # The seed is offset so that a tangent drawn with the seed of its point is not the point's
    # own Gaussian, whose projection is pure rounding noise for p = 1.
    gaussian = _gaussian(x.shape, seed + _TANGENT_SEED_OFFSET, x.dtype, x.device)
    direction = manifold.proju(x, gaussian)

    length = torch.linalg.matrix_norm(direction).unsqueeze(-1).unsqueeze(-1)
    reference = torch.linalg.matrix_norm(gaussian).unsqueeze(-1).unsqueeze(-1)
    # A projection far below the Gaussian's norm is rounding noise, not a direction.
    noise = length <= reference * torch.finfo(x.dtype).eps ** 0.5
    length = torch.where(noise, torch.ones_like(length), length)
    return torch.where(noise, torch.zeros_like(direction), direction / length * norm)


def point_and_tangent(
    manifold: geoopt.Manifold,
    *,
    n: tuple[int, int] = (2, 16),
    p: tuple[int, int] = (1, 8),
    max_batch_dims: int = 1,
    norm: tuple[float, float] = (0.0, 1.0),
    dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
) -> st.SearchStrategy[tuple[torch.Tensor, torch.Tensor]]:
    """Strategy for pairs ``(x, u)``: a point and a tangent vector at it.

    Args:
        manifold: The manifold.
        n: Inclusive range of the number of rows.
        p: Inclusive range of the number of columns.
        max_batch_dims: Largest number of leading batch dimensions.
        norm: Inclusive range of the Frobenius norm of ``u`` (per batch item).
        dtype: dtype of both tensors.
        device: Device of both tensors.
    """
    shape = shapes(manifold, n=n, p=p, max_batch_dims=max_batch_dims)
    point = points(manifold, shape, dtype=dtype, device=device)
    return point.flatmap(lambda x: tangent_vectors(manifold, x, norm=norm).map(lambda u: (x, u)))


def _shape_strategy(manifold, shape) -> st.SearchStrategy[tuple[int, ...]]:
    if shape is None:
        return shapes(manifold)
    if isinstance(shape, st.SearchStrategy):
        return shape
    return st.just(tuple(shape))
