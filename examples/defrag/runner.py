"""A resumable grid of training runs, shared by the ``compare``, ``plot`` and ``quickstart``.

Each run of the grid is one ``train`` command with the options of a preset from
``examples.defrag.variants``, and writes into its own subfolder. Running the grid again skips
the finished runs and resumes the interrupted ones from their checkpoints, so a long
comparison can be stopped at any time.
"""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import torch

from examples.defrag import cli, train
from examples.defrag.checkpoint import (
    CHECKPOINT_NAME,
    CONFIG_NAME,
    DIVERGED_NAME,
    METRICS_NAME,
    PREDICTIONS_NAME,
    RunError,
    config_differences,
    read_json,
    write_atomically,
)
from examples.defrag.config import TrainConfig
from examples.defrag.hparams import ADAM, Hyperparameters, settings_argv
from examples.defrag.variants import VARIANTS, Variant


class RunStatus(Enum):
    """State of a run folder, which decides whether the grid trains, resumes or skips it."""

    NEW = "new run"
    RESUME = "resuming from its checkpoint"
    FINISHED = "finished earlier, skipped"
    DIVERGED = "diverged earlier, skipped"


@dataclass(frozen=True)
class RunSpec:
    """One run of a grid: a preset, a seed and, for a Grassmann preset, how it is optimized.

    Attributes:
        variant: The preset.
        seed: Value of ``--seed``.
        retraction: Value of ``--retraction``, or None for a preset without a manifold.
        optimizer: Value of ``--optimizer``, or None for a preset without a manifold (they use
            the ``train`` default).
        settings: Hyperparameters of a tuning run as (key, value) pairs with the keys of
            ``examples.defrag.hparams.OPTIONS``; they override every other source.
    """

    variant: Variant
    seed: int
    retraction: str | None = None
    optimizer: str | None = None
    settings: tuple[tuple[str, str], ...] = ()

    @property
    def group(self) -> tuple[str, str | None, str | None, tuple[tuple[str, str], ...]]:
        """The runs that differ only in the seed share this key."""
        return (self.variant.name, self.retraction, self.optimizer, self.settings)

    @property
    def folder_name(self) -> str:
        """Name of the run's subfolder, such as ``defrag-polar-rsgd-seed0``.

        A tuning run also names its settings, as in ``linear-lr0.03-weight_decay0-seed0``.
        """
        parts = [self.variant.name]
        if self.retraction is not None:
            parts += [self.retraction, self.optimizer]
        parts += [f"{key}{value}" for key, value in self.settings]
        return "-".join([*parts, f"seed{self.seed}"])

    @property
    def label(self) -> str:
        """Label of the run's group in tables and legends, such as ``DEFRAG (qr, rsgd)``."""
        label = self.variant.label
        if self.retraction is not None:
            label += f" ({self.retraction}, {self.optimizer})"
        if self.settings:
            label += ", " + ", ".join(f"{key} {value}" for key, value in self.settings)
        return label


@dataclass(frozen=True)
class GridOptions:
    """``train`` options shared by the runs of a grid.

    Attributes:
        shared: Options given to every run, such as ``["--dataset", "mnist", "--epochs", "3"]``.
        aux: Options given only to presets with an auxiliary loss (``--lambda``, ``--alpha``).
        sgd: Options given only to runs of an SGD-type optimizer (``--momentum``).
    """

    shared: tuple[str, ...] = ()
    aux: tuple[str, ...] = ()
    sgd: tuple[str, ...] = ()

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> GridOptions:
        """Collect the shared train options of a grid from parsed command-line options.

        ``args`` contains the options of ``cli.add_grid_data_arguments`` and
        ``cli.add_grid_training_arguments``.

        Options left at None are not passed, so ``train`` applies its own defaults.
        """
        shared = data_argv(args)
        shared += _present(
            ("--epochs", args.epochs),
            ("--batch-size", args.batch_size),
            ("--lr", args.lr),
            ("--lr-schedule", args.lr_schedule),
            ("--weight-decay", args.weight_decay),
            ("--limit-train", args.limit_train),
            ("--limit-test", args.limit_test),
            ("--feature-dim", args.feature_dim),
        )
        aux = _present(("--lambda", args.aux_weight), ("--alpha", args.alpha))
        sgd = _present(("--momentum", args.momentum))
        return cls(shared=tuple(shared), aux=tuple(aux), sgd=tuple(sgd))


