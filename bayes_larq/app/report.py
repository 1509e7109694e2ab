r"""Run reports: report.json, report.md and PNG plots of a training run.

* `curves.png`: learning curves, one panel per loss term (total, cross-entropy, $L_B$,
  $L_F$) and for accuracy, training and validation (or test).
* `latents.png`: per binarized layer, the histogram of its latent weights at
  initialisation and at the end, with the layer's mixture density
  (`bayes_larq.mixture.mixture_density`) drawn over it.

For a `BayesianSign` kernel the mixture is the quantizer's (learned) one; for a plain
binary kernel ("ste_sign", the baseline) it is the closed-form fit
(`bayes_larq.mixture.fit_mixture`).
"""

from __future__ import annotations

import os

from typing import TYPE_CHECKING

import numpy as np

from bayes_larq import profile
from bayes_larq.app import data
from bayes_larq.app.config import RunConfig
from bayes_larq.app.rundir import RunDirectory, RunState, read_json, write_json
from bayes_larq.mixture import (
    MIXTURE_KEYS,
    Mixture,
    bimodality_coefficient,
    layer_statistics,
    mixture_density,
)
from bayes_larq.quantizers import bayesian_quantizers, binary_kernels
from bayes_larq.training import BONN

if TYPE_CHECKING:
    import tensorflow as tf

__all__ = ["binarized_kernels", "load_mixture_snapshot", "markdown", "plot_curves",
           "plot_latents", "run_summary", "examples_tested", "save_mixture_snapshot",
           "update_run_report",
           "write_diverged_report", "write_run_report"]

HEADING = "# bayes-larq training report"

LOSS_TERMS = (("loss", "total loss"), ("ce_loss", "cross-entropy"),
              ("kernel_loss", "kernel loss $L_B$"), ("feature_loss", "feature loss $L_F$"),
              ("kd_loss", "distribution loss"),
              ("accuracy", "top-1 accuracy"))


def binarized_kernels(model: tf.keras.Model) -> dict[str, tuple[np.ndarray, Mixture]]:
    """{layer name: (latent kernel, its `Mixture` of per-channel NumPy arrays)} for every
    1-bit kernel of `model`."""
    return {kernel.layer.name: (kernel.latent.numpy(), kernel.mixture())
            for kernel in binary_kernels(model)}


def save_mixture_snapshot(path: str | os.PathLike, model: tf.keras.Model) -> None:
    """Save `binarized_kernels(model)` as an .npz (keys "<layer>|latent", "<layer>|mu_pos", ...)."""
    arrays = {}
    for name, (latent, mixture) in binarized_kernels(model).items():
        arrays[f"{name}|latent"] = latent
        arrays.update({f"{name}|{key}": value for key, value in mixture.as_dict().items()})
    np.savez_compressed(path, **arrays)


def load_mixture_snapshot(path: str | os.PathLike) -> dict[str, tuple[np.ndarray, Mixture]]:
    """The inverse of `save_mixture_snapshot`: {layer: (latent, mixture)}."""
    layers = {}
    with np.load(path) as stored:
        for key in stored.files:
            name, field = key.split("|")
            layers.setdefault(name, {})[field] = stored[key]
    try:
        return {name: (fields.pop("latent"), Mixture(**fields)) for name, fields in layers.items()}
    except (KeyError, TypeError) as err:  # a layer without its latent or a mixture value
        raise ValueError(f"{path} is not a mixture snapshot: {err}") from None


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curves(history: list[dict], path: str | os.PathLike,
                validation_label: str = "test", step1_epochs: int | None = None) -> None:
    """One panel per loss term and accuracy; training and validation curves over epochs
    (a two-step run's boundary drawn after `step1_epochs`)."""
    plt = _pyplot()
    epochs = np.arange(1, len(history) + 1)
    terms = [(key, title) for key, title in LOSS_TERMS if key in history[0]]
    figure, axes = plt.subplots(1, len(terms), figsize=(3.2 * len(terms), 3.0), squeeze=False)
    for axis, (key, title) in zip(axes[0], terms):
        axis.plot(epochs, [logs.get(key, np.nan) for logs in history], "o-", label="train")
        if f"val_{key}" in history[0]:
            axis.plot(epochs, [logs.get(f"val_{key}", np.nan) for logs in history], "s--",
                      label=validation_label)
        if step1_epochs:
            axis.axvline(step1_epochs + 0.5, color="0.5", linestyle=":", label="step 2")
        axis.set(title=title, xlabel="epoch")
        axis.ticklabel_format(axis="y", style="sci", scilimits=(-3, 4))
    axes[0][0].legend()
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


