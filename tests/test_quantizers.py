"""BayesianSign: forward/backward, initialisation, training, serialization, LCE, errors."""

import bayes_larq as bl
import larq as lq
import numpy as np
import pytest
import tensorflow as tf

from bayes_larq.quantizers import (
    BayesianSign,
    bayesian_kernels,
    bayesian_quantizers,
    total_kernel_loss,
)


def small_model(quantizer_factory=BayesianSign, seed=0, input_shape=(8, 8, 3)):
    tf.keras.utils.set_random_seed(seed)
    inputs = tf.keras.Input(input_shape)
    x = tf.keras.layers.Conv2D(8, 3, padding="same", use_bias=False)(inputs)
    x = tf.keras.layers.BatchNormalization()(x)
    for _ in range(2):
        x = lq.layers.QuantConv2D(8, 3, padding="same", pad_values=1.0, use_bias=False,
                                  input_quantizer="ste_sign", kernel_quantizer=quantizer_factory(),
                                  kernel_constraint="weight_clip")(x)
        x = tf.keras.layers.BatchNormalization()(x)
    x = tf.keras.layers.GlobalAveragePooling2D()(x)
    x = lq.layers.QuantDense(4, input_quantizer="ste_sign", kernel_quantizer=quantizer_factory(),
                             kernel_constraint="weight_clip")(x)
    return tf.keras.Model(inputs, x)


def test_forward_is_sign_divided_by_mean_of_w():
    x = np.random.default_rng(0).uniform(-1, 1, (3, 3, 2, 4)).astype(np.float32)
    for scale in ("layer", "channel"):
        q = BayesianSign(scale=scale)
        q(tf.constant(x))
        w = np.random.default_rng(1).uniform(0.5, 2.0, x.shape).astype(np.float32)
        q.reconstruction.assign(w)
        w_bar = w.mean() if scale == "layer" else w.reshape(-1, 4).mean(axis=0)
        expected = np.where(x >= 0, 1.0, -1.0) / w_bar
        np.testing.assert_allclose(q(tf.constant(x)).numpy(), expected, rtol=1e-6)


def test_with_unit_w_equals_ste_sign_including_gradient():
    x = tf.Variable(np.linspace(-1.5, 1.5, 24, dtype=np.float32).reshape(4, 6))
    q = BayesianSign()
    q(x)
    q.reconstruction.assign(tf.ones_like(q.reconstruction))
    with tf.GradientTape(persistent=True) as tape:
        ours = q(x)
        reference = lq.quantizers.ste_sign(x)
        upstream = tf.reshape(tf.range(24, dtype=tf.float32), (4, 6))
        ours_sum = tf.reduce_sum(ours * upstream)
        reference_sum = tf.reduce_sum(reference * upstream)
    np.testing.assert_array_equal(ours.numpy(), reference.numpy())
    np.testing.assert_array_equal(tape.gradient(ours_sum, x).numpy(),
                                  tape.gradient(reference_sum, x).numpy())


def test_adds_the_kernel_loss_of_its_kernel():
    x = np.random.default_rng(2).uniform(-1, 1, (5, 3)).astype(np.float32)
    q = BayesianSign(lam=0.5, nu=0.2, reduction="sum")
    q(tf.constant(x))
    mixture = bl.mixture.Mixture(q.mu_pos, q.mu_neg, q.sigma_pos, q.sigma_neg)
    expected = bl.losses.kernel_loss(x, q.reconstruction, mixture, 0.5, 0.2, "sum")
    assert len(q.losses) == 1
    np.testing.assert_allclose(q.losses[0].numpy(), expected.numpy(), rtol=1e-6)


