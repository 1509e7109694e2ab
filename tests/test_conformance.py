"""`"bayesian_sign"` in every Larq layer type that takes a kernel quantizer.

One table of layer types (`SUPPORTED`: BayesianSign on the kernel, or on the pointwise
kernel of separable convolutions; `REFUSED`: transposed and depthwise kernels), and one
test per property, each against an independent reference: the float Keras layer with the
binarized kernel computed in NumPy, the converted LCE model. docs/compatibility.md is
rendered from this table (`python tests/test_conformance.py > docs/compatibility.md`);
a test fails when the page and the tests differ.
"""

import pathlib
import sys

import bayes_larq as bl
import larq as lq
import numpy as np
import pytest
import tensorflow as tf

from bayes_larq.quantizers import BayesianSign, bayesian_quantizers

# (Larq layer, its float Keras twin, input shape without batch, layer arguments)
SUPPORTED = [
    (lq.layers.QuantDense, tf.keras.layers.Dense, (4,), dict(units=3)),
    (lq.layers.QuantConv1D, tf.keras.layers.Conv1D, (6, 3), dict(filters=2, kernel_size=3)),
    (lq.layers.QuantConv2D, tf.keras.layers.Conv2D, (5, 5, 3), dict(filters=2, kernel_size=3)),
    (lq.layers.QuantConv3D, tf.keras.layers.Conv3D, (4, 4, 4, 2),
     dict(filters=2, kernel_size=3)),
    (lq.layers.QuantLocallyConnected1D, tf.keras.layers.LocallyConnected1D, (6, 3),
     dict(filters=2, kernel_size=3)),
    (lq.layers.QuantLocallyConnected2D, tf.keras.layers.LocallyConnected2D, (5, 5, 2),
     dict(filters=2, kernel_size=3)),
    (lq.layers.QuantSeparableConv1D, tf.keras.layers.SeparableConv1D, (6, 3),
     dict(filters=2, kernel_size=3)),
    (lq.layers.QuantSeparableConv2D, tf.keras.layers.SeparableConv2D, (5, 5, 3),
     dict(filters=2, kernel_size=3)),
]
IDS = [spec[0].__name__ for spec in SUPPORTED]
# The TFLite op that computes each layer after LCE conversion (test_lce_conversion_...):
# LCE's binary convolution takes 2D convolutions; the rest run as float ops on +-1 values.
LCE_OPS = {"QuantDense": "FULLY_CONNECTED", "QuantConv1D": "CONV_2D",
           "QuantConv2D": "LceBconv2d", "QuantConv3D": "CONV_3D",
           "QuantLocallyConnected1D": "FULLY_CONNECTED",
           "QuantLocallyConnected2D": "FULLY_CONNECTED",
           "QuantSeparableConv1D": "DEPTHWISE_CONV_2D + CONV_2D",
           "QuantSeparableConv2D": "DEPTHWISE_CONV_2D + CONV_2D"}

# (Larq layer, input shape, layer arguments, the quantizer argument BayesianSign would take)
REFUSED = [
    (lq.layers.QuantConv2DTranspose, (4, 4, 3), dict(filters=2, kernel_size=3),
     "kernel_quantizer"),
    (lq.layers.QuantConv3DTranspose, (3, 3, 3, 2), dict(filters=2, kernel_size=3),
     "kernel_quantizer"),
    (lq.layers.QuantDepthwiseConv2D, (5, 5, 3), dict(kernel_size=3), "depthwise_quantizer"),
    (lq.layers.QuantSeparableConv2D, (5, 5, 3), dict(filters=2, kernel_size=3),
     "depthwise_quantizer"),
]


def is_separable(layer_class):
    return issubclass(layer_class,
                      tf.keras.layers.SeparableConv1D | tf.keras.layers.SeparableConv2D)


def quantizer_argument(layer_class):
    return "pointwise_quantizer" if is_separable(layer_class) else "kernel_quantizer"


def binary_kernel(layer):
    """The latent kernel BayesianSign quantizes (the pointwise one of a separable conv)."""
    kernel = layer.pointwise_kernel if is_separable(type(layer)) else layer.kernel
    return kernel.latent_variable.numpy()


def one_layer_model(spec, quantizer="bayesian_sign", seed=0):
    layer_class, _, input_shape, kwargs = spec
    tf.keras.utils.set_random_seed(seed)
    inputs = tf.keras.Input(input_shape)
    layer = layer_class(**kwargs, bias_initializer="random_normal", name="binary",
                        **{quantizer_argument(layer_class): quantizer})
    return tf.keras.Model(inputs, tf.keras.layers.Flatten()(layer(inputs)))


def inputs_for(spec, n=4, seed=1):
    return np.random.default_rng(seed).normal(size=(n, *spec[2])).astype(np.float32)


