"""The ``train`` subcommand: train the DEFRAG network and record metrics and checkpoints.

One epoch shuffles the in-memory training tensors with a dedicated ``torch.Generator``, takes
mini-batches by index, and minimizes cross-entropy plus ``lambda`` times an optional auxiliary
loss on the features. After each epoch the output folder receives ``metrics.json``,
``metrics.csv``, the test predictions and features (``predictions.pt``, ``features.pt``) and
``checkpoint.pt``. The checkpoint contains everything that the next epoch
depends on, so ``--resume`` continues a run bit for bit on the same device and thread count.

NOTE: Bit-for-bit resumption is tested on CPU only. On CUDA, cuDNN may pick nondeterministic
convolution kernels, so a resumed run can differ in the last bits.
"""

from __future__ import annotations

import gc
import math
import os
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from examples.defrag.checkpoint import (
    CHECKPOINT_NAME,
    FEATURES_NAME,
    PREDICTIONS_NAME,
    RunError,
    RunState,
    TestOutputs,
    check_output_dir,
    restore_checkpoint,
    save_checkpoint,
    write_config,
    write_metrics,
    write_test_outputs,
)
from examples.defrag.config import TrainConfig
from examples.defrag.data import DatasetSplits, hold_out_validation, load_dataset
from examples.defrag.model import DefragNet, count_parameters

EVAL_BATCH_SIZE = 1000


@dataclass(frozen=True)
class Ranks:
    """Rank and world size of this process: rank 0 of 1 without ``--distributed``."""

    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        """Whether this process logs and writes the output files."""
        return self.rank == 0


def train(
    config: TrainConfig, *, resume: bool = False, stop_after_epoch: int | None = None
) -> list[dict[str, Any]]:
    """Train the network, writing config, metrics and a checkpoint into ``config.output_dir``.

    With ``config.distributed``, every process that torchrun started calls this function; they
    join one process group, train one replica each on a share of every batch, and only rank 0
    prints and writes files.

    Args:
        config: Resolved settings of the run.
        resume: Continue from ``checkpoint.pt`` in the output folder. The checkpoint's config
            must equal ``config`` except where data and outputs live (see
            ``examples.defrag.checkpoint.check_same_config``).
        stop_after_epoch: Return after this epoch as an interrupted run would, leaving a
            checkpoint to resume from. None trains all ``config.epochs`` epochs.

    Returns:
        The metrics of every epoch so far, one dict per epoch with the keys
        ``examples.defrag.checkpoint.METRIC_FIELDS``.

    Raises:
        examples.defrag.data.DatasetError: When the dataset is missing or corrupt.
        examples.defrag.checkpoint.RunError: When starting a new run in a folder that already
            has a checkpoint, or when resuming without a checkpoint or with a config that
            differs from the checkpoint's.
        FloatingPointError: When the training loss becomes NaN or infinite.
    """
    device = _resolve_device(config)
    with _process_group(config, device) as ranks:
        return _train(config, device, ranks, resume, stop_after_epoch)


def _train(
    config: TrainConfig,
    device: torch.device,
    ranks: Ranks,
    resume: bool,
    stop_after_epoch: int | None,
) -> list[dict[str, Any]]:
    """Run the body of ``train``, inside the process group of a distributed run."""
    say = print if ranks.is_main else _silent
    output_dir = Path(config.output_dir)
    checkpoint_path = output_dir / CHECKPOINT_NAME
    check_output_dir(checkpoint_path, resume)

    splits = _load_splits(config, say)
    train_x, train_y = splits.train_x.to(device), splits.train_y.to(device)
    test_x, test_y = splits.test_x.to(device), splits.test_y.to(device)
    if config.limit_train is not None or config.limit_test is not None:
        say(
            f"Using {len(train_y):,} training and {len(test_y):,} {splits.evaluation} examples "
            "(--limit-*)."
        )

    _check_training_size(config, train_y)

    torch.manual_seed(config.seed)
    state = _build_run_state(config, device, steps_per_epoch=_steps_per_epoch(config, train_y))
    parameter_count = count_parameters(state.model)
    say(
        f"DefragNet with {config.feature} features of dimension {config.feature_dim}: "
        f"{parameter_count:,} parameters"
    )
    if config.distributed:
        say(f"Data-parallel over {ranks.world_size} processes ({_backend(device)}).")

    history: list[dict[str, Any]] = []
    start_epoch = 1
    if resume:
        history = restore_checkpoint(checkpoint_path, config, state)
        start_epoch = len(history) + 1
        say(f"Resuming {output_dir} after epoch {len(history)}.")
    elif ranks.is_main:
        output_dir.mkdir(parents=True, exist_ok=True)
        write_config(output_dir, config, splits, parameter_count)
    state.network = _wrap_network(config, state.model, device)

    last_epoch = config.epochs if stop_after_epoch is None else min(stop_after_epoch, config.epochs)
    for epoch in range(start_epoch, last_epoch + 1):
        row, outputs = _run_epoch(epoch, config, state, ranks, train_x, train_y, test_x, test_y)
        history.append(row)
        if config.distributed:
            _check_replicas(state, epoch)
        if ranks.is_main:
            # The checkpoint goes last because it marks the epoch as done: a run interrupted
            # before it repeats the epoch on --resume and rewrites the other files.
            write_test_outputs(output_dir, outputs)
            write_metrics(output_dir, history)
            save_checkpoint(checkpoint_path, epoch, config, state, history)
        _barrier(config)
        say(_format_row(row, config.epochs, splits.evaluation))

    if ranks.is_main:
        _print_summary(history, output_dir, config.epochs, splits.evaluation)
    return history


