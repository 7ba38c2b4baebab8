"""Output files of a training run: checkpoint, config, metrics and test outputs.

Every file is written atomically (a temporary file in the same folder, fsync, rename), so an
interrupted run leaves either the previous version or the new one, never a partial file.
``restore_checkpoint`` refuses a checkpoint whose settings differ from the requested run.
"""

from __future__ import annotations

import csv
import io
import json
import os
import platform
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
from torch import nn

from examples.defrag.config import TrainConfig
from examples.defrag.data import DatasetSplits, write_atomically
from examples.defrag.model import DefragNet

CHECKPOINT_NAME = "checkpoint.pt"
CHECKPOINT_FORMAT = 1
CONFIG_NAME = "config.json"
METRICS_NAME = "metrics.json"
# Marker file of a run whose loss became NaN or infinite in a grid that keeps going. It contains
# the error message.
DIVERGED_NAME = "diverged.txt"
PREDICTIONS_NAME = "predictions.pt"
FEATURES_NAME = "features.pt"

# Config fields that may differ between a run and its resumption: they choose where data and
# outputs live and where the run computes, not what it computes.
_RESUMABLE_FIELDS = frozenset({"data_dir", "cache_dir", "download", "device", "output_dir"})

# Defaults of the fields, for config.json files written before a field existed.
_DEFAULTS = {field.name: field.default for field in fields(TrainConfig)}

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


class RunError(RuntimeError):
    """Raised when the output folder does not match the request.

    That is a folder with a checkpoint but no ``--resume``, or ``--resume`` without a checkpoint
    or with a checkpoint whose settings differ.
    """


@dataclass(frozen=True)
class TestOutputs:
    """The network's outputs on the test split after one epoch, on the CPU.

    Attributes:
        epoch: The epoch after which the outputs were computed, counted from 1.
        predictions: Predicted class of each test example, int64 of shape (N,).
        features: Output of the feature layer, float32 of shape (N, feature_dim).
        labels: True class of each test example, int64 of shape (N,).
    """

    epoch: int
    predictions: torch.Tensor
    features: torch.Tensor
    labels: torch.Tensor


@dataclass
class RunState:
    """Objects that a checkpoint restores, besides the global torch RNG.

    ``network`` is not saved: it wraps ``model``, whose state the checkpoint holds.
    """

    model: DefragNet
    aux_loss: nn.Module | None
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler | None
    shuffle_generator: torch.Generator
    retract: Callable[[nn.Module], Any] | None
    scaler: torch.amp.GradScaler | None = None
    network: nn.Module | None = None

    @property
    def forward_module(self) -> nn.Module:
        """The module the training step calls: ``network`` (the model wrapped by
        DistributedDataParallel or torch.compile) when set, else ``model``."""
        return self.model if self.network is None else self.network


def check_output_dir(checkpoint_path: Path, resume: bool) -> None:
    """Raise RunError unless a checkpoint exists exactly when ``resume`` is requested.

    A new run is also refused in a folder that contains the metrics or the divergence marker of
    an earlier run, so that no record is overwritten.
    """
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

    # A run record without its checkpoint, such as those kept under examples/defrag/reproduction,
    # would be overwritten by a new run from its own train command.
    output_dir = checkpoint_path.parent
    for name in (METRICS_NAME, DIVERGED_NAME):
        if not resume and (output_dir / name).is_file():
            raise RunError(
                f"{output_dir} already contains the record of a run ({name}) and no checkpoint to "
                "resume from. Choose another --output-dir, or delete the folder to train that "
                "run again."
            )


def save_checkpoint(
    path: Path,
    epoch: int,
    config: TrainConfig,
    state: RunState,
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
        "scaler": None if state.scaler is None else state.scaler.state_dict(),
        "torch_rng_state": torch.get_rng_state(),
        "cuda_rng_states": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "shuffle_generator_state": state.shuffle_generator.get_state(),
        "metrics": history,
    }
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    write_atomically(path, buffer.getvalue())


