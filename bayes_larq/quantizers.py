r"""`BayesianSign`: a Larq kernel quantizer that carries the Bayesian kernel loss.

Use it wherever Larq takes a `kernel_quantizer` (`QuantConv2D`, `QuantDense`,
`QuantDepthwiseConv2D`, ...), by object or by the alias `"bayesian_sign"`:

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

import collections
import inspect

import numpy as np
import tensorflow as tf
from larq import utils as lq_utils
from larq.quantizers import Quantizer, ste_sign

from bayes_larq.losses import (
    REDUCTIONS,
    kernel_loss,
    validate_choice,
    validate_non_negative,
)

SCALES = ("layer", "channel")
PRIOR_GRADIENTS = ("sum", "mean")

# Moments of a weight uniform on [0, 1] (a weight-clipped kernel seen from one side):
# used only when the first kernel seen cannot be read (e.g. built inside a tf.function).
FALLBACK_MU = 0.5
FALLBACK_SIGMA = float(np.sqrt(1.0 / 12.0))


def eager_value(tensor):
    """The NumPy value of `tensor`, or None when it cannot be read without running a graph.

    During Keras functional construction, Larq passes the quantizer a symbolic read of
    the latent kernel; the variable behind it already holds its initial value, so we
    follow the read back to the captured variable handle and read it eagerly.
    """
    if hasattr(tensor, "numpy") and not hasattr(tensor, "graph"):
        return tensor.numpy()
    if isinstance(tensor, tf.Variable):
        return tensor.numpy()
    op = getattr(tensor, "op", None)
    while op is not None and op.type == "Identity":
        op = op.inputs[0].op
    if op is None or op.type != "ReadVariableOp":
        return None
    handle = op.inputs[0]
    for external, internal in getattr(tensor.graph, "captures", ()):
        if internal is handle and hasattr(external, "numpy"):
            with tf.init_scope():
                return tf.raw_ops.ReadVariableOp(resource=external, dtype=tensor.dtype).numpy()
    return None


def scale_gradient(tensor, factor):
    """`tensor` in the forward pass; its gradient multiplied by `factor` in the backward."""
    return tensor * factor + tf.stop_gradient(tensor * (1.0 - factor))


def _side_moments(channel, side_mask, min_sigma):
    """Mean magnitude and std of one side (positive or negative) of a channel's weights."""
    magnitudes = np.abs(channel[side_mask]) if side_mask.any() else np.abs(channel)
    mu = float(magnitudes.mean()) if magnitudes.size and magnitudes.mean() > 0 else FALLBACK_MU
    sigma = float(np.sqrt(np.mean((magnitudes - mu) ** 2))) if magnitudes.size else 0.0
    return mu, max(sigma, min_sigma)


def initial_statistics(kernel, min_sigma):
    """Initial W, mu and sigma from a latent kernel (NumPy, output channels last).

    Per output channel: W holds the least-squares scalar w = sum|x| / sum x^2 (the best
    single reconstruction factor, so sign(x) ~ w x), mu_pos / sigma_pos are the mean and
    std of the non-negative weights, mu_neg / sigma_neg those of the magnitudes of the
    negative weights. An empty side borrows the magnitudes of the whole channel.
    """
    flat = np.asarray(kernel, dtype=np.float64).reshape(-1, kernel.shape[-1])
    sum_abs, sum_sq = np.abs(flat).sum(axis=0), np.square(flat).sum(axis=0)
    w_channel = np.where(sum_sq > 0, sum_abs / np.where(sum_sq > 0, sum_sq, 1.0), 1.0)
    stats = {"reconstruction": np.broadcast_to(w_channel, flat.shape).reshape(kernel.shape)}
    pos = [_side_moments(c, c >= 0, min_sigma) for c in flat.T]
    neg = [_side_moments(c, c < 0, min_sigma) for c in flat.T]
    stats["mu_pos"], stats["sigma_pos"] = map(np.array, zip(*pos))
    stats["mu_neg"], stats["sigma_neg"] = map(np.array, zip(*neg))
    return {k: v.astype(np.float32) for k, v in stats.items()}


def fallback_statistics(shape, min_sigma):
    """Initial values when the kernel is unknown: W = 1 (plain sign), uniform moments."""
    channels = shape[-1]
    sigma = np.full(channels, max(FALLBACK_SIGMA, min_sigma), np.float32)
    mu = np.full(channels, FALLBACK_MU, np.float32)
    return {
        "reconstruction": np.ones(shape, np.float32),
        "mu_pos": mu, "mu_neg": mu.copy(), "sigma_pos": sigma, "sigma_neg": sigma.copy(),
    }


