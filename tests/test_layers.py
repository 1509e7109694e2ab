"""bayes_larq.layers (ReActNet's LearnableShift and RPReLU) and the builders' options that
place them. References are NumPy formulas and the closed-form gradients of the docstrings;
conversion is checked against the converted model's own outputs."""

import bayes_larq  # noqa: F401  (sets up tf_keras before tf.keras is touched)

import collections

import numpy as np
import pytest
import tensorflow as tf

from bayes_larq import convert, models, staged
from bayes_larq.layers import LearnableShift, RPReLU

RNG = np.random.default_rng(0)
X = RNG.normal(size=(3, 4, 4, 5)).astype(np.float32)
UPSTREAM = RNG.normal(size=X.shape).astype(np.float32)  # dL/dy of a linear loss sum(U*y)


def built(layer, values):
    """`layer` built on X's shape with its weights set to `values` (in weight order)."""
    layer.build(X.shape)
    for weight, value in zip(layer.weights, values):
        weight.assign(value)
    return layer


def output_and_gradients(layer):
    x = tf.constant(X)
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.reduce_sum(UPSTREAM * layer(x))
    grads = tape.gradient(loss, [x, *layer.weights])
    return layer(x).numpy(), [g.numpy() for g in grads]


def test_learnable_shift_adds_one_value_per_channel_with_its_gradient():
    beta = RNG.normal(size=5).astype(np.float32)
    layer = built(LearnableShift(), [beta])
    assert [w.name.split("/")[-1] for w in layer.weights] == ["shift:0"]
    y, (dx, dbeta) = output_and_gradients(layer)
    np.testing.assert_allclose(y, X + beta, rtol=1e-6)
    np.testing.assert_allclose(dx, UPSTREAM, rtol=1e-6)
    np.testing.assert_allclose(dbeta, UPSTREAM.sum(axis=(0, 1, 2)), rtol=1e-5)


def test_learnable_shift_moves_the_sign_threshold():
    """sign(x + beta) flips exactly the entries between 0 and -beta."""
    beta = np.full(5, 0.5, np.float32)
    layer = built(LearnableShift(), [beta])
    signs = np.sign(layer(tf.constant(X)).numpy())
    np.testing.assert_array_equal(signs, np.where(X > -0.5, 1.0, -1.0))


