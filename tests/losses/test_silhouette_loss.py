"""SilhouetteLoss against a float64 loop oracle, plus its edge cases and input checks."""

import math

import pytest
import torch

from grassmann_nn.losses import SilhouetteLoss

VARIANTS = [
    pytest.param({}, id="plain"),
    pytest.param({"squared": True}, id="squared"),
    pytest.param({"soft_min_temperature": 0.5}, id="soft-min"),
    pytest.param({"squared": True, "soft_min_temperature": 2.0}, id="squared-soft-min"),
]


def silhouette_oracle(features, labels, centers, seen, squared=False, temperature=None):
    """Mean of 1 - s_i over the samples whose class and some other class are seen, by loops."""
    terms = []
    for feature, label in zip(features.tolist(), labels.tolist(), strict=True):
        distances = [math.dist(feature, center) for center in centers.tolist()]
        if squared:
            distances = [d * d for d in distances]

        others = [d for k, d in enumerate(distances) if k != label and bool(seen[k])]
        if not bool(seen[label]) or not others:
            continue

        own = distances[label]
        if temperature is None:
            nearest = min(others)
        else:
            weights = [math.exp(-d / temperature) for d in others]
            nearest = sum(w * d for w, d in zip(weights, others, strict=True)) / sum(weights)

        scale = max(own, nearest)
        score = 0.0 if scale == 0 else (nearest - own) / scale
        terms.append(1.0 - score)

    return sum(terms) / len(terms) if terms else 0.0


def random_loss(num_classes=5, feat_dim=4, seed=0, device="cpu", **options):
    """Return an eval-mode float64 loss whose centers are random and all seen."""
    generator = torch.Generator().manual_seed(seed)
    centers = torch.randn(num_classes, feat_dim, generator=generator, dtype=torch.float64)
    loss = SilhouetteLoss(num_classes, feat_dim, initial_centers=centers, **options)
    return loss.to(device).eval()


def random_batch(batch, feat_dim, num_classes, seed, device="cpu"):
    generator = torch.Generator().manual_seed(seed + 1000)
    features = torch.randn(batch, feat_dim, generator=generator, dtype=torch.float64)
    labels = torch.randint(0, num_classes, (batch,), generator=generator)
    return features.to(device), labels.to(device)


