"""Train with any torch optimizer, then put the manifold parameters back with retract_."""

# --8<-- [start:retract]
import torch
from torch import nn

from grassmann_nn.nn import GrassmannLinear, orthonormality_error, retract_

torch.manual_seed(0)
direction = nn.functional.normalize(torch.randn(64), dim=0)
labels = torch.randint(0, 2, (256,))
inputs = torch.randn(256, 64) + 4 * (labels[:, None] - 0.5) * direction

model = nn.Sequential(GrassmannLinear(64, 2), nn.Linear(2, 2))
# torch.optim.Adam ignores the manifold, so each of its steps moves the weight off it.
optimizer = torch.optim.Adam(model.parameters(), lr=0.01)

for _ in range(100):
    optimizer.zero_grad()
    loss = nn.functional.cross_entropy(model(inputs), labels)
    loss.backward()
    optimizer.step()
    drift = retract_(model)  # project back; returns the error it removed

print(f"last drift removed by retract_: {drift:.1e}")
print(f"after retract_: {orthonormality_error(model)}")
# --8<-- [end:retract]
assert drift > 1e-4
assert orthonormality_error(model)["0.weight"] < 1e-5
accuracy = (model(inputs).argmax(dim=1) == labels).float().mean()
assert accuracy > 0.9
