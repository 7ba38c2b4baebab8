"""The ``train`` subcommand: train the DEFRAG network and record metrics and checkpoints.

One epoch shuffles the in-memory training tensors with a dedicated ``torch.Generator``, takes
mini-batches by index, and minimizes cross-entropy plus ``lambda`` times an optional auxiliary
loss on the features. After each epoch the output folder receives ``metrics.json``,
``metrics.csv`` and ``checkpoint.pt``. The checkpoint contains everything that the next epoch
depends on, so ``--resume`` continues a run bit for bit on the same device and thread count.

NOTE: Bit-for-bit resumption is tested on CPU only. On CUDA, cuDNN may pick nondeterministic
convolution kernels, so a resumed run can differ in the last bits.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import platform
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from examples.defrag.data import DATASET_NAMES, DatasetSplits, default_cache_dir, load_dataset
from examples.defrag.model import FEATURE_KINDS, DefragNet, count_parameters

LOSSES = ("ce", "silhouette", "center", "contrastive-center")
RETRACTIONS = ("none", "polar", "qr", "cayley", "exp")
OPTIMIZERS = ("rsgd", "sgd-then-retract", "adam-then-retract")
LR_SCHEDULES = ("cosine", "constant")

DEFAULT_SGD_LR = 0.01
DEFAULT_ADAM_LR = 0.001
DEFAULT_MOMENTUM = 0.9
DEFAULT_AUX_WEIGHT = 0.1
DEFAULT_ALPHA = 0.5

CHECKPOINT_NAME = "checkpoint.pt"
CHECKPOINT_FORMAT = 1
EVAL_BATCH_SIZE = 1000

# Config fields that may differ between a run and its resumption: they choose where data and
# outputs live and where the run computes, not what it computes.
_RESUMABLE_FIELDS = frozenset({"data_dir", "cache_dir", "download", "device", "output_dir"})

METRIC_FIELDS = (
    "epoch",
    "loss",
    "ce_loss",
    "aux_loss",
    "train_accuracy",
    "test_accuracy",
    "test_silhouette",
    "test_distance_ratio",
    "orthonormality_error",
    "lr",
    "train_seconds",
    "eval_seconds",
)


class OptionConflict(ValueError):
    """Raised when command-line options contradict each other. The CLI reports a usage error."""


class RunError(RuntimeError):
    """Raised when the output folder does not match the request.

    That is a folder with a checkpoint but no ``--resume``, or ``--resume`` without a checkpoint
    or with a checkpoint whose settings differ.
    """


@dataclass(frozen=True)
class TrainConfig:
    """Every setting of a training run, with defaults resolved. Saved as ``config.json``.

    ``aux_weight`` (the CLI's ``--lambda``) and ``alpha`` are None when ``loss`` is ``"ce"``.
    ``momentum`` is None for ``"adam-then-retract"``. ``retraction`` is ``"none"`` exactly when
    ``feature`` is not ``"grassmann"``.
    """

    output_dir: str
    dataset: str = "fashion-mnist"
    data_dir: str | None = None
    cache_dir: str | None = None
    download: bool = False
    feature: str = "grassmann"
    feature_dim: int = 8
    loss: str = "silhouette"
    aux_weight: float | None = DEFAULT_AUX_WEIGHT
    alpha: float | None = DEFAULT_ALPHA
    retraction: str = "polar"
    optimizer: str = "rsgd"
    epochs: int = 5
    batch_size: int = 128
    lr: float = DEFAULT_SGD_LR
    lr_schedule: str = "cosine"
    momentum: float | None = DEFAULT_MOMENTUM
    weight_decay: float = 0.0
    seed: int = 0
    device: str = "cpu"
    limit_train: int | None = None
    limit_test: int | None = None


# ---------------------------------------------------------------------------------------------
# Command line


def _parse_number(text: str, kind: type) -> Any:
    try:
        return kind(text)
    except ValueError:
        noun = "an integer" if kind is int else "a number"
        raise argparse.ArgumentTypeError(f"expected {noun}, got {text!r}") from None


def _positive_int(text: str) -> int:
    value = _parse_number(text, int)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text}")
    return value


def _non_negative_float(text: str) -> float:
    value = _parse_number(text, float)
    if not 0 <= value < math.inf:
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text}")
    return value


def _positive_float(text: str) -> float:
    value = _parse_number(text, float)
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text}")
    return value


def _unit_interval_float(text: str) -> float:
    value = _parse_number(text, float)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of the ``train`` subcommand to ``parser``."""
    data = parser.add_argument_group("data")
    data.add_argument(
        "--dataset",
        choices=DATASET_NAMES,
        default="fashion-mnist",
        help="dataset to train on (default: %(default)s)",
    )
    data.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        metavar="FOLDER",
        help="folder with the four IDX files, .gz or decompressed, flat or in torchvision's "
        "<ClassName>/raw layout; only read, never written (default: Debian's "
        "/usr/share/datasets/fashion-mnist for Fashion-MNIST, then the cache)",
    )
    data.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        metavar="FOLDER",
        help="folder for the verified, decompressed files and for downloads "
        f"(default: {default_cache_dir()})",
    )
    data.add_argument(
        "--download",
        action="store_true",
        help="let torchvision download the dataset into the cache folder when no folder "
        "contains it (default: off, never download)",
    )
    data.add_argument(
        "--limit-train",
        type=_positive_int,
        default=None,
        metavar="N",
        help="train on the first N training examples only (default: all)",
    )
    data.add_argument(
        "--limit-test",
        type=_positive_int,
        default=None,
        metavar="N",
        help="evaluate on the first N test examples only (default: all)",
    )

    model = parser.add_argument_group("model and loss")
    model.add_argument(
        "--feature",
        choices=FEATURE_KINDS,
        default="grassmann",
        help="feature layer: relu = Linear+ReLU, linear = Linear, softplus = Linear+Softplus, "
        "grassmann = GrassmannLinear with orthonormal weight (default: %(default)s)",
    )
    model.add_argument(
        "--feature-dim",
        type=_positive_int,
        default=8,
        metavar="N",
        help="width of the feature layer (default: %(default)s)",
    )
    model.add_argument(
        "--loss",
        choices=LOSSES,
        default="silhouette",
        help="ce = cross-entropy only; the others add lambda times that auxiliary loss on the "
        "features (default: %(default)s)",
    )
    model.add_argument(
        "--lambda",
        dest="aux_weight",
        type=_non_negative_float,
        default=None,
        metavar="WEIGHT",
        help="weight of the auxiliary loss, dimensionless; not allowed with --loss ce "
        f"(default: {DEFAULT_AUX_WEIGHT})",
    )
    model.add_argument(
        "--alpha",
        type=_unit_interval_float,
        default=None,
        metavar="RATE",
        help="update rate of the running class centers, in [0, 1]; not allowed with --loss ce "
        f"(default: {DEFAULT_ALPHA})",
    )
    model.add_argument(
        "--retraction",
        choices=RETRACTIONS,
        default=None,
        help="retraction that rsgd steps the Grassmann feature weight with; the *-then-retract "
        "optimizers always project with polar; none = no manifold, the only value for the "
        "relu, linear and softplus features (default: polar for --feature grassmann, none "
        "otherwise)",
    )

    optim = parser.add_argument_group("optimization")
    optim.add_argument(
        "--optimizer",
        choices=OPTIMIZERS,
        default="rsgd",
        help="rsgd = grassmann_nn's RiemannianSGD (the same update as torch.optim.SGD on "
        "Euclidean parameters); sgd-then-retract and adam-then-retract = torch.optim.SGD or "
        "Adam, then project the manifold weights back with their polar factor after each step "
        "(plain SGD or Adam for features without a manifold) (default: %(default)s)",
    )
    optim.add_argument(
        "--epochs",
        type=_positive_int,
        default=5,
        help="number of passes over the training set (default: %(default)s)",
    )
    optim.add_argument(
        "--batch-size",
        type=_positive_int,
        default=128,
        metavar="N",
        help="training examples per step (default: %(default)s)",
    )
    optim.add_argument(
        "--lr",
        type=_positive_float,
        default=None,
        help=f"initial learning rate (default: {DEFAULT_SGD_LR} for rsgd and sgd-then-retract, "
        f"{DEFAULT_ADAM_LR} for adam-then-retract)",
    )
    optim.add_argument(
        "--lr-schedule",
        choices=LR_SCHEDULES,
        default="cosine",
        help="cosine = decay the learning rate to 0 over all steps along a half cosine, "
        "updated every step; constant = keep it (default: %(default)s)",
    )
    optim.add_argument(
        "--momentum",
        type=_unit_interval_float,
        default=None,
        help="momentum factor of rsgd and sgd-then-retract, in [0, 1]; not allowed with "
        f"adam-then-retract (default: {DEFAULT_MOMENTUM})",
    )
    optim.add_argument(
        "--weight-decay",
        type=_non_negative_float,
        default=0.0,
        metavar="DECAY",
        help="L2 penalty coefficient on all parameters (default: %(default)s)",
    )

    run = parser.add_argument_group("run")
    run.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the weight initialization and of the shuffling (default: %(default)s)",
    )
    run.add_argument(
        "--device",
        default="auto",
        help="torch device, e.g. cpu or cuda:0; auto = cuda when available, else cpu "
        "(default: %(default)s)",
    )
    run.add_argument(
        "--output-dir",
        type=Path,
        default=None,
        metavar="FOLDER",
        help="folder for config.json, metrics.json, metrics.csv and checkpoint.pt "
        "(default: runs/defrag/DATASET-FEATURE-LOSS-TIMESTAMP in the current folder)",
    )
    run.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --output-dir from its last checkpoint; repeat the options of "
        "the interrupted command (default: off, start a new run)",
    )


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """Resolve the defaults that depend on other options and reject conflicting options.

    Raises:
        OptionConflict: When two options contradict each other, naming both and the fix.
    """
    retraction = _resolve_retraction(args.feature, args.retraction, args.optimizer)
    aux_weight, alpha = _resolve_aux_options(args.loss, args.aux_weight, args.alpha)
    momentum = _resolve_momentum(args.optimizer, args.momentum)
    if args.feature == "grassmann" and args.feature_dim >= 256:
        raise OptionConflict(
            f"--feature grassmann needs --feature-dim below 256, the width of the layer before "
            f"it, got --feature-dim {args.feature_dim}. Use a smaller --feature-dim."
        )
    if args.resume and args.output_dir is None:
        raise OptionConflict("--resume needs --output-dir, the folder of the run to continue.")

    lr = args.lr
    if lr is None:
        lr = DEFAULT_ADAM_LR if args.optimizer == "adam-then-retract" else DEFAULT_SGD_LR
    output_dir = args.output_dir
    if output_dir is None:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        output_dir = Path("runs", "defrag", f"{args.dataset}-{args.feature}-{args.loss}-{stamp}")

    return TrainConfig(
        output_dir=str(output_dir),
        dataset=args.dataset,
        data_dir=None if args.data_dir is None else str(args.data_dir),
        cache_dir=None if args.cache_dir is None else str(args.cache_dir),
        download=args.download,
        feature=args.feature,
        feature_dim=args.feature_dim,
        loss=args.loss,
        aux_weight=aux_weight,
        alpha=alpha,
        retraction=retraction,
        optimizer=args.optimizer,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=lr,
        lr_schedule=args.lr_schedule,
        momentum=momentum,
        weight_decay=args.weight_decay,
        seed=args.seed,
        device=_resolve_device(args.device),
        limit_train=args.limit_train,
        limit_test=args.limit_test,
    )


