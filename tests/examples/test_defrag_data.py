"""Tests of examples.defrag.data: finding, verifying, caching and normalizing the IDX files."""

import gzip
import shutil
from pathlib import Path

import pytest
import torch
import torchvision

from examples.defrag.data import (
    VALIDATION_SEED,
    DatasetError,
    DatasetSplits,
    hold_out_validation,
    load_dataset,
)

# The official MNIST test split, kept beside the repository for offline tests.
MNIST_DIR = Path(__file__).parents[2].parent / "shared" / "datasets" / "mnist"
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
TEST_FILES = ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")

needs_mnist = pytest.mark.skipif(not MNIST_DIR.is_dir(), reason=f"{MNIST_DIR} not found")
needs_fashion = pytest.mark.skipif(
    not FASHION_DIR.is_dir(), reason="Debian's dataset-fashion-mnist is not installed"
)


def copy_mnist_test_files(folder: Path, *, decompress: bool = False) -> Path:
    """Copy the MNIST test files into ``folder``, optionally decompressed, and return it."""
    folder.mkdir(parents=True, exist_ok=True)
    for file in TEST_FILES:
        source = MNIST_DIR / f"{file}.gz"
        if decompress:
            (folder / file).write_bytes(gzip.decompress(source.read_bytes()))
        else:
            shutil.copy(source, folder / f"{file}.gz")
    return folder


def flip_byte(path: Path, position: int) -> None:
    data = bytearray(path.read_bytes())
    data[position] ^= 0xFF
    path.write_bytes(bytes(data))


def assert_install_hint(message: str) -> None:
    assert "apt-get install dataset-fashion-mnist" in message
    assert "--download" in message
    assert "--data-dir" in message


@needs_fashion
def test_fashion_from_debian_folder(tmp_path):
    splits = load_dataset("fashion-mnist", cache_dir=tmp_path)

    assert splits.source == FASHION_DIR
    assert not splits.test_split_only
    assert splits.train_x.shape == (60000, 1, 28, 28)
    assert splits.test_x.shape == (10000, 1, 28, 28)
    assert splits.train_x.dtype == torch.float32
    assert splits.train_y.dtype == torch.int64
    assert torch.equal(splits.train_y.bincount(), torch.full((10,), 6000))
    assert abs(splits.train_x.mean().item()) < 1e-4
    assert abs(splits.train_x.std().item() - 1) < 1e-4


@needs_fashion
def test_fashion_cache_in_torchvision_layout(tmp_path):
    load_dataset("fashion-mnist", cache_dir=tmp_path)

    raw = tmp_path / "FashionMNIST" / "raw"
    assert sorted(path.name for path in raw.iterdir()) == [
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
    ]
    dataset = torchvision.datasets.FashionMNIST(tmp_path, train=False)
    assert len(dataset) == 10000


@needs_mnist
def test_mnist_test_split_only(tmp_path):
    splits = load_dataset("mnist", MNIST_DIR, cache_dir=tmp_path)

    assert splits.test_split_only
    assert splits.train_x.shape == (8000, 1, 28, 28)
    assert splits.test_x.shape == (2000, 1, 28, 28)
    assert "only the official test split was found" in splits.describe()
    assert "seed 0" in splits.describe()


@needs_mnist
def test_mnist_split_is_seeded(tmp_path):
    first = load_dataset("mnist", MNIST_DIR, cache_dir=tmp_path / "a")
    second = load_dataset("mnist", MNIST_DIR, cache_dir=tmp_path / "b")

    assert torch.equal(first.train_y, second.train_y)
    assert torch.equal(first.test_x, second.test_x)


