"""Training a run: start, resume, the epoch loop, and the non-chief worker.

Each epoch trains on `data.load(..., epoch=e)`, whose order and augmentation depend only
on `(seed, e)`, and the checkpoint is written before `state.json` points at it
(`RunDirectory.save_checkpoint`), so an interrupted run resumed at its last finished
epoch repeats the uninterrupted run exactly.

A distilling run gets its teacher ready before its first epoch (`bayes_larq.app.teacher`:
a float twin is trained, or resumed, first); a two-step run changes model at the step
boundary (`bayes_larq.app.staged`).
"""

from __future__ import annotations

import dataclasses
import math
import os
import pathlib
import shutil
import tempfile
import time
import warnings
import zipfile
from typing import Sequence

import tensorflow as tf

from bayes_larq import callbacks
from bayes_larq._keras import close_summary_writers
from bayes_larq.app import data, report
from bayes_larq.app.config import FLOAT_TWIN, RunConfig
from bayes_larq.app.distribute import distribution, strategy_name, trains_as_worker
from bayes_larq.app.errors import (
    DatasetNotFoundError,
    JobFailed,
    RunError,
    RunInterrupted,
    Setting,
    Step,
    TrainingDiverged,
)
from bayes_larq.app.evaluation import evaluate, load_classifier
from bayes_larq.app.interrupts import (
    PendingInterruptCheck,
    interrupts_kept_pending,
    raise_pending_interrupt,
)
from bayes_larq.app.model import build_model
from bayes_larq.app.rundir import RunDirectory, RunState, read_json, unwritable
from bayes_larq.app.staged import first_bonn, starts_step2, step2_bonn
from bayes_larq.app.teacher import (
    check_teacher_run,
    record_teacher,
    teacher_run,
    twin_config,
    with_teacher_path,
)
from bayes_larq.quantizers import bayesian_kernels, bayesian_quantizers, binary_kernels
from bayes_larq.training import BONN

__all__ = ["StopOnNonFiniteLoss", "Trained", "check_new_run", "resume", "train"]


@dataclasses.dataclass
class Trained:
    """A finished training run: its directory, settings, report.json content, classifier."""

    run_dir: pathlib.Path
    config: RunConfig
    report: dict
    classifier: tf.keras.Model = dataclasses.field(repr=False)

    @property
    def test_accuracy(self) -> float:
        return self.report["test"]["accuracy"]


def train(config: RunConfig, run_dir: str | os.PathLike, verbose: int = 1,
          extra_callbacks: Sequence[tf.keras.callbacks.Callback] = ()) -> Trained:
    """Start a new run in `run_dir` and train it to `config.epochs`.

    Raises:
        RunError: `run_dir` already holds a run (use `resume`) or `config` is invalid.
        RunInterrupted: Ctrl-C; finished epochs are saved, `resume(run_dir)` continues.
    """
    config = with_teacher_path(config.validate())
    for name, needs in config.settings_without_effect().items():
        warnings.warn(f"RunConfig.{name} has no effect in this run: it needs {needs}.",
                      stacklevel=2)
    distribution(config)  # first: a multi-worker strategy must exist before any op
    if not str(run_dir).strip():
        raise RunError("The output directory is empty; name a directory for the run.")
    run = RunDirectory(run_dir)
    if trains_as_worker(config):
        return _train_as_worker(config, run, verbose, extra_callbacks)
    check_new_run(run)
    _check_data(config)
    if config.teacher not in (None, FLOAT_TWIN):
        check_teacher_run(teacher_run(run, config), config)
    try:
        bonn = first_bonn(config)  # before any file is written: a bad setting leaves nothing
    except OUT_OF_MEMORY:
        raise _out_of_memory(config) from None
    with run.locked():
        check_new_run(run)  # again, under the lock: another training may have started
        _write_start(run, config, bonn)
        if config.teacher is not None:
            bonn = first_bonn(config, _ready_teacher(run, config, verbose))
        return _train_epochs(run, config, bonn, RunState(), verbose, extra_callbacks)


def _write_start(run, config, bonn):
    """The files of a run before its first epoch; state.json last, as it marks a run."""
    run.write_config(config)
    report.save_mixture_snapshot(run.init_mixture, bonn.classifier)
    run.write_state(RunState())


def _check_data(config):
    """Both splits readable, and the held-out examples leave some to train on."""
    for split in ("train", "test"):
        try:
            data.load(config.dataset, split, 1, training=False, data_dir=config.data_dir,
                      limit=1, holdout=config.validation_size if split == "train" else None)
        except data.DatasetError:
            raise
        except ValueError as err:  # the holdout check
            raise RunError(Setting("validation_size"), f" is too large: {err}") from None


