"""Manifolds of matrices with orthonormal columns, as geoopt manifolds."""

from grassmann_nn.manifolds._frames import OrthonormalFrames
from grassmann_nn.manifolds.grassmann import Grassmann, principal_angles
from grassmann_nn.manifolds.stiefel import Stiefel
from grassmann_nn.manifolds.transposed import Transposed

__all__ = ["Grassmann", "OrthonormalFrames", "Stiefel", "Transposed", "principal_angles"]
