"""Two-step training in a run (ReActNet): binary activations first, binary kernels after.

Epochs 1 to `step1_epochs` are step 1 (`precision="activations"`: real kernels, no
kernel loss), the rest step 2: `bayes_larq.staged.binarize_kernels` of the step-1 model
with the run's kernel quantizer (`BayesianSign`, or "ste_sign" without the kernel
loss), every weight and the feature-loss state kept. Each step is compiled afresh, its
optimizer and learning-rate schedule spanning its own epochs: two ordinary fits.

A checkpoint holds the BONN model of its step. A run resumed at the boundary (from the
step-1 checkpoint of epoch `step1_epochs`) builds step 2 from it exactly as the
uninterrupted run does, so both continue with the same weights.
"""

from __future__ import annotations

import dataclasses

import tensorflow as tf

from bayes_larq import staged
from bayes_larq.app.config import RunConfig
from bayes_larq.app.model import new_bonn
from bayes_larq.quantizers import BayesianSign
from bayes_larq.training import BONN

__all__ = ["first_bonn", "starts_step2", "step1_config", "step2_bonn", "step_epochs"]


def step1_config(config: RunConfig) -> RunConfig:
    """The settings of step 1: binary activations, real kernels, so no kernel loss."""
    return dataclasses.replace(config, precision="activations", kernel_loss=False,
                               flip_threshold="fixed")


def step_epochs(config: RunConfig) -> tuple[int, int]:
    """The epochs of step 1 and of step 2."""
    return config.step1_epochs, config.epochs - config.step1_epochs


def starts_step2(config: RunConfig, epoch: int) -> bool:
    """Whether the 0-based `epoch` is the first of step 2."""
    return config.two_step and epoch == config.step1_epochs


def first_bonn(config: RunConfig, teacher: tf.keras.Model | None = None) -> BONN:
    """The run's BONN before any training: step 1's in a two-step run."""
    if not config.two_step:
        return new_bonn(config, teacher)
    return new_bonn(step1_config(config), teacher, epochs=step_epochs(config)[0])


def step2_bonn(config: RunConfig, step1: BONN) -> BONN:
    """The step-2 BONN from the trained step-1 one (its teacher included)."""
    tf.keras.utils.set_random_seed(config.seed)  # the same start, resumed or not
    quantizer = BayesianSign(**config.bayesian_sign_settings()) if config.kernel_loss \
        else "ste_sign"
    bonn = new_bonn(config, step1.teacher, epochs=step_epochs(config)[1],
                    build=lambda: staged.binarize_kernels(step1.classifier, quantizer))
    if bonn.feature_loss is not None and step1.feature_loss is not None:
        bonn.feature_loss.set_weights(step1.feature_loss.get_weights())
    return bonn
