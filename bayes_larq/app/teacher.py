"""The teacher of a distilling run: a finished float run, or the run's own float twin.

`RunConfig.teacher` names a finished run with `precision="float"` (its model.keras
teaches) or `FLOAT_TWIN`: the float version of the run's architecture, trained first as
an ordinary nested run in RUN/teacher/ with the run's data and seed, for `teacher_epochs`
(default: the run's epochs; an interrupted run resumes it; a finished one is reused).

Once the teacher is ready, RUN/teacher.json records which model teaches (its file, its
SHA-256 and its accuracy): report.md shows that accuracy beside the student's, and a
resumed run refuses a teacher whose model has changed since the run started.
"""

from __future__ import annotations

import dataclasses
import hashlib
import pathlib

import tensorflow as tf

from bayes_larq.app import data
from bayes_larq.app.config import FLOAT_TWIN, RunConfig
from bayes_larq.app.errors import RunError, Setting, Step
from bayes_larq.app.rundir import RunDirectory, read_json, write_json

__all__ = ["check_teacher_run", "load_teacher", "record_teacher", "teacher_run",
           "twin_config", "with_teacher_path"]


def twin_config(config: RunConfig) -> RunConfig:
    """The settings of the float twin of `config`: same data, seed and optimizer, and
    `config.teacher_epochs` epochs (the run's, unless set)."""
    return dataclasses.replace(config, precision="float", kernel_loss=False,
                               feature_loss=False, flip_threshold="fixed", teacher=None,
                               teacher_epochs=None, kd_weight=1.0, temperature=1.0,
                               two_step=False, step1_epochs=None,
                               epochs=config.teacher_epochs or config.epochs)


def teacher_run(run: RunDirectory, config: RunConfig) -> RunDirectory:
    """The run directory whose model.keras teaches `config`'s run in `run`."""
    if config.teacher == FLOAT_TWIN:
        return RunDirectory(run.teacher_run)
    return RunDirectory(config.teacher)


def with_teacher_path(config: RunConfig) -> RunConfig:
    """`config` with a teacher directory as an absolute path (resumable from anywhere)."""
    if config.teacher in (None, FLOAT_TWIN):
        return config
    return dataclasses.replace(config, teacher=str(pathlib.Path(config.teacher).resolve()))


def check_teacher_run(teacher: RunDirectory, config: RunConfig) -> tf.keras.Model:
    """The classifier of the finished float run `teacher`, checked to fit `config`'s data.

    Raises:
        RunError: `teacher` is not a run, not finished, not a float run, or its model
            takes other inputs or gives other classes than `config`'s dataset.
    """
    fix = (" Pass a finished float run (trained with ", Setting("precision", "float"),
           f") or {FLOAT_TWIN!r} to train one first.")
    if not teacher.config.exists():
        raise RunError(f"The teacher {teacher.path} is not a run directory (no config.json).",
                       *fix)
    teacher_config = teacher.read_config()
    if teacher_config.precision != "float":
        raise RunError(f"The teacher {teacher.path} is a {teacher_config.precision!r} run; a "
                       f"teacher must be real-valued.", *fix)
    if not (teacher.classifier.exists() and teacher.has_report()):
        raise RunError(f"The teacher {teacher.path} is not a finished run (no model.keras "
                       f"yet). Finish it with `", Step("resume", teacher.path), "` first.")
    model = load_teacher(teacher)
    info = data.dataset_info(config.dataset)
    takes, gives = tuple(model.inputs[0].shape[1:]), tuple(model.outputs[0].shape[1:])
    if takes != tuple(info.input_shape) or gives != (info.num_classes,):
        raise RunError(f"The teacher {teacher.path} takes inputs of shape {takes} and gives "
                       f"{gives[-1] if gives else '?'} classes; {config.dataset} has inputs "
                       f"of shape {tuple(info.input_shape)} and {info.num_classes} classes. "
                       f"Use a teacher trained on {config.dataset}.")
    return model


def load_teacher(teacher: RunDirectory) -> tf.keras.Model:
    return tf.keras.models.load_model(teacher.classifier, compile=False)


def _sha256(path):
    return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()


def record_teacher(run: RunDirectory, config: RunConfig) -> tf.keras.Model:
    """The checked teacher model of the run in `run`; recorded in teacher.json the first
    time, compared with that record afterwards.

    Raises:
        RunError: as `check_teacher_run`, or the teacher's model.keras is not the one
            the run started with.
    """
    teacher = teacher_run(run, config)
    model = check_teacher_run(teacher, config)
    digest = _sha256(teacher.classifier)
    if run.teacher_record.exists():
        recorded = read_json(run.teacher_record)
        if recorded.get("sha256") != digest:
            raise RunError(f"The teacher's model {teacher.classifier} changed since {run.path} "
                           f"started (SHA-256 {recorded.get('sha256')} then, {digest} now); a "
                           f"resumed run must keep its teacher. Restore that model, or start "
                           f"a new run with the new teacher.")
        return model
    summary = read_json(teacher.report_json)
    write_json(run.teacher_record, {
        "source": config.teacher, "run_dir": str(teacher.path),
        "model": str(teacher.classifier), "sha256": digest,
        "test": summary.get("test"), "validation": summary.get("validation"),
        "train_seconds": summary.get("train_seconds"),
        "config": {key: summary["config"].get(key)
                   for key in ("model", "arch", "precision", "epochs", "seed")}})
    return model
