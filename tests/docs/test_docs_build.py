"""The mkdocs site builds in strict mode, renders its math and documents every public name.

The site is built once per test session into a temporary folder with the same command a
reader would run: ``mkdocs build --strict``.
"""

import importlib
import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytest.importorskip("mkdocs", reason="mkdocs is not installed (pip install -e '.[docs]')")
pytest.importorskip("material", reason="mkdocs-material is not installed (the docs extra)")
pytest.importorskip("mkdocstrings", reason="mkdocstrings is not installed (the docs extra)")

# API page of each module, relative to the built site.
API_PAGES = {
    "grassmann_nn.manifolds": "api/manifolds/index.html",
    "grassmann_nn.retractions": "api/retractions/index.html",
    "grassmann_nn.optim": "api/optim/index.html",
    "grassmann_nn.nn": "api/nn/index.html",
    "grassmann_nn.losses": "api/losses/index.html",
    "grassmann_nn.metrics": "api/metrics/index.html",
    "grassmann_nn.testing": "api/testing/index.html",
    "grassmann_nn.distributed": "api/distributed/index.html",
}

# Pages whose math must reach MathJax as arithmatex output.
MATH_PAGES = [
    "concepts/index.html",
    "retractions/index.html",
    "tutorials/defrag/index.html",
    "api/manifolds/index.html",
    "api/retractions/index.html",
    "api/losses/index.html",
    "api/metrics/index.html",
    "api/distributed/index.html",
    "distributed/index.html",
]

# Pages with display formulas written as $$ ... $$ blocks.
DISPLAY_MATH_PAGES = [
    "concepts/index.html",
    "retractions/index.html",
    "tutorials/defrag/index.html",
    "distributed/index.html",
]

# An arithmatex element in generic mode and the first two characters of its formula.
ARITHMATEX = re.compile(r'<(?:span|div) class="arithmatex">(..)', re.DOTALL)

# Sphinx markup that Markdown shows as literal text: roles (their backticks turn into a code
# element in the HTML), math directives, and the "::" that introduces a literal block.
SPHINX_MARKUP = re.compile(
    r":(?:math|class|func|meth|attr|mod|obj):(?:`|<code>)|\.\. math::|\w::</p>"
)

# NOTE: these modules' docstrings still use Sphinx markup, which the Markdown renderer prints
# verbatim. strict=True turns the marker into a failure once the
# docstrings are fixed, so that it gets removed.

BUILD_TIMEOUT_SECONDS = 300


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """Build the site into a temporary folder and return that folder."""
    site_dir = tmp_path_factory.mktemp("site")
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    # The build must not download anything. Proxies aimed at a closed loopback port make every
    # HTTP request that honours them fail, and with it the strict build.
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        env[name] = "http://127.0.0.1:9"
    env.pop("NO_PROXY", None)
    env.pop("no_proxy", None)

    command = [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site_dir)]
    result = subprocess.run(
        command,
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_SECONDS,
    )
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stderr}"
    return site_dir


def read_page(site: Path, page: str) -> str:
    path = site / page
    assert path.is_file(), f"the build did not produce {page}"
    return path.read_text(encoding="utf-8")


def documented_names(html: str, module: str) -> set[str]:
    """Return the names that have a heading of their own under ``module`` in an API page."""
    pattern = re.compile(rf'id="{re.escape(module)}\.([A-Za-z_][A-Za-z0-9_]*)"')
    return set(pattern.findall(html))


@pytest.mark.parametrize("module", sorted(API_PAGES))
def test_api_page_lists_public_names(site, module):
    html = read_page(site, API_PAGES[module])
    public = set(importlib.import_module(module).__all__)

    missing = sorted(public - documented_names(html, module))
    assert missing == [], f"{API_PAGES[module]} has no entry for {missing}"


def test_top_level_names_documented(site):
    import grassmann_nn

    documented = set()
    for module, page in API_PAGES.items():
        documented |= documented_names(read_page(site, page), module)

    names = set(grassmann_nn.__all__)
    submodules = {name for name in names if inspect.ismodule(getattr(grassmann_nn, name))}

    modules = {f"grassmann_nn.{name}" for name in submodules}
    missing_pages = sorted(modules - set(API_PAGES))
    assert missing_pages == [], f"no API page for {missing_pages}"
    missing = sorted(names - submodules - documented)
    assert missing == [], f"no API page documents grassmann_nn.{missing}"


@pytest.mark.parametrize("page", MATH_PAGES)
def test_math_rendered_for_mathjax(site, page):
    formulas = ARITHMATEX.findall(read_page(site, page))

    assert formulas, f"{page} has no math for MathJax"
    delimiters = sorted(set(formulas))
    assert set(delimiters) <= {"\\(", "\\["}, f"{page} has math delimiters {delimiters}"


@pytest.mark.parametrize("page", DISPLAY_MATH_PAGES)
def test_display_math_rendered(site, page):
    html = read_page(site, page)

    assert '<div class="arithmatex">\\[' in html, f"{page} has no display math"


def test_no_raw_dollar_math(site):
    leaks = [
        path.relative_to(site).as_posix()
        for path in sorted(site.rglob("*.html"))
        if "$$" in path.read_text(encoding="utf-8")
    ]
    assert leaks == [], f"raw $$ in {leaks}"


def test_snippets_resolved(site):
    leaks = []
    for path in sorted(site.rglob("*.html")):
        html = path.read_text(encoding="utf-8")
        if "--8&lt;--" in html or "--8<--" in html:
            leaks.append(path.relative_to(site).as_posix())
    assert leaks == [], f"unresolved pymdownx.snippets lines in {leaks}"


def test_mathjax_config_loads_first(site):
    html = read_page(site, "index.html")

    config = html.find("javascripts/mathjax.js")
    library = html.find("mathjax@3/es5/tex-mml-chtml.js")
    assert config != -1, "the MathJax configuration script is missing"
    assert library != -1, "the MathJax script is missing"
    assert config < library, "MathJax loads before its configuration"


@pytest.mark.parametrize("module", sorted(API_PAGES))
def test_api_page_has_no_sphinx_markup(site, module):
    html = read_page(site, API_PAGES[module])

    found = sorted(set(SPHINX_MARKUP.findall(html)))
    assert found == [], f"{API_PAGES[module]} shows Sphinx markup verbatim: {found}"
