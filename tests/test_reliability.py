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
import errno
import json
import os
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
import bayes_larq as bl
from bayes_larq import BONN, BayesianSign, models
from bayes_larq.quantizers import bayesian_quantizers
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
    tf_config: str = ""  # the TF_CONFIG environment variable of the command, if any

    def row(self):
        shown = " ".join(a if a.strip() else '""' for a in self.args)
        shown = shown.replace("{data}", "DATA").replace("{run}", "RUN").replace("{tmp}", "TMP")
        env = f"TF_CONFIG='{self.tf_config}' " if self.tf_config else ""
        return (f"| {self.what} | `{env}bayes-larq {shown}` | {self.exit_code} | "
                f"{self.message} |")


HUGE = "100000000000000000000"  # 1e20
FLOAT = ["--precision", "float", "--no-bonn"]
WORKER_1 = '{"type": "worker", "index": 1}'


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
         ["benchmark", "{run}", "--warmup", "-5"], 2, "--warmup must be an integer >= 0; got -5."),
    Case("bad arguments", "benchmark a file that is not a TFLite model",
         ["benchmark", "{tmp}/notes.txt", "--no-float"], 2, "is not a TFLite model",
         prepare="notes"),
    *[Case("bad arguments", f"benchmark a {what} model.tflite (it crashed the interpreter)",
           ["benchmark", "{tmp}/bad.tflite", "--no-float"], 2,
           "is not a TFLite model the LCE interpreter can run", prepare=f"tflite:{what}")
      for what in ("truncated", "byte-flipped")],
    Case("bad arguments", "resume a file", ["train", "--resume", "{tmp}/notes.txt"], 2,
         "is not a run directory", prepare="notes"),
    *[Case("bad arguments", f"huge {flag}", ["train", *TINY, "--data-dir", "{data}", flag, HUGE,
                                              "--output", "{tmp}/stray"], 2,
           f"{flag} must be an integer <= 2147483647", stray="{tmp}/stray")
      for flag in ("--batch-size", "--train-limit", "--test-limit")],
    Case("bad arguments", "huge evaluate --batch-size", ["evaluate", "{run}", "--batch-size",
                                                         HUGE], 2,
         "--batch-size must be an integer <= 2147483647"),
    Case("bad arguments", "huge convert --samples", ["convert", "{run}", "--output",
                                                     "{tmp}/m.tflite", "--samples", HUGE], 2,
         "--samples must be an integer <= 2147483647", stray="{tmp}/m.tflite"),
    Case("bad arguments", "--validation-size larger than the training set",
         ["train", *TINY, "--data-dir", "{data}", "--validation-size", "1000", "--output",
          "{tmp}/stray"], 2, "--validation-size is too large", stray="{tmp}/stray"),
    Case("bad arguments", "benchmark --threads 100000",
         ["benchmark", "{run}", "--no-float", "--threads", "100000"], 2,
         "--threads must be an integer <= "),
    # settings the run would not use: refused, naming the flag
    *[Case("settings without effect", what, ["train", *TINY, "--data-dir", "{data}", *flags,
                                             "--output", "{tmp}/stray"], 2,
           f"{flags[-2]} has no effect in this run: it needs {needs}", stray="{tmp}/stray")
      for what, flags, needs in (
          ("--lam without the kernel loss", ["--no-bonn", "--lam", "0.5"], "the kernel loss"),
          ("--w-lr-multiplier without BayesianSign", ["--no-kernel-loss", "--w-lr-multiplier",
                                                       "0.1"], "the kernel loss"),
          ("--theta without the feature loss", ["--no-bonn", "--theta", "0.1"],
           "the feature loss"),
          ("--momentum with Adam", ["--momentum", "0.5"], "optimizer='sgd'"),
          ("--refresh-batches with gradient mixture updates", ["--refresh-batches", "5"],
           "mixture_update='closed_form'"),
          ("--threshold-decay without the drift threshold", ["--flip-threshold", "quantile",
                                                             "--threshold-decay", "0.5"],
           "flip_threshold='drift'"))],
    # TF_CONFIG: a stale or malformed one is refused before anything is written
    *[Case("TF_CONFIG", what, ["train", *TINY, "--data-dir", "{data}", *strategy, "--output",
                               "{tmp}/stray"], 2, message, stray="{tmp}/stray",
           tf_config=tf_config)
      for what, tf_config, strategy, message in (
          ("a non-chief task without a cluster", f'{{"task": {WORKER_1}}}', [],
           "its task is a 'worker', a job its cluster (empty) does not have"),
          ("a worker index beyond a one-worker cluster",
           f'{{"cluster": {{"worker": ["localhost:1"]}}, "task": {WORKER_1}}}', [],
           "its task index 1 is not an integer in [0, 1)"),
          ("an evaluator task with --strategy auto",
           '{"cluster": {"worker": ["localhost:1"], "evaluator": ["localhost:2"]}, '
           '"task": {"type": "evaluator", "index": 0}}', [],
           "makes this process the non-chief task"),
          ("TF_CONFIG='[]'", "[]", [], "TF_CONFIG is malformed: it is not a JSON object"),
          ("a cluster that is a list", '{"cluster": []}', [], '"cluster" must map each job'),
          ("multi-worker without a task", '{"cluster": {"worker": ["localhost:1"]}}',
           ["--strategy", "multi-worker"], "needs TF_CONFIG with the cluster and this task"),
          ("multi-worker, a non-integer index",
           '{"cluster": {"worker": ["localhost:1"]}, "task": {"type": "worker", "index": "0"}}',
           ["--strategy", "multi-worker"], "its task index '0' is not an integer"),
          ("multi-worker, workers not a list",
           '{"cluster": {"worker": "localhost:1"}, "task": {"type": "worker", "index": 0}}',
           ["--strategy", "multi-worker"], '"cluster" must map each job'),
          ("multi-worker, a chief task without a chief",
           '{"cluster": {"worker": ["localhost:1", "localhost:2"]}, '
           '"task": {"type": "chief", "index": 0}}', ["--strategy", "multi-worker"],
           "its task is a 'chief', a job its cluster (['worker']) does not have"),
          ("multi-worker, an address that is not HOST:PORT",
           '{"cluster": {"worker": ["localhost:1", "localhost"]}, '
           '"task": {"type": "worker", "index": 0}}', ["--strategy", "multi-worker"],
           "the address 'localhost' of worker 1 is not HOST:PORT"))],
    # distillation and two-step training: a bad teacher or combination, before any file
    *[Case("distillation", what, ["train", *TINY, "--data-dir", "{data}", *flags, "--output",
                                  "{tmp}/stray"], 2, message, prepare=prepare,
           stray="{tmp}/stray")
      for what, flags, message, prepare in (
          ("a teacher that is not a run", ["--teacher", "{tmp}"],
           "is not a run directory (no config.json). Pass a finished float run (trained with "
           "--precision float) or 'float-twin'", ""),
          ("a binary run as teacher", ["--teacher", "{run}"],
           "is a 'binary' run; a teacher must be real-valued.", ""),
          ("an unfinished teacher", ["--teacher", "{tmp}/copy"],
           "is not a finished run (no model.keras yet). Finish it with `bayes-larq train "
           "--resume", "teacher:unfinished"),
          ("a teacher with other classes", ["--teacher", "{tmp}/copy"],
           "gives 5 classes; fashion_mnist has inputs of shape (28, 28, 1) and 10 classes",
           "teacher:classes"),
          ("a teacher with another input shape", ["--teacher", "{tmp}/copy"],
           "takes inputs of shape (32, 32, 3)", "teacher:input-shape"),
          *[(f"{flag} without a teacher", [flag, value], "--kd-weight and --temperature "
             "weigh the distillation from a teacher; set --teacher too.", "")
            for flag, value in (("--kd-weight", "0.5"), ("--temperature", "2"))],
          ("--kd-weight above 1", ["--teacher", "float-twin", "--kd-weight", "1.5"],
           "--kd-weight is the share of the distribution loss, in [0, 1]; got 1.5.", ""),
          ("--temperature 0", ["--teacher", "float-twin", "--temperature", "0"],
           "--temperature must be", ""),
          ("a float run with a float twin", ["--teacher", "float-twin", *FLOAT],
           "A float run is its own float twin", ""),
          ("--two-step of a float run", ["--two-step", *FLOAT],
           "Two-step training ends with binary kernels; it needs precision='binary', not "
           "'float' (leave out --precision).", ""),
          ("--two-step with one epoch", ["--two-step", "--epochs", "1"],
           "needs at least one epoch in each step: --step1-epochs must be in [1, 0] for 1 "
           "epochs; got 0.", ""),
          ("--step1-epochs that leaves step 2 none", ["--two-step", "--step1-epochs", "2"],
           "--step1-epochs must be in [1, 1] for 2 epochs", ""),
          ("--step1-epochs without --two-step", ["--step1-epochs", "1"],
           "--step1-epochs splits two-step training; set --two-step too.", ""),
          ("--teacher-epochs without a float twin", ["--teacher-epochs", "1"],
           "--teacher-epochs are the epochs of the float twin; set --teacher float-twin too, "
           "or leave them out.", ""),
          ("--teacher-epochs 0", ["--teacher", "float-twin", "--teacher-epochs", "0"],
           "--teacher-epochs must be an integer >= 1; got 0.", ""))],
    Case("distillation", "--resume with a --teacher",
         ["train", "--resume", "{run}", "--teacher", "float-twin"], 2,
         "--resume continues a run with its saved settings; do not pass --teacher"),
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
    Case("output", "--output under a file", ["train", *TINY, "--data-dir", "{data}", "--output",
                                             "{tmp}/notes.txt/run"], 2,
         "Cannot write the run directory", prepare="notes"),
    Case("output", "convert --output into a missing directory (it failed after converting)",
         ["convert", "{run}", "--samples", "40", "--output", "{tmp}/missing/m.tflite"], 2,
         "does not exist; create it first", stray="{tmp}/missing"),
    Case("output", "convert a run whose report.json is garbage (it failed after writing "
         "model.tflite)", ["convert", "{tmp}/copy", "--samples", "40"], 2,
         "report.json is unreadable or corrupt", prepare="garbage_report",
         stray="{tmp}/copy/model.tflite"),
    Case("output", "evaluate RUN/checkpoints (it advised --resume on it)",
         ["evaluate", "{run}/checkpoints"], 2,
         "is a directory but not a bayes-larq run directory"),
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
    *[Case("corrupt run", f"state.json with {what}", ["train", "--resume", "{tmp}/copy"], 2,
           message, prepare=f"state:{edit}")
      for what, edit, message in (
          ('"epochs_done": "1"', '{"epochs_done": "1"}', "epochs_done '1' is not an integer"),
          ('"epochs_done": -1', '{"epochs_done": -1}', "epochs_done -1 is not an integer >= 0"),
          ('"history": "x"', '{"history": "x"}', "history is not a list of the 2 finished"),
          ('"epochs_done": 5 of 2 epochs',
           '{"epochs_done": 5, "history": [{}, {}, {}, {}, {}], "epoch_seconds": [1, 1, 1, 1, 1]}',
           "says 5 epochs are done, more than the 2"))],
    *[Case("corrupt run", f"config.json with {what}", ["train", "--resume", "{tmp}/copy"], 2,
           message, prepare=f"config:{edit}")
      for what, edit, message in (
          ('"kernel_loss": "false" (a string)', '{"kernel_loss": "false"}',
           "kernel_loss='false' is not a bool"),
          ('"model": [...]', '{"model": ["small_cnn"]}', "is not a str"),
          ('"data_dir": 5', '{"data_dir": 5}', "data_dir=5 is not a str"),
          ("no epochs key", '{"epochs": null}', "The stored settings lack ['epochs']"),
          ('an edited "arch"', '{"arch": {"width": 8}, "epochs": 3}',
           "does not match the checkpoint"),
          ('an edited "lam"', '{"lam": 0.5, "epochs": 3}', "does not match the checkpoint"))],
    Case("corrupt run", "a checkpoint that is a plain classifier",
         ["train", "--resume", "{tmp}/copy"], 2, "not the run's BONN model",
         prepare="classifier_checkpoint"),
    *[Case("corrupt run", f"init_mixture.npz {what} (the report could never be written)",
           ["train", "--resume", "{tmp}/copy", "--quiet"], 0, "Finished 3 epochs",
           prepare=f"init_mixture:{what}") for what in ("deleted", "garbage")],
    Case("corrupt run", "resume from the previous checkpoint",
         ["train", "--resume", "{tmp}/copy", "--previous-checkpoint", "--quiet"], 0,
         "Finished 3 epochs", prepare="truncate_checkpoint"),
    # a run killed while it started: one command continues it
    Case("interrupted start", "--output on a run stopped before its state.json",
         ["train", *TINY, "--data-dir", "{data}", "--output", "{tmp}/copy"], 2,
         "Start it again with `bayes-larq train --resume", prepare="config_only"),
    Case("interrupted start", "--resume a run stopped before its state.json",
         ["train", "--resume", "{tmp}/copy", "--quiet"], 0, "Finished 2 epochs",
         prepare="config_only"),
    Case("interrupted start", "--resume a run whose config.json was deleted",
         ["train", "--resume", "{tmp}/copy"], 2, "config.json was deleted; restore it",
         prepare="no_config"),
    # 7. data sources are never silently replaced
    Case("data", "--data-dir that does not exist",
         ["train", *TINY, "--data-dir", "{tmp}/nowhere", "--output", "{tmp}/stray"], 2,
         "is not in", stray="{tmp}/stray"),
    Case("data", "--data-dir with only the training files",
         ["train", *TINY, "--data-dir", "{tmp}/train-only", "--output", "{tmp}/stray"], 2,
         "'test' is not in", prepare="train_only", stray="{tmp}/stray"),
    Case("data", "an IDX header with 255 dimensions",
         ["train", *TINY, "--data-dir", "{tmp}/idx-255", "--output", "{tmp}/stray"], 2,
         "IDX header declares 255 dimensions", prepare="idx_255", stray="{tmp}/stray"),
    Case("data", "IDX files with a header and no images",
         ["train", *TINY, "--data-dir", "{tmp}/empty-idx", "--output", "{tmp}/stray"], 2,
         "holds no images", prepare="empty_idx", stray="{tmp}/stray"),
]

