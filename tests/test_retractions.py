"""Retraction functions: registry, input checks, gradients and the field cases on retractions."""

import geoopt
import pytest
import torch

from grassmann_nn import retractions
from grassmann_nn.retractions import RETRACTIONS, get_retraction, polar_factor
from grassmann_nn.testing import tolerance

NAMES = ["polar", "qr", "cayley", "exp"]
FUNCTIONS = {name: RETRACTIONS[name] for name in NAMES} | {"stiefel_exp": retractions.stiefel_exp}


def orthonormal(n, p, dtype=torch.float64, seed=0, batch=()):
    generator = torch.Generator().manual_seed(seed)
    gaussian = torch.randn(*batch, n, p, generator=generator, dtype=torch.float64)
    return torch.linalg.qr(gaussian)[0].to(dtype)


def horizontal(x, scale=1.0, seed=1):
    generator = torch.Generator().manual_seed(seed)
    g = torch.randn(x.shape, generator=generator, dtype=torch.float64).to(x.dtype)
    return scale * (g - x @ (x.transpose(-1, -2) @ g))


def orthonormality_error(y):
    eye = torch.eye(y.shape[-1], dtype=torch.float64)
    y = y.detach().double()
    return float((y.transpose(-1, -2) @ y - eye).abs().max())


def test_registry_names():
    assert set(RETRACTIONS) == {"polar", "svd", "qr", "cayley", "exp"}
    assert get_retraction("svd") is get_retraction("polar")


def test_non_string_name_raises_type_error():
    with pytest.raises(TypeError, match=r"by name, a str, got list \['qr'\]"):
        get_retraction(["qr"])


@pytest.mark.parametrize("name", ["polar", "exp"])
def test_second_derivative_raises_clear_error(name):
    # The polar factor's backward is first-order only; a Hessian-vector product must fail
    # loudly instead of silently dropping the second-order term.
    x = orthonormal(10, 3)
    u = horizontal(x, scale=0.1).requires_grad_()
    (gradient,) = torch.autograd.grad((RETRACTIONS[name](x, u) ** 3).sum(), u)
    assert torch.isfinite(gradient).all()
    with pytest.raises(RuntimeError, match="second derivatives"):
        torch.autograd.grad((RETRACTIONS[name](x, u) ** 3).sum(), u, create_graph=True)


@pytest.mark.parametrize("name", ["qr", "cayley"])
def test_second_derivative_matches_finite_differences(name):
    x = orthonormal(8, 2)
    u = horizontal(x, scale=0.1).requires_grad_()
    assert torch.autograd.gradgradcheck(lambda step: RETRACTIONS[name](x, step), (u,))


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match="unknown retraction 'householder'.*'polar'.*'cayley'"):
        get_retraction("householder")


@pytest.mark.parametrize("name", NAMES)
def test_shape_mismatch_raises(name):
    x = orthonormal(10, 3)
    with pytest.raises(ValueError, match=r"expected \(10, 3\), got \(10, 4\)"):
        RETRACTIONS[name](x, torch.zeros(10, 4, dtype=x.dtype))


@pytest.mark.parametrize("name", NAMES)
def test_wide_point_raises(name):
    x = torch.zeros(3, 10)
    with pytest.raises(ValueError, match="0 < p <= n, got n = 3, p = 10"):
        RETRACTIONS[name](x, x)


@pytest.mark.parametrize("name", NAMES)
def test_integer_dtype_raises_type_error(name):
    x = torch.eye(6, 2, dtype=torch.int64)
    with pytest.raises(TypeError, match="torch.int64"):
        RETRACTIONS[name](x, x)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_step_raises(name, bad):
    x = orthonormal(12, 3)
    u = horizontal(x)
    u[4, 1] = bad
    with pytest.raises(FloatingPointError, match=f"{name} retraction.*u finite: False"):
        RETRACTIONS[name](x, u)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("scale", [1e30, 3e38])
def test_huge_step_raises_or_stays_orthonormal(name, scale):
    # An exploding learning rate gives a finite but huge step: the result is either a valid
    # point or a FloatingPointError, never NaN and never a raw LinAlgError.
    x = orthonormal(20, 3, dtype=torch.float32)
    u = horizontal(orthonormal(20, 3), scale=scale / 10).float()
    try:
        y = RETRACTIONS[name](x, u)
    except FloatingPointError as error:
        assert f"the {name} retraction" in str(error)
        return
    assert orthonormality_error(y) < tolerance(torch.float32, 20)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("name", NAMES)
