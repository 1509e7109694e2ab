"""docs/evidence.md from the sweep's committed results (and figures from its run directories).

    python benchmarks/evidence.py --results benchmarks/results/sweep --runs runs/sweep \\
        --write docs/evidence.md --figures docs/figures

Tables come from `benchmarks/results/sweep/<cell>/seed-<n>.json` (each a run's
report.json, committed), so they can be rebuilt anywhere. Figures that need the latent
weights (histograms) read the run directories under --runs when they exist and are
skipped otherwise. Settings are compared on validation accuracy (the last 10,000
training images, held out); test accuracy is printed only for the chosen settings and
their baselines. A cell not run yet is listed as missing.
"""

import argparse
import json
import math
import pathlib
import statistics
import sys

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import demo_budget  # noqa: E402
import distill  # noqa: E402
import sweep  # noqa: E402  - the cell definitions live in the sweep script
import teacher_targets  # noqa: E402
import threshold  # noqa: E402
from bayes_larq.app import runs  # noqa: E402

# report.json of runs made before the mixture module named it flip_ratio
FLIP_KEYS = ("flip_ratio", "flipped_since_init")


def load_results(results_dir):
    """{cell name: {seed: report}} of every stored result."""
    found = {}
    for path in sorted(pathlib.Path(results_dir).glob("*/seed-*.json")):
        seed = int(path.stem.split("-")[1])
        found.setdefault(path.parent.name, {})[seed] = json.loads(path.read_text())
    return found


def layer_mean(report, key, stage="end"):
    values = []
    for stages in report["mixture"].values():
        stats = stages[stage]
        names = FLIP_KEYS if key == "flip_ratio" else (key,)
        values += [stats[name] for name in names if name in stats][:1]
    return statistics.fmean(values) if values else math.nan


def welch(a, b, confidence=0.95):
    """Welch's t-test of mean(a) - mean(b): (difference, CI low, CI high, two-sided p)."""
    from scipy import stats

    a, b = np.asarray(a, float), np.asarray(b, float)
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    difference = a.mean() - b.mean()
    standard_error = math.sqrt(va + vb)
    if standard_error == 0:
        return difference, difference, difference, 0.0 if difference else 1.0
    dof = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    margin = stats.t.ppf(0.5 + confidence / 2, dof) * standard_error
    p_value = 2 * stats.t.sf(abs(difference) / standard_error, dof)
    return difference, difference - margin, difference + margin, p_value


def percent(value):
    return "n/a" if value is None or math.isnan(value) else f"{100 * value:.2f}"


def cell_row(name, reports, stage):
    first = reports[min(reports)]
    if sweep.diverged(first):
        return f"| {stage} | `{name}` | diverged: {first['diverged']} | | | | | |"
    last = first["history"][-1]
    ratio = last["kernel_loss"] / last["ce_loss"] if last["ce_loss"] else math.nan
    sigma = statistics.fmean([layer_mean(first, "sigma_pos"), layer_mean(first, "sigma_neg")])
    return (f"| {stage} | `{name}` | {percent(first['validation']['accuracy'])} | "
            f"{ratio:.2e} | {layer_mean(first, 'bimodality'):.3f} | {sigma:.4f} | "
            f"{layer_mean(first, 'latent_scale'):.4f} | "
            f"{100 * layer_mean(first, 'flip_ratio'):.1f}% |")


