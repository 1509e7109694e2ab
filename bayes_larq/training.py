r"""BONN training with plain `model.fit`: the feature loss and the training wrapper.

```python
model = bl.models.get("small_cnn", num_classes=10, input_shape=(28, 28, 1))
bonn = bl.BONN(model, theta=1e-3)          # the one line that adds L_F and the logs
bonn.compile("adam", tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
             metrics=["accuracy"])
bonn.fit(x_train, y_train, epochs=3)       # integer labels, NumPy or tf.data
bonn.classifier                            # the plain Keras model, for predict / LCE
```

Total loss (docs/method.md, "Training"): $L = L_{CE} + \sum_l L_B(l) + L_F$ (+ any other Keras
regularization losses). $L_B$ comes from the `BayesianSign` kernel quantizers of the
model; $L_F$ from `BayesianFeatureLoss` on the penultimate features. `fit` and
`evaluate` log `loss` (the total), `ce_loss` (the compiled loss, cross-entropy for a
classifier), `kernel_loss` and `feature_loss` separately.
"""

from __future__ import annotations

import contextlib
from typing import Any

import tensorflow as tf
from larq import utils as lq_utils

from bayes_larq import defaults
from bayes_larq._keras import is_functional
from bayes_larq.flips import FlipThreshold, binary_sign, kernel_loss_gradient
from bayes_larq.losses import distribution_loss, feature_loss
from bayes_larq.quantizers import (
    BayesianSign,
    BinaryKernel,
    bayesian_kernels,
    bayesian_quantizers,
    binary_kernels,
    check_bayesian_roles,
)
from bayes_larq.weight_decay import REGULARIZED_KERNELS

__all__ = ["BONN", "MIXTURE_UPDATES", "BayesianFeatureLoss", "ScaledSchedule",
           "check_bonn_settings", "find_feature_tensor"]

LABEL_RANGE_MARK = "bayes_larq: label out of range"


@lq_utils.register_keras_custom_object
class BayesianFeatureLoss(tf.keras.layers.Layer):
    r"""Class-conditional Gaussian prior on penultimate features (docs/method.md).

    Owns the class centers $c_m$ (`centers`, `[M, d]`, start at 0), per-class
    per-dimension log standard deviations (`log_sigmas`, `[M, d]`, start at 0, i.e.
    $\sigma = 1$) and the weight `theta` (a non-trainable variable, so schedules need no
    retracing). Centers and sigmas are learned by gradient descent with the rest of the
    model; `sigma = max(exp(log_sigma), min_sigma)`. Calling it on `(features, labels)`
    returns $L_F$ of `bayes_larq.losses.feature_loss`.

    Args:
        num_classes: M.
        theta: weight of the loss, >= 0.
        feature_dim: d, or None to take it from the first features seen.
        min_sigma: lower bound on sigma, > 0.
    """

    def __init__(self, num_classes: int, theta: float = defaults.THETA,
                 feature_dim: int | None = None, min_sigma: float = defaults.MIN_SIGMA,
                 **kwargs: Any):
        super().__init__(**kwargs)
        self.num_classes = defaults.check_integer("num_classes", num_classes, minimum=2)
        self.initial_theta = defaults.check_non_negative("theta", theta)
        self.feature_dim = defaults.check_integer("feature_dim", feature_dim, allow_none=True)
        self.min_sigma = defaults.check_positive("min_sigma", min_sigma)

    def build(self, input_shape):
        feature_shape = tf.TensorShape(input_shape[0] if isinstance(input_shape, (list, tuple))
                                       and not isinstance(input_shape[0], (int, type(None)))
                                       else input_shape)
        if feature_shape.rank != 2 or feature_shape[-1] is None:
            raise ValueError(
                f"The Bayesian feature loss needs flat features of shape [batch, d]; got "
                f"{feature_shape}. Name a layer after global pooling or Flatten as "
                f"`feature_layer`."
            )
        if self.feature_dim is not None and feature_shape[-1] != self.feature_dim:
            raise ValueError(
                f"Feature dimension mismatch: the features have d={feature_shape[-1]} but "
                f"`feature_dim` is {self.feature_dim}."
            )
        self.feature_dim = int(feature_shape[-1])
        shape = (self.num_classes, self.feature_dim)
        self.centers = self.add_weight(name="centers", shape=shape, initializer="zeros")
        self.log_sigmas = self.add_weight(name="log_sigmas", shape=shape, initializer="zeros")
        self.theta = self.add_weight(
            name="theta", shape=(), trainable=False,
            initializer=tf.keras.initializers.Constant(self.initial_theta))
        super().build(input_shape)

    @property
    def sigmas(self):
        return tf.maximum(tf.exp(self.log_sigmas), self.min_sigma)

    def call(self, features, labels):
        return feature_loss(features, labels, self.centers, self.sigmas, self.theta)

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes,
                "theta": self.initial_theta, "feature_dim": self.feature_dim,
                "min_sigma": self.min_sigma}


