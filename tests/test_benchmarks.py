"""The evidence sweep's plan (every cell once, weak before strong, choices among run cells)
and the statistics of docs/evidence.md."""

import json
import math
import pathlib
import re
import sys

import numpy as np
import pytest
from scipy import stats

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "benchmarks"))
import capacity  # noqa: E402
import conversion_parity  # noqa: E402
import demo_budget  # noqa: E402
import distill  # noqa: E402
import evidence  # noqa: E402
import sweep  # noqa: E402
import teacher_targets  # noqa: E402
import threshold  # noqa: E402
from bayes_larq.app import runs  # noqa: E402


def names(cells, optimizer="adam"):
    return [sweep.cell_name(optimizer, c) for c in cells]


def test_groups_hold_every_screen_and_remedy_cell_once_with_the_papers_grid_first():
    groups = sweep.cell_groups(last_stage=1)
    planned = names(sweep.screen_cells() + sweep.remedy_cells())
    ran = [name for group in groups for name in names(group)]
    assert sorted(ran) == sorted(planned) and len(set(ran)) == len(ran)
    first, weak, strong, extensions = groups
    assert names(first)[:2] == ["adam-plain", "adam-lam0.0001-nu0.0001"]
    assert names(first)[-3:] == ["adam-lam0", "adam-lam1e-05-nu0.0001", "adam-lam1e-06-nu0.0001"]
    assert names(weak) == ["adam-lam1e-05-nu0.01", "adam-lam0.0001-nu0.01"]
    assert names(strong) == ["adam-lam0.001-nu0.0001", "adam-lam0.001-nu0.01"]
    assert names(extensions) == ["adam-lam1e-06-nu0.01"] + [
        f"adam-lam0.001-nu0.01-{suffix}"
        for suffix in ("prior-mean", "mixture-closed_form", "warmup5")]
    assert names(sweep.cell_groups(last_stage=0)[3]) == ["adam-lam1e-06-nu0.01"]


def fake_report(accuracy):
    return {"validation": {"accuracy": accuracy}}


def test_best_kernel_setting_is_chosen_among_cells_that_ran(tmp_path):
    runs = sweep.Sweep(tmp_path / "runs", tmp_path / "results", base={})
    lam0, paper = sweep.screen_cells()[1], {**sweep.KERNEL_ONLY, **sweep.PAPER_SETTING}
    runs.reports = {"adam-plain": {0: fake_report(0.95)}, "adam-lam0": {0: fake_report(0.90)},
                    "adam-lam0.0001-nu0.0001": {0: fake_report(0.85)}}
    assert sweep.best_kernel_setting(runs, "adam") == lam0  # plain Larq is not a kernel setting
    runs.reports["adam-lam0.0001-nu0.0001"][0] = fake_report(0.92)
    assert sweep.best_kernel_setting(runs, "adam") == paper
    assert names(sweep.theta_cells(paper)) == [
        f"adam-lam0.0001-nu0.0001-theta{t:g}" for t in sweep.THETAS]


def test_cell_names_are_distinct_for_every_planned_cell():
    cells = sweep.screen_cells() + sweep.remedy_cells() + [sweep.FLOAT_TWIN]
    cells += [c for k in sweep.screen_cells()[1:] for c in sweep.theta_cells(k)]
    for optimizer in sweep.OPTIMIZERS:
        assert len(set(names(cells, optimizer))) == len(cells)
    with pytest.raises(KeyError):
        sweep.Sweep(pathlib.Path("."), pathlib.Path("."), {}).validation("adam", sweep.PLAIN)


class RecordingSweep(sweep.Sweep):
    """Trains nothing: a new run gets the validation accuracy its cell has in `accuracies`
    and is recorded in `calls`; a run already made is read back, as the real sweep does."""

    def __init__(self, accuracies):
        super().__init__(pathlib.Path("."), pathlib.Path("."), base={})
        self.accuracies, self.calls = accuracies, []

    def run(self, optimizer, overrides, seed):
        name = sweep.cell_name(optimizer, overrides)
        if seed not in self.reports.get(name, {}):
            self.calls.append((name, seed))
            self.reports.setdefault(name, {})[seed] = fake_report(self.accuracies.get(name, 0.5))
        return self.reports[name][seed]