def plot_latents(initial: dict, final: dict, path: str | os.PathLike) -> bool:
    """Rows: binarized layers; columns: init and end. Histogram + fitted mixture.

    Returns False (and writes nothing) for a model without binarized kernels.
    """
    names = list(final)
    if not names:
        return False
    plt = _pyplot()
    figure, axes = plt.subplots(len(names), 2, figsize=(8.0, 2.4 * len(names)), squeeze=False)
    for row, name in zip(axes, names):
        for axis, (when, layers) in zip(row, (("init", initial), ("end", final))):
            latent, mixture = layers[name]
            values = latent.ravel()
            axis.hist(values, bins=80, density=True, color="0.75", label="latent weights")
            grid = np.linspace(values.min(), values.max(), 400)
            axis.plot(grid, mixture_density(grid, latent, mixture), "C3", label="fitted mixture")
            axis.set_title(f"{name} ({when}), bimodality "
                           f"{bimodality_coefficient(values):.2f}", fontsize=9)
    axes[0][0].legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return True


def _final_validation_metrics(history):
    last = history[-1]
    return {key[len("val_"):]: value for key, value in last.items() if key.startswith("val_")}


def examples_tested(config: RunConfig) -> int:
    """The number of test examples the run evaluates."""
    available = data.dataset_info(config.dataset).test_examples
    return min(config.test_limit or available, available)


def _mixture_report(initial, final):
    return {name: {"init": layer_statistics(*initial[name]),
                   "end": layer_statistics(*final[name], reference=initial[name][0])}
            for name in final}


def run_summary(run: RunDirectory, config: RunConfig, bonn: BONN, state: RunState,
                initial: dict, final: dict) -> dict:
    """The content of report.json for a finished run (a dict of plain numbers).

    `initial` and `final` are the run's `binarized_kernels` at initialisation and now.
    """
    classifier = bonn.classifier
    quantizers = bayesian_quantizers(classifier)
    effective = {"theta": float(bonn.feature_loss.theta.numpy()) if bonn.feature_loss else None,
                 "lam": float(quantizers[0].lam.numpy()) if quantizers else None,
                 "nu": float(quantizers[0].nu.numpy()) if quantizers else None}
    mac_counts = profile.mac_counts(classifier)
    return {
        "config": config.as_dict(),
        "effective_loss_weights": effective,
        "epochs_done": state.epochs_done,
        # With a held-out validation split the test set is evaluated once, at the end.
        "validation": (_final_validation_metrics(state.history)
                       if config.validation_size else None),
        "test": state.test or {**_final_validation_metrics(state.history),
                               "examples": examples_tested(config)},
        "test_examples": examples_tested(config),
        "train_seconds": float(sum(state.epoch_seconds)),
        "epoch_seconds": list(state.epoch_seconds),
        "history": list(state.history),
        "model": {
            "name": classifier.name,
            "binarized_layers": len(final),
            "binarized_mac_share": (mac_counts["binary"] / mac_counts["total"]
                                    if mac_counts["total"] else 0.0),
            "macs": mac_counts,
            "inference_parameters": int(classifier.count_params()
                                        - profile.training_only_weight_count(classifier)),
            "memory_bytes": profile.memory_bytes(classifier),
        },
        "mixture": _mixture_report(initial, final),
        **_distillation_report(run, config, state.history),
        "files": {"curves": run.relative(run.curves),
                  "latents": run.relative(run.latents) if final else None,
                  "model": run.relative(run.classifier),
                  "markdown": run.relative(run.report_md),
                  "tensorboard": run.relative(run.tensorboard) + "/"},
    }


