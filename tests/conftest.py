"""Shared fixtures: the devices every device-generic test runs on."""

import grassmann_nn  # noqa: F401  (first: it imports geoopt with geoopt's FutureWarning silenced)

# isort: split
import pytest
import torch
from hypothesis import HealthCheck, settings

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(params=DEVICES)
def device(request) -> torch.device:
    """Each available device: the CPU, plus CUDA when present."""
    return torch.device(request.param)


# Deterministic property tests: every run draws the same examples, so CI cannot flake, and a
# failure prints the example to replay. The device fixture is immutable, so reusing it across
# examples is safe.
settings.register_profile(
    "grassmann_nn",
    max_examples=20,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.filter_too_much],
)
settings.load_profile("grassmann_nn")
