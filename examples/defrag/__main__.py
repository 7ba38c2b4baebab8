"""Command line of the DEFRAG example: ``python -m examples.defrag SUBCOMMAND [OPTIONS]``.

Each subcommand registers its parser in ``build_parser`` and stores the function that runs it
as the ``handler`` default.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from examples.defrag import train
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
    train.add_arguments(train_parser)
    train_parser.set_defaults(handler=_run_train, subparser=train_parser)

    return parser


def _run_train(args: argparse.Namespace) -> None:
    try:
        config = train.config_from_args(args)
    except train.OptionConflict as error:
        args.subparser.error(str(error))
    train.train(config, resume=args.resume)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the subcommand; return the process exit status.

    Errors that argparse cannot see (missing or corrupt data, an output folder that does not
    fit the request, a loss that became NaN) print one message and return 1.
    """
    args = build_parser().parse_args(argv)
    try:
        args.handler(args)
    except (DatasetError, train.RunError, FloatingPointError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(
            "\nInterrupted. The checkpoint of the last finished epoch is kept; rerun the same "
            "command with --resume to continue.",
            file=sys.stderr,
        )
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
