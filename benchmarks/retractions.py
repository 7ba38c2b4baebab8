r"""Retraction benchmark: each retraction of ``grassmann_nn.retractions`` against the nearest map
of geoopt, geotorch and ``torch.nn.utils.parametrizations.orthogonal``.

Three measurements:

- time per call at fixed shapes and dtypes, with ratio = ours / peer for the peers of the same
  kind (polar, QR, Cayley, exponential), and the orthonormality error max |Y^T Y - I| of one call;
- the drift of max |Y^T Y - I| after many small steps without re-projection;
- time against n at p = 8 and the fitted exponent of time ~ n^k.

Peers, by kind. Each is the map its library runs for one optimizer step:

- polar: geoopt ``Stiefel.projx(X + U)``, the U V^T factor of an SVD. geoopt has no polar
  retraction, so its projection of X + U is the nearest thing a geoopt user can call.
- qr: geoopt ``EuclideanStiefel.retr``, which is qf(X + U) with the columns of Q flipped where
  diag(R) < 0 (a sign-fixed QR retraction, the same map as ours), and torch's
  ``orthogonal(orthogonal_map="householder")``, a product of Householder reflectors, which is
  how a QR factorization forms its Q.
- cayley: geoopt ``CanonicalStiefel.retr``, the Cayley transform with an n x n solve. Also the
  ``"cayley"`` maps of torch's ``orthogonal`` and of ``geotorch.orthogonal``, which take the
  Cayley transform of an n x n skew-symmetric matrix by an n x n solve.
- exp: geoopt ``EuclideanStiefelExact.retr``, the Euclidean-metric Stiefel geodesic through a
  2p x 2p matrix exponential (the same map as our ``stiefel_exp``). Also torch's
  ``orthogonal(orthogonal_map="matrix_exp")`` and geotorch's ``grassmannian`` and ``orthogonal``
  (Stiefel) parametrizations, which take the n x n matrix exponential of a skew-symmetric
  matrix.

A parametrization recomputes the weight from an unconstrained parameter on every access, so
its per-step cost is that recomputation: the timed call is ``module.weight`` under
``torch.no_grad()``. In training its backward pass comes on top, so the timing is a lower
bound of what a step costs it. Every map, ours included, is timed under ``torch.no_grad()``
on plain tensors, as an optimizer runs it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import geoopt
import geotorch
import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.utils import parametrizations

from benchmarks._common import (
    Settings,
    format_error,
    format_ratio,
    format_seconds,
    markdown_table,
    not_measured,
    ratio,
    target_record,
    time_callable,
)
from grassmann_nn import retractions

KINDS = ("polar", "qr", "cayley", "exp")

SHAPES: tuple[tuple[int, ...], ...] = ((256, 8), (1024, 32), (4096, 256), (1024, 1024), (64, 64, 8))
QUICK_SHAPES: tuple[tuple[int, ...], ...] = ((256, 8), (64, 64, 8))
DTYPES = (torch.float32, torch.float64)
QUICK_DTYPES = (torch.float32,)

# Frobenius norm of the tangent vector of a timed call (per matrix of a batch). The
# parametrizations get the same matrix as their unconstrained parameter.
STEP_NORM = 0.5

DRIFT_SHAPE = (256, 8)
DRIFT_STEPS = 10_000
QUICK_DRIFT_STEPS = 50
DRIFT_STEP_NORM = 1e-3

SCALING_P = 8
SCALING_NS = tuple(2**k for k in range(8, 15))  # 256 ... 16384
QUICK_SCALING_NS = (256, 512)
# The exponent is fitted over n >= FIT_MIN_N, where the O(n) work dominates fixed costs.
FIT_MIN_N = 2048
# Maps that keep an n x n matrix (and factor it when they are set up) are skipped above this n:
# at n = 16384 the matrix alone is 1 GiB in float32.
MAX_SQUARE_N = 8192
# "About linear in n" for the scaling target.
LINEAR_EXPONENT_LIMIT = 1.2

CAYLEY_TARGET_SHAPE = (4096, 256)
CAYLEY_TARGET_SPEEDUP = 15.0


# The maps.


@dataclass(frozen=True)
class FunctionalMap:
    """A retraction called as ``function(x, u)``: ours, or a geoopt manifold's method.

    Attributes:
        label: Row label in the tables.
        kind: One of `KINDS`.
        ours: Whether it comes from ``grassmann_nn``.
        algorithm: What it computes, for the docs.
        function: The map ``(x, u) -> y``.
        tangent: ``"stiefel"`` for Stiefel tangent vectors, ``"horizontal"`` for Grassmann
            ones (``x^T u = 0``).
        square_ok: Whether square shapes (p = n) are meaningful. Gr(n, n) is a single point.
    """

    label: str
    kind: str
    ours: bool
    algorithm: str
    function: Callable[[Tensor, Tensor], Tensor]
    tangent: str = "stiefel"
    square_ok: bool = True
    square_state: bool = False

    def prepare(self, x: Tensor, u: Tensor) -> Callable[[], Tensor]:
        """Return the zero-argument call to time, which retracts ``u`` at ``x``."""

        def call() -> Tensor:
            with torch.no_grad():
                return self.function(x, u)

        return call

    def walk(self, x: Tensor, steps: int, step_norm: float, generator: torch.Generator) -> Tensor:
        """Retract ``steps`` random tangent steps of norm ``step_norm`` in a row; return the end."""
        with torch.no_grad():
            for _ in range(steps):
                u = random_tangent(x, self.tangent, step_norm, generator)
                x = self.function(x, u)
        return x


@dataclass(frozen=True)
class ParametrizationMap:
    """A parametrization that recomputes an orthonormal weight from an unconstrained parameter.

    Attributes:
        label: Row label in the tables.
        kind: One of `KINDS`.
        algorithm: What it computes, for the docs.
        register: Registers the parametrization on ``module.weight``.
        diagonal_fixed: The parameter's diagonal must stay at -1 (torch's Householder map reads
            each reflector's sign from it with ``.int()`` and passes it no gradient).
        square_ok: Whether square shapes (p = n) are meaningful.
    """

    label: str
    kind: str
    algorithm: str
    register: Callable[[nn.Module], None]
    diagonal_fixed: bool = False
    square_ok: bool = True
    ours: bool = False
    square_state: bool = True
    tangent: str = "stiefel"

    def _build(self, x: Tensor) -> tuple[nn.Module, Tensor]:
        holder = nn.Module()
        holder.weight = nn.Parameter(x.clone())
        self.register(holder)
        return holder, holder.parametrizations.weight.original

    def _perturb(self, original: Tensor, delta: Tensor) -> None:
        if self.diagonal_fixed:
            delta = delta.tril(-1)
        original.add_(delta)

    def prepare(self, x: Tensor, u: Tensor) -> Callable[[], Tensor]:
        """Register the parametrization at ``x``, move its parameter by ``u``, return the call.

        The call reads ``module.weight``, which recomputes the weight from the parameter.
        """
        holder, original = self._build(x)
        with torch.no_grad():
            self._perturb(original, u)

        def call() -> Tensor:
            with torch.no_grad():
                return holder.weight

        return call

    def walk(self, x: Tensor, steps: int, step_norm: float, generator: torch.Generator) -> Tensor:
        """Add ``steps`` random steps of norm ``step_norm`` to the parameter; return the weight.

        The weight is recomputed from the parameter on every access, so rounding errors cannot
        accumulate in it across steps, and reading it once at the end gives the same error as
        reading it after every step.
        """
        holder, original = self._build(x)
        with torch.no_grad():
            for _ in range(steps):
                delta = torch.randn(original.shape, dtype=original.dtype, generator=generator)
                delta *= step_norm / torch.linalg.vector_norm(delta)
                self._perturb(original, delta.to(original.device))
            return holder.weight


Map = FunctionalMap | ParametrizationMap


def _register_torch_orthogonal(orthogonal_map: str) -> Callable[[nn.Module], None]:
    def register(module: nn.Module) -> None:
        parametrizations.orthogonal(module, "weight", orthogonal_map=orthogonal_map)

    return register


def _register_geotorch(constraint: Callable[..., nn.Module], triv: str):
    def register(module: nn.Module) -> None:
        constraint(module, "weight", triv=triv)

    return register


def build_maps() -> list[Map]:
    """Return our retractions followed by the peer maps, in table order."""
    euclidean = geoopt.EuclideanStiefel()
    canonical = geoopt.CanonicalStiefel()
    exact = geoopt.EuclideanStiefelExact()

    def geoopt_polar(x: Tensor, u: Tensor) -> Tensor:
        return euclidean.projx(x + u)

    return [
        FunctionalMap(
            "ours: polar", "polar", True, "(X + U)(I + U^T U)^(-1/2) via eigh", retractions.polar
        ),
        FunctionalMap("ours: qr", "qr", True, "sign-fixed qf(X + U)", retractions.qr),
        FunctionalMap(
            "ours: cayley", "cayley", True, "Cayley, 2p x 2p solve when 2p < n", retractions.cayley
        ),
        FunctionalMap(
            "ours: exp",
            "exp",
            True,
            "Grassmann geodesic, 2p x 2p expm",
            retractions.grassmann_exp,
            tangent="horizontal",
            square_ok=False,
        ),
        FunctionalMap(
            "ours: stiefel_exp",
            "exp",
            True,
            "Euclidean Stiefel geodesic, 2p x 2p expm",
            retractions.stiefel_exp,
        ),
        FunctionalMap(
            "geoopt Stiefel.projx(X+U)", "polar", False, "SVD U V^T of X + U", geoopt_polar
        ),
        FunctionalMap(
            "geoopt EuclideanStiefel.retr", "qr", False, "sign-fixed qf(X + U)", euclidean.retr
        ),
        ParametrizationMap(
            "torch orthogonal(householder)",
            "qr",
            "Householder product, then n x n base @ Q",
            _register_torch_orthogonal("householder"),
            diagonal_fixed=True,
        ),
        FunctionalMap(
            "geoopt CanonicalStiefel.retr",
            "cayley",
            False,
            "Cayley, n x n solve",
            canonical.retr,
            square_state=True,
        ),
        ParametrizationMap(
            "torch orthogonal(cayley)",
            "cayley",
            "Cayley of n x n skew, n x n solve",
            _register_torch_orthogonal("cayley"),
        ),
        ParametrizationMap(
            "geotorch orthogonal(cayley)",
            "cayley",
            "Cayley of n x n skew, n x n solve",
            _register_geotorch(geotorch.orthogonal, "cayley"),
        ),
        FunctionalMap(
            "geoopt EuclideanStiefelExact.retr",
            "exp",
            False,
            "Euclidean Stiefel geodesic, 2p x 2p expm",
            exact.retr,
        ),
        ParametrizationMap(
            "torch orthogonal(matrix_exp)",
            "exp",
            "n x n matrix_exp of skew",
            _register_torch_orthogonal("matrix_exp"),
        ),
        ParametrizationMap(
            "geotorch grassmannian",
            "exp",
            "n x n matrix_exp of skew",
            _register_geotorch(geotorch.grassmannian, "expm"),
            square_ok=False,
        ),
        ParametrizationMap(
            "geotorch orthogonal",
            "exp",
            "n x n matrix_exp of skew",
            _register_geotorch(geotorch.orthogonal, "expm"),
        ),
    ]


# Points and tangent vectors.


def haar_point(
    shape: Sequence[int], dtype: torch.dtype, device: str, generator: torch.Generator
) -> Tensor:
    """Return a Haar-distributed matrix (or stack) with orthonormal columns, a plain tensor.

    Plain tensors, not geoopt.ManifoldTensor, so that no ``__torch_function__`` dispatch is timed.
    """
    gaussian = torch.randn(tuple(shape), dtype=torch.float64, generator=generator)
    q, r = torch.linalg.qr(gaussian)
    signs = torch.where(r.diagonal(dim1=-2, dim2=-1) < 0, -1.0, 1.0).to(torch.float64)
    return (q * signs.unsqueeze(-2)).to(dtype=dtype, device=device)


def random_tangent(x: Tensor, tangent: str, norm: float, generator: torch.Generator) -> Tensor:
    """Return a random tangent vector at ``x`` with Frobenius norm ``norm`` per matrix.

    ``tangent="stiefel"`` projects onto the Stiefel tangent space (``x^T u`` skew-symmetric),
    ``"horizontal"`` onto the Grassmann horizontal space (``x^T u = 0``).
    """
    gaussian = torch.randn(x.shape, dtype=x.dtype, generator=generator).to(x.device)
    overlap = x.mT @ gaussian
    if tangent == "horizontal":
        u = gaussian - x @ overlap
    else:
        u = gaussian - x @ ((overlap + overlap.mT) / 2)
    return u * (norm / torch.linalg.matrix_norm(u, keepdim=True))


def orthonormality_error(y: Tensor) -> float:
    """Return max |Y^T Y - I| over a stack, computed in float64."""
    y = y.detach().to(torch.float64)
    eye = torch.eye(y.shape[-1], dtype=torch.float64, device=y.device)
    return float((y.mT @ y - eye).abs().max())


def _is_square(shape: Sequence[int]) -> bool:
    return shape[-1] == shape[-2]


def _shape_label(shape: Sequence[int]) -> str:
    return "(" + ", ".join(str(size) for size in shape) + ")"


def _dtype_label(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


# Time per call at fixed shapes.


def _time_map(
    spec: Map, x: Tensor, u: Tensor, shape: Sequence[int], settings: Settings
) -> dict[str, Any]:
    """Time one map at one point; return the timing and the one-step orthonormality error."""
    if _is_square(shape) and not spec.square_ok:
        return not_measured("Gr(n, n) is a single point") | {"error_one_step": None}

    call = spec.prepare(x, u)
    timing, y = time_callable(
        call, min_run_time=settings.min_run_time, max_call_s=settings.max_call_s
    )
    error = orthonormality_error(y)
    if not math.isfinite(error):
        return timing | {"error_one_step": None, "note": "the output contains NaN or infinity"}
    return timing | {"error_one_step": error}


def time_shapes(
    maps: Sequence[Map],
    settings: Settings,
    device: str,
    shapes: Sequence[Sequence[int]],
    dtypes: Sequence[torch.dtype],
) -> list[dict[str, Any]]:
    """Time every map at every shape and dtype on ``device``; print the ratios as it goes."""
    records = []
    for dtype in dtypes:
        for shape in shapes:
            generator = torch.Generator().manual_seed(0)
            x = haar_point(shape, dtype, device, generator)
            u = random_tangent(x, "stiefel", STEP_NORM, generator)
            horizontal = random_tangent(x, "horizontal", STEP_NORM, generator)

            cell = []
            for spec in maps:
                step = horizontal if spec.tangent == "horizontal" else u
                record = {
                    "device": device,
                    "dtype": _dtype_label(dtype),
                    "shape": list(shape),
                    "map": spec.label,
                    "kind": spec.kind,
                    "ours": spec.ours,
                } | _time_map(spec, x, step, shape, settings)
                cell.append(record)

            _print_cell(cell)
            records += cell
    return records


def fastest_peer(records: Sequence[dict[str, Any]], kind: str) -> dict[str, Any] | None:
    """Return the fastest measured peer record of ``kind`` among one cell's records."""
    peers = [
        record
        for record in records
        if record["kind"] == kind and not record["ours"] and record["median_s"] is not None
    ]
    return min(peers, key=lambda record: record["median_s"], default=None)


