import bayes_larq  # noqa: F401  - selects tf_keras before TensorFlow is touched

import json
import re

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from bayes_larq import profile
from bayes_larq.quantizers import bayesian_kernels, bayesian_quantizers, binary_kernels
from bayes_larq.app import data, runs


def tiny_config(data_dir, **overrides):
    settings = dict(epochs=2, batch_size=32, train_limit=96, test_limit=40,
                    data_dir=str(data_dir), arch={"width": 4})
    return runs.RunConfig(**{**settings, **overrides})


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, fashion_dir):
    run_dir = tmp_path_factory.mktemp("runs") / "finished"
    trained = runs.train(tiny_config(fashion_dir), run_dir, verbose=0)
    return run_dir, trained.report


class InterruptAt(tf.keras.callbacks.Callback):
    """Raise KeyboardInterrupt (what Ctrl-C raises) at a batch of a given epoch."""

    def __init__(self, epoch, batch):
        super().__init__()
        self.epoch, self.batch, self.current = epoch, batch, None

    def on_epoch_begin(self, epoch, logs=None):
        self.current = epoch

    def on_train_batch_begin(self, batch, logs=None):
        if (self.current, batch) == (self.epoch, self.batch):
            raise KeyboardInterrupt


def final_weights(run_dir):
    return [w.numpy() for w in runs.load_classifier(run_dir).weights]