def test_polar_gradient_at_identity_columns(name, dtype):
    # Field case: at x = first 8 columns of I_256 with a zero step, every singular value of
    # x + u equals 1, and a naive U @ Vh backward divides by their zero gaps.
    x = torch.eye(256, 8, dtype=dtype, requires_grad=True)
    u = torch.zeros(256, 8, dtype=dtype, requires_grad=True)
    weights = torch.linspace(-1, 1, 256 * 8, dtype=dtype).reshape(256, 8)

    (RETRACTIONS[name](x, u) * weights).sum().backward()

    assert torch.isfinite(x.grad).all()
    assert torch.isfinite(u.grad).all()


@pytest.mark.parametrize("name", list(FUNCTIONS))
def test_gradcheck_at_zero_step(name):
    x = torch.eye(9, 3, dtype=torch.float64, requires_grad=True)
    u = torch.zeros(9, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(FUNCTIONS[name], (x, u))


@pytest.mark.parametrize("name", list(FUNCTIONS))
@pytest.mark.parametrize("shape", [(9, 3), (4, 3), (2, 5, 2)], ids=["tall", "square-ish", "batch"])
def test_gradcheck_at_random_step(name, shape):
    x = orthonormal(shape[-2], shape[-1], batch=shape[:-2]).requires_grad_()
    generator = torch.Generator().manual_seed(3)
    u = (0.7 * torch.randn(shape, generator=generator, dtype=torch.float64)).requires_grad_()
    assert torch.autograd.gradcheck(FUNCTIONS[name], (x, u))


@pytest.mark.parametrize("name", ["polar", "qr"])
def test_gradient_finite_at_large_scale(name):
    # Only the scale-invariant retractions accept a point that is not orthonormal; 1e18 squared
    # overflows float32, so this fails unless the input is normalized before the Gram matrix.
    x = (orthonormal(64, 4, dtype=torch.float32) * 1e18).requires_grad_()
    u = torch.zeros(64, 4, requires_grad=True)

    y = RETRACTIONS[name](x, u)
    (y * torch.linspace(-1, 1, 256).reshape(64, 4)).sum().backward()

    assert orthonormality_error(y) < tolerance(torch.float32, 64)

    assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize("name", NAMES)
def test_qr_sign_zero_step_returns_negated_identity(name):
    # Field case: x = -(first 8 columns of I_256), tangent 0.
    x = -torch.eye(256, 8)
    y = RETRACTIONS[name](x, torch.zeros_like(x))
    assert float((y - x).abs().max()) < 1e-6


@pytest.mark.parametrize("name", NAMES)
def test_qr_sign_zero_step_keeps_alternating_columns(name):
    signs = torch.tensor([(-1.0) ** j for j in range(8)])
    x = orthonormal(256, 8, dtype=torch.float32) * signs
    y = RETRACTIONS[name](x, torch.zeros_like(x))
    assert float((y - x).abs().max()) < 1e-6


@pytest.mark.parametrize("name", NAMES)
def test_small_step_moves_little(name):
    x = -torch.eye(256, 8, dtype=torch.float64)
    u = horizontal(x, scale=1e-6)
    y = RETRACTIONS[name](x, u)
    assert float((y - x).abs().max()) <= 2 * float(u.abs().max())


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["float16", "bfloat16"])
@pytest.mark.parametrize("name", NAMES)
def test_low_precision_point(name, dtype):
    # Field case: 16-bit points go through float32 inside and come back in their own dtype,
    # orthonormal to the dtype's resolution.
    x = orthonormal(256, 8).to(dtype)
    u = horizontal(orthonormal(256, 8), scale=0.01).to(dtype)

    y = RETRACTIONS[name](x, u)

    assert y.dtype == dtype
    assert orthonormality_error(y) <= 4 * torch.finfo(dtype).eps


def test_polar_rank_deficient_falls_back_to_svd():
    a = torch.zeros(10, 3, dtype=torch.float64)
    a[0, 0] = 1.0
    a[1, 1] = 1.0
    a[:, 2] = a[:, 1]

    y = polar_factor(a)

    assert orthonormality_error(y) < tolerance(torch.float64, 10)


def test_polar_all_zero_input_returns_orthonormal():
    y = polar_factor(torch.zeros(7, 2))
    assert orthonormality_error(y) < tolerance(torch.float32, 7)


