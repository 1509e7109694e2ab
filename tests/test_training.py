"""BONN wrapper: loss terms in the logs, feature loss, equivalence, resume, errors, LCE."""


import bayes_larq as bl
from mirrored import single_and_mirrored
import larq as lq
import numpy as np
import pytest
import tensorflow as tf

from bayes_larq.quantizers import BayesianSign, bayesian_quantizers
from bayes_larq.training import BONN, BayesianFeatureLoss

CE = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def binary_classifier(kernel_quantizer=BayesianSign, seed=0, classes=4, synchronized_bn=False):
    """A one-binary-conv classifier; `kernel_quantizer` is a factory or a Larq alias."""
    tf.keras.utils.set_random_seed(seed)
    inputs = tf.keras.Input((8, 8, 2))
    x = tf.keras.layers.Conv2D(6, 3, padding="same", use_bias=False)(inputs)
    x = tf.keras.layers.BatchNormalization(synchronized=synchronized_bn)(x)
    x = lq.layers.QuantConv2D(6, 3, padding="same", pad_values=1.0, use_bias=False,
                              input_quantizer="ste_sign",
                              kernel_quantizer=(kernel_quantizer() if callable(kernel_quantizer)
                                                else kernel_quantizer),
                              kernel_constraint="weight_clip")(x)
    x = tf.keras.layers.BatchNormalization(synchronized=synchronized_bn)(x)
    x = tf.keras.layers.GlobalAveragePooling2D(name="features")(x)
    return tf.keras.Model(inputs, tf.keras.layers.Dense(classes, name="logits")(x))


def toy_data(n=48, classes=4, seed=1):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 8, 8, 2)).astype(np.float32), rng.integers(0, classes, n)


def compiled(model, optimizer=None, **bonn_kwargs):
    bonn = BONN(model, **bonn_kwargs)
    bonn.compile(optimizer or tf.keras.optimizers.Adam(1e-2), CE, metrics=["accuracy"])
    return bonn


def test_history_shows_each_loss_term_and_they_add_up():
    x, y = toy_data()
    bonn = compiled(binary_classifier(), theta=0.1)
    history = bonn.fit(x, y, batch_size=48, epochs=2, verbose=0).history
    assert list(history)[:4] == ["loss", "ce_loss", "kernel_loss", "feature_loss"]
    for epoch in range(2):
        parts = sum(history[k][epoch] for k in ("ce_loss", "kernel_loss", "feature_loss"))
        np.testing.assert_allclose(history["loss"][epoch], parts, rtol=1e-5)
        assert history["kernel_loss"][epoch] > 0  # L_F may be negative: it has log sigma^2
        assert history["feature_loss"][epoch] != 0


def numpy_cross_entropy(logits, labels):
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return -np.mean(log_probs[np.arange(len(labels)), labels])


def test_evaluate_terms_match_independent_references():
    x, y = toy_data()
    bonn = compiled(binary_classifier(), theta=0.3)
    bonn.fit(x, y, batch_size=16, epochs=1, verbose=0)
    results = bonn.evaluate(x, y, batch_size=48, return_dict=True, verbose=0)
    logits = bonn.predict(x, verbose=0)
    np.testing.assert_allclose(results["ce_loss"], numpy_cross_entropy(logits, y), rtol=1e-5)
    features = tf.keras.Model(bonn.classifier.inputs,
                              bonn.classifier.get_layer("features").output).predict(x, verbose=0)
    centers = bonn.feature_loss.centers.numpy()
    variances = bonn.feature_loss.sigmas.numpy() ** 2
    residual2 = (features - centers[y]) ** 2
    per_example = np.sum(residual2 + residual2 / variances[y] + np.log(variances[y]), 1)
    expected = 0.3 / 2 * np.mean(per_example)
    np.testing.assert_allclose(results["feature_loss"], expected, rtol=1e-4)
    np.testing.assert_allclose(results["kernel_loss"],
                               float(bl.quantizers.total_kernel_loss(bonn)), rtol=1e-5)
    np.testing.assert_allclose(results["accuracy"], np.mean(logits.argmax(1) == y), atol=1e-6)


