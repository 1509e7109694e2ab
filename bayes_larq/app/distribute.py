"""The `tf.distribute` strategy of a run, and whether this process is the chief.

See docs/distributed.md. A multi-worker strategy can be created only once per process
and before any op, so strategies are created once and kept.
"""

from __future__ import annotations

import json
import os
import signal
import threading

import tensorflow as tf

from bayes_larq.app.config import RunConfig
from bayes_larq.app.errors import RunError, Setting
from bayes_larq.app.peers import cluster_timeout, task_addresses, wait_for_peers

__all__ = ["distribution", "is_chief", "planned_replicas", "strategy_name", "trains_as_worker"]

_STRATEGIES: dict[str, tf.distribute.Strategy] = {}


def _cluster():
    """The `TF_CONFIG` of this process: ({job: [addresses]}, task), or ({}, {}); RunError
    naming the fault when it is malformed."""
    try:
        tf_config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    except json.JSONDecodeError as err:
        raise RunError(f"TF_CONFIG is not valid JSON ({err}).") from None
    if not isinstance(tf_config, dict):
        raise _tf_config_error("it is not a JSON object")
    cluster, task = tf_config.get("cluster", {}), tf_config.get("task", {})
    if not isinstance(cluster, dict) or not all(
            isinstance(addresses, list) for addresses in cluster.values()):
        raise _tf_config_error('"cluster" must map each job ("chief", "worker") to a list '
                               'of addresses')
    if not isinstance(task, dict):
        raise _tf_config_error('"task" must be an object {"type": ..., "index": ...}')
    if task:
        _check_task(cluster, task)
    return cluster, task


def _check_task(cluster, task):
    kind, index = task.get("type"), task.get("index", 0)
    if kind not in cluster:
        raise _tf_config_error(f'its task is a {kind!r}, a job its cluster '
                               f'({sorted(cluster) or "empty"}) does not have')
    if isinstance(index, bool) or not isinstance(index, int) or not (
            0 <= index < len(cluster[kind])):
        raise _tf_config_error(f'its task index {index!r} is not an integer in [0, '
                               f'{len(cluster[kind])}) for the {len(cluster[kind])} '
                               f'{kind!r} address(es)')


def _tf_config_error(fault):
    return RunError(f"TF_CONFIG is malformed: {fault} (see docs/distributed.md). Fix it, or "
                    f"unset TF_CONFIG to train in this process alone.")


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


def planned_replicas(config: RunConfig) -> dict:
    """The strategy of a run, its workers and replicas, without creating it (a dry run):
    every worker is assumed to have this machine's GPUs (one replica without GPUs)."""
    name = strategy_name(config)
    workers = len(cluster_tasks()[0]) if name == "multi-worker" else 1
    local = len(tf.config.list_physical_devices("GPU")) if name in (
        "mirrored", "multi-worker") else 1
    return {"name": name, "workers": workers, "replicas": workers * max(1, local),
            "chief": is_chief()}


def distribution(config: RunConfig) -> tf.distribute.Strategy:
    """The `tf.distribute` strategy of a run (created once per process, before any op)."""
    name = strategy_name(config)
    if name not in _STRATEGIES:
        if name == "multi-worker":
            _STRATEGIES[name] = _multi_worker()
        elif name == "mirrored":
            _STRATEGIES[name] = tf.distribute.MirroredStrategy()
        elif name == "one-device":
            device = "/gpu:0" if tf.config.list_physical_devices("GPU") else "/cpu:0"
            _STRATEGIES[name] = tf.distribute.OneDeviceStrategy(device)
        else:
            _STRATEGIES[name] = tf.distribute.get_strategy()
    return _STRATEGIES[name]


def cluster_tasks() -> tuple[dict[str, tuple[str, int]], str]:
    """The training tasks of TF_CONFIG's cluster ({"worker 1": (host, port), ...}) and
    this task's name, checked for a multi-worker run.

    Raises:
        RunError: no TF_CONFIG cluster or task, an address that is not HOST:PORT, or a
            task that does not train (neither chief nor worker).
    """
    cluster, task = _cluster()
    if not (cluster and task):
        raise RunError(Setting("strategy", "multi-worker"), " needs TF_CONFIG with "
                       "the cluster and this task (see docs/distributed.md).")
    try:
        addresses = task_addresses(cluster)
    except ValueError as err:
        raise _tf_config_error(str(err)) from None
    own = f"{task['type']} {task.get('index', 0)}"
    if own not in addresses:
        raise _tf_config_error(f"its task is a {task['type']!r}; a multi-worker run trains "
                               f"on the 'chief' and 'worker' tasks only")
    return addresses, own


def _multi_worker():
    """MultiWorkerMirroredStrategy, created once every peer is up (`bayes_larq.app.peers`),
    with Python's signal handlers in place again afterwards."""
    addresses, own = cluster_tasks()
    wait_for_peers(addresses, own, cluster_timeout())
    handlers = _python_signal_handlers()
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    # TensorFlow's preemption notifier takes over SIGTERM at the C level (it only records
    # the notice): install Python's handlers again, so SIGTERM stops training and saves.
    for signum, handler in handlers.items():
        signal.signal(signum, handler)
    return strategy


def _python_signal_handlers():
    if threading.current_thread() is not threading.main_thread():
        return {}
    handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    return {signum: handler for signum, handler in handlers.items() if handler is not None}


def is_chief() -> bool:
    """True unless `TF_CONFIG` makes this process a non-chief worker of a cluster."""
    cluster, task = _cluster()
    if not task:
        return True
    if task.get("type") == "chief":
        return True
    return task.get("type") == "worker" and task.get("index", 0) == 0 and "chief" not in cluster


def trains_as_worker(config: RunConfig) -> bool:
    """True for a non-chief worker of a multi-worker run (it writes no run directory).

    A non-chief `TF_CONFIG` task with a strategy that is not multi-worker (a stale
    TF_CONFIG in the shell) is refused: that process would train alone and keep nothing.
    """
    if is_chief():
        return False
    _, task = _cluster()
    name = strategy_name(config)
    if name != "multi-worker" or task.get("type") != "worker":
        raise RunError(f"TF_CONFIG makes this process the non-chief task {task} of a cluster, "
                       f"but the run's strategy is {name!r}: it would train without "
                       f"writing the run. Unset TF_CONFIG to train in this process alone, or "
                       f"start every worker of the cluster with ",
                       Setting("strategy", "multi-worker"), ".")
    return True
