"""Tests of retract_ and orthonormality_error."""

# grassmann_nn comes first because it imports geoopt with geoopt's import-time FutureWarning
# silenced, which `pytest -W error` would otherwise turn into a collection error.
import grassmann_nn  # noqa: F401

# isort: split
import geoopt
import pytest
import torch
from torch import nn

from grassmann_nn.manifolds import Grassmann
from grassmann_nn.nn import GrassmannLinear, StiefelLinear, orthonormality_error, retract_
from grassmann_nn.testing import tolerance


def make_model(dtype=torch.float64, device="cpu") -> nn.Module:
    """Return a model with a wide, a tall and a plain layer, plus two bare manifold parameters."""
    torch.manual_seed(0)
    model = nn.Module()
    model.project = GrassmannLinear(64, 4, dtype=dtype, device=device)
    model.embed = StiefelLinear(4, 64, bias=False, dtype=dtype, device=device)
    model.head = nn.Linear(4, 2, dtype=dtype, device=device)
    stiefel = geoopt.Stiefel(canonical=False)
    model.frames = geoopt.ManifoldParameter(
        stiefel.random(3, 16, 2, dtype=dtype).to(device), manifold=stiefel
    )
    sphere = geoopt.Sphere()
    model.direction = geoopt.ManifoldParameter(
        sphere.random(8, dtype=dtype).to(device), manifold=sphere
    )
    return model


def perturb_(model: nn.Module, scale: float) -> None:
    """Add noise of size ``scale`` to every parameter."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for param in model.parameters():
            noise = torch.randn(param.shape, generator=generator, dtype=param.dtype)
            param.add_(noise.to(param.device), alpha=scale)


def test_orthonormality_error_lists_orthonormal_parameters():
    model = make_model()

    errors = orthonormality_error(model)

    assert set(errors) == {"project.weight", "embed.weight", "frames"}
    assert all(isinstance(value, float) for value in errors.values())
    assert max(errors.values()) <= tolerance(torch.float64, 64)


def test_orthonormality_error_measures_rows_of_wide_weight():
    layer = GrassmannLinear(64, 4, bias=False, dtype=torch.float64)
    with torch.no_grad():
        layer.weight[0].mul_(1.5)

    error = orthonormality_error(layer)["weight"]

    assert error == pytest.approx(1.25, abs=1e-12)


def test_retract_projects_in_place(device):
    model = make_model(device=device)
    perturb_(model, 1e-3)
    before = orthonormality_error(model)
    pointers = {name: param.data_ptr() for name, param in model.named_parameters()}
    head_weight = model.head.weight.detach().clone()

    removed = retract_(model)

    assert removed == pytest.approx(max(before.values()))
    assert max(orthonormality_error(model).values()) <= tolerance(torch.float64, 64)
    assert {name: param.data_ptr() for name, param in model.named_parameters()} == pointers
    assert isinstance(model.project.weight, geoopt.ManifoldParameter)
    assert torch.equal(model.head.weight, head_weight)
    assert float(model.direction.detach().norm()) == pytest.approx(1.0, abs=1e-12)


def test_retract_matches_manifold_projection():
    model = make_model()
    perturb_(model, 1e-2)
    expected = model.project.weight.manifold.projx(model.project.weight.detach())

    retract_(model)

    assert torch.equal(model.project.weight.detach(), expected)


def test_retract_without_manifold_parameters_returns_zero():
    model = nn.Linear(4, 2)
    weight = model.weight.detach().clone()

    assert retract_(model) == 0.0
    assert orthonormality_error(model) == {}
    assert torch.equal(model.weight, weight)


def test_retract_keeps_gradients_and_autograd_state():
    layer = GrassmannLinear(16, 4)
    layer(torch.randn(2, 16)).sum().backward()
    grad = layer.weight.grad.clone()

    retract_(layer)

    assert layer.weight.requires_grad
    assert torch.equal(layer.weight.grad, grad)
    assert layer.weight.grad_fn is None


def test_retract_handles_batched_parameters():
    manifold = Grassmann()
    module = nn.Module()
    module.bases = geoopt.ManifoldParameter(
        manifold.random(5, 16, 3, dtype=torch.float64), manifold=manifold
    )
    perturb_(module, 1e-3)

    removed = retract_(module)

    assert removed > 1e-4
    assert orthonormality_error(module)["bases"] <= tolerance(torch.float64, 16)


def test_retract_failure_names_parameter_and_changes_nothing():
    model = torch.nn.Sequential(GrassmannLinear(16, 4), GrassmannLinear(4, 2))
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    with torch.no_grad():
        model[0].weight.mul_(1.1)
        model[1].weight[0, 0] = float("nan")
    scaled = model[0].weight.detach().clone()

    with pytest.raises(FloatingPointError, match="parameter '1.weight'.*changed no parameter"):
        retract_(model)

    torch.testing.assert_close(model[0].weight.detach(), scaled, atol=0, rtol=0)
    assert set(before) == {name for name, _ in model.named_parameters()}


def test_retract_names_step_that_wrote_nan():
    # Field case: Adam wrote a NaN into the weight before retract_, whose message then blamed
    # the projection. The message now names where the NaN came from and how to recover.
    layer = GrassmannLinear(16, 4)
    with torch.no_grad():
        layer.weight[0, 0] = float("inf")

    with pytest.raises(FloatingPointError, match="written by the optimizer step before retract_"):
        retract_(layer)
