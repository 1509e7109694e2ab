"""The evidence sweep: BONN in the paper's units against plain Larq, chosen on held-out data.

One resumable command runs every stage, one run at a time (2 cores), each run an
ordinary run directory under --output; a run already finished is read back, one that
was interrupted is resumed:

    python benchmarks/sweep.py --output runs/sweep --results benchmarks/results/sweep

Stages (all on `small_cnn`, Fashion-MNIST, the last 10,000 training images held out as
the validation split; settings are chosen on validation accuracy, never on test):

1. screen (seed 0): per optimizer (Adam, SGD with momentum), plain Larq, and the kernel
   loss alone with `reduction="sum"` over lam in {0, 1e-6, 1e-5, 1e-4, 1e-3} x nu in
   {1e-4, 1e-2} (lam = 0 once: the prior is multiplied by lam, so nu does nothing then).
   lam = 1e-6 extends the paper's grid downwards: lam = 2e-5 already freezes the signs
   within one epoch (the warm-up cells show it).
2. remedies (seed 0): the paper's setting (lam = 1e-4, nu = 1e-4) and the strongest
   screened one (lam = 1e-3, nu = 1e-2) with each collapse remedy: the paper's averaged
   mu/sigma gradient, closed-form mu/sigma, a lam warm-up.
3. theta (seed 0): the best kernel setting per optimizer (lam = 0 included) plus the
   feature loss, theta in {1e-4, 1e-3, 1e-2}.
4. seeds: the best BONN setting per optimizer and its plain-Larq baseline, seeds 1, 2.
   A BONN setting is a cell in which one of the losses acts: lam > 0, or theta > 0. The
   lam = 0 cell alone is BayesianSign with its loss off, a control, never "best BONN".
5. final: the leading optimizer's best BONN setting and plain Larq to 5 seeds, and the
   float twin of the architecture, 5 seeds. The leading optimizer is the one whose best
   BONN setting has the best seed-0 validation accuracy.

Order: the cells that answer the most come first, so a sweep cut short still says
something.
1. The first group of seed-0 cells: the baselines, the paper's setting and its remedies,
   lam = 0, then lam = 1e-5 and 1e-6 with nu = 1e-4.
2. For the leading optimizer: its theta stage, then its seeds and final comparison, seed
   by seed (BONN, plain Larq, float twin for each seed), so that a cut-short sweep still
   holds paired runs. Then the same (theta, seeds) for the other optimizer.
3. The rest of the paper's grid: nu = 1e-2 at lam = 1e-5 and 1e-4, then lam = 1e-3 at
   both nu; then the extensions beyond it (nu = 1e-2 at lam = 1e-6, the remedies at
   lam = 1e-3). Each group is followed by the theta stage; finally the seed stages
   again, which run only what a changed "best" needs.
"Best" is always among the cells run so far, so every choice can be read back from the
committed results; once the sweep is complete it is the best of every cell. A run whose
loss becomes NaN or infinite is recorded as diverged (its report.json says so), is never
"best", and the sweep goes on with the next cell.

Stop it with Ctrl-C, or with SIGTERM (`kill PID`) when it was started in the background:
shells start background jobs with SIGINT ignored. Either way it loses at most the
unfinished epoch, and the next start resumes from the last checkpoint.

After every run the run's report.json is copied to --results/<cell>/seed-<n>.json, so
the committed results grow as the sweep does; `benchmarks/evidence.py` turns them into
docs/evidence.md. `--stages` limits what runs (e.g. `--stages screen`).
"""

import argparse
import dataclasses
import json
import pathlib
import time

from bayes_larq.app import runs
from bayes_larq.app.rundir import write_json

STAGES = ("screen", "remedies", "theta", "seeds", "final")
OPTIMIZERS = ("adam", "sgd")
PAPER_LAMS = (1e-5, 1e-4, 1e-3)  # the planned grid, with lam = 0
LAMS = (1e-6, *PAPER_LAMS)
NUS = (1e-4, 1e-2)
THETAS = (1e-4, 1e-3, 1e-2)
PAPER_SETTING = {"lam": 1e-4, "nu": 1e-4}
STRONG_SETTING = {"lam": 1e-3, "nu": 1e-2}
REMEDIES = {
    "mean-grad": {"prior_gradient": "mean"},
    "closed-form": {"mixture_update": "closed_form"},
    "warmup": {"lam_warmup_epochs": 5},
}
PLAIN = {"kernel_loss": False, "feature_loss": False}
KERNEL_ONLY = {"kernel_loss": True, "feature_loss": False, "reduction": "sum"}
LAM_ZERO = {**KERNEL_ONLY, "lam": 0.0, "nu": NUS[0]}  # BayesianSign with its loss off
FLOAT_TWIN = {"kernel_loss": False, "feature_loss": False, "precision": "float"}
SEARCH_SEEDS = (0, 1, 2)
FINAL_SEEDS = (0, 1, 2, 3, 4)