def _distillation_report(run, config, history):
    """The "teacher" (its teacher.json) and "steps" sections, only for runs that have them."""
    sections = {}
    if run.teacher_record.exists():
        sections["teacher"] = read_json(run.teacher_record)
    if config.two_step:
        sections["steps"] = _steps_report(config, history)
    return sections


def _steps_report(config, history):
    """Step 1 and step 2 of a two-step run: their epochs and last logs."""
    first = config.step1_epochs
    spans = ((1, "real", 1, first), (2, "bayesian_sign" if config.kernel_loss else "ste_sign",
                                      first + 1, config.epochs))
    return [{"step": step, "kernels": kernels, "epochs": [start, end],
             "last": history[end - 1] if len(history) >= end else None}
            for step, kernels, start, end in spans]


def _teacher_lines(summary):
    teacher = summary.get("teacher")
    if not teacher:
        return []
    lines = [f"* teacher ({teacher['source']}, `{teacher['run_dir']}`): test top-1 accuracy "
             f"**{teacher['test']['accuracy']:.4f}** beside the student's "
             f"{summary['test'].get('accuracy', float('nan')):.4f}"]
    if teacher.get("validation") and summary.get("validation"):
        lines.append(f"* teacher validation top-1 accuracy "
                     f"**{teacher['validation']['accuracy']:.4f}** beside the student's "
                     f"{summary['validation']['accuracy']:.4f}")
    return lines


def _steps_lines(summary):
    if not summary.get("steps"):
        return []
    lines = ["", "## Two-step training", "", "Step 1: binary activations, real kernels; "
             "step 2: binary kernels from step 1's weights (the dotted line in the curves).",
             "", "| step | epochs | kernels | last loss | last val accuracy |",
             "| --- | --- | --- | --- | --- |"]
    for step in summary["steps"]:
        last = step["last"] or {}
        lines.append(f"| {step['step']} | {step['epochs'][0]}-{step['epochs'][1]} | "
                     f"{step['kernels']} | {_number(last.get('loss'))} | "
                     f"{_number(last.get('val_accuracy'))} |")
    return lines


def _number(value):
    return "n/a" if value is None else f"{value:.4g}"


def markdown(summary: dict) -> str:
    """report.md: settings, results, per-epoch table, mixture table, plots."""
    test, model = summary["test"], summary["model"]
    lines = [HEADING, ""]
    if summary.get("status") == "diverged":
        lines += ["**Training diverged**: the loss became NaN or infinite. The numbers below "
                  "are those of the last good epoch (its checkpoint is kept).", ""]
    lines += ["## Settings", "",
             "| setting | value |", "| --- | --- |"]
    lines += [f"| {key} | `{value}` |" for key, value in summary["config"].items()]
    lines += [f"| effective {key} | {_number(value)} |"
              for key, value in summary["effective_loss_weights"].items()]
    lines += ["", "## Results", "",
              f"* test top-1 accuracy on {summary['test_examples']:,} "
              f"{summary['config']['dataset']}"
              f" test images: **{test.get('accuracy', float('nan')):.4f}**"
              + (f", top-5: {test['top5_accuracy']:.4f}" if "top5_accuracy" in test else ""),
              *([f"* validation top-1 accuracy on the last {summary['config']['validation_size']:,}"
                 f" training images (held out): **{summary['validation']['accuracy']:.4f}**"]
                if summary.get("validation") else []),
              *_teacher_lines(summary),
              f"* epochs: {summary['epochs_done']}, training time {summary['train_seconds']:.1f} s",
              f"* binarized layers: {model['binarized_layers']}, binarized MAC share "
              f"{100 * model['binarized_mac_share']:.1f}% ({model['macs']['binary']:,} of "
              f"{model['macs']['total']:,} MACs)",
              f"* deployed parameters: {model['inference_parameters']:,}; Larq memory "
              f"estimate {model['memory_bytes'] / 1024:.1f} KiB", "",
              "## Per epoch", ""]
    keys = [k for k, _ in LOSS_TERMS if k in summary["history"][0]]
    header = keys + [f"val_{k}" for k in keys if f"val_{k}" in summary["history"][0]]
    lines += ["| epoch | " + " | ".join(header) + " | seconds |",
              "| --- " * (len(header) + 2) + "|"]
    for epoch, (logs, seconds) in enumerate(zip(summary["history"], summary["epoch_seconds"]), 1):
        lines.append(f"| {epoch} | " + " | ".join(_number(logs.get(k)) for k in header)
                     + f" | {seconds:.1f} |")
    lines += _steps_lines(summary)
    lines += ["", "## Latent weights and fitted mixtures", "",
              "| layer | when | mu+ | mu- | sigma+ | sigma- | mean abs | bimodality | "
              "flipped since init |", "| --- " * 9 + "|"]
    for name, stages in summary["mixture"].items():
        for when, stats in stages.items():
            lines.append(f"| {name} | {when} | " + " | ".join(
                _number(stats.get(k)) for k in (*MIXTURE_KEYS, "latent_scale", "bimodality",
                                                 "flip_ratio")) + " |")
    lines += _deployment_lines(summary)
    lines += ["", f"![learning curves]({summary['files']['curves']})", ""]
    if summary["files"]["latents"]:
        lines += [f"![latent weights]({summary['files']['latents']})", ""]
    return "\n".join(lines)


