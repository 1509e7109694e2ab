"""bl.convert: the binarization margin that explains Keras-vs-TFLite outliers, and the
parity check's error."""

import bayes_larq  # noqa: F401  (sets up tf_keras before tf.keras is touched)
import larq as lq
import numpy as np
import pytest
import tensorflow as tf

from bayes_larq import convert


def two_binarizations():
    """x -> ste_sign -> binary dense (3) -> dense (2) -> ste_sign -> binary dense (2).

    Seeded: with unseeded weights the test depended on the tests run before it (a sign
    sum of 0 makes the float layer's output, and so the margin, exactly 0)."""
    tf.keras.utils.set_random_seed(0)
    inputs = tf.keras.Input((4,))
    hidden = lq.layers.QuantDense(3, input_quantizer="ste_sign", kernel_quantizer="ste_sign",
                                  use_bias=False, name="first")(inputs)
    hidden = tf.keras.layers.Dense(2, name="float")(hidden)
    outputs = lq.layers.QuantDense(2, input_quantizer="ste_sign",
                                   kernel_quantizer="ste_sign", name="second")(hidden)
    return tf.keras.Model(inputs, outputs)


def test_binarization_margin_is_the_smallest_binarized_magnitude_per_sample():
    model = two_binarizations()
    x = np.array([[0.5, -2.0, 3.0, 1e-7], [1.0, -1.0, 2.0, -4.0]], np.float32)
    dense = model.get_layer("float")
    first = np.sign(x) @ np.sign(model.get_layer("first").kernel.numpy())
    second = first @ dense.kernel.numpy() + dense.bias.numpy()
    expected = np.minimum(np.abs(x).min(axis=1), np.abs(second).min(axis=1))
    np.testing.assert_allclose(convert.binarization_margin(model, x), expected, rtol=1e-6)
    assert convert.binarization_margin(model, x)[0] == pytest.approx(1e-7)


def test_binarization_margin_ignores_multi_bit_input_quantizers():
    inputs = tf.keras.Input((3,))
    hidden = lq.layers.QuantDense(3, input_quantizer=lq.quantizers.DoReFa(k_bit=2),
                                  kernel_quantizer="ste_sign")(inputs)
    outputs = lq.layers.QuantDense(2, input_quantizer="ste_sign")(hidden)
    model = tf.keras.Model(inputs, outputs)
    x = np.array([[1e-9, 2.0, -3.0]], np.float32)
    expected = np.abs(model.layers[1](x).numpy()).min(axis=1)
    np.testing.assert_allclose(convert.binarization_margin(model, x), expected, rtol=1e-6)


class Subclassed(tf.keras.Model):
    def __init__(self):
        super().__init__()
        self.dense = lq.layers.QuantDense(2, input_quantizer="ste_sign")

    def call(self, inputs):
        return self.dense(inputs)


def test_binarization_margin_names_what_it_cannot_reach():
    with pytest.raises(ValueError, match="subclassed"):
        convert.binarization_margin(Subclassed(), np.ones((1, 3), np.float32))
    float_model = tf.keras.Sequential([tf.keras.Input((3,)), tf.keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="no 1-bit input_quantizer"):
        convert.binarization_margin(float_model, np.ones((1, 3), np.float32))
    inner = two_binarizations()
    outer_inputs = tf.keras.Input((4,))
    outer = tf.keras.Model(outer_inputs, inner(outer_inputs))
    with pytest.raises(ValueError, match=r"nested models \(\['first', 'second'\]\)"):
        convert.binarization_margin(outer, np.ones((1, 4), np.float32))


def test_agreement_check_names_both_tolerances():
    agreement = convert.Agreement(max_abs_diff=0.3, top1_agreement=0.99, samples=100)
    with pytest.raises(ValueError, match=r"difference 0\.3 \(tolerance 0\.001\).*0\.9900"):
        agreement.check()
    assert agreement.check(atol=0.5, min_top1_agreement=0.99) is agreement


def test_agreement_of_two_outputs_matches_a_hand_count():
    keras_out = np.array([[1.0, 2.0], [3.0, 0.0], [0.5, 0.25]], np.float32)
    tflite_out = np.array([1.0, 2.5, 0.0, 3.0, 0.5, 0.0], np.float32)  # flat, as TFLite may give
    agreement = convert.Agreement.of(keras_out, tflite_out)
    assert agreement == convert.Agreement(max_abs_diff=3.0, top1_agreement=2 / 3, samples=3)
