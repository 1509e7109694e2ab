"""Two-step training: a step-1 model (binary activations, real kernels) to step 2."""

import numpy as np
import pytest
import tensorflow as tf

import bayes_larq as bl
from bayes_larq import staged
from bayes_larq.quantizers import BayesianSign, binary_kernels

CE = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def trained_step1(seed=0):
    tf.keras.utils.set_random_seed(seed)
    model = bl.models.get("small_cnn", num_classes=10, input_shape=(28, 28, 1), bonn=False,
                          precision="activations", width=4)
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, (64, 28, 28, 1)).astype(np.float32)
    model.compile(tf.keras.optimizers.Adam(1e-2), CE)
    model.fit(x, rng.integers(0, 10, 64), batch_size=16, epochs=1, verbose=0)
    return model, x


def scaled_sign_reference(step1):
    """Step 1 with each binarized kernel x replaced by mean_channel|x| * sign(x)."""
    reference = tf.keras.models.clone_model(step1)
    reference.set_weights(step1.get_weights())
    for layer in staged.binary_activation_layers(reference):
        x = layer.kernel.numpy()
        alpha = np.abs(x.reshape(-1, x.shape[-1])).mean(axis=0)
        layer.kernel.assign(alpha * np.where(x >= 0, 1.0, -1.0))
    return reference


def test_the_step1_model_binarizes_activations_and_keeps_real_kernels():
    step1, _ = trained_step1()
    layers = staged.binary_activation_layers(step1)
    assert [layer.name for layer in layers] == [f"unit{i}_conv" for i in range(1, 5)]
    assert binary_kernels(step1) == []
    assert any(np.abs(layer.kernel.numpy()).max() > 0 for layer in layers)


@pytest.mark.parametrize("quantizer", ["ste_sign", "bayesian_sign",
                                       BayesianSign(lam=1e-5, scale="channel")])
def test_step2_keeps_every_weight_and_predicts_as_the_scaled_sign_of_step1(quantizer):
    step1, x = trained_step1()
    step2 = staged.binarize_kernels(step1, quantizer)
    kernels = binary_kernels(step2)
    assert [k.layer.name for k in kernels] == [f"unit{i}_conv" for i in range(1, 5)]
    for layer in step2.layers:
        original = step1.get_layer(layer.name)
        if isinstance(layer, tf.keras.layers.BatchNormalization):
            np.testing.assert_array_equal(layer.gamma.numpy(), original.gamma.numpy())
            np.testing.assert_array_equal(layer.beta.numpy(), original.beta.numpy())
        elif hasattr(layer, "kernel"):
            np.testing.assert_array_equal(layer.kernel.numpy(), original.kernel.numpy())
    expected = scaled_sign_reference(step1).predict(x, verbose=0)
    np.testing.assert_allclose(step2.predict(x, verbose=0), expected, rtol=1e-4, atol=1e-4)
    step2.compile(tf.keras.optimizers.Adam(1e-3), CE)
    assert np.isfinite(step2.fit(x, np.zeros(64), epochs=1, verbose=0).history["loss"][0])


def test_binarize_kernels_refuses_models_without_step1_layers():
    binary = bl.models.get("small_cnn", num_classes=10, input_shape=(28, 28, 1), bonn=False,
                           width=4)
    with pytest.raises(ValueError, match="no layer with a 1-bit input quantizer and a real"):
        staged.binarize_kernels(binary)
    step1, _ = trained_step1()
    with pytest.raises(ValueError, match="not a 1-bit quantizer"):
        staged.binarize_kernels(step1, "dorefa_quantizer")
