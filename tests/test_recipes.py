"""Settings files (`train --config`), `--dry-run`, the recipe knobs and `recipes/`."""

import bayes_larq  # noqa: F401  - selects tf_keras before TensorFlow is touched

import dataclasses
import json
import math
import pathlib

import numpy as np
import processes
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from bayes_larq.app import cli, data, fashion_mnist, runs, tfds_source
from bayes_larq.app.config_file import read_settings_file
from bayes_larq.app.model import new_bonn
from bayes_larq.weight_decay import decayed_kernels
from test_cli import _demo_config
from test_distributed import finish, start_workers

RECIPES = pathlib.Path(__file__).parents[1] / "recipes"
IMAGENET = RECIPES / "bonn-resnet18-imagenet.toml"
TINY = ["--epochs", "1", "--batch-size", "2", "--train-limit", "4", "--test-limit", "2",
        "--quiet"]


def run_cli(argv, capsys):
    """(exit code, stdout, stderr) of `bayes-larq ARGV` in this process."""
    try:
        code = cli.main(argv)
    except SystemExit as exit_:
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


def write(tmp_path, text, name="run.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


# --------------------------------------------------------------------------- settings files


def test_flags_override_the_file_and_the_file_is_recorded(tmp_path):
    path = write(tmp_path, 'optimizer = "sgd"\nlearning_rate = 0.05\nepochs = 7\n'
                           '[arch]\nwidth = 8\n')
    args = cli.build_parser().parse_args(["train", "--config", str(path), "--epochs", "3",
                                          "--arch", "width=4", "--no-feature-loss"])
    config = cli._train_config(args, None)
    assert (config.optimizer, config.learning_rate, config.epochs) == ("sgd", 0.05, 3)
    assert config.arch == {"width": 4} and config.feature_loss is False
    assert config.kernel_loss is True and config.batch_size == 128  # the defaults
    assert config.config_file == str(path.resolve())


@pytest.mark.parametrize("text, message", [
    ("batch-size = 32", "unknown setting 'batch-size'. Did you mean 'batch_size'?"),
    ("config_file = 'x.toml'", "unknown setting 'config_file'"),
    ("epochs = 1.5", "'epochs' must be an integer; got 1.5 (float)"),
    ("kernel_loss = 'false'", "'kernel_loss' must be a boolean (true or false); got 'false'"),
    ("lam = '1e-4'", "'lam' must be a number; got '1e-4' (str)"),
    ("arch = 4", "'arch' must be a table; got 4 (int)"),
    ("epochs = ", "is not valid TOML"),
    ("lr_decay_epochs = 10", "--lr-decay-epochs has no effect in this run: it needs "
                             "lr_schedule='step'"),
    ("lr_schedule = 'step'\nlr_decay_factor = 1.5", "--lr-decay-factor multiplies the rate"),
    ("weight_decay = -1e-4", "--weight-decay must be a finite number >= 0"),
])
def test_bad_files_exit_2_naming_the_key(tmp_path, capsys, monkeypatch, text, message):
    monkeypatch.chdir(tmp_path)
    path = write(tmp_path, text + "\n")
    code, out, err = run_cli(["train", "--config", str(path), "--dry-run"], capsys)
    assert code == 2 and out == ""
    assert message in " ".join(err.split())
    assert [p.name for p in tmp_path.iterdir()] == ["run.toml"]


def test_a_missing_file_and_config_with_resume_exit_2(tmp_path, capsys):
    code, _, err = run_cli(["train", "--config", str(tmp_path / "no.toml")], capsys)
    assert code == 2 and "Cannot read the settings file" in err
    code, _, err = run_cli(["train", "--resume", str(tmp_path), "--config", "x.toml"], capsys)
    assert code == 2 and "do not pass --config" in err


# --------------------------------------------------------------------------- dry run


def no_data_reads(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a dry run read data")

    monkeypatch.setattr(data, "load", refuse)
    monkeypatch.setattr(tfds_source, "tfds_load", refuse)
    monkeypatch.setattr(data, "load_fashion_mnist", refuse)


def dry_run(tmp_path, capsys, monkeypatch, *argv):
    monkeypatch.chdir(tmp_path)
    no_data_reads(monkeypatch)
    code, out, err = run_cli(["train", *argv, "--dry-run"], capsys)
    assert code == 0, err
    assert list(tmp_path.iterdir()) == []  # nothing written
    return json.loads(out)


def nulls(value, where=""):
    if isinstance(value, dict):
        return [n for key, item in value.items() for n in nulls(item, f"{where}.{key}")]
    if isinstance(value, list):
        return [n for i, item in enumerate(value) for n in nulls(item, f"{where}[{i}]")]
    return [where] if value is None else []


def test_dry_run_prints_the_papers_imagenet_setting(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    plan = dry_run(tmp_path, capsys, monkeypatch, "--config", str(IMAGENET))
    settings = plan["settings"]
    # Gu et al. 2019 (issue 26, item 4): SGD momentum 0.9, weight decay 1e-4, lr 0.1 for
    # the kernels, 0.01 for W and sigma, decayed every 30 epochs, 70 epochs, the plain
    # sum, lam 1e-4, nu 1e-3, theta 1e-3; ResNet-18 on ImageNet, both losses.
    assert {key: settings[key] for key in (
        "model", "dataset", "optimizer", "momentum", "weight_decay", "learning_rate",
        "lr_schedule", "lr_decay_epochs", "epochs", "reduction", "lam", "nu", "theta",
        "kernel_loss", "feature_loss", "scope")} == {
        "model": "resnet18", "dataset": "imagenet2012", "optimizer": "sgd", "momentum": 0.9,
        "weight_decay": 1e-4, "learning_rate": 0.1, "lr_schedule": "step",
        "lr_decay_epochs": 30, "epochs": 70, "reduction": "sum", "lam": 1e-4, "nu": 1e-3,
        "theta": 1e-3, "kernel_loss": True, "feature_loss": True, "scope": "paper"}
    assert plan["schedule"]["learning_rates"] == {"kernels, mu and the rest": 0.1,
                                                  "W": 0.01, "sigma": 0.01}
    assert plan["schedule"]["lr_decays_after_epochs"] == [30, 60]
    assert plan["schedule"]["steps_per_epoch"] == math.ceil(1_281_167 / 256)
    assert settings["train_limit"] == 1_281_167 and settings["test_limit"] == 50_000
    assert settings["config_file"] == str(IMAGENET.resolve())
    assert plan["strategy"] == {"name": "default", "workers": 1, "replicas": 1, "chief": True}
    # The paper's scope: 16 binary 3x3 convolutions; decay on those, the stem, the 3
    # shortcuts and the classifier: 21 kernels.
    assert (plan["model"]["binary_kernels"], plan["model"]["weight_decayed_kernels"]) == (16, 21)
    assert set(settings) == {f.name for f in dataclasses.fields(runs.RunConfig)}
    assert nulls(plan) == []


def test_dry_run_without_a_file_names_every_default(tmp_path, capsys, monkeypatch):
    plan = dry_run(tmp_path, capsys, monkeypatch, "--data-dir", "/somewhere",
                   "--validation-size", "10000")
    assert nulls(plan) == []
    settings = plan["settings"]
    assert settings == {**dataclasses.asdict(runs.RunConfig()), "validation_size": 10000,
                        "train_limit": 50000, "test_limit": 10000, "data_dir": "/somewhere",
                        "teacher": "none", "teacher_epochs": 0, "step1_epochs": 0}
    assert plan["schedule"]["lr_decays_after_epochs"] == []
    assert plan["output"].startswith("runs/small_cnn-fashion_mnist-")


def test_dry_run_builds_the_model_so_a_bad_architecture_exits_2(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(["train", "--arch", "depth=3", "--dry-run"], capsys)
    assert code == 2 and out == "" and "Bad architecture argument for 'small_cnn'" in err
    assert list(tmp_path.iterdir()) == []


def test_dry_run_resolves_a_multi_worker_cluster(tmp_path, capsys, monkeypatch):
    cluster = {"worker": ["host-a:1", "host-b:1", "host-c:1"]}
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster,
                                                "task": {"type": "worker", "index": 1}}))
    plan = dry_run(tmp_path, capsys, monkeypatch, "--config", str(IMAGENET))
    assert plan["strategy"] == {"name": "multi-worker", "workers": 3, "replicas": 3,
                                "chief": False}


def test_dry_run_refuses_what_the_run_would_refuse(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TF_CONFIG", raising=False)
    code, out, err = run_cli(["train", "--strategy", "multi-worker", "--dry-run"], capsys)
    assert code == 2 and out == "" and "needs TF_CONFIG" in err
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["host-a", "host-b:1"]},
                                                "task": {"type": "worker", "index": 1}}))
    code, out, err = run_cli(["train", "--dry-run"], capsys)
    assert code == 2 and "'host-a' of worker 0 is not HOST:PORT" in err
    monkeypatch.delenv("TF_CONFIG")
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    code, out, err = run_cli(["train", "--output", "taken", "--dry-run"], capsys)
    assert code == 2 and out == "" and "refusing to write a run into it" in err
    assert [p.name for p in tmp_path.iterdir()] == ["taken"]


