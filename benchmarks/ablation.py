"""Ablation of BONN's two losses: plain Larq vs kernel loss vs feature loss vs both.

Every variant trains the same model from the same seeds with `bayes_larq.app.runs` (so each
run is an ordinary run directory with its report, and an interrupted benchmark continues
where it stopped), then one Markdown table compares them:

    python benchmarks/ablation.py --epochs 3 --seeds 0 1 --lams 1e-4 1e-2 \\
        --output runs/ablation --write docs/ablation.md

Per variant: mean and per-seed test top-1 accuracy, the kernel loss as a share of the
cross-entropy at the end, and the latent-weight statistics behind docs/method.md's
objections (bimodality coefficient, mean |x|, share of signs flipped since
initialisation), averaged over the binarized layers. Runs train one after another (2
cores: never two at once).
"""

import argparse
import json
import pathlib
import statistics
import sys
import time

from bayes_larq.app import runs


def variants(lams):
    """(name, RunConfig overrides): baseline, feature loss, and kernel loss per lambda."""
    found = [("plain Larq (ste_sign)", {"kernel_loss": False, "feature_loss": False}),
             ("feature loss only", {"kernel_loss": False, "feature_loss": True})]
    for lam in lams:
        found.append((f"kernel loss only, lam={lam:g}",
                      {"kernel_loss": True, "feature_loss": False, "lam": lam}))
        found.append((f"both losses (BONN), lam={lam:g}",
                      {"kernel_loss": True, "feature_loss": True, "lam": lam}))
    return found


def slug(name):
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")


def run_variant(output, name, overrides, seed, base):
    """Train (or finish, or reuse) one run; returns its report dict."""
    run_dir = output / slug(name) / f"seed-{seed}"
    report = run_dir / "report.json"
    if report.exists():
        return json.loads(report.read_text())
    if runs.RunDirectory(run_dir).exists():
        return runs.resume(run_dir, verbose=0)
    config = runs.RunConfig(**{**base, **overrides, "seed": seed})
    return runs.train(config, run_dir, verbose=0)


def layer_mean(report, key):
    values = [stages["end"][key] for stages in report["mixture"].values()]
    return statistics.fmean(values) if values else float("nan")


def row(name, reports):
    accuracies = [r["test"]["accuracy"] for r in reports]
    last = [r["history"][-1] for r in reports]
    ratio = statistics.fmean(h["kernel_loss"] / h["ce_loss"] for h in last)
    spread = statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0
    return (f"| {name} | {100 * statistics.fmean(accuracies):.2f} +- {100 * spread:.2f} | "
            + ", ".join(f"{100 * a:.2f}" for a in accuracies)
            + f" | {ratio:.2e} | "
            f"{statistics.fmean(layer_mean(r, 'bimodality') for r in reports):.3f}"
            f" | {statistics.fmean(layer_mean(r, 'latent_scale') for r in reports):.4f}"
            f" | {100 * statistics.fmean(layer_mean(r, 'flip_ratio') for r in reports):.1f}% |")


def table(results, command, seconds):
    lines = [
        "# Ablation: which of BONN's losses does what", "",
        f"Command: `{command}` ({seconds / 60:.0f} min on 2 cores).", "",
        "| variant | test top-1 % (mean +- std) | per seed | L_B / CE at the end | "
        "bimodality (end) | mean abs latent (end) | signs flipped since init |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    lines += [row(name, reports) for name, reports in results]
    lines += ["", "Bimodality is Sarle's coefficient of the latent weights (1/3 for a Gaussian, "
              "above 5/9 suggests two modes), averaged over the binarized layers. A plain Larq "
              "run has no L_B (ratio 0).", ""]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--lams", type=float, nargs="+", default=[1e-4, 1e-2])
    parser.add_argument("--model", default="small_cnn")
    parser.add_argument("--dataset", default="fashion_mnist")
    parser.add_argument("--train-limit", type=int, default=None)
    parser.add_argument("--test-limit", type=int, default=None)
    parser.add_argument("--output", type=pathlib.Path, default=pathlib.Path("runs/ablation"))
    parser.add_argument("--write", type=pathlib.Path, help="write the Markdown table here")
    args = parser.parse_args(argv)
    base = {"model": args.model, "dataset": args.dataset, "epochs": args.epochs,
            "train_limit": args.train_limit, "test_limit": args.test_limit}
    start = time.perf_counter()
    results = []
    for name, overrides in variants(args.lams):
        reports = []
        for seed in args.seeds:
            reports.append(run_variant(args.output, name, overrides, seed, base))
            print(f"{name}, seed {seed}: test top-1 {reports[-1]['test']['accuracy']:.4f}",
                  flush=True)
        results.append((name, reports))
    command = "python benchmarks/ablation.py " + " ".join(sys.argv[1:] if argv is None else argv)
    markdown = table(results, command, time.perf_counter() - start)
    print(markdown)
    if args.write:
        args.write.write_text(markdown)


if __name__ == "__main__":
    main()
