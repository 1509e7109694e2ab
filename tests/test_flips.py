"""The flip threshold: push of L_B at zero, calibrated lam, the in-step probe, diagnostics."""

import larq as lq
import numpy as np
import pytest
import tensorflow as tf

import bayes_larq as bl
from bayes_larq import callbacks, flips
from bayes_larq.losses import kernel_loss
from bayes_larq.mixture import Mixture
from bayes_larq.quantizers import BayesianSign, bayesian_kernels, binary_kernels
from bayes_larq.training import BONN

CE = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def classifier(kernel_quantizer="bayesian", seed=0, **bayesian_sign):
    """Two binary convolutions, each followed by BatchNorm, and a float head."""
    tf.keras.utils.set_random_seed(seed)
    inputs = tf.keras.Input((6, 6, 2))
    x = tf.keras.layers.Conv2D(4, 3, padding="same", use_bias=False)(inputs)
    for filters in (6, 8):
        quantizer = (BayesianSign(**bayesian_sign) if kernel_quantizer == "bayesian"
                     else kernel_quantizer)
        x = tf.keras.layers.BatchNormalization()(x)
        x = lq.layers.QuantConv2D(filters, 3, padding="same", pad_values=1.0, use_bias=False,
                                  input_quantizer="ste_sign", kernel_quantizer=quantizer,
                                  kernel_constraint="weight_clip")(x)
    x = tf.keras.layers.BatchNormalization()(x)
    x = tf.keras.layers.GlobalAveragePooling2D()(x)
    return tf.keras.Model(inputs, tf.keras.layers.Dense(3)(x))


def batch(n=32, seed=1):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 6, 6, 2)).astype(np.float32), rng.integers(0, 3, n)


def compiled(model, **bonn_kwargs):
    bonn = BONN(model, feature_loss=False, **bonn_kwargs)
    bonn.compile(tf.keras.optimizers.Adam(1e-2), CE)
    return bonn


def cross_entropy_gradients(model, x, y):
    """d CE / d latent kernel of every binary layer, by autodiff of the CE alone."""
    latents = [k.latent for k in binary_kernels(model)]
    with tf.GradientTape() as tape:
        loss = CE(y, model(x, training=True))
    return [g.numpy() for g in tape.gradient(loss, latents)]


def numpy_push_unit(quantizer, latent):
    """u = (w + nu mu_side / sigma_side^2) / n per element, in NumPy."""
    x = latent.reshape(-1, latent.shape[-1])
    w = quantizer.reconstruction.numpy().reshape(x.shape)
    positive = x >= 0
    mu = np.where(positive, quantizer.mu_pos.numpy(), quantizer.mu_neg.numpy())
    sigma = np.where(positive, quantizer.sigma_pos.numpy(), quantizer.sigma_neg.numpy())
    unit = w + float(quantizer.nu.numpy()) * mu / sigma**2
    return unit / (x.size if quantizer.reduction == "mean" else 1)


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_push_at_zero_is_the_kernel_loss_gradient_just_beside_zero(reduction):
    quantizer = BayesianSign(lam=0.3, nu=0.05, reduction=reduction)
    kernel = np.random.default_rng(0).normal(0, 0.1, (3, 3, 2, 4)).astype(np.float32)
    quantizer(tf.Variable(kernel))
    unit = flips.push_per_unit_lam(quantizer, kernel).numpy()
    np.testing.assert_allclose(unit, numpy_push_unit(quantizer, kernel), rtol=1e-5)
    # autodiff of L_B where every weight is moved to just beside zero on its side
    beside_zero = tf.Variable(np.where(kernel >= 0, 1e-7, -1e-7).astype(np.float32))
    with tf.GradientTape() as tape:
        mixture = Mixture(quantizer.mu_pos, quantizer.mu_neg, quantizer.sigma_pos,
                          quantizer.sigma_neg)
        loss = kernel_loss(beside_zero, quantizer.reconstruction, mixture, quantizer.lam,
                           quantizer.nu, reduction)
    gradient = tape.gradient(loss, beside_zero).numpy().reshape(-1, 4)
    push = flips.push_at_zero(quantizer, kernel).numpy()
    np.testing.assert_allclose(np.abs(gradient), push, rtol=1e-3)
    # the push points away from zero: down-hill is away from the sign change
    assert np.all(np.sign(-gradient) == np.where(kernel >= 0, 1, -1).reshape(-1, 4))