def check_new_run(run: RunDirectory) -> None:
    """RunError unless `run` can take a new run: a new path, or an empty directory."""
    if run.config.exists() and not run.exists():
        raise RunError(f"{run.path} holds a run stopped while it started (config.json, no "
                       f"state.json). Start it again with `", Step("resume", run.path),
                       "` or choose another output directory.")
    if run.exists():
        done = run.read_state().epochs_done
        raise RunError(f"{run.path} already holds a run ({done} epochs done). Resume it with `",
                       Step("resume", run.path), "` or choose another output directory.")
    if not run.is_empty_or_run():
        kind = "a file" if run.path.is_file() else "a non-empty directory that is not a run"
        raise RunError(f"{run.path} is {kind}; refusing to write a run into it. Choose a new "
                       f"or empty directory.")


def resume(run_dir: str | os.PathLike, verbose: int = 1,
           extra_callbacks: Sequence[tf.keras.callbacks.Callback] = (),
           previous_checkpoint: bool = False) -> Trained:
    """Continue the run in `run_dir` from its last finished epoch (or, with
    `previous_checkpoint`, from the one before, when the last checkpoint is damaged)."""
    run = RunDirectory(run_dir)
    if not run.path.is_dir():
        raise RunError(f"{run.path} is not a run directory; ", Setting("resume"),
                       " takes the directory a run was written to.")
    if not run.exists() and not run.config.exists():
        raise RunError(f"Nothing to resume in {run.path}: it holds no state.json. Start a "
                       f"run there with `", Step("train", run.path), "`.")
    config = run.read_config()
    distribution(config)
    if trains_as_worker(config):  # reads the chief's run, which holds the lock
        state = _state_to_resume(run, previous_checkpoint) if run.exists() else RunState()
        if _is_finished(run, config, state):  # as the chief does: nothing to train
            return _finished(run, config)
        return _train_as_worker(config, run, verbose, extra_callbacks, state)
    with run.locked():
        if not run.exists():  # stopped while starting, before state.json: start again
            _write_start(run, config, first_bonn(config))
            state = RunState()
        else:
            state = _state_to_resume(run, previous_checkpoint)
        _check_progress(run, config, state)
        _restore_mixture_snapshot(run, config)
        teacher = _ready_teacher(run, config, verbose) if config.teacher is not None else None
        if _is_finished(run, config, state):  # nothing to train: keep the report as it is
            return _finished(run, config)
        # Interrupted before the first checkpoint: the seeded build gives the same start.
        bonn = (first_bonn(config, teacher) if state.checkpoint is None
                else _restore(run, state, config, teacher))
        return _train_epochs(run, config, bonn, state, verbose, extra_callbacks)


def _state_to_resume(run, previous_checkpoint):
    state = run.read_state()
    if state.diverged:
        raise RunError(f"{run.path} stopped because training diverged ({state.diverged}); "
                       f"resuming would diverge again. Start a new run with a lower learning "
                       f"rate or lam.")
    return run.roll_back(state) if previous_checkpoint else state


def _restore_mixture_snapshot(run, config):
    """Rewrite init_mixture.npz when it is missing or corrupt (the report needs it): the
    seeded build gives the same initial model."""
    try:
        report.load_mixture_snapshot(run.init_mixture)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        report.save_mixture_snapshot(run.init_mixture, build_model(config, decayed=False))


def _finished(run, config):
    return Trained(run.path, config, read_json(run.report_json), load_classifier(run.classifier))


def _check_progress(run, config, state):
    if state.epochs_done > config.epochs:
        raise RunError(f"{run.state} says {state.epochs_done} epochs are done, more than the "
                       f"{config.epochs} of {run.config}: one of them was edited. Restore "
                       f"them, or start a new run in another directory.")


def _is_finished(run, config, state):
    """A finished run (report and classifier written), which resuming would only rewrite,
    dropping what convert and benchmark added to its report."""
    return (state.epochs_done == config.epochs and (state.test or not config.validation_size)
            and run.has_report() and run.classifier.exists())


def _ready_teacher(run, config, verbose):
    """The run's checked teacher model; a float twin is trained (or resumed) first."""
    if config.teacher == FLOAT_TWIN:
        _finish_float_twin(run, config, verbose)
    return record_teacher(run, config)


def _finish_float_twin(run, config, verbose):
    twin = RunDirectory(run.teacher_run)
    if twin.classifier.exists() and twin.has_report():
        return  # finished before: reused
    try:
        if twin.exists():
            resume(twin.path, verbose)
        else:
            shutil.rmtree(twin.path, ignore_errors=True)  # killed before its state.json
            train(twin_config(config), twin.path, verbose)
    except RunInterrupted as interrupted:
        # The twin is part of this run: it is this run that resumes.
        raise RunInterrupted(run.path, 0, config.epochs, interrupted.signal_name) from None