def restore_checkpoint(path: Path, config: TrainConfig, state: RunState) -> list[dict[str, Any]]:
    """Load a checkpoint into ``state`` and the global RNG, and return its metrics history."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    if checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise RunError(
            f"{path} has checkpoint format {checkpoint.get('format')!r}, "
            f"expected {CHECKPOINT_FORMAT}. Start a new run in another --output-dir."
        )
    check_same_config(path, checkpoint["config"], config)

    state.model.load_state_dict(checkpoint["model"])
    if state.aux_loss is not None:
        state.aux_loss.load_state_dict(checkpoint["aux_loss"])
    state.optimizer.load_state_dict(checkpoint["optimizer"])
    if state.scheduler is not None:
        state.scheduler.load_state_dict(checkpoint["scheduler"])
    if state.scaler is not None and checkpoint.get("scaler") is not None:
        state.scaler.load_state_dict(checkpoint["scaler"])

    torch.set_rng_state(checkpoint["torch_rng_state"])
    if checkpoint["cuda_rng_states"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(checkpoint["cuda_rng_states"])
    state.shuffle_generator.set_state(checkpoint["shuffle_generator_state"])
    return list(checkpoint["metrics"])


def check_same_config(path: Path, saved: dict[str, Any], config: TrainConfig) -> None:
    """Raise RunError listing the settings in which ``config`` differs from the checkpoint's."""
    differences = config_differences(saved, config, saved_name="checkpoint")
    if differences:
        raise RunError(
            f"Cannot resume {path}: these settings differ from the checkpoint's:\n"
            + "\n".join(differences)
            + "\nRepeat the options of the original command, or start a new run."
        )


def config_differences(
    saved: dict[str, Any], config: TrainConfig, *, saved_name: str = "saved"
) -> list[str]:
    """List the settings that change what a run computes and differ between two configs.

    Settings that only choose where data and outputs live or which device computes
    (``data_dir``, ``cache_dir``, ``download``, ``device``, ``output_dir``) are ignored.

    Returns:
        One line per differing setting, ``"  lr: checkpoint 0.01, now 0.5"`` with
        ``saved_name="checkpoint"``; empty when the runs compute the same thing.
    """
    current = asdict(config)
    lines = []
    for field in fields(TrainConfig):
        name = field.name
        if name in _RESUMABLE_FIELDS or saved.get(name, _DEFAULTS[name]) == current[name]:
            continue
        line = f"  {name}: {saved_name} {saved.get(name)!r}, now {current[name]!r}"
        if name == "world_size":
            line += f" (launch with torchrun --nproc_per_node={saved.get(name)})"
        lines.append(line)
    return lines


def write_config(
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
            "evaluation": splits.evaluation,
            "normalization_mean": splits.mean,
            "normalization_std": splits.std,
        },
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
        },
        "machine": describe_machine(torch.device(config.device)),
        "started": datetime.now().astimezone().isoformat(timespec="seconds"),
    }
    write_atomically(output_dir / CONFIG_NAME, to_json(record))


def describe_machine(device: torch.device) -> dict[str, Any]:
    """Describe the processor a run computes on, and how busy the machine is at the start.

    Returns:
        ``cpu`` (the model name from /proc/cpuinfo, else ``platform.processor()``),
        ``cpu_count``, ``load_average_1min`` (None where the OS has none) and, for a CUDA
        device, ``gpu`` with its name.
    """
    description: dict[str, Any] = {
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "load_average_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }
    if device.type == "cuda":
        description["gpu"] = torch.cuda.get_device_name(device)
    return description


def _cpu_model() -> str:
    """Return the CPU model name, or the machine type when the OS does not report one."""
    try:
        with open("/proc/cpuinfo") as file:
            for line in file:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def write_metrics(output_dir: Path, history: list[dict[str, Any]]) -> None:
    """Rewrite ``metrics.json`` and ``metrics.csv`` with every epoch so far."""
    write_atomically(output_dir / METRICS_NAME, to_json(history))

    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=METRIC_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(history)
    write_atomically(output_dir / "metrics.csv", text.getvalue().encode())


def write_test_outputs(output_dir: Path, outputs: TestOutputs) -> None:
    """Write ``predictions.pt`` and ``features.pt``, each with the epoch and the test labels.

    Both load with ``torch.load(..., weights_only=True)`` as dicts of ``epoch``, ``labels`` and
    ``predictions`` or ``features``.
    """
    common = {"epoch": outputs.epoch, "labels": outputs.labels}
    for name, key, value in (
        (PREDICTIONS_NAME, "predictions", outputs.predictions),
        (FEATURES_NAME, "features", outputs.features),
    ):
        buffer = io.BytesIO()
        torch.save({**common, key: value}, buffer)
        write_atomically(output_dir / name, buffer.getvalue())


def read_json(path: Path) -> Any:
    """Read a JSON file written by ``to_json``."""
    return json.loads(Path(path).read_text())


def to_json(value: Any) -> bytes:
    """Encode ``value`` as indented JSON with a final newline."""
    return (json.dumps(value, indent=2) + "\n").encode()
