"""The BONN loss math against NumPy references and the closed-form gradients of docs/method.md."""

import bayes_larq  # noqa: F401  (selects tf_keras before TensorFlow's Keras is touched)
import numpy as np
import pytest
import tensorflow as tf

from bayes_larq.losses import (
    feature_loss,
    fused_kernel_loss,
    kernel_loss,
    kernel_loss_and_gradients,
)
from bayes_larq.mixture import Mixture

MIXTURE = ("mu_pos", "mu_neg", "s_pos", "s_neg")  # the keys of a Mixture's values in `p`

# L_B by TensorFlow ops (autodiff gradients) and fused with its closed-form gradients.
IMPLEMENTATIONS = {"ops": kernel_loss, "fused": fused_kernel_loss}

RNG = np.random.default_rng(7)


def numpy_kernel_loss(x, w, mu_pos, mu_neg, s_pos, s_neg, lam, nu, reduction):
    """Element-by-element loop over the kernel loss of docs/method.md, written independently."""
    x2 = x.reshape(-1, x.shape[-1])
    w2 = w.reshape(-1, x.shape[-1])
    total = 0.0
    for i in range(x2.shape[1]):
        for x_el, w_el in zip(x2[:, i], w2[:, i]):
            x_hat = 1.0 if x_el >= 0 else -1.0
            total += (x_hat - w_el * x_el) ** 2
            if x_el >= 0:
                total += nu * ((x_el - mu_pos[i]) ** 2 / s_pos[i] ** 2 + np.log(s_pos[i] ** 2))
            else:
                total += nu * ((x_el + mu_neg[i]) ** 2 / s_neg[i] ** 2 + np.log(s_neg[i] ** 2))
    total *= lam / 2
    return total / x.size if reduction == "mean" else total


def random_parameters(shape, only=None):
    x = RNG.uniform(-1, 1, size=shape)
    if only == "positive":
        x = np.abs(x)
    elif only == "negative":
        x = -np.abs(x) - 1e-3
    channels = shape[-1]
    return dict(
        x=x, w=RNG.uniform(0.5, 3.0, size=shape),
        mu_pos=RNG.uniform(0.1, 0.8, channels), mu_neg=RNG.uniform(0.1, 0.8, channels),
        s_pos=RNG.uniform(0.1, 0.6, channels), s_neg=RNG.uniform(0.1, 0.6, channels),
    )


def tf_kernel_loss(p, lam, nu, reduction, implementation=kernel_loss):
    x, w, *mixture = (tf.constant(p[k], tf.float64) for k in ("x", "w", *MIXTURE))
    return implementation(x, w, Mixture(*mixture), lam=lam, nu=nu, reduction=reduction)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("shape", [(3, 3, 4, 5), (6, 3), (2, 2, 1, 1)])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("only", [None, "positive", "negative"])
def test_kernel_loss_matches_numpy(shape, reduction, only, implementation):
    p = random_parameters(shape, only)
    expected = numpy_kernel_loss(p["x"], p["w"], p["mu_pos"], p["mu_neg"], p["s_pos"],
                                 p["s_neg"], 0.3, 0.7, reduction)
    actual = tf_kernel_loss(p, 0.3, 0.7, reduction, IMPLEMENTATIONS[implementation]).numpy()
    assert np.isfinite(actual)
    np.testing.assert_allclose(actual, expected, rtol=1e-10)


def gradients(p, lam, nu, reduction="sum", implementation="ops"):
    variables = {k: tf.Variable(v, dtype=tf.float64) for k, v in p.items()}
    with tf.GradientTape() as tape:
        loss = IMPLEMENTATIONS[implementation](
            variables["x"], variables["w"], Mixture(*(variables[k] for k in MIXTURE)),
            lam=lam, nu=nu, reduction=reduction)
    grads = tape.gradient(loss, variables)
    return {k: g.numpy() for k, g in grads.items()}


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_kernel_loss_gradients_equal_closed_forms(implementation):
    lam, nu = 0.5, 0.25
    p = random_parameters((3, 3, 2, 4))
    g = gradients(p, lam, nu, implementation=implementation)
    x, w = p["x"], p["w"]
    x_hat = np.where(x >= 0, 1.0, -1.0)
    pos = x >= 0
    # docs/method.md, "Gradients", with sigma^2 = s^2.
    dx = lam * (-w * (x_hat - w * x)
                + nu * np.where(pos, (x - p["mu_pos"]) / p["s_pos"] ** 2,
                                (x + p["mu_neg"]) / p["s_neg"] ** 2))
    dw = -lam * (x_hat - w * x) * x
    axes = (0, 1, 2)
    dmu_pos = -lam * nu * np.sum(np.where(pos, (x - p["mu_pos"]) / p["s_pos"] ** 2, 0), axes)
    dmu_neg = lam * nu * np.sum(np.where(~pos, (x + p["mu_neg"]) / p["s_neg"] ** 2, 0), axes)
    dvar_pos = lam * nu / 2 * np.sum(
        np.where(pos, 1 / p["s_pos"] ** 2 - (x - p["mu_pos"]) ** 2 / p["s_pos"] ** 4, 0), axes)
    dvar_neg = lam * nu / 2 * np.sum(
        np.where(~pos, 1 / p["s_neg"] ** 2 - (x + p["mu_neg"]) ** 2 / p["s_neg"] ** 4, 0), axes)
    np.testing.assert_allclose(g["x"], dx, rtol=1e-9)
    np.testing.assert_allclose(g["w"], dw, rtol=1e-9)
    np.testing.assert_allclose(g["mu_pos"], dmu_pos, rtol=1e-9)
    np.testing.assert_allclose(g["mu_neg"], dmu_neg, rtol=1e-9)
    # dL/dsigma = dL/dsigma^2 * 2 sigma
    np.testing.assert_allclose(g["s_pos"], dvar_pos * 2 * p["s_pos"], rtol=1e-9)
    np.testing.assert_allclose(g["s_neg"], dvar_neg * 2 * p["s_neg"], rtol=1e-9)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_mean_reduction_scales_gradients_by_element_count(implementation):
    p = random_parameters((4, 3))
    g_sum = gradients(p, 1.0, 1.0, "sum", implementation)
    g_mean = gradients(p, 1.0, 1.0, "mean", implementation)
    for key in g_sum:
        np.testing.assert_allclose(g_mean[key], g_sum[key] / 12, rtol=1e-9)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_mixture_gradients_vanish_at_closed_form_optimum(implementation):
    p = random_parameters((5, 5, 3, 2))
    x = p["x"].reshape(-1, 2)
    for side, mask, sign in (("pos", x >= 0, 1.0), ("neg", x < 0, -1.0)):
        magnitudes = [sign * x[mask[:, i], i] for i in range(2)]
        p[f"mu_{side}"] = np.array([m.mean() for m in magnitudes])
        p[f"s_{side}"] = np.array([np.sqrt(np.mean((m - m.mean()) ** 2)) for m in magnitudes])
    g = gradients(p, 0.7, 0.3, implementation=implementation)
    for key in ("mu_pos", "mu_neg", "s_pos", "s_neg"):
        np.testing.assert_allclose(g[key], 0.0, atol=1e-9)