def _resolve_retraction(feature: str, retraction: str | None, optimizer: str) -> str:
    if retraction is None:
        return "polar" if feature == "grassmann" else "none"
    if optimizer != "rsgd" and retraction not in ("polar", "none"):
        raise OptionConflict(
            f"--retraction {retraction} conflicts with --optimizer {optimizer}: that optimizer "
            "re-projects the weight with grassmann_nn.nn.retract_, which always takes the polar "
            f"factor. Use --optimizer rsgd to step with {retraction}, or --retraction polar."
        )
    if feature == "grassmann" and retraction == "none":
        raise OptionConflict(
            "--feature grassmann conflicts with --retraction none: the Grassmann layer needs a "
            "retraction to stay on the manifold. Use --retraction polar, qr, cayley or exp, or "
            "a --feature without a manifold (relu, linear, softplus)."
        )
    if feature != "grassmann" and retraction != "none":
        raise OptionConflict(
            f"--retraction {retraction} conflicts with --feature {feature}: only the grassmann "
            "feature layer has a manifold weight to retract. Use --feature grassmann, or drop "
            "--retraction."
        )
    return retraction


def _resolve_aux_options(
    loss: str, aux_weight: float | None, alpha: float | None
) -> tuple[float | None, float | None]:
    if loss != "ce":
        return (
            DEFAULT_AUX_WEIGHT if aux_weight is None else aux_weight,
            DEFAULT_ALPHA if alpha is None else alpha,
        )
    for option, value in (("--lambda", aux_weight), ("--alpha", alpha)):
        if value is not None:
            raise OptionConflict(
                f"{option} conflicts with --loss ce: it sets the auxiliary loss, and ce has "
                f"none. Use --loss silhouette, center or contrastive-center, or drop {option}."
            )
    return None, None


