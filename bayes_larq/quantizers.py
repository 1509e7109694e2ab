r"""`BayesianSign`: a Larq kernel quantizer that carries the Bayesian kernel loss.

Use it as the `kernel_quantizer` of `QuantDense`, `QuantConv1D/2D/3D` and
`QuantLocallyConnected1D/2D`, or the `pointwise_quantizer` of `QuantSeparableConv1D/2D`,
by object or by the alias `"bayesian_sign"`, one instance per layer. Depthwise kernels and
transposed convolutions are refused when the layer is built (`unsupported_role`);
docs/compatibility.md lists what is supported and tested:

```python
import bayes_larq as bl
import larq as lq

layer = lq.layers.QuantConv2D(
    64, 3, padding="same", pad_values=1.0,
    input_quantizer="ste_sign",
    kernel_quantizer=bl.quantizers.BayesianSign(),
    kernel_constraint="weight_clip", use_bias=False)
```
"""

from __future__ import annotations

import inspect
import weakref
from typing import Any, NamedTuple

import numpy as np
import tensorflow as tf
from larq import context as lq_context
from larq import utils as lq_utils
from larq.quantizers import Quantizer, ste_sign

from bayes_larq import defaults
from bayes_larq._keras import (
    LarqMetricsQuantizer,
    all_layers,
    calling_layer,
    eager_value,
    reads_a_variable,
)
from bayes_larq.losses import fused_kernel_loss, kernel_loss
from bayes_larq.mixture import Mixture, fallback_mixture, fit_mixture, fit_reconstruction

__all__ = [
    "TRANSPOSED_CONVOLUTIONS", "BayesianSign", "BinaryKernel", "bayesian_kernels",
    "bayesian_quantizers", "binary_kernels", "check_bayesian_roles", "is_one_bit",
    "scale_gradient", "total_kernel_loss", "unsupported_role",
]

# Larq layer attribute holding a kernel quantizer -> attribute holding that kernel.
KERNEL_ATTRIBUTES = {"kernel_quantizer": "kernel", "depthwise_quantizer": "depthwise_kernel",
                     "pointwise_quantizer": "pointwise_kernel"}

# Layers whose kernel holds the output channels on axis -2 and the input channels last.
TRANSPOSED_CONVOLUTIONS = (tf.keras.layers.Conv1DTranspose, tf.keras.layers.Conv2DTranspose,
                           tf.keras.layers.Conv3DTranspose)
QUANTIZER_ROLES = ("input_quantizer", *KERNEL_ATTRIBUTES)
SUPPORTED_METRICS = ("flip_ratio",)


def _refuse(message: str) -> None:
    """Raise NotImplementedError(message) from a quantizer called inside a Larq layer.

    Not a ValueError: TensorFlow converts a layer's kernel inside a `try` that catches
    ValueError and TypeError and raises an unrelated error in their place; and autograph
    keeps the message of built-in exceptions only, not of subclasses.

    Larq's `quantized_scope` does not restore its state when an exception passes through
    it, so after the error every later read of a quantized kernel in the process would
    return the binarized value (weight clipping would then clip the binary kernel). The
    scope is reset to its default, unquantized, state first.
    """
    lq_context.quantized_scope(False).__enter__()
    raise NotImplementedError(message)


def unsupported_role(layer: tf.keras.layers.Layer, role: str) -> str | None:
    """Why a `BayesianSign` cannot be `layer`'s `role` ("kernel_quantizer", ...), or None.

    BayesianSign fits its mixture and its scale per output channel, on the last kernel
    axis. That is the output channels of Dense, Conv1D/2D/3D, LocallyConnected1D/2D and
    the pointwise kernel of SeparableConv1D/2D. It is not for an input quantizer (no
    kernel), a depthwise kernel (`[..., channels, depth multiplier]`) or the kernel of a
    transposed convolution (`[..., output channels, input channels]`).
    """
    where = f"Layer {layer.name!r} ({type(layer).__name__}) uses BayesianSign as its {role}"
    if role == "input_quantizer":
        return (f"{where}. BayesianSign quantizes kernels; binarize activations with "
                f"input_quantizer='ste_sign'.")
    if role == "depthwise_quantizer":
        return (f"{where}, which is not supported: a depthwise kernel's last axis is the "
                f"depth multiplier, not the output channels. Use depthwise_quantizer="
                f"'ste_sign' (BayesianSign stays available as the pointwise_quantizer of "
                f"QuantSeparableConv1D/2D).")
    if role == "kernel_quantizer" and isinstance(layer, TRANSPOSED_CONVOLUTIONS):
        return (f"{where}, which is not supported: a transposed convolution's kernel "
                f"holds the input channels on its last axis. Use kernel_quantizer="
                f"'ste_sign' there, or UpSampling followed by a QuantConv layer with "
                f"BayesianSign.")
    return None


