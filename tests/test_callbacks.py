"""Schedules, the mixture monitor and the closed-form mixture refresh."""

import glob

import bayes_larq  # noqa: F401  - selects tf_keras before TensorFlow is touched
import numpy as np
import pytest
import tensorflow as tf

from bayes_larq.callbacks import (
    LossWeightScheduler,
    MixtureMonitor,
    MixtureRefresh,
    linear_warmup,
)
from bayes_larq.quantizers import bayesian_kernels, binary_kernels
from test_training import CE, binary_classifier, compiled, toy_data


def test_linear_warmup_and_function_schedules_set_every_quantizer():
    x, y = toy_data()
    bonn = compiled(binary_classifier(), theta=0.1)
    callbacks = [LossWeightScheduler("lam", linear_warmup(1e-2, 2)),
                 LossWeightScheduler("nu", lambda epoch: 0.5 * (epoch + 1)),
                 LossWeightScheduler("theta", 0.25)]
    history = bonn.fit(x, y, batch_size=48, epochs=3, verbose=0, callbacks=callbacks).history
    np.testing.assert_allclose(history["lam"], [0.0, 5e-3, 1e-2])
    np.testing.assert_allclose(history["nu"], [0.5, 1.0, 1.5])
    np.testing.assert_allclose(history["theta"], [0.25] * 3)
    assert history["kernel_loss"][0] == 0.0 and history["kernel_loss"][2] != 0
    quantizer = bayesian_kernels(bonn)[0].quantizer
    np.testing.assert_allclose([quantizer.lam.numpy(), quantizer.nu.numpy()], [1e-2, 1.5],
                               rtol=1e-6)
    np.testing.assert_allclose(bonn.feature_loss.theta.numpy(), 0.25)


def test_schedule_errors_are_clear():
    with pytest.raises(ValueError, match="'lam', 'nu', 'theta'"):
        LossWeightScheduler("gamma", 1.0)
    plain = binary_classifier("ste_sign")
    plain.compile("adam", CE)
    x, y = toy_data(n=8)
    with pytest.raises(ValueError, match="BayesianSign"):
        plain.fit(x, y, verbose=0, callbacks=[LossWeightScheduler("lam", 1.0)])
    with pytest.raises(ValueError, match="`lam`"):
        compiled(binary_classifier()).fit(x, y, verbose=0,
                                          callbacks=[LossWeightScheduler("lam", lambda e: -1.0)])


class LatentSnapshots(tf.keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.snapshots = [bayesian_kernels(self.model)[0].latent.numpy()]

    def on_epoch_end(self, epoch, logs=None):
        self.snapshots.append(bayesian_kernels(self.model)[0].latent.numpy())


def test_mixture_monitor_logs_match_numpy_and_write_tensorboard(tmp_path):
    x, y = toy_data()
    bonn = compiled(binary_classifier(), tf.keras.optimizers.Adam(0.05))
    snapshots = LatentSnapshots()
    history = bonn.fit(x, y, batch_size=16, epochs=2, verbose=0,
                       callbacks=[snapshots, MixtureMonitor(log_dir=tmp_path)]).history
    kernel = bayesian_kernels(bonn)[0]
    name, q = kernel.layer.name, kernel.quantizer
    last, previous = snapshots.snapshots[-1], snapshots.snapshots[-2]
    np.testing.assert_allclose(history[f"{name}/flip_ratio"][-1],
                               np.mean((last >= 0) != (previous >= 0)))
    assert history[f"{name}/flip_ratio"][-1] > 0
    np.testing.assert_allclose(history[f"{name}/latent_scale"][-1], np.abs(last).mean(), rtol=1e-6)
    np.testing.assert_allclose(history[f"{name}/mu_pos"][-1], q.mu_pos.numpy().mean(), rtol=1e-6)
    np.testing.assert_allclose(history[f"{name}/sigma_neg"][-1],
                               np.maximum(np.exp(q.log_sigma_neg.numpy()), q.min_sigma).mean(),
                               rtol=1e-6)
    np.testing.assert_allclose(history[f"{name}/w_bar"][-1], q.reconstruction.numpy().mean(),
                               rtol=1e-6)
    events = glob.glob(str(tmp_path / "events.out.tfevents.*"))
    assert events
    tags = {v.tag for e in tf.compat.v1.train.summary_iterator(events[0]) for v in e.summary.value}
    assert f"{name}/latent_weights" in tags and f"{name}/bimodality" in tags


def test_mixture_monitor_records_plain_larq_kernels_with_the_fitted_mixture():
    x, y = toy_data()
    plain = binary_classifier("ste_sign")
    plain.compile(tf.keras.optimizers.Adam(0.05), CE)
    kernel = binary_kernels(plain)[0]
    before = kernel.latent.numpy()
    history = plain.fit(x, y, batch_size=16, epochs=1, verbose=0,
                        callbacks=[MixtureMonitor()]).history
    name, after = kernel.layer.name, kernel.latent.numpy()
    np.testing.assert_allclose(history[f"{name}/flip_ratio"][-1],
                               np.mean((after >= 0) != (before >= 0)))
    assert history[f"{name}/flip_ratio"][-1] > 0
    positive = after.reshape(-1, after.shape[-1])
    magnitudes = [np.mean(c[c >= 0]) for c in positive.T]
    np.testing.assert_allclose(history[f"{name}/mu_pos"][-1], np.mean(magnitudes), rtol=1e-5)
    assert f"{name}/w_bar" not in history
    float_model = tf.keras.Sequential([tf.keras.Input((3,)), tf.keras.layers.Dense(2)])
    float_model.compile("adam", "mse")
    with pytest.raises(ValueError, match="no 1-bit kernels"):
        float_model.fit(np.zeros((4, 3)), np.zeros((4, 2)), verbose=0,
                        callbacks=[MixtureMonitor()])


def test_mixture_refresh_reaches_the_stationary_point():
    x, y = toy_data()
    bonn = compiled(binary_classifier())
    bonn.fit(x, y, batch_size=16, epochs=1, verbose=0,
             callbacks=[MixtureRefresh(every_n_batches=3)])
    kernel = bayesian_kernels(bonn)[0]
    q = kernel.quantizer
    with tf.GradientTape() as tape:
        loss = q.kernel_loss(kernel.latent)
    grads = tape.gradient(loss, [q.mu_pos, q.mu_neg, q.log_sigma_pos, q.log_sigma_neg])
    for grad in grads:
        np.testing.assert_allclose(grad.numpy(), 0.0, atol=1e-9)