def data_argv(args: argparse.Namespace) -> list[str]:
    """Return the ``train`` options that choose the dataset, its folders and the device.

    ``args`` contains the options of ``cli.add_grid_data_arguments`` and a ``device``.
    """
    argv = ["--dataset", args.dataset, "--device", args.device]
    if args.download:
        argv.append("--download")
    return argv + _present(("--data-dir", args.data_dir), ("--cache-dir", args.cache_dir))


def _present(*pairs: tuple[str, object]) -> list[str]:
    """Flatten (option, value) pairs into argv, leaving out the options whose value is None."""
    argv = []
    for option, value in pairs:
        if value is not None:
            argv += [option, str(value)]
    return argv


@dataclass(frozen=True)
class PlannedRun:
    """A run of the grid with its resolved settings and the command that reproduces it."""

    spec: RunSpec
    config: TrainConfig
    argv: tuple[str, ...]

    @property
    def output_dir(self) -> Path:
        """The run's folder."""
        return Path(self.config.output_dir)

    @property
    def command(self) -> str:
        """The ``train`` command line of the run, quoted for a POSIX shell."""
        return shlex.join(["python", "-m", "examples.defrag", "train", *self.argv])


def build_grid(
    variant_names: Sequence[str],
    retractions: Sequence[str],
    optimizers: Sequence[str],
    seeds: Sequence[int],
) -> list[RunSpec]:
    """List the runs of a grid, seed by seed, so that early seeds finish first.

    Presets without a manifold run once per seed. The Grassmann preset runs once per seed for
    each retraction with ``rsgd``, and once per seed with polar for each ``*-then-retract``
    optimizer, because those re-project with the polar factor whatever the retraction.
    Repeated names and seeds count once.
    """
    specs = []
    for seed in dict.fromkeys(seeds):
        for name in dict.fromkeys(variant_names):
            variant = VARIANTS[name]
            if not variant.has_manifold:
                specs.append(RunSpec(variant, seed))
                continue
            for optimizer, retraction in _manifold_settings(retractions, optimizers):
                specs.append(RunSpec(variant, seed, retraction, optimizer))
    return specs


def _manifold_settings(
    retractions: Sequence[str], optimizers: Sequence[str]
) -> list[tuple[str, str]]:
    """Return the (optimizer, retraction) pairs for the Grassmann preset."""
    pairs = []
    for optimizer in optimizers:
        for retraction in retractions if optimizer == "rsgd" else ("polar",):
            if (optimizer, retraction) not in pairs:
                pairs.append((optimizer, retraction))
    return pairs


def plan_runs(
    specs: Sequence[RunSpec],
    options: GridOptions,
    output_dir: Path,
    hparams: Hyperparameters | None = None,
) -> list[PlannedRun]:
    """Resolve each run's settings through the ``train`` command's own option parser.

    A run's options come, each overriding the ones before, from its preset, from ``hparams``,
    from ``options`` (the command line), and from the run's own tuning ``settings``.

    Raises:
        examples.defrag.cli.OptionConflict: When the shared options contradict a preset.
    """
    parser = argparse.ArgumentParser(prog="python -m examples.defrag train")
    cli.add_train_arguments(parser)

    planned = []
    for spec in specs:
        argv = list(spec.variant.options)
        if spec.retraction is not None:
            argv += ["--retraction", spec.retraction, "--optimizer", spec.optimizer]
        if hparams is not None:
            argv += hparams.argv_for(spec.variant.name, spec.optimizer)
        argv += options.shared
        if spec.variant.has_aux_loss:
            argv += options.aux
        if spec.optimizer != ADAM:
            argv += options.sgd
        argv += settings_argv(dict(spec.settings))
        argv += ["--seed", str(spec.seed), "--output-dir", str(output_dir / spec.folder_name)]
        argv = _last_values(argv, parser)

        config = cli.config_from_args(parser.parse_args(argv))
        planned.append(PlannedRun(spec, config, tuple(argv)))
    return planned


