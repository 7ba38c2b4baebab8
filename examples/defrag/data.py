"""Fashion-MNIST and MNIST as in-memory tensors, read through torchvision's dataset classes.

The loader takes a folder with the four IDX files, gzip-compressed or not, either flat or in
torchvision's ``<root>/<ClassName>/raw`` layout. It verifies the MD5 of each decompressed file
and writes the verified files into a cache folder in torchvision's layout. Only then does it
instantiate ``torchvision.datasets.FashionMNIST`` or ``MNIST`` on that cache. The source folder
is only read, so it can be a read-only system folder such as Debian's.

The extra step has two reasons. With ``download=False``, torchvision's MNIST-family classes look
for decompressed files under ``<root>/<ClassName>/raw`` and check no checksum. And Debian's
``dataset-fashion-mnist`` package ships recompressed ``.gz`` files whose MD5 differs from the
one torchvision lists, although the decompressed bytes are the same.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import torch

DATASET_NAMES = ("fashion-mnist", "mnist")

# Spelling of each dataset name in titles and reports.
DATASET_TITLES = {"fashion-mnist": "Fashion-MNIST", "mnist": "MNIST"}

# torchvision class for each dataset name. The class name is also the folder name that
# torchvision expects under its root.
_TORCHVISION_CLASS_NAMES = {"fashion-mnist": "FashionMNIST", "mnist": "MNIST"}

# Folders searched when no data folder is given, before the cache. Debian's
# dataset-fashion-mnist package installs the four .gz files here. Debian has no MNIST package.
_SYSTEM_FOLDERS = {"fashion-mnist": (Path("/usr/share/datasets/fashion-mnist"),), "mnist": ()}

_TRAIN_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte")
_TEST_FILES = ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")

# MD5 of the decompressed IDX files. Obtained once with `gzip -dc FILE | md5sum` from the files
# of Debian's dataset-fashion-mnist package (the .gz files are recompressed but decompress to
# the original bytes) and from the official MNIST test files, whose .gz MD5 equals the one that
# torchvision 0.29 lists. No decompressed reference exists here for the MNIST training files,
# so those are accepted only as the original .gz files, checked against torchvision's list.
_DECOMPRESSED_MD5 = {
    ("fashion-mnist", "train-images-idx3-ubyte"): "f4a8712d7a061bf5bd6d2ca38dc4d50a",
    ("fashion-mnist", "train-labels-idx1-ubyte"): "9018921c3c673c538a1fc5bad174d6f9",
    ("fashion-mnist", "t10k-images-idx3-ubyte"): "8181f5470baa50b63fa0f6fddb340f0a",
    ("fashion-mnist", "t10k-labels-idx1-ubyte"): "15d484375f8d13e6eb1aabb0c3f46965",
    ("mnist", "t10k-images-idx3-ubyte"): "2646ac647ad5339dbf082846283269ea",
    ("mnist", "t10k-labels-idx1-ubyte"): "27ae3e4e09519cfbb04c329615203637",
}

# When only the official test split is available, it is divided into these parts with a fixed
# seed, so every run that uses it trains and tests on the same examples.
TEST_ONLY_TRAIN_SIZE = 8000
TEST_ONLY_SEED = 0

# A validation split (``--validation N``) is drawn from the training examples with this seed,
# whatever the run's own seed, so that every run of a tuning grid holds out the same examples.
VALIDATION_SEED = 0

_INSTALL_HINT = (
    "To get the data, do one of:\n"
    "  - install Debian's package (Fashion-MNIST only): apt-get install dataset-fashion-mnist\n"
    "  - pass --download to let torchvision download it into the cache folder\n"
    "  - pass --data-dir FOLDER, where FOLDER contains the IDX files "
    "(train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, "
    "t10k-labels-idx1-ubyte.gz), compressed or not; the two t10k files alone suffice, and "
    "then the test split is divided into training and test examples"
)


class DatasetError(RuntimeError):
    """Raised when the dataset files are missing, corrupt or cannot be downloaded."""


@dataclass(frozen=True)
class DatasetSplits:
    """Normalized training and test tensors of one dataset, held in memory.

    Attributes:
        name: Dataset name, one of ``DATASET_NAMES``.
        train_x: Training images, N x 1 x 28 x 28 float32, normalized with ``mean`` and ``std``.
        train_y: Training labels, N int64 in [0, 10).
        test_x: Test images, normalized like the training images.
        test_y: Test labels.
        mean: Mean pixel value of the training images, on the [0, 1] scale.
        std: Standard deviation of the training pixel values, on the [0, 1] scale.
        source: Folder that the IDX files were read from.
        test_split_only: True when only the official test split was available and both parts
            were carved from it.
        evaluation: ``"test"``, or ``"validation"`` when ``test_x`` and ``test_y`` hold
            training examples held out by ``hold_out_validation``.
    """

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    mean: float
    std: float
    source: Path
    test_split_only: bool
    evaluation: str = "test"

    def describe(self) -> str:
        """Return a one-paragraph summary of the data for the training log."""
        text = (
            f"{self.name}: {len(self.train_y):,} training and {len(self.test_y):,} "
            f"{self.evaluation} examples from {self.source}"
        )
        if self.test_split_only:
            text += (
                f"\nNOTE: only the official test split was found, so its examples were divided "
                f"with seed {TEST_ONLY_SEED} into the training and test parts above. Accuracies "
                "are not comparable with results on the official split."
            )
        if self.evaluation == "validation":
            text += (
                f"\nValidation: {len(self.test_y):,} of the training examples, drawn with seed "
                f"{VALIDATION_SEED}, are held out and evaluated instead of the test split; the "
                f"other {len(self.train_y):,} are trained on. The test split is not evaluated."
            )
        return text


def hold_out_validation(splits: DatasetSplits, size: int) -> DatasetSplits:
    """Hold out ``size`` training examples as the split to evaluate on, in place of the test split.

    The held-out examples are the first ``size`` of a permutation drawn with
    ``VALIDATION_SEED``, so every run holds out the same ones. The remaining training examples
    keep their original order. The test tensors are dropped, so that nothing downstream can
    evaluate on them by mistake.

    NOTE: The normalization statistics stay those of the whole training split, validation
    examples included. They are two scalars, and the test split never enters them.

    Raises:
        ValueError: When ``size`` is not in [1, number of training examples).
    """
    count = len(splits.train_y)
    if not 0 < size < count:
        raise ValueError(
            f"--validation {size} must be between 1 and {count - 1}, the number of training "
            f"examples minus one. Pass a smaller --validation."
        )
    generator = torch.Generator().manual_seed(VALIDATION_SEED)
    order = torch.randperm(count, generator=generator)
    held_out = order[:size].sort().values
    remaining = order[size:].sort().values
    return DatasetSplits(
        name=splits.name,
        train_x=splits.train_x[remaining],
        train_y=splits.train_y[remaining],
        test_x=splits.train_x[held_out],
        test_y=splits.train_y[held_out],
        mean=splits.mean,
        std=splits.std,
        source=splits.source,
        test_split_only=splits.test_split_only,
        evaluation="validation",
    )


def default_cache_dir() -> Path:
    """Return the default cache folder: ``$XDG_CACHE_HOME/grassmann_nn`` or ``~/.cache/...``."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "grassmann_nn"


