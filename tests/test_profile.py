"""bayes_larq.profile: larq profiles of the inference twin (no BayesianSign variables)."""

import bayes_larq  # noqa: F401  (sets up tf_keras before tf.keras is touched)

import larq as lq
import numpy as np
import pytest
import tensorflow as tf

from bayes_larq import models, profile
from bayes_larq.quantizers import BayesianSign

# Hand-computed profile of `tiny_model` (input 8x8x3):
#   stem  Conv2D(4, 3x3, same, no bias): 8*8 pixels * 4 filters * (3*3*3) = 6,912 MACs
#   BatchNorm(4): larq counts moving mean + variance (gamma/beta fold into them): 8 floats
#   QuantConv2D(6, 3x3, same, binary in and kernel): 8*8 * 6 * (3*3*4) = 13,824 1-bit MACs
#   GlobalAveragePooling -> Dense(5) with bias: 6 * 5 = 30 MACs
TINY_BINARY_MACS = 13_824
TINY_TOTAL_MACS = 6_912 + 13_824 + 30
# bits: 108 float kernel weights + 8 BN statistics + 216 binary weights + 35 Dense weights
TINY_MEMORY_BYTES = (108 * 32 + 8 * 32 + 216 * 1 + 35 * 32) // 8  # = 631
# BayesianSign of the binary conv: W (3*3*4*6) + mu_pos, mu_neg, log_sigma_pos,
# log_sigma_neg (6 each) + lam + nu
TINY_TRAINING_ONLY = 216 + 4 * 6 + 2


def tiny_model(bonn):
    tf.keras.utils.set_random_seed(0)
    quantizer = BayesianSign() if bonn else "ste_sign"
    inputs = tf.keras.Input((8, 8, 3))
    x = tf.keras.layers.Conv2D(4, 3, padding="same", use_bias=False, name="stem")(inputs)
    x = tf.keras.layers.BatchNormalization(name="bn")(x)
    x = lq.layers.QuantConv2D(
        6, 3, padding="same", pad_values=1.0, input_quantizer="ste_sign",
        kernel_quantizer=quantizer, kernel_constraint="weight_clip", use_bias=False,
        name="binary")(x)
    x = tf.keras.layers.GlobalAveragePooling2D()(x)
    outputs = tf.keras.layers.Dense(5, name="logits")(x)
    return tf.keras.Model(inputs, outputs, name="tiny")


@pytest.mark.parametrize("bonn", [True, False])
def test_tiny_model_matches_hand_counts(bonn):
    model = tiny_model(bonn)
    assert profile.mac_counts(model) == {"binary": TINY_BINARY_MACS, "total": TINY_TOTAL_MACS}
    assert profile.binary_mac_share(model) == pytest.approx(TINY_BINARY_MACS / TINY_TOTAL_MACS)
    assert profile.memory_bytes(model) == TINY_MEMORY_BYTES
    assert profile.training_only_weight_count(model) == (TINY_TRAINING_ONLY if bonn else 0)


def test_raw_larq_profile_is_distorted_by_bayesian_sign():
    """The reason for the twin: larq counts W, mu, sigma, ... as 32-bit MAC weights."""
    raw = lq.models.ModelProfile(tiny_model(bonn=True))
    # each of the 242 training-only scalars is counted as a 32-bit kernel weight used
    # at every one of the 8x8 output pixels, and stored in 32 bits
    assert raw.op_count("mac", 1) == TINY_BINARY_MACS
    assert raw.op_count("mac", 32) == 6_912 + 30 + TINY_TRAINING_ONLY * 64
    assert raw.memory == 8 * TINY_MEMORY_BYTES + 32 * TINY_TRAINING_ONLY
    assert raw.op_count("mac", 1) / raw.op_count("mac") < 0.6 * TINY_BINARY_MACS / TINY_TOTAL_MACS


def test_inference_twin_replaces_bayesian_sign_and_keeps_weights():
    model = tiny_model(bonn=True)
    twin = profile.inference_twin(model)
    assert [layer.name for layer in twin.layers] == [layer.name for layer in model.layers]
    binary = twin.get_layer("binary")
    assert isinstance(binary.kernel_quantizer, lq.quantizers.SteSign)
    assert isinstance(binary.input_quantizer, lq.quantizers.SteSign)
    assert binary.pad_values == 1.0 and binary.kernel_constraint is not None
    assert not any(isinstance(layer, BayesianSign)
                   for layer in twin._flatten_layers(include_self=False))
    # every weight of the twin equals the original's (the latent kernel, not W)
    np.testing.assert_array_equal(binary.get_weights()[0],
                                  model.get_layer("binary").kernel.latent_variable.numpy())
    for layer in ("stem", "bn", "logits"):
        for a, b in zip(twin.get_layer(layer).get_weights(), model.get_layer(layer).get_weights()):
            np.testing.assert_array_equal(a, b)
    # the original is untouched
    assert isinstance(model.get_layer("binary").kernel_quantizer, BayesianSign)


def test_inference_twin_of_nested_model():
    inner = tiny_model(bonn=True)
    inputs = tf.keras.Input((8, 8, 3))
    outer = tf.keras.Model(inputs, tf.keras.layers.Activation("linear")(inner(inputs)))
    twin = profile.inference_twin(outer)
    assert not any(isinstance(layer, BayesianSign)
                   for layer in twin._flatten_layers(include_self=True))
    assert profile.binary_mac_share(outer) == pytest.approx(TINY_BINARY_MACS / TINY_TOTAL_MACS)


def test_inference_twin_rejects_subclassed_model():
    class Subclassed(tf.keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = tf.keras.layers.Dense(2)

        def call(self, inputs):
            return self.dense(inputs)

    model = Subclassed()
    model(tf.zeros((1, 3)))
    with pytest.raises(ValueError, match="functional and Sequential"):
        profile.inference_twin(model)


@pytest.mark.parametrize("name,kwargs,scope", [
    ("small_cnn", {}, "paper"),
    ("small_cnn", {}, "full"),
    ("resnet18_cifar", {}, "paper"),
    ("wrn22", {"width_factor": 1}, "full"),
])
def test_bonn_profile_equals_larq_baseline(name, kwargs, scope):
    """With the training-only variables left out, a BONN model profiles as bonn=False."""
    bonn = profile.model_profile(models.get(name, scope=scope, bonn=True, **kwargs))
    larq = lq.models.ModelProfile(models.get(name, scope=scope, bonn=False, **kwargs))
    for precision in (None, 1, 32):
        assert bonn.op_count("mac", precision) == larq.op_count("mac", precision)
    assert bonn.memory == larq.memory
    assert bonn.weight_count() == larq.weight_count()
    assert bonn.weight_count(trainable=True) == larq.weight_count(trainable=True)
    assert 0 < larq.op_count("mac", 1) < larq.op_count("mac")


def test_summary_prints_twin_and_note():
    lines = []
    profile.summary(tiny_model(bonn=True), print_fn=lines.append)
    text = "\n".join(lines)
    assert "tiny_inference" in text
    assert "Ratio of MACs that are binarized" in text
    assert "inference twin" in lines[-1] and str(TINY_TRAINING_ONLY) in lines[-1]
