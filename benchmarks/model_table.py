"""Evidence table of the model zoo: for each model x scope, parameters, larq memory
estimate, binarized MAC share and TFLite (LCE) size, binary vs float.

    python benchmarks/model_table.py                  # print the table
    python benchmarks/model_table.py --write docs/models.md

`--write` replaces the text between the `<!-- model-table:start -->` and
`<!-- model-table:end -->` markers of the file, leaving the prose alone. Training speed
is measured by `benchmarks/speed.py` (docs/speed.md).

Every model is built at its native input size (ResNet-18 at 224x224) and converted with
Larq Compute Engine; this takes a few minutes and about 2 GB of memory, no training.
"""

import argparse
import re
import sys
import time

import numpy as np

import bayes_larq  # noqa: F401  (sets up tf_keras)
import tensorflow as tf

from bayes_larq import convert, models, profile

# (registry name, kwargs, label)
MODELS = [
    ("small_cnn", {}, "small_cnn (28x28x1, 10 classes)"),
    ("resnet18", {}, "resnet18 (224x224x3, 1000 classes)"),
    ("resnet18_cifar", {}, "resnet18_cifar (32x32x3, 10 classes)"),
    ("wrn22", {"width_factor": 1}, "wrn22, k=1 (32x32x3, 10 classes)"),
    ("wrn22", {"width_factor": 4}, "wrn22, k=4 (32x32x3, 10 classes)"),
]
SCOPES = ("paper", "full")


def _mb(n_bytes):
    if n_bytes < 2**20:
        return f"{n_bytes / 2**10:.0f} KiB"
    return f"{n_bytes / 2**20:.2f} MiB"


def _count(n):
    return f"{n / 1e6:.2f} M" if n >= 1e5 else f"{n / 1e3:.1f} k"


def _weights(model, trainable=None):
    weights = {None: model.weights, True: model.trainable_weights,
               False: model.non_trainable_weights}[trainable]
    return int(sum(np.prod(w.shape) for w in weights))


def measure(name, kwargs, scope):
    """One table row: a BONN binary model and its float variant."""
    tf.keras.backend.clear_session()
    tf.keras.utils.set_random_seed(0)
    binary = models.get(name, scope=scope, bonn=True, **kwargs)
    twin = profile.inference_twin(binary)
    counts = profile.mac_counts(binary)
    binary_flatbuffer = convert.convert(binary)
    census = convert.op_census(binary_flatbuffer)
    row = {
        "params": _weights(twin),
        "bonn_extra": profile.training_only_weight_count(binary),
        "memory": profile.memory_bytes(binary),
        "macs": counts["total"],
        "share": counts["binary"] / counts["total"],
        "bconv": census["LceBconv2d"],
        "tflite_binary": len(binary_flatbuffer),
    }
    del binary, twin, binary_flatbuffer
    tf.keras.backend.clear_session()
    float_model = models.get(name, scope=scope, bonn=False, precision="float", **kwargs)
    row["tflite_float"] = len(convert.convert(float_model))
    return row


def table(rows):
    lines = [
        "| model | scope | params (deployed) | BONN training-only params | larq memory "
        "estimate | MACs | binarized MAC share | LceBconv2d | TFLite binary | TFLite float "
        "| float / binary size |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for label, scope, r in rows:
        lines.append(
            f"| {label} | {scope} | {_count(r['params'])} | {_count(r['bonn_extra'])} "
            f"| {_mb(r['memory'])} | {r['macs'] / 1e6:.1f} M | {100 * r['share']:.2f}% "
            f"| {r['bconv']} | {_mb(r['tflite_binary'])} | {_mb(r['tflite_float'])} "
            f"| {r['tflite_float'] / r['tflite_binary']:.1f}x |"
        )
    return "\n".join(lines)


def replace_between(text, marker, body):
    pattern = re.compile(rf"(<!-- {marker}:start -->\n).*?(<!-- {marker}:end -->)", re.S)
    if not pattern.search(text):
        raise SystemExit(f"markers <!-- {marker}:start/end --> not found")
    return pattern.sub(lambda m: m.group(1) + body.rstrip("\n") + "\n" + m.group(2), text)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", help="markdown file whose marked sections to replace")
    parser.add_argument("--only", nargs="*", help="registry names to include")
    args = parser.parse_args(argv)

    markers = ["model-table"]
    if args.write:  # fail before minutes of work, not after
        with open(args.write) as f:
            text = f.read()
        for marker in markers:
            replace_between(text, marker, "")

    rows = []
    for name, kwargs, label in MODELS:
        if args.only and name not in args.only:
            continue
        for scope in SCOPES:
            start = time.perf_counter()
            rows.append((label, scope, measure(name, kwargs, scope)))
            print(f"{label} {scope}: {time.perf_counter() - start:.0f} s", file=sys.stderr)
    sections = {"model-table": table(rows)}
    for body in sections.values():
        print(body + "\n")
    if args.write:
        with open(args.write) as f:
            text = f.read()
        for marker, body in sections.items():
            text = replace_between(text, marker, body)
        with open(args.write, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
