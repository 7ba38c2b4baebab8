r"""Embedding quality metrics computed exactly with torch, in chunks of rows, on any device.

All distances are Euclidean and computed as differences (never through the expanded
$\lVert x \rVert^2 + \lVert y \rVert^2 - 2 x \cdot y$ form). The functions run under
``torch.no_grad()``, so use ``grassmann_nn.losses.SilhouetteLoss`` for a differentiable
objective. Labels may be any integers, such as ``[3, 3, 7]``, and need not be contiguous.
"""

from __future__ import annotations

import math

import torch

from grassmann_nn.losses._centers import check_int, compute_dtype, is_integer_dtype

__all__ = ["distance_ratio", "knn_accuracy", "silhouette_samples", "silhouette_score"]

_DEFAULT_CHUNK_SIZE = 256
_EXACT_EUCLIDEAN = "donot_use_mm_for_euclid_dist"


@torch.no_grad()
def silhouette_samples(
    x: torch.Tensor, labels: torch.Tensor, *, chunk_size: int = _DEFAULT_CHUNK_SIZE
) -> torch.Tensor:
    r"""Compute the silhouette coefficient of each sample, as scikit-learn defines it.

    For sample $i$ in cluster $C_{y_i}$, with Euclidean distances $d$:

    $$ a_i = \frac{1}{|C_{y_i}| - 1} \sum_{j \in C_{y_i}, j \ne i} d(x_i, x_j), \qquad
       b_i = \min_{k \ne y_i} \frac{1}{|C_k|} \sum_{j \in C_k} d(x_i, x_j), \qquad
       s_i = \frac{b_i - a_i}{\max(a_i, b_i)} $$

    A sample alone in its cluster scores 0, and so does a sample with $a_i = b_i = 0$. These
    are the definitions of Rousseeuw, "Silhouettes: a graphical aid to the interpretation and
    validation of cluster analysis" (1987), and of ``sklearn.metrics.silhouette_samples``.

    The exact distances are computed ``chunk_size`` rows at a time with ``torch.cdist``, each
    pair once (the matrix is symmetric), and summed per cluster in float64. The extra memory is
    about ``chunk_size * n * 12`` bytes for float32 input (the distance block plus its float64
    copy) and ``n * K * 16`` bytes for ``K`` clusters.

    Args:
        x: ``(n, dim)`` floating tensor of points.
        labels: ``(n,)`` integer tensor of cluster labels.
        chunk_size: Number of rows of the distance matrix computed at once.

    Returns:
        ``(n,)`` tensor of coefficients in ``[-1, 1]`` on ``x.device``, in the dtype of ``x``
        (float32 for float16 and bfloat16 input).

    Raises:
        ValueError: On a shape mismatch, a non-integer label tensor, a non-finite point, an
            invalid ``chunk_size``, or a number of distinct labels outside ``[2, n - 1]``.
    """
    check_int("chunk_size", chunk_size, 1)
    x, labels = _check_points(x, labels, "x", "labels")
    codes, counts = _encode_labels(labels)
    _check_cluster_count(counts.numel(), x.shape[0])

    dtype = compute_dtype(x.dtype)
    points = _scale_to_unit_range(x.to(dtype))
    intra, nearest = _cluster_mean_distances(points, codes, counts, chunk_size)
    scores = _silhouette_from_means(intra, nearest, counts[codes])
    return scores.to(dtype)


def _scale_to_unit_range(x: torch.Tensor) -> torch.Tensor:
    """Divide ``x`` by its largest absolute entry (when nonzero).

    Silhouette coefficients are ratios of distances and do not change, but float32 distances
    of points above about 1e19 would overflow to inf and give NaN scores.
    """
    largest = x.abs().amax()
    return x / largest if bool(largest > 0) else x


@torch.no_grad()
def silhouette_score(
    x: torch.Tensor,
    labels: torch.Tensor,
    *,
    sample_size: int | None = None,
    generator: torch.Generator | None = None,
    chunk_size: int = _DEFAULT_CHUNK_SIZE,
) -> float:
    r"""Compute the mean silhouette coefficient over all samples, or over a random subset.

    $$ S = \frac{1}{n} \sum_{i=1}^{n} s_i $$

    with $s_i$ from `silhouette_samples`. Matches ``sklearn.metrics.silhouette_score`` with
    the Euclidean metric.

    Args:
        x: ``(n, dim)`` floating tensor of points.
        labels: ``(n,)`` integer tensor of cluster labels.
        sample_size: When set, score a random subset of this many points, drawn without
            replacement with ``torch.randperm``. A value of ``n`` or more uses all points, as
            scikit-learn does. Default None: all points.
        generator: Random number generator for the subset. Default: torch's global generator.
        chunk_size: Number of rows of the distance matrix computed at once.

    Returns:
        The mean coefficient, in ``[-1, 1]``.

    Raises:
        ValueError: As `silhouette_samples`, or when ``sample_size`` is not a positive int.
    """
    x, labels = _check_points(x, labels, "x", "labels")

    if sample_size is not None:
        check_int("sample_size", sample_size, 1)
        device = generator.device if generator is not None else torch.device("cpu")
        order = torch.randperm(x.shape[0], generator=generator, device=device)
        subset = order[:sample_size].to(x.device)
        x, labels = x[subset], labels[subset]

    scores = silhouette_samples(x, labels, chunk_size=chunk_size)
    return float(scores.double().mean())