def test_dry_run_step_schedule_of_two_step_training(tmp_path, capsys, monkeypatch):
    plan = dry_run(tmp_path, capsys, monkeypatch, "--epochs", "10", "--two-step",
                   "--step1-epochs", "4", "--lr-schedule", "step", "--lr-decay-epochs", "2")
    # Each step's schedule spans its own epochs: step 1 is epochs 1-4, step 2 epochs 5-10.
    assert plan["schedule"]["lr_decays_after_epochs"] == [2, 6, 8]
    assert plan["settings"]["step1_epochs"] == 4


# --------------------------------------------------------------------------- the knobs


def schedule_of(optimizer):
    """The learning-rate schedule of `optimizer`, as its config (and a checkpoint) has it."""
    return tf.keras.optimizers.schedules.deserialize(optimizer.get_config()["learning_rate"])


def test_step_schedule_rate_at_chosen_steps(fashion_dir):
    # 100 examples in batches of 10: 10 steps an epoch, so a decay every 30 steps.
    config = runs.RunConfig(optimizer="sgd", learning_rate=0.2, lr_schedule="step",
                            lr_decay_epochs=3, lr_decay_factor=0.5, w_lr_multiplier=0.1,
                            sigma_lr_multiplier=0.05, train_limit=100, batch_size=10,
                            epochs=10, arch={"width": 4}, data_dir=str(fashion_dir))
    bonn = new_bonn(config)
    main, w, sigma = (schedule_of(o) for o in (bonn.optimizer, bonn.group_optimizers["w"],
                                               bonn.group_optimizers["sigma"]))
    expected = {0: 0.2, 29: 0.2, 30: 0.1, 59: 0.1, 60: 0.05, 89: 0.05, 90: 0.025, 99: 0.025}
    for step, rate in expected.items():
        assert float(main(step)) == pytest.approx(rate), step
        assert float(w(step)) == pytest.approx(rate / 10) and float(sigma(step)) == pytest.approx(
            rate / 20)


