"""`bayes-larq train --strategy multi-worker`: two worker processes on localhost against one.

The workers are configured the standard way, with `TF_CONFIG`; the global batch is the
same as the single process's, BatchNorm is synchronised, so the two-worker run must give
the single-process losses and weights up to float summation order. Only the chief writes
the run directory; the other worker's scratch directory is gone at the end.
"""

import bayes_larq  # noqa: F401  - selects tf_keras before TensorFlow is touched

import json
import os
import signal
import socket
import time

import numpy as np
import processes
import pytest

from bayes_larq.app import cli, peers, runs

TINY = ["--batch-size", "32", "--train-limit", "96", "--test-limit", "40", "--arch", "width=4",
        "--quiet", "--sync-batch-norm", "--lr-schedule", "constant"]


def free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def start_workers(args, scratch, indices=(0, 1), timeout=None):
    """`bayes-larq` worker processes (`indices`) of one two-worker cluster; returns the
    Popen objects and the cluster's addresses. `timeout`: BAYES_LARQ_CLUSTER_TIMEOUT."""
    addresses = [f"localhost:{port}" for port in free_ports(2)]
    workers = []
    for index in indices:
        tf_config = {"cluster": {"worker": addresses}, "task": {"type": "worker", "index": index}}
        env = {**os.environ, "TF_CONFIG": json.dumps(tf_config), "TMPDIR": str(scratch)}
        if timeout is not None:
            env[peers.TIMEOUT_VARIABLE] = str(timeout)
        workers.append(processes.start(args, env=env))
    return workers, addresses


def finish(workers, timeout=600):
    results = [p.communicate(timeout=timeout) for p in workers]
    for process, (_, err) in zip(workers, results):
        assert process.returncode == 0, err[-3000:]
    return results


def single_process(run_dir, data_dir, epochs):
    finish([processes.start(["train", "--epochs", str(epochs), *TINY, "--data-dir",
                             str(data_dir), "--output", str(run_dir)])])


def assert_same_run(a, b):
    for left, right in zip(runs.load_classifier(a).get_weights(),
                           runs.load_classifier(b).get_weights()):
        np.testing.assert_allclose(left, right, atol=1e-4, rtol=1e-4)
    history = [json.loads((d / "state.json").read_text())["history"] for d in (a, b)]
    assert len(history[0]) == len(history[1])
    for x, y in zip(*history):
        for key in ("loss", "ce_loss", "kernel_loss", "feature_loss"):
            assert x[key] == pytest.approx(y[key], rel=1e-4, abs=1e-6), key


def multi_worker_run(tmp_path, fashion_dir, epochs):
    """(scratch directory, run directory, arguments) of a two-worker run."""
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    multi = tmp_path / "multi"
    return scratch, multi, ["train", "--epochs", str(epochs), *TINY, "--data-dir",
                            str(fashion_dir), "--strategy", "multi-worker", "--output", str(multi)]


@pytest.mark.slow
def test_two_workers_equal_one_process(tmp_path, fashion_dir):
    scratch, multi, args = multi_worker_run(tmp_path, fashion_dir, epochs=2)
    outputs = finish(start_workers(args, scratch)[0])
    assert f"Report: {multi}/report.md" in outputs[0][0]  # the chief writes the run
    assert list(scratch.iterdir()) == []  # the other worker cleaned up its scratch directory
    config = json.loads((multi / "config.json").read_text())
    assert config["strategy"] == "multi-worker" and config["sync_batch_norm"] is True
    single_process(tmp_path / "single", fashion_dir, epochs=2)
    assert_same_run(multi, tmp_path / "single")


@pytest.mark.slow
def test_killed_worker_then_resume_finishes_and_matches(tmp_path, fashion_dir):
    scratch, multi, args = multi_worker_run(tmp_path, fashion_dir, epochs=60)
    (chief, worker), _ = start_workers(args, scratch)
    processes.wait_for_epochs(chief, multi)
    worker.send_signal(signal.SIGKILL)  # a preempted worker: no chance to clean up
    time.sleep(2)
    chief.send_signal(signal.SIGKILL)  # the job is lost; the chief blocks on the dead peer
    for process in (chief, worker):
        process.communicate(timeout=60)
    done = processes.epochs_done(multi)
    assert 1 <= done < 60
    processes.shorten_to(multi, done + 1)

    finish(start_workers(["train", "--resume", str(multi), "--quiet"], scratch)[0])
    single_process(tmp_path / "single", fashion_dir, epochs=done + 1)
    assert_same_run(multi, tmp_path / "single")


