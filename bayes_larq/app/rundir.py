"""A run directory: every file of a run, its typed state, checkpoints, atomic writes.

A run directory holds:

* `config.json`: the `RunConfig`;
* `state.json`: the `RunState` (epochs done, per-epoch logs and seconds, the current
  checkpoint);
* `checkpoints/epoch-NNN.keras`: the `BONN` model after the last finished epoch (weights,
  W / mu / sigma, feature-loss state, optimizer state and step counter), and the one
  before it;
* `init_mixture.npz`: latent kernels and fitted mixtures at initialisation (for plots;
  in a two-step run, at the start of step 2);
* `teacher.json`: the teacher of a distilling run (`bayes_larq.app.teacher`), and
  `teacher/`, the nested run of a float-twin teacher;
* `model.keras`: the trained classifier (what `evaluate` and `convert` use);
* `tensorboard/`: TensorBoard logs (losses, metrics, mixture scalars, latent histograms);
* `report.json`, `report.md`, `curves.png`, `latents.png` (`bayes_larq.app.report`);
* `model.tflite` after `convert`;
* `.lock`: held by the training that writes the run (`RunDirectory.locked`).

Every file name is defined here once (`RunDirectory` attributes and the constants
below). The checkpoint is written before `state.json` points at it, and every JSON file
is replaced atomically, so a run stopped at any point keeps a consistent state. Whatever
else must hold for one directory (such as one training at a time) belongs to
`RunDirectory` too.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import json
import os
import pathlib
import shutil
from typing import Any, Iterator

import numpy as np
import tensorflow as tf

from bayes_larq.app.config import RunConfig
from bayes_larq.app.errors import JobFailed, RunError, Step

__all__ = ["CHECKPOINT_SUFFIX", "LOCK_NAME", "RunDirectory", "RunState", "read_json",
           "run_config_of", "unwritable", "write_json"]

CHECKPOINT_SUFFIX = ".keras"
LOCK_NAME = ".lock"


def checkpoint_name(epoch: int) -> str:
    """The file name of the checkpoint after `epoch` finished epochs."""
    return f"epoch-{epoch:03d}{CHECKPOINT_SUFFIX}"


def read_json(path: str | os.PathLike) -> Any:
    """The JSON content of `path`; RunError naming the file when it is unreadable."""
    try:
        return json.loads(pathlib.Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise RunError(f"{path} is unreadable or corrupt ({type(err).__name__}: {err}). "
                       f"Restore it, or start a new run in another directory.") from None


def write_json(path: str | os.PathLike, payload: Any) -> None:
    """Write JSON atomically: a crash leaves the old file or the new one, never half."""
    temporary = pathlib.Path(f"{path}.tmp")
    temporary.write_text(json.dumps(payload, indent=2, default=_json_default) + "\n")
    os.replace(temporary, path)


def _json_default(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, pathlib.Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


@dataclasses.dataclass(frozen=True)
class RunState:
    """The progress of a run (state.json).

    `history` holds the Keras logs of each finished epoch and `epoch_seconds` its wall
    time; `checkpoint` is the file name (in checkpoints/) of the model after the last
    one, None before the first. `test` is the final test evaluation of a run with a
    held-out validation split; `diverged` says why training stopped with a non-finite loss.
    """

    epochs_done: int = 0
    checkpoint: str | None = None
    history: list[dict] = dataclasses.field(default_factory=list)
    epoch_seconds: list[float] = dataclasses.field(default_factory=list)
    test: dict | None = None
    diverged: str | None = None

    REQUIRED = ("epochs_done", "checkpoint", "history", "epoch_seconds")

    def as_dict(self) -> dict:
        """The content of state.json (`test` and `diverged` only when set)."""
        values = {"epochs_done": self.epochs_done, "checkpoint": self.checkpoint,
                  "history": list(self.history), "epoch_seconds": list(self.epoch_seconds)}
        values.update({key: getattr(self, key) for key in ("test", "diverged")
                       if getattr(self, key) is not None})
        return values

    def after_epoch(self, checkpoint: str, logs: dict, seconds: float) -> RunState:
        """The state once one more epoch is finished and saved in `checkpoint`."""
        return dataclasses.replace(self, epochs_done=self.epochs_done + 1, checkpoint=checkpoint,
                                   history=[*self.history, logs],
                                   epoch_seconds=[*self.epoch_seconds, seconds])

    def rolled_back(self) -> RunState:
        """The state of the epoch before the last."""
        done = self.epochs_done - 1
        return dataclasses.replace(self, epochs_done=done, checkpoint=checkpoint_name(done),
                                   history=self.history[:done],
                                   epoch_seconds=self.epoch_seconds[:done])


class RunDirectory:
    """Every path of one run directory, and reading and writing its files."""

    def __init__(self, path: str | os.PathLike):
        self.path = pathlib.Path(path)
        self.config = self.path / "config.json"
        self.state = self.path / "state.json"
        self.checkpoints = self.path / "checkpoints"
        self.teacher_run = self.path / "teacher"  # a float-twin teacher's nested run
        self.teacher_record = self.path / "teacher.json"  # which model teaches this run
        self.init_mixture = self.path / "init_mixture.npz"
        self.classifier = self.path / "model.keras"
        self.tensorboard = self.path / "tensorboard"
        self.report_json = self.path / "report.json"
        self.report_md = self.path / "report.md"
        self.curves = self.path / "curves.png"
        self.latents = self.path / "latents.png"
        self.tflite = self.path / "model.tflite"
        self.lock = self.path / LOCK_NAME

    def relative(self, path: pathlib.Path) -> str:
        """`path` as the report names it: relative to the run directory."""
        return path.relative_to(self.path).as_posix()

    def exists(self) -> bool:
        return self.state.exists()

    def has_report(self) -> bool:
        return self.report_json.exists()

    def is_empty_or_run(self) -> bool:
        """True when a new run may be written here: a missing or empty directory."""
        if self.path.is_file():
            return False
        return not self.path.exists() or not any(
            entry.name != LOCK_NAME for entry in self.path.iterdir())

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the run's lock: one training per run directory at a time.

        An `flock` on `.lock`, held open while the training runs: the kernel releases it
        when the process ends in any way (SIGKILL included), so a killed run leaves no
        stale lock, unlike a pid file, whose pid may be reused by another process. The
        holder's pid is written into the file only to name it in the error.
        """
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            descriptor = os.open(self.lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise unwritable(self.path, err) from None
        try:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(descriptor, 32, 0).decode(errors="replace").strip()
                raise RunError(f"{self.path} is being trained by another process "
                               f"(pid {holder or 'unknown'}); wait for it to finish or stop "
                               f"it, or choose another output directory.") from None
            os.ftruncate(descriptor, 0)
            os.pwrite(descriptor, f"{os.getpid()}\n".encode(), 0)
            yield
        finally:
            os.close(descriptor)  # releases the flock

    def read_config(self) -> RunConfig:
        if not self.config.exists():
            lost = " (it has a state.json: config.json was deleted; restore it)" if (
                self.exists()) else ""
            raise RunError(f"{self.path} is not a bayes-larq run directory (no "
                           f"config.json){lost}.")
        values = read_json(self.config)
        if not isinstance(values, dict):
            raise RunError(f"{self.config} is corrupt: it does not hold the run's settings. "
                           f"Restore it or start a new run.")
        return RunConfig.from_dict(values).validate()

    def write_config(self, config: RunConfig) -> None:
        write_json(self.config, config.as_dict())

    def read_state(self) -> RunState:
        values = read_json(self.state)
        if not isinstance(values, dict) or not set(RunState.REQUIRED) <= set(values):
            raise RunError(f"{self.state} is corrupt: it lacks {sorted(RunState.REQUIRED)}. "
                           f"Restore it or start a new run.")
        checkpoint, done = values["checkpoint"], values["epochs_done"]
        if checkpoint is not None and (not isinstance(checkpoint, str)
                                       or pathlib.Path(checkpoint).name != checkpoint):
            raise RunError(f"{self.state} is corrupt: its checkpoint {checkpoint!r} is not a "
                           f"file name in {self.checkpoints}.")
        if isinstance(done, bool) or not isinstance(done, int) or done < 0:
            raise self._corrupt_state(f"epochs_done {done!r} is not an integer >= 0")
        for key in ("history", "epoch_seconds"):
            if not isinstance(values[key], list) or len(values[key]) != done:
                raise self._corrupt_state(f"{key} is not a list of the {done} finished epochs")
        if not all(isinstance(logs, dict) for logs in values["history"]):
            raise self._corrupt_state("history is not a list of per-epoch logs")
        return RunState(done, checkpoint, values["history"], values["epoch_seconds"],
                        values.get("test"), values.get("diverged"))

    def _corrupt_state(self, fault):
        return RunError(f"{self.state} is corrupt: {fault}. Restore it, or start a new run "
                        f"in another directory.")

    def write_state(self, state: RunState) -> None:
        write_json(self.state, state.as_dict())

    def save_checkpoint(self, bonn: tf.keras.Model, state: RunState, epoch_logs: dict,
                        seconds: float) -> RunState:
        """Checkpoint first, then state.json pointing at it; then drop the one before the
        previous checkpoint, so the previous one survives until the new one is safe.

        Raises:
            FileNotFoundError: the run directory was deleted since training started
                (`was_deleted` says so; training then cleans up and raises `deleted`).
        """
        if not self.config.exists():
            raise FileNotFoundError(errno.ENOENT, "the run's config.json is gone",
                                    str(self.config))
        self.checkpoints.mkdir(exist_ok=True)
        epoch = state.epochs_done + 1
        checkpoint = self.checkpoints / checkpoint_name(epoch)
        temporary = checkpoint.with_suffix(".tmp" + CHECKPOINT_SUFFIX)
        bonn.save(temporary)
        os.replace(temporary, checkpoint)
        state = state.after_epoch(checkpoint.name, epoch_logs, seconds)
        self.write_state(state)
        keep = {checkpoint.name, checkpoint_name(epoch - 1)}
        for old in self.checkpoints.glob(f"epoch-*{CHECKPOINT_SUFFIX}"):
            if old.name not in keep:
                old.unlink(missing_ok=True)
        return state

    def was_deleted(self, err: OSError | tf.errors.NotFoundError) -> bool:
        """Whether `err`, raised while this run trained, means the directory was deleted
        (a file is missing and so is config.json). TensorFlow's own file operations (the
        TensorBoard writers) report a missing directory as `tf.errors.NotFoundError`."""
        missing = (isinstance(err, tf.errors.NotFoundError)
                   or getattr(err, "errno", None) == errno.ENOENT)
        return missing and not self.config.exists()

    def remove_leftovers(self) -> None:
        """After the directory was deleted mid-training: remove what TensorBoard wrote
        there again since (`tensorboard/`), and the directory when nothing else is in it,
        so that nothing half-written keeps a new run from starting there."""
        shutil.rmtree(self.tensorboard, ignore_errors=True)
        with contextlib.suppress(OSError):
            self.path.rmdir()

    def deleted(self) -> RunError:
        """The error of a run directory deleted while its training ran."""
        return RunError(f"{self.path} was deleted while this training ran (its config.json "
                        f"is gone): there is no run left to save into or to resume. Start "
                        f"it again with `", Step("train", self.path), "`.")

    def load_checkpoint(self, state: RunState) -> tf.keras.Model:
        """The BONN model of the state's checkpoint."""
        from bayes_larq.training import BONN

        path = self.checkpoints / state.checkpoint
        try:
            loaded = tf.keras.models.load_model(path)
            if not isinstance(loaded, BONN):
                raise ValueError(f"it holds a {type(loaded).__name__}, not the run's BONN model")
            return loaded
        except (OSError, ValueError) as err:
            previous = self.checkpoints / checkpoint_name(state.epochs_done - 1)
            hint = ((f" The previous checkpoint {previous.name} is intact: resume from it "
                     f"with `", Step("resume_previous", self.path), "`.")
                    if previous.exists() and state.epochs_done > 1 else (" Start a new run.",))
            raise RunError(f"The checkpoint {path} cannot be loaded "
                           f"({type(err).__name__}: {str(err).splitlines()[0][:200]}).",
                           *hint) from None

    def roll_back(self, state: RunState) -> RunState:
        """The state of the epoch before the last (to resume from its checkpoint)."""
        previous = state.rolled_back() if state.epochs_done > 1 else None
        if previous is None or not (self.checkpoints / previous.checkpoint).exists():
            raise RunError(f"{self.path} has no previous checkpoint to resume from.")
        return previous


def unwritable(path: pathlib.Path, err: OSError) -> Exception:
    """The error of a run directory that cannot be written: JobFailed (exit 1) for a full
    disk, which freeing space fixes; RunError (exit 2) otherwise (another directory does)."""
    reason = f"{type(err).__name__}: {err.strerror or err}"
    if err.errno == errno.ENOSPC:
        return JobFailed(f"No space left on the device of {path} ({reason}). Free some "
                         f"space, then resume with `", Step("resume", path), "`.")
    return RunError(f"Cannot write the run directory {path} ({reason}); it is under a file, "
                    f"read-only or not yours? Choose another output directory.")


def run_config_of(path: str | os.PathLike) -> RunConfig | None:
    """The RunConfig of the run that holds `path` (a run directory or a file in one)."""
    path = pathlib.Path(path)
    run = RunDirectory(path if path.is_dir() else path.parent)
    return run.read_config() if run.config.exists() else None
