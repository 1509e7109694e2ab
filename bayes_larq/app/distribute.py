"""The `tf.distribute` strategy of a run, and whether this process is the chief.

See docs/distributed.md. A multi-worker strategy can be created only once per process
and before any op, so strategies are created once and kept.
"""

from __future__ import annotations

import json
import os

import tensorflow as tf

from bayes_larq.app.config import RunConfig
from bayes_larq.app.errors import RunError, Setting

__all__ = ["distribution", "is_chief", "strategy_name"]

_STRATEGIES: dict[str, tf.distribute.Strategy] = {}


def _cluster():
    """The `TF_CONFIG` of this process: ({job: [addresses]}, task), or ({}, {})."""
    try:
        tf_config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    except json.JSONDecodeError as err:
        raise RunError(f"TF_CONFIG is not valid JSON ({err}).") from None
    return tf_config.get("cluster", {}), tf_config.get("task", {})


def strategy_name(config: RunConfig) -> str:
    """The strategy a run uses: its own, or for "auto" the one that fits this machine."""
    if config.strategy != "auto":
        return config.strategy
    cluster, _ = _cluster()
    if len(cluster.get("chief", [])) + len(cluster.get("worker", [])) > 1:
        return "multi-worker"
    if len(tf.config.list_physical_devices("GPU")) > 1:
        return "mirrored"
    return "default"


def distribution(config: RunConfig) -> tf.distribute.Strategy:
    """The `tf.distribute` strategy of a run (created once per process, before any op)."""
    name = strategy_name(config)
    if name not in _STRATEGIES:
        if name == "multi-worker":
            if not _cluster()[0]:
                raise RunError(Setting("strategy", "multi-worker"), " needs TF_CONFIG with "
                               "the cluster and this task (see docs/distributed.md).")
            _STRATEGIES[name] = tf.distribute.MultiWorkerMirroredStrategy()
        elif name == "mirrored":
            _STRATEGIES[name] = tf.distribute.MirroredStrategy()
        elif name == "one-device":
            device = "/gpu:0" if tf.config.list_physical_devices("GPU") else "/cpu:0"
            _STRATEGIES[name] = tf.distribute.OneDeviceStrategy(device)
        else:
            _STRATEGIES[name] = tf.distribute.get_strategy()
    return _STRATEGIES[name]


def is_chief() -> bool:
    """True unless `TF_CONFIG` makes this process a non-chief worker of a cluster."""
    cluster, task = _cluster()
    if not task:
        return True
    if task.get("type") == "chief":
        return True
    return task.get("type") == "worker" and task.get("index", 0) == 0 and "chief" not in cluster