def _resolve_momentum(optimizer: str, momentum: float | None) -> float | None:
    if optimizer != "adam-then-retract":
        return DEFAULT_MOMENTUM if momentum is None else momentum
    if momentum is not None:
        raise OptionConflict(
            "--momentum conflicts with --optimizer adam-then-retract: Adam keeps its own moment "
            "estimates. Use --optimizer rsgd or sgd-then-retract, or drop --momentum."
        )
    return None


def _resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        resolved = torch.device(device)
    except RuntimeError as error:
        raise OptionConflict(f"--device {device} is not a valid torch device: {error}") from error
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise OptionConflict(f"--device {device} requested, but CUDA is not available here.")
    return str(resolved)


# ---------------------------------------------------------------------------------------------
# Training run


@dataclass
class _RunState:
    """Objects that a checkpoint restores, besides the global torch RNG."""

    model: DefragNet
    aux_loss: nn.Module | None
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler | None
    shuffle_generator: torch.Generator
    retract: Callable[[nn.Module], Any] | None


def train(
    config: TrainConfig, *, resume: bool = False, stop_after_epoch: int | None = None
) -> list[dict[str, Any]]:
    """Train the network, writing config, metrics and a checkpoint into ``config.output_dir``.

    Args:
        config: Resolved settings of the run.
        resume: Continue from ``checkpoint.pt`` in the output folder. The checkpoint's config
            must equal ``config`` except for the fields in ``_RESUMABLE_FIELDS``.
        stop_after_epoch: Return after this epoch as an interrupted run would, leaving a
            checkpoint to resume from. None trains all ``config.epochs`` epochs.

    Returns:
        The metrics of every epoch so far, one dict per epoch with the keys ``METRIC_FIELDS``.

    Raises:
        examples.defrag.data.DatasetError: When the dataset is missing or corrupt.
        RunError: When starting a new run in a folder that already has a checkpoint, or when
            resuming without a checkpoint or with a config that differs from the checkpoint's.
        FloatingPointError: When the training loss becomes NaN or infinite.
    """
    output_dir = Path(config.output_dir)
    checkpoint_path = output_dir / CHECKPOINT_NAME
    _check_output_dir(checkpoint_path, resume)

    device = torch.device(config.device)
    splits = _load_splits(config)
    train_x, train_y = splits.train_x.to(device), splits.train_y.to(device)
    test_x, test_y = splits.test_x.to(device), splits.test_y.to(device)
    print(splits.describe())
    if config.limit_train is not None or config.limit_test is not None:
        print(f"Using {len(train_y):,} training and {len(test_y):,} test examples (--limit-*).")

    torch.manual_seed(config.seed)
    state = _build_run_state(config, device, steps_per_epoch=_steps_per_epoch(config, train_y))
    parameter_count = count_parameters(state.model)
    print(
        f"DefragNet with {config.feature} features of dimension {config.feature_dim}: "
        f"{parameter_count:,} parameters"
    )

    history: list[dict[str, Any]] = []
    start_epoch = 1
    if resume:
        history = _restore_checkpoint(checkpoint_path, config, state)
        start_epoch = len(history) + 1
        print(f"Resuming {output_dir} after epoch {len(history)}.")
    else:
        output_dir.mkdir(parents=True, exist_ok=True)
        _write_config(output_dir, config, splits, parameter_count)

    last_epoch = config.epochs if stop_after_epoch is None else min(stop_after_epoch, config.epochs)
    for epoch in range(start_epoch, last_epoch + 1):
        row = _run_epoch(epoch, config, state, train_x, train_y, test_x, test_y)
        history.append(row)
        _save_checkpoint(checkpoint_path, epoch, config, state, history)
        _write_metrics(output_dir, history)
        print(_format_row(row, config.epochs))

    _print_summary(history, output_dir, config.epochs)
    return history


