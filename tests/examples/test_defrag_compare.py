"""Tests of the comparison grid and its report, on run folders written by the tests."""

import json

import pytest
import scipy.stats
from fake_runs import plan, render, write_diverged_run, write_fake_run

from examples.defrag import report, runner
from examples.defrag.__main__ import main
from examples.defrag.checkpoint import RunError
from examples.defrag.hparams import Hyperparameters
from examples.defrag.variants import (
    FIGURE3_VARIANTS,
    PAPER_RESULTS,
    TABLE2_VARIANTS,
    VARIANTS,
    PaperValue,
    describe_run,
    variant_of,
)


def test_presets_cover_paper_rows():
    assert set(TABLE2_VARIANTS) <= set(VARIANTS)
    assert set(FIGURE3_VARIANTS) <= set(VARIANTS)
    table2 = PAPER_RESULTS["fashion-mnist"].accuracies
    assert list(table2) == list(TABLE2_VARIANTS)
    assert [table2[name].accuracy for name in TABLE2_VARIANTS] == [
        0.9347, 0.9369, 0.9375, 0.9371, 0.9368, 0.9393,
    ]  # fmt: skip
    assert list(PAPER_RESULTS["mnist"].accuracies) == list(FIGURE3_VARIANTS)


@pytest.mark.parametrize(
    ("value", "baseline", "expected"),
    [
        (PaperValue(0.9393), PaperValue(0.9369), "+0.0024"),
        (PaperValue(0.886, "~"), PaperValue(0.99, ">"), "more than 0.1040 below"),
        (PaperValue(0.995, ">"), PaperValue(0.9369), "more than 0.0581 above"),
        (PaperValue(0.99, ">"), PaperValue(0.99, ">"), None),
        (PaperValue(0.995), PaperValue(0.99, ">"), None),
        (PaperValue(0.99, ">"), PaperValue(0.99), None),
        (PaperValue(0.9369), PaperValue(0.9369), None),
        (PaperValue(0.9, ">"), PaperValue(0.95), None),
        (PaperValue(0.886, "~"), PaperValue(0.9369), "-0.0509"),
    ],
)
def test_paper_gap_only_where_the_paper_orders(value, baseline, expected):
    gap = value.gap_to(baseline)

    assert (gap if gap is None else gap[1]) == expected


def test_paper_value_rejects_unknown_relation():
    with pytest.raises(ValueError, match="relation must be one of =, ~, >, got '<'"):
        PaperValue(0.9, "<")


def test_every_preset_parses(tmp_path):
    planned = plan(tmp_path, list(VARIANTS), aux=("--lambda", "0.3"))

    for run in planned:
        variant = run.spec.variant
        assert (run.config.feature, run.config.loss) == (variant.feature, variant.loss)
        expected_weight = 0.3 if variant.has_aux_loss else None
        assert run.config.aux_weight == expected_weight, variant.name
        assert run.config.epochs == 2


def test_grid_manifold_settings_once():
    specs = runner.build_grid(
        ["linear", "defrag", "linear"],
        ["polar", "qr", "qr"],
        ["rsgd", "sgd-then-retract"],
        [0, 1, 0],
    )

    assert [spec.folder_name for spec in specs[:4]] == [
        "linear-seed0",
        "defrag-polar-rsgd-seed0",
        "defrag-qr-rsgd-seed0",
        "defrag-polar-sgd-then-retract-seed0",
    ]
    assert len(specs) == 8
    assert len({spec.folder_name for spec in specs}) == 8


def test_run_label_from_config():
    config = {"feature": "grassmann", "loss": "silhouette", "retraction": "qr", "optimizer": "rsgd"}

    assert variant_of(config) is VARIANTS["defrag"]
    assert describe_run(config) == "DEFRAG (qr, rsgd)"
    assert describe_run({"feature": "relu", "loss": "silhouette"}) == "relu + silhouette"