def test_a_resumed_run_continues_its_schedule_and_decay(tmp_path, fashion_dir):
    from test_runs import InterruptAt, final_weights, tiny_config

    config = tiny_config(fashion_dir, optimizer="sgd", learning_rate=0.05, lr_schedule="step",
                         lr_decay_epochs=1, lr_decay_factor=0.5, weight_decay=1e-2)
    straight = runs.train(config, tmp_path / "straight", verbose=0)
    with pytest.raises(runs.RunInterrupted):
        runs.train(config, tmp_path / "resumed", verbose=0,
                   extra_callbacks=[InterruptAt(epoch=1, batch=1)])
    state = runs.RunDirectory(tmp_path / "resumed").read_state()
    checkpoint = tf.keras.models.load_model(tmp_path / "resumed" / "checkpoints" /
                                            state.checkpoint)
    assert len(decayed_kernels(checkpoint.classifier)) == 8
    assert float(schedule_of(checkpoint.optimizer)(3)) == pytest.approx(0.025)  # 3 steps/epoch
    resumed = runs.resume(tmp_path / "resumed", verbose=0)
    assert resumed.report["history"] == straight.report["history"]
    for left, right in zip(final_weights(tmp_path / "resumed"), final_weights(straight.run_dir)):
        np.testing.assert_array_equal(left, right)