def test_best_bonn_setting_needs_an_active_loss(tmp_path):
    runs = RecordingSweep({})
    runs.reports = {"adam-plain": {0: fake_report(0.95)}, "adam-lam0": {0: fake_report(0.94)},
                    "adam-lam1e-05-nu0.0001": {0: fake_report(0.80)}}
    assert names([sweep.best_bonn_setting(runs, "adam")]) == ["adam-lam1e-05-nu0.0001"]
    runs.reports["adam-lam0-theta0.001"] = {0: fake_report(0.85)}
    assert names([sweep.best_bonn_setting(runs, "adam")]) == ["adam-lam0-theta0.001"]


def test_leading_optimizer_gets_its_final_comparison_before_the_rest_of_the_grid():
    runs = RecordingSweep({"sgd-lam0": 0.9, "sgd-lam1e-05-nu0.0001": 0.6,
                           "sgd-lam0-theta0.01": 0.95,
                           "adam-lam0-theta0.01": 0.93})
    sweep.run_sweep(runs, last_stage=4)
    calls = runs.calls
    final = [(cell, seed) for cell in ("sgd-lam0-theta0.01", "sgd-plain", "sgd-float")
             for seed in sweep.FINAL_SEEDS]
    assert set(final) <= set(calls)
    # Seed by seed: BONN, plain Larq and the float twin of seed 1 precede seed 2's.
    assert calls.index(("sgd-float", 1)) < calls.index(("sgd-lam0-theta0.01", 2))
    last_final = max(calls.index(c) for c in final)
    assert calls.index(("adam-lam0-theta0.0001", 0)) > last_final
    assert calls.index(("sgd-lam0.001-nu0.01", 0)) > last_final
    assert ("adam-float", 0) not in calls and ("adam-plain", 2) in calls
    planned = sweep.screen_cells() + sweep.remedy_cells()
    assert {(name, 0) for o in sweep.OPTIMIZERS for name in names(planned, o)} <= set(calls)


class TeacherRecordingSweep(RecordingSweep):
    """A RecordingSweep that leaves a model.keras in each run directory, as a finished run
    does, and records the teachers trained apart from the cells (`teachers`)."""

    def __init__(self, accuracies, output):
        super().__init__(accuracies)
        self.output, self.results, self.teachers = output, output / "results", []

    def run(self, optimizer, overrides, seed):
        name = sweep.cell_name(optimizer, overrides)
        if seed not in self.reports.get(name, {}):  # a new run leaves its model
            (self.output / name / f"seed-{seed}").mkdir(parents=True, exist_ok=True)
            (self.output / name / f"seed-{seed}" / "model.keras").write_text("")
        return super().run(optimizer, overrides, seed)

    def train_or_resume(self, optimizer, overrides, seed, run_dir):
        self.teachers.append(sweep.cell_name(optimizer, overrides))
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "model.keras").write_text("")


def test_distill_screen_chooses_among_cells_run_and_trains_each_teacher_once(tmp_path):
    runs = TeacherRecordingSweep({"adam-plain-kd0.5-T1": 0.91, "adam-plain-kd0.5-T4": 0.92,
                                  "adam-plain-twostep-kd1-T1": 0.90}, tmp_path)
    distill.run_distill(runs, last_stage=1)
    assert [name for name, _ in runs.calls] == [
        "adam-float", "adam-plain", "adam-plain-twostep", "adam-plain-kd1-T1",
        "adam-plain-twostep-kd1-T1", "adam-plain-kd0.5-T1",
        "adam-plain-kd0.5-T4",  # T 4 at the better kd weight
        "adam-float-width64",  # the larger teacher, a cell of its own, just before its student
        "adam-plain-kd0.5-T4-teacher-adam-float-width64",  # the best one-step distillation
        "adam-plain-learnable_threshold-rprelu",  # ReActNet's activations on plain Larq
        "adam-plain-learnable_threshold-rprelu-kd0.5-T4",  # ... on the best cell so far
        "adam-theta0.001-kd0.5-T4"]  # the feature loss on top of the best cell
    assert {seed for _, seed in runs.calls} == {0}
    assert runs.teachers == []  # every teacher's run directory is there: nothing retrained
    # A stored result whose run directory is missing (another machine) is retrained.
    larger_dir = tmp_path / "adam-float-width64" / "seed-0"
    (larger_dir / "model.keras").unlink()
    student = {**distill.distilled(runs, kd_weight=0.5, temperature=4.0),
               "teacher": str(distill.teacher_dir(runs, distill.LARGE_TEACHER))}
    del runs.reports[sweep.cell_name("adam", student)]
    distill.run_student(runs, student, 0)
    assert runs.teachers == ["adam-float-width64"]
    larger = distill.teacher_dir(runs, distill.LARGE_TEACHER)
    assert larger == tmp_path.resolve() / "adam-float-width64" / "seed-0"


