"""The markdown report of ``compare``: accuracies beside the paper's, with paired tests.

Every number in the report is read from the run folders (``config.json``, ``metrics.json``
and ``predictions.pt``), except the paper's accuracies, which are the constants
``examples.defrag.variants.PAPER_RESULTS``: Table 2 for Fashion-MNIST, Figure 3 for MNIST.
Paper: "DEFRAG: Deep Euclidean Feature Representations through Adaptation on the Grassmann
Manifold", Minnehan & Savakis, arXiv:1806.07688.

Paired tests against the Linear baseline (``examples.defrag.stats``):

- With one seed, the main table gives McNemar's exact test of the two runs of that seed on the
  same test examples.
- With two or more seeds, the main table gives the two-sided paired t-test of the per-seed
  accuracies instead, because it measures the variation between seeds, which McNemar's test
  of one seed cannot see. The per-seed McNemar tests are listed below the table in either case.

The verdicts on the paper's claims come from ``examples.defrag.verdicts``.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from examples.defrag.data import DATASET_TITLES
from examples.defrag.hparams import Hyperparameters, option_name
from examples.defrag.results import (
    CHANCE_FACTOR,
    Divergence,
    Group,
    RunResult,
    difference_to_baseline,
    group_results,
    paired_accuracies,
    paper_results,
    seed_correctness,
)
from examples.defrag.runner import PlannedRun
from examples.defrag.stats import format_p, mcnemar_exact, mean, mean_std, paired_t_test
from examples.defrag.variants import BASELINE_VARIANT, VARIANTS, PaperResults, PaperValue
from examples.defrag.verdicts import (
    failure_reasons,
    join_words,
    paper_gap_to_baseline,
    relation,
    render_verdicts,
)

PAPER = "Minnehan & Savakis, arXiv:1806.07688"


def render_report(
    results: Sequence[RunResult],
    command: str,
    output_dir: Path,
    figures: Sequence[tuple[str, str]] = (),
    divergences: Sequence[Divergence] = (),
    pending: Sequence[PlannedRun] = (),
) -> str:
    """Render the whole report as markdown.

    Args:
        results: The finished runs of the grid, at least one.
        command: The ``compare`` command line that produced them.
        output_dir: The folder that contains the run folders.
        figures: ``(link, caption)`` of each image to embed, with links relative to the
            report's folder.
        divergences: The runs of the grid that diverged.
        pending: The runs of the grid that had not finished when ``compare --report-only``
            wrote the report. The report names them at the top and in the runs table.
    """
    records = [result.record for result in results]
    paper = paper_results(records)
    groups = group_results(results, paper, divergences)
    orphans = _orphan_divergences(groups, divergences)
    baseline = next((group for group in groups if group.variant.name == BASELINE_VARIANT), None)
    dataset = _joined(records, lambda record: DATASET_TITLES[record["dataset"]])
    generated = datetime.now().astimezone().isoformat(timespec="seconds")
    source = "none" if paper is None else paper.source
    origin = f"in `{output_dir}`"
    if paper is not None:
        origin += f", except the paper's accuracies ({source} of {PAPER})"
    origin += "."
    if paper is not None and paper.caveat:
        origin += " " + paper.caveat

    sections = [
        _title(groups, dataset),
        f"Generated on {generated} by `{command}`. Every number is read from the run folders "
        f"{origin}",
        *_pending_note(pending),
        "## Test accuracy",
        _accuracy_table(groups, baseline, source, orphans),
        _table_notes(groups, baseline),
        "## Where the results differ from the paper",
        _paper_gaps(groups, baseline, records, orphans, paper),
        "## Verdicts on the paper's claims",
        render_verdicts(groups, baseline, orphans, paper, comparable=not _test_split_only(records)),
        *_figures(figures),
        "## Paired tests against Linear, per seed",
        _mcnemar_table(groups, baseline),
        "## Setup",
        _setup(records, command),
        _hyperparameter_table(groups),
        "## Runs",
        _runs_table(results, divergences, pending),
    ]
    return "\n\n".join(sections) + "\n"


def _title(groups: Sequence[Group], dataset: str) -> str:
    """Title the report after what the grid varies: the configurations, or DEFRAG's settings.

    A grid with more than one retraction or optimizer among its DEFRAG runs compares those,
    as in ``"# DEFRAG retractions and optimizers on Fashion-MNIST"``.
    """
    records = [
        result.record for group in groups if group.variant.has_manifold for result in group.results
    ]
    varied = [
        title
        for key, title in (("retraction", "retractions"), ("optimizer", "optimizers"))
        if len({record[key] for record in records}) > 1
    ]
    if not varied:
        return f"# DEFRAG comparison on {dataset}"
    return f"# DEFRAG {' and '.join(varied)} on {dataset}"


def _accuracy_table(
    groups: Sequence[Group],
    baseline: Group | None,
    source: str,
    orphans: Mapping[str, Sequence[Divergence]],
) -> str:
    """Render the main table: one row per configuration, marked when a run failed."""
    header = (
        f"| Configuration | Paper ({source}) | Test accuracy | Seeds | vs paper | vs Linear "
        "| p vs Linear | Test silhouette | Distance ratio | Parameters | Train s/epoch "
        "| Eval s/epoch |"
    )
    rows = [header, "|" + "---|" * 12]
    for group in groups:
        accuracy = mean(group.final("test_accuracy"))
        paper = group.paper
        difference, p_text = _baseline_comparison(group, baseline)
        cells = [
            group.label + _failure_mark(group),
            "n/a" if paper is None else paper.text,
            mean_std(group.final("test_accuracy")),
            ", ".join(str(seed) for seed in group.seeds),
            "n/a" if paper is None else f"{accuracy - paper.accuracy:+.4f}",
            difference,
            p_text,
            mean_std(group.final("test_silhouette")),
            mean_std(group.final("test_distance_ratio")),
            ", ".join(f"{count:,}" for count in _values(group, "parameters")),
            f"{_seconds_per_epoch(group, 'train_seconds'):.1f}",
            f"{_seconds_per_epoch(group, 'eval_seconds'):.1f}",
        ]
        rows.append("| " + " | ".join(cells) + " |")
    for label, diverged in orphans.items():
        cells = [f"{label} (diverged)", "n/a", f"diverged in all {len(diverged)} runs"]
        rows.append("| " + " | ".join(cells + ["n/a"] * 9) + " |")
    return "\n".join(rows)


def _failure_mark(group: Group) -> str:
    """Return the label suffix of a configuration with failed runs, such as " (diverged)"."""
    reasons = failure_reasons(group)
    return f" ({reasons})" if reasons else ""


def _orphan_divergences(
    groups: Sequence[Group], divergences: Sequence[Divergence]
) -> dict[str, list[Divergence]]:
    """Group the diverged runs of configurations that have no finished run, by label."""
    grouped = {id(divergence) for group in groups for divergence in group.diverged}
    orphans: dict[str, list[Divergence]] = {}
    for divergence in divergences:
        if id(divergence) not in grouped:
            orphans.setdefault(divergence.run.spec.label, []).append(divergence)
    return orphans


def _baseline_comparison(group: Group, baseline: Group | None) -> tuple[str, str]:
    """Return the accuracy difference to Linear and the p-value cell, as table text."""
    if baseline is None:
        return "n/a", "n/a (no Linear runs)"
    if group is baseline:
        return "baseline", "baseline"

    pairs = paired_accuracies(group, baseline)
    if not pairs:
        return "n/a", "n/a (no common seed)"
    difference = difference_to_baseline(group, baseline)

    if len(pairs) >= 2:
        p_value = paired_t_test([a for a, _ in pairs.values()], [b for _, b in pairs.values()])
        p_text = "n/a (equal differences)" if p_value is None else format_p(p_value)
        return f"{difference:+.4f}", f"{p_text} (paired t, {len(pairs)} seeds)"

    seed = next(iter(pairs))
    test = mcnemar_exact(seed_correctness(baseline, seed), seed_correctness(group, seed))
    return f"{difference:+.4f}", f"{format_p(test.p_value)} (McNemar, seed {seed})"


def _table_notes(groups: Sequence[Group], baseline: Group | None) -> str:
    """Explain the columns of the main table."""
    seed_counts = sorted({len(group.results) for group in groups})
    lines = [
        "Test accuracy, silhouette score and distance ratio are those of the last epoch, as "
        "mean ± sample standard deviation over the seeds (the mean alone for one seed). "
        "The silhouette score is grassmann_nn.metrics.silhouette_score (scikit-learn's "
        "definition, computed exactly), on the test features with the true labels; "
        "the distance ratio is the mean distance to the own class center over the mean "
        "distance between class centers (lower is better). "
        "vs paper and vs Linear are differences of mean accuracy."
        + _seed_pairing_note(groups, baseline),
        "p vs Linear: two-sided p-value of McNemar's exact test on the test predictions of "
        "the same seed when one seed ran, or of the paired t-test over the per-seed "
        f"accuracies when two or more did (seeds per configuration here: "
        f"{', '.join(map(str, seed_counts))}).",
        _feature_layer_note(groups),
        "Train s/epoch and Eval s/epoch are wall-clock seconds per epoch, averaged over all "
        "epochs and seeds; the machine and its load at the start of each run are under Setup. "
        "Compare them only between runs that started at a similar load: on a shared 2-core "
        "machine the same epoch can take several times longer." + _setups_note(groups),
    ]
    if baseline is None:
        lines.append("No Linear runs were in the grid, so no paired test was made.")
    return "\n\n".join(lines)


def _setups_note(groups: Sequence[Group]) -> str:
    """Name the CPU models and thread counts of the runs when they differ, or return "".

    The timing columns average over every run of a configuration, so runs on another machine
    or with another thread count change them without any change of method.
    """
    setups: dict[str, list[str]] = {}
    for group in groups:
        for result in group.results:
            record = result.record
            cpu = record.get("machine", {}).get("cpu", "an unrecorded CPU")
            threads = record.get("versions", {}).get("torch_threads")
            setup = f"{cpu}, {threads} torch thread{'' if threads == 1 else 's'}"
            setups.setdefault(setup, []).append(result.run.output_dir.name)
    if len(setups) < 2:
        return ""

    listed = "; ".join(f"{setup}: {', '.join(runs)}" for setup, runs in setups.items())
    return (
        f" These runs used {len(setups)} setups, so a configuration's timing mixes them where "
        f"its runs differ ({listed})."
    )


def _seed_pairing_note(groups: Sequence[Group], baseline: Group | None) -> str:
    """Name the configurations whose vs Linear covers fewer seeds than their means, or "".

    vs Linear pairs each run with the Linear run of the same seed, so where a configuration and
    Linear finished different seeds, it is the mean difference over the common seeds only.
    """
    if baseline is None:
        return ""
    parts = []
    for group in groups:
        common = list(paired_accuracies(group, baseline))
        if group is baseline or not common or set(group.seeds) == set(baseline.seeds):
            continue
        seed_word = "seed" if len(common) == 1 else "seeds"
        parts.append(f"{group.label} (common {seed_word} {', '.join(map(str, common))})")
    if not parts:
        return ""
    return (
        " vs Linear and p vs Linear pair each run with the Linear run of the same seed. For "
        f"{join_words(parts)}, vs Linear is therefore the mean difference over the common "
        "seeds only and can differ from the difference of the means shown."
    )


def _feature_layer_note(groups: Sequence[Group]) -> str:
    """Describe the feature layer of the configurations with an auxiliary loss on this page."""
    names = {group.variant.name for group in groups}
    linear_losses = [
        VARIANTS[name].label
        for name in ("silhouette", "center", "contrastive-center")
        if name in names
    ]
    sentences = []
    if linear_losses:
        verb = "adds its" if len(linear_losses) == 1 else "add their"
        layer = (
            "the linear feature layer of the Linear row"
            if BASELINE_VARIANT in names
            else "a linear feature layer"
        )
        text = f"{join_words(linear_losses)} {verb} loss to {layer}"
        if "defrag" in names:
            text += ", and DEFRAG adds the silhouette loss to a Grassmann feature layer"
        if {"center", "contrastive-center"} & names:
            text += "; the paper does not name the feature layer of its center-loss rows"
        sentences.append(text + ".")
    elif "defrag" in names:
        sentences.append("DEFRAG adds the silhouette loss to a Grassmann feature layer.")
    sentences.append("The train command of every run, with all its settings, is under Runs.")
    return " ".join(sentences)


def _paper_gaps(
    groups: Sequence[Group],
    baseline: Group | None,
    records: Sequence[dict[str, Any]],
    orphans: Mapping[str, Sequence[Divergence]],
    paper: PaperResults | None,
) -> str:
    """State, computed from the runs, where each configuration is below or above the paper."""
    lines = [_budget_sentence(records), ""]
    if paper is None:
        setups = _joined(
            records,
            lambda record: (
                f"{DATASET_TITLES[record['dataset']]} with {record['feature_dim']}-D features"
            ),
        )
        lines += [
            f"The paper reports no accuracies for {setups}, so the runs are compared with "
            "each other only.",
            "",
        ]
    lines += _failure_notes(groups, orphans)
    for group in groups:
        paper = group.paper
        if paper is None:
            continue
        accuracy = mean(group.final("test_accuracy"))
        lines.append(
            f"- {group.label}: mean test accuracy {accuracy:.4f} is "
            f"{relation(accuracy - paper.accuracy)} {_paper_value_name(paper)}."
        )

    if baseline is not None and baseline.paper is not None:
        lines.append("")
        for group in groups:
            paper_gap = paper_gap_to_baseline(group, baseline)
            gap = difference_to_baseline(group, baseline)
            if group is baseline or paper_gap is None or gap is None:
                continue
            lines.append(
                f"- {group.label} vs Linear: the paper reports {_paper_relation(paper_gap)} "
                f"Linear; here it is {relation(gap)} Linear."
            )
    return "\n".join(lines)


def _failure_notes(
    groups: Sequence[Group], orphans: Mapping[str, Sequence[Divergence]]
) -> list[str]:
    """Name each run that diverged or stayed near chance, before any comparison with the paper.

    Both withhold the verdicts on their configuration, because a failed run is no evidence
    about the configuration. Its settings, most often the learning rate, do not suit it.
    """
    lines = []
    for group in groups:
        lines += _diverged_note(group.label, group.diverged, len(group.results))
        lines += _untrained_note(group)
    for label, diverged in orphans.items():
        lines += _diverged_note(label, diverged, 0)

    if lines:
        lines.append("")
    return lines


def _diverged_note(label: str, diverged: Sequence[Divergence], finished: int) -> list[str]:
    """Describe the diverged runs of one configuration, or nothing without any."""
    if not diverged:
        return []
    seeds_by_message: dict[str, list[str]] = {}
    for item in diverged:
        seeds_by_message.setdefault(item.message, []).append(str(item.run.spec.seed))
    seeds = "; ".join(
        f"{'seed' if len(seeds) == 1 else 'seeds'} {', '.join(seeds)}: {message.rstrip('.')}"
        for message, seeds in seeds_by_message.items()
    )
    total = len(diverged) + finished
    name = diverged[0].run.spec.variant.name
    return [
        f"- {label} diverged in {len(diverged)} of {total} runs ({seeds}). The verdicts on "
        f"{label} are withheld. Lower its learning rate or lambda, or tune them on the "
        f"validation split with `python -m examples.defrag tune --variants {name} ...`."
    ]


def _untrained_note(group: Group) -> list[str]:
    """Describe the runs of one configuration that stayed near chance, or nothing."""
    failed = [result for result in group.results if not result.learned]
    if not failed:
        return []
    accuracies = ", ".join(
        f"{result.final['test_accuracy']:.4f} (seed {result.run.spec.seed})" for result in failed
    )
    total = len(group.results) + len(group.diverged)
    return [
        f"- {group.label} did not learn in {len(failed)} of {total} runs: "
        f"test accuracy {accuracies}, at most {CHANCE_FACTOR} times the chance level "
        f"{failed[0].chance:.4f}. The verdicts on {group.label} are withheld. Most often "
        "the learning rate does not suit the configuration: tune it on the validation "
        f"split with `python -m examples.defrag tune --variants {group.variant.name} "
        "--lr ...` and the data options of the train commands under Runs."
    ]


def _paper_value_name(paper: PaperValue) -> str:
    """Name a paper value in a sentence: ``"the paper's 0.9393"`` or ``"the paper's lower
    bound 0.9900"``."""
    if paper.relation == ">":
        return f"the paper's lower bound {paper.accuracy:.4f}"
    return f"the paper's {paper.text}"


