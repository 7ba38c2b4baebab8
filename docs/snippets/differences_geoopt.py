"""Compare the first momentum step of geoopt's RiemannianSGD with torch.optim.SGD."""

# The docs show each section on its own, so each section imports what it uses.
# ruff: noqa: E402

# --8<-- [start:momentum]
import geoopt
import torch

from grassmann_nn.optim import RiemannianSGD

momentum = 0.9
start = torch.randn(5)
gradient = torch.randn(5)


def first_step(optimizer_class):
    param = torch.nn.Parameter(start.clone())
    optimizer = optimizer_class([param], lr=0.1, momentum=momentum)
    param.grad = gradient.clone()
    optimizer.step()
    return (param - start).detach()


torch_step = first_step(torch.optim.SGD)
grassmann_nn_step = first_step(RiemannianSGD)
geoopt_step = first_step(geoopt.optim.RiemannianSGD)

# grassmann_nn gives the same floating-point numbers as torch.optim.SGD.
assert torch.equal(grassmann_nn_step, torch_step)
# geoopt (0.5.1) starts its momentum buffer from the gradient and then applies the momentum
# update to it as well, so its first step is (1 + momentum) times as long.
torch.testing.assert_close(geoopt_step, (1 + momentum) * torch_step)
# --8<-- [end:momentum]

# --8<-- [start:grad]
param = torch.nn.Parameter(start.clone())
optimizer = geoopt.optim.RiemannianSGD([param], lr=0.1, weight_decay=0.5)
param.grad = gradient.clone()
optimizer.step()
# geoopt adds the weight decay term to param.grad in place.
assert not torch.equal(param.grad, gradient)

param = torch.nn.Parameter(start.clone())
optimizer = RiemannianSGD([param], lr=0.1, weight_decay=0.5)
param.grad = gradient.clone()
optimizer.step()
# grassmann_nn, like torch.optim.SGD, leaves param.grad as backward wrote it.
assert torch.equal(param.grad, gradient)

param = torch.nn.Parameter(start.clone())
optimizer = geoopt.optim.RiemannianSGD([param], lr=0.1, momentum=momentum, nesterov=True)
param.grad = gradient.clone()
optimizer.step()
# With Nesterov momentum, geoopt also adds the momentum buffer to param.grad in place.
assert not torch.equal(param.grad, gradient)
# --8<-- [end:grad]

# --8<-- [start:state_dict]
# RiemannianSGD's state dicts load into torch.optim.SGD and back.
torch_param = torch.nn.Parameter(start.clone())
param = torch.nn.Parameter(start.clone())
torch_optimizer = torch.optim.SGD([torch_param], lr=0.1, momentum=momentum)
optimizer = RiemannianSGD([param], lr=0.1, momentum=momentum)
for scale in (1.0, 2.0):
    torch_param.grad = scale * gradient
    param.grad = scale * gradient
    torch_optimizer.step()
    optimizer.step()

RiemannianSGD([param], lr=0.1, momentum=momentum).load_state_dict(torch_optimizer.state_dict())
torch.optim.SGD([param], lr=0.1, momentum=momentum).load_state_dict(optimizer.state_dict())
assert torch.equal(param, torch_param)
# --8<-- [end:state_dict]

# --8<-- [start:wide]
from grassmann_nn.nn import GrassmannLinear

try:
    geoopt.Stiefel(canonical=False).random(8, 256)  # nn.Linear(256, 8) stores 8 x 256
except ValueError as error:
    print(f"geoopt: {error}")

layer = GrassmannLinear(256, 8)  # weight is 8 x 256 with orthonormal rows
assert layer.weight.shape == (8, 256)
# --8<-- [end:wide]

# --8<-- [start:half]
from grassmann_nn import Stiefel

failures = []
for manifold in (geoopt.EuclideanStiefel(), geoopt.CanonicalStiefel()):
    x = manifold.random(256, 8).to(torch.bfloat16)
    try:
        manifold.retr(x, torch.zeros_like(x))
    except NotImplementedError as error:  # on the CPU, torch has no bfloat16 QR or LU
        print(f"geoopt {manifold.name}: {error}")
        failures.append(manifold.name)

x = Stiefel(retraction="qr").random(256, 8, dtype=torch.bfloat16)
assert Stiefel(retraction="qr").retr(x, torch.zeros_like(x)).dtype == torch.bfloat16
# --8<-- [end:half]
assert len(failures) == 2, failures
