"""Grassmann manifold: quotient invariance, small angles, distances and checks."""

import math

import geoopt
import pytest
import torch

from grassmann_nn import Grassmann, Stiefel, principal_angles
from grassmann_nn.manifolds import grassmann as grassmann_module
from grassmann_nn.testing import tolerance

MANIFOLD = Grassmann()


def orthonormal(n, p, seed=0, dtype=torch.float64):
    generator = torch.Generator().manual_seed(seed)
    return torch.linalg.qr(torch.randn(n, p, generator=generator, dtype=torch.float64))[0].to(dtype)


def rotation(p, seed=1):
    generator = torch.Generator().manual_seed(seed)
    return torch.linalg.qr(torch.randn(p, p, generator=generator, dtype=torch.float64))[0]


def rotate_first_column(x, theta, seed=2):
    generator = torch.Generator().manual_seed(seed)
    w = torch.randn(x.shape[0], generator=generator, dtype=x.dtype)
    w = w - x @ (x.T @ w)
    w = w / w.norm()
    y = x.clone()
    y[:, 0] = math.cos(theta) * x[:, 0] + math.sin(theta) * w
    return y


@pytest.mark.parametrize("sign_or_rotation", ["negated", "rotated"])
def test_quotient_same_subspace_distance_zero(sign_or_rotation):
    # Field case: X and -X, and X and XQ, are the same point of Gr(256, 8).
    x = orthonormal(256, 8)
    y = -x if sign_or_rotation == "negated" else x @ rotation(8)

    assert float(MANIFOLD.dist(x, y)) < 1e-6
    assert float(MANIFOLD.logmap(x, y).abs().max()) < 1e-6
    torch.testing.assert_close(x @ x.T, y @ y.T, atol=1e-12, rtol=0)


@pytest.mark.parametrize("theta", [1e-2, 1e-4, 1e-6])
def test_small_angle_distance_accurate(theta):
    # Field case: an arccos of the cosines returns 0 or NaN at these angles in float64.
    x = orthonormal(256, 8)
    y = rotate_first_column(x, theta)

    distance = float(MANIFOLD.dist(x, y))

    assert abs(distance - theta) <= 1e-3 * theta


def test_distance_gradient_finite_at_zero():
    x = orthonormal(256, 8)
    point = x.clone().requires_grad_()

    distance = MANIFOLD.dist(point, x)
    distance.backward()

    assert distance.item() < 1e-6
    assert torch.isfinite(point.grad).all()


def test_orthogonal_subspaces_distance_half_pi():
    eye = torch.eye(10, dtype=torch.float64)
    x, y = eye[:, :3], eye[:, 3:6]

    torch.testing.assert_close(principal_angles(x, y), torch.full((3,), math.pi / 2, dtype=x.dtype))
    assert MANIFOLD.dist(x, y).item() == pytest.approx(math.pi / 2 * math.sqrt(3), rel=1e-12)


def test_logmap_finite_on_cut_locus():
    eye = torch.eye(6, dtype=torch.float64)
    log = MANIFOLD.logmap(eye[:, :2], eye[:, 2:4])
    assert torch.isfinite(log).all()
    assert torch.linalg.matrix_norm(log).item() == pytest.approx(math.pi / 2 * math.sqrt(2))


def test_logmap_invariant_under_basis_change():
    x = orthonormal(20, 4)
    y = orthonormal(20, 4, seed=5)
    torch.testing.assert_close(MANIFOLD.logmap(x, y @ rotation(4)), MANIFOLD.logmap(x, y))


def test_logmap_horizontal():
    x = orthonormal(20, 4)
    log = MANIFOLD.logmap(x, orthonormal(20, 4, seed=5))
    assert float((x.T @ log).abs().max()) < tolerance(torch.float64, 20)


def test_gradcheck_dist_away_from_zero():
    x = orthonormal(9, 3).requires_grad_()
    y = orthonormal(9, 3, seed=4).requires_grad_()
    assert torch.autograd.gradcheck(MANIFOLD.dist, (x, y))