def reference_kernel(latent):
    r"""NumPy: $\mathrm{sign}(x) / \bar w$, sign(0) = +1, with W fitted to the kernel
    ($w_i = \sum |x| / \sum x^2$ per output channel, the last axis) and
    $\bar w$ the mean of W over the kernel (`scale="layer"`)."""
    flat = latent.reshape(-1, latent.shape[-1]).astype(np.float64)
    w = np.abs(flat).sum(axis=0) / np.square(flat).sum(axis=0)
    return (np.where(latent >= 0, 1.0, -1.0) / w.mean()).astype(np.float32)


def float_twin_outputs(spec, model, x):
    """The float Keras layer with the NumPy-binarized kernel, on the same inputs."""
    _, twin_class, input_shape, kwargs = spec
    layer = model.get_layer("binary")
    twin = twin_class(**kwargs)
    twin.build((None, *input_shape))
    weights = [w.numpy() for w in layer.weights if "bayesian_sign" not in w.name]
    index = 1 if is_separable(twin_class) else 0  # the kernel BayesianSign quantizes
    weights[index] = reference_kernel(weights[index])
    twin.set_weights(weights)
    return twin(x).numpy().reshape(len(x), -1)


def assert_state_fitted_to_kernel(model):
    """W, mu and sigma of the model's one BayesianSign fitted to its kernel (NumPy)."""
    (quantizer,) = bayesian_quantizers(model)
    latent = binary_kernel(model.get_layer("binary"))
    flat = latent.reshape(-1, latent.shape[-1])
    w = np.abs(flat).sum(axis=0) / np.square(flat).sum(axis=0)
    np.testing.assert_allclose(quantizer.reconstruction.numpy(),
                               np.broadcast_to(w, flat.shape).reshape(latent.shape), rtol=1e-5)
    positive_mean = [c[c >= 0].mean() for c in flat.T]
    np.testing.assert_allclose(quantizer.mu_pos.numpy(), positive_mean, rtol=1e-5)


def bonn_state(model):
    return [v.numpy() for q in bayesian_quantizers(model) for v in q.weights]