def test_report_one_seed(tmp_path):
    planned = plan(tmp_path, ["linear", "defrag"])
    write_fake_run(planned[0], 180)
    write_fake_run(planned[1], 170)

    text = render(planned)

    assert "| Linear | 0.9369 | 0.9000 | 0 | -0.0369 | baseline | baseline |" in text
    assert "| DEFRAG (polar, rsgd) | 0.9393 | 0.8500 | 0 | -0.0893 | -0.0500 |" in text
    p_value = scipy.stats.binomtest(0, 10, 0.5).pvalue
    assert f"{p_value:.2g} (McNemar, seed 0)" in text
    assert "| DEFRAG (polar, rsgd) | 0 | 0 | 10 |" in text
    assert "mean test accuracy 0.8500 is 0.0893 below the paper's 0.9393" in text
    assert "the paper reports 0.0024 above Linear; here it is 0.0500 below Linear" in text
    assert "| 15.0 | 1.0 |" in text
    assert (
        "- DEFRAG (polar, rsgd) is above Linear (paper: +0.0024): not confirmed, the opposite "
        f"holds (p = {p_value:.2g}) on one seed only; the variation between seeds is not "
        "tested, here -0.0500." in text
    )
    assert "- DEFRAG (polar, rsgd) reaches the paper's 0.9393: no, mean 0.8500 is 0.0893" in text
    assert "best rival: Linear 0.5000): tied, fewer than two common seeds, so no test." in text
    assert "Test CPU (2 logical CPUs), 2 torch threads" in text
    assert planned[1].command in text


def test_report_two_seeds(tmp_path):
    planned = plan(tmp_path, ["linear", "center"], seeds=(0, 1))
    for run, correct in zip(planned, [180, 184, 178, 190], strict=True):
        write_fake_run(run, correct)

    text = render(planned)

    assert "| Linear | 0.9369 | 0.8950 ± 0.0071 | 0, 1 |" in text
    expected = scipy.stats.ttest_rel([0.92, 0.95], [0.90, 0.89]).pvalue
    assert f"{expected:.2g} (paired t, 2 seeds)" in text
    assert "| Center | 0 | 4 | 0 |" in text
    assert "| Center | 1 | 12 | 0 |" in text
    gaps = [0.02, 0.06]
    low, high = scipy.stats.t.interval(0.95, 1, loc=0.04, scale=scipy.stats.sem(gaps))
    assert (
        f"- Center is above Linear (paper: +0.0002): not distinguishable from noise "
        f"(p = {expected:.2g}), here +0.0400, 95% CI {low:+.4f} to {high:+.4f} over 2 seeds, "
        "above Linear on both." in text
    )
    assert "pair each run with the Linear run of the same seed" not in text


@pytest.mark.parametrize(
    ("retractions", "optimizers", "title"),
    [
        (("polar",), ("rsgd",), "# DEFRAG comparison on Fashion-MNIST\n"),
        (("polar", "qr"), ("rsgd",), "# DEFRAG retractions on Fashion-MNIST\n"),
        (("polar",), ("rsgd", "adam-then-retract"), "# DEFRAG optimizers on Fashion-MNIST\n"),
        (
            ("polar", "qr"),
            ("rsgd", "adam-then-retract"),
            "# DEFRAG retractions and optimizers on Fashion-MNIST\n",
        ),
    ],
    ids=["configurations", "retractions", "optimizers", "both"],
)
def test_report_title_names_varied_settings(tmp_path, retractions, optimizers, title):
    planned = plan(tmp_path, ["linear", "defrag"], retractions=retractions, optimizers=optimizers)
    for run in planned:
        write_fake_run(run, 180)

    text = render(planned)

    assert text.startswith(title)


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        (
            ["linear", "silhouette", "center", "contrastive-center", "defrag"],
            "Silhouette, Center and Contrastive Center add their loss to the linear feature "
            "layer of the Linear row, and DEFRAG adds the silhouette loss to a Grassmann feature "
            "layer; the paper does not name the feature layer of its center-loss rows. The train "
            "command of every run, with all its settings, is under Runs.",
        ),
        (
            ["linear", "silhouette"],
            "Silhouette adds its loss to the linear feature layer of the Linear row. The train "
            "command of every run, with all its settings, is under Runs.",
        ),
        (
            ["center", "defrag"],
            "Center adds its loss to a linear feature layer, and DEFRAG adds the silhouette loss "
            "to a Grassmann feature layer; the paper does not name the feature layer of its "
            "center-loss rows. The train command of every run, with all its settings, is under "
            "Runs.",
        ),
        (
            ["linear", "defrag"],
            "DEFRAG adds the silhouette loss to a Grassmann feature layer. The train command "
            "of every run, with all its settings, is under Runs.",
        ),
        (["linear"], "The train command of every run, with all its settings, is under Runs."),
    ],
    ids=["all", "silhouette", "no-linear", "defrag", "linear"],
)
def test_feature_layer_note_names_present_rows(tmp_path, names, expected):
    # Field case: the retraction and MNIST pages described Silhouette, Center and Contrastive
    # Center rows that they do not have.
    planned = plan(tmp_path, names)
    for run in planned:
        write_fake_run(run, 180)

    text = render(planned)

    assert f"\n\n{expected}\n\n" in text