def test_distill_seeds_run_the_best_cell_and_rerun_baselines_that_do_not_reproduce(
        tmp_path, monkeypatch):
    monkeypatch.setattr(distill, "SWEEP_RESULTS", tmp_path / "nothing-committed")
    runs = TeacherRecordingSweep({"adam-plain-twostep": 0.93}, tmp_path)
    distill.run_distill(runs, last_stage=2)
    later = runs.calls[12:]  # after the 12 cells of stages 1 and 2
    for cell in ("adam-plain", "adam-float", "adam-plain-twostep"):
        assert [(cell, seed) for seed in distill.SEEDS] == [c for c in later if c[0] == cell]
    assert len(later) == 12


def test_welch_matches_scipy_unequal_variance_t_test():
    bonn, plain = [0.9101, 0.9122, 0.9087, 0.9140, 0.9095], [0.9074, 0.9080, 0.9061, 0.9089]
    difference, low, high, p_value = evidence.welch(bonn, plain)
    reference = stats.ttest_ind(bonn, plain, equal_var=False)
    interval = reference.confidence_interval(0.95)
    assert difference == pytest.approx(np.mean(bonn) - np.mean(plain), rel=1e-12)
    assert (low, high) == pytest.approx((interval.low, interval.high), rel=1e-9)
    assert p_value == pytest.approx(reference.pvalue, rel=1e-9)


def seeded_results(accuracies):
    """{cell: {seed: report}} with validation = test = the given accuracy per seed."""
    return {name: {seed: {"validation": {"accuracy": a}, "test": {"accuracy": a}}
                   for seed, a in enumerate(values)} for name, values in accuracies.items()}


def test_final_comparison_uses_the_sweeps_choice_and_only_shared_seeds():
    results = seeded_results({
        "adam-plain": [0.910, 0.905, 0.908], "adam-lam0": [0.99],  # a control, never chosen
        "adam-lam0-theta0.001": [0.915, 0.912, 0.914, 0.999],  # seed 3 has no partners
        "adam-float": [0.930, 0.928, 0.931], "sgd-lam1e-05-nu0.0001": [0.90]})
    text = "\n".join(evidence.final_comparison(results))
    assert "Optimizer: adam" in text and "Interim: 3 of 5 seeds" in text
    difference = 100 * (np.mean([0.915, 0.912, 0.914]) - np.mean([0.910, 0.905, 0.908]))
    assert f"`adam-lam0-theta0.001` (3 seeds) minus `adam-plain` (3 seeds), test top-1: " \
           f"{difference:+.2f} points" in text
    gap = np.mean([0.930, 0.928, 0.931]) - np.mean([0.910, 0.905, 0.908])
    assert f"closes {100 * difference / 100 / gap:.0f}% of that gap" in text
    del results["adam-float"]
    assert evidence.final_comparison(results) == []


def test_final_comparison_says_widens_when_bonn_is_below_plain():
    results = seeded_results({
        "adam-plain": [0.910, 0.910], "adam-lam0": [0.99],
        "adam-lam0-theta0.001": [0.900, 0.900], "adam-float": [0.930, 0.930],
        "sgd-lam1e-05-nu0.0001": [0.80]})
    text = "\n".join(evidence.final_comparison(results))
    assert "widens that gap by 50%." in text and "closes" not in text


def store_sweep_choice(directory):
    """Seed-0 results that make Adam with lam = 1e-6 (nu = 1e-4) the sweep's choice."""
    for cell, accuracy in (("sgd-lam1e-05-nu0.0001", 0.8), ("adam-lam1e-06-nu0.0001", 0.85)):
        stored = directory / cell / "seed-0.json"
        stored.parent.mkdir(parents=True)
        stored.write_text(json.dumps({"validation": {"accuracy": accuracy}}))


