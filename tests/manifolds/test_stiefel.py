"""Stiefel manifold: tangent space, geodesic and what it shares with the Grassmann manifold."""

import pytest
import torch

from grassmann_nn import Grassmann, Stiefel
from grassmann_nn.retractions import grassmann_exp, stiefel_exp
from grassmann_nn.testing import tolerance


def orthonormal(n, p, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.linalg.qr(torch.randn(n, p, generator=generator, dtype=torch.float64))[0]


def test_square_points_allowed():
    manifold = Stiefel()
    x = manifold.random(5, 5, dtype=torch.float64)
    assert manifold.check_point_on_manifold(x)


def test_wide_shape_raises():
    with pytest.raises(ValueError, match=r"0 < p <= n, got shape \(3, 5\)"):
        Stiefel().random(3, 5)


def test_exp_retraction_uses_stiefel_geodesic():
    assert Stiefel(retraction="exp")._retract is stiefel_exp
    assert Grassmann(retraction="exp")._retract is grassmann_exp


def test_tangent_projection_makes_skew_product():
    x = orthonormal(10, 4)
    u = Stiefel().proju(x, torch.randn(10, 4, dtype=torch.float64))
    product = x.T @ u
    torch.testing.assert_close(product, -product.T, atol=tolerance(torch.float64, 10), rtol=0)


def test_expmap_follows_one_geodesic():
    # Walking to Exp_x(u) and on with the geodesic's velocity there for the same time lands at
    # Exp_x(2u). The velocity is d/dt Exp_x(t u) at t = 1, by reverse-mode differentiation.
    manifold = Stiefel()
    x = orthonormal(10, 3)
    u = manifold.proju(x, torch.randn(10, 3, dtype=torch.float64)) * 0.3

    midpoint = manifold.expmap(x, u)
    time = torch.tensor(1.0, dtype=x.dtype)
    velocity = torch.autograd.functional.jacobian(lambda t: manifold.expmap(x, t * u), time)

    torch.testing.assert_close(manifold.expmap(midpoint, velocity), manifold.expmap(x, 2 * u))


def test_repr_names_retraction():
    assert repr(Stiefel(retraction="qr")) == "Stiefel(retraction='qr') manifold"
