"""Bad inputs and faults, each with its exit code and message; docs/reliability.md is this table.

`CASES` is the single list of what is tested: every row runs `bayes-larq` (in process,
which shows any traceback on stderr) against a small trained run and checks the exit
code, that the message names the problem, that no Python traceback is printed and that
no stray run directory is left. Process-level faults (signals, resume in a new process)
and Python-API misuse have their own tests below and rows in `OTHER_ROWS`.

Regenerate the doc: `python tests/test_reliability.py > docs/reliability.md`.
"""

import bayes_larq  # noqa: F401  - selects tf_keras before TensorFlow is touched

import dataclasses
import json
import pathlib
import shutil
import signal
import subprocess
import sys
import textwrap

import larq as lq
import numpy as np
import pytest
import tensorflow as tf

import processes
from bayes_larq import BONN, BayesianSign
from bayes_larq.app import cli, runs

ROOT = pathlib.Path(__file__).parents[1]
TINY = ["--epochs", "2", "--batch-size", "32", "--train-limit", "96", "--test-limit", "40",
        "--arch", "width=4"]


@dataclasses.dataclass
class Case:
    group: str
    what: str
    args: list
    exit_code: int
    message: str
    prepare: str = ""  # name of a preparation step (see PREPARE)
    stray: str = ""  # a path that must not exist afterwards

    def row(self):
        shown = " ".join(a if a.strip() else '""' for a in self.args)
        shown = shown.replace("{data}", "DATA").replace("{run}", "RUN").replace("{tmp}", "TMP")
        return f"| {self.what} | `bayes-larq {shown}` | {self.exit_code} | {self.message} |"


CASES = [
    # 1. bad arguments: exit 2, checked before any file is written
    *[Case("bad arguments", f"architecture argument width={w}",
           ["train", *TINY, "--data-dir", "{data}", "--arch", f"width={w}", "--output",
            "{tmp}/stray"], 2, "Bad architecture argument for 'small_cnn'", stray="{tmp}/stray")
      for w in ("0", "-8", "1.5", "abc")],
    Case("bad arguments", "negative seed", ["train", "--seed", "-1", "--data-dir", "{data}",
                                             "--output", "{tmp}/stray"], 2,
         "--seed must be an integer >= 0", stray="{tmp}/stray"),
    Case("bad arguments", "seed beyond 2^32 - 1",
         ["train", "--seed", "99999999999999999999", "--data-dir", "{data}", "--output",
          "{tmp}/stray"], 2, "--seed must be an integer <= 4294967295", stray="{tmp}/stray"),
    Case("bad arguments", "absurd number of epochs",
         ["train", "--epochs", "99999999999999999999999", "--data-dir", "{data}", "--output",
          "{tmp}/stray"], 2, "--epochs must be an integer <= 100000", stray="{tmp}/stray"),
    Case("bad arguments", "learning rate NaN", ["train", "--learning-rate", "nan"], 2,
         "--learning-rate must be a finite number > 0; got nan."),
    Case("bad arguments", "negative learning rate", ["train", "--learning-rate", "-1e-3"], 2,
         "--learning-rate must be a finite number > 0; got -0.001."),
    Case("bad arguments", "unknown dataset for evaluate",
         ["evaluate", "{run}", "--dataset", "mnist"], 2, "invalid choice: 'mnist'"),
    Case("bad arguments", "convert --output is an existing directory",
         ["convert", "{run}", "--output", "{tmp}"], 2, "is a directory"),
    Case("bad arguments", "evaluate a file that is not a model",
         ["evaluate", "{tmp}/notes.txt"], 2, "is not a Keras model", prepare="notes"),
    Case("bad arguments", "negative warm-up of benchmark",
         ["benchmark", "{run}", "--warmup", "-5"], 2, "expected an integer >= 0, got '-5'"),
    Case("bad arguments", "benchmark a file that is not a TFLite model",
         ["benchmark", "{tmp}/notes.txt", "--no-float"], 2, "is not a TFLite model",
         prepare="notes"),
    Case("bad arguments", "resume a file", ["train", "--resume", "{tmp}/notes.txt"], 2,
         "is not a run directory", prepare="notes"),
    # 2. divergence: exit 1, the last good checkpoint kept, a report written
    Case("divergence", "learning rate 1e30",
         ["train", *TINY, "--data-dir", "{data}", "--learning-rate", "1e30", "--output",
          "{tmp}/nan"], 1, "Training diverged"),
    Case("divergence", "lam 1e38", ["train", *TINY, "--data-dir", "{data}", "--lam", "1e38",
                                    "--output", "{tmp}/nan"], 1, "Training diverged"),
    Case("divergence", "resume a diverged run", ["train", "--resume", "{tmp}/nan"], 2,
         "resuming would diverge again", prepare="diverged"),
    # 3. --output never overwrites
    Case("output", "--output is a non-empty directory that is not a run",
         ["train", "--data-dir", "{data}", "--output", "{tmp}/mine"], 2,
         "is a non-empty directory that is not a run", prepare="mine"),
    Case("output", "--output is an empty string", ["train", "--output", ""], 2,
         "argument --output: expected a path, got an empty string"),
    Case("output", "--output is a file", ["train", "--data-dir", "{data}", "--output",
                                          "{tmp}/notes.txt"], 2, "is a file", prepare="notes"),
    # 4. corrupt run directories
    Case("corrupt run", "truncated config.json", ["train", "--resume", "{tmp}/copy"], 2,
         "config.json is unreadable or corrupt", prepare="truncate_config"),
    Case("corrupt run", "empty state.json", ["train", "--resume", "{tmp}/copy"], 2,
         "state.json is unreadable or corrupt", prepare="empty_state"),
    Case("corrupt run", "state.json points outside the run", ["train", "--resume",
                                                               "{tmp}/copy"], 2,
         "is not a file name in", prepare="escape_state"),
    Case("corrupt run", "latest checkpoint deleted", ["train", "--resume", "{tmp}/copy"], 2,
         "cannot be loaded", prepare="delete_checkpoint"),
    Case("corrupt run", "latest checkpoint truncated", ["train", "--resume", "{tmp}/copy"], 2,
         "--previous-checkpoint", prepare="truncate_checkpoint"),
    Case("corrupt run", "resume from the previous checkpoint",
         ["train", "--resume", "{tmp}/copy", "--previous-checkpoint", "--quiet"], 0,
         "Finished 3 epochs", prepare="truncate_checkpoint"),
    # 7. data sources are never silently replaced
    Case("data", "--data-dir that does not exist",
         ["train", *TINY, "--data-dir", "{tmp}/nowhere", "--output", "{tmp}/stray"], 2,
         "is not in", stray="{tmp}/stray"),
    Case("data", "--data-dir with only the training files",
         ["train", *TINY, "--data-dir", "{tmp}/train-only", "--output", "{tmp}/stray"], 2,
         "'test' is not in", prepare="train_only", stray="{tmp}/stray"),
    Case("data", "IDX files with a header and no images",
         ["train", *TINY, "--data-dir", "{tmp}/empty-idx", "--output", "{tmp}/stray"], 2,
         "holds no images", prepare="empty_idx", stray="{tmp}/stray"),
]