@pytest.mark.parametrize("q", [0.0, 0.37, 0.5, 0.9, 0.99])
def test_quantile_interpolates_as_numpy(q):
    values = np.random.default_rng(2).exponential(size=(7, 13)).astype(np.float32)
    np.testing.assert_allclose(flips.quantile(values, q).numpy(), np.quantile(values, q),
                               rtol=1e-6)


@pytest.mark.parametrize("arguments, message", [
    ({"rule": "quantile", "q": 1.0}, "in \\[0, 1\\)"),
    ({"rule": "quantile"}, "needs `q`"),
    ({"rule": "rebnn", "q": 0.5}, "takes no `q`"),
    ({"rule": "max"}, "`rule` must be one of"),
    ({"rule": "drift", "q": 0.5, "decay": 1.0}, "`decay` in \\(0, 1\\)"),
    ({"rule": "quantile", "q": 0.5, "decay": 0.9}, "does nothing"),
    ({"rule": "quantile", "q": 0.5, "every_n_steps": 0}, "every_n_steps"),
])
def test_bad_thresholds_are_refused(arguments, message):
    with pytest.raises(ValueError, match=message):
        flips.FlipThreshold(**arguments)


def test_bonn_without_bayesian_kernels_refuses_a_threshold():
    with pytest.raises(ValueError, match="has none"):
        BONN(classifier("ste_sign"), flip_threshold=flips.FlipThreshold("quantile", 0.5))


@pytest.mark.parametrize("q", [0.5, 0.9])
def test_calibrated_lam_matches_numpy_on_a_fixed_batch(q):
    x, y = batch()
    model = classifier(lam=1e-3, nu=1e-2, reduction="sum")
    bonn = compiled(model, flip_threshold=flips.FlipThreshold("quantile", q))
    gradients = cross_entropy_gradients(model, x, y)
    expected = [np.quantile(np.abs(g), q) / numpy_push_unit(k.quantizer, k.latent.numpy()).mean()
                for g, k in zip(gradients, bayesian_kernels(model))]
    bonn.train_on_batch(x, y)
    lams = [float(k.quantizer.lam.numpy()) for k in bayesian_kernels(model)]
    np.testing.assert_allclose(lams, expected, rtol=1e-4)


def test_drift_rule_takes_the_quantile_of_the_bias_corrected_average_gradient():
    x, y = batch()
    model = classifier(lam=1e-3, nu=1e-2, reduction="sum")
    q, decay = 0.7, 0.9
    bonn = compiled(model, flip_threshold=flips.FlipThreshold("drift", q, decay=decay))
    kernels = bayesian_kernels(model)
    first = cross_entropy_gradients(model, x, y)
    bonn.train_on_batch(x, y)
    second = cross_entropy_gradients(model, x, y)
    units = [numpy_push_unit(k.quantizer, k.latent.numpy()).mean() for k in kernels]
    bonn.train_on_batch(x, y)
    expected = []
    for g0, g1, unit in zip(first, second, units):
        average = (decay * (1 - decay) * g0 + (1 - decay) * g1) / (1 - decay**2)
        expected.append(np.quantile(np.abs(average), q) / unit)
    np.testing.assert_allclose([float(k.quantizer.lam.numpy()) for k in kernels], expected,
                               rtol=1e-4)


