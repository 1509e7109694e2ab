"""Waiting for the other workers of a multi-worker cluster, with a timeout and signals.

`tf.distribute.MultiWorkerMirroredStrategy()` starts this task's gRPC server and then waits,
inside one native call that holds the GIL, until every chief and worker task of the
cluster has registered. While it waits, no Python code runs: Ctrl-C and SIGTERM do nothing
(Python's handlers run only between bytecodes), and the leader of the cluster (its first
task) waits for a missing peer for TensorFlow's hour. So the strategy is created only once
every peer is up: `wait_for_peers` listens on this task's own port, where the peers see
it, and polls each peer's address from Python, where signals take effect, until every one
accepts a TCP connection (its own rendezvous socket, or already TensorFlow's server), or
until `cluster_timeout()` seconds have passed (`BAYES_LARQ_CLUSTER_TIMEOUT`, default 600).
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
import time
from typing import Iterator

from bayes_larq.app.errors import JobFailed, RunError

__all__ = ["DEFAULT_TIMEOUT", "TIMEOUT_VARIABLE", "cluster_timeout", "task_addresses",
           "wait_for_peers"]

TIMEOUT_VARIABLE = "BAYES_LARQ_CLUSTER_TIMEOUT"
DEFAULT_TIMEOUT = 600.0
_POLL_SECONDS = 0.2
_CONNECT_SECONDS = 1.0


def cluster_timeout() -> float:
    """Seconds a worker waits for the other tasks of its cluster (`BAYES_LARQ_CLUSTER_TIMEOUT`)."""
    text = os.environ.get(TIMEOUT_VARIABLE, "").strip()
    if not text:
        return DEFAULT_TIMEOUT
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise RunError(f"{TIMEOUT_VARIABLE}={text!r} is not a number of seconds > 0. Set it "
                       f"to how long a worker waits for the other tasks of its cluster "
                       f"(default {DEFAULT_TIMEOUT:g}), or unset it.")
    return seconds


def task_addresses(cluster: dict) -> dict[str, tuple[str, int]]:
    """{"worker 1": (host, port), ...} of the tasks that train (chief and workers).

    Raises:
        ValueError: an address that is not HOST:PORT.
    """
    addresses = {}
    for job in ("chief", "worker"):
        for index, address in enumerate(cluster.get(job, [])):
            host, _, port = str(address).rpartition(":")
            if not (host and port.isdigit() and 0 < int(port) < 65536):
                raise ValueError(f"the address {address!r} of {job} {index} is not HOST:PORT")
            addresses[f"{job} {index}"] = (host.strip("[]"), int(port))
    return addresses


def wait_for_peers(addresses: dict[str, tuple[str, int]], own: str,
                   timeout: float) -> None:
    """Return once every task of `addresses` but `own` accepts connections.

    Raises:
        JobFailed: a peer did not answer within `timeout` seconds (naming it), or this
            task's own port is taken.
    """
    waiting = {name: address for name, address in addresses.items() if name != own}
    deadline = time.monotonic() + timeout
    with _listening(own, addresses[own]):
        while waiting:
            waiting = {name: address for name, address in waiting.items()
                       if not _answers(address)}
            if waiting and time.monotonic() >= deadline:
                raise _missing(waiting, timeout)
            if waiting:
                time.sleep(_POLL_SECONDS)


@contextlib.contextmanager
def _listening(own: str, address: tuple[str, int]) -> Iterator[None]:
    """A socket on this task's port while it waits; closed before TensorFlow binds it."""
    dual = socket.has_dualstack_ipv6()
    try:
        server = socket.create_server(("", address[1]), family=socket.AF_INET6 if dual
                                      else socket.AF_INET, dualstack_ipv6=dual)
    except OSError as err:
        raise JobFailed(f"This process, {own} of TF_CONFIG ({_text(address)}), cannot listen "
                        f"on port {address[1]}: {err.strerror}. Another process holds it (a "
                        f"worker of an earlier run?): stop it, or give this task a free port "
                        f"in TF_CONFIG's cluster.") from None
    with server:
        yield


def _answers(address: tuple[str, int]) -> bool:
    try:
        with socket.create_connection(address, timeout=_CONNECT_SECONDS):
            return True
    except OSError:
        return False


def _missing(waiting, timeout):
    named = ", ".join(f"{name} ({_text(address)})" for name, address in waiting.items())
    return JobFailed(f"The multi-worker cluster did not start within {timeout:g} s: nothing "
                     f"answers at {named} of TF_CONFIG. Start `bayes-larq train` there with "
                     f"the same cluster and its own task (see docs/distributed.md), set "
                     f"{TIMEOUT_VARIABLE}=SECONDS to wait longer, or unset TF_CONFIG to train "
                     f"in this process alone.")


def _text(address):
    return f"{address[0]}:{address[1]}"
