"""Where the time of one BONN training step goes: its pieces timed interleaved in one process.

    python benchmarks/step_profile.py --model small_cnn --batch-size 128 \\
        --write benchmarks/results/step-profile-small_cnn.json

Each piece is a compiled TensorFlow function run on the same batch; after warm-up the
pieces take turns one call at a time (A B C ..., A B C ...) for `--rounds` x `--calls`
calls, so the CPU quota of this shared machine hits them alike. Printed: per piece the
median time of a call and its share of the full BONN step (median over rounds of the
per-round ratio). The model is built with the paper's units (`reduction="sum"`,
lam = nu = 1e-4, theta = 1e-3) and Adam, as in `benchmarks/speed.py`.

Pieces:

* `plain Larq step`: the Keras train function of the same architecture with "ste_sign"
  kernels (forward, backward, Adam, loss and accuracy metrics);
* `plain forward` / `plain forward + backward` / `plain forward + backward + Adam`:
  the same model step by step; the step minus the last is Keras' bookkeeping (metrics,
  loss tracking, the step counter);
* `L_B, <layer>`: the Bayesian kernel loss of one layer and its gradient with respect to
  the kernel, W, mu and sigma (`losses.fused_kernel_loss`, the default: one XLA pass
  with the closed-form gradients); `L_B, all layers` for the four layers together, also
  as `XLA autodiff` (`kernel_loss` compiled per layer and differentiated by autodiff),
  `one XLA cluster` (that, for every layer in one cluster) and `unfused`
  (`jit_compile=False`: plain ops and autodiff);
* `Adam on W, mu, sigma`: the optimizer update of BONN's extra variables alone (the same
  shapes, their own Adam slots), and `Adam on W alone` (the 16 small mu and sigma
  variables of four layers are the difference);
* `feature loss`: `BayesianFeatureLoss` and its gradient on a batch of features;
* `full BONN step` and `full BONN step, L_B unfused`: the `BONN` train function.

The input pipeline is timed apart, with `--data`: one pass over the real training data of
an epoch (Fashion-MNIST, as `bayes-larq train` reads it) without a model, per batch.
Because `fit` prefetches, that time overlaps the step; the number says how much of the
step it could cost at most.
"""

import argparse
import os
import pathlib
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import bayes_larq as bl  # noqa: E402  - selects tf_keras first
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from bayes_larq import losses, models  # noqa: E402
from bayes_larq.quantizers import bayesian_quantizers, binary_kernels  # noqa: E402
from speed import interleaved_medians, keras_step, write_results  # noqa: E402

PAPER_UNITS = {"reduction": "sum", "lam": 1e-4, "nu": 1e-4}
CE = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)
INPUT_SHAPES = {"small_cnn": (28, 28, 1), "resnet18_cifar": (32, 32, 3)}


def batch(input_shape, batch_size, seed=0):
    rng = np.random.default_rng(seed)
    x = tf.constant(rng.uniform(-1, 1, (batch_size, *input_shape)).astype(np.float32))
    return x, tf.constant(rng.integers(0, 10, batch_size))


def bonn_model(model_name, jit_compile, theta=1e-3):
    tf.keras.utils.set_random_seed(0)
    classifier = models.get(model_name, input_shape=INPUT_SHAPES[model_name],
                            jit_compile=jit_compile, **PAPER_UNITS)
    bonn = bl.BONN(classifier, theta=theta)
    bonn.compile(tf.keras.optimizers.Adam(1e-3), CE, metrics=["accuracy"])
    return bonn


def plain_pieces(model_name, x, y):
    tf.keras.utils.set_random_seed(0)
    plain = models.get(model_name, input_shape=INPUT_SHAPES[model_name], bonn=False)
    plain.compile(tf.keras.optimizers.Adam(1e-3), CE, metrics=["accuracy"])
    optimizer = tf.keras.optimizers.Adam(1e-3)

    @tf.function
    def forward():
        return plain(x, training=True)

    def loss_and_gradients():
        with tf.GradientTape() as tape:
            loss = CE(y, plain(x, training=True))
        return loss, tape.gradient(loss, plain.trainable_variables)

    @tf.function
    def forward_backward():
        return loss_and_gradients()

    @tf.function
    def forward_backward_adam():
        loss, gradients = loss_and_gradients()
        optimizer.apply_gradients(zip(gradients, plain.trainable_variables))
        return loss

    return {"plain Larq step": keras_step(plain, x, y), "plain forward": forward,
            "plain forward + backward": forward_backward,
            "plain forward + backward + Adam": forward_backward_adam}


def loss_arguments(kernel):
    q = kernel.quantizer
    return (kernel.latent, q.reconstruction, q.mu_pos, q.mu_neg, q.sigma_pos, q.sigma_neg,
            q.lam, q.nu, q.reduction)


def trainable(kernel):
    q = kernel.quantizer
    return [kernel.latent, q.reconstruction, q.mu_pos, q.mu_neg, q.log_sigma_pos,
            q.log_sigma_neg]