def cell_name(optimizer, overrides):
    """A stable directory name for a cell: optimizer and every non-default override."""
    parts = [optimizer, *regime_parts(overrides)]
    for key, value in sorted(overrides.items()):
        if key in ("prior_gradient", "mixture_update"):
            parts.append(f"{key.split('_')[0]}-{value}")
        elif key == "lam_warmup_epochs":
            parts.append(f"warmup{value}")
        elif key == "theta":
            parts.append(f"theta{value:g}")
    return "-".join(parts + training_parts(optimizer, overrides))


def regime_parts(overrides):
    """What a cell's name says of its precision and kernel loss."""
    if overrides.get("precision") == "float":
        return ["float"]
    if not overrides.get("kernel_loss") and not overrides.get("feature_loss"):
        return ["plain"]
    threshold = overrides.get("flip_threshold", "fixed")
    if threshold != "fixed":  # lam is set by the threshold; its starting value does not count
        prefix = {"quantile": "q", "drift": "drift"}.get(threshold)
        rule = f"{prefix}{overrides['threshold_quantile']:g}" if prefix else threshold
        return [rule, f"nu{overrides['nu']:g}"]
    if overrides.get("kernel_loss"):
        lam = overrides["lam"]
        return [f"lam{lam:g}"] + ([f"nu{overrides['nu']:g}"] if lam else [])
    return []


def training_parts(optimizer, overrides):
    """What a cell's name says of its architecture, two-step training and teacher."""
    parts = [key if value is True else f"{key}{value}"
             for key, value in sorted(overrides.get("arch", {}).items())]
    if overrides.get("two_step"):
        parts.append(f"twostep{overrides.get('step1_epochs', '')}")
    if overrides.get("teacher"):
        weight, temperature = overrides.get("kd_weight", 1.0), overrides.get("temperature", 1.0)
        parts.append(f"kd{weight:g}-T{temperature:g}")
        if overrides["teacher"] == runs.FLOAT_TWIN:  # trained inside the run
            parts.append(f"twin{overrides.get('teacher_epochs', '')}")
        elif teacher_cell(overrides["teacher"]) != f"{optimizer}-float":
            parts.append(f"teacher-{teacher_cell(overrides['teacher'])}")
    if "epochs" in overrides:  # a cell with its own budget
        parts.append(f"e{overrides['epochs']}")
    return parts


def teacher_cell(teacher):
    """The cell a teacher run directory (CELL/seed-N) belongs to."""
    return pathlib.Path(teacher).parent.name


def run_name(run_dir):
    """A run directory named by its cell and seed (CELL/seed-N), the same on every machine."""
    return "/".join(pathlib.Path(run_dir).parts[-2:])


def comparable(settings):
    """A run's settings as they must match across machines: the data's location left
    out, a teacher named by its cell and seed (CELL/seed-N) rather than its full path."""
    settings = {key: value for key, value in settings.items() if key != "data_dir"}
    if settings.get("teacher"):
        settings["teacher"] = run_name(settings["teacher"])
    return settings


def diverged(report):
    """Whether a stored run diverged (its loss became NaN or infinite): it is recorded as
    an outcome of its cell, and never chosen."""
    return report.get("status") == "diverged"


def finished(reports):
    """Whether a cell's {seed: report} holds a seed-0 run that did not diverge."""
    return 0 in reports and not diverged(reports[0])


def screen_cells():
    """Every screen cell: plain Larq, lam = 0, and each (lam, nu) of the grid."""
    return [PLAIN, LAM_ZERO] + [
        {**KERNEL_ONLY, "lam": lam, "nu": nu} for lam in LAMS for nu in NUS]


def remedy_cells():
    return [{**KERNEL_ONLY, **setting, **remedy}
            for setting in (PAPER_SETTING, STRONG_SETTING) for remedy in REMEDIES.values()]


def is_strong(overrides):
    return overrides.get("lam", 0.0) >= STRONG_SETTING["lam"]


def is_extension(overrides):
    """A cell beyond the planned grid: lam below 1e-5, or a remedy at the strong setting."""
    remedy_keys = {key for remedy in REMEDIES.values() for key in remedy}
    return 0 < overrides.get("lam", 0.0) < PAPER_LAMS[0] or (
        is_strong(overrides) and bool(remedy_keys & set(overrides)))


