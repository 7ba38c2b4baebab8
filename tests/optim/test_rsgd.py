"""Tests of RiemannianSGD: parity with torch.optim.SGD, manifold steps, in-place and resume."""

# grassmann_nn comes first because it imports geoopt with geoopt's import-time FutureWarning
# silenced, which `pytest -W error` would otherwise turn into a collection error.
import grassmann_nn  # noqa: F401

# isort: split
import copy
import io
import itertools

import geoopt
import pytest
import torch
from torch import nn

from grassmann_nn.manifolds import Grassmann, Stiefel
from grassmann_nn.optim import RiemannianSGD, riemannian_sgd
from grassmann_nn.testing import tolerance

# Every valid combination of (momentum, dampening, nesterov, weight_decay).
SGD_OPTIONS = [
    options
    for options in itertools.product([0.0, 0.9], [0.0, 0.3], [False, True], [0.0, 1e-2])
    if not (options[2] and (options[0] == 0 or options[1] != 0))
]


def orthonormality_error(x: torch.Tensor) -> float:
    """Return max |X^T X - I| of a matrix with (nominally) orthonormal columns."""
    eye = torch.eye(x.shape[-1], dtype=x.dtype, device=x.device)
    return float((x.T @ x - eye).abs().max())


def make_problem(seed: int = 0) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """Return a small regression model and a fixed batch."""
    generator = torch.Generator().manual_seed(seed)
    model = nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3))
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(torch.randn(param.shape, generator=generator))
    inputs = torch.randn(16, 5, generator=generator)
    targets = torch.randn(16, 3, generator=generator)
    return model, inputs, targets


def train(model: nn.Module, optimizer, inputs, targets, steps: int) -> None:
    """Run ``steps`` steps of mean squared error on one batch."""
    for _ in range(steps):
        optimizer.zero_grad()
        loss = (model(inputs) - targets).pow(2).mean()
        loss.backward()
        optimizer.step()


def make_manifold_parameter(manifold, shape, device="cpu", dtype=torch.float64, seed=0):
    """Return a manifold parameter at a random point of ``manifold``."""
    torch.manual_seed(seed)
    point = manifold.random(*shape, dtype=dtype).to(device)
    return geoopt.ManifoldParameter(point, manifold=manifold)


