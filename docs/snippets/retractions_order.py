"""Measure how closely each retraction follows the exact geodesic, on Gr(20, 4) and St(20, 4)."""

# --8<-- [start:order]
import math

import torch

from grassmann_nn import Grassmann, Stiefel
from grassmann_nn.retractions import cayley, grassmann_exp, polar, qr, stiefel_exp


def local_order(manifold, geodesic, retraction, distance):
    """Return the slope of log(error) against log(t) for R_X(t U) against Exp_X(t U)."""
    generator = torch.Generator().manual_seed(0)
    x = manifold.random(20, 4, dtype=torch.float64, generator=generator)
    u = manifold.proju(x, torch.randn(20, 4, dtype=torch.float64, generator=generator))
    u = u / torch.linalg.matrix_norm(u)

    errors = [distance(retraction(x, t * u), geodesic(x, t * u)) for t in (1e-1, 1e-2)]
    return math.log10(errors[0] / errors[1])


grassmann, stiefel = Grassmann(), Stiefel()


def subspace_distance(a, b):
    return float(grassmann.dist(a, b))


def frobenius_distance(a, b):
    return float(torch.linalg.matrix_norm(a - b))


orders = {}
for name, retraction in [("polar", polar), ("qr", qr), ("cayley", cayley)]:
    on_grassmann = local_order(grassmann, grassmann_exp, retraction, subspace_distance)
    on_stiefel = local_order(stiefel, stiefel_exp, retraction, frobenius_distance)
    orders[name] = (on_grassmann, on_stiefel)
    print(f"{name:>6}: error ~ t^{on_grassmann:.2f} on Gr(20, 4), t^{on_stiefel:.2f} on St(20, 4)")
# --8<-- [end:order]

# An error of order t^3 means a second-order retraction, t^2 a first-order one.
for name in ("polar", "qr", "cayley"):
    assert 2.5 < orders[name][0] < 3.5, (name, orders[name])
assert 2.5 < orders["polar"][1] < 3.5
assert 1.5 < orders["qr"][1] < 2.5
assert 1.5 < orders["cayley"][1] < 2.5

# On the Grassmann manifold QR and polar return two bases of the same subspace span(X + U).
x = grassmann.random(20, 4, dtype=torch.float64)
u = grassmann.proju(x, torch.randn(20, 4, dtype=torch.float64))
assert grassmann.dist(qr(x, u), polar(x, u)) < 1e-6

# For a horizontal U, the Grassmann geodesic is exp(W) X with W = U X^T - X U^T, the same W
# that the Cayley retraction uses: Cayley replaces exp(W) by (I - W/2)^{-1} (I + W/2).
skew = u @ x.T - x @ u.T
assert grassmann.dist(torch.linalg.matrix_exp(skew) @ x, grassmann_exp(x, u)) < 1e-6