def cell_groups(last_stage):
    """The seed-0 screen (and, from stage 1, remedy) cells in four groups, run in order:
    the first group, the rest of the paper's grid (weak, then strong), the extensions."""
    cells = screen_cells() + (remedy_cells() if last_stage >= 1 else [])
    paper = {**KERNEL_ONLY, **PAPER_SETTING}
    first = [PLAIN, paper] + [c for c in cells if c != paper and all(
        c.get(k) == v for k, v in PAPER_SETTING.items())]
    first += [LAM_ZERO] + [{**KERNEL_ONLY, "lam": lam, "nu": NUS[0]} for lam in (1e-5, 1e-6)]
    grid = [c for c in cells if c not in first and not is_extension(c)]
    return [first, [c for c in grid if not is_strong(c)], [c for c in grid if is_strong(c)],
            [c for c in cells if c not in first and is_extension(c)]]


def checked_report(path, config):
    """The report at `path`; SystemExit when it was made with other settings than `config`
    (locations aside, see `comparable`), so that no result stands for settings it lacks."""
    report = json.loads(path.read_text())
    fields = {f.name for f in dataclasses.fields(runs.RunConfig)}
    stored = comparable(runs.RunConfig(**{
        key: value for key, value in report.get("config", {}).items() if key in fields}).as_dict())
    differ = {key: (stored[key], value) for key, value in comparable(config.as_dict()).items()
              if stored[key] != value}
    if differ:
        shown = ", ".join(f"{key}: {old!r} there, {new!r} here" for key, (old, new) in
                          differ.items())
        raise SystemExit(f"{path} was made with other settings ({shown}). Pass another "
                         f"--results and --output for these settings.")
    return report


def same_run(report, reference):
    """Whether two report.json files hold the same training, epoch by epoch."""
    keys = ("loss", "ce_loss", "accuracy", "val_loss", "val_accuracy")
    return len(report["history"]) == len(reference["history"]) and all(
        mine.get(key) == theirs.get(key)
        for mine, theirs in zip(report["history"], reference["history"]) for key in keys)


def reproduces(sweep, optimizer, overrides, committed_results):
    """Whether `sweep`'s seed-0 run of a cell is, bit for bit, the one committed under
    `committed_results`: then that directory's other seeds of the cell stand for this code."""
    name = cell_name(optimizer, overrides)
    committed = committed_results / name / "seed-0.json"
    same = committed.exists() and same_run(sweep.reports[name][0],
                                           json.loads(committed.read_text()))
    print(f"{name}: seed 0 {'reproduces' if same else 'does not reproduce'} {committed}"
          + ("; its other seeds are reused" if same else ""), flush=True)
    return same


class Sweep:
    """Runs cells, remembers their reports, and copies each report into the results."""

    def __init__(self, output, results, base, reports=None):
        self.output, self.results, self.base = output, results, base
        self.reports = {} if reports is None else reports

    def run(self, optimizer, overrides, seed):
        name = cell_name(optimizer, overrides)
        run_dir = self.output / name / f"seed-{seed}"
        stored = self.results / name / f"seed-{seed}.json"
        config = self.config(optimizer, overrides, seed)
        if stored.exists():
            report = checked_report(stored, config)
        else:
            if not (run_dir / "report.json").exists():
                self.train_or_resume(optimizer, overrides, seed, run_dir)
            stored.parent.mkdir(parents=True, exist_ok=True)
            report = checked_report(run_dir / "report.json", config)
            write_json(stored, report)  # atomic: a sweep stopped here leaves no half file
        self.reports.setdefault(name, {})[seed] = report
        print(f"{name} seed {seed}: {outcome(report)}", flush=True)
        return report

    def config(self, optimizer, overrides, seed):
        return runs.RunConfig(**{**self.base, **overrides, "optimizer": optimizer, "seed": seed})

    def train_or_resume(self, optimizer, overrides, seed, run_dir):
        """Train (or resume) one run; a run that diverges leaves its diverged report.json."""
        try:
            if runs.RunDirectory(run_dir).exists():
                runs.resume(run_dir, verbose=0)
            else:
                runs.train(self.config(optimizer, overrides, seed), run_dir, verbose=0)
        except runs.JobFailed:
            report_file = run_dir / "report.json"
            if not (report_file.exists() and diverged(json.loads(report_file.read_text()))):
                raise

    def validation(self, optimizer, overrides, seeds=(0,)):
        reports = [self.reports[cell_name(optimizer, overrides)][s] for s in seeds]
        return sum(r["validation"]["accuracy"] for r in reports) / len(reports)

    def best(self, optimizer, candidates):
        """The candidate with the best seed-0 validation accuracy among those already run."""
        ran = [c for c in candidates
               if finished(self.reports.get(cell_name(optimizer, c), {}))]
        return max(ran, key=lambda overrides: self.validation(optimizer, overrides))