def quadratic_loss(weight: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Return a loss whose Euclidean gradient has a component in every direction."""
    return -(weight * target).sum() + (weight.sum(dim=0) ** 2).sum()


@pytest.mark.parametrize(
    ("momentum", "dampening", "nesterov", "weight_decay"),
    SGD_OPTIONS,
    ids=[f"mom{m}-damp{d}-nesterov{n}-wd{w}" for m, d, n, w in SGD_OPTIONS],
)
def test_plain_parameters_match_sgd_bitwise(momentum, dampening, nesterov, weight_decay):
    options = dict(
        lr=0.05,
        momentum=momentum,
        dampening=dampening,
        nesterov=nesterov,
        weight_decay=weight_decay,
    )
    model, inputs, targets = make_problem()
    reference, _, _ = make_problem()
    optimizer = RiemannianSGD(model.parameters(), **options)
    reference_optimizer = torch.optim.SGD(reference.parameters(), **options)

    for _ in range(50):
        train(model, optimizer, inputs, targets, steps=1)
        train(reference, reference_optimizer, inputs, targets, steps=1)

        for param, expected in zip(model.parameters(), reference.parameters(), strict=True):
            assert torch.equal(param, expected)


def test_maximize_matches_sgd_bitwise():
    model, inputs, targets = make_problem()
    reference, _, _ = make_problem()
    optimizer = RiemannianSGD(model.parameters(), lr=1e-3, momentum=0.5, maximize=True)
    reference_optimizer = torch.optim.SGD(
        reference.parameters(), lr=1e-3, momentum=0.5, maximize=True
    )

    train(model, optimizer, inputs, targets, steps=20)
    train(reference, reference_optimizer, inputs, targets, steps=20)

    for param, expected in zip(model.parameters(), reference.parameters(), strict=True):
        assert torch.equal(param, expected)


def test_state_dict_layout_matches_sgd():
    model, inputs, targets = make_problem()
    reference, _, _ = make_problem()
    optimizer = RiemannianSGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-3)
    reference_optimizer = torch.optim.SGD(
        reference.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-3
    )
    train(model, optimizer, inputs, targets, steps=3)
    train(reference, reference_optimizer, inputs, targets, steps=3)

    state = optimizer.state_dict()
    reference_state = reference_optimizer.state_dict()

    assert state["state"].keys() == reference_state["state"].keys()
    for index, entry in state["state"].items():
        assert entry.keys() == reference_state["state"][index].keys()
        assert torch.equal(
            entry["momentum_buffer"], reference_state["state"][index]["momentum_buffer"]
        )
    group_keys = set(state["param_groups"][0])
    assert group_keys <= set(reference_state["param_groups"][0])
    assert set(reference_state["param_groups"][0]) - group_keys == {
        "foreach",
        "fused",
        "differentiable",
    }


def test_sgd_state_dict_loads_both_ways():
    model, inputs, targets = make_problem()
    sgd = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)
    train(model, sgd, inputs, targets, steps=3)

    continued, _, _ = make_problem()
    continued.load_state_dict(model.state_dict())
    continued_sgd = torch.optim.SGD(continued.parameters(), lr=0.05, momentum=0.9, nesterov=True)
    # Optimizer.load_state_dict keeps the given tensors, so each optimizer gets its own copy.
    continued_sgd.load_state_dict(copy.deepcopy(sgd.state_dict()))

    resumed, _, _ = make_problem()
    resumed.load_state_dict(model.state_dict())
    resumed_rsgd = RiemannianSGD(resumed.parameters(), lr=0.05)
    resumed_rsgd.load_state_dict(copy.deepcopy(sgd.state_dict()))

    train(continued, continued_sgd, inputs, targets, steps=5)
    train(resumed, resumed_rsgd, inputs, targets, steps=5)
    for param, expected in zip(resumed.parameters(), continued.parameters(), strict=True):
        assert torch.equal(param, expected)

    back = torch.optim.SGD(continued.parameters(), lr=0.05)
    back.load_state_dict(resumed_rsgd.state_dict())
    assert back.param_groups[0]["nesterov"] is True
    assert back.param_groups[0]["momentum"] == 0.9


# Each manifold once, alternating heavy-ball and Nesterov momentum to keep the suite short.
MANIFOLD_CASES = [
    (geoopt.Stiefel(canonical=False), False),
    (geoopt.Sphere(), True),
    (Stiefel("polar"), True),
    (Stiefel("qr"), False),
    (Stiefel("cayley"), True),
    (Grassmann("polar"), False),
    (Grassmann("qr"), True),
    (Grassmann("cayley"), False),
    (Grassmann("exp"), True),
]


@pytest.mark.parametrize(
    ("manifold", "nesterov"),
    MANIFOLD_CASES,
    ids=[f"{m!r}-{'nesterov' if n else 'heavy-ball'}" for m, n in MANIFOLD_CASES],
)
def test_manifold_parameter_stays_on_manifold(manifold, nesterov, device):
    weight = make_manifold_parameter(manifold, (32, 4), device=device)
    target = torch.randn(32, 4, dtype=torch.float64, device=device)
    optimizer = RiemannianSGD([weight], lr=0.02, momentum=0.9, nesterov=nesterov)

    for _ in range(100):
        optimizer.zero_grad()
        quadratic_loss(weight, target).backward()
        optimizer.step()

        ok, reason = manifold.check_point_on_manifold(
            weight.detach(), explain=True, atol=tolerance(weight.dtype, 32), rtol=0
        )
        assert ok, reason
        buffer = optimizer.state[weight]["momentum_buffer"]
        assert torch.allclose(manifold.proju(weight, buffer), buffer, atol=1e-12)


def reference_riemannian_sgd(manifold, point, target, lr, momentum, steps):
    """Run heavy-ball Riemannian SGD written out step by step, as a test oracle."""
    buffer = None
    for _ in range(steps):
        x = point.detach().requires_grad_()
        quadratic_loss(x, target).backward()
        rgrad = manifold.egrad2rgrad(point, x.grad)

        buffer = rgrad.clone() if buffer is None else momentum * buffer + rgrad
        new_point = manifold.retr(point, -lr * buffer)
        buffer = manifold.transp(point, new_point, buffer)
        point = new_point
    return point, buffer


@pytest.mark.parametrize("manifold", [Grassmann(), Stiefel()], ids=["grassmann", "stiefel"])
def test_manifold_step_matches_reference(manifold):
    weight = make_manifold_parameter(manifold, (16, 3))
    target = torch.randn(16, 3, dtype=torch.float64)
    expected_point, expected_buffer = reference_riemannian_sgd(
        manifold, weight.detach().clone(), target, lr=0.05, momentum=0.8, steps=5
    )

    optimizer = RiemannianSGD([weight], lr=0.05, momentum=0.8)
    for _ in range(5):
        optimizer.zero_grad()
        quadratic_loss(weight, target).backward()
        optimizer.step()

    torch.testing.assert_close(weight.detach(), expected_point, rtol=0, atol=1e-12)
    torch.testing.assert_close(
        optimizer.state[weight]["momentum_buffer"], expected_buffer, rtol=0, atol=1e-12
    )


def test_momentum_buffer_starts_from_riemannian_gradient():
    manifold = Grassmann()
    weight = make_manifold_parameter(manifold, (16, 3))
    start = weight.detach().clone()
    target = torch.randn(16, 3, dtype=torch.float64)
    optimizer = RiemannianSGD([weight], lr=0.1, momentum=0.9, dampening=0.5)

    quadratic_loss(weight, target).backward()
    rgrad = manifold.egrad2rgrad(start, weight.grad)
    optimizer.step()

    expected = manifold.transp(start, weight.detach(), rgrad)
    buffer = optimizer.state[weight]["momentum_buffer"]
    torch.testing.assert_close(buffer, expected, rtol=0, atol=1e-12)
    assert float((weight.detach().T @ buffer).abs().max()) < 1e-12


@pytest.mark.parametrize(
    "manifold",
    [Grassmann(), Stiefel(), geoopt.Stiefel(canonical=False), geoopt.Sphere()],
    ids=["grassmann", "stiefel", "geoopt-stiefel", "geoopt-sphere"],
)
def test_weight_decay_projected_out_on_frames(manifold):
    target = torch.randn(16, 3, dtype=torch.float64)
    trajectories = []
    for weight_decay in (0.0, 0.5):
        weight = make_manifold_parameter(manifold, (16, 3))
        optimizer = RiemannianSGD([weight], lr=0.05, momentum=0.9, weight_decay=weight_decay)
        for _ in range(10):
            optimizer.zero_grad()
            quadratic_loss(weight, target).backward()
            optimizer.step()
        trajectories.append(weight.detach())

    torch.testing.assert_close(trajectories[1], trajectories[0], rtol=0, atol=1e-10)


def test_weight_decay_on_euclidean_manifold_matches_sgd():
    torch.manual_seed(0)
    start = torch.randn(6, 2, dtype=torch.float64)
    target = torch.randn(6, 2, dtype=torch.float64)
    weight = geoopt.ManifoldParameter(start.clone(), manifold=geoopt.Euclidean())
    plain = nn.Parameter(start.clone())
    optimizer = RiemannianSGD([weight], lr=0.05, momentum=0.9, weight_decay=0.5)
    reference = torch.optim.SGD([plain], lr=0.05, momentum=0.9, weight_decay=0.5)

    for _ in range(10):
        for param, opt in ((weight, optimizer), (plain, reference)):
            opt.zero_grad()
            quadratic_loss(param, target).backward()
            opt.step()

    torch.testing.assert_close(weight.detach(), plain.detach(), rtol=1e-12, atol=1e-12)


def test_step_keeps_parameter_storage():
    manifold = Grassmann()
    weight = make_manifold_parameter(manifold, (256, 8), dtype=torch.float32)
    model = nn.ParameterList([weight])
    target = torch.randn(256, 8)
    optimizer = RiemannianSGD(model.parameters(), lr=0.1, momentum=0.9)
    weight_id, weight_ptr = id(weight), weight.data_ptr()
    start = weight.detach().clone()

    optimizer.zero_grad()
    quadratic_loss(weight, target).backward()
    optimizer.step()
    buffer = optimizer.state[weight]["momentum_buffer"]
    buffer_id, buffer_ptr = id(buffer), buffer.data_ptr()
    for _ in range(2):
        optimizer.zero_grad()
        quadratic_loss(weight, target).backward()
        optimizer.step()

    assert model[0] is weight
    assert id(model[0]) == weight_id
    assert isinstance(weight, geoopt.ManifoldParameter)
    assert weight.data_ptr() == weight_ptr
    assert id(optimizer.state[weight]["momentum_buffer"]) == buffer_id
    assert optimizer.state[weight]["momentum_buffer"].data_ptr() == buffer_ptr
    assert not torch.equal(weight.detach(), start)


@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
@pytest.mark.parametrize("maximize", [False, True])
def test_step_never_writes_grad(weight_decay, maximize):
    weight = make_manifold_parameter(Stiefel(), (16, 3))
    plain = nn.Parameter(torch.randn(4, 3))
    optimizer = RiemannianSGD(
        [weight, plain], lr=0.1, momentum=0.9, weight_decay=weight_decay, maximize=maximize
    )
    for _ in range(2):
        optimizer.zero_grad()
        (weight.pow(3).sum() + plain.pow(3).sum()).backward()
        grads = [weight.grad.clone(), plain.grad.clone()]
        pointers = [weight.grad.data_ptr(), plain.grad.data_ptr()]
        optimizer.step()

        assert torch.equal(weight.grad, grads[0])
        assert torch.equal(plain.grad, grads[1])
        assert [weight.grad.data_ptr(), plain.grad.data_ptr()] == pointers


def make_resume_model() -> nn.Module:
    """Return a model with one 256 x 8 Grassmann parameter and one plain parameter."""
    model = nn.Module()
    model.basis = make_manifold_parameter(Grassmann(), (256, 8), dtype=torch.float32)
    model.scale = nn.Parameter(torch.ones(8))
    return model


def train_resume_model(model, optimizer, target, steps):
    for _ in range(steps):
        optimizer.zero_grad()
        quadratic_loss(model.basis * model.scale, target).backward()
        optimizer.step()


def test_resume_from_state_dict_is_bitwise():
    target = torch.randn(256, 8, generator=torch.Generator().manual_seed(1))
    options = dict(lr=0.05, momentum=0.9, nesterov=True)
    uninterrupted = make_resume_model()
    train_resume_model(
        uninterrupted, RiemannianSGD(uninterrupted.parameters(), **options), target, 10
    )

    model = make_resume_model()
    optimizer = RiemannianSGD(model.parameters(), **options)
    train_resume_model(model, optimizer, target, 5)
    checkpoint = io.BytesIO()
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict()}, checkpoint)
    checkpoint.seek(0)
    loaded = torch.load(checkpoint, weights_only=True)

    resumed = make_resume_model()
    resumed.load_state_dict(loaded["model"])
    resumed_optimizer = RiemannianSGD(resumed.parameters(), lr=1.0)
    resumed_optimizer.load_state_dict(loaded["optimizer"])
    train_resume_model(resumed, resumed_optimizer, target, 5)

    assert torch.equal(resumed.basis, uninterrupted.basis)
    assert torch.equal(resumed.scale, uninterrupted.scale)
    assert isinstance(resumed.basis, geoopt.ManifoldParameter)


def snapshot(optimizer) -> list[torch.Tensor]:
    """Return copies of every parameter and momentum buffer of ``optimizer``."""
    tensors = []
    for group in optimizer.param_groups:
        for param in group["params"]:
            tensors.append(param.detach().clone())
            if "momentum_buffer" in optimizer.state[param]:
                tensors.append(optimizer.state[param]["momentum_buffer"].clone())
    return tensors


def make_two_group_optimizer():
    """Return an optimizer over a plain group and a manifold group, after one good step."""
    plain = nn.Parameter(torch.randn(4, 3, dtype=torch.float64))
    weight = make_manifold_parameter(Grassmann(), (16, 3))
    other = make_manifold_parameter(Stiefel(), (16, 3), seed=1)
    optimizer = RiemannianSGD(
        [{"params": [plain]}, {"params": [other, weight], "lr": 0.01}], lr=0.1, momentum=0.9
    )
    (plain.sum() ** 2 + weight.sum() ** 2 + other.sum() ** 2).backward()
    optimizer.step()
    return optimizer, plain, other, weight


def test_non_finite_gradient_rejects_step():
    optimizer, plain, _, weight = make_two_group_optimizer()
    before = snapshot(optimizer)
    weight.grad[3, 1] = float("nan")

    with pytest.raises(FloatingPointError, match=r"parameter 1 of param group 1 \(shape \(16, 3\)"):
        optimizer.step()

    after = snapshot(optimizer)
    assert all(torch.equal(a, b) for a, b in zip(after, before, strict=True))


def test_non_finite_update_rejects_step():
    optimizer, plain, _, _ = make_two_group_optimizer()
    before = snapshot(optimizer)
    optimizer.param_groups[0]["lr"] = 1e308
    plain.grad.fill_(1e308)

    with pytest.raises(FloatingPointError, match=r"new value .* parameter 0 of param group 0"):
        optimizer.step()

    after = snapshot(optimizer)
    assert all(torch.equal(a, b) for a, b in zip(after, before, strict=True))


class NaNRetractionEuclidean(geoopt.Euclidean):
    """A manifold whose retraction returns NaN, standing in for a numerically failed one."""

    def retr(self, x, u):
        return torch.full_like(x, float("nan"))

    def retr_transp(self, x, u, v):
        return self.retr(x, u), v


def test_non_finite_retraction_rejects_step():
    good = make_manifold_parameter(Grassmann(), (16, 3))
    bad = geoopt.ManifoldParameter(torch.randn(5, 2), manifold=NaNRetractionEuclidean())
    optimizer = RiemannianSGD([good, bad], lr=0.1, momentum=0.9)
    (good.sum() ** 2 + bad.sum() ** 2).backward()
    before = [good.detach().clone(), bad.detach().clone()]

    with pytest.raises(FloatingPointError, match=r"parameter 1 of param group 0 \(shape \(5, 2\)"):
        optimizer.step()

    assert torch.equal(good, before[0])
    assert torch.equal(bad, before[1])
    assert len(optimizer.state) == 0


def test_retraction_error_names_parameter():
    weight = make_manifold_parameter(Grassmann(), (16, 3))
    optimizer = RiemannianSGD([weight], lr=1e300)
    weight.grad = torch.full_like(weight, 1e300)
    weight.grad[0] = -1e300
    before = weight.detach().clone()

    with pytest.raises(FloatingPointError, match="parameter 0 of param group 0"):
        optimizer.step()

    assert torch.equal(weight, before)


def test_param_groups_and_scheduler_match_sgd():
    model, inputs, targets = make_problem()
    reference, _, _ = make_problem()

    def groups(module):
        return [
            {"params": module[0].parameters(), "lr": 0.1},
            {"params": module[2].parameters(), "momentum": 0.5},
        ]

    optimizer = RiemannianSGD(groups(model), lr=0.05, momentum=0.9)
    reference_optimizer = torch.optim.SGD(groups(reference), lr=0.05, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=3, gamma=0.5)
    reference_scheduler = torch.optim.lr_scheduler.StepLR(
        reference_optimizer, step_size=3, gamma=0.5
    )

    for _ in range(10):
        train(model, optimizer, inputs, targets, steps=1)
        train(reference, reference_optimizer, inputs, targets, steps=1)
        scheduler.step()
        reference_scheduler.step()

    assert [g["lr"] for g in optimizer.param_groups] == [0.1 * 0.5**3, 0.05 * 0.5**3]
    for param, expected in zip(model.parameters(), reference.parameters(), strict=True):
        assert torch.equal(param, expected)


def test_manifold_group_with_zero_lr_stays_put():
    moving = make_manifold_parameter(Grassmann(), (16, 3))
    frozen = make_manifold_parameter(Grassmann(), (16, 3), seed=1)
    start = frozen.detach().clone()
    optimizer = RiemannianSGD([{"params": [moving]}, {"params": [frozen], "lr": 0.0}], lr=0.1)

    (moving.sum() ** 2 + frozen.sum() ** 2).backward()
    optimizer.step()

    # A retraction by a zero step returns the point up to rounding, not always bit for bit.
    torch.testing.assert_close(frozen.detach(), start, rtol=0, atol=tolerance(torch.float64, 16))


def test_closure_is_evaluated_with_grad():
    weight = make_manifold_parameter(Stiefel(), (8, 2))
    optimizer = RiemannianSGD([weight], lr=0.1)
    calls = []

    def closure():
        optimizer.zero_grad()
        loss = weight.sum() ** 2
        loss.backward()
        calls.append(loss.item())
        return loss

    with torch.no_grad():
        loss = optimizer.step(closure)

    assert len(calls) == 1
    assert loss.item() == calls[0]


def test_zero_grad_clears_gradients():
    weight = make_manifold_parameter(Grassmann(), (8, 2))
    optimizer = RiemannianSGD([weight], lr=0.1, momentum=0.9)
    (weight.sum() ** 2).backward()
    optimizer.step()

    optimizer.zero_grad()

    assert weight.grad is None


def test_parameters_without_grad_are_skipped():
    used = make_manifold_parameter(Grassmann(), (8, 2))
    unused = make_manifold_parameter(Grassmann(), (8, 2), seed=1)
    start = unused.detach().clone()
    optimizer = RiemannianSGD([used, unused], lr=0.1, momentum=0.9)

    (used.sum() ** 2).backward()
    optimizer.step()

    assert torch.equal(unused, start)
    assert unused not in optimizer.state
    assert list(optimizer.state_dict()["state"]) == [0]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (dict(lr=-0.1), "Invalid learning rate"),
        (dict(lr=0.1, momentum=-1.0), "Invalid momentum"),
        (dict(lr=0.1, weight_decay=-1.0), "Invalid weight_decay"),
        (dict(lr=0.1, nesterov=True), "Nesterov momentum requires"),
        (dict(lr=0.1, momentum=0.9, dampening=0.1, nesterov=True), "Nesterov momentum requires"),
        (dict(lr=torch.tensor([0.1, 0.2])), "one element"),
    ],
)
def test_invalid_hyperparameters_raise(options, message):
    with pytest.raises(ValueError, match=message):
        RiemannianSGD([nn.Parameter(torch.ones(2))], **options)


def test_sparse_gradient_raises():
    embedding = nn.Embedding(10, 3, sparse=True)
    optimizer = RiemannianSGD(embedding.parameters(), lr=0.1)
    embedding(torch.tensor([1, 2])).sum().backward()

    with pytest.raises(TypeError, match="sparse gradients"):
        optimizer.step()


def test_functional_kernel_fills_momentum_buffers():
    weight = make_manifold_parameter(Grassmann(), (8, 2))
    plain = torch.randn(3)
    grads = [torch.randn(8, 2, dtype=torch.float64), torch.randn(3)]
    buffers = [None, None]
    start = [weight.detach().clone(), plain.clone()]

    riemannian_sgd(
        [weight, plain],
        grads,
        buffers,
        lr=0.1,
        momentum=0.9,
        dampening=0.0,
        weight_decay=0.0,
        nesterov=False,
    )

    assert buffers[0] is not None and buffers[1] is not None
    torch.testing.assert_close(buffers[1], grads[1])
    torch.testing.assert_close(plain, start[1] - 0.1 * grads[1])
    assert not torch.equal(weight.detach(), start[0])


def test_plain_step_near_overflow_matches_sgd():
    # Entries near float32's maximum fail the in-place bound test, so the step takes the checked
    # out-of-place route, which must still give torch.optim.SGD's numbers.
    weight = nn.Parameter(torch.full((4, 3), 2e38))
    reference = nn.Parameter(weight.detach().clone())
    optimizer = RiemannianSGD([weight], lr=0.5, momentum=0.9)
    reference_optimizer = torch.optim.SGD([reference], lr=0.5, momentum=0.9)

    for _ in range(3):
        for param in (weight, reference):
            param.grad = torch.linspace(-1e37, 1e37, 12).reshape(4, 3)
        optimizer.step()
        reference_optimizer.step()

        assert torch.equal(weight, reference)
        assert torch.equal(
            optimizer.state[weight]["momentum_buffer"],
            reference_optimizer.state[reference]["momentum_buffer"],
        )


def test_plain_step_overflow_rejects_step():
    weight = nn.Parameter(torch.full((4, 3), 3e38))
    optimizer = RiemannianSGD([weight], lr=1.0, momentum=0.9)
    weight.grad = torch.full((4, 3), 1e38)
    optimizer.step()
    before = [weight.detach().clone(), optimizer.state[weight]["momentum_buffer"].clone()]
    weight.grad = torch.full((4, 3), -3e38)

    with pytest.raises(FloatingPointError, match="new value .* parameter 0 of param group 0"):
        optimizer.step()

    assert torch.equal(weight, before[0])
    assert torch.equal(optimizer.state[weight]["momentum_buffer"], before[1])


def test_mixed_step_keeps_plain_parameters_on_retraction_failure():
    # The in-place update of plain tensors runs only after every manifold update passed.
    plain = nn.Parameter(torch.randn(4, 3))
    bad = geoopt.ManifoldParameter(torch.randn(5, 2), manifold=NaNRetractionEuclidean())
    optimizer = RiemannianSGD([plain, bad], lr=0.1, momentum=0.9)
    (plain.sum() ** 2 + bad.sum() ** 2).backward()
    before = plain.detach().clone()

    with pytest.raises(FloatingPointError, match=r"parameter 1 of param group 0"):
        optimizer.step()

    assert torch.equal(plain, before)
    assert len(optimizer.state) == 0


def test_in_place_bound_test_rejects_non_finite_input():
    from grassmann_nn.optim._functional import euclidean_steps_stay_finite

    group = {"lr": 0.1, "momentum": 0.9, "dampening": 0.0, "weight_decay": 0.0, "nesterov": False}
    param = torch.ones(3)
    finite = euclidean_steps_stay_finite([param], [torch.ones(3)], [None], [group])
    nan_grad = euclidean_steps_stay_finite(
        [param], [torch.tensor([1.0, float("nan"), 1.0])], [None], [group]
    )
    empty = euclidean_steps_stay_finite([torch.ones(0)], [torch.ones(0)], [None], [group])

    assert finite
    assert not nan_grad
    assert empty
