"""The accuracy the sweep's chosen BONN setting reaches with a larger budget.

    python benchmarks/capacity.py --width 64 --epochs 15 --cells bonn plain
    python benchmarks/capacity.py --width 64 --epochs 30 --augment

The setting is read back from the committed sweep results with the sweep's own rules (the
leading optimizer and its best BONN setting, chosen on validation accuracy), and trained
on `small_cnn` with the given width and epochs on all 60,000 training images: nothing is
chosen here, so there is no validation split and the test set is evaluated once (its
per-epoch curve in the report's history is for looking, not for choosing). `--augment`
trains on padded, randomly cropped and flipped images (`RunConfig.augment`). `plain`
adds plain Larq and `float` the float twin at the same budget. Each run is an ordinary,
resumable run directory under --output/<budget>/; its report.json is copied to
--results/<budget>/<cell>/seed-<n>.json, which `benchmarks/evidence.py` tabulates.
"""

import argparse
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import evidence  # noqa: E402
import sweep  # noqa: E402

CELLS = {"plain": sweep.PLAIN, "float": sweep.FLOAT_TWIN}


def budget_name(width, epochs, augment=False):
    return f"width{width}-epochs{epochs}" + ("-augment" if augment else "")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--cells", nargs="+", choices=["bonn", *CELLS], default=["bonn"])
    parser.add_argument("--augment", action="store_true",
                        help="pad-2 random crops and horizontal flips of the training images")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sweep-results", type=pathlib.Path,
                        default=pathlib.Path("benchmarks/results/sweep"))
    parser.add_argument("--output", type=pathlib.Path, default=pathlib.Path("runs/capacity"))
    parser.add_argument("--results", type=pathlib.Path,
                        default=pathlib.Path("benchmarks/results/capacity"))
    parser.add_argument("--train-limit", type=int, default=None, help="for quick checks")
    parser.add_argument("--test-limit", type=int, default=None, help="for quick checks")
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args(argv)
    chosen = evidence.sweep_view(evidence.load_results(args.sweep_results))
    optimizer = sweep.leading_optimizer(chosen)
    cells = {"bonn": sweep.best_bonn_setting(chosen, optimizer), **CELLS}
    budget = budget_name(args.width, args.epochs, args.augment)
    base = {"model": "small_cnn", "dataset": "fashion_mnist", "epochs": args.epochs,
            "arch": {"width": args.width}, "augment": args.augment or None,
            "train_limit": args.train_limit,
            "test_limit": args.test_limit, "data_dir": args.data_dir}
    runner = sweep.Sweep(args.output / budget, args.results / budget, base)
    for cell in args.cells:
        runner.run(optimizer, cells[cell], args.seed)


if __name__ == "__main__":
    main()