def find_feature_tensor(model: tf.keras.Model, feature_layer: str | None = None) -> tf.Tensor:
    """The penultimate features of a functional classifier.

    By default the input of the last Dense (or QuantDense) layer; with `feature_layer`,
    the output of the layer of that name.
    """
    if feature_layer is not None:
        names = [layer.name for layer in model.layers]
        if feature_layer not in names:
            raise ValueError(f"`feature_layer` {feature_layer!r} is not a layer of "
                             f"{model.name}; its layers are {names}.")
        return model.get_layer(feature_layer).output
    for layer in reversed(model.layers):
        if isinstance(layer, tf.keras.layers.Dense):
            return layer.input
    raise ValueError(f"{model.name} has no Dense layer whose input could serve as the "
                     f"penultimate features; name one with `feature_layer=`.")


def integer_labels(y, num_classes):
    """Labels as int32 `[batch]`; one-hot or out-of-range labels are rejected."""
    y = tf.convert_to_tensor(y)
    if y.shape.rank == 2 and y.shape[-1] == 1:
        y = tf.squeeze(y, axis=-1)
    if y.shape.rank != 1:
        raise ValueError(
            f"BONN needs integer class labels of shape [batch]; got labels of shape "
            f"{y.shape} (one-hot?). Pass integer labels, e.g. `np.argmax(y, axis=-1)`, and "
            f"compile with SparseCategoricalCrossentropy."
        )
    labels = tf.cast(y, tf.int32)
    checks = [
        tf.debugging.assert_non_negative(labels, message=LABEL_RANGE_MARK),
        tf.debugging.assert_less(labels, num_classes, message=LABEL_RANGE_MARK),
    ]
    with tf.control_dependencies(checks):
        return tf.identity(labels)


@contextlib.contextmanager
def label_errors_as_value_errors(num_classes):
    try:
        yield
    except tf.errors.InvalidArgumentError as error:
        if LABEL_RANGE_MARK not in str(error):
            raise
        raise ValueError(
            f"Labels must be integers in [0, {num_classes}) for this {num_classes}-class "
            f"model; a batch held a label outside that range."
        ) from None


@lq_utils.register_keras_custom_object
class ScaledSchedule(tf.keras.optimizers.schedules.LearningRateSchedule):
    """A learning-rate schedule times a constant: `multiplier * schedule(step)`."""

    def __init__(self, schedule: Any, multiplier: float):
        self.schedule = tf.keras.optimizers.schedules.deserialize(schedule) if isinstance(
            schedule, dict) else schedule
        self.multiplier = float(multiplier)

    def __call__(self, step):
        return self.multiplier * self.schedule(step)

    def get_config(self):
        return {"schedule": tf.keras.optimizers.schedules.serialize(self.schedule),
                "multiplier": self.multiplier}


def scaled_learning_rate_optimizer(optimizer, multiplier, suffix):
    """A fresh optimizer of the same kind whose learning rate (or schedule) is scaled."""
    config = optimizer.get_config()
    rate = config["learning_rate"]
    if isinstance(rate, dict):
        config["learning_rate"] = ScaledSchedule(rate, multiplier)
    else:
        config["learning_rate"] = float(rate) * multiplier
    config["name"] = f"{config.get('name', 'optimizer')}_{suffix}"
    return type(optimizer).from_config(config)


MIXTURE_UPDATES = ("gradient", "closed_form")