OTHER_ROWS = [
    ("resume", "a run interrupted in epoch 2 in one process and resumed with `bayes-larq "
     "train --resume RUN` in another equals the uninterrupted run bit for bit", "0", ""),
    ("signals", "SIGTERM during training (`kill PID`), then `--resume`", "143",
     "Interrupted (SIGTERM): N of M epochs are saved in RUN. Resume with: bayes-larq train "
     "--resume RUN"),
    ("signals", "SIGINT (Ctrl-C) during training, then `--resume`", "130",
     "Interrupted (SIGINT): ... Resume with: bayes-larq train --resume RUN"),
    ("signals", "SIGINT or SIGTERM delivered inside a destructor, where Python ignores the "
     "exception it raises; then `resume`", "RunInterrupted",
     "Interrupted (SIGINT or SIGTERM): training stops at the next batch, not at the end"),
    ("Python API", "`BayesianSign` as an input quantizer (fixed batch size), at build",
     "NotImplementedError", "uses BayesianSign as its input_quantizer"),
    ("Python API", "`BayesianSign` as an input quantizer swapped in after the build, in "
     "`bl.BONN(model)`", "ValueError", "uses BayesianSign as its input_quantizer"),
    ("Python API", "`BayesianSign` called directly on an activation tensor", "ValueError",
     "called on a tensor that is not a weight variable (an activation?)"),
    ("Python API", "`BayesianSign` as a depthwise quantizer, at build",
     "NotImplementedError", "not supported: a depthwise kernel's last axis is the depth "
     "multiplier"),
    ("Python API", "`BayesianSign` on a transposed convolution, at build",
     "NotImplementedError", "a transposed convolution's kernel holds the input channels"),
    ("Python API", "one `BayesianSign` shared by two layers", "NotImplementedError",
     "Use one BayesianSign per layer"),
    ("Python API", "`BayesianSign(clip_value=-1)`", "ValueError",
     "`clip_value` must be a finite number > 0"),
    ("Python API", "`bl.profile`, `bl.models`, `bl.app.runs` after `import bayes_larq as bl`",
     "works", "(tests/test_layout.py)"),
]