def test_grassmann_gradient_horizontal_stiefel_not():
    # Field case: the Grassmann gradient has no component inside span(X); the Stiefel
    # gradient keeps the skew part of X^T G.
    x = orthonormal(256, 8)
    generator = torch.Generator().manual_seed(9)
    euclidean = torch.randn(256, 8, generator=generator, dtype=torch.float64)

    grassmann = Grassmann().egrad2rgrad(x, euclidean)
    stiefel = Stiefel().egrad2rgrad(x, euclidean)

    assert float((x.T @ grassmann).abs().max()) < 1e-6
    assert float((x.T @ stiefel).abs().max()) > 1e-2
    torch.testing.assert_close(grassmann, stiefel - x @ (x.T @ stiefel))


@pytest.mark.parametrize("shape", [(8, 8), (4, 9), (8,)])
def test_invalid_shape_names_rule(shape):
    with pytest.raises(ValueError, match=r"0 < p < n|at least 2 dimensions"):
        MANIFOLD.random(*shape)


def test_membership_reason_reports_error_and_atol():
    x = orthonormal(16, 3) * 1.01
    ok, reason = MANIFOLD.check_point_on_manifold(x, explain=True)
    assert not ok
    assert reason.startswith("max |X^T X - I| = 2.01")
    assert "exceeds atol 3.553e-14" in reason


def test_tangent_check_reports_error():
    x = orthonormal(16, 3)
    ok, reason = MANIFOLD.check_vector_on_tangent(x, x, explain=True)
    assert not ok
    assert "max |X^T U| = 1.000e+00" in reason


def test_random_is_on_manifold_and_reproducible():
    a = MANIFOLD.random(2, 30, 4, generator=torch.Generator().manual_seed(0))
    b = MANIFOLD.random(2, 30, 4, generator=torch.Generator().manual_seed(0))
    assert isinstance(a, geoopt.ManifoldTensor)
    assert MANIFOLD.check_point_on_manifold(a)
    torch.testing.assert_close(a, b, atol=0, rtol=0)


def test_random_projector_mean_is_isotropic():
    # Haar samples of Gr(6, 2): E[X X^T] = (p / n) I.
    samples = MANIFOLD.random(
        4000, 6, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1)
    )
    mean = (samples @ samples.transpose(-1, -2)).mean(0)
    torch.testing.assert_close(mean, torch.eye(6, dtype=torch.float64) / 3, atol=0.03, rtol=0)


def test_origin_is_identity_columns():
    origin = MANIFOLD.origin(3, 5, 2)
    torch.testing.assert_close(origin, torch.eye(5, 2).expand(3, 5, 2))


def test_transp_lands_in_new_horizontal_space():
    x = orthonormal(12, 3)
    y = orthonormal(12, 3, seed=6)
    v = MANIFOLD.proju(x, torch.randn(12, 3, dtype=torch.float64))
    moved = MANIFOLD.transp(x, y, v)
    assert float((y.T @ moved).abs().max()) < tolerance(torch.float64, 12)


def test_inner_is_trace():
    x = orthonormal(12, 3)
    u = MANIFOLD.proju(x, torch.randn(12, 3, dtype=torch.float64))
    v = MANIFOLD.proju(x, torch.randn(12, 3, dtype=torch.float64))
    torch.testing.assert_close(MANIFOLD.inner(x, u, v), torch.trace(u.T @ v))


def test_repr_names_retraction():
    assert "retraction='cayley'" in repr(Grassmann(retraction="cayley"))


def test_proju_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match=r"expected \(20, 3\), got \(20, 4\)"):
        MANIFOLD.proju(orthonormal(20, 3), torch.zeros(20, 4, dtype=torch.float64))


def test_principal_angles_reject_wide_frames():
    # Field case: a wide 8 x 256 pair, a layer weight in nn.Linear's orientation, failed with a
    # raw broadcasting error from inside the SVD.
    x = orthonormal(256, 8)

    with pytest.raises(ValueError, match=r"tall n x p matrices .* got shape \(8, 256\)"):
        principal_angles(x.T, x.T)


@pytest.mark.parametrize("value", [math.nan, math.inf])
@pytest.mark.parametrize("method", ["principal_angles", "dist", "logmap"])
def test_non_finite_input_named(method, value):
    # Field case: NaN reached LAPACK, whose error blamed conditioning and repeated eigenvalues.
    x = orthonormal(20, 3)
    y = x.clone()
    y[0, 0] = value
    maps = {"principal_angles": principal_angles, "dist": MANIFOLD.dist, "logmap": MANIFOLD.logmap}

    with pytest.raises(ValueError, match="y contains NaN or infinite values"):
        maps[method](x, y)


