"""Training-step benchmark: seconds per step of the DEFRAG network with each way of keeping the
feature layer orthonormal, as a ratio to plain ``nn.Linear`` + ``torch.optim.SGD``.

The network is ``examples.defrag.model.DefragNet`` (Conv 32 5x5, ReLU, max-pool 2, Conv 256 5x5,
ReLU, max-pool 2, FC 4096 -> 256, ReLU, feature layer 256 -> 8, FC 8 -> 10) on random input
of shape (batch, 1, 28, 28) with random labels. A step is ``zero_grad``, forward,
cross-entropy, backward and ``optimizer.step()`` (lr 0.01, momentum 0.9 everywhere). The
variants differ only in the feature layer and the optimizer:

- ``nn.Linear`` + ``torch.optim.SGD``: the baseline, no constraint.
- ``GrassmannLinear`` + ``grassmann_nn.optim.RiemannianSGD``, for each retraction.
- ``GrassmannLinear`` + ``torch.optim.SGD``, then ``grassmann_nn.nn.retract_``: the "any
  optimizer, then retract" recipe.
- A Stiefel ``geoopt.ManifoldParameter`` + ``geoopt.optim.RiemannianSGD``, canonical (Cayley
  retraction) and Euclidean (QR retraction): the nearest recipe in geoopt, which has no
  Grassmann manifold.
- ``geotorch.grassmannian`` on ``nn.Linear`` + ``torch.optim.SGD``: the nearest recipe in
  geotorch, which recomputes the weight by an n x n matrix exponential in every forward pass.

Separately, the DEFRAG step (cross-entropy plus ``SilhouetteLoss``) and the share of it spent in
the Silhouette loss, forward and backward, timed on its own.

The variants are timed in interleaved rounds, and each ratio is the median over rounds of the
ratio within a round, so that a change in machine load between variants cancels out.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import geoopt
import geotorch
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from benchmarks._common import (
    Settings,
    format_ratio,
    format_seconds,
    markdown_table,
    ratio,
    target_record,
    time_callable,
)
from examples.defrag.model import DefragNet
from grassmann_nn.losses import SilhouetteLoss
from grassmann_nn.nn import retract_
from grassmann_nn.optim import RiemannianSGD

BATCH = 128
QUICK_BATCH = 16
NUM_CLASSES = 10
FEATURE_DIM = 8
HIDDEN = 256
LR = 0.01
MOMENTUM = 0.9
SILHOUETTE_WEIGHT = 1.0

ROUNDS = 5
QUICK_ROUNDS = 1
# Seconds of blocked_autorange per variant and round; quick runs use Settings.min_run_time.
STEP_MIN_RUN_TIME = 2.0

RETRACTIONS = ("polar", "qr", "cayley", "exp")
BASELINE = "nn.Linear + torch.optim.SGD"
DEFRAG = "DEFRAG: GrassmannLinear(polar) + RiemannianSGD, CE + SilhouetteLoss"
MAX_SLOWDOWN = 1.03


@dataclass
class Variant:
    """A model and the step that trains it once."""

    name: str
    model: nn.Module
    step: Callable[[], None]


class TallStiefelLinear(nn.Module):
    """Linear layer whose weight is stored as a tall ``in x out`` geoopt Stiefel point.

    geoopt's Stiefel manifolds need n >= p on the last two dimensions, so the weight is kept
    as the transpose of ``nn.Linear``'s and transposed in ``forward``.
    """

    def __init__(self, in_features: int, out_features: int, manifold: geoopt.Manifold) -> None:
        super().__init__()
        point = manifold.random(in_features, out_features)
        self.weight = geoopt.ManifoldParameter(point, manifold=manifold)
        bound = 1 / in_features**0.5
        self.bias = nn.Parameter(torch.empty(out_features).uniform_(-bound, bound))

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight.mT, self.bias)


def _make_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    images: Tensor,
    labels: Tensor,
    *,
    after_step: Callable[[nn.Module], Any] | None = None,
    silhouette: SilhouetteLoss | None = None,
) -> Callable[[], None]:
    """Return one training step: zero_grad, forward, loss, backward, optimizer step."""

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        logits, features = model(images)
        loss = F.cross_entropy(logits, labels)
        if silhouette is not None:
            loss = loss + SILHOUETTE_WEIGHT * silhouette(features, labels)
        loss.backward()
        optimizer.step()
        if after_step is not None:
            after_step(model)

    return step


def _sgd(model: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)


def build_variants(images: Tensor, labels: Tensor) -> list[Variant]:
    """Build every variant with the same seed, so that all start from the same backbone."""

    def fresh(feature: str = "linear", retraction: str = "polar") -> DefragNet:
        torch.manual_seed(0)
        return DefragNet(feature, FEATURE_DIM, NUM_CLASSES, retraction=retraction)

    variants = []
    model = fresh()
    variants.append(Variant(BASELINE, model, _make_step(model, _sgd(model), images, labels)))

    for retraction in RETRACTIONS:
        model = fresh("grassmann", retraction)
        optimizer = RiemannianSGD(model.parameters(), lr=LR, momentum=MOMENTUM)
        name = f"GrassmannLinear({retraction}) + RiemannianSGD"
        variants.append(Variant(name, model, _make_step(model, optimizer, images, labels)))

    model = fresh("grassmann")
    step = _make_step(model, _sgd(model), images, labels, after_step=retract_)
    variants.append(Variant("GrassmannLinear + torch.optim.SGD, then retract_", model, step))

    for canonical, label in ((True, "canonical, Cayley"), (False, "Euclidean, QR")):
        model = fresh()
        model.feature = TallStiefelLinear(HIDDEN, FEATURE_DIM, geoopt.Stiefel(canonical=canonical))
        optimizer = geoopt.optim.RiemannianSGD(model.parameters(), lr=LR, momentum=MOMENTUM)
        name = f"geoopt Stiefel ({label}) + geoopt RiemannianSGD"
        variants.append(Variant(name, model, _make_step(model, optimizer, images, labels)))

    model = fresh()
    geotorch.grassmannian(model.feature, "weight")
    step = _make_step(model, _sgd(model), images, labels)
    variants.append(Variant("geotorch.grassmannian + torch.optim.SGD", model, step))

    model = fresh("grassmann")
    optimizer = RiemannianSGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    silhouette = SilhouetteLoss(NUM_CLASSES, FEATURE_DIM)
    step = _make_step(model, optimizer, images, labels, silhouette=silhouette)
    variants.append(Variant(DEFRAG, model, step))
    return variants


def _time_rounds(
    variants: list[Variant], rounds: int, min_run_time: float, max_call_s: float
) -> dict[str, list[float | None]]:
    """Time every variant once per round, starting each round at the next variant."""
    times: dict[str, list[float | None]] = {variant.name: [] for variant in variants}
    for round_index in range(rounds):
        offset = round_index % len(variants)
        for variant in variants[offset:] + variants[:offset]:
            timing, _ = time_callable(
                variant.step, min_run_time=min_run_time, max_call_s=max_call_s
            )
            times[variant.name].append(timing["median_s"])
            print(
                f"[training] round {round_index + 1}/{rounds} {variant.name:<66} "
                f"{format_seconds(timing['median_s'])}/step"
            )
    return times


def _median(values: list[float | None]) -> float | None:
    measured = [value for value in values if value is not None]
    return float(np.median(measured)) if measured else None


def _round_ratios(times: dict[str, list[float | None]], name: str) -> list[float]:
    pairs = zip(times[name], times[BASELINE], strict=True)
    return [value for value in (ratio(a, b) for a, b in pairs) if value is not None]


def time_silhouette(batch: int, labels: Tensor, settings: Settings) -> dict[str, Any]:
    """Time the forward and backward pass of SilhouetteLoss on a (batch, 8) feature tensor.

    The loss runs in training mode, so the center update is included. A few calls first let
    every class be seen, because until then the loss is 0 and skips most of its work.
    """
    generator = torch.Generator().manual_seed(3)
    features = torch.randn(batch, FEATURE_DIM, generator=generator, requires_grad=True)
    loss_fn = SilhouetteLoss(NUM_CLASSES, FEATURE_DIM)
    for _ in range(3):
        loss_fn(features, labels)

    def call() -> None:
        features.grad = None
        loss_fn(features, labels).backward()

    timing, _ = time_callable(
        call, min_run_time=settings.min_run_time, max_call_s=settings.max_call_s
    )
    return timing


def run(settings: Settings) -> dict[str, Any]:
    """Run the training-step benchmark and return its JSON-ready results."""
    batch = QUICK_BATCH if settings.quick else BATCH
    rounds = QUICK_ROUNDS if settings.quick else ROUNDS
    min_run_time = settings.min_run_time if settings.quick else STEP_MIN_RUN_TIME

    generator = torch.Generator().manual_seed(0)
    images = torch.randn(batch, 1, 28, 28, generator=generator)
    labels = torch.randint(0, NUM_CLASSES, (batch,), generator=generator)
    variants = build_variants(images, labels)

    times = _time_rounds(variants, rounds, min_run_time, settings.max_call_s)
    rows = []
    for variant in variants:
        ratios = _round_ratios(times, variant.name)
        rows.append(
            {
                "variant": variant.name,
                "median_s": _median(times[variant.name]),
                "round_medians_s": times[variant.name],
                "ratio_to_baseline": float(np.median(ratios)) if ratios else None,
                "round_ratios": ratios,
            }
        )

    silhouette = time_silhouette(batch, labels, settings)
    defrag = next(row for row in rows if row["variant"] == DEFRAG)
    share = ratio(silhouette["median_s"], defrag["median_s"])
    print(f"[training] SilhouetteLoss forward + backward: {format_seconds(silhouette['median_s'])}")
    print(f"[training] share of the DEFRAG step in SilhouetteLoss: {format_ratio(share)}")
    for row in rows:
        value = format_ratio(row["ratio_to_baseline"])
        print(f"[training] ratio to plain SGD {row['variant']:<66} {value}")

    return {
        "batch": batch,
        "rounds": rounds,
        "min_run_time_per_round": min_run_time,
        "lr": LR,
        "momentum": MOMENTUM,
        "variants": rows,
        "silhouette": silhouette,
        "silhouette_share": share,
    }


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Evaluate: GrassmannLinear + RiemannianSGD at most 3% slower per step than plain SGD."""
    rows = []
    for retraction in RETRACTIONS:
        name = f"GrassmannLinear({retraction}) + RiemannianSGD"
        row = next(row for row in results["variants"] if row["variant"] == name)
        value = row["ratio_to_baseline"]
        target = f"{name} at most 3% slower per step than {BASELINE}"
        threshold = f"ratio <= {MAX_SLOWDOWN}"
        if value is None:
            rows.append(target_record(target, None, "not measured", threshold))
            continue
        measured = f"ratio {value:.3f} (batch {results['batch']})"
        rows.append(target_record(target, value <= MAX_SLOWDOWN, measured, threshold))
    return rows