@pytest.mark.slow
def test_capacity_trains_the_sweeps_choice_on_the_whole_training_set(tmp_path, fashion_dir):
    store_sweep_choice(tmp_path / "sweep")
    capacity.main(["--width", "4", "--epochs", "1", "--cells", "bonn", "float", "--augment",
                   "--sweep-results", str(tmp_path / "sweep"), "--output", str(tmp_path / "runs"),
                   "--results", str(tmp_path / "results"), "--train-limit", "256",
                   "--test-limit", "64", "--data-dir", str(fashion_dir)])
    budget = tmp_path / "results" / "width4-epochs1-augment"
    bonn = json.loads((budget / "adam-lam1e-06-nu0.0001" / "seed-0.json").read_text())
    assert bonn["config"]["arch"] == {"width": 4} and bonn["config"]["validation_size"] is None
    assert bonn["config"]["augment"] is True
    assert (bonn["config"]["lam"], bonn["config"]["reduction"]) == (1e-6, "sum")
    assert bonn["test_examples"] == bonn["test"]["examples"] == 64
    assert bonn["validation"] is None
    assert json.loads((budget / "adam-float" / "seed-0.json").read_text())["config"][
        "precision"] == "float"
    lines = evidence.accuracy_lines({}, {budget.name: evidence.load_results(budget)})
    assert any(line.startswith("| width4-epochs1-augment | `adam-float` | 0 | 256 | 1 |")
               for line in lines)


@pytest.mark.slow
def test_conversion_parity_reports_the_agreement_compare_measures(tmp_path, fashion_dir, capsys):
    from bayes_larq import convert
    from bayes_larq.app import data, runs

    store_sweep_choice(tmp_path / "sweep")
    capacity.main(["--width", "4", "--epochs", "1", "--sweep-results", str(tmp_path / "sweep"),
                   "--output", str(tmp_path / "runs"), "--results", str(tmp_path / "results"),
                   "--train-limit", "96", "--test-limit", "16", "--data-dir", str(fashion_dir)])
    run_dir = tmp_path / "runs" / "width4-epochs1" / "adam-lam1e-06-nu0.0001" / "seed-0"
    capsys.readouterr()
    conversion_parity.main([str(run_dir), "--samples", "16"])
    printed = capsys.readouterr().out
    classifier = runs.load_classifier(run_dir)
    x, _ = next(iter(data.load("fashion_mnist", "test", 16, training=False,
                               data_dir=str(fashion_dir))))
    # The agreement recomputed with NumPy from the two models' logits, not by compare().
    keras_logits = classifier.predict(x.numpy(), verbose=0)
    tflite_logits = convert.tflite_predict(convert.convert(classifier), x.numpy()).reshape(
        keras_logits.shape)
    max_diff = float(np.max(np.abs(keras_logits - tflite_logits)))
    top1 = float(np.mean(keras_logits.argmax(-1) == tflite_logits.argmax(-1)))
    assert (f"through debayesianize (the library's convert): max |logit diff| "
            f"{max_diff:.3g}, top-1 agreement {top1:.4f} on 16 images") in printed
    assert "as it is (lce.convert_keras_model)" in printed
    assert "images with a logit off by more than 0.001:" in printed


@pytest.mark.slow
def test_a_diverged_run_is_recorded_and_never_chosen(tmp_path, fashion_dir, capsys):
    base = {"model": "small_cnn", "dataset": "fashion_mnist", "epochs": 1, "batch_size": 32,
            "arch": {"width": 4}, "train_limit": 64, "test_limit": 16, "validation_size": 32,
            "data_dir": str(fashion_dir), "learning_rate": 1e30}
    runner = sweep.Sweep(tmp_path / "runs", tmp_path / "results", base)
    paper = {**sweep.KERNEL_ONLY, **sweep.PAPER_SETTING}
    report = runner.run("sgd", paper, 0)
    assert sweep.diverged(report)
    assert re.fullmatch(r"loss (nan|-?inf) at epoch 1, batch \d+", report["diverged"])
    stored = tmp_path / "results" / "sgd-lam0.0001-nu0.0001" / "seed-0.json"
    assert json.loads(stored.read_text()) == report
    assert (f"sgd-lam0.0001-nu0.0001 seed 0: diverged ({report['diverged']})"
            in capsys.readouterr().out)
    assert sweep.Sweep(tmp_path / "runs", tmp_path / "results", base).run(
        "sgd", paper, 0) == report  # read back, not trained again
    runner.reports["sgd-lam0"] = {0: fake_report(0.5)}
    assert sweep.best_kernel_setting(runner, "sgd") == sweep.LAM_ZERO
    row = evidence.cell_row("sgd-lam0.0001-nu0.0001", runner.reports["sgd-lam0.0001-nu0.0001"],
                            "screen")
    assert row.startswith(f"| screen | `sgd-lam0.0001-nu0.0001` | diverged: {report['diverged']} |")


