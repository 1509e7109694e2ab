"""Shared pieces of the model builders: argument checks and the layer factory.

Every builder of `bayes_larq.models` describes its architecture once and asks a
`LayerFactory` for each weight layer, saying what the layer is for:

* ``"binary"``: a 3x3 convolution of a residual block. Binarized (weights and
  activations) in both scopes; this is the paper's binarization scope.
* ``"shortcut"``: a 1x1 downsampling convolution of a shortcut. Real-valued in the paper
  scope, binarized in the full scope.
* ``"classifier"``: the final "logits" layer. Real-valued (with a bias) in the paper
  scope, binarized (no bias) in the full scope.
* ``"stem"``: the first convolution. Real-valued in every scope (see `SCOPES`).

The factory turns that role, the scope and the precision into the right Keras/Larq
layer, so the architecture code has no binary/float branches of its own.
"""

import functools
import inspect
import numbers
from collections.abc import Sequence
from typing import Any, Callable

import larq as lq
import tensorflow as tf

from bayes_larq.defaults import check_choice, check_integer
from bayes_larq.layers import LearnableShift, RPReLU
from bayes_larq.quantizers import BayesianSign

__all__ = ["BINARY_ROLES", "FLOAT_ACTIVATIONS", "LayerFactory", "PRECISIONS", "SCOPES",
           "bireal_stages", "bireal_unit", "check_input_shape", "check_options",
           "head", "htanh", "model_builder"]

SCOPES = ("paper", "full")
PRECISIONS = ("binary", "float", "activations")
FLOAT_ACTIVATIONS = ("relu", "htanh", "linear")

# What each scope binarizes (roles of weight layers). The stem is real in both scopes:
# its input is the image (3 or 1 channels), so a binary stem has almost no work to
# accelerate (LCE's binary kernels pack 32+ channels into a word) and it would throw
# away most of the input information; every 1-bit network in the literature (XNOR-Net,
# Bi-Real Net, BONN, ReActNet, QuickNet) keeps it real.
BINARY_ROLES = {
    "paper": frozenset({"binary"}),
    "full": frozenset({"binary", "shortcut", "classifier"}),
}

KERNEL_INITIALIZER = "glorot_normal"  # as Larq Zoo's Bi-Real Net
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5


def check_input_shape(input_shape: Any) -> tuple[int, int, int]:
    """A (height, width, channels) tuple of positive integers (no batch dimension)."""
    try:
        shape = tuple(input_shape)
    except TypeError:
        shape = None
    if (shape is None or len(shape) != 3
            or not all(isinstance(d, numbers.Integral) and not isinstance(d, bool)
                       and d > 0 for d in shape)):
        raise ValueError(
            f"`input_shape` must be (height, width, channels) with positive integers, "
            f"rank 3 without the batch dimension, e.g. (28, 28, 1) or (224, 224, 3); "
            f"got {input_shape!r}."
        )
    return tuple(int(d) for d in shape)


