r"""Keras callbacks for BONN training: loss-weight schedules, mixture monitor and refresh.

```python
callbacks = [
    bl.callbacks.LossWeightScheduler("lam", bl.callbacks.linear_warmup(1e-4, 2)),
    bl.callbacks.MixtureMonitor(log_dir="runs/tb"),
]
bonn.fit(x, y, epochs=5, callbacks=callbacks)
```
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import tensorflow as tf

from bayes_larq.defaults import check_choice, check_integer, check_non_negative
from bayes_larq.flips import FlipProbe, push_at_zero
from bayes_larq.mixture import layer_statistics
from bayes_larq.quantizers import (
    BayesianSign,
    bayesian_kernels,
    bayesian_quantizers,
    binary_kernels,
)

__all__ = ["FlipDiagnostics", "LossWeightScheduler", "MixtureMonitor", "MixtureRefresh",
           "constant", "drift_statistics", "gradient_statistics", "linear_warmup",
           "oscillation_statistics"]

SCHEDULE_TARGETS = ("lam", "nu", "theta")
Schedule = Callable[[int], float]


def constant(value: float) -> Schedule:
    """Schedule: the same value every epoch."""
    check_non_negative("value", value)
    return lambda epoch: value


def linear_warmup(final_value: float, warmup_epochs: int,
                  initial_value: float = 0.0, start_epoch: int = 0) -> Schedule:
    """Schedule: `initial_value` up to epoch `start_epoch`, then linear to `final_value`
    at epoch `start_epoch + warmup_epochs`, then constant:

        value(e) = v0 + (v1 - v0) * clip((e - start_epoch) / warmup_epochs, 0, 1)

    `start_epoch` is where the weighted loss starts to act, for example the first epoch of
    step 2 in two-step training, where the kernel loss appears.

    Examples:
        >>> [linear_warmup(1.0, 2)(epoch) for epoch in range(4)]
        [0.0, 0.5, 1.0, 1.0]
        >>> [linear_warmup(1.0, 2, start_epoch=2)(epoch) for epoch in range(5)]
        [0.0, 0.0, 0.0, 0.5, 1.0]
    """
    check_non_negative("final_value", final_value)
    check_non_negative("initial_value", initial_value)
    check_integer("warmup_epochs", warmup_epochs)
    check_integer("start_epoch", start_epoch, minimum=0)

    def schedule(epoch):
        fraction = min(1.0, max(0.0, (epoch - start_epoch) / warmup_epochs))
        return initial_value + (final_value - initial_value) * fraction

    return schedule


class LossWeightScheduler(tf.keras.callbacks.Callback):
    """Set `lam` or `nu` of every `BayesianSign`, or `theta` of a `BONN` model, per epoch.

    Args:
        target: "lam", "nu" or "theta".
        schedule: a number (constant) or a function `epoch -> value` (0-based epochs),
            e.g. `constant(v)`, `linear_warmup(v, epochs)` or your own.

    The value in force is written to the epoch logs (and so to `history`) as `target`.
    The weights are variables of the model, so a checkpoint keeps them.
    """

    def __init__(self, target, schedule):
        super().__init__()
        self.target = check_choice("target", target, SCHEDULE_TARGETS)
        self.schedule = schedule if callable(schedule) else constant(schedule)
        self.value = None

    def _variables(self):
        if self.target == "theta":
            feature_loss = getattr(self.model, "feature_loss", None)
            if feature_loss is None:
                raise ValueError("A 'theta' schedule needs a bayes_larq.BONN model with the "
                                 "feature loss on (feature_loss=True).")
            return [feature_loss.theta]
        variables = [getattr(q, self.target) for q in bayesian_quantizers(self.model)]
        if not variables:
            raise ValueError(f"A {self.target!r} schedule needs BayesianSign kernel quantizers "
                             f"in the model; {self.model.name} has none.")
        return variables

    def on_train_begin(self, logs=None):
        self._variables()

    def on_epoch_begin(self, epoch, logs=None):
        self.value = check_non_negative(self.target, self.schedule(epoch))
        for variable in self._variables():
            variable.assign(self.value)

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs[self.target] = self.value


class MixtureMonitor(tf.keras.callbacks.Callback):
    """Record, per binarized layer and epoch, the mixture and the latent weights.

    Watches every 1-bit kernel (`quantizers.binary_kernels`): BayesianSign layers report
    their learned mixture, other 1-bit kernels (Larq's "ste_sign", ...) the closed-form
    fit of their latent weights, so a plain Larq baseline is recorded the same way.
    Logged as `"<layer>/<stat>"` into the epoch logs (so into `history`), and with
    `log_dir` as TensorBoard scalars plus a histogram of the latent weights per layer.
    Stats: mu_pos, mu_neg, sigma_pos, sigma_neg (means over output channels), w_bar
    (mean of W; BayesianSign only), latent_scale (mean |x|), bimodality
    (`bimodality_coefficient` of the latent weights) and flip_ratio (share of latent
    weights whose sign changed since the previous epoch; since the start of training for
    the first epoch).
    """

    def __init__(self, log_dir: str | None = None):
        super().__init__()
        self.log_dir = log_dir
        self._writer = None
        self._previous_latent = {}

    def on_train_begin(self, logs=None):
        kernels = binary_kernels(self.model)
        if not kernels:
            raise ValueError(f"MixtureMonitor found no 1-bit kernels in {self.model.name}.")
        self._previous_latent = {k.layer.name: k.latent.numpy() for k in kernels}
        if self.log_dir is not None and self._writer is None:
            self._writer = tf.summary.create_file_writer(str(self.log_dir))

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        for kernel in binary_kernels(self.model):
            name, latent = kernel.layer.name, kernel.latent.numpy()
            w_bar = (float(tf.reduce_mean(kernel.quantizer.reconstruction))
                     if isinstance(kernel.quantizer, BayesianSign) else None)
            stats = layer_statistics(latent, kernel.mixture(),
                                     self._previous_latent.get(name), w_bar)
            self._previous_latent[name] = latent
            logs.update({f"{name}/{key}": value for key, value in stats.items()})
            if self._writer is not None:
                with self._writer.as_default(step=epoch):
                    for key, value in stats.items():
                        tf.summary.scalar(f"{name}/{key}", value)
                    tf.summary.histogram(f"{name}/latent_weights", latent)
        if self._writer is not None:
            self._writer.flush()


class MixtureRefresh(tf.keras.callbacks.Callback):
    """Closed-form refresh of mu and sigma after every `every_n_batches` batches.

    An alternative to learning them by gradient (the default): each refresh sets every
    mode to the mean and std of the weights on its side, the stationary point of L_B.
    """

    def __init__(self, every_n_batches: int = 100):
        super().__init__()
        self.every_n_batches = check_integer("every_n_batches", every_n_batches)

    def refresh(self):
        for kernel in bayesian_kernels(self.model):
            kernel.quantizer.refresh_mixture(kernel.latent.numpy())

    def on_train_batch_end(self, batch, logs=None):
        if (batch + 1) % self.every_n_batches == 0:
            self.refresh()


PERCENTILES = (50, 90, 99)


def gradient_statistics(data_gradient: np.ndarray, loss_gradient: np.ndarray,
                        push: np.ndarray) -> dict[str, float]:
    """One layer at one step: percentiles of |data gradient| (`ce_grad_p50`, ...) and of
    |dL_B/dx| (`kernel_grad_p50`, ...), their ratio at the median (`grad_ratio`, left
    out when L_B's gradient is 0), the median push of L_B at zero (`push_at_zero`) and
    the share of weights whose |data gradient| exceeds their push (`flippable`)."""
    data, loss = np.abs(data_gradient).ravel(), np.abs(loss_gradient).ravel()
    push = np.abs(np.broadcast_to(push, np.shape(data_gradient))).ravel()
    stats = {}
    for percentile in PERCENTILES:
        stats[f"ce_grad_p{percentile}"] = float(np.percentile(data, percentile))
        stats[f"kernel_grad_p{percentile}"] = float(np.percentile(loss, percentile))
    if stats["kernel_grad_p50"] > 0:
        stats["grad_ratio"] = stats["ce_grad_p50"] / stats["kernel_grad_p50"]
    stats["push_at_zero"] = float(np.median(push))
    stats["flippable"] = float(np.mean(data > push))
    return stats


def oscillation_statistics(start_sign: np.ndarray, end_sign: np.ndarray,
                           flip_counts: np.ndarray, steps: int) -> dict[str, float]:
    """Sign changes of one layer over a window of `steps` steps: the share of weights
    that flipped at least once (`flipped`), the share that flipped and ended with the
    sign they started with (`flipped_back`), and flips per weight per step
    (`flip_rate`)."""
    flipped = flip_counts > 0
    return {"flipped": float(np.mean(flipped)),
            "flipped_back": float(np.mean(flipped & (start_sign == end_sign))),
            "flip_rate": float(np.mean(flip_counts)) / max(steps, 1)}


def drift_statistics(data_gradient_sum: np.ndarray, steps: int,
                     push: np.ndarray) -> dict[str, float]:
    """The data gradient averaged over a window, per weight (what survives the batch
    noise, and what Adam's first moment follows): its median and 90th percentile
    (`ce_drift_p50`, `ce_drift_p90`) and the share of weights where it exceeds the push
    of L_B at zero (`drift_flippable`)."""
    drift = np.abs(data_gradient_sum).ravel() / max(steps, 1)
    push = np.abs(np.broadcast_to(push, np.shape(data_gradient_sum))).ravel()
    return {"ce_drift_p50": float(np.percentile(drift, 50)),
            "ce_drift_p90": float(np.percentile(drift, 90)),
            "drift_flippable": float(np.mean(drift > push))}


class FlipDiagnostics(tf.keras.callbacks.Callback):
    """Per binary layer and epoch: the data gradient against the flip threshold of L_B,
    and how the signs oscillate (docs/method.md, "The flip threshold").

    Needs a `bayes_larq.BONN` model: it attaches a `flips.FlipProbe`, into which every
    training step writes each binary kernel's data gradient (the gradient of the loss
    without L_B), the gradient of L_B (closed form) and its sign changes. Every
    `every_n_steps` steps the callback reads the probe (`gradient_statistics`); at the
    end of the epoch it logs the mean over those samples and the epoch's oscillation
    (`oscillation_statistics`, every step counted) and the drift of the data gradient
    over the epoch (`drift_statistics`) as `"<layer>/<stat>"` into the epoch
    logs (so into `history`), and with `log_dir` as TensorBoard scalars. Plain Larq
    kernels ("ste_sign") are measured too: their L_B gradient and push are 0.

    Definitions beside the literature's: `flipped_back` is the share of weights whose
    sign at the end of the epoch equals the sign at its start with at least one flip in
    between (a weight that oscillated); ReBNN's "weight oscillation ratio" is an
    epoch-wise share of weights that flip, like `flipped`; AdamBNN's "flip-flop ratio" is
    the share of weights that change sign per iteration, like `flip_rate`.

    Args:
        every_n_steps: how often the gradient statistics are sampled (integer >= 1).
        log_dir: a TensorBoard directory, or None.
    """

    def __init__(self, every_n_steps: int = 25, log_dir: str | None = None):
        super().__init__()
        self.every_n_steps = check_integer("every_n_steps", every_n_steps)
        self.log_dir = log_dir
        self.probe = None
        self._writer = None
        self._samples = []

    def on_train_begin(self, logs=None):
        attach = getattr(self.model, "attach_flip_probe", None)
        if attach is None:
            raise ValueError("FlipDiagnostics needs a bayes_larq.BONN model (its train step "
                             f"records the gradients); got {type(self.model).__name__}.")
        if self.probe is None:
            kernels = binary_kernels(self.model.classifier)
            if not kernels:
                raise ValueError(f"FlipDiagnostics found no 1-bit kernels in "
                                 f"{self.model.name}.")
            self.probe = FlipProbe(kernels)
        attach(self.probe)
        if self.log_dir is not None and self._writer is None:
            self._writer = tf.summary.create_file_writer(str(self.log_dir))

    def on_epoch_begin(self, epoch, logs=None):
        self.probe.start_window()
        self._samples = []

    def on_train_batch_end(self, batch, logs=None):
        if (batch + 1) % self.every_n_steps == 0:
            self._samples.append(self._sample())

    def _sample(self):
        probe = self.probe
        return [gradient_statistics(data.numpy(), loss.numpy(), self._push(kernel))
                for kernel, data, loss in zip(probe.kernels, probe.data_gradients,
                                              probe.loss_gradients)]

    @staticmethod
    def _push(kernel):
        if not isinstance(kernel.quantizer, BayesianSign):
            return np.zeros(())
        return np.reshape(push_at_zero(kernel.quantizer, kernel.latent).numpy(),
                          kernel.latent.shape)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        if not self._samples:  # an epoch shorter than every_n_steps: sample its last step
            self._samples.append(self._sample())
        probe, steps = self.probe, int(self.probe.steps.numpy())
        for index, name in enumerate(probe.names):
            samples = [sample[index] for sample in self._samples]
            stats = {key: float(np.mean([s[key] for s in samples]))
                     for key in samples[0] if all(key in s for s in samples)}
            stats.update(oscillation_statistics(
                probe.start_signs[index].numpy(), probe.previous_signs[index].numpy(),
                probe.flip_counts[index].numpy(), steps))
            stats.update(drift_statistics(probe.data_gradient_sums[index].numpy(), steps,
                                          self._push(probe.kernels[index])))
            logs.update({f"{name}/{key}": value for key, value in stats.items()})
            if self._writer is not None:
                with self._writer.as_default(step=epoch):
                    for key, value in stats.items():
                        tf.summary.scalar(f"{name}/{key}", value)
        if self._writer is not None:
            self._writer.flush()