def _check_output_dir(checkpoint_path: Path, resume: bool) -> None:
    if resume and not checkpoint_path.is_file():
        raise RunError(
            f"--resume was given, but {checkpoint_path} does not exist. Pass the --output-dir "
            "of a run that finished at least one epoch, or drop --resume to start a new run."
        )
    if not resume and checkpoint_path.is_file():
        raise RunError(
            f"{checkpoint_path} already exists. Pass --resume to continue that run, or choose "
            "another --output-dir."
        )


def _load_splits(config: TrainConfig) -> DatasetSplits:
    """Load the dataset and keep the first ``limit_train`` and ``limit_test`` examples."""
    splits = load_dataset(
        config.dataset,
        None if config.data_dir is None else Path(config.data_dir),
        cache_dir=None if config.cache_dir is None else Path(config.cache_dir),
        download=config.download,
    )
    train_end = config.limit_train or len(splits.train_y)
    test_end = config.limit_test or len(splits.test_y)
    return DatasetSplits(
        name=splits.name,
        train_x=splits.train_x[:train_end],
        train_y=splits.train_y[:train_end],
        test_x=splits.test_x[:test_end],
        test_y=splits.test_y[:test_end],
        mean=splits.mean,
        std=splits.std,
        source=splits.source,
        test_split_only=splits.test_split_only,
    )