def test_polar_ill_conditioned_refines():
    x = orthonormal(200, 6, dtype=torch.float32)
    u = horizontal(x, scale=20.0).float()
    assert orthonormality_error(RETRACTIONS["polar"](x, u)) < tolerance(torch.float32, 200)


def test_polar_matches_svd():
    x = orthonormal(40, 5)
    u = horizontal(x, scale=0.8)
    left, _, right_h = torch.linalg.svd(x + u, full_matrices=False)
    torch.testing.assert_close(RETRACTIONS["polar"](x, u), left @ right_h)


@pytest.mark.parametrize("n, p", [(40, 5), (8, 5), (6, 6)], ids=["low-rank", "dense", "square"])
def test_cayley_matches_dense_formula(n, p):
    x = orthonormal(n, p)
    generator = torch.Generator().manual_seed(7)
    g = torch.randn(n, p, generator=generator, dtype=torch.float64)
    u = g - x @ ((x.T @ g + g.T @ x) / 2)

    half = torch.eye(n, dtype=torch.float64) - x @ x.T / 2
    skew = half @ u @ x.T - x @ u.T @ half
    eye = torch.eye(n, dtype=torch.float64)
    expected = torch.linalg.solve(eye - skew / 2, (eye + skew / 2) @ x)

    torch.testing.assert_close(RETRACTIONS["cayley"](x, u), expected)


def test_grassmann_exp_matches_svd_formula():
    x = orthonormal(30, 4)
    u = horizontal(x, scale=0.9)
    left, s, right_h = torch.linalg.svd(u, full_matrices=False)
    expected = x @ right_h.T @ torch.diag(torch.cos(s)) @ right_h
    expected = expected + left @ torch.diag(torch.sin(s)) @ right_h
    torch.testing.assert_close(RETRACTIONS["exp"](x, u), expected)


@pytest.mark.parametrize("scale", [0.5, 4.0])
def test_stiefel_exp_matches_geoopt(scale):
    x = orthonormal(30, 4)
    manifold = geoopt.EuclideanStiefelExact()
    u = manifold.proju(x, horizontal(x, scale=1.0) + x @ torch.randn(4, 4, dtype=torch.float64))
    u = u / torch.linalg.matrix_norm(u) * scale
    torch.testing.assert_close(retractions.stiefel_exp(x, u), manifold.expmap(x, u))


def test_exp_large_step_stays_orthonormal():
    x = orthonormal(50, 4, dtype=torch.float32)
    u = horizontal(x, scale=100.0).float()
    assert orthonormality_error(RETRACTIONS["exp"](x, u)) < tolerance(torch.float32, 50)


@pytest.mark.parametrize("name", NAMES)
def test_batched_matches_loop(name):
    x = orthonormal(12, 3, batch=(2, 3))
    u = horizontal(x, scale=0.5)
    batched = RETRACTIONS[name](x, u)
    for i in range(2):
        for j in range(3):
            torch.testing.assert_close(batched[i, j], RETRACTIONS[name](x[i, j], u[i, j]))


@pytest.mark.parametrize("name", NAMES)
def test_vmap_raises_item_error(name):
    # The module docstring sends vmap users to batch dimensions. When vmap starts to work, this
    # test fails, and the NOTE there should go.
    x = orthonormal(12, 3, batch=(2,))
    u = horizontal(x, scale=0.5)

    with pytest.raises(RuntimeError, match=r"\.item\(\)"):
        torch.vmap(RETRACTIONS[name])(x, u)


@pytest.mark.parametrize("norm", [0.01, 0.03, 0.3])
def test_lone_matrix_exp_accurate(norm):
    # torch.linalg.matrix_exp loses digits on one small-norm float64 matrix; the wrapper must not.
    import scipy.linalg

    from grassmann_nn._linalg import matrix_exp

    generator = torch.Generator().manual_seed(0)
    for _ in range(20):
        a = torch.randn(4, 4, generator=generator, dtype=torch.float64)
        a = a / torch.linalg.matrix_norm(a) * norm
        expected = torch.from_numpy(scipy.linalg.expm(a.numpy()))
        torch.testing.assert_close(matrix_exp(a), expected, atol=1e-15, rtol=0)