def test_closed_form_gradients_are_returned_with_the_value_and_upstream_scales_them():
    p = {k: tf.constant(v, tf.float64) for k, v in random_parameters((3, 2, 4)).items()}
    args = [p[k] for k in ("x", "w", *MIXTURE)]
    x, w, mixture = args[0], args[1], Mixture(*args[2:])
    value, (d_x, d_w, d_mixture) = kernel_loss_and_gradients(x, w, mixture, 0.5, 0.25, "sum")
    assert isinstance(d_mixture, Mixture)
    np.testing.assert_allclose(value, kernel_loss(x, w, mixture, 0.5, 0.25, "sum"), rtol=1e-12)
    with tf.GradientTape() as tape:
        tape.watch(args)
        scaled = 3.0 * fused_kernel_loss(x, w, mixture, 0.5, 0.25, "sum")
    closed = (d_x, d_w, *d_mixture)
    for ours, reference in zip(tape.gradient(scaled, args), closed, strict=True):
        assert ours.shape == reference.shape
        np.testing.assert_allclose(ours, 3.0 * reference.numpy(), rtol=1e-12)


def test_kernel_loss_rejects_unknown_reduction():
    p = random_parameters((2, 2))
    with pytest.raises(ValueError, match="reduction.*'mean', 'sum'"):
        tf_kernel_loss(p, 1.0, 1.0, "median")


def numpy_feature_loss(f, y, centers, sigmas, theta):
    total = 0.0
    for f_b, y_b in zip(f, y):
        c, s2 = centers[y_b], sigmas[y_b] ** 2
        total += np.sum((f_b - c) ** 2) + np.sum((f_b - c) ** 2 / s2 + np.log(s2))
    return theta / 2 * total / len(f)


def feature_problem(batch=12, dim=5, classes=4):
    return dict(
        f=RNG.normal(size=(batch, dim)), y=RNG.integers(0, classes, batch),
        centers=RNG.normal(size=(classes, dim)), sigmas=RNG.uniform(0.3, 2.0, (classes, dim)),
    )


def test_feature_loss_matches_numpy():
    p = feature_problem()
    actual = feature_loss(tf.constant(p["f"]), tf.constant(p["y"]), tf.constant(p["centers"]),
                          tf.constant(p["sigmas"]), 0.4).numpy()
    np.testing.assert_allclose(actual, numpy_feature_loss(p["f"], p["y"], p["centers"],
                                                          p["sigmas"], 0.4), rtol=1e-10)


def test_feature_loss_gradients_equal_closed_forms():
    p, theta = feature_problem(), 0.6
    f, c, s = (tf.Variable(p[k]) for k in ("f", "centers", "sigmas"))
    with tf.GradientTape() as tape:
        loss = feature_loss(f, tf.constant(p["y"]), c, s, theta)
    g_f, g_c, g_s = (tf.convert_to_tensor(g).numpy() for g in tape.gradient(loss, [f, c, s]))
    batch = len(p["f"])
    c_y, s2_y = p["centers"][p["y"]], p["sigmas"][p["y"]] ** 2
    residual = p["f"] - c_y
    np.testing.assert_allclose(g_f, theta / batch * (residual + residual / s2_y), rtol=1e-9)
    expected_c = np.zeros_like(p["centers"])
    expected_var = np.zeros_like(p["sigmas"])
    for b, label in enumerate(p["y"]):
        expected_c[label] -= theta / batch * (residual[b] + residual[b] / s2_y[b])
        expected_var[label] += theta / (2 * batch) * (1 / s2_y[b] - residual[b] ** 2 / s2_y[b] ** 2)
    np.testing.assert_allclose(g_c, expected_c, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(g_s, expected_var * 2 * p["sigmas"], rtol=1e-9, atol=1e-12)