def _paper_relation(paper_gap: tuple[float, str]) -> str:
    """Word the paper's gap to Linear as in ``"0.0024 above"`` or ``"more than 0.1 below"``."""
    gap, text = paper_gap
    return text if text.startswith("more than") else relation(gap)


def _budget_sentence(records: Sequence[dict[str, Any]]) -> str:
    """Describe the training budget of the runs, the first reason for any gap to the paper."""
    epochs = _joined(records, lambda record: record["epochs"])
    epoch_word = "epoch" if epochs == "1" else "epochs"
    train = _joined(records, lambda record: f"{record['data']['train_examples']:,}")
    test = _joined(records, lambda record: f"{record['data']['test_examples']:,}")
    text = (
        f"These runs trained for {epochs} {epoch_word} on {train} training examples and were "
        f"tested on {test} test examples. The paper states neither its number of epochs nor "
        "its learning rate, batch size, lambda or alpha, so part of any gap can come from the "
        "training budget."
    )
    if _test_split_only(records):
        text += (
            " Only the official test split was available, so the runs trained and tested on "
            "parts of it, and their accuracies are not comparable with the paper's."
        )
    return text


def _test_split_only(records: Sequence[dict[str, Any]]) -> bool:
    """Return whether some run trained on part of the official test split, unlike the paper."""
    return any(record["data"]["test_split_only"] for record in records)


