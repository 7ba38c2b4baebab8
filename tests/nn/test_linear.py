"""Tests of GrassmannLinear and StiefelLinear: orientation, training, checkpoints, export."""

# grassmann_nn comes first because it imports geoopt with geoopt's import-time FutureWarning
# silenced, which `pytest -W error` would otherwise turn into a collection error.
import grassmann_nn  # noqa: F401

# isort: split
import copy
import io

import geoopt
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from grassmann_nn.manifolds import Grassmann, Stiefel, Transposed
from grassmann_nn.nn import GrassmannLinear, StiefelLinear, retract_
from grassmann_nn.optim import RiemannianSGD
from grassmann_nn.testing import tolerance

LAYERS = [GrassmannLinear, StiefelLinear]
LAYER_IDS = ["grassmann", "stiefel"]
RETRACTIONS = ["polar", "qr", "cayley", "exp"]


def gram_error(weight: torch.Tensor, rows: bool) -> float:
    """Return max |W W^T - I| (rows) or max |W^T W - I| (columns)."""
    w = weight.detach()
    gram = w @ w.T if rows else w.T @ w
    eye = torch.eye(gram.shape[0], dtype=w.dtype, device=w.device)
    return float((gram - eye).abs().max())


@pytest.mark.parametrize("layer_class", LAYERS, ids=LAYER_IDS)
def test_wide_layer_orientation(layer_class, device):
    layer = layer_class(256, 8, device=device)
    x = torch.randn(4, 256, device=device)

    assert layer.weight.shape == (8, 256)
    assert layer.orthonormal_rows
    assert gram_error(layer.weight, rows=True) <= tolerance(torch.float32, 256)
    assert torch.equal(layer(x), F.linear(x, layer.weight, layer.bias))


@pytest.mark.parametrize("layer_class", LAYERS, ids=LAYER_IDS)
def test_tall_layer_orientation(layer_class, device):
    layer = layer_class(8, 256, device=device)
    x = torch.randn(4, 8, device=device)

    assert layer.weight.shape == (256, 8)
    assert not layer.orthonormal_rows
    assert gram_error(layer.weight, rows=False) <= tolerance(torch.float32, 256)
    assert torch.equal(layer(x), F.linear(x, layer.weight, layer.bias))


def test_manifold_is_declared_on_the_tall_side():
    wide = GrassmannLinear(256, 8, retraction="qr")
    tall = StiefelLinear(8, 256)

    assert isinstance(wide.weight, geoopt.ManifoldParameter)
    assert isinstance(wide.weight.manifold, Transposed)
    assert isinstance(wide.weight.manifold.base, Grassmann)
    assert wide.weight.manifold.retraction == "qr"
    assert isinstance(tall.weight.manifold, Stiefel)


def test_transposed_manifold_mirrors_base():
    base = Grassmann(retraction="qr")
    manifold = Transposed(base)
    torch.manual_seed(0)
    point = base.random(16, 3, dtype=torch.float64)
    vector = base.proju(point, torch.randn(16, 3, dtype=torch.float64))
    other = base.retr(point, 0.1 * vector)

    assert torch.equal(manifold.proju(point.T, vector.T), base.proju(point, vector).T)
    assert torch.equal(manifold.retr(point.T, vector.T), base.retr(point, vector).T)
    assert torch.equal(manifold.inner(point.T, vector.T), base.inner(point, vector))
    assert torch.equal(manifold.dist(point.T, other.T), base.dist(point, other))
    assert torch.equal(
        manifold.transp(point.T, other.T, vector.T), base.transp(point, other, vector).T
    )
    assert manifold.check_point_on_manifold(point.T)
    assert not manifold.check_point_on_manifold(2 * point.T)
    assert manifold.random(3, 16).shape == (3, 16)
    assert manifold.retraction == "qr"
    assert repr(manifold) == "Transposed(Grassmann(retraction='qr')) manifold"


def test_transposed_manifold_rejects_tall_points():
    with pytest.raises(ValueError, match="transpose of x"):
        geoopt.ManifoldParameter(torch.zeros(16, 3), manifold=Transposed(Grassmann()))


def test_square_stiefel_layer_is_orthogonal():
    layer = StiefelLinear(16, 16, bias=False, dtype=torch.float64)

    assert layer.bias is None
    assert gram_error(layer.weight, rows=False) <= tolerance(torch.float64, 16)
    assert gram_error(layer.weight, rows=True) <= tolerance(torch.float64, 16)


def test_square_grassmann_layer_raises():
    with pytest.raises(ValueError, match="single point"):
        GrassmannLinear(8, 8)


