"""The `bayes-larq` command line (also `python -m bayes_larq`).

    bayes-larq train      train a model (BONN by default), a checkpoint every epoch
    bayes-larq evaluate   top-1 (and top-5 above 10 classes) test accuracy of a trained model
    bayes-larq convert    LCE conversion to .tflite, checked against Keras on test images
    bayes-larq benchmark  LCE interpreter latency, beside the float version of the model
    bayes-larq demo       the main job: train the default model, convert, benchmark, summary

`bayes-larq COMMAND --help` lists the options. Exit codes: 0 success, 1 failure (missing
data, converted model disagrees), 2 bad arguments, 130 interrupted (resumable).
"""

import argparse
import dataclasses
import json
import os
import pathlib
import sys
import time

EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130
DEFAULT_RUNS_DIR = "runs"


class CommandFailed(Exception):
    """A command that ran but failed (exit code 1); the message says why and what to do."""


# --------------------------------------------------------------------------- argument types


def _integer_at_least(text, minimum):
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < minimum:
        raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}")
    return value


def positive_int(text):
    return _integer_at_least(text, 1)


def non_negative_int(text):
    return _integer_at_least(text, 0)


def non_negative_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}")
    return value


def positive_float(text):
    value = non_negative_float(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def share(text):
    value = non_negative_float(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"expected a share in [0, 1], got {text!r}")
    return value


def arch_argument(text):
    """KEY=VALUE, VALUE parsed as JSON when it can be (numbers, booleans), else a string."""
    key, separator, raw = text.partition("=")
    if not separator or not key.isidentifier():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE (for example width=16), got {text!r}")
    try:
        return key, json.loads(raw)
    except json.JSONDecodeError:
        return key, raw


# --------------------------------------------------------------------------- parser


def _train_options(parser):
    """The run settings; defaults are SUPPRESSed so `--resume` can tell what was passed."""
    from bayes_larq import data, models, quantizers, runs

    defaults = runs.RunConfig()
    group = parser.add_argument_group("run settings (defaults in brackets)")
    add = group.add_argument
    add("--model", choices=models.names(), help=f"model from the registry [{defaults.model}]")
    add("--dataset", choices=sorted(data.DATASETS), help=f"dataset [{defaults.dataset}]")
    add("--epochs", type=positive_int, help=f"epochs [{defaults.epochs}]")
    add("--batch-size", type=positive_int, help=f"batch size [{defaults.batch_size}]")
    add("--no-bonn", action="store_true",
        help="plain Larq training: no kernel loss ('ste_sign') and no feature loss")
    add("--no-kernel-loss", action="store_true",
        help="binary kernels use Larq's 'ste_sign' instead of BayesianSign (no L_B)")
    add("--no-feature-loss", action="store_true", help="leave out the feature loss L_F")
    add("--lam", type=non_negative_float, help="kernel-loss weight lambda [1e-4]")
    add("--nu", type=non_negative_float, help="mixture-prior weight nu inside L_B [1e-2]")
    add("--theta", type=non_negative_float, help="feature-loss weight theta [1e-3]")
    add("--reduction", choices=("mean", "sum"), help=f"L_B reduction [{defaults.reduction}]")
    add("--kernel-scale", choices=("layer", "channel"),
        help=f"binary kernel scale 1/mean(W) per layer or channel [{defaults.kernel_scale}]")
    add("--scope", choices=models.SCOPES, help=f"what is binarized [{defaults.scope}]")
    add("--precision", choices=models.PRECISIONS,
        help=f"'float': the same architecture without quantizers [{defaults.precision}]")
    add("--optimizer", choices=runs.OPTIMIZERS, help=f"[{defaults.optimizer}]")
    add("--learning-rate", type=positive_float, help="base learning rate [" + ", ".join(
        f"{name}: {rate:g}" for name, rate in runs.DEFAULT_LEARNING_RATES.items()) + "]")
    add("--momentum", type=share, help=f"SGD momentum [{defaults.momentum}]")
    add("--lr-schedule", choices=runs.LR_SCHEDULES, help=f"[{defaults.lr_schedule}]")
    add("--w-lr-multiplier", type=positive_float,
        help=f"learning-rate multiplier of W [{defaults.w_lr_multiplier:g}]")
    add("--sigma-lr-multiplier", type=positive_float,
        help=f"learning-rate multiplier of the mixture sigmas [{defaults.sigma_lr_multiplier:g}]")
    add("--prior-gradient", choices=quantizers.PRIOR_GRADIENTS,
        help=f"'mean': the paper's averaged mu/sigma gradient [{defaults.prior_gradient}]")
    add("--mixture-update", choices=runs.MIXTURE_UPDATES,
        help=f"'closed_form': refresh mu/sigma every --refresh-batches [{defaults.mixture_update}]")
    add("--refresh-batches", type=positive_int, help=f"[{defaults.refresh_batches}]")
    add("--lam-warmup-epochs", type=non_negative_int,
        help=f"ramp lam linearly from 0 over N epochs [{defaults.lam_warmup_epochs}]")
    add("--validation-size", type=positive_int,
        help="hold out the last N training examples for per-epoch validation; the test "
        "set is then evaluated once, at the end")
    add("--seed", type=int, help=f"seed of weights, data order and augmentation [{defaults.seed}]")
    add("--train-limit", type=positive_int, help="use only the first N training examples")
    add("--test-limit", type=positive_int, help="use only the first N test examples")
    add("--data-dir", help="Fashion-MNIST IDX directory, or the TFDS data directory")
    add("--arch", type=arch_argument, action="append", metavar="KEY=VALUE",
        help="architecture argument of the builder, repeatable (e.g. width=16)")
    for action in group._group_actions:
        action.default = argparse.SUPPRESS


def _run_config(args):
    """RunConfig from the passed train options (library defaults for the rest)."""
    from bayes_larq import runs

    given = {key: value for key, value in vars(args).items()
             if key in {f.name for f in dataclasses.fields(runs.RunConfig)}}
    if vars(args).get("arch"):
        given["arch"] = dict(args.arch)
    if vars(args).get("no_bonn") or vars(args).get("no_kernel_loss"):
        given["kernel_loss"] = False
    if vars(args).get("no_bonn") or vars(args).get("no_feature_loss"):
        given["feature_loss"] = False
    return given


def build_parser():
    parser = argparse.ArgumentParser(
        prog="bayes-larq", description="Train, evaluate, convert and benchmark BONN binary "
        "networks (Bayesian Optimized 1-bit CNNs) with Larq and LCE.")
    from bayes_larq import __version__

    parser.add_argument("--version", action="version", version=f"bayes-larq {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    train = commands.add_parser("train", help="train a model (BONN by default)",
                                description="Train a model; a checkpoint every epoch; Ctrl-C "
                                "leaves a run that --resume continues.")
    train.add_argument("--output", type=pathlib.Path,
                       help=f"run directory [{DEFAULT_RUNS_DIR}/MODEL-DATASET-TIME]")
    train.add_argument("--resume", type=pathlib.Path, metavar="RUN_DIR",
                       help="continue an interrupted run with its saved settings")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    _train_options(train)

    evaluate = commands.add_parser("evaluate", help="test accuracy of a trained model")
    _model_source(evaluate)
    evaluate.add_argument("--batch-size", type=positive_int, default=256)
    evaluate.add_argument("--limit", type=positive_int, help="only the first N test examples")

    convert = commands.add_parser("convert", help="LCE conversion to .tflite, checked against Keras")
    _model_source(convert)
    convert.add_argument("--output", type=pathlib.Path,
                         help="the .tflite file [RUN_DIR/model.tflite or MODEL.tflite]")
    _parity_options(convert)

    benchmark = commands.add_parser("benchmark", help="LCE latency beside the float model")
    benchmark.add_argument("path", type=pathlib.Path, metavar="RUN_DIR|MODEL.tflite")
    _latency_options(benchmark)
    benchmark.add_argument("--no-float", action="store_true",
                           help="skip the float version of the model")

    demo = commands.add_parser("demo", help="the main job: train, convert, benchmark, summary",
                               description="Train the default BONN model on Fashion-MNIST, "
                               "convert it with LCE, benchmark it and print a summary.")
    demo.add_argument("--output", type=pathlib.Path,
                      help=f"run directory [{DEFAULT_RUNS_DIR}/demo-TIME]")
    demo.add_argument("--quiet", action="store_true", help="no progress bar")
    _train_options(demo)
    _parity_options(demo)
    _latency_options(demo)
    for name, subparser in commands.choices.items():
        subparser.set_defaults(handler=COMMANDS[name], subparser=subparser)
    return parser


def _model_source(parser):
    parser.add_argument("path", type=pathlib.Path, metavar="RUN_DIR|MODEL.keras")
    parser.add_argument("--dataset", help="test data [the run's dataset; fashion_mnist]")
    parser.add_argument("--data-dir", help="Fashion-MNIST IDX or TFDS data directory")


def _parity_options(parser):
    group = parser.add_argument_group("Keras vs TFLite agreement")
    group.add_argument("--samples", type=positive_int, default=1000,
                       help="test images compared [1000]")
    group.add_argument("--min-top1-agreement", type=share, default=0.99,
                       help="required share of equal top-1 predictions [0.99]")
    group.add_argument("--max-logit-diff", type=non_negative_float, default=None,
                       help="also require max |logit difference| <= this [not checked: one "
                       "activation whose sign flips at rounding level moves that sample's "
                       "logits without any conversion bug]")


def _latency_options(parser):
    group = parser.add_argument_group("latency (LCE interpreter; defaults are the fastest on x86)")
    group.add_argument("--threads", type=positive_int, default=1, help="interpreter threads [1]")
    group.add_argument("--repeats", type=positive_int, default=50, help="timed runs [50]")
    group.add_argument("--warmup", type=int, default=5, help="untimed runs first [5]")
    group.add_argument("--no-indirect-bgemm", action="store_true")
    group.add_argument("--no-xnnpack", action="store_true")


# --------------------------------------------------------------------------- commands


def _runs_dir_name(prefix):
    return pathlib.Path(DEFAULT_RUNS_DIR) / f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}"


