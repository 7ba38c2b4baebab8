"""Run the benchmarks and regenerate docs/benchmarks.md: ``python -m benchmarks [--quick]``.

Each benchmark writes ``<results-dir>/<name>.json`` with its results, its speed targets and a
description of the machine. The markdown page is then rendered from every JSON file in the
results folder, so ``--only`` re-runs one benchmark and keeps the others' recorded results.
A ``--quick`` run writes files only to the paths given by ``--results-dir`` and ``--markdown``,
so a smoke test never overwrites the recorded results.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

from benchmarks import metrics, retractions, training
from benchmarks._common import (
    DEFAULT_THREADS,
    Settings,
    configure_threads,
    load_average,
    machine_info,
    markdown_table,
    print_targets,
    read_json,
    write_json,
)

BENCHMARKS = {"retractions": retractions, "training": training, "metrics": metrics}
REPOSITORY = Path(__file__).resolve().parent.parent
DEFAULT_RESULTS_DIR = REPOSITORY / "benchmarks" / "results"
DEFAULT_MARKDOWN = REPOSITORY / "docs" / "benchmarks.md"

FULL_MIN_RUN_TIME = 0.5
QUICK_MIN_RUN_TIME = 0.02
FULL_MAX_CALL_S = 30.0
QUICK_MAX_CALL_S = 5.0


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Time grassmann_nn against geoopt, geotorch, torch and scikit-learn.",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="run a small subset (few shapes and sizes, short timings) as a smoke test",
    )
    parser.add_argument(
        "--only",
        choices=sorted(BENCHMARKS),
        action="append",
        help="run only this benchmark (repeatable); default: all",
    )
    parser.add_argument(
        "--results-dir",
        type=Path,
        help=f"folder for the JSON results (default {DEFAULT_RESULTS_DIR.relative_to(REPOSITORY)}"
        ", none with --quick)",
    )
    parser.add_argument(
        "--markdown",
        type=Path,
        help=f"markdown page to regenerate (default {DEFAULT_MARKDOWN.relative_to(REPOSITORY)}, "
        "none with --quick)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=DEFAULT_THREADS,
        help="torch intra-op threads, also the BLAS thread limit for scikit-learn "
        f"(default {DEFAULT_THREADS})",
    )
    parser.add_argument(
        "--min-run-time",
        type=float,
        help=f"seconds of blocked_autorange per timed call (default {FULL_MIN_RUN_TIME}, "
        f"{QUICK_MIN_RUN_TIME} with --quick)",
    )
    parser.add_argument(
        "--max-call-s",
        type=float,
        help=f"seconds; a call whose warm-up takes longer is not timed (default {FULL_MAX_CALL_S}, "
        f"{QUICK_MAX_CALL_S} with --quick)",
    )
    return parser.parse_args(argv)


def _settings(args: argparse.Namespace, threads: int) -> Settings:
    min_run_time = QUICK_MIN_RUN_TIME if args.quick else FULL_MIN_RUN_TIME
    max_call_s = QUICK_MAX_CALL_S if args.quick else FULL_MAX_CALL_S
    return Settings(
        quick=args.quick,
        min_run_time=args.min_run_time if args.min_run_time is not None else min_run_time,
        max_call_s=args.max_call_s if args.max_call_s is not None else max_call_s,
        threads=threads,
    )


def _uptime() -> str:
    """Return the output of ``uptime``, or the load averages where the command is missing."""
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return f"load average: {load_average()}"


def run_benchmark(name: str, settings: Settings, command: str) -> dict[str, Any]:
    """Run one benchmark and return its results with targets, settings and machine."""
    module = BENCHMARKS[name]
    machine = machine_info(command)
    machine["uptime_before"] = _uptime()
    print(f"== {name}: {machine['uptime_before']}")

    results = module.run(settings)

    machine["uptime_after"] = _uptime()
    print(f"== {name} done: {machine['uptime_after']}")
    targets = module.targets(results)
    print_targets(targets)
    return {
        "benchmark": name,
        "settings": settings.__dict__,
        "machine": machine,
        "targets": targets,
        "results": results,
    }


# The markdown page.


def _machine_table(machine: dict[str, Any]) -> str:
    rows = [
        ["CPU", machine["cpu_model"]],
        ["logical CPUs", machine["logical_cpus"]],
        ["torch threads", machine["torch_threads"]],
        ["Python", machine["python"]],
        ["platform", machine["platform"]],
        *[[name, version] for name, version in machine["versions"].items()],
        ["CUDA device", machine["cuda"] or "none"],
    ]
    return markdown_table(["", ""], rows)


def _runs_table(payloads: dict[str, dict[str, Any]]) -> str:
    rows = []
    for name, payload in payloads.items():
        machine = payload["machine"]
        mode = "quick" if payload["settings"]["quick"] else "full"
        rows.append(
            [
                name,
                mode,
                machine["date"],
                f"`{machine['command']}`",
                machine["uptime_before"],
                machine["uptime_after"],
            ]
        )
    return markdown_table(["benchmark", "mode", "date", "command", "uptime before", "after"], rows)


def _targets_table(payloads: dict[str, dict[str, Any]]) -> str:
    rows = [
        [target["target"], target["status"], target["measured"], target["threshold"]]
        for payload in payloads.values()
        for target in payload["targets"]
    ]
    return markdown_table(["target", "status", "measured", "threshold"], rows)


def render_page(payloads: dict[str, dict[str, Any]]) -> str:
    """Return docs/benchmarks.md for the stored results of each benchmark."""
    newest = max(payloads.values(), key=lambda payload: payload["machine"]["date"])
    sections = [
        "# Benchmarks",
        "",
        "<!-- Generated by `python -m benchmarks` from benchmarks/results/*.json. "
        "Do not edit by hand. -->",
        "",
        "Speed of grassmann_nn against geoopt, geotorch, torch's orthogonal parametrization and "
        "scikit-learn, measured side by side in one run. Ratios are ours / peer: below 1, ours "
        "is faster. Times are medians of ``torch.utils.benchmark`` measurements after a warm-up "
        "call. Regenerate this page with `python -m benchmarks`; the page and the raw JSON "
        "record the machine, the load and the exact command. Timings taken while other jobs "
        "share the machine can be several times slower than on a quiet machine, so compare "
        "ratios from the same run, and check the load columns below.",
        "",
        "## Machine",
        "",
        _machine_table(newest["machine"]),
        "",
        "## Runs",
        "",
        _runs_table(payloads),
        "",
        "## Speed targets",
        "",
        _targets_table(payloads),
        "",
    ]
    for name, module in BENCHMARKS.items():
        if name in payloads:
            sections.append(_with_section_markers(name, module.render(payloads[name]["results"])))
    return "\n".join(sections)


def _with_section_markers(name: str, text: str) -> str:
    """Wrap a benchmark's tables, below its heading, in pymdownx.snippets section markers.

    Other pages then include the tables with ``--8<-- "docs/benchmarks.md:NAME"`` instead of
    copying numbers. The markers are HTML comments, so this page renders without them.
    """
    heading, _, body = text.partition("\n")
    return "\n".join(
        [
            heading,
            f"<!-- --8<-- [start:{name}] -->",
            body.strip("\n"),
            f"<!-- --8<-- [end:{name}] -->",
            "",
        ]
    )


def _stored_payloads(results_dir: Path | None) -> dict[str, dict[str, Any]]:
    if results_dir is None:
        return {}
    return {
        name: read_json(results_dir / f"{name}.json")
        for name in BENCHMARKS
        if (results_dir / f"{name}.json").exists()
    }


def main(argv: list[str] | None = None) -> int:
    """Run the selected benchmarks, write their JSON, regenerate the markdown page."""
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    results_dir = args.results_dir or (None if args.quick else DEFAULT_RESULTS_DIR)
    markdown = args.markdown or (None if args.quick else DEFAULT_MARKDOWN)
    if markdown is not None and results_dir is None:
        raise SystemExit("--markdown needs --results-dir with --quick: the page is built from it.")

    threads = configure_threads(args.threads)
    settings = _settings(args, threads)
    command = shlex.join(["python", "-m", "benchmarks", *argv])

    payloads = {}
    for name in args.only or list(BENCHMARKS):
        payloads[name] = run_benchmark(name, settings, command)
        if results_dir is not None:
            write_json(results_dir / f"{name}.json", payloads[name])

    if markdown is not None:
        stored = _stored_payloads(results_dir) | payloads
        markdown.parent.mkdir(parents=True, exist_ok=True)
        markdown.write_text(render_page(stored))
        print(f"wrote {markdown}")

    print("Speed targets:")
    for payload in payloads.values():
        print_targets(payload["targets"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
