"""What the main job's recipe gains, and costs, at the main job's budget.

    python benchmarks/demo_budget.py --output runs/demo_budget \\
        --results benchmarks/results/demo_budget

`bayes-larq demo` trains `runs.DEMO_SETTINGS`: binary `small_cnn` (width 32) with
ReActNet's learnable activations, distilled (kd_weight 0.5, T 4) from a float twin that
trains for 2 epochs first, then 4 student epochs. The distillation screen found that
recipe at 15 epochs (benchmarks/distill.py); this script measures it at the demo's own
budget against:

* plain Larq for the student's 4 epochs (the same student budget, no teacher);
* BONN at the library's defaults for 5 epochs (both Bayesian losses; the main job's
  training before it took the recipe, recipes/bonn-small-cnn-fashion-mnist.toml).

As the demo: all 60,000 training images, Adam with its cosine schedule, tested on the
10,000 test images. Nothing is chosen here, so every run reads the test set. Seeds 0 to
4, seed by seed (the three cells of a seed before the next seed), so a run cut short
still holds paired seeds; seed 0 of the recipe is exactly what `make demo` trains. Each
result records the student's training time and its teacher's (`teacher.train_seconds`),
measured as the runs went, with whatever else ran on the machine: the demo's own wall
time is measured alone (docs/demo.md).

A cell already in --results is read back, an interrupted run is resumed (see
benchmarks/sweep.py, whose `Sweep` runs the cells). `benchmarks/evidence.py` turns the
results into the main job's section of docs/evidence.md.
"""

import argparse
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import sweep  # noqa: E402
from bayes_larq.app import runs  # noqa: E402

OPTIMIZER = "adam"
SEEDS = (0, 1, 2, 3, 4)
RECIPE = runs.DEMO_SETTINGS
PLAIN = {**sweep.PLAIN, "epochs": RECIPE["epochs"]}
BONN = {"kernel_loss": True, "feature_loss": True, "lam": runs.RunConfig.lam,
        "nu": runs.RunConfig.nu, "theta": runs.RunConfig.theta, "epochs": 5}
CELLS = (RECIPE, PLAIN, BONN)


def cell_names():
    """{role: cell name} of the three cells."""
    return {role: sweep.cell_name(OPTIMIZER, cell)
            for role, cell in zip(("recipe", "plain", "bonn"), CELLS)}


def training_seconds(report):
    """The student's training time plus its teacher's (a float twin trained in the run)."""
    teacher = report.get("teacher") or {}
    return report["train_seconds"] + (teacher.get("train_seconds") or 0.0)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=pathlib.Path, default=pathlib.Path("runs/demo_budget"))
    parser.add_argument("--results", type=pathlib.Path,
                        default=pathlib.Path("benchmarks/results/demo_budget"))
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    parser.add_argument("--train-limit", type=int, default=None)
    parser.add_argument("--test-limit", type=int, default=None)
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args(argv)
    base = {"model": "small_cnn", "dataset": "fashion_mnist", "validation_size": None,
            "train_limit": args.train_limit, "test_limit": args.test_limit,
            "data_dir": args.data_dir}
    runner = sweep.Sweep(args.output, args.results, base)
    start = time.perf_counter()
    for seed in args.seeds:
        for cell in CELLS:
            report = runner.run(OPTIMIZER, cell, seed)
            print(f"  trained in {training_seconds(report):.0f} s (teacher included)",
                  flush=True)
    print(f"demo_budget done in {(time.perf_counter() - start) / 60:.0f} min", flush=True)


if __name__ == "__main__":
    main()
