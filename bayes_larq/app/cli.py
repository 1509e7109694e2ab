"""The `bayes-larq` command line (also `python -m bayes_larq`).

    bayes-larq train      train a model (BONN by default), a checkpoint every epoch
    bayes-larq evaluate   top-1 (and top-5 above 10 classes) test accuracy of a trained model
    bayes-larq convert    LCE conversion to .tflite, checked against Keras on test images
    bayes-larq benchmark  LCE interpreter latency, beside the float version of the model
    bayes-larq demo       the main job: train the demo's recipe, convert, benchmark, summary

`bayes-larq train --config FILE` takes the run settings from a TOML file (recipes/), the
flags beside it overriding it; `--dry-run` prints the resolved run as JSON and exits
(`bayes_larq.app.config_file`, `bayes_larq.app.dry_run`).
`bayes-larq COMMAND --help` lists the options. Exit codes: 0 success, 1 failure (missing
data, converted model disagrees, training diverged), 2 bad arguments or an unusable run
directory, 130 interrupted by Ctrl-C (SIGINT) and 143 terminated by SIGTERM (what cluster
schedulers send); both leave a run that `--resume` continues.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import pathlib
import re
import signal
import sys
import time

from typing import TYPE_CHECKING

from bayes_larq.app import messages
from bayes_larq.app.arguments import arch_argument, integer, number, output_path

if TYPE_CHECKING:
    from bayes_larq.app import runs

__all__ = ["COMMANDS", "EXIT_FAILURE", "EXIT_INTERRUPTED", "EXIT_TERMINATED", "EXIT_USAGE",
           "Terminated", "build_parser", "main"]

EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED, EXIT_TERMINATED = 1, 2, 130, 143
DEFAULT_RUNS_DIR = "runs"
NEGATIVE_NUMBER = re.compile(r"^-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$|^-(inf|nan)$")


# --------------------------------------------------------------------------- parser


def _train_options(parser):
    """The run settings; defaults are SUPPRESSed so `--resume` can tell what was passed."""
    from bayes_larq import models
    from bayes_larq.app import data, runs
    from bayes_larq.defaults import PRIOR_GRADIENTS, REDUCTIONS, SCALES

    defaults = runs.RunConfig()
    group = parser.add_argument_group("run settings (defaults in brackets)")
    add = group.add_argument
    add("--model", choices=models.names(), help=f"model from the registry [{defaults.model}]")
    add("--dataset", choices=sorted(data.DATASETS), help=f"dataset [{defaults.dataset}]")
    add("--epochs", type=integer, help=f"epochs [{defaults.epochs}]")
    add("--batch-size", type=integer, help=f"batch size [{defaults.batch_size}]")
    add("--no-bonn", action="store_true",
        help="plain Larq training: no kernel loss ('ste_sign') and no feature loss")
    add("--kernel-loss", action=argparse.BooleanOptionalAction,
        help="--no-kernel-loss: binary kernels use Larq's 'ste_sign' instead of "
        "BayesianSign (no L_B) [on]")
    add("--feature-loss", action=argparse.BooleanOptionalAction,
        help="--no-feature-loss: leave out the feature loss L_F [on]")
    add("--lam", type=number, help=f"kernel-loss weight lambda [{defaults.lam:g}]")
    add("--nu", type=number, help=f"mixture-prior weight nu inside L_B [{defaults.nu:g}]")
    add("--theta", type=number, help=f"feature-loss weight theta [{defaults.theta:g}]")
    add("--reduction", choices=REDUCTIONS, help=f"L_B reduction [{defaults.reduction}]")
    add("--kernel-scale", choices=SCALES,
        help=f"binary kernel scale 1/mean(W) per layer or channel [{defaults.kernel_scale}]")
    add("--scope", choices=models.SCOPES, help=f"what is binarized [{defaults.scope}]")
    add("--precision", choices=models.PRECISIONS,
        help=f"'float': the same architecture without quantizers [{defaults.precision}]")
    add("--optimizer", choices=runs.OPTIMIZERS, help=f"[{defaults.optimizer}]")
    add("--learning-rate", type=number, help="base learning rate [" + ", ".join(
        f"{name}: {rate:g}" for name, rate in runs.DEFAULT_LEARNING_RATES.items()) + "]")
    add("--momentum", type=number, help=f"SGD momentum [{defaults.momentum}]")
    add("--lr-schedule", choices=runs.LR_SCHEDULES,
        help=f"'cosine' to 0 over the epochs, 'constant', or 'step': times "
        f"--lr-decay-factor every --lr-decay-epochs epochs [{defaults.lr_schedule}]")
    add("--lr-decay-factor", type=number,
        help=f"--lr-schedule step: factor of the rate at each decay, in (0, 1) "
        f"[{defaults.lr_decay_factor:g}]")
    add("--lr-decay-epochs", type=integer,
        help=f"--lr-schedule step: epochs between decays [{defaults.lr_decay_epochs}]")
    add("--weight-decay", type=number,
        help="L2 weight decay on every convolution and dense kernel (binary layers: the "
        "latent kernel), coupled as PyTorch's SGD weight_decay; not on biases, BatchNorm, "
        f"W, mu or sigma [{defaults.weight_decay:g}]")
    add("--w-lr-multiplier", type=number,
        help=f"learning-rate multiplier of W (the paper's ImageNet 0.01 for W at 0.1 for "
        f"the kernels: 0.1) [{defaults.w_lr_multiplier:g}]")
    add("--sigma-lr-multiplier", type=number,
        help=f"learning-rate multiplier of the mixture sigmas [{defaults.sigma_lr_multiplier:g}]")
    add("--prior-gradient", choices=PRIOR_GRADIENTS,
        help=f"'mean': the paper's averaged mu/sigma gradient [{defaults.prior_gradient}]")
    add("--mixture-update", choices=runs.MIXTURE_UPDATES,
        help=f"'closed_form': set mu/sigma by closed form every --refresh-batches, "
             f"not by gradient [{defaults.mixture_update}]")
    add("--refresh-batches", type=integer, help=f"[{defaults.refresh_batches}]")
    add("--lam-warmup-epochs", type=integer,
        help=f"ramp lam linearly from 0 over N epochs [{defaults.lam_warmup_epochs}]")
    add("--flip-threshold", choices=runs.FLIP_THRESHOLDS,
        help="'quantile': each layer's lam set so that L_B's push at zero equals the "
        "--threshold-quantile of its data gradient; 'drift': of that gradient's moving "
        "average; 'rebnn': ReBNN's rule "
        f"[{defaults.flip_threshold}]")
    add("--threshold-quantile", type=number,
        help=f"quantile q in [0, 1) of --flip-threshold quantile [{defaults.threshold_quantile}]")
    add("--threshold-decay", type=number,
        help=f"decay of the gradient's moving average, --flip-threshold drift "
             f"[{defaults.threshold_decay}]")
    add("--threshold-every", type=integer,
        help=f"recompute lam every N steps [{defaults.threshold_every}]")
    add("--flip-diagnostics", action=argparse.BooleanOptionalAction,
        help="--no-flip-diagnostics: do not record the gradient / flip diagnostics [on]")
    add("--strategy", choices=runs.STRATEGIES,
        help="tf.distribute strategy: 'multi-worker' reads TF_CONFIG; 'auto' picks "
        "multi-worker, mirrored (several GPUs) or the default [auto]")
    add("--sync-batch-norm", action=argparse.BooleanOptionalAction,
        help="BatchNorm statistics synchronised across replicas [off]")
    add("--validation-size", type=integer,
        help="hold out the last N training examples for per-epoch validation; the test "
        "set is then evaluated once, at the end")
    add("--augment", action=argparse.BooleanOptionalAction,
        help="augment the training images (Fashion-MNIST: pad 2, random crop, flip); "
        "--no-augment turns it off [the dataset's default: CIFAR and ImageNet augment, "
        "Fashion-MNIST does not]")
    add("--seed", type=integer,
        help=f"seed of weights, data order and augmentation [{defaults.seed}]")
    add("--train-limit", type=integer, help="use only the first N training examples")
    add("--test-limit", type=integer, help="use only the first N test examples")
    add("--data-dir", help="Fashion-MNIST IDX directory, or the TFDS data directory")
    add("--arch", type=arch_argument, action="append", metavar="KEY=VALUE",
        help="architecture argument of the builder, repeatable (e.g. width=16)")
    add("--teacher", metavar="RUN_DIR|float-twin",
        help="distil from a finished float run (its model.keras), or from the float twin "
        "of this run, trained first in RUN/teacher/ [none]")
    add("--teacher-epochs", type=integer,
        help="epochs of the float twin of --teacher float-twin [--epochs]")
    add("--kd-weight", type=number,
        help=f"share of the distribution loss in the task loss, in [0, 1]; 1: the "
        f"teacher's distribution instead of the labels [{defaults.kd_weight:g}]")
    add("--temperature", type=number,
        help=f"softmax temperature of the distribution loss [{defaults.temperature:g}]")
    add("--two-step", action=argparse.BooleanOptionalAction,
        help="step 1: binary activations with real kernels; step 2: binary kernels from "
        "step 1's weights [off]")
    add("--step1-epochs", type=integer, help="epochs of step 1 of --two-step [half --epochs]")
    for action in group._group_actions:
        action.default = argparse.SUPPRESS


def _run_config(args):
    """RunConfig from the passed train options (library defaults for the rest)."""
    from bayes_larq.app import runs

    given = {key: value for key, value in vars(args).items()
             if key in {f.name for f in dataclasses.fields(runs.RunConfig)}}
    if vars(args).get("arch"):
        given["arch"] = dict(args.arch)
    if vars(args).get("no_bonn"):
        if given.get("kernel_loss") or given.get("feature_loss"):
            raise runs.RunError("--no-bonn turns both losses off; do not pass "
                                "--kernel-loss or --feature-loss with it.")
        given.update(kernel_loss=False, feature_loss=False)
    return given


def build_parser() -> argparse.ArgumentParser:
    """The `bayes-larq` parser: one subcommand per entry of `COMMANDS`."""
    parser = argparse.ArgumentParser(
        prog="bayes-larq", description="Train, evaluate, convert and benchmark BONN binary "
        "networks (Bayesian Optimized 1-bit CNNs) with Larq and LCE.")
    from bayes_larq import __version__

    parser.add_argument("--version", action="version", version=f"bayes-larq {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    train = commands.add_parser("train", help="train a model (BONN by default)",
                                description="Train a model; a checkpoint every epoch; Ctrl-C "
                                "leaves a run that --resume continues.")
    train.add_argument("--output", type=output_path,
                       help=f"run directory [{DEFAULT_RUNS_DIR}/MODEL-DATASET-TIME]")
    train.add_argument("--resume", type=pathlib.Path, metavar="RUN_DIR",
                       help="continue an interrupted run with its saved settings")
    train.add_argument("--previous-checkpoint", action="store_true",
                       help="with --resume: continue from the checkpoint before the last "
                       "(when the last one is damaged)")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.add_argument("--config", type=pathlib.Path, metavar="FILE",
                       help="take the run settings from a TOML file (keys as in config.json, "
                       "e.g. recipes/*.toml); flags given here override it")
    train.add_argument("--dry-run", action="store_true",
                       help="print the resolved settings, strategy and schedule as JSON and "
                       "exit, reading no data and writing nothing")
    _train_options(train)

    evaluate = commands.add_parser("evaluate", help="test accuracy of a trained model")
    _model_source(evaluate)
    evaluate.add_argument("--batch-size", type=integer, default=256)
    evaluate.add_argument("--limit", type=integer, help="only the first N test examples")

    convert = commands.add_parser("convert",
                                  help="LCE conversion to .tflite, checked against Keras")
    _model_source(convert)
    convert.add_argument("--output", type=output_path,
                         help="the .tflite file [RUN_DIR/model.tflite or MODEL.tflite]")
    _parity_options(convert)

    benchmark = commands.add_parser("benchmark", help="LCE latency beside the float model")
    benchmark.add_argument("path", type=pathlib.Path, metavar="RUN_DIR|MODEL.tflite")
    _latency_options(benchmark)
    benchmark.add_argument("--no-float", action="store_true",
                           help="skip the float version of the model")

    demo = commands.add_parser("demo", help="the main job: train, convert, benchmark, summary",
                               description="Train binary small_cnn on Fashion-MNIST with the "
                               "demo's recipe (recipes/small-cnn-fashion-mnist.toml: ReActNet's "
                               "learnable activations, distilled at kd-weight 0.5, T 4 from a "
                               "float twin trained for 2 epochs first, then 4 epochs; no "
                               "Bayesian loss), convert it with LCE, benchmark it and print a "
                               "summary. The run settings below override the recipe; their "
                               "bracketed defaults are those of `train`.")
    demo.add_argument("--output", type=output_path,
                      help=f"run directory [{DEFAULT_RUNS_DIR}/demo-TIME]")
    demo.add_argument("--quiet", action="store_true", help="no progress bar")
    _train_options(demo)
    _parity_options(demo)
    _latency_options(demo)
    for name, subparser in commands.choices.items():
        subparser.set_defaults(handler=COMMANDS[name], subparser=subparser)
        # argparse reads "-1e-3" as an option unless it looks like a negative number to it;
        # widen its (private) pattern so such values reach our type checks and messages.
        subparser._negative_number_matcher = NEGATIVE_NUMBER
    return parser


def _model_source(parser):
    from bayes_larq.app import data

    parser.add_argument("path", type=pathlib.Path, metavar="RUN_DIR|MODEL.keras")
    parser.add_argument("--dataset", choices=sorted(data.DATASETS),
                        help="test data [the run's dataset; fashion_mnist]")
    parser.add_argument("--data-dir", help="Fashion-MNIST IDX or TFDS data directory")


def _parity_options(parser):
    group = parser.add_argument_group("Keras vs TFLite agreement")
    group.add_argument("--samples", type=integer, default=1000,
                       help="test images compared [1000]")
    group.add_argument("--min-top1-agreement", type=number, default=0.99,
                       help="required share of equal top-1 predictions [0.99]")
    group.add_argument("--max-logit-diff", type=number, default=None,
                       help="also require max |logit difference| <= this [not checked: one "
                       "activation whose sign flips at rounding level moves that sample's "
                       "logits without any conversion bug]")


def _latency_options(parser):
    group = parser.add_argument_group("latency (LCE interpreter; defaults are the fastest on x86)")
    group.add_argument("--threads", type=integer, default=1, help="interpreter threads [1]")
    group.add_argument("--repeats", type=integer, default=50, help="timed runs [50]")
    group.add_argument("--warmup", type=integer, default=5, help="untimed runs first [5]")
    group.add_argument("--no-indirect-bgemm", action="store_true")
    group.add_argument("--no-xnnpack", action="store_true")


# --------------------------------------------------------------------------- commands


def _runs_dir_name(prefix):
    return pathlib.Path(DEFAULT_RUNS_DIR) / f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}"


def _train_config(args, parser, recipe=None):
    """RunConfig of a new run, or None with --resume (then no other setting may be passed):
    the flags over the settings file of --config (else over `recipe`), over the defaults."""
    from bayes_larq.app import runs
    from bayes_larq.app.config_file import merge_settings, overlay, read_settings_file

    given = _run_config(args)
    config_file = getattr(args, "config", None)
    if getattr(args, "resume", None) is not None:
        passed = sorted(given) + [name for name in ("output", "config")
                                  if getattr(args, name, None) is not None]
        if passed:
            parser.error(f"--resume continues a run with its saved settings; do not pass "
                         f"{', '.join('--' + p.replace('_', '-') for p in passed)}")
        return None
    if getattr(args, "previous_checkpoint", False):
        parser.error("--previous-checkpoint goes with --resume RUN_DIR")
    if config_file is not None:
        given = merge_settings(read_settings_file(config_file), given, config_file)
    elif recipe is not None:
        if given.get("teacher", runs.FLOAT_TWIN) != runs.FLOAT_TWIN:
            recipe = {k: v for k, v in recipe.items() if k != "teacher_epochs"}  # no twin
        flags, given = given, overlay(recipe, given)
        return runs.RunConfig(**given).validate().check_settings_used(flags)
    return runs.RunConfig(**given).validate().check_settings_used(given)


def _dry_run(args, config):
    """Print the plan of the run (`bayes_larq.app.dry_run`) as JSON; nothing is written."""
    import json

    from bayes_larq.app import dry_run, runs
    from bayes_larq.app.train import check_new_run

    if config is None:
        config, output = runs.RunDirectory(args.resume).read_config(), args.resume
    else:
        output = args.output or _runs_dir_name(f"{config.model}-{config.dataset}")
        check_new_run(runs.RunDirectory(output))  # as the run would, before it writes
    print(json.dumps(dry_run.plan(config, output), indent=2))


def command_train(args: argparse.Namespace,
                  parser: argparse.ArgumentParser) -> runs.Trained | None:
    """`bayes-larq train`: a new run, `--resume RUN`, or (`--dry-run`) the plan only."""
    from bayes_larq.app import runs

    config = _train_config(args, parser)
    if args.dry_run:
        return _dry_run(args, config)
    verbose = 0 if args.quiet else 1
    if config is None:
        trained = runs.resume(args.resume, verbose=verbose,
                              previous_checkpoint=args.previous_checkpoint)
    else:
        run_dir = args.output or _runs_dir_name(f"{config.model}-{config.dataset}")
        trained = runs.train(config, run_dir, verbose=verbose)
    print(messages.train_text(trained.report, trained.run_dir))
    return trained


def command_evaluate(args: argparse.Namespace,
                     parser: argparse.ArgumentParser) -> runs.Evaluation:
    """`bayes-larq evaluate PATH`: test accuracy of a run's (or a .keras file's) model."""
    from bayes_larq.app import runs
    from bayes_larq.app.evaluation import test_data_of

    dataset, data_dir = test_data_of(args.path, args.dataset, args.data_dir)
    result = runs.evaluate(runs.load_classifier(args.path), dataset, batch_size=args.batch_size,
                           data_dir=data_dir, limit=args.limit)
    top5 = (f", top-5 accuracy {result.top5_accuracy:.4f}"
            if result.top5_accuracy is not None else "")
    print(f"{dataset} test set, {result.examples} images: top-1 accuracy "
          f"{result.accuracy:.4f}{top5}")
    return result


def _conversion_options(args):
    return {"samples": args.samples, "min_top1_agreement": args.min_top1_agreement,
            "max_logit_diff": args.max_logit_diff}


def _latency_options_of(args, include_float=True):
    return {"threads": args.threads, "repeats": args.repeats, "warmup": args.warmup,
            "indirect_bgemm": not args.no_indirect_bgemm, "xnnpack": not args.no_xnnpack,
            "include_float": include_float}


def command_convert(args: argparse.Namespace,
                    parser: argparse.ArgumentParser) -> runs.Conversion:
    """`bayes-larq convert PATH`: the LCE flatbuffer of a trained model, checked against it."""
    from bayes_larq.app import runs

    result = runs.convert(args.path, output=args.output, dataset=args.dataset,
                          data_dir=args.data_dir, **_conversion_options(args))
    print(messages.conversion_text(result))
    return result


def command_benchmark(args: argparse.Namespace,
                      parser: argparse.ArgumentParser) -> runs.Benchmark:
    """`bayes-larq benchmark PATH`: latency of a converted model (and its float twin's)."""
    from bayes_larq.app import runs

    result = runs.benchmark(args.path, **_latency_options_of(args, not args.no_float))
    print(messages.benchmark_text(result))
    return result


def command_demo(args: argparse.Namespace, parser: argparse.ArgumentParser) -> runs.Demo:
    """`bayes-larq demo`: train, evaluate, convert and benchmark in one run directory."""
    from bayes_larq.app import runs

    args.resume = None
    config = _train_config(args, parser, recipe=runs.DEMO_SETTINGS)
    run_dir = args.output or _runs_dir_name("demo")
    result = runs.demo(config, run_dir, verbose=0 if args.quiet else 1,
                       conversion_options=_conversion_options(args),
                       latency_options=_latency_options_of(args))
    print(messages.demo_text(result))
    return result


COMMANDS = {"train": command_train, "evaluate": command_evaluate, "convert": command_convert,
            "benchmark": command_benchmark, "demo": command_demo}


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C would be, so training saves and says how to resume."""

    signal_name = "SIGTERM"


def _raise_terminated(signum, frame):
    from bayes_larq.app import runs

    runs.raise_interrupt(Terminated())


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = build_parser()
    args = parser.parse_args(argv)
    command_parser = args.subparser
    from bayes_larq.app import data, runs

    previous_handler = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        args.handler(args, command_parser)
    except runs.RunInterrupted as interrupted:
        print(f"\n{messages.error_text(interrupted)}", file=sys.stderr)
        return EXIT_TERMINATED if interrupted.signal_name == "SIGTERM" else EXIT_INTERRUPTED
    except KeyboardInterrupt as interrupt:
        print(f"\nInterrupted ({getattr(interrupt, 'signal_name', 'SIGINT')}).", file=sys.stderr)
        return (EXIT_TERMINATED if getattr(interrupt, "signal_name", "") == "SIGTERM"
                else EXIT_INTERRUPTED)
    except (runs.RunError, data.DatasetError) as err:
        command_parser.error(messages.error_text(err))
    except (runs.JobFailed, data.DatasetNotFoundError) as err:
        print(f"{command_parser.prog}: error: {messages.error_text(err)}", file=sys.stderr)
        return EXIT_FAILURE
    finally:
        signal.signal(signal.SIGTERM, previous_handler)
    return 0
