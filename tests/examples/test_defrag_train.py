"""Tests of the ``train`` subcommand: options, output files, checkpoints and resumption."""

import csv
import json
import math
from pathlib import Path

import pytest
import torch

from examples.defrag import checkpoint, cli, train
from examples.defrag.__main__ import build_parser, main
from examples.defrag.config import (
    DEFAULT_ADAM_LR,
    DEFAULT_AUX_WEIGHT,
    DEFAULT_MOMENTUM,
    DEFAULT_SGD_LR,
    TrainConfig,
)

TINY_RUN = ["--limit-train", "128", "--limit-test", "100", "--batch-size", "64"]
TRAIN_OPTIONS = [
    "--dataset", "--data-dir", "--cache-dir", "--download", "--limit-train", "--limit-test",
    "--feature", "--feature-dim", "--loss", "--lambda", "--alpha", "--retraction",
    "--optimizer", "--epochs", "--batch-size", "--lr", "--lr-schedule", "--momentum",
    "--weight-decay", "--seed", "--device", "--output-dir", "--resume", "--validation", "--amp",
    "--compile", "--distributed",
]  # fmt: skip


def parse_config(argv):
    return cli.config_from_args(build_parser().parse_args(["train", *argv]))


def read_metrics(output_dir):
    return json.loads((output_dir / "metrics.json").read_text())


def without_timings(rows):
    return [
        {key: value for key, value in row.items() if not key.endswith("_seconds")} for row in rows
    ]


def load_checkpoint(output_dir):
    return torch.load(output_dir / "checkpoint.pt", weights_only=True)


def assert_state_dicts_equal(first, second):
    assert first.keys() == second.keys()
    for key in first:
        assert torch.equal(first[key], second[key]), key


def test_help_lists_every_option(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--help"])

    text = capsys.readouterr().out
    assert exit_info.value.code == 0
    for option in TRAIN_OPTIONS:
        assert option in text, option
    assert text.count("(default:") == len(TRAIN_OPTIONS)


def test_help_lists_subcommands(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])

    out = capsys.readouterr().out
    for subcommand in ("train", "compare", "plot", "quickstart"):
        assert subcommand in out, subcommand


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--retraction", "none"], "--feature grassmann conflicts with --retraction none"),
        (["--feature", "relu", "--retraction", "qr"], "--retraction qr conflicts with --feature"),
        (["--loss", "ce", "--lambda", "0.5"], "--lambda conflicts with --loss ce"),
        (["--loss", "ce", "--alpha", "0.5"], "--alpha conflicts with --loss ce"),
        (
            ["--optimizer", "adam-then-retract", "--momentum", "0.5"],
            "--momentum conflicts with --optimizer adam-then-retract",
        ),
        (
            ["--optimizer", "sgd-then-retract", "--retraction", "qr"],
            "--retraction qr conflicts with --optimizer sgd-then-retract",
        ),
        (["--feature-dim", "256"], "--feature-dim below 256"),
        (["--resume"], "--resume needs --output-dir"),
        (["--lr", "-1"], "expected a finite number > 0, got -1"),
        (["--lr", "fast"], "expected a number, got 'fast'"),
        (["--epochs", "0"], "expected an integer >= 1, got 0"),
        (["--alpha", "2"], "expected a number in [0, 1], got 2"),
    ],
    ids=[
        "grassmann-none", "relu-qr", "ce-lambda", "ce-alpha", "adam-momentum",
        "then-retract-qr", "feature-dim", "resume-no-dir", "negative-lr", "text-lr",
        "zero-epochs", "alpha-range",
    ],
)  # fmt: skip
def test_invalid_options(capsys, argv, expected):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", *argv])

    assert exit_info.value.code == 2
    assert expected in capsys.readouterr().err


def test_defaults_resolved():
    config = parse_config(["--output-dir", "out"])

    assert config.feature == "grassmann"
    assert config.retraction == "polar"
    assert config.loss == "silhouette"
    assert config.aux_weight == DEFAULT_AUX_WEIGHT
    assert config.lr == DEFAULT_SGD_LR
    assert config.momentum == DEFAULT_MOMENTUM


def test_defaults_depend_on_choices():
    config = parse_config(["--feature", "relu", "--loss", "ce", "--optimizer", "adam-then-retract"])

    assert config.retraction == "none"
    assert config.aux_weight is None
    assert config.alpha is None
    assert config.momentum is None
    assert config.lr == DEFAULT_ADAM_LR
    assert config.output_dir.startswith(str(Path("runs", "defrag", "fashion-mnist-relu-ce-")))