OTHER_ROWS = [
    ("resume", "a run interrupted in epoch 2 in one process and resumed with `bayes-larq "
     "train --resume RUN` in another equals the uninterrupted run bit for bit", "0", ""),
    ("run lock", "a second training on a run directory being trained (`--resume RUN` or "
     "`--output RUN`)", "2", "is being trained by another process (pid PID)"),
    ("run lock", "`--resume` after the training holding the lock was killed (SIGKILL)", "0",
     "(the kernel released its flock)"),
    ("output", "`--output` on a read-only file system, an empty directory there or a new "
     "one (a read-only tmpfs: chmod does not stop root)", "2",
     "Cannot write the run directory TMP/... (OSError: Read-only file system)"),
    ("output", "the run directory deleted between epochs by another process (it wrote a "
     "half run without config.json)", "2", "was deleted while this training ran (its "
     "config.json is gone) ... Start it again with `bayes-larq train --output RUN`"),
    ("output", "the run directory deleted just before TensorBoard opens its writers (a "
     "traceback: TensorFlow's NotFoundError; then the writers recreated their files)", "2",
     "was deleted while this training ran (its config.json is gone), and nothing is left "
     "behind"),
    ("TF_CONFIG", "one worker of two, its peer never started (the leader waited an hour, "
     "deaf to signals); tests/test_distributed.py", "1", "The multi-worker cluster did not "
     "start within N s: nothing answers at worker 1 (HOST:PORT) of TF_CONFIG ... set "
     "BAYES_LARQ_CLUSTER_TIMEOUT=SECONDS to wait longer"),
    ("signals", "SIGTERM or SIGINT to a worker waiting for its peer (both were ignored); "
     "tests/test_distributed.py", "143 or 130", "Interrupted (SIGTERM)"),
    ("signals", "SIGTERM to the chief of a multi-worker run during training (TensorFlow's "
     "preemption notifier took it); tests/test_distributed.py", "143",
     "Interrupted (SIGTERM): N of M epochs are saved in RUN"),
    ("distillation", "`--resume RUN` when the teacher's model.keras changed since the run "
     "started; tests/test_distill_job.py", "2", "The teacher's model ... changed since ... "
     "a resumed run must keep its teacher"),
    ("resume", "a full disk while saving a checkpoint", "1",
     "No space left on the device of RUN ... then resume with `bayes-larq train --resume RUN`"),
    ("resume", "`--resume RUN` of a finished, converted run: nothing to train, report.json "
     "kept as it is (with its conversion)", "0", "Finished N epochs"),
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
    ("Python API", "`bl.bayesianize` on a model already using `BayesianSign` (it reset them)",
     "keeps W, mu and sigma", ""),
    ("Python API", "`bl.BONN` on a two-output model (it trained only the first)", "ValueError",
     "BONN trains a classifier with one output"),
    ("Python API", "`bl.BONN(Sequential([...]))` without an `Input` (it said \"subclassed\")",
     "ValueError", "is not built: start it with tf.keras.Input(shape)"),
    ("Python API", "`bl.BONN(model, feature_loss=\"no\")` (a string counted as true)",
     "ValueError", "`feature_loss` must be True or False"),
    ("Python API", "`RunConfig` with a setting the run will not use (`kernel_loss=False, "
     "lam=0.5`), in `runs.train`", "UserWarning", "has no effect in this run"),
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
    "delete_checkpoint": lambda run, tmp, data: _latest_checkpoint(
        _rewind(_copy_run(run, tmp))).unlink(),
    "truncate_checkpoint": lambda run, tmp, data: _truncate(_latest_checkpoint(
        _rewind(_copy_run(run, tmp)))),
    "train_only": lambda run, tmp, data: _train_only(data, tmp / "train-only"),
    "tflite:truncated": lambda run, tmp, data: (tmp / "bad.tflite").write_bytes(
        (run / "model.tflite").read_bytes()[:-4000]),
    "tflite:byte-flipped": lambda run, tmp, data: (tmp / "bad.tflite").write_bytes(
        _flipped((run / "model.tflite").read_bytes(), at=(0, 1, 2))),
    "garbage_report": lambda run, tmp, data: _garbage_report(_copy_run(run, tmp)),
    "idx_255": lambda run, tmp, data: _idx_255(data, tmp / "idx-255"),
    "init_mixture:deleted": lambda run, tmp, data: (
        _rewind(_copy_run(run, tmp)) / "init_mixture.npz").unlink(),
    "init_mixture:garbage": lambda run, tmp, data: (
        _rewind(_copy_run(run, tmp)) / "init_mixture.npz").write_text("garbage"),
    "classifier_checkpoint": lambda run, tmp, data: shutil.copy(
        run / "model.keras", _latest_checkpoint(_rewind(_copy_run(run, tmp)))),
    "config_only": lambda run, tmp, data: _config_only(_copy_run(run, tmp)),
    "no_config": lambda run, tmp, data: (_copy_run(run, tmp) / "config.json").unlink(),
    **{f"state:{edit}": lambda run, tmp, data, edit=edit: _edit_json(
        _copy_run(run, tmp) / "state.json", edit) for edit in (
        case.prepare.partition(":")[2] for case in CASES if case.prepare.startswith("state:"))},
    **{f"config:{edit}": lambda run, tmp, data, edit=edit: _edit_json(
        _copy_run(run, tmp) / "config.json", edit) for edit in (
        case.prepare.partition(":")[2] for case in CASES if case.prepare.startswith("config:"))},
    "empty_idx": lambda run, tmp, data: _empty_idx(tmp / "empty-idx"),
    "teacher:unfinished": lambda run, tmp, data: (_float_copy(run, tmp) / "model.keras").unlink(),
    "teacher:classes": lambda run, tmp, data: models.get(
        "small_cnn", num_classes=5, precision="float", bonn=False, width=4).save(
        _float_copy(run, tmp) / "model.keras"),
    "teacher:input-shape": lambda run, tmp, data: models.get(
        "small_cnn", input_shape=(32, 32, 3), precision="float", bonn=False, width=4).save(
        _float_copy(run, tmp) / "model.keras"),
    "diverged": lambda run, tmp, data: cli.main(
        ["train", *TINY, "--data-dir", str(data), "--learning-rate", "1e30", "--output",
         str(tmp / "nan"), "--quiet"]),
}


