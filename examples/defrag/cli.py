"""Command-line options of the ``train`` subcommand and their validation.

``add_train_arguments`` declares the options, and ``config_from_args`` turns the parsed options
into a ``TrainConfig``, resolving the defaults that depend on other options and rejecting
combinations that contradict each other.
"""

from __future__ import annotations

import argparse
import math
import os
from datetime import datetime
from pathlib import Path
from typing import Any

import torch

from examples.defrag.config import (
    AMP_DTYPES,
    DEFAULT_ADAM_LR,
    DEFAULT_ALPHA,
    DEFAULT_AUX_WEIGHT,
    DEFAULT_BATCH_SIZE,
    DEFAULT_EPOCHS,
    DEFAULT_FEATURE_DIM,
    DEFAULT_MOMENTUM,
    DEFAULT_SGD_LR,
    LOSSES,
    LR_SCHEDULES,
    OPTIMIZERS,
    RETRACTIONS,
    TrainConfig,
)
from examples.defrag.data import DATASET_NAMES, default_cache_dir
from examples.defrag.model import FEATURE_KINDS


class OptionConflict(ValueError):
    """Raised when command-line options contradict each other. The CLI reports a usage error."""


def _parse_number(text: str, kind: type) -> Any:
    try:
        return kind(text)
    except ValueError:
        noun = "an integer" if kind is int else "a number"
        raise argparse.ArgumentTypeError(f"expected {noun}, got {text!r}") from None


def positive_int(text: str) -> int:
    """Parse an integer >= 1 for argparse."""
    value = _parse_number(text, int)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text}")
    return value


def non_negative_float(text: str) -> float:
    """Parse a finite number >= 0 for argparse."""
    value = _parse_number(text, float)
    if not 0 <= value < math.inf:
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text}")
    return value


def positive_float(text: str) -> float:
    """Parse a finite number > 0 for argparse."""
    value = _parse_number(text, float)
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text}")
    return value


def unit_interval_float(text: str) -> float:
    """Parse a number in [0, 1] for argparse."""
    value = _parse_number(text, float)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text}")
    return value


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
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
        help="folder with the four IDX files (or the two t10k files alone, whose test split "
        "is then divided into training and test examples), .gz or decompressed, flat or in "
        "torchvision's <ClassName>/raw layout; only read, never written (default: Debian's "
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
        type=positive_int,
        default=None,
        metavar="N",
        help="train on the first N training examples only (default: all)",
    )
    data.add_argument(
        "--limit-test",
        type=positive_int,
        default=None,
        metavar="N",
        help="evaluate on the first N test (or validation) examples only (default: all)",
    )
    data.add_argument(
        "--validation",
        type=positive_int,
        default=None,
        metavar="N",
        help="hold out N training examples, drawn with a fixed seed that does not depend on "
        "--seed, train on the others, and evaluate on the held-out ones instead of the test "
        "split, which is then never evaluated (default: off, evaluate on the test split)",
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
        type=positive_int,
        default=DEFAULT_FEATURE_DIM,
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
        type=non_negative_float,
        default=None,
        metavar="WEIGHT",
        help="weight of the auxiliary loss, dimensionless; not allowed with --loss ce "
        f"(default: {DEFAULT_AUX_WEIGHT})",
    )
    model.add_argument(
        "--alpha",
        type=unit_interval_float,
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
        type=positive_int,
        default=DEFAULT_EPOCHS,
        help="number of passes over the training set (default: %(default)s)",
    )
    optim.add_argument(
        "--batch-size",
        type=positive_int,
        default=DEFAULT_BATCH_SIZE,
        metavar="N",
        help="training examples per step (default: %(default)s)",
    )
    optim.add_argument(
        "--lr",
        type=positive_float,
        default=None,
        help=f"initial learning rate (default: {DEFAULT_SGD_LR} for rsgd and sgd-then-retract, "
        f"{DEFAULT_ADAM_LR} for adam-then-retract)",
    )
    optim.add_argument(
        "--lr-schedule",
        choices=LR_SCHEDULES,
        default="cosine",
        help="cosine = decay the learning rate to 0 over all steps along a half cosine, "
        "updated every step; step = multiply it by 0.1 after half and after three quarters "
        "of the steps; constant = keep it (default: %(default)s)",
    )
    optim.add_argument(
        "--momentum",
        type=unit_interval_float,
        default=None,
        help="momentum factor of rsgd and sgd-then-retract, in [0, 1]; not allowed with "
        f"adam-then-retract (default: {DEFAULT_MOMENTUM})",
    )
    optim.add_argument(
        "--weight-decay",
        type=non_negative_float,
        default=0.0,
        metavar="DECAY",
        help="L2 penalty coefficient on all parameters (default: %(default)s)",
    )

    scale = parser.add_argument_group("precision, compilation and distribution")
    scale.add_argument(
        "--amp",
        choices=AMP_DTYPES,
        default="none",
        help="run the forward pass and the losses under torch.autocast with this dtype; "
        "float16 adds a GradScaler; retractions and optimizer steps stay in float32 "
        "(default: %(default)s)",
    )
    scale.add_argument(
        "--compile",
        action="store_true",
        help="compile the network with torch.compile; the losses and the optimizer step run "
        "eagerly (default: off)",
    )
    scale.add_argument(
        "--distributed",
        action="store_true",
        help="data-parallel training over the processes that torchrun starts (gloo on CPU, "
        "nccl on CUDA, one GPU per process); --batch-size is the global batch, split over the "
        "ranks; only rank 0 logs and writes files (default: off)",
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
        help="folder for config.json, metrics.json, metrics.csv, predictions.pt, features.pt "
        "and checkpoint.pt "
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
        validation=args.validation,
        amp=args.amp,
        compile=args.compile,
        distributed=args.distributed,
        world_size=_resolve_world_size(args.distributed, args.batch_size),
    )


TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def launched_world_size() -> int | None:
    """Return the WORLD_SIZE that torchrun set for this process, or None outside torchrun.

    Raises:
        OptionConflict: When WORLD_SIZE is set but is not a positive integer.
    """
    text = os.environ.get("WORLD_SIZE")
    if text is None:
        return None
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise OptionConflict(
            f"The environment variable WORLD_SIZE is {text!r}, expected a positive integer. "
            "Launch with torchrun, which sets it, or unset it."
        )
    return value


def _resolve_world_size(distributed: bool, batch_size: int) -> int:
    """Read the number of ranks that torchrun announces, or return 1 without --distributed.

    Raises:
        OptionConflict: Under torchrun with several processes but without --distributed, with
            --distributed but without torchrun's environment, or with a global batch smaller
            than the number of ranks.
    """
    world_size = launched_world_size()
    if not distributed:
        if world_size is not None and world_size > 1:
            raise OptionConflict(
                f"torchrun started {world_size} processes, but --distributed is missing, so "
                "each would train its own copy into the same folder. Add --distributed, or run "
                "one process with python -m examples.defrag."
            )
        return 1
    missing = [name for name in TORCHRUN_VARIABLES if name not in os.environ]
    if missing or world_size is None:
        raise OptionConflict(
            "--distributed needs the environment that torchrun sets (missing: "
            f"{', '.join(missing)}). Launch with torchrun --nproc_per_node=N -m "
            "examples.defrag train --distributed ..., or drop --distributed."
        )
    if batch_size < world_size:
        raise OptionConflict(
            f"--batch-size {batch_size} is the global batch and must be at least the number of "
            f"ranks, {world_size}. Use a larger --batch-size."
        )
    return world_size


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
        raise OptionConflict(
            f"--device {device} requested, but CUDA is not available here. Use --device cpu, or "
            "--device auto to take CUDA only when present."
        )
    return str(resolved)


def non_negative_int(text: str) -> int:
    """Parse an integer >= 0 for argparse."""
    value = _parse_number(text, int)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text}")
    return value


# ---------------------------------------------------------------------------------------------
# Options of the subcommands that train a grid of runs (compare, plot, quickstart)