def _figures(figures: Sequence[tuple[str, str]]) -> list[str]:
    """Render the figures section, or nothing without figures."""
    if not figures:
        return []
    images = [f"![{caption}]({link})\n\n*{caption}*" for link, caption in figures]
    return ["## Figures", "\n\n".join(images)]


def _mcnemar_table(groups: Sequence[Group], baseline: Group | None) -> str:
    """Render McNemar's exact test of every run against Linear with the same seed."""
    if baseline is None:
        return "No Linear runs were in the grid."
    rows = [
        "| Configuration | Seed | Right where Linear is wrong | Wrong where Linear is right "
        "| p (McNemar, exact) |",
        "|---|---|---|---|---|",
    ]
    base_seeds = set(baseline.seeds)
    for group in groups:
        if group is baseline:
            continue
        for seed in group.seeds:
            if seed not in base_seeds:
                continue
            test = mcnemar_exact(seed_correctness(baseline, seed), seed_correctness(group, seed))
            rows.append(
                f"| {group.label} | {seed} | {test.wins} | {test.losses} "
                f"| {format_p(test.p_value)} |"
            )
    if len(rows) == 2:
        return (
            "No other configuration has a run with the seed of a Linear run, so no pair is tested."
        )
    return "\n".join(rows)


def _setup(records: Sequence[dict[str, Any]], command: str) -> str:
    """Describe the command, data, software and machines of the runs."""
    started = sorted(record.get("started", "not recorded") for record in records)
    data = _joined(records, lambda record: f"`{record['data']['source']}`")
    loads = [
        record["machine"]["load_average_1min"]
        for record in records
        if record.get("machine", {}).get("load_average_1min") is not None
    ]
    load_text = "not recorded"
    if loads:
        load_text = f"{min(loads):.2f} to {max(loads):.2f}"
    return "\n".join(
        [
            f"- Command: `{command}`",
            f"- Data: {_joined(records, lambda record: DATASET_TITLES[record['dataset']])} "
            f"from {data}",
            f"- Runs started between {started[0]} and {started[-1]}",
            f"- Machine: {_joined(records, _machine_text)}",
            f"- 1-minute load average at the start of the runs: {load_text}",
            f"- torch {_joined(records, lambda record: record['versions']['torch'])}, "
            f"Python {_joined(records, lambda record: record['versions']['python'])}, "
            f"device {_joined(records, lambda record: record['device'])}",
        ]
    )


