"""Weight decay (`bayes_larq.weight_decay`): SGD steps against NumPy, what it decays."""

import bayes_larq as bl

import numpy as np
import pytest
import tensorflow as tf

from bayes_larq.quantizers import bayesian_quantizers
from bayes_larq.weight_decay import decayed_kernels, with_weight_decay

CE = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_two_sgd_steps_with_weight_decay_match_numpy():
    """Coupled decay: v <- m v - lr (g + wd K), K <- K + v; the bias is not decayed."""
    lr, momentum, wd = 0.1, 0.9, 0.05
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 4)).astype(np.float32)
    y = rng.integers(0, 3, size=8)
    inputs = tf.keras.Input((4,))
    model = tf.keras.Model(inputs, tf.keras.layers.Dense(3, name="logits")(inputs))
    model.layers[-1].bias.assign(rng.normal(size=3).astype(np.float32))
    kernel, bias = (w.copy() for w in model.get_weights())
    bonn = bl.BONN(with_weight_decay(model, wd), feature_loss=False)
    bonn.compile(tf.keras.optimizers.SGD(lr, momentum=momentum), CE)

    onehot = np.eye(3)[y]
    kernel_velocity, bias_velocity = np.zeros_like(kernel), np.zeros_like(bias)
    for _ in range(2):
        logs = bonn.train_on_batch(x, y, return_dict=True)
        p = softmax(x @ kernel + bias)
        ce = -np.mean(np.log(p[np.arange(8), y]))
        assert logs["loss"] == pytest.approx(ce + wd / 2 * np.sum(kernel**2), rel=1e-5)
        kernel_gradient = x.T @ (p - onehot) / 8 + wd * kernel
        bias_gradient = (p - onehot).mean(axis=0)
        kernel_velocity = momentum * kernel_velocity - lr * kernel_gradient
        bias_velocity = momentum * bias_velocity - lr * bias_gradient
        kernel, bias = kernel + kernel_velocity, bias + bias_velocity
    new_kernel, new_bias = bonn.classifier.get_weights()
    np.testing.assert_allclose(new_kernel, kernel, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(new_bias, bias, rtol=1e-5, atol=1e-6)


def bonn_model():
    tf.keras.utils.set_random_seed(1)
    return bl.models.get("small_cnn", num_classes=10, input_shape=(28, 28, 1), width=4)


def test_decay_acts_on_every_kernel_and_nothing_else():
    """One plain SGD step with and without decay from the same weights: each kernel K
    differs by exactly -lr * wd * K; BatchNorm, biases, W, mu and sigma not at all."""
    lr, wd = 0.1, 1e-2
    model = bonn_model()
    decayed = with_weight_decay(model, wd)
    kernels = {v.name for v in model.weights if v.name.split("/")[-1] == "kernel:0"}
    assert {v.name for v in decayed_kernels(decayed)} == kernels and len(kernels) == 8
    quantizer_variables = {v.name for q in bayesian_quantizers(decayed) for v in q.variables}
    assert quantizer_variables and not quantizer_variables & kernels

    start = {v.name: v.numpy() for v in model.weights}
    extra = sum(np.sum(start[name] ** 2) for name in kernels) * wd / 2
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 28, 28, 1)).astype(np.float32)
    y = rng.integers(0, 10, size=16)
    after, logs = {}, {}
    for name, classifier in (("plain", model), ("decayed", decayed)):
        bonn = bl.BONN(classifier, feature_loss=False)
        bonn.compile(tf.keras.optimizers.SGD(lr), CE)
        logs[name] = bonn.train_on_batch(x, y, return_dict=True)
        after[name] = {v.name: v.numpy() for v in classifier.weights}
    # The logged total gains wd/2 * sum K^2; the kernel loss L_B is the same.
    assert logs["decayed"]["loss"] - logs["plain"]["loss"] == pytest.approx(extra, rel=1e-3)
    assert logs["decayed"]["kernel_loss"] == pytest.approx(logs["plain"]["kernel_loss"])
    for name, value in start.items():
        difference = after["decayed"][name] - after["plain"][name]
        expected = -lr * wd * value if name in kernels else np.zeros_like(value)
        np.testing.assert_allclose(difference, expected, atol=1e-6, err_msg=name)


def test_decay_is_saved_with_the_model(tmp_path):
    decayed = with_weight_decay(bonn_model(), 1e-4)
    decayed.save(tmp_path / "m.keras")
    loaded = tf.keras.models.load_model(tmp_path / "m.keras")
    assert len(decayed_kernels(loaded)) == 8
    assert loaded.get_layer("logits").kernel_regularizer.l2 == pytest.approx(5e-5)
    assert loaded.get_layer("unit2_conv").kernel_regularizer.l2 == pytest.approx(5e-5)


def test_zero_is_the_model_itself_and_bad_input_is_named():
    model = bonn_model()
    assert with_weight_decay(model, 0.0) is model
    with pytest.raises(ValueError, match="`weight_decay` must be a finite number >= 0"):
        with_weight_decay(model, -1e-4)
    inputs = tf.keras.Input((4,))
    regularized = tf.keras.Model(inputs, tf.keras.layers.Dense(
        2, kernel_regularizer="l2", name="d")(inputs))
    with pytest.raises(ValueError, match="'d' already has a kernel_regularizer"):
        with_weight_decay(regularized, 1e-4)
