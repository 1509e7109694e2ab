"""`bayes-larq train --teacher` and `--two-step`: the job's distillation and two-step runs."""

import bayes_larq  # noqa: F401  - selects tf_keras before TensorFlow is touched

import hashlib
import json
import shutil
import signal

import numpy as np
import pytest
import tensorflow as tf

import processes
from bayes_larq import models
from bayes_larq.app import cli, runs, teacher
from bayes_larq.quantizers import BayesianSign, bayesian_kernels, binary_kernels
from test_cli import TINY
from test_runs import InterruptAt, final_weights, tiny_config

FLOAT = ["--precision", "float", "--no-bonn"]


def _train(*args):
    return cli.main(["train", *TINY, *args, "--quiet"])


@pytest.fixture(scope="module")
def float_run(tmp_path_factory, fashion_dir):
    run_dir = tmp_path_factory.mktemp("teacher") / "float"
    assert _train(*FLOAT, "--data-dir", str(fashion_dir), "--output", str(run_dir)) == 0
    return run_dir


@pytest.fixture(scope="module")
def student(float_run, fashion_dir):
    run_dir = float_run.parent / "student"
    assert _train("--teacher", str(float_run), "--kd-weight", "0.5", "--temperature", "2",
                  "--data-dir", str(fashion_dir), "--output", str(run_dir)) == 0
    return run_dir


def _json(path):
    return json.loads(path.read_text())


def test_teacher_run_dir_teaches_and_is_reported(student, float_run):
    config = _json(student / "config.json")
    assert config["teacher"] == str(float_run.resolve())
    assert (config["kd_weight"], config["temperature"]) == (0.5, 2.0)
    report = _json(student / "report.json")
    teacher_test = _json(float_run / "report.json")["test"]
    assert report["teacher"]["test"] == teacher_test
    assert report["teacher"]["sha256"] == hashlib.sha256(
        (float_run / "model.keras").read_bytes()).hexdigest()
    assert all(logs["kd_loss"] > 0 for logs in report["history"])
    markdown = (student / "report.md").read_text()
    assert (f"test top-1 accuracy **{teacher_test['accuracy']:.4f}** beside the student's "
            f"{report['test']['accuracy']:.4f}") in markdown
    # The teacher inside the checkpoint is the float run's model, frozen.
    checkpoint = runs.RunDirectory(student).checkpoints / "epoch-002.keras"
    bonn = tf.keras.models.load_model(checkpoint)
    assert not bonn.teacher.trainable
    for left, right in zip(bonn.teacher.get_weights(), final_weights(float_run)):
        np.testing.assert_array_equal(left, right)


def test_float_twin_is_the_float_run_of_the_same_settings(float_run, fashion_dir, tmp_path):
    run_dir = tmp_path / "run"
    assert _train("--teacher", "float-twin", "--data-dir", str(fashion_dir),
                  "--output", str(run_dir)) == 0
    twin = run_dir / "teacher"
    # The independent reference: a float run trained on its own with the same settings.
    assert _json(twin / "config.json") == _json(float_run / "config.json")
    for left, right in zip(final_weights(twin), final_weights(float_run)):
        np.testing.assert_array_equal(left, right)
    report = _json(run_dir / "report.json")
    assert report["teacher"]["source"] == "float-twin"
    assert report["teacher"]["test"] == _json(twin / "report.json")["test"]
    # Reused when finished: resuming does not train it again.
    seconds = _json(twin / "state.json")["epoch_seconds"]
    assert cli.main(["train", "--resume", str(run_dir), "--quiet"]) == 0
    assert _json(twin / "state.json")["epoch_seconds"] == seconds


def _interrupted(config, run_dir, at_epoch, resume_too=()):
    with pytest.raises(runs.RunInterrupted):
        runs.train(config, run_dir, verbose=0, extra_callbacks=[InterruptAt(at_epoch, 1)])
    for epoch in resume_too:
        with pytest.raises(runs.RunInterrupted):
            runs.resume(run_dir, verbose=0, extra_callbacks=[InterruptAt(epoch, 1)])
    return runs.resume(run_dir, verbose=0)


