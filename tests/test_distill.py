"""Distillation: the distribution loss against NumPy, BONN with a frozen teacher."""

import larq as lq
import numpy as np
import pytest
import tensorflow as tf

import bayes_larq as bl
from mirrored import single_and_mirrored
from bayes_larq.losses import distribution_loss
from bayes_larq.training import BONN

CE = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def numpy_kd(teacher, student, temperature):
    def log_softmax(z):
        z = z - z.max(axis=1, keepdims=True)
        return z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    log_p, log_q = log_softmax(teacher / temperature), log_softmax(student / temperature)
    value = temperature**2 * (np.exp(log_p) * (log_p - log_q)).sum(axis=1)
    gradient = temperature * (np.exp(log_q) - np.exp(log_p))  # d value_b / d student_b
    return value, gradient


@pytest.mark.parametrize("temperature", [1.0, 2.0, 4.0])
def test_distribution_loss_value_and_gradient_match_numpy(temperature):
    rng = np.random.default_rng(0)
    teacher = rng.normal(0, 3, (5, 7)).astype(np.float32)
    student = tf.Variable(rng.normal(0, 3, (5, 7)).astype(np.float32))
    with tf.GradientTape() as tape:
        value = distribution_loss(teacher, student, temperature)
        total = tf.reduce_sum(value)
    expected_value, expected_gradient = numpy_kd(teacher, student.numpy(), temperature)
    np.testing.assert_allclose(value.numpy(), expected_value, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(tape.gradient(total, student).numpy(), expected_gradient,
                               rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(distribution_loss(teacher, teacher, temperature).numpy(), 0,
                               atol=1e-5)


def student(seed=0, classes=3, synchronized=False):
    tf.keras.utils.set_random_seed(seed)
    inputs = tf.keras.Input((6, 6, 2))
    x = tf.keras.layers.Conv2D(4, 3, padding="same", use_bias=False)(inputs)
    x = tf.keras.layers.BatchNormalization(synchronized=synchronized)(x)
    x = lq.layers.QuantConv2D(6, 3, padding="same", pad_values=1.0, use_bias=False,
                              input_quantizer="ste_sign", kernel_quantizer=bl.BayesianSign(),
                              kernel_constraint="weight_clip")(x)
    x = tf.keras.layers.BatchNormalization(synchronized=synchronized)(x)
    x = tf.keras.layers.GlobalAveragePooling2D()(x)
    return tf.keras.Model(inputs, tf.keras.layers.Dense(classes)(x))


def float_teacher(seed=5, classes=3, input_shape=(6, 6, 2)):
    tf.keras.utils.set_random_seed(seed)
    inputs = tf.keras.Input(input_shape)
    x = tf.keras.layers.Conv2D(5, 3, padding="same", activation="relu")(inputs)
    x = tf.keras.layers.BatchNormalization()(x)
    x = tf.keras.layers.GlobalAveragePooling2D()(x)
    return tf.keras.Model(inputs, tf.keras.layers.Dense(classes)(x), name="teacher")


def batch(n=24, seed=1):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 6, 6, 2)).astype(np.float32), rng.integers(0, 3, n)


def distilling(kd_weight=1.0, temperature=1.0, **bonn_kwargs):
    bonn = BONN(student(), teacher=float_teacher(), kd_weight=kd_weight,
                temperature=temperature, **bonn_kwargs)
    bonn.compile(tf.keras.optimizers.Adam(1e-2), CE)
    return bonn


@pytest.mark.parametrize("kd_weight, temperature", [(1.0, 1.0), (0.5, 2.0)])
def test_logged_terms_add_up_to_the_loss_and_match_numpy(kd_weight, temperature):
    x, y = batch()
    bonn = distilling(kd_weight, temperature, theta=0.1)
    teacher_logits = bonn.teacher.predict(x, verbose=0)
    student_logits = bonn.classifier.predict(x, verbose=0)
    logs = bonn.evaluate(x, y, batch_size=len(x), verbose=0, return_dict=True)
    expected_kd = numpy_kd(teacher_logits, student_logits, temperature)[0].mean()
    assert logs["kd_loss"] == pytest.approx(expected_kd, rel=1e-4)
    expected = ((1 - kd_weight) * logs["ce_loss"] + kd_weight * logs["kd_loss"]
                + logs["kernel_loss"] + logs["feature_loss"])
    assert logs["loss"] == pytest.approx(expected, rel=1e-5)
    history = bonn.fit(x, y, batch_size=8, epochs=1, verbose=0).history
    assert list(history)[:5] == ["loss", "ce_loss", "kd_loss", "kernel_loss", "feature_loss"]