def scale_gradient(tensor: tf.Tensor, factor: float) -> tf.Tensor:
    """`tensor` in the forward pass; its gradient multiplied by `factor` in the backward."""
    return tensor * factor + tf.stop_gradient(tensor * (1.0 - factor))


@lq_utils.register_alias("bayesian_sign")
@lq_utils.register_keras_custom_object
class BayesianSign(LarqMetricsQuantizer):
    r"""Binary kernel quantizer with BONN's reconstruction scale and Bayesian kernel loss.

    Forward pass (straight-through estimator for the sign, as `larq.quantizers.SteSign`):

    $$
    q(x) = \frac{\mathrm{sign}(x)}{\bar{w}}, \qquad
    \bar{w} = \mathrm{mean}(W) \text{ (per layer) or } \mathrm{mean}_{\text{channel}}(W)
    $$

    Every call adds the Bayesian kernel loss $L_B$ (`bayes_larq.losses.kernel_loss`)
    with `add_loss`: a reconstruction term $(\hat{x} - w x)^2$ and a two-mode Gaussian
    mixture prior with modes $+\mu^+_i$, $-\mu^-_i$ and std devs $\sigma^\pm_i$ per
    output channel $i$.

    The quantizer owns, as trainable weights, the reconstruction vector `W`
    (`reconstruction`, the shape of the kernel), `mu_pos`, `mu_neg`, `log_sigma_pos`
    and `log_sigma_neg` (shape `[channels]`), and as non-trainable weights `lam` and
    `nu` (so callbacks can schedule them without retracing and checkpoints keep them).
    All are initialised from the latent kernel it first sees (`mixture.fit_mixture`),
    so training starts at a sensible loss. `sigma = max(exp(log_sigma), min_sigma)`
    stays strictly positive; a channel with no positive (or negative) weight adds
    nothing for that mode, so the loss stays finite.

    Defaults come from `bayes_larq.defaults` (the evidence behind them is in
    docs/evidence.md); the method and its gradients are in docs/method.md.

    Args:
        lam: weight of the kernel loss, finite and >= 0.
        nu: weight of the mixture prior inside the loss, finite and >= 0.
        reduction: "mean" (default) or "sum" (the paper's).
        scale: "layer" (one scalar, the paper's) or "channel" (one per output channel).
        clip_value: straight-through gradient clip, as in `SteSign`; None: no clipping.
        min_sigma: lower bound on the mixture standard deviations, > 0.
        prior_gradient: "sum" (default): mu and sigma get the exact gradient of $L_B$.
            "mean": the paper's update, that gradient divided by the number of
            elements per output channel $n$ (the loss value is unchanged; only
            $\partial L_B / \partial \mu$ and $\partial L_B / \partial \sigma$ are
            scaled by $1/n$), so the modes move slowly while the kernel keeps its
            summed gradient.
        jit_compile: True (default): $L_B$ and its closed-form gradients are computed in
            one XLA-compiled pass over the kernel (`losses.fused_kernel_loss`; the rest
            of the model is not compiled: XLA's CPU convolutions are slower than
            TensorFlow's). Same values to float rounding, faster on CPU (docs/speed.md).
            False: `losses.kernel_loss` as plain TensorFlow ops, differentiated by
            autodiff.
        metrics: Larq's quantizer metrics, as in `SteSign`: `["flip_ratio"]` tracks the
            share of binary weights that flip per step; None takes those of
            `larq.context.metrics_scope`.

    Under a mixed-precision policy the kernel arrives as float16; the quantizer's
    variables, $L_B$ and $1/\bar w$ stay float32 and only the output is cast back.
    The state is fitted to the kernel on the first call, also for a layer rebuilt by
    `from_config` or `tf.keras.models.clone_model` (`build_from_config`).

    Examples:
        >>> q = BayesianSign(lam=1e-3)
        >>> y = q(tf.constant([[0.5, -0.2], [-0.3, 0.1]]))
    """

    precision = 1

    def __init__(self, lam: float = defaults.LAM, nu: float = defaults.NU,
                 reduction: str = defaults.REDUCTION, scale: str = defaults.SCALE,
                 clip_value: float = 1.0, min_sigma: float = defaults.MIN_SIGMA,
                 prior_gradient: str = defaults.PRIOR_GRADIENT, jit_compile: bool = True,
                 metrics: list[str] | None = None, **kwargs: Any):
        self.initial_lam = defaults.check_non_negative("lam", lam)
        self.initial_nu = defaults.check_non_negative("nu", nu)
        self.reduction = defaults.check_choice("reduction", reduction, defaults.REDUCTIONS)
        self.scale = defaults.check_choice("scale", scale, defaults.SCALES)
        self.clip_value = (None if clip_value is None
                           else defaults.check_positive("clip_value", clip_value))
        self.min_sigma = defaults.check_positive("min_sigma", min_sigma)
        self.prior_gradient = defaults.check_choice("prior_gradient", prior_gradient,
                                                    defaults.PRIOR_GRADIENTS)
        if not isinstance(jit_compile, bool):
            raise ValueError(f"`jit_compile` must be True or False; got {jit_compile!r}.")
        self.jit_compile = jit_compile
        unknown = sorted(set(metrics or ()) - set(SUPPORTED_METRICS))
        if isinstance(metrics, str) or unknown:
            raise ValueError(f"`metrics` must be a list of {list(SUPPORTED_METRICS)}; got "
                             f"{metrics!r}.")
        self.metrics_argument = None if metrics is None else list(metrics)
        self._first_kernel = None
        self._layer = None
        super().__init__(metrics=self.metrics_argument, **kwargs)

    @classmethod
    def check_settings(cls, settings: dict[str, Any]) -> dict[str, Any]:
        """Raise ValueError if `BayesianSign(**settings)` would reject `settings`."""
        allowed = [name for name, parameter in inspect.signature(cls).parameters.items()
                   if parameter.kind is parameter.POSITIONAL_OR_KEYWORD]
        unknown = sorted(set(settings) - set(allowed))
        if unknown:
            raise ValueError(f"Unknown BayesianSign settings {unknown}; known: "
                             f"{', '.join(allowed)}.")
        cls(**settings)
        return settings

    def __call__(self, inputs, *args, **kwargs):
        layer = calling_layer()
        if not self.built:
            self._check_role(layer)
            self._first_kernel = inputs
            self._layer = None if layer is None else weakref.ref(layer)
        else:
            self._check_same_kernel(inputs, layer)
        return super().__call__(inputs, *args, **kwargs)

    def _check_same_kernel(self, inputs, layer):
        owner = self._layer() if self._layer is not None else None
        shape = tf.TensorShape(inputs.shape)
        if shape == self._kernel_shape and (layer is None or owner is None or layer is owner):
            return
        _refuse(f"This BayesianSign was built for the kernel {self._kernel_shape} of layer "
                f"{getattr(owner, 'name', None)!r} and is now called on {shape} by layer "
                f"{getattr(layer, 'name', None)!r}. Use one BayesianSign per layer: its W, "
                f"mu and sigma belong to one kernel (pass \"bayesian_sign\" or a new "
                f"BayesianSign() to each layer).")

    def _check_role(self, layer):
        roles = [r for r in QUANTIZER_ROLES if getattr(layer, r, None) is self]
        reason = unsupported_role(layer, roles[0]) if roles else None
        if reason:
            _refuse(reason)

    def build_from_config(self, config):
        """Keras rebuilds a deserialized layer (`from_config`, `clone_model`) from its
        input shape, before any kernel exists; BayesianSign instead builds on its first
        call, where it sees the kernel and fits W, mu and sigma to it (`build`)."""

    def build(self, input_shape):
        shape = tf.TensorShape(input_shape)
        if shape.rank is None or shape.rank < 2 or not shape.is_fully_defined():
            raise ValueError(
                f"BayesianSign quantizes kernels of rank >= 2 with a known shape and the "
                f"output channels on the last axis (Dense: rank 2, Conv2D: rank 4); "
                f"got a kernel of shape {shape}. Use it as a `kernel_quantizer`, not as "
                f"an `input_quantizer` (use 'ste_sign' there)."
            )
        kernel = self._first_kernel
        self._first_kernel = None
        value = None if kernel is None else eager_value(kernel)
        if value is None and kernel is not None and not reads_a_variable(kernel):
            raise ValueError(
                "BayesianSign quantizes kernels, but it was called on a tensor that is not a "
                "weight variable (an activation? BayesianSign as an input_quantizer). Use "
                "'ste_sign' as the input_quantizer and BayesianSign as the kernel_quantizer.")
        if value is not None:
            reconstruction, mixture = fit_reconstruction(value), fit_mixture(value, self.min_sigma)
        else:  # W = 1: the plain sign
            reconstruction = np.ones(shape.as_list(), np.float32)
            mixture = fallback_mixture(shape[-1], self.min_sigma)
        self.reconstruction = self._add_initialised("reconstruction", reconstruction)
        self.mu_pos = self._add_initialised("mu_pos", mixture.mu_pos)
        self.mu_neg = self._add_initialised("mu_neg", mixture.mu_neg)
        self.log_sigma_pos = self._add_initialised("log_sigma_pos", np.log(mixture.sigma_pos))
        self.log_sigma_neg = self._add_initialised("log_sigma_neg", np.log(mixture.sigma_neg))
        self.lam = self._add_initialised("lam", np.float32(self.initial_lam), trainable=False)
        self.nu = self._add_initialised("nu", np.float32(self.initial_nu), trainable=False)
        self._kernel_shape = shape
        super().build(input_shape)

    def _add_initialised(self, name, value, trainable=True):
        # float32 and read as float32 under a mixed-precision policy too: the loss and
        # the scale are computed in float32 (`call`).
        value = np.asarray(value, np.float32)
        return self.add_weight(
            name=name, shape=value.shape, trainable=trainable, dtype=tf.float32,
            initializer=tf.keras.initializers.Constant(value), experimental_autocast=False,
        )

    @property
    def non_trainable_weights(self):
        """lam and nu (Larq's base class would hide every non-trainable weight; only the
        flip-ratio metric's state is hidden here)."""
        metric = getattr(self, "flip_ratio", None)
        hidden = {id(v) for v in metric.variables} if metric is not None else set()
        return [w for w in Quantizer.non_trainable_weights.fget(self) if id(w) not in hidden]

    @property
    def sigma_pos(self):
        return tf.maximum(tf.exp(self.log_sigma_pos), self.min_sigma)

    @property
    def sigma_neg(self):
        return tf.maximum(tf.exp(self.log_sigma_neg), self.min_sigma)

    def w_bar(self):
        """Mean of W: a scalar (`scale="layer"`) or one value per output channel."""
        if self.scale == "layer":
            return tf.reduce_mean(self.reconstruction)
        leading_axes = list(range(self.reconstruction.shape.rank - 1))
        return tf.reduce_mean(self.reconstruction, axis=leading_axes)

    def kernel_loss(self, kernel: tf.Tensor) -> tf.Tensor:
        """$L_B$ of `kernel` under this quantizer's current W, mu, sigma, lam and nu."""
        mixture = self.mixture()
        if self.prior_gradient == "mean":
            elements_per_channel = kernel.shape.num_elements() // kernel.shape[-1]
            mixture = Mixture(*(scale_gradient(v, 1.0 / elements_per_channel)
                                for v in mixture))
        loss = fused_kernel_loss if self.jit_compile else kernel_loss
        return loss(kernel, self.reconstruction, mixture, self.lam, self.nu, self.reduction)

    def call(self, inputs):
        kernel = tf.cast(inputs, tf.float32)
        self.add_loss(self.kernel_loss(kernel))
        signs = ste_sign(kernel, clip_value=self.clip_value)
        super().call(signs)  # Larq's metrics (flip_ratio), on the binary kernel
        return tf.cast(signs / self.w_bar(), inputs.dtype)

    def mixture(self) -> Mixture:
        """The current mixture: the variables `mu_pos`, `mu_neg` and the tensors
        `sigma_pos`, `sigma_neg` (gradients reach `log_sigma_pos`, `log_sigma_neg`)."""
        return Mixture(self.mu_pos, self.mu_neg, self.sigma_pos, self.sigma_neg)

    def reset_from_kernel(self, kernel: np.ndarray) -> None:
        """Re-initialise W, mu and sigma from a kernel value (e.g. after loading weights)."""
        self.refresh_mixture(kernel)
        self.reconstruction.assign(fit_reconstruction(np.asarray(kernel)))

    def refresh_mixture(self, kernel: np.ndarray) -> Mixture:
        """Closed-form (EM-like) update: mu and sigma of each mode become the mean and std
        of the weight magnitudes on that side, where dL_B/dmu = dL_B/dsigma = 0."""
        mixture = fit_mixture(np.asarray(kernel), self.min_sigma)
        self.mu_pos.assign(mixture.mu_pos)
        self.mu_neg.assign(mixture.mu_neg)
        self.log_sigma_pos.assign(np.log(mixture.sigma_pos))
        self.log_sigma_neg.assign(np.log(mixture.sigma_neg))
        return mixture

    def get_config(self):
        return {
            **super().get_config(),
            "lam": self.initial_lam,
            "nu": self.initial_nu,
            "reduction": self.reduction,
            "scale": self.scale,
            "clip_value": self.clip_value,
            "min_sigma": self.min_sigma,
            "prior_gradient": self.prior_gradient,
            "jit_compile": self.jit_compile,
            "metrics": (None if self.metrics_argument is None
                        else list(self.metrics_argument)),
        }