def _float_copy(run, tmp):
    """A copy of the run that calls itself a float run (a teacher to be spoiled)."""
    copy = _copy_run(run, tmp)
    _edit_json(copy / "config.json", '{"precision": "float", "kernel_loss": false, '
                                      '"feature_loss": false}')
    return copy


def _edit_json(path, edit):
    """Set the keys of the JSON object `edit` in the file (null deletes the key)."""
    values = {**json.loads(path.read_text()), **json.loads(edit)}
    path.write_text(json.dumps({k: v for k, v in values.items() if v is not None}))


def _flipped(payload, at):
    """`payload` with the bytes at the offsets `at` inverted (here: the root table offset)."""
    flipped = bytearray(payload)
    for offset in at:
        flipped[offset] ^= 0xFF
    return bytes(flipped)


def _garbage_report(copy):
    (copy / "report.json").write_text("garbage")
    (copy / "model.tflite").unlink()


def _idx_255(data, target):
    import gzip

    shutil.copytree(data, target)
    header = bytes([0, 0, 0x08, 255]) + (1).to_bytes(4, "big") * 255
    (target / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(header + b"\0"))


def _config_only(copy):
    for entry in copy.iterdir():
        if entry.name != "config.json":
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()


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
def test_bad_input_gives_a_clear_message(case, trained_run, fashion_dir, tmp_path, capsys,
                                         monkeypatch):
    if case.tf_config:
        monkeypatch.setenv("TF_CONFIG", case.tf_config)
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


