"""Optimizers with ``torch.optim`` semantics for parameters on Riemannian manifolds."""

from grassmann_nn.optim._functional import riemannian_sgd
from grassmann_nn.optim.rsgd import RiemannianSGD

__all__ = ["RiemannianSGD", "riemannian_sgd"]
