"""CenterLoss, ContrastiveCenterLoss and the shared center update, against loop oracles."""

import math

import pytest
import torch

from grassmann_nn.losses import CenterLoss, ContrastiveCenterLoss, SilhouetteLoss

LOSS_CLASSES = [CenterLoss, ContrastiveCenterLoss, SilhouetteLoss]


def center_loss_oracle(features, labels, centers):
    total = 0.0
    for feature, label in zip(features.tolist(), labels.tolist(), strict=True):
        total += 0.5 * math.dist(feature, centers[label].tolist()) ** 2
    return total / len(features)


def contrastive_center_oracle(features, labels, centers, delta):
    total = 0.0
    for feature, label in zip(features.tolist(), labels.tolist(), strict=True):
        squared = [math.dist(feature, center) ** 2 for center in centers.tolist()]
        others = sum(d for k, d in enumerate(squared) if k != label)
        total += 0.5 * squared[label] / (others + delta)
    return total / len(features)


def center_update_oracle(centers, features, labels, alpha):
    updated = centers.clone()
    for j in range(centers.shape[0]):
        members = [f for f, y in zip(features, labels.tolist(), strict=True) if y == j]
        if not members:
            continue
        step = sum(centers[j] - f for f in members) / (1 + len(members))
        updated[j] = centers[j] - alpha * step
    return updated


def random_case(batch=12, feat_dim=4, num_classes=5, seed=0, device="cpu"):
    generator = torch.Generator().manual_seed(seed)
    centers = torch.randn(num_classes, feat_dim, generator=generator, dtype=torch.float64)
    features = torch.randn(batch, feat_dim, generator=generator, dtype=torch.float64)
    labels = torch.randint(0, num_classes, (batch,), generator=generator)
    return centers.to(device), features.to(device), labels.to(device)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_center_loss_matches_loop_oracle(seed, device):
    centers, features, labels = random_case(seed=seed, device=device)
    loss_fn = CenterLoss(5, 4, initial_centers=centers).eval()

    loss = loss_fn(features, labels)

    expected = center_loss_oracle(features.cpu(), labels.cpu(), centers.cpu())
    assert loss.item() == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("delta", [1.0, 1e-3])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_contrastive_center_matches_loop_oracle(seed, delta, device):
    centers, features, labels = random_case(seed=seed, device=device)
    loss_fn = ContrastiveCenterLoss(5, 4, delta=delta, initial_centers=centers).eval()

    loss = loss_fn(features, labels)

    expected = contrastive_center_oracle(features.cpu(), labels.cpu(), centers.cpu(), delta)
    assert loss.item() == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("loss_class", [CenterLoss, ContrastiveCenterLoss])
def test_center_losses_gradcheck(loss_class):
    centers, features, labels = random_case(batch=8, seed=3)
    loss_fn = loss_class(5, 4, initial_centers=centers).eval()
    features.requires_grad_(True)

    assert torch.autograd.gradcheck(lambda f: loss_fn(f, labels), (features,))


@pytest.mark.parametrize("loss_class", LOSS_CLASSES)
def test_center_update_moves_only_present_classes(loss_class, device):
    loss_fn = loss_class(10, 8, alpha=0.5).to(device).train()
    features = torch.randn(4, 8, device=device)
    labels = torch.full((4,), 3, device=device)
    centers_before = loss_fn.centers.clone()

    loss_fn(features, labels)

    expected_row = 0.5 * features.sum(dim=0) / 5
    torch.testing.assert_close(loss_fn.centers[3], expected_row, rtol=0, atol=1e-6)
    untouched = [j for j in range(10) if j != 3]
    assert torch.equal(loss_fn.centers[untouched], centers_before[untouched])
    assert loss_fn.seen.tolist() == [j == 3 for j in range(10)]