def _print_cell(cell: Sequence[dict[str, Any]]) -> None:
    first = cell[0]
    print(f"[retractions] {first['device']} {first['dtype']} {_shape_label(first['shape'])}")
    for record in cell:
        note = f"  ({record['note']})" if record["note"] else ""
        print(f"    {record['map']:<36} {format_seconds(record['median_s']):>10}{note}")

    for record in cell:
        if not record["ours"]:
            continue
        peer = fastest_peer(cell, record["kind"])
        if peer is None:
            print(f"    ratio {record['map']}: no measured {record['kind']} peer")
            continue
        value = format_ratio(ratio(record["median_s"], peer["median_s"]))
        print(f"    ratio {record['map']} / {peer['map']} (fastest {record['kind']}) = {value}")


# Drift.


def measure_drift(maps: Sequence[Map], steps: int, device: str) -> list[dict[str, Any]]:
    """Measure max |Y^T Y - I| after ``steps`` steps of norm `DRIFT_STEP_NORM` at `DRIFT_SHAPE`.

    Float32, no re-projection between steps. Every map starts from the same point and draws
    its steps from the same seed.
    """
    records = []
    for spec in maps:
        generator = torch.Generator().manual_seed(1)
        x = haar_point(DRIFT_SHAPE, torch.float32, device, generator)
        y = spec.walk(x, steps, DRIFT_STEP_NORM, generator)
        error = orthonormality_error(y)
        print(f"[drift] {spec.label:<36} after {steps} steps: max |Y^T Y - I| = {error:.2e}")
        records.append({"map": spec.label, "steps": steps, "error": error})
    return records


