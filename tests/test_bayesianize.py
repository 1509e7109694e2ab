"""bayesianize / debayesianize: weights and predictions kept, LCE census, third-party models."""

import bayes_larq as bl
import larq as lq
import larq_compute_engine as lce
import numpy as np
import pytest
import tensorflow as tf

from bayes_larq import convert
from bayes_larq.bayesianize import UnfoldableScale
from bayes_larq.mixture import fit_mixture
from bayes_larq.quantizers import BayesianSign, binary_kernels

KERNEL_QUANTIZERS = ["ste_sign", "approx_sign", "swish_sign", "magnitude_aware_sign"]


def larq_model(sequential=False, seed=0, binary_classifier=False):
    """A small Larq network with every kind of 1-bit kernel quantizer, trained a little.

    The classifier is a float Dense, as in Larq Zoo, unless `binary_classifier`.
    """
    tf.keras.utils.set_random_seed(seed)
    layers = [tf.keras.layers.Conv2D(16, 3, padding="same", use_bias=False,
                                     input_shape=(12, 12, 3)),
              tf.keras.layers.BatchNormalization()]
    for quantizer in KERNEL_QUANTIZERS:
        layers += [lq.layers.QuantConv2D(16, 3, padding="same", pad_values=1.0, use_bias=False,
                                         input_quantizer="ste_sign", kernel_quantizer=quantizer,
                                         kernel_constraint="weight_clip"),
                   tf.keras.layers.BatchNormalization(momentum=0.5)]
    layers += [tf.keras.layers.GlobalAveragePooling2D(),
               lq.layers.QuantDense(5, input_quantizer="ste_sign", kernel_quantizer="ste_sign",
                                    kernel_constraint="weight_clip") if binary_classifier
               else tf.keras.layers.Dense(5)]
    if sequential:
        model = tf.keras.Sequential(layers)
    else:
        inputs = tf.keras.Input((12, 12, 3))
        x = inputs
        for layer in layers:
            x = layer(x)
        model = tf.keras.Model(inputs, x)
    x, y = images(64), np.arange(64) % 5
    model.compile("adam", tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=2, batch_size=16, verbose=0)  # moving statistics away from 0 / 1
    return model


def images(n, shape=(12, 12, 3), seed=1):
    return np.random.default_rng(seed).normal(size=(n, *shape)).astype(np.float32)


def assert_same_predictions(a, b, x, rtol=1e-5):
    pa, pb = a.predict(x, verbose=0), b.predict(x, verbose=0)
    np.testing.assert_allclose(pb, pa, rtol=rtol, atol=rtol * np.abs(pa).max())


@pytest.mark.parametrize("sequential", [False, True])
def test_bayesianize_keeps_weights_and_predictions(sequential):
    model = larq_model(sequential, binary_classifier=True)
    bonn_model = bl.bayesianize(model, lam=1e-3, reduction="sum")
    x = images(32)
    assert_same_predictions(model, bonn_model, x)
    kernels = binary_kernels(bonn_model)
    assert len(kernels) == 5 and all(isinstance(k.quantizer, BayesianSign) for k in kernels)
    assert all(k.quantizer.initial_lam == 1e-3 and k.quantizer.reduction == "sum"
               for k in kernels)
    assert all(k.layer.input_quantizer.__class__.__name__ == "SteSign" for k in kernels)
    for original, copied in zip(binary_kernels(model), kernels):
        np.testing.assert_array_equal(copied.latent.numpy(), original.latent.numpy())
        fitted = fit_mixture(original.latent.numpy())
        np.testing.assert_allclose(copied.quantizer.mu_pos.numpy(), fitted.mu_pos, rtol=1e-5)
    # The float layers are untouched.
    np.testing.assert_array_equal(bonn_model.layers[0 if sequential else 1].get_weights()[0],
                                  model.layers[0 if sequential else 1].get_weights()[0])


