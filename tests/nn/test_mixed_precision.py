"""Mixed precision and torch.compile with GrassmannLinear and RiemannianSGD.

Covers autocast, GradScaler, float16 and bfloat16 parameters, and compiled forward, backward
and optimizer steps.
"""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from grassmann_nn import GrassmannLinear, RiemannianSGD, retractions
from grassmann_nn.manifolds import Grassmann
from grassmann_nn.nn import orthonormality_error
from grassmann_nn.testing import tolerance

IN_FEATURES = 64
OUT_FEATURES = 8
NUM_CLASSES = 3
BATCH_SIZE = 128
STEPS = 10
LOW_PRECISION = [torch.bfloat16, torch.float16]


def make_model(device: torch.device, dtype: torch.dtype = torch.float32, retraction="polar"):
    torch.manual_seed(0)
    return nn.Sequential(
        GrassmannLinear(
            IN_FEATURES, OUT_FEATURES, retraction=retraction, device=device, dtype=dtype
        ),
        nn.Tanh(),
        nn.Linear(OUT_FEATURES, NUM_CLASSES, device=device, dtype=dtype),
    )


def make_batch(device: torch.device, dtype: torch.dtype = torch.float32):
    generator = torch.Generator().manual_seed(1)
    inputs = torch.randn(BATCH_SIZE, IN_FEATURES, generator=generator)
    labels = (inputs[:, :NUM_CLASSES] * 3).argmax(dim=1)
    return inputs.to(device, dtype), labels.to(device)


def weight_error(model: nn.Module) -> float:
    return orthonormality_error(model)["0.weight"]


def snapshot(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    """Return copies of the parameters and momentum buffers, by parameter name."""
    tensors = {}
    for name, param in model.named_parameters():
        tensors[name] = param.detach().clone()
        buffer = optimizer.state.get(param, {}).get("momentum_buffer")
        if buffer is not None:
            tensors[name + ".momentum_buffer"] = buffer.clone()
    return tensors


def assert_bit_identical(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]):
    assert before.keys() == after.keys()
    for name, tensor in before.items():
        assert torch.equal(tensor, after[name]), name


def train_autocast(model, optimizer, inputs, labels, dtype, *, step_inside: bool) -> list[float]:
    losses = []
    for _ in range(STEPS):
        optimizer.zero_grad()
        with torch.autocast(inputs.device.type, dtype=dtype):
            logits = model(inputs)
            loss = F.cross_entropy(logits, labels)
            assert logits.dtype == dtype
            if step_inside:
                loss.backward()
                optimizer.step()
        if not step_inside:
            loss.backward()
            optimizer.step()
        losses.append(float(loss.detach()))
    return losses


# Autocast with float32 parameters.


@pytest.mark.parametrize("dtype", LOW_PRECISION, ids=str)
def test_autocast_trains_orthonormal_weight(device, dtype):
    model = make_model(device)
    optimizer = RiemannianSGD(model.parameters(), lr=0.5, momentum=0.9)
    inputs, labels = make_batch(device)

    losses = train_autocast(model, optimizer, inputs, labels, dtype, step_inside=False)

    assert model[0].weight.dtype == torch.float32
    assert model[0].weight.grad.dtype == torch.float32
    assert losses[-1] < losses[0]
    assert weight_error(model) <= tolerance(torch.float32, IN_FEATURES)


@pytest.mark.parametrize("dtype", LOW_PRECISION, ids=str)
def test_step_inside_autocast_matches_outside(device, dtype):
    inside, outside = make_model(device), make_model(device)
    inputs, labels = make_batch(device)

    for model, step_inside in ((inside, True), (outside, False)):
        optimizer = RiemannianSGD(model.parameters(), lr=0.5, momentum=0.9)
        train_autocast(model, optimizer, inputs, labels, dtype, step_inside=step_inside)

    for (name, first), second in zip(inside.named_parameters(), outside.parameters(), strict=True):
        assert torch.equal(first, second), name


@pytest.mark.parametrize("name", ["polar", "qr", "cayley", "exp"])
def test_retraction_ignores_autocast(device, name):
    manifold = Grassmann()
    point = manifold.random(IN_FEATURES, OUT_FEATURES, device=device)
    step = manifold.proju(point, 0.1 * torch.randn_like(point))
    retraction = retractions.get_retraction(name)

    expected = retraction(point, step)
    with torch.autocast(device.type, dtype=torch.bfloat16):
        result = retraction(point, step)

    assert result.dtype == torch.float32
    assert torch.equal(result, expected)


# float16 and bfloat16 parameters.