# Scaling in n.


def _skip_reason(
    spec: Map, n: int, previous: dict[str, Any] | None, max_call_s: float
) -> str | None:
    """Return why ``spec`` is not timed at size n, or None to time it.

    The time at n is predicted from the previous n as if the map were O(n^3), the worst case of
    these maps, so a map is skipped before it can run far over the cap.
    """
    if spec.square_state and n > MAX_SQUARE_N:
        return f"keeps and factors an n x n matrix, skipped above n = {MAX_SQUARE_N}"
    if previous is None:
        return None
    if previous["median_s"] is None:
        return f"not measured at n = {previous['n']}"

    predicted = previous["median_s"] * (n / previous["n"]) ** 3
    if predicted > max_call_s:
        return (
            f"predicted {predicted:.0f} s per call from n = {previous['n']} under O(n^3), "
            f"over the {max_call_s:g} s cap"
        )
    return None


def measure_scaling(
    maps: Sequence[Map], settings: Settings, sizes: Sequence[int], device: str
) -> list[dict[str, Any]]:
    """Time every map at shapes (n, `SCALING_P`), float32, for each n in ``sizes``."""
    records = []
    for spec in maps:
        previous = None
        for n in sizes:
            reason = _skip_reason(spec, n, previous, settings.max_call_s)
            if reason is None:
                generator = torch.Generator().manual_seed(2)
                x = haar_point((n, SCALING_P), torch.float32, device, generator)
                u = random_tangent(x, spec.tangent, STEP_NORM, generator)
                timing, _ = time_callable(
                    spec.prepare(x, u),
                    min_run_time=settings.min_run_time,
                    max_call_s=settings.max_call_s,
                )
            else:
                timing = not_measured(reason)

            previous = {"map": spec.label, "kind": spec.kind, "ours": spec.ours, "n": n} | timing
            records.append(previous)
            print(f"[scaling] {spec.label:<36} n = {n:>6}: {format_seconds(timing['median_s'])}")
    return records