def test_train_writes_outputs(tmp_path, data_args, capsys):
    output_dir = tmp_path / "run"

    status = main(
        ["train", *data_args, *TINY_RUN, "--epochs", "2", "--output-dir", str(output_dir)]
    )

    out = capsys.readouterr().out
    assert status == 0
    assert "1,256,866 parameters" in out
    assert "test accuracy" in out
    assert str(output_dir) in out

    rows = read_metrics(output_dir)
    assert [row["epoch"] for row in rows] == [1, 2]
    assert list(rows[0]) == list(checkpoint.METRIC_FIELDS)
    assert 0 <= rows[1]["test_accuracy"] <= 1
    assert -1 <= rows[1]["test_silhouette"] <= 1
    assert rows[1]["orthonormality_error"] < 1e-4

    with open(output_dir / "metrics.csv", newline="") as file:
        csv_rows = list(csv.DictReader(file))
    assert [row["epoch"] for row in csv_rows] == ["1", "2"]
    assert float(csv_rows[1]["test_accuracy"]) == rows[1]["test_accuracy"]


def test_config_json(tmp_path, data_args):
    output_dir = tmp_path / "run"

    main(
        [
            "train",
            *data_args,
            *TINY_RUN,
            "--epochs",
            "1",
            "--lr",
            "0.02",
            "--output-dir",
            str(output_dir),
        ]
    )

    config = json.loads((output_dir / "config.json").read_text())
    for name in TrainConfig.__dataclass_fields__:
        assert name in config, name
    assert config["lr"] == 0.02
    assert config["parameters"] == 1_256_866
    assert config["data"]["train_examples"] == 128


def test_checkpoint_contents(tmp_path, data_args):
    output_dir = tmp_path / "run"

    main(["train", *data_args, *TINY_RUN, "--epochs", "1", "--output-dir", str(output_dir)])

    checkpoint = load_checkpoint(output_dir)
    assert checkpoint["epoch"] == 1
    assert "centers" in checkpoint["aux_loss"]
    assert checkpoint["optimizer"]["state"]
    assert checkpoint["torch_rng_state"].dtype == torch.uint8
    assert checkpoint["shuffle_generator_state"].dtype == torch.uint8
    assert not list(output_dir.glob(".checkpoint.pt.*"))


@pytest.mark.parametrize(
    "variant",
    [
        [],
        ["--feature", "relu", "--loss", "center", "--optimizer", "sgd-then-retract"],
        [
            "--feature", "softplus", "--loss", "contrastive-center",
            "--optimizer", "adam-then-retract", "--lr-schedule", "constant",
        ],
    ],
    ids=["defrag-rsgd", "relu-center-sgd", "softplus-contrastive-adam"],
)  # fmt: skip
def test_resume_bit_for_bit(tmp_path, data_args, variant):
    common = [*data_args, *TINY_RUN, *variant, "--epochs", "2"]
    straight_dir, resumed_dir = tmp_path / "straight", tmp_path / "resumed"

    train.train(parse_config([*common, "--output-dir", str(straight_dir)]))
    resumed_config = parse_config([*common, "--output-dir", str(resumed_dir)])
    train.train(resumed_config, stop_after_epoch=1)
    assert len(read_metrics(resumed_dir)) == 1
    train.train(resumed_config, resume=True)

    assert without_timings(read_metrics(straight_dir)) == without_timings(read_metrics(resumed_dir))
    straight, resumed = load_checkpoint(straight_dir), load_checkpoint(resumed_dir)
    assert_state_dicts_equal(straight["model"], resumed["model"])
    assert_state_dicts_equal(straight["aux_loss"], resumed["aux_loss"])
    assert torch.equal(straight["shuffle_generator_state"], resumed["shuffle_generator_state"])


def test_existing_run_needs_resume(tmp_path, data_args, capsys):
    argv = ["train", *data_args, *TINY_RUN, "--epochs", "1", "--output-dir", str(tmp_path)]
    main(argv)
    capsys.readouterr()

    status = main(argv)

    assert status == 1
    assert "already exists. Pass --resume" in capsys.readouterr().err


@pytest.mark.parametrize("marker", ["metrics.json", "diverged.txt"])
def test_record_without_checkpoint_is_kept(tmp_path, data_args, capsys, marker):
    # Field case: a train command copied from a results page into the page's own record folder
    # (metrics and predictions, no checkpoint) started a new run and overwrote the record.
    (tmp_path / marker).write_text("kept\n", encoding="utf-8")
    argv = ["train", *data_args, *TINY_RUN, "--epochs", "1", "--output-dir", str(tmp_path)]

    status = main(argv)

    assert status == 1
    error = capsys.readouterr().err
    assert f"{tmp_path} already contains the record of a run ({marker})" in error
    assert "Choose another --output-dir" in error
    assert (tmp_path / marker).read_text(encoding="utf-8") == "kept\n"
    assert not (tmp_path / "config.json").exists()


def test_resume_without_checkpoint(tmp_path, data_args, capsys):
    status = main(["train", *data_args, "--resume", "--output-dir", str(tmp_path / "empty")])

    assert status == 1
    assert "does not exist" in capsys.readouterr().err


