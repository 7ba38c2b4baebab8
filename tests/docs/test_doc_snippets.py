"""Every Python file under docs/snippets runs, passes its own asserts and appears in a page.

The tutorial pages include these files with pymdownx.snippets, so a snippet that fails here
is a code block in the docs that no longer works.
"""

import re
import runpy
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
SNIPPETS = sorted((DOCS / "snippets").glob("*.py"))

# Snippets that need a package outside the project's dependencies and extras.
OPTIONAL_MODULES = {"differences_parametrizations.py": "geotorch"}

# pymdownx.snippets lines such as --8<-- "docs/snippets/getting_started.py:train".
INCLUDE = re.compile(r'--8<--\s+"(docs/snippets/[^":]+)(?::[^"]*)?"')


def included_snippets() -> set[str]:
    """Return the snippet paths, relative to the repository root, that some page includes."""
    paths = set()
    for page in DOCS.rglob("*.md"):
        paths.update(INCLUDE.findall(page.read_text(encoding="utf-8")))
    return paths


def test_snippets_exist():
    assert SNIPPETS


@pytest.mark.parametrize("path", SNIPPETS, ids=lambda path: path.stem)
def test_snippet_runs(path):
    module = OPTIONAL_MODULES.get(path.name)
    if module is not None:
        pytest.importorskip(module, reason=f"{path.name} compares with {module}")

    runpy.run_path(str(path), run_name="__main__")


@pytest.mark.parametrize("path", SNIPPETS, ids=lambda path: path.stem)
def test_snippet_included_in_a_page(path):
    relative = path.relative_to(ROOT).as_posix()
    assert relative in included_snippets(), f"no page under docs/ includes {relative}"