@pytest.mark.parametrize("retraction", ["polar", "qr", "cayley", "exp"])
@pytest.mark.parametrize("dtype", LOW_PRECISION, ids=str)
def test_low_precision_parameters_stay_orthonormal(device, dtype, retraction):
    model = make_model(device, dtype, retraction)
    optimizer = RiemannianSGD(model.parameters(), lr=0.5, momentum=0.9)
    inputs, labels = make_batch(device, dtype)

    losses = []
    for _ in range(STEPS):
        optimizer.zero_grad()
        loss = F.cross_entropy(model(inputs), labels)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))

    weight = model[0].weight
    assert weight.dtype == dtype
    assert optimizer.state[weight]["momentum_buffer"].dtype == dtype
    assert losses[-1] < losses[0]
    assert weight_error(model) <= tolerance(dtype, IN_FEATURES)
    # Rounding the entries of an exactly orthonormal matrix to a precision with machine epsilon
    # eps moves each entry of W W^T by at most about eps, by the Cauchy-Schwarz inequality.
    assert weight_error(model) <= 1.5 * torch.finfo(dtype).eps


# GradScaler.


def scaled_step(model, optimizer, scaler, inputs, labels, *, poison=False, clip=False):
    """Run one GradScaler step under float16 autocast; ``poison`` puts inf into a gradient."""
    optimizer.zero_grad()
    with torch.autocast(inputs.device.type, dtype=torch.float16):
        loss = F.cross_entropy(model(inputs), labels)
    scaler.scale(loss).backward()

    if poison:
        model[2].weight.grad[0, 0] = float("inf")
    if clip:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)

    scaler.step(optimizer)
    scaler.update()


@pytest.fixture
def scaled_training(device):
    """A float32 model with RiemannianSGD and a GradScaler, after two ordinary steps."""
    model = make_model(device)
    optimizer = RiemannianSGD(model.parameters(), lr=0.5, momentum=0.9)
    scaler = torch.amp.GradScaler(device.type, init_scale=2.0**10)
    inputs, labels = make_batch(device)

    for _ in range(2):
        scaled_step(model, optimizer, scaler, inputs, labels)
    return model, optimizer, scaler, inputs, labels


def test_grad_scaler_steps(scaled_training):
    model, optimizer, scaler, inputs, labels = scaled_training
    before = snapshot(model, optimizer)

    scaled_step(model, optimizer, scaler, inputs, labels)

    assert scaler.get_scale() == 2.0**10
    assert not torch.equal(model[0].weight, before["0.weight"])
    assert weight_error(model) <= tolerance(torch.float32, IN_FEATURES)


@pytest.mark.parametrize("clip", [False, True], ids=["step", "unscale_clip_step"])
def test_grad_scaler_skipped_step_changes_nothing(scaled_training, clip):
    model, optimizer, scaler, inputs, labels = scaled_training
    before = snapshot(model, optimizer)

    scaled_step(model, optimizer, scaler, inputs, labels, poison=True, clip=clip)

    assert scaler.get_scale() == 2.0**9
    assert_bit_identical(before, snapshot(model, optimizer))


def test_grad_scaler_unscale_then_clip(scaled_training):
    model, optimizer, scaler, inputs, labels = scaled_training
    before = snapshot(model, optimizer)

    scaled_step(model, optimizer, scaler, inputs, labels, clip=True)

    gradients = [param.grad for param in model.parameters()]
    assert float(torch.linalg.vector_norm(torch.cat([g.flatten() for g in gradients]))) <= 1.0001
    assert not torch.equal(model[0].weight, before["0.weight"])
    assert weight_error(model) <= tolerance(torch.float32, IN_FEATURES)


# torch.compile. The backends "eager" and "aot_eager" capture graphs as inductor does but
# generate no code, which keeps these tests fast.


@pytest.fixture
def fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def test_compiled_forward_backward_fullgraph(fresh_dynamo):
    device = torch.device("cpu")
    model, compiled_copy = make_model(device), make_model(device)
    compiled = torch.compile(compiled_copy, fullgraph=True, backend="aot_eager")
    inputs, labels = make_batch(device)

    for module in (model, compiled):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = F.cross_entropy(module(inputs), labels)
        loss.backward()

    for (name, param), other in zip(
        model.named_parameters(), compiled_copy.parameters(), strict=True
    ):
        torch.testing.assert_close(other.grad, param.grad, msg=name)


def test_compiled_step_stays_on_manifold(fresh_dynamo):
    device = torch.device("cpu")
    eager_model, compiled_model = make_model(device), make_model(device)
    inputs, labels = make_batch(device)

    for model, compile_step in ((eager_model, False), (compiled_model, True)):
        optimizer = RiemannianSGD(model.parameters(), lr=0.5, momentum=0.9)
        step = torch.compile(optimizer.step, backend="eager") if compile_step else optimizer.step
        for _ in range(3):
            optimizer.zero_grad()
            F.cross_entropy(model(inputs), labels).backward()
            step()

    assert weight_error(compiled_model) <= tolerance(torch.float32, IN_FEATURES)
    for (name, first), second in zip(
        eager_model.named_parameters(), compiled_model.parameters(), strict=True
    ):
        assert torch.equal(first, second), name