def _restore(run, state, config, teacher=None):
    """The BONN model of the state's checkpoint, under the run's strategy."""
    loaded = run.load_checkpoint(state)
    if not config.two_step:  # a two-step run changes its model between the steps
        _check_checkpoint_matches(run, config, state, loaded)
    if strategy_name(config) == "default":
        return loaded
    # Keras cannot load a .keras file inside a distribution scope (its metric variables
    # are on-read variables that reject the stored arrays), so the model is built in
    # the scope and takes the loaded state.
    bonn = first_bonn(config, teacher)
    if config.two_step and state.epochs_done > config.step1_epochs:
        bonn = step2_bonn(config, bonn)
    bonn.copy_state_from(loaded)
    return bonn


def _check_checkpoint_matches(run, config, state, bonn):
    """RunError when config.json contradicts the checkpoint (it was edited)."""
    expected = [tuple(w.shape) for w in build_model(config, decayed=False).weights]
    quantizers = bayesian_quantizers(bonn.classifier)
    stored = [(q.initial_lam, q.initial_nu) for q in quantizers[:1]]
    wanted = [(config.lam, config.nu)] if config.kernel_loss else []
    if [tuple(w.shape) for w in bonn.classifier.weights] != expected or stored != wanted:
        raise RunError(f"{run.config} does not match the checkpoint "
                       f"{state.checkpoint}: its architecture or loss weights (arch, "
                       f"lam, nu, kernel_loss) differ from those the run trained with, so "
                       f"config.json was edited. Restore it, or start a new run with the new "
                       f"settings.")


def _train_as_worker(config, run, verbose, extra_callbacks, state=None):
    """A non-chief worker: trains in step with the chief (reading the chief's run when it
    resumes) but writes only to a scratch directory, deleted at the end."""
    if config.teacher is not None:
        raise RunError("Distillation runs on one machine for now: a teacher does not go with "
                       "a multi-worker strategy. Leave out ", Setting("teacher"), " or train "
                       "on the chief alone.")
    scratch = RunDirectory(tempfile.mkdtemp(prefix="bayes-larq-worker-"))
    try:
        scratch.write_config(config)
        if state is None or state.checkpoint is None:
            bonn = first_bonn(config)
            state = RunState()
            report.save_mixture_snapshot(scratch.init_mixture, bonn.classifier)
        else:
            bonn = _restore(run, state, config)
            shutil.copyfile(run.init_mixture, scratch.init_mixture)
        scratch.write_state(state)
        return _train_epochs(scratch, config, bonn, state, verbose, extra_callbacks)
    finally:
        shutil.rmtree(scratch.path, ignore_errors=True)


class _RunProgbar(tf.keras.callbacks.ProgbarLogger):
    """Keras' progress bar, numbering epochs of the whole run (one `fit` per epoch)."""

    def __init__(self, epochs):
        super().__init__(count_mode="steps")
        self.run_epochs = epochs

    def set_params(self, params):
        super().set_params(dict(params, epochs=self.run_epochs, verbose=1))


class StopOnNonFiniteLoss(tf.keras.callbacks.Callback):
    """Raise TrainingDiverged at the first batch whose loss is not finite.

    Unlike Keras' `TerminateOnNaN` (which finishes the epoch's bookkeeping), it stops
    before the epoch's weights can be checkpointed, so the last checkpoint stays good.
    """

    def __init__(self):
        super().__init__()
        self.epoch = 0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.epoch = epoch

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            raise TrainingDiverged(f"loss {float(loss)} at epoch {self.epoch + 1}, "
                                   f"batch {batch + 1}")


def _callbacks(run, config, bonn, verbose, extra_callbacks):
    found = list(extra_callbacks)
    if verbose:
        found.insert(0, _RunProgbar(config.epochs))  # first: prints before stats are added
    found.append(tf.keras.callbacks.TensorBoard(str(run.tensorboard), write_graph=False,
                                                profile_batch=0))
    if binary_kernels(bonn.classifier):
        found.append(callbacks.MixtureMonitor(log_dir=run.tensorboard / "mixture"))
        if config.flip_diagnostics and distribution(config).num_replicas_in_sync == 1:
            found.append(callbacks.FlipDiagnostics(log_dir=run.tensorboard / "flips"))
    if bayesian_kernels(bonn.classifier):
        if config.mixture_update == "closed_form":
            found.append(callbacks.MixtureRefresh(config.refresh_batches))
        if config.lam_warmup_epochs:
            lam = bayesian_quantizers(bonn.classifier)[0].initial_lam
            # In two-step training the kernel loss starts with step 2; so does its warm-up.
            start = config.step1_epochs if config.two_step else 0
            found.append(callbacks.LossWeightScheduler("lam", callbacks.linear_warmup(
                lam, config.lam_warmup_epochs, start_epoch=start)))
    return found


