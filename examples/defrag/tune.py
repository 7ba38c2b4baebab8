"""The ``tune`` subcommand: choose hyperparameters on a validation split, never on the test set.

Every run of the tuning grid holds out the same ``--validation`` training examples (drawn with
``examples.defrag.data.VALIDATION_SEED``), trains on the others and evaluates on the held-out
ones. The test split is never evaluated. For each configuration, the command trains every
combination of the values given to the search options, for every seed, and selects the
combination with the highest validation accuracy at the last epoch, averaged over the seeds.
The selection goes into a hyperparameter file (``examples.defrag.hparams``) that ``compare
--hparams`` reads for the final runs on the full training split.

With ``--shared``, one combination is selected for all configurations together, by the mean of
their validation accuracies, and written as the file's ``defaults``. Tuning in stages is then a
matter of passing the file of one stage as ``--hparams`` to the next, for example learning rate
and weight decay shared by all configurations first, then lambda per configuration.
"""

from __future__ import annotations

import argparse
import itertools
import math
import shlex
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from examples.defrag import cli, runner
from examples.defrag.checkpoint import write_atomically
from examples.defrag.config import LR_SCHEDULES, OPTIMIZERS
from examples.defrag.data import VALIDATION_SEED
from examples.defrag.hparams import (
    ADAM,
    AUX_KEYS,
    Hyperparameters,
    load_hparams,
    write_hparams,
)
from examples.defrag.results import load_result
from examples.defrag.stats import mean_std
from examples.defrag.variants import TABLE2_VARIANTS, VARIANTS

DEFAULT_OUTPUT_DIR = Path("runs", "defrag", "tune")
DEFAULT_VALIDATION = 5000
HPARAMS_NAME = "hparams.json"
RESULTS_NAME = "TUNING.md"

# Search options: (option, key in the hyperparameter file, parser, metavar).
_SEARCH = (
    ("--lr", "lr", cli.positive_float, "LR"),
    ("--lr-schedule", "lr_schedule", None, "NAME"),
    ("--epochs", "epochs", cli.positive_int, "N"),
    ("--weight-decay", "weight_decay", cli.non_negative_float, "DECAY"),
    ("--momentum", "momentum", cli.unit_interval_float, "MOMENTUM"),
    ("--lambda", "lambda", cli.non_negative_float, "LAMBDA"),
    ("--alpha", "alpha", cli.unit_interval_float, "ALPHA"),
)