def test_mnist_report_uses_figure3_values(tmp_path):
    # Field case: the MNIST report printed Table 2's Fashion-MNIST accuracies beside MNIST runs.
    planned = plan(tmp_path, ["softplus", "linear", "defrag"], dataset="mnist")
    for run, correct in zip(planned, [150, 199, 196], strict=True):
        write_fake_run(run, correct, test_split_only=True)

    text = render(planned)

    assert "0.93" not in text.split("## Setup")[0]
    assert "except the paper's accuracies (Figure 3 of" in text
    assert "| Configuration | Paper (Figure 3) |" in text
    assert "| Softplus | about 0.8860 | 0.7500 | 0 | -0.1360 |" in text
    assert "| Linear | above 0.9900 | 0.9950 | 0 | +0.0050 | baseline |" in text
    assert "the paper reports more than 0.1040 below Linear; here it is 0.2450 below" in text
    assert "- Softplus is below Linear (paper: more than 0.1040 below): confirmed" in text
    # Runs on part of the official test split cannot be held against the paper's levels, which
    # come from the 60,000 training images (field case: the page reported "no" for them).
    assert (
        "- Linear is above 0.9900, as in the paper: not testable here, because these runs "
        "trained on another split than the paper's (mean 0.9950)."
    ) in text
    assert "- DEFRAG (polar, rsgd) is above 0.9900, as in the paper: not testable here" in text
    assert "DEFRAG (polar, rsgd) is above Linear" not in text
    assert "Softplus reaches" not in text


def test_report_chance_boundary(tmp_path):
    # 30 of 200 is exactly 1.5 times the chance level of ten classes: not trained.
    planned = plan(tmp_path, ["linear"])
    write_fake_run(planned[0], 30)

    text = render(planned)

    assert "- Linear did not learn in 1 of 1 runs: test accuracy 0.1500 (seed 0)" in text


def test_mnist_other_width_gets_no_paper_values(tmp_path):
    planned = plan(tmp_path, ["linear", "defrag"], dataset="mnist", feature_dim=8)
    for run in planned:
        write_fake_run(run, 198, test_split_only=True)

    text = render(planned)

    assert "| Configuration | Paper (none) |" in text
    assert "above 0.9900" not in text
    assert "lower bound" not in text
    assert "except the paper's accuracies" not in text


def test_lower_bound_wording(tmp_path):
    # Runs on the official MNIST split (downloaded), so the levels are comparable.
    planned = plan(tmp_path, ["linear", "defrag"], dataset="mnist")
    write_fake_run(planned[0], 199)
    write_fake_run(planned[1], 198)

    text = render(planned)

    assert "mean test accuracy 0.9950 is 0.0050 above the paper's lower bound 0.9900." in text
    assert "- Linear is above 0.9900, as in the paper: yes, mean 0.9950." in text
    assert (
        "- DEFRAG (polar, rsgd) is above 0.9900, as in the paper: no, mean 0.9900 is "
        "equal to (within 0.00005) it." in text
    )


def test_report_names_device_per_run(tmp_path):
    planned = plan(tmp_path, ["linear", "defrag"])
    write_fake_run(planned[0], 180)
    write_fake_run(planned[1], 180)
    record_path = planned[1].output_dir / "config.json"
    record = json.loads(record_path.read_text())
    record["device"] = "cuda:0"
    record["machine"]["gpu"] = "Test GPU"
    record_path.write_text(json.dumps(record))

    text = render(planned)

    assert "| `linear-seed0` | 0.9000 | cpu |" in text
    assert "| `defrag-polar-rsgd-seed0` | 0.9000 | cuda:0 (Test GPU) |" in text


