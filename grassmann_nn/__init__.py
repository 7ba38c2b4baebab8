"""Riemannian optimization on the Grassmann and Stiefel manifolds for PyTorch."""

import warnings

# NOTE: geoopt 0.5.1 decorates helpers with torch.jit.script at import time, which torch >= 2.9
# reports as a FutureWarning. Importing it here, once and with that warning silenced, keeps the
# warning out of every user's log without hiding any other warning.
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=r"`torch\.jit\.script", category=FutureWarning)
    import geoopt  # noqa: F401

# The submodules are attributes but stay out of __all__: "from grassmann_nn import *" must not
# replace torch's nn and optim in the caller's namespace.
from grassmann_nn import losses, manifolds, metrics, nn, optim, retractions  # noqa: F401
from grassmann_nn.losses import CenterLoss, ContrastiveCenterLoss, SilhouetteLoss
from grassmann_nn.manifolds import Grassmann, Stiefel, principal_angles
from grassmann_nn.nn import GrassmannLinear, StiefelLinear, orthonormality_error, retract_
from grassmann_nn.optim import RiemannianSGD
from grassmann_nn.retractions import RETRACTIONS, get_retraction

__all__ = [
    "RETRACTIONS",
    "CenterLoss",
    "ContrastiveCenterLoss",
    "Grassmann",
    "GrassmannLinear",
    "RiemannianSGD",
    "SilhouetteLoss",
    "Stiefel",
    "StiefelLinear",
    "get_retraction",
    "orthonormality_error",
    "principal_angles",
    "retract_",
]

__version__ = "0.1.0"