def test_centers_move_to_class_means_of_the_features():
    rng = np.random.default_rng(2)
    means = rng.normal(scale=3.0, size=(3, 4))
    labels = rng.integers(0, 3, 600)
    features = (means[labels] + rng.normal(scale=0.5, size=(600, 4))).astype(np.float32)
    inputs = tf.keras.Input((4,))
    model = tf.keras.Model(inputs, tf.keras.layers.Dense(3, name="logits")(inputs))
    bonn = compiled(model, tf.keras.optimizers.Adam(0.05), theta=1.0)
    bonn.fit(features, labels, batch_size=100, epochs=60, verbose=0)
    class_means = np.stack([features[labels == m].mean(0) for m in range(3)])
    np.testing.assert_allclose(bonn.feature_loss.centers.numpy(), class_means, atol=0.1)


def test_with_both_losses_off_training_equals_plain_larq():
    x, y = toy_data()
    plain = binary_classifier("ste_sign")
    plain.compile(tf.keras.optimizers.Adam(1e-2), CE)
    plain.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
    bonn = compiled(binary_classifier("ste_sign"), feature_loss=False)
    bonn.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
    assert "feature_loss" not in bonn.history.history
    assert len(plain.weights) == len(bonn.classifier.weights)
    for ours, reference in zip(bonn.classifier.weights, plain.weights):
        np.testing.assert_array_equal(ours.numpy(), reference.numpy())


def test_savedmodel_keeps_predictions_and_bonn_state(tmp_path):
    """SavedModel restores weights and BONN state; it re-creates the optimizer fresh."""
    x, y = toy_data()
    bonn = compiled(binary_classifier(), theta=0.1)
    bonn.fit(x, y, batch_size=16, epochs=1, verbose=0)
    bonn.save(str(tmp_path / "savedmodel"))
    loaded = tf.keras.models.load_model(str(tmp_path / "savedmodel"))
    assert isinstance(loaded, BONN)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), bonn.predict(x, verbose=0))
    for ours, reference in zip(loaded.weights, bonn.weights):
        np.testing.assert_array_equal(ours.numpy(), reference.numpy(), err_msg=ours.name)


@pytest.mark.parametrize("filename", ["bonn.keras"])
def test_save_mid_training_then_continue_equals_uninterrupted(tmp_path, filename):
    x, y = toy_data()
    uninterrupted = compiled(binary_classifier(), theta=0.1)
    uninterrupted.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)

    interrupted = compiled(binary_classifier(), theta=0.1)
    interrupted.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    interrupted.save(str(tmp_path / filename))
    resumed = tf.keras.models.load_model(str(tmp_path / filename))
    assert isinstance(resumed, BONN)
    resumed.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)

    names = [v.name for v in uninterrupted.weights]
    assert any("centers" in n for n in names) and any("reconstruction" in n for n in names)
    for ours, reference in zip(resumed.weights, uninterrupted.weights):
        np.testing.assert_allclose(ours.numpy(), reference.numpy(), atol=1e-6, err_msg=ours.name)


