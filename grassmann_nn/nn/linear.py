r"""Linear layers whose weight has orthonormal rows or columns.

Orientation: ``weight`` has ``nn.Linear``'s shape ``(out_features, in_features)`` and is exactly
the matrix that ``F.linear`` uses, so ``layer(x) == F.linear(x, layer.weight, layer.bias)``.
Its longer side is orthonormal:

- ``out_features < in_features`` (a projection such as 256 -> 8): orthonormal rows,
  $W W^\top = I_{out}$. The manifold is declared on $W^\top$, an
  ``in x out`` point, through `grassmann_nn.manifolds.Transposed`.
- ``out_features >= in_features`` (an embedding such as 8 -> 256, or square): orthonormal
  columns, $W^\top W = I_{in}$. ``W`` itself is the ``out x in`` point.

``state_dict`` keys and shapes are those of ``nn.Linear``, so state dicts load in both
directions.
"""

from __future__ import annotations

import math
from typing import Any, TypeVar

import geoopt
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from grassmann_nn.manifolds import Grassmann, OrthonormalFrames, Stiefel, Transposed
from grassmann_nn.nn.utils import retract_

__all__ = ["GrassmannLinear", "StiefelLinear"]

_Layer = TypeVar("_Layer", bound="_OrthonormalLinear")


def _t(x: Tensor) -> Tensor:
    """Transpose the last two dimensions."""
    return x.transpose(-1, -2)


def _gained_precision(old: torch.dtype, new: torch.dtype) -> bool:
    """Return whether a cast from ``old`` to ``new`` makes a floating-point dtype finer."""
    if not (old.is_floating_point and new.is_floating_point):
        return False
    return torch.finfo(new).eps < torch.finfo(old).eps


def _check_features(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}.")
    if value < 1:
        raise ValueError(f"{name} must be at least 1, got {value}.")


