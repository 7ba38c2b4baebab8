"""The ``tune`` subcommand: choose hyperparameters on a validation split, never on the test set.

Every run of the tuning grid holds out the same ``--validation`` training examples (drawn with
``examples.defrag.data.VALIDATION_SEED``), trains on the others and evaluates on the held-out
ones. The test split is never evaluated. For each configuration, the command trains every
combination of the values given to the search options, for every seed, and selects the
combination with the highest validation accuracy at the last epoch, averaged over the seeds,
preferring combinations whose runs all learned (``select``). The selection goes into a
hyperparameter file (``examples.defrag.hparams``) that ``compare --hparams`` reads for the final
runs on the full training split.

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
from collections.abc import Callable, Sequence
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
    option_name,
    write_hparams,
)
from examples.defrag.results import CHANCE_FACTOR, load_result
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

# Parser of each numeric search option. The grid-edge notes ask it which values are valid.
_PARSERS: dict[str, Callable[[str], Any]] = {
    key: parse for _, key, parse, _ in _SEARCH if parse is not None
}

# Two-sided 95% quantile of the standard normal distribution.
Z_95 = 1.96


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
        diverged: Seeds whose loss became NaN or infinite. They count with accuracy 0.
        evaluated: Number of validation examples the runs were scored on (after
            ``--limit-test``), 0 when every run diverged.
        untrained: Seeds whose run finished at or below ``CHANCE_FACTOR`` times the chance
            level, so it did not learn (``examples.defrag.results.RunResult.learned``).
    """

    key: str
    settings: tuple[tuple[str, str], ...]
    accuracies: list[float]
    silhouettes: list[float]
    folders: list[str]
    diverged: list[int] = field(default_factory=list)
    evaluated: int = 0
    untrained: list[int] = field(default_factory=list)

    @property
    def mean_accuracy(self) -> float:
        """Mean validation accuracy over the seeds."""
        return statistics.fmean(self.accuracies)

    @property
    def learned(self) -> bool:
        """Whether the run of every seed finished without diverging and learned."""
        return not self.diverged and not self.untrained


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
    runs = "1 run" if len(planned) == 1 else f"{len(planned)} runs"
    print(f"Tuning grid of {runs} in {args.output_dir}.")
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
    # Repeated after the table, which can be long, so that the last lines show them.
    for warning in _learning_warnings(choices, selected):
        print(f"\n{warning}")
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

    A diverged run counts with accuracy 0 and is listed in ``Choice.diverged``. A finished run
    near the chance level keeps its accuracy and is listed in ``Choice.untrained``.
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
        if not result.learned:
            choice.untrained.append(run.spec.seed)
        if result.final["test_silhouette"] is not None:
            choice.silhouettes.append(result.final["test_silhouette"])
    return list(choices.values())


def select(choices: Sequence[Choice], *, shared: bool) -> dict[str, Choice | list[Choice]]:
    """Pick the best combination per configuration, or one for all with ``shared``.

    A combination that learned (``Choice.learned``: no seed diverged or ended near the chance
    level) beats every combination that did not. Within each of the two classes, the higher
    mean validation accuracy over the seeds wins. With ``shared``, a combination counts as
    learned when it learned for every configuration, and its accuracy is the mean over the
    configurations. Ties go to the combination that comes first in the grid, which lists the
    values in the order given on the command line.

    Returns:
        Without ``shared``, the best ``Choice`` per hyperparameter-file key. With ``shared``,
        ``{"defaults": [the Choice of each configuration at the selected settings]}``.
    """
    if not shared:
        best: dict[str, Choice] = {}
        for choice in choices:
            if choice.key not in best or _rank([choice]) > _rank([best[choice.key]]):
                best[choice.key] = choice
        return dict(best)

    return {"defaults": max(_by_settings(choices).values(), key=_rank)}


def _rank(group: Sequence[Choice]) -> tuple[bool, float]:
    """Return the sort key of ``select`` for the Choices of one combination."""
    learned = all(choice.learned for choice in group)
    return learned, statistics.fmean(choice.mean_accuracy for choice in group)


def _by_settings(
    choices: Sequence[Choice],
) -> dict[tuple[tuple[str, str], ...], list[Choice]]:
    """Group the Choices by their settings, in grid order."""
    groups: dict[tuple[tuple[str, str], ...], list[Choice]] = {}
    for choice in choices:
        groups.setdefault(choice.settings, []).append(choice)
    return groups