def test_compare_reports_diverged_run(tmp_path):
    # Field case: center loss at lr 0.1 and lambda 1 diverged on MNIST seed 1, and the error
    # stopped the whole grid before the report.
    planned = plan(tmp_path, ["linear", "center"], seeds=(0, 1))
    for run, correct in zip(planned[:3], [180, 184, 178], strict=True):
        write_fake_run(run, correct)
    message = "The gradient of parameter 0 contains inf or NaN."
    write_diverged_run(planned[3], message)
    argv = ["--variants", "linear", "center", "--seeds", "0", "1", "--epochs", "2"]

    status = main(["compare", *argv, "--output-dir", str(tmp_path)])

    text = (tmp_path / "RESULTS.md").read_text()
    assert status == 0
    assert f"- Center diverged in 1 of 2 runs (seed 1: {message[:-1]}). The verdicts" in text
    assert "- Center is above Linear (paper: +0.0002): withheld, a run of Center diverged" in text
    assert "| `center-seed1` | diverged | n/a |" in text
    assert "| Center (diverged) | 0.9371 | 0.9200 | 0 |" in text
    assert (
        "vs Linear and p vs Linear pair each run with the Linear run of the same seed. For "
        "Center (common seed 0), vs Linear is therefore the mean difference over the common "
        "seeds only and can differ from the difference of the means shown." in text
    )


def test_report_lists_configuration_that_always_diverged(tmp_path):
    planned = plan(tmp_path, ["linear", "center"], seeds=(0, 1))
    write_fake_run(planned[0], 180)
    write_fake_run(planned[2], 184)
    for run in (planned[1], planned[3]):
        write_diverged_run(run, "The training loss became nan.")
    argv = ["--variants", "linear", "center", "--seeds", "0", "1", "--epochs", "2"]

    assert main(["compare", *argv, "--output-dir", str(tmp_path)]) == 0

    text = (tmp_path / "RESULTS.md").read_text()
    assert "| Center (diverged) | n/a | diverged in all 2 runs |" in text
    assert "- Center diverged in 2 of 2 runs (seeds 0, 1: The training loss became nan)." in text
    assert "- Center: withheld, every run diverged (see above)." in text


def test_report_one_torch_thread(tmp_path):
    planned = plan(tmp_path, ["linear"])
    write_fake_run(planned[0], 180)
    record_path = planned[0].output_dir / "config.json"
    record = json.loads(record_path.read_text())
    record["versions"]["torch_threads"] = 1
    record_path.write_text(json.dumps(record))

    text = render(planned)

    assert "- Machine: Test CPU (2 logical CPUs), 1 torch thread\n" in text


def test_compare_all_runs_diverged(tmp_path, capsys):
    planned = plan(tmp_path, ["linear"])
    write_diverged_run(planned[0], "The training loss became nan.")

    status = main(
        ["compare", "--variants", "linear", "--epochs", "2", "--output-dir", str(tmp_path)]
    )

    assert status == 1
    assert "Every run of the grid diverged" in capsys.readouterr().err
    assert not (tmp_path / "RESULTS.md").exists()


def test_report_only_skips_training(tmp_path, monkeypatch):
    # A grid that trains for hours is read before it ends: the finished runs are reported, the
    # unfinished one is named, and nothing trains.
    planned = plan(tmp_path, ["linear", "defrag"], seeds=(0, 1))
    for run, correct in zip(planned[:3], [180, 184, 178], strict=True):
        write_fake_run(run, correct)
    planned[3].output_dir.mkdir()
    monkeypatch.setattr(runner.train, "train", lambda *args, **kwargs: pytest.fail("trained"))
    argv = ["--variants", "linear", "defrag", "--seeds", "0", "1", "--epochs", "2"]

    status = main(["compare", *argv, "--output-dir", str(tmp_path), "--report-only"])

    text = (tmp_path / "RESULTS.md").read_text()
    assert status == 0
    assert (
        "**Not finished:** 1 run of this grid had not finished when this page was written "
        "(`--report-only`), and no number here comes from it: `defrag-polar-rsgd-seed1`." in text
    )
    assert "| `defrag-polar-rsgd-seed1` | not finished | n/a |" in text
    assert "| DEFRAG (polar, rsgd) | 0.9393 | 0.9200 | 0 |" in text
    assert "| Linear | 0.9369 | 0.8950 ± 0.0071 | 0, 1 |" in text


REPORT_ONLY_ARGV = ["compare", "--variants", "linear", "--epochs", "2", "--report-only"]


def test_report_only_without_finished_runs(tmp_path, capsys):
    status = main([*REPORT_ONLY_ARGV, "--output-dir", str(tmp_path)])

    error = capsys.readouterr().err
    assert status == 1
    assert f"--report-only: no run of the grid has finished in {tmp_path}" in error
    assert "check that --variants, --retractions, --optimizers and --seeds name" in error
    assert "checkpoint" not in error
    assert not (tmp_path / "RESULTS.md").exists()


