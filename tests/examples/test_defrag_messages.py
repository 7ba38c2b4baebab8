"""Messages and file modes of the DEFRAG example that a first user ran into."""

import argparse
import os
import stat

import pytest

import grassmann_nn  # noqa: F401  (first: it imports geoopt with its FutureWarning silenced)

# isort: split
from examples.defrag.__main__ import _interrupted_message
from examples.defrag.data import write_atomically


def test_interrupt_before_first_epoch_says_no_resume(tmp_path):
    args = argparse.Namespace(subcommand="train", output_dir=tmp_path)
    message = _interrupted_message(args)
    assert "no checkpoint to resume" in message
    assert "without --resume" in message


def test_interrupt_after_an_epoch_says_resume(tmp_path):
    (tmp_path / "checkpoint.pt").write_bytes(b"")
    args = argparse.Namespace(subcommand="train", output_dir=tmp_path)
    assert "with --resume" in _interrupted_message(args)


def test_atomic_write_uses_umask_mode(tmp_path):
    previous = os.umask(0o022)
    try:
        write_atomically(tmp_path / "metrics.json", b"{}\n")
    finally:
        os.umask(previous)
    mode = stat.S_IMODE((tmp_path / "metrics.json").stat().st_mode)
    assert mode == 0o644


def test_compare_rejects_retractions_without_defrag(capsys, tmp_path):
    from examples.defrag.__main__ import main

    argv = ["compare", "--variants", "linear", "--retractions", "qr", "--output-dir", str(tmp_path)]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)

    assert exit_info.value.code == 2
    assert "apply to the defrag preset only" in capsys.readouterr().err