def _silent(*args: Any, **kwargs: Any) -> None:
    """Print nothing: the ``print`` of the ranks other than 0."""


def _resolve_device(config: TrainConfig) -> torch.device:
    """Return the run's device; a distributed CUDA run takes the GPU of its local rank."""
    device = torch.device(config.device)
    if config.distributed and device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    return device


def _backend(device: torch.device) -> str:
    return "nccl" if device.type == "cuda" else "gloo"


@contextmanager
def _process_group(config: TrainConfig, device: torch.device) -> Iterator[Ranks]:
    """Join torchrun's process group for a distributed run, and leave it at the end."""
    if not config.distributed:
        yield Ranks()
        return

    import torch.distributed as dist

    dist.init_process_group(_backend(device))
    try:
        ranks = Ranks(dist.get_rank(), dist.get_world_size())
        if ranks.world_size != config.world_size:
            raise RunError(
                f"The process group has {ranks.world_size} ranks, but the run was configured "
                f"for {config.world_size}. Launch all ranks with the same torchrun command."
            )
        yield ranks
    finally:
        # DistributedDataParallel must be gone before the group is destroyed; on gloo, torch
        # 2.14 can abort at exit otherwise. _train has returned, so only cycles can hold it.
        gc.collect()
        dist.destroy_process_group()


def _barrier(config: TrainConfig) -> None:
    if config.distributed:
        import torch.distributed as dist

        dist.barrier()


def _wrap_network(config: TrainConfig, model: nn.Module, device: torch.device) -> nn.Module:
    """Wrap the model in DistributedDataParallel and torch.compile, as the config requests."""
    network = model
    if config.distributed:
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [device.index] if device.type == "cuda" else None
        network = DistributedDataParallel(network, device_ids=device_ids)
    if config.compile:
        network = torch.compile(network)
    return network


def _check_replicas(state: RunState, epoch: int) -> None:
    """Raise RuntimeError when the ranks' parameters, buffers or class centers differ."""
    from grassmann_nn.distributed import mismatched_replicas

    modules = [state.model] if state.aux_loss is None else [state.model, state.aux_loss]
    mismatched = [name for module in modules for name in mismatched_replicas(module)]
    if mismatched:
        raise RuntimeError(
            f"After epoch {epoch}, the ranks hold different values of {', '.join(mismatched)}. "
            "This is a bug; please report it with the command line."
        )


def _load_splits(config: TrainConfig, say: Callable[[str], None] = print) -> DatasetSplits:
    """Load the dataset, hold out the validation split, print the sizes, then apply --limit-*.

    With ``config.validation`` set, the held-out training examples take the place of the test
    split, and ``limit_test`` limits them.

    Raises:
        examples.defrag.data.DatasetError: When the dataset is missing or corrupt.
        examples.defrag.cli.OptionConflict: When ``config.validation`` leaves no training
            example.
    """
    splits = load_dataset(
        config.dataset,
        None if config.data_dir is None else Path(config.data_dir),
        cache_dir=None if config.cache_dir is None else Path(config.cache_dir),
        download=config.download,
    )
    if config.validation is not None:
        splits = _hold_out(splits, config.validation)
    # Describe the whole dataset (and how a test-only split was divided) before --limit-*.
    say(splits.describe())

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
        evaluation=splits.evaluation,
    )


