r"""The kernel loss as a flip threshold: the push of $L_B$ at zero, the data gradient,
a calibrated loss weight, and the in-step record of gradients and sign flips.

A latent weight $x$ near zero changes sign only when the gradient of the rest of the
loss (the *data gradient* $g = \partial (L - L_B) / \partial x$: the cross-entropy,
plus $L_F$ when it is on) pulls it across zero harder than $L_B$ pushes it away. From
the closed-form gradient of $L_B$ (docs/method.md), on the side of zero where $x$ is,

$$
\lim_{x \to 0^\pm} \Big|\frac{\partial L_B}{\partial x}\Big| = \lambda\, u, \qquad
u = \frac{1}{n}\Big(w + \nu \frac{\mu_\pm}{\sigma_\pm^2}\Big)
$$

with $w$ the element of $W$, $\mu_\pm, \sigma_\pm$ the mode of its side and
$n$ the layer's element count for `reduction="mean"` ($n = 1$ for `"sum"`). So
$\lambda u$ is a **flip threshold**: a weight can flip only where $|g| > \lambda u$.

`FlipThreshold` sets $\lambda$ of each layer from its current data gradient, every
`every_n_steps` steps, so that the threshold follows the gradient as training converges:

* `FlipThreshold("quantile", q)`: $\lambda = Q_q(|g|) / \bar u$, the push at zero equals
  the q-quantile of the layer's $|g|$ ($\bar u$ is the mean of $u$ over the layer), so
  a share of about $1 - q$ of the weights can still flip. `q = 0` sets $\lambda = 0$
  (plain Larq's update; the 0-quantile, $\min |g|$, is not exactly 0).
* `FlipThreshold("drift", q, decay)`: the same with the data gradient averaged over
  steps, an exponential moving average $\bar g \leftarrow \beta \bar g + (1-\beta) g$
  (bias-corrected, as Adam's first moment): $\lambda = Q_q(|\bar g|) / \bar u$. Adam's
  step follows the mean gradient, in which the batch noise of $g$ cancels and the push
  does not, so this is the comparison that decides a flip under Adam.
* `FlipThreshold("rebnn")`: ReBNN's rule (Xu et al., AAAI 2023, arXiv 2302.00956):
  $\gamma = \rho \max |g|$, with $\rho$ the share of the layer's weights whose sign
  changed since the last calibration; here $\lambda = \rho \max|g| / \bar u$ per layer
  (ReBNN sets it per output channel; our $\lambda$ is one per layer).

`bayes_larq.BONN(model, flip_threshold=...)` applies it inside `train_step`;
`bayes_larq.callbacks.FlipDiagnostics` records the same quantities per epoch.
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf
from larq import utils as lq_utils

from bayes_larq.defaults import check_choice, check_integer
from bayes_larq.losses import channels_last_2d, kernel_loss_and_gradients

__all__ = ["FLIP_THRESHOLD_RULES", "FlipProbe", "FlipThreshold", "binary_sign",
           "kernel_loss_gradient",
           "push_at_zero", "quantile"]

FLIP_THRESHOLD_RULES = ("quantile", "drift", "rebnn")


def kernel_loss_gradient(quantizer, latent: tf.Tensor) -> tf.Tensor:
    """$\\partial L_B / \\partial x$ of a `BayesianSign`'s kernel, in closed form."""
    _, gradients = kernel_loss_and_gradients(
        latent, quantizer.reconstruction, quantizer.mixture(), quantizer.lam, quantizer.nu,
        quantizer.reduction)
    return gradients[0]


def push_per_unit_lam(quantizer, latent: tf.Tensor) -> tf.Tensor:
    """$u$ of the module docstring for every element: the push of $L_B$ at zero on the
    element's side, per unit of $\\lambda$. Shape `[elements, channels]`."""
    x = channels_last_2d(latent)
    w = channels_last_2d(tf.convert_to_tensor(quantizer.reconstruction))
    positive = x >= 0
    ones = tf.ones_like(x)
    mode = tf.where(positive, quantizer.mu_pos * ones, quantizer.mu_neg * ones)
    sigma = tf.where(positive, quantizer.sigma_pos * ones, quantizer.sigma_neg * ones)
    unit = w + quantizer.nu * mode / tf.square(sigma)
    if quantizer.reduction == "mean":
        unit = unit / tf.cast(tf.size(x), unit.dtype)
    return unit


def push_at_zero(quantizer, latent: tf.Tensor) -> tf.Tensor:
    """$\\lambda u$: the flip threshold of every element, `[elements, channels]`."""
    return quantizer.lam * push_per_unit_lam(quantizer, latent)


def quantile(values: tf.Tensor, q: float) -> tf.Tensor:
    """The q-quantile of all `values`, linearly interpolated (NumPy's default method)."""
    flat = tf.sort(tf.reshape(values, [-1]))
    position = q * tf.cast(tf.size(flat) - 1, flat.dtype)
    below = tf.cast(tf.floor(position), tf.int32)
    above = tf.minimum(below + 1, tf.size(flat) - 1)
    fraction = position - tf.floor(position)
    return flat[below] + fraction * (flat[above] - flat[below])