@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        ((0, 8), ValueError, "in_features must be at least 1"),
        ((8, 2.0), TypeError, "out_features must be an int"),
        ((8, True), TypeError, "out_features must be an int"),
    ],
)
def test_invalid_sizes_raise(arguments, error, message):
    with pytest.raises(error, match=message):
        StiefelLinear(*arguments)


def test_integer_dtype_raises():
    with pytest.raises(TypeError, match="floating-point dtype"):
        StiefelLinear(8, 4, dtype=torch.int64)


def test_unknown_retraction_raises():
    with pytest.raises(ValueError, match="polar"):
        GrassmannLinear(8, 4, retraction="householder")


def test_reset_parameters_is_seeded_and_haar():
    torch.manual_seed(3)
    first = GrassmannLinear(64, 4)
    torch.manual_seed(3)
    second = GrassmannLinear(64, 4)
    third = GrassmannLinear(64, 4)

    assert torch.equal(first.weight, second.weight)
    assert torch.equal(first.bias, second.bias)
    assert not torch.equal(first.weight, third.weight)
    assert float(first.bias.detach().abs().max()) <= 1 / 8

    # Haar samples have no preferred direction: the mean of many samples is near 0.
    torch.manual_seed(0)
    mean = torch.stack([GrassmannLinear(64, 4).weight.detach() for _ in range(200)]).mean(0)
    assert float(mean.abs().max()) < 0.1


def test_extra_repr():
    layer = GrassmannLinear(256, 8, bias=False, retraction="cayley")

    assert repr(layer) == (
        "GrassmannLinear(in_features=256, out_features=8, bias=False, retraction='cayley', "
        "orthonormal=rows)"
    )


def test_deepcopy_is_independent():
    layer = StiefelLinear(32, 4)
    clone = copy.deepcopy(layer)

    assert isinstance(clone.weight, geoopt.ManifoldParameter)
    assert isinstance(clone.weight.manifold, Transposed)
    assert torch.equal(clone.weight, layer.weight)
    assert clone.weight.data_ptr() != layer.weight.data_ptr()
    with torch.no_grad():
        clone.weight.mul_(2)
    assert not torch.equal(clone.weight, layer.weight)


@pytest.mark.parametrize("shape", [(256, 8), (8, 256)], ids=["wide", "tall"])
def test_state_dict_matches_linear_layout(shape):
    layer = StiefelLinear(*shape)
    linear = nn.Linear(*shape)

    state = layer.state_dict()
    assert list(state) == ["weight", "bias"]
    assert {key: value.shape for key, value in state.items()} == {
        key: value.shape for key, value in linear.state_dict().items()
    }
    assert all(type(value) is torch.Tensor for value in state.values())


@pytest.mark.parametrize("layer_class", LAYERS, ids=LAYER_IDS)
def test_checkpoint_round_trip_is_exact(layer_class):
    model = nn.Sequential(layer_class(64, 4, retraction="qr"), nn.ReLU(), nn.Linear(4, 2))
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)

    restored = nn.Sequential(layer_class(64, 4, retraction="qr"), nn.ReLU(), nn.Linear(4, 2))
    restored.load_state_dict(torch.load(buffer, weights_only=True))

    for key, value in model.state_dict().items():
        assert torch.equal(restored.state_dict()[key], value), key
    assert isinstance(restored[0].weight, geoopt.ManifoldParameter)


@pytest.mark.parametrize("shape", [(64, 4), (4, 64)], ids=["wide", "tall"])
def test_loading_linear_projects_weight(shape):
    linear = nn.Linear(*shape, dtype=torch.float64)
    layer = GrassmannLinear(*shape, dtype=torch.float64)
    weight_ptr = layer.weight.data_ptr()

    layer.load_state_dict(linear.state_dict())

    manifold = layer.weight.manifold
    expected = manifold.projx(linear.weight.detach())
    torch.testing.assert_close(layer.weight.detach(), expected, rtol=0, atol=1e-12)
    assert torch.equal(layer.bias, linear.bias)
    assert layer.weight.data_ptr() == weight_ptr
    assert gram_error(layer.weight, rows=shape[1] < shape[0]) <= tolerance(torch.float64, 64)


def test_loading_with_assign_keeps_manifold_parameter():
    linear = nn.Linear(64, 4)
    layer = GrassmannLinear(64, 4)

    layer.load_state_dict(linear.state_dict(), assign=True)

    assert isinstance(layer.weight, geoopt.ManifoldParameter)
    assert isinstance(layer.weight.manifold, Transposed)
    assert layer.weight.requires_grad
    assert gram_error(layer.weight, rows=True) <= tolerance(torch.float32, 64)