def _hold_out(splits: DatasetSplits, size: int) -> DatasetSplits:
    """Hold out the validation split, turning a size that does not fit into an OptionConflict."""
    from examples.defrag.cli import OptionConflict

    try:
        return hold_out_validation(splits, size)
    except ValueError as error:
        raise OptionConflict(str(error)) from None


def _steps_per_epoch(config: TrainConfig, train_y: torch.Tensor) -> int:
    """Count the optimizer steps of one epoch; a last batch smaller than the world is skipped."""
    full, rest = divmod(len(train_y), config.batch_size)
    return full + (rest >= config.world_size)


def _check_training_size(config: TrainConfig, train_y: torch.Tensor) -> None:
    """Raise OptionConflict when no batch has an example for every rank."""
    if _steps_per_epoch(config, train_y) == 0:
        from examples.defrag.cli import OptionConflict

        raise OptionConflict(
            f"{len(train_y):,} training examples cannot be split over {config.world_size} "
            "ranks. Train on more examples (--limit-train, --validation) or launch fewer "
            "processes (torchrun --nproc_per_node)."
        )


# ---------------------------------------------------------------------------------------------
# Model, loss and optimizer


def _build_run_state(config: TrainConfig, device: torch.device, steps_per_epoch: int) -> RunState:
    """Build model, auxiliary loss, optimizer, schedule and shuffling generator."""
    model = DefragNet(config.feature, config.feature_dim, retraction=config.retraction)
    model = model.to(device)
    aux_loss = _build_aux_loss(config)
    if aux_loss is not None:
        aux_loss = aux_loss.to(device)

    optimizer = _build_optimizer(config, model)
    scheduler = _build_scheduler(config, optimizer, config.epochs * steps_per_epoch)

    retract = None
    if config.optimizer != "rsgd":
        from grassmann_nn.nn import retract_

        retract = retract_

    scaler = None
    if config.amp == "float16":
        scaler = torch.amp.GradScaler(device.type)

    shuffle_generator = torch.Generator().manual_seed(config.seed)
    return RunState(model, aux_loss, optimizer, scheduler, shuffle_generator, retract, scaler)


def _build_scheduler(
    config: TrainConfig, optimizer: torch.optim.Optimizer, total_steps: int
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """Build the per-step learning-rate schedule, or return None for a constant rate.

    ``cosine`` decays the rate to 0 along a half cosine over all steps. ``step`` multiplies it
    by 0.1 after half and again after three quarters of the steps, the usual step decay of
    image classifiers of the paper's time.
    """
    if config.lr_schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)

    if config.lr_schedule == "step":
        milestones = [total_steps // 2, (3 * total_steps) // 4]
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones, gamma=0.1)

    return None


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
    state: RunState,
    ranks: Ranks,
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
) -> tuple[dict[str, Any], TestOutputs]:
    """Train one epoch, evaluate on the test split, and return the metrics and test outputs."""
    started = time.perf_counter()
    train_metrics = _train_one_epoch(epoch, config, state, ranks, train_x, train_y)
    train_seconds = time.perf_counter() - started

    started = time.perf_counter()
    eval_metrics, outputs = _evaluate(state.model, test_x, test_y, epoch, config.amp)
    eval_seconds = time.perf_counter() - started

    row = {
        "epoch": epoch,
        **train_metrics,
        **eval_metrics,
        "orthonormality_error": _orthonormality_error(state.model),
        "lr": state.optimizer.param_groups[0]["lr"],
        "train_seconds": train_seconds,
        "eval_seconds": eval_seconds,
    }
    return row, outputs