class BinaryKernel(NamedTuple):
    """A 1-bit kernel of a model: its layer, its quantizer and the latent variable."""

    layer: tf.keras.layers.Layer
    quantizer: Any
    latent: tf.Variable

    @property
    def attribute(self) -> str:
        """The layer attribute holding the kernel: "kernel", "depthwise_kernel", ..."""
        return next(name for name in KERNEL_ATTRIBUTES.values()
                    if getattr(self.layer, name, None) is self.latent)

    def mixture(self) -> Mixture:
        """The layer's mixture as NumPy arrays: learned for `BayesianSign`, else the
        closed-form fit."""
        if isinstance(self.quantizer, BayesianSign):
            return Mixture(*(np.asarray(value) for value in self.quantizer.mixture()))
        return fit_mixture(self.latent.numpy())


def is_one_bit(quantizer) -> bool:
    """Whether a Larq quantizer (or `BayesianSign`) binarizes: its precision is 1 bit."""
    return getattr(quantizer, "precision", None) == 1


def binary_kernels(model: tf.keras.layers.Layer) -> list[BinaryKernel]:
    """Every kernel of `model` quantized to 1 bit (`BayesianSign`, "ste_sign", any Larq
    quantizer with precision 1), in model order, nested models included.

    Input quantizers are not kernels and are not listed. This is the one walker over a
    model's binarized kernels; reports, profiles, callbacks and `bayesianize` use it.
    """
    found = []
    for layer in all_layers(model):
        for quantizer_attribute, kernel_attribute in KERNEL_ATTRIBUTES.items():
            quantizer = getattr(layer, quantizer_attribute, None)
            if is_one_bit(quantizer) and hasattr(layer, kernel_attribute):
                found.append(BinaryKernel(layer, quantizer, getattr(layer, kernel_attribute)))
    return found


