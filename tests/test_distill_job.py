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
from bayes_larq import convert, layers, models
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


def test_teacher_epochs_train_the_twin_alone_for_that_many(fashion_dir, tmp_path):
    data = ["--data-dir", str(fashion_dir)]
    run_dir, reference = tmp_path / "run", tmp_path / "float-1-epoch"
    assert _train("--teacher", "float-twin", "--teacher-epochs", "1", *data,
                  "--output", str(run_dir)) == 0
    # The independent reference: a one-epoch float run trained on its own.
    assert _train(*FLOAT, "--epochs", "1", *data, "--output", str(reference)) == 0
    twin = run_dir / "teacher"
    assert _json(twin / "config.json") == _json(reference / "config.json")
    for left, right in zip(final_weights(twin), final_weights(reference)):
        np.testing.assert_array_equal(left, right)
    assert _json(run_dir / "report.json")["epochs_done"] == 2  # the student's own epochs
    record = _json(run_dir / "teacher.json")
    assert record["config"]["epochs"] == 1
    assert record["train_seconds"] == _json(twin / "report.json")["train_seconds"]


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


# A bad teacher or combination of settings: rows of tests/test_reliability.py (its table
# is docs/reliability.md).


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
    for name in ("teacher", "teacher_epochs", "kd_weight", "temperature", "two_step",
                 "step1_epochs"):
        stored.pop(name)
    assert runs.RunConfig.from_dict(stored).validate() == runs.RunConfig.from_dict(
        _json(float_run / "config.json"))
    assert teacher.twin_config(runs.RunConfig()).precision == "float"


def test_a_run_without_the_options_writes_what_it_did_before(float_run):
    report = _json(float_run / "report.json")
    assert "teacher" not in report and "steps" not in report
    assert not (float_run / "teacher.json").exists() and not (float_run / "teacher").exists()
    assert "kd_loss" not in report["history"][0]


def test_two_step_with_reactnets_learnable_activations_trains_and_converts(fashion_dir,
                                                                           tmp_path):
    """`--arch learnable_threshold=true --arch rprelu=true` reaches both steps' models."""
    run_dir = tmp_path / "run"
    assert _train("--two-step", "--no-kernel-loss", "--arch", "learnable_threshold=true",
                  "--arch", "rprelu=true", "--data-dir", str(fashion_dir),
                  "--output", str(run_dir)) == 0
    assert _json(run_dir / "config.json")["arch"] == {
        "width": 4, "learnable_threshold": True, "rprelu": True}
    classifier = runs.load_classifier(run_dir)
    extra = [layer for layer in classifier.layers
             if isinstance(layer, (layers.LearnableShift, layers.RPReLU))]
    assert len(extra) == 8
    # Trained in both steps: no weight is left at its initial value (0, or 0.25 slopes).
    assert all(np.all(w.numpy() != (0.25 if "slope" in w.name else 0.0))
               for layer in extra for w in layer.weights)
    census = convert.op_census(convert.convert(classifier))
    assert census["LceBconv2d"] == 4 and census["PRELU"] == 4