@pytest.mark.parametrize("spec", SUPPORTED, ids=IDS)
def test_forward_is_the_float_layer_with_sign_over_mean_w(spec):
    model = one_layer_model(spec)
    assert_state_fitted_to_kernel(model)
    x = inputs_for(spec)
    np.testing.assert_allclose(model(x).numpy(), float_twin_outputs(spec, model, x),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("spec", SUPPORTED, ids=IDS)
def test_a_train_step_is_finite_and_moves_w_mu_and_sigma(spec):
    model = one_layer_model(spec, BayesianSign(lam=1.0, nu=1.0))
    (quantizer,) = bayesian_quantizers(model)
    model.compile(tf.keras.optimizers.Adam(1e-2), "mse")
    for mixture in quantizer.trainable_weights[1:]:  # off their closed-form optimum
        mixture.assign_add(tf.fill(mixture.shape, 0.05))
    before = {v.name: v.numpy().copy() for v in quantizer.trainable_weights}
    x = inputs_for(spec, n=8)
    logs = model.train_on_batch(x, np.ones_like(model(x).numpy()), return_dict=True)
    assert np.isfinite(logs["loss"])
    moved = {v.name.split("/")[-1].split(":")[0]: np.abs(v.numpy() - before[v.name]).max()
             for v in quantizer.trainable_weights}
    assert set(moved) == {"reconstruction", "mu_pos", "mu_neg", "log_sigma_pos",
                          "log_sigma_neg"}
    assert min(moved.values()) > 0, moved


@pytest.mark.parametrize("rebuild", ["from_config", "clone_model", "layer_from_config"])
@pytest.mark.parametrize("spec", SUPPORTED, ids=IDS)
def test_a_rebuilt_layer_fits_its_state_and_predicts_as_the_original(spec, rebuild):
    model = one_layer_model(spec)
    if rebuild == "layer_from_config":
        layer = model.get_layer("binary")
        inputs = tf.keras.Input(spec[2])
        copy = type(layer).from_config(layer.get_config())
        rebuilt = tf.keras.Model(inputs, tf.keras.layers.Flatten()(copy(inputs)))
    elif rebuild == "clone_model":
        rebuilt = tf.keras.models.clone_model(model)
    else:
        rebuilt = tf.keras.Model.from_config(model.get_config())
    assert_state_fitted_to_kernel(rebuilt)
    x = inputs_for(spec)
    np.testing.assert_allclose(rebuilt(x).numpy(), float_twin_outputs(spec, rebuilt, x),
                               rtol=1e-5, atol=1e-5)
    rebuilt.set_weights(model.get_weights())
    np.testing.assert_array_equal(rebuilt(x).numpy(), model(x).numpy())


@pytest.mark.parametrize("filename", ["model.keras", "model.h5", "saved_model"])
@pytest.mark.parametrize("spec", SUPPORTED, ids=IDS)
def test_save_and_load_keep_predictions_and_state(spec, filename, tmp_path):
    model = one_layer_model(spec)
    (quantizer,) = bayesian_quantizers(model)
    quantizer.reconstruction.assign(quantizer.reconstruction * 1.7)  # not the fitted state
    path = str(tmp_path / filename)
    model.save(path)
    loaded = tf.keras.models.load_model(path)
    x = inputs_for(spec)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    for ours, theirs in zip(bonn_state(model), bonn_state(loaded), strict=True):
        np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize("spec", SUPPORTED, ids=IDS)
def test_larq_summary_counts_the_kernel_as_binary(spec):
    model = one_layer_model(spec)
    printed = []
    lq.models.summary(model, print_fn=printed.append)
    row = next(line for line in "\n".join(printed).splitlines() if line.startswith("| binary "))
    one_bit = int(row.split(")")[-1].split()[0])  # the "# 1-bit" column, after the shape
    assert one_bit == binary_kernel(model.get_layer("binary")).size


@pytest.fixture
def mixed_float16():
    tf.keras.mixed_precision.set_global_policy("mixed_float16")
    yield
    tf.keras.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize("spec", SUPPORTED, ids=IDS)
def test_mixed_precision_trains_and_predicts(spec, mixed_float16):
    model = one_layer_model(spec, BayesianSign(lam=1.0))
    (quantizer,) = bayesian_quantizers(model)
    assert all(v.dtype == tf.float32 for v in quantizer.weights)
    assert model.losses[0].dtype == tf.float32
    assert_state_fitted_to_kernel(model)
    x = inputs_for(spec, n=8)
    outputs = model.predict(x, verbose=0)
    assert outputs.dtype == np.float16
    # float16 compute: within half-precision rounding of the float32 reference.
    np.testing.assert_allclose(outputs, float_twin_outputs(spec, model, x), rtol=2e-2, atol=2e-2)
    model.compile(tf.keras.optimizers.Adam(1e-2), "mse")
    before = quantizer.reconstruction.numpy().copy()
    logs = model.train_on_batch(x, np.ones_like(outputs, np.float32), return_dict=True)
    assert np.isfinite(logs["loss"])
    assert np.abs(quantizer.reconstruction.numpy() - before).max() > 0
    assert np.all(np.isfinite(model.predict(x, verbose=0)))


def converted_agreement(spec):
    """A BatchNorm after the layer (where the scale is folded), trained statistics, W far
    from 1; then LCE against Keras."""
    layer_class, _, input_shape, kwargs = spec
    tf.keras.utils.set_random_seed(0)
    inputs = tf.keras.Input(input_shape)
    layer = layer_class(**kwargs, input_quantizer="ste_sign", name="binary",
                        **{quantizer_argument(layer_class): BayesianSign(scale="channel")})
    outputs = tf.keras.layers.Flatten()(tf.keras.layers.BatchNormalization()(layer(inputs)))
    model = tf.keras.Model(inputs, outputs)
    model.compile("adam", "mse")
    x = inputs_for(spec, n=16)
    model.fit(x, np.zeros_like(model(x).numpy()), epochs=2, batch_size=8, verbose=0)
    (quantizer,) = bayesian_quantizers(model)
    quantizer.reconstruction.assign(np.random.default_rng(2).uniform(
        0.5, 3.0, quantizer.reconstruction.shape))
    flatbuffer = bl.convert.convert(model)
    return bl.convert.compare(model, flatbuffer, inputs_for(spec, n=8, seed=3)), flatbuffer


@pytest.mark.parametrize("spec", SUPPORTED, ids=IDS)
def test_lce_conversion_matches_keras(spec):
    agreement, flatbuffer = converted_agreement(spec)
    assert agreement.max_abs_diff < 1e-4, agreement
    census = bl.convert.op_census(flatbuffer)
    assert all(census[op] == 1 or op == "FULLY_CONNECTED" and census[op] > 0
               for op in LCE_OPS[spec[0].__name__].split(" + ")), census


@pytest.mark.parametrize("layer_class, input_shape, kwargs, argument", REFUSED,
                         ids=[f"{r[0].__name__}-{r[3]}" for r in REFUSED])
def test_unsupported_kernels_are_refused_at_build_with_the_alternative(
        layer_class, input_shape, kwargs, argument):
    layer = layer_class(**kwargs, name="refused", **{argument: "bayesian_sign"})
    with pytest.raises(NotImplementedError,
                       match=f"Layer 'refused' \\({layer_class.__name__}\\) uses BayesianSign "
                             f"as its {argument}, which is not supported.*Use {argument}="
                             f"'ste_sign'"):
        layer(tf.keras.Input(input_shape))
    assert not lq.context.should_quantize()


@pytest.mark.parametrize("layer_class, input_shape, kwargs, argument", REFUSED[:2],
                         ids=[r[0].__name__ for r in REFUSED[:2]])
def test_bayesianize_names_a_transposed_kernel_it_cannot_take(layer_class, input_shape, kwargs,
                                                              argument):
    inputs = tf.keras.Input(input_shape)
    layer = layer_class(**kwargs, name="upsample", kernel_quantizer="ste_sign",
                        kernel_constraint="weight_clip")
    model = tf.keras.Model(inputs, tf.keras.layers.BatchNormalization()(layer(inputs)))
    with pytest.raises(NotImplementedError, match="Layer 'upsample'.*transposed convolution"):
        bl.bayesianize(model)


PAGE = pathlib.Path(__file__).parents[1] / "docs" / "compatibility.md"


def render():
    """docs/compatibility.md: the layer table, each cell the outcome of a test above."""
    passed = "yes"
    lines = [
        "# Compatibility: BayesianSign in Larq's layers",
        "",
        "Generated from `tests/test_conformance.py` (`python tests/test_conformance.py > "
        "docs/compatibility.md`); a test fails when this page and the tests differ. Each "
        "\"yes\" is a test of that module, for that layer type, with `\"bayesian_sign\"` "
        "as the quantizer named in the second column:",
        "",
        "* **forward**: the output equals the float Keras layer whose kernel is "
        "sign(x) / mean(W), computed in NumPy with W fitted to the kernel.",
        "* **train**: one Adam step on a mean-squared-error loss with lam = nu = 1: the "
        "loss is finite and W, mu_pos, mu_neg, log_sigma_pos and log_sigma_neg all move.",
        "* **save / load**: `.keras`, H5 and SavedModel give the same predictions and the "
        "same W, mu, sigma, lam and nu.",
        "* **clone**: `Model.from_config`, `tf.keras.models.clone_model` and the layer's "
        "`from_config` fit W, mu and sigma to the new kernel (not W = 1), and predict as "
        "the original once given its weights.",
        "* **summary**: `lq.models.summary` counts the kernel in its 1-bit column.",
        "* **mixed precision**: under `mixed_float16` the quantizer's variables and its "
        "loss are float32, the output float16 within half-precision rounding of the "
        "float32 reference, and a train step moves W.",
        "* **LCE**: `bl.convert.convert` (BatchNorm after the layer, W far from 1) agrees "
        "with Keras to 1e-4 on random inputs; the column names the TFLite op that "
        "computes the layer.",
        "",
        "| Larq layer | BayesianSign as | forward | train | save / load | clone | summary "
        "| mixed precision | LCE |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for layer_class, *_ in SUPPORTED:
        name = layer_class.__name__
        lines.append(f"| `{name}` | `{quantizer_argument(layer_class)}` | "
                     + " | ".join([passed] * 6) + f" | yes: `{LCE_OPS[name]}` |")
    for layer_class, _, _, argument in REFUSED:
        lines.append(f"| `{layer_class.__name__}` | `{argument}` | refused | refused | "
                     "refused | refused | refused | refused | refused |")
    lines += [
        "",
        "\"refused\": building the layer raises `NotImplementedError` naming the layer and "
        "the alternative (`test_unsupported_kernels_are_refused_at_build_with_the_"
        "alternative`). BayesianSign fits its mixture and scale per output channel, the "
        "last kernel axis; a transposed convolution's kernel holds its input channels "
        "there, and a depthwise kernel its depth multiplier. Use `\"ste_sign\"` for "
        "those kernels (a separable convolution keeps BayesianSign on its pointwise "
        "kernel). `bl.bayesianize` of a model with a binary transposed convolution raises "
        "the same error, naming the layer. The error is a `NotImplementedError` because "
        "TensorFlow replaces a `ValueError` raised while it converts a kernel by an "
        "unrelated one.",
        "",
        "Also tested elsewhere: one BayesianSign shared by two layers is refused (\"Use "
        "one BayesianSign per layer\", tests/test_reliability.py); Larq's `metrics="
        "[\"flip_ratio\"]` and `lq.context.metrics_scope([\"flip_ratio\"])` give the "
        "flip ratio Larq's `FlipRatio` defines, and `clip_value=None` disables gradient "
        "clipping as in `SteSign` (tests/test_quantizers.py); a separable convolution with "
        "binary depthwise and BayesianSign pointwise kernels, with or without bias, "
        "debayesianizes and converts to the Keras outputs (tests/test_bayesianize.py).",
        "",
    ]
    return "\n".join(lines)


def test_the_compatibility_page_is_this_table():
    assert PAGE.read_text() == render()


if __name__ == "__main__":
    sys.stdout.write(render())
