"""Tests of hyperparameter files and the ``tune`` subcommand."""

import json

import pytest
import torch

from examples.defrag import cli, hparams, runner, tune
from examples.defrag.__main__ import build_parser, main
from examples.defrag.variants import VARIANTS


def write(path, data):
    path.write_text(json.dumps(data))
    return path


def test_hparams_precedence(tmp_path):
    path = write(
        tmp_path / "h.json",
        {
            "defaults": {"lr": 0.03, "weight_decay": 0.0005, "lambda": 0.2},
            "variants": {
                "defrag": {"lambda": 1.0, "momentum": 0.8},
                "defrag:adam-then-retract": {"lr": 0.002},
            },
        },
    )
    loaded = hparams.load_hparams(path)

    assert loaded.settings_for("linear", None) == {"lr": 0.03, "weight_decay": 0.0005}
    assert loaded.settings_for("silhouette", None) == {
        "lr": 0.03,
        "weight_decay": 0.0005,
        "lambda": 0.2,
    }
    assert loaded.settings_for("defrag", "rsgd") == {
        "lr": 0.03,
        "weight_decay": 0.0005,
        "lambda": 1.0,
        "momentum": 0.8,
    }
    # Adam runs keep everything but the SGD learning rate and momentum, and take their own lr.
    assert loaded.settings_for("defrag", "adam-then-retract") == {
        "weight_decay": 0.0005,
        "lambda": 1.0,
        "lr": 0.002,
    }


def test_command_line_overrides_hparams(tmp_path):
    path = write(tmp_path / "h.json", {"variants": {"defrag": {"lr": 0.05, "epochs": 7}}})
    specs = runner.build_grid(["linear", "defrag"], ["polar"], ["rsgd"], [0])
    options = runner.GridOptions(shared=("--epochs", "2"))

    planned = runner.plan_runs(specs, options, tmp_path, hparams.load_hparams(path))

    linear, defrag = (run.config for run in planned)
    assert (linear.lr, linear.epochs) == (0.01, 2)
    assert (defrag.lr, defrag.epochs) == (0.05, 2)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"variants": {"dfrag": {}}}, "unknown preset 'dfrag'"),
        ({"variants": {"defrag:sgd": {}}}, "unknown optimizer 'sgd'"),
        ({"defaults": {"learning_rate": 0.1}}, "unknown setting 'learning_rate'"),
        ({"variants": {"linear": {"lambda": 0.1}}}, "lambda in linear does not apply"),
        ({"variants": {"defrag:adam-then-retract": {"momentum": 0.9}}}, "momentum in defrag"),
        ({"defaults": {"lr": -1}}, "lr in defaults: expected a finite number > 0, got -1"),
        ({"defaults": {"lr_schedule": "step"}}, "expected one of cosine, constant, got step"),
        ({"extra": {}}, "must be a JSON object with the keys"),
        ([], "must be a JSON object with the keys"),
    ],
)
def test_invalid_hparams_file(tmp_path, data, expected):
    path = write(tmp_path / "h.json", data)

    with pytest.raises(cli.OptionConflict, match=expected.replace("(", r"\(")):
        hparams.load_hparams(path)


def test_hparams_not_json(tmp_path):
    path = tmp_path / "h.json"
    path.write_text("{")

    with pytest.raises(cli.OptionConflict, match="is not valid JSON"):
        hparams.load_hparams(path)


def parse_tune(argv):
    return build_parser().parse_args(["tune", *argv])