def test_threshold_plan_runs_every_regime_once_and_names_cells_by_their_rule():
    seed0 = names(threshold.seed0_cells(last_stage=1), "adam")
    assert seed0[:6] == ["adam-plain", "adam-lam0.0001-nu0.0001", "adam-lam1e-07-nu0.0001",
                         "adam-q0.5-nu0.0001", "adam-drift0.5-nu0.0001", "adam-rebnn-nu0.0001"]
    assert sorted(seed0) == sorted(names(threshold.regime_cells() + threshold.calibrated_cells(),
                                         "adam"))
    assert len(set(seed0)) == 11
    assert names(threshold.seed0_cells(last_stage=0), "adam") == names(
        threshold.regime_cells(), "adam")


def test_threshold_runs_the_leaders_seeds_before_the_other_seed0_cells(monkeypatch, tmp_path):
    monkeypatch.setattr(threshold, "SWEEP_RESULTS", tmp_path)  # no committed plain seeds
    runs = RecordingSweep({"adam-rebnn-nu0.0001": 0.92, "adam-q0.99-nu0.0001": 0.93})
    threshold.run_small_cnn_stages(runs, last_stage=2)
    calls = runs.calls
    leading = calls[:threshold.LEADING_CELLS]
    assert [seed for _, seed in leading] == [0] * threshold.LEADING_CELLS
    rebnn_seeds = [("adam-rebnn-nu0.0001", s) for s in threshold.SEEDS]
    plain_seeds = [("adam-plain", s) for s in threshold.SEEDS]
    assert calls[threshold.LEADING_CELLS:threshold.LEADING_CELLS + 8] == plain_seeds + rebnn_seeds
    # q 0.99 runs later, leads, and gets its seeds too; nothing runs twice.
    assert calls[-4:] == [("adam-q0.99-nu0.0001", s) for s in threshold.SEEDS]
    assert len(calls) == len(set(calls)) == 11 + 4 + 4 + 4


def test_threshold_reuses_committed_plain_seeds_only_for_the_same_training():
    history = [{"loss": 1.0, "ce_loss": 1.0, "accuracy": 0.5, "val_loss": 1.1,
                "val_accuracy": 0.4}]
    assert sweep.same_run({"history": history}, {"history": [dict(history[0])]})
    changed = [{**history[0], "val_accuracy": 0.41}]
    assert not sweep.same_run({"history": changed}, {"history": history})
    assert not sweep.same_run({"history": history * 2}, {"history": history})