def fit_exponents(records: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Fit log(time) = k log(n) + c by least squares for each map; return k and the n used.

    The fit uses the measured n >= `FIT_MIN_N`. Where fewer than two such points exist, it uses
    the largest two or three measured n and records that in ``note``.
    """
    fits = {}
    for label in dict.fromkeys(record["map"] for record in records):
        measured = [
            (record["n"], record["median_s"])
            for record in records
            if record["map"] == label and record["median_s"] is not None
        ]
        large = [point for point in measured if point[0] >= FIT_MIN_N]
        note = None
        if len(large) < 2:
            large = measured[-3:]
            note = f"fewer than 2 measured n >= {FIT_MIN_N}; fitted over the largest n"
        if len(large) < 2:
            fits[label] = {"exponent": None, "n_used": [], "note": "fewer than 2 measured n"}
            continue

        log_n = np.log([point[0] for point in large])
        log_t = np.log([point[1] for point in large])
        slope = float(np.polyfit(log_n, log_t, 1)[0])
        fits[label] = {"exponent": slope, "n_used": [point[0] for point in large], "note": note}
    return fits


# Entry point.


def run(settings: Settings) -> dict[str, Any]:
    """Run the retraction benchmark and return its JSON-ready results."""
    maps = build_maps()
    shapes = QUICK_SHAPES if settings.quick else SHAPES
    dtypes = QUICK_DTYPES if settings.quick else DTYPES
    # NOTE: the CUDA table has not been run yet: this file was written on a machine without a GPU.
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])

    timings = []
    for device in devices:
        timings += time_shapes(maps, settings, device, shapes, dtypes)

    drift = measure_drift(maps, QUICK_DRIFT_STEPS if settings.quick else DRIFT_STEPS, "cpu")
    sizes = QUICK_SCALING_NS if settings.quick else SCALING_NS
    scaling = measure_scaling(maps, settings, sizes, "cpu")
    return {
        "maps": [
            {"map": spec.label, "kind": spec.kind, "ours": spec.ours, "algorithm": spec.algorithm}
            for spec in maps
        ],
        "timings": timings,
        "drift": drift,
        "scaling": scaling,
        "exponents": fit_exponents(scaling),
        "step_norm": STEP_NORM,
        "drift_step_norm": DRIFT_STEP_NORM,
        "scaling_p": SCALING_P,
    }


# Speed targets.


def _cells(results: dict[str, Any], device: str) -> dict[tuple, list[dict[str, Any]]]:
    """Group timing records by (dtype, shape) for one device, in measurement order."""
    cells: dict[tuple, list[dict[str, Any]]] = {}
    for record in results["timings"]:
        if record["device"] == device:
            cells.setdefault((record["dtype"], tuple(record["shape"])), []).append(record)
    return cells


def _ratio_to_fastest(cell: Sequence[dict[str, Any]], label: str) -> tuple[float | None, str]:
    ours = next(record for record in cell if record["map"] == label)
    peer = fastest_peer(cell, ours["kind"])
    if peer is None:
        return None, "none measured"
    return ratio(ours["median_s"], peer["median_s"]), peer["map"]


def _no_slower_target(results: dict[str, Any], label: str) -> dict[str, Any]:
    worst: tuple[float, str] | None = None
    misses = 0
    for (dtype, shape), cell in _cells(results, "cpu").items():
        value, _ = _ratio_to_fastest(cell, label)
        if value is None:
            continue
        misses += value > 1.0
        if worst is None or value > worst[0]:
            worst = (value, f"{dtype} {_shape_label(shape)}")

    name = f"{label} no slower than the fastest peer of its kind at every shape (CPU)"
    if worst is None:
        return target_record(name, None, "no cell with a measured peer", "ratio <= 1.0")
    measured = f"worst ratio {worst[0]:.3g} at {worst[1]}; {misses} cell(s) over 1.0"
    return target_record(name, misses == 0, measured, "ratio <= 1.0")


def _cayley_target(results: dict[str, Any]) -> dict[str, Any]:
    name = (
        f"ours: cayley at least {CAYLEY_TARGET_SPEEDUP:g}x faster than geoopt CanonicalStiefel "
        f"at {_shape_label(CAYLEY_TARGET_SHAPE)} (CPU)"
    )
    speedups = []
    for (dtype, shape), cell in _cells(results, "cpu").items():
        if shape != CAYLEY_TARGET_SHAPE:
            continue
        times = {record["map"]: record["median_s"] for record in cell}
        value = ratio(times.get("geoopt CanonicalStiefel.retr"), times.get("ours: cayley"))
        if value is not None:
            speedups.append((dtype, value))

    if not speedups:
        return target_record(name, None, "shape not measured in this run", "speedup >= 15")
    measured = ", ".join(f"{dtype}: {value:.3g}x" for dtype, value in speedups)
    passed = all(value >= CAYLEY_TARGET_SPEEDUP for _, value in speedups)
    return target_record(name, passed, measured, f"speedup >= {CAYLEY_TARGET_SPEEDUP:g}")


def _scaling_target(results: dict[str, Any]) -> dict[str, Any]:
    ours = [entry["map"] for entry in results["maps"] if entry["ours"]]
    exponents = {label: results["exponents"][label]["exponent"] for label in ours}
    name = f"each of our retractions about linear in n at p = {SCALING_P}"
    if any(value is None for value in exponents.values()):
        return target_record(name, None, "too few sizes measured", "exponent <= 1.2")
    measured = ", ".join(f"{label}: {value:.2f}" for label, value in exponents.items())
    passed = all(value <= LINEAR_EXPONENT_LIMIT for value in exponents.values())
    return target_record(name, passed, measured, f"exponent <= {LINEAR_EXPONENT_LIMIT}")


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Evaluate the retraction speed targets on the CPU results."""
    ours = [entry["map"] for entry in results["maps"] if entry["ours"]]
    rows = [_no_slower_target(results, label) for label in ours]
    rows.append(_cayley_target(results))
    rows.append(_scaling_target(results))
    return rows


# Markdown.


def _timing_cell(record: dict[str, Any]) -> str:
    if record["median_s"] is not None:
        return format_seconds(record["median_s"])
    if record.get("warmup_s"):
        return f"> cap (1 call: {format_seconds(record['warmup_s'])})"
    return "n/m"


def _kind_table(results: dict[str, Any], device: str, label: str) -> str:
    """Return the table of one of our maps against the peers of its kind."""
    kind = next(entry["kind"] for entry in results["maps"] if entry["map"] == label)
    peers = [
        entry["map"] for entry in results["maps"] if entry["kind"] == kind and not entry["ours"]
    ]
    headers = ["dtype", "shape", label, *[f"{peer} (ratio)" for peer in peers]]
    headers += ["fastest peer", "ratio to fastest"]

    rows = []
    for (dtype, shape), cell in _cells(results, device).items():
        by_map = {record["map"]: record for record in cell}
        ours = by_map[label]
        row = [dtype, _shape_label(shape), _timing_cell(ours)]
        for peer in peers:
            record = by_map[peer]
            value = format_ratio(ratio(ours["median_s"], record["median_s"]))
            row.append(f"{_timing_cell(record)} ({value})")
        value, fastest = _ratio_to_fastest(cell, label)
        row += [fastest, format_ratio(value)]
        rows.append(row)
    return markdown_table(headers, rows)


def _error_table(results: dict[str, Any]) -> tuple[str, list[str]]:
    cells = _cells(results, "cpu")
    shapes = list(dict.fromkeys(shape for _, shape in cells))
    dtypes = list(dict.fromkeys(dtype for dtype, _ in cells))
    drift = {record["map"]: record for record in results["drift"]}
    steps = results["drift"][0]["steps"] if results["drift"] else 0

    headers = ["map", *[_shape_label(shape) for shape in shapes]]
    headers.append(f"drift after {steps} steps")
    rows = []
    for entry in results["maps"]:
        row = [entry["map"]]
        for shape in shapes:
            errors = []
            for dtype in dtypes:
                record = next(r for r in cells[(dtype, shape)] if r["map"] == entry["map"])
                errors.append(format_error(record["error_one_step"]))
            row.append(" / ".join(errors))
        row.append(format_error(drift[entry["map"]]["error"]) if entry["map"] in drift else "n/m")
        rows.append(row)
    return markdown_table(headers, rows), dtypes


def _scaling_table(results: dict[str, Any]) -> str:
    sizes = list(dict.fromkeys(record["n"] for record in results["scaling"]))
    headers = ["map", *[f"n = {n}" for n in sizes], "exponent", "fitted over n"]
    rows = []
    for entry in results["maps"]:
        by_n = {r["n"]: r for r in results["scaling"] if r["map"] == entry["map"]}
        fit = results["exponents"][entry["map"]]
        exponent = "n/m" if fit["exponent"] is None else f"{fit['exponent']:.2f}"
        used = ", ".join(str(n) for n in fit["n_used"])
        rows.append(
            [entry["map"], *[_timing_cell(by_n[n]) for n in sizes], exponent, used or "n/m"]
        )
    return markdown_table(headers, rows)


def _notes(results: dict[str, Any]) -> list[str]:
    """Return the distinct reasons for cells that were not measured."""
    notes = [record["note"] for record in results["timings"] + results["scaling"]]
    return sorted({note for note in notes if note and note.startswith("not measured")})


def render(results: dict[str, Any]) -> str:
    """Return the markdown section of the retraction benchmark."""
    ours = [entry["map"] for entry in results["maps"] if entry["ours"]]
    lines = [
        "## Retractions",
        "",
        "Median time per call (``torch.utils.benchmark``, ``blocked_autorange``) of one step of "
        f"Frobenius norm {results['step_norm']} per matrix, under ``torch.no_grad()``. Each peer "
        "cell shows its time and, in brackets, ratio = ours / peer (below 1: ours is faster). "
        "Parametrizations are timed reading ``module.weight``, which recomputes the weight; "
        "their backward pass in training comes on top. n/m: not measured (see the notes).",
        "",
        markdown_table(
            ["map", "kind", "algorithm"],
            [[entry["map"], entry["kind"], entry["algorithm"]] for entry in results["maps"]],
        ),
        "",
    ]

    devices = list(dict.fromkeys(record["device"] for record in results["timings"]))
    for device in devices:
        for label in ours:
            lines += [f"### {label}, {device.upper()}", "", _kind_table(results, device, label), ""]

    errors, dtypes = _error_table(results)
    lines += [
        "### Orthonormality error",
        "",
        f"max |Y^T Y - I| after one step ({' / '.join(dtypes)}), and after many steps of norm "
        f"{results['drift_step_norm']:g} at {_shape_label(DRIFT_SHAPE)} float32 without "
        "re-projection. A parametrization recomputes its weight from its parameter, so its "
        "error cannot accumulate.",
        "",
        errors,
        "",
        f"### Scaling in n (p = {results['scaling_p']}, float32, CPU)",
        "",
        "Median time per call; exponent k of time ~ n^k, fitted by least squares on log-log "
        f"over n >= {FIT_MIN_N} where measured.",
        "",
        _scaling_table(results),
        "",
    ]

    notes = _notes(results)
    if notes:
        lines += ["Notes:", "", *[f"- {note}" for note in notes], ""]
    return "\n".join(lines)
