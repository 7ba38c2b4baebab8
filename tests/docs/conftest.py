"""Fixtures shared by the tests that rebuild documentation from committed records."""

import pytest

from examples.defrag import runner


def fail_on_unfinished_runs(planned, **_):
    """Stand in for runner.execute: fail on any run that the records neither finish nor mark
    as diverged."""
    for run in planned:
        status = runner.run_status(run.config)
        recorded = (runner.RunStatus.FINISHED, runner.RunStatus.DIVERGED)
        assert status in recorded, f"{run.output_dir}: {status.value}"


@pytest.fixture
def records_only(monkeypatch):
    """Forbid training, so that a command can only read the committed run records."""
    monkeypatch.setattr(runner, "execute", fail_on_unfinished_runs)
