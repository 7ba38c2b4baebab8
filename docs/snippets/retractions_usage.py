"""Choose a retraction by name, call one as a function, and use it in low precision."""

# --8<-- [start:choose]
import torch

from grassmann_nn import RETRACTIONS, Grassmann, Stiefel
from grassmann_nn.nn import GrassmannLinear
from grassmann_nn.retractions import cayley

print(sorted(RETRACTIONS))  # the names that every manifold and layer accepts

manifold = Grassmann(retraction="qr")
weight_manifold = Stiefel(retraction="cayley")
layer = GrassmannLinear(256, 8, retraction="exp")

# The same retraction as a plain function (x, u) -> y.
x = manifold.random(256, 8)
u = manifold.proju(x, 0.1 * torch.randn(256, 8))
y = cayley(x, u)
assert manifold.check_point_on_manifold(y)
# --8<-- [end:choose]

assert manifold.retraction == "qr"
assert weight_manifold.retraction == "cayley"
assert layer.retraction == "exp"

# --8<-- [start:low_precision]
# float16 and bfloat16 points: the decomposition runs in float32 and the result comes back
# in the input dtype.
grassmann = Grassmann()
x16 = grassmann.random(256, 8, dtype=torch.bfloat16)
u16 = grassmann.proju(x16, 0.01 * torch.randn(256, 8, dtype=torch.bfloat16))
for name, retraction in sorted(RETRACTIONS.items()):
    y16 = retraction(x16, u16)
    error = (y16.float().T @ y16.float() - torch.eye(8)).abs().max()
    print(f"{name:>6}: dtype {y16.dtype}, max |Y^T Y - I| = {error:.1e}")
    assert y16.dtype == torch.bfloat16
    # --8<-- [end:low_precision]
    assert error < 0.1
