r"""The two Bayesian losses of BONN as pure TensorFlow functions.

Each equation of the paper lives in exactly one function here; the quantizer
(`bayes_larq.quantizers.BayesianSign`) and the training wrapper
(`bayes_larq.training.BONN`) call them, and the tests compare them with NumPy and with
the closed-form gradients of docs/method.md.
"""

from __future__ import annotations

import tensorflow as tf

from bayes_larq.defaults import REDUCTION, REDUCTIONS, check_choice

__all__ = ["channels_last_2d", "feature_loss", "kernel_loss"]


def channels_last_2d(tensor: tf.Tensor) -> tf.Tensor:
    """Reshape a kernel (any rank >= 2, output channels last) to `[elements, channels]`."""
    return tf.reshape(tensor, [-1, tf.shape(tensor)[-1]])


def kernel_loss(x: tf.Tensor, w: tf.Tensor, mu_pos: tf.Tensor, mu_neg: tf.Tensor,
                sigma_pos: tf.Tensor, sigma_neg: tf.Tensor, lam: float | tf.Tensor,
                nu: float | tf.Tensor, reduction: str = REDUCTION) -> tf.Tensor:
    r"""Bayesian kernel loss $L_B$ of one binarized layer (docs/method.md, "Kernel loss").

    With $\hat{x} = \mathrm{sign}(x)$ (sign(0) = +1, as `larq.quantizers.ste_sign`),
    $P_i = \{x \ge 0\}$ and $N_i = \{x < 0\}$ within output channel $i$:

    $$
    L_B = \frac{\lambda}{2}\sum_i \Big[\sum_{x\in i} (\hat{x} - w x)^2
        + \nu \sum_{x \in P_i}\Big(\frac{(x-\mu^+_i)^2}{(\sigma^+_i)^2} + \log (\sigma^+_i)^2\Big)
        + \nu \sum_{x \in N_i}\Big(\frac{(x+\mu^-_i)^2}{(\sigma^-_i)^2} + \log (\sigma^-_i)^2\Big)\Big]
    $$

    `reduction="sum"` is the paper's sum over every weight; `reduction="mean"` divides
    by the number of kernel elements, so `lam` means the same for any layer size.
    $\hat{x}$ is a constant (sign has zero derivative almost everywhere). A channel
    without positive (or negative) weights simply contributes nothing to that mode.

    Args:
        x: latent kernel, any rank >= 2, output channels on the last axis.
        w: reconstruction vector, same shape as `x`.
        mu_pos, mu_neg: positive mode magnitudes per output channel, shape `[C]`.
        sigma_pos, sigma_neg: mode standard deviations per output channel, `[C]`, > 0.
        lam: weight of the whole loss. nu: weight of the mixture prior inside it.
        reduction: "mean" or "sum".

    Returns:
        A scalar tensor.
    """
    check_choice("reduction", reduction, REDUCTIONS)
    x2, w2 = channels_last_2d(x), channels_last_2d(w)
    x_hat = tf.stop_gradient(tf.where(x2 >= 0, tf.ones_like(x2), -tf.ones_like(x2)))
    reconstruction = tf.reduce_sum(tf.square(x_hat - w2 * x2))
    var_pos, var_neg = tf.square(sigma_pos), tf.square(sigma_neg)
    nll_pos = tf.square(x2 - mu_pos) / var_pos + tf.math.log(var_pos)
    nll_neg = tf.square(x2 + mu_neg) / var_neg + tf.math.log(var_neg)
    prior = tf.reduce_sum(tf.where(x2 >= 0, nll_pos, nll_neg))
    total = 0.5 * lam * (reconstruction + nu * prior)
    if reduction == "mean":
        total = total / tf.cast(tf.size(x2), total.dtype)
    return total


def feature_loss(features: tf.Tensor, labels: tf.Tensor, centers: tf.Tensor,
                 sigmas: tf.Tensor, theta: float | tf.Tensor) -> tf.Tensor:
    r"""Bayesian feature loss $L_F$, averaged over the batch (docs/method.md, "Feature loss").

    $$
    L_F = \frac{\theta}{2}\,\frac{1}{B}\sum_{b=1}^{B}\Big[\lVert f_b - c_{y_b}\rVert^2
        + \sum_n \Big(\frac{(f_{b,n} - c_{y_b,n})^2}{\sigma_{y_b,n}^2} + \log\sigma_{y_b,n}^2\Big)\Big]
    $$

    Args:
        features: `[B, d]` penultimate features.
        labels: `[B]` integer class indices in `[0, M)`.
        centers: `[M, d]` class centers. sigmas: `[M, d]` per-class std devs, > 0.
        theta: weight of the loss.

    Returns:
        A scalar tensor.
    """
    labels = tf.cast(tf.reshape(labels, [-1]), tf.int32)
    center = tf.gather(centers, labels)
    variance = tf.square(tf.gather(sigmas, labels))
    residual2 = tf.square(features - center)
    per_sample = tf.reduce_sum(residual2 + residual2 / variance + tf.math.log(variance), axis=-1)
    return 0.5 * theta * tf.reduce_mean(per_sample)
