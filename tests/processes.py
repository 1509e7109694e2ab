"""Helpers of the process-level tests: `bayes-larq` in a child process, waiting on its run."""

import json
import signal
import subprocess
import sys
import time


def start(args, env=None):
    """`python -m bayes_larq ARGS` in a child process, output captured. The child gets
    SIGINT's default action back: a suite started in the background by a shell (`cmd &`)
    inherits SIGINT ignored, and Python then never raises KeyboardInterrupt."""
    return subprocess.Popen([sys.executable, "-m", "bayes_larq", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_default_sigint)


def _default_sigint():
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def wait_for_epochs(process, run_dir, at_least=1, timeout=300):
    """Poll `run_dir/state.json` until `at_least` epochs are saved (or the process ends)."""
    state = run_dir / "state.json"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        if state.exists() and json.loads(state.read_text())["epochs_done"] >= at_least:
            return
        time.sleep(0.2)


def epochs_done(run_dir):
    return json.loads((run_dir / "state.json").read_text())["epochs_done"]


def shorten_to(run_dir, epochs):
    """Rewrite the run's config to `epochs` (a resumed test run then finishes quickly)."""
    config = json.loads((run_dir / "config.json").read_text())
    (run_dir / "config.json").write_text(json.dumps({**config, "epochs": epochs}))
