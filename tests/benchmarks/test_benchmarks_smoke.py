"""Smoke test of ``python -m benchmarks --quick``: it runs and writes JSON and markdown.

Timings are never checked: they depend on the machine and its load.
"""

import json

import pytest
import torch

from benchmarks.__main__ import BENCHMARKS, main

STATUSES = {"PASS", "MISS", "NOT MEASURED"}


@pytest.fixture
def restore_threads():
    """Restore torch's thread count, which the benchmark run sets."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_quick_run_writes_results_and_page(tmp_path, restore_threads):
    results = tmp_path / "results"
    page = tmp_path / "benchmarks.md"

    # One thread, so that a parallel test run does not oversubscribe the CPUs.
    argv = ["--quick", "--threads", "1", "--results-dir", str(results), "--markdown", str(page)]
    assert main(argv) == 0

    text = page.read_text()
    for heading in ("## Machine", "## Speed targets", "## Retractions", "## Training step"):
        assert heading in text
    assert "## Metrics" in text
    assert "python -m benchmarks --quick" in text

    for name in BENCHMARKS:
        payload = json.loads((results / f"{name}.json").read_text())
        assert payload["settings"]["quick"] is True
        assert payload["targets"]
        assert {target["status"] for target in payload["targets"]} <= STATUSES


def test_quick_markdown_without_results_dir_exits(tmp_path):
    with pytest.raises(SystemExit, match="--results-dir"):
        main(["--quick", "--markdown", str(tmp_path / "benchmarks.md")])