@torch.no_grad()
def distance_ratio(x: torch.Tensor, labels: torch.Tensor) -> float:
    r"""Compute the mean distance to the own class center over the mean distance between centers.

    With $\mu_k$ the mean of the points of class $k$ and $K$ classes:

    $$ r = \frac{\frac{1}{n} \sum_{i} \lVert x_i - \mu_{y_i} \rVert}
               {\binom{K}{2}^{-1} \sum_{k < l} \lVert \mu_k - \mu_l \rVert} $$

    Lower is better: compact classes far apart give a small ratio. The ratio does not change
    when ``x`` is scaled. Computed in float64.

    Args:
        x: ``(n, dim)`` floating tensor of points.
        labels: ``(n,)`` integer tensor of class labels, at least 2 distinct values.

    Returns:
        The ratio. ``inf`` when all class centers coincide and some point is off its center,
        ``nan`` when every point sits on one common center.

    Raises:
        ValueError: On a shape mismatch, a non-integer label tensor, a non-finite point, or
            fewer than 2 distinct labels.
    """
    x, labels = _check_points(x, labels, "x", "labels")
    codes, counts = _encode_labels(labels)
    if counts.numel() < 2:
        raise ValueError(f"distance_ratio needs at least 2 distinct labels, got {counts.numel()}.")

    points = x.double()
    centers = torch.zeros(counts.numel(), x.shape[1], dtype=torch.float64, device=x.device)
    centers.index_add_(0, codes, points)
    centers /= counts.unsqueeze(1)

    spread = torch.linalg.vector_norm(points - centers[codes], dim=1).mean()
    pairs = torch.pdist(centers).mean()
    return _divide(float(spread), float(pairs))


@torch.no_grad()
def knn_accuracy(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    k: int = 1,
    *,
    chunk_size: int = _DEFAULT_CHUNK_SIZE,
) -> float:
    r"""Compute the accuracy of an exact k-nearest-neighbour majority vote.

    Each test point takes the label held by most of its ``k`` nearest training points under the
    Euclidean distance. A tie between labels goes to the smallest label, which is also what
    ``sklearn.neighbors.KNeighborsClassifier`` with uniform weights predicts. Which of several
    equidistant training points counts among the ``k`` nearest is unspecified.

    Args:
        train_x: ``(n, dim)`` floating tensor of reference points.
        train_y: ``(n,)`` integer tensor of their labels.
        test_x: ``(m, dim)`` floating tensor of query points, ``m >= 1``.
        test_y: ``(m,)`` integer tensor of their true labels.
        k: Number of neighbours, in ``[1, n]``.
        chunk_size: Number of test points whose distances are computed at once; the extra
            memory is about ``chunk_size * n`` distances.

    Returns:
        The fraction of test points whose vote equals their label.

    Raises:
        ValueError: On a shape mismatch, a non-integer label tensor, a non-finite point, an
            empty test set, or ``k`` or ``chunk_size`` out of range.
    """
    check_int("chunk_size", chunk_size, 1)
    train_x, train_y = _check_points(train_x, train_y, "train_x", "train_y")
    test_x, test_y = _check_points(test_x, test_y, "test_x", "test_y")
    check_int("k", k, 1)
    _check_knn_shapes(train_x, test_x, k)

    classes, train_codes = torch.unique(train_y, return_inverse=True)
    test_y = test_y.to(train_x.device)
    dtype = compute_dtype(train_x.dtype, test_x.dtype)
    reference = train_x.to(dtype)

    correct = 0
    for start in range(0, test_x.shape[0], chunk_size):
        queries = test_x[start : start + chunk_size].to(device=train_x.device, dtype=dtype)
        votes = _neighbour_votes(queries, reference, train_codes, classes.numel(), k)
        # argmax returns the first maximum, which is the smallest label because torch.unique
        # sorts the classes.
        predicted = classes[votes.argmax(dim=1)]
        correct += int((predicted == test_y[start : start + chunk_size]).sum())

    return correct / test_x.shape[0]


def _neighbour_votes(
    queries: torch.Tensor,
    reference: torch.Tensor,
    reference_codes: torch.Tensor,
    num_classes: int,
    k: int,
) -> torch.Tensor:
    """Return the (queries, num_classes) count of each class among the k nearest references."""
    distances = torch.cdist(queries, reference, compute_mode=_EXACT_EUCLIDEAN)
    neighbours = distances.topk(k, dim=1, largest=False).indices
    neighbour_codes = reference_codes[neighbours]

    votes = torch.zeros(queries.shape[0], num_classes, dtype=torch.int64, device=queries.device)
    votes.scatter_add_(1, neighbour_codes, torch.ones_like(neighbour_codes))
    return votes