def render():
    """docs/reliability.md: the tested bad inputs and faults, grouped, with counts."""
    lines = ["# Reliability: tested bad inputs and faults", "",
             "Generated from `tests/test_reliability.py` (`python tests/test_reliability.py > "
             "docs/reliability.md`); a test fails when this page and the tests differ. "
             "RUN is a trained run directory, DATA its data directory, TMP a scratch "
             "directory. No case prints a Python traceback; an unexpected internal error "
             "still does.", "",
             "Exit codes: 0 success, 1 a step failed (training diverged, missing dataset, "
             "conversion disagrees), 2 bad arguments or an unusable run directory, 130 "
             "interrupted by SIGINT, 143 terminated by SIGTERM (both resumable).", ""]
    groups = {}
    for case in CASES:
        groups.setdefault(case.group, []).append(case.row())
    for group, what, code, message in OTHER_ROWS:
        row = f"| {what} | (process or Python) | {code} | {message} |"
        groups.setdefault(group, []).append(row)
    for group, rows in groups.items():
        lines += [f"## {group} ({len(rows)})", "", "| case | command | exit | message contains |",
                  "| --- | --- | --- | --- |", *rows, ""]
    lines += [f"{sum(len(rows) for rows in groups.values())} cases in all.", ""]
    return "\n".join(lines)


def test_docs_list_exactly_the_tested_cases():
    assert (ROOT / "docs" / "reliability.md").read_text() == render()


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, fashion_dir):
    run_dir = tmp_path_factory.mktemp("reliability") / "run"
    assert cli.main(["train", *TINY, "--data-dir", str(fashion_dir), "--output", str(run_dir),
                     "--quiet"]) == 0
    assert cli.main(["convert", str(run_dir), "--samples", "40"]) == 0
    return run_dir


def _copy_run(run_dir, tmp):
    return pathlib.Path(shutil.copytree(run_dir, tmp / "copy"))


def _latest_checkpoint(copy):
    return copy / "checkpoints" / json.loads((copy / "state.json").read_text())["checkpoint"]


PREPARE = {
    "notes": lambda run, tmp, data: (tmp / "notes.txt").write_text("not a model\n"),
    "mine": lambda run, tmp, data: ((tmp / "mine").mkdir(),
                                    (tmp / "mine" / "report.md").write_text("my notes\n")),
    "truncate_config": lambda run, tmp, data: (_copy_run(run, tmp) / "config.json").write_text(
        (run / "config.json").read_text()[:40]),
    "empty_state": lambda run, tmp, data: (_copy_run(run, tmp) / "state.json").write_text(""),
    "escape_state": lambda run, tmp, data: (_copy_run(run, tmp) / "state.json").write_text(
        json.dumps({**json.loads((run / "state.json").read_text()),
                    "checkpoint": "../../../etc/passwd"})),
    "delete_checkpoint": lambda run, tmp, data: _latest_checkpoint(_copy_run(run, tmp)).unlink(),
    "truncate_checkpoint": lambda run, tmp, data: _truncate(_latest_checkpoint(
        _rewind(_copy_run(run, tmp)))),
    "train_only": lambda run, tmp, data: _train_only(data, tmp / "train-only"),
    "empty_idx": lambda run, tmp, data: _empty_idx(tmp / "empty-idx"),
    "diverged": lambda run, tmp, data: cli.main(
        ["train", *TINY, "--data-dir", str(data), "--learning-rate", "1e30", "--output",
         str(tmp / "nan"), "--quiet"]),
}


def _rewind(copy):
    """Make the copy look interrupted after epoch 2 of 3 (so there is something to resume)."""
    config = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps({**config, "epochs": 3}))
    (copy / "model.keras").unlink()
    return copy