@lq_utils.register_alias("bayesian_sign")
@lq_utils.register_keras_custom_object
class BayesianSign(Quantizer):
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
    All are initialised from the latent kernel it first sees (`initial_statistics`),
    so training starts at a sensible loss. `sigma = max(exp(log_sigma), min_sigma)`
    stays strictly positive; a channel with no positive (or negative) weight adds
    nothing for that mode, so the loss stays finite.

    Defaults (see README, "Choosing lam, nu and the reduction"): `reduction="mean"`,
    so `lam` does not depend on layer or model size (the paper's `"sum"` is offered);
    `lam=1e-4` and `nu=1e-2` keep $L_B$ a small fraction of the cross-entropy at the
    start of training while still pulling latent weights to the modes.

    Args:
        lam: weight of the kernel loss, finite and >= 0.
        nu: weight of the mixture prior inside the loss, finite and >= 0.
        reduction: "mean" (default) or "sum" (the paper's).
        scale: "layer" (one scalar, the paper's) or "channel" (one per output channel).
        clip_value: straight-through gradient clip, as in `SteSign`.
        min_sigma: lower bound on the mixture standard deviations, > 0.
        prior_gradient: "sum" (default): mu and sigma get the exact gradient of $L_B$.
            "mean": the paper's update, that gradient divided by the number of
            elements per output channel $n$ (the loss value is unchanged; only
            $\partial L_B / \partial \mu$ and $\partial L_B / \partial \sigma$ are
            scaled by $1/n$), so the modes move slowly while the kernel keeps its
            summed gradient.

    Example:
        >>> q = BayesianSign(lam=1e-3)
        >>> y = q(tf.constant([[0.5, -0.2], [-0.3, 0.1]]))
    """

    precision = 1

    def __init__(self, lam=1e-4, nu=1e-2, reduction="mean", scale="layer",
                 clip_value=1.0, min_sigma=1e-3, prior_gradient="sum", **kwargs):
        self.initial_lam = validate_non_negative("lam", lam)
        self.initial_nu = validate_non_negative("nu", nu)
        self.reduction = validate_choice("reduction", reduction, REDUCTIONS)
        self.scale = validate_choice("scale", scale, SCALES)
        self.clip_value = clip_value
        if not float(min_sigma) > 0.0:
            raise ValueError(f"`min_sigma` must be > 0; got {min_sigma!r}.")
        self.min_sigma = float(min_sigma)
        self.prior_gradient = validate_choice("prior_gradient", prior_gradient, PRIOR_GRADIENTS)
        self._first_kernel = None
        super().__init__(**kwargs)

    @classmethod
    def check_settings(cls, settings):
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
        if not self.built:
            self._first_kernel = inputs
        return super().__call__(inputs, *args, **kwargs)

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
        stats = (initial_statistics(value, self.min_sigma) if value is not None
                 else fallback_statistics(shape.as_list(), self.min_sigma))
        self.reconstruction = self._add_initialised("reconstruction", stats["reconstruction"])
        self.mu_pos = self._add_initialised("mu_pos", stats["mu_pos"])
        self.mu_neg = self._add_initialised("mu_neg", stats["mu_neg"])
        self.log_sigma_pos = self._add_initialised("log_sigma_pos", np.log(stats["sigma_pos"]))
        self.log_sigma_neg = self._add_initialised("log_sigma_neg", np.log(stats["sigma_neg"]))
        self.lam = self._add_initialised("lam", np.float32(self.initial_lam), trainable=False)
        self.nu = self._add_initialised("nu", np.float32(self.initial_nu), trainable=False)
        super().build(input_shape)

    def _add_initialised(self, name, value, trainable=True):
        value = np.asarray(value, np.float32)
        return self.add_weight(
            name=name, shape=value.shape, trainable=trainable,
            initializer=tf.keras.initializers.Constant(value),
        )

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
        return tf.reduce_mean(self.reconstruction, axis=list(range(self.reconstruction.shape.rank - 1)))

    def kernel_loss(self, kernel):
        """$L_B$ of `kernel` under this quantizer's current W, mu, sigma, lam and nu."""
        mixture = (self.mu_pos, self.mu_neg, self.sigma_pos, self.sigma_neg)
        if self.prior_gradient == "mean":
            elements_per_channel = kernel.shape.num_elements() // kernel.shape[-1]
            mixture = [scale_gradient(v, 1.0 / elements_per_channel) for v in mixture]
        return kernel_loss(kernel, self.reconstruction, *mixture, self.lam, self.nu,
                           self.reduction)

    def call(self, inputs):
        self.add_loss(self.kernel_loss(inputs))
        return ste_sign(inputs, clip_value=self.clip_value) / self.w_bar()

    def reset_from_kernel(self, kernel):
        """Re-initialise W, mu and sigma from a kernel value (e.g. after loading weights)."""
        stats = self.refresh_mixture(kernel)
        self.reconstruction.assign(stats["reconstruction"])

    def refresh_mixture(self, kernel):
        """Closed-form (EM-like) update: mu and sigma of each mode become the mean and std
        of the weight magnitudes on that side, where dL_B/dmu = dL_B/dsigma = 0."""
        stats = initial_statistics(np.asarray(kernel), self.min_sigma)
        self.mu_pos.assign(stats["mu_pos"])
        self.mu_neg.assign(stats["mu_neg"])
        self.log_sigma_pos.assign(np.log(stats["sigma_pos"]))
        self.log_sigma_neg.assign(np.log(stats["sigma_neg"]))
        return stats

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
        }


BayesianKernel = collections.namedtuple("BayesianKernel", "layer quantizer latent")


def bayesian_kernels(model):
    """Every kernel quantized by a `BayesianSign` inside a model: (layer, quantizer, latent).

    `latent` is the full-precision variable the quantizer binarizes. Layers appear in
    model order; a quantizer shared by several kernels is listed once per kernel.
    """
    found = []
    for layer in model._flatten_layers(include_self=False):
        for variable in layer._trainable_weights + layer._non_trainable_weights:
            quantizer = getattr(variable, "quantizer", None)
            if isinstance(quantizer, BayesianSign):
                found.append(BayesianKernel(layer, quantizer, variable.latent_variable))
    return found


def bayesian_quantizers(model):
    """The distinct `BayesianSign` quantizers of a model, in layer order."""
    quantizers = []
    for kernel in bayesian_kernels(model):
        if all(kernel.quantizer is not q for q in quantizers):
            quantizers.append(kernel.quantizer)
    return quantizers


def total_kernel_loss(model):
    """Sum of $L_B$ over the model's Bayesian kernels, computed now from the variables."""
    losses = [k.quantizer.kernel_loss(k.latent) for k in bayesian_kernels(model)]
    return tf.add_n(losses) if losses else tf.constant(0.0)