def test_w_learning_rate_multiplier_scales_only_w_updates():
    x, y = toy_data(n=16)
    updates = {}
    for multiplier in (1.0, 10.0):
        model = binary_classifier(lambda: BayesianSign(lam=1.0, reduction="sum"))
        bonn = compiled(model, tf.keras.optimizers.SGD(0.1), w_lr_multiplier=multiplier)
        q = bayesian_quantizers(bonn)[0]
        before_w, before_mu = q.reconstruction.numpy(), q.mu_pos.numpy()
        bonn.fit(x, y, batch_size=16, epochs=1, verbose=0)
        updates[multiplier] = (q.reconstruction.numpy() - before_w, q.mu_pos.numpy() - before_mu)
    np.testing.assert_allclose(updates[10.0][0], 10 * updates[1.0][0], rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(updates[10.0][1], updates[1.0][1], rtol=1e-5)
    assert np.abs(updates[1.0][0]).max() > 0


def test_closed_form_mixture_update_takes_mu_and_sigma_out_of_the_gradient_step(tmp_path):
    x, y = toy_data(n=16)
    moved = {}
    for update in ("gradient", "closed_form"):
        model = binary_classifier(lambda: BayesianSign(lam=1.0, reduction="sum"))
        bonn = compiled(model, tf.keras.optimizers.SGD(0.1), mixture_update=update)
        q = bayesian_quantizers(bonn)[0]
        mixture = (q.mu_pos, q.mu_neg, q.log_sigma_pos, q.log_sigma_neg)
        before = [v.numpy() for v in (*mixture, q.reconstruction)]
        bonn.fit(x, y, batch_size=16, epochs=3, verbose=0)  # mu, sigma start at the optimum
        moved[update] = [np.abs(v.numpy() - b).max() > 0
                         for v, b in zip((*mixture, q.reconstruction), before)]
    assert moved["gradient"] == [True] * 5
    assert moved["closed_form"] == [False] * 4 + [True]  # W still trains
    bonn.save(tmp_path / "bonn.keras")
    assert tf.keras.models.load_model(tmp_path / "bonn.keras").mixture_update == "closed_form"
    with pytest.raises(ValueError, match="mixture_update"):
        BONN(binary_classifier(), mixture_update="em")


def test_bad_labels_raise_value_errors():
    x, y = toy_data()
    bonn = compiled(binary_classifier())
    with pytest.raises(ValueError, match=r"integers in \[0, 4\)"):
        bonn.fit(x, y + 4, epochs=1, verbose=0)
    with pytest.raises(ValueError, match=r"integers in \[0, 4\)"):
        bonn.evaluate(x, y - 5, verbose=0)
    with pytest.raises(ValueError, match="one-hot"):
        bonn.fit(x, np.eye(4)[y], epochs=1, verbose=0)


def test_bad_configuration_raises_value_errors():
    with pytest.raises(ValueError, match="`theta`"):
        BONN(binary_classifier(), theta=-1.0)
    with pytest.raises(ValueError, match="Feature dimension mismatch"):
        BayesianFeatureLoss(4, feature_dim=3).build((None, 6))
    model = binary_classifier()
    feature_map = model.get_layer("features").input.node.layer.name
    with pytest.raises(ValueError, match=r"\[batch, d\]"):
        BONN(model, feature_layer=feature_map)
    with pytest.raises(ValueError, match="not a layer"):
        BONN(binary_classifier(), feature_layer="nope")


def test_wrapped_model_converts_and_matches_unwrapped_outputs():
    x, y = toy_data()
    bonn = compiled(binary_classifier(), theta=0.1)
    bonn.fit(x, y, batch_size=16, epochs=2, verbose=0)
    flatbuffer = bl.convert.convert(bonn.classifier)
    census = bl.convert.op_census(flatbuffer)
    assert census["LceBconv2d"] == 1
    assert not any("feature" in op.lower() for op in census)
    agreement = bl.convert.compare(bonn, flatbuffer, x)
    assert agreement.max_abs_diff < 1e-4 and agreement.top1_agreement == 1.0
    np.testing.assert_array_equal(bonn.predict(x, verbose=0), bonn.classifier.predict(x, verbose=0))


def mirrored_bonn():
    """A BONN with synchronised BatchNorm and one batch, for `mirrored.single_and_mirrored`."""
    bonn = BONN(binary_classifier(synchronized_bn=True), theta=0.5)
    bonn.compile(tf.keras.optimizers.SGD(0.1), CE)
    return (bonn, *toy_data(n=16))


def test_mirrored_strategy_step_equals_single_device(tmp_path):
    runs = single_and_mirrored(tmp_path, "test_training", "mirrored_bonn")
    single, mirrored = runs["single"], runs["mirrored"]
    np.testing.assert_allclose(mirrored["logs"]["loss"], single["logs"]["loss"], atol=1e-5)
    names = single["names"]
    assert any("centers" in n for n in names) and any("mu_pos" in n for n in names)
    for name, a, b in zip(names, single["weights"], mirrored["weights"]):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), atol=1e-5, err_msg=name)


