"""Training step time of BONN against plain Larq, measured interleaved in one process.

    python benchmarks/speed.py --model small_cnn --batch-size 128 --rounds 7 \\
        --write benchmarks/results/speed-small_cnn.json

Variants of the same architecture, data and batch:

* `plain Larq`: "ste_sign" kernels, plain `model.fit` (no BONN wrapper);
* `BONN wrapper only`: "ste_sign" kernels inside `bl.BONN(feature_loss=False)`;
* `kernel loss only`: `BayesianSign` kernels (W, mu, sigma, L_B), no feature loss;
* `feature loss only`: "ste_sign" kernels, the feature loss on;
* `full BONN`: both losses;
* `... L_B unfused`: the same with `BayesianSign(jit_compile=False)`, L_B as plain
  TensorFlow ops (what every BayesianSign did before its XLA-fused default);
* `... + flip diagnostics`: with the `flips.FlipProbe` that `callbacks.FlipDiagnostics`
  attaches (the in-step record of gradients and sign flips; the callback's NumPy
  summary every 25 steps is not in a step);
* `... + flip threshold (quantile | rebnn)`: lam recomputed every step by
  `flips.FlipThreshold` (`--flip-threshold`, `--threshold-every 1`);
* `... + distillation`: `bl.BONN(..., teacher=float twin)`: the float twin of the same
  architecture runs forward (inference mode) in every step for the distribution loss.
* `... + learnable activations`: the builders' `learnable_threshold=True, rprelu=True`
  (ReActNet's learned sign threshold and RPReLU, `bayes_larq.layers`).

`--variants NAME ...` times a subset (plain Larq, the reference, is always in it).

Each variant is compiled once and warmed up; then the variants take turns one training
step at a time (A B C D E, A B C D E, ...: each a call of the Keras train function that
`fit` runs, fed the same batch from a repeated one-batch dataset), for
`--rounds` x `--steps` steps each, so a slow spell of this shared machine (its CPU
quota makes single step times jump between a few values) hits all variants alike.
Printed: per variant the median step time, and the median, min and max over rounds of
the ratio of its median step time to plain Larq's in the same round. The differences
between variants say what each piece costs.

`--main-job N` times the main job instead: the demo's training configuration
(`bayes-larq demo`: `small_cnn`, Fashion-MNIST, batch 128, full BONN at the library
defaults) for two epochs per run, as the run records them (`epoch_seconds` in
state.json: `fit` of one epoch, with validation on the test set and the run's
callbacks), split into training steps, validation and the rest. Plain Larq
(`--no-bonn`), BONN and BONN with L_B unfused take turns, N runs each. The first epoch
carries the one-time costs (tracing; XLA compilation of the fused L_B).
"""

import argparse
import json
import os
import pathlib
import platform
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import bayes_larq as bl  # noqa: E402  - selects tf_keras first
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from bayes_larq import models  # noqa: E402

VARIANTS = {
    "plain Larq": {"bonn": False, "wrapper": False, "feature_loss": False},
    "BONN wrapper only": {"bonn": False, "wrapper": True, "feature_loss": False},
    "kernel loss only": {"bonn": True, "wrapper": True, "feature_loss": False},
    "feature loss only": {"bonn": False, "wrapper": True, "feature_loss": True},
    "full BONN": {"bonn": True, "wrapper": True, "feature_loss": True},
    "kernel loss only, L_B unfused": {"bonn": True, "wrapper": True, "feature_loss": False,
                                      "jit_compile": False},
    "full BONN, L_B unfused": {"bonn": True, "wrapper": True, "feature_loss": True,
                               "jit_compile": False},
    "kernel loss only + flip diagnostics": {"bonn": True, "wrapper": True,
                                            "feature_loss": False, "probe": True},
    "kernel loss only + flip threshold (quantile)": {
        "bonn": True, "wrapper": True, "feature_loss": False,
        "threshold": {"rule": "quantile", "q": 0.9}},
    "kernel loss only + flip threshold (rebnn)": {
        "bonn": True, "wrapper": True, "feature_loss": False, "threshold": {"rule": "rebnn"}},
    "plain Larq + distillation": {"bonn": False, "wrapper": True, "feature_loss": False,
                                  "teacher": True},
    "full BONN + distillation": {"bonn": True, "wrapper": True, "feature_loss": True,
                                 "teacher": True},
    "plain Larq + learnable activations": {"bonn": False, "wrapper": False,
                                           "feature_loss": False, "learnable": True},
    "plain Larq + learnable activations + distillation": {
        "bonn": False, "wrapper": True, "feature_loss": False, "learnable": True,
        "teacher": True},
}
LEARNABLE = {"learnable_threshold": True, "rprelu": True}
INPUTS = {"small_cnn": ((28, 28, 1), {}), "resnet18_cifar": ((32, 32, 3), {}),
          "wrn22": ((32, 32, 3), {"width_factor": 1})}