def test_parameters_start_from_the_statistics_of_the_latent_kernel():
    model = small_model()
    layer = model.layers[3]
    kernel = layer.kernel.latent_variable.numpy().reshape(-1, 8)
    q = layer.kernel_quantizer
    for i in range(8):
        pos, neg = kernel[kernel[:, i] >= 0, i], -kernel[kernel[:, i] < 0, i]
        np.testing.assert_allclose(q.mu_pos.numpy()[i], pos.mean(), rtol=1e-5)
        np.testing.assert_allclose(q.mu_neg.numpy()[i], neg.mean(), rtol=1e-5)
        np.testing.assert_allclose(q.sigma_pos.numpy()[i], pos.std(), rtol=1e-4)
        np.testing.assert_allclose(q.sigma_neg.numpy()[i], neg.std(), rtol=1e-4)
        least_squares_w = np.abs(kernel[:, i]).sum() / np.square(kernel[:, i]).sum()
        np.testing.assert_allclose(q.reconstruction.numpy()[..., i], least_squares_w, rtol=1e-5)


def test_empty_mixture_side_keeps_loss_finite_and_sigma_positive():
    x = np.abs(np.random.default_rng(3).uniform(0.1, 1, (4, 2))).astype(np.float32)
    q = BayesianSign()
    q(tf.constant(x))
    q.log_sigma_neg.assign([-50.0, -50.0])
    assert np.all(q.sigma_neg.numpy() > 0)
    assert np.isfinite(q.losses[0].numpy())
    assert np.isfinite(q(tf.constant(-x)).numpy()).all()


def test_alias_works_in_conv_and_dense_and_larq_counts_them_binary():
    conv = lq.layers.QuantConv2D(4, 3, kernel_quantizer="bayesian_sign",
                                 kernel_constraint="weight_clip", input_quantizer="ste_sign")
    dense = lq.layers.QuantDense(3, kernel_quantizer="bayesian_sign",
                                 kernel_constraint="weight_clip")
    inputs = tf.keras.Input((6, 6, 2))
    model = tf.keras.Model(inputs, dense(tf.keras.layers.Flatten()(conv(inputs))))
    assert isinstance(conv.kernel_quantizer, BayesianSign)
    assert isinstance(dense.kernel_quantizer, BayesianSign)
    assert conv.kernel.precision == 1 and dense.kernel.precision == 1
    assert len(bayesian_quantizers(model)) == 2
    assert len(model.losses) == 2


def distance_to_nearest_mode(model):
    distances = []
    for _, q, latent in bayesian_kernels(model):
        x = latent.numpy().reshape(-1, q.mu_pos.shape[0])
        mode = np.where(x >= 0, q.mu_pos.numpy(), -q.mu_neg.numpy())
        distances.append(np.mean(np.abs(x - mode)))
    assert len(distances) == 3
    return np.mean(distances)


def test_training_lowers_kernel_loss_and_moves_weights_to_modes():
    model = small_model(lambda: BayesianSign(lam=1.0, nu=0.1))
    model.compile(tf.keras.optimizers.Adam(1e-2),
                  tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, 8, 8, 3)).astype(np.float32), rng.integers(0, 4, 64)
    kernel_loss_before = float(total_kernel_loss(model))
    distance_before = distance_to_nearest_mode(model)
    model.fit(x, y, epochs=5, batch_size=16, verbose=0)
    assert float(total_kernel_loss(model)) < kernel_loss_before
    assert distance_to_nearest_mode(model) < 0.8 * distance_before