def test_threshold_section_averages_layers_at_the_first_and_last_epoch(tmp_path):
    def entry(flippable):
        return {f"unit{i}/{stat}": value for i in (1, 2) for stat, value in (
            ("ce_grad_p50", 1e-4 * i), ("push_at_zero", 2e-5), ("flippable", flippable * i),
            ("drift_flippable", 0.1), ("flipped", 0.02), ("flipped_back", 0.01),
            ("flip_rate", 1e-3))}
    report = {"validation": {"accuracy": 0.9}, "history": [entry(0.2), entry(0.3), entry(0.4)]}
    lines = evidence.threshold_section({"adam-q0.9-nu0.0001": {0: report}}, tmp_path,
                                       pathlib.Path("figures"))
    rows = [line for line in lines if line.startswith("| `adam-q0.9") or line.startswith("| | ")]
    assert len(rows) == 2  # epochs 1 and 3
    assert "| 1 | 1.50e-04 | 2.00e-05 | 30.00% | 10.00% | 2.00% | 1.00% | 1.00e-03 |" in rows[0]
    assert "| 3 | 1.50e-04 | 2.00e-05 | 60.00% |" in rows[1]
    assert (tmp_path / "threshold.png").read_bytes()[:4] == b"\x89PNG"
    assert evidence.threshold_section({}, tmp_path, pathlib.Path("figures")) == []
    # The WRN stage: its own table (layers averaged the same way) and figure per budget.
    wrn = {"adam-plain": {0: {**report, "validation": {"accuracy": 0.8908}}}}
    lines = evidence.threshold_section({"adam-q0.9-nu0.0001": {0: report}}, tmp_path,
                                       pathlib.Path("figures"),
                                       deeper={"wrn22-k1-epochs5": wrn, "wrn22-k1-epochs9": {}})
    text = "\n".join(lines)
    assert text.count("### A deeper network") == 1  # a budget without results is left out
    wrn_rows = text.split("### A deeper network: `wrn22-k1-epochs5`")[1]
    assert "| `adam-plain` | 89.08 | 1 | 1.50e-04 | 2.00e-05 | 30.00% |" in wrn_rows
    assert "(figures/threshold-wrn22-k1-epochs5.png)" in wrn_rows
    assert (tmp_path / "threshold-wrn22-k1-epochs5.png").read_bytes()[:4] == b"\x89PNG"


def run_report(validation, test, epochs=2, **config):
    history = [{"loss": 1.0 / (e + 1), "ce_loss": 1.0, "accuracy": 0.9 + e / 100,
                "val_loss": 1.0, "val_accuracy": validation} for e in range(epochs)]
    return {"config": config, "history": history, "validation": {"accuracy": validation},
            "test": {"accuracy": test}}


def test_distill_section_compares_the_seeded_cell_with_reproduced_baselines(tmp_path):
    plain = {s: run_report(0.90, t) for s, t in enumerate([0.905, 0.902, 0.908, 0.904, 0.906])}
    twin = {s: run_report(0.93, t) for s, t in enumerate([0.921, 0.922, 0.923, 0.920, 0.924])}
    committed = {"adam-plain": plain, "adam-float": twin}
    student = {s: run_report(0.915, t, two_step=True, step1_epochs=1)
               for s, t in enumerate([0.912, 0.914, 0.913, 0.915, 0.911])}
    student[0]["teacher"] = {"validation": {"accuracy": 0.93}}
    leader = {0: run_report(0.95, 0.95)}  # leads on seed 0 but has no seeds: not compared
    larger_teacher = {s: run_report(0.96, 0.95, precision="float") for s in range(6)}
    results = {"adam-plain": {0: plain[0]}, "adam-float": {0: twin[0]},
               "adam-plain-twostep": student, "adam-plain-kd1-T1": leader,
               "adam-float-width64": larger_teacher}  # a teacher, never the compared cell
    text = "\n".join(evidence.distill_section(results, committed, tmp_path,
                                               pathlib.Path("figures")))
    assert "| `adam-plain-twostep` | 91.50 | 91.00 | 93.00 | 1 + 1 |" in text
    assert "Screen in progress: 2 of its 9 seed-0 cells have run" in text
    assert "### `adam-plain-twostep` over seeds" in text
    gain = np.mean([0.912, 0.914, 0.913, 0.915, 0.911]) - np.mean([0.905, 0.902, 0.908, 0.904,
                                                                   0.906])
    assert f"minus `adam-plain` (5 seeds), test top-1: {100 * gain:+.2f} points" in text
    gap = np.mean([0.921, 0.922, 0.923, 0.920, 0.924]) - np.mean([0.905, 0.902, 0.908, 0.904,
                                                                  0.906])
    assert f"closes {100 * gain / gap:.0f}% of that gap" in text
    assert (tmp_path / "distill.png").read_bytes()[:4] == b"\x89PNG"
    # A plain-Larq seed 0 that does not reproduce the committed one keeps its own seed only.
    results["adam-plain"] = {0: run_report(0.90, 0.9)}
    results["adam-plain"][0]["history"][0]["loss"] = 0.123
    assert "over seeds" not in "\n".join(evidence.distill_section(
        results, committed, tmp_path, pathlib.Path("figures")))


