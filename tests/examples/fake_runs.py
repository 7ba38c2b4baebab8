"""Run folders written by the tests of the DEFRAG report, in place of trained runs.

The test modules of this folder import it by its bare name. That works because this folder has
no ``__init__.py``, so pytest's default ``prepend`` import mode puts it on ``sys.path``.
"""

import dataclasses
import json

import torch

from examples.defrag import runner
from examples.defrag.report import render_report
from examples.defrag.results import load_result

TEST_EXAMPLES = 200


def plan(
    tmp_path,
    names,
    seeds=(0,),
    retractions=("polar",),
    optimizers=("rsgd",),
    aux=(),
    dataset="fashion-mnist",
    feature_dim=None,
):
    specs = runner.build_grid(names, retractions, optimizers, seeds)
    if feature_dim is None:
        feature_dim = 2 if dataset == "mnist" else 8
    shared = ("--dataset", dataset, "--feature-dim", str(feature_dim), "--epochs", "2")
    options = runner.GridOptions(shared=shared, aux=tuple(aux))
    return runner.plan_runs(specs, options, tmp_path)


def write_fake_run(
    run, correct_count, *, epochs=2, test_split_only=False, silhouette=0.5, distance_ratio=0.25
):
    """Write the files of a finished run whose first ``correct_count`` predictions are right.

    ``silhouette`` and ``distance_ratio`` are the test cluster metrics of every epoch, and None
    records a metric as missing.
    """
    run.output_dir.mkdir(parents=True)
    labels = torch.arange(TEST_EXAMPLES) % 10
    predictions = labels.clone()
    predictions[correct_count:] = (labels[correct_count:] + 1) % 10
    accuracy = correct_count / TEST_EXAMPLES

    record = {
        **dataclasses.asdict(run.config),
        "parameters": 1_256_866,
        "data": {
            "source": "/data",
            "train_examples": 1000,
            "test_examples": TEST_EXAMPLES,
            "test_split_only": test_split_only,
        },
        "versions": {"python": "3.11", "torch": "2.9", "torch_threads": 2},
        "machine": {"cpu": "Test CPU", "cpu_count": 2, "load_average_1min": 0.5},
        "started": "2025-01-01T00:00:00+00:00",
    }
    rows = [
        {
            "epoch": epoch,
            "loss": 1.0,
            "test_accuracy": accuracy,
            "test_silhouette": silhouette,
            "test_distance_ratio": distance_ratio,
            "train_seconds": 10.0 * epoch,
            "eval_seconds": 1.0,
        }
        for epoch in range(1, epochs + 1)
    ]
    (run.output_dir / "config.json").write_text(json.dumps(record))
    (run.output_dir / "metrics.json").write_text(json.dumps(rows))
    outputs = {"epoch": epochs, "labels": labels, "predictions": predictions}
    torch.save(outputs, run.output_dir / "predictions.pt")
    torch.save(
        {"epoch": epochs, "labels": labels, "features": torch.zeros(TEST_EXAMPLES, 2)},
        run.output_dir / "features.pt",
    )


def render(planned):
    results = [load_result(run) for run in planned]
    return render_report(results, "python -m examples.defrag compare", planned[0].output_dir)


def write_diverged_run(run, message):
    """Write the folder of a run that diverged: its config and the error that stopped it."""
    run.output_dir.mkdir(parents=True)
    (run.output_dir / "config.json").write_text(json.dumps(dataclasses.asdict(run.config)))
    (run.output_dir / runner.DIVERGED_NAME).write_text(message + "\n")