def _train_one_epoch(
    epoch: int,
    config: TrainConfig,
    state: RunState,
    ranks: Ranks,
    train_x: torch.Tensor,
    train_y: torch.Tensor,
) -> dict[str, float]:
    """Run one pass over the shuffled training tensors.

    Every rank draws the same permutation and takes its share of each global batch of
    ``config.batch_size`` examples. The loss totals are summed over the ranks after every
    step, so that all ranks see the same values and stop together when one is not finite.

    NOTE: In a distributed run the auxiliary loss of each rank takes only that rank's share of
    the batch (its centers, though, move with the whole batch), and a last batch with fewer
    examples than ranks is skipped. When the batch does not divide evenly, DDP still averages
    the per-rank mean losses, so the examples of a smaller share weigh a little more.

    Returns:
        Mean total, cross-entropy and auxiliary loss per example, and the accuracy of the
        predictions made during the pass (the weights change while it runs).
    """
    from tqdm import tqdm

    state.model.train()
    if state.aux_loss is not None:
        state.aux_loss.train()

    count = len(train_y)
    order = torch.randperm(count, generator=state.shuffle_generator).to(train_x.device)
    weight = config.aux_weight or 0.0
    totals = torch.zeros(4, dtype=torch.float64)  # cross-entropy, auxiliary, correct, examples
    progress = tqdm(
        range(0, count, config.batch_size),
        desc=f"epoch {epoch}/{config.epochs}",
        unit="batch",
        leave=False,
        disable=None if ranks.is_main else True,
    )

    for step, start in enumerate(progress):
        index = order[start : start + config.batch_size]
        if len(index) < ranks.world_size:
            continue
        index = index.tensor_split(ranks.world_size)[ranks.rank]
        try:
            ce_loss, aux_value, correct = _train_step(config, state, train_x[index], train_y[index])
        except FloatingPointError as error:
            # The optimizer's message names the parameter but not the position in training.
            raise FloatingPointError(f"At epoch {epoch}, step {step + 1}: {error}") from error

        count_here = len(index)
        step_totals = torch.tensor(
            [
                ce_loss.item() * count_here,
                aux_value.item() * count_here,
                correct.item(),
                count_here,
            ],
            dtype=torch.float64,
        )
        step_totals = _sum_over_ranks(config, step_totals)
        loss = (step_totals[0] + weight * step_totals[1]).item() / step_totals[3].item()
        if not math.isfinite(loss):
            raise FloatingPointError(
                f"The training loss became {loss} at epoch {epoch}, step {step + 1}. "
                "Lower --lr or --lambda."
            )
        totals += step_totals
        if step % 20 == 0:
            progress.set_postfix(loss=f"{loss:.4f}")

    ce_total, aux_total, correct_total, seen = totals.tolist()
    return {
        "loss": (ce_total + weight * aux_total) / seen,
        "ce_loss": ce_total / seen,
        "aux_loss": aux_total / seen if state.aux_loss is not None else None,
        "train_accuracy": correct_total / seen,
    }


def _sum_over_ranks(config: TrainConfig, values: torch.Tensor) -> torch.Tensor:
    """Sum a float64 CPU tensor over the ranks of a distributed run (the identity otherwise)."""
    if not config.distributed:
        return values
    import torch.distributed as dist

    # NCCL communicates CUDA tensors only; gloo takes the CPU tensor as it is.
    device = torch.device("cuda", torch.cuda.current_device()) if _nccl() else values.device
    summed = values.to(device)
    dist.all_reduce(summed)
    return summed.cpu()


def _nccl() -> bool:
    import torch.distributed as dist

    return dist.get_backend() == "nccl"


def _autocast(amp: str, device: torch.device) -> AbstractContextManager[Any]:
    """Return torch.autocast for ``--amp bfloat16`` or ``float16``, else a no-op context."""
    if amp == "none":
        return nullcontext()
    return torch.autocast(device.type, dtype=getattr(torch, amp))


