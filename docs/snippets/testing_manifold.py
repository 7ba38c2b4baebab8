"""Property tests for a manifold of your own, with grassmann_nn.testing and hypothesis."""

# The docs show each section on its own, so each section imports what it uses.
# ruff: noqa: E402

# --8<-- [start:manifold]
import geoopt
import torch


class Oblique(geoopt.Manifold):
    """Matrices of shape (..., n, p) whose columns have unit Euclidean norm."""

    name = "Oblique"
    ndim = 2
    reversible = False

    def _check_point_on_manifold(self, x, *, atol=1e-5, rtol=1e-5):
        error = float((torch.linalg.vector_norm(x, dim=-2) - 1).abs().max())
        if error <= atol:
            return True, None
        return False, f"max |norm of a column - 1| = {error:.3e} exceeds atol {atol:.3e}"

    def _check_vector_on_tangent(self, x, u, *, atol=1e-5, rtol=1e-5):
        error = float((x * u).sum(dim=-2).abs().max())
        if error <= atol:
            return True, None
        return False, f"max |<x_j, u_j>| = {error:.3e} exceeds atol {atol:.3e}"

    def projx(self, x):
        return x / torch.linalg.vector_norm(x, dim=-2, keepdim=True)

    def proju(self, x, u):
        return u - x * (x * u).sum(dim=-2, keepdim=True)

    egrad2rgrad = proju

    def inner(self, x, u, v=None, *, keepdim=False):
        v = u if v is None else v
        return (u * v).sum(dim=(-2, -1), keepdim=keepdim)

    def retr(self, x, u):
        return self.projx(x + u)

    def expmap(self, x, u):
        norm = torch.linalg.vector_norm(u, dim=-2, keepdim=True)
        safe_norm = torch.where(norm > 0, norm, torch.ones_like(norm))
        return x * torch.cos(norm) + u * (torch.sin(norm) / safe_norm)


# --8<-- [end:manifold]


# --8<-- [start:tests]
from hypothesis import given, settings

from grassmann_nn.testing import point_and_tangent, points, shapes, tolerance

manifold = Oblique()
# deadline=None because the first example pays for torch's warm-up.
checks = settings(max_examples=25, deadline=None)


@checks
@given(point_and_tangent(manifold, n=(2, 12), p=(1, 6), norm=(0.0, 3.0)))
def test_retraction_stays_on_manifold(case):
    x, u = case
    y = manifold.retr(x, u)
    atol = tolerance(y.dtype, y.shape[-2])
    ok, reason = manifold.check_point_on_manifold(y, explain=True, atol=atol)
    assert ok, reason


@checks
@given(points(manifold, shapes(manifold, n=(2, 12), p=(1, 6))))
def test_zero_step_returns_point(x):
    y = manifold.retr(x, torch.zeros_like(x))
    torch.testing.assert_close(y, x, atol=tolerance(x.dtype, x.shape[-2]), rtol=0)


@checks
@given(point_and_tangent(manifold, norm=(1.0, 1.0)))
def test_retraction_is_first_order(case):
    # R_x(t u) = x + t u + O(t^2), so a tenfold smaller t gives an about hundredfold smaller
    # remainder. The test requires at least fiftyfold.
    x, u = case
    remainders = [
        torch.linalg.vector_norm(manifold.retr(x, t * u) - x - t * u) for t in (1e-2, 1e-3)
    ]
    assert remainders[1] <= remainders[0] / 50 + tolerance(x.dtype, x.shape[-2])


@checks
@given(point_and_tangent(manifold, norm=(0.0, 1.0)))
def test_retraction_is_second_order(case):
    # A second-order retraction follows the geodesic up to O(t^3).
    x, u = case
    t = 1e-3
    gap = torch.linalg.vector_norm(manifold.expmap(x, t * u) - manifold.retr(x, t * u))
    assert gap <= 10 * t**3 + tolerance(x.dtype, x.shape[-2])


@checks
@given(point_and_tangent(manifold, norm=(0.0, 1.0)))
def test_tangent_projection_removes_normal_part(case):
    # u is tangent at x and x itself is normal there, so projecting u + x gives back u.
    x, u = case
    atol = tolerance(x.dtype, x.shape[-2])
    projected = manifold.proju(x, u + x)
    torch.testing.assert_close(projected, u, atol=atol, rtol=0)
    assert manifold.check_vector_on_tangent(x, projected, atol=atol)


# --8<-- [end:tests]


test_retraction_stays_on_manifold()
test_zero_step_returns_point()
test_retraction_is_first_order()
test_retraction_is_second_order()
test_tangent_projection_removes_normal_part()
print("all properties hold")