def add_grid_data_arguments(
    parser: argparse.ArgumentParser, *, dataset: str = "fashion-mnist"
) -> None:
    """Add the options that choose the dataset and where its files are, as ``train`` has them."""
    data = parser.add_argument_group("data")
    data.add_argument(
        "--dataset",
        choices=DATASET_NAMES,
        default=dataset,
        help="dataset to train on (default: %(default)s)",
    )
    data.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        metavar="FOLDER",
        help="folder with the IDX files, as for train (default: Debian's "
        "/usr/share/datasets/fashion-mnist for Fashion-MNIST, then the cache)",
    )
    data.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        metavar="FOLDER",
        help=f"folder for the verified files and downloads (default: {default_cache_dir()})",
    )
    data.add_argument(
        "--download",
        action="store_true",
        help="let torchvision download the dataset into the cache folder when no folder "
        "contains it (default: off, never download)",
    )


def add_grid_training_arguments(
    parser: argparse.ArgumentParser,
    *,
    feature_dim: int | None = None,
    epochs: int | None = None,
    limit_train: int | None = None,
    limit_test: int | None = None,
) -> None:
    """Add the ``train`` options that every run of a grid shares.

    A default of None passes nothing to ``train``, so that its own default applies, and the help
    text names that default.

    Args:
        parser: The subcommand's parser.
        feature_dim: Default of ``--feature-dim``.
        epochs: Default of ``--epochs``.
        limit_train: Default of ``--limit-train``.
        limit_test: Default of ``--limit-test``.
    """
    training = parser.add_argument_group("training, passed to every run")

    def add(
        option: str,
        dest: str,
        parse: Any,
        default: Any,
        train_default: Any,
        text: str,
        metavar: str | None = None,
    ) -> None:
        default_text = train_default if default is None else default
        training.add_argument(
            option,
            dest=dest,
            type=parse,
            default=default,
            metavar="N" if parse is positive_int else metavar or option.removeprefix("--").upper(),
            help=f"{text} (default: {default_text})",
        )

    add("--epochs", "epochs", positive_int, epochs, DEFAULT_EPOCHS, "passes over the training set")
    add("--batch-size", "batch_size", positive_int, None, DEFAULT_BATCH_SIZE, "examples per step")
    add(
        "--lr",
        "lr",
        positive_float,
        None,
        f"{DEFAULT_SGD_LR} for rsgd and sgd-then-retract, {DEFAULT_ADAM_LR} for adam-then-retract",
        "initial learning rate",
    )
    training.add_argument(
        "--lr-schedule",
        choices=LR_SCHEDULES,
        default=None,
        help="learning-rate schedule, as for train (default: cosine)",
    )
    add(
        "--momentum",
        "momentum",
        unit_interval_float,
        None,
        DEFAULT_MOMENTUM,
        "momentum factor, given to the runs of rsgd and sgd-then-retract, in [0, 1]",
    )
    add(
        "--weight-decay",
        "weight_decay",
        non_negative_float,
        None,
        0.0,
        "L2 penalty coefficient on all parameters",
        metavar="DECAY",
    )
    add(
        "--lambda",
        "aux_weight",
        non_negative_float,
        None,
        DEFAULT_AUX_WEIGHT,
        "weight of the auxiliary loss, given to the runs that have one",
    )
    add(
        "--alpha",
        "alpha",
        unit_interval_float,
        None,
        DEFAULT_ALPHA,
        "update rate of the class centers, given to the runs with an auxiliary loss, in [0, 1]",
    )
    add(
        "--limit-train",
        "limit_train",
        positive_int,
        limit_train,
        "all",
        "train on the first N training examples only; N beyond the split's size takes all",
    )
    add(
        "--limit-test",
        "limit_test",
        positive_int,
        limit_test,
        "all",
        "evaluate on the first N test examples only; N beyond the split's size takes all",
    )
    add(
        "--feature-dim",
        "feature_dim",
        positive_int,
        feature_dim,
        DEFAULT_FEATURE_DIM,
        "width of the feature layer",
    )
    training.add_argument(
        "--device",
        default="auto",
        help="torch device of every run, e.g. cpu or cuda:0; auto = cuda when available, else "
        "cpu (default: %(default)s)",
    )