def test_run_writes_reports_with_the_numbers(finished_run):
    run_dir, summary = finished_run
    for name in ("config.json", "state.json", "model.keras", "init_mixture.npz",
                 "report.json", "report.md", "curves.png", "latents.png"):
        assert (run_dir / name).exists(), name
    for name in ("curves.png", "latents.png"):
        assert (run_dir / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The previous checkpoint is kept until the next one is safely written.
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == [
        "epoch-001.keras", "epoch-002.keras"]
    assert list((run_dir / "tensorboard").rglob("events.out.tfevents*"))

    stored = json.loads((run_dir / "report.json").read_text())
    assert stored["epochs_done"] == 2 and len(stored["history"]) == 2
    for term in ("loss", "ce_loss", "kernel_loss", "feature_loss", "accuracy", "val_accuracy"):
        assert all(np.isfinite(logs[term]) for logs in stored["history"]), term
    assert stored["history"][0]["kernel_loss"] > 0 and stored["effective_loss_weights"]["lam"] > 0
    assert set(stored["mixture"]) == {"unit1_conv", "unit2_conv", "unit3_conv", "unit4_conv"}
    assert 0 <= stored["mixture"]["unit2_conv"]["end"]["flip_ratio"] < 1

    # The test accuracy of the report, recomputed independently from the saved classifier.
    classifier = runs.load_classifier(run_dir)
    images, labels = next(iter(data.load("fashion_mnist", "test", 40, training=False,
                                         data_dir=stored["config"]["data_dir"], limit=40)))
    predicted = np.argmax(classifier.predict(images.numpy(), verbose=0), axis=-1)
    assert stored["test"]["accuracy"] == pytest.approx(np.mean(predicted == labels.numpy()))
    assert stored["test"]["examples"] == stored["test_examples"] == 40
    assert stored["model"]["binarized_mac_share"] == pytest.approx(
        profile.binary_mac_share(classifier))
    markdown = (run_dir / "report.md").read_text()
    assert f"{stored['test']['accuracy']:.4f}" in markdown and "![latent weights]" in markdown
    assert summary == stored


def test_interrupted_run_resumes_to_the_uninterrupted_result(tmp_path, fashion_dir, finished_run):
    run_dir = tmp_path / "interrupted"
    resume_call = re.escape(f"runs.resume('{run_dir}')")
    with pytest.raises(runs.RunInterrupted, match=resume_call) as interrupted:
        runs.train(tiny_config(fashion_dir), run_dir, verbose=0,
                   extra_callbacks=[InterruptAt(epoch=1, batch=1)])
    assert interrupted.value.epochs_done == 1
    assert json.loads((run_dir / "state.json").read_text())["epochs_done"] == 1
    assert not (run_dir / "model.keras").exists()

    resumed = runs.resume(run_dir, verbose=0)
    reference_dir, reference = finished_run
    assert resumed.report["history"] == reference["history"]
    for resumed, uninterrupted in zip(final_weights(run_dir), final_weights(reference_dir)):
        np.testing.assert_array_equal(resumed, uninterrupted)


def test_interrupted_before_the_first_checkpoint_restarts_identically(tmp_path, fashion_dir,
                                                                       finished_run):
    run_dir = tmp_path / "early"
    with pytest.raises(runs.RunInterrupted, match="0 of 2 epochs"):
        runs.train(tiny_config(fashion_dir), run_dir, verbose=0,
                   extra_callbacks=[InterruptAt(epoch=0, batch=0)])
    runs.resume(run_dir, verbose=0)
    for resumed, uninterrupted in zip(final_weights(run_dir), final_weights(finished_run[0])):
        np.testing.assert_array_equal(resumed, uninterrupted)


def test_run_directory_errors(tmp_path, fashion_dir, finished_run):
    with pytest.raises(runs.RunError, match=r"already holds a run .2 epochs done.*runs\.resume\("):
        runs.train(tiny_config(fashion_dir), finished_run[0], verbose=0)
    with pytest.raises(runs.RunError, match="is not a run directory"):
        runs.resume(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(runs.RunError, match="Nothing to resume.*no state.json"):
        runs.resume(tmp_path / "empty")
    with pytest.raises(runs.RunError, match="is a directory but not a bayes-larq run"):
        runs.load_classifier(tmp_path)
    with pytest.raises(runs.RunError, match="No such run directory or model file"):
        runs.load_classifier(tmp_path / "missing.keras")


@pytest.mark.parametrize("overrides, message", [
    ({"model": "vgg"}, "Unknown model 'vgg'"),
    ({"dataset": "mnist"}, "mnist"),
    ({"epochs": 0}, "`epochs` must be an integer >= 1"),
    ({"train_limit": -5}, "`train_limit` must be an integer >= 1"),
    ({"lam": -1.0}, "`lam` must be a finite number >= 0"),
    ({"reduction": "max"}, "`reduction` must be one of"),
    ({"kernel_scale": "row"}, "`kernel_scale` must be one of"),  # BayesianSign's `scale`
    ({"optimizer": "rmsprop"}, "`optimizer` must be one of"),
    ({"augment": "yes"}, "`augment` must be True, False or None"),
    ({"arch": {"depth": 3}}, "Bad architecture argument for 'small_cnn'"),
])
def test_bad_settings_are_named(tmp_path, fashion_dir, overrides, message):
    with pytest.raises(runs.RunError, match=message):
        runs.train(tiny_config(fashion_dir, **overrides), tmp_path / "bad", verbose=0)
    assert not (tmp_path / "bad" / "state.json").exists()


def test_evaluate_top5_against_numpy():
    inputs = tf.keras.Input((32, 32, 3))
    outputs = tf.keras.layers.Dense(100)(tf.keras.layers.GlobalAveragePooling2D()(inputs))
    classifier = tf.keras.Model(inputs, outputs)
    with tfds.testing.mock_data(num_examples=30):
        results = runs.evaluate(classifier, "cifar100", batch_size=8, limit=30)
        images, labels = next(iter(data.load("cifar100", "test", 30, training=False, limit=30)))
    logits = classifier.predict(images.numpy(), verbose=0)
    top5 = np.argsort(-logits, axis=-1)[:, :5]
    labels = labels.numpy()
    assert results.examples == 30
    assert results.accuracy == pytest.approx(np.mean(top5[:, 0] == labels))
    assert results.top5_accuracy == pytest.approx(np.mean(np.any(top5 == labels[:, None], -1)))
    with pytest.raises(runs.RunError, match="pass the dataset the model was trained on"):
        runs.evaluate(classifier, "fashion_mnist")


def _numpy_accuracy(classifier, images, labels):
    logits = classifier.predict(images[..., None].astype(np.float32) / 127.5 - 1.0, verbose=0)
    return float(np.mean(np.argmax(logits, axis=1) == labels))


def test_validation_split_chooses_on_held_out_training_images(tmp_path, fashion_dir):
    config = tiny_config(fashion_dir, optimizer="sgd", momentum=0.5, learning_rate=0.05,
                         validation_size=32, train_limit=None, epochs=1)
    summary = runs.train(config, tmp_path / "run", verbose=0).report
    state = runs.RunDirectory(tmp_path / "run").read_state()
    checkpoint = tf.keras.models.load_model(tmp_path / "run" / "checkpoints" / state.checkpoint)
    assert isinstance(checkpoint.optimizer, tf.keras.optimizers.SGD)
    assert float(checkpoint.optimizer.momentum) == pytest.approx(0.5)
    assert int(checkpoint.optimizer.iterations) == 2  # 64 training images, batch 32

    images, labels = data.load_fashion_mnist("train", data_dir=fashion_dir)
    test_images, test_labels = data.load_fashion_mnist("test", data_dir=fashion_dir)
    classifier = runs.load_classifier(tmp_path / "run")
    assert summary["validation"]["accuracy"] == pytest.approx(
        _numpy_accuracy(classifier, images[-32:], labels[-32:]), abs=1e-6)
    assert summary["test"]["accuracy"] == pytest.approx(
        _numpy_accuracy(classifier, test_images, test_labels), abs=1e-6)
    assert summary["test"]["examples"] == 40
    markdown = (tmp_path / "run" / "report.md").read_text()
    assert "validation top-1 accuracy on the last 32" in markdown


def test_float_twin_run_and_remedy_settings(tmp_path, fashion_dir):
    float_run = runs.train(tiny_config(fashion_dir, epochs=1, kernel_loss=False,
                                       feature_loss=False, precision="float"),
                           tmp_path / "float", verbose=0).report
    assert float_run["model"]["binarized_layers"] == 0
    assert float_run["files"]["latents"] is None
    assert not (tmp_path / "float" / "latents.png").exists()
    remedies = runs.train(tiny_config(fashion_dir, reduction="sum", lam=1e-3, nu=1e-2,
                                      mixture_update="closed_form", refresh_batches=1,
                                      lam_warmup_epochs=2, prior_gradient="mean"),
                          tmp_path / "remedies", verbose=0).report
    assert [h["lam"] for h in remedies["history"]] == pytest.approx([0.0, 5e-4])
    classifier = runs.load_classifier(tmp_path / "remedies")
    quantizer = classifier.get_layer("unit1_conv").kernel_quantizer
    assert quantizer.prior_gradient == "mean"
    # Refreshed after the last batch: mu is the mean magnitude of the positive weights.
    kernel = classifier.get_layer("unit1_conv").kernel.numpy().reshape(-1, 8)
    expected = [np.abs(c[c >= 0]).mean() for c in kernel.T]
    np.testing.assert_allclose(quantizer.mu_pos.numpy(), expected, rtol=1e-5)


def test_reports_carry_the_flip_diagnostics_of_every_binary_layer(finished_run):
    run_dir, summary = finished_run
    assert summary["config"]["flip_diagnostics"] is True
    layers = {k.split("/")[0] for k in summary["history"][0] if k.endswith("/flip_rate")}
    assert layers == {k.layer.name for k in
                      binary_kernels(runs.load_classifier(run_dir))}
    for layer in layers:
        for stat in ("ce_grad_p50", "push_at_zero", "flippable", "flipped_back"):
            assert np.isfinite(summary["history"][-1][f"{layer}/{stat}"])
    assert list((run_dir / "tensorboard" / "flips").rglob("events.out.tfevents*"))


def test_a_calibrated_run_sets_lam_from_the_gradient(tmp_path, fashion_dir):
    config = tiny_config(fashion_dir, epochs=1, reduction="sum", feature_loss=False,
                         flip_threshold="quantile", threshold_quantile=0.5)
    trained = runs.train(config, tmp_path / "run", verbose=0)
    lams = [float(q.lam.numpy()) for q in bayesian_quantizers(trained.classifier)]
    assert all(lam > 0 for lam in lams) and len(set(lams)) == len(lams)
    pushes = [trained.report["history"][0][f"{k.layer.name}/flippable"]
              for k in bayesian_kernels(trained.classifier)]
    # the push at zero sits at the median of |data gradient|: about half can flip
    assert all(0.3 < share < 0.7 for share in pushes)


@pytest.mark.parametrize("overrides, message", [
    # FlipThreshold's check, its `q` named as the setting that feeds it
    ({"flip_threshold": "quantile", "threshold_quantile": 1.0},
     "needs `threshold_quantile` in \\[0, 1\\); got 1.0"),
    ({"flip_threshold": "rebnn", "kernel_loss": False}, "needs the kernel loss on"),
    ({"flip_threshold": "median"}, "`flip_threshold` must be one of"),
    # checked by FlipThreshold, so only where a threshold uses it (else it has no effect)
    ({"flip_threshold": "quantile", "threshold_every": 0},
     "`threshold_every` must be an integer >= 1"),
])
def test_bad_threshold_settings_are_refused(overrides, message):
    with pytest.raises(runs.RunError, match=message):
        runs.RunConfig(**overrides).validate()
