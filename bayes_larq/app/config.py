"""`RunConfig`: the settings of one training run, every one a real value.

A default is the value the run uses, taken from `bayes_larq.defaults` (loss weights,
reductions, scales) or from the module that owns the setting, so config.json and the
report show what the run did. Two defaults depend on another setting and are resolved
when the config is made: `learning_rate` (the optimizer's, `DEFAULT_LEARNING_RATES`) and
`augment` (the dataset's: CIFAR and ImageNet augment, Fashion-MNIST does not). A stored
config.json of an older version, with `null` for those and for `lam`, `nu`, `theta`,
reads as the same defaults.

`validate` has each setting checked by the object that takes it (`BayesianSign`, the
model builders, `BONN`, `FlipThreshold`, `bayes_larq.app.data`), the check written once
there, and checks the run's own settings and the rules between fields.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Collection, Mapping

from bayes_larq import defaults, flips
from bayes_larq import models as model_registry
from bayes_larq.app import data
from bayes_larq.app.errors import RunError, Setting, settings_checked
from bayes_larq.defaults import check_choice, check_integer, check_non_negative, check_positive
from bayes_larq.quantizers import BayesianSign
from bayes_larq.training import check_bonn_settings

__all__ = ["DEFAULT_LEARNING_RATES", "DEMO_SETTINGS", "FLIP_THRESHOLDS", "FLOAT_TWIN",
           "LR_SCHEDULES", "MAX_EPOCHS", "MAX_SEED", "OPTIMIZERS", "STRATEGIES", "RunConfig",
           "has_setting_type", "setting_kind"]

LR_SCHEDULES = ("cosine", "constant", "step")
OPTIMIZERS = ("adam", "sgd")
# The learning rate an optimizer gets when the run does not set one.
DEFAULT_LEARNING_RATES = {"adam": 1e-3, "sgd": 0.1}
STRATEGIES = ("auto", "one-device", "mirrored", "multi-worker")
FLIP_THRESHOLDS = ("fixed", *flips.FLIP_THRESHOLD_RULES)
MAX_SEED = 2**32 - 1  # what tf.keras.utils.set_random_seed accepts
MAX_EPOCHS = 100_000
FLOAT_TWIN = "float-twin"  # `teacher`: train the run's float twin first
# The main job's recipe (`bayes-larq demo`, recipes/small-cnn-fashion-mnist.toml), over the
# defaults: the screen's best cell (ReActNet's learnable activations, distilled from the
# float twin at kd_weight 0.5, T 4; docs/evidence.md), at a budget that fits the demo's
# five minutes on two cores: four student epochs after a two-epoch teacher.
DEMO_SETTINGS = {"epochs": 4, "kernel_loss": False, "feature_loss": False,
                 "arch": {"learnable_threshold": True, "rprelu": True},
                 "teacher": FLOAT_TWIN, "teacher_epochs": 2, "kd_weight": 0.5,
                 "temperature": 4.0}
# Fields that config.json files written before the defaults were resolved hold as null.
_FORMERLY_NONE = {"lam": defaults.LAM, "nu": defaults.NU, "theta": defaults.THETA}
# Settings every config.json holds (later ones default when absent from older files).
_STORED_SINCE_THE_START = ("model", "dataset", "epochs", "batch_size", "seed")
_BAYESIAN_SIGN = ("lam", "nu", "reduction", "kernel_scale", "prior_gradient", "mixture_update",
                  "lam_warmup_epochs", "w_lr_multiplier", "sigma_lr_multiplier")
# The name a library object gives a setting, where it differs from the setting's.
_OWNER_NAMES = {"scale": "kernel_scale", "bonn": "kernel_loss", "q": "threshold_quantile",
                "decay": "threshold_decay", "every_n_steps": "threshold_every"}
# (settings, what they need, the condition): a setting takes effect only when it holds.
_NEEDS = (
    (_BAYESIAN_SIGN, "the kernel loss (BayesianSign kernels), which this run turns off",
     lambda config: config.kernel_loss),
    (("theta",), "the feature loss, which this run turns off",
     lambda config: config.feature_loss),
    (("momentum",), "optimizer='sgd'", lambda config: config.optimizer == "sgd"),
    (("refresh_batches",), "mixture_update='closed_form'",
     lambda config: config.mixture_update == "closed_form"),
    (("threshold_every",), "a flip threshold other than 'fixed'",
     lambda config: config.flip_threshold != "fixed"),
    (("threshold_quantile",), "flip_threshold 'quantile' or 'drift'",
     lambda config: config.flip_threshold in ("quantile", "drift")),
    (("threshold_decay",), "flip_threshold='drift'",
     lambda config: config.flip_threshold == "drift"),
    (("lr_decay_factor", "lr_decay_epochs"), "lr_schedule='step'",
     lambda config: config.lr_schedule == "step"),
)


@dataclasses.dataclass
class RunConfig:
    """Settings of one training run (the `bayes-larq train` options).

    `kernel_loss=False` builds the model with Larq's "ste_sign" instead of
    `BayesianSign`; `feature_loss=False` leaves out L_F; both False is plain Larq
    training. `lam`, `nu`, `theta` are the loss weights (defaults: `bayes_larq.defaults`).
    `arch` holds the builder's architecture arguments (for example `{"width": 16}` for
    small_cnn).

    Optimisation: `optimizer` "adam" or "sgd" (with `momentum`); `learning_rate` not
    given takes `DEFAULT_LEARNING_RATES[optimizer]`; `w_lr_multiplier` /
    `sigma_lr_multiplier` scale the rate (and its schedule) of the reconstruction vectors
    W and of the mixture sigmas, as the paper trains them slower than the kernels
    (its ImageNet rates, 0.1 for the kernels and mu, 0.01 for W and sigma, are
    `learning_rate=0.1, w_lr_multiplier=0.1, sigma_lr_multiplier=0.1`).
    `lr_schedule`: "cosine" (to 0 over the epochs), "constant", or "step": the rate
    times `lr_decay_factor` every `lr_decay_epochs` epochs,
    `rate(step) = learning_rate * lr_decay_factor ** floor(step / (lr_decay_epochs *
    steps_per_epoch))`. `weight_decay`: L2 on every convolution and dense kernel, the
    latent kernels of binary layers included, not on biases, BatchNorm, W, mu or sigma
    (`bayes_larq.weight_decay`: coupled, as PyTorch's SGD `weight_decay`).

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

    `augment`: not given, the dataset's default augmentation (CIFAR and ImageNet augment,
    Fashion-MNIST does not); True augments Fashion-MNIST too (pad 2, random crop,
    horizontal flip); False turns augmentation off.

    Distribution (`strategy`, see docs/distributed.md): "one-device", "mirrored" (the
    local GPUs), "multi-worker" (`MultiWorkerMirroredStrategy`, configured by
    `TF_CONFIG`), or "auto" (multi-worker when `TF_CONFIG` names several workers,
    mirrored with several GPUs, else the default strategy). `batch_size` is the global
    batch. `sync_batch_norm` synchronises BatchNorm statistics across replicas.

    `train_limit`, `test_limit`, `validation_size` and `data_dir` of None: all of the
    split, no held-out examples, the data's default location.

    Distillation and two-step training (`bayes_larq.app.teacher`, `bayes_larq.app.staged`):
    `teacher` is None, a finished float run directory whose model.keras teaches, or
    `FLOAT_TWIN` (the float twin of the run, trained first in the run's teacher/
    directory); `teacher_epochs` are the float twin's epochs (not given: the run's);
    `kd_weight` and `temperature` are those of `BONN`. `two_step` trains
    `step1_epochs` (not given: half the epochs) with binary activations and real
    kernels, then the rest with binary kernels too.
    """

    model: str = model_registry.DEFAULT
    dataset: str = "fashion_mnist"
    epochs: int = 5
    batch_size: int = 128
    kernel_loss: bool = True
    feature_loss: bool = True
    lam: float = defaults.LAM
    nu: float = defaults.NU
    theta: float = defaults.THETA
    reduction: str = defaults.REDUCTION
    kernel_scale: str = defaults.SCALE
    scope: str = "paper"
    precision: str = "binary"
    optimizer: str = "adam"
    learning_rate: float = None  # resolved: DEFAULT_LEARNING_RATES[optimizer]
    momentum: float = 0.9
    lr_schedule: str = "cosine"
    lr_decay_factor: float = 0.1  # lr_schedule="step": the rate's factor at each decay
    lr_decay_epochs: int = 30  # lr_schedule="step": epochs between decays
    weight_decay: float = 0.0
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
    augment: bool = None  # resolved: the dataset's default
    strategy: str = "auto"
    sync_batch_norm: bool = False
    seed: int = 0
    train_limit: int = None
    test_limit: int = None
    data_dir: str = None
    arch: dict = dataclasses.field(default_factory=dict)
    teacher: str = None
    teacher_epochs: int = None  # resolved with teacher="float-twin": the run's epochs
    kd_weight: float = 1.0
    temperature: float = 1.0
    two_step: bool = False
    step1_epochs: int = None  # resolved with two_step: half the epochs
    config_file: str = ""  # the settings file (`train --config`) they came from; no effect

    def __post_init__(self):
        for name, default in _FORMERLY_NONE.items():
            if getattr(self, name) is None:
                setattr(self, name, default)
        if self.learning_rate is None and self.optimizer in DEFAULT_LEARNING_RATES:
            self.learning_rate = DEFAULT_LEARNING_RATES[self.optimizer]
        if self.augment is None and self.dataset in data.DATASETS:
            self.augment = data.default_augment(data.dataset_info(self.dataset))
        if self.two_step and self.step1_epochs is None and isinstance(self.epochs, int):
            self.step1_epochs = self.epochs // 2
        if self.teacher == FLOAT_TWIN and self.teacher_epochs is None:
            self.teacher_epochs = self.epochs

    def validate(self) -> RunConfig:
        """Raise RunError naming the bad setting; returns self.

        A setting that a library object takes is checked by that object (`BayesianSign`,
        the model builders, `BONN`, `FlipThreshold`, `data`), before anything is built
        or written; the rules here are the run's own and those between fields."""
        with settings_checked(*(f.name for f in dataclasses.fields(RunConfig)),
                              renamed=_OWNER_NAMES):
            self._check()
        return self

    def bayesian_sign_settings(self) -> dict[str, Any]:
        """The `BayesianSign` keyword arguments of the run's binary kernels."""
        return {"lam": self.lam, "nu": self.nu, "reduction": self.reduction,
                "scale": self.kernel_scale, "prior_gradient": self.prior_gradient}

    def _check(self):
        model_registry.builder(self.model)
        data.dataset_info(self.dataset)
        check_integer("epochs", self.epochs, maximum=MAX_EPOCHS)
        check_integer("refresh_batches", self.refresh_batches)
        check_integer("lam_warmup_epochs", self.lam_warmup_epochs, minimum=0)
        check_integer("seed", self.seed, minimum=0, maximum=MAX_SEED)
        data.check_count("batch_size", self.batch_size)
        for name in ("train_limit", "test_limit", "validation_size"):
            data.check_count(name, getattr(self, name), allow_none=True)
        BayesianSign.check_settings(self.bayesian_sign_settings())
        # The builders' options without the BayesianSign settings, just checked above.
        model_registry.check_options(bonn=self.kernel_loss, scope=self.scope,
                                     precision=self.precision,
                                     sync_batch_norm=self.sync_batch_norm)
        check_bonn_settings(theta=self.theta, w_lr_multiplier=self.w_lr_multiplier,
                            sigma_lr_multiplier=self.sigma_lr_multiplier,
                            mixture_update=self.mixture_update, kd_weight=self.kd_weight,
                            temperature=self.temperature)
        for name, allowed in (("lr_schedule", LR_SCHEDULES), ("optimizer", OPTIMIZERS),
                              ("strategy", STRATEGIES), ("flip_threshold", FLIP_THRESHOLDS),
                              ("flip_diagnostics", (False, True))):
            check_choice(name, getattr(self, name), allowed)
        if self.flip_threshold != "fixed":
            self.threshold()
            if not self.kernel_loss:
                raise RunError("A flip threshold sets the weight of the kernel loss; it needs "
                               "the kernel loss on (a run with BayesianSign kernels).")
        data.check_augment(self.augment)
        check_positive("learning_rate", self.learning_rate)
        if not 0 <= check_non_negative("momentum", self.momentum) < 1:
            raise ValueError(f"`momentum` must be in [0, 1); got {self.momentum!r}.")
        self._check_distillation()
        self._check_teacher_epochs()
        self._check_two_step()
        self._check_recipe()

    def _check_recipe(self):
        check_non_negative("weight_decay", self.weight_decay)
        check_integer("lr_decay_epochs", self.lr_decay_epochs, maximum=MAX_EPOCHS)
        if not 0 < check_positive("lr_decay_factor", self.lr_decay_factor) < 1:
            raise ValueError(f"`lr_decay_factor` multiplies the rate at each decay, in (0, 1); "
                             f"got {self.lr_decay_factor!r}.")
        if not isinstance(self.config_file, str):
            raise ValueError(f"`config_file` must be a path (a string); got "
                             f"{self.config_file!r}.")

    def _check_distillation(self):
        if self.teacher is None:
            if (self.kd_weight, self.temperature) != (1.0, 1.0):
                raise RunError(Setting("kd_weight"), " and ", Setting("temperature"),
                               " weigh the distillation from a teacher; set ",
                               Setting("teacher"), " too.")
            return
        if not isinstance(self.teacher, str) or not self.teacher.strip():
            raise RunError(Setting("teacher"), f" must be a finished float run directory or "
                           f"{FLOAT_TWIN!r}; got {self.teacher!r}.")
        if self.teacher == FLOAT_TWIN and self.precision == "float":
            raise RunError(f"A float run is its own float twin: teacher={FLOAT_TWIN!r} "
                           f"needs a binary student (leave out ", Setting("precision"), ").")

    def _check_teacher_epochs(self):
        if self.teacher != FLOAT_TWIN:
            if self.teacher_epochs is not None:
                raise RunError(Setting("teacher_epochs"), " are the epochs of the float twin; "
                               "set ", Setting("teacher", FLOAT_TWIN), " too, or leave them out.")
            return
        check_integer("teacher_epochs", self.teacher_epochs, maximum=MAX_EPOCHS)

    def _check_two_step(self):
        check_choice("two_step", self.two_step, (False, True))
        if not self.two_step:
            if self.step1_epochs is not None:
                raise RunError(Setting("step1_epochs"), " splits two-step training; set ",
                               Setting("two_step", True), " too.")
            return
        if self.precision != "binary":
            raise RunError(f"Two-step training ends with binary kernels; it needs "
                           f"precision='binary', not {self.precision!r} (leave out ",
                           Setting("precision"), ").")
        check_integer("step1_epochs", self.step1_epochs, minimum=0)
        if not 1 <= self.step1_epochs < self.epochs:
            raise RunError("Two-step training needs at least one epoch in each step: ",
                           Setting("step1_epochs"), f" must be in [1, {self.epochs - 1}] for "
                           f"{self.epochs} epochs; got {self.step1_epochs}.")

    def settings_without_effect(self, names: Collection[str] | None = None) -> dict[str, str]:
        """{setting: what it needs} for each of `names` (default: the settings that differ
        from their defaults) that this run would not use."""
        if names is None:
            names = [f.name for f in dataclasses.fields(self)
                     if f.default is not dataclasses.MISSING
                     and getattr(self, f.name) != f.default]
        return {name: needs for settings, needs, holds in _NEEDS if not holds(self)
                for name in settings if name in names}

    def check_settings_used(self, names: Collection[str]) -> RunConfig:
        """RunError naming the first of `names` that this run would not use."""
        unused = self.settings_without_effect(names)
        if unused:
            name, needs = next(iter(unused.items()))
            raise RunError(Setting(name), f" has no effect in this run: it needs {needs}. "
                           f"Leave it out, or turn on what it needs.")
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
    def from_dict(cls, values: Mapping[str, Any]) -> RunConfig:
        """The config of a config.json (RunError for a setting this version does not know)."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(fields))
        if unknown:
            raise RunError(f"Unknown run settings {unknown}; known: {sorted(fields)}.")
        missing = [name for name in _STORED_SINCE_THE_START if name not in values]
        if missing:
            raise RunError(f"The stored settings lack {missing}: config.json was edited.")
        for name, value in values.items():
            _check_stored_type(fields[name], value)
        return cls(**values)

    def as_dict(self) -> dict:
        """The content of config.json."""
        return dataclasses.asdict(self)


def setting_kind(name: str) -> str:
    """The type of the setting `name` ("bool", "int", "float", "str" or "dict")."""
    return {f.name: f.type.split(" ")[0] for f in dataclasses.fields(RunConfig)}[name]


def has_setting_type(name: str, value: Any) -> bool:
    """Whether `value` has the type of the setting `name` (a bool only for a bool: the
    string "false" is true in Python; an int where a float goes)."""
    kind = setting_kind(name)
    allowed = {"bool": (bool,), "int": (int,), "float": (int, float), "str": (str,),
               "dict": (dict,), "list": (list,)}.get(kind)
    return not (allowed and not isinstance(value, allowed)
                or (isinstance(value, bool) and kind != "bool"))


def _check_stored_type(field: dataclasses.Field, value: Any) -> None:
    """RunError unless a stored setting has its field's type (null only where the
    default is)."""
    if value is None and (field.default is None or field.name in _FORMERLY_NONE):
        return
    if not has_setting_type(field.name, value):
        raise RunError(f"The stored setting {field.name}={value!r} is not a "
                       f"{setting_kind(field.name)}: config.json was edited. Restore it, or "
                       f"start a new run.")
