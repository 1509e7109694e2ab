"""Larq model profiles (MACs, memory, summary) that are not distorted by `BayesianSign`.

Larq's `lq.models.summary` / `lq.models.ModelProfile` count every non-bias weight of a
MAC layer (Conv, Dense, ...) as a MAC weight. A `BayesianSign` kernel quantizer is a
sub-layer of its convolution and owns training-only variables: `W` (the shape of the
kernel), `mu`, `sigma` (per channel), `lam` and `nu`. Larq would count each as an extra
32-bit "kernel": the binarized-MAC share drops by about half and the memory estimate
roughly doubles, although none of them exists in the deployed (LCE) model, where the
kernel is `sign(w) / mean(W)`, a binary kernel with one scale folded into the output.

The functions here profile the *inference twin* instead: the same architecture and
layers with every `BayesianSign` replaced by Larq's "ste_sign". Its MACs and memory are
exactly those of the same model built with `bonn=False`.

```python
from bayes_larq import models, profile

model = models.get("small_cnn")               # bonn=True
profile.binary_mac_share(model)               # share of 1-bit MACs
profile.memory_bytes(model)                   # larq's memory estimate, bytes
profile.summary(model)                        # lq.models.summary of the twin
```
"""

from __future__ import annotations

import math
from typing import Callable

import larq as lq
import tensorflow as tf

from bayes_larq._keras import all_layers
from bayes_larq.bayesianize import debayesianize
from bayes_larq.quantizers import BayesianSign

__all__ = ["binary_mac_share", "inference_twin", "mac_counts", "memory_bytes",
           "model_profile", "summary", "training_only_weight_count"]

NOTE = (
    "Note: profile of the inference twin (every BayesianSign kernel quantizer replaced "
    "by 'ste_sign'); BayesianSign's training-only variables (W, mu, sigma, lam, nu) are "
    "not part of the deployed model and are left out. {count} of the model's weights "
    "are such training-only variables."
)


def _is_bayesian(quantizer):
    return isinstance(quantizer, BayesianSign)


def training_only_weight_count(model: tf.keras.Model) -> int:
    """Number of scalar variables owned by BayesianSign quantizers in `model`."""
    total = 0
    for layer in all_layers(model):
        if _is_bayesian(layer):
            total += sum(int(tf.size(w)) for w in layer.weights)
    return total


def inference_twin(model: tf.keras.Model) -> tf.keras.Model:
    """A clone of `model` with every BayesianSign kernel quantizer replaced by "ste_sign".

    The clone has the same layers (names, shapes, other quantizers, constraints) and
    the same weight values, except BayesianSign's training-only variables
    (`bayes_larq.bayesianize.debayesianize` without folding the scale): use it to
    profile; `debayesianize` gives the twin that also predicts the same.

    Raises:
        ValueError: for a subclassed model (Keras cannot clone it from its config).
    """
    twin = debayesianize(model, fold_scale=False)
    return tf.keras.Model(twin.inputs, twin.outputs, name=f"{model.name}_inference")


def model_profile(model: tf.keras.Model) -> lq.models.ModelProfile:
    """`lq.models.ModelProfile` of the inference twin of `model`."""
    return lq.models.ModelProfile(inference_twin(model))


def binary_mac_share(model: tf.keras.Model) -> float:
    """Share of the model's MACs that are 1-bit (binary weights and activations).

    Larq counts a layer's MACs as 1-bit when both its input quantizer and its kernel
    are 1-bit; computed on the inference twin. 0.0 for a model without MACs.
    """
    profile = model_profile(model)
    total = profile.op_count("mac")
    return profile.op_count("mac", 1) / total if total else 0.0


def mac_counts(model: tf.keras.Model) -> dict[str, int]:
    """{"binary": 1-bit MACs, "total": all MACs} of the inference twin."""
    profile = model_profile(model)
    return {"binary": profile.op_count("mac", 1), "total": profile.op_count("mac")}


def memory_bytes(model: tf.keras.Model) -> int:
    """Larq's memory estimate of the deployed model, in bytes (rounded up).

    Binary kernels count 1 bit per weight, every other weight 32 bits; BatchNorm
    counts its moving statistics (larq folds gamma/beta into them).
    """
    return math.ceil(model_profile(model).memory / 8)


def summary(model: tf.keras.Model, print_fn: Callable[[str], None] | None = None,
            include_macs: bool = True) -> None:
    """`lq.models.summary` of the inference twin, followed by a note saying so."""
    print_fn = print_fn or print
    lq.models.summary(inference_twin(model), print_fn=print_fn, include_macs=include_macs)
    print_fn(NOTE.format(count=training_only_weight_count(model)))