def test_rebnn_rule_scales_the_largest_gradient_by_the_share_of_flipped_signs():
    x, y = batch()
    model = classifier(lam=1e-3, nu=1e-2, reduction="sum")
    bonn = compiled(model, flip_threshold=flips.FlipThreshold("rebnn"))
    kernels = bayesian_kernels(model)
    for kernel in kernels:  # latent weights near zero, so that one Adam step flips some
        kernel.latent.assign(kernel.latent * 0.01)
        kernel.quantizer.reset_from_kernel(kernel.latent.numpy())
    signs_before = [np.sign(k.latent.numpy()) for k in kernels]
    bonn.train_on_batch(x, y)  # step 0: nothing has flipped yet, so lam = 0
    assert [float(k.quantizer.lam.numpy()) for k in kernels] == [0.0, 0.0]
    gradients = cross_entropy_gradients(model, x, y)  # lam = 0: the whole gradient is CE
    flipped = [np.mean(np.sign(k.latent.numpy()) != s) for k, s in zip(kernels, signs_before)]
    assert max(flipped) > 0
    expected = [share * np.abs(g).max() / numpy_push_unit(k.quantizer, k.latent.numpy()).mean()
                for share, g, k in zip(flipped, gradients, kernels)]
    bonn.train_on_batch(x, y)
    np.testing.assert_allclose([float(k.quantizer.lam.numpy()) for k in kernels], expected,
                               rtol=1e-4)


def test_quantile_zero_trains_exactly_like_the_kernel_loss_switched_off():
    x, y = batch()
    calibrated = compiled(classifier(lam=1e-3, reduction="sum"),
                          flip_threshold=flips.FlipThreshold("quantile", 0.0))
    switched_off = compiled(classifier(lam=0.0, reduction="sum"))
    for model in (calibrated, switched_off):
        model.fit(x, y, batch_size=8, epochs=2, verbose=0, shuffle=False)
    assert all(float(q.lam.numpy()) == 0.0
               for q in bl.quantizers.bayesian_quantizers(calibrated.classifier))
    for mine, theirs in zip(calibrated.classifier.get_weights(),
                            switched_off.classifier.get_weights()):
        np.testing.assert_array_equal(mine, theirs)