def check_bayesian_roles(model: tf.keras.layers.Layer) -> None:
    """Raise ValueError where a `BayesianSign` serves in a role it does not support
    (`unsupported_role`: an input quantizer, a depthwise or transposed kernel)."""
    for layer in all_layers(model):
        for role in QUANTIZER_ROLES:
            if isinstance(getattr(layer, role, None), BayesianSign):
                reason = unsupported_role(layer, role)
                if reason:
                    raise ValueError(reason)


def bayesian_kernels(model: tf.keras.layers.Layer) -> list[BinaryKernel]:
    """The binary kernels of `model` whose quantizer is a `BayesianSign`."""
    return [k for k in binary_kernels(model) if isinstance(k.quantizer, BayesianSign)]


def bayesian_quantizers(model: tf.keras.layers.Layer) -> list[BayesianSign]:
    """The distinct `BayesianSign` quantizers of a model, in layer order."""
    quantizers = []
    for kernel in bayesian_kernels(model):
        if all(kernel.quantizer is not q for q in quantizers):
            quantizers.append(kernel.quantizer)
    return quantizers


def total_kernel_loss(model: tf.keras.layers.Layer) -> tf.Tensor:
    """Sum of $L_B$ over the model's Bayesian kernels, computed now from the variables."""
    losses = [k.quantizer.kernel_loss(k.latent) for k in bayesian_kernels(model)]
    return tf.add_n(losses) if losses else tf.constant(0.0)
