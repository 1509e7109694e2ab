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

import tensorflow as tf

from bayes_larq.defaults import check_choice, check_integer, check_non_negative
from bayes_larq.mixture import layer_statistics
from bayes_larq.quantizers import (
    BayesianSign,
    bayesian_kernels,
    bayesian_quantizers,
    binary_kernels,
)

__all__ = ["LossWeightScheduler", "MixtureMonitor", "MixtureRefresh", "constant",
           "linear_warmup"]

SCHEDULE_TARGETS = ("lam", "nu", "theta")
Schedule = Callable[[int], float]


def constant(value: float) -> Schedule:
    """Schedule: the same value every epoch."""
    check_non_negative("value", value)
    return lambda epoch: value


def linear_warmup(final_value: float, warmup_epochs: int,
                  initial_value: float = 0.0) -> Schedule:
    """Schedule: linear from `initial_value` at epoch 0 to `final_value` at `warmup_epochs`.

    Example:
        >>> [linear_warmup(1.0, 2)(epoch) for epoch in range(4)]
        [0.0, 0.5, 1.0, 1.0]
    """
    check_non_negative("final_value", final_value)
    check_non_negative("initial_value", initial_value)
    check_integer("warmup_epochs", warmup_epochs)

    def schedule(epoch):
        fraction = min(1.0, epoch / warmup_epochs)
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