def add_tune_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of the ``tune`` subcommand to ``parser``."""
    cli.add_grid_data_arguments(parser)

    grid = parser.add_argument_group("grid")
    grid.add_argument(
        "--variants",
        nargs="+",
        choices=tuple(VARIANTS),
        default=list(TABLE2_VARIANTS),
        metavar="NAME",
        help=f"configurations to tune, from {', '.join(VARIANTS)} "
        f"(default: {' '.join(TABLE2_VARIANTS)})",
    )
    grid.add_argument(
        "--optimizers",
        nargs="+",
        choices=OPTIMIZERS,
        default=["rsgd"],
        metavar="NAME",
        help="optimizers of the defrag runs, tuned separately and written under "
        "defrag:OPTIMIZER for all but rsgd; the other configurations use rsgd (default: rsgd)",
    )
    grid.add_argument(
        "--seeds",
        nargs="+",
        type=cli.non_negative_int,
        default=[0],
        metavar="SEED",
        help="seeds; each combination runs once per seed (default: 0)",
    )
    grid.add_argument(
        "--shared",
        action="store_true",
        help="select one combination for all configurations together (by their mean "
        "validation accuracy) and write it as the defaults of the file (default: off, select "
        "per configuration)",
    )

    search = parser.add_argument_group(
        "search: each option takes one or more values; the grid is their product, and an option "
        "left out is not tuned (it comes from --hparams, else the train default)"
    )
    for option, key, parse, metavar in _SEARCH:
        search.add_argument(
            option,
            dest=f"search_{key}",
            nargs="+",
            type=parse,
            choices=LR_SCHEDULES if parse is None else None,
            default=None,
            metavar=metavar,
            help=_search_help(key),
        )

    fixed = parser.add_argument_group("fixed settings")
    fixed.add_argument(
        "--validation",
        type=cli.positive_int,
        default=DEFAULT_VALIDATION,
        metavar="N",
        help=f"training examples held out (seed {VALIDATION_SEED}) and evaluated instead of the "
        "test split (default: %(default)s)",
    )
    fixed.add_argument(
        "--hparams",
        type=Path,
        default=None,
        metavar="FILE",
        help="settings from an earlier stage, used for what this stage does not tune and kept "
        "in the written file (default: none)",
    )
    for option, dest, parse, text in (
        ("--batch-size", "batch_size", cli.positive_int, "examples per step (default: 128)"),
        (
            "--limit-train",
            "limit_train",
            cli.positive_int,
            "train on the first N of the "
            "training examples left after holding out the validation split (default: all)",
        ),
        (
            "--limit-test",
            "limit_test",
            cli.positive_int,
            "evaluate on the first N validation examples only (default: all)",
        ),
        (
            "--feature-dim",
            "feature_dim",
            cli.positive_int,
            "width of the feature layer (default: 8)",
        ),
    ):
        fixed.add_argument(option, dest=dest, type=parse, default=None, metavar="N", help=text)
    fixed.add_argument(
        "--device",
        default="auto",
        help="torch device of every run (default: %(default)s)",
    )

    output = parser.add_argument_group("output")
    output.add_argument(
        "--output-dir",
        type=Path,
        default=DEFAULT_OUTPUT_DIR,
        metavar="FOLDER",
        help="folder with one subfolder per run; rerunning skips finished runs and resumes "
        "interrupted ones (default: %(default)s)",
    )
    output.add_argument(
        "--write-hparams",
        type=Path,
        default=None,
        metavar="FILE",
        help=f"hyperparameter file to write the selection to; an existing file is updated, "
        f"keeping its other entries (default: {HPARAMS_NAME} in --output-dir)",
    )
    output.add_argument(
        "--results",
        type=Path,
        default=None,
        metavar="FILE",
        help=f"markdown table of every combination (default: {RESULTS_NAME} in --output-dir)",
    )


def _search_help(key: str) -> str:
    if key in AUX_KEYS:
        return f"values of {key} to try, for the configurations with an auxiliary loss"
    if key == "momentum":
        return "momentum values to try, for the SGD-type optimizers"
    if key == "lr_schedule":
        return f"schedules to try, from {', '.join(LR_SCHEDULES)}"
    return f"values of {key.replace('_', ' ')} to try"


@dataclass
class Choice:
    """The validation result of one combination of settings for one configuration.

    Attributes:
        key: Hyperparameter-file key of the configuration (``"defrag"``,
            ``"defrag:adam-then-retract"``).
        settings: The tuned settings, as (key, value) pairs.
        accuracies: Last-epoch validation accuracy of each seed.
        silhouettes: Last-epoch validation silhouette score of each seed.
        folders: The run folders.
        diverged: Seeds whose loss became NaN or infinite; they count with accuracy 0.
        evaluated: Number of validation examples the runs were scored on (after
            ``--limit-test``), 0 when every run diverged.
    """

    key: str
    settings: tuple[tuple[str, str], ...]
    accuracies: list[float]
    silhouettes: list[float]
    folders: list[str]
    diverged: list[int] = field(default_factory=list)
    evaluated: int = 0

    @property
    def mean_accuracy(self) -> float:
        """Mean validation accuracy over the seeds."""
        return statistics.fmean(self.accuracies)


def run_tune(args: argparse.Namespace, argv: Sequence[str]) -> Path:
    """Train the tuning grid, write the selection and the table, and return the file's path.

    Raises:
        examples.defrag.cli.OptionConflict: When the options contradict a preset or the
            hyperparameter file is invalid.
        examples.defrag.checkpoint.RunError: When a run folder contains a run with other
            settings.
        examples.defrag.data.DatasetError: When the dataset is missing or corrupt.
    """
    base = Hyperparameters() if args.hparams is None else load_hparams(args.hparams)
    if args.shared:
        _check_shared_search(args)
    specs = build_tuning_grid(args)
    if not specs:
        raise cli.OptionConflict("The tuning grid is empty. Give --variants and --seeds.")
    planned = runner.plan_runs(specs, _grid_options(args), args.output_dir, base)
    print(f"Tuning grid of {len(planned)} runs in {args.output_dir}.")
    runner.execute(planned, keep_going=True)

    choices = collect_choices(planned)
    selected = select(choices, shared=args.shared)
    command = shlex.join(["python", "-m", "examples.defrag", *argv])

    hparams_path = args.write_hparams or args.output_dir / HPARAMS_NAME
    updated = merge_selection(_existing(hparams_path, base), selected, args, command)
    write_hparams(hparams_path, updated)

    results_path = args.results or args.output_dir / RESULTS_NAME
    text = render_tuning(choices, selected, command, args.validation)
    results_path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(results_path, text.encode())
    print(f"\n{text}\nSelection written to {hparams_path}, table to {results_path}")
    return hparams_path


def _check_shared_search(args: argparse.Namespace) -> None:
    """Reject --shared when a search option does not apply to every configuration.

    A shared selection compares the same combination across configurations, so every
    configuration must run every combination.
    """
    has_aux = [VARIANTS[name].has_aux_loss for name in args.variants]
    for key in sorted(AUX_KEYS):
        if getattr(args, f"search_{key}") is not None and not all(has_aux):
            without = [name for name in args.variants if not VARIANTS[name].has_aux_loss]
            raise cli.OptionConflict(
                f"--shared with --{key} needs configurations that all have an auxiliary loss, "
                f"but {', '.join(without)} has none. Tune {key} without --shared, or drop "
                f"{', '.join(without)}."
            )
    if args.search_momentum is not None and ADAM in args.optimizers:
        raise cli.OptionConflict(
            "--shared with --momentum cannot include --optimizers adam-then-retract, which has "
            "no momentum. Tune momentum without --shared, or drop adam-then-retract."
        )


def build_tuning_grid(args: argparse.Namespace) -> list[runner.RunSpec]:
    """List the runs: configurations x combinations of the search values that apply x seeds."""
    specs = []
    for seed in dict.fromkeys(args.seeds):
        for name in dict.fromkeys(args.variants):
            variant = VARIANTS[name]
            optimizers = dict.fromkeys(args.optimizers) if variant.has_manifold else [None]
            for optimizer in optimizers:
                retraction = "polar" if variant.has_manifold else None
                for settings in _combinations(args, variant.has_aux_loss, optimizer):
                    specs.append(runner.RunSpec(variant, seed, retraction, optimizer, settings))
    return specs


def _combinations(
    args: argparse.Namespace, has_aux_loss: bool, optimizer: str | None
) -> list[tuple[tuple[str, str], ...]]:
    """Return the product of the search values that apply to one configuration."""
    axes = []
    for _, key, _, _ in _SEARCH:
        values = getattr(args, f"search_{key}")
        if values is None:
            continue
        if key in AUX_KEYS and not has_aux_loss:
            continue
        if key == "momentum" and optimizer == ADAM:
            continue
        axes.append([(key, str(value)) for value in dict.fromkeys(values)])
    return [tuple(combination) for combination in itertools.product(*axes)]


def _grid_options(args: argparse.Namespace) -> runner.GridOptions:
    """Collect the options every tuning run shares: data, device, validation split, sizes."""
    shared = runner.data_argv(args) + ["--validation", str(args.validation)]
    for option, value in (
        ("--batch-size", args.batch_size),
        ("--limit-train", args.limit_train),
        ("--limit-test", args.limit_test),
        ("--feature-dim", args.feature_dim),
    ):
        if value is not None:
            shared += [option, str(value)]
    return runner.GridOptions(shared=tuple(shared))


def hparams_key(spec: runner.RunSpec) -> str:
    """Return the hyperparameter-file key of a run: the preset, plus a non-rsgd optimizer."""
    if spec.optimizer in (None, "rsgd"):
        return spec.variant.name
    return f"{spec.variant.name}:{spec.optimizer}"


def collect_choices(planned: Sequence[runner.PlannedRun]) -> list[Choice]:
    """Group the runs by configuration and settings, in grid order.

    A diverged run counts with accuracy 0, so that its combination is never selected over one
    that trained.
    """
    choices: dict[tuple[str, tuple[tuple[str, str], ...]], Choice] = {}
    for run in planned:
        group = (hparams_key(run.spec), run.spec.settings)
        if group not in choices:
            choices[group] = Choice(group[0], run.spec.settings, [], [], [])
        choice = choices[group]
        choice.folders.append(run.output_dir.name)
        if runner.has_diverged(run):
            choice.accuracies.append(0.0)
            choice.diverged.append(run.spec.seed)
            continue

        result = load_result(run)
        if result.record["data"].get("evaluation") != "validation":
            raise cli.OptionConflict(
                f"{run.output_dir} was not evaluated on a validation split, so it cannot take "
                "part in tuning. Use another --output-dir."
            )
        choice.accuracies.append(result.final["test_accuracy"])
        choice.evaluated = result.record["data"]["test_examples"]
        if result.final["test_silhouette"] is not None:
            choice.silhouettes.append(result.final["test_silhouette"])
    return list(choices.values())


def select(choices: Sequence[Choice], *, shared: bool) -> dict[str, Choice | list[Choice]]:
    """Pick the best combination per configuration, or one for all with ``shared``.

    Ties go to the combination that comes first in the grid, which lists the values in the
    order given on the command line.

    Returns:
        Without ``shared``, the best ``Choice`` per hyperparameter-file key. With ``shared``,
        ``{"defaults": [the Choice of each configuration at the selected settings]}``.
    """
    if not shared:
        best: dict[str, Choice] = {}
        for choice in choices:
            if choice.key not in best or choice.mean_accuracy > best[choice.key].mean_accuracy:
                best[choice.key] = choice
        return dict(best)

    by_settings: dict[tuple[tuple[str, str], ...], list[Choice]] = {}
    for choice in choices:
        by_settings.setdefault(choice.settings, []).append(choice)
    winner = max(
        by_settings.values(),
        key=lambda group: statistics.fmean(choice.mean_accuracy for choice in group),
    )
    return {"defaults": winner}


def merge_selection(
    existing: Hyperparameters,
    selected: dict[str, Choice | list[Choice]],
    args: argparse.Namespace,
    command: str,
) -> Hyperparameters:
    """Add the selected settings to ``existing`` and record how they were chosen."""
    defaults = dict(existing.defaults)
    variants = {key: dict(entry) for key, entry in existing.variants.items()}
    provenance = dict(existing.provenance)
    seeds = " ".join(map(str, dict.fromkeys(args.seeds)))

    for key, chosen in selected.items():
        if isinstance(chosen, list):
            defaults.update(_parsed(chosen[0].settings))
            accuracy = statistics.fmean(choice.mean_accuracy for choice in chosen)
            over = ", ".join(choice.key for choice in chosen)
            text = f"mean validation accuracy {accuracy:.4f} over {over}"
            evaluated = max(choice.evaluated for choice in chosen)
        else:
            variants.setdefault(key, {}).update(_parsed(chosen.settings))
            text = f"validation accuracy {chosen.mean_accuracy:.4f}"
            evaluated = chosen.evaluated
        provenance[key] = (
            f"selected by `{command}`: {text}, seeds {seeds}, scored on {evaluated:,} of "
            f"{args.validation:,} held-out training examples (seed {VALIDATION_SEED})"
        )
    return Hyperparameters(defaults, variants, provenance)


def _parsed(settings: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    """Turn the string values of a combination back into numbers where they are numbers."""
    parsed: dict[str, Any] = {}
    for key, value in settings:
        if key == "lr_schedule":
            parsed[key] = value
        elif key == "epochs":
            parsed[key] = int(value)
        else:
            parsed[key] = float(value)
    return parsed


def _existing(path: Path, base: Hyperparameters) -> Hyperparameters:
    """Return the file at ``path`` when it exists (to be updated), else the base settings."""
    return load_hparams(path) if path.is_file() else base


def render_tuning(
    choices: Sequence[Choice],
    selected: dict[str, Choice | list[Choice]],
    command: str,
    validation: int,
) -> str:
    """Render every combination's validation result as a markdown table, marking the choice."""
    chosen = set()
    for value in selected.values():
        for choice in value if isinstance(value, list) else [value]:
            chosen.add((choice.key, choice.settings))

    lines = [
        "# Tuning on the validation split",
        "",
        f"Command: `{command}`. {validation:,} training examples held out with seed "
        f"{VALIDATION_SEED}; the test split was not evaluated. Accuracy and silhouette are "
        "those of the last epoch, mean ± sample standard deviation over the seeds.",
        "",
        "| Configuration | Settings | Validation accuracy | Validation silhouette | Seeds "
        "| Selected |",
        "|---|---|---|---|---|---|",
    ]
    for choice in choices:
        settings = ", ".join(f"{key} {value}" for key, value in choice.settings) or "(none)"
        mark = "yes" if (choice.key, choice.settings) in chosen else ""
        if choice.diverged:
            mark += f" (diverged: seed {', '.join(map(str, choice.diverged))})"
        lines.append(
            f"| {choice.key} | {settings} | {mean_std(choice.accuracies)} "
            f"| {mean_std(choice.silhouettes)} | {len(choice.accuracies)} | {mark} |"
        )

    notes = [_noise_note(choices)] + _edge_notes(choices, selected)
    for note in notes:
        if note:
            lines += ["", note]
    return "\n".join(lines) + "\n"