@pytest.mark.parametrize("name", [*NAMES, "stiefel_exp"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_point_raises_naming_input(name, bad):
    # Only the result is checked on success, so the input must reach it. The message still
    # names the input that was not finite.
    x = orthonormal(12, 3)
    x[7, 2] = bad
    with pytest.raises(FloatingPointError, match="x finite: False, u finite: True"):
        FUNCTIONS[name](x, horizontal(orthonormal(12, 3)))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_square_qr_non_finite_last_column_raises(bad):
    # The last column of a square matrix changes R but not Q, so only the signs read from R
    # can carry the non-finite value to the result.
    x = orthonormal(6, 6)
    u = torch.zeros_like(x)
    u[2, 5] = bad
    with pytest.raises(FloatingPointError, match="u finite: False"):
        RETRACTIONS["qr"](x, u)


@pytest.mark.parametrize("batch", [(), (3,)], ids=["single", "batch"])
def test_cayley_block_formula_matches_product_formula(batch):
    x = orthonormal(40, 5, batch=batch)
    generator = torch.Generator().manual_seed(11)
    u = 0.8 * torch.randn(x.shape, generator=generator, dtype=torch.float64)

    projected = u - x @ (x.mT @ u) / 2
    left = torch.cat([projected, x], dim=-1)
    right = torch.cat([x, -projected], dim=-1)
    kernel = torch.eye(10, dtype=torch.float64) - right.mT @ left / 2
    expected = x + left @ torch.linalg.solve(kernel, right.mT @ x)

    torch.testing.assert_close(RETRACTIONS["cayley"](x, u), expected, atol=1e-13, rtol=0)


@pytest.mark.parametrize("name", ["polar", "exp", "stiefel_exp"])
@pytest.mark.parametrize("scale", [0.1, 2.0, 20.0])
def test_no_grad_path_matches_grad_path(name, scale):
    # Without a gradient to record, polar skips the rescaling, and the exponential maps use
    # eigh and a Newton-Schulz step. The result must be the same point.
    x = orthonormal(30, 4)
    u = horizontal(x, scale=scale / 4)
    fast = FUNCTIONS[name](x, u)
    recorded = FUNCTIONS[name](x, u.clone().requires_grad_())

    torch.testing.assert_close(fast, recorded.detach(), atol=1e-12, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_grassmann_exp_vertical_step_stays_orthonormal(dtype):
    # A step along x itself leaves x + sinc(1) x far from orthonormal, which the Newton-Schulz
    # step cannot fix, so the full polar factor must run.
    x = orthonormal(20, 3, dtype=dtype)
    y = RETRACTIONS["exp"](x, x.clone())
    assert orthonormality_error(y) < tolerance(dtype, 20)
    torch.testing.assert_close(y, x, atol=tolerance(dtype, 20), rtol=0)


@pytest.mark.parametrize("scale", [1e-20, 1e18])
def test_polar_no_grad_extreme_scale(scale):
    # Out of the safe range of the unscaled Gram matrix, the rescaled route must take over.
    a = orthonormal(50, 4, dtype=torch.float32) * scale
    y = polar_factor(a)
    assert orthonormality_error(y) < tolerance(torch.float32, 50)
    torch.testing.assert_close(y, a / scale, atol=1e-5, rtol=0)


def _orthogonal_and_skew_step(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    x, _ = torch.linalg.qr(torch.randn(n, n, dtype=torch.float64, generator=generator))
    a = torch.randn(n, n, dtype=torch.float64, generator=generator)
    a = 0.3 * (a - a.T)
    return x, x @ a, a


@pytest.mark.parametrize("n", [1, 2, 5, 33])
def test_square_cayley_equals_full_cayley_formula(n):
    x, u, _ = _orthogonal_and_skew_step(n, seed=n)
    projected = u - x @ (x.T @ u) / 2
    skew = projected @ x.T - x @ projected.T
    eye = torch.eye(n, dtype=torch.float64)
    expected = torch.linalg.solve(eye - skew / 2, x + skew @ x / 2)

    torch.testing.assert_close(retractions.cayley(x, u), expected, rtol=0, atol=1e-13)


@pytest.mark.parametrize("n", [1, 2, 5, 33])
def test_square_stiefel_exp_is_orthogonal_group_geodesic(n):
    x, u, a = _orthogonal_and_skew_step(n, seed=n)

    torch.testing.assert_close(
        retractions.stiefel_exp(x, u), x @ torch.linalg.matrix_exp(a), rtol=0, atol=1e-12
    )
