"""The settings of one training run: ``TrainConfig``, the valid choices and the defaults."""

from __future__ import annotations

from dataclasses import dataclass

LOSSES = ("ce", "silhouette", "center", "contrastive-center")
RETRACTIONS = ("none", "polar", "qr", "cayley", "exp")
OPTIMIZERS = ("rsgd", "sgd-then-retract", "adam-then-retract")
LR_SCHEDULES = ("cosine", "step", "constant")
AMP_DTYPES = ("none", "bfloat16", "float16")

DEFAULT_EPOCHS = 5
DEFAULT_BATCH_SIZE = 128
DEFAULT_FEATURE_DIM = 8
DEFAULT_SGD_LR = 0.01
DEFAULT_ADAM_LR = 0.001
DEFAULT_MOMENTUM = 0.9
DEFAULT_AUX_WEIGHT = 0.1
DEFAULT_ALPHA = 0.5


@dataclass(frozen=True)
class TrainConfig:
    """Every setting of a training run, with defaults resolved. Saved as ``config.json``.

    ``aux_weight`` (the CLI's ``--lambda``) and ``alpha`` are None when ``loss`` is ``"ce"``.
    ``momentum`` is None for ``"adam-then-retract"``. ``retraction`` is ``"none"`` exactly when
    ``feature`` is not ``"grassmann"``. ``validation`` is the number of training examples held
    out and evaluated instead of the test split, or None to train on all and evaluate on the
    test split.

    ``amp`` is the autocast dtype (``"none"`` for full float32). ``distributed`` runs one process
    per rank under torchrun, and ``world_size`` is the number of ranks (1 without it).

    NOTE: With ``validation`` set, the ``test_*`` metrics of the run and its ``predictions.pt``
    and ``features.pt`` describe the validation examples, as ``config.json`` records under
    ``data.evaluation``.
    """

    output_dir: str
    dataset: str = "fashion-mnist"
    data_dir: str | None = None
    cache_dir: str | None = None
    download: bool = False
    feature: str = "grassmann"
    feature_dim: int = DEFAULT_FEATURE_DIM
    loss: str = "silhouette"
    aux_weight: float | None = DEFAULT_AUX_WEIGHT
    alpha: float | None = DEFAULT_ALPHA
    retraction: str = "polar"
    optimizer: str = "rsgd"
    epochs: int = DEFAULT_EPOCHS
    batch_size: int = DEFAULT_BATCH_SIZE
    lr: float = DEFAULT_SGD_LR
    lr_schedule: str = "cosine"
    momentum: float | None = DEFAULT_MOMENTUM
    weight_decay: float = 0.0
    seed: int = 0
    device: str = "cpu"
    limit_train: int | None = None
    limit_test: int | None = None
    validation: int | None = None
    amp: str = "none"
    compile: bool = False
    distributed: bool = False
    world_size: int = 1
