"""How much a teacher's softmax says beyond the labels, on the images a student learns from.

    python benchmarks/teacher_targets.py runs/distill/adam-float/seed-0 \
        --output benchmarks/results/distill/teacher-targets.json

Distillation replaces (or mixes with) the one-hot label the teacher's distribution
p = softmax(z_t / T). When the teacher has memorised its training images, p is nearly
one-hot on exactly the images the student trains on, and the distribution loss is
almost the cross-entropy. This script measures that, for the training split (the
50,000 images every cell trains on) and the validation split (10,000 held-out images),
at each temperature T of the screen:

* `mean_label_probability`: the mean of p at the true label;
* `mean_top1_probability`: the mean of max_k p_k;
* `mean_entropy_nats`: the mean entropy of p (0 for a one-hot distribution);
* `accuracy`: the teacher's top-1 accuracy on the split.

It runs the teacher in inference mode over both splits (about 20 s on this machine) and
writes one JSON file; `benchmarks/evidence.py` shows it in the distillation section.
"""

import argparse
import json
import pathlib
import sys

import numpy as np
import tensorflow as tf

from bayes_larq.app import data, runs
from bayes_larq.app.rundir import write_json

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import sweep  # noqa: E402

TEMPERATURES = (1.0, 4.0)
RESULT_NAME = "teacher-targets.json"  # where benchmarks/evidence.py reads it, in the results
SPLITS = ("train", "holdout")  # what the student trains on, what settings are chosen on


def logits_and_labels(teacher, config, split):
    dataset = data.load(config.dataset, split, 500, training=False,
                        data_dir=config.data_dir, holdout=config.validation_size)
    logits, labels = [], []
    for images, batch_labels in dataset:
        logits.append(teacher(images, training=False).numpy())
        labels.append(batch_labels.numpy())
    return np.concatenate(logits), np.concatenate(labels)


def target_statistics(logits, labels, temperature):
    """The statistics of the module docstring for one split and temperature."""
    p = tf.nn.softmax(logits / temperature, axis=-1).numpy().astype(np.float64)
    entropy = -(p * np.log(np.clip(p, 1e-30, None))).sum(axis=-1)
    return {"mean_label_probability": float(p[np.arange(len(labels)), labels].mean()),
            "mean_top1_probability": float(p.max(axis=-1).mean()),
            "mean_entropy_nats": float(entropy.mean()),
            "accuracy": float((logits.argmax(axis=-1) == labels).mean()),
            "examples": int(len(labels))}


def measure(run_dir):
    config = runs.RunDirectory(run_dir).read_config()
    if not config.validation_size:
        raise SystemExit(f"{run_dir} holds no validation split (validation_size 0): this "
                         f"script compares the training images with held-out ones.")
    teacher = runs.load_classifier(run_dir)
    result = {"teacher": sweep.run_name(pathlib.Path(run_dir).resolve()), "splits": {}}
    for split in SPLITS:
        logits, labels = logits_and_labels(teacher, config, split)
        result["splits"][split] = {f"T{t:g}": target_statistics(logits, labels, t)
                                   for t in TEMPERATURES}
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=pathlib.Path, help="a finished float run (a teacher)")
    parser.add_argument("--output", type=pathlib.Path, required=True)
    args = parser.parse_args(argv)
    result = measure(args.run_dir)
    write_json(args.output, result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
