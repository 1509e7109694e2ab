r"""The two Bayesian losses of BONN as pure TensorFlow functions.

Each equation of the paper lives in exactly one function here; the quantizer
(`bayes_larq.quantizers.BayesianSign`) and the training wrapper
(`bayes_larq.training.BONN`) call them, and the tests compare them with NumPy and with
the closed-form gradients of docs/method.md.
"""

from __future__ import annotations

import tensorflow as tf

from bayes_larq.defaults import REDUCTION, REDUCTIONS, check_choice
from bayes_larq.mixture import Mixture

__all__ = ["channels_last_2d", "distribution_loss", "feature_loss", "fused_kernel_loss",
           "kernel_loss", "kernel_loss_and_gradients"]


def channels_last_2d(tensor: tf.Tensor) -> tf.Tensor:
    """Reshape a kernel (any rank >= 2, output channels last) to `[elements, channels]`."""
    return tf.reshape(tensor, [-1, tf.shape(tensor)[-1]])


def kernel_loss(x: tf.Tensor, w: tf.Tensor, mixture: Mixture, lam: float | tf.Tensor,
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
        mixture: the `bayes_larq.mixture.Mixture` of the layer: mode magnitudes
            `mu_pos`, `mu_neg` and standard deviations `sigma_pos`, `sigma_neg` (> 0)
            per output channel, each of shape `[C]`.
        lam: weight of the whole loss.
        nu: weight of the mixture prior inside it.
        reduction: "mean" or "sum".

    Returns:
        A scalar tensor.
    """
    check_choice("reduction", reduction, REDUCTIONS)
    mu_pos, mu_neg, sigma_pos, sigma_neg = mixture
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


def kernel_loss_and_gradients(x: tf.Tensor, w: tf.Tensor, mixture: Mixture,
                              lam: float | tf.Tensor, nu: float | tf.Tensor,
                              reduction: str = REDUCTION
                              ) -> tuple[tf.Tensor, tuple[tf.Tensor, tf.Tensor, Mixture]]:
    r"""$L_B$ (exactly as `kernel_loss`) and its closed-form gradients, in one pass.

    With $\hat{x} = \mathrm{sign}(x)$, $r = \hat{x} - w x$, and for each element the mode
    $m$ and variance $v$ of its side ($m = \mu^+_i, v = (\sigma^+_i)^2$ for $x \ge 0$,
    $m = -\mu^-_i, v = (\sigma^-_i)^2$ for $x < 0$), $d = x - m$:

    $$
    \frac{\partial L_B}{\partial x} = \lambda\Big(\nu \frac{d}{v} - w r\Big), \quad
    \frac{\partial L_B}{\partial w} = -\lambda r x, \quad
    \frac{\partial L_B}{\partial \mu^\pm_i} = \mp\lambda\nu \sum_{x \in P_i / N_i} \frac{d}{v}, \quad
    \frac{\partial L_B}{\partial \sigma^\pm_i} = \frac{\lambda\nu}{\sigma^\pm_i}
        \sum_{x \in P_i / N_i} \Big(1 - \frac{d^2}{v}\Big)
    $$

    (all divided by the number of kernel elements with `reduction="mean"`).

    Returns:
        `(value, (d_x, d_w, d_mixture))`, each gradient with the shape of its argument
        (`d_mixture` a `Mixture` of the gradients of its four values).
    """
    check_choice("reduction", reduction, REDUCTIONS)
    mu_pos, mu_neg, sigma_pos, sigma_neg = mixture
    x2, w2 = channels_last_2d(x), channels_last_2d(w)
    positive = x2 >= 0
    ones = tf.ones_like(x2)
    residual = tf.where(positive, ones, -ones) - w2 * x2
    offset = tf.where(positive, x2 - mu_pos, x2 + mu_neg)
    variance = tf.where(positive, tf.square(sigma_pos) * ones, tf.square(sigma_neg) * ones)
    scaled = offset / variance
    prior = tf.reduce_sum(offset * scaled + tf.math.log(variance))
    value = 0.5 * lam * (tf.reduce_sum(tf.square(residual)) + nu * prior)
    on_positive = tf.cast(positive, x2.dtype)
    on_negative = 1.0 - on_positive
    spread = 1.0 - offset * scaled
    gradients = [
        tf.reshape(lam * (nu * scaled - w2 * residual), tf.shape(x)),
        tf.reshape(-lam * residual * x2, tf.shape(x)),
        -lam * nu * tf.reduce_sum(on_positive * scaled, axis=0),
        lam * nu * tf.reduce_sum(on_negative * scaled, axis=0),
        lam * nu * tf.reduce_sum(on_positive * spread, axis=0) / sigma_pos,
        lam * nu * tf.reduce_sum(on_negative * spread, axis=0) / sigma_neg,
    ]
    if reduction == "mean":
        elements = tf.cast(tf.size(x2), value.dtype)
        value, gradients = value / elements, [g / elements for g in gradients]
    return value, (gradients[0], gradients[1], Mixture(*gradients[2:]))


_compiled_kernel_loss_and_gradients = tf.function(kernel_loss_and_gradients, jit_compile=True)


def fused_kernel_loss(x: tf.Tensor, w: tf.Tensor, mixture: Mixture, lam: float | tf.Tensor,
                      nu: float | tf.Tensor, reduction: str = REDUCTION) -> tf.Tensor:
    """`kernel_loss`, computed together with its gradients in one XLA-compiled pass.

    The value is $L_B$; backpropagation uses the closed forms of
    `kernel_loss_and_gradients` instead of differentiating the element-wise graph,
    so the kernel is read once per step (same values to float rounding; about 1.5x
    faster on CPU than `kernel_loss`, docs/speed.md). `lam` and `nu` get no
    gradient.
    """
    @tf.custom_gradient
    def loss(x, w, mu_pos, mu_neg, sigma_pos, sigma_neg, lam, nu):
        value, (d_x, d_w, d_mixture) = _compiled_kernel_loss_and_gradients(
            x, w, Mixture(mu_pos, mu_neg, sigma_pos, sigma_neg), lam, nu, reduction)

        def backward(upstream):
            return [upstream * g for g in (d_x, d_w, *d_mixture)] + [None, None]
        return value, backward
    # Variables are read here, outside the custom-gradient function, so it sees tensors
    # and the tape carries their gradients back to the variables through the reads.
    tensors = [tf.convert_to_tensor(a) for a in (x, w, *mixture)]
    dtype = tensors[0].dtype
    weights = [tf.cast(tf.convert_to_tensor(a, dtype_hint=dtype), dtype) for a in (lam, nu)]
    return loss(*tensors, *weights)


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


def distribution_loss(teacher_logits: tf.Tensor, student_logits: tf.Tensor,
                      temperature: float | tf.Tensor = 1.0) -> tf.Tensor:
    r"""ReActNet's distribution loss per example: the KL divergence from the teacher's
    softmax to the student's, at temperature $T$, times $T^2$ (docs/method.md,
    "Distillation").

    With $p = \mathrm{softmax}(t / T)$ (teacher) and $q = \mathrm{softmax}(s / T)$
    (student), per example

    $$
    L_{KD} = T^2 \sum_k p_k \big(\log p_k - \log q_k\big), \qquad
    \frac{\partial L_{KD}}{\partial s} = T\,(q - p).
    $$

    The factor $T^2$ keeps the gradient's size independent of $T$ (Hinton et al.,
    2015). No gradient flows into the teacher's logits.

    Args:
        teacher_logits: the teacher's `[B, classes]` logits.
        student_logits: the student's `[B, classes]` logits.
        temperature: $T > 0$.

    Returns:
        `[B]` per-example losses.
    """
    teacher = tf.stop_gradient(tf.convert_to_tensor(teacher_logits))
    student = tf.convert_to_tensor(student_logits)
    teacher = tf.cast(teacher, student.dtype)
    temperature = tf.cast(temperature, student.dtype)
    log_p = tf.nn.log_softmax(teacher / temperature, axis=-1)
    log_q = tf.nn.log_softmax(student / temperature, axis=-1)
    return temperature**2 * tf.reduce_sum(tf.exp(log_p) * (log_p - log_q), axis=-1)