def merge_selection(
    existing: Hyperparameters,
    selected: dict[str, Choice | list[Choice]],
    args: argparse.Namespace,
    command: str,
) -> Hyperparameters:
    """Add the selected settings to ``existing`` and record how they were chosen."""
    defaults = dict(existing.defaults)
    variants = {key: dict(entry) for key, entry in existing.variants.items()}
    provenance = {key: dict(notes) for key, notes in existing.provenance.items()}
    seeds = " ".join(map(str, dict.fromkeys(args.seeds)))

    for key, chosen in selected.items():
        if isinstance(chosen, list):
            defaults.update(_parsed(chosen[0].settings))
            accuracy = statistics.fmean(choice.mean_accuracy for choice in chosen)
            over = ", ".join(choice.key for choice in chosen)
            text = f"mean validation accuracy {accuracy:.4f} over {over}"
            group = chosen
        else:
            variants.setdefault(key, {}).update(_parsed(chosen.settings))
            text = f"validation accuracy {chosen.mean_accuracy:.4f}"
            group = [chosen]
        evaluated = max(choice.evaluated for choice in group)
        note = (
            f"selected by `{command}`: {text}, seeds {seeds}, "
            f"{_scored_text(evaluated, args.validation)} (seed {VALIDATION_SEED})"
            f"{_untrained_text(group)}"
        )
        # Only the settings this stage tuned get its note, so earlier stages keep theirs. A setting
        # with one value in the grid was fixed by the command, not selected.
        for setting, _ in group[0].settings:
            fixed = len(set(getattr(args, f"search_{setting}", None) or [])) == 1
            provenance.setdefault(key, {})[setting] = (
                f"fixed by `{command}`, the only value it tried" if fixed else note
            )
    return Hyperparameters(defaults, variants, provenance)


def _scored_text(evaluated: int, validation: int) -> str:
    """Return the provenance phrase with the number of held-out examples that were scored."""
    if evaluated == validation:
        return f"scored on all {validation:,} held-out training examples"
    return f"scored on {evaluated:,} of {validation:,} held-out training examples"


def _untrained_text(group: Sequence[Choice]) -> str:
    """Return a provenance warning naming the configurations whose selected runs did not learn."""
    untrained = [choice.key for choice in group if not choice.learned]
    if not untrained:
        return ""
    return (
        f". Warning: the selected runs of {', '.join(untrained)} did not learn (a seed "
        f"diverged or ended at or below {CHANCE_FACTOR:g} times the chance level of validation "
        "accuracy), so this selection is meaningless for them"
    )


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
    """Render every combination's validation result as a markdown table, marking the choice.

    Warnings about selections whose runs did not learn come before the table, and the noise
    level and the grid-edge notes after it.
    """
    chosen = set()
    for value in selected.values():
        for choice in value if isinstance(value, list) else [value]:
            chosen.add((choice.key, choice.settings))

    lines = ["# Tuning on the validation split", "", _header(choices, command, validation)]
    for warning in _learning_warnings(choices, selected):
        lines += ["", warning]
    lines += [
        "",
        "| Configuration | Settings | Validation accuracy | Validation silhouette | Seeds "
        "| Selected |",
        "|---|---|---|---|---|---|",
    ]
    for choice in choices:
        lines.append(_table_row(choice, (choice.key, choice.settings) in chosen))

    notes = [_noise_note(choices)] + _edge_notes(choices, selected)
    for note in notes:
        if note:
            lines += ["", note]
    return "\n".join(lines) + "\n"


def _header(choices: Sequence[Choice], command: str, validation: int) -> str:
    """Return the paragraph under the title: command, validation split and column meanings."""
    text = (
        f"Command: `{command}`. {_held_out_text(choices, validation)}. The test split was not "
        "evaluated. Accuracy and silhouette are those of the last epoch, mean ± sample standard "
        "deviation over the seeds."
    )
    if any(choice.untrained for choice in choices):
        text += (
            " A seed marked near chance ended with a validation accuracy at or below "
            f"{CHANCE_FACTOR:g} times the chance level, so its run did not learn."
        )
    if any(choice.diverged for choice in choices):
        text += (
            " A diverged seed counts as validation accuracy 0 in its row's mean, so that the "
            "selection penalizes it, and the silhouette column averages the finished seeds only."
        )
    return text


