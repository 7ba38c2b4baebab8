"""Per-configuration hyperparameters in a JSON file, written by ``tune`` and read by ``compare``.

The file contains the settings that a tuning grid selected on the validation split, so that the
final runs on the test split take them without retyping:

.. code-block:: json

    {
      "defaults": {"lr": 0.03, "weight_decay": 0.0005, "epochs": 20},
      "variants": {
        "silhouette": {"lambda": 0.1, "alpha": 0.5},
        "defrag": {"lambda": 1.0, "alpha": 0.5},
        "defrag:adam-then-retract": {"lr": 0.001}
      },
      "provenance": {
        "defaults": {"lr": "how 0.03 was chosen", "weight_decay": "...", "epochs": "..."},
        "defrag": {"lambda": "...", "alpha": "..."}
      }
    }

Keys of an entry: ``lr``, ``lr_schedule``, ``epochs``, ``weight_decay``, ``momentum``,
``batch_size``, ``lambda`` and ``alpha``. An entry applies to the runs of a preset (``"defrag"``)
or of a preset with one optimizer (``"defrag:adam-then-retract"``). A run takes ``defaults``,
then its preset's entry, then its preset-and-optimizer entry, each overriding the one before,
and options given on the command line override all three. Settings that do not apply to a run
are left out for it: ``lambda`` and ``alpha`` for presets without an auxiliary loss, and
``lr`` and ``momentum`` of ``defaults`` and of a preset's entry for Adam runs, which have their
own learning-rate scale and no momentum.

``provenance`` says, per entry and per setting, which tuning command chose the value, because
successive tuning stages each choose some settings and keep the others. A string in place of an
entry's object is one note on the whole entry, as earlier versions of ``tune`` wrote it.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from examples.defrag import cli
from examples.defrag.checkpoint import to_json, write_atomically
from examples.defrag.config import LR_SCHEDULES, OPTIMIZERS
from examples.defrag.variants import VARIANTS

# Entry key -> (train option, parser of its value).
OPTIONS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "lr": ("--lr", cli.positive_float),
    "lr_schedule": ("--lr-schedule", lambda text: _choice(text, LR_SCHEDULES)),
    "epochs": ("--epochs", cli.positive_int),
    "weight_decay": ("--weight-decay", cli.non_negative_float),
    "momentum": ("--momentum", cli.unit_interval_float),
    "batch_size": ("--batch-size", cli.positive_int),
    "lambda": ("--lambda", cli.non_negative_float),
    "alpha": ("--alpha", cli.unit_interval_float),
}

AUX_KEYS = frozenset({"lambda", "alpha"})
SGD_KEYS = frozenset({"lr", "momentum"})
ADAM = "adam-then-retract"


def _choice(text: str, choices: tuple[str, ...]) -> str:
    if text not in choices:
        raise argparse.ArgumentTypeError(f"expected one of {', '.join(choices)}, got {text}")
    return text


@dataclass(frozen=True)
class Hyperparameters:
    """The parsed contents of a hyperparameter file.

    Attributes:
        defaults: Settings for every run.
        variants: Settings per preset name or ``"preset:optimizer"`` key.
        provenance: Per entry key (``"defaults"`` or a variants key), free text per setting
            key saying how that value was chosen. The text under setting key ``""`` is a note
            on the whole entry.
    """

    defaults: dict[str, Any] = field(default_factory=dict)
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)
    provenance: dict[str, dict[str, str]] = field(default_factory=dict)

    def settings_for(self, variant: str, optimizer: str | None) -> dict[str, Any]:
        """Return the merged settings of a run of ``variant`` with ``optimizer``.

        Args:
            variant: Preset name.
            optimizer: ``--optimizer`` of the run; None means the ``train`` default, rsgd.
        """
        optimizer = optimizer or "rsgd"
        merged: dict[str, Any] = {}
        for entry in (self.defaults, self.variants.get(variant, {})):
            for key, value in entry.items():
                if optimizer == ADAM and key in SGD_KEYS:
                    continue
                merged[key] = value
        merged.update(self.variants.get(f"{variant}:{optimizer}", {}))
        if not VARIANTS[variant].has_aux_loss:
            merged = {key: value for key, value in merged.items() if key not in AUX_KEYS}
        return merged

    def argv_for(self, variant: str, optimizer: str | None) -> list[str]:
        """Return the ``train`` options of ``settings_for`` as command-line arguments."""
        return settings_argv(self.settings_for(variant, optimizer))

    def entry(self, key: str) -> dict[str, Any]:
        """Return the settings of entry ``key``: ``"defaults"`` or a variants key."""
        return self.defaults if key == "defaults" else self.variants.get(key, {})

    def to_dict(self) -> dict[str, Any]:
        """Return the file's JSON structure."""
        provenance: dict[str, Any] = {}
        for key, notes in self.provenance.items():
            # A lone whole-entry note is written back as the string it was read from.
            provenance[key] = notes[""] if set(notes) == {""} else notes
        return {
            "defaults": self.defaults,
            "variants": self.variants,
            "provenance": provenance,
        }