@pytest.mark.parametrize("alpha", [0.0, 0.3, 1.0])
@pytest.mark.parametrize("seed", [0, 1])
def test_center_update_matches_loop_oracle(alpha, seed):
    centers, features, labels = random_case(batch=20, seed=seed)
    loss_fn = CenterLoss(5, 4, alpha=alpha, initial_centers=centers)

    loss_fn.update_centers(features, labels)

    expected = center_update_oracle(centers, features, labels, alpha)
    torch.testing.assert_close(loss_fn.centers, expected, rtol=1e-12, atol=1e-12)


def test_center_loss_uses_centers_before_update():
    centers, features, labels = random_case(seed=4)
    loss_fn = CenterLoss(5, 4, initial_centers=centers).train()

    loss = loss_fn(features, labels)

    assert loss.item() == pytest.approx(center_loss_oracle(features, labels, centers), rel=1e-12)
    expected = center_update_oracle(centers, features, labels, 0.5)
    torch.testing.assert_close(loss_fn.centers, expected, rtol=1e-12, atol=1e-12)


class _TwoRankCenterLoss(CenterLoss):
    """Stands in for a distributed subclass whose other rank saw the same batch."""

    def _reduce_class_sums(self, sums, counts):
        return 2 * sums, 2 * counts


def test_center_update_applies_reduced_sums():
    centers, features, labels = random_case(seed=5)
    loss_fn = _TwoRankCenterLoss(5, 4, initial_centers=centers)

    loss_fn.update_centers(features, labels)

    doubled = center_update_oracle(centers, features.repeat(2, 1), labels.repeat(2), 0.5)
    torch.testing.assert_close(loss_fn.centers, doubled, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("batch", [4, 32])
@pytest.mark.parametrize("loss_class", LOSS_CLASSES)
def test_center_losses_zero_when_features_equal_centers(loss_class, batch):
    # The matrix-product form |x|^2 + |c|^2 - 2 x.c, which torch.cdist uses by default above 25
    # rows, gives self-distances up to about 0.1 instead of 0 on these float32 inputs. The
    # losses must use exact differences.
    features = 10 * torch.randn(batch, 256, generator=torch.Generator().manual_seed(9))
    loss_fn = loss_class(batch, 256, initial_centers=features.clone())
    features.requires_grad_(True)

    loss = loss_fn(features, torch.arange(batch))
    loss.backward()

    assert loss.item() == 0.0
    assert torch.isfinite(features.grad).all()
    assert torch.equal(features.grad, torch.zeros_like(features))


@pytest.mark.parametrize("loss_class", [CenterLoss, ContrastiveCenterLoss])
def test_center_losses_one_class_batch(loss_class, device):
    loss_fn = loss_class(10, 8).to(device)
    features = torch.randn(4, 8, device=device, requires_grad=True)

    loss = loss_fn(features, torch.full((4,), 3, device=device))
    loss.backward()

    assert torch.isfinite(loss)
    assert torch.isfinite(features.grad).all()


@pytest.mark.parametrize("loss_class", LOSS_CLASSES)
def test_center_losses_identical_zero_embeddings(loss_class):
    loss_fn = loss_class(2, 8)
    features = torch.zeros(4, 8, requires_grad=True)

    loss = loss_fn(features, torch.tensor([0, 0, 1, 1]))
    loss.backward()

    assert torch.isfinite(loss)
    assert torch.isfinite(features.grad).all()


@pytest.mark.parametrize("loss_class", LOSS_CLASSES)
def test_center_losses_empty_batch(loss_class):
    loss_fn = loss_class(3, 2)
    features = torch.zeros(0, 2, requires_grad=True)

    loss = loss_fn(features, torch.zeros(0, dtype=torch.int64))
    loss.backward()

    assert loss.item() == 0.0
    assert torch.equal(loss_fn.centers, torch.zeros(3, 2))


@pytest.mark.parametrize("loss_class", LOSS_CLASSES)
def test_center_losses_eval_mode_keeps_centers(loss_class):
    loss_fn = loss_class(4, 3).eval()

    loss_fn(torch.randn(10, 3), torch.arange(10) % 4)

    assert torch.equal(loss_fn.centers, torch.zeros(4, 3))
    assert not loss_fn.seen.any()


@pytest.mark.parametrize("loss_class", LOSS_CLASSES)
def test_center_losses_state_dict_contains_centers(loss_class):
    loss_fn = loss_class(4, 3)
    loss_fn(torch.randn(10, 3), torch.arange(10) % 4)

    restored = loss_class(4, 3)
    restored.load_state_dict(loss_fn.state_dict())

    assert "centers" in loss_fn.state_dict()
    assert torch.equal(restored.centers, loss_fn.centers)


@pytest.mark.parametrize("loss_class", LOSS_CLASSES)
def test_center_update_from_float16_is_float32(loss_class):
    loss_fn = loss_class(4, 8)
    features = torch.randn(12, 8).half()

    loss = loss_fn(features, torch.arange(12) % 4)

    expected = center_update_oracle(torch.zeros(4, 8), features.float(), torch.arange(12) % 4, 0.5)
    assert loss.dtype == torch.float32
    assert loss_fn.centers.dtype == torch.float32
    torch.testing.assert_close(loss_fn.centers, expected)


BAD_BATCHES = [
    pytest.param(
        torch.randn(4, 3),
        torch.tensor([0, 1, 4, 2]),
        r"\[0, 4\).*got 4 at index 2",
        id="label-too-large",
    ),
    pytest.param(
        torch.randn(4, 3), torch.tensor([0, -1, 1, 2]), "got -1 at index 1", id="label-negative"
    ),
    pytest.param(
        torch.randn(4, 3), torch.tensor([0.0, 1.0, 1.0, 2.0]), "integer tensor", id="float-labels"
    ),
    pytest.param(
        torch.randn(4, 5), torch.tensor([0, 1, 1, 2]), r"\(batch, 3\), got \(4, 5\)", id="feat-dim"
    ),
    pytest.param(torch.randn(4, 3), torch.tensor([0, 1, 1]), r"\(4,\) to match", id="label-count"),
    pytest.param(
        torch.tensor([[0.0, 1, 2], [0, float("nan"), 0]]),
        torch.tensor([0, 1]),
        r"nan at \[1, 1\]",
        id="nan",
    ),
    pytest.param(
        torch.randint(0, 3, (4, 3)),
        torch.tensor([0, 1, 1, 2]),
        "floating tensor",
        id="int-embeddings",
    ),
]


@pytest.mark.parametrize(("embeddings", "labels", "message"), BAD_BATCHES)
@pytest.mark.parametrize("loss_class", LOSS_CLASSES)
def test_center_losses_reject_invalid_batches(loss_class, embeddings, labels, message):
    loss_fn = loss_class(4, 3)

    with pytest.raises(ValueError, match=message):
        loss_fn(embeddings, labels)

    assert torch.equal(loss_fn.centers, torch.zeros(4, 3))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        pytest.param({"num_classes": 0}, "num_classes", id="num-classes"),
        pytest.param({"alpha": -0.1}, "alpha must be in", id="alpha"),
        pytest.param({"initial_centers": torch.zeros(3, 3)}, r"shape", id="centers-shape"),
        pytest.param(
            {"initial_centers": torch.full((4, 3), math.inf)}, "NaN or infinite", id="inf"
        ),
    ],
)
@pytest.mark.parametrize("loss_class", [CenterLoss, ContrastiveCenterLoss])
def test_center_losses_reject_invalid_arguments(loss_class, kwargs, message):
    arguments = {"num_classes": 4, "feat_dim": 3, **kwargs}
    with pytest.raises(ValueError, match=message):
        loss_class(**arguments)


@pytest.mark.parametrize("delta", [0.0, -1.0])
def test_contrastive_center_rejects_non_positive_delta(delta):
    with pytest.raises(ValueError, match="delta must be positive"):
        ContrastiveCenterLoss(4, 3, delta=delta)
