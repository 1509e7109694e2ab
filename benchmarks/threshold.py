"""The kernel loss as a flip threshold: every regime seen through the same diagnostics.

    python benchmarks/threshold.py --output runs/threshold --results benchmarks/results/threshold

Adam, `small_cnn`, Fashion-MNIST, 50,000 training / 10,000 validation images, 15 epochs,
`reduction="sum"`, nu = 1e-4, feature loss off, every run with `FlipDiagnostics` on (the
job's default). Stages (`--stages` says how far to go):

1. regimes (seed 0): plain Larq and the paper's setting (lam = 1e-4) rerun with the
   diagnostics, and the missing region of the evidence grid, lam in {1e-8, 1e-9, 1e-7}.
2. calibrated (seed 0): lam set every step from each layer's data gradient
   (`bayes_larq.flips.FlipThreshold`): the quantile rule at q in {0.5, 0.9, 0.99},
   the drift rule (the quantile of the gradient's moving average, what decides a flip
   under Adam) at q = 0.5 and 0.9, and ReBNN's rule.
   The seed-0 cells of both stages run interleaved (`seed0_cells`), the ones that say
   most first, so that a run cut short still sees every regime: plain, paper, lam 1e-7
   (where the diagnostics put the threshold: the push at zero equals the median drift of
   plain Larq's data gradient), q 0.5, drift 0.5, ReBNN, lam 1e-8, lam 1e-9, q 0.9,
   q 0.99, drift 0.9 (last: the one cell beyond what the grid and the quantile screen
   ask for).
3. seeds: the best cell of stages 1 and 2 in which the kernel loss acts (lam > 0 or a
   threshold rule; chosen on seed-0 validation accuracy) to seeds 1 to 4. The leader's
   seeds run as soon as the first six seed-0 cells (`LEADING_CELLS`, one per regime) are
   in, before the other five; if one of those five then leads, its seeds run too.
   Plain Larq's seeds 1 to 4 are the committed evidence sweep's
   (`benchmarks/results/sweep/adam-plain`) when this script's seed-0 plain run reproduces
   the sweep's bit for bit (same per-epoch losses and accuracies), and are rerun here
   otherwise.

4. wrn (seed 0): the paper's WRN family, `wrn22` with width factor 1 (16-16-32-64, 18
   binary 3x3 convolutions) on the same data, `--wrn-epochs` epochs (default 5: the
   budget of this 2-core machine; plain Larq gets the same): plain Larq, the paper's
   setting and the best cell of stage 3, to see whether the freeze, and whatever
   helps, carries over from `small_cnn`. Results under --results/wrn22-k1-epochsN/.

A cell already in --results is read back, an interrupted run is resumed (see
benchmarks/sweep.py, whose `Sweep` runs the cells). `benchmarks/evidence.py` turns the
results into docs/evidence.md.
"""

import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import sweep  # noqa: E402

STAGES = ("regimes", "calibrated", "seeds", "wrn")
OPTIMIZER = "adam"
NU = 1e-4
GRID_LAMS = (1e-9, 1e-8, 1e-7)
QUANTILES = (0.5, 0.9, 0.99)
DRIFT_QUANTILES = (0.5, 0.9)
SEEDS = (1, 2, 3, 4)
LEADING_CELLS = 6
SWEEP_RESULTS = pathlib.Path("benchmarks/results/sweep")


def kernel_cell(lam):
    return {**sweep.KERNEL_ONLY, "lam": lam, "nu": NU}


def regime_cells():
    return [sweep.PLAIN, kernel_cell(sweep.PAPER_SETTING["lam"])] + [
        kernel_cell(lam) for lam in GRID_LAMS]


def calibrated_cells():
    quantile = [{**kernel_cell(sweep.PAPER_SETTING["lam"]), "flip_threshold": "quantile",
                 "threshold_quantile": q} for q in QUANTILES]
    drift = [{**kernel_cell(sweep.PAPER_SETTING["lam"]), "flip_threshold": "drift",
              "threshold_quantile": q} for q in DRIFT_QUANTILES]
    return quantile + drift + [{**kernel_cell(sweep.PAPER_SETTING["lam"]),
                                "flip_threshold": "rebnn"}]


def seed0_cells(last_stage):
    """The seed-0 cells up to `last_stage` (0: regimes, 1: calibrated), interleaved."""
    regimes, calibrated = regime_cells(), calibrated_cells()
    if last_stage < 1:
        return regimes
    plain, paper, lam_9, lam_8, lam_7 = regimes
    q_5, q_9, q_99, drift_5, drift_9, rebnn = calibrated
    order = [plain, paper, lam_7, q_5, drift_5, rebnn, lam_8, lam_9, q_9, q_99, drift_9]
    assert sorted(map(str, order)) == sorted(map(str, regimes + calibrated))
    return order


def plain_seeds(runner):
    """Plain Larq, seeds 1-4: the committed sweep's when seed 0 reproduces it, else here."""
    if not sweep.reproduces(runner, OPTIMIZER, sweep.PLAIN, SWEEP_RESULTS):
        for seed in SEEDS:
            runner.run(OPTIMIZER, sweep.PLAIN, seed)


def best_cell(runner):
    candidates = [c for c in regime_cells()[1:] + calibrated_cells()]
    return runner.best(OPTIMIZER, candidates)


def run_small_cnn_stages(runner, last_stage):
    """Stages 1 to 3 up to `last_stage`: the leader's seeds after the leading cells."""
    cells = seed0_cells(last_stage)
    for overrides in cells[:LEADING_CELLS]:
        runner.run(OPTIMIZER, overrides, 0)
    if last_stage >= 2:
        plain_seeds(runner)
        run_seeds(runner)
    for overrides in cells[LEADING_CELLS:]:
        runner.run(OPTIMIZER, overrides, 0)
    if last_stage >= 2:
        run_seeds(runner)  # reads back what is stored unless another cell now leads


def run_seeds(runner):
    best = best_cell(runner)
    for seed in SEEDS:
        runner.run(OPTIMIZER, best, seed)


def wrn_cells(best):
    """Plain Larq, the paper's setting and `best`, without repeats."""
    cells = [sweep.PLAIN, kernel_cell(sweep.PAPER_SETTING["lam"])]
    return cells + ([best] if best not in cells else [])


def main(argv=None):
    parser = sweep.screen_parser("threshold", STAGES)
    parser.description = __doc__.split("\n\n")[0]
    parser.add_argument("--wrn-epochs", type=int, default=5)
    args = parser.parse_args(argv)
    base = sweep.base_settings(args)
    runner = sweep.Sweep(args.output, args.results, base)
    last = max(STAGES.index(stage) for stage in args.stages)
    start = time.perf_counter()
    run_small_cnn_stages(runner, last)
    if last >= 3:
        budget = f"wrn22-k1-epochs{args.wrn_epochs}"
        deeper = sweep.Sweep(args.output / budget, args.results / budget,
                             {**base, "model": "wrn22", "arch": {"width_factor": 1},
                              "epochs": args.wrn_epochs})
        for overrides in wrn_cells(best_cell(runner)):
            deeper.run(OPTIMIZER, overrides, 0)
    print(f"threshold done in {(time.perf_counter() - start) / 60:.0f} min", flush=True)


if __name__ == "__main__":
    main()