def _noise_note(choices: Sequence[Choice]) -> str:
    """Return the sentence that gives the smallest accuracy difference one run can resolve.

    One run's accuracy p on n examples has the binomial standard error sqrt(p (1 - p) / n).
    Two runs of different settings differ by about sqrt(2) times that from the sample alone,
    before any difference between seeds, so gaps below twice the standard error are noise.
    """
    trained = [choice for choice in choices if choice.evaluated and choice.accuracies]
    if not trained:
        return ""

    best = max(trained, key=lambda choice: choice.mean_accuracy)
    accuracy, evaluated = best.mean_accuracy, best.evaluated
    error = math.sqrt(accuracy * (1.0 - accuracy) / evaluated)
    return (
        f"Noise: on {evaluated:,} validation examples, an accuracy near {accuracy:.4f} has a "
        f"standard error of {error:.4f} from the sample alone, so settings whose accuracies "
        f"differ by less than about {2 * error:.4f} are not distinguishable with one seed; "
        "among them the selection follows the rule (best mean), not evidence."
    )


def _edge_notes(choices: Sequence[Choice], selected: dict[str, Choice | list[Choice]]) -> list[str]:
    """Return one sentence per selected numeric value that is the smallest or largest tried."""
    grid: dict[str, set[float]] = {}
    for choice in choices:
        for key, value in choice.settings:
            number = _number(value)
            if number is not None:
                grid.setdefault(key, set()).add(number)

    notes = []
    for name, value in selected.items():
        choice = value[0] if isinstance(value, list) else value
        label = "all configurations" if name == "defaults" else name
        for key, text in choice.settings:
            values, number = grid.get(key, set()), _number(text)
            if number is None or len(values) < 2:
                continue
            if number == max(values):
                notes.append(
                    f"Grid edge: {key} {text}, selected for {label}, is the largest value "
                    "tried; a larger one may do better."
                )
            elif number == min(values):
                notes.append(
                    f"Grid edge: {key} {text}, selected for {label}, is the smallest value "
                    "tried; a smaller one may do better."
                )
    return notes


def _number(text: str) -> float | None:
    """Return ``text`` as a float, or None for a non-numeric setting such as a schedule name."""
    try:
        return float(text)
    except ValueError:
        return None