def _steps_per_epoch(config: TrainConfig, train_y: torch.Tensor) -> int:
    return math.ceil(len(train_y) / config.batch_size)


# ---------------------------------------------------------------------------------------------
# Model, loss and optimizer


def _build_run_state(config: TrainConfig, device: torch.device, steps_per_epoch: int) -> _RunState:
    """Build model, auxiliary loss, optimizer, schedule and shuffling generator."""
    model = DefragNet(config.feature, config.feature_dim, retraction=config.retraction)
    model = model.to(device)
    aux_loss = _build_aux_loss(config)
    if aux_loss is not None:
        aux_loss = aux_loss.to(device)

    optimizer = _build_optimizer(config, model)
    scheduler = None
    if config.lr_schedule == "cosine":
        total_steps = config.epochs * steps_per_epoch
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)

    retract = None
    if config.optimizer != "rsgd":
        from grassmann_nn.nn import retract_

        retract = retract_

    shuffle_generator = torch.Generator().manual_seed(config.seed)
    return _RunState(model, aux_loss, optimizer, scheduler, shuffle_generator, retract)


def _build_aux_loss(config: TrainConfig) -> nn.Module | None:
    """Build the auxiliary loss module, or return None for cross-entropy only."""
    if config.loss == "ce":
        return None
    from grassmann_nn.losses import CenterLoss, ContrastiveCenterLoss, SilhouetteLoss

    loss_classes = {
        "silhouette": SilhouetteLoss,
        "center": CenterLoss,
        "contrastive-center": ContrastiveCenterLoss,
    }
    return loss_classes[config.loss](10, config.feature_dim, alpha=config.alpha)


