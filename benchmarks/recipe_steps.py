"""Training step time of each recipe (recipes/*.toml) on this machine, a few steps each.

    python benchmarks/recipe_steps.py recipes/*cifar10.toml \\
        recipes/bonn-small-cnn-fashion-mnist.toml --write benchmarks/results/recipe-steps.json
    python benchmarks/recipe_steps.py recipes/*imagenet.toml --max-batch 32 \\
        --write benchmarks/results/recipe-steps.json

Each recipe's model is built exactly as `bayes-larq train --config RECIPE` builds it
(`bayes_larq.app.model.new_bonn`: its losses, weight decay, optimizer groups and
schedule) and trained on one random batch of the dataset's image size, repeated; no
data is read. After `--warmup` untimed steps (tracing, XLA compilation of the fused
L_B) the median of `--steps` timed steps is the step time.

A recipe whose batch is larger than `--max-batch` (default 128; ImageNet's 256 is timed
at 32 above, to keep the measurement short) is timed at `--max-batch` and scaled
linearly to its batch: on a CPU the step time grows in proportion to the images of the
batch once a batch fills the cores. The output says which batch was timed. Then
`epoch = step * steps per epoch` on this CPU.
`--write` adds the results to the JSON file (replacing those of the same recipes), each
with the command that measured it.
"""

import argparse
import json
import os
import pathlib
import platform
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import bayes_larq  # noqa: E402,F401  - selects tf_keras first
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from bayes_larq.app import data  # noqa: E402
from bayes_larq.app.config import RunConfig  # noqa: E402
from bayes_larq.app.config_file import read_settings_file  # noqa: E402
from bayes_larq.app.model import new_bonn, steps_per_epoch  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from speed import keras_step  # noqa: E402

RECIPES = pathlib.Path(__file__).parents[1] / "recipes"


def time_recipe(path, steps, warmup, max_batch):
    """{recipe, model, batch, timed batch, step seconds (at the recipe's batch), ...}."""
    config = RunConfig(**read_settings_file(path))
    timed_batch = min(config.batch_size, max_batch)
    info = data.dataset_info(config.dataset)
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (timed_batch, *info.input_shape)).astype(np.float32)
    y = rng.integers(0, info.num_classes, timed_batch)
    step = keras_step(new_bonn(config), x, y)
    for _ in range(warmup):
        step()
    seconds = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        seconds.append(time.perf_counter() - start)
    median = statistics.median(seconds) * config.batch_size / timed_batch
    return {"recipe": path.name, "model": config.model, "arch": config.arch,
            "dataset": config.dataset, "image": list(info.input_shape),
            "batch_size": config.batch_size, "timed_batch": timed_batch,
            "step_seconds": round(median, 3), "timed_step_seconds": [round(s, 3) for s in seconds],
            "steps_per_epoch": steps_per_epoch(config),
            "epoch_hours_here": round(median * steps_per_epoch(config) / 3600, 2),
            "run_hours_here": round(median * steps_per_epoch(config) * config.epochs / 3600, 1)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipes", nargs="*", type=pathlib.Path,
                        default=sorted(RECIPES.glob("*.toml")))
    parser.add_argument("--steps", type=int, default=3, help="timed steps [3]")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first [2]")
    parser.add_argument("--max-batch", type=int, default=128,
                        help="time larger batches at this size, scaled linearly [128]")
    parser.add_argument("--write", type=pathlib.Path, help="also write the results as JSON")
    args = parser.parse_args(argv)
    command = " ".join(["python", "benchmarks/recipe_steps.py", *(
        argv if argv is not None else sys.argv[1:])])
    results = []
    for path in args.recipes:
        result = {**time_recipe(path, args.steps, args.warmup, args.max_batch),
                  "command": command}
        results.append(result)
        print(f"{result['recipe']}: {result['step_seconds']:.3f} s/step at batch "
              f"{result['batch_size']} (timed at {result['timed_batch']}), "
              f"{result['steps_per_epoch']} steps/epoch: {result['epoch_hours_here']} h/epoch, "
              f"{result['run_hours_here']} h/run on this CPU", flush=True)
    if args.write:
        write(args.write, results)


def write(path, results):
    """Add `results` to the JSON file at `path`, replacing those of the same recipes."""
    earlier = json.loads(path.read_text())["results"] if path.exists() else []
    measured = {result["recipe"] for result in results}
    kept = [result for result in earlier if result["recipe"] not in measured]
    payload = {"machine": f"{platform.machine()}, {os.cpu_count()} CPUs (shared)",
               "date": time.strftime("%Y-%m-%d"), "tensorflow": tf.__version__,
               "results": sorted(kept + results, key=lambda result: result["recipe"])}
    path.write_text(json.dumps(payload, indent=2) + "\n")


if __name__ == "__main__":
    main()