def option_name(key: str) -> str:
    """Return the ``train`` option of settings key ``key``, such as ``--weight-decay``.

    An unknown key is returned unchanged.
    """
    return OPTIONS[key][0] if key in OPTIONS else key


def settings_argv(settings: Mapping[str, Any]) -> list[str]:
    """Turn entry settings such as ``{"lr": 0.03}`` into ``["--lr", "0.03"]``."""
    argv = []
    for key, value in settings.items():
        argv += [OPTIONS[key][0], str(value)]
    return argv


def load_hparams(path: Path) -> Hyperparameters:
    """Read and validate a hyperparameter file.

    Raises:
        examples.defrag.cli.OptionConflict: When the file is missing, not JSON, or names an
            unknown preset, optimizer or setting, a value out of range, or a setting that does
            not apply to its preset. The message names the file, the key and the fix.
    """
    try:
        data = json.loads(Path(path).read_text())
    except OSError as error:
        raise cli.OptionConflict(
            f"--hparams {path} cannot be read: {error}. Pass the file that "
            "`tune --write-hparams` wrote, or leave --hparams out to use the train defaults."
        ) from None
    except json.JSONDecodeError as error:
        raise cli.OptionConflict(
            f"--hparams {path} is not valid JSON: {error}. Pass the file that "
            "`tune --write-hparams` wrote, or fix the syntax at that position."
        ) from None
    if not isinstance(data, dict) or set(data) - {"defaults", "variants", "provenance"}:
        raise cli.OptionConflict(
            f"--hparams {path} must be a JSON object with the keys defaults, variants and "
            f"provenance (each optional), got {_keys_text(data)}."
        )

    defaults = _check_entry(path, "defaults", data.get("defaults", {}), None, None)
    variants = {}
    for key, entry in _object(path, "variants", data.get("variants", {})).items():
        variant, optimizer = _split_key(path, key)
        variants[key] = _check_entry(path, key, entry, variant, optimizer)
    provenance = {
        str(key): _provenance_notes(path, key, notes)
        for key, notes in _object(path, "provenance", data.get("provenance", {})).items()
    }
    return Hyperparameters(defaults, variants, provenance)


def _provenance_notes(path: Path, key: str, notes: Any) -> dict[str, str]:
    """Return the notes of one provenance entry per setting key. A string covers the entry."""
    if isinstance(notes, str):
        return {"": notes}
    if not isinstance(notes, dict) or not all(isinstance(text, str) for text in notes.values()):
        raise cli.OptionConflict(
            f"--hparams {path}: provenance of {key} must be a string or an object of strings "
            'per setting, such as {"lr": "selected by ..."}.'
        )
    return {str(name): text for name, text in notes.items()}


def write_hparams(path: Path, hparams: Hyperparameters) -> None:
    """Write a hyperparameter file atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, to_json(hparams.to_dict()))


def _object(path: Path, key: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise cli.OptionConflict(
            f"--hparams {path}: {key} must be a JSON object, got {type(value).__name__}."
        )
    return value


def _keys_text(data: Any) -> str:
    return ", ".join(map(str, data)) if isinstance(data, dict) else type(data).__name__


def _split_key(path: Path, key: str) -> tuple[str, str | None]:
    """Split ``"preset"`` or ``"preset:optimizer"`` and check both names."""
    variant, _, optimizer = key.partition(":")
    if variant not in VARIANTS:
        raise cli.OptionConflict(
            f"--hparams {path}: unknown preset {variant!r} in variants. Use one of "
            f"{', '.join(VARIANTS)}, optionally followed by :OPTIMIZER."
        )
    if optimizer and optimizer not in OPTIMIZERS:
        raise cli.OptionConflict(
            f"--hparams {path}: unknown optimizer {optimizer!r} in {key!r}. Use one of "
            f"{', '.join(OPTIMIZERS)}."
        )
    return variant, optimizer or None


def _check_entry(
    path: Path, key: str, entry: Any, variant: str | None, optimizer: str | None
) -> dict[str, Any]:
    """Parse each setting of one entry with the train option's own parser."""
    checked = {}
    for name, value in _object(path, key, entry).items():
        if name not in OPTIONS:
            raise cli.OptionConflict(
                f"--hparams {path}: unknown setting {name!r} in {key}. Use {', '.join(OPTIONS)}."
            )
        if variant is not None and name in AUX_KEYS and not VARIANTS[variant].has_aux_loss:
            raise cli.OptionConflict(
                f"--hparams {path}: {name} in {key} does not apply, because {variant} has no "
                "auxiliary loss. Remove it."
            )
        if optimizer == ADAM and name == "momentum":
            raise cli.OptionConflict(
                f"--hparams {path}: momentum in {key} does not apply to Adam. Remove it."
            )
        try:
            checked[name] = OPTIONS[name][1](str(value))
        except argparse.ArgumentTypeError as error:
            raise cli.OptionConflict(f"--hparams {path}: {name} in {key}: {error}.") from None
    return checked