def test_two_step_resumes_across_the_boundary_as_uninterrupted(fashion_dir, tmp_path):
    # The lam warm-up starts with step 2, where the kernel loss appears.
    config = tiny_config(fashion_dir, epochs=3, two_step=True, step1_epochs=1,
                         lam_warmup_epochs=2)
    reference = runs.train(config, tmp_path / "a", verbose=0)
    # Stopped in the first epoch of step 2 (resumes from step 1's checkpoint), then in
    # the second (from step 2's).
    resumed = _interrupted(config, tmp_path / "b", at_epoch=1, resume_too=(2,))
    for left, right in zip(reference.classifier.get_weights(), resumed.classifier.get_weights()):
        np.testing.assert_array_equal(left, right)
    assert reference.report["history"] == resumed.report["history"]

    history = reference.report["history"]
    assert "lam" not in history[0] and history[1]["lam"] == 0 == history[1]["kernel_loss"]
    assert history[2]["lam"] == pytest.approx(config.lam / 2) and history[2]["kernel_loss"] > 0
    kernels = bayesian_kernels(reference.classifier)
    assert len(kernels) == 4 and all(isinstance(k.quantizer, BayesianSign) for k in kernels)
    steps = reference.report["steps"]
    assert [(s["step"], s["kernels"], s["epochs"]) for s in steps] == [
        (1, "real", [1, 1]), (2, "bayesian_sign", [2, 3])]
    assert steps[1]["last"] == history[-1]
    assert set(reference.report["mixture"]) == {"unit1_conv", "unit2_conv", "unit3_conv",
                                                "unit4_conv"}
    assert "## Two-step training" in (tmp_path / "a" / "report.md").read_text()


def test_two_step_with_a_teacher_and_ste_sign(float_run, fashion_dir, tmp_path):
    run_dir = tmp_path / "run"
    assert _train("--two-step", "--no-kernel-loss", "--teacher", str(float_run),
                  "--data-dir", str(fashion_dir), "--output", str(run_dir)) == 0
    config = _json(run_dir / "config.json")
    assert (config["two_step"], config["step1_epochs"]) == (True, 1)  # half of 2
    report = _json(run_dir / "report.json")
    assert [s["kernels"] for s in report["steps"]] == ["real", "ste_sign"]
    assert all(logs["kd_loss"] > 0 for logs in report["history"])
    classifier = runs.load_classifier(run_dir)
    assert len(binary_kernels(classifier)) == 4 and not bayesian_kernels(classifier)


@pytest.mark.slow
@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, cli.EXIT_TERMINATED),
                                           (signal.SIGKILL, -signal.SIGKILL)],
                         ids=["SIGTERM", "SIGKILL"])
def test_a_signal_while_the_twin_trains_resumes_as_uninterrupted(signum, code, fashion_dir,
                                                                 tmp_path):
    common = ["--batch-size", "32", "--train-limit", "96", "--test-limit", "40",
              "--arch", "width=4", "--data-dir", str(fashion_dir), "--lr-schedule", "constant",
              "--teacher", "float-twin", "--quiet"]
    run_dir = tmp_path / "b"
    process = processes.start(["train", "--epochs", "40", *common, "--output", str(run_dir)])
    processes.wait_for_epochs(process, run_dir / "teacher")
    process.send_signal(signum)
    _, err = process.communicate(timeout=120)
    assert process.returncode == code, err
    if signum == signal.SIGTERM:
        assert f"Resume with: bayes-larq train --resume {run_dir}" in err
    done = processes.epochs_done(run_dir / "teacher")
    assert 1 <= done < 40 and processes.epochs_done(run_dir) == 0
    for directory in (run_dir, run_dir / "teacher"):
        processes.shorten_to(directory, done + 1)
    assert cli.main(["train", "--resume", str(run_dir), "--quiet"]) == 0
    reference = tmp_path / "a"
    assert cli.main(["train", "--epochs", str(done + 1), *common, "--output",
                     str(reference)]) == 0
    for directory in ("", "teacher"):
        for left, right in zip(final_weights(reference / directory),
                               final_weights(run_dir / directory)):
            np.testing.assert_array_equal(left, right)


def _fake_teacher(float_run, tmp_path, precision=None, model=None, finished=True):
    """A copy of the float run with its settings or model changed."""
    copy = tmp_path / "teacher"
    shutil.copytree(float_run, copy)
    if precision:
        config = _json(copy / "config.json")
        (copy / "config.json").write_text(json.dumps({**config, "precision": precision}))
    if model is not None:
        model.save(copy / "model.keras")
    if not finished:
        (copy / "model.keras").unlink()
    return copy


