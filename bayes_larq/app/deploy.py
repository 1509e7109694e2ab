"""Deploying a trained run: LCE conversion checked against Keras, interpreter latency
beside the float twin, and the main job (`demo`: train, convert, benchmark)."""

from __future__ import annotations

import dataclasses
import inspect
import math
import os
import pathlib
import time

import numpy as np
import tensorflow as tf

from bayes_larq import convert as lce
from bayes_larq.app import data, report
from bayes_larq.app.config import RunConfig
from bayes_larq.app.errors import JobFailed, RunError, Setting, Step, settings_checked
from bayes_larq.app.evaluation import load_classifier, test_data_of
from bayes_larq.app.model import build_model
from bayes_larq.app.rundir import RunDirectory, read_json, run_config_of
from bayes_larq.app.train import train
from bayes_larq.defaults import check_integer

__all__ = ["Benchmark", "Conversion", "Demo", "benchmark", "convert", "demo", "float_twin",
           "test_images"]

def max_threads() -> int:
    """The most interpreter threads a benchmark may ask for: 4 per CPU. More only contend
    for the cores (and 100,000 would start that many threads)."""
    return 4 * (os.cpu_count() or 1)


@dataclasses.dataclass
class Conversion:
    """An LCE conversion checked against Keras on real test images."""

    tflite_path: pathlib.Path
    tflite_bytes: int
    census: dict
    agreement: lce.Agreement


@dataclasses.dataclass
class Benchmark:
    """Median batch-1 latency in the LCE interpreter, beside the float twin when known."""

    flags: dict
    binary_ms: float
    binary_bytes: int
    float_ms: float | None = None
    float_bytes: int | None = None

    @property
    def speedup(self) -> float | None:
        return None if self.float_ms is None else self.float_ms / self.binary_ms

    @property
    def size_ratio(self) -> float | None:
        return None if self.float_bytes is None else self.float_bytes / self.binary_bytes


@dataclasses.dataclass
class Demo:
    """The main job: a trained run, its conversion and its benchmark."""

    run_dir: pathlib.Path
    report: dict
    conversion: Conversion
    benchmark: Benchmark
    seconds: float


def test_images(dataset: str, samples: int, data_dir: str | None = None) -> np.ndarray:
    """The first `samples` test images of `dataset` as one NumPy batch."""
    batch = data.load(dataset, "test", samples, training=False, data_dir=data_dir, limit=samples)
    return next(iter(batch))[0].numpy()


def convert(path: str | os.PathLike, *, samples: int = 1000, min_top1_agreement: float = 0.99,
            max_logit_diff: float | None = None, output: str | os.PathLike | None = None,
            dataset: str | None = None, data_dir: str | None = None,
            classifier: tf.keras.Model | None = None) -> Conversion:
    """Convert a run's classifier (or a .keras file) with LCE, check it, write the .tflite.

    The converted model must agree with Keras on the top-1 class of at least
    `min_top1_agreement` of `samples` test images (and, if given, stay within
    `max_logit_diff`); otherwise JobFailed is raised and no .tflite is written. In a run
    directory the result is added to report.json / report.md. `classifier` skips
    loading the model when it is already in memory.
    """
    _check_conversion(samples, min_top1_agreement, max_logit_diff)
    path = pathlib.Path(path)
    run = RunDirectory(path) if path.is_dir() else None
    dataset, data_dir = test_data_of(path, dataset, data_dir)
    output = pathlib.Path(output) if output else (
        run.tflite if run else path.with_suffix(".tflite"))
    if output.is_dir():
        raise RunError(Setting("output"), f" {output} is a directory; give the .tflite "
                       f"file's path.")
    if not output.parent.is_dir():
        raise RunError(Setting("output"), f" {output}: its directory {output.parent} does "
                       f"not exist; create it first or give another path.")
    if run and run.has_report():
        read_json(run.report_json)  # a corrupt report fails now, before anything is written
    classifier = classifier if classifier is not None else load_classifier(path)
    flatbuffer = lce.convert(classifier)
    agreement = lce.compare(classifier, flatbuffer, test_images(dataset, samples, data_dir))
    result = Conversion(output, len(flatbuffer), dict(lce.op_census(flatbuffer).most_common()),
                        agreement)
    try:
        agreement.check(atol=_atol(max_logit_diff), min_top1_agreement=min_top1_agreement)
    except ValueError as err:
        raise JobFailed(f"{err} No .tflite written.") from None
    output.write_bytes(flatbuffer)
    if run and run.has_report():
        report.update_run_report(path, "conversion", dataclasses.asdict(result))
    return result