def outcome(report):
    if diverged(report):
        return f"diverged ({report['diverged']})"
    split = "validation" if report["validation"] else "test"
    return f"{split} {report[split]['accuracy']:.4f}"


def best_kernel_setting(sweep, optimizer):
    candidates = screen_cells()[1:] + remedy_cells()
    return sweep.best(optimizer, candidates)


def is_bonn(settings):
    """Whether one of BONN's losses acts in a cell's overrides or a run's config (a lam of
    None is the library's default, which is not 0)."""
    return bool(settings.get("feature_loss")) or (
        bool(settings.get("kernel_loss")) and settings.get("lam") != 0)


def best_bonn_setting(sweep, optimizer):
    """The best seed-0 cell in which a BONN loss acts: a kernel setting with lam > 0, or
    the best kernel setting (lam = 0 included) with the feature loss."""
    kernel = best_kernel_setting(sweep, optimizer)
    candidates = screen_cells() + remedy_cells() + theta_cells(kernel)
    return sweep.best(optimizer, [c for c in candidates if is_bonn(c)])


def leading_optimizer(sweep):
    return max(OPTIMIZERS, key=lambda o: sweep.validation(o, best_bonn_setting(sweep, o)))


def theta_cells(kernel):
    return [{**kernel, "feature_loss": True, "theta": theta} for theta in THETAS]


def run_cells(sweep, cells):
    for overrides in cells:
        for optimizer in OPTIMIZERS:
            sweep.run(optimizer, overrides, 0)


def run_theta_stage(sweep, optimizers):
    for optimizer in optimizers:
        for overrides in theta_cells(best_kernel_setting(sweep, optimizer)):
            sweep.run(optimizer, overrides, 0)


def run_seed_stages(sweep, optimizers, last_stage):
    """Stage 4 for each optimizer and, for the leading one, stage 5, seed by seed."""
    leader = leading_optimizer(sweep)
    for optimizer in optimizers:
        final = last_stage >= 4 and optimizer == leader
        cells = [best_bonn_setting(sweep, optimizer), PLAIN] + ([FLOAT_TWIN] if final else [])
        for seed in FINAL_SEEDS if final else SEARCH_SEEDS:
            for overrides in cells:
                sweep.run(optimizer, overrides, seed)


def run_sweep(sweep, last_stage):
    """Every stage up to last_stage, in the order of the module docstring."""
    first, *later = cell_groups(last_stage)
    run_cells(sweep, first)
    if last_stage >= 2:
        leader = leading_optimizer(sweep)
        for optimizers in ([leader], [o for o in OPTIMIZERS if o != leader]):
            run_theta_stage(sweep, optimizers)
            if last_stage >= 3:
                run_seed_stages(sweep, optimizers, last_stage)
    for group in later:
        run_cells(sweep, group)
        if last_stage >= 2:
            run_theta_stage(sweep, OPTIMIZERS)
    if last_stage >= 3:
        run_seed_stages(sweep, OPTIMIZERS, last_stage)


def screen_parser(name, stages):
    """The arguments of a screen over `small_cnn` cells (this sweep, benchmarks/threshold.py):
    run and results directories, stages, and the data budget of every cell."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=pathlib.Path, default=pathlib.Path("runs") / name)
    parser.add_argument("--results", type=pathlib.Path,
                        default=pathlib.Path("benchmarks/results") / name)
    parser.add_argument("--stages", nargs="+", choices=stages, default=list(stages))
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--validation-size", type=int, default=10_000)
    parser.add_argument("--train-limit", type=int, default=None)
    parser.add_argument("--test-limit", type=int, default=None)
    parser.add_argument("--data-dir", default=None)
    return parser


def base_settings(args):
    """The run settings every cell of a screen shares."""
    for name in ("epochs", "validation_size", "train_limit", "test_limit"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise SystemExit(f"--{name.replace('_', '-')} must be an integer >= 1; got {value}")
    return {"model": "small_cnn", "dataset": "fashion_mnist", "epochs": args.epochs,
            "validation_size": args.validation_size, "train_limit": args.train_limit,
            "test_limit": args.test_limit, "data_dir": args.data_dir}


def main(argv=None):
    args = screen_parser("sweep", STAGES).parse_args(argv)
    base = base_settings(args)
    sweep = Sweep(args.output, args.results, base)
    start = time.perf_counter()
    # Every stage needs the ones before it to choose its cells, so earlier stages are
    # always (re)read; --stages only says how far to go.
    run_sweep(sweep, max(STAGES.index(stage) for stage in args.stages))
    print(f"sweep done in {(time.perf_counter() - start) / 60:.0f} min", flush=True)


if __name__ == "__main__":
    main()
