"""The model of a run: the seeded classifier, wrapped in `BONN`, compiled."""

from __future__ import annotations

import functools
import math
from typing import Callable

import tensorflow as tf

from bayes_larq import models as model_registry
from bayes_larq.weight_decay import with_weight_decay
from bayes_larq.app import data
from bayes_larq.app.config import RunConfig
from bayes_larq.app.distribute import distribution
from bayes_larq.app.errors import RunError
from bayes_larq.training import BONN

__all__ = ["TOP5_MIN_CLASSES", "build_model", "compile_bonn", "learning_rate_schedule",
           "make_optimizer", "new_bonn", "steps_per_epoch",
           "train_examples"]

TOP5_MIN_CLASSES = 11  # top-5 accuracy is reported for models with more than 10 classes


def build_model(config: RunConfig, decayed: bool = True) -> tf.keras.Model:
    """The classifier of a run, seeded: same config -> same initial weights; with the
    run's weight decay on its kernels (`bayes_larq.weight_decay`) unless `decayed` is
    False (a model that is never trained: the decay's regularizers would only cost a
    clone)."""
    info = data.dataset_info(config.dataset)
    tf.keras.utils.set_random_seed(config.seed)
    try:
        model = model_registry.get(
            config.model, num_classes=info.num_classes, input_shape=info.input_shape,
            bonn=config.kernel_loss, scope=config.scope, precision=config.precision,
            sync_batch_norm=config.sync_batch_norm, **config.bayesian_sign_settings(),
            **config.arch)
    except (TypeError, ValueError) as err:
        raise RunError(f"Bad architecture argument for {config.model!r}: {err}") from None
    return with_weight_decay(model, config.weight_decay) if decayed else model


def train_examples(config: RunConfig) -> int:
    """The number of training examples of one epoch."""
    info = data.dataset_info(config.dataset)
    available = info.train_examples - (config.validation_size or 0)
    return min(config.train_limit or available, available)


def new_bonn(config: RunConfig, teacher: tf.keras.Model | None = None,
             build: Callable[[], tf.keras.Model] | None = None,
             epochs: int | None = None) -> BONN:
    """The run's model (or the one `build` returns), wrapped in `BONN`, distilling from
    `teacher` when given, and compiled for `epochs` (default: the run's), before training."""
    distilling = ({"teacher": teacher, "kd_weight": config.kd_weight,
                   "temperature": config.temperature} if teacher is not None else {})
    with distribution(config).scope():
        bonn = BONN((build or functools.partial(build_model, config))(),
                    feature_loss=config.feature_loss, theta=config.theta,
                    w_lr_multiplier=config.w_lr_multiplier,
                    sigma_lr_multiplier=config.sigma_lr_multiplier,
                    mixture_update=config.mixture_update,
                    flip_threshold=config.threshold(), **distilling)
        compile_bonn(bonn, config, epochs)
    return bonn


def make_optimizer(
        config: RunConfig,
        learning_rate: float | tf.keras.optimizers.schedules.LearningRateSchedule,
) -> tf.keras.optimizers.Optimizer:
    """Adam or SGD (with the run's momentum) at `learning_rate` (a rate or a schedule)."""
    if config.optimizer == "sgd":
        return tf.keras.optimizers.SGD(learning_rate, momentum=float(config.momentum))
    return tf.keras.optimizers.Adam(learning_rate)


def steps_per_epoch(config: RunConfig) -> int:
    """Training steps (global batches) of one epoch."""
    return math.ceil(train_examples(config) / config.batch_size)


def learning_rate_schedule(
        config: RunConfig, epochs: int | None = None,
) -> float | tf.keras.optimizers.schedules.LearningRateSchedule:
    """The run's learning rate: constant, cosine-decayed to 0 over `epochs` (default the
    run's), or step-decayed: `learning_rate * lr_decay_factor ** floor(step /
    (lr_decay_epochs * steps_per_epoch))` (Keras' staircase `ExponentialDecay`)."""
    rate = float(config.learning_rate)
    if config.lr_schedule == "cosine":
        return tf.keras.optimizers.schedules.CosineDecay(
            rate, (epochs or config.epochs) * steps_per_epoch(config))
    if config.lr_schedule == "step":
        return tf.keras.optimizers.schedules.ExponentialDecay(
            rate, config.lr_decay_epochs * steps_per_epoch(config),
            float(config.lr_decay_factor), staircase=True)
    return rate


def compile_bonn(bonn: BONN, config: RunConfig, epochs: int | None = None) -> None:
    """Adam or SGD at `learning_rate_schedule(config, epochs)`, cross-entropy on logits."""
    rate = learning_rate_schedule(config, epochs)
    metrics = ["accuracy"]
    if bonn.num_classes >= TOP5_MIN_CLASSES:
        metrics.append(tf.keras.metrics.SparseTopKCategoricalAccuracy(5, name="top5_accuracy"))
    bonn.compile(make_optimizer(config, rate),
                 tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                 metrics=metrics)