def test_loading_wrong_shape_raises():
    layer = GrassmannLinear(64, 4)

    with pytest.raises(RuntimeError, match="size mismatch for weight"):
        layer.load_state_dict(nn.Linear(64, 5).state_dict())


@pytest.mark.parametrize("layer_class", [GrassmannLinear, StiefelLinear])
def test_loading_nan_weight_changes_nothing(layer_class):
    # Field case: a NaN weight failed inside the projection with advice about the gradient and
    # learning rate, though no gradient was involved.
    layer = layer_class(64, 4)
    before = copy.deepcopy(layer.state_dict())
    linear = nn.Linear(64, 4)
    with torch.no_grad():
        linear.weight[0, 0] = float("nan")

    with pytest.raises(ValueError, match=r"\(shape \(4, 64\)\) contains NaN or infinite"):
        layer.load_state_dict(linear.state_dict())

    torch.testing.assert_close(layer.weight.detach(), before["weight"], atol=0, rtol=0)
    torch.testing.assert_close(layer.bias.detach(), before["bias"], atol=0, rtol=0)


def test_to_linear_exports_plain_linear():
    layer = StiefelLinear(64, 4)
    x = torch.randn(3, 64)

    linear = layer.to_linear()

    assert type(linear) is nn.Linear
    assert type(linear.weight) is nn.Parameter
    assert linear.weight.data_ptr() != layer.weight.data_ptr()
    assert torch.equal(linear(x), layer(x))
    restored = StiefelLinear(64, 4)
    restored.load_state_dict(linear.state_dict())
    assert torch.equal(restored.weight, layer.weight)


def test_from_linear_projects_weight():
    linear = nn.Linear(4, 64, bias=False, dtype=torch.float64)

    layer = GrassmannLinear.from_linear(linear, retraction="exp")

    assert layer.bias is None
    assert layer.retraction == "exp"
    assert layer.weight.dtype == torch.float64
    assert gram_error(layer.weight, rows=False) <= tolerance(torch.float64, 64)