@pytest.mark.parametrize("options", VARIANTS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_silhouette_matches_loop_oracle(options, seed, device):
    loss_fn = random_loss(seed=seed, device=device, **options)
    features, labels = random_batch(16, 4, 5, seed, device)

    loss = loss_fn(features, labels)

    expected = silhouette_oracle(
        features.cpu(),
        labels.cpu(),
        loss_fn.centers.cpu(),
        loss_fn.seen.cpu(),
        options.get("squared", False),
        options.get("soft_min_temperature"),
    )
    assert loss.dtype == torch.float64
    assert loss.item() == pytest.approx(expected, rel=1e-12, abs=1e-12)


def test_silhouette_skips_unseen_classes():
    loss_fn = SilhouetteLoss(6, 3).double()
    warmup, warmup_labels = random_batch(12, 3, 3, seed=4)
    loss_fn.update_centers(warmup, warmup_labels % 3)
    features, labels = random_batch(20, 3, 6, seed=5)

    loss = loss_fn.eval()(features, labels)

    assert loss_fn.seen.tolist() == [True, True, True, False, False, False]
    expected = silhouette_oracle(features, labels, loss_fn.centers, loss_fn.seen)
    assert loss.item() == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("options", VARIANTS)
def test_silhouette_gradcheck(options):
    loss_fn = random_loss(seed=3, **options)
    features, labels = random_batch(8, 4, 5, seed=3)
    features.requires_grad_(True)

    assert torch.autograd.gradcheck(lambda f: loss_fn(f, labels), (features,))


def test_silhouette_uses_centers_before_update():
    loss_fn = SilhouetteLoss(4, 3, alpha=0.5, initial_centers=torch.eye(4, 3).double())
    features, labels = random_batch(10, 3, 4, seed=6)
    centers_before = loss_fn.centers.clone()

    loss = loss_fn.train()(features, labels)

    expected = silhouette_oracle(features, labels, centers_before, loss_fn.seen)
    assert loss.item() == pytest.approx(expected, rel=1e-12)
    assert not torch.equal(loss_fn.centers, centers_before)


def test_silhouette_backward_after_center_update():
    loss_fn = SilhouetteLoss(4, 3, initial_centers=torch.randn(4, 3))
    features = torch.randn(10, 3, requires_grad=True)
    labels = torch.arange(10) % 4

    loss_fn.train()(features, labels).backward()

    assert torch.isfinite(features.grad).all()


def test_silhouette_one_class_fresh_module_is_zero(device):
    loss_fn = SilhouetteLoss(10, 8).to(device)
    features = torch.randn(4, 8, device=device, requires_grad=True)
    labels = torch.full((4,), 3, device=device)

    loss = loss_fn(features, labels)
    loss.backward()

    assert loss.item() == 0.0
    assert torch.equal(features.grad, torch.zeros_like(features))


def test_silhouette_one_class_uses_centers_seen_before(device):
    loss_fn = SilhouetteLoss(10, 8).double().to(device)
    warmup, warmup_labels = random_batch(40, 8, 10, seed=7, device=device)
    loss_fn.update_centers(warmup, warmup_labels)
    features = torch.randn(4, 8, dtype=torch.float64, device=device, requires_grad=True)
    labels = torch.full((4,), 3, device=device)
    centers_before = loss_fn.centers.clone().cpu()

    loss = loss_fn(features, labels)
    loss.backward()

    expected = silhouette_oracle(
        features.detach().cpu(), labels.cpu(), centers_before, loss_fn.seen.cpu()
    )
    assert loss.item() == pytest.approx(expected, rel=1e-12)
    assert torch.isfinite(features.grad).all()
    assert features.grad.abs().sum() > 0


@pytest.mark.parametrize("options", VARIANTS)
def test_silhouette_identical_zero_embeddings(options, device):
    loss_fn = SilhouetteLoss(2, 8, initial_centers=torch.zeros(2, 8), **options).to(device)
    features = torch.zeros(4, 8, device=device, requires_grad=True)
    labels = torch.tensor([0, 0, 1, 1], device=device)

    loss = loss_fn(features, labels)
    loss.backward()

    # a_i = b_i = 0 for every sample, so each s_i is 0 and the loss is 1.
    assert loss.item() == 1.0
    assert torch.isfinite(features.grad).all()
    assert torch.equal(loss_fn.centers, torch.zeros(2, 8, device=device))


@pytest.mark.parametrize("options", VARIANTS)
def test_silhouette_duplicated_sample_on_center(options):
    features = torch.randn(6, 5, dtype=torch.float64)
    features[1] = features[0]
    labels = torch.tensor([0, 0, 1, 2, 1, 2])
    # Sample 0 and its copy sit on their own center. Sample 3 sits on another class's center.
    centers = torch.randn(3, 5, dtype=torch.float64)
    centers[0] = features[0]
    centers[1] = features[3]
    loss_fn = SilhouetteLoss(3, 5, initial_centers=centers, **options)
    features.requires_grad_(True)

    loss = loss_fn(features, labels)
    loss.backward()

    assert torch.isfinite(loss)
    assert torch.isfinite(features.grad).all()
    expected = silhouette_oracle(
        features.detach(),
        labels,
        centers,
        loss_fn.seen,
        options.get("squared", False),
        options.get("soft_min_temperature"),
    )
    assert loss.item() == pytest.approx(expected, rel=1e-12)


def test_silhouette_small_temperature_approaches_hard_min():
    hard = random_loss(seed=8)
    soft = random_loss(seed=8, soft_min_temperature=1e-4)
    features, labels = random_batch(16, 4, 5, seed=8)

    assert soft(features, labels).item() == pytest.approx(hard(features, labels).item(), abs=1e-6)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_silhouette_low_precision_computes_in_float32(dtype):
    loss_fn = SilhouetteLoss(4, 8, initial_centers=torch.randn(4, 8))
    features = torch.randn(12, 8).to(dtype).requires_grad_(True)
    labels = torch.arange(12) % 4

    loss = loss_fn(features, labels)
    loss.backward()

    assert loss.dtype == torch.float32
    assert features.grad.dtype == dtype
    assert torch.isfinite(features.grad.float()).all()
    assert loss_fn.centers.dtype == torch.float32


def test_silhouette_eval_mode_keeps_centers():
    loss_fn = SilhouetteLoss(4, 3, initial_centers=torch.randn(4, 3)).eval()
    centers_before = loss_fn.centers.clone()

    loss_fn(torch.randn(10, 3), torch.arange(10) % 4)

    assert torch.equal(loss_fn.centers, centers_before)


def test_silhouette_state_dict_round_trip():
    loss_fn = SilhouetteLoss(4, 3)
    loss_fn(torch.randn(10, 3), torch.arange(10) % 4)

    restored = SilhouetteLoss(4, 3)
    restored.load_state_dict(loss_fn.state_dict())

    assert set(loss_fn.state_dict()) == {"centers", "seen"}
    assert torch.equal(restored.centers, loss_fn.centers)
    assert torch.equal(restored.seen, loss_fn.seen)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        pytest.param({"num_classes": 1}, "num_classes >= 2", id="one-class"),
        pytest.param({"soft_min_temperature": 0.0}, "soft_min_temperature", id="zero-temperature"),
        pytest.param({"alpha": 1.5}, "alpha must be in", id="alpha"),
        pytest.param({"feat_dim": 0}, "feat_dim", id="feat-dim"),
    ],
)
def test_silhouette_rejects_invalid_arguments(kwargs, message):
    arguments = {"num_classes": 4, "feat_dim": 3, **kwargs}
    with pytest.raises(ValueError, match=message):
        SilhouetteLoss(**arguments)
