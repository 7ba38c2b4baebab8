"""Use geoopt's RiemannianSGD and RiemannianAdam on Stiefel and Grassmann parameters."""

# The docs show each section on its own, so each section imports what it uses.
# ruff: noqa: E402

# --8<-- [start:stiefel]
import geoopt
import torch

from grassmann_nn import Stiefel

torch.manual_seed(0)

# A symmetric 10 x 10 matrix with eigenvalues 1, ..., 10 and random eigenvectors.
eigenvectors, _ = torch.linalg.qr(torch.randn(10, 10, dtype=torch.float64))
eigenvalues = torch.arange(1, 11, dtype=torch.float64)
matrix = (eigenvectors * eigenvalues) @ eigenvectors.T

# trace(X^T A X N) with N = diag(1, 2, 3) depends on the basis, not only on span(X): its
# maximizer puts the eigenvector of the largest eigenvalue in the last column, and so on.
weights = torch.diag(torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64))
stiefel = Stiefel(retraction="qr")
x = geoopt.ManifoldParameter(stiefel.random(10, 3, dtype=torch.float64), manifold=stiefel)
optimizer = geoopt.optim.RiemannianSGD([x], lr=0.05, momentum=0.5)

for _ in range(200):
    optimizer.zero_grad()
    loss = -torch.trace(x.T @ matrix @ x @ weights)
    loss.backward()
    optimizer.step()

# Each column matches one eigenvector, up to sign.
alignment = (x.detach() * eigenvectors[:, -3:]).sum(dim=0).abs()
print(f"RiemannianSGD on St(10, 3): |<x_i, v_i>| = {alignment.tolist()}")
# --8<-- [end:stiefel]
assert (alignment > 1 - 1e-6).all(), alignment
assert stiefel.check_point_on_manifold(x.detach())

# --8<-- [start:adam]
from torch import nn

from grassmann_nn.nn import GrassmannLinear

# Two classes in R^64 that differ only along one direction.
direction = torch.nn.functional.normalize(torch.randn(64), dim=0)
labels = torch.randint(0, 2, (256,))
inputs = torch.randn(256, 64) + 4 * (labels[:, None] - 0.5) * direction

model = nn.Sequential(GrassmannLinear(64, 2), nn.Linear(2, 2))
# geoopt's optimizers step each ManifoldParameter on its manifold and every other
# parameter as in Euclidean space.
optimizer = geoopt.optim.RiemannianAdam(model.parameters(), lr=0.01)

for _ in range(100):
    optimizer.zero_grad()
    loss = nn.functional.cross_entropy(model(inputs), labels)
    loss.backward()
    optimizer.step()

weight = model[0].weight
accuracy = (model(inputs).argmax(dim=1) == labels).float().mean()
print(f"RiemannianAdam: training accuracy {accuracy.item():.3f}")
assert weight.manifold.check_point_on_manifold(weight)
# --8<-- [end:adam]
assert accuracy > 0.9