def build(model_name, variant, seed=0, **compile_options):
    input_shape, arch = INPUTS[model_name]
    tf.keras.utils.set_random_seed(seed)
    bayesian_sign = ({"reduction": "sum", "lam": 1e-4, "nu": 1e-4,
                      "jit_compile": variant.get("jit_compile", True)} if variant["bonn"] else {})
    options = LEARNABLE if variant.get("learnable") else {}
    classifier = models.get(model_name, num_classes=10, input_shape=input_shape,
                            bonn=variant["bonn"], **bayesian_sign, **options, **arch)
    teacher = (models.get(model_name, num_classes=10, input_shape=input_shape, bonn=False,
                          precision="float", **arch) if variant.get("teacher") else None)
    model = (bl.BONN(classifier, feature_loss=variant["feature_loss"],
                     flip_threshold=variant.get("threshold"), teacher=teacher)
             if variant["wrapper"] else classifier)
    model.compile(tf.keras.optimizers.Adam(1e-3),
                  tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"], **compile_options)
    if variant.get("probe"):
        model.attach_flip_probe(bl.flips.FlipProbe(bl.quantizers.binary_kernels(classifier)))
    return model


def batches(model_name, batch_size, steps, seed=0):
    input_shape, _ = INPUTS[model_name]
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, (batch_size * steps, *input_shape)).astype(np.float32)
    y = rng.integers(0, 10, batch_size * steps)
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size).cache()


def keras_step(model, x, y):
    """One call = one training step of `fit`: the model's Keras train function, fed from a
    one-batch dataset repeated forever (`train_on_batch` adds per-call set-up that `fit`
    does not pay per step)."""
    iterator = iter(tf.data.Dataset.from_tensors((x, y)).repeat())
    function = model.make_train_function()
    return lambda: function(iterator)


def interleaved_medians(functions, calls, rounds, warmup_calls=5):
    """{name: [median seconds of a call in each round]}: after warm-up, the functions take
    turns one call at a time (A B C, A B C, ...), `calls` calls each per round."""
    for function in functions.values():
        for _ in range(warmup_calls):
            function()
    per_round = {name: [] for name in functions}
    for _ in range(rounds):
        seconds = {name: [] for name in functions}
        for _ in range(calls):
            for name, function in functions.items():
                start = time.perf_counter()
                function()
                seconds[name].append(time.perf_counter() - start)
        for name in functions:
            per_round[name].append(statistics.median(seconds[name]))
    return per_round


def measure(model_name, batch_size, steps, rounds, compile_options=None, variants=None):
    """The table's numbers for `variants` (names of VARIANTS; None: all of them)."""
    x, y = next(iter(batches(model_name, batch_size, 1)))
    chosen = ["plain Larq"] + [n for n in (variants or VARIANTS) if n != "plain Larq"]
    built = {name: keras_step(build(model_name, VARIANTS[name], **(compile_options or {})),
                              x, y)
             for name in chosen}
    per_round = interleaved_medians(built, steps, rounds)
    ratios = {name: [s / p for s, p in zip(per_round[name], per_round["plain Larq"])]
              for name in built}
    return {name: {"median_ms": 1e3 * statistics.median(per_round[name]),
                   "ratio_median": statistics.median(ratios[name]),
                   "ratio_min": min(ratios[name]), "ratio_max": max(ratios[name]),
                   "round_median_ms": [1e3 * s for s in per_round[name]]}
            for name in built}


MAIN_JOB_VARIANTS = {
    "plain Larq (--no-bonn)": {"kernel_loss": False, "feature_loss": False},
    "BONN (demo)": {},
    "BONN, L_B unfused": {"arch": {"jit_compile": False}},
}