class _OrthonormalLinear(nn.Module):
    """Shared implementation of `GrassmannLinear` and `StiefelLinear`."""

    __constants__ = ["in_features", "out_features"]
    _manifold_class: type[OrthonormalFrames]

    in_features: int
    out_features: int
    weight: geoopt.ManifoldParameter
    bias: nn.Parameter | None

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        *,
        retraction: str = "polar",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self._check_shape(in_features, out_features)
        if dtype is not None and not dtype.is_floating_point:
            raise TypeError(
                f"{type(self).__name__} needs a floating-point dtype, got {dtype}. Use for "
                "example torch.float32."
            )
        self.in_features = in_features
        self.out_features = out_features

        manifold: geoopt.Manifold = self._manifold_class(retraction=retraction)
        if out_features < in_features:
            manifold = Transposed(manifold)
        storage = torch.empty((out_features, in_features), device=device, dtype=dtype)
        self.weight = geoopt.ManifoldParameter(storage, manifold=manifold)

        if bias:
            self.bias = nn.Parameter(torch.empty(out_features, device=device, dtype=dtype))
        else:
            self.register_parameter("bias", None)

        self.reset_parameters()

    @classmethod
    def _check_shape(cls, in_features: int, out_features: int) -> None:
        _check_features("in_features", in_features)
        _check_features("out_features", out_features)

    def _apply(self, fn, recurse: bool = True):
        # nn.Module._apply rebuilds a parameter as a plain nn.Parameter whenever it cannot swap
        # the data in place (to_empty from the meta device, for example), which drops the
        # ManifoldParameter subclass and its manifold. Wrap the new tensor again.
        manifold = self.weight.manifold
        old_dtype, was_meta = self.weight.dtype, self.weight.is_meta
        super()._apply(fn, recurse)

        if not isinstance(self.weight, geoopt.ManifoldParameter):
            requires_grad = self.weight.requires_grad
            self.weight = geoopt.ManifoldParameter(
                self.weight.data, manifold=manifold, requires_grad=requires_grad
            )

        # A cast to a finer dtype, such as .double() on a float32 layer, keeps the coarser
        # dtype's orthonormality error, which the finer dtype's manifold check rejects.
        if not was_meta and _gained_precision(old_dtype, self.weight.dtype):
            retract_(self)
        return self

    @property
    def retraction(self) -> str:
        """Name of the retraction the weight's manifold uses."""
        return self.weight.manifold.retraction

    @property
    def orthonormal_rows(self) -> bool:
        r"""Whether the rows of ``weight`` are orthonormal ($W W^\top = I$).

        True when ``out_features < in_features``. Otherwise the columns are orthonormal.
        """
        return self.out_features < self.in_features

    def reset_parameters(self) -> None:
        r"""Draw the weight from the Haar (uniform) distribution on the manifold.

        The bias gets ``nn.Linear``'s initialization, uniform on
        $[-1/\sqrt{in}, 1/\sqrt{in}]$. Both use torch's global random number generator,
        so ``torch.manual_seed`` makes them reproducible.
        """
        with torch.no_grad():
            if not self.weight.is_meta:
                sample = self.weight.manifold.random(
                    self.out_features,
                    self.in_features,
                    dtype=self.weight.dtype,
                    device=self.weight.device,
                )
                self.weight.copy_(sample)

            if self.bias is not None:
                bound = 1 / math.sqrt(self.in_features)
                nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, input: Tensor) -> Tensor:
        return F.linear(input, self.weight, self.bias)

    def extra_repr(self) -> str:
        orthonormal = "rows" if self.orthonormal_rows else "columns"
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}, retraction={self.retraction!r}, "
            f"orthonormal={orthonormal}"
        )

    def to_linear(self) -> nn.Linear:
        """Return an ``nn.Linear`` with copies of this layer's weight and bias.

        The copy is a plain ``nn.Parameter``, so optimizers treat it as Euclidean and it leaves
        the manifold as soon as it is trained.
        """
        linear = nn.Linear(
            self.in_features, self.out_features, bias=self.bias is not None, device="meta"
        )
        # Parameters are assigned, not initialized and then overwritten, so that exporting a
        # layer draws nothing from the global random number generator.
        linear.weight = nn.Parameter(
            self.weight.detach().clone(), requires_grad=self.weight.requires_grad
        )
        if self.bias is not None:
            linear.bias = nn.Parameter(
                self.bias.detach().clone(), requires_grad=self.bias.requires_grad
            )
        return linear

    @classmethod
    def from_linear(cls: type[_Layer], linear: nn.Linear, *, retraction: str = "polar") -> _Layer:
        """Build a layer from an ``nn.Linear``, projecting its weight onto the manifold.

        Args:
            linear: The layer to convert. The projection is unique only when its weight has
                full rank.
            retraction: Name of the retraction of the new layer's manifold.

        Returns:
            A new layer on ``linear``'s device and dtype.
        """
        layer = cls(
            linear.in_features,
            linear.out_features,
            bias=linear.bias is not None,
            retraction=retraction,
            device=linear.weight.device,
            dtype=linear.weight.dtype,
        )
        layer.load_state_dict(linear.state_dict())
        return layer

    def _weight_to_load(self, weight: Tensor, assign: bool) -> Tensor:
        """Return the tensor to load as ``weight``: projected when it is off the manifold."""
        manifold = self.weight.manifold
        if not assign:
            weight = weight.to(dtype=self.weight.dtype, device=self.weight.device)

        if not bool(torch.isfinite(weight).all()):
            raise ValueError(
                f"the weight to load into {type(self).__name__} (shape {tuple(weight.shape)}) "
                "contains NaN or infinite values, and no parameter was changed. Load a finite "
                "weight, such as the one of an earlier checkpoint."
            )

        with torch.no_grad():
            if not manifold.check_point_on_manifold(weight.detach()):
                weight = manifold.projx(weight.detach())

        if assign:
            # Module._load_from_state_dict would wrap a plain tensor in nn.Parameter and drop
            # the manifold, so hand it a ManifoldParameter instead.
            weight = geoopt.ManifoldParameter(
                weight.detach(), manifold=manifold, requires_grad=self.weight.requires_grad
            )
        return weight

    def _load_from_state_dict(
        self,
        state_dict: dict[str, Any],
        prefix: str,
        local_metadata: dict[str, Any],
        strict: bool,
        missing_keys: list[str],
        unexpected_keys: list[str],
        error_msgs: list[str],
    ) -> None:
        """Load ``weight`` and ``bias``, projecting a weight that is off the manifold.

        A weight within the manifold's tolerance (for this package's manifolds, derived from
        the dtype and size) loads unchanged, so a layer's own checkpoint round-trips bit for
        bit. Any other weight, for example one from an ``nn.Linear``, is replaced by its
        projection ``manifold.projx``, the polar factor: the closest matrix with orthonormal
        rows or columns in Frobenius norm. That point is unique only for a weight of full rank;
        for a rank-deficient one the manifold returns one of the closest points. A weight of
        another shape or a non-floating dtype goes unchanged to ``nn.Module``'s loading, which
        reports a shape mismatch as usual.
        """
        key = prefix + "weight"
        weight = state_dict.get(key)
        loadable = (
            isinstance(weight, Tensor)
            and weight.shape == self.weight.shape
            and weight.is_floating_point()
            and not weight.is_meta
        )
        if loadable:
            # Module.load_state_dict hands each module its own copy of the dict, which
            # modules may edit (nn.BatchNorm does the same).
            assign = local_metadata.get("assign_to_params_buffers", False)
            state_dict[key] = self._weight_to_load(weight, assign)

        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )


class GrassmannLinear(_OrthonormalLinear):
    r"""Drop-in for ``nn.Linear`` whose weight spans a point of the Grassmann manifold.

    ``weight`` has shape ``(out_features, in_features)`` and is the matrix ``F.linear`` uses.
    Its longer side is orthonormal: the rows when ``out_features < in_features`` (then the
    manifold is $\mathrm{Gr}(in, out)$ on $W^\top$), the columns otherwise (then it
    is $\mathrm{Gr}(out, in)$ on $W$). The weight is Haar-distributed at
    initialization and stays on the manifold under `grassmann_nn.optim.RiemannianSGD`
    or geoopt's optimizers; after any other optimizer call `grassmann_nn.nn.retract_`.
    A cast to a finer dtype (``.double()``, ``.to(torch.float64)``) projects the weight onto
    the manifold again, so it passes the manifold check of the new dtype.

    For a projection $y = W x$ with orthonormal rows, feature distances
    $\lVert W(x - x') \rVert = \lVert W^\top W (x - x') \rVert$ depend only on the
    subspace that the rows span, not on the basis. The output itself depends on the basis, so
    the Riemannian gradient drops the components that only rotate the basis, and a learnable
    layer after this one absorbs any rotation. Use `StiefelLinear` when the basis
    matters.

    Args:
        in_features: Size of each input sample.
        out_features: Size of each output sample. Must differ from ``in_features``.
        bias: Whether to learn an additive bias, initialized as in ``nn.Linear``.
        retraction: Retraction of the manifold: ``"polar"`` (alias ``"svd"``), ``"qr"``,
            ``"cayley"`` or ``"exp"``.
        device: Device of the parameters.
        dtype: Floating-point dtype of the parameters.

    Raises:
        ValueError: If ``in_features == out_features`` ($\mathrm{Gr}(n, n)$ is a single
            point), a size is below 1, or ``retraction`` is unknown.
        TypeError: If a size is not an int or ``dtype`` is not floating point.

    Example:
        >>> import torch
        >>> from grassmann_nn.nn import GrassmannLinear
        >>> layer = GrassmannLinear(256, 8)
        >>> layer.weight.shape
        torch.Size([8, 256])
        >>> torch.allclose(layer.weight @ layer.weight.T, torch.eye(8), atol=1e-5)
        True
    """

    _manifold_class = Grassmann

    @classmethod
    def _check_shape(cls, in_features: int, out_features: int) -> None:
        super()._check_shape(in_features, out_features)
        if in_features == out_features:
            raise ValueError(
                f"GrassmannLinear needs in_features != out_features, got {in_features} for "
                f"both. Gr({in_features}, {in_features}) is a single point, so the weight could "
                "never change. Use StiefelLinear for a square orthogonal weight."
            )


class StiefelLinear(_OrthonormalLinear):
    r"""Drop-in for ``nn.Linear`` whose weight is a point of the Stiefel manifold.

    ``weight`` has shape ``(out_features, in_features)`` and is the matrix ``F.linear`` uses.
    Its longer side is orthonormal: the rows when ``out_features < in_features`` (the manifold
    is $\mathrm{St}(in, out)$ on $W^\top$), the columns otherwise (it is
    $\mathrm{St}(out, in)$ on $W$). With ``in_features == out_features`` the weight
    is a square orthogonal matrix. The weight is Haar-distributed at initialization and stays
    on the manifold under `grassmann_nn.optim.RiemannianSGD` or geoopt's optimizers;
    after any other optimizer call `grassmann_nn.nn.retract_`. A cast to a finer dtype
    (``.double()``, ``.to(torch.float64)``) projects the weight onto the manifold again, so it
    passes the manifold check of the new dtype.

    Args:
        in_features: Size of each input sample.
        out_features: Size of each output sample.
        bias: Whether to learn an additive bias, initialized as in ``nn.Linear``.
        retraction: Retraction of the manifold: ``"polar"`` (alias ``"svd"``), ``"qr"``,
            ``"cayley"`` or ``"exp"``.
        device: Device of the parameters.
        dtype: Floating-point dtype of the parameters.

    Raises:
        ValueError: If a size is below 1 or ``retraction`` is unknown.
        TypeError: If a size is not an int or ``dtype`` is not floating point.
    """

    _manifold_class = Stiefel
