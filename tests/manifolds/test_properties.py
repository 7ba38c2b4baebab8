"""One property suite over every manifold x retraction x dtype x device case."""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from grassmann_nn import Grassmann, Stiefel
from grassmann_nn.testing import point_and_tangent, tolerance

CASES = [
    (manifold_class, retraction)
    for manifold_class in (Grassmann, Stiefel)
    for retraction in ("polar", "qr", "cayley", "exp")
]
CASE_IDS = [f"{cls.__name__}-{name}" for cls, name in CASES]
DTYPES = [torch.float32, torch.float64]

SEEDS = st.integers(min_value=0, max_value=2**31 - 1)


@pytest.fixture(params=CASES, ids=CASE_IDS)
def manifold(request):
    manifold_class, retraction = request.param
    return manifold_class(retraction=retraction)


@pytest.fixture(params=DTYPES, ids=["float32", "float64"])
def dtype(request):
    return request.param


def pairs(manifold, dtype, device, norm=(0.0, 1.0), max_batch_dims=1):
    return point_and_tangent(
        manifold, norm=norm, dtype=dtype, device=device, max_batch_dims=max_batch_dims
    )


def tol(x: torch.Tensor) -> float:
    return tolerance(x.dtype, x.shape[-2])


def projector(x: torch.Tensor) -> torch.Tensor:
    return x @ x.transpose(-1, -2)


def random_orthogonal(p: int, seed: int, like: torch.Tensor) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(p, p, generator=generator, dtype=torch.float64))
    return q.to(dtype=like.dtype, device=like.device)


def test_retraction_result_on_manifold(manifold, dtype, device):
    @given(pairs(manifold, dtype, device, norm=(0.0, 3.0)))
    def check(case):
        x, u = case
        y = manifold.retr(x, u)

        assert y.dtype == x.dtype
        ok, reason = manifold.check_point_on_manifold(y, explain=True, atol=tol(y))
        assert ok, reason

    check()


def test_zero_step_returns_point(manifold, dtype, device):
    @given(pairs(manifold, dtype, device))
    def check(case):
        x, _ = case
        y = manifold.retr(x, torch.zeros_like(x))

        if isinstance(manifold, Grassmann):
            torch.testing.assert_close(projector(y), projector(x), atol=tol(x), rtol=0)
        else:
            torch.testing.assert_close(y, x, atol=tol(x), rtol=0)

    check()


def test_retraction_first_order(manifold, device):
    # |R_x(t u) - (x + t u)| <= C t^2 |u|^2: a first-order retraction, checked in float64 at two
    # step sizes so that rounding stays far below t^2.
    @given(pairs(manifold, torch.float64, device, norm=(0.1, 1.0)))
    def check(case):
        x, u = case
        squared_norm = float(torch.linalg.matrix_norm(u).max()) ** 2

        for t in (1e-1, 1e-2):
            error = torch.linalg.matrix_norm(manifold.retr(x, t * u) - (x + t * u)).max()
            assert float(error) <= 2.0 * t**2 * squared_norm + tol(x)

    check()


def test_projection_idempotent_and_tangent(manifold, dtype, device):
    @given(pairs(manifold, dtype, device), SEEDS)
    def check(case, seed):
        x, _ = case
        generator = torch.Generator().manual_seed(seed)
        gradient = torch.randn(x.shape, generator=generator, dtype=torch.float64).to(x)

        projected = manifold.proju(x, gradient)
        scale = max(1.0, float(gradient.abs().max()))
        torch.testing.assert_close(
            manifold.proju(x, projected), projected, atol=tol(x) * scale, rtol=0
        )
        ok, reason = manifold.check_vector_on_tangent(x, projected, explain=True)
        assert ok, reason

    check()


def test_polar_is_nearest_orthonormal(dtype, device):
    # No matrix with orthonormal columns is closer to x + u than the polar retraction's result:
    # not the other retractions' results, and not random orthonormal matrices.
    manifold = Stiefel(retraction="polar")
    others = [Stiefel(retraction=name) for name in ("qr", "cayley", "exp")]

    @given(pairs(manifold, dtype, device, norm=(0.0, 2.0), max_batch_dims=0), SEEDS)
    def check(case, seed):
        x, u = case
        target = x + u
        best = torch.linalg.matrix_norm(manifold.retr(x, u) - target)

        candidates = [other.retr(x, u) for other in others]
        candidates.append(
            manifold.random(
                *x.shape,
                dtype=x.dtype,
                device=x.device,
                generator=torch.Generator().manual_seed(seed),
            )
        )
        for candidate in candidates:
            distance = torch.linalg.matrix_norm(candidate - target)
            assert float(best) <= float(distance) + tol(x)

    check()


def test_batched_equals_per_item(manifold, dtype, device):
    @given(pairs(manifold, dtype, device, norm=(0.0, 2.0), max_batch_dims=2))
    def check(case):
        x, u = case
        batched = manifold.retr(x, u)

        flat_x = x.reshape(-1, *x.shape[-2:])
        flat_u = u.reshape(-1, *u.shape[-2:])
        items = [manifold.retr(a, b) for a, b in zip(flat_x, flat_u, strict=True)]
        expected = torch.stack(items).reshape(x.shape) if items else batched
        torch.testing.assert_close(batched, expected, atol=tol(x), rtol=0)

    check()


GRASSMANN = Grassmann()


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_log_inverts_exp(dtype, device):
    # Below pi/2 in norm, the geodesic is the unique shortest one, so log(exp(u)) = u.
    @given(pairs(GRASSMANN, dtype, device, norm=(0.0, 1.5)))
    def check(case):
        x, u = case
        recovered = GRASSMANN.logmap(x, GRASSMANN.expmap(x, u))
        torch.testing.assert_close(recovered, u, atol=100 * tol(x), rtol=0)

    check()


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_dist_along_geodesic(dtype, device):
    @given(pairs(GRASSMANN, dtype, device, norm=(0.0, 1.0)), st.floats(0.0, 1.5))
    def check(case, t):
        x, u = case
        y = GRASSMANN.expmap(x, t * u)
        expected = t * torch.linalg.matrix_norm(u)
        torch.testing.assert_close(GRASSMANN.dist(x, y), expected, atol=100 * tol(x), rtol=0)

    check()


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_dist_symmetric_and_basis_invariant(dtype, device):
    @given(pairs(GRASSMANN, dtype, device, max_batch_dims=0), SEEDS, SEEDS)
    def check(case, seed_y, seed_q):
        x, _ = case
        y = GRASSMANN.random(
            *x.shape, dtype=dtype, device=device, generator=torch.Generator().manual_seed(seed_y)
        )
        rotation = random_orthogonal(x.shape[-1], seed_q, x)

        distance = GRASSMANN.dist(x, y)
        atol = 100 * tol(x)
        torch.testing.assert_close(GRASSMANN.dist(y, x), distance, atol=atol, rtol=0)
        torch.testing.assert_close(GRASSMANN.dist(x @ rotation, y), distance, atol=atol, rtol=0)
        assert float(distance) <= math.pi / 2 * math.sqrt(x.shape[-1]) + atol

    check()