def load_dataset(
    name: str,
    data_dir: Path | None = None,
    *,
    cache_dir: Path | None = None,
    download: bool = False,
) -> DatasetSplits:
    """Load, verify and normalize a dataset, held in memory as tensors.

    Args:
        name: ``"fashion-mnist"`` or ``"mnist"``.
        data_dir: Folder with the IDX files. When None, Debian's folder (Fashion-MNIST only) and
            the cache are searched.
        cache_dir: Folder that receives the verified, decompressed files in torchvision's layout
            and any download. Defaults to ``default_cache_dir()``.
        download: Whether torchvision may download the files into the cache when no folder
            contains them.

    Returns:
        The normalized splits. When only the official test split exists, its first
        ``TEST_ONLY_TRAIN_SIZE`` examples after a seeded permutation form the training part.

    Raises:
        DatasetError: When the files are missing, fail the checksum, or the download fails.
        ValueError: When ``name`` is not a known dataset.
    """
    if name not in _TORCHVISION_CLASS_NAMES:
        raise ValueError(f"Unknown dataset {name!r}. Expected one of {', '.join(DATASET_NAMES)}.")
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()

    if data_dir is not None and not download:
        _check_data_dir(Path(data_dir))

    raw_folder = cache_dir / _TORCHVISION_CLASS_NAMES[name] / "raw"
    candidates = _candidate_folders(name, data_dir, cache_dir)
    source = _find_source_folder(candidates)
    if source is None and download:
        _download(name, cache_dir)
        source = _find_source_folder([raw_folder])
    if source is None:
        raise DatasetError(_missing_message(name, candidates))

    train_found = [file for file in _TRAIN_FILES if _find_file(source, file) is not None]
    if len(train_found) == 1:
        missing = set(_TRAIN_FILES) - set(train_found)
        raise DatasetError(
            f"The {name} file {missing.pop()} (or its .gz) was not found in {source}, "
            f"although {train_found[0]} was.\n" + _INSTALL_HINT
        )
    has_train = len(train_found) == len(_TRAIN_FILES)
    files = _TRAIN_FILES + _TEST_FILES if has_train else _TEST_FILES

    for file in files:
        _cache_verified_file(name, source, file, raw_folder)

    if has_train:
        train_images, train_labels, test_images, test_labels = _read_full(name, cache_dir)
    else:
        train_images, train_labels, test_images, test_labels = _read_test_only(raw_folder)
    return _normalize(name, train_images, train_labels, test_images, test_labels, source, has_train)