def _last_values(argv: Sequence[str], parser: argparse.ArgumentParser) -> list[str]:
    """Keep one copy of each option of a layered ``train`` command line, with its last value.

    The layers of ``plan_runs`` repeat an option where one overrides another, as in ``--lr 0.1
    ... --lr 0.03``. The parser keeps the last value anyway, so dropping the earlier ones leaves
    the run's settings as they are and prints a command that states each setting once. Each
    option stays where it first appeared.
    """
    values: dict[str, str | None] = {}
    tokens = iter(argv)
    for token in tokens:
        # NOTE: argparse has no public map from option strings to actions, so this reads the
        # private one that argparse itself uses to parse.
        action = parser._option_string_actions[token]
        values[token] = None if action.nargs == 0 else next(tokens)

    merged = []
    for option, value in values.items():
        merged += [option] if value is None else [option, value]
    return merged


def run_status(config: TrainConfig) -> RunStatus:
    """Decide whether a run is new, can resume, or finished earlier with the same settings.

    Raises:
        examples.defrag.checkpoint.RunError: When the folder contains a run with other settings.
    """
    output_dir = Path(config.output_dir)
    config_path = output_dir / CONFIG_NAME
    if config_path.is_file():
        saved = read_json(config_path)
        differences = config_differences(saved, config, saved_name="existing run")
        if differences:
            raise RunError(
                f"{output_dir} contains a run with other settings:\n"
                + "\n".join(differences)
                + "\nRepeat the options of the earlier command, pass another --output-dir, or "
                f"delete {output_dir} to rerun it with the new settings."
            )

    if (output_dir / DIVERGED_NAME).is_file():
        return RunStatus.DIVERGED
    if is_finished(output_dir, config.epochs):
        return RunStatus.FINISHED
    if (output_dir / CHECKPOINT_NAME).is_file():
        return RunStatus.RESUME
    return RunStatus.NEW


def is_finished(output_dir: Path, epochs: int) -> bool:
    """Return whether a run folder contains the metrics and test predictions of all epochs.

    Training writes the predictions and features of an epoch before its metrics, so a run whose
    metrics hold every epoch wrote both. The features are not required here, because the records
    kept to rewrite the tuning tables leave them out.
    """
    metrics_path = output_dir / METRICS_NAME
    if not metrics_path.is_file():
        return False
    if len(read_json(metrics_path)) != epochs:
        return False
    predictions_path = output_dir / PREDICTIONS_NAME
    if not predictions_path.is_file():
        return False
    return torch.load(predictions_path, weights_only=True)["epoch"] == epochs


def execute(planned: Sequence[PlannedRun], *, keep_going: bool = False) -> None:
    """Train every run of the grid that has not finished, one after the other.

    Args:
        planned: The runs.
        keep_going: When a run's loss becomes NaN or infinite, write ``DIVERGED_NAME`` with the
            error into its folder and go on with the next run, instead of raising. A tuning
            grid uses this, because a learning rate that diverges is a result there.

    Raises:
        examples.defrag.checkpoint.RunError: When a folder contains a run with other settings.
        examples.defrag.data.DatasetError: When the dataset is missing or corrupt.
        FloatingPointError: When a run's training loss becomes NaN or infinite and
            ``keep_going`` is False.
    """
    statuses = [run_status(run.config) for run in planned]
    for index, (run, status) in enumerate(zip(planned, statuses, strict=True), start=1):
        print(f"\n[{index}/{len(planned)}] {run.spec.label}, seed {run.spec.seed}: {status.value}")
        print(f"  {run.command}")
        if status in (RunStatus.FINISHED, RunStatus.DIVERGED):
            continue
        try:
            train.train(run.config, resume=status is RunStatus.RESUME)
        except FloatingPointError as error:
            if not keep_going:
                raise
            print(f"  Diverged, going on with the next run: {error}")
            write_atomically(run.output_dir / DIVERGED_NAME, f"{error}\n".encode())


def has_diverged(run: PlannedRun) -> bool:
    """Return whether ``execute(..., keep_going=True)`` marked the run as diverged."""
    return (run.output_dir / DIVERGED_NAME).is_file()