def test_report_only_names_interrupted_runs(tmp_path, capsys):
    planned = plan(tmp_path, ["linear"])
    planned[0].output_dir.mkdir()
    (planned[0].output_dir / runner.CHECKPOINT_NAME).write_bytes(b"")

    status = main([*REPORT_ONLY_ARGV, "--output-dir", str(tmp_path)])

    error = capsys.readouterr().err
    assert status == 1
    assert "Still training or interrupted (a checkpoint, no final epoch): linear-seed0." in error


def test_report_only_missing_folder(tmp_path, capsys):
    missing = tmp_path / "missing"

    status = main([*REPORT_ONLY_ARGV, "--output-dir", str(missing)])

    assert status == 1
    assert f"--report-only: --output-dir {missing} does not exist" in capsys.readouterr().err


def test_report_without_baseline(tmp_path):
    planned = plan(tmp_path, ["relu"])
    write_fake_run(planned[0], 100, test_split_only=True)

    text = render(planned)

    assert "n/a (no Linear runs)" in text
    assert "No Linear runs were in the grid." in text
    assert "not comparable with the paper's" in text


def test_report_with_linear_only(tmp_path):
    # Field case: a page with Linear alone printed the per-seed McNemar table as a bare header.
    planned = plan(tmp_path, ["linear"])
    write_fake_run(planned[0], 100)

    text = render(planned)

    assert "| Configuration | Seed | Right where Linear is wrong" not in text
    assert "No other configuration has a run with the seed of a Linear run" in text


def test_timing_note_names_mixed_setups(tmp_path):
    # Field case: the MNIST page averaged seconds per epoch over runs on two CPU models with
    # one and two torch threads, and the page did not mention it.
    planned = plan(tmp_path, ["linear", "defrag"])
    for run in planned:
        write_fake_run(run, 100)
    config = planned[1].output_dir / "config.json"
    record = json.loads(config.read_text())
    record["machine"]["cpu"] = "Other CPU"
    record["versions"]["torch_threads"] = 1
    config.write_text(json.dumps(record))

    text = render(planned)

    assert (
        "These runs used 2 setups, so a configuration's timing mixes them where its runs "
        "differ (Test CPU, 2 torch threads: linear-seed0; Other CPU, 1 torch thread: "
        "defrag-polar-rsgd-seed0)."
    ) in text


def test_timing_note_absent_for_one_setup(tmp_path):
    planned = plan(tmp_path, ["linear", "defrag"])
    for run in planned:
        write_fake_run(run, 100)

    text = render(planned)

    assert "setups" not in text


def test_runs_table_names_the_data_option(tmp_path):
    # Field case: the MNIST page's train commands lacked --data-dir, and no text named where
    # copied commands look for the IDX files.
    planned = plan(tmp_path, ["linear"])
    write_fake_run(planned[0], 100)

    text = render(planned)

    assert "--data-dir" not in planned[0].command
    assert "Where the files are elsewhere, add `--data-dir FOLDER`." in text


def test_status_of_fake_runs(tmp_path):
    planned = plan(tmp_path, ["linear", "defrag"])
    write_fake_run(planned[0], 100)
    write_fake_run(planned[1], 100, epochs=1)

    assert runner.run_status(planned[0].config) is runner.RunStatus.FINISHED
    assert runner.run_status(planned[1].config) is runner.RunStatus.NEW


def test_status_rejects_other_settings(tmp_path):
    planned = plan(tmp_path, ["linear"])
    write_fake_run(planned[0], 100)
    other = runner.plan_runs(
        [planned[0].spec], runner.GridOptions(shared=("--epochs", "2", "--lr", "0.5")), tmp_path
    )

    with pytest.raises(RunError, match="lr: existing run 0.01, now 0.5"):
        runner.run_status(other[0].config)


COMPARE_OPTIONS = [
    "--dataset", "--data-dir", "--cache-dir", "--download", "--variants", "--retractions",
    "--optimizers", "--seeds", "--epochs", "--batch-size", "--lr", "--lambda", "--alpha",
    "--limit-train", "--limit-test", "--feature-dim", "--device", "--output-dir", "--results",
    "--lr-schedule", "--momentum", "--weight-decay", "--hparams", "--figures", "--report-only",
]  # fmt: skip