def kernel_loss_function(kernels, mode):
    """L_B of `kernels` and its gradient; mode "fused" (one XLA cluster per layer, the
    library's default), "one cluster" (all layers in one XLA cluster) or "unfused"."""
    width = len(loss_arguments(kernels[0]))
    loss = (tf.function(losses.kernel_loss, jit_compile=True) if mode == "fused"
            else losses.kernel_loss)

    def total(*flat):
        return tf.add_n([loss(*flat[i:i + width]) for i in range(0, len(flat), width)])
    if mode == "one cluster":
        total = tf.function(total, jit_compile=True)
    variables = [v for kernel in kernels for v in trainable(kernel)]

    @tf.function
    def value_and_gradients():
        with tf.GradientTape() as tape:
            value = total(*[a for kernel in kernels for a in loss_arguments(kernel)])
        return value, tape.gradient(value, variables)
    return value_and_gradients


def adam_update(variables):
    """One Adam update of copies of `variables` (same shapes, own slots), fixed gradients."""
    copies = [tf.Variable(v) for v in variables]
    rng = np.random.default_rng(1)
    gradients = [tf.constant(rng.normal(0, 1e-3, v.shape), v.dtype) for v in variables]
    optimizer = tf.keras.optimizers.Adam(1e-3)
    return tf.function(lambda: optimizer.apply_gradients(zip(gradients, copies)))


def bonn_pieces(bonn, unfused, x, y):
    kernels = binary_kernels(bonn.classifier)
    pieces = {f"L_B, {k.layer.name}": kernel_loss_function([k], "fused") for k in kernels}
    pieces["L_B, all layers"] = kernel_loss_function(kernels, "fused")
    pieces["L_B, all layers, XLA autodiff"] = kernel_loss_function(kernels, "XLA autodiff")
    pieces["L_B, all layers, one XLA cluster"] = kernel_loss_function(kernels, "one cluster")
    pieces["L_B, all layers, unfused"] = kernel_loss_function(kernels, "unfused")

    quantizers = bayesian_quantizers(bonn.classifier)
    pieces["Adam on W, mu, sigma"] = adam_update(
        [v for q in quantizers for v in q.trainable_weights])
    pieces["Adam on W alone"] = adam_update([q.reconstruction for q in quantizers])

    features = tf.constant(np.random.default_rng(2).normal(
        size=(x.shape[0], bonn.feature_loss.centers.shape[-1])).astype(np.float32))

    @tf.function
    def feature_loss():
        with tf.GradientTape() as tape:
            tape.watch(features)
            value = bonn.feature_loss(features, y)
        return value, tape.gradient(value, [features, *bonn.feature_loss.trainable_weights])
    pieces["feature loss"] = feature_loss
    pieces["full BONN step"] = keras_step(bonn, x, y)
    pieces["full BONN step, L_B unfused"] = keras_step(unfused, x, y)
    return pieces


def interleave(pieces, calls, rounds):
    per_round = interleaved_medians(pieces, calls, rounds)
    full = per_round["full BONN step"]
    return {name: {"median_ms": 1e3 * statistics.median(times),
                   "share_of_full_step": statistics.median(
                       [t / f for t, f in zip(times, full)]),
                   "round_median_ms": [1e3 * t for t in times]}
            for name, times in per_round.items()}


def input_pipeline_ms(batch_size, data_dir=None):
    """Milliseconds per batch of one epoch of the training data read alone."""
    from bayes_larq.app import data

    dataset = data.load("fashion_mnist", "train", batch_size, training=True, epoch=0,
                        data_dir=data_dir)
    start, batches = time.perf_counter(), 0
    for _ in dataset:
        batches += 1
    return 1e3 * (time.perf_counter() - start) / batches


def table(results):
    lines = ["| piece | median ms per call | share of the full BONN step |",
             "| --- | --- | --- |"]
    lines += [f"| {name} | {row['median_ms']:.2f} | {row['share_of_full_step']:.3f} |"
              for name, row in results.items()]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="small_cnn", choices=sorted(INPUT_SHAPES))
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--calls", type=int, default=20, help="timed calls per piece and round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--data", action="store_true",
                        help="also time the input pipeline (needs Fashion-MNIST)")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--write", type=pathlib.Path)
    args = parser.parse_args(argv)
    x, y = batch(INPUT_SHAPES[args.model], args.batch_size)
    bonn, unfused = bonn_model(args.model, True), bonn_model(args.model, False)
    pieces = {**plain_pieces(args.model, x, y), **bonn_pieces(bonn, unfused, x, y)}
    results = interleave(pieces, args.calls, args.rounds)
    print(table(results))
    pipeline = None
    if args.data:
        pipeline = input_pipeline_ms(args.batch_size, args.data_dir)
        print(f"input pipeline alone: {pipeline:.2f} ms per batch of {args.batch_size}")
    if args.write:
        write_results(args.write, "step_profile.py", argv, results=results,
                      input_pipeline_ms_per_batch=pipeline)


if __name__ == "__main__":
    main()