@needs_mnist
def test_mnist_split_partitions_labels(tmp_path):
    splits = load_dataset("mnist", MNIST_DIR, cache_dir=tmp_path)
    official = torchvision.datasets.mnist.read_label_file(
        str(tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte")
    )

    combined = torch.cat([splits.train_y, splits.test_y])
    assert torch.equal(combined.bincount(), official.bincount())


@needs_mnist
@pytest.mark.parametrize("decompress", [False, True], ids=["gz", "decompressed"])
def test_mnist_in_torchvision_layout(tmp_path, decompress):
    data_dir = tmp_path / "data"
    copy_mnist_test_files(data_dir / "MNIST" / "raw", decompress=decompress)

    splits = load_dataset("mnist", data_dir, cache_dir=tmp_path / "cache")

    assert splits.source == data_dir / "MNIST" / "raw"
    assert len(splits.train_y) + len(splits.test_y) == 10000


@needs_mnist
def test_source_folder_not_written(tmp_path):
    data_dir = copy_mnist_test_files(tmp_path / "data")
    before = sorted(path.name for path in data_dir.iterdir())

    load_dataset("mnist", data_dir, cache_dir=tmp_path / "cache")

    assert sorted(path.name for path in data_dir.iterdir()) == before


@needs_mnist
def test_corrupt_decompressed_file(tmp_path):
    data_dir = copy_mnist_test_files(tmp_path / "data", decompress=True)
    corrupt = data_dir / "t10k-images-idx3-ubyte"
    flip_byte(corrupt, 5000)

    with pytest.raises(DatasetError) as error:
        load_dataset("mnist", data_dir, cache_dir=tmp_path / "cache")

    message = str(error.value)
    assert str(corrupt) in message
    assert "corrupt" in message
    assert "2646ac647ad5339dbf082846283269ea" in message
    assert_install_hint(message)


@needs_mnist
def test_corrupt_gz_file(tmp_path):
    data_dir = copy_mnist_test_files(tmp_path / "data")
    corrupt = data_dir / "t10k-labels-idx1-ubyte.gz"
    flip_byte(corrupt, 1000)

    with pytest.raises(DatasetError) as error:
        load_dataset("mnist", data_dir, cache_dir=tmp_path / "cache")

    message = str(error.value)
    assert str(corrupt) in message
    assert_install_hint(message)


@needs_mnist
def test_corrupt_file_not_cached(tmp_path):
    data_dir = copy_mnist_test_files(tmp_path / "data", decompress=True)
    flip_byte(data_dir / "t10k-images-idx3-ubyte", 5000)

    with pytest.raises(DatasetError):
        load_dataset("mnist", data_dir, cache_dir=tmp_path / "cache")

    assert not (tmp_path / "cache" / "MNIST" / "raw" / "t10k-images-idx3-ubyte").exists()


def test_missing_folder(tmp_path):
    missing = tmp_path / "missing"

    with pytest.raises(DatasetError) as error:
        load_dataset("mnist", missing, cache_dir=tmp_path / "cache")

    message = str(error.value)
    assert f"The data folder {missing} (--data-dir) does not exist" in message
    assert "leave --data-dir out" in message
    assert_install_hint(message)


def test_data_dir_is_file(tmp_path):
    file = tmp_path / "t10k-images-idx3-ubyte.gz"
    file.write_bytes(b"")

    with pytest.raises(DatasetError, match="is a file, not a folder"):
        load_dataset("mnist", file, cache_dir=tmp_path / "cache")


def test_empty_folder_lists_searched(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()

    with pytest.raises(DatasetError) as error:
        load_dataset("mnist", empty, cache_dir=tmp_path / "cache")

    message = str(error.value)
    assert "not found" in message
    assert str(empty) in message
    assert str(empty / "MNIST" / "raw") in message
    assert_install_hint(message)


@needs_mnist
@pytest.mark.parametrize("decompress", [False, True])
def test_mnist_files_as_fashion(tmp_path, decompress):
    folder = copy_mnist_test_files(tmp_path / "mnist", decompress=decompress)

    with pytest.raises(DatasetError) as error:
        load_dataset("fashion-mnist", folder, cache_dir=tmp_path / "cache")

    message = str(error.value)
    assert "is the mnist file t10k-images-idx3-ubyte, not the fashion-mnist one" in message
    assert "Pass --dataset mnist" in message


@needs_fashion
def test_fashion_files_as_mnist(tmp_path):
    # The training files are verified first, so the message names a training file.
    with pytest.raises(DatasetError) as error:
        load_dataset("mnist", FASHION_DIR, cache_dir=tmp_path / "cache")

    message = str(error.value)
    assert "is the fashion-mnist file train-images-idx3-ubyte, not the mnist one" in message
    assert "Pass --dataset fashion-mnist" in message


@needs_mnist
def test_one_training_file_missing(tmp_path):
    data_dir = copy_mnist_test_files(tmp_path / "data")
    shutil.copy(data_dir / "t10k-labels-idx1-ubyte.gz", data_dir / "train-labels-idx1-ubyte.gz")

    with pytest.raises(DatasetError) as error:
        load_dataset("mnist", data_dir, cache_dir=tmp_path / "cache")

    assert "train-images-idx3-ubyte" in str(error.value)


@needs_mnist
def test_training_file_without_reference(tmp_path):
    # No decompressed MD5 of the MNIST training files is known, and this copy is not the .gz
    # that torchvision lists, so it must be rejected rather than trusted.
    data_dir = copy_mnist_test_files(tmp_path / "data")
    for kind in ("images-idx3", "labels-idx1"):
        shutil.copy(data_dir / f"t10k-{kind}-ubyte.gz", data_dir / f"train-{kind}-ubyte.gz")

    with pytest.raises(DatasetError) as error:
        load_dataset("mnist", data_dir, cache_dir=tmp_path / "cache")

    assert "cannot be verified" in str(error.value)


def test_unknown_dataset(tmp_path):
    with pytest.raises(ValueError, match="cifar"):
        load_dataset("cifar", cache_dir=tmp_path)


def test_no_download_without_request(tmp_path, monkeypatch):
    def fail_download(self):
        raise AssertionError("download() was called without download=True")

    monkeypatch.setattr(torchvision.datasets.MNIST, "download", fail_download)

    with pytest.raises(DatasetError):
        load_dataset("mnist", tmp_path / "empty", cache_dir=tmp_path / "cache")


@needs_fashion
def test_download_into_cache(tmp_path, monkeypatch):
    # Stand-in for torchvision's download, which leaves the .gz and the decompressed files in
    # its raw folder.
    def copy_instead_of_download(self):
        raw = Path(self.raw_folder)
        raw.mkdir(parents=True, exist_ok=True)
        for path in FASHION_DIR.glob("*.gz"):
            shutil.copy(path, raw / path.name)
            (raw / path.stem).write_bytes(gzip.decompress(path.read_bytes()))

    monkeypatch.setattr(torchvision.datasets.FashionMNIST, "download", copy_instead_of_download)
    cache = tmp_path / "cache"

    splits = load_dataset("fashion-mnist", tmp_path / "empty", cache_dir=cache, download=True)

    assert splits.source == cache / "FashionMNIST" / "raw"
    assert len(splits.train_y) == 60000


def test_download_failure(tmp_path, monkeypatch):
    def fail_download(self):
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz")

    monkeypatch.setattr(torchvision.datasets.MNIST, "download", fail_download)

    with pytest.raises(DatasetError) as error:
        load_dataset("mnist", tmp_path / "empty", cache_dir=tmp_path / "cache", download=True)

    assert "Downloading mnist" in str(error.value)
    assert "Error downloading" in str(error.value)


def fake_splits(count: int) -> DatasetSplits:
    """Build splits whose training image i is filled with the value i, to track examples."""
    train_x = torch.arange(count, dtype=torch.float32).view(-1, 1, 1, 1).expand(-1, 1, 28, 28)
    return DatasetSplits(
        name="mnist",
        train_x=train_x.contiguous(),
        train_y=torch.arange(count) % 10,
        test_x=torch.full((7, 1, 28, 28), -1.0),
        test_y=torch.zeros(7, dtype=torch.int64),
        mean=0.5,
        std=0.25,
        source=Path("/data"),
        test_split_only=False,
    )


def test_validation_split_is_disjoint_and_fixed():
    splits = fake_splits(1000)

    held_out = hold_out_validation(splits, 150)

    train_ids = held_out.train_x[:, 0, 0, 0].long()
    validation_ids = held_out.test_x[:, 0, 0, 0].long()
    assert held_out.evaluation == "validation"
    assert len(validation_ids) == 150
    assert len(train_ids) == 850
    assert set(train_ids.tolist()).isdisjoint(validation_ids.tolist())
    assert sorted(train_ids.tolist() + validation_ids.tolist()) == list(range(1000))
    assert torch.equal(held_out.test_y, validation_ids % 10)
    assert torch.equal(train_ids, train_ids.sort().values)  # training order kept
    # The same examples every time, whatever the global RNG state.
    torch.manual_seed(123)
    again = hold_out_validation(splits, 150)
    assert torch.equal(again.test_x, held_out.test_x)
    expected = torch.randperm(1000, generator=torch.Generator().manual_seed(VALIDATION_SEED))
    assert validation_ids.tolist() == expected[:150].sort().values.tolist()


@pytest.mark.parametrize("size", [0, 1000, 5000])
def test_validation_split_size_checked(size):
    with pytest.raises(ValueError, match=f"--validation {size} must be between 1 and 999"):
        hold_out_validation(fake_splits(1000), size)