class LayerFactory:
    """Creates the layers of one model for a given scope, precision and BONN setting.

    Args:
        bonn: binary kernels use `BayesianSign` (True) or Larq's "ste_sign" (False).
        scope: "paper" or "full", see `BINARY_ROLES`.
        precision: "binary", "float" or "activations". The float variant has the same
            layers with no quantizers: where the binary model takes the sign of a
            layer's input, the float one applies `float_activation` instead (else the
            float network would be linear between its pooling layers). "activations"
            binarizes the activations and keeps the kernels real (no kernel quantizer,
            no weight clip): step 1 of two-step training, which
            `bayes_larq.staged.binarize_kernels` turns into the binary model.
        float_activation: activation of the float variant, "relu" (default), "htanh"
            (the function whose gradient the straight-through sign uses) or "linear".
            Only valid with `precision="float"`.
        learnable_threshold: ReActNet's RSign: a `bayes_larq.layers.LearnableShift`
            before every position the scope binarizes, so each channel's sign threshold
            is learned (in the float variant the shift stands before its activation).
        rprelu: ReActNet's RPReLU (`bayes_larq.layers.RPReLU`) on the output of every
            residual unit, after the shortcut is added: a learned nonlinearity on the
            real-valued path, which otherwise has none between the signs.
        sync_batch_norm: BatchNormalization with statistics over all replicas (for
            `tf.distribute` training; the same as plain BatchNorm on one device).
        **bayesian_sign: keyword arguments of `BayesianSign` (lam, nu, reduction,
            scale, ...), checked even when `bonn=False` so a typo fails early, but only
            used with `bonn=True`.
    """

    def __init__(self, bonn: bool = True, scope: str = "paper", precision: str = "binary",
                 float_activation: str | Callable | None = None,
                 learnable_threshold: bool = False, rprelu: bool = False,
                 sync_batch_norm: bool = False, **bayesian_sign: Any):
        for name, flag in (("bonn", bonn), ("learnable_threshold", learnable_threshold),
                           ("rprelu", rprelu), ("sync_batch_norm", sync_batch_norm)):
            if not isinstance(flag, bool):
                raise ValueError(f"`{name}` must be True or False; got {flag!r}.")
        self.scope = check_choice("scope", scope, SCOPES)
        self.precision = check_choice("precision", precision, PRECISIONS)
        self.bonn = bonn
        self.learnable_threshold = learnable_threshold
        self.rprelu = rprelu
        self.sync_batch_norm = sync_batch_norm
        self.bayesian_sign = dict(bayesian_sign)
        try:
            BayesianSign.check_settings(self.bayesian_sign)
        except ValueError as err:
            raise ValueError(f"{err} Builders take their architecture arguments and "
                             f"BayesianSign settings as keywords; anything else is an "
                             f"error.") from None
        if self.precision != "binary" and bonn:
            raise ValueError(
                f"precision={self.precision!r} has no binary kernels, so the Bayesian "
                f"kernel loss has nothing to act on: pass `bonn=False` with it."
            )
        if self.precision != "float" and float_activation is not None:
            raise ValueError(
                "`float_activation` is only used by the float variant; pass it with "
                "precision='float' (the binary model uses the sign of its inputs)."
            )
        self.float_activation = check_choice(
            "float_activation", float_activation or "relu", FLOAT_ACTIVATIONS)

    # -- what is binary ------------------------------------------------------------
    def is_binary(self, role: str) -> bool:
        """Whether `role` binarizes its input (and, with precision "binary", its kernel)."""
        return self.precision != "float" and role in BINARY_ROLES[self.scope]

    def kernel_options(self) -> dict[str, Any]:
        """The kernel quantizer and constraint of a binarized layer."""
        if self.precision == "activations":
            return {"kernel_quantizer": None, "kernel_constraint": None}
        return {"kernel_quantizer": self.kernel_quantizer(), "kernel_constraint": "weight_clip"}

    def is_quantized_position(self, role: str) -> bool:
        """True where the binary model of this scope binarizes (also for the float twin)."""
        return role in BINARY_ROLES[self.scope]

    def kernel_quantizer(self) -> BayesianSign | str:
        """A new `BayesianSign` per binary layer (`bonn=True`), else Larq's "ste_sign"."""
        if self.bonn:
            return BayesianSign(**self.bayesian_sign)
        return "ste_sign"

    def _before_sign(self, x, role, name):
        """Where the binary model takes the sign: the learnable threshold (if on), and in
        the float variant the activation that stands where the sign would be."""
        if self.learnable_threshold and self.is_quantized_position(role):
            x = LearnableShift(name=f"{name}_threshold")(x)
        if (self.precision == "float" and self.is_quantized_position(role)
                and self.float_activation != "linear"):
            activation = "relu" if self.float_activation == "relu" else htanh
            return tf.keras.layers.Activation(activation, name=f"{name}_act")(x)
        return x

    # -- layers --------------------------------------------------------------------
    def conv(self, x: tf.Tensor, filters: int, kernel_size: int, role: str, name: str,
             strides: int = 1, padding: str = "same") -> tf.Tensor:
        """A bias-free convolution for `role`, applied to `x`."""
        x = self._before_sign(x, role, name)
        common = dict(strides=strides, padding=padding, use_bias=False,
                      kernel_initializer=KERNEL_INITIALIZER, name=name)
        if self.is_binary(role):
            pad = {"pad_values": 1.0} if padding == "same" and kernel_size > 1 else {}
            layer = lq.layers.QuantConv2D(
                filters, kernel_size, input_quantizer="ste_sign", **self.kernel_options(),
                **pad, **common)
        else:
            layer = tf.keras.layers.Conv2D(filters, kernel_size, **common)
        return layer(x)

    def logits(self, x: tf.Tensor, num_classes: int) -> tf.Tensor:
        """The final layer, named "logits": its input is the penultimate feature vector."""
        x = self._before_sign(x, "classifier", "logits")
        if self.is_binary("classifier"):
            layer = lq.layers.QuantDense(
                num_classes, input_quantizer="ste_sign", **self.kernel_options(),
                use_bias=False, kernel_initializer=KERNEL_INITIALIZER, name="logits")
        else:
            # Real classifier; in the float twin of the full scope it keeps the full
            # scope's bias-free form so the two differ only by the quantizers.
            layer = tf.keras.layers.Dense(
                num_classes, use_bias=self.scope == "paper",
                kernel_initializer=KERNEL_INITIALIZER, name="logits")
        return layer(x)

    def unit_output(self, x: tf.Tensor, name: str) -> tf.Tensor:
        """The output of a residual unit: RPReLU when `rprelu`, else `x` itself."""
        return RPReLU(name=f"{name}_rprelu")(x) if self.rprelu else x

    def batch_norm(self, x: tf.Tensor, name: str) -> tf.Tensor:
        """BatchNormalization of `x` (momentum 0.9, epsilon 1e-5; synchronized when asked)."""
        return tf.keras.layers.BatchNormalization(
            momentum=BN_MOMENTUM, epsilon=BN_EPSILON, synchronized=self.sync_batch_norm,
            name=name)(x)

    def model_name(self, name: str) -> str:
        """`name` with the scope and the precision or quantizer, e.g. small_cnn_paper_larq."""
        suffix = {"float": "float", "activations": "step1"}.get(
            self.precision, "bonn" if self.bonn else "larq")
        return f"{name}_{self.scope}_{suffix}"