def _held_out_text(choices: Sequence[Choice], validation: int) -> str:
    """Return the header phrase with the examples held out and, under --limit-test, scored."""
    held_out = f"{validation:,} training examples held out with seed {VALIDATION_SEED}"
    scored = sorted({choice.evaluated for choice in choices if choice.evaluated})
    if not scored:
        return f"{held_out}, none of them scored because every run diverged"
    if scored == [validation]:
        return held_out
    if len(scored) == 1:
        return f"{held_out}, {scored[0]:,} of them scored"
    return f"{held_out}, {scored[0]:,} to {scored[-1]:,} of them scored"


def _table_row(choice: Choice, selected: bool) -> str:
    """Return the table row of one combination, marking its selection and failed seeds."""
    marks = ["yes"] if selected else []
    if choice.diverged:
        marks.append(f"(diverged: seed {', '.join(map(str, choice.diverged))})")
    if choice.untrained:
        marks.append(f"(near chance: seed {', '.join(map(str, choice.untrained))})")
    return (
        f"| {choice.key} | {_settings_text(choice.settings)} | {mean_std(choice.accuracies)} "
        f"| {mean_std(choice.silhouettes)} | {len(choice.accuracies)} | {' '.join(marks)} |"
    )


def _settings_text(settings: tuple[tuple[str, str], ...]) -> str:
    """Return the settings as the command-line options that set them, e.g. ``--lr 0.03``."""
    return ", ".join(f"{option_name(key)} {value}" for key, value in settings) or "(none)"


def _learning_warnings(
    choices: Sequence[Choice], selected: dict[str, Choice | list[Choice]]
) -> list[str]:
    """Return a warning for each configuration whose selected combination did not learn."""
    warnings = []
    for value in selected.values():
        for chosen in value if isinstance(value, list) else [value]:
            if not chosen.learned:
                warnings.append(_learning_warning(chosen, choices))
    return warnings


def _learning_warning(chosen: Choice, choices: Sequence[Choice]) -> str:
    """Return the warning that the selection for ``chosen.key`` rests on runs that did not learn."""
    if any(choice.learned for choice in choices if choice.key == chosen.key):
        failure = (
            f"the selected combination ({_settings_text(chosen.settings)}) did not learn for "
            f"{chosen.key}"
        )
    else:
        failure = f"no combination tried for {chosen.key} learned"
    return (
        f"Warning: {failure}, so the selection for {chosen.key} is meaningless. A run counts as "
        "learned when it finishes without diverging and with a validation accuracy above "
        f"{CHANCE_FACTOR:g} times the chance level. Tune again with more --epochs, more "
        "training examples (a larger --limit-train, or none) or other --lr values."
    )


def _noise_note(choices: Sequence[Choice]) -> str:
    """Return the sentences that give the smallest accuracy difference one run can resolve.

    One run's accuracy p on n examples has the binomial standard error SE = sqrt(p (1 - p) / n).
    The difference of two independent runs has the standard error sqrt(2) SE, so by the normal
    approximation it stays within 1.96 sqrt(2) SE (about 2.77 SE) in 95% of cases when both
    settings are equally good. This leaves out the spread between seeds.
    """
    trained = [choice for choice in choices if choice.evaluated and choice.accuracies]
    if not trained:
        return ""

    best = max(trained, key=lambda choice: choice.mean_accuracy)
    accuracy, evaluated = best.mean_accuracy, best.evaluated
    error = _standard_error(accuracy, evaluated)
    if any(len(choice.accuracies) > 1 for choice in choices):
        resolution = "This band is for one run, and the ± column shows the spread between seeds."
    else:
        resolution = (
            "Settings closer than that are not distinguishable with one seed, and among them the "
            "selection follows the rule (best mean), not evidence."
        )
    return (
        f"Noise: on {evaluated:,} validation examples, an accuracy near {accuracy:.4f} has a "
        f"binomial standard error (SE) of {error:.4f}. Two independent runs of equally good "
        f"settings differ by less than {Z_95} × √2 × SE = {_noise_band(accuracy, evaluated):.4f} "
        f"in 95% of cases (the noise band), because their difference has standard error √2 × SE. "
        f"{resolution} Every run is scored on the same examples, so a paired comparison "
        "would usually give a tighter band."
    )


def _standard_error(accuracy: float, evaluated: int) -> float:
    """Return the binomial standard error of an accuracy measured on ``evaluated`` examples."""
    return math.sqrt(accuracy * (1.0 - accuracy) / evaluated)


