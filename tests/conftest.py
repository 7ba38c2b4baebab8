"""Shared fixtures: the devices every device-generic test runs on."""

import pytest
import torch

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(params=DEVICES)
def device(request) -> torch.device:
    """Each available device: the CPU, plus CUDA when present."""
    return torch.device(request.param)
