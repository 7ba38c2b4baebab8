"""Command line of the DEFRAG example: ``python -m examples.defrag SUBCOMMAND [OPTIONS]``.

Each subcommand registers its parser in ``build_parser`` and stores the function that runs it
as the ``handler`` default.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from examples.defrag import cli, compare, plot, quickstart, train, tune
from examples.defrag.checkpoint import CHECKPOINT_NAME, RunError
from examples.defrag.data import DatasetError


def build_parser() -> argparse.ArgumentParser:
    """Build the parser with one subparser per subcommand."""
    parser = argparse.ArgumentParser(
        prog="python -m examples.defrag",
        description="Reproduce DEFRAG (Minnehan & Savakis, arXiv:1806.07688) on Fashion-MNIST "
        "or MNIST.",
    )
    subcommands = parser.add_subparsers(dest="subcommand", metavar="SUBCOMMAND", required=True)

    train_parser = subcommands.add_parser(
        "train",
        help="train one network and write metrics and checkpoints",
        description="Train the DEFRAG network on one dataset. After each epoch, write "
        "metrics.json, metrics.csv and checkpoint.pt into --output-dir.",
    )
    cli.add_train_arguments(train_parser)
    train_parser.set_defaults(handler=_run_train, subparser=train_parser)

    compare_parser = subcommands.add_parser(
        "compare",
        help="train a grid of configurations and write a markdown report against the paper",
        description="Train each configuration of the paper's Table 2 (or those of --variants) "
        "for every seed, retraction and optimizer, one subfolder of --output-dir per run, and "
        "write a markdown report: test accuracy beside the paper's, paired tests against "
        "Linear, silhouette score, distance ratio and seconds per epoch. Rerunning skips "
        "finished runs and resumes interrupted ones.",
    )
    compare.add_compare_arguments(compare_parser)
    compare_parser.set_defaults(handler=_run_compare, subparser=compare_parser)

    tune_parser = subcommands.add_parser(
        "tune",
        help="choose hyperparameters on a held-out validation split and write them to a file",
        description="Hold out --validation training examples, train every combination of the "
        "search values for each configuration and seed on the rest, and select per "
        "configuration (or, with --shared, for all together) the combination with the best "
        "mean validation accuracy. The test split is never evaluated. The selection goes into "
        "a JSON file for compare --hparams. Rerunning skips finished runs and resumes "
        "interrupted ones.",
    )
    tune.add_tune_arguments(tune_parser)
    tune_parser.set_defaults(handler=_run_tune, subparser=tune_parser)

    plot_parser = subcommands.add_parser(
        "plot",
        help="draw the 2-D features of the paper's Figure 3 and training curves as PNG",
        description="Train the five configurations of the paper's Figure 3 with a 2-D feature "
        "layer on a small budget (or take finished runs with --runs), then write figure3.png "
        "(test features, one panel per run) and curves.png (training loss and test accuracy "
        "per epoch).",
    )
    plot.add_plot_arguments(plot_parser)
    plot_parser.set_defaults(handler=_run_plot, subparser=plot_parser)

    quickstart_parser = subcommands.add_parser(
        "quickstart",
        help="a short DEFRAG run and the plots, a few minutes on a CPU",
        description=f"Train DEFRAG for {quickstart.QUICK_EPOCHS} epochs on "
        f"{quickstart.QUICK_LIMIT_TRAIN:,} training examples and the five Figure 3 "
        f"configurations with 2-D features for {plot.FIGURE3_EPOCHS} epochs on "
        f"{plot.FIGURE3_LIMIT_TRAIN:,}, then print the DEFRAG test accuracy and silhouette "
        "score and write figure3.png and curves.png. Rerunning skips finished runs.",
    )
    quickstart.add_quickstart_arguments(quickstart_parser)
    quickstart_parser.set_defaults(handler=_run_quickstart, subparser=quickstart_parser)

    return parser


def _run_train(args: argparse.Namespace) -> None:
    try:
        config = cli.config_from_args(args)
        train.train(config, resume=args.resume)
    except cli.OptionConflict as error:
        _usage_error(args, error)


def _run_compare(args: argparse.Namespace) -> None:
    try:
        compare.run_compare(args, args.argv)
    except cli.OptionConflict as error:
        _usage_error(args, error)


def _run_tune(args: argparse.Namespace) -> None:
    try:
        tune.run_tune(args, args.argv)
    except cli.OptionConflict as error:
        _usage_error(args, error)


def _run_plot(args: argparse.Namespace) -> None:
    try:
        plot.run_plot(args, args.subparser)
    except cli.OptionConflict as error:
        _usage_error(args, error)


def _usage_error(args: argparse.Namespace, error: cli.OptionConflict) -> None:
    """Exit with argparse's usage error; under torchrun only rank 0 prints it."""
    if _is_other_rank():
        sys.exit(2)
    args.subparser.error(str(error))


def _is_other_rank() -> bool:
    """Return whether torchrun started this process as a rank other than 0, which prints nothing.

    Every rank raises the same errors, so rank 0's message reports each one once.
    """
    return os.environ.get("RANK", "0") != "0"


def _run_quickstart(args: argparse.Namespace) -> None:
    quickstart.run_quickstart(args)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the subcommand; return the process exit status.

    Errors that argparse cannot see (missing or corrupt data, an output folder that does not
    fit the request, a loss that became NaN) print one message and return 1.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    try:
        args.handler(args)
    except (DatasetError, RunError, FloatingPointError) as error:
        if not _is_other_rank():
            print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        if not _is_other_rank():
            print(_interrupted_message(args), file=sys.stderr)
        return 130
    return 0


def _interrupted_message(args: argparse.Namespace) -> str:
    """Say how to continue after Ctrl-C, depending on whether an epoch had finished."""
    output_dir = getattr(args, "output_dir", None)
    single_run = getattr(args, "subcommand", None) == "train"
    if single_run and output_dir is not None and not (Path(output_dir) / CHECKPOINT_NAME).exists():
        return (
            "\nInterrupted before the first epoch finished, so there is no checkpoint to resume "
            f"from. Rerun the command without --resume: it starts over in {output_dir}."
        )
    return (
        "\nInterrupted. The checkpoint of the last finished epoch is kept; rerun the same "
        "command (with --resume for train) to continue."
    )


if __name__ == "__main__":
    sys.exit(main())
