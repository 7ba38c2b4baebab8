"""Layers with orthonormal weights and helpers that keep manifold parameters on their manifold."""

from grassmann_nn.nn.linear import GrassmannLinear, StiefelLinear
from grassmann_nn.nn.utils import orthonormality_error, retract_

__all__ = [
    "GrassmannLinear",
    "StiefelLinear",
    "orthonormality_error",
    "retract_",
]
