"""Data-parallel training with torch.distributed: centers and parameters stay in sync.

A module fixture spawns two gloo processes on the CPU, connected through a file store and the
loopback interface. Each rank trains on its own batches and saves its state. The tests
compare the ranks with each other and with one process trained on the concatenated batch.
The other tests run in this process with a one-rank group or none.
"""

import gc
import os
import socket
import warnings
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from grassmann_nn import (
    CenterLoss,
    ContrastiveCenterLoss,
    GrassmannLinear,
    RiemannianSGD,
    SilhouetteLoss,
)
from grassmann_nn.distributed import (
    all_reduce_class_sums,
    broadcast_centers,
    is_distributed,
    mismatched_replicas,
    reduce_class_sums,
)
from grassmann_nn.nn import orthonormality_error
from grassmann_nn.testing import tolerance

pytestmark = pytest.mark.skipif(
    not (dist.is_available() and dist.is_gloo_available()),
    reason="needs torch.distributed with the gloo backend",
)

WORLD_SIZE = 2
STEPS = 4
BATCH_SIZE = 12
IN_FEATURES = 16
EMBEDDING_DIM = 4
NUM_CLASSES = 3
LOSSES = {
    "center": CenterLoss,
    "contrastive_center": ContrastiveCenterLoss,
    "silhouette": SilhouetteLoss,
}


# Data, model and training loop, shared by the ranks and the single-process reference.


def training_batch(step: int, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1000 * step + rank)
    inputs = torch.randn(BATCH_SIZE, IN_FEATURES, generator=generator)
    labels = torch.randint(0, NUM_CLASSES, (BATCH_SIZE,), generator=generator)
    return inputs, labels