def test_the_student_gets_the_gradient_of_the_distribution_loss_alone():
    x, y = batch()
    bonn = distilling(1.0, 1.0, feature_loss=False)
    for quantizer in bl.quantizers.bayesian_quantizers(bonn.classifier):
        quantizer.lam.assign(0.0)
    dense = bonn.classifier.layers[-1]
    teacher_logits = bonn.teacher(x, training=False).numpy()
    with tf.GradientTape() as tape:
        _, logits = bonn._network(x, training=True)
        loss = tf.reduce_mean(distribution_loss(teacher_logits, logits))
    expected = tape.gradient(loss, dense.kernel).numpy()
    kernel_before = dense.kernel.numpy()
    bonn.compile(tf.keras.optimizers.SGD(1.0), CE)
    bonn.train_on_batch(x, y)
    np.testing.assert_allclose(kernel_before - dense.kernel.numpy(), expected, rtol=1e-4,
                               atol=1e-7)


def test_the_teacher_is_frozen_and_not_part_of_the_classifier():
    x, y = batch()
    bonn = distilling()
    teacher_weights = [w.copy() for w in bonn.teacher.get_weights()]
    bonn.fit(x, y, batch_size=8, epochs=2, verbose=0)
    for before, after in zip(teacher_weights, bonn.teacher.get_weights()):
        np.testing.assert_array_equal(before, after)  # BatchNorm statistics included
    teacher_ids = {id(v) for v in bonn.teacher.weights}
    assert not teacher_ids & {id(v) for v in bonn.trainable_variables}
    assert not teacher_ids & {id(v) for v in bonn.classifier.weights}
    flatbuffer = bl.convert.convert(bonn.classifier)
    assert bl.convert.op_census(flatbuffer)["LceBconv2d"] == 1


def test_save_and_load_restores_the_teacher_and_continues_exactly(tmp_path):
    x, y = batch()
    bonn = distilling(0.5, 2.0)
    bonn.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False)
    bonn.save(tmp_path / "bonn.keras")
    loaded = tf.keras.models.load_model(tmp_path / "bonn.keras")
    assert (loaded.kd_weight, loaded.temperature) == (0.5, 2.0)
    assert loaded.teacher.trainable is False
    for mine, theirs in zip(bonn.teacher.get_weights(), loaded.teacher.get_weights()):
        np.testing.assert_array_equal(mine, theirs)  # restored from the file
    for model in (bonn, loaded):
        model.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False)
    for mine, theirs in zip(bonn.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(mine, theirs)


@pytest.mark.parametrize("teacher, kwargs, message", [
    (lambda: float_teacher(classes=4), {}, "same classes"),
    (lambda: float_teacher(input_shape=(8, 8, 2)), {}, "must take the student's input"),
    (lambda: "float-twin", {}, "must be a Keras model"),
    (float_teacher, {"kd_weight": 1.5}, "in \\[0, 1\\]"),
    (float_teacher, {"temperature": 0}, "`temperature` must be a finite number > 0"),
])
def test_bad_teachers_and_settings_are_refused(teacher, kwargs, message):
    with pytest.raises(ValueError, match=message):
        BONN(student(), teacher=teacher(), **kwargs)


def mirrored_distillation():
    """A distilling BONN and one batch, for `mirrored.single_and_mirrored`."""
    bonn = BONN(student(synchronized=True), teacher=float_teacher(), kd_weight=0.5,
                temperature=2.0)
    bonn.compile(tf.keras.optimizers.SGD(0.1), CE)
    return (bonn, *batch(n=16))


def test_mirrored_strategy_step_equals_single_device(tmp_path):
    runs = single_and_mirrored(tmp_path, "test_distill", "mirrored_distillation")
    single, mirrored = runs["single"], runs["mirrored"]
    for key in ("loss", "ce_loss", "kd_loss", "kernel_loss"):
        assert mirrored["logs"][key] == pytest.approx(single["logs"][key], rel=1e-4,
                                                      abs=1e-6), key
    for a, b in zip(single["weights"], mirrored["weights"]):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), atol=1e-5)


def test_without_a_teacher_bonn_saves_what_it_saved_before_distillation_existed(tmp_path):
    # A checkpoint written before distillation existed has no kd_loss tracker; BONN
    # without a teacher must not expect one, or those checkpoints no longer load.
    bonn = BONN(student())
    bonn.compile(tf.keras.optimizers.Adam(1e-2), CE)
    x, y = batch()
    bonn.fit(x, y, batch_size=8, epochs=1, verbose=0)
    assert "kd_loss" not in [m.name for m in bonn.metrics]
    assert not any("kd_loss" in v.name for v in bonn.variables)
