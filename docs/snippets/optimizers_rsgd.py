"""Train with grassmann_nn's RiemannianSGD and resume from a checkpoint."""

# --8<-- [start:rsgd]
import io

import torch
from torch import nn

from grassmann_nn.nn import StiefelLinear
from grassmann_nn.optim import RiemannianSGD


def make_model():
    torch.manual_seed(0)
    return nn.Sequential(StiefelLinear(16, 4), nn.Tanh(), nn.Linear(4, 1))


def train(model, optimizer, inputs, targets, steps):
    for _ in range(steps):
        optimizer.zero_grad()
        loss = nn.functional.mse_loss(model(inputs), targets)
        loss.backward()
        optimizer.step()


inputs = torch.randn(128, 16)
targets = torch.sin(inputs[:, :1])

model = make_model()
# Plain parameters get exactly torch.optim.SGD's update. The manifold parameter gets the
# Riemannian gradient, a retraction and a transported momentum buffer.
optimizer = RiemannianSGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)
train(model, optimizer, inputs, targets, steps=20)

# Checkpoints are ordinary state dicts.
buffer = io.BytesIO()
torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict()}, buffer)
train(model, optimizer, inputs, targets, steps=20)

buffer.seek(0)
checkpoint = torch.load(buffer, weights_only=True)
resumed = make_model()
resumed.load_state_dict(checkpoint["model"])
resumed_optimizer = RiemannianSGD(resumed.parameters(), lr=0.05, momentum=0.9, nesterov=True)
resumed_optimizer.load_state_dict(checkpoint["optimizer"])
train(resumed, resumed_optimizer, inputs, targets, steps=20)

# The resumed run matches the uninterrupted one.
for original, copy in zip(model.parameters(), resumed.parameters(), strict=True):
    assert torch.equal(original, copy)
# --8<-- [end:rsgd]