def test_tuning_grid_skips_options_that_do_not_apply(tmp_path):
    args = parse_tune(
        ["--variants", "linear", "defrag", "--optimizers", "rsgd", "adam-then-retract"]
        + ["--lr", "0.01", "0.1", "--lambda", "0.1", "1", "--momentum", "0.9"]
        + ["--seeds", "0", "1", "--output-dir", str(tmp_path)]
    )

    specs = tune.build_tuning_grid(args)

    # Per seed: linear 2 lr x 1 momentum, defrag with rsgd 2 lr x 2 lambda x 1 momentum, and
    # defrag with Adam 2 lr x 2 lambda, because Adam takes no momentum.
    assert len(specs) == 2 * (2 + 4 + 4)
    keys = {(tune.hparams_key(spec), spec.settings) for spec in specs}
    assert ("linear", (("lr", "0.1"), ("momentum", "0.9"))) in keys
    assert ("defrag:adam-then-retract", (("lr", "0.01"), ("lambda", "1.0"))) in keys
    planned = runner.plan_runs(specs, tune._grid_options(args), tmp_path)
    assert all(run.config.validation == tune.DEFAULT_VALIDATION for run in planned)
    assert len({run.output_dir for run in planned}) == len(planned)


def choice(key, settings, accuracies, evaluated=0):
    return tune.Choice(key, settings, accuracies, [], [], evaluated=evaluated)


def test_select_per_configuration_and_shared():
    low, high = (("lr", "0.01"),), (("lr", "0.1"),)
    choices = [
        choice("linear", low, [0.90, 0.92]),
        choice("linear", high, [0.93, 0.93]),
        choice("defrag", low, [0.95, 0.95]),
        choice("defrag", high, [0.80, 0.82]),
    ]

    per = tune.select(choices, shared=False)
    shared = tune.select(choices, shared=True)

    assert per["linear"].settings == high
    assert per["defrag"].settings == low
    # Mean over configurations: low 0.93, high 0.87.
    assert [c.settings for c in shared["defaults"]] == [low, low]


def test_select_tie_keeps_first():
    first, second = (("lr", "0.01"),), (("lr", "0.1"),)
    choices = [choice("linear", first, [0.9]), choice("linear", second, [0.9])]

    assert tune.select(choices, shared=False)["linear"].settings == first


def test_tuning_table_noise_and_edge():
    low, middle, high = (
        (("weight_decay", "0"),),
        (("weight_decay", "0.0001"),),
        (("weight_decay", "0.0005"),),
    )
    choices = [
        choice("linear", low, [0.9240], evaluated=5000),
        choice("linear", middle, [0.9214], evaluated=5000),
        choice("linear", high, [0.9258], evaluated=5000),
    ]
    selected = tune.select(choices, shared=True)

    table = tune.render_tuning(choices, selected, "tune ...", 5000)

    # sqrt(0.9258 * 0.0742 / 5000) = 0.003706, twice that 0.0074.
    assert "an accuracy near 0.9258 has a standard error of 0.0037" in table
    assert "less than about 0.0074 are not distinguishable" in table
    assert "weight_decay 0.0005, selected for all configurations, is the largest value" in table


def test_tuning_edges_per_configuration():
    small, large = (("lambda", "0.1"),), (("lambda", "1"),)
    choices = [
        choice("center", small, [0.93], evaluated=100),
        choice("center", large, [0.91], evaluated=100),
        choice("defrag", small, [0.90], evaluated=100),
        choice("defrag", large, [0.92], evaluated=100),
    ]
    selected = tune.select(choices, shared=False)

    table = tune.render_tuning(choices, selected, "tune ...", 100)

    assert "lambda 0.1, selected for center, is the smallest value tried" in table
    assert "lambda 1, selected for defrag, is the largest value tried" in table


def test_tuning_table_no_edge_notes():
    rates = [(("lr", "0.01"),), (("lr", "0.03"),), (("lr", "0.1"),)]
    choices = [
        choice("linear", settings, [accuracy], evaluated=1000)
        for settings, accuracy in zip(rates, [0.90, 0.92, 0.91], strict=True)
    ]
    named = [choice("linear", (("lr_schedule", name),), [0.9]) for name in ("cosine", "constant")]

    middle = tune.render_tuning(choices, tune.select(choices, shared=False), "tune ...", 1000)
    names = tune.render_tuning(named, tune.select(named, shared=False), "tune ...", 1000)

    assert "Grid edge" not in middle
    assert "Grid edge" not in names
    # No run was scored (evaluated 0), so there is no sample size to state a noise level for.
    assert "Noise" not in names