def _machine_text(record: dict[str, Any]) -> str:
    """Describe the processor and thread count of one run."""
    machine = record.get("machine")
    count = record["versions"]["torch_threads"]
    threads = f"{count} torch {'thread' if count == 1 else 'threads'}"
    if machine is None:
        return f"not recorded, {threads}"
    text = f"{machine['cpu']} ({machine['cpu_count']} logical CPUs), {threads}"
    if "gpu" in machine:
        text += f", GPU {machine['gpu']}"
    return text


_HYPERPARAMETERS = (
    ("feature", "Feature layer"),
    ("feature_dim", "Feature dim"),
    ("loss", "Loss"),
    ("aux_weight", "lambda"),
    ("alpha", "alpha"),
    ("optimizer", "Optimizer"),
    ("retraction", "Retraction"),
    ("lr", "lr"),
    ("lr_schedule", "Schedule"),
    ("momentum", "Momentum"),
    ("weight_decay", "Weight decay"),
    ("batch_size", "Batch"),
    ("epochs", "Epochs"),
)


def _hyperparameter_table(groups: Sequence[Group]) -> str:
    """Render the settings of each configuration, as recorded in its runs' config.json."""
    header = "| Configuration | " + " | ".join(title for _, title in _HYPERPARAMETERS) + " |"
    rows = ["Hyperparameters, from each run's `config.json`:", "", header]
    rows.append("|" + "---|" * (len(_HYPERPARAMETERS) + 1))
    for group in groups:
        cells = [
            ", ".join("n/a" if value is None else str(value) for value in _values(group, key))
            for key, _ in _HYPERPARAMETERS
        ]
        rows.append(f"| {group.label} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def render_provenance(path: Path, hparams: Hyperparameters) -> str:
    """Render where the settings of a ``--hparams`` file came from, as a markdown section.

    One line per entry and tuning command: the settings that command chose, as options with
    their values, then its note. A note on a whole entry gets a line of its own.
    """
    lines = ["## Where the hyperparameters come from", ""]
    lines.append(f"The runs took their settings from `{path}`.")
    if hparams.provenance:
        lines.append("")
    for key, notes in hparams.provenance.items():
        by_note: dict[str, list[str]] = {}
        for setting, note in notes.items():
            by_note.setdefault(note, []).append(setting)
        for note, settings in by_note.items():
            lines.append(f"- {_provenance_subject(key, settings, hparams.entry(key))}: {note}")
    return "\n".join(lines) + "\n"


def _provenance_subject(key: str, settings: Sequence[str], entry: Mapping[str, Any]) -> str:
    """Name an entry and the settings one note covers, e.g. ``defaults, `--lr 0.03```."""
    options = []
    for setting in settings:
        if not setting:
            continue
        value = f" {entry[setting]}" if setting in entry else ""
        options.append(f"`{option_name(setting)}{value}`")
    if not options:
        return key
    return f"{key}, {join_words(options)}"


def _pending_note(pending: Sequence[PlannedRun]) -> list[str]:
    """Name the runs of the grid that had not finished, as a paragraph, or nothing."""
    if not pending:
        return []
    names = ", ".join(f"`{run.output_dir.name}`" for run in pending)
    if len(pending) == 1:
        count = "1 run of this grid had not finished when this page was written"
        source = "no number here comes from it"
    else:
        count = f"{len(pending)} runs of this grid had not finished when this page was written"
        source = "no number here comes from them"
    return [
        f"**Not finished:** {count} (`--report-only`), and {source}: {names}. Each "
        "configuration's statistics cover the seeds in its Seeds column only, and a "
        "configuration with no finished run is left out of the tables and the verdicts."
    ]


def _runs_table(
    results: Sequence[RunResult],
    divergences: Sequence[Divergence],
    pending: Sequence[PlannedRun] = (),
) -> str:
    """Render one row per run with its folder, result and exact train command."""
    rows = ["| Run folder | Test accuracy | Device | Command |", "|---|---|---|---|"]
    for result in results:
        rows.append(
            f"| `{result.run.output_dir.name}` | {result.final['test_accuracy']:.4f} "
            f"| {_device_text(result.record)} | `{result.run.command}` |"
        )
    for divergence in divergences:
        run = divergence.run
        rows.append(f"| `{run.output_dir.name}` | diverged | n/a | `{run.command}` |")
    for run in pending:
        rows.append(f"| `{run.output_dir.name}` | not finished | n/a | `{run.command}` |")
    text = "\n".join(rows)

    commands = [result.run.command for result in results]
    commands += [divergence.run.command for divergence in divergences]
    if any("--data-dir" not in command for command in commands):
        text += (
            "\n\nA command without `--data-dir` looks for the IDX files in the default folders "
            "(Debian's `/usr/share/datasets/fashion-mnist` for Fashion-MNIST, then the folder of "
            "`--cache-dir`, by default `$XDG_CACHE_HOME/grassmann_nn` or "
            "`~/.cache/grassmann_nn`). Where the files are elsewhere, add `--data-dir FOLDER`."
        )
    if commands:
        text += (
            "\n\nEach command's `--output-dir` is the folder of the run's record, and `train` "
            "refuses a folder that holds a record, so give another `--output-dir` to train a "
            "run again."
        )
    return text


def _device_text(record: dict[str, Any]) -> str:
    """Name the device a run trained on, with the GPU model for a CUDA run."""
    gpu = record.get("machine", {}).get("gpu")
    if str(record["device"]).startswith("cuda") and gpu:
        return f"{record['device']} ({gpu})"
    return str(record["device"])


# ---------------------------------------------------------------------------------------------
# Small helpers


def _seconds_per_epoch(group: Group, key: str) -> float:
    """Return the mean of a timing column over every epoch of every run of a group."""
    return statistics.fmean(row[key] for result in group.results for row in result.history)


def _values(group: Group, key: str) -> list[Any]:
    """Return the distinct values of a config.json field over a group's runs, in run order."""
    return list(dict.fromkeys(result.record[key] for result in group.results))


def _joined(records: Sequence[dict[str, Any]], value_of: Callable[[dict[str, Any]], Any]) -> str:
    """Apply ``value_of`` to each record and join the distinct results in first-seen order."""
    values = dict.fromkeys(str(value_of(record)) for record in records)
    return ", ".join(values)