def _noise_band(accuracy: float, evaluated: int) -> float:
    """Return the half-width of the 95% range of the difference of two independent runs."""
    return Z_95 * math.sqrt(2.0) * _standard_error(accuracy, evaluated)


def _edge_notes(choices: Sequence[Choice], selected: dict[str, Choice | list[Choice]]) -> list[str]:
    """Return one note per selected numeric value that is the smallest or largest tried.

    A note claims a trend only when the option accepts a value past the edge and the selected
    value strictly beats the next value inward, the other settings unchanged. On an exact tie
    there is no note, because then the selection only followed the grid order. A selection
    whose runs did not learn gets no note, only the warning of ``_learning_warnings``.
    """
    notes = []
    for name, value in selected.items():
        group = value if isinstance(value, list) else [value]
        if not all(choice.learned for choice in group):
            continue
        shared = name == "defaults"
        settings = group[0].settings
        scope = choices if shared else [choice for choice in choices if choice.key == name]
        scores = _scores(scope)
        label = "all configurations" if shared else name
        for key, _ in settings:
            note = _edge_note(scores, settings, key, label)
            if note:
                notes.append(note)
    return notes


def _scores(choices: Sequence[Choice]) -> dict[tuple[tuple[str, str], ...], tuple[float, int]]:
    """Map each combination to (mean accuracy over its configurations, examples scored)."""
    return {
        settings: (
            statistics.fmean(choice.mean_accuracy for choice in group),
            max(choice.evaluated for choice in group),
        )
        for settings, group in _by_settings(choices).items()
    }


def _edge_note(
    scores: dict[tuple[tuple[str, str], ...], tuple[float, int]],
    settings: tuple[tuple[str, str], ...],
    key: str,
    label: str,
) -> str:
    """Return the grid-edge note of setting ``key`` of the selected ``settings``, or ""."""
    text = dict(settings)[key]
    number, axis = _number(text), _axis(scores, settings, key)
    if number is None or len(axis) < 2:
        return ""
    if number == max(axis):
        direction, inward = 1, max(value for value in axis if value < number)
    elif number == min(axis):
        direction, inward = -1, min(value for value in axis if value > number)
    else:
        return ""
    accuracy, evaluated = scores[settings]
    margin = accuracy - scores[axis[inward]][0]
    if margin <= 0 or not _accepts_beyond(key, number, direction):
        return ""

    note = (
        f"Grid edge: {option_name(key)} {text}, selected for {label}, is the "
        f"{'largest' if direction > 0 else 'smallest'} value tried and beats the next one "
        f"inward, {dict(axis[inward])[key]}, by {margin:.4f} in validation accuracy, so a "
        f"{'larger' if direction > 0 else 'smaller'} value may do better."
    )
    if evaluated:
        band = _noise_band(accuracy, evaluated)
        if margin <= band:
            note += f" The margin is within the noise band of {band:.4f}, so the trend is weak."
        else:
            note += f" The margin exceeds the noise band of {band:.4f}."
    return note


def _axis(
    scores: dict[tuple[tuple[str, str], ...], tuple[float, int]],
    settings: tuple[tuple[str, str], ...],
    key: str,
) -> dict[float, tuple[tuple[str, str], ...]]:
    """Map each numeric value of ``key`` tried with the other settings unchanged to its settings."""
    others = [(name, value) for name, value in settings if name != key]
    axis = {}
    for combination in scores:
        number = _number(dict(combination).get(key, ""))
        if number is not None and [item for item in combination if item[0] != key] == others:
            axis[number] = combination
    return axis


def _accepts_beyond(key: str, number: float, direction: int) -> bool:
    """Return whether the option of ``key`` accepts a value past ``number`` in ``direction``.

    The option's own parser decides, so that a note never suggests a value the command line
    rejects, such as a weight decay below 0, an alpha above 1 or fewer than 1 epoch. The values
    tried are the next float past ``number`` and, for a whole number, the next integer.
    """
    parse = _PARSERS.get(key)
    if parse is None:
        return False
    candidates = [repr(math.nextafter(number, direction * math.inf))]
    if number.is_integer():
        candidates.append(str(int(number) + direction))
    for candidate in candidates:
        try:
            parse(candidate)
        except argparse.ArgumentTypeError:
            continue
        return True
    return False


def _number(text: str) -> float | None:
    """Return ``text`` as a float, or None for a non-numeric setting such as a schedule name."""
    try:
        return float(text)
    except ValueError:
        return None