class EpochParts(tf.keras.callbacks.Callback):
    """Per epoch, seconds of its training steps (first batch begin to last batch end) and
    of its validation pass; the rest of the epoch is `fit` set-up and epoch-end callbacks."""

    def __init__(self):
        super().__init__()
        self.train_seconds, self.test_seconds = [], []

    def on_train_batch_begin(self, batch, logs=None):
        if batch == 0:
            self.train_start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.last_batch_end = time.perf_counter()

    def on_test_begin(self, logs=None):
        self.train_seconds.append(self.last_batch_end - self.train_start)
        self.test_start = time.perf_counter()

    def on_test_end(self, logs=None):
        self.test_seconds.append(time.perf_counter() - self.test_start)


def main_job_epochs(repetitions, epochs=2, data_dir=None):
    """`epochs` epochs of the demo's training per variant and repetition, variants
    interleaved: {variant: [[{"epoch", "train_steps", "validation", "rest"} seconds per
    epoch] per run]}."""
    import tempfile

    from bayes_larq.app import runs

    measured = {name: [] for name in MAIN_JOB_VARIANTS}
    with tempfile.TemporaryDirectory() as scratch:
        for repetition in range(repetitions):
            for index, (name, overrides) in enumerate(MAIN_JOB_VARIANTS.items()):
                config = runs.RunConfig(epochs=epochs, data_dir=data_dir, **overrides)
                run_dir = pathlib.Path(scratch) / f"{index}-{repetition}"
                parts = EpochParts()
                runs.train(config, run_dir, verbose=0, extra_callbacks=[parts])
                state = json.loads((run_dir / "state.json").read_text())
                measured[name].append([
                    {"epoch": total, "train_steps": train, "validation": test,
                     "rest": total - train - test}
                    for total, train, test in zip(state["epoch_seconds"], parts.train_seconds,
                                                  parts.test_seconds)])
    return measured


def main_job_table(measured):
    lines = ["| variant | epoch | epoch s | training steps s | validation s | rest of `fit` s "
             "| epoch / plain Larq's |", "| --- | --- | --- | --- | --- | --- | --- |"]
    plain = measured["plain Larq (--no-bonn)"]
    for name, runs_ in measured.items():
        for epoch in range(len(runs_[0])):
            rows = [run[epoch] for run in runs_]
            median = {part: statistics.median(row[part] for row in rows) for part in rows[0]}
            ratio = statistics.median(row["epoch"] / base[epoch]["epoch"]
                                      for row, base in zip(rows, plain))
            lines.append(f"| {name} | {epoch + 1} | {median['epoch']:.1f} | "
                         f"{median['train_steps']:.1f} | {median['validation']:.1f} | "
                         f"{median['rest']:.1f} | {ratio:.3f} |")
    return "\n".join(lines)


def table(results):
    lines = ["| variant | median step ms | ratio to plain Larq (median, min-max over rounds) |",
             "| --- | --- | --- |"]
    for name, row in results.items():
        lines.append(f"| {name} | {row['median_ms']:.1f} | {row['ratio_median']:.3f} "
                     f"({row['ratio_min']:.3f}-{row['ratio_max']:.3f}) |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="small_cnn", choices=sorted(INPUTS))
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per variant and round")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--jit-compile", action="store_true",
                        help="compile the whole train step with XLA")
    parser.add_argument("--main-job", type=int, metavar="N",
                        help="time N one-epoch runs of the demo per variant instead")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--variants", nargs="+", choices=sorted(VARIANTS), metavar="NAME",
                        help="time only these variants (and plain Larq)")
    parser.add_argument("--write", type=pathlib.Path)
    args = parser.parse_args(argv)
    if args.main_job:
        results = main_job_epochs(args.main_job, data_dir=args.data_dir)
        print(main_job_table(results))
    else:
        options = {"jit_compile": True} if args.jit_compile else {}
        results = measure(args.model, args.batch_size, args.steps, args.rounds,
                          compile_options=options, variants=args.variants)
        print(table(results))
    if args.write:
        write_results(args.write, "speed.py", argv, results=results)


def write_results(path, script, argv, **payload):
    """A results JSON with the command that reproduces it and the machine it ran on."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({
        "command": f"python benchmarks/{script} " + " ".join(argv or os.sys.argv[1:]),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
                   f"{platform.python_version()}, TensorFlow {tf.__version__}",
        **payload}, indent=2) + "\n")


if __name__ == "__main__":
    main()