Architecture = Callable[..., tf.keras.Model]
_PARAMETER = inspect.Parameter.POSITIONAL_OR_KEYWORD
# `LayerFactory`'s arguments that a builder takes after its architecture arguments (the
# others come before them), the order of the builders' positional parameters.
_AFTER_ARCHITECTURE = ("sync_batch_norm", "bayesian_sign")


def model_builder(num_classes: int, input_shape: tuple[int, int, int]
                  ) -> Callable[[Architecture], Architecture]:
    """Decorator that turns an architecture into a model builder of `bayes_larq.models`.

    The architecture is `architecture(factory, inputs, num_classes, **arch)`: it gets the
    `LayerFactory` of the shared arguments, the image input and the checked class count,
    and returns the `tf.keras.Model`. The builder has the signature every builder shares,

        (num_classes=num_classes, input_shape=input_shape, bonn=True, scope="paper",
         precision="binary", float_activation=None, learnable_threshold=False,
         rprelu=False, <arch arguments>,
         sync_batch_norm=False, **bayesian_sign)

    with `num_classes` and `input_shape` defaulting to the values given here.
    """
    def decorate(architecture: Architecture) -> Architecture:
        arch = list(inspect.signature(architecture).parameters.values())[3:]
        shared = list(inspect.signature(LayerFactory).parameters.values())
        signature = inspect.Signature(
            [inspect.Parameter("num_classes", _PARAMETER, default=num_classes,
                               annotation=int),
             inspect.Parameter("input_shape", _PARAMETER, default=input_shape,
                               annotation=tuple[int, int, int]),
             *[p for p in shared if p.name not in _AFTER_ARCHITECTURE],
             *[p.replace(kind=_PARAMETER) for p in arch],
             *[p for p in shared if p.name in _AFTER_ARCHITECTURE]],
            return_annotation=tf.keras.Model)

        @functools.wraps(architecture)
        def build(*args: Any, **kwargs: Any) -> tf.keras.Model:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            values = dict(bound.arguments)
            arch_values = {p.name: values.pop(p.name) for p in arch}
            classes = check_integer("num_classes", values.pop("num_classes"))
            inputs = tf.keras.Input(check_input_shape(values.pop("input_shape")), name="image")
            factory = LayerFactory(**values.pop("bayesian_sign"), **values)
            return architecture(factory, inputs, classes, **arch_values)

        build.__signature__ = signature
        build.__annotations__ = {p.name: p.annotation for p in signature.parameters.values()}
        build.__annotations__["return"] = tf.keras.Model
        return build
    return decorate