def _build_optimizer(config: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    if config.optimizer == "adam-then-retract":
        return torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    if config.optimizer == "sgd-then-retract":
        return torch.optim.SGD(
            model.parameters(),
            lr=config.lr,
            momentum=config.momentum,
            weight_decay=config.weight_decay,
        )
    from grassmann_nn.optim import RiemannianSGD

    return RiemannianSGD(
        model.parameters(),
        lr=config.lr,
        momentum=config.momentum,
        weight_decay=config.weight_decay,
    )


# ---------------------------------------------------------------------------------------------
# One epoch


def _run_epoch(
    epoch: int,
    config: TrainConfig,
    state: _RunState,
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
) -> dict[str, Any]:
    """Train one epoch, evaluate on the test split, and return the epoch's metrics."""
    started = time.perf_counter()
    train_metrics = _train_one_epoch(epoch, config, state, train_x, train_y)
    train_seconds = time.perf_counter() - started

    started = time.perf_counter()
    eval_metrics = _evaluate(state.model, test_x, test_y)
    eval_seconds = time.perf_counter() - started

    return {
        "epoch": epoch,
        **train_metrics,
        **eval_metrics,
        "orthonormality_error": _orthonormality_error(state.model),
        "lr": state.optimizer.param_groups[0]["lr"],
        "train_seconds": train_seconds,
        "eval_seconds": eval_seconds,
    }


def _train_one_epoch(
    epoch: int,
    config: TrainConfig,
    state: _RunState,
    train_x: torch.Tensor,
    train_y: torch.Tensor,
) -> dict[str, float]:
    """Run one pass over the shuffled training tensors.

    Returns:
        Mean total, cross-entropy and auxiliary loss per example, and the accuracy of the
        predictions made during the pass (the weights change while it runs).
    """
    from tqdm import tqdm

    model, aux_loss = state.model, state.aux_loss
    model.train()
    if aux_loss is not None:
        aux_loss.train()

    count = len(train_y)
    order = torch.randperm(count, generator=state.shuffle_generator).to(train_x.device)
    weight = config.aux_weight or 0.0
    ce_total = aux_total = 0.0
    correct_total = 0
    progress = tqdm(
        range(0, count, config.batch_size),
        desc=f"epoch {epoch}/{config.epochs}",
        unit="batch",
        leave=False,
        disable=None,
    )

    for step, start in enumerate(progress):
        index = order[start : start + config.batch_size]
        ce_loss, aux_value, correct = _train_step(config, state, train_x[index], train_y[index])
        loss = ce_loss.item() + weight * aux_value.item()
        if not math.isfinite(loss):
            raise FloatingPointError(
                f"The training loss became {loss} at epoch {epoch}, step {step + 1}. "
                "Lower --lr or --lambda."
            )

        ce_total += ce_loss.item() * len(index)
        aux_total += aux_value.item() * len(index)
        correct_total += int(correct)
        if step % 20 == 0:
            progress.set_postfix(loss=f"{loss:.4f}")

    return {
        "loss": (ce_total + weight * aux_total) / count,
        "ce_loss": ce_total / count,
        "aux_loss": aux_total / count if aux_loss is not None else None,
        "train_accuracy": correct_total / count,
    }


def _train_step(
    config: TrainConfig, state: _RunState, images: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Take one optimizer step on a batch.

    Returns:
        The batch's cross-entropy, its auxiliary loss before weighting (0 without one) and the
        number of correct predictions, as detached tensors.
    """
    state.optimizer.zero_grad(set_to_none=True)
    logits, features = state.model(images)
    ce_loss = F.cross_entropy(logits, labels)
    aux_value = torch.zeros((), device=logits.device)
    loss = ce_loss
    if state.aux_loss is not None:
        aux_value = state.aux_loss(features, labels)
        loss = ce_loss + config.aux_weight * aux_value

    loss.backward()
    state.optimizer.step()
    if state.retract is not None:
        state.retract(state.model)
    if state.scheduler is not None:
        state.scheduler.step()

    correct = (logits.argmax(dim=1) == labels).sum()
    return ce_loss.detach(), aux_value.detach(), correct


def _evaluate(model: DefragNet, test_x: torch.Tensor, test_y: torch.Tensor) -> dict[str, Any]:
    """Return test accuracy, silhouette score and distance ratio of the test features."""
    from grassmann_nn.metrics import distance_ratio, silhouette_score

    model.eval()
    predictions, features = [], []
    with torch.inference_mode():
        for start in range(0, len(test_y), EVAL_BATCH_SIZE):
            logits, batch_features = model(test_x[start : start + EVAL_BATCH_SIZE])
            predictions.append(logits.argmax(dim=1))
            features.append(batch_features)
    model.train()

    predictions = torch.cat(predictions)
    features = torch.cat(features)
    class_count = len(torch.unique(test_y))
    silhouette = None
    if 2 <= class_count < len(test_y):
        # scikit-learn's definition needs 2 <= clusters <= samples - 1.
        silhouette = silhouette_score(features, test_y)
    ratio = distance_ratio(features, test_y) if class_count >= 2 else None

    return {
        "test_accuracy": (predictions == test_y).double().mean().item(),
        "test_silhouette": silhouette,
        "test_distance_ratio": ratio,
    }


def _orthonormality_error(model: DefragNet) -> float | None:
    """Return the largest max |W^T W - I| over the manifold weights, or None without any."""
    from grassmann_nn.nn import orthonormality_error

    errors = orthonormality_error(model)
    return max(errors.values()) if errors else None


# ---------------------------------------------------------------------------------------------
# Checkpoints and output files


def _save_checkpoint(
    path: Path,
    epoch: int,
    config: TrainConfig,
    state: _RunState,
    history: list[dict[str, Any]],
) -> None:
    """Write the checkpoint of a finished epoch atomically."""
    checkpoint = {
        "format": CHECKPOINT_FORMAT,
        "epoch": epoch,
        "config": asdict(config),
        "model": state.model.state_dict(),
        "aux_loss": None if state.aux_loss is None else state.aux_loss.state_dict(),
        "optimizer": state.optimizer.state_dict(),
        "scheduler": None if state.scheduler is None else state.scheduler.state_dict(),
        "torch_rng_state": torch.get_rng_state(),
        "cuda_rng_states": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "shuffle_generator_state": state.shuffle_generator.get_state(),
        "metrics": history,
    }
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    _write_atomically(path, buffer.getvalue())


def _restore_checkpoint(path: Path, config: TrainConfig, state: _RunState) -> list[dict[str, Any]]:
    """Load a checkpoint into ``state`` and the global RNG, and return its metrics history."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    if checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise RunError(
            f"{path} has checkpoint format {checkpoint.get('format')!r}, "
            f"expected {CHECKPOINT_FORMAT}. Start a new run in another --output-dir."
        )
    _check_same_config(path, checkpoint["config"], config)

    state.model.load_state_dict(checkpoint["model"])
    if state.aux_loss is not None:
        state.aux_loss.load_state_dict(checkpoint["aux_loss"])
    state.optimizer.load_state_dict(checkpoint["optimizer"])
    if state.scheduler is not None:
        state.scheduler.load_state_dict(checkpoint["scheduler"])

    torch.set_rng_state(checkpoint["torch_rng_state"])
    if checkpoint["cuda_rng_states"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(checkpoint["cuda_rng_states"])
    state.shuffle_generator.set_state(checkpoint["shuffle_generator_state"])
    return list(checkpoint["metrics"])


def _check_same_config(path: Path, saved: dict[str, Any], config: TrainConfig) -> None:
    """Raise RunError listing the settings in which ``config`` differs from the checkpoint's."""
    current = asdict(config)
    differences = [
        f"  {field.name}: checkpoint {saved.get(field.name)!r}, now {current[field.name]!r}"
        for field in fields(TrainConfig)
        if field.name not in _RESUMABLE_FIELDS and saved.get(field.name) != current[field.name]
    ]
    if differences:
        raise RunError(
            f"Cannot resume {path}: these settings differ from the checkpoint's:\n"
            + "\n".join(differences)
            + "\nRepeat the options of the original command, or start a new run."
        )


def _write_config(
    output_dir: Path, config: TrainConfig, splits: DatasetSplits, parameter_count: int
) -> None:
    """Write ``config.json``: every setting plus the data and software it ran with."""
    record = {
        **asdict(config),
        "parameters": parameter_count,
        "data": {
            "source": str(splits.source),
            "train_examples": len(splits.train_y),
            "test_examples": len(splits.test_y),
            "test_split_only": splits.test_split_only,
            "normalization_mean": splits.mean,
            "normalization_std": splits.std,
        },
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
        },
    }
    _write_atomically(output_dir / "config.json", _to_json(record))


def _write_metrics(output_dir: Path, history: list[dict[str, Any]]) -> None:
    """Rewrite ``metrics.json`` and ``metrics.csv`` with every epoch so far."""
    _write_atomically(output_dir / "metrics.json", _to_json(history))

    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=METRIC_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(history)
    _write_atomically(output_dir / "metrics.csv", text.getvalue().encode())


def _to_json(value: Any) -> bytes:
    return (json.dumps(value, indent=2) + "\n").encode()


def _write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file in the same folder, fsync it, then rename it."""
    handle, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


# ---------------------------------------------------------------------------------------------
# Log lines


def _format_row(row: dict[str, Any], epochs: int) -> str:
    def number(key: str, spec: str) -> str:
        value = row[key]
        return "n/a" if value is None else format(value, spec)

    return (
        f"epoch {row['epoch']}/{epochs}  loss {row['loss']:.4f}  "
        f"train acc {row['train_accuracy']:.4f}  test acc {row['test_accuracy']:.4f}  "
        f"silhouette {number('test_silhouette', '.4f')}  "
        f"distance ratio {number('test_distance_ratio', '.4f')}  "
        f"orthonormality error {number('orthonormality_error', '.1e')}  "
        f"{row['train_seconds']:.1f} s train + {row['eval_seconds']:.1f} s eval"
    )


def _print_summary(history: list[dict[str, Any]], output_dir: Path, epochs: int) -> None:
    if not history:
        return
    last = history[-1]
    status = "Finished" if last["epoch"] == epochs else "Stopped"
    silhouette = last["test_silhouette"]
    silhouette_text = "n/a" if silhouette is None else f"{silhouette:.4f}"
    print(
        f"{status} after epoch {last['epoch']}/{epochs}: test accuracy "
        f"{last['test_accuracy']:.4f}, test silhouette {silhouette_text}.\n"
        f"Outputs in {output_dir}: config.json, metrics.json, metrics.csv, {CHECKPOINT_NAME}"
    )
