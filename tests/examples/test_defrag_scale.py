"""Tests of the example's --distributed, --amp and --compile options.

The distributed tests spawn two gloo processes on the CPU that find each other through the
loopback address, as torchrun would connect them, and run the example's own train function.
"""

import contextlib
import dataclasses
import json
import os
import socket
import warnings
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from examples.defrag import checkpoint, cli, train
from examples.defrag.__main__ import build_parser, main
from examples.defrag.config import TrainConfig

pytestmark = pytest.mark.filterwarnings("error")

TINY = ["--limit-train", "256", "--limit-test", "100", "--batch-size", "64"]
WORLD_SIZE = 2


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rank_environment(rank: int, world_size: int, port: int) -> dict[str, str]:
    """The variables torchrun sets for one rank, pointed at the loopback address."""
    environment = {
        "RANK": str(rank),
        "LOCAL_RANK": str(rank),
        "WORLD_SIZE": str(world_size),
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port),
    }
    for _, name in socket.if_nameindex():
        if name.startswith("lo"):
            # Gloo otherwise listens on the address that the host name resolves to.
            environment["GLOO_SOCKET_IFNAME"] = name
    return environment


def config_of(argv):
    return cli.config_from_args(build_parser().parse_args(["train", *argv]))


def run_rank(rank: int, ports: list[int], argv: list[str], out_dir: str) -> None:
    """Train twice on this rank: two epochs straight, then one epoch and a resume.

    Each of the three trainings joins a new process group, as a new torchrun launch would, on
    its own port: a store re-created on a port that the last group used can hang.
    """
    warnings.simplefilter("error")
    warnings.filterwarnings("ignore", r"`torch\.jit\.script", FutureWarning)
    torch.set_num_threads(1)

    def launch(port: int) -> None:
        os.environ.update(rank_environment(rank, WORLD_SIZE, port))

    log = Path(out_dir) / f"rank{rank}.log"
    with open(log, "w") as file, contextlib.redirect_stdout(file):
        launch(ports[0])
        straight = [*argv, "--epochs", "2", "--output-dir", f"{out_dir}/straight"]
        assert main(straight) == 0

        launch(ports[1])
        interrupted = [*argv, "--epochs", "2", "--output-dir", f"{out_dir}/resumed"]
        train.train(config_of(interrupted[1:]), stop_after_epoch=1)

        launch(ports[2])
        assert main([*interrupted, "--resume"]) == 0


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory, dataset_options):
    """Run the example on two ranks; return its output folder."""
    if not (dist.is_available() and dist.is_gloo_available()):
        pytest.skip("needs torch.distributed with the gloo backend")
    out_dir = tmp_path_factory.mktemp("ranks")
    argv = ["train", *dataset_options, "--cache-dir", str(out_dir / "cache"), *TINY]
    argv += ["--distributed", "--device", "cpu"]
    ports = [free_port() for _ in range(3)]
    mp.spawn(run_rank, args=(ports, argv, str(out_dir)), nprocs=WORLD_SIZE, join=True)
    return out_dir


def load_checkpoint(folder):
    return torch.load(folder / "checkpoint.pt", weights_only=True)


def assert_nested_equal(first, second, path="checkpoint"):
    if isinstance(first, torch.Tensor):
        assert torch.equal(first, second), path
    elif isinstance(first, dict):
        assert first.keys() == second.keys(), path
        for key in first:
            assert_nested_equal(first[key], second[key], f"{path}.{key}")
    elif isinstance(first, list | tuple):
        assert len(first) == len(second), path
        for index, (a, b) in enumerate(zip(first, second, strict=True)):
            assert_nested_equal(a, b, f"{path}[{index}]")
    else:
        assert first == second, path


def test_distributed_only_rank_zero_logs(two_ranks):
    rank0 = (two_ranks / "rank0.log").read_text()
    rank1 = (two_ranks / "rank1.log").read_text()

    assert "Data-parallel over 2 processes (gloo)." in rank0
    assert rank0.count("Finished after epoch 2/2") == 2
    assert rank1 == ""


def test_distributed_config_records_world_size(two_ranks):
    config = json.loads((two_ranks / "straight" / "config.json").read_text())

    assert config["distributed"] is True
    assert config["world_size"] == WORLD_SIZE


def test_distributed_resume_bit_for_bit(two_ranks):
    straight = load_checkpoint(two_ranks / "straight")
    resumed = load_checkpoint(two_ranks / "resumed")

    for key in ("model", "aux_loss", "optimizer", "scheduler", "shuffle_generator_state"):
        assert_nested_equal(straight[key], resumed[key], key)
    metrics = [
        {k: v for k, v in row.items() if not k.endswith("_seconds")}
        for row in (straight["metrics"], resumed["metrics"])
        for row in row
    ]
    assert metrics[:2] == metrics[2:]