def embedding_batch(step: int, rank: int, *, exact: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Return embeddings and labels for a center update. Rank 1 has an empty batch at step 1.

    With ``exact`` the embeddings are multiples of 1/8 in [-4, 4], so every sum of them is
    exact in float32 and the order of summation cannot change a bit of the centers.
    """
    generator = torch.Generator().manual_seed(2000 * step + rank)
    size = 0 if (rank, step) == (1, 1) else 5 + 3 * rank
    if exact:
        embeddings = torch.randint(-32, 33, (size, EMBEDDING_DIM), generator=generator) / 8
    else:
        embeddings = torch.randn(size, EMBEDDING_DIM, generator=generator)
    labels = torch.randint(0, NUM_CLASSES, (size,), generator=generator)
    return embeddings, labels


def concatenated(batches: list[tuple[torch.Tensor, torch.Tensor]]):
    return torch.cat([batch[0] for batch in batches]), torch.cat([batch[1] for batch in batches])


class EmbeddingNet(nn.Module):
    """Linear, tanh, a Grassmann projection to the embedding, and a classifier head."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Linear(IN_FEATURES, 8), nn.Tanh(), GrassmannLinear(8, EMBEDDING_DIM)
        )
        self.head = nn.Linear(EMBEDDING_DIM, NUM_CLASSES)

    def forward(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        embeddings = self.features(inputs)
        return embeddings, self.head(embeddings)


def train(model: nn.Module, loss_fn: nn.Module, batches) -> RiemannianSGD:
    optimizer = RiemannianSGD(model.parameters(), lr=0.1, momentum=0.9)
    for inputs, labels in batches:
        optimizer.zero_grad()
        embeddings, logits = model(inputs)
        loss = F.cross_entropy(logits, labels) + 0.5 * loss_fn(embeddings, labels)
        loss.backward()
        optimizer.step()
    return optimizer


# What each rank runs.


def loopback_interface() -> str | None:
    """Return the name of the loopback network interface ("lo" on Linux, "lo0" on macOS)."""
    for _, name in socket.if_nameindex():
        if name.startswith("lo"):
            return name
    return None


def configure_rank_process() -> None:
    # pytest's warning filters do not reach spawned processes, so they are set again here.
    warnings.simplefilter("error")
    warnings.filterwarnings("ignore", r"`torch\.jit\.script", FutureWarning)
    torch.set_num_threads(1)

    interface = loopback_interface()
    if interface is not None:
        # Gloo otherwise listens on the address that the host name resolves to.
        os.environ["GLOO_SOCKET_IFNAME"] = interface


def ddp_results(rank: int) -> dict:
    torch.manual_seed(rank)  # DDP must replace rank 1's initial parameters by rank 0's.
    model = EmbeddingNet()
    pointers = {name: param.data_ptr() for name, param in model.named_parameters()}
    loss_fn = CenterLoss(NUM_CLASSES, EMBEDDING_DIM)

    ddp = DistributedDataParallel(model)
    optimizer = train(ddp, loss_fn, [training_batch(step, rank) for step in range(STEPS)])

    storage_kept = all(
        param.data_ptr() == pointers[name] for name, param in model.named_parameters()
    )
    momentum = {
        name: optimizer.state[param]["momentum_buffer"] for name, param in model.named_parameters()
    }
    return {
        "params": {name: param.detach().clone() for name, param in model.named_parameters()},
        "momentum": momentum,
        "centers": loss_fn.centers.clone(),
        "storage_kept": storage_kept,
        "mismatched_model": mismatched_replicas(model),
        "mismatched_loss": mismatched_replicas(loss_fn),
    }


def center_results(rank: int, *, exact: bool) -> dict:
    results = {}
    for name, loss_class in LOSSES.items():
        loss_fn = loss_class(NUM_CLASSES, EMBEDDING_DIM)
        for step in range(STEPS):
            loss_fn(*embedding_batch(step, rank, exact=exact))
        results[name] = {"centers": loss_fn.centers.clone(), "seen": loss_fn.seen.clone()}
    return results


def broadcast_results(rank: int) -> dict:
    loss_fn = SilhouetteLoss(NUM_CLASSES, EMBEDDING_DIM, distributed=False)
    if rank == 0:
        loss_fn.update_centers(torch.ones(2, EMBEDDING_DIM), torch.tensor([0, 0]))

    container = nn.ModuleDict({"loss": loss_fn})
    count = broadcast_centers(container)
    return {"count": count, "centers": loss_fn.centers.clone(), "seen": loss_fn.seen.clone()}


def diverged_results(rank: int) -> list[str]:
    layer = nn.Linear(2, 2)
    with torch.no_grad():
        layer.weight.fill_(1.0)
        layer.bias.fill_(float(rank))
    return mismatched_replicas(layer)


def run_rank(rank: int, init_method: str, out_dir: str) -> None:
    configure_rank_process()
    dist.init_process_group(
        "gloo",
        init_method=init_method,
        rank=rank,
        world_size=WORLD_SIZE,
        timeout=timedelta(seconds=60),
    )
    try:
        results = {
            "auto": is_distributed(),
            "ddp": ddp_results(rank),
            "exact_centers": center_results(rank, exact=True),
            "random_centers": center_results(rank, exact=False),
            "broadcast": broadcast_results(rank),
            "diverged": diverged_results(rank),
        }
    finally:
        # Free the DDP model, which sits in a reference cycle, while the group exists. Freed at
        # interpreter exit instead, it made some gloo runs abort (torch 2.14).
        gc.collect()
        dist.destroy_process_group()
    torch.save(results, Path(out_dir) / f"rank{rank}.pt")


@pytest.fixture(scope="module")
def ranks(tmp_path_factory) -> list[dict]:
    """Run two ranks once and return what each saved."""
    out_dir = tmp_path_factory.mktemp("ranks")
    init_method = (out_dir / "store").as_uri()
    mp.spawn(run_rank, args=(init_method, str(out_dir)), nprocs=WORLD_SIZE, join=True)
    return [torch.load(out_dir / f"rank{rank}.pt", weights_only=True) for rank in range(WORLD_SIZE)]


# Two ranks.


def test_two_ranks_detected(ranks):
    assert [result["auto"] for result in ranks] == [True, True]


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_centers_identical_on_ranks(ranks, name):
    for kind in ("exact_centers", "random_centers"):
        first, second = (result[kind][name] for result in ranks)
        assert torch.equal(first["centers"], second["centers"]), kind
        assert torch.equal(first["seen"], second["seen"]), kind


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_centers_equal_concatenated_update(ranks, name):
    reference = LOSSES[name](NUM_CLASSES, EMBEDDING_DIM, distributed=False)
    for step in range(STEPS):
        batches = [embedding_batch(step, rank, exact=True) for rank in range(WORLD_SIZE)]
        reference(*concatenated(batches))

    result = ranks[0]["exact_centers"][name]
    assert torch.equal(result["centers"], reference.centers)
    assert torch.equal(result["seen"], reference.seen)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_random_centers_match_concatenated_update(ranks, name):
    reference = LOSSES[name](NUM_CLASSES, EMBEDDING_DIM, distributed=False)
    for step in range(STEPS):
        batches = [embedding_batch(step, rank, exact=False) for rank in range(WORLD_SIZE)]
        reference(*concatenated(batches))

    # Summing per rank and then across ranks changes the order of the float32 additions.
    result = ranks[0]["random_centers"][name]
    torch.testing.assert_close(result["centers"], reference.centers, rtol=1e-6, atol=1e-6)
    assert torch.equal(result["seen"], reference.seen)


def test_ddp_parameters_bit_identical(ranks):
    first, second = (result["ddp"] for result in ranks)
    for name, param in first["params"].items():
        assert torch.equal(param, second["params"][name]), name
        assert torch.equal(first["momentum"][name], second["momentum"][name]), name
    assert torch.equal(first["centers"], second["centers"])


def test_ddp_keeps_parameter_storage(ranks):
    assert [result["ddp"]["storage_kept"] for result in ranks] == [True, True]


def test_ddp_weight_orthonormal(ranks):
    model = EmbeddingNet()
    model.load_state_dict(ranks[0]["ddp"]["params"])

    error = orthonormality_error(model)["features.2.weight"]
    assert error <= tolerance(torch.float32, 8)


def test_ddp_matches_single_process(ranks):
    torch.manual_seed(0)
    model = EmbeddingNet()
    loss_fn = CenterLoss(NUM_CLASSES, EMBEDDING_DIM, distributed=False)
    batches = [
        concatenated([training_batch(step, rank) for rank in range(WORLD_SIZE)])
        for step in range(STEPS)
    ]
    train(model, loss_fn, batches)

    # DDP averages the gradients of the two half batches, and one process takes the gradient
    # of the whole batch. Both are the same mean, summed in another order.
    result = ranks[0]["ddp"]
    for name, param in model.named_parameters():
        torch.testing.assert_close(result["params"][name], param.detach(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(result["centers"], loss_fn.centers, rtol=1e-5, atol=1e-5)


def test_mismatched_replicas_empty_after_ddp(ranks):
    for result in ranks:
        assert result["ddp"]["mismatched_model"] == []
        assert result["ddp"]["mismatched_loss"] == []


def test_mismatched_replicas_names_diverged_tensor(ranks):
    assert [result["diverged"] for result in ranks] == [["bias"], ["bias"]]


def test_broadcast_centers_copies_rank_zero(ranks):
    first, second = (result["broadcast"] for result in ranks)
    assert first["count"] == second["count"] == 1
    assert torch.equal(second["centers"], first["centers"])
    assert second["seen"].tolist() == [True, False, False]
    assert first["centers"][0].abs().sum() > 0


# One rank, in this process.


@pytest.fixture
def one_rank_group(monkeypatch):
    """Initialize a one-rank gloo group in this process and destroy it afterwards."""
    interface = loopback_interface()
    if interface is not None:
        monkeypatch.setenv("GLOO_SOCKET_IFNAME", interface)

    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    yield
    dist.destroy_process_group()


@pytest.fixture
def all_reduce_calls(monkeypatch) -> list[int]:
    """Count the calls of torch.distributed.all_reduce."""
    calls = []
    original = dist.all_reduce

    def counting_all_reduce(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(dist, "all_reduce", counting_all_reduce)
    return calls


def update_twice(loss_fn: nn.Module) -> torch.Tensor:
    for step in range(2):
        loss_fn(*embedding_batch(step, 0, exact=False))
    return loss_fn.centers


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_one_rank_auto_skips_all_reduce(one_rank_group, all_reduce_calls, name):
    automatic = update_twice(LOSSES[name](NUM_CLASSES, EMBEDDING_DIM))
    local = update_twice(LOSSES[name](NUM_CLASSES, EMBEDDING_DIM, distributed=False))

    assert not is_distributed()
    assert all_reduce_calls == []
    assert torch.equal(automatic, local)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_one_rank_forced_equals_local(one_rank_group, all_reduce_calls, name):
    forced = update_twice(LOSSES[name](NUM_CLASSES, EMBEDDING_DIM, distributed=True))
    local = update_twice(LOSSES[name](NUM_CLASSES, EMBEDDING_DIM, distributed=False))

    assert len(all_reduce_calls) == 2
    assert torch.equal(forced, local)


def test_all_reduce_class_sums_one_rank(one_rank_group):
    sums = torch.randn(NUM_CLASSES, EMBEDDING_DIM)
    counts = torch.tensor([2, 0, 5])
    original_sums = sums.clone()

    total_sums, total_counts = all_reduce_class_sums(sums, counts)

    assert torch.equal(total_sums, sums)
    assert torch.equal(total_counts, counts)
    assert total_counts.dtype == torch.int64
    assert total_sums.data_ptr() != sums.data_ptr()
    assert torch.equal(sums, original_sums)


def test_mismatched_replicas_one_rank(one_rank_group):
    assert mismatched_replicas(EmbeddingNet()) == []


def test_broadcast_centers_rejects_module_without_loss(one_rank_group):
    with pytest.raises(ValueError, match="contains no center loss"):
        broadcast_centers(nn.Linear(2, 2))


# No process group.


def test_not_distributed_without_group():
    assert not dist.is_initialized()
    assert not is_distributed()


def test_auto_without_group_returns_inputs():
    sums, counts = torch.zeros(NUM_CLASSES, EMBEDDING_DIM), torch.zeros(NUM_CLASSES)

    reduced_sums, reduced_counts = reduce_class_sums(sums, counts)

    assert reduced_sums is sums
    assert reduced_counts is counts


def test_forced_without_group_raises():
    loss_fn = CenterLoss(NUM_CLASSES, EMBEDDING_DIM, distributed=True)
    with pytest.raises(RuntimeError, match="init_process_group"):
        loss_fn(*embedding_batch(0, 0, exact=False))

    assert torch.equal(loss_fn.centers, torch.zeros(NUM_CLASSES, EMBEDDING_DIM))
    assert not loss_fn.seen.any()


def test_broadcast_centers_without_group_raises():
    with pytest.raises(RuntimeError, match="init_process_group"):
        broadcast_centers(CenterLoss(NUM_CLASSES, EMBEDDING_DIM))


def test_reduce_class_sums_rejects_non_bool():
    sums, counts = torch.zeros(NUM_CLASSES, EMBEDDING_DIM), torch.zeros(NUM_CLASSES)
    with pytest.raises(TypeError, match="distributed must be None, True or False"):
        reduce_class_sums(sums, counts, distributed="yes")


@pytest.mark.parametrize(
    ("sums_shape", "counts_shape"),
    [((3, 4), (4,)), ((3,), (3,)), ((3, 4), (3, 1))],
    ids=["class_count", "sums_1d", "counts_2d"],
)
def test_all_reduce_class_sums_rejects_shapes(sums_shape, counts_shape):
    with pytest.raises(ValueError, match="Expected sums of shape"):
        all_reduce_class_sums(torch.zeros(sums_shape), torch.zeros(counts_shape))