def _truncate(path):
    payload = path.read_bytes()
    path.write_bytes(payload[: len(payload) // 3])


def _train_only(data, target):
    target.mkdir()
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"):
        shutil.copy(pathlib.Path(data) / name, target / name)


def _empty_idx(target):
    from fashion_files import write_fashion_dir

    write_fashion_dir(target, n_train=0, n_test=0)


@pytest.mark.parametrize("case", CASES, ids=[f"{c.group}: {c.what}" for c in CASES])
def test_bad_input_gives_a_clear_message(case, trained_run, fashion_dir, tmp_path, capsys):
    if case.prepare:
        PREPARE[case.prepare](trained_run, tmp_path, fashion_dir)
        capsys.readouterr()
    args = [a.format(data=fashion_dir, run=trained_run, tmp=tmp_path) for a in case.args]
    try:
        code = cli.main(args)
    except SystemExit as exit_info:
        code = exit_info.code
    captured = capsys.readouterr()
    assert code == case.exit_code, captured.err
    assert case.message in captured.err + captured.out
    assert "Traceback" not in captured.err
    if case.stray:
        assert not pathlib.Path(case.stray.format(tmp=tmp_path)).exists()


def test_diverged_run_keeps_its_report_and_last_good_checkpoint(fashion_dir, tmp_path):
    run_dir = tmp_path / "nan"
    assert cli.main(["train", *TINY, "--data-dir", str(fashion_dir), "--lam", "1e38",
                     "--output", str(run_dir), "--quiet"]) == 1
    state = json.loads((run_dir / "state.json").read_text())
    assert "loss" in state["diverged"] and state["epochs_done"] == 0
    summary = json.loads((run_dir / "report.json").read_text())
    assert summary["status"] == "diverged" and "diverged" in (run_dir / "report.md").read_text()
    assert not list(run_dir.glob("checkpoints/*.keras"))  # no NaN checkpoint was written


def _python(*parts, **kwargs):
    code = "\n".join(textwrap.dedent(part) for part in parts)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=600, **kwargs)


@pytest.mark.slow
def test_resume_in_a_new_process_repeats_the_uninterrupted_run(fashion_dir, tmp_path):
    """The interrupted run, the resume and the reference each run in their own process."""
    common = f"""
        import bayes_larq, numpy as np, tensorflow as tf
        from bayes_larq.app import runs
        config = runs.RunConfig(epochs=3, batch_size=16, train_limit=96, test_limit=40,
                                data_dir={str(fashion_dir)!r}, arch={{"width": 4}})
        class InterruptAt(tf.keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                self.epoch = epoch
            def on_train_batch_begin(self, batch, logs=None):
                if (self.epoch, batch) == (1, 2):
                    raise KeyboardInterrupt
    """
    reference = _python(common, f"runs.train(config, {str(tmp_path / 'a')!r}, verbose=0)")
    assert reference.returncode == 0, reference.stderr
    interrupted = _python(common, f"""
        try:
            runs.train(config, {str(tmp_path / 'b')!r}, verbose=0,
                       extra_callbacks=[InterruptAt()])
        except runs.RunInterrupted:
            print("interrupted")
    """)
    assert "interrupted" in interrupted.stdout, interrupted.stderr
    resumed = subprocess.run([sys.executable, "-m", "bayes_larq", "train", "--resume",
                              str(tmp_path / "b"), "--quiet"], capture_output=True, text=True,
                             timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    a = runs.load_classifier(tmp_path / "a").get_weights()
    b = runs.load_classifier(tmp_path / "b").get_weights()
    for left, right in zip(a, b):
        np.testing.assert_array_equal(left, right)
    history = [json.loads((tmp_path / d / "state.json").read_text())["history"] for d in "ab"]
    assert history[0] == history[1]


@pytest.mark.slow
@pytest.mark.parametrize("signum, code", [(signal.SIGINT, cli.EXIT_INTERRUPTED),
                                           (signal.SIGTERM, cli.EXIT_TERMINATED)],
                         ids=["SIGINT", "SIGTERM"])
def test_signal_saves_says_how_to_resume_and_resume_finishes(signum, code, tmp_path, fashion_dir):
    """A real signal to `python -m bayes_larq train`; then --resume finishes the run."""
    run_dir = tmp_path / "run"
    process = processes.start(
        ["train", "--epochs", "40", "--batch-size", "32", "--train-limit", "96",
         "--test-limit", "40", "--arch", "width=4", "--data-dir", str(fashion_dir),
         "--output", str(run_dir), "--lr-schedule", "constant"])
    processes.wait_for_epochs(process, run_dir)
    process.send_signal(signum)
    _, err = process.communicate(timeout=120)
    assert process.returncode == code, err
    done = processes.epochs_done(run_dir)
    assert 1 <= done < 40
    name = signal.Signals(signum).name
    assert f"Interrupted ({name}): {done} of 40 epochs are saved in {run_dir}" in err
    assert f"Resume with: bayes-larq train --resume {run_dir}" in err
    assert "Traceback" not in err

    processes.shorten_to(run_dir, done + 1)
    finished = processes.start(["train", "--resume", str(run_dir), "--quiet"])
    out, err = finished.communicate(timeout=600)
    assert finished.returncode == 0, err
    assert f"Finished {done + 1} epochs" in out
    history = json.loads((run_dir / "report.json").read_text())["history"]
    assert len(history) == done + 1 and np.isfinite(history[-1]["loss"])


def _one_layer(**quantizers):
    tf.keras.utils.set_random_seed(0)
    inputs = tf.keras.Input((8, 8, 4), batch_size=2)
    if "depthwise_quantizer" in quantizers:
        x = lq.layers.QuantDepthwiseConv2D(3, padding="same", **quantizers)(inputs)
    else:
        x = lq.layers.QuantConv2D(8, 3, padding="same", kernel_quantizer="ste_sign",
                                  **quantizers)(inputs)
    x = tf.keras.layers.GlobalAveragePooling2D()(x)
    return tf.keras.Model(inputs, tf.keras.layers.Dense(3)(x))


class SignalInADestructor(tf.keras.callbacks.Callback):
    """Delivers `interrupt` the way a signal can: inside a destructor, where Python prints
    "Exception ignored" and goes on."""

    def __init__(self, interrupt, at_epoch=1, at_batch=2):
        super().__init__()
        self.interrupt, self.at = interrupt, (at_epoch, at_batch)

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        if (self.epoch, batch) == self.at:
            interrupt = self.interrupt

            class Dying:
                def __del__(self):
                    runs.raise_interrupt(interrupt)

            Dying()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # on purpose
@pytest.mark.parametrize("interrupt, name", [(KeyboardInterrupt(), "SIGINT"),
                                             (cli.Terminated(), "SIGTERM")],
                         ids=["SIGINT", "SIGTERM"])
def test_a_signal_swallowed_by_a_destructor_still_stops_training(interrupt, name, fashion_dir,
                                                                  tmp_path):
    config = runs.RunConfig(epochs=4, batch_size=16, train_limit=96, test_limit=40,
                            data_dir=str(fashion_dir), arch={"width": 4})
    with pytest.raises(runs.RunInterrupted) as stopped:
        runs.train(config, tmp_path / "run", verbose=0,
                   extra_callbacks=[SignalInADestructor(interrupt)])
    assert (stopped.value.epochs_done, stopped.value.signal_name) == (1, name)
    assert runs.resume(tmp_path / "run", verbose=0).report["epochs_done"] == 4


def test_bayesian_sign_misuse_is_refused():
    with pytest.raises(NotImplementedError, match="uses BayesianSign as its input_quantizer"):
        _one_layer(input_quantizer=BayesianSign())  # a plain functional model, no BONN
    plain = _one_layer(input_quantizer="ste_sign")
    plain.layers[1].input_quantizer = BayesianSign()  # swapped in after the build
    with pytest.raises(ValueError, match="uses BayesianSign as its input_quantizer"):
        BONN(plain)
    activation = tf.function(lambda x: BayesianSign()(x))
    with pytest.raises(ValueError, match="not a weight variable .an activation"):
        activation.get_concrete_function(tf.TensorSpec((4, 3)))
    with pytest.raises(NotImplementedError,
                       match="depthwise kernel's last axis is the depth multiplier"):
        _one_layer(depthwise_quantizer=BayesianSign())
    with pytest.raises(NotImplementedError,
                       match="transposed convolution's kernel holds the input channels"):
        lq.layers.QuantConv2DTranspose(3, 3, kernel_quantizer=BayesianSign())(
            tf.keras.Input((4, 4, 2)))
    shared, inputs = BayesianSign(), tf.keras.Input((4,))
    hidden = lq.layers.QuantDense(3, kernel_quantizer=shared)(inputs)
    with pytest.raises(NotImplementedError, match="Use one BayesianSign per layer"):
        lq.layers.QuantDense(2, kernel_quantizer=shared)(hidden)
    assert not lq.context.should_quantize()  # the refusals leave Larq's scope as it was
    with pytest.raises(ValueError, match="`clip_value` must be a finite number > 0"):
        BayesianSign(clip_value=-1)


if __name__ == "__main__":
    sys.stdout.write(render())