def test_distributed_needs_torchrun_environment(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("RANK", raising=False)

    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--distributed", "--output-dir", str(tmp_path)])

    assert exit_info.value.code == 2
    assert "--distributed needs the environment that torchrun sets" in capsys.readouterr().err


def test_distributed_one_rank_equals_plain_run(tmp_path, data_args, monkeypatch):
    for name, value in rank_environment(0, 1, free_port()).items():
        monkeypatch.setenv(name, value)
    common = ["train", *data_args, *TINY, "--epochs", "1", "--device", "cpu"]

    assert main([*common, "--output-dir", str(tmp_path / "plain")]) == 0
    assert main([*common, "--distributed", "--output-dir", str(tmp_path / "ddp")]) == 0

    plain, ddp = load_checkpoint(tmp_path / "plain"), load_checkpoint(tmp_path / "ddp")
    for key in ("model", "aux_loss", "optimizer"):
        assert_nested_equal(plain[key], ddp[key], key)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_amp_trains_and_resumes(tmp_path, data_args, dtype):
    # float16 matrix products are slow on the CPU: two steps per epoch.
    common = ["train", *data_args, *TINY, "--limit-train", "128", "--amp", dtype, "--epochs", "2"]

    assert main([*common, "--output-dir", str(tmp_path / "straight")]) == 0
    interrupted = [*common, "--output-dir", str(tmp_path / "resumed")]
    train.train(config_of(interrupted[1:]), stop_after_epoch=1)
    assert main([*interrupted, "--resume"]) == 0

    straight = load_checkpoint(tmp_path / "straight")
    resumed = load_checkpoint(tmp_path / "resumed")
    assert_nested_equal(straight["model"], resumed["model"], "model")
    assert (straight["scaler"] is None) == (dtype == "bfloat16")
    if dtype == "float16":
        assert straight["scaler"]["scale"] > 0
        assert_nested_equal(straight["scaler"], resumed["scaler"], "scaler")
    row = straight["metrics"][-1]
    assert row["orthonormality_error"] < 1e-5  # the float32 weight stays orthonormal
    assert 0 <= row["test_accuracy"] <= 1


def test_compile_matches_eager(tmp_path, data_args):
    common = ["train", *data_args, *TINY, "--epochs", "1", "--limit-train", "128"]

    assert main([*common, "--output-dir", str(tmp_path / "eager")]) == 0
    assert main([*common, "--compile", "--output-dir", str(tmp_path / "compiled")]) == 0

    eager = load_checkpoint(tmp_path / "eager")["model"]
    compiled = load_checkpoint(tmp_path / "compiled")["model"]
    assert eager.keys() == compiled.keys()  # no _orig_mod. prefix
    for key in eager:
        torch.testing.assert_close(compiled[key], eager[key], rtol=1e-4, atol=1e-5)


def test_torchrun_without_distributed_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")

    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--output-dir", str(tmp_path)])

    assert exit_info.value.code == 2
    assert "torchrun started 2 processes, but --distributed is missing" in capsys.readouterr().err


def test_world_size_not_an_integer(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "abc")

    with pytest.raises(SystemExit):
        main(["train", "--output-dir", str(tmp_path)])

    assert "WORLD_SIZE is 'abc', expected a positive integer" in capsys.readouterr().err


def test_distributed_names_missing_variables(tmp_path, capsys, monkeypatch):
    for name, value in {"RANK": "0", "WORLD_SIZE": "1"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    monkeypatch.delenv("MASTER_PORT", raising=False)

    with pytest.raises(SystemExit):
        main(["train", "--distributed", "--output-dir", str(tmp_path)])

    assert "(missing: MASTER_ADDR, MASTER_PORT)" in capsys.readouterr().err


def test_other_ranks_print_no_usage_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")

    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--output-dir", str(tmp_path)])

    assert exit_info.value.code == 2
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(
    ("count", "batch_size", "world_size", "steps"),
    [(129, 128, 1, 2), (129, 128, 2, 1), (130, 128, 2, 2), (31, 3, 2, 10), (1, 2, 2, 0)],
)
def test_steps_per_epoch_skip_short_last_batch(count, batch_size, world_size, steps):
    config = TrainConfig(output_dir="unused", batch_size=batch_size, world_size=world_size)

    assert train._steps_per_epoch(config, torch.zeros(count)) == steps


def test_too_few_examples_for_the_ranks():
    config = TrainConfig(output_dir="unused", batch_size=2, world_size=2)

    with pytest.raises(cli.OptionConflict, match="1 training examples cannot be split over 2"):
        train._check_training_size(config, torch.zeros(1))


def test_resume_with_other_world_size_names_the_launch():
    saved = dataclasses.asdict(TrainConfig(output_dir="a", distributed=True, world_size=2))
    current = TrainConfig(output_dir="a", distributed=True, world_size=1)

    differences = checkpoint.config_differences(saved, current, saved_name="checkpoint")

    assert differences == [
        "  world_size: checkpoint 2, now 1 (launch with torchrun --nproc_per_node=2)"
    ]


def test_config_from_before_new_fields_still_matches():
    current = TrainConfig(output_dir="a")
    saved = dataclasses.asdict(current)
    for name in ("validation", "amp", "compile", "distributed", "world_size"):
        del saved[name]

    assert checkpoint.config_differences(saved, current) == []
