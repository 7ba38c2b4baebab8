"""Metrics against scikit-learn and against small hand-checked values."""

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import silhouette_samples as sklearn_silhouette_samples
from sklearn.metrics import silhouette_score as sklearn_silhouette_score
from sklearn.neighbors import KNeighborsClassifier

from grassmann_nn.metrics import distance_ratio, knn_accuracy, silhouette_samples, silhouette_score


def random_clusters(n, dim, num_clusters, seed, spread=1.0):
    """Return float64 points around random cluster means and non-contiguous integer labels."""
    generator = torch.Generator().manual_seed(seed)
    codes = torch.arange(n) % num_clusters
    codes = codes[torch.randperm(n, generator=generator)]
    means = 3 * torch.randn(num_clusters, dim, generator=generator, dtype=torch.float64)
    points = means[codes] + spread * torch.randn(n, dim, generator=generator, dtype=torch.float64)
    return points, 7 * codes - 3


@pytest.mark.parametrize("chunk_size", [1, 7, 256])
@pytest.mark.parametrize(
    ("n", "dim", "num_clusters", "seed"),
    [(40, 2, 2, 0), (60, 5, 3, 1), (90, 16, 7, 2), (33, 3, 32, 3), (120, 1, 4, 4)],
)
def test_silhouette_samples_matches_sklearn(n, dim, num_clusters, seed, chunk_size):
    points, labels = random_clusters(n, dim, num_clusters, seed)

    scores = silhouette_samples(points, labels, chunk_size=chunk_size)

    expected = sklearn_silhouette_samples(points.numpy(), labels.numpy())
    assert scores.dtype == torch.float64
    np.testing.assert_allclose(scores.numpy(), expected, rtol=0, atol=1e-6)


def test_silhouette_samples_on_device(device):
    points, labels = random_clusters(50, 4, 3, seed=5)

    scores = silhouette_samples(points.to(device), labels.to(device), chunk_size=16)

    expected = sklearn_silhouette_samples(points.numpy(), labels.numpy())
    assert scores.device.type == device.type
    np.testing.assert_allclose(scores.cpu().numpy(), expected, rtol=0, atol=1e-6)


def test_silhouette_samples_float32_input():
    points, labels = random_clusters(50, 4, 3, seed=6)

    scores = silhouette_samples(points.float(), labels)

    expected = sklearn_silhouette_samples(points.numpy(), labels.numpy())
    assert scores.dtype == torch.float32
    np.testing.assert_allclose(scores.numpy(), expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    ("points", "expected_samples", "expected_mean"),
    [
        pytest.param([[0.0], [0.1], [1.0]], [0.9, 0.8889, 0.0], 0.5963, id="line"),
        pytest.param([[0.0, 0.0], [0.1, 0.0], [10.0, 0.0]], None, 0.6600, id="far-singleton"),
    ],
)
def test_silhouette_singleton_scores_zero(points, expected_samples, expected_mean):
    x = torch.tensor(points, dtype=torch.float64)
    labels = torch.tensor([0, 0, 1])

    scores = silhouette_samples(x, labels)
    mean = silhouette_score(x, labels)

    reference = sklearn_silhouette_samples(x.numpy(), labels.numpy())
    np.testing.assert_allclose(scores.numpy(), reference, rtol=0, atol=1e-12)
    assert round(mean, 4) == expected_mean
    assert round(mean, 4) == round(float(reference.mean()), 4)
    assert scores[2].item() == 0.0
    if expected_samples is not None:
        np.testing.assert_allclose(scores.numpy(), expected_samples, rtol=0, atol=5e-5)


def test_silhouette_identical_points_score_zero():
    x = torch.ones(4, 3, dtype=torch.float64)
    labels = torch.tensor([0, 0, 1, 1])

    scores = silhouette_samples(x, labels)

    assert torch.equal(scores, torch.zeros(4, dtype=torch.float64))
    np.testing.assert_array_equal(scores.numpy(), sklearn_silhouette_samples(x.numpy(), labels))


@pytest.mark.parametrize("function", [silhouette_samples, silhouette_score])
def test_silhouette_one_cluster_raises(function):
    x = torch.randn(4, 8)
    labels = torch.full((4,), 3)

    with pytest.raises(ValueError, match="got 1 for 4 samples"):
        function(x, labels)
    with pytest.raises(ValueError, match="Valid values are 2 to n_samples - 1"):
        sklearn_silhouette_score(x.numpy(), labels.numpy())


def test_silhouette_all_distinct_labels_raises():
    with pytest.raises(ValueError, match="got 4 for 4 samples"):
        silhouette_samples(torch.randn(4, 2), torch.arange(4))


def test_silhouette_score_matches_sklearn():
    points, labels = random_clusters(80, 6, 5, seed=7)

    score = silhouette_score(points, labels, chunk_size=9)

    expected = sklearn_silhouette_score(points.numpy(), labels.numpy())
    assert score == pytest.approx(expected, abs=1e-9)


def test_silhouette_score_sample_size():
    points, labels = random_clusters(80, 6, 5, seed=8)

    first = silhouette_score(
        points, labels, sample_size=30, generator=torch.Generator().manual_seed(1)
    )
    second = silhouette_score(
        points, labels, sample_size=30, generator=torch.Generator().manual_seed(1)
    )

    subset = torch.randperm(80, generator=torch.Generator().manual_seed(1))[:30]
    expected = sklearn_silhouette_score(points[subset].numpy(), labels[subset].numpy())
    assert first == second
    assert first == pytest.approx(expected, abs=1e-9)
    assert silhouette_score(points, labels, sample_size=500) == pytest.approx(
        silhouette_score(points, labels), abs=1e-12
    )