def command_train(args, parser):
    from bayes_larq import runs

    given = _run_config(args)
    if args.resume is not None:
        if given or args.output is not None:
            passed = sorted(given) + (["output"] if args.output is not None else [])
            parser.error(f"--resume continues a run with its saved settings; do not pass "
                         f"{', '.join('--' + p.replace('_', '-') for p in passed)}")
        summary = runs.resume(args.resume, verbose=0 if args.quiet else 1)
        run_dir = args.resume
    else:
        config = runs.RunConfig(**given)
        run_dir = args.output or _runs_dir_name(f"{config.model}-{config.dataset}")
        summary = runs.train(config, run_dir, verbose=0 if args.quiet else 1)
    print(_train_result(summary, run_dir))
    return summary


def _train_result(summary, run_dir):
    test = summary["test"]
    top5 = f", top-5 {test['top5_accuracy']:.4f}" if "top5_accuracy" in test else ""
    return (f"Finished {summary['epochs_done']} epochs in {summary['train_seconds']:.0f} s: "
            f"test top-1 {test['accuracy']:.4f}{top5}. Report: {run_dir}/report.md")


def _locate(path):
    """(run config or None, model path) for a run directory or a model file."""
    from bayes_larq import runs

    path = pathlib.Path(path)
    run = runs.RunDirectory(path if path.is_dir() else path.parent)
    config = run.read_config() if run.config.exists() else None
    return config, path