def check_options(**options: Any) -> None:
    """Raise ValueError if a builder would reject these shared arguments (`bonn`, `scope`,
    `precision`, `float_activation`, `learnable_threshold`, `rprelu`, `sync_batch_norm`
    and the `BayesianSign` settings), without building anything."""
    LayerFactory(**options)


@tf.keras.utils.register_keras_serializable(package="bayes_larq")
def htanh(x: tf.Tensor) -> tf.Tensor:
    """Hard tanh, clip(x, -1, 1): the function whose gradient the straight-through sign uses."""
    return tf.clip_by_value(x, -1.0, 1.0)


def bireal_unit(factory: LayerFactory, x: tf.Tensor, filters: int, name: str,
                strides: int = 1) -> tf.Tensor:
    """One Bi-Real unit: binary 3x3 conv -> BatchNorm, plus a real-valued shortcut (then
    RPReLU when the factory's `rprelu` is on, ReActNet's block).

    As Larq Zoo's Bi-Real Net: when the unit changes the shape, the shortcut is
    AvgPool(2) (if strided) -> 1x1 conv -> BatchNorm, else the identity.
    """
    in_filters = x.shape[-1]
    shortcut = x
    if strides != 1 or in_filters != filters:
        if strides != 1:
            shortcut = tf.keras.layers.AveragePooling2D(
                strides, strides=strides, padding="same", name=f"{name}_pool")(shortcut)
        shortcut = factory.conv(shortcut, filters, 1, "shortcut", f"{name}_downsample",
                                padding="valid")
        shortcut = factory.batch_norm(shortcut, f"{name}_downsample_bn")
    y = factory.conv(x, filters, 3, "binary", f"{name}_conv", strides=strides)
    y = factory.batch_norm(y, f"{name}_bn")
    return factory.unit_output(tf.keras.layers.Add(name=f"{name}_add")([y, shortcut]), name)


def bireal_stages(factory: LayerFactory, x: tf.Tensor, filters: Sequence[int], blocks: int,
                  prefix: str) -> tf.Tensor:
    """Stages of `blocks` basic blocks (two Bi-Real units each) per entry of `filters`;
    every stage after the first starts with a stride-2 unit. Layers are named
    `{prefix}{stage}_block{block}_unit{1,2}_...` (ResNet: "stage", WRN: "group")."""
    for stage, stage_filters in enumerate(filters, start=1):
        for block in range(1, blocks + 1):
            for conv in (1, 2):
                strides = 2 if stage > 1 and block == 1 and conv == 1 else 1
                x = bireal_unit(factory, x, stage_filters,
                                f"{prefix}{stage}_block{block}_unit{conv}", strides=strides)
    return x


def head(factory: LayerFactory, x: tf.Tensor, num_classes: int) -> tf.Tensor:
    """Global average pooling -> "logits" (no softmax: the model outputs logits)."""
    x = tf.keras.layers.GlobalAveragePooling2D(name="global_pool")(x)
    return factory.logits(x, num_classes)