def _train_step(
    config: TrainConfig, state: RunState, images: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Take one optimizer step on a batch.

    Under ``--amp`` the network runs in autocast; the losses take its outputs in float32, and
    a float16 run scales the loss with the GradScaler, which skips the step (parameters and
    momentum unchanged) when a gradient overflows.

    Returns:
        The batch's cross-entropy, its auxiliary loss before weighting (0 without one) and the
        number of correct predictions, as detached tensors.
    """
    state.optimizer.zero_grad(set_to_none=True)
    with _autocast(config.amp, images.device):
        logits, features = state.forward_module(images)
    logits, features = logits.float(), features.float()

    ce_loss = F.cross_entropy(logits, labels)
    aux_value = torch.zeros((), device=logits.device)
    loss = ce_loss
    if state.aux_loss is not None:
        aux_value = state.aux_loss(features, labels)
        loss = ce_loss + config.aux_weight * aux_value

    if state.scaler is None:
        loss.backward()
        state.optimizer.step()
    else:
        state.scaler.scale(loss).backward()
        state.scaler.step(state.optimizer)
        state.scaler.update()
    if config.optimizer == "adam-then-retract":
        _flush_subnormals_(state.optimizer)
    if state.retract is not None:
        state.retract(state.model)
    if state.scheduler is not None:
        state.scheduler.step()

    correct = (logits.argmax(dim=1) == labels).sum()
    return ce_loss.detach(), aux_value.detach(), correct


@torch.no_grad()
def _flush_subnormals_(optimizer: torch.optim.Optimizer) -> None:
    """Set the subnormal entries of the parameters and the optimizer state to zero, in place.

    With the L2 weight decay of ``torch.optim.Adam``, weights that get no gradient signal
    shrink until they are subnormal floats, and arithmetic on those is slow on x86 CPUs. In
    a Fashion-MNIST run, epochs slowed from 25 s to 260 s, and a forward pass with its
    epoch-11 weights took 0.83 s, against 0.02 s after this flush. The flushed values are below
    ``torch.finfo(dtype).tiny`` (1.2e-38 in float32), so no prediction changes.

    NOTE: ``torch.set_flush_denormal(True)`` did not remove the slowdown in that test, so the
    values are flushed here instead.
    """
    for group in optimizer.param_groups:
        for param in group["params"]:
            state = optimizer.state.get(param, {})
            tensors = [param, *(value for value in state.values() if _is_float_array(value))]
            for tensor in tensors:
                tensor.masked_fill_(tensor.abs() < torch.finfo(tensor.dtype).tiny, 0.0)


def _is_float_array(value: Any) -> bool:
    return isinstance(value, torch.Tensor) and value.is_floating_point() and value.dim() > 0


def _evaluate(
    model: DefragNet, test_x: torch.Tensor, test_y: torch.Tensor, epoch: int, amp: str = "none"
) -> tuple[dict[str, Any], TestOutputs]:
    """Compute test accuracy, silhouette score and distance ratio of the test features.

    Returns:
        The three metrics, and the predicted classes and features of every test example.
    """
    from grassmann_nn.metrics import distance_ratio, silhouette_score

    model.eval()
    predictions, features = [], []
    with torch.inference_mode(), _autocast(amp, test_x.device):
        for start in range(0, len(test_y), EVAL_BATCH_SIZE):
            logits, batch_features = model(test_x[start : start + EVAL_BATCH_SIZE])
            predictions.append(logits.argmax(dim=1))
            features.append(batch_features.float())
    model.train()

    predictions = torch.cat(predictions)
    features = torch.cat(features)
    class_count = len(torch.unique(test_y))
    silhouette = None
    if 2 <= class_count < len(test_y):
        # scikit-learn's definition needs 2 <= clusters <= samples - 1.
        silhouette = silhouette_score(features, test_y)
    ratio = distance_ratio(features, test_y) if class_count >= 2 else None

    metrics = {
        "test_accuracy": (predictions == test_y).double().mean().item(),
        "test_silhouette": silhouette,
        "test_distance_ratio": ratio,
    }
    outputs = TestOutputs(
        epoch=epoch,
        predictions=predictions.cpu(),
        features=features.cpu(),
        labels=test_y.cpu(),
    )
    return metrics, outputs


def _orthonormality_error(model: DefragNet) -> float | None:
    """Return the largest max |W^T W - I| over the manifold weights, or None without any."""
    from grassmann_nn.nn import orthonormality_error

    errors = orthonormality_error(model)
    return max(errors.values()) if errors else None


# ---------------------------------------------------------------------------------------------
# Log lines


def _format_row(row: dict[str, Any], epochs: int, evaluation: str = "test") -> str:
    def number(key: str, spec: str) -> str:
        value = row[key]
        return "n/a" if value is None else format(value, spec)

    split = "val" if evaluation == "validation" else "test"
    return (
        f"epoch {row['epoch']}/{epochs}  loss {row['loss']:.4f}  "
        f"train acc {row['train_accuracy']:.4f}  {split} acc {row['test_accuracy']:.4f}  "
        f"silhouette {number('test_silhouette', '.4f')}  "
        f"distance ratio {number('test_distance_ratio', '.4f')}  "
        f"orthonormality error {number('orthonormality_error', '.1e')}  "
        f"{row['train_seconds']:.1f} s train + {row['eval_seconds']:.1f} s eval"
    )


def _print_summary(
    history: list[dict[str, Any]], output_dir: Path, epochs: int, evaluation: str = "test"
) -> None:
    if not history:
        return
    last = history[-1]
    status = "Finished" if last["epoch"] == epochs else "Stopped"
    silhouette = last["test_silhouette"]
    silhouette_text = "n/a" if silhouette is None else f"{silhouette:.4f}"
    print(
        f"{status} after epoch {last['epoch']}/{epochs}: {evaluation} accuracy "
        f"{last['test_accuracy']:.4f}, {evaluation} silhouette {silhouette_text}.\n"
        f"Outputs in {output_dir}: config.json, metrics.json, metrics.csv, {PREDICTIONS_NAME}, "
        f"{FEATURES_NAME}, {CHECKPOINT_NAME}"
    )
