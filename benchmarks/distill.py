"""Distillation and two-step training: can binary `small_cnn` reach its float twin?

    python benchmarks/distill.py --output runs/distill --results benchmarks/results/distill

Adam, `small_cnn` width 32, Fashion-MNIST, 50,000 training / 10,000 validation images,
15 epochs in every cell, settings chosen on validation accuracy, test read once. Every
teacher is a float run of this script, trained on the same 50,000 images. Stages
(`--stages` says how far to go):

1. baselines (seed 0): the float twin, which is also the teacher of every distilling
   cell, and plain Larq. Each is checked bit for bit against the committed evidence
   sweep (`benchmarks/results/sweep`); when seed 0 reproduces, the sweep's seeds 1 to 4
   stand for it in stage 3, otherwise they are rerun here.
2. screen (seed 0), in this order (each choice among the cells run so far):
   two-step training (7 epochs of binary activations with real kernels, then 8 with
   binary kernels too); ReActNet's distribution loss alone (kd_weight 1, temperature 1);
   two-step with that distillation; half distribution loss, half cross-entropy
   (kd_weight 0.5); temperature 4 at the better kd_weight; a larger teacher (the float
   twin at width 64) at the best distillation setting; ReActNet's learnable activations
   (`learnable_threshold` and `rprelu` of the model builders) on plain Larq, then on the
   best cell without them; BONN's feature loss (theta 1e-3) on top of the best cell.
3. seeds: the best cell of the screen, seeds 1 to 4, against plain Larq and the float
   twin. Every student seed learns from the seed-0 teacher, so the spread of a cell is
   that of its students alone.

Distilling cells are BONN runs without the kernel loss (`kernel_loss=False`): the
kernel loss lost in every setting of the evidence sweep. A cell already in --results is
read back; an interrupted run is resumed; a teacher is a cell of its own (the larger one
runs just before its student), retrained when --output lacks its run directory (see
benchmarks/sweep.py, whose `Sweep` runs the cells). Stop it with SIGTERM.
`benchmarks/evidence.py` turns the results into docs/evidence.md.
"""

import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import sweep  # noqa: E402

STAGES = ("baselines", "screen", "seeds")
OPTIMIZER = "adam"
TEACHER_SEED = 0
SEEDS = (1, 2, 3, 4)
SWEEP_RESULTS = pathlib.Path("benchmarks/results/sweep")
LARGE_TEACHER = {**sweep.FLOAT_TWIN, "arch": {"width": 64}}
FEATURE_LOSS = {"feature_loss": True, "theta": 1e-3}
REACTNET = {"learnable_threshold": True, "rprelu": True}
SCREEN_CELLS = 9  # the students of stage 2


def teacher_dir(runner, teacher):
    return (runner.output / sweep.cell_name(OPTIMIZER, teacher) / f"seed-{TEACHER_SEED}").resolve()


def distilled(runner, teacher=sweep.FLOAT_TWIN, **settings):
    """Plain Larq's cell distilled from `teacher` (a float cell of this script)."""
    return {**sweep.PLAIN, "teacher": str(teacher_dir(runner, teacher)), **settings}


def two_step(cell):
    """`cell` trained in two steps, the first half of the epochs (rounded down) the first."""
    return {**cell, "two_step": True}


def with_reactnet(cell):
    """`cell` with ReActNet's learnable sign threshold and RPReLU in its architecture."""
    return {**cell, "arch": {**cell.get("arch", {}), **REACTNET}}


def distilling(cells):
    return [cell for cell in cells if cell.get("teacher")]


def ensure_teacher(runner, teacher):
    """The teacher run directory `teacher` trained: its cell is run (or read back), and
    retrained when only its stored result is there (another machine's --output)."""
    float_cell = next(cell for cell in (sweep.FLOAT_TWIN, LARGE_TEACHER)
                      if teacher_dir(runner, cell) == teacher)
    runner.run(OPTIMIZER, float_cell, TEACHER_SEED)
    if not (teacher / "model.keras").exists():
        runner.train_or_resume(OPTIMIZER, float_cell, TEACHER_SEED, teacher)


def run_student(runner, overrides, seed):
    """One cell's run, its teacher made ready first when the cell has to train."""
    stored = runner.results / sweep.cell_name(OPTIMIZER, overrides) / f"seed-{seed}.json"
    if overrides.get("teacher") and not stored.exists():
        ensure_teacher(runner, pathlib.Path(overrides["teacher"]))
    return runner.run(OPTIMIZER, overrides, seed)


def screen(runner):
    """Stage 2, cell by cell, each chosen among the cells already run; returns them all."""
    kd = distilled(runner)
    cells = [two_step(sweep.PLAIN), kd, two_step(kd)]
    for overrides in cells:
        run_student(runner, overrides, 0)
    cells.append(distilled(runner, kd_weight=0.5))
    run_student(runner, cells[-1], 0)
    weight = runner.best(OPTIMIZER, distilling(cells)[:1] + cells[-1:]).get("kd_weight", 1.0)
    cells.append(distilled(runner, kd_weight=weight, temperature=4.0))
    run_student(runner, cells[-1], 0)
    best_kd = runner.best(OPTIMIZER, [c for c in distilling(cells) if not c.get("two_step")])
    cells.append({**best_kd, "teacher": str(teacher_dir(runner, LARGE_TEACHER))})
    run_student(runner, cells[-1], 0)
    best_without = runner.best(OPTIMIZER, cells)
    cells += [with_reactnet(sweep.PLAIN), with_reactnet(best_without)]
    for overrides in cells[-2:]:
        run_student(runner, overrides, 0)
    cells.append({**runner.best(OPTIMIZER, cells), **FEATURE_LOSS})
    run_student(runner, cells[-1], 0)
    assert len(cells) == SCREEN_CELLS
    return cells


def run_distill(runner, last_stage):
    """Stages 1 to `last_stage` (0: baselines, 1: screen, 2: seeds)."""
    for overrides in (sweep.FLOAT_TWIN, sweep.PLAIN):
        runner.run(OPTIMIZER, overrides, 0)
    if last_stage < 1:
        return
    cells = screen(runner)
    if last_stage < 2:
        return
    best = runner.best(OPTIMIZER, cells)
    for baseline in (sweep.PLAIN, sweep.FLOAT_TWIN):
        if not sweep.reproduces(runner, OPTIMIZER, baseline, SWEEP_RESULTS):
            for seed in SEEDS:
                runner.run(OPTIMIZER, baseline, seed)
    for seed in SEEDS:
        run_student(runner, best, seed)


def main(argv=None):
    parser = sweep.screen_parser("distill", STAGES)
    parser.description = __doc__.split("\n\n")[0]
    args = parser.parse_args(argv)
    runner = sweep.Sweep(args.output, args.results, sweep.base_settings(args))
    start = time.perf_counter()
    run_distill(runner, max(STAGES.index(stage) for stage in args.stages))
    print(f"distill done in {(time.perf_counter() - start) / 60:.0f} min", flush=True)


if __name__ == "__main__":
    main()