@pytest.mark.parametrize("prior_gradient", ["sum", "mean"])
def test_fused_kernel_loss_trains_like_the_plain_ops(prior_gradient):
    """jit_compile=True (XLA-fused L_B) is an optimisation only: same losses, same weights."""
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(64, 28, 28, 1)).astype(np.float32), rng.integers(0, 10, 64)
    trained = {}
    for jit_compile in (False, True):
        tf.keras.utils.set_random_seed(0)
        classifier = bl.models.get("small_cnn", width=8, reduction="sum", lam=1e-3, nu=1e-2,
                                   prior_gradient=prior_gradient, jit_compile=jit_compile)
        assert all(q.jit_compile is jit_compile for q in bayesian_quantizers(classifier))
        bonn = bl.BONN(classifier, theta=1e-3)
        bonn.compile(tf.keras.optimizers.Adam(1e-3),
                     tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        history = [bonn.train_on_batch(x[i:i + 16], y[i:i + 16], return_dict=True)
                   for i in range(0, 64, 16)]
        trained[jit_compile] = history, [v.numpy() for v in bonn.weights]
    (plain_history, plain_weights), (fused_history, fused_weights) = trained[False], trained[True]
    assert plain_history[-1]["kernel_loss"] != plain_history[0]["kernel_loss"]
    for plain_logs, fused_logs in zip(plain_history, fused_history):
        for key in ("ce_loss", "kernel_loss", "feature_loss", "loss"):
            assert fused_logs[key] == pytest.approx(plain_logs[key], rel=1e-5, abs=1e-7), key
    for plain, fused in zip(plain_weights, fused_weights, strict=True):
        np.testing.assert_allclose(fused, plain, rtol=1e-4, atol=1e-6)


def test_jit_compile_must_be_a_bool():
    with pytest.raises(ValueError, match="`jit_compile` must be True or False"):
        BayesianSign(jit_compile="yes")


def test_config_round_trip():
    q = BayesianSign(lam=0.3, nu=0.2, reduction="sum", scale="channel", clip_value=2.0,
                     min_sigma=1e-2, jit_compile=False)
    clone = BayesianSign.from_config(q.get_config())
    assert clone.get_config() == q.get_config()
    rebuilt = lq.quantizers.get(lq.quantizers.serialize(q))
    assert isinstance(rebuilt, BayesianSign) and rebuilt.get_config() == q.get_config()


def bonn_state(model):
    return [v.numpy() for q in bayesian_quantizers(model) for v in q.weights]


@pytest.mark.parametrize("filename", ["model.h5", "saved_model"])
def test_save_and_load_keep_predictions_and_bonn_state(tmp_path, filename):
    model = small_model(lambda: BayesianSign(scale="channel"))
    model.compile("adam", tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = np.random.default_rng(4).normal(size=(16, 8, 8, 3)).astype(np.float32)
    model.fit(x, np.arange(16) % 4, epochs=1, verbose=0)
    path = str(tmp_path / filename)
    model.save(path)
    loaded = tf.keras.models.load_model(path)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
    for ours, theirs in zip(bonn_state(model), bonn_state(loaded)):
        np.testing.assert_array_equal(ours, theirs)
    assert len(bonn_state(loaded)) == len(bonn_state(model)) == 3 * 7


@pytest.mark.parametrize("scale", ["layer", "channel"])
def test_lce_conversion_keeps_binary_convolutions_and_outputs(scale):
    model = small_model(lambda: BayesianSign(scale=scale))
    model.compile("adam", tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(5)
    x = rng.normal(size=(32, 8, 8, 3)).astype(np.float32)
    model.fit(x, np.arange(32) % 4, epochs=2, verbose=0)
    for q in bayesian_quantizers(model):  # make the scale matter
        q.reconstruction.assign(rng.uniform(0.5, 3.0, q.reconstruction.shape))
    flatbuffer = bl.convert.convert(model)
    census = bl.convert.op_census(flatbuffer)
    assert census["LceBconv2d"] == 2
    assert census["CONV_2D"] == 1
    agreement = bl.convert.compare(model, flatbuffer, rng.normal(size=(20, 8, 8, 3)))
    assert agreement.max_abs_diff < 1e-4


@pytest.mark.parametrize("kwargs, argument", [
    ({"lam": -1.0}, "lam"), ({"lam": float("nan")}, "lam"), ({"nu": -0.5}, "nu"),
    ({"nu": float("nan")}, "nu"), ({"lam": "big"}, "lam"), ({"reduction": "max"}, "reduction"),
    ({"scale": "pixel"}, "scale"), ({"min_sigma": 0.0}, "min_sigma"),
])
def test_bad_arguments_name_the_argument(kwargs, argument):
    with pytest.raises(ValueError, match=f"`{argument}`"):
        BayesianSign(**kwargs)


def test_bad_scale_lists_allowed_values():
    with pytest.raises(ValueError, match="'layer', 'channel'"):
        BayesianSign(scale="pixel")


def test_unsupported_kernel_rank_is_rejected():
    with pytest.raises(ValueError, match="rank >= 2"):
        BayesianSign()(tf.constant([0.5, -0.5]))


def test_prior_gradient_mean_divides_the_mixture_gradient_by_channel_size():
    x = np.random.default_rng(3).normal(0, 0.3, (3, 3, 2, 4)).astype(np.float32)
    lam, nu = 0.5, 0.2
    gradients = {}
    for mode in ("sum", "mean"):
        q = BayesianSign(lam=lam, nu=nu, reduction="sum", prior_gradient=mode)
        q(tf.constant(x))
        q.mu_pos.assign_add(tf.fill([4], 0.05))  # off the closed-form optimum
        with tf.GradientTape() as tape:
            loss = q.kernel_loss(tf.constant(x))
        gradients[mode] = (float(loss), tape.gradient(loss, [q.mu_pos, q.reconstruction]))
    x2 = x.reshape(-1, 4)
    mu, sigma = q.mu_pos.numpy(), q.sigma_pos.numpy()
    positive = x2 >= 0
    exact = -lam * nu * np.sum(np.where(positive, (x2 - mu) / sigma**2, 0.0), axis=0)
    assert gradients["sum"][0] == pytest.approx(gradients["mean"][0], rel=1e-6)
    assert np.abs(exact).min() > 1e-2
    np.testing.assert_allclose(gradients["sum"][1][0], exact, rtol=1e-4)
    np.testing.assert_allclose(gradients["mean"][1][0], exact / 18, rtol=1e-4)
    np.testing.assert_allclose(gradients["mean"][1][1], gradients["sum"][1][1], rtol=1e-6)
    with pytest.raises(ValueError, match="`prior_gradient` must be one of"):
        BayesianSign(prior_gradient="avg")
    assert BayesianSign.from_config(
        BayesianSign(prior_gradient="mean").get_config()).prior_gradient == "mean"


def test_check_settings_names_unknown_and_bad_values():
    assert BayesianSign.check_settings({"lam": 1e-3, "scale": "channel"})
    with pytest.raises(ValueError, match=r"Unknown BayesianSign settings \['kernel_scale'\]"):
        BayesianSign.check_settings({"kernel_scale": "layer"})
    with pytest.raises(ValueError, match="`lam` must be a finite number >= 0"):
        BayesianSign.check_settings({"lam": -1})


def one_dense(quantizer="bayesian_sign", units=3, inputs=4):
    tf.keras.utils.set_random_seed(0)
    x = tf.keras.Input((inputs,))
    layer = lq.layers.QuantDense(units, kernel_quantizer=quantizer,
                                 kernel_constraint="weight_clip", name="binary")
    return tf.keras.Model(x, layer(x))


def numpy_forward(model, x):
    """sign(x) @ sign(kernel) / mean(W), W fitted to the kernel (mixture.fit_mixture)."""
    kernel = model.get_layer("binary").kernel.latent_variable.numpy()
    w = kernel.reshape(-1, kernel.shape[-1])
    w_fit = np.abs(w).sum(0) / np.square(w).sum(0)
    return x @ np.where(kernel >= 0, 1.0, -1.0) / np.mean(np.broadcast_to(w_fit, w.shape))


@pytest.mark.parametrize("rebuild", ["clone_model", "from_config"])
def test_a_rebuilt_model_fits_its_state_to_its_kernel(rebuild):
    """Keras builds a deserialized layer from its input shape, without a kernel; the
    quantizer then waits for its first call to fit W, mu and sigma (not W = 1)."""
    model = one_dense()
    rebuilt = (tf.keras.models.clone_model(model) if rebuild == "clone_model"
               else tf.keras.Model.from_config(model.get_config()))
    x = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    np.testing.assert_allclose(rebuilt.predict(x, verbose=0), numpy_forward(rebuilt, x),
                               rtol=1e-5)
    rebuilt.set_weights(model.get_weights())
    np.testing.assert_array_equal(rebuilt.predict(x, verbose=0), model.predict(x, verbose=0))


@pytest.fixture
def mixed_float16():
    tf.keras.mixed_precision.set_global_policy("mixed_float16")
    yield
    tf.keras.mixed_precision.set_global_policy("float32")


def test_mixed_precision_builds_trains_and_predicts_with_float32_state(mixed_float16):
    inputs = tf.keras.Input((6, 6, 2))
    layer = lq.layers.QuantConv2D(4, 3, input_quantizer="ste_sign", kernel_constraint="weight_clip",
                                  kernel_quantizer=BayesianSign(lam=1.0), name="binary")
    x = tf.keras.layers.GlobalAveragePooling2D()(layer(inputs))
    model = tf.keras.Model(inputs, tf.keras.layers.Dense(2, dtype="float32")(x))
    q = layer.kernel_quantizer
    kernel = layer.kernel.latent_variable.numpy()
    assert [v.dtype for v in q.weights] == [tf.float32] * 7 and model.losses[0].dtype == tf.float32
    np.testing.assert_allclose(q.reconstruction.numpy(),
                               bl.mixture.fit_reconstruction(kernel), rtol=1e-6)
    model.compile(tf.keras.optimizers.Adam(1e-2),
                  tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(0)
    before = [v.numpy().copy() for v in q.trainable_weights]
    history = model.fit(rng.normal(size=(16, 6, 6, 2)), np.arange(16) % 2, epochs=2,
                        verbose=0).history
    assert np.all(np.isfinite(history["loss"]))
    assert all(np.abs(v.numpy() - b).max() > 0 for v, b in zip(q.trainable_weights, before))
    assert np.abs(layer.kernel.latent_variable.numpy()).max() <= 1.0  # weight_clip clipped latent
    assert np.all(np.isfinite(model.predict(rng.normal(size=(3, 6, 6, 2)), verbose=0)))


@pytest.mark.parametrize("how", ["argument", "scope"])
def test_larq_flip_ratio_metric(how):
    if how == "argument":
        model = one_dense(BayesianSign(metrics=["flip_ratio"]))
    else:
        with lq.context.metrics_scope(["flip_ratio"]):
            model = one_dense("bayesian_sign")
    q = model.get_layer("binary").kernel_quantizer
    model.compile(tf.keras.optimizers.SGD(5.0), "mse")  # big steps: some signs flip
    rng = np.random.default_rng(1)
    kernel = model.get_layer("binary").kernel.latent_variable
    signs = [np.sign(kernel.numpy())]
    ratios = []
    for _ in range(4):
        logs = model.train_on_batch(rng.normal(size=(8, 4)), rng.normal(size=(8, 3)),
                                    return_dict=True, reset_metrics=False)
        ratios.append(logs[f"flip_ratio/{q.name}"])
        signs.append(np.sign(kernel.numpy()))
    # Larq's FlipRatio: each forward pass compares the binary kernel with the previous
    # pass's; the result is the mean share of flipped signs over the passes after the first.
    changed = [np.mean(a != b) for a, b in zip(signs[:-1], signs[1:])]
    assert min(changed) > 0
    np.testing.assert_allclose(ratios[1:], [np.mean(changed[:k]) for k in (1, 2, 3)], atol=1e-6)
    assert len(q.weights) == 7 and len(q.non_trainable_weights) == 2  # metric state hidden
    assert BayesianSign.from_config(q.get_config()).metrics_argument == (
        ["flip_ratio"] if how == "argument" else None)
    with pytest.raises(ValueError, match="`metrics` must be a list of \\['flip_ratio'\\]"):
        BayesianSign(metrics=["accuracy"])


def test_clip_value_none_means_no_gradient_clipping():
    x = tf.Variable([[3.0, -0.5], [-2.0, 0.25]])
    q = BayesianSign(clip_value=None)
    with tf.GradientTape() as tape:
        y = tf.reduce_sum(q(x) * tf.constant([[1.0, 2.0], [3.0, 4.0]]))
    gradient = tape.gradient(y, x).numpy()
    w_bar = q.w_bar().numpy()
    np.testing.assert_allclose(gradient, np.array([[1.0, 2.0], [3.0, 4.0]]) / w_bar, rtol=1e-6)
    assert BayesianSign.from_config(q.get_config()).clip_value is None