def _check_data_dir(data_dir: Path) -> None:
    """Raise DatasetError when the folder given as ``--data-dir`` is missing or is a file."""
    if data_dir.is_dir():
        return
    problem = "is a file, not a folder" if data_dir.exists() else "does not exist"
    raise DatasetError(
        f"The data folder {data_dir} (--data-dir) {problem}. Pass the folder that contains "
        "the IDX files, or leave --data-dir out to search the default folders.\n" + _INSTALL_HINT
    )


def _candidate_folders(name: str, data_dir: Path | None, cache_dir: Path) -> list[Path]:
    """Return the folders to search, in order: the given folder, or the system folders and cache."""
    class_name = _TORCHVISION_CLASS_NAMES[name]
    if data_dir is not None:
        data_dir = Path(data_dir)
        return [data_dir, data_dir / class_name / "raw"]
    return [*_SYSTEM_FOLDERS[name], cache_dir / class_name / "raw"]


def _find_source_folder(candidates: list[Path]) -> Path | None:
    """Return the first candidate folder that contains the test files, or None."""
    for folder in candidates:
        if all(_find_file(folder, file) is not None for file in _TEST_FILES):
            return folder
    return None


def _find_file(folder: Path, file: str) -> Path | None:
    """Return the path of ``file.gz`` or ``file`` in ``folder``, preferring the .gz, or None."""
    for candidate in (folder / f"{file}.gz", folder / file):
        if candidate.is_file():
            return candidate
    return None


def _missing_message(name: str, candidates: list[Path]) -> str:
    """Build the error message for a dataset that was not found in any candidate folder."""
    searched = "\n".join(f"  - {folder}" for folder in candidates)
    return f"The {name} IDX files were not found. Searched:\n{searched}\n" + _INSTALL_HINT


def _download(name: str, cache_dir: Path) -> None:
    """Download the dataset into ``cache_dir`` with torchvision, which checks the .gz MD5."""
    dataset_class = _torchvision_class(name)
    try:
        dataset_class(root=str(cache_dir), train=True, download=True)
    except (RuntimeError, OSError) as error:
        raise DatasetError(
            f"Downloading {name} into {cache_dir} failed: {error}\n{_INSTALL_HINT}"
        ) from error


def class_names(name: str) -> list[str]:
    """Return the names of the 10 classes of a dataset, as torchvision lists them."""
    return list(_torchvision_class(name).classes)


def _torchvision_class(name: str) -> type:
    """Return torchvision's dataset class for ``name``."""
    import torchvision.datasets

    return getattr(torchvision.datasets, _TORCHVISION_CLASS_NAMES[name])


def _read_verified_bytes(name: str, path: Path) -> bytes:
    """Read an IDX file, decompressing a .gz, and check its MD5 against the reference.

    A .gz file passes when its own MD5 is the one torchvision lists, or when its decompressed
    bytes match ``_DECOMPRESSED_MD5``. A decompressed file must match ``_DECOMPRESSED_MD5``.
    """
    file = path.name.removesuffix(".gz")
    compressed = path.suffix == ".gz"
    data = path.read_bytes()

    listed_md5 = _torchvision_gz_md5(name, file)
    compressed_md5 = _md5(data) if compressed else None
    if compressed and listed_md5 is not None and compressed_md5 == listed_md5:
        return _gunzip(path, data)

    if compressed:
        data = _gunzip(path, data)
    actual = _md5(data)
    other = _other_dataset_of(name, file, compressed_md5, actual)
    if other is not None:
        raise DatasetError(
            f"{path} is the {other} file {file}, not the {name} one. Pass --dataset {other}, "
            f"or a --data-dir that contains the {name} files."
        )

    expected = _DECOMPRESSED_MD5.get((name, file))
    if expected is None:
        raise DatasetError(
            f"{path} cannot be verified: no reference checksum is known for the decompressed "
            f"{name} file {file}, and the file is not the original .gz that torchvision lists "
            f"(MD5 {listed_md5}). Use the original {file}.gz or pass --download."
        )
    if actual != expected:
        raise DatasetError(_corrupt_message(name, path, expected, actual))
    return data