def test_fit_accepts_a_tf_data_dataset_with_integer_labels():
    x, y = toy_data()
    dataset = tf.data.Dataset.from_tensor_slices((x, y.astype(np.int64))).batch(16)
    bonn = compiled(binary_classifier(), theta=0.1)
    history = bonn.fit(dataset, epochs=1, verbose=0).history
    assert np.isfinite(history["feature_loss"][0]) and history["feature_loss"][0] != 0
    logs = bonn.evaluate(dataset, return_dict=True, verbose=0)
    assert set(logs) >= {"loss", "ce_loss", "kernel_loss", "feature_loss"}


def test_sigma_learning_rate_multiplier_scales_only_sigma_updates_on_a_schedule():
    x, y = toy_data(n=16)
    updates = {}
    for multiplier in (1.0, 0.1):
        model = binary_classifier(lambda: BayesianSign(lam=1.0, reduction="sum"))
        schedule = tf.keras.optimizers.schedules.CosineDecay(0.1, 10)
        bonn = compiled(model, tf.keras.optimizers.SGD(schedule), sigma_lr_multiplier=multiplier)
        q = bayesian_quantizers(bonn)[0]
        for variable in (q.log_sigma_pos, q.log_sigma_neg, q.mu_pos):
            variable.assign_add(0.3 * tf.ones_like(variable))  # away from the optimum
        before = [v.numpy() for v in (q.log_sigma_pos, q.log_sigma_neg, q.mu_pos)]
        bonn.fit(x, y, batch_size=16, epochs=1, verbose=0)
        after = [v.numpy() for v in (q.log_sigma_pos, q.log_sigma_neg, q.mu_pos)]
        updates[multiplier] = [a - b for a, b in zip(after, before)]
    for scaled, reference in zip(updates[0.1][:2], updates[1.0][:2]):
        np.testing.assert_allclose(scaled, 0.1 * reference, rtol=1e-3, atol=1e-7)
    np.testing.assert_allclose(updates[0.1][2], updates[1.0][2], rtol=1e-5)
    assert np.abs(updates[1.0][0]).max() > 0 and np.abs(updates[1.0][2]).max() > 0


def test_scaled_schedule_round_trips_through_its_config():
    from bayes_larq.training import ScaledSchedule

    schedule = ScaledSchedule(tf.keras.optimizers.schedules.CosineDecay(0.1, 10), 0.25)
    restored = ScaledSchedule.from_config(schedule.get_config())
    for step in (0, 3, 10):
        expected = 0.25 * 0.1 * 0.5 * (1 + np.cos(np.pi * min(step, 10) / 10))
        assert float(restored(step)) == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match="`sigma_lr_multiplier` must be a finite number > 0"):
        BONN(binary_classifier(), sigma_lr_multiplier=0.0)


def test_theta_has_one_name_and_its_config_key_is_the_argument():
    """`theta` is the argument and config key, `initial_theta` the value given (as
    BayesianSign's `initial_lam`), `feature_loss.theta` the variable training reads."""
    bonn = BONN(binary_classifier(), theta=0.25)
    assert bonn.initial_theta == bonn.feature_loss.initial_theta == 0.25
    assert float(bonn.feature_loss.theta.numpy()) == 0.25
    assert bonn.get_config()["theta"] == 0.25
    # a config as saved .keras files hold it (the key has not changed)
    stored = dict(bonn.get_config(), theta=0.5)
    restored = BONN.from_config(stored)
    assert restored.initial_theta == 0.5 and float(restored.feature_loss.theta.numpy()) == 0.5