@lq_utils.register_keras_custom_object
class FlipThreshold:
    """Set each layer's kernel-loss weight $\\lambda$ from its data gradient (module doc).

    Args:
        rule: "quantile" (the push at zero equals the q-quantile of $|g|$) or "rebnn"
            (ReBNN's $\\rho \\max |g|$).
        q: the quantile, in [0, 1), with rule "quantile".
        every_n_steps: how often $\\lambda$ is recomputed (integer >= 1); it holds
            in between.

    Examples:
        >>> threshold = FlipThreshold("quantile", q=0.9)
    """

    def __init__(self, rule: str = "quantile", q: float | None = None,
                 every_n_steps: int = 1, decay: float | None = None):
        self.rule = check_choice("rule", rule, FLIP_THRESHOLD_RULES)
        if rule in ("quantile", "drift"):
            if isinstance(q, bool) or not isinstance(q, (int, float)) or not 0 <= q < 1:
                raise ValueError(f"FlipThreshold({rule!r}) needs `q` in [0, 1); got {q!r}.")
            q = float(q)
        elif q is not None:
            raise ValueError(f"FlipThreshold('rebnn') takes no `q` (got {q!r}); its "
                             f"threshold comes from the share of flipped weights.")
        if rule == "drift":
            decay = 0.99 if decay is None else decay
            if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not 0 < decay < 1:
                raise ValueError(f"FlipThreshold('drift') needs `decay` in (0, 1); "
                                 f"got {decay!r}.")
            decay = float(decay)
        elif decay is not None:
            raise ValueError(f"Only FlipThreshold('drift') averages the gradient; "
                             f"`decay` ({decay!r}) does nothing with {rule!r}.")
        self.q = q
        self.decay = decay
        self.every_n_steps = check_integer("every_n_steps", every_n_steps)

    def lam(self, quantizer, latent, data_gradient, flipped_share):
        """The new $\\lambda$ of one layer from its data gradient at this step."""
        magnitude = tf.abs(data_gradient)
        if self.rule == "rebnn":
            target = flipped_share * tf.reduce_max(magnitude)
        elif self.q == 0:
            return tf.zeros_like(quantizer.lam)
        else:
            target = quantile(magnitude, self.q)
        unit = tf.reduce_mean(push_per_unit_lam(quantizer, latent))
        return tf.where(unit > 0, target / tf.maximum(unit, 1e-30), 0.0)

    def get_config(self) -> dict[str, Any]:
        return {"rule": self.rule, "q": self.q, "every_n_steps": self.every_n_steps,
                "decay": self.decay}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        detail = "" if self.q is None else f", q={self.q:g}"
        detail += "" if self.decay is None else f", decay={self.decay:g}"
        return f"FlipThreshold({self.rule!r}{detail}, every_n_steps={self.every_n_steps})"


def binary_sign(x: tf.Tensor) -> tf.Tensor:
    """sign(x) in {-1, +1} with sign(0) = +1, as `larq.quantizers.ste_sign`."""
    return tf.where(x >= 0, 1.0, -1.0)


class FlipProbe:
    """Per binary kernel, the last step's gradients and the sign flips of a window.

    `BONN.train_step` calls `record_gradients` before and `record_signs` after the
    optimizer step; everything stays in variables on the device (a few element-wise ops
    per step), and `bayes_larq.callbacks.FlipDiagnostics` reads them. A flip is a
    change of sign between two consecutive steps; per weight the probe counts flips
    since `start_window`, keeps the sign at the window's start and sums the data
    gradient (its mean over the window is the drift that Adam's first moment follows).
    """

    def __init__(self, kernels):
        self.kernels = list(kernels)
        self.names = [k.layer.name for k in self.kernels]

        def variables(initial, dtype=tf.float32):
            return [tf.Variable(initial(k.latent), trainable=False, dtype=dtype)
                    for k in self.kernels]
        self.data_gradients = variables(tf.zeros_like)
        self.data_gradient_sums = variables(tf.zeros_like)
        self.loss_gradients = variables(tf.zeros_like)
        self.start_signs = variables(binary_sign)
        self.previous_signs = variables(binary_sign)
        self.flip_counts = variables(tf.zeros_like)
        self.steps = tf.Variable(0, trainable=False, dtype=tf.int64)

    def latents(self):
        return [k.latent for k in self.kernels]

    def record_gradients(self, data_gradients, loss_gradients):
        for target, total, value in zip(self.data_gradients, self.data_gradient_sums,
                                        data_gradients):
            target.assign(value)
            total.assign_add(value)
        for target, value in zip(self.loss_gradients, loss_gradients):
            target.assign(value)

    def record_signs(self):
        for kernel, previous, count in zip(self.kernels, self.previous_signs, self.flip_counts):
            now = binary_sign(kernel.latent)
            count.assign_add(tf.cast(tf.not_equal(now, previous), tf.float32))
            previous.assign(now)
        self.steps.assign_add(1)

    def start_window(self):
        """Forget the flips counted so far; the window starts at the current signs."""
        for kernel, start, previous, count, total in zip(
                self.kernels, self.start_signs, self.previous_signs, self.flip_counts,
                self.data_gradient_sums):
            sign = binary_sign(kernel.latent)
            start.assign(sign)
            previous.assign(sign)
            count.assign(tf.zeros_like(count))
            total.assign(tf.zeros_like(total))
        self.steps.assign(0)