def geodesic_endpoint(x, angles, seed=3):
    """Return y whose principal angles to x are ``angles``, along a geodesic from x."""
    n, p = x.shape
    normal = orthonormal(n, 2 * p, seed=seed)
    normal = normal - x @ (x.T @ normal)
    directions = torch.linalg.qr(normal)[0][:, :p]
    angles = torch.as_tensor(angles, dtype=x.dtype)
    return x * torch.cos(angles) + directions * torch.sin(angles)


@pytest.mark.parametrize(
    "degrees",
    [
        [0, 0, 0, 0],
        [0.01, 0.01, 0.02, 0.02],
        [20, 20, 20, 20],
        [10, 30, 50, 70],
        [77.1, 77.1, 77.1, 77.1],
        [45, 45, 45, 85],
        [30, 30, 60, 85],
        [10, 10, 20, 85],
        [85, 85, 85, 85],
        [30, 30, 30, 78],
        [0, 0, 80, 80],
        [20, 40, 60, 89.8],
    ],
)
def test_gradcheck_logmap(degrees):
    # Field case: the SVD form gave wrong but finite gradients, or NaN, wherever two principal
    # angles coincide, such as at y = x. The last case is close enough to the cut locus (90
    # degrees) to take the SVD form, with distinct angles, where its gradient is right.
    x = orthonormal(20, 4)
    angles = [math.radians(angle) for angle in degrees]
    y = geodesic_endpoint(x, angles) @ rotation(4)

    assert torch.autograd.gradcheck(MANIFOLD.logmap, (x.requires_grad_(), y.requires_grad_()))


def test_logmap_gradient_finite_at_same_subspace():
    x = orthonormal(20, 4).requires_grad_()
    y = (x.detach() @ rotation(4)).requires_grad_()

    MANIFOLD.logmap(x, y).pow(2).sum().backward()

    assert torch.isfinite(x.grad).all()
    assert torch.isfinite(y.grad).all()


@pytest.mark.parametrize("angle", [1e-6, 0.1, 0.7, 1.2, 1.5, 1.56])
def test_logmap_forms_agree(angle):
    x = orthonormal(16, 4)
    y = geodesic_endpoint(x, [angle / 3, angle / 2, angle, angle]) @ rotation(4)
    overlap = x.T @ y

    by_polar = grassmann_module._logmap_polar(overlap, y - x @ overlap)
    by_svd = grassmann_module._logmap_svd(x, y)

    # The polar factor of X^T Y loses digits in proportion to 1 / cos of the largest angle.
    scale = 1 / math.cos(angle)
    torch.testing.assert_close(by_polar, by_svd, rtol=0, atol=scale * tolerance(torch.float64, 16))


def arcsine_ratio_series(sine2, terms=40):
    """Return arcsin(sqrt(s)) / sqrt(s) and its derivative from 40 terms of the Taylor series."""
    coefficients = [
        math.factorial(2 * k) / (4**k * math.factorial(k) ** 2 * (2 * k + 1)) for k in range(terms)
    ]
    ratio = sum(c * sine2**k for k, c in enumerate(coefficients))
    slope = sum(k * c * sine2 ** (k - 1) for k, c in enumerate(coefficients) if k > 0)
    return ratio, slope


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_arcsine_ratio_series_meets_closed_form(dtype):
    # On both sides of the switch, the ratio is within a few units of roundoff of a long
    # series. The derivative's closed form cancels digits, about 1 / (2 * bound) of them.
    bound = grassmann_module._SERIES_BELOW[dtype]
    sine2 = torch.tensor([bound * 0.999, bound * 1.001], dtype=torch.float64)
    expected, expected_slope = arcsine_ratio_series(sine2)
    eps = torch.finfo(dtype).eps

    ratio = grassmann_module._arcsine_ratio(sine2.to(dtype)).double()
    slope = grassmann_module._arcsine_ratio_derivative(sine2.to(dtype)).double()

    torch.testing.assert_close(ratio, expected, rtol=4 * eps, atol=0)
    torch.testing.assert_close(slope, expected_slope, rtol=4 * eps / bound, atol=0)
