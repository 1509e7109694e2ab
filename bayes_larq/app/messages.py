"""What the command line prints: result summaries, and errors with their hints as
command lines and flags (the library renders the same hints for Python)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from bayes_larq.app.errors import Hint, Hinted, Step
from bayes_larq.app.rundir import RunDirectory

if TYPE_CHECKING:
    from bayes_larq.app.deploy import Benchmark, Conversion, Demo

__all__ = ["benchmark_text", "conversion_text", "demo_text", "error_text", "hint_text",
           "train_text"]

_STEP_COMMANDS = {"train": "bayes-larq train --output {path}",
                  "resume": "bayes-larq train --resume {path}",
                  "resume_previous": "bayes-larq train --resume {path} --previous-checkpoint",
                  "convert": "bayes-larq convert {path}"}
# Settings whose flag is not --NAME VALUE.
_SETTING_FLAGS = {("kernel_loss", False): "--no-kernel-loss",
                  ("feature_loss", False): "--no-feature-loss",
                  ("include_float", False): "--no-float",
                  ("two_step", True): "--two-step"}


def hint_text(hint: Hint) -> str:
    """A library hint (`bayes_larq.app.errors`) as the command line or flag to use."""
    if isinstance(hint, Step):
        return _STEP_COMMANDS[hint.name].format(path=hint.path)
    if hint.has_value and (hint.name, hint.value) in _SETTING_FLAGS:
        return _SETTING_FLAGS[hint.name, hint.value]
    flag = "--" + hint.name.replace("_", "-")
    return f"{flag} {hint.value}" if hint.has_value else flag


def error_text(error: BaseException) -> str:
    """The message of `error` with its hints in command-line terms."""
    return error.render(hint_text) if isinstance(error, Hinted) else str(error)


def train_text(summary: dict, run_dir: str | os.PathLike) -> str:
    """The line `bayes-larq train` prints at the end."""
    test = summary["test"]
    top5 = f", top-5 {test['top5_accuracy']:.4f}" if "top5_accuracy" in test else ""
    return (f"Finished {summary['epochs_done']} epochs in {summary['train_seconds']:.0f} s: "
            f"test top-1 {test['accuracy']:.4f}{top5}. Report: {RunDirectory(run_dir).report_md}")


def conversion_text(result: Conversion) -> str:
    """What `bayes-larq convert` prints: operators, agreement, the file written."""
    agreement = result.agreement
    return "\n".join([
        "Operators: " + ", ".join(f"{name} x{count}" for name, count in result.census.items()),
        f"Keras vs TFLite on {agreement.samples} test images: top-1 agreement "
        f"{agreement.top1_agreement:.4f}, max |logit difference| {agreement.max_abs_diff:.3g}",
        f"Wrote {result.tflite_path} ({result.tflite_bytes / 1024:.1f} KiB)"])


def benchmark_text(result: Benchmark) -> str:
    """What `bayes-larq benchmark` prints: latency and size beside the float twin."""
    flags = result.flags
    lines = [f"LCE interpreter, {flags['num_threads']} thread(s), indirect_bgemm="
             f"{flags['use_indirect_bgemm']}, xnnpack={flags['use_xnnpack']}, median of "
             f"{flags['repeats']} runs, batch 1:",
             f"  binary {result.binary_ms:8.3f} ms  {result.binary_bytes / 1024:9.1f} KiB"]
    if result.float_ms is not None:
        lines += [f"  float  {result.float_ms:8.3f} ms  {result.float_bytes / 1024:9.1f} KiB",
                  f"  binary is {result.speedup:.2f}x faster and {result.size_ratio:.1f}x "
                  f"smaller than float"]
    return "\n".join(lines)


def _teacher_line(teacher: dict | None) -> list[str]:
    """The demo summary's line on the run's teacher, if it has one."""
    if not teacher:
        return []
    epochs, seconds = teacher["config"]["epochs"], teacher.get("train_seconds")
    trained = f" after {epochs} epochs" + (f" ({seconds:.0f} s)" if seconds is not None else "")
    return [f"teacher:              {teacher['source']}, test accuracy "
            f"{teacher['test']['accuracy']:.4f}{trained}"]


def demo_text(result: Demo) -> str:
    """The demo summary printed at the end of `bayes-larq demo`."""
    summary, conversion, bench = result.report, result.conversion, result.benchmark
    flags, agreement = bench.flags, conversion.agreement
    return "\n".join([
        "",
        f"== bayes-larq demo summary ({result.run_dir}) ==",
        f"test accuracy:        {summary['test']['accuracy']:.4f} on "
        f"{summary['test_examples']:,} {summary['config']['dataset']} test images "
        f"after {summary['epochs_done']} epochs ({summary['train_seconds']:.0f} s)",
        *_teacher_line(summary.get("teacher")),
        f"binarized MAC share:  {100 * summary['model']['binarized_mac_share']:.1f}%",
        f"Keras vs TFLite:      top-1 agreement {agreement.top1_agreement:.4f} on "
        f"{agreement.samples} test images, max |logit diff| {agreement.max_abs_diff:.3g}; "
        f"{conversion.census.get('LceBconv2d', 0)} LceBconv2d ops",
        f"TFLite size:          {bench.binary_bytes / 1024:.1f} KiB (float: "
        f"{bench.float_bytes / 1024:.1f} KiB)",
        f"latency, batch 1:     {bench.binary_ms:.3f} ms (float: {bench.float_ms:.3f} ms); "
        f"{flags['num_threads']} thread(s), indirect_bgemm={flags['use_indirect_bgemm']}, "
        f"xnnpack={flags['use_xnnpack']}",
        f"wall time of train + convert + benchmark: {result.seconds:.0f} s",
        f"report: {RunDirectory(result.run_dir).report_md}",
    ])