def test_threshold_survives_save_and_load_and_training_continues_exactly(tmp_path):
    x, y = batch()
    bonn = compiled(classifier(lam=1e-3, reduction="sum"),
                    flip_threshold=flips.FlipThreshold("rebnn", every_n_steps=2))
    bonn.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False)
    bonn.save(tmp_path / "bonn.keras")
    loaded = tf.keras.models.load_model(tmp_path / "bonn.keras")
    assert loaded.flip_threshold.get_config() == {"rule": "rebnn", "q": None,
                                                  "every_n_steps": 2, "decay": None}
    for model in (bonn, loaded):
        model.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False)
    for mine, theirs in zip(bonn.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(mine, theirs)


def test_probe_records_the_cross_entropy_and_kernel_loss_gradients():
    x, y = batch()
    model = classifier(lam=1e-3, nu=1e-2, reduction="sum")
    bonn = compiled(model)
    probe = flips.FlipProbe(binary_kernels(model))
    bonn.attach_flip_probe(probe)
    expected_data = cross_entropy_gradients(model, x, y)
    expected_loss = []
    for kernel in bayesian_kernels(model):
        with tf.GradientTape() as tape:
            loss = kernel.quantizer.kernel_loss(tf.convert_to_tensor(kernel.latent))
        expected_loss.append(tape.gradient(loss, kernel.latent).numpy())
    bonn.train_on_batch(x, y)
    for recorded, expected in zip(probe.data_gradients, expected_data):
        np.testing.assert_allclose(recorded.numpy(), expected, rtol=1e-4, atol=1e-9)
    for recorded, expected in zip(probe.loss_gradients, expected_loss):
        np.testing.assert_allclose(recorded.numpy(), expected, rtol=1e-4, atol=1e-12)


def test_probe_data_gradient_leaves_out_weight_decay():
    x, y = batch()
    model = bl.weight_decay.with_weight_decay(
        classifier(lam=1e-3, nu=1e-2, reduction="sum"), 0.5)  # strong: 0.5 * x per weight
    bonn = compiled(model)
    probe = flips.FlipProbe(binary_kernels(model))
    bonn.attach_flip_probe(probe)
    expected_data = cross_entropy_gradients(model, x, y)
    decay = [0.5 * k.latent.numpy() for k in binary_kernels(model)]
    bonn.train_on_batch(x, y)
    for recorded, expected, decayed in zip(probe.data_gradients, expected_data, decay):
        np.testing.assert_allclose(recorded.numpy(), expected, rtol=1e-4, atol=1e-8)
        assert np.abs(decayed).max() > 10 * np.abs(expected).max()  # it would show


def test_probe_counts_flips_and_flips_back_over_a_window():
    model = classifier("ste_sign")
    kernel = binary_kernels(model)[0]
    start = np.ones(kernel.latent.shape, np.float32) * 0.5
    kernel.latent.assign(start)
    probe = flips.FlipProbe([kernel])
    probe.start_window()
    sequence = [start.copy() for _ in range(3)]
    flat = [s.reshape(-1) for s in sequence]
    flat[0][0] = flat[1][0] = -0.5  # element 0: flips, stays flipped
    flat[0][1] = -0.5  # element 1: flips and flips back
    flat[0][2] = flat[2][2] = -0.5  # element 2: flips three times
    for value in sequence:
        kernel.latent.assign(value)
        probe.record_signs()
    counts = probe.flip_counts[0].numpy().reshape(-1)
    assert counts[:4].tolist() == [2, 2, 3, 0]  # element 0 came back at step 3
    stats = callbacks.oscillation_statistics(probe.start_signs[0].numpy(),
                                             probe.previous_signs[0].numpy(),
                                             probe.flip_counts[0].numpy(), 3)
    size = counts.size
    assert stats == pytest.approx({"flipped": 3 / size, "flipped_back": 2 / size,
                                   "flip_rate": 7 / size / 3})


def test_gradient_statistics_against_numpy():
    rng = np.random.default_rng(3)
    data, loss = rng.normal(size=(50, 4)), rng.normal(size=(50, 4)) * 0.1
    push = np.full((50, 4), 0.8)
    stats = callbacks.gradient_statistics(data, loss, push)
    assert stats["ce_grad_p90"] == pytest.approx(np.percentile(np.abs(data), 90))
    assert stats["kernel_grad_p99"] == pytest.approx(np.percentile(np.abs(loss), 99))
    assert stats["grad_ratio"] == pytest.approx(np.median(np.abs(data)) / np.median(np.abs(loss)))
    assert stats["flippable"] == pytest.approx(np.mean(np.abs(data) > 0.8))
    assert "grad_ratio" not in callbacks.gradient_statistics(data, 0 * loss, 0 * push)
    drift = callbacks.drift_statistics(data * 4, 4, push)
    assert drift["drift_flippable"] == pytest.approx(np.mean(np.abs(data) > 0.8))


def test_diagnostics_log_every_layer_and_leave_training_unchanged(tmp_path):
    x, y = batch(64)
    watched, unwatched = (compiled(classifier(lam=1e-3, reduction="sum")) for _ in range(2))
    diagnostics = callbacks.FlipDiagnostics(every_n_steps=3, log_dir=tmp_path / "tb")
    history = watched.fit(x, y, batch_size=8, epochs=2, verbose=0, shuffle=False,
                          callbacks=[diagnostics]).history
    unwatched.fit(x, y, batch_size=8, epochs=2, verbose=0, shuffle=False)
    for mine, theirs in zip(watched.get_weights(), unwatched.get_weights()):
        np.testing.assert_array_equal(mine, theirs)
    for kernel in binary_kernels(watched.classifier):
        for stat in ("ce_grad_p50", "kernel_grad_p99", "push_at_zero", "flippable",
                     "flipped", "flipped_back", "flip_rate", "ce_drift_p50"):
            values = history[f"{kernel.layer.name}/{stat}"]
            assert len(values) == 2 and all(np.isfinite(values))
    assert list((tmp_path / "tb").iterdir())


def test_diagnostics_need_a_bonn_model():
    model = classifier("ste_sign")
    model.compile("adam", CE)
    x, y = batch(8)
    with pytest.raises(ValueError, match="needs a bayes_larq.BONN model"):
        model.fit(x, y, verbose=0, callbacks=[callbacks.FlipDiagnostics()])