@pytest.mark.parametrize("teacher_of, message", [
    (lambda run, tmp: tmp, "is not a run directory (no config.json). Pass a finished float "
     "run (trained with --precision float) or 'float-twin'"),
    (lambda run, tmp: _fake_teacher(run, tmp, precision="binary"),
     "is a 'binary' run; a teacher must be real-valued."),
    (lambda run, tmp: _fake_teacher(run, tmp, finished=False),
     "is not a finished run (no model.keras yet). Finish it with `bayes-larq train --resume"),
    (lambda run, tmp: _fake_teacher(run, tmp, model=models.get(
        "small_cnn", num_classes=5, precision="float", bonn=False, width=4)),
     "gives 5 classes; fashion_mnist has inputs of shape (28, 28, 1) and 10 classes"),
    (lambda run, tmp: _fake_teacher(run, tmp, model=models.get(
        "small_cnn", input_shape=(32, 32, 3), precision="float", bonn=False, width=4)),
     "takes inputs of shape (32, 32, 3)"),
], ids=["not-a-run", "binary", "unfinished", "classes", "input-shape"])
def test_a_bad_teacher_is_refused_before_anything_is_written(
        teacher_of, message, float_run, fashion_dir, tmp_path, capsys):
    bad = teacher_of(float_run, tmp_path)
    output = tmp_path / "student"
    with pytest.raises(SystemExit) as exit_info:
        _train("--teacher", str(bad), "--data-dir", str(fashion_dir), "--output", str(output))
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not output.exists()


@pytest.mark.parametrize("args, message", [
    (["--two-step", *FLOAT], "Two-step training ends with binary kernels; it needs "
     "precision='binary', not 'float' (leave out --precision)."),
    (["--two-step", "--epochs", "1"], "needs at least one epoch in each step: --step1-epochs "
     "must be in [1, 0] for 1 epochs; got 0."),
    (["--two-step", "--step1-epochs", "2"], "--step1-epochs must be in [1, 1] for 2 epochs"),
    (["--step1-epochs", "1"], "--step1-epochs splits two-step training; set --two-step too."),
    (["--kd-weight", "0.5"], "--kd-weight and --temperature weigh the distillation from a "
     "teacher; set --teacher too."),
    (["--teacher", "float-twin", "--kd-weight", "1.5"], "--kd-weight is the share of the "
     "distribution loss, in [0, 1]; got 1.5."),
    (["--teacher", "float-twin", "--temperature", "0"], "--temperature must be"),
    (["--teacher", "float-twin", *FLOAT], "A float run is its own float twin"),
    (["--resume", "{tmp}", "--teacher", "float-twin"],
     "--resume continues a run with its saved settings; do not pass --teacher"),
])
def test_bad_combinations_exit_2_with_the_fix(args, message, tmp_path, capsys):
    # Tiny settings and no data: a combination wrongly accepted fails fast (exit 1).
    settings = [] if "--resume" in args else [*TINY, "--data-dir", str(tmp_path / "none"),
                                              "--output", str(tmp_path / "run")]
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", *settings, *[a.format(tmp=tmp_path) for a in args]])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_resume_refuses_a_changed_teacher(student, float_run, tmp_path, capsys):
    moved_teacher, moved_student = tmp_path / "float", tmp_path / "student"
    shutil.copytree(float_run, moved_teacher)
    shutil.copytree(student, moved_student)
    config = _json(moved_student / "config.json")
    (moved_student / "config.json").write_text(json.dumps(
        {**config, "teacher": str(moved_teacher)}))
    assert cli.main(["train", "--resume", str(moved_student), "--quiet"]) == 0  # same model
    models.get("small_cnn", precision="float", bonn=False, width=4).save(
        moved_teacher / "model.keras")
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "--resume", str(moved_student), "--quiet"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"The teacher's model {moved_teacher / 'model.keras'} changed since" in err
    assert "a resumed run must keep its teacher" in err


def test_old_config_files_read_with_the_new_defaults(float_run):
    stored = _json(float_run / "config.json")
    for name in ("teacher", "kd_weight", "temperature", "two_step", "step1_epochs"):
        stored.pop(name)
    assert runs.RunConfig.from_dict(stored).validate() == runs.RunConfig.from_dict(
        _json(float_run / "config.json"))
    assert teacher.twin_config(runs.RunConfig()).precision == "float"


def test_a_run_without_the_options_writes_what_it_did_before(float_run):
    report = _json(float_run / "report.json")
    assert "teacher" not in report and "steps" not in report
    assert not (float_run / "teacher.json").exists() and not (float_run / "teacher").exists()
    assert "kd_loss" not in report["history"][0]
