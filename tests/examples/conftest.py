"""Fixtures shared by the tests of the DEFRAG example."""

from pathlib import Path

import pytest

# The official MNIST test split, kept beside the repository for offline tests.
MNIST_DIR = Path(__file__).parents[2].parent / "shared" / "datasets" / "mnist"
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture
def data_args(tmp_path):
    """Options that select the smallest dataset available here, with a private cache."""
    cache = ["--cache-dir", str(tmp_path / "cache")]
    if MNIST_DIR.is_dir():
        return ["--dataset", "mnist", "--data-dir", str(MNIST_DIR), *cache]
    if FASHION_DIR.is_dir():
        return ["--dataset", "fashion-mnist", *cache]
    pytest.skip("neither the MNIST test split nor Debian's Fashion-MNIST is available")
