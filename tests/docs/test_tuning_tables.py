"""The DEFRAG tuning tables are what tune writes from the tuning records in the repository.

Each table under examples/defrag/reproduction/<dataset>/tuning-*.md starts with the tune command
that wrote it, whose paths start with runs/defrag/. The records of those runs (without
checkpoints or features) and the hyperparameter files of every stage are committed under
examples/defrag/reproduction/<dataset>/tuning/, laid out as runs/defrag/ was. Rerunning each
command over a copy of them must give the same table and the same hyperparameter file, so no
number in the tuning tables can drift from the runs behind it.
"""

import json
import re
import shlex
import shutil
from pathlib import Path

import pytest

from examples.defrag.__main__ import main

ROOT = Path(__file__).resolve().parents[2]
REPRODUCTION = ROOT / "examples" / "defrag" / "reproduction"
TABLES = sorted(REPRODUCTION.glob("*/tuning-*.md"))

COMMAND = re.compile(r"^Command: `(python -m examples\.defrag tune [^`]*)`", re.MULTILINE)
# The data folder of the machine that ran the command; the records suffice without it.
DATA_DIR = re.compile(r" --data-dir \S+")


def table_command(text: str) -> list[str]:
    """Return the arguments after ``python -m examples.defrag`` of a table's tune command."""
    match = COMMAND.search(text)
    assert match is not None, "the table does not start with the tune command that wrote it"
    return shlex.split(DATA_DIR.sub("", match.group(1)))[3:]


def option(argv: list[str], name: str) -> str | None:
    return argv[argv.index(name) + 1] if name in argv else None


def test_every_table_has_records():
    assert len(TABLES) >= 7
    for table in TABLES:
        argv = table_command(table.read_text(encoding="utf-8"))
        output_dir = Path(option(argv, "--output-dir"))
        assert output_dir.parts[:2] == ("runs", "defrag"), table
        assert (table.parent / "tuning" / output_dir.name).is_dir(), table


@pytest.mark.parametrize("table", TABLES, ids=lambda path: f"{path.parent.name}/{path.name}")
def test_tuning_table_matches_records(table, tmp_path, monkeypatch, capsys, records_only):
    text = table.read_text(encoding="utf-8")
    argv = table_command(text)
    shutil.copytree(table.parent / "tuning", tmp_path / "runs" / "defrag")
    monkeypatch.chdir(tmp_path)
    written_hparams = option(argv, "--write-hparams")
    expected_hparams = None
    if written_hparams is not None:
        expected_hparams = json.loads(DATA_DIR.sub("", Path(written_hparams).read_text()))

    main(argv)

    capsys.readouterr()
    output_dir = Path(option(argv, "--output-dir"))
    rewritten = (output_dir / "TUNING.md").read_text(encoding="utf-8")
    assert rewritten == DATA_DIR.sub("", text)
    if expected_hparams is not None:
        rewritten_hparams = json.loads(DATA_DIR.sub("", Path(written_hparams).read_text()))
        assert rewritten_hparams == expected_hparams