def test_rprelu_matches_its_formula_and_closed_form_gradients():
    gamma, slope, zeta = (RNG.normal(size=5).astype(np.float32) for _ in range(3))
    layer = built(RPReLU(), [gamma, slope, zeta])
    assert [w.name.split("/")[-1] for w in layer.weights] == [
        "input_shift:0", "slope:0", "output_shift:0"]
    y, (dx, dgamma, dslope, dzeta) = output_and_gradients(layer)
    z = X - gamma
    np.testing.assert_allclose(y, np.where(z > 0, z, slope * z) + zeta, rtol=1e-5, atol=1e-6)
    local = np.where(z > 0, 1.0, slope)
    np.testing.assert_allclose(dx, UPSTREAM * local, rtol=1e-5, atol=1e-6)
    channels = (0, 1, 2)
    np.testing.assert_allclose(dgamma, -(UPSTREAM * local).sum(axis=channels), rtol=1e-4)
    np.testing.assert_allclose(dslope, (UPSTREAM * np.minimum(z, 0)).sum(axis=channels),
                               rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(dzeta, UPSTREAM.sum(axis=channels), rtol=1e-4)


def test_rprelu_starts_as_prelu_with_the_initial_slope():
    layer = RPReLU(initial_slope=0.1)
    np.testing.assert_allclose(layer(tf.constant([[-2.0, 3.0]])).numpy(), [[-0.2, 3.0]])
    np.testing.assert_allclose(RPReLU()(tf.constant([[-2.0, 3.0]])).numpy(), [[-0.5, 3.0]])


@pytest.mark.parametrize("layer", [LearnableShift(name="s"), RPReLU(initial_slope=0.1)])
def test_config_round_trip(layer):
    rebuilt = tf.keras.utils.deserialize_keras_object(
        tf.keras.utils.serialize_keras_object(layer))
    assert type(rebuilt) is type(layer) and rebuilt.get_config() == layer.get_config()


@pytest.mark.parametrize("slope", [-0.1, float("nan"), "a", True, None])
def test_bad_initial_slope_is_refused_naming_it(slope):
    with pytest.raises(ValueError, match="initial_slope"):
        RPReLU(initial_slope=slope)


@pytest.mark.parametrize("layer", [LearnableShift(), RPReLU()])
def test_an_unknown_channel_count_is_refused(layer):
    with pytest.raises(ValueError, match="known number of channels"):
        layer.build(tf.TensorShape([None, None]))


@pytest.mark.parametrize("layer_type", [LearnableShift, RPReLU])
def test_mixed_precision_computes_in_float16_with_float32_weights(layer_type):
    layer = layer_type(dtype="mixed_float16")
    y = layer(tf.constant(X))
    assert y.dtype == tf.float16 and all(w.dtype == tf.float32 for w in layer.weights)
    reference = layer_type()
    reference.build(X.shape)
    reference.set_weights(layer.get_weights())
    np.testing.assert_allclose(y.numpy(), reference(tf.constant(X)).numpy(), atol=5e-3)


# --- the builders' options ------------------------------------------------------------------

def layer_types(model):
    return collections.Counter(type(layer).__name__ for layer in model.layers)


@pytest.mark.parametrize("scope, shifts", [("paper", 4), ("full", 4 + 2 + 1)])
def test_options_place_a_shift_before_every_sign_and_rprelu_after_every_unit(scope, shifts):
    model = models.get("small_cnn", bonn=False, scope=scope, learnable_threshold=True,
                       rprelu=True)
    counts = layer_types(model)
    assert counts["LearnableShift"] == shifts and counts["RPReLU"] == 4
    for layer in model.layers:
        if getattr(layer, "input_quantizer", None) is not None:
            assert isinstance(layer._inbound_nodes[0].inbound_layers, LearnableShift)
        if isinstance(layer, RPReLU):
            assert isinstance(layer._inbound_nodes[0].inbound_layers, tf.keras.layers.Add)
    plain = layer_types(models.get("small_cnn", bonn=False, scope=scope))
    assert plain["LearnableShift"] == plain["RPReLU"] == 0


def test_the_float_twin_and_step1_model_have_the_students_extra_weights():
    options = dict(bonn=False, learnable_threshold=True, rprelu=True)
    shapes = {precision: {(w.name, tuple(w.shape))
                          for layer in models.get("small_cnn", precision=precision,
                                                  **options).layers
                          if isinstance(layer, (LearnableShift, RPReLU))
                          for w in layer.weights}
              for precision in ("binary", "float", "activations")}
    assert len(shapes["binary"]) == 4 + 3 * 4
    assert shapes["binary"] == shapes["float"] == shapes["activations"]


@pytest.mark.parametrize("value", [1, "yes", None])
def test_non_boolean_options_are_refused(value):
    for option in ("learnable_threshold", "rprelu"):
        with pytest.raises(ValueError, match=f"`{option}` must be True or False"):
            models.get("small_cnn", **{option: value})


def randomized(model, seed=0):
    """Non-trivial values in every weight of the new layers and of BatchNorm."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, (LearnableShift, RPReLU, tf.keras.layers.BatchNormalization)):
            layer.set_weights([rng.uniform(0.2, 1.0, w.shape) if "variance" in w.name
                               or "gamma" in w.name or "slope" in w.name
                               else rng.normal(0, 0.3, w.shape) for w in layer.weights])
    return model


def test_reactnet_small_cnn_saves_and_loads(tmp_path):
    tf.keras.utils.set_random_seed(0)
    model = randomized(models.get("small_cnn", learnable_threshold=True, rprelu=True))
    x = np.random.default_rng(1).uniform(-1, 1, (4, 28, 28, 1)).astype(np.float32)
    model.save(tmp_path / "model.keras")
    loaded = tf.keras.models.load_model(tmp_path / "model.keras")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0),
                               rtol=1e-6, atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("scope", ["paper", "full"])
def test_reactnet_small_cnn_converts_with_binary_kernels_and_agrees(scope):
    tf.keras.utils.set_random_seed(3)
    model = randomized(models.get("small_cnn", scope=scope, learnable_threshold=True,
                                  rprelu=True))
    flatbuffer = convert.convert(model)
    census = convert.op_census(flatbuffer)
    assert census["LceBconv2d"] == (4 if scope == "paper" else 6)
    assert census["PRELU"] == 4
    x = np.random.default_rng(1).uniform(-1, 1, (8, 28, 28, 1)).astype(np.float32)
    per_sample = np.abs(model.predict(x, verbose=0)
                        - convert.tflite_predict(flatbuffer, x)).max(axis=1)
    # A pre-sign value within float rounding of zero may flip one bit (see test_models).
    assert np.sum(per_sample <= 1e-3) >= 6 and np.median(per_sample) <= 1e-4, per_sample


def test_two_step_keeps_the_shift_and_rprelu_weights():
    tf.keras.utils.set_random_seed(0)
    step1 = randomized(models.get("small_cnn", bonn=False, precision="activations",
                                  learnable_threshold=True, rprelu=True, width=4))
    step2 = staged.binarize_kernels(step1)
    extra = [layer for layer in step1.layers if isinstance(layer, (LearnableShift, RPReLU))]
    assert len(extra) == 8
    for layer in extra:
        for kept, original in zip(step2.get_layer(layer.name).weights, layer.weights):
            np.testing.assert_array_equal(kept.numpy(), original.numpy())