def check_bonn_settings(theta: float = defaults.THETA, w_lr_multiplier: float = 1.0,
                        sigma_lr_multiplier: float = 1.0, mixture_update: str = "gradient",
                        kd_weight: float = 1.0, temperature: float = 1.0) -> dict[str, Any]:
    """The scalar settings of `BONN` (its arguments of the same names), checked: raise
    ValueError naming the first bad one, else return them as floats and strings."""
    kd_weight = defaults.check_non_negative("kd_weight", kd_weight)
    if kd_weight > 1:
        raise ValueError(f"`kd_weight` is the share of the distribution loss, in [0, 1]; "
                         f"got {kd_weight!r}.")
    return {"theta": defaults.check_non_negative("theta", theta),
            "w_lr_multiplier": defaults.check_positive("w_lr_multiplier", w_lr_multiplier),
            "sigma_lr_multiplier": defaults.check_positive("sigma_lr_multiplier",
                                                           sigma_lr_multiplier),
            "mixture_update": defaults.check_choice("mixture_update", mixture_update,
                                                    MIXTURE_UPDATES),
            "kd_weight": kd_weight,
            "temperature": defaults.check_positive("temperature", temperature)}


def _regularizer_gradient(kernel: BinaryKernel) -> tf.Tensor:
    """The gradient, at the latent kernel, of its layer's kernel regularizer (weight
    decay: `L2(wd / 2)` gives `wd * x`), zero without one. The total gradient holds it, but
    it is not the data's: a flip threshold and FlipDiagnostics take it out."""
    attribute = next((name for name in REGULARIZED_KERNELS
                      if getattr(kernel.layer, name, None) is kernel.latent), None)
    regularizer = getattr(kernel.layer, REGULARIZED_KERNELS.get(attribute, ""), None)
    if regularizer is None:
        return tf.zeros_like(kernel.latent)
    with tf.GradientTape() as tape:
        tape.watch(kernel.latent)
        value = regularizer(kernel.latent)
    return tape.gradient(value, kernel.latent)