def distance_ratio_oracle(points, labels):
    classes = sorted(set(labels))
    centers = {k: points[labels == k].mean(axis=0) for k in classes}
    spread = np.mean([np.linalg.norm(p - centers[y]) for p, y in zip(points, labels, strict=True)])
    gaps = [
        np.linalg.norm(centers[k] - centers[m])
        for i, k in enumerate(classes)
        for m in classes[i + 1 :]
    ]
    return spread / np.mean(gaps)


@pytest.mark.parametrize("seed", [0, 1])
def test_distance_ratio_matches_loop_oracle(seed, device):
    points, labels = random_clusters(60, 5, 4, seed)

    ratio = distance_ratio(points.to(device), labels.to(device))

    expected = distance_ratio_oracle(points.numpy(), labels.numpy())
    assert ratio == pytest.approx(expected, rel=1e-12)
    assert distance_ratio(10 * points, labels) == pytest.approx(ratio, rel=1e-12)


def test_distance_ratio_coinciding_centers():
    x = torch.tensor([[1.0], [-1.0], [2.0], [-2.0]])
    labels = torch.tensor([0, 0, 1, 1])

    assert distance_ratio(x, labels) == math.inf
    assert math.isnan(distance_ratio(torch.zeros(4, 1), labels))


def test_distance_ratio_one_class_raises():
    with pytest.raises(ValueError, match="at least 2 distinct labels, got 1"):
        distance_ratio(torch.randn(4, 2), torch.zeros(4, dtype=torch.int64))


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5, 10])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_knn_accuracy_matches_sklearn(k, seed):
    train_x, train_y = random_clusters(120, 4, 5, seed, spread=3.0)
    test_x, test_y = random_clusters(70, 4, 5, seed + 100, spread=3.0)

    accuracy = knn_accuracy(train_x, train_y, test_x, test_y, k=k, chunk_size=16)

    classifier = KNeighborsClassifier(n_neighbors=k).fit(train_x.numpy(), train_y.numpy())
    assert accuracy == pytest.approx(classifier.score(test_x.numpy(), test_y.numpy()), abs=1e-12)


def test_knn_tie_goes_to_smallest_label(device):
    train_x = torch.tensor([[1.0], [-2.0], [3.0], [-4.0]], device=device)
    train_y = torch.tensor([9, 5, 9, 5], device=device)
    test_x = torch.zeros(1, 1, device=device)

    assert knn_accuracy(train_x, train_y, test_x, torch.tensor([5]), k=2) == 1.0
    assert knn_accuracy(train_x, train_y, test_x, torch.tensor([5]), k=4) == 1.0
    assert knn_accuracy(train_x, train_y, test_x, torch.tensor([9]), k=3) == 1.0


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        pytest.param({"k": 0}, "k must be an int >= 1", id="k-zero"),
        pytest.param({"k": 11}, "at most the number of training points 10", id="k-too-large"),
        pytest.param({"test_x": torch.randn(3, 4)}, "same number of columns", id="columns"),
        pytest.param({"test_y": torch.zeros(2, dtype=torch.int64)}, r"\(3,\) to match", id="rows"),
        pytest.param({"train_y": torch.zeros(10)}, "integer tensor", id="float-labels"),
        pytest.param({"chunk_size": 0}, "chunk_size", id="chunk-size"),
        pytest.param(
            {"test_x": torch.zeros(0, 2), "test_y": torch.zeros(0, dtype=torch.int64)},
            "test_x is empty",
            id="empty",
        ),
    ],
)
def test_knn_accuracy_rejects_invalid_input(arguments, message):
    inputs = {
        "train_x": torch.randn(10, 2),
        "train_y": torch.arange(10) % 2,
        "test_x": torch.randn(3, 2),
        "test_y": torch.arange(3) % 2,
        **arguments,
    }
    with pytest.raises(ValueError, match=message):
        knn_accuracy(**inputs)


@pytest.mark.parametrize(
    ("x", "labels", "message"),
    [
        pytest.param(torch.randn(5), torch.arange(5) % 2, r"shape \(n, dim\)", id="one-dim"),
        pytest.param(torch.randn(5, 2), torch.arange(4) % 2, r"\(5,\) to match", id="rows"),
        pytest.param(torch.randn(5, 2), torch.rand(5), "integer tensor", id="float-labels"),
        pytest.param(
            torch.tensor([[0.0], [math.inf], [1.0], [2.0]]),
            torch.tensor([0, 0, 1, 1]),
            "NaN or infinite",
            id="inf",
        ),
    ],
)
def test_silhouette_rejects_invalid_input(x, labels, message):
    with pytest.raises(ValueError, match=message):
        silhouette_samples(x, labels)


def test_silhouette_huge_float32_points_finite():
    # Distances of points near 1e20 overflow float32; the scores are scale-invariant.
    x = torch.tensor([[1e20, 0.0], [1e20, 0.0], [0.0, 0.0], [1.0, 1.0]])
    labels = torch.tensor([0, 0, 1, 1])
    scores = silhouette_samples(x, labels)
    expected = silhouette_samples(x.double() / 1e20, labels)
    torch.testing.assert_close(scores.double(), expected, atol=1e-6, rtol=0)


def test_numpy_input_error_names_type():
    with pytest.raises(ValueError, match="numpy.ndarray.*torch.as_tensor"):
        silhouette_score(np.zeros((4, 2), dtype=np.float32), torch.tensor([0, 0, 1, 1]))