def render(results: dict[str, Any]) -> str:
    """Return the markdown section of the training-step benchmark."""
    table = markdown_table(
        ["variant", "median time per step", "ratio to plain SGD", "ratio per round"],
        [
            [
                row["variant"],
                format_seconds(row["median_s"]),
                format_ratio(row["ratio_to_baseline"]),
                ", ".join(f"{value:.3f}" for value in row["round_ratios"]),
            ]
            for row in results["variants"]
        ],
    )
    share = results["silhouette_share"]
    share_text = "n/m" if share is None else f"{100 * share:.1f}%"
    return "\n".join(
        [
            "## Training step (DEFRAG network)",
            "",
            f"Batch {results['batch']} of random 1 x 28 x 28 input, lr {results['lr']}, momentum "
            f"{results['momentum']}; {results['rounds']} interleaved rounds of "
            f"``blocked_autorange`` ({results['min_run_time_per_round']:g} s per variant and "
            "round). The ratio is the median over rounds of the ratio to the baseline measured "
            "in the same round.",
            "",
            table,
            "",
            "SilhouetteLoss (forward and backward, with the center update, on "
            f"{results['batch']} x {FEATURE_DIM} features): "
            f"{format_seconds(results['silhouette']['median_s'])}, {share_text} of a DEFRAG step.",
            "",
        ]
    )