@lq_utils.register_keras_custom_object
class BONN(tf.keras.Model):
    r"""Train a functional Keras classifier the BONN way, with plain `compile` / `fit`.

    Adds the Bayesian feature loss on the penultimate features (labels reach it inside
    `train_step`; nothing changes at inference), sums it with the kernel losses of the
    model's `BayesianSign` quantizers and the compiled loss, and logs each term.
    `predict` / `evaluate` behave as for the wrapped model; `classifier` is the wrapped
    model itself, which is what you convert with LCE.

    Args:
        model: a functional classifier whose output is `[batch, num_classes]`.
        theta: weight of the feature loss (default 1e-3, see docs/usage.md).
        feature_layer: name of the layer whose output are the features; default the
            input of the last Dense layer.
        feature_loss: False leaves out the feature loss entirely (ablation switch). The
            kernel loss is switched by the model's quantizer: `BayesianSign` on,
            `"ste_sign"` off (`bayes_larq.models` builders: `bonn=True|False`).
        w_lr_multiplier: learning-rate multiplier for the reconstruction vectors W
            (a second optimizer of the same kind, its rate or schedule scaled);
            default 1, one optimizer for all.
        sigma_lr_multiplier: the same for the mixture sigmas (`log_sigma_pos`,
            `log_sigma_neg`); the paper trains W and sigma at a tenth of the rate.
        mixture_update: "gradient" (default) trains mu and sigma by gradient with the
            rest. "closed_form" gives them no gradient step: they change only when
            something sets them, `callbacks.MixtureRefresh` with the closed-form optimum.
        flip_threshold: None (default) keeps each layer's lam as set; a
            `bayes_larq.flips.FlipThreshold` (or its config dict) recomputes the lam of
            every `BayesianSign` layer inside `train_step` from that layer's data
            gradient, so that the push of L_B at zero follows it (docs/method.md,
            "The flip threshold"). Each step's gradient sets the lam of the next, so
            the lam of those layers is set to 0 here: the first step trains without
            L_B. One replica only.
        teacher: a real-valued Keras model with the classifier's inputs and outputs
            (typically its float twin, trained) for distillation; None (default) trains
            on the labels alone. BONN freezes it (`trainable = False`) and runs it in
            inference mode; it is saved with the BONN model (`.keras` restores its
            weights) and is never part of `classifier`, so not of the converted model.
        kd_weight: share of the distribution loss in the task loss, in [0, 1]:
            $(1 - \alpha) L_{CE} + \alpha L_{KD}$ (`losses.distribution_loss`). 1
            (default) is ReActNet's: the teacher's distribution instead of the labels.
        temperature: softmax temperature $T > 0$ of the distribution loss (default 1).
    """

    # A class attribute keeps Keras from tracking (and saving twice) this second view
    # of the classifier's layers: Keras tracks attributes set on instances only.
    _network = None
    # The FlipProbe of `callbacks.FlipDiagnostics`, when one is attached (not saved).
    _flip_probe = None

    def __init__(self, model: tf.keras.Model, theta: float = defaults.THETA,
                 feature_layer: str | None = None, feature_loss: bool = True,
                 w_lr_multiplier: float = 1.0, sigma_lr_multiplier: float = 1.0,
                 mixture_update: str = "gradient",
                 flip_threshold: FlipThreshold | dict | None = None,
                 teacher: tf.keras.Model | None = None, kd_weight: float = 1.0,
                 temperature: float = 1.0, **kwargs: Any):
        kwargs.setdefault("name", f"bonn_{model.name}")
        super().__init__(**kwargs)
        if isinstance(model, tf.keras.Sequential) and not model.built:
            raise ValueError(f"BONN needs a built model; the Sequential model {model.name} "
                             f"is not built: start it with tf.keras.Input(shape), or call "
                             f"model.build(input_shape) first.")
        if not is_functional(model):
            raise ValueError("BONN wraps functional (or Sequential) Keras models; got a "
                             f"subclassed model {type(model).__name__}.")
        check_bayesian_roles(model)
        if len(model.outputs) != 1:
            raise ValueError(f"BONN trains a classifier with one output; {model.name} has "
                             f"{len(model.outputs)}, and BONN would train only the first. "
                             f"Wrap a model of the output to train.")
        if not isinstance(feature_loss, bool):
            raise ValueError(f"`feature_loss` must be True or False; got {feature_loss!r}.")
        if model.outputs[0].shape.rank != 2:
            raise ValueError(f"BONN needs a classifier with output [batch, num_classes]; "
                             f"{model.name} outputs {model.outputs[0].shape}.")
        self.classifier = model
        self.num_classes = int(model.outputs[0].shape[-1])
        self.feature_layer = feature_layer
        settings = check_bonn_settings(
            theta=theta, w_lr_multiplier=w_lr_multiplier,
            sigma_lr_multiplier=sigma_lr_multiplier, mixture_update=mixture_update,
            kd_weight=kd_weight, temperature=temperature)
        self.initial_theta = settings["theta"]
        self.use_feature_loss = bool(feature_loss)
        self.lr_multipliers = {"w": settings["w_lr_multiplier"],
                               "sigma": settings["sigma_lr_multiplier"]}
        self.mixture_update = settings["mixture_update"]
        features = find_feature_tensor(model, feature_layer)
        self._network = tf.keras.Model(model.inputs, [features, model.outputs[0]])
        self.flip_threshold = self._flip_threshold(flip_threshold)
        if self.flip_threshold is not None:
            for quantizer in bayesian_quantizers(model):
                quantizer.lam.assign(0.0)
        # ReBNN's rule needs the signs at the last calibration; they are training state.
        self.reference_signs = [
            self.add_weight(name=f"{k.layer.name}_reference_sign", shape=k.latent.shape,
                            trainable=False, initializer=tf.keras.initializers.Constant(
                                binary_sign(k.latent).numpy()))
            for k in bayesian_kernels(model)
        ] if self.flip_threshold is not None and self.flip_threshold.rule == "rebnn" else []
        # The "drift" rule's moving average of each layer's data gradient, and its steps.
        self.gradient_averages = [
            self.add_weight(name=f"{k.layer.name}_gradient_average", shape=k.latent.shape,
                            trainable=False, initializer="zeros")
            for k in bayesian_kernels(model)
        ] if self.flip_threshold is not None and self.flip_threshold.rule == "drift" else []
        self.feature_loss = None
        if self.use_feature_loss:
            self.feature_loss = BayesianFeatureLoss(self.num_classes, theta, name="feature_loss")
            self.feature_loss.build(features.shape)
        self.teacher = self._frozen_teacher(teacher)
        self.kd_weight = settings["kd_weight"]
        self.temperature = settings["temperature"]
        self.group_optimizers = {}
        self.total_tracker = tf.keras.metrics.Mean(name="loss")
        # Only a distilling BONN has this tracker: checkpoints of the others stay as before.
        self.kd_tracker = (tf.keras.metrics.Mean(name="kd_loss") if self.teacher is not None
                           else None)
        self.ce_tracker = tf.keras.metrics.Mean(name="ce_loss")
        self.kernel_tracker = tf.keras.metrics.Mean(name="kernel_loss")
        self.feature_tracker = tf.keras.metrics.Mean(name="feature_loss")
        self(model.inputs)  # builds the wrapper and records its input spec for saving

    def _flip_threshold(self, threshold):
        if isinstance(threshold, dict):
            threshold = FlipThreshold.from_config(threshold)
        if threshold is not None and not isinstance(threshold, FlipThreshold):
            raise ValueError(f"`flip_threshold` must be None or a "
                             f"bayes_larq.flips.FlipThreshold; got {threshold!r}.")
        if threshold is not None and not bayesian_kernels(self.classifier):
            raise ValueError(f"`flip_threshold` sets the kernel-loss weight of BayesianSign "
                             f"layers, and {self.classifier.name} has none.")
        return threshold

    def _frozen_teacher(self, teacher):
        if teacher is None:
            return None
        if not isinstance(teacher, tf.keras.Model):
            raise ValueError(f"`teacher` must be a Keras model; got {type(teacher).__name__}.")
        student_in, student_out = self.classifier.inputs[0].shape, self.classifier.outputs[0].shape
        teacher_in = teacher.inputs[0].shape if teacher.inputs else None
        teacher_out = teacher.outputs[0].shape if teacher.outputs else None
        if (teacher_in is None or teacher_in[1:] != student_in[1:] or teacher_out is None
                or teacher_out[1:] != student_out[1:] or len(teacher.outputs) != 1):
            raise ValueError(
                f"The teacher {teacher.name!r} must take the student's input "
                f"{tuple(student_in[1:])} and give one output of its shape "
                f"{tuple(student_out[1:])} (the same classes); it takes "
                f"{None if teacher_in is None else tuple(teacher_in[1:])} and gives "
                f"{[tuple(o.shape[1:]) for o in teacher.outputs]}.")
        if teacher is self.classifier:
            raise ValueError("The teacher must be another model than the student.")
        teacher.trainable = False
        return teacher

    def call(self, inputs, training=None):
        return self.classifier(inputs, training=training)

    def attach_flip_probe(self, probe) -> None:
        """Record gradients and sign flips into `probe` (a `flips.FlipProbe`) at every
        training step from now on; `callbacks.FlipDiagnostics` does this for you."""
        if self._flip_probe is not probe:
            self._flip_probe = probe
            # A new train function, traced on its next call, records into the probe.
            self.train_function = self.make_train_function(force=True)

    def _observes_kernels(self):
        return self.flip_threshold is not None or self._flip_probe is not None

    def _observe_kernels(self, variables, gradients):
        """Per binary kernel, the data gradient (of the loss without L_B) and the
        gradient of L_B; then recalibrate lam and record into the probe."""
        if tf.distribute.get_strategy().num_replicas_in_sync > 1:
            raise ValueError("The flip threshold and FlipDiagnostics measure the gradient "
                             "of one replica; train without a multi-replica strategy.")
        by_ref = {v.ref(): g for v, g in zip(variables, gradients)}
        kernels = binary_kernels(self._network)
        loss_gradients, data_gradients = [], []
        for kernel in kernels:
            total = by_ref.get(kernel.latent.ref())
            total = tf.zeros_like(kernel.latent) if total is None else tf.convert_to_tensor(total)
            loss_gradient = (kernel_loss_gradient(kernel.quantizer, kernel.latent)
                             if isinstance(kernel.quantizer, BayesianSign)
                             else tf.zeros_like(total))
            loss_gradients.append(loss_gradient)
            data_gradients.append(total - loss_gradient - _regularizer_gradient(kernel))
        if self.flip_threshold is not None:
            self._calibrate(kernels, data_gradients)
        if self._flip_probe is not None:
            self._flip_probe.record_gradients(data_gradients, loss_gradients)

    def _calibrate(self, kernels, data_gradients):
        """Every `every_n_steps` steps, set each BayesianSign layer's lam (flips.py)."""
        bayesian = [(k, g) for k, g in zip(kernels, data_gradients)
                    if isinstance(k.quantizer, BayesianSign)]
        if self.gradient_averages:
            decay = self.flip_threshold.decay
            steps = tf.cast(self.optimizer.iterations + 1, tf.float32)
            for index, (kernel, gradient) in enumerate(bayesian):
                average = self.gradient_averages[index]
                average.assign(decay * average + (1.0 - decay) * gradient)
                bayesian[index] = (kernel, average / (1.0 - decay**steps))

        def calibrate():
            for index, (kernel, gradient) in enumerate(bayesian):
                sign = binary_sign(kernel.latent)
                flipped = None
                if self.reference_signs:
                    reference = self.reference_signs[index]
                    flipped = tf.reduce_mean(tf.cast(tf.not_equal(sign, reference), tf.float32))
                    reference.assign(sign)
                kernel.quantizer.lam.assign(self.flip_threshold.lam(
                    kernel.quantizer, kernel.latent, gradient, flipped))
            return tf.constant(True)

        due = tf.equal(self.optimizer.iterations % self.flip_threshold.every_n_steps, 0)
        tf.cond(due, calibrate, lambda: tf.constant(False))

    def compile(self, optimizer="rmsprop", *args, **kwargs):
        super().compile(optimizer, *args, **kwargs)
        self.group_optimizers = {
            group: scaled_learning_rate_optimizer(self.optimizer, multiplier, group)
            for group, multiplier in self.lr_multipliers.items() if multiplier != 1.0}

    def _loss_terms(self, x, y, features, logits, sample_weight):
        """The loss terms of one batch; `total` is scaled for cross-replica summation."""
        labels = integer_labels(y, self.num_classes)
        with tf.control_dependencies([labels]):  # the label check runs before any loss
            y = tf.identity(y)
        ce = self.compiled_loss(y, logits, sample_weight)  # already divided by replicas
        replicas = tf.cast(tf.distribute.get_strategy().num_replicas_in_sync, ce.dtype)
        task, kd = ce, tf.constant(0.0)
        if self.teacher is not None:
            teacher_logits = self.teacher(x, training=False)
            kd = tf.nn.compute_average_loss(  # divided by the global batch, as `ce`
                distribution_loss(teacher_logits, logits, self.temperature),
                sample_weight=sample_weight)
            task = (1.0 - self.kd_weight) * ce + self.kd_weight * kd
        quantizer_losses = [loss for q in bayesian_quantizers(self._network) for loss in q.losses]
        kernel = tf.add_n(quantizer_losses) if quantizer_losses else tf.constant(0.0)
        all_losses = self.classifier.losses
        other = tf.add_n(all_losses) - kernel if all_losses else tf.constant(0.0)
        feature = (self.feature_loss(features, labels) if self.feature_loss is not None
                   else tf.constant(0.0))
        extra = kernel + other + feature
        return {"ce": ce * replicas, "kd": kd * replicas, "kernel": kernel, "feature": feature,
                "total": task + extra / replicas, "logged_total": task * replicas + extra}

    def _group_variables(self):
        """{variable ref: group} for the variables with their own optimizer."""
        quantizers = bayesian_quantizers(self._network)
        members = {"w": [q.reconstruction for q in quantizers],
                   "sigma": [v for q in quantizers for v in (q.log_sigma_pos, q.log_sigma_neg)]}
        return {v.ref(): group for group in self.group_optimizers for v in members[group]}

    def _split_variables(self, pairs):
        """{optimizer: [(gradient or None, variable), ...]} for `pairs`."""
        groups = self._group_variables()
        split = {self.optimizer: []}
        for optimizer in self.group_optimizers.values():
            split[optimizer] = []
        for pair in pairs:
            group = groups.get(pair[1].ref())
            split[self.group_optimizers[group] if group else self.optimizer].append(pair)
        return split

    def _gradient_variables(self):
        """The trainable variables, less mu and sigma when they are set by closed form."""
        if self.mixture_update == "gradient":
            return self.trainable_variables
        fixed = {v.ref() for q in bayesian_quantizers(self._network)
                 for v in (q.mu_pos, q.mu_neg, q.log_sigma_pos, q.log_sigma_neg)}
        return [v for v in self.trainable_variables if v.ref() not in fixed]

    def _apply_gradients(self, tape, loss):
        variables = self._gradient_variables()
        gradients = tape.gradient(loss, variables)
        if self._observes_kernels():
            self._observe_kernels(variables, gradients)
        split = self._split_variables(zip(gradients, variables))
        for optimizer, pairs in split.items():
            if pairs:
                optimizer.apply_gradients(pairs)
        if self._flip_probe is not None:
            self._flip_probe.record_signs()

    def compile_from_config(self, config):
        """Re-compile after `load_model` (`compile` is extended, so Keras leaves it to us)."""
        self.compile(**tf.keras.saving.deserialize_keras_object(config))
        if self.built:
            self.build_optimizers()

    def build_optimizers(self) -> list:
        """Create the slots of every optimizer now (as the first step would); returns them
        in a fixed order, the main optimizer first."""
        split = self._split_variables((None, v) for v in self.trainable_variables)
        for optimizer, pairs in split.items():
            optimizer.build([v for _, v in pairs])
        return list(split)

    def copy_state_from(self, other: "BONN") -> None:
        """Take the weights and optimizer state of `other`, a BONN of the same model."""
        self.set_weights(other.get_weights())
        for mine, theirs in zip(self.build_optimizers(), other.build_optimizers()):
            for target, source in zip(mine.variables, theirs.variables):
                target.assign(source)

    @property
    def metrics(self):
        """Loss trackers first; the compiled loss's own tracker is replaced by ours."""
        ours = [self.total_tracker, self.ce_tracker]
        if self.teacher is not None:
            ours.append(self.kd_tracker)
        ours.append(self.kernel_tracker)
        if self.feature_loss is not None:
            ours.append(self.feature_tracker)
        compiled_loss = getattr(self, "compiled_loss", None)
        replaced = ours + [self.feature_tracker] + (
            compiled_loss.metrics if compiled_loss else [])
        return ours + [m for m in super().metrics if all(m is not r for r in replaced)]

    def _results(self, y, logits, sample_weight, terms):
        batch = tf.cast(tf.shape(logits)[0], tf.float32)
        self.compiled_metrics.update_state(y, logits, sample_weight)
        for tracker, key in ((self.total_tracker, "logged_total"), (self.ce_tracker, "ce"),
                             (self.kd_tracker, "kd"), (self.kernel_tracker, "kernel"),
                             (self.feature_tracker, "feature")):
            if tracker is not None:
                tracker.update_state(terms[key], sample_weight=batch)
        return {m.name: m.result() for m in self.metrics}

    def train_step(self, data):
        x, y, sample_weight = tf.keras.utils.unpack_x_y_sample_weight(data)
        with tf.GradientTape() as tape:
            features, logits = self._network(x, training=True)
            terms = self._loss_terms(x, y, features, logits, sample_weight)
        self._apply_gradients(tape, terms["total"])
        return self._results(y, logits, sample_weight, terms)

    def test_step(self, data):
        x, y, sample_weight = tf.keras.utils.unpack_x_y_sample_weight(data)
        features, logits = self._network(x, training=False)
        terms = self._loss_terms(x, y, features, logits, sample_weight)
        return self._results(y, logits, sample_weight, terms)

    def fit(self, *args, **kwargs):
        with label_errors_as_value_errors(self.num_classes):
            return super().fit(*args, **kwargs)

    def evaluate(self, *args, **kwargs):
        with label_errors_as_value_errors(self.num_classes):
            return super().evaluate(*args, **kwargs)

    def get_config(self):
        return {
            "model": tf.keras.utils.serialize_keras_object(self.classifier),
            "theta": self.initial_theta,
            "feature_layer": self.feature_layer,
            "feature_loss": self.use_feature_loss,
            "w_lr_multiplier": self.lr_multipliers["w"],
            "sigma_lr_multiplier": self.lr_multipliers["sigma"],
            "mixture_update": self.mixture_update,
            "flip_threshold": (self.flip_threshold.get_config()
                               if self.flip_threshold is not None else None),
            "teacher": (tf.keras.utils.serialize_keras_object(self.teacher)
                        if self.teacher is not None else None),
            "kd_weight": self.kd_weight,
            "temperature": self.temperature,
            "name": self.name,
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        model = tf.keras.models.model_from_config(config.pop("model"),
                                                  custom_objects=custom_objects)
        teacher = config.pop("teacher", None)
        if teacher is not None:
            teacher = tf.keras.models.model_from_config(teacher, custom_objects=custom_objects)
        return cls(model, teacher=teacher, **config)
