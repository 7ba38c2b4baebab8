"""Feature distances of an orthonormal projection depend only on its subspace."""

# --8<-- [start:invariant]
import torch

from grassmann_nn import Grassmann, Stiefel

torch.manual_seed(0)
x = Grassmann().random(256, 8, dtype=torch.float64)
a = torch.randn(256, 256, dtype=torch.float64)
a = a + a.T

# f(X) = trace(X^T A X) satisfies f(X Q) = f(X). Its Euclidean gradient G = 2 A X is not
# horizontal (X^T G is symmetric, not 0), but the Stiefel gradient G - X sym(X^T G) is, so
# both manifolds give the same Riemannian gradient.
euclidean_gradient = 2 * a @ x
assert (x.T @ euclidean_gradient).abs().max() > 1e-3
torch.testing.assert_close(
    Grassmann().egrad2rgrad(x, euclidean_gradient), Stiefel().egrad2rgrad(x, euclidean_gradient)
)
# --8<-- [end:invariant]

# --8<-- [start:distances]
manifold = Grassmann()

w = manifold.random(256, 8, dtype=torch.float64)  # orthonormal columns, W^T W = I
q, _ = torch.linalg.qr(torch.randn(8, 8, dtype=torch.float64))  # a change of basis
x, y = torch.randn(2, 256, dtype=torch.float64)

w_rotated = w @ q  # another basis of the same subspace
projector = w @ w.T  # P = W W^T, the same for both bases
assert torch.allclose(projector, w_rotated @ w_rotated.T)

distance = torch.linalg.vector_norm(w.T @ x - w.T @ y)
distance_rotated = torch.linalg.vector_norm(w_rotated.T @ x - w_rotated.T @ y)
distance_projected = torch.linalg.vector_norm(projector @ (x - y))
assert torch.allclose(distance, distance_projected)
assert torch.allclose(distance_rotated, distance_projected)

# The features themselves change with the basis ...
assert not torch.allclose(w.T @ x, w_rotated.T @ x)
# ... but W and W Q are the same point of Gr(256, 8).
assert manifold.dist(w, w_rotated) < 1e-6
# --8<-- [end:distances]

# --8<-- [start:absorb]
# A linear layer V after the projection computes V W^T x. With the rotated basis, the layer
# V Q reproduces every output, so training can absorb any change of basis.
v = torch.randn(10, 8, dtype=torch.float64)
assert torch.allclose(v @ (w.T @ x), (v @ q) @ (w_rotated.T @ x))
# --8<-- [end:absorb]

# --8<-- [start:gradients]
euclidean_gradient = torch.randn(256, 8, dtype=torch.float64)
grassmann_gradient = Grassmann().egrad2rgrad(w, euclidean_gradient)
stiefel_gradient = Stiefel().egrad2rgrad(w, euclidean_gradient)

# The Grassmann gradient is horizontal: it has no component that only rotates the basis.
assert (w.T @ grassmann_gradient).abs().max() < 1e-12
# The Stiefel gradient keeps that component: W^T g is skew-symmetric but not 0.
rotation_part = w.T @ stiefel_gradient
assert torch.allclose(rotation_part, -rotation_part.T)
assert rotation_part.abs().max() > 1e-3
# --8<-- [end:gradients]