def test_a_run_directory_without_the_new_keys_reads_as_the_defaults(tmp_path):
    config = runs.RunConfig(epochs=2, train_limit=96)
    stored = config.as_dict()
    for key in ("weight_decay", "lr_decay_factor", "lr_decay_epochs", "config_file"):
        del stored[key]
    (tmp_path / "config.json").write_text(json.dumps(stored))
    read = runs.RunDirectory(tmp_path).read_config()
    assert read == config
    assert (read.weight_decay, read.lr_decay_factor, read.lr_decay_epochs,
            read.config_file) == (0.0, 0.1, 30, "")


# --------------------------------------------------------------------------- recipes/


def test_the_six_recipes_are_there():
    assert sorted(p.name for p in RECIPES.glob("*.toml")) == [
        "bonn-resnet18-imagenet.toml", "bonn-small-cnn-fashion-mnist.toml",
        "bonn-wrn22-cifar10.toml", "larq-resnet18-imagenet.toml", "larq-wrn22-cifar10.toml",
        "small-cnn-fashion-mnist.toml"]


def test_the_demo_recipe_is_what_make_demo_trains():
    settings = read_settings_file(RECIPES / "small-cnn-fashion-mnist.toml")
    assert runs.RunConfig(**settings) == runs.RunConfig(**runs.DEMO_SETTINGS)
    assert _demo_config() == runs.RunConfig(**settings)


def test_the_bonn_recipe_is_what_train_trains_by_default():
    settings = read_settings_file(RECIPES / "bonn-small-cnn-fashion-mnist.toml")
    assert runs.RunConfig(**settings) == runs.RunConfig()


def test_the_cifar_recipe_holds_the_papers_cifar_setting():
    settings = read_settings_file(RECIPES / "bonn-wrn22-cifar10.toml")
    # Gu et al. 2019: lr 0.01 decayed every 60 epochs, 200 epochs, SGD momentum 0.9, weight
    # decay 1e-4; lam 1e-4, nu 1e-4 for WRN, theta 1e-3, L_B a plain sum.
    assert {key: settings[key] for key in (
        "model", "dataset", "learning_rate", "lr_decay_epochs", "epochs", "momentum",
        "weight_decay", "lam", "nu", "theta", "reduction")} == {
        "model": "wrn22", "dataset": "cifar10", "learning_rate": 0.01, "lr_decay_epochs": 60,
        "epochs": 200, "momentum": 0.9, "weight_decay": 1e-4, "lam": 1e-4, "nu": 1e-4,
        "theta": 1e-3, "reduction": "sum"}


# The settings of BayesianSign and of the feature loss: a plain-Larq run refuses them.
LOSS_SETTINGS = {"lam", "nu", "theta", "reduction", "kernel_scale", "prior_gradient",
                 "w_lr_multiplier", "sigma_lr_multiplier", "kernel_loss", "feature_loss"}


@pytest.mark.parametrize("bonn_recipe, larq_recipe", [
    ("bonn-resnet18-imagenet.toml", "larq-resnet18-imagenet.toml"),
    ("bonn-wrn22-cifar10.toml", "larq-wrn22-cifar10.toml")])