def test_tune_end_to_end(tmp_path, data_args, capsys):
    output_dir = tmp_path / "tune"
    base = write(tmp_path / "base.json", {"defaults": {"weight_decay": 0.0001}})
    argv = [
        "tune",
        *data_args,
        "--variants",
        "linear",
        "--lr",
        "0.01",
        "1e30",
        "--batch-size",
        "64",
        "--epochs",
        "1",
        "--validation",
        "500",
        "--limit-train",
        "128",
        "--limit-test",
        "100",
        "--hparams",
        str(base),
        "--output-dir",
        str(output_dir),
    ]

    assert main(argv) == 0

    out = capsys.readouterr().out
    assert "(diverged: seed 0)" in out
    selected = json.loads((output_dir / "hparams.json").read_text())
    assert selected["defaults"] == {"weight_decay": 0.0001}
    assert selected["variants"]["linear"] == {"lr": 0.01, "epochs": 1}
    assert "validation accuracy" in selected["provenance"]["linear"]
    assert "scored on 100 of 500 held-out training examples" in selected["provenance"]["linear"]
    table = (output_dir / "TUNING.md").read_text()
    assert "| linear | lr 1e+30, epochs 1 | 0.0000 |" in table
    config = json.loads((output_dir / "linear-lr0.01-epochs1-seed0" / "config.json").read_text())
    assert config["data"]["evaluation"] == "validation"
    assert config["weight_decay"] == 0.0001
    assert (output_dir / "linear-lr1e+30-epochs1-seed0" / runner.DIVERGED_NAME).is_file()

    # Rerunning skips both runs, the diverged one included.
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.count("finished earlier, skipped") == 1
    assert out.count("diverged earlier, skipped") == 1


def test_tune_rejects_test_split_runs(tmp_path):
    spec = runner.RunSpec(VARIANTS["linear"], 0, settings=(("lr", "0.1"),))
    planned = runner.plan_runs([spec], runner.GridOptions(shared=("--epochs", "1")), tmp_path)
    folder = planned[0].output_dir
    folder.mkdir()
    torch.save({"predictions": torch.zeros(1), "labels": torch.zeros(1)}, folder / "predictions.pt")
    (folder / "config.json").write_text(json.dumps({"data": {"evaluation": "test"}}))
    (folder / "metrics.json").write_text(json.dumps([{"test_accuracy": 0.5}]))

    with pytest.raises(cli.OptionConflict, match="was not evaluated on a validation split"):
        tune.collect_choices(planned)


TUNE_OPTIONS = [
    "--dataset", "--data-dir", "--cache-dir", "--download", "--variants", "--optimizers",
    "--seeds", "--shared", "--lr", "--lr-schedule", "--epochs", "--weight-decay", "--momentum",
    "--lambda", "--alpha", "--validation", "--hparams", "--batch-size", "--limit-train",
    "--limit-test", "--feature-dim", "--device", "--output-dir", "--write-hparams", "--results",
]  # fmt: skip


def test_tune_help_lists_every_option(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["tune", "--help"])

    text = capsys.readouterr().out
    assert exit_info.value.code == 0
    for option in TUNE_OPTIONS:
        assert option in text, option


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--variants", "linear", "defrag", "--lambda", "0.1"], "linear has none"),
        (
            ["--variants", "defrag", "--optimizers", "adam-then-retract", "--momentum", "0.9"],
            "cannot include --optimizers adam-then-retract",
        ),
    ],
)
def test_shared_search_must_apply_to_every_configuration(tmp_path, capsys, argv, expected):
    with pytest.raises(SystemExit) as exit_info:
        main(["tune", "--shared", *argv, "--output-dir", str(tmp_path)])

    assert exit_info.value.code == 2
    assert expected in capsys.readouterr().err