def _fit_callbacks(run, config, bonn, verbose, extra_callbacks):
    return [StopOnNonFiniteLoss(), PendingInterruptCheck(),
            *_callbacks(run, config, bonn, verbose, extra_callbacks)]


def _validation_data(config):
    """Per-epoch validation: the held-out training examples if any, else the test set."""
    if config.validation_size:
        return data.load(config.dataset, "holdout", config.batch_size, training=False,
                         data_dir=config.data_dir, holdout=config.validation_size)
    return data.load(config.dataset, "test", config.batch_size, training=False,
                     data_dir=config.data_dir, limit=config.test_limit)


def _train_epochs(run: RunDirectory, config: RunConfig, bonn: BONN, state: RunState,
                  verbose, extra_callbacks) -> Trained:
    # Every random op of training (the data order) draws from (global seed, op seed);
    # setting the global seed here makes a resumed process repeat the original one.
    tf.keras.utils.set_random_seed(config.seed)
    fit_callbacks = []
    with interrupts_kept_pending():
        try:
            validation = _validation_data(config)
            fit_callbacks = _fit_callbacks(run, config, bonn, verbose, extra_callbacks)
            for epoch in range(state.epochs_done, config.epochs):
                if starts_step2(config, epoch):
                    bonn = step2_bonn(config, bonn)
                    report.save_mixture_snapshot(run.init_mixture, bonn.classifier)
                    fit_callbacks = _fit_callbacks(run, config, bonn, verbose, extra_callbacks)
                train_data = data.load(
                    config.dataset, "train", config.batch_size, training=True,
                    data_dir=config.data_dir, limit=config.train_limit,
                    shuffle_seed=config.seed, epoch=epoch, holdout=config.validation_size,
                    augment=config.augment)
                start = time.perf_counter()
                history = bonn.fit(train_data, validation_data=validation,
                                   initial_epoch=epoch, epochs=epoch + 1, verbose=0,
                                   callbacks=fit_callbacks)
                seconds = time.perf_counter() - start
                logs = {key: float(values[-1]) for key, values in history.history.items()}
                state = run.save_checkpoint(bonn, state, logs, seconds)
                raise_pending_interrupt()
            if config.validation_size and state.test is None:
                test = evaluate(bonn.classifier, config.dataset, data_dir=config.data_dir,
                                limit=config.test_limit)
                state = dataclasses.replace(state, test=test.as_dict())
                run.write_state(state)
            bonn.classifier.save(run.classifier)
            summary = report.write_run_report(run, config, bonn, state)
            return Trained(run.path, config, summary, bonn.classifier)
        except TrainingDiverged as diverged:
            state = dataclasses.replace(state, diverged=str(diverged))
            run.write_state(state)
            _write_stopped_report(run, config, state)
            raise JobFailed(
                f"Training diverged: {diverged}. The last good checkpoint "
                f"({state.checkpoint or 'none: it diverged in the first epoch'}) is kept "
                f"in {run.path}. Likely causes: a learning rate too high "
                f"({config.learning_rate:g}), a kernel-loss weight lam too large "
                f"({config.lam:g}), or NaN in the inputs. Start a new run with smaller "
                f"values.") from None
        except KeyboardInterrupt as interrupt:
            raise RunInterrupted(
                run.path, state.epochs_done, config.epochs,
                signal_name=getattr(interrupt, "signal_name", "SIGINT")) from None
        except DatasetNotFoundError:
            raise
        except (OSError, tf.errors.NotFoundError) as err:  # a full disk, the run
            if run.was_deleted(err):                       # directory removed or read-only
                close_summary_writers(fit_callbacks)
                run.remove_leftovers()
                raise run.deleted() from None
            if not isinstance(err, OSError):
                raise
            raise unwritable(run.path, err) from None
        except OUT_OF_MEMORY:
            raise _out_of_memory(config) from None


OUT_OF_MEMORY = (MemoryError, tf.errors.ResourceExhaustedError)


def _out_of_memory(config):
    return JobFailed(f"Out of memory (batch size {config.batch_size}, arch {config.arch}). "
                     f"Start a new run with a smaller ", Setting("batch_size"), " or ",
                     Setting("arch"), ".")


def _write_stopped_report(run, config, state):
    """report.json / report.md of a run that stopped early, from its last good checkpoint."""
    if state.checkpoint is None:
        report.write_diverged_report(run, config, state)
        return
    report.write_run_report(run, config, run.load_checkpoint(state), state)
    report.update_run_report(run.path, "status", "diverged")