def _rewound_copy(run_dir, tmp):
    return _rewind(_copy_run(run_dir, tmp))


@pytest.mark.parametrize("args", [["--resume", "{run}"], ["--output", "{fresh}", *TINY]],
                         ids=["--resume", "--output"])
def test_one_training_per_run_directory(args, trained_run, fashion_dir, tmp_path, capsys):
    copy, fresh = _rewound_copy(trained_run, tmp_path), tmp_path / "fresh"
    args = [a.format(run=copy, fresh=fresh) for a in args]
    held = runs.RunDirectory(fresh if "--output" in args else copy)
    with held.locked():
        with pytest.raises(SystemExit) as refused:
            cli.main(["train", *args, "--data-dir", str(fashion_dir)] if "--output" in args
                     else ["train", *args])
    assert refused.value.code == 2
    assert f"is being trained by another process (pid {os.getpid()})" in capsys.readouterr().err
    assert not (fresh / "config.json").exists()
    assert cli.main(["train", "--resume", str(copy), "--quiet"]) == 0  # the lock is released


def test_a_killed_training_leaves_no_stale_lock(trained_run, tmp_path):
    copy = _rewound_copy(trained_run, tmp_path)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom bayes_larq.app.rundir import "
         "RunDirectory\nwith RunDirectory(sys.argv[1]).locked():\n    print('locked', "
         "flush=True)\n    time.sleep(600)", str(copy)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    with pytest.raises(runs.RunError, match="being trained by another process"):
        runs.resume(copy, verbose=0)
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=60)
    assert runs.resume(copy, verbose=0).report["epochs_done"] == 3


