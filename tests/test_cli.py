import bayes_larq  # noqa: F401  - selects tf_keras before TensorFlow is touched

import collections
import contextlib
import io
import json
import os
import re
import subprocess
import sys
import sysconfig

import numpy as np
import pytest
import tensorflow as tf

from bayes_larq import convert, models, profile
from bayes_larq.app import cli, data, runs

TINY = ["--epochs", "2", "--batch-size", "32", "--train-limit", "96", "--test-limit", "40",
        "--arch", "width=4"]
FAST_LATENCY = ["--repeats", "3", "--warmup", "1"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, fashion_dir):
    run_dir = tmp_path_factory.mktemp("cli") / "run"
    assert cli.main(["train", *TINY, "--data-dir", str(fashion_dir), "--output", str(run_dir),
                     "--quiet"]) == 0
    return run_dir


def analyzer_census(flatbuffer):
    """Operator counts as TensorFlow's own TFLite analyzer lists them (an independent reader
    of the flatbuffer, not the library's op_census)."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        tf.lite.experimental.Analyzer.analyze(model_content=flatbuffer)
    return dict(collections.Counter(re.findall(r"^\s*Op#\d+ (\w+)\(", printed.getvalue(), re.M)))


def run_cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "bayes_larq", *args], capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, timeout=600)


def test_train_convert_benchmark_evaluate(trained, capsys):
    report = json.loads((trained / "report.json").read_text())
    assert report["config"]["arch"] == {"width": 4} and report["epochs_done"] == 2
    assert report["config"]["kernel_loss"] and report["config"]["feature_loss"]

    assert cli.main(["convert", str(trained), "--samples", "40"]) == 0
    out = capsys.readouterr().out
    conversion = json.loads((trained / "report.json").read_text())["conversion"]
    flatbuffer = (trained / "model.tflite").read_bytes()
    census = conversion["census"]
    assert census == analyzer_census(flatbuffer) and census["LceBconv2d"] == 4
    assert conversion["tflite_bytes"] == len(flatbuffer)
    assert conversion["agreement"]["top1_agreement"] == 1.0
    assert "LceBconv2d x4" in out and "top-1 agreement 1.0000" in out
    assert "## LCE conversion" in (trained / "report.md").read_text()

    assert cli.main(["benchmark", str(trained), "--threads", "2", *FAST_LATENCY]) == 0
    out = capsys.readouterr().out
    bench = json.loads((trained / "report.json").read_text())["benchmark"]
    assert bench["flags"] == {"repeats": 3, "warmup": 1, "num_threads": 2,
                              "use_indirect_bgemm": True, "use_xnnpack": True}
    assert bench["binary_bytes"] == len(flatbuffer)
    float_twin = models.get("small_cnn", width=4, bonn=False, precision="float")
    assert bench["float_bytes"] == len(_lce_convert(float_twin)) > len(flatbuffer)
    speedup = bench["float_ms"] / bench["binary_ms"]
    assert f"binary is {speedup:.2f}x faster" in out
    assert "2 thread(s)" in out and "binary" in out and "float" in out
    assert "## Latency" in (trained / "report.md").read_text()
    assert not list(trained.glob("*.json.tmp")) and not (trained / "benchmark.json").exists()

    with pytest.raises(SystemExit) as refused:
        cli.main(["evaluate", str(trained), "--limit", "0"])
    assert refused.value.code == 2 and "--limit must be an integer >= 1; got 0." in \
        capsys.readouterr().err
    assert cli.main(["evaluate", str(trained), "--limit", "40"]) == 0
    out = capsys.readouterr().out
    assert f"top-1 accuracy {report['test']['accuracy']:.4f}" in out and "top-5" not in out


def test_convert_disagreement_is_an_error(trained, tmp_path, monkeypatch, capsys):
    """A flatbuffer of another (untrained) network must fail the parity check."""
    other = models.get("small_cnn", width=4, bonn=False)
    monkeypatch.setattr(convert, "convert", lambda model: _lce_convert(other))
    output = tmp_path / "bad.tflite"
    assert cli.main(["convert", str(trained), "--samples", "40", "--output", str(output)]) == 1
    err = capsys.readouterr().err
    assert "bayes-larq convert: error: Converted model disagrees with Keras" in err
    assert "No .tflite written" in err and not output.exists()


def _lce_convert(model):
    import larq_compute_engine as lce

    return lce.convert_keras_model(model)


def test_benchmark_needs_a_converted_model(tmp_path, capsys):
    fresh = tmp_path / "copy.tflite"
    assert cli.main(["benchmark", str(tmp_path)]) == 1
    assert f"Run `bayes-larq convert {tmp_path}` first" in capsys.readouterr().err
    fresh.write_bytes(_lce_convert(models.get("small_cnn", width=4)))
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["benchmark", str(fresh)])
    assert exit_info.value.code == 2
    assert "pass --no-float" in capsys.readouterr().err
    assert cli.main(["benchmark", str(fresh), "--no-float", *FAST_LATENCY]) == 0


@pytest.mark.parametrize("args, message", [
    (["train", "--epochs", "0"], "--epochs must be an integer >= 1; got 0."),
    (["train", "--model", "vgg"], "argument --model: invalid choice: 'vgg'"),
    (["train", "--arch", "width"], "expected KEY=VALUE"),
    (["train", "--lam", "-1"], "--lam must be a finite number >= 0; got -1.0."),
    (["train", "--lam", "big"], "argument --lam: expected a number, got 'big'"),
    (["train", "--resume", "somewhere", "--epochs", "3"],
     "--resume continues a run with its saved settings; do not pass --epochs"),
    (["train", "--optimizer", "rmsprop"], "argument --optimizer: invalid choice: 'rmsprop'"),
    (["train", "--lam-warmup-epochs", "-1"], "--lam-warmup-epochs must be an integer >= 0"),
    (["train", "--momentum", "1.5"], "--momentum must be in [0, 1); got 1.5."),
    # One rule: argparse only converts, RunConfig checks the range (1.0 was let through).
    (["train", "--momentum", "1.0"], "--momentum must be in [0, 1); got 1.0."),
    (["train", "--validation-size", "0"], "--validation-size must be an integer >= 1"),
    (["train", "--prior-gradient", "avg"], "argument --prior-gradient: invalid choice"),
    (["train", "--arch", "depth=3", "--output", "{tmp}/a"],
     "Bad architecture argument for 'small_cnn'"),
    # argparse converts; convert, benchmark and evaluate check their own ranges
    (["convert", "--min-top1-agreement", "2", "x"],
     "--min-top1-agreement must be a share in [0, 1]; got 2.0."),
    (["convert", "--max-logit-diff", "-0.5", "x"], "--max-logit-diff must be a number >= 0"),
    (["convert", "--samples", "0", "x"], "--samples must be an integer >= 1; got 0."),
    (["benchmark", "x", "--threads", "0"], "--threads must be an integer >= 1; got 0."),
    (["benchmark", "x", "--repeats", "0"], "--repeats must be an integer >= 1; got 0."),
    (["benchmark", "x", "--repeats", "1e3"], "argument --repeats: expected an integer"),
    (["demo", "--threads", "0", "--output", "{tmp}/demo"], "--threads must be an integer >= 1"),
    (["demo", "--samples", "-3", "--output", "{tmp}/demo"], "--samples must be an integer >= 1"),
    (["train", "--flip-threshold", "quantile", "--threshold-quantile", "1.5"],
     "needs --threshold-quantile in [0, 1); got 1.5."),
    (["train", "--flip-threshold", "drift", "--threshold-decay", "1"],
     "needs --threshold-decay in (0, 1); got 1.0."),
    (["train", "--flip-threshold", "rebnn", "--threshold-every", "0"],
     "--threshold-every must be an integer >= 1; got 0."),
    # the owners' checks, named as flags: BayesianSign, the builders, BONN
    (["train", "--kernel-scale", "channel", "--nu", "-1"], "--nu must be a finite number >= 0"),
    (["train", "--precision", "float"], "pass --no-kernel-loss with it"),
    (["train", "--theta", "-1"], "--theta must be a finite number >= 0; got -1.0."),
    (["train", "--w-lr-multiplier", "0"], "--w-lr-multiplier must be a finite number > 0"),
    (["evaluate", "{tmp}/nothing.keras"], "No such run directory or model file"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
])
def test_bad_arguments(args, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([a.format(tmp=tmp_path) for a in args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "usage: bayes-larq" in err
    assert not (tmp_path / "demo").exists()  # demo checks its options before training


def test_missing_data_names_every_place_and_the_fix(no_fashion_anywhere, tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert cli.main(["train", *TINY, "--output", str(run_dir)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("bayes-larq train: error: Fashion-MNIST")
    assert data.FASHION_MNIST_APT_COMMAND in err and data.FASHION_MNIST_ENV in err
    assert "--data-dir" in err and str(tmp_path / "no-default") in err
    assert not run_dir.exists()


def test_entry_points():
    result = run_cli("train", "--batch-size", "zero")
    assert result.returncode == 2
    assert "argument --batch-size: expected an integer, got 'zero'" in result.stderr
    script = os.path.join(sysconfig.get_path("scripts"), "bayes-larq")
    version = subprocess.run([script, "--version"], capture_output=True, text=True, timeout=300)
    assert version.returncode == 0
    assert version.stdout.strip() == f"bayes-larq {bayes_larq.__version__}"


def test_demo_prints_the_summary(tmp_path, fashion_dir, capsys):
    run_dir = tmp_path / "demo"
    assert cli.main(["demo", *TINY, "--data-dir", str(fashion_dir), "--output", str(run_dir),
                     "--samples", "40", "--quiet", *FAST_LATENCY]) == 0
    out = capsys.readouterr().out
    report = json.loads((run_dir / "report.json").read_text())
    assert report["conversion"]["tflite_bytes"] == len((run_dir / "model.tflite").read_bytes())
    assert report["conversion"]["agreement"]["top1_agreement"] == 1.0
    assert report["conversion"]["agreement"]["samples"] == 40
    assert report["demo"]["seconds"] > 0 and report["benchmark"]["float_ms"] > 0
    assert sorted(p.name for p in run_dir.glob("*.json")) == ["config.json", "report.json",
                                                              "state.json", "teacher.json"]
    assert "== bayes-larq demo summary" in out
    # The demo's recipe under the flags: the flags win, the arch table merges key by key.
    config = report["config"]
    assert {key: config[key] for key in runs.DEMO_SETTINGS} == {
        **runs.DEMO_SETTINGS, "epochs": 2,
        "arch": {**runs.DEMO_SETTINGS["arch"], "width": 4}}
    twin = run_dir / "teacher"
    assert json.loads((twin / "state.json").read_text())["epochs_done"] == \
        runs.DEMO_SETTINGS["teacher_epochs"]
    # Each printed number against an independent source: the saved classifier's
    # predictions on the test images, the file on disk, the profile of the classifier.
    classifier = runs.load_classifier(run_dir)
    images, labels = next(iter(data.load("fashion_mnist", "test", 40, training=False,
                                         data_dir=str(fashion_dir), limit=40)))
    accuracy = np.mean(classifier.predict(images.numpy(), verbose=0).argmax(-1) == labels)
    assert f"test accuracy:        {accuracy:.4f} on 40 fashion_mnist test images" in out
    teacher = runs.load_classifier(twin)
    accuracy = np.mean(teacher.predict(images.numpy(), verbose=0).argmax(-1) == labels)
    assert (f"teacher:              float-twin, test accuracy {accuracy:.4f} after "
            f"{runs.DEMO_SETTINGS['teacher_epochs']} epochs (") in out
    tflite_kib = (run_dir / "model.tflite").stat().st_size / 1024
    assert f"TFLite size:          {tflite_kib:.1f} KiB" in out
    share = 100 * profile.binary_mac_share(classifier)
    assert f"binarized MAC share:  {share:.1f}%" in out


def test_train_options_reach_the_run_config():
    args = cli.build_parser().parse_args([
        "train", "--optimizer", "sgd", "--momentum", "0.8", "--learning-rate", "0.05",
        "--w-lr-multiplier", "0.1", "--sigma-lr-multiplier", "0.1", "--prior-gradient", "mean",
        "--mixture-update", "closed_form", "--refresh-batches", "20",
        "--lam-warmup-epochs", "3", "--validation-size", "10000", "--precision", "binary"])
    assert cli._run_config(args) == {
        "optimizer": "sgd", "momentum": 0.8, "learning_rate": 0.05, "w_lr_multiplier": 0.1,
        "sigma_lr_multiplier": 0.1, "prior_gradient": "mean", "mixture_update": "closed_form",
        "refresh_batches": 20, "lam_warmup_epochs": 3, "validation_size": 10000,
        "precision": "binary"}


def test_flip_threshold_options_reach_the_run_config():
    args = cli.build_parser().parse_args([
        "train", "--flip-threshold", "quantile", "--threshold-quantile", "0.9",
        "--threshold-every", "5", "--threshold-decay", "0.95", "--no-flip-diagnostics"])
    assert cli._run_config(args) == {"flip_threshold": "quantile", "threshold_quantile": 0.9,
                                     "threshold_every": 5, "threshold_decay": 0.95,
                                     "flip_diagnostics": False}


def _demo_config(*flags):
    args = cli.build_parser().parse_args(["demo", *flags])
    return cli._train_config(args, args.subparser, recipe=runs.DEMO_SETTINGS)


def test_demo_flags_override_its_recipe():
    assert _demo_config() == runs.RunConfig(**runs.DEMO_SETTINGS)
    # A teacher run directory has no twin to train: the recipe's teacher_epochs go.
    config = _demo_config("--teacher", "runs/float")
    assert (config.teacher, config.teacher_epochs, config.kd_weight) == ("runs/float", None, 0.5)
    assert _demo_config("--kernel-loss", "--arch", "rprelu=false").arch == {
        "learnable_threshold": True, "rprelu": False}
    # A setting the recipe leaves without effect is refused, naming what it needs.
    with pytest.raises(runs.RunError, match="`lam` has no effect in this run: it needs the "
                       "kernel loss"):
        _demo_config("--lam", "1e-5")
