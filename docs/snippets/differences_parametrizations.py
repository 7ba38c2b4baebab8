"""Show how geotorch and torch.nn.utils.parametrizations.orthogonal store a 256 -> 8 layer."""

# --8<-- [start:parametrizations]
import geotorch
from torch import nn
from torch.nn.utils import parametrizations, parametrize

from grassmann_nn.nn import GrassmannLinear

geotorch_layer = nn.Linear(256, 8)
geotorch.grassmannian(geotorch_layer, "weight")
torch_layer = parametrizations.orthogonal(nn.Linear(256, 8))
grassmann_nn_layer = GrassmannLinear(256, 8)

for name, layer in [("geotorch", geotorch_layer), ("torch", torch_layer)]:
    # Each access to layer.weight runs the parametrization again ...
    assert layer.weight is not layer.weight
    # ... unless it happens inside parametrize.cached().
    with parametrize.cached():
        assert layer.weight is layer.weight
    # Both keep a 256 x 256 orthogonal "base" buffer next to the 8 x 256 parameter.
    shapes = {key: tuple(value.shape) for key, value in layer.state_dict().items()}
    print(f"{name}: {shapes}")
    assert shapes["parametrizations.weight.0.base"] == (256, 256)

# grassmann_nn stores the weight itself, with nn.Linear's state_dict keys.
shapes = {key: tuple(value.shape) for key, value in grassmann_nn_layer.state_dict().items()}
print(f"grassmann_nn: {shapes}")
assert shapes == {"weight": (8, 256), "bias": (8,)}
assert grassmann_nn_layer.weight is grassmann_nn_layer.weight
# --8<-- [end:parametrizations]
