"""One DEFRAG training step: cross-entropy plus the silhouette loss, Grassmann feature layer."""

# --8<-- [start:step]
import torch
from torch import nn

from grassmann_nn.losses import SilhouetteLoss
from grassmann_nn.nn import GrassmannLinear
from grassmann_nn.optim import RiemannianSGD


class FeatureNet(nn.Module):
    """Backbone, a Grassmann feature layer and a linear classifier."""

    def __init__(self, in_features=784, hidden=256, feature_dim=8, num_classes=10):
        super().__init__()
        # examples/defrag/model.py has the two convolutional layers of the DEFRAG paper here.
        self.backbone = nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU())
        self.feature = GrassmannLinear(hidden, feature_dim)  # orthonormal rows, no activation
        self.classifier = nn.Linear(feature_dim, num_classes)

    def forward(self, images):
        features = self.feature(self.backbone(images.flatten(1)))
        return self.classifier(features), features


torch.manual_seed(0)
model = FeatureNet()
silhouette = SilhouetteLoss(num_classes=10, feat_dim=8, alpha=0.5)
optimizer = RiemannianSGD(model.parameters(), lr=0.01, momentum=0.9)
aux_weight = 0.1  # lambda, a value that the DEFRAG paper (arXiv:1806.07688) does not state

images = torch.randn(128, 1, 28, 28)  # stand-in for a Fashion-MNIST batch
labels = torch.randint(0, 10, (128,))

for step in range(3):
    optimizer.zero_grad()
    logits, features = model(images)
    # The silhouette loss uses the centers from before this batch, then moves them.
    loss = nn.functional.cross_entropy(logits, labels) + aux_weight * silhouette(features, labels)
    loss.backward()
    optimizer.step()
    print(f"step {step}: loss {loss.item():.3f}")
# --8<-- [end:step]

weight = model.feature.weight
assert weight.manifold.check_point_on_manifold(weight)
assert silhouette.seen.all()