def _dataset(args, config):
    if args.dataset is not None:
        return args.dataset
    return config.dataset if config is not None else "fashion_mnist"


def _data_dir(args, config):
    if args.data_dir is not None:
        return args.data_dir
    return config.data_dir if config is not None else None


def command_evaluate(args, parser):
    from bayes_larq import runs

    config, path = _locate(args.path)
    dataset = _dataset(args, config)
    results = runs.evaluate(runs.load_classifier(path), dataset, batch_size=args.batch_size,
                            data_dir=_data_dir(args, config), limit=args.limit)
    top5 = (f", top-5 accuracy {results['top5_accuracy']:.4f}"
            if "top5_accuracy" in results else "")
    print(f"{dataset} test set, {results['examples']} images: top-1 accuracy "
          f"{results['accuracy']:.4f}{top5}")
    return results


def _tflite_path(args, path):
    if args.output is not None:
        return args.output
    return path / "model.tflite" if path.is_dir() else path.with_suffix(".tflite")


def command_convert(args, parser):
    from bayes_larq import convert, data, runs

    config, path = _locate(args.path)
    classifier = runs.load_classifier(path)
    dataset = _dataset(args, config)
    images = data.load(dataset, "test", args.samples, training=False,
                       data_dir=_data_dir(args, config), limit=args.samples)
    images = next(iter(images))[0].numpy()
    flatbuffer = convert.convert(classifier)
    agreement = convert.compare(classifier, flatbuffer, images)
    census = convert.op_census(flatbuffer)
    result = {"census": dict(census), "agreement": dataclasses.asdict(agreement),
              "tflite_bytes": len(flatbuffer)}
    print("Operators: " + ", ".join(f"{name} x{count}" for name, count in census.most_common()))
    print(f"Keras vs TFLite on {agreement.samples} {dataset} test images: top-1 agreement "
          f"{agreement.top1_agreement:.4f}, max |logit difference| {agreement.max_abs_diff:.3g}")
    try:
        agreement.check(atol=float("inf") if args.max_logit_diff is None else args.max_logit_diff,
                        min_top1_agreement=args.min_top1_agreement)
    except ValueError as err:
        raise CommandFailed(f"{err} No .tflite written.") from None
    output = _tflite_path(args, path)
    output.write_bytes(flatbuffer)
    if path.is_dir():
        (path / "convert.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"Wrote {output} ({len(flatbuffer) / 1024:.1f} KiB)")
    return result


def _interpreter_flags(args):
    return {"num_threads": args.threads, "use_indirect_bgemm": not args.no_indirect_bgemm,
            "use_xnnpack": not args.no_xnnpack}


def _float_twin(config):
    """The float version (same architecture, no quantizers) of a run's model, converted."""
    from bayes_larq import convert, data, models

    info = data.dataset_info(config.dataset)
    model = models.get(config.model, num_classes=info.num_classes, input_shape=info.input_shape,
                       bonn=False, precision="float", scope=config.scope, **config.arch)
    return convert.convert(model)


def command_benchmark(args, parser):
    from bayes_larq import convert

    path = pathlib.Path(args.path)
    tflite = path / "model.tflite" if path.is_dir() else path
    if not tflite.exists():
        hint = f" Run `bayes-larq convert {path}` first." if path.is_dir() else ""
        raise CommandFailed(f"{tflite} does not exist.{hint}")
    config, _ = _locate(path)
    if config is None and not args.no_float:
        parser.error(f"{tflite} is not in a run directory, so its float version is unknown; "
                     f"pass --no-float or benchmark a run directory")
    flags = _interpreter_flags(args)
    timing = {"repeats": args.repeats, "warmup": args.warmup, **flags}
    binary = tflite.read_bytes()
    result = {"flags": timing, "binary": {
        "bytes": len(binary), "latency_ms": convert.latency_ms(
            binary, repeats=args.repeats, warmup=args.warmup, **flags)}}
    if not args.no_float:
        floating = _float_twin(config)
        result["float"] = {"bytes": len(floating), "latency_ms": convert.latency_ms(
            floating, repeats=args.repeats, warmup=args.warmup, **flags)}
        result["speedup"] = result["float"]["latency_ms"] / result["binary"]["latency_ms"]
        result["size_ratio"] = result["float"]["bytes"] / result["binary"]["bytes"]
    print(_benchmark_lines(result))
    if path.is_dir():
        (path / "benchmark.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def _benchmark_lines(result):
    flags = result["flags"]
    lines = [f"LCE interpreter, {flags['num_threads']} thread(s), indirect_bgemm="
             f"{flags['use_indirect_bgemm']}, xnnpack={flags['use_xnnpack']}, median of "
             f"{flags['repeats']} runs, batch 1:"]
    for kind in ("binary", "float"):
        if kind in result:
            lines.append(f"  {kind:6s} {result[kind]['latency_ms']:8.3f} ms  "
                         f"{result[kind]['bytes'] / 1024:9.1f} KiB")
    if "speedup" in result:
        lines.append(f"  binary is {result['speedup']:.2f}x faster and "
                     f"{result['size_ratio']:.1f}x smaller than float")
    return "\n".join(lines)


def command_demo(args, parser):
    start = time.perf_counter()
    args.output = args.output or _runs_dir_name("demo")
    args.resume = None
    summary = command_train(args, parser)
    run_args = argparse.Namespace(path=args.output, dataset=None, data_dir=None, output=None,
                                  samples=args.samples, max_logit_diff=args.max_logit_diff,
                                  min_top1_agreement=args.min_top1_agreement)
    converted = command_convert(run_args, parser)
    bench_args = argparse.Namespace(**vars(args), path=args.output, no_float=False)
    benchmark = command_benchmark(bench_args, parser)
    result = demo_summary(summary, converted, benchmark, time.perf_counter() - start)
    (pathlib.Path(args.output) / "summary.json").write_text(json.dumps(result, indent=2) + "\n")
    print(demo_text(result, args.output))
    return result


def demo_summary(summary, converted, benchmark, seconds):
    return {
        "test_accuracy": summary["test"]["accuracy"],
        "test_examples": summary["test_examples"],
        "dataset": summary["config"]["dataset"],
        "epochs": summary["epochs_done"],
        "train_seconds": summary["train_seconds"],
        "binarized_mac_share": summary["model"]["binarized_mac_share"],
        "top1_agreement": converted["agreement"]["top1_agreement"],
        "max_logit_diff": converted["agreement"]["max_abs_diff"],
        "agreement_samples": converted["agreement"]["samples"],
        "lce_bconv2d": converted["census"].get("LceBconv2d", 0),
        "tflite_bytes": benchmark["binary"]["bytes"],
        "float_tflite_bytes": benchmark["float"]["bytes"],
        "latency_ms": benchmark["binary"]["latency_ms"],
        "float_latency_ms": benchmark["float"]["latency_ms"],
        "latency_flags": benchmark["flags"],
        "seconds": seconds,
    }


def demo_text(result, run_dir):
    flags = result["latency_flags"]
    return "\n".join([
        "",
        f"== bayes-larq demo summary ({run_dir}) ==",
        f"test accuracy:        {result['test_accuracy']:.4f} on {result['test_examples']:,} "
        f"{result['dataset']} test images "
        f"after {result['epochs']} epochs ({result['train_seconds']:.0f} s)",
        f"binarized MAC share:  {100 * result['binarized_mac_share']:.1f}%",
        f"Keras vs TFLite:      top-1 agreement {result['top1_agreement']:.4f} on "
        f"{result['agreement_samples']} test images, max |logit diff| "
        f"{result['max_logit_diff']:.3g}; {result['lce_bconv2d']} LceBconv2d ops",
        f"TFLite size:          {result['tflite_bytes'] / 1024:.1f} KiB (float: "
        f"{result['float_tflite_bytes'] / 1024:.1f} KiB)",
        f"latency, batch 1:     {result['latency_ms']:.3f} ms (float: "
        f"{result['float_latency_ms']:.3f} ms); {flags['num_threads']} thread(s), "
        f"indirect_bgemm={flags['use_indirect_bgemm']}, xnnpack={flags['use_xnnpack']}",
        f"wall time of train + convert + benchmark: {result['seconds']:.0f} s",
        f"report: {run_dir}/report.md",
    ])


COMMANDS = {"train": command_train, "evaluate": command_evaluate, "convert": command_convert,
            "benchmark": command_benchmark, "demo": command_demo}


def main(argv=None):
    """Run the command line; returns the exit code."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = build_parser()
    args = parser.parse_args(argv)
    command_parser = args.subparser
    from bayes_larq import data, runs

    try:
        args.handler(args, command_parser)
    except runs.RunInterrupted as interrupted:
        print(f"\n{interrupted}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        print("\nInterrupted.", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (runs.RunError, data.DatasetError) as err:
        command_parser.error(str(err))
    except (CommandFailed, FileNotFoundError) as err:
        print(f"{command_parser.prog}: error: {err}", file=sys.stderr)
        return EXIT_FAILURE
    return 0
