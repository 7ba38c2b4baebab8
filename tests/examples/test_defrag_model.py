"""Tests of examples.defrag.model: the DEFRAG network and its feature layer variants."""

import pytest
import torch

from examples.defrag.model import FEATURE_KINDS, DefragNet, count_parameters

PAPER_PARAMETER_COUNT = 1_256_866
EUCLIDEAN_FEATURES = [kind for kind in FEATURE_KINDS if kind != "grassmann"]


def grassmann_layer_available() -> bool:
    try:
        from grassmann_nn.nn import GrassmannLinear  # noqa: F401
    except ImportError:
        return False
    return True


needs_grassmann_layer = pytest.mark.skipif(
    not grassmann_layer_available(), reason="grassmann_nn.nn.GrassmannLinear is not importable"
)


@pytest.mark.parametrize("feature", EUCLIDEAN_FEATURES)
def test_parameter_count(feature):
    assert count_parameters(DefragNet(feature)) == PAPER_PARAMETER_COUNT


@needs_grassmann_layer
def test_grassmann_parameter_count():
    # The Grassmann weight stores all 8 x 256 entries, like nn.Linear.
    assert count_parameters(DefragNet("grassmann")) == PAPER_PARAMETER_COUNT


@pytest.mark.parametrize("feature", EUCLIDEAN_FEATURES)
def test_forward_shapes(feature):
    logits, features = DefragNet(feature, feature_dim=8)(torch.randn(5, 1, 28, 28))

    assert logits.shape == (5, 10)
    assert features.shape == (5, 8)


@needs_grassmann_layer
def test_grassmann_forward_shapes():
    logits, features = DefragNet("grassmann", feature_dim=3)(torch.randn(5, 1, 28, 28))

    assert logits.shape == (5, 10)
    assert features.shape == (5, 3)


def test_relu_features_non_negative():
    _, features = DefragNet("relu")(torch.randn(16, 1, 28, 28))

    assert (features >= 0).all()


def test_softplus_features_positive():
    _, features = DefragNet("softplus")(torch.randn(16, 1, 28, 28))

    assert (features > 0).all()


def test_logits_are_classifier_of_features():
    model = DefragNet("linear")
    logits, features = model(torch.randn(4, 1, 28, 28))

    torch.testing.assert_close(logits, model.classifier(features))


@pytest.mark.parametrize("feature", EUCLIDEAN_FEATURES)
def test_state_dict_keys_shared(feature):
    assert DefragNet(feature).state_dict().keys() == DefragNet("linear").state_dict().keys()


def test_unknown_feature():
    with pytest.raises(ValueError, match="Unknown feature layer 'tanh'"):
        DefragNet("tanh")


def test_grassmann_feature_dim_too_large():
    with pytest.raises(ValueError, match="0 < feature_dim < 256"):
        DefragNet("grassmann", feature_dim=256)