@pytest.mark.slow
@pytest.mark.parametrize("index, missing", [(0, 1), (1, 0)], ids=["leader", "other"])
def test_a_worker_whose_peer_never_comes_stops_naming_it(index, missing, tmp_path,
                                                          fashion_dir):
    """Worker `index` of two, alone: it waited for the missing peer for an hour (the
    leader) and ignored SIGTERM and Ctrl-C; now it stops after BAYES_LARQ_CLUSTER_TIMEOUT."""
    scratch, multi, args = multi_worker_run(tmp_path, fashion_dir, epochs=1)
    (alone,), addresses = start_workers(args, scratch, indices=[index], timeout=3)
    start = time.monotonic()
    _, err = alone.communicate(timeout=60)
    assert alone.returncode == cli.EXIT_FAILURE, err[-3000:]
    assert time.monotonic() - start < 30
    assert (f"did not start within 3 s: nothing answers at worker {missing} "
            f"({addresses[missing]}) of TF_CONFIG") in err
    assert f"set {peers.TIMEOUT_VARIABLE}=SECONDS to wait longer" in err
    assert "Traceback" not in err and not multi.exists() and list(scratch.iterdir()) == []


def _wait_until_listening(process, address, timeout=60):
    host, port = address.split(":")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        try:
            socket.create_connection((host, int(port)), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)


@pytest.mark.slow
@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, cli.EXIT_TERMINATED),
                                           (signal.SIGINT, cli.EXIT_INTERRUPTED)],
                         ids=["SIGTERM", "SIGINT"])
def test_a_signal_stops_a_worker_waiting_for_its_peer(signum, code, tmp_path, fashion_dir):
    scratch, multi, args = multi_worker_run(tmp_path, fashion_dir, epochs=1)
    (alone,), addresses = start_workers(args, scratch, indices=[0])  # the default timeout
    _wait_until_listening(alone, addresses[0])  # it is waiting for worker 1
    alone.send_signal(signum)
    start = time.monotonic()
    _, err = alone.communicate(timeout=30)
    assert alone.returncode == code, err[-3000:]
    assert time.monotonic() - start < 5
    assert f"Interrupted ({signal.Signals(signum).name})" in err and "Traceback" not in err
    assert not multi.exists()


@pytest.mark.slow
def test_sigterm_during_multi_worker_training_saves_and_exits_143(tmp_path, fashion_dir):
    """TensorFlow's preemption notifier takes SIGTERM over when the cluster starts; the
    chief gets its own handler back, so SIGTERM stops it at the next batch as it would
    stop a single process."""
    scratch, multi, args = multi_worker_run(tmp_path, fashion_dir, epochs=60)
    (chief, worker), _ = start_workers(args, scratch)
    processes.wait_for_epochs(chief, multi)
    chief.send_signal(signal.SIGTERM)
    try:
        _, err = chief.communicate(timeout=60)
    finally:
        worker.kill()  # it blocks on the stopped chief
        worker.communicate(timeout=60)
    assert chief.returncode == cli.EXIT_TERMINATED, err[-3000:]
    done = processes.epochs_done(multi)
    assert f"Interrupted (SIGTERM): {done} of 60 epochs are saved in {multi}" in err


@pytest.mark.parametrize("timeout", ["soon", "0", "-5", "inf"])
def test_a_bad_cluster_timeout_is_refused_before_anything_is_written(timeout, tmp_path,
                                                                     monkeypatch, capsys):
    cluster = {"worker": ["localhost:1", "localhost:2"]}
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster,
                                                "task": {"type": "worker", "index": 0}}))
    monkeypatch.setenv(peers.TIMEOUT_VARIABLE, timeout)
    with pytest.raises(SystemExit) as refused:
        cli.main(["train", "--strategy", "multi-worker", "--output", str(tmp_path / "run")])
    assert refused.value.code == cli.EXIT_USAGE
    assert (f"{peers.TIMEOUT_VARIABLE}={timeout!r} is not a number of seconds > 0"
            in capsys.readouterr().err)
    assert not (tmp_path / "run").exists()