def _deployment_lines(summary):
    """The LCE conversion and latency sections, once those steps have run."""
    lines = []
    conversion = summary.get("conversion")
    if conversion:
        agreement = conversion["agreement"]
        census = ", ".join(f"{name} x{count}" for name, count in conversion["census"].items())
        lines += ["", "## LCE conversion", "",
                  f"* `{conversion['tflite_path']}`: {conversion['tflite_bytes'] / 1024:.1f} KiB",
                  f"* Keras vs TFLite on {agreement['samples']} test images: top-1 agreement "
                  f"{agreement['top1_agreement']:.4f}, max |logit difference| "
                  f"{agreement['max_abs_diff']:.3g}",
                  f"* operators: {census}"]
    benchmark = summary.get("benchmark")
    if benchmark:
        flags = benchmark["flags"]
        lines += ["", "## Latency (batch 1, LCE interpreter)", "",
                  f"{flags['num_threads']} thread(s), "
                  f"indirect_bgemm={flags['use_indirect_bgemm']}, "
                  f"xnnpack={flags['use_xnnpack']}, median of {flags['repeats']} runs after "
                  f"{flags['warmup']} warm-up runs.", "",
                  "| model | latency ms | size KiB |", "| --- | --- | --- |",
                  f"| binary | {benchmark['binary_ms']:.3f} | "
                  f"{benchmark['binary_bytes'] / 1024:.1f} |"]
        if benchmark.get("float_ms") is not None:
            lines.append(f"| float twin | {benchmark['float_ms']:.3f} | "
                         f"{benchmark['float_bytes'] / 1024:.1f} |")
    return lines


def update_run_report(run_dir: str | os.PathLike, section: str, payload: dict) -> dict:
    """Add (or replace) `section` of a finished run's report.json and re-render report.md."""
    run = RunDirectory(run_dir)
    summary = read_json(run.report_json)
    summary[section] = payload
    _write_report(run, summary)
    return summary


def _write_report(run, summary):
    write_json(run.report_json, summary)
    run.report_md.write_text(markdown(summary))


def write_run_report(run: RunDirectory, config: RunConfig, bonn: BONN, state: RunState) -> dict:
    """Write report.json, report.md, curves.png and latents.png into the run; return the dict."""
    initial = load_mixture_snapshot(run.init_mixture)
    final = binarized_kernels(bonn.classifier)
    summary = run_summary(run, config, bonn, state, initial, final)
    _write_report(run, summary)
    plot_curves(state.history, run.curves,
                validation_label="validation" if config.validation_size else "test",
                step1_epochs=config.step1_epochs if config.two_step else None)
    plot_latents(initial, final, run.latents)
    return summary


def write_diverged_report(run: RunDirectory, config: RunConfig, state: RunState) -> None:
    """report.json / report.md of a run that diverged in its first epoch (no checkpoint)."""
    summary = {"status": "diverged", "diverged": state.diverged,
               "config": config.as_dict(), "epochs_done": 0}
    write_json(run.report_json, summary)
    run.report_md.write_text(f"{HEADING}\n\nTraining diverged in the first epoch "
                             f"({state.diverged}); no epoch finished.\n")