def test_compare_help_lists_every_option(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["compare", "--help"])

    text = capsys.readouterr().out
    assert exit_info.value.code == 0
    for option in COMPARE_OPTIONS:
        assert option in text, option
    assert text.count("(default:") == len(COMPARE_OPTIONS)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--variants", "softmax"], "invalid choice: 'softmax'"),
        (["--retractions", "none"], "invalid choice: 'none'"),
        (["--seeds", "-1"], "expected an integer >= 0, got -1"),
        (["--feature-dim", "256"], "--feature grassmann needs --feature-dim below 256"),
        (["--figures", "missing.png"], "--figures missing.png: no such file. Draw the figures"),
    ],
    ids=["unknown-variant", "retraction-none", "negative-seed", "feature-dim", "figure"],
)
def test_compare_invalid_options(tmp_path, capsys, argv, expected):
    with pytest.raises(SystemExit) as exit_info:
        main(["compare", *argv, "--output-dir", str(tmp_path)])

    assert exit_info.value.code == 2
    assert expected in capsys.readouterr().err


def test_compare_embeds_figures_relative_to_the_report(tmp_path):
    planned = plan(tmp_path / "runs", ["linear"])
    write_fake_run(planned[0], 180)
    figure = tmp_path / "docs" / "img" / "figure3.png"
    figure.parent.mkdir(parents=True)
    figure.write_bytes(b"png")
    results = tmp_path / "docs" / "results.md"
    argv = ["--variants", "linear", "--epochs", "2", "--output-dir", str(tmp_path / "runs")]

    main(["compare", *argv, "--results", str(results), "--figures", str(figure)])

    text = results.read_text()
    caption = (
        "2-D test features of each configuration, one run each (the figure names its seed), "
        "laid out as the paper's Figure 3"
    )
    assert f"## Figures\n\n![{caption}](<img/figure3.png>)\n\n*{caption}*" in text


def test_compare_figure_names_and_spaces(tmp_path):
    planned = plan(tmp_path / "runs", ["linear"])
    write_fake_run(planned[0], 180)
    folder = tmp_path / "my figures"
    folder.mkdir()
    curves = folder / "curves-mnist.png"
    other = folder / "feature_norms.png"
    for image in (curves, other):
        image.write_bytes(b"png")
    argv = ["--variants", "linear", "--epochs", "2", "--output-dir", str(tmp_path / "runs")]

    main(["compare", *argv, "--figures", str(curves), str(other)])

    text = (tmp_path / "runs" / "RESULTS.md").read_text()
    caption = "Training loss and test accuracy per epoch"
    assert f"![{caption}](<../my figures/curves-mnist.png>)" in text
    assert "![feature norms](<../my figures/feature_norms.png>)" in text


def test_compare_rejects_figure_folder(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["compare", "--output-dir", str(tmp_path), "--figures", str(tmp_path)])

    assert exit_info.value.code == 2
    assert f"--figures {tmp_path}: a folder, not an image." in capsys.readouterr().err


def test_compare_rejects_results_folder(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["compare", "--output-dir", str(tmp_path), "--results", str(tmp_path)])

    assert exit_info.value.code == 2
    assert f"--results {tmp_path} is a folder." in capsys.readouterr().err


def test_report_without_paper_values_says_so(tmp_path):
    planned = plan(tmp_path, ["linear"], dataset="mnist", feature_dim=8)
    write_fake_run(planned[0], 180, test_split_only=True)

    text = render(planned)

    assert "The paper reports no accuracies for MNIST with 8-D features" in text


def test_mnist_report_carries_caveat(tmp_path):
    planned = plan(tmp_path, ["linear"], dataset="mnist")
    write_fake_run(planned[0], 199, test_split_only=True)

    text = render(planned)

    assert "These MNIST values were not re-read from the paper's Figure 3" in text


def test_provenance_lists_setting_commands():
    hparams = Hyperparameters(
        defaults={"lr": 0.03, "weight_decay": 0.0005, "epochs": 15},
        variants={"defrag": {"lambda": 1.0}},
        provenance={
            "defaults": {
                "lr": "selected by A",
                "weight_decay": "selected by B",
                "epochs": "selected by B",
            },
            "defrag": {"": "an older note on the whole entry", "lambda": "selected by C"},
        },
    )

    section = report.render_provenance("h.json", hparams)

    assert section.splitlines()[2:] == [
        "The runs took their settings from `h.json`.",
        "",
        "- defaults, `--lr 0.03`: selected by A",
        "- defaults, `--weight-decay 0.0005` and `--epochs 15`: selected by B",
        "- defrag: an older note on the whole entry",
        "- defrag, `--lambda 1.0`: selected by C",
    ]