def regression_batch(in_features, out_features, device, dtype=torch.float32):
    """Return inputs and targets of a fixed random linear map."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(32, in_features, generator=generator, dtype=dtype).to(device)
    target = torch.randn(32, out_features, generator=generator, dtype=dtype).to(device)
    return x, target


def test_layer_training_resumes_bitwise():
    x, target = regression_batch(64, 4, "cpu")

    def train(layer, optimizer, steps):
        for _ in range(steps):
            optimizer.zero_grad()
            F.mse_loss(layer(x), target).backward()
            optimizer.step()

    torch.manual_seed(0)
    uninterrupted = GrassmannLinear(64, 4)
    train(uninterrupted, RiemannianSGD(uninterrupted.parameters(), lr=0.1, momentum=0.9), 10)

    torch.manual_seed(0)
    layer = GrassmannLinear(64, 4)
    optimizer = RiemannianSGD(layer.parameters(), lr=0.1, momentum=0.9)
    train(layer, optimizer, 5)
    checkpoint = io.BytesIO()
    torch.save({"layer": layer.state_dict(), "optimizer": optimizer.state_dict()}, checkpoint)
    checkpoint.seek(0)
    loaded = torch.load(checkpoint, weights_only=True)

    resumed = GrassmannLinear(64, 4)
    resumed.load_state_dict(loaded["layer"])
    resumed_optimizer = RiemannianSGD(resumed.parameters(), lr=0.1, momentum=0.9)
    resumed_optimizer.load_state_dict(loaded["optimizer"])
    train(resumed, resumed_optimizer, 5)

    assert torch.equal(resumed.weight, uninterrupted.weight)
    assert torch.equal(resumed.bias, uninterrupted.bias)


# Every retraction on the wide orientation, and the tall one with the retraction that drifts
# most (Cayley does not project onto the manifold).
RSGD_CASES = [
    (layer_class, retraction, (32, 4)) for layer_class in LAYERS for retraction in RETRACTIONS
] + [(layer_class, "cayley", (4, 32)) for layer_class in LAYERS]


@pytest.mark.parametrize(
    ("layer_class", "retraction", "shape"),
    RSGD_CASES,
    ids=[f"{c.__name__}-{r}-{s[0]}x{s[1]}" for c, r, s in RSGD_CASES],
)
def test_layer_stays_on_manifold_under_rsgd(layer_class, retraction, shape, device):
    torch.manual_seed(0)
    layer = layer_class(*shape, retraction=retraction, device=device)
    x, target = regression_batch(*shape, device)
    optimizer = RiemannianSGD(layer.parameters(), lr=0.05, momentum=0.9)
    rows = layer.orthonormal_rows
    losses = []

    for _ in range(100):
        optimizer.zero_grad()
        loss = F.mse_loss(layer(x), target)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())

        assert gram_error(layer.weight, rows=rows) <= tolerance(torch.float32, 32)

    assert losses[-1] < losses[0]


@pytest.mark.parametrize("layer_class", LAYERS, ids=LAYER_IDS)
def test_layer_stays_on_manifold_under_adam_and_retract(layer_class, device):
    torch.manual_seed(0)
    layer = layer_class(32, 4, device=device)
    x, target = regression_batch(32, 4, device)
    optimizer = torch.optim.Adam(layer.parameters(), lr=1e-2)
    weight_ptr = layer.weight.data_ptr()

    for _ in range(100):
        optimizer.zero_grad()
        F.mse_loss(layer(x), target).backward()
        optimizer.step()
        removed = retract_(layer)

        assert removed > tolerance(torch.float32, 32)
        assert gram_error(layer.weight, rows=True) <= tolerance(torch.float32, 32)
    assert layer.weight.data_ptr() == weight_ptr


def test_riemannian_adam_trains_grassmann_linear(device):
    torch.manual_seed(0)
    layer = GrassmannLinear(32, 4, device=device)
    x, target = regression_batch(32, 4, device)
    optimizer = geoopt.optim.RiemannianAdam(layer.parameters(), lr=1e-2)
    losses = []

    for _ in range(100):
        optimizer.zero_grad()
        loss = F.mse_loss(layer(x), target)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())

    assert losses[-1] < 0.9 * losses[0]
    assert gram_error(layer.weight, rows=True) <= tolerance(torch.float32, 32)


def test_compiled_layer_matches_eager():
    torch.manual_seed(0)
    layer = GrassmannLinear(16, 4)
    x = torch.randn(5, 16)
    compiled = torch.compile(layer, fullgraph=True)

    compiled_out = compiled(x)
    compiled_out.square().sum().backward()
    compiled_grads = [layer.weight.grad.clone(), layer.bias.grad.clone()]
    layer.zero_grad()
    eager_out = layer(x)
    eager_out.square().sum().backward()

    assert torch.equal(compiled_out, eager_out)
    assert torch.equal(compiled_grads[0], layer.weight.grad)
    assert torch.equal(compiled_grads[1], layer.bias.grad)


@pytest.mark.parametrize("layer_class", LAYERS)
def test_meta_init_then_to_empty_keeps_manifold(layer_class):
    layer = layer_class(256, 8, device="meta")
    layer.to_empty(device="cpu")

    assert isinstance(layer.weight, geoopt.ManifoldParameter)
    layer.reset_parameters()
    assert layer.weight.manifold.check_point_on_manifold(layer.weight.detach())


@pytest.mark.parametrize("layer_class", LAYERS, ids=LAYER_IDS)
@pytest.mark.parametrize("cast", ["double", "to"])
def test_finer_cast_reprojects_weight(layer_class, cast):
    # Field case: GrassmannLinear(256, 8).double() kept the float32 orthonormality error
    # (8.6e-09 in the Gram matrix), and the float64 manifold check rejected the weight.
    torch.manual_seed(0)
    layer = layer_class(256, 8)
    weight32 = layer.weight.detach().clone()

    layer = layer.double() if cast == "double" else layer.to(torch.float64)

    assert layer.weight.dtype == torch.float64
    assert isinstance(layer.weight, geoopt.ManifoldParameter)
    assert layer.weight.manifold.check_point_on_manifold(layer.weight.detach())
    assert gram_error(layer.weight, rows=True) <= tolerance(torch.float64, 256)
    assert torch.allclose(layer.weight.float(), weight32, atol=tolerance(torch.float32, 256))


@pytest.mark.parametrize("layer_class", LAYERS, ids=LAYER_IDS)
def test_coarser_cast_keeps_weight_values(layer_class):
    torch.manual_seed(0)
    layer = layer_class(256, 8, dtype=torch.float64)
    weight64 = layer.weight.detach().clone()

    layer.to("cpu")
    assert torch.equal(layer.weight.detach(), weight64)
    layer.float()
    assert torch.equal(layer.weight.detach(), weight64.float())
