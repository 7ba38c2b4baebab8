"""Fixtures shared by the tests of the DEFRAG example."""

from pathlib import Path

import pytest

# The official MNIST test split, kept beside the repository for offline tests.
MNIST_DIR = Path(__file__).parents[2].parent / "shared" / "datasets" / "mnist"
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(scope="session")
def dataset_options():
    """Options that select the smallest dataset available here."""
    if MNIST_DIR.is_dir():
        return ["--dataset", "mnist", "--data-dir", str(MNIST_DIR)]
    if FASHION_DIR.is_dir():
        return ["--dataset", "fashion-mnist"]
    pytest.skip("neither the MNIST test split nor Debian's Fashion-MNIST is available")


@pytest.fixture
def data_args(tmp_path, dataset_options):
    """``dataset_options`` with a private cache folder."""
    return [*dataset_options, "--cache-dir", str(tmp_path / "cache")]