def test_round_trip_and_lce_census_after_bonn_training():
    model = larq_model()
    bonn_model = bl.bayesianize(model, lam=1e-3)
    bonn = bl.BONN(bonn_model, theta=1e-3)
    bonn.compile("adam", tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    bonn.fit(images(64), np.arange(64) % 5, epochs=2, batch_size=16, verbose=0)
    w_bars = [float(np.mean(k.quantizer.w_bar())) for k in binary_kernels(bonn_model)]
    assert min(abs(w - 1) for w in w_bars) > 0.1  # scales that must be folded
    plain = bl.debayesianize(bonn_model)
    assert not any(isinstance(k.quantizer, BayesianSign) for k in binary_kernels(plain))
    assert_same_predictions(bonn_model, plain, images(32))
    censuses = [convert.op_census(convert.convert(m)) for m in (model, bonn_model, plain)]
    assert censuses[0] == censuses[1] == censuses[2] and censuses[0]["LceBconv2d"] == 4


def test_debayesianize_names_a_scale_it_cannot_fold():
    bonn_model = bl.bayesianize(larq_model(binary_classifier=True))
    bonn_model.layers[-1].kernel_quantizer.reconstruction.assign_add(
        tf.ones_like(bonn_model.layers[-1].kernel_quantizer.reconstruction))
    with pytest.raises(ValueError, match="no BatchNormalization after it"):
        bl.debayesianize(bonn_model)
    assert bl.debayesianize(bonn_model, fold_scale=False)  # the profile twin needs no fold


def test_bayesianize_refuses_what_it_cannot_do():
    inputs = tf.keras.Input((4,))
    float_model = tf.keras.Model(inputs, tf.keras.layers.Dense(2)(inputs))
    with pytest.raises(ValueError, match="no 1-bit kernel quantizer"):
        bl.bayesianize(float_model)
    with pytest.raises(ValueError, match="Unknown BayesianSign settings"):
        bl.bayesianize(larq_model(), gamma=1.0)

    class Subclassed(tf.keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = lq.layers.QuantDense(2, kernel_quantizer="ste_sign")

        def call(self, x):
            return self.dense(x)

    subclassed = Subclassed()
    subclassed(np.zeros((1, 4), np.float32))
    with pytest.raises(ValueError, match="only functional and Sequential"):
        bl.bayesianize(subclassed)


def test_nested_model_is_bayesianized_inside():
    inner = larq_model()
    inputs = tf.keras.Input((12, 12, 3))
    outer = tf.keras.Model(inputs, tf.keras.layers.Softmax()(inner(inputs)))
    bonn_outer = bl.bayesianize(outer)
    bayesian = [k for k in binary_kernels(bonn_outer) if isinstance(k.quantizer, BayesianSign)]
    assert len(bayesian) == 4
    assert_same_predictions(outer, bonn_outer, images(16))


def logits_model(model):
    """`model` without its final softmax (softmax saturates and hides differences)."""
    return tf.keras.Model(model.inputs, model.layers[-1].input)


@pytest.mark.parametrize("name", ["QuickNet", "BiRealNet"])
def test_larq_zoo_architectures(name):
    """Third-party architectures from Larq Zoo (weights=None: nothing is downloaded)."""
    import larq_zoo as lqz  # `make test` installs it with --no-deps (see the Makefile)

    build = {"QuickNet": lqz.sota.QuickNet, "BiRealNet": lqz.literature.BiRealNet}[name]
    tf.keras.utils.set_random_seed(0)
    model = build(weights=None, input_shape=(64, 64, 3), num_classes=10)
    bonn_model = bl.bayesianize(model, lam=1e-4, nu=1e-4, reduction="sum")
    plain = bl.debayesianize(bonn_model)
    x = images(8, (64, 64, 3))
    assert_same_predictions(logits_model(model), logits_model(bonn_model), x, rtol=1e-4)
    assert_same_predictions(logits_model(model), logits_model(plain), x, rtol=1e-4)
    assert len(binary_kernels(bonn_model)) == 16
    original, bayesian, deployed = (convert.op_census(convert.convert(m))
                                    for m in (model, bonn_model, plain))
    assert deployed == original == bayesian and original["LceBconv2d"] == 16
    # QuickNet puts a ReLU between a binary convolution and its BatchNorm: converted as it
    # is, the BONN model would carry the scale as an extra MUL (and RELU) per layer;
    # bl.convert.convert goes through debayesianize and gives the original's operators.
    direct = convert.op_census(lce.convert_keras_model(bonn_model))
    assert direct["LceBconv2d"] == 16
    if name == "QuickNet":
        assert direct["MUL"] == 16


def bayesian_layer_model(layer_class, input_shape, use_bias):
    """One binary layer with a BayesianSign kernel (pointwise kernel, after an ste_sign
    depthwise one, for a separable convolution) and a BatchNorm after it, trained a
    little so the moving statistics are not 0 / 1, with W far from 1."""
    tf.keras.utils.set_random_seed(0)
    if issubclass(layer_class, tf.keras.layers.SeparableConv1D | tf.keras.layers.SeparableConv2D):
        kernels = dict(depthwise_quantizer="ste_sign", depthwise_constraint="weight_clip",
                       pointwise_quantizer=BayesianSign(scale="channel"),
                       pointwise_constraint="weight_clip")
    else:
        kernels = dict(kernel_quantizer=BayesianSign(scale="channel"),
                       kernel_constraint="weight_clip")
    inputs = tf.keras.Input(input_shape)
    x = layer_class(6, 3, padding="same", pad_values=1.0, use_bias=use_bias,
                    bias_initializer="random_normal", input_quantizer="ste_sign",
                    name="binary", **kernels)(inputs)
    x = tf.keras.layers.BatchNormalization(momentum=0.5)(x)
    x = tf.keras.layers.Flatten()(x)
    model = tf.keras.Model(inputs, tf.keras.layers.Dense(3)(x))
    model.compile("adam", tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(images(32, input_shape), np.arange(32) % 3, epochs=2, batch_size=8, verbose=0)
    quantizer = bl.quantizers.bayesian_quantizers(model)[0]
    quantizer.reconstruction.assign(np.random.default_rng(2).uniform(
        0.5, 3.0, quantizer.reconstruction.shape))
    return model


@pytest.mark.parametrize("layer_class, input_shape", [
    (lq.layers.QuantSeparableConv2D, (6, 6, 4)), (lq.layers.QuantSeparableConv1D, (8, 4)),
    (lq.layers.QuantConv2D, (6, 6, 4))])
@pytest.mark.parametrize("use_bias", [False, True])
def test_scale_is_folded_once_per_layer_bias_included(layer_class, input_shape, use_bias):
    """Each binary kernel is matched to its own scale (a separable convolution has two),
    and the layer's scale change, which multiplies its output bias included, is folded
    once: debayesianize, LCE conversion and bayesianize again all predict as the model."""
    model = bayesian_layer_model(layer_class, input_shape, use_bias)
    x = images(16, input_shape, seed=3)
    plain = bl.debayesianize(model)
    assert not bl.quantizers.bayesian_kernels(plain)
    assert_same_predictions(model, plain, x)
    flatbuffer = convert.convert(model)
    assert convert.compare(model, flatbuffer, x).max_abs_diff < 1e-4
    assert_same_predictions(model, bl.bayesianize(plain), x)


def test_a_scale_behind_a_nonlinear_activation_is_not_folded_into_the_batch_norm():
    """tanh(z / w) is not tanh(z) / w: debayesianize refuses, convert keeps the scale."""
    tf.keras.utils.set_random_seed(0)
    inputs = tf.keras.Input((6, 6, 3))
    x = lq.layers.QuantConv2D(4, 3, activation="tanh", input_quantizer="ste_sign",
                              kernel_quantizer=BayesianSign(), kernel_constraint="weight_clip",
                              name="binary")(inputs)
    model = tf.keras.Model(inputs, tf.keras.layers.BatchNormalization()(x))
    quantizer = model.get_layer("binary").kernel_quantizer
    quantizer.reconstruction.assign(tf.fill(quantizer.reconstruction.shape, 2.5))
    with pytest.raises(UnfoldableScale, match="'binary'.*no BatchNormalization"):
        bl.debayesianize(model)
    x = images(8, (6, 6, 3))
    assert convert.compare(model, convert.convert(model), x).max_abs_diff < 1e-4


def shared_layer_model(batch_norm_after_second_use):
    """One QuantConv2D called at two places of the graph, the first use followed by its
    own BatchNorm, the second by another BatchNorm or by nothing; trained a little."""
    tf.keras.utils.set_random_seed(0)
    inputs = tf.keras.Input((8, 8, 4))
    shared = lq.layers.QuantConv2D(4, 3, padding="same", pad_values=1.0, use_bias=False,
                                   kernel_quantizer="ste_sign", kernel_constraint="weight_clip",
                                   name="shared")
    first = tf.keras.layers.BatchNormalization(momentum=0.5)(shared(inputs))
    second = shared(tf.keras.layers.Activation("relu")(first))
    if batch_norm_after_second_use:
        second = tf.keras.layers.BatchNormalization(momentum=0.5)(second)
    x = tf.keras.layers.GlobalAveragePooling2D()(tf.keras.layers.Add()([first, second]))
    model = tf.keras.Model(inputs, tf.keras.layers.Dense(5)(x))
    model.compile("adam", tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(images(64, (8, 8, 4)), np.arange(64) % 5, epochs=2, batch_size=16, verbose=0)
    return model


@pytest.mark.parametrize("batch_norm_after_second_use", [True, False],
                         ids=["a BatchNorm after each use", "none after the second"])
def test_a_layer_called_twice_stays_shared_and_predicts_as_before(batch_norm_after_second_use):
    """It changed the predictions: the scale went into the first use's BatchNorm only.
    Now both BatchNorms absorb it, or, when one use has none, W does."""
    model = shared_layer_model(batch_norm_after_second_use)
    x = images(16, (8, 8, 4), seed=3)
    bonn_model = bl.bayesianize(model)
    shared = bonn_model.get_layer("shared")
    assert len(shared.inbound_nodes) == 2 and len(binary_kernels(bonn_model)) == 1
    np.testing.assert_array_equal(shared.kernel.numpy(), model.get_layer("shared").kernel.numpy())
    scale = np.abs(np.asarray(shared.kernel_quantizer(shared.kernel))).mean()
    if batch_norm_after_second_use:  # BayesianSign's 1/mean(W), in both BatchNorms
        assert abs(scale - 1) > 0.1
    else:  # W normalised to mean 1: ste_sign's scale
        assert scale == pytest.approx(1, rel=1e-5)
    assert_same_predictions(model, bonn_model, x)
    assert_same_predictions(model, bl.debayesianize(bonn_model), x)
