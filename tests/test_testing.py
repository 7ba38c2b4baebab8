"""The public testing helpers: tolerance rule and hypothesis strategies."""

import pytest
import torch
from hypothesis import given

from grassmann_nn import Grassmann, Stiefel
from grassmann_nn.testing import point_and_tangent, points, shapes, tolerance


def test_tolerance_scales_with_dtype_and_size():
    assert tolerance(torch.float64, 100) == pytest.approx(1000 * torch.finfo(torch.float64).eps)
    assert tolerance(torch.float32, 10) > tolerance(torch.float64, 10)
    assert tolerance(torch.bfloat16, 8) > tolerance(torch.float16, 8)


def test_low_precision_tolerance_rejects_scaled_point():
    # A float16 point scaled by 1.5 is off by 1.25 in X^T X; the tolerance must reject it even
    # at n = 256, where 10 * n * eps(float16) would be 2.5.
    x = torch.linalg.qr(torch.randn(256, 8, dtype=torch.float64))[0]
    for dtype in (torch.float16, torch.bfloat16):
        assert Grassmann().check_point_on_manifold(x.to(dtype))
        assert not Grassmann().check_point_on_manifold((1.5 * x).to(dtype))
        assert tolerance(dtype, 256) < 0.1


@pytest.mark.parametrize("bad, error", [(0, ValueError), (-3, ValueError)])
def test_tolerance_rejects_bad_size(bad, error):
    with pytest.raises(error, match=f"size must be a positive integer, got {bad}"):
        tolerance(torch.float32, bad)


def test_tolerance_rejects_integer_dtype():
    with pytest.raises(TypeError, match="torch.int32"):
        tolerance(torch.int32, 4)


@given(shapes(Grassmann(), max_batch_dims=2))
def test_shapes_respect_grassmann_rule(shape):
    assert 0 < shape[-1] < shape[-2]
    assert len(shape) <= 4


@given(points(Stiefel(), (7, 3), dtype=torch.float32))
def test_points_on_manifold(x):
    assert x.shape == (7, 3)
    assert x.dtype == torch.float32
    assert Stiefel().check_point_on_manifold(x)


@given(point_and_tangent(Grassmann(), norm=(0.5, 0.5)))
def test_tangents_horizontal_with_requested_norm(case):
    x, u = case
    manifold = Grassmann()
    assert manifold.check_vector_on_tangent(x, u)
    norms = torch.linalg.matrix_norm(u)
    torch.testing.assert_close(norms, torch.full_like(norms, 0.5))