def test_threshold_seeds_compare_the_best_acting_cell_on_five_seeds():
    plain = {s: run_report(0.91, t) for s, t in enumerate([0.905, 0.902, 0.908, 0.904, 0.906])}
    twin = {s: run_report(0.93, 0.92) for s in range(5)}
    rebnn = {s: run_report(0.915, t) for s, t in enumerate([0.91, 0.909, 0.907, 0.912, 0.908])}
    results = {"adam-plain": {0: plain[0]}, "adam-rebnn-nu0.0001": rebnn,
               "adam-lam1e-07-nu0.0001": {0: run_report(0.90, 0.9)}}
    text = "\n".join(evidence.threshold_seeds(results, {"adam-plain": plain,
                                                         "adam-float": twin}))
    assert "`adam-rebnn-nu0.0001` leads" in text and "Seeds 0, 1, 2, 3, 4," in text
    assert "Interim" not in text
    assert "`adam-rebnn-nu0.0001` (5 seeds) minus `adam-plain` (5 seeds), test top-1: +0.42" in text
    del rebnn[4]
    assert "Interim: 4 of 5 seeds" in "\n".join(evidence.threshold_seeds(
        results, {"adam-plain": plain, "adam-float": twin}))


def test_a_stored_sweep_result_is_used_only_for_the_settings_it_was_made_with(tmp_path):
    base = {"model": "small_cnn", "dataset": "fashion_mnist", "epochs": 15}
    made = sweep.Sweep(tmp_path / "runs", tmp_path / "results", base=base)
    stored = tmp_path / "results" / sweep.cell_name("adam", sweep.PLAIN) / "seed-0.json"
    stored.parent.mkdir(parents=True)
    config = made.config("adam", sweep.PLAIN, 0).as_dict()
    stored.write_text(json.dumps({"config": {**config, "lam": None, "data_dir": "/elsewhere"},
                                  "validation": None, "test": {"accuracy": 0.9}}))
    assert made.run("adam", sweep.PLAIN, 0)["test"]["accuracy"] == 0.9
    shorter = sweep.Sweep(tmp_path / "runs", tmp_path / "results", base={**base, "epochs": 1})
    with pytest.raises(SystemExit, match="made with other settings .epochs: 15 there, 1 here"):
        shorter.run("adam", sweep.PLAIN, 0)


def test_a_stored_distillation_result_names_its_teacher_by_cell_and_seed_not_by_path(tmp_path):
    made = sweep.Sweep(tmp_path / "runs", tmp_path / "results", base={"epochs": 15})
    student = {**sweep.PLAIN, "teacher": "/here/runs/distill/adam-float/seed-0"}
    stored = tmp_path / "results" / sweep.cell_name("adam", student) / "seed-0.json"
    stored.parent.mkdir(parents=True)
    config = made.config("adam", student, 0).as_dict()
    moved = {**config, "teacher": "/another/machine/runs/distill/adam-float/seed-0"}
    stored.write_text(json.dumps({"config": moved, "validation": None,
                                  "test": {"accuracy": 0.9}}))
    assert made.run("adam", student, 0)["test"]["accuracy"] == 0.9
    stored.write_text(json.dumps({"config": {**moved, "teacher": moved["teacher"][:-1] + "1"},
                                  "validation": None, "test": {"accuracy": 0.9}}))
    with pytest.raises(SystemExit, match="teacher: 'adam-float/seed-1' there, "
                                         "'adam-float/seed-0' here"):
        made.run("adam", student, 0)


def test_sweep_refuses_zero_epochs():
    with pytest.raises(SystemExit, match="--epochs must be an integer >= 1; got 0"):
        sweep.main(["--epochs", "0"])


def test_teacher_target_statistics_match_hand_computed_softmax():
    # logits (ln 3, 0): softmax (3/4, 1/4) at T 1; (sqrt 3, 1) / (1 + sqrt 3) at T 2.
    logits = np.array([[math.log(3.0), 0.0], [math.log(3.0), 0.0]])
    labels = np.array([0, 1])
    stats = teacher_targets.target_statistics(logits, labels, 1.0)
    assert stats["mean_label_probability"] == pytest.approx((0.75 + 0.25) / 2)
    assert stats["mean_top1_probability"] == pytest.approx(0.75)
    assert stats["mean_entropy_nats"] == pytest.approx(-(0.75 * math.log(0.75)
                                                         + 0.25 * math.log(0.25)))
    assert (stats["accuracy"], stats["examples"]) == (0.5, 2)
    high = math.sqrt(3.0) / (1.0 + math.sqrt(3.0))
    assert teacher_targets.target_statistics(logits, labels, 2.0)[
        "mean_top1_probability"] == pytest.approx(high)


