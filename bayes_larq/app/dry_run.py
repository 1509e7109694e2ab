"""`bayes-larq train --dry-run`: what a run would do, resolved, without running it.

`plan` resolves a validated `RunConfig` the way training would (the settings file,
the flags and the defaults are already merged into it) and returns, as JSON-ready
values:

* `settings`: one key per setting with the value the run uses. Where config.json holds
  `null` for "the default", the plan names it: `train_limit` and `test_limit` are the
  examples read, `validation_size` 0, `data_dir` the directory the data is looked for
  in, `teacher` "none", `teacher_epochs` 0 without a float twin, `step1_epochs` 0
  without two-step training.
* `strategy`: the `tf.distribute` strategy "auto" resolves to on this machine and with
  this `TF_CONFIG`, its workers and replicas (nothing is created).
* `schedule`: examples and steps per epoch, the learning rate of each optimizer group
  at the start (`w_lr_multiplier`, `sigma_lr_multiplier`) and the epochs after which a
  step schedule decays it.
* `model`: the run's classifier, built as training builds it (so a bad architecture
  argument fails here): its parameters, its binary kernels and the kernels that weight
  decay acts on (`bayes_larq.weight_decay`).
* `output`: the run directory that would be written.

Nothing is read but the settings (no data) and nothing is written.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib

from bayes_larq.app import data
from bayes_larq.app.config import RunConfig
from bayes_larq.app.distribute import planned_replicas
from bayes_larq.app.fashion_mnist import local_files
from bayes_larq.app.model import build_model, steps_per_epoch, train_examples
from bayes_larq.app.report import examples_tested
from bayes_larq.app.staged import step_epochs
from bayes_larq.quantizers import binary_kernels
from bayes_larq.weight_decay import decayed_kernels

__all__ = ["plan"]


def plan(config: RunConfig, output: str | os.PathLike) -> dict:
    """What the run of `config` in `output` would do (module docstring)."""
    return {"settings": resolved_settings(config), "strategy": planned_replicas(config),
            "schedule": schedule(config), "model": model_summary(config),
            "output": str(output)}


def model_summary(config: RunConfig) -> dict:
    """Parameters, binary kernels and weight-decayed kernels of the run's classifier."""
    model = build_model(config)
    return {"name": model.name, "parameters": int(model.count_params()),
            "binary_kernels": len(binary_kernels(model)),
            "weight_decayed_kernels": len(decayed_kernels(model))}


def resolved_settings(config: RunConfig) -> dict:
    """Every setting at the value the run uses (no `None` standing for a default)."""
    settings = dataclasses.asdict(config)
    settings.update(train_limit=train_examples(config), test_limit=examples_tested(config),
                    validation_size=config.validation_size or 0,
                    data_dir=data_location(config), teacher=config.teacher or "none",
                    teacher_epochs=config.teacher_epochs or 0,
                    step1_epochs=config.step1_epochs if config.two_step else 0)
    return settings


def data_location(config: RunConfig) -> str:
    """The directory the run's data is read from (the first place that has it)."""
    if config.data_dir is not None:
        return str(config.data_dir)
    if data.dataset_info(config.dataset).source == "idx":
        files, _ = local_files("train")
        if files is not None:
            return os.path.dirname(files[0])
    return os.environ.get("TFDS_DATA_DIR") or str(pathlib.Path("~/tensorflow_datasets")
                                                    .expanduser())


def schedule(config: RunConfig) -> dict:
    """Examples and steps per epoch, the rate of each group, the epochs of the decays."""
    steps = steps_per_epoch(config)
    rate = float(config.learning_rate)
    rates = {"kernels, mu and the rest": rate}
    if config.kernel_loss:
        rates.update(W=_rounded(rate * config.w_lr_multiplier),
                     sigma=_rounded(rate * config.sigma_lr_multiplier))
    return {"train_examples": train_examples(config), "steps_per_epoch": steps,
            "steps": steps * config.epochs, "learning_rates": rates,
            "lr_decays_after_epochs": decay_epochs(config)}


def _rounded(product):
    """A product of two settings without its binary rounding (0.1 * 0.1 is 0.01)."""
    return float(f"{product:.12g}")


def decay_epochs(config: RunConfig) -> list[int]:
    """The epochs after which a step schedule multiplies the rate by `lr_decay_factor`
    (two-step training restarts the schedule in step 2)."""
    if config.lr_schedule != "step":
        return []
    starts, lengths = ((0, config.step1_epochs), step_epochs(config)) if config.two_step \
        else ((0,), (config.epochs,))
    return [start + epoch for start, length in zip(starts, lengths)
            for epoch in range(config.lr_decay_epochs, length, config.lr_decay_epochs)]
