"""Every custom object bayes_larq registers with Keras survives a config round trip and,
inside a model, saving and loading in each format that can hold it (.keras, and H5 for
functional models): the loaded model predicts what the original predicted.

The objects come from Keras' registry, not from a list kept here, so a newly registered
object without a case below fails `test_every_registered_object_has_a_case`.
"""

import bayes_larq  # noqa: F401  - selects tf_keras before TensorFlow is touched

import larq as lq
import numpy as np
import pytest
import tensorflow as tf

import bayes_larq.models  # noqa: F401  - registers htanh
from bayes_larq.models.common import htanh
from bayes_larq.flips import FlipThreshold
from bayes_larq.layers import LearnableShift, RPReLU
from bayes_larq.quantizers import BayesianSign
from bayes_larq.training import BONN, BayesianFeatureLoss, ScaledSchedule


def registered_objects():
    """{registered name: object} for every Keras custom object defined in bayes_larq."""
    return {name: obj for name, obj in tf.keras.utils.get_custom_objects().items()
            if str(getattr(obj, "__module__", "")).startswith("bayes_larq")}


def quantized_classifier(kernel_quantizer="ste_sign", activation="relu"):
    """A small functional Larq classifier: binary conv, BatchNorm, pooling, logits."""
    tf.keras.utils.set_random_seed(0)
    inputs = tf.keras.Input((8, 8, 1))
    x = lq.layers.QuantConv2D(4, 3, padding="same", kernel_quantizer=kernel_quantizer,
                              kernel_constraint="weight_clip", use_bias=False)(inputs)
    x = tf.keras.layers.BatchNormalization()(x)
    x = tf.keras.layers.Activation(activation)(x)
    x = tf.keras.layers.GlobalAveragePooling2D(name="features")(x)
    outputs = tf.keras.layers.Dense(3, name="logits")(x)
    return tf.keras.Model(inputs, outputs)


def images(n=4):
    return np.random.default_rng(1).normal(size=(n, 8, 8, 1)).astype(np.float32)


def saved_and_loaded(model, path):
    model.save(path)
    return tf.keras.models.load_model(path)


def bonn_model(**bonn_kwargs):
    bonn = BONN(quantized_classifier(BayesianSign(lam=1e-3, nu=1e-2)), theta=1e-2,
                **bonn_kwargs)
    schedule = ScaledSchedule(tf.keras.optimizers.schedules.CosineDecay(1e-3, 10), 0.5)
    bonn.compile(tf.keras.optimizers.Adam(schedule),
                 tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    bonn.fit(images(8), np.arange(8) % 3, epochs=1, batch_size=4, verbose=0)
    return bonn


# name -> (a fresh instance, the formats a model holding it can be saved in)
CASES = {
    "BayesianSign": (lambda: BayesianSign(lam=2e-4, nu=3e-2, reduction="sum",
                                          scale="channel"), (".keras", ".h5")),
    "bayesian_sign": (lambda: "bayesian_sign", (".keras", ".h5")),
    "BayesianFeatureLoss": (lambda: BayesianFeatureLoss(5, theta=2e-3, min_sigma=1e-2),
                            (".keras",)),
    "ScaledSchedule": (lambda: ScaledSchedule(
        tf.keras.optimizers.schedules.CosineDecay(0.1, 100), 0.25), (".keras",)),
    "BONN": (bonn_model, (".keras",)),
    "FlipThreshold": (lambda: FlipThreshold("drift", 0.7, every_n_steps=3, decay=0.95),
                      (".keras",)),
    "bayes_larq>htanh": (lambda: htanh, (".keras", ".h5")),
    "LearnableShift": (lambda: LearnableShift(name="threshold"), (".keras", ".h5")),
    "RPReLU": (lambda: RPReLU(initial_slope=0.1), (".keras", ".h5")),
}
# Found by this test: tf_keras's H5 writer stores a registered function as the generic
# "function" class, which its H5 reader cannot resolve. strict: a fix makes it fail.
KNOWN_FAILURES = {("bayes_larq>htanh", ".h5"): "tf_keras H5 cannot reload a registered "
                  "activation function ('Unknown activation function: function')"}


def test_every_registered_object_has_a_case():
    assert sorted(registered_objects()) == sorted(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_serialization_round_trip(name):
    """serialize -> deserialize by the registered name gives an equal object."""
    original = CASES[name][0]()
    if isinstance(original, str):  # an alias: it must resolve to its class
        resolved = tf.keras.utils.get_registered_object(original)
        assert resolved is BayesianSign
        return
    if callable(original) and not hasattr(original, "get_config"):  # a function
        serialized = tf.keras.utils.serialize_keras_object(original)
        assert tf.keras.utils.deserialize_keras_object(serialized) is original
        assert tf.keras.utils.deserialize_keras_object(name) is original
        return
    config = original.get_config()
    if isinstance(original, BONN):
        rebuilt = BONN.from_config(config)
        assert rebuilt.get_config() == config
        return
    serialized = tf.keras.utils.serialize_keras_object(original)
    rebuilt = tf.keras.utils.deserialize_keras_object(serialized)
    assert type(rebuilt) is type(original)
    assert rebuilt.get_config() == config


def _model_holding(name):
    """A model that uses the object `name` and a batch to compare predictions on."""
    obj = CASES[name][0]()
    if name in ("BayesianSign", "bayesian_sign"):
        return quantized_classifier(obj), images()
    if name == "bayes_larq>htanh":
        return quantized_classifier(activation=obj), images()
    if name == "BONN":
        return obj, images()
    if name in ("LearnableShift", "RPReLU"):  # with trained-looking, non-initial weights
        model = tf.keras.Sequential([tf.keras.Input((8, 8, 1)), obj])
        rng = np.random.default_rng(3)
        obj.set_weights([rng.normal(size=w.shape) for w in obj.weights])
        return model, images()
    if name == "FlipThreshold":
        return bonn_model(flip_threshold=obj), images()
    if name == "ScaledSchedule":
        model = quantized_classifier()
        model.compile(tf.keras.optimizers.SGD(obj), "mse")
        return model, images()
    # BayesianFeatureLoss: a model computing L_F of its features for given labels.
    features = tf.keras.Input((6,))
    labels = tf.keras.Input((), dtype=tf.int32)
    model = tf.keras.Model([features, labels], obj(features, labels))
    rng = np.random.default_rng(2)
    return model, [rng.normal(size=(4, 6)).astype(np.float32), np.array([0, 1, 4, 1])]


@pytest.mark.parametrize("name, suffix", [
    pytest.param(n, s, marks=[pytest.mark.xfail(reason=KNOWN_FAILURES[n, s], strict=True)]
                 if (n, s) in KNOWN_FAILURES else [])
    for n in sorted(CASES) for s in CASES[n][1]])
def test_saved_and_loaded_models_predict_the_same(name, suffix, tmp_path):
    model, batch = _model_holding(name)
    expected = model.predict(batch, verbose=0)
    loaded = saved_and_loaded(model, tmp_path / f"model{suffix}")
    np.testing.assert_allclose(loaded.predict(batch, verbose=0), expected, rtol=1e-6, atol=1e-6)
    if name == "ScaledSchedule":
        schedule = tf.keras.optimizers.schedules.deserialize(
            loaded.optimizer.get_config()["learning_rate"])
        assert isinstance(schedule, ScaledSchedule)
        # cosine decay at step 0 is the initial rate: 0.1 * 0.25
        assert float(schedule(0)) == pytest.approx(0.025)
