"""Timing helpers, machine description, JSON files and markdown tables shared by the benchmarks.

Every timing goes through `time_callable`: one warm-up call, then
``torch.utils.benchmark.Timer.blocked_autorange`` and its median. The Timer runs with the thread
count that `configure_threads` set, because its default of one thread would silently time a
different configuration from the one the benchmark claims.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import math
import os
import platform
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.benchmark import Timer

DEFAULT_THREADS = 2

# Calls slower than min_run_time are timed this many times after the warm-up, and only once
# when slower than LONG_CALL_S seconds.
SLOW_CALL_REPEATS = 3
LONG_CALL_S = 5.0

# Versions reported with every result, by distribution name.
PACKAGES = ("torch", "geoopt", "geotorch", "scikit-learn", "numpy", "grassmann-nn")


@dataclass(frozen=True)
class Settings:
    """Options shared by all benchmarks of one run.

    Attributes:
        quick: Run the small smoke-test subset (few shapes, short timings).
        min_run_time: Seconds that ``blocked_autorange`` spends on each callable.
        max_call_s: A callable whose warm-up call takes longer than this many seconds is not
            timed further and is reported as not measured.
        threads: Number of intra-op threads of torch (and of the BLAS that scikit-learn uses).
    """

    quick: bool
    min_run_time: float
    max_call_s: float
    threads: int


def configure_threads(threads: int) -> int:
    """Set torch's intra-op thread count, print it, and return the count now in effect."""
    if threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}.")
    torch.set_num_threads(threads)
    count = torch.get_num_threads()
    print(f"torch.set_num_threads({threads}): torch now uses {count} threads")
    return count


def time_callable(
    fn: Callable[[], Any], *, min_run_time: float, max_call_s: float
) -> tuple[dict[str, Any], Any]:
    """Time ``fn``; return its median seconds per call (with spread and counts) and its output.

    The first call is a warm-up (allocation, kernel selection, lazy initialization) and is not
    part of the median. Its output is returned, so callers can check the result without
    another call. A warm-up call slower than ``max_call_s`` stops the measurement, so one very
    slow peer cannot stall a run; the record then has ``median_s = None`` and gives the reason in
    ``note``. A call slower than ``min_run_time`` is timed `SLOW_CALL_REPEATS` more times (once
    above `LONG_CALL_S`) with ``Timer.timeit(1)``, because ``blocked_autorange`` would spend a
    call on choosing a block size of 1.

    Returns:
        ``({"median_s", "iqr_s", "measurements", "runs_per_measurement", "warmup_s", "note"},
        output of the warm-up call)``.
    """
    start = time.perf_counter()
    output = fn()
    warmup_s = _synchronized_elapsed(start)

    if warmup_s > max_call_s:
        reason = f"one warm-up call took {warmup_s:.1f} s, over the {max_call_s:g} s cap per call"
        return not_measured(reason, warmup_s=warmup_s), output

    timer = Timer(stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())
    if warmup_s >= min_run_time:
        repeats = 1 if warmup_s > LONG_CALL_S else SLOW_CALL_REPEATS
        times = [timer.timeit(1).median for _ in range(repeats)]
        number_per_run = 1
    else:
        measurement = timer.blocked_autorange(min_run_time=min_run_time)
        times = measurement.times
        number_per_run = measurement.number_per_run

    quartiles = np.percentile(times, [25, 50, 75])
    timing = {
        "median_s": float(quartiles[1]),
        "iqr_s": float(quartiles[2] - quartiles[0]),
        "measurements": len(times),
        "runs_per_measurement": number_per_run,
        "warmup_s": warmup_s,
        "note": None,
    }
    return timing, output


def time_once(fn: Callable[[], Any]) -> dict[str, Any]:
    """Time a single call of ``fn`` with ``Timer.timeit(1)``, without a warm-up call.

    For callables that take minutes, where a warm-up call would double the cost. The record
    notes this in ``note``.
    """
    timer = Timer(stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())
    measurement = timer.timeit(1)
    return {
        "median_s": measurement.median,
        "iqr_s": 0.0,
        "measurements": 1,
        "runs_per_measurement": 1,
        "warmup_s": None,
        "note": "one call, no warm-up",
    }


def not_measured(reason: str, *, warmup_s: float | None = None) -> dict[str, Any]:
    """Return a timing record for a callable that was not timed, with the reason."""
    return {
        "median_s": None,
        "iqr_s": None,
        "measurements": 0,
        "runs_per_measurement": 0,
        "warmup_s": warmup_s,
        "note": f"not measured: {reason}",
    }


def _synchronized_elapsed(start: float) -> float:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """Return numerator / denominator, or None when either is missing or the divisor is 0."""
    if numerator is None or denominator is None or denominator <= 0:
        return None
    return numerator / denominator


# Machine description.


def cpu_model() -> str:
    """Return the CPU model name from /proc/cpuinfo, or platform's guess elsewhere."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def load_average() -> list[float] | None:
    """Return the 1, 5 and 15 minute load averages, or None where the OS has none."""
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except OSError:
        return None


def package_versions() -> dict[str, str]:
    """Return the installed version of each package in `PACKAGES` ("not installed" if absent)."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def machine_info(command: str) -> dict[str, Any]:
    """Describe the machine, the software and the command behind a set of results."""
    info: dict[str, Any] = {
        "cpu_model": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": package_versions(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": command,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    return info


# Files.


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` as indented JSON, creating the parent folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, allow_nan=False) + "\n")


def read_json(path: Path) -> dict[str, Any]:
    """Read a JSON results file written by `write_json`."""
    return json.loads(path.read_text())


# Markdown.


def format_seconds(seconds: float | None) -> str:
    """Format a duration with a unit that keeps 3 significant digits (ns, us, ms or s)."""
    if seconds is None or not math.isfinite(seconds):
        return "n/m"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def format_ratio(value: float | None) -> str:
    """Format a ratio with 3 significant digits, or "n/m" (not measured) when missing."""
    if value is None:
        return "n/m"
    return f"{value:.3g}"


def format_error(value: float | None) -> str:
    """Format an orthonormality error in scientific notation."""
    if value is None:
        return "n/m"
    return f"{value:.1e}"


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """Return a GitHub-flavoured markdown table; cells are converted with ``str``."""
    lines = [
        "| " + " | ".join(headers) + " |",
        "|" + "|".join("---" for _ in headers) + "|",
    ]
    for row in rows:
        cells = [str(cell).replace("|", "\\|") for cell in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def target_record(name: str, passed: bool | None, measured: str, threshold: str) -> dict[str, Any]:
    """Return one speed target's outcome; ``passed=None`` means it could not be evaluated."""
    if passed is None:
        status = "NOT MEASURED"
    elif passed:
        status = "PASS"
    else:
        status = "MISS"
    return {"target": name, "status": status, "measured": measured, "threshold": threshold}


def print_targets(targets: Iterable[dict[str, Any]]) -> None:
    """Print one PASS/MISS line per target."""
    for target in targets:
        print(f"  {target['status']:>12}  {target['target']}: {target['measured']}")
