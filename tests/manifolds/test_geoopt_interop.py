"""geoopt's own optimizers on our manifolds: the dominant eigenspace of a symmetric matrix."""

import geoopt
import pytest
import torch

from grassmann_nn import Grassmann, principal_angles

N, P = 50, 5


def symmetric_with_gap(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed symmetric 50 x 50 matrix whose top 5 eigenvalues (2.0 to 2.4) sit above the
    rest (0 to 1), and numpy's eigenvectors of those five."""
    generator = torch.Generator().manual_seed(seed)
    basis, _ = torch.linalg.qr(torch.randn(N, N, generator=generator, dtype=torch.float64))
    spectrum = torch.cat([torch.linspace(0, 1, N - P), torch.linspace(2.0, 2.4, P)])
    matrix = (basis * spectrum.to(torch.float64)) @ basis.T
    matrix = (matrix + matrix.T) / 2

    import numpy as np

    _, vectors = np.linalg.eigh(matrix.numpy())
    return matrix, torch.from_numpy(vectors[:, -P:].copy())


@pytest.mark.parametrize("retraction", ["polar", "qr", "cayley", "exp"])
@pytest.mark.parametrize(
    "optimizer, lr, steps",
    [(geoopt.optim.RiemannianSGD, 0.2, 100), (geoopt.optim.RiemannianAdam, 0.05, 400)],
    ids=["RiemannianSGD", "RiemannianAdam"],
)
def test_geoopt_optimizer_finds_dominant_subspace(retraction, optimizer, lr, steps):
    matrix, dominant = symmetric_with_gap()
    manifold = Grassmann(retraction=retraction)
    start = manifold.random(N, P, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    point = geoopt.ManifoldParameter(start, manifold=manifold)
    solver = optimizer([point], lr=lr)

    for _ in range(steps):
        solver.zero_grad()
        loss = -torch.trace(point.T @ matrix @ point)
        loss.backward()
        solver.step()

    largest_angle = principal_angles(point.detach(), dominant).max()
    assert float(largest_angle) < 1e-3
    assert manifold.check_point_on_manifold(point.detach())