def stage_tables(results):
    """The seed-0 table of every screened / remedy / theta cell, with what is missing."""
    planned = []
    for overrides in sweep.screen_cells():
        planned += [("screen", sweep.cell_name(o, overrides)) for o in sweep.OPTIMIZERS]
    for overrides in sweep.remedy_cells():
        planned += [("remedy", sweep.cell_name(o, overrides)) for o in sweep.OPTIMIZERS]
    planned += [("theta", name) for name in results if "theta" in name]
    lines = ["| stage | cell | validation top-1 % | L_B / CE (end) | bimodality | "
             "mean sigma | mean abs latent | flipped since init |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    missing = []
    for stage, name in planned:
        if name in results and 0 in results[name]:
            lines.append(cell_row(name, results[name], stage))
        else:
            missing.append(name)
    return lines, missing


def seed_table(results):
    """Cells with more than one seed: validation (and test) mean +- std per cell."""
    lines = ["| cell | seeds | validation top-1 % | test top-1 % | per-seed test |",
             "| --- | --- | --- | --- | --- |"]
    for name, reports in sorted(results.items()):
        if len(reports) < 2:
            continue
        val = [r["validation"]["accuracy"] for r in reports.values()]
        test = [r["test"]["accuracy"] for r in reports.values()]
        lines.append(f"| `{name}` | {len(reports)} | {100 * np.mean(val):.2f} +- "
                     f"{100 * np.std(val, ddof=1):.2f} | {100 * np.mean(test):.2f} +- "
                     f"{100 * np.std(test, ddof=1):.2f} | "
                     + ", ".join(f"{100 * t:.2f}" for t in test) + " |")
    return lines


def comparison_lines(results, bonn_name, plain_name):
    bonn = [r["test"]["accuracy"] for r in results[bonn_name].values()]
    plain = [r["test"]["accuracy"] for r in results[plain_name].values()]
    difference, low, high, p_value = welch(bonn, plain)
    return [f"`{bonn_name}` ({len(bonn)} seeds) minus `{plain_name}` ({len(plain)} seeds), "
            f"test top-1: {100 * difference:+.2f} points, 95% CI [{100 * low:+.2f}, "
            f"{100 * high:+.2f}], Welch's t-test p = {p_value:.3g}."]


def epoch_flip_rate(entry):
    """Mean over binarized layers of the share of signs that changed during one epoch."""
    values = [v for k, v in entry.items() if k.endswith("/flip_ratio")]
    return statistics.fmean(values) if values else math.nan


def plot_curves(results, names, path):
    """Validation accuracy and the per-epoch sign-flip rate of each named cell (seed 0)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (accuracy, flips) = plt.subplots(1, 2, figsize=(11, 4))
    for name in names:
        if sweep.finished(results.get(name, {})):
            history = results[name][0]["history"]
            epochs = range(1, len(history) + 1)
            accuracy.plot(epochs, [100 * h["val_accuracy"] for h in history], "o-", ms=3,
                          label=name)
            flips.plot(epochs, [100 * epoch_flip_rate(h) for h in history], "o-", ms=3,
                       label=name)
    accuracy.set(xlabel="epoch", ylabel="validation top-1 %", title="Validation accuracy")
    flips.set(xlabel="epoch", ylabel="% of binary weights (log scale)", yscale="symlog",
              title="Signs flipped during the epoch (mean over layers)")
    for axis in (accuracy, flips):
        axis.grid(alpha=0.3)
    accuracy.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


THRESHOLD_STATS = ("ce_grad_p50", "push_at_zero", "flippable", "drift_flippable", "flipped",
                   "flipped_back", "flip_rate")


def layer_average(entry, stat):
    """Mean over binarized layers of one per-layer statistic of a history entry."""
    values = [v for k, v in entry.items() if k.endswith("/" + stat)]
    return statistics.fmean(values) if values else math.nan


def threshold_table(results):
    """One row per flip-threshold cell (seed 0): validation accuracy and, at epochs 1 and
    the last, the diagnostics averaged over layers."""
    lines = ["| cell | validation top-1 | epoch | median abs data gradient | push at zero | "
             "flippable | drift flippable | flipped | flipped back | flips per weight-step |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, reports in results.items():
        if not sweep.finished(reports):
            outcome = sweep.outcome(reports[0]) if 0 in reports else "not run"
            lines.append(f"| `{name}` | {outcome} | | | | | | | | |")
            continue
        history = reports[0]["history"]
        for index in dict.fromkeys((0, len(history) - 1)):
            entry = history[index]
            values = [layer_average(entry, stat) for stat in THRESHOLD_STATS]
            first = (f"| `{name}` | {percent(reports[0]['validation']['accuracy'])} "
                     if index == 0 else "| | ")
            lines.append(first + f"| {index + 1} | {values[0]:.2e} | {values[1]:.2e} | "
                         + " | ".join(f"{100 * v:.2f}%" for v in values[2:6])
                         + f" | {values[6]:.2e} |")
    return lines


def plot_threshold(results, path):
    """Per cell over epochs: the data gradient against the push at zero, the flippable
    shares, and the flipped / flipped-back shares (means over layers, seed 0)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (gradient, flippable, flipped) = plt.subplots(1, 3, figsize=(15, 4.2))
    for index, (name, reports) in enumerate(results.items()):
        if not sweep.finished(reports):
            continue
        history = reports[0]["history"]
        epochs = range(1, len(history) + 1)
        color = f"C{index % 10}"
        average = {stat: [layer_average(h, stat) for h in history] for stat in THRESHOLD_STATS}
        gradient.plot(epochs, average["ce_grad_p50"], "o-", ms=3, color=color, label=name)
        if any(v > 0 for v in average["push_at_zero"]):
            gradient.plot(epochs, average["push_at_zero"], "--", color=color)
        flippable.plot(epochs, [100 * v for v in average["flippable"]], "o-", ms=3, color=color)
        flippable.plot(epochs, [100 * v for v in average["drift_flippable"]], ":", color=color)
        flipped.plot(epochs, [100 * v for v in average["flipped"]], "o-", ms=3, color=color)
        flipped.plot(epochs, [100 * v for v in average["flipped_back"]], ":", color=color)
    gradient.set(xlabel="epoch", yscale="log",
                 title="median |data gradient| (solid),\npush of L_B at zero (dashed)")
    flippable.set(xlabel="epoch", ylabel="% of binary weights",
                  title="can flip: per step (solid),\nby the epoch's drift (dotted)")
    flipped.set(xlabel="epoch", ylabel="% of binary weights (log scale)", yscale="symlog",
                title="flipped in the epoch (solid),\nand flipped back (dotted)")
    for axis in (gradient, flippable, flipped):
        axis.grid(alpha=0.3)
    gradient.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


def threshold_seeds(results, committed):
    """The 5-seed stage of benchmarks/threshold.py: its best cell against plain Larq and
    the float twin (the committed sweep's seeds where seed 0 reproduces them)."""
    view = sweep_view(results)
    try:
        best = sweep.cell_name(threshold.OPTIMIZER, threshold.best_cell(view))
    except ValueError:
        return []
    plain, float_twin = (sweep.cell_name(threshold.OPTIMIZER, c)
                         for c in (sweep.PLAIN, sweep.FLOAT_TWIN))
    merged = with_baselines(results, committed, [plain])
    merged.setdefault(float_twin, committed.get(float_twin, {}))  # threshold.py has none
    lines = seed_comparison(merged, best, plain, float_twin, f"`{best}`",
                            1 + len(threshold.SEEDS))
    if not lines:
        return []
    source = ("Plain Larq's seeds are the evidence sweep's (this script's seed 0 reproduces "
              "its seed 0 bit for bit)" if merged[plain] is committed.get(plain)
              else "Plain Larq's seeds are this script's")
    return ["### The best threshold cell over seeds", "",
            f"`{best}` leads the cells in which the kernel loss acts on seed-0 validation. "
            f"{source}; the float twin's are the evidence sweep's.", ""] + lines + [""]


def deeper_network_lines(budgets, figures, rel):
    """The WRN stage of benchmarks/threshold.py: per budget ({name: results}), the same
    diagnostics table and figure as `small_cnn`'s."""
    lines = []
    for budget, results in budgets.items():
        if not results:
            continue
        plot_threshold(results, figures / f"threshold-{budget}.png")
        lines += [f"### A deeper network: `{budget}`", "",
                  "`wrn22` with width factor 1 (16-16-32-64, 18 binarized 3x3 convolutions, "
                  "BONN's WRN family) on the same data, seed 0: plain Larq, the paper's "
                  "setting and the best cell of the seeds stage, through the same "
                  "diagnostics (means over the binarized layers).", ""]
        lines += threshold_table(results)
        lines += ["", f"![WRN-22: gradient against the flip threshold]"
                  f"({rel / f'threshold-{budget}.png'})", ""]
    return lines


def threshold_section(results, figures, rel, committed=None, deeper=None):
    """The flip-threshold section of docs/evidence.md (benchmarks/threshold.py's cells;
    `deeper`: its WRN stage, {budget: results})."""
    if not results:
        return []
    plot_threshold(results, figures / "threshold.png")
    lines = ["## The kernel loss as a flip threshold (seed 0, Adam, lam in sum units)", "",
             "Every regime through the same diagnostics (`FlipDiagnostics`, docs/method.md, "
             "\"The flip threshold\"): plain Larq, the paper's setting, the grid's missing "
             "region (lam 1e-9 to 1e-7), and lam calibrated every step (`q...`: push at zero "
             "at the q-quantile of |data gradient|; `rebnn`: ReBNN's rule). Values are means "
             "over the 4 binarized layers, at the first and the last epoch. Reproduce: "
             "`python benchmarks/threshold.py`, then `python benchmarks/evidence.py`.", ""]
    lines += threshold_table(results)
    planned = [sweep.cell_name(threshold.OPTIMIZER, c) for c in threshold.seed0_cells(1)]
    missing = [name for name in planned if not sweep.finished(results.get(name, {}))]
    if missing:
        lines += ["", f"Not run yet ({len(missing)} seed-0 cells, in the order they run): "
                  + ", ".join(f"`{m}`" for m in missing) + "."]
    lines += ["", f"![gradient against the flip threshold]({rel / 'threshold.png'})", ""]
    return (lines + threshold_seeds(results, committed or {})
            + deeper_network_lines(deeper or {}, figures, rel))


def distill_row(name, reports):
    if not sweep.finished(reports):
        outcome = sweep.outcome(reports[0]) if 0 in reports else "not run"
        return f"| `{name}` | {outcome} | | | |"
    report = reports[0]
    last = report["history"][-1]
    teacher = report.get("teacher", {}).get("validation") or {}
    steps = report["config"].get("step1_epochs") if report["config"].get("two_step") else None
    return (f"| `{name}` | {percent(report['validation']['accuracy'])} | "
            f"{percent(last['accuracy'])} | {percent(teacher.get('accuracy'))} | "
            + (f"{steps} + {len(report['history']) - steps}" if steps else "") + " |")


def plot_distill(results, path):
    """Left: each seed-0 cell's final validation accuracy, sorted, beside plain Larq's and
    the float twin's. Right: validation (solid) and training (dashed) accuracy per epoch
    of plain Larq, the float twin and the best student."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    finished = {n: r[0] for n, r in results.items() if sweep.finished(r)}
    plain, float_twin = (sweep.cell_name(distill.OPTIMIZER, c)
                         for c in (sweep.PLAIN, sweep.FLOAT_TWIN))
    order = sorted(finished, key=lambda n: finished[n]["validation"]["accuracy"])
    figure, (cells, curves) = plt.subplots(1, 2, figsize=(14, 0.32 * len(order) + 2.2),
                                           gridspec_kw={"width_ratios": [1.2, 1]})
    values = [100 * finished[n]["validation"]["accuracy"] for n in order]
    teachers = {n for n in order if finished[n]["config"].get("precision") == "float"}
    colours = ["0.55" if n in teachers else "C3" if n == plain else "C0" for n in order]
    cells.barh(range(len(order)), values, color=colours)
    cells.set_yticks(range(len(order)), order, fontsize=7)
    for name, style in ((plain, ":"), (float_twin, "--")):
        if name in finished:
            cells.axvline(100 * finished[name]["validation"]["accuracy"], color="k", ls=style,
                          lw=0.8, label=name)
    low = min(values)
    cells.set(xlim=(low - 0.5, max(values) + 0.3), xlabel="validation top-1 % (seed 0, epoch 15)")
    cells.legend(fontsize=7, loc="lower right")
    students = [n for n in order if n != plain and n not in teachers]
    shown = [n for n in (plain, float_twin, students[-1] if students else None) if n in finished]
    for index, name in enumerate(shown):
        history = finished[name]["history"]
        epochs = range(1, len(history) + 1)
        curves.plot(epochs, [100 * h["val_accuracy"] for h in history], "-", color=f"C{index}",
                    label=f"{name} (validation)")
        curves.plot(epochs, [100 * h["accuracy"] for h in history], "--", color=f"C{index}",
                    label=f"{name} (training)")
    curves.set(xlabel="epoch", ylabel="top-1 %", ylim=(85, 100),
               title="Plain Larq, the float twin and the best student (seed 0)")
    for axis in (cells, curves):
        axis.grid(alpha=0.3)
    curves.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(figure)


def distill_section(results, committed, figures, rel):
    """The distillation section of docs/evidence.md (benchmarks/distill.py's cells)."""
    if not results:
        return []
    plot_distill(results, figures / "distill.png")
    plain, float_twin = (sweep.cell_name(distill.OPTIMIZER, c)
                         for c in (sweep.PLAIN, sweep.FLOAT_TWIN))
    lines = ["## Distillation and two-step training (Adam, `small_cnn` width 32)", "",
             "Plain Larq's binary network distilled from a float teacher (`kd...`: "
             "kd_weight and temperature of `bl.BONN`; the teacher is the float twin unless "
             "named), trained in two steps (`twostep`: binary activations with real kernels "
             "first, ReActNet's recipe), with ReActNet's learnable activations "
             "(`learnable_threshold-rprelu`: a learned sign threshold per channel and "
             "RPReLU after every unit, docs/models.md), or combinations; 15 epochs in every "
             "cell, chosen on validation. Reproduce: `python benchmarks/distill.py`, then "
             "`python benchmarks/evidence.py`.", "",
             "| cell | validation top-1 % | training top-1 % (last epoch) | "
             "teacher validation % | two-step epochs |", "| --- | --- | --- | --- | --- |"]
    lines += [distill_row(name, reports) for name, reports in results.items()]
    students = {n: r for n, r in results.items() if n not in (plain, float_twin)
                and r[min(r)].get("config", {}).get("precision") != "float"}  # not teachers
    finished = [n for n, r in students.items() if sweep.finished(r)]
    if len(finished) < distill.SCREEN_CELLS:
        lines += ["", f"Screen in progress: {len(finished)} of its {distill.SCREEN_CELLS} "
                  "seed-0 cells have run (`python benchmarks/distill.py` resumes it)."]
    lines += ["", f"![distillation and two-step curves]({rel / 'distill.png'})", ""]
    if not finished:
        return lines
    # The seeds stage's cell is the one with seeds beyond 0; before it runs, the leader.
    best = max(finished, key=lambda n: (len(students[n]), students[n][0]["validation"]["accuracy"]))
    merged = with_baselines(results, committed, [plain, float_twin])
    seeds = seed_comparison(merged, best, plain, float_twin, f"`{best}`", 1 + len(distill.SEEDS))
    return lines + ([f"### `{best}` over seeds", "",
                     f"`{best}` led the screen on seed-0 validation when its seeds ran.", ""]
                    + seeds + [""] if seeds else [])


DEMO_ROLES = {"recipe": "the demo's recipe: learnable activations, 2-epoch float twin "
                        "kd0.5-T4, 4 epochs",
              "plain": "plain Larq, 4 epochs", "bonn": "BONN at the defaults, 5 epochs "
                                                     "(the previous demo)"}


def demo_budget_section(results):
    """The main job's recipe against plain Larq and the previous demo, at the demo's budget
    (benchmarks/demo_budget.py): test accuracy per cell, training time, Welch's tests."""
    names = demo_budget.cell_names()
    if names["recipe"] not in results:
        return []
    lines = ["## The main job's recipe at its budget (`bayes-larq demo`)", "",
             "All 60,000 training images, tested on the 10,000 test images (nothing is "
             "chosen here). Training time is the student's plus its teacher's, measured as "
             "the runs went, with other work on the machine. Reproduce: `python "
             "benchmarks/demo_budget.py`, then `python benchmarks/evidence.py`.", "",
             "| cell | what | seeds | test top-1 % | per-seed test | training time (s, mean) |",
             "| --- | --- | --- | --- | --- | --- |"]
    for role, name in names.items():
        reports = results.get(name, {})
        if not reports:
            continue
        test = [r["test"]["accuracy"] for r in reports.values()]
        spread = f" +- {100 * np.std(test, ddof=1):.2f}" if len(test) > 1 else ""
        seconds = np.mean([demo_budget.training_seconds(r) for r in reports.values()])
        lines.append(f"| `{name}` | {DEMO_ROLES[role]} | {len(test)} | "
                     f"{100 * np.mean(test):.2f}{spread} | "
                     + ", ".join(f"{100 * t:.2f}" for t in test) + f" | {seconds:.0f} |")
    for other in ("plain", "bonn"):
        shared = shared_seeds(results, [names["recipe"], names[other]])
        if shared:
            lines += [""] + [f"* {line}" for line in
                             comparison_lines(shared, names["recipe"], names[other])]
    planned = len(demo_budget.SEEDS)
    done = min(len(results.get(name, {})) for name in names.values())
    if done < planned:
        lines += ["", f"**Interim: {done} of {planned} seeds of every cell so far** (`python "
                  "benchmarks/demo_budget.py` resumes)."]
    return lines + [""]


def teacher_targets_lines(path):
    """What the teacher's softmax says beyond the labels (benchmarks/teacher_targets.py)."""
    if not path.exists():
        return []
    measured = json.loads(path.read_text())
    lines = ["### What the teacher's distribution adds to the labels", "",
             f"The teacher `{measured['teacher']}` in inference mode on the images the "
             "students train on and on the held-out ones: the mean softmax probability at "
             "the true label and the mean entropy of the softmax, at the screen's "
             "temperatures. Reproduce: `python benchmarks/teacher_targets.py "
             f"runs/distill/{measured['teacher']} --output {path}`.", "",
             "| images | teacher top-1 % | T | mean probability at the label | "
             "mean entropy (nats) |", "| --- | --- | --- | --- | --- |"]
    names = {"train": "training (50,000)", "holdout": "validation (10,000)"}
    for split, temperatures in measured["splits"].items():
        for temperature, stats in temperatures.items():
            lines.append(f"| {names.get(split, split)} | {100 * stats['accuracy']:.2f} | "
                         f"{temperature[1:]} | {stats['mean_label_probability']:.4f} | "
                         f"{stats['mean_entropy_nats']:.4f} |")
    return lines + [""]


def sweep_view(results):
    """A Sweep holding the committed results, so the sweep's own choice rules read them."""
    return sweep.Sweep(None, None, base={}, reports=results)


def best_bonn_cells(results):
    """Per optimizer, the sweep's best BONN setting among the cells run so far (seed 0)."""
    view, best = sweep_view(results), []
    for optimizer in sweep.OPTIMIZERS:
        try:
            best.append(sweep.cell_name(optimizer, sweep.best_bonn_setting(view, optimizer)))
        except ValueError:  # no BONN cell of this optimizer has run yet
            pass
    return best


def shared_seeds(results, names):
    """{name: {seed: report}} of `names` on the seeds all of them ran (None: fewer than 2)."""
    if not all(n in results for n in names):
        return None
    seeds = sorted(set.intersection(*(set(results[n]) for n in names)))
    return {n: {s: results[n][s] for s in seeds} for n in names} if len(seeds) >= 2 else None


def test_means(shared):
    return {n: float(np.mean([r["test"]["accuracy"] for r in reports.values()]))
            for n, reports in shared.items()}


def gap_line(shared, candidate, plain, float_twin, what):
    """How much of the float twin's lead over plain Larq `candidate` closes."""
    means = test_means(shared)
    gap = means[float_twin] - means[plain]
    if gap <= 0:
        return f"* The float twin is not above plain Larq here ({100 * gap:+.2f} points)."
    closed = (means[candidate] - means[plain]) / gap
    return (f"* The float twin is {100 * gap:.2f} points above plain Larq; {what} "
            + (f"closes {100 * closed:.0f}% of that gap." if closed >= 0
               else f"widens that gap by {-100 * closed:.0f}%."))


def seed_comparison(results, candidate, plain, float_twin, what, planned_seeds):
    """`candidate` against plain Larq and the float twin on their shared seeds: the seed
    table, Welch's comparisons (test top-1) and the share of the float gap it closes."""
    names = [candidate, plain, float_twin]
    shared = shared_seeds(results, names)
    if shared is None:
        return []
    seeds = sorted(shared[candidate])
    status = ("" if len(seeds) >= planned_seeds else
              f" **Interim: {len(seeds)} of {planned_seeds} seeds so far.**")
    return (
        [f"Seeds {', '.join(map(str, seeds))}, each trained for all three cells; test "
         f"top-1 on the 10,000 test images.{status}", ""]
        + seed_table(shared) + [""]
        + [f"* {line}" for line in comparison_lines(shared, candidate, plain)
           + comparison_lines(shared, float_twin, plain)]
        + [gap_line(shared, candidate, plain, float_twin, what)])


def final_comparison(results):
    """The leading optimizer's best BONN setting, plain Larq and the float twin on the
    seeds all three share: a table of test accuracy and the Welch comparisons."""
    view = sweep_view(results)
    try:
        optimizer = sweep.leading_optimizer(view)
    except ValueError:
        return []
    names = [sweep.cell_name(optimizer, c) for c in
             (sweep.best_bonn_setting(view, optimizer), sweep.PLAIN, sweep.FLOAT_TWIN)]
    lines = seed_comparison(results, *names, "the BONN setting", len(sweep.FINAL_SEEDS))
    if not lines:
        return []
    return [f"Optimizer: {optimizer} (its best BONN setting leads on seed-0 validation). "
            + lines[0]] + lines[1:]


def with_baselines(own, committed, names):
    """`own` results plus, for each of `names` (baseline cells), the committed sweep's seeds
    when `own` holds only seed 0 and it reproduces the committed seed 0 bit for bit."""
    merged = dict(own)
    for name in names:
        mine, theirs = own.get(name, {}), committed.get(name, {})
        if set(mine) == {0} and 0 in theirs and sweep.same_run(mine[0], theirs[0]):
            merged[name] = theirs
    return merged


def accuracy_lines(results, capacity):
    """The best test accuracy any BONN cell reached, and the larger budgets' runs."""
    runs_ = [(r["test"]["accuracy"], name, seed) for name, reports in results.items()
             for seed, r in reports.items()
             if sweep.is_bonn(r["config"]) and not sweep.diverged(r)]
    lines = []
    if runs_:
        accuracy, name, seed = max(runs_)
        lines += [f"Best test top-1 of any BONN run of the sweep (width 32, 15 epochs, 50,000 "
                  f"training images): **{percent(accuracy)}%**, `{name}` seed {seed}. It is "
                  f"the maximum over {len(runs_)} runs, so it flatters; the chosen setting's "
                  "mean over seeds is the fair figure.", ""]
    if capacity:
        lines += ["| budget | cell | seed | training images | epochs | test top-1 % | "
                  "training time |", "| --- | --- | --- | --- | --- | --- | --- |"]
        for budget, cells in sorted(capacity.items()):
            for name, reports in sorted(cells.items()):
                for seed, r in sorted(reports.items()):
                    images = runs.train_examples(runs.RunConfig(**r["config"]))
                    lines.append(f"| {budget} | `{name}` | {seed} | {images:,} | "
                                 f"{r['epochs_done']} | {percent(r['test']['accuracy'])} | "
                                 f"{r['train_seconds'] / 60:.0f} min |")
        lines += ["", "Reproduce: `python benchmarks/capacity.py --width W --epochs E --cells "
                  "bonn plain` (the setting is the sweep's choice, read from its results); "
                  "budgets ending in `-augment` add `--augment`.", ""]
    return lines


def plot_modes_against_scale(results, names, path):
    """Per layer: learned (or fitted) mu and sigma next to the mean |latent| at the end."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n in names if sweep.finished(results.get(n, {}))]
    figure, axes = plt.subplots(1, len(names), figsize=(4.5 * len(names), 3.5), squeeze=False)
    for axis, name in zip(axes[0], names):
        mixture = results[name][0]["mixture"]
        layers = list(mixture)
        x = np.arange(len(layers))
        for offset, key, label in ((-0.25, "mu_pos", "mu+"), (0.0, "sigma_pos", "sigma+"),
                                   (0.25, "latent_scale", "mean |x|")):
            axis.bar(x + offset, [mixture[layer]["end"][key] for layer in layers], 0.25,
                     label=label)
        axis.set_xticks(x, [layer.replace("_conv", "") for layer in layers], fontsize=8)
        axis.set_yscale("log")
        axis.set_title(name, fontsize=9)
    axes[0][0].legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


def plot_histograms(runs_dir, names, path):
    """Latent histograms with the mixture, at init and end, for each named run (seed 0)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bayes_larq.app import report, runs
    from bayes_larq.mixture import mixture_density

    found = [(n, pathlib.Path(runs_dir) / n / "seed-0") for n in names]
    found = [(n, d) for n, d in found if (d / "model.keras").exists()]
    if not found:
        return False
    figure, axes = plt.subplots(len(found), 2, figsize=(9, 2.8 * len(found)), squeeze=False)
    for row, (name, run_dir) in zip(axes, found):
        initial = report.load_mixture_snapshot(run_dir / "init_mixture.npz")
        final = report.binarized_kernels(runs.load_classifier(run_dir))
        layer = "unit2_conv"
        for axis, (when, kernels) in zip(row, (("init", initial), ("end", final))):
            latent, mixture = kernels[layer]
            values = latent.ravel()
            grid = np.linspace(values.min(), values.max(), 400)
            axis.hist(values, bins=100, density=True, color="0.75")
            axis.plot(grid, mixture_density(grid, latent, mixture), "C3")
            axis.set_title(f"{name}, {layer} ({when})", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return True


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=pathlib.Path,
                        default=pathlib.Path("benchmarks/results/sweep"))
    parser.add_argument("--runs", type=pathlib.Path, default=pathlib.Path("runs/sweep"))
    parser.add_argument("--write", type=pathlib.Path, default=pathlib.Path("docs/evidence.md"))
    parser.add_argument("--figures", type=pathlib.Path, default=pathlib.Path("docs/figures"))
    parser.add_argument("--preamble", type=pathlib.Path,
                        default=pathlib.Path("benchmarks/evidence_preamble.md"),
                        help="hand-written findings placed above the generated tables")
    parser.add_argument("--threshold", type=pathlib.Path,
                        default=pathlib.Path("benchmarks/results/threshold"),
                        help="results of benchmarks/threshold.py")
    parser.add_argument("--distill", type=pathlib.Path,
                        default=pathlib.Path("benchmarks/results/distill"),
                        help="results of benchmarks/distill.py")
    parser.add_argument("--demo-budget", type=pathlib.Path,
                        default=pathlib.Path("benchmarks/results/demo_budget"),
                        help="results of benchmarks/demo_budget.py")
    parser.add_argument("--capacity", type=pathlib.Path,
                        default=pathlib.Path("benchmarks/results/capacity"),
                        help="results of benchmarks/capacity.py, one folder per budget")
    args = parser.parse_args(argv)
    results = load_results(args.results)
    capacity = {budget.name: load_results(budget)
                for budget in sorted(args.capacity.glob("*")) if budget.is_dir()}
    args.figures.mkdir(parents=True, exist_ok=True)
    rel = pathlib.Path("figures")
    table, missing = stage_tables(results)
    lines = [args.preamble.read_text() if args.preamble.exists() else "# Evidence", "",
             "## Every screened cell (seed 0, 15 epochs, chosen on validation)", "",
             "Regenerate: `python benchmarks/evidence.py` (tables from the committed "
             "results; the sweep itself: `python benchmarks/sweep.py`).", ""]
    lines += table
    lines += ["", "Bimodality is Sarle's coefficient (1/3 Gaussian, above 5/9 suggests two "
              "modes); mean sigma and mean abs latent are averaged over the binarized layers "
              "and both sides; flipped since init is the share of binary weights whose sign "
              "differs from initialisation.", ""]
    if missing:
        lines += [f"Not run yet ({len(missing)} cells): " + ", ".join(f"`{m}`" for m in missing),
                  ""]
    seeds = seed_table(results)
    if len(seeds) > 2:
        lines += ["## Cells with several seeds", ""] + seeds + [""]
    best = best_bonn_cells(results)
    paper = [f"{o}-lam0.0001-nu0.0001" for o in sweep.OPTIMIZERS]
    curve_names = sorted({n for n in results if n.endswith("plain") or n in paper} | set(best)
                         | {n for n in results if "warmup" in n})
    plot_curves(results, curve_names, args.figures / "curves.png")
    lines += ["## Learning curves and sign flips", "",
              "Plain Larq, the paper's setting, its lam warm-up, and the best BONN setting "
              f"per optimizer ({', '.join(f'`{b}`' for b in best)}); seed 0. The "
              "seed-0 plain-Larq runs predate per-epoch flips for plain sign layers, so they "
              "have no line on the right.", "",
              f"![validation accuracy and flips per epoch]({rel / 'curves.png'})", ""]
    mode_names = [n for o in sweep.OPTIMIZERS for n in
                  dict.fromkeys([f"{o}-plain", f"{o}-lam0.0001-nu0.0001",
                                 *[b for b in best if b.startswith(o + "-")]]) if n in results]
    if mode_names:
        plot_modes_against_scale(results, mode_names, args.figures / "modes.png")
        lines += ["## Learned modes against the weight scale", "",
                  "Per binarized layer at the end of training: mu+ and sigma+ (learned for "
                  "BayesianSign, the closed-form fit for plain Larq) beside the mean |latent| "
                  "(log scale).", "", f"![modes]({rel / 'modes.png'})", ""]
    # Without the sweep's run directories the committed figure stays (it cannot be redrawn).
    histograms = args.figures / "histograms.png"
    if plot_histograms(args.runs, mode_names, histograms) or histograms.exists():
        lines += ["## Latent weights with the mixture", "",
                  f"![latent histograms]({rel / 'histograms.png'})", ""]
    final = final_comparison(results)
    if final:
        lines += ["## Final comparison: best BONN setting, plain Larq, float twin", "",
                  "Chosen by the sweep's rules (`best_bonn_setting`, `leading_optimizer` in "
                  "benchmarks/sweep.py) on validation accuracy; the test set is read only "
                  "here.", ""] + final + [""]
    wrn = {budget.name: load_results(budget)
           for budget in sorted(args.threshold.glob("wrn22-*")) if budget.is_dir()}
    lines += threshold_section(load_results(args.threshold), args.figures, rel, results, wrn)
    lines += distill_section(load_results(args.distill), results, args.figures, rel)
    lines += teacher_targets_lines(args.distill / teacher_targets.RESULT_NAME)
    lines += demo_budget_section(load_results(args.demo_budget))
    lines += ["## Accuracy: the best BONN run and larger budgets", ""]
    lines += accuracy_lines(results, capacity)
    args.write.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.write} ({len(results)} cells, {len(missing)} missing)")


if __name__ == "__main__":
    main()