def _check_conversion(samples, min_top1_agreement, max_logit_diff):
    with settings_checked("samples", "min_top1_agreement", "max_logit_diff",
                          renamed={"atol": "max_logit_diff"}):
        data.check_count("samples", samples)
        lce.check_tolerances(_atol(max_logit_diff), min_top1_agreement)


def _check_latency(threads, repeats, warmup):
    with settings_checked("repeats", "warmup", "threads"):
        lce.check_runs(repeats, warmup)
        check_integer("threads", threads, maximum=max_threads())


def _arguments(function, options):
    """The keyword arguments of `function(path, **options)`, its defaults filled in."""
    bound = inspect.signature(function).bind(None, **options)
    bound.apply_defaults()
    return bound.arguments


def _atol(max_logit_diff):
    """`Agreement.check`'s tolerance of a logit difference: None checks none."""
    return math.inf if max_logit_diff is None else max_logit_diff


def float_twin(config: RunConfig) -> bytes:
    """The float version (same architecture, no quantizers) of a run's model, converted."""
    float_config = dataclasses.replace(config, kernel_loss=False, precision="float")
    return lce.convert(build_model(float_config, decayed=False))


def benchmark(path: str | os.PathLike, *, threads: int = 1, repeats: int = 50, warmup: int = 5,
              indirect_bgemm: bool = True, xnnpack: bool = True,
              include_float: bool = True) -> Benchmark:
    """Median batch-1 latency of a run's model.tflite (or a .tflite file) in the LCE
    interpreter, and of the float twin of its architecture; added to the run's report."""
    _check_latency(threads, repeats, warmup)
    path = pathlib.Path(path)
    run = RunDirectory(path) if path.is_dir() else None
    tflite = run.tflite if run else path
    if not tflite.exists():
        hint = (" Run `", Step("convert", path), "` first.") if run else ()
        raise JobFailed(f"{tflite} does not exist.", *hint)
    config = run_config_of(path)
    if config is None and include_float:
        raise RunError(f"{tflite} is not in a run directory, so its float version is "
                       f"unknown; pass ", Setting("include_float", False),
                       " or benchmark a run directory.")
    flags = {"num_threads": threads, "use_indirect_bgemm": indirect_bgemm,
             "use_xnnpack": xnnpack}
    binary = tflite.read_bytes()

    def latency(flatbuffer):
        return lce.latency_ms(flatbuffer, repeats=repeats, warmup=warmup, **flags)

    try:
        binary_ms = latency(binary)
    except (ValueError, RuntimeError) as err:
        raise RunError(f"{tflite} is not a TFLite model the LCE interpreter can run "
                       f"({type(err).__name__}: {str(err).splitlines()[0][:200]}).") from None
    result = Benchmark({**flags, "repeats": repeats, "warmup": warmup}, binary_ms, len(binary))
    if include_float:
        floating = float_twin(config)
        result.float_ms, result.float_bytes = latency(floating), len(floating)
    if run and run.has_report():
        report.update_run_report(path, "benchmark", dataclasses.asdict(result))
    return result


def demo(config: RunConfig, run_dir: str | os.PathLike, *, verbose: int = 1,
         conversion_options: dict | None = None, latency_options: dict | None = None) -> Demo:
    """The main job: train `config` into `run_dir`, convert it, benchmark it.

    `conversion_options` and `latency_options` are keyword arguments of `convert` and
    `benchmark`, checked before training. The trained classifier is converted from memory.
    """
    conversion_options, latency_options = conversion_options or {}, latency_options or {}
    converting = _arguments(convert, conversion_options)
    _check_conversion(converting["samples"], converting["min_top1_agreement"],
                      converting["max_logit_diff"])
    timing = _arguments(benchmark, latency_options)
    _check_latency(timing["threads"], timing["repeats"], timing["warmup"])
    start = time.perf_counter()
    trained = train(config, run_dir, verbose=verbose)
    conversion = convert(run_dir, classifier=trained.classifier, **conversion_options)
    measured = benchmark(run_dir, **latency_options)
    seconds = time.perf_counter() - start
    summary = report.update_run_report(run_dir, "demo", {"seconds": seconds})
    return Demo(pathlib.Path(run_dir), summary, conversion, measured, seconds)