def _cluster_mean_distances(
    x: torch.Tensor, codes: torch.Tensor, counts: torch.Tensor, chunk_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return each point's float64 distance sum within its cluster and its nearest other mean.

    The first tensor contains sums, not means, because the divisor of a singleton cluster is 0.

    The distance matrix is symmetric, so only its upper block triangle is computed: the block
    of rows ``[start, end)`` against the columns from ``start`` on. Multiplying the block by a
    one-hot matrix of the cluster codes adds each column's distance to its cluster's sum for
    every row, and the transposed block does the same for the columns after ``end``.
    """
    n = x.shape[0]
    one_hot = torch.zeros(n, counts.numel(), dtype=torch.float64, device=x.device)
    one_hot[torch.arange(n, device=x.device), codes] = 1.0
    sums = torch.zeros(n, counts.numel(), dtype=torch.float64, device=x.device)

    for start in range(0, n, chunk_size):
        end = min(start + chunk_size, n)
        distances = torch.cdist(x[start:end], x[start:], compute_mode=_EXACT_EUCLIDEAN).double()
        sums[start:end] += distances @ one_hot[start:]
        if end < n:
            sums[end:] += distances[:, end - start :].T @ one_hot[start:end]

    own = codes.unsqueeze(1)
    intra = sums.gather(1, own).squeeze(1)
    nearest = (sums / counts).scatter_(1, own, torch.inf).amin(dim=1)
    return intra, nearest


def _silhouette_from_means(
    intra_sums: torch.Tensor, nearest: torch.Tensor, own_counts: torch.Tensor
) -> torch.Tensor:
    """Return s = (b - a) / max(a, b), with 0 for singletons and for a = b = 0."""
    singleton = own_counts == 1
    intra = intra_sums / (own_counts - 1).clamp_min(1)

    scale = torch.maximum(intra, nearest)
    defined = (scale > 0) & ~singleton
    scores = (nearest - intra) / torch.where(defined, scale, torch.ones_like(scale))
    return torch.where(defined, scores, torch.zeros_like(scores))


def _encode_labels(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Return labels remapped to 0..K-1 in sorted order and the float64 size of each cluster."""
    _, codes, counts = torch.unique(labels, return_inverse=True, return_counts=True)
    return codes, counts.double()


def _divide(numerator: float, denominator: float) -> float:
    if denominator > 0:
        return numerator / denominator
    return math.inf if numerator > 0 else math.nan


def _check_points(
    x: torch.Tensor, labels: torch.Tensor, x_name: str, labels_name: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate a point set and its labels, and return both with the labels on x's device."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(
            f"{x_name} must be a torch.Tensor, got {type(x).__module__}.{type(x).__name__}. "
            "Convert it with torch.as_tensor."
        )
    if not x.is_floating_point():
        raise ValueError(f"{x_name} must be a floating tensor, got dtype {x.dtype}.")
    if x.ndim != 2:
        raise ValueError(
            f"{x_name} must have shape (n, dim), got {tuple(x.shape)}. "
            "Flatten each point into one row."
        )

    if not isinstance(labels, torch.Tensor) or not is_integer_dtype(labels.dtype):
        kind = getattr(labels, "dtype", type(labels).__name__)
        raise ValueError(
            f"{labels_name} must be an integer tensor, got {kind}. Convert it with .long()."
        )
    if labels.ndim != 1 or labels.shape[0] != x.shape[0]:
        raise ValueError(
            f"{labels_name} must have shape (n,) = ({x.shape[0]},) to match {x_name}, "
            f"got {tuple(labels.shape)}."
        )

    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{x_name} contains NaN or infinite values.")
    return x, labels.to(x.device)


def _check_cluster_count(num_clusters: int, num_samples: int) -> None:
    if not 2 <= num_clusters <= num_samples - 1:
        raise ValueError(
            f"The silhouette needs between 2 and n - 1 = {num_samples - 1} distinct labels, "
            f"got {num_clusters} for {num_samples} samples."
        )


def _check_knn_shapes(train_x: torch.Tensor, test_x: torch.Tensor, k: int) -> None:
    if train_x.shape[1] != test_x.shape[1]:
        raise ValueError(
            f"train_x and test_x must have the same number of columns, got "
            f"{train_x.shape[1]} and {test_x.shape[1]}."
        )
    if test_x.shape[0] == 0:
        raise ValueError("test_x is empty. The accuracy needs at least one test point.")
    if k > train_x.shape[0]:
        raise ValueError(
            f"k must be at most the number of training points {train_x.shape[0]}, got {k}."
        )