def test_a_full_disk_is_an_environment_error_that_resume_continues(trained_run, tmp_path,
                                                                     monkeypatch, capsys):
    copy = _rewound_copy(trained_run, tmp_path)

    def no_space(*args):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(runs.RunDirectory, "save_checkpoint", no_space)
    assert cli.main(["train", "--resume", str(copy), "--quiet"]) == cli.EXIT_FAILURE
    err = capsys.readouterr().err
    assert "No space left on the device of" in err and "Traceback" not in err
    assert f"then resume with `bayes-larq train --resume {copy}`" in err


def _read_only_mount_works(target):
    probe = subprocess.run(["unshare", "-m", "sh", "-c", f"mount -t tmpfs -o ro tmpfs {target}"],
                           capture_output=True, text=True)
    return probe.returncode == 0


@pytest.mark.slow
@pytest.mark.parametrize("output", ["", "run"], ids=["the empty directory", "a new one"])
def test_output_on_a_read_only_file_system_is_refused(output, fashion_dir, tmp_path):
    """A read-only tmpfs, mounted in a private mount namespace of the command (`unshare
    -m`): root ignores chmod, not a read-only file system."""
    read_only = tmp_path / "read-only"
    read_only.mkdir()
    if not shutil.which("unshare") or not _read_only_mount_works(read_only):
        pytest.skip("needs `unshare -m` and mount (root in a namespace)")
    command = " ".join([sys.executable, "-m", "bayes_larq", "train", *TINY, "--data-dir",
                        str(fashion_dir), "--output", str(read_only / output)])
    result = subprocess.run(["unshare", "-m", "sh", "-c", f"mount -t tmpfs -o ro tmpfs "
                             f"{read_only} && exec {command}"], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 2, result.stderr
    assert (f"Cannot write the run directory {read_only / output} (OSError: Read-only file "
            f"system)") in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_a_run_directory_deleted_between_epochs_stops_the_training(fashion_dir, tmp_path):
    """It wrote checkpoints, state.json and model.keras into a new directory without
    config.json, which neither --resume nor --output could then use."""
    run_dir = tmp_path / "run"
    process = processes.start(["train", *TINY, "--epochs", "40", "--data-dir",
                               str(fashion_dir), "--output", str(run_dir)])
    processes.wait_for_epochs(process, run_dir)
    while run_dir.exists() and process.poll() is None:  # the training may write meanwhile
        shutil.rmtree(run_dir, ignore_errors=True)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 2, err
    assert (f"{run_dir} was deleted while this training ran (its config.json is gone): there "
            f"is no run left to save into or to resume. Start it again with `bayes-larq "
            f"train --output {run_dir}`") in err
    assert "Traceback" not in err
    assert not run_dir.exists()  # nothing half-written: --output starts it again


class DeleteTheRunAtTheStartOfEpoch(tf.keras.callbacks.Callback):
    """Deletes the run directory when the fit of epoch `epoch` (1-based) begins, before
    TensorBoard opens its writers in it."""

    def __init__(self, run_dir, epoch):
        super().__init__()
        self.run_dir, self.epoch, self.fits = run_dir, epoch, 0

    def on_train_begin(self, logs=None):
        self.fits += 1
        if self.fits == self.epoch:
            shutil.rmtree(self.run_dir)


def test_a_run_directory_deleted_before_tensorboard_writes_stops_the_training(fashion_dir,
                                                                               tmp_path):
    """TensorFlow reports the missing directory as tf.errors.NotFoundError, not OSError
    (seen once in CI as a traceback and exit code 1)."""
    run_dir = tmp_path / "run"
    config = runs.RunConfig(epochs=3, batch_size=32, train_limit=96, test_limit=40,
                            data_dir=str(fashion_dir), arch={"width": 4})
    with pytest.raises(runs.RunError, match="was deleted while this training ran"):
        runs.train(config, run_dir, verbose=0,
                   extra_callbacks=[DeleteTheRunAtTheStartOfEpoch(run_dir, 2)])
    assert not run_dir.exists()


def test_resuming_a_finished_run_keeps_its_report(trained_run, tmp_path, capsys):
    copy = _copy_run(trained_run, tmp_path)
    before = (copy / "report.json").read_text()
    assert "conversion" in json.loads(before)
    assert cli.main(["train", "--resume", str(copy), "--quiet"]) == 0
    assert "Finished 2 epochs" in capsys.readouterr().out
    assert (copy / "report.json").read_text() == before


def test_bayesianize_keeps_what_a_bayesian_sign_learned():
    tf.keras.utils.set_random_seed(0)
    inputs = tf.keras.Input((8, 8, 4))
    x = lq.layers.QuantConv2D(8, 3, kernel_quantizer="ste_sign", use_bias=False)(inputs)
    x = tf.keras.layers.GlobalAveragePooling2D()(tf.keras.layers.BatchNormalization()(x))
    bayesian = bl.bayesianize(tf.keras.Model(inputs, tf.keras.layers.Dense(3)(x)))
    quantizer = bayesian_quantizers(bayesian)[0]
    learned = [np.random.default_rng(i).uniform(0.5, 1.5, w.shape).astype(np.float32)
               for i, w in enumerate(quantizer.weights)]
    for weight, value in zip(quantizer.weights, learned):
        weight.assign(value)
    again = bayesian_quantizers(bl.bayesianize(bayesian))[0]
    for weight, value in zip(again.weights, learned):
        np.testing.assert_array_equal(weight.numpy(), value, err_msg=weight.name)


def test_bonn_refuses_models_it_cannot_train():
    inputs = tf.keras.Input((4,))
    two_outputs = tf.keras.Model(inputs, [tf.keras.layers.Dense(3)(inputs),
                                          tf.keras.layers.Dense(2)(inputs)])
    with pytest.raises(ValueError, match="BONN trains a classifier with one output"):
        BONN(two_outputs)
    with pytest.raises(ValueError, match="is not built: start it with tf.keras.Input"):
        BONN(tf.keras.Sequential([tf.keras.layers.Dense(3)]))
    one_output = tf.keras.Model(inputs, tf.keras.layers.Dense(3)(inputs))
    with pytest.raises(ValueError, match="`feature_loss` must be True or False"):
        BONN(one_output, feature_loss="no")


def test_a_setting_without_effect_warns_in_the_python_api(fashion_dir, tmp_path):
    config = runs.RunConfig(epochs=1, batch_size=32, train_limit=64, test_limit=40,
                            data_dir=str(fashion_dir), arch={"width": 4}, kernel_loss=False,
                            lam=0.5)
    with pytest.warns(UserWarning, match="RunConfig.lam has no effect in this run"):
        runs.train(config, tmp_path / "run", verbose=0)


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
