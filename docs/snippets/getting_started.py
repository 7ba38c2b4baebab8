"""Train a network with a GrassmannLinear layer, then check that its weight is orthonormal."""

# --8<-- [start:train]
import torch
from torch import nn

from grassmann_nn.nn import GrassmannLinear, orthonormality_error
from grassmann_nn.optim import RiemannianSGD

torch.manual_seed(0)

# Three classes of points in R^32 that differ only inside a 4-dimensional subspace.
basis, _ = torch.linalg.qr(torch.randn(32, 4))
labels = torch.randint(0, 3, (512,))
class_means = 3 * torch.randn(3, 4)
inputs = (class_means[labels] + torch.randn(512, 4)) @ basis.T + 0.5 * torch.randn(512, 32)

# A 32 -> 4 projection with orthonormal rows, then an ordinary classifier.
model = nn.Sequential(GrassmannLinear(32, 4), nn.Linear(4, 3))
optimizer = RiemannianSGD(model.parameters(), lr=0.1, momentum=0.9)
loss_fn = nn.CrossEntropyLoss()

for _ in range(100):
    optimizer.zero_grad()
    loss = loss_fn(model(inputs), labels)
    loss.backward()
    optimizer.step()

accuracy = (model(inputs).argmax(dim=1) == labels).float().mean()
print(f"loss {loss.item():.3f}, training accuracy {accuracy.item():.3f}")
# --8<-- [end:train]

assert accuracy > 0.8

# --8<-- [start:check]
weight = model[0].weight  # shape (4, 32), the matrix that F.linear uses
print(weight.manifold)  # the manifold that keeps it orthonormal

# Largest entry of |W W^T - I| for every orthonormal weight of the model.
errors = orthonormality_error(model)
print(errors)

identity = torch.eye(4)
assert torch.allclose(weight @ weight.T, identity, atol=1e-5)
assert weight.manifold.check_point_on_manifold(weight)
# --8<-- [end:check]

assert list(errors) == ["0.weight"]
assert errors["0.weight"] < 1e-5