def test_teacher_targets_table_shows_each_split_and_temperature(tmp_path):
    stats = {"mean_label_probability": 0.99312, "mean_top1_probability": 0.9932,
             "mean_entropy_nats": 0.02856, "accuracy": 0.9997, "examples": 50000}
    path = tmp_path / teacher_targets.RESULT_NAME
    path.write_text(json.dumps({"teacher": "adam-float/seed-0",
                                "splits": {"train": {"T1": stats, "T4": stats}}}))
    lines = evidence.teacher_targets_lines(path)
    assert "| training (50,000) | 99.97 | 1 | 0.9931 | 0.0286 |" in lines
    assert "| training (50,000) | 99.97 | 4 | 0.9931 | 0.0286 |" in lines
    assert evidence.teacher_targets_lines(tmp_path / "missing.json") == []


def test_demo_budget_runs_the_demos_recipe_and_its_two_baselines(tmp_path, fashion_dir):
    demo_budget.main(["--seeds", "0", "--output", str(tmp_path / "runs"),
                      "--results", str(tmp_path / "results"), "--train-limit", "128",
                      "--test-limit", "40", "--data-dir", str(fashion_dir)])
    results = evidence.load_results(tmp_path / "results")
    names = demo_budget.cell_names()
    assert sorted(results) == sorted(names.values())
    recipe = results[names["recipe"]][0]
    # The recipe cell is what `bayes-larq demo` trains, on the limited data.
    config = runs.RunConfig(**{k: v for k, v in recipe["config"].items() if k != "config_file"})
    assert config == runs.RunConfig(**{**runs.DEMO_SETTINGS, "train_limit": 128,
                                       "test_limit": 40, "data_dir": str(fashion_dir)})
    twin = json.loads((tmp_path / "runs" / names["recipe"] / "seed-0" / "teacher" /
                       "report.json").read_text())
    assert twin["epochs_done"] == runs.DEMO_SETTINGS["teacher_epochs"]
    assert demo_budget.training_seconds(recipe) == pytest.approx(
        recipe["train_seconds"] + twin["train_seconds"])
    plain, bonn = results[names["plain"]][0]["config"], results[names["bonn"]][0]["config"]
    assert (plain["kernel_loss"], plain["feature_loss"], plain["epochs"]) == (False, False, 4)
    assert runs.RunConfig(**{k: v for k, v in bonn.items() if k != "data_dir"}) == \
        runs.RunConfig(train_limit=128, test_limit=40)  # the library's defaults, 5 epochs


def test_demo_budget_section_compares_the_recipe_on_shared_seeds():
    names = demo_budget.cell_names()

    def cell(tests, seconds, teacher_seconds=None):
        reports = {}
        for seed, test in enumerate(tests):
            reports[seed] = {**run_report(None, test), "train_seconds": seconds}
            if teacher_seconds is not None:
                reports[seed]["teacher"] = {"train_seconds": teacher_seconds}
        return reports

    recipe, plain = [0.905, 0.903, 0.907], [0.899, 0.901, 0.897]
    results = {names["recipe"]: cell(recipe, 130.0, 45.0),
               names["plain"]: cell(plain, 100.0), names["bonn"]: cell([0.9], 150.0)}
    text = "\n".join(evidence.demo_budget_section(results))
    assert (f"| `{names['recipe']}` | {evidence.DEMO_ROLES['recipe']} | 3 | 90.50 +- 0.20 | "
            f"90.50, 90.30, 90.70 | 175 |") in text
    difference, low, high, p_value = evidence.welch(recipe, plain)
    assert (f"minus `{names['plain']}` (3 seeds), test top-1: {100 * difference:+.2f} points, "
            f"95% CI [{100 * low:+.2f}, {100 * high:+.2f}], Welch's t-test p = {p_value:.3g}"
            ) in text
    assert f"minus `{names['bonn']}`" not in text  # one seed: no test
    assert "Interim: 1 of 5 seeds of every cell so far" in text