def test_a_baseline_differs_from_its_bonn_recipe_only_in_the_losses(bonn_recipe, larq_recipe):
    bonn = read_settings_file(RECIPES / bonn_recipe)
    larq = read_settings_file(RECIPES / larq_recipe)
    assert (larq["kernel_loss"], larq["feature_loss"]) == (False, False)
    assert {k: v for k, v in bonn.items() if k not in LOSS_SETTINGS} == {
        k: v for k, v in larq.items() if k not in LOSS_SETTINGS}


SLOW = {"bonn-resnet18-imagenet.toml", "larq-resnet18-imagenet.toml", "bonn-wrn22-cifar10.toml"}


@pytest.mark.parametrize("recipe", [
    pytest.param(path.name, marks=[pytest.mark.slow] if path.name in SLOW else [])
    for path in sorted(RECIPES.glob("*.toml"))])
def test_every_recipe_trains_a_few_steps_on_mock_data(recipe, tmp_path, capsys, fashion_dir):
    run_dir = tmp_path / "run"
    argv = ["train", "--config", str(RECIPES / recipe), *TINY, "--output", str(run_dir)]
    if "fashion-mnist" in recipe:
        argv += ["--data-dir", str(fashion_dir)]  # Fashion-MNIST is read from IDX files
    with tfds.testing.mock_data(num_examples=4):
        code, out, err = run_cli(argv, capsys)
    assert code == 0, err[-3000:]
    stored = json.loads((run_dir / "config.json").read_text())
    file_settings = read_settings_file(RECIPES / recipe)
    expected = {**file_settings, "epochs": 1, "batch_size": 2, "train_limit": 4}
    assert {key: stored[key] for key in expected} == expected
    assert stored["config_file"] == str((RECIPES / recipe).resolve())
    report = json.loads((run_dir / "report.json").read_text())
    assert report["epochs_done"] == 1 and math.isfinite(report["history"][0]["loss"])
    classifier = runs.load_classifier(run_dir)
    with_kernels = [layer for layer in classifier.layers
                    if getattr(layer, "kernel", None) is not None]
    assert len(decayed_kernels(classifier)) == (
        len(with_kernels) if file_settings.get("weight_decay", 0) else 0)


@pytest.mark.slow
def test_the_bonn_fashion_mnist_recipe_trains_as_two_workers(tmp_path, fashion_dir):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    run_dir = tmp_path / "multi"
    workers, _ = start_workers(
        ["train", "--config", str(RECIPES / "bonn-small-cnn-fashion-mnist.toml"), "--epochs", "1",
         "--batch-size", "32", "--train-limit", "64", "--test-limit", "40", "--arch",
         "width=4", "--quiet", "--sync-batch-norm", "--data-dir", str(fashion_dir),
         "--output", str(run_dir)], scratch)
    finish(workers)
    stored = json.loads((run_dir / "config.json").read_text())
    assert stored["config_file"].endswith("recipes/bonn-small-cnn-fashion-mnist.toml")
    assert processes.epochs_done(run_dir) == 1 and list(scratch.iterdir()) == []


def test_dry_run_names_the_directory_the_loader_would_read(tmp_path, capsys, monkeypatch,
                                                           fashion_dir):
    """The data directory of a dry run is the Fashion-MNIST loader's own choice, and a
    directory named by the variable without the files is refused, as the run refuses it."""
    monkeypatch.setenv(fashion_mnist.FASHION_MNIST_ENV, str(fashion_dir))
    (tmp_path / "a").mkdir()
    plan = dry_run(tmp_path / "a", capsys, monkeypatch)
    assert plan["settings"]["data_dir"] == str(fashion_dir)
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv(fashion_mnist.FASHION_MNIST_ENV, str(empty))
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(["train", "--dry-run"], capsys)
    assert code == 2 and f"is not in {empty}" in err