def _other_dataset_of(
    name: str, file: str, compressed_md5: str | None, decompressed_md5: str
) -> str | None:
    """Return the other dataset whose reference checksum the file matches, or None."""
    for other in _TORCHVISION_CLASS_NAMES:
        if other == name:
            continue
        if _DECOMPRESSED_MD5.get((other, file)) == decompressed_md5:
            return other
        if compressed_md5 is not None and _torchvision_gz_md5(other, file) == compressed_md5:
            return other
    return None


def _torchvision_gz_md5(name: str, file: str) -> str | None:
    """Return the MD5 that torchvision lists for ``file.gz``, or None."""
    resources = dict(_torchvision_class(name).resources)
    return resources.get(f"{file}.gz")


def _gunzip(path: Path, data: bytes) -> bytes:
    """Decompress gzip bytes, turning a damaged archive into a DatasetError."""
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as error:
        raise DatasetError(
            f"{path} is not a valid gzip file ({error}). Replace it with an intact copy.\n"
            + _INSTALL_HINT
        ) from error


def _md5(data: bytes) -> str:
    """Return the hex MD5 digest of ``data``."""
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def _corrupt_message(name: str, path: Path, expected: str, actual: str) -> str:
    """Build the error message for a file whose decompressed MD5 is wrong."""
    return (
        f"{path} is corrupt: the MD5 of its decompressed bytes is {actual}, "
        f"expected {expected} for {name}. Replace it with an intact copy (a file in the cache "
        "folder can simply be deleted: it is rebuilt from the source files).\n" + _INSTALL_HINT
    )


def _cache_verified_file(name: str, source: Path, file: str, raw_folder: Path) -> None:
    """Verify one IDX file and write its decompressed bytes to the cache, unless already there."""
    path = _find_file(source, file)
    data = _read_verified_bytes(name, path)

    target = raw_folder / file
    if target.is_file() and _md5(target.read_bytes()) == _md5(data):
        return
    raw_folder.mkdir(parents=True, exist_ok=True)
    write_atomically(target, data)


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomically(target: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``target``, fsync it, and rename it into place.

    A reader sees the old file or the new one, never a partial write.
    """
    handle, temp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        # mkstemp creates the file readable by its owner only; give it the usual mode.
        os.chmod(temp_name, 0o666 & ~_current_umask())
        os.replace(temp_name, target)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


def _read_full(
    name: str, cache_dir: Path
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Read both official splits with torchvision's dataset class from the verified cache."""
    dataset_class = _torchvision_class(name)
    train = dataset_class(root=str(cache_dir), train=True, download=False)
    test = dataset_class(root=str(cache_dir), train=False, download=False)
    return train.data, train.targets, test.data, test.targets


def _read_test_only(
    raw_folder: Path,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Split the official test split into training and test parts with a fixed seed.

    Note:
        torchvision's dataset class refuses to load unless all four files exist, so this path
        uses the IDX readers that the class itself calls.
    """
    from torchvision.datasets.mnist import read_image_file, read_label_file

    images = read_image_file(str(raw_folder / _TEST_FILES[0]))
    labels = read_label_file(str(raw_folder / _TEST_FILES[1]))

    generator = torch.Generator().manual_seed(TEST_ONLY_SEED)
    order = torch.randperm(len(labels), generator=generator)
    train_index = order[:TEST_ONLY_TRAIN_SIZE]
    test_index = order[TEST_ONLY_TRAIN_SIZE:]
    return images[train_index], labels[train_index], images[test_index], labels[test_index]


def _normalize(
    name: str,
    train_images: torch.Tensor,
    train_labels: torch.Tensor,
    test_images: torch.Tensor,
    test_labels: torch.Tensor,
    source: Path,
    has_train: bool,
) -> DatasetSplits:
    """Scale uint8 images to [0, 1], then standardize with the training mean and std."""
    train_x = train_images.unsqueeze(1).to(torch.float32).div_(255.0)
    test_x = test_images.unsqueeze(1).to(torch.float32).div_(255.0)

    mean = train_x.mean().item()
    std = train_x.std().item()
    train_x.sub_(mean).div_(std)
    test_x.sub_(mean).div_(std)

    return DatasetSplits(
        name=name,
        train_x=train_x,
        train_y=train_labels.to(torch.int64),
        test_x=test_x,
        test_y=test_labels.to(torch.int64),
        mean=mean,
        std=std,
        source=source,
        test_split_only=not has_train,
    )
