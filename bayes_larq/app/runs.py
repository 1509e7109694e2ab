"""The job on run directories: train, resume, evaluate, convert, benchmark, demo.

Every `bayes-larq` command, as a library (`bayes_larq.app.cli` only parses arguments and
prints); each step returns a dataclass (`Trained`, `Evaluation`, `Conversion`,
`Benchmark`, `Demo`):

```python
from bayes_larq.app import runs

config = runs.RunConfig(model="small_cnn", dataset="fashion_mnist", epochs=5)
runs.train(config, "runs/first")          # Ctrl-C -> runs.RunInterrupted; resume with
runs.resume("runs/first")                 # ... the same weights as an uninterrupted run
runs.evaluate(runs.load_classifier("runs/first"), "fashion_mnist")   # an Evaluation
runs.convert("runs/first")                # LCE .tflite, checked against Keras
runs.benchmark("runs/first")              # latency beside the float twin
```

A run directory holds:

* `config.json`: the `RunConfig`;
* `state.json`: epochs done, per-epoch logs and seconds, the current checkpoint;
* `checkpoints/epoch-NNN.keras`: the `BONN` model after the last finished epoch (weights,
  W / mu / sigma, feature-loss state, optimizer state and step counter);
* `init_mixture.npz`: latent kernels and fitted mixtures at initialisation (for plots);
* `model.keras`: the trained classifier (what `evaluate` and `convert` use);
* `tensorboard/`: TensorBoard logs (losses, metrics, mixture scalars, latent histograms);
* `report.json`, `report.md`, `curves.png`, `latents.png` (`bayes_larq.app.report`):
  the one results file of the run; `convert`, `benchmark` and `demo` add their sections
  ("conversion", "benchmark", "demo") to it and re-render report.md;
* `model.tflite` after `convert`.

Each epoch trains on `data.load(..., epoch=e)`, whose order and augmentation depend only
on `(seed, e)`, and the checkpoint is written before `state.json` points at it, so an
interrupted run resumed at its last finished epoch repeats the uninterrupted run exactly.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import pathlib
import shutil
import signal
import tempfile
import threading
import time

import tensorflow as tf

from bayes_larq import callbacks, defaults
from bayes_larq import convert as lce
from bayes_larq import flips
from bayes_larq import models as model_registry
from bayes_larq.app import data, report
from bayes_larq.defaults import check_choice, check_integer, check_non_negative, check_positive
from bayes_larq.quantizers import bayesian_kernels, bayesian_quantizers, binary_kernels
from bayes_larq.training import BONN, MIXTURE_UPDATES

LR_SCHEDULES = ("cosine", "constant")
OPTIMIZERS = ("adam", "sgd")
# The learning rate an optimizer gets when the run does not set one.
DEFAULT_LEARNING_RATES = {"adam": 1e-3, "sgd": 0.1}
STRATEGIES = ("auto", "one-device", "mirrored", "multi-worker")
FLIP_THRESHOLDS = ("fixed", *flips.FLIP_THRESHOLD_RULES)
MAX_SEED = 2**32 - 1  # what tf.keras.utils.set_random_seed accepts
MAX_EPOCHS = 100_000
TOP5_MIN_CLASSES = 11  # top-5 accuracy is reported for models with more than 10 classes


class RunError(ValueError):
    """A run directory or configuration that cannot be used; the message says why."""


class JobFailed(Exception):
    """A step that ran but failed (a converted model that disagrees, a missing file)."""


class RunInterrupted(KeyboardInterrupt):
    """Training was interrupted (Ctrl-C); the run resumes from its last finished epoch."""

    def __init__(self, run_dir, epochs_done, epochs, signal_name="SIGINT"):
        self.run_dir, self.epochs_done, self.epochs = run_dir, epochs_done, epochs
        self.signal_name = signal_name
        super().__init__(
            f"Interrupted ({signal_name}): {epochs_done} of {epochs} epochs are saved in "
            f"{run_dir}. Resume with: bayes-larq train --resume {run_dir}"
        )


# Interrupts raised by `raise_interrupt` that training has not handled yet.
_pending_interrupts: list[KeyboardInterrupt] = []


def raise_interrupt(interrupt: KeyboardInterrupt):
    """Raise `interrupt` from a signal handler and keep it pending until training handles it.

    Python ignores an exception raised while a destructor runs (it prints "Exception
    ignored in ..." and goes on), so a signal that lands in one would be lost and training
    would run to the end; training raises a pending interrupt again at its next batch or
    epoch.
    """
    _pending_interrupts.append(interrupt)
    raise interrupt


def _raise_pending_interrupt(*_):
    if _pending_interrupts:
        raise _pending_interrupts[-1]


class _PendingInterruptCheck(tf.keras.callbacks.Callback):
    """Raises an interrupt that a destructor swallowed (see `raise_interrupt`)."""

    on_train_batch_end = on_test_batch_end = on_epoch_end = _raise_pending_interrupt


def _raise_sigint(signum, frame):
    raise_interrupt(KeyboardInterrupt())


@contextlib.contextmanager
def _interrupts_kept_pending():
    """Ctrl-C goes through `raise_interrupt` while training runs (when Python's own
    handler is in place, in the main thread); nothing stays pending afterwards."""
    replace = (threading.current_thread() is threading.main_thread()
               and signal.getsignal(signal.SIGINT) is signal.default_int_handler)
    if replace:
        signal.signal(signal.SIGINT, _raise_sigint)
    try:
        yield
    finally:
        if replace:
            signal.signal(signal.SIGINT, signal.default_int_handler)
        _pending_interrupts.clear()


@dataclasses.dataclass
class RunConfig:
    """Settings of one training run (the `bayes-larq train` options).

    `kernel_loss=False` builds the model with Larq's "ste_sign" instead of
    `BayesianSign`; `feature_loss=False` leaves out L_F; both False is plain Larq
    training. `lam`, `nu`, `theta` of None take the library defaults. `arch` holds the
    builder's architecture arguments (for example `{"width": 16}` for small_cnn).

    Optimisation: `optimizer` "adam" or "sgd" (with `momentum`); `learning_rate` None
    takes `DEFAULT_LEARNING_RATES[optimizer]`; `w_lr_multiplier` / `sigma_lr_multiplier`
    scale the rate (and its schedule) of the reconstruction vectors W and of the
    mixture sigmas, as the paper trains them slower than the kernels.

    Collapse remedies (see docs/evidence.md): `prior_gradient="mean"` divides the
    gradient of mu and sigma by the elements per output channel (the paper's update);
    `mixture_update="closed_form"` sets mu and sigma to the closed-form optimum every
    `refresh_batches` batches instead of by gradient; `lam_warmup_epochs` ramps lam
    linearly from 0.

    The flip threshold (docs/method.md): `flip_threshold="fixed"` keeps lam as set;
    "quantile" recomputes each layer's lam every `threshold_every` steps so that the
    push of L_B at zero equals the `threshold_quantile` of that layer's data gradient;
    "drift" the same quantile of its moving average (decay `threshold_decay`);
    "rebnn" uses ReBNN's rule (`bayes_larq.flips.FlipThreshold`). `flip_diagnostics`
    records, per binary layer and epoch, the gradients against that threshold and the
    sign oscillation (`callbacks.FlipDiagnostics`; on one replica only).

    `validation_size`: hold out the last N training examples; per-epoch validation
    metrics then come from them and the test set is evaluated once, at the end, so
    settings can be chosen without looking at it.

    `augment`: None trains with the dataset's default augmentation (CIFAR and ImageNet
    augment, Fashion-MNIST does not); True augments Fashion-MNIST too (pad 2, random crop,
    horizontal flip); False turns augmentation off.

    Distribution (`strategy`, see docs/distributed.md): "one-device", "mirrored" (the
    local GPUs), "multi-worker" (`MultiWorkerMirroredStrategy`, configured by
    `TF_CONFIG`), or "auto" (multi-worker when `TF_CONFIG` names several workers,
    mirrored with several GPUs, else the default strategy). `batch_size` is the global
    batch. `sync_batch_norm` synchronises BatchNorm statistics across replicas.
    """

    model: str = model_registry.DEFAULT
    dataset: str = "fashion_mnist"
    epochs: int = 5
    batch_size: int = 128
    kernel_loss: bool = True
    feature_loss: bool = True
    lam: float = None
    nu: float = None
    theta: float = None
    reduction: str = defaults.REDUCTION
    kernel_scale: str = defaults.SCALE
    scope: str = "paper"
    precision: str = "binary"
    optimizer: str = "adam"
    learning_rate: float = None
    momentum: float = 0.9
    lr_schedule: str = "cosine"
    w_lr_multiplier: float = 1.0
    sigma_lr_multiplier: float = 1.0
    prior_gradient: str = defaults.PRIOR_GRADIENT
    mixture_update: str = "gradient"
    refresh_batches: int = 50
    lam_warmup_epochs: int = 0
    flip_threshold: str = "fixed"
    threshold_quantile: float = 0.9
    threshold_every: int = 1
    threshold_decay: float = 0.99
    flip_diagnostics: bool = True
    validation_size: int = None
    augment: bool = None
    strategy: str = "auto"
    sync_batch_norm: bool = False
    seed: int = 0
    train_limit: int = None
    test_limit: int = None
    data_dir: str = None
    arch: dict = dataclasses.field(default_factory=dict)

    def validate(self):
        """Raise RunError naming the bad setting; returns self."""
        try:
            model_registry.builder(self.model)
            data.dataset_info(self.dataset)
            for name in ("epochs", "batch_size", "refresh_batches", "threshold_every"):
                check_integer(name, getattr(self, name))
            for name in ("train_limit", "test_limit", "validation_size"):
                check_integer(name, getattr(self, name), allow_none=True)
            check_integer("lam_warmup_epochs", self.lam_warmup_epochs, minimum=0)
            check_integer("seed", self.seed, minimum=0, maximum=MAX_SEED)
            check_integer("epochs", self.epochs, maximum=MAX_EPOCHS)
            for name in ("lam", "nu", "theta"):
                if getattr(self, name) is not None:
                    check_non_negative(name, getattr(self, name))
            for name, allowed in (("reduction", defaults.REDUCTIONS),
                                  ("kernel_scale", defaults.SCALES),
                                  ("prior_gradient", defaults.PRIOR_GRADIENTS),
                                  ("scope", model_registry.SCOPES),
                                  ("precision", model_registry.PRECISIONS),
                                  ("lr_schedule", LR_SCHEDULES), ("optimizer", OPTIMIZERS),
                                  ("mixture_update", MIXTURE_UPDATES),
                                  ("strategy", STRATEGIES), ("sync_batch_norm", (False, True)),
                                  ("flip_threshold", FLIP_THRESHOLDS),
                                  ("flip_diagnostics", (False, True))):
                check_choice(name, getattr(self, name), allowed)
            data.check_augment(self.augment)
            if self.flip_threshold != "fixed":
                self.threshold()
                if not self.kernel_loss:
                    raise ValueError("A flip threshold sets the weight of the kernel loss; "
                                     "it needs the kernel loss on (kernel_loss=True).")
            if self.precision != "binary" and self.kernel_loss:
                raise ValueError(f"precision={self.precision!r} has no binary kernels for "
                                 f"the kernel loss: set kernel_loss=False (--no-kernel-loss).")
            for name in ("learning_rate", "w_lr_multiplier", "sigma_lr_multiplier"):
                if getattr(self, name) is not None:
                    check_positive(name, getattr(self, name))
            if not 0 <= check_non_negative("momentum", self.momentum) < 1:
                raise ValueError(f"`momentum` must be in [0, 1); got {self.momentum!r}.")
        except ValueError as err:
            raise RunError(str(err)) from None
        return self

    def threshold(self) -> flips.FlipThreshold | None:
        """The run's `FlipThreshold`, or None for `flip_threshold="fixed"`."""
        if self.flip_threshold == "fixed":
            return None
        uses_quantile = self.flip_threshold in ("quantile", "drift")
        return flips.FlipThreshold(
            self.flip_threshold, q=self.threshold_quantile if uses_quantile else None,
            every_n_steps=self.threshold_every,
            decay=self.threshold_decay if self.flip_threshold == "drift" else None)

    @classmethod
    def from_dict(cls, values):
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise RunError(f"Unknown run settings {unknown}; known: {sorted(names)}.")
        return cls(**values)


def _read_json(path):
    """The JSON content of `path`; RunError naming the file when it is unreadable."""
    try:
        return json.loads(pathlib.Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise RunError(f"{path} is unreadable or corrupt ({type(err).__name__}: {err}). "
                       f"Restore it, or start a new run in another directory.") from None


def build_model(config):
    """The classifier of a run, seeded: same config -> same initial weights."""
    info = data.dataset_info(config.dataset)
    settings = {k: getattr(config, k) for k in ("lam", "nu") if getattr(config, k) is not None}
    settings.update(reduction=config.reduction, scale=config.kernel_scale,
                    prior_gradient=config.prior_gradient,
                    sync_batch_norm=config.sync_batch_norm)
    tf.keras.utils.set_random_seed(config.seed)
    try:
        return model_registry.get(
            config.model, num_classes=info.num_classes, input_shape=info.input_shape,
            bonn=config.kernel_loss, scope=config.scope, precision=config.precision,
            **settings, **config.arch)
    except (TypeError, ValueError) as err:
        raise RunError(f"Bad architecture argument for {config.model!r}: {err}") from None


def train_examples(config):
    info = data.dataset_info(config.dataset)
    available = info.train_examples - (config.validation_size or 0)
    return min(config.train_limit or available, available)


_STRATEGIES = {}  # one per process: a multi-worker strategy can be created only once


def _cluster():
    """The `TF_CONFIG` of this process: ({job: [addresses]}, task), or ({}, {})."""
    try:
        tf_config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    except json.JSONDecodeError as err:
        raise RunError(f"TF_CONFIG is not valid JSON ({err}).") from None
    return tf_config.get("cluster", {}), tf_config.get("task", {})


def strategy_name(config) -> str:
    """The strategy a run uses: its own, or for "auto" the one that fits this machine."""
    if config.strategy != "auto":
        return config.strategy
    cluster, _ = _cluster()
    if len(cluster.get("chief", [])) + len(cluster.get("worker", [])) > 1:
        return "multi-worker"
    if len(tf.config.list_physical_devices("GPU")) > 1:
        return "mirrored"
    return "default"


def distribution(config) -> tf.distribute.Strategy:
    """The `tf.distribute` strategy of a run (created once per process, before any op)."""
    name = strategy_name(config)
    if name not in _STRATEGIES:
        if name == "multi-worker":
            if not _cluster()[0]:
                raise RunError("--strategy multi-worker needs TF_CONFIG with the cluster and "
                               "this task (see docs/distributed.md).")
            _STRATEGIES[name] = tf.distribute.MultiWorkerMirroredStrategy()
        elif name == "mirrored":
            _STRATEGIES[name] = tf.distribute.MirroredStrategy()
        elif name == "one-device":
            device = "/gpu:0" if tf.config.list_physical_devices("GPU") else "/cpu:0"
            _STRATEGIES[name] = tf.distribute.OneDeviceStrategy(device)
        else:
            _STRATEGIES[name] = tf.distribute.get_strategy()
    return _STRATEGIES[name]


def is_chief() -> bool:
    """True unless `TF_CONFIG` makes this process a non-chief worker of a cluster."""
    cluster, task = _cluster()
    if not task:
        return True
    if task.get("type") == "chief":
        return True
    return task.get("type") == "worker" and task.get("index", 0) == 0 and "chief" not in cluster


def new_bonn(config):
    """The run's model, wrapped in `BONN` and compiled, before any training."""
    theta = {"theta": config.theta} if config.theta is not None else {}
    with distribution(config).scope():
        bonn = BONN(build_model(config), feature_loss=config.feature_loss,
                    w_lr_multiplier=config.w_lr_multiplier,
                    sigma_lr_multiplier=config.sigma_lr_multiplier,
                    mixture_update=config.mixture_update,
                    flip_threshold=config.threshold(), **theta)
        compile_bonn(bonn, config)
    return bonn


def learning_rate(config):
    """The run's base learning rate: its own, or its optimizer's default."""
    if config.learning_rate is None:
        return DEFAULT_LEARNING_RATES[config.optimizer]
    return float(config.learning_rate)


def make_optimizer(config, learning_rate):
    if config.optimizer == "sgd":
        return tf.keras.optimizers.SGD(learning_rate, momentum=float(config.momentum))
    return tf.keras.optimizers.Adam(learning_rate)


def compile_bonn(bonn, config):
    """Adam or SGD (cosine-decayed over the run, or constant), cross-entropy on logits."""
    rate = learning_rate(config)
    if config.lr_schedule == "cosine":
        steps = config.epochs * math.ceil(train_examples(config) / config.batch_size)
        rate = tf.keras.optimizers.schedules.CosineDecay(rate, steps)
    metrics = ["accuracy"]
    if bonn.num_classes >= TOP5_MIN_CLASSES:
        metrics.append(tf.keras.metrics.SparseTopKCategoricalAccuracy(5, name="top5_accuracy"))
    bonn.compile(make_optimizer(config, rate),
                 tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                 metrics=metrics)


class _RunProgbar(tf.keras.callbacks.ProgbarLogger):
    """Keras' progress bar, numbering epochs of the whole run (one `fit` per epoch)."""

    def __init__(self, epochs):
        super().__init__(count_mode="steps")
        self.run_epochs = epochs

    def set_params(self, params):
        super().set_params(dict(params, epochs=self.run_epochs, verbose=1))


class RunDirectory:
    """Paths and state of one run directory."""

    def __init__(self, path):
        self.path = pathlib.Path(path)
        self.config = self.path / "config.json"
        self.state = self.path / "state.json"
        self.checkpoints = self.path / "checkpoints"
        self.init_mixture = self.path / "init_mixture.npz"
        self.classifier = self.path / "model.keras"
        self.tensorboard = self.path / "tensorboard"

    def exists(self):
        return self.state.exists()

    def read_config(self):
        if not self.config.exists():
            raise RunError(f"{self.path} is not a bayes-larq run directory (no config.json).")
        values = _read_json(self.config)
        if not isinstance(values, dict):
            raise RunError(f"{self.config} is corrupt: it does not hold the run's settings. "
                           f"Restore it or start a new run.")
        return RunConfig.from_dict(values).validate()

    def read_state(self):
        state = _read_json(self.state)
        keys = {"epochs_done", "checkpoint", "history", "epoch_seconds"}
        if not isinstance(state, dict) or not keys <= set(state):
            raise RunError(f"{self.state} is corrupt: it lacks {sorted(keys)}. Restore it or "
                           f"start a new run.")
        checkpoint = state["checkpoint"]
        if checkpoint is not None and (not isinstance(checkpoint, str)
                                       or pathlib.Path(checkpoint).name != checkpoint):
            raise RunError(f"{self.state} is corrupt: its checkpoint {checkpoint!r} is not a "
                           f"file name in {self.checkpoints}.")
        return state

    def is_empty_or_run(self):
        """True when a new run may be written here: a missing or empty directory."""
        if self.path.is_file():
            return False
        return not self.path.exists() or not any(self.path.iterdir())

    def save_checkpoint(self, bonn, state, epoch_logs, seconds):
        """Checkpoint first, then state.json pointing at it; then drop the one before the
        previous checkpoint, so the previous one survives until the new one is safe."""
        self.checkpoints.mkdir(parents=True, exist_ok=True)
        epoch = state["epochs_done"] + 1
        checkpoint = self.checkpoints / f"epoch-{epoch:03d}.keras"
        temporary = self.checkpoints / f"epoch-{epoch:03d}.tmp.keras"
        bonn.save(temporary)
        os.replace(temporary, checkpoint)
        state = dict(state, epochs_done=epoch, checkpoint=checkpoint.name,
                     history=state["history"] + [epoch_logs],
                     epoch_seconds=state["epoch_seconds"] + [seconds])
        report.write_json(self.state, state)
        keep = {checkpoint.name, f"epoch-{epoch - 1:03d}.keras"}
        for old in self.checkpoints.glob("epoch-*.keras"):
            if old.name not in keep:
                old.unlink(missing_ok=True)
        return state

    def load_checkpoint(self, state, config=None):
        """The BONN model of the state's checkpoint; with `config`, rebuilt under the
        run's strategy with the checkpoint's weights and optimizer state."""
        path = self.checkpoints / state["checkpoint"]
        try:
            loaded = tf.keras.models.load_model(path)
        except (OSError, ValueError) as err:
            previous = self.checkpoints / f"epoch-{state['epochs_done'] - 1:03d}.keras"
            hint = (f" The previous checkpoint {previous.name} is intact: resume from it with "
                    f"`bayes-larq train --resume {self.path} --previous-checkpoint`."
                    if previous.exists() and state["epochs_done"] > 1 else
                    " Start a new run.")
            raise RunError(f"The checkpoint {path} cannot be loaded "
                           f"({type(err).__name__}: {str(err).splitlines()[0][:200]}).{hint}"
                           ) from None
        if config is None or strategy_name(config) == "default":
            return loaded
        # Keras cannot load a .keras file inside a distribution scope (its metric variables
        # are on-read variables that reject the stored arrays), so the model is built in
        # the scope and takes the loaded state.
        bonn = new_bonn(config)
        bonn.copy_state_from(loaded)
        return bonn

    def roll_back(self, state):
        """The state of the epoch before the last (to resume from its checkpoint)."""
        done = state["epochs_done"] - 1
        previous = f"epoch-{done:03d}.keras"
        if done < 1 or not (self.checkpoints / previous).exists():
            raise RunError(f"{self.path} has no previous checkpoint to resume from.")
        return dict(state, epochs_done=done, checkpoint=previous,
                    history=state["history"][:done], epoch_seconds=state["epoch_seconds"][:done])


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


def train(config, run_dir, verbose=1, extra_callbacks=()) -> Trained:
    """Start a new run in `run_dir` and train it to `config.epochs`.

    Raises:
        RunError: `run_dir` already holds a run (use `resume`) or `config` is invalid.
        RunInterrupted: Ctrl-C; finished epochs are saved, `resume(run_dir)` continues.
    """
    config.validate()
    distribution(config)  # first: a multi-worker strategy must exist before any op
    if not str(run_dir).strip():
        raise RunError("The output directory is empty; name a directory for the run.")
    run = RunDirectory(run_dir)
    if not is_chief():
        return _train_as_worker(config, run, verbose, extra_callbacks)
    if run.exists():
        done = run.read_state()["epochs_done"]
        raise RunError(
            f"{run.path} already holds a run ({done} epochs done). Resume it with "
            f"`bayes-larq train --resume {run.path}` or choose another output directory.")
    if not run.is_empty_or_run():
        kind = "a file" if run.path.is_file() else "a non-empty directory that is not a run"
        raise RunError(f"{run.path} is {kind}; refusing to write a run into it. Choose a new "
                       f"or empty directory.")
    for split in ("train", "test"):
        data.load(config.dataset, split, 1, training=False, data_dir=config.data_dir, limit=1,
                  holdout=config.validation_size if split == "train" else None)
    bonn = new_bonn(config)  # before any file is written: a bad setting leaves nothing
    run.path.mkdir(parents=True, exist_ok=True)
    report.write_json(run.config, dataclasses.asdict(config))
    report.save_mixture_snapshot(run.init_mixture, bonn.classifier)
    state = _new_state()
    report.write_json(run.state, state)
    return _train_epochs(run, config, bonn, state, verbose, extra_callbacks)


def resume(run_dir, verbose=1, extra_callbacks=(), previous_checkpoint=False) -> Trained:
    """Continue the run in `run_dir` from its last finished epoch (or, with
    `previous_checkpoint`, from the one before, when the last checkpoint is damaged)."""
    run = RunDirectory(run_dir)
    if not run.path.is_dir():
        raise RunError(f"{run.path} is not a run directory; --resume takes the directory "
                       f"a run was written to.")
    if not run.exists():
        raise RunError(f"Nothing to resume in {run.path}: it holds no state.json. Start a "
                       f"run there with `bayes-larq train --output {run.path}`.")
    config = run.read_config()
    distribution(config)
    state = run.read_state()
    if state.get("diverged"):
        raise RunError(f"{run.path} stopped because training diverged ({state['diverged']}); "
                       f"resuming would diverge again. Start a new run with a lower learning "
                       f"rate or lam.")
    if previous_checkpoint:
        state = run.roll_back(state)
    if not is_chief():
        return _train_as_worker(config, run, verbose, extra_callbacks, state)
    # Interrupted before the first checkpoint: the seeded build gives the same start.
    bonn = (new_bonn(config) if state["checkpoint"] is None
            else run.load_checkpoint(state, config))
    return _train_epochs(run, config, bonn, state, verbose, extra_callbacks)


def _train_as_worker(config, run, verbose, extra_callbacks, state=None):
    """A non-chief worker: trains in step with the chief (reading the chief's run when it
    resumes) but writes only to a scratch directory, deleted at the end."""
    scratch = RunDirectory(tempfile.mkdtemp(prefix="bayes-larq-worker-"))
    try:
        report.write_json(scratch.config, dataclasses.asdict(config))
        if state is None or state["checkpoint"] is None:
            bonn = new_bonn(config)
            state = _new_state()
            report.save_mixture_snapshot(scratch.init_mixture, bonn.classifier)
        else:
            bonn = run.load_checkpoint(state, config)
            shutil.copyfile(run.init_mixture, scratch.init_mixture)
        report.write_json(scratch.state, state)
        return _train_epochs(scratch, config, bonn, state, verbose, extra_callbacks)
    finally:
        shutil.rmtree(scratch.path, ignore_errors=True)


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
            found.append(callbacks.LossWeightScheduler(
                "lam", callbacks.linear_warmup(lam, config.lam_warmup_epochs)))
    return found


def _new_state():
    """state.json of a run with no finished epoch."""
    return {"epochs_done": 0, "checkpoint": None, "history": [], "epoch_seconds": []}


def _validation_data(config):
    """Per-epoch validation: the held-out training examples if any, else the test set."""
    if config.validation_size:
        return data.load(config.dataset, "holdout", config.batch_size, training=False,
                         data_dir=config.data_dir, holdout=config.validation_size)
    return data.load(config.dataset, "test", config.batch_size, training=False,
                     data_dir=config.data_dir, limit=config.test_limit)


class TrainingDiverged(Exception):
    """The loss became NaN or infinite; the run keeps its last good checkpoint."""


class StopOnNonFiniteLoss(tf.keras.callbacks.Callback):
    """Raise TrainingDiverged at the first batch whose loss is not finite.

    Unlike Keras' `TerminateOnNaN` (which finishes the epoch's bookkeeping), it stops
    before the epoch's weights can be checkpointed, so the last checkpoint stays good.
    """

    def __init__(self):
        super().__init__()
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            raise TrainingDiverged(f"loss {float(loss)} at epoch {self.epoch + 1}, "
                                   f"batch {batch + 1}")


def _train_epochs(run, config, bonn, state, verbose, extra_callbacks):
    # Every random op of training (the data order) draws from (global seed, op seed);
    # setting the global seed here makes a resumed process repeat the original one.
    tf.keras.utils.set_random_seed(config.seed)
    with _interrupts_kept_pending():
        try:
            validation = _validation_data(config)
            fit_callbacks = [StopOnNonFiniteLoss(), _PendingInterruptCheck(),
                             *_callbacks(run, config, bonn, verbose, extra_callbacks)]
            for epoch in range(state["epochs_done"], config.epochs):
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
                _raise_pending_interrupt()
            if config.validation_size and "test" not in state:
                test = evaluate(bonn.classifier, config.dataset, data_dir=config.data_dir,
                                limit=config.test_limit)
                state = dict(state, test=test.as_dict())
                report.write_json(run.state, state)
            bonn.classifier.save(run.classifier)
            summary = report.write_run_report(run, config, bonn, state)
            return Trained(run.path, config, summary, bonn.classifier)
        except TrainingDiverged as diverged:
            state = dict(state, diverged=str(diverged))
            report.write_json(run.state, state)
            _write_stopped_report(run, config, state)
            raise JobFailed(
                f"Training diverged: {diverged}. The last good checkpoint "
                f"({state['checkpoint'] or 'none: it diverged in the first epoch'}) is kept "
                f"in {run.path}. Likely causes: a learning rate too high "
                f"({learning_rate(config):g}), a kernel-loss weight lam too large "
                f"({config.lam if config.lam is not None else defaults.LAM:g}), or NaN in the "
                f"inputs. Start a new run with smaller values.") from None
        except KeyboardInterrupt as interrupt:
            raise RunInterrupted(
                run.path, state["epochs_done"], config.epochs,
                signal_name=getattr(interrupt, "signal_name", "SIGINT")) from None


def _write_stopped_report(run, config, state):
    """report.json / report.md of a run that stopped early, from its last good checkpoint."""
    if state["checkpoint"] is None:
        summary = {"status": "diverged", "diverged": state["diverged"],
                   "config": dataclasses.asdict(config), "epochs_done": 0}
        report.write_json(run.path / "report.json", summary)
        (run.path / "report.md").write_text(
            f"# bayes-larq training report\n\nTraining diverged in the first epoch "
            f"({state['diverged']}); no epoch finished.\n")
        return
    report.write_run_report(run, config, run.load_checkpoint(state), state)
    report.update_run_report(run.path, "status", "diverged")


def load_classifier(path):
    """The trained classifier of a run directory, or a saved Keras model file."""
    path = pathlib.Path(path)
    if path.is_dir():
        path = RunDirectory(path).classifier
        if not path.exists():
            raise RunError(f"{path} does not exist: the run has not finished. Resume it "
                           f"with `bayes-larq train --resume {path.parent}`.")
    elif not path.exists():
        raise RunError(f"No such run directory or model file: {path}.")
    try:
        model = tf.keras.models.load_model(path, compile=False)
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise RunError(f"{path} is not a Keras model this library can load "
                       f"({type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''}). "
                       f"Pass a run directory or a .keras file written by bayes-larq.") from None
    return model.classifier if isinstance(model, BONN) else model


@dataclasses.dataclass
class Evaluation:
    """Test accuracy of a classifier: top-1, top-5 (above 10 classes), and the count."""

    accuracy: float
    examples: int
    top5_accuracy: float | None = None

    def as_dict(self) -> dict:
        values = dataclasses.asdict(self)
        return {k: v for k, v in values.items() if v is not None}


def evaluate(classifier, dataset, batch_size=256, data_dir=None, limit=None) -> Evaluation:
    """Top-1 (and, above 10 classes, top-5) test accuracy of a classifier on `dataset`."""
    info = data.dataset_info(dataset)
    classes = int(classifier.outputs[0].shape[-1])
    if classes != info.num_classes or tuple(classifier.inputs[0].shape[1:]) != info.input_shape:
        raise RunError(
            f"The model takes {tuple(classifier.inputs[0].shape[1:])} inputs and predicts "
            f"{classes} classes, but {dataset} has {info.input_shape} images and "
            f"{info.num_classes} classes; pass the dataset the model was trained on.")
    test = data.load(dataset, "test", batch_size, training=False, data_dir=data_dir,
                     limit=limit)
    metrics = [tf.keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
    if classes >= TOP5_MIN_CLASSES:
        metrics.append(tf.keras.metrics.SparseTopKCategoricalAccuracy(5, name="top5_accuracy"))
    examples = 0
    for images, labels in test:
        logits = classifier(images, training=False)
        for metric in metrics:
            metric.update_state(labels, logits)
        examples += int(labels.shape[0])
    return Evaluation(examples=examples,
                      **{metric.name: float(metric.result()) for metric in metrics})


# --------------------------------------------------------------------------- deployment


@dataclasses.dataclass
class Conversion:
    """An LCE conversion checked against Keras on real test images."""

    tflite_path: pathlib.Path
    tflite_bytes: int
    census: dict
    agreement: lce.Agreement


@dataclasses.dataclass
class Benchmark:
    """Median batch-1 latency in the LCE interpreter, beside the float twin when known."""

    flags: dict
    binary_ms: float
    binary_bytes: int
    float_ms: float | None = None
    float_bytes: int | None = None

    @property
    def speedup(self) -> float | None:
        return None if self.float_ms is None else self.float_ms / self.binary_ms

    @property
    def size_ratio(self) -> float | None:
        return None if self.float_bytes is None else self.float_bytes / self.binary_bytes


@dataclasses.dataclass
class Demo:
    """The main job: a trained run, its conversion and its benchmark."""

    run_dir: pathlib.Path
    report: dict
    conversion: Conversion
    benchmark: Benchmark
    seconds: float


def run_config_of(path) -> RunConfig | None:
    """The RunConfig of the run that holds `path` (a run directory or a file in one)."""
    path = pathlib.Path(path)
    run = RunDirectory(path if path.is_dir() else path.parent)
    return run.read_config() if run.config.exists() else None


def test_images(dataset, samples, data_dir=None):
    """The first `samples` test images of `dataset` as one NumPy batch."""
    batch = data.load(dataset, "test", samples, training=False, data_dir=data_dir, limit=samples)
    return next(iter(batch))[0].numpy()


def convert(path, *, samples=1000, min_top1_agreement=0.99, max_logit_diff=None, output=None,
            dataset=None, data_dir=None, classifier=None) -> Conversion:
    """Convert a run's classifier (or a .keras file) with LCE, check it, write the .tflite.

    The converted model must agree with Keras on the top-1 class of at least
    `min_top1_agreement` of `samples` test images (and, if given, stay within
    `max_logit_diff`); otherwise JobFailed is raised and no .tflite is written. In a run
    directory the result is added to report.json / report.md. `classifier` skips
    loading the model when it is already in memory.
    """
    path = pathlib.Path(path)
    config = run_config_of(path)
    dataset = dataset or (config.dataset if config else "fashion_mnist")
    data_dir = data_dir if data_dir is not None else (config.data_dir if config else None)
    output = pathlib.Path(output) if output else (
        path / "model.tflite" if path.is_dir() else path.with_suffix(".tflite"))
    if output.is_dir():
        raise RunError(f"--output {output} is a directory; give the .tflite file's path.")
    classifier = classifier if classifier is not None else load_classifier(path)
    flatbuffer = lce.convert(classifier)
    agreement = lce.compare(classifier, flatbuffer, test_images(dataset, samples, data_dir))
    result = Conversion(output, len(flatbuffer), dict(lce.op_census(flatbuffer).most_common()),
                        agreement)
    try:
        agreement.check(atol=math.inf if max_logit_diff is None else max_logit_diff,
                        min_top1_agreement=min_top1_agreement)
    except ValueError as err:
        raise JobFailed(f"{err} No .tflite written.") from None
    output.write_bytes(flatbuffer)
    if path.is_dir() and (path / "report.json").exists():
        report.update_run_report(path, "conversion", dataclasses.asdict(result))
    return result


def float_twin(config: RunConfig) -> bytes:
    """The float version (same architecture, no quantizers) of a run's model, converted."""
    float_config = dataclasses.replace(config, kernel_loss=False, precision="float")
    return lce.convert(build_model(float_config))


def benchmark(path, *, threads=1, repeats=50, warmup=5, indirect_bgemm=True, xnnpack=True,
              include_float=True) -> Benchmark:
    """Median batch-1 latency of a run's model.tflite (or a .tflite file) in the LCE
    interpreter, and of the float twin of its architecture; added to the run's report."""
    check_integer("repeats", repeats)
    check_integer("warmup", warmup, minimum=0)
    check_integer("threads", threads)
    path = pathlib.Path(path)
    tflite = path / "model.tflite" if path.is_dir() else path
    if not tflite.exists():
        hint = f" Run `bayes-larq convert {path}` first." if path.is_dir() else ""
        raise JobFailed(f"{tflite} does not exist.{hint}")
    config = run_config_of(path)
    if config is None and include_float:
        raise RunError(f"{tflite} is not in a run directory, so its float version is "
                       f"unknown; pass --no-float or benchmark a run directory.")
    flags = {"num_threads": threads, "use_indirect_bgemm": indirect_bgemm,
             "use_xnnpack": xnnpack}
    binary = tflite.read_bytes()

    def latency(flatbuffer):
        return lce.latency_ms(flatbuffer, repeats=repeats, warmup=warmup, **flags)

    try:
        binary_ms = latency(binary)
    except (ValueError, RuntimeError) as err:
        raise RunError(f"{tflite} is not a TFLite model the LCE interpreter can run "
                       f"({type(err).__name__}: {str(err).splitlines()[0][:200]}).") from None
    result = Benchmark({**flags, "repeats": repeats, "warmup": warmup}, binary_ms, len(binary))
    if include_float:
        floating = float_twin(config)
        result.float_ms, result.float_bytes = latency(floating), len(floating)
    if path.is_dir() and (path / "report.json").exists():
        report.update_run_report(path, "benchmark", dataclasses.asdict(result))
    return result


def demo(config: RunConfig, run_dir, *, verbose=1, conversion_options=None,
         latency_options=None) -> Demo:
    """The main job: train `config` into `run_dir`, convert it, benchmark it.

    `conversion_options` and `latency_options` are keyword arguments of `convert` and
    `benchmark`. The trained classifier is converted from memory.
    """
    start = time.perf_counter()
    trained = train(config, run_dir, verbose=verbose)
    conversion = convert(run_dir, classifier=trained.classifier, **(conversion_options or {}))
    measured = benchmark(run_dir, **(latency_options or {}))
    seconds = time.perf_counter() - start
    summary = report.update_run_report(run_dir, "demo", {"seconds": seconds})
    return Demo(pathlib.Path(run_dir), summary, conversion, measured, seconds)