def test_resume_with_changed_option(tmp_path, data_args, capsys):
    argv = ["train", *data_args, *TINY_RUN, "--epochs", "2", "--output-dir", str(tmp_path)]
    train.train(cli.config_from_args(build_parser().parse_args(argv)), stop_after_epoch=1)
    capsys.readouterr()

    status = main([*argv, "--resume", "--lr", "0.5"])

    err = capsys.readouterr().err
    assert status == 1
    assert "lr: checkpoint 0.01, now 0.5" in err


def test_missing_data_reported(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    argv = ["train", "--dataset", "mnist", "--data-dir", str(empty)]
    argv += ["--cache-dir", str(tmp_path / "cache"), "--output-dir", str(tmp_path / "run")]

    status = main(argv)

    err = capsys.readouterr().err
    assert status == 1
    assert "not found" in err
    assert "--download" in err


def test_missing_data_folder_reported(tmp_path, capsys):
    missing = tmp_path / "none"
    argv = ["train", "--dataset", "mnist", "--data-dir", str(missing)]
    argv += ["--cache-dir", str(tmp_path / "cache"), "--output-dir", str(tmp_path / "run")]

    status = main(argv)

    err = capsys.readouterr().err
    assert status == 1
    assert f"The data folder {missing} (--data-dir) does not exist" in err
    assert "--download" in err


def test_validation_split_replaces_test_split(tmp_path, data_args, capsys):
    output_dir = tmp_path / "run"

    status = main(
        ["train", *data_args, *TINY_RUN, "--epochs", "1", "--validation", "300"]
        + ["--output-dir", str(output_dir)]
    )

    out = capsys.readouterr().out
    assert status == 0
    assert "val acc" in out
    assert "validation accuracy" in out
    config = json.loads((output_dir / "config.json").read_text())
    assert config["validation"] == 300
    assert config["data"]["evaluation"] == "validation"
    assert config["data"]["test_examples"] == 100  # --limit-test limits the validation part
    labels = torch.load(output_dir / "predictions.pt", weights_only=True)["labels"]
    assert len(labels) == 100


def test_validation_larger_than_training_split(tmp_path, data_args, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", *data_args, "--validation", "100000", "--output-dir", str(tmp_path)])

    assert exit_info.value.code == 2
    assert "--validation 100000 must be between 1 and" in capsys.readouterr().err


def test_optimizer_error_names_epoch_and_step(tmp_path, data_args, monkeypatch):
    real_step = train._train_step
    calls = []

    def failing_second_step(*args, **kwargs):
        calls.append(None)
        if len(calls) == 2:
            raise FloatingPointError("The gradient of parameter 0 contains inf or NaN.")
        return real_step(*args, **kwargs)

    monkeypatch.setattr(train, "_train_step", failing_second_step)
    config = parse_config([*data_args, *TINY_RUN, "--output-dir", str(tmp_path / "run")])

    with pytest.raises(FloatingPointError) as error:
        train.train(config)

    assert str(error.value) == (
        "At epoch 1, step 2: The gradient of parameter 0 contains inf or NaN."
    )


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        # 8 steps from lr 0.1: half a cosine down to 0.
        ("cosine", [0.1 * (1 + math.cos(math.pi * step / 8)) / 2 for step in range(9)]),
        # Times 0.1 after half (step 4) and after three quarters (step 6) of the steps.
        ("step", [0.1] * 4 + [0.01] * 2 + [0.001] * 3),
        ("constant", [0.1] * 9),
    ],
)
def test_lr_schedules(schedule, expected):
    weight = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([weight], lr=0.1)
    config = TrainConfig(output_dir="unused", lr_schedule=schedule)
    scheduler = train._build_scheduler(config, optimizer, total_steps=8)

    rates = [optimizer.param_groups[0]["lr"]]
    for _ in range(8):
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        rates.append(optimizer.param_groups[0]["lr"])

    assert rates == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_adam_state_subnormals_flushed():
    # Field case: Adam's L2 weight decay drove a quarter of a 256 x 4096 layer's weights into
    # the subnormal range, and its epochs slowed from 25 s to 260 s on the CPU.
    tiny = torch.finfo(torch.float32).tiny
    param = torch.nn.Parameter(torch.ones(4))
    optimizer = torch.optim.Adam([param], lr=0.1)
    param.grad = torch.ones(4)
    optimizer.step()
    with torch.no_grad():
        param[0] = -tiny / 2
        param[1] = tiny
        optimizer.state[param]["exp_avg"][2] = tiny / 3
    normal_params = param.detach()[1:].clone()
    normal_averages = optimizer.state[param]["exp_avg"][[0, 1, 3]].clone()

    train._flush_subnormals_(optimizer)

    assert param.detach()[0].item() == 0.0
    assert torch.equal(param.detach()[1:], normal_params)
    assert optimizer.state[param]["exp_avg"][2].item() == 0.0
    assert torch.equal(optimizer.state[param]["exp_avg"][[0, 1, 3]], normal_averages)
    assert optimizer.state[param]["step"].item() == 1.0
