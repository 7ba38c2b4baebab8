"""Train a GrassmannLinear network with DistributedDataParallel on the CPU.

    torchrun --nproc_per_node=2 docs/snippets/ddp_train.py

Run without torchrun (python docs/snippets/ddp_train.py), it trains in a group of one process.
"""

# --8<-- [start:ddp]
import gc
import os

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from grassmann_nn import GrassmannLinear, RiemannianSGD, SilhouetteLoss
from grassmann_nn.distributed import broadcast_centers, mismatched_replicas
from grassmann_nn.nn import orthonormality_error


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), GrassmannLinear(64, 8))
        self.head = nn.Linear(8, 4)

    def forward(self, inputs):
        embeddings = self.features(inputs)
        return embeddings, self.head(embeddings)


def init_process_group() -> None:
    if "RANK" in os.environ:
        # torchrun sets RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT.
        dist.init_process_group("gloo")
    else:
        dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)


def main() -> None:
    init_process_group()
    rank, world_size = dist.get_rank(), dist.get_world_size()

    # The same synthetic data set on every rank. Each rank trains on its own shard.
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(1024, 32, generator=generator)
    labels = inputs[:, :4].argmax(dim=1)
    shard = slice(rank, None, world_size)
    inputs, labels = inputs[shard], labels[shard]

    torch.manual_seed(0)
    model = Net()
    # DDP copies rank 0's parameters to all ranks here and averages gradients in backward.
    ddp_model = DistributedDataParallel(model)
    # The loss stays outside DDP because it all-reduces its centers itself.
    silhouette = SilhouetteLoss(num_classes=4, feat_dim=8)
    broadcast_centers(silhouette)
    optimizer = RiemannianSGD(ddp_model.parameters(), lr=0.05, momentum=0.9)

    batch_size = 64
    for epoch in range(3):
        for start in range(0, len(inputs), batch_size):
            batch = slice(start, start + batch_size)
            optimizer.zero_grad()
            # bfloat16 autocast on the CPU. On GPUs use "cuda" with bfloat16 or float16.
            with torch.autocast("cpu", dtype=torch.bfloat16):
                embeddings, logits = ddp_model(inputs[batch])
                loss = F.cross_entropy(logits, labels[batch])
                loss = loss + 0.5 * silhouette(embeddings, labels[batch])
            loss.backward()
            optimizer.step()

        if rank == 0:
            error = orthonormality_error(model)["features.2.weight"]
            print(f"epoch {epoch}: loss {loss.item():.4f}, max |W W^T - I| {error:.1e}")

    # All ranks now have the same parameters and centers, bit for bit.
    assert mismatched_replicas(model) == []
    assert mismatched_replicas(silhouette) == []

    # DDP sits in a reference cycle, so collect it while the group exists. Freed at interpreter
    # exit instead, it made some gloo runs with torch 2.14 abort with "terminate called without
    # an active exception".
    del ddp_model
    gc.collect()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
# --8<-- [end:ddp]
