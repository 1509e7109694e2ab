"""Larq Compute Engine conversion: Keras -> TFLite flatbuffer, op census, parity, latency.

```python
import bayes_larq as bl
flatbuffer = bl.convert.convert(model)            # bytes of a .tflite
bl.convert.op_census(flatbuffer)                  # Counter({'LceBconv2d': 3, ...})
bl.convert.compare(model, flatbuffer, x)          # agreement with the Keras model
bl.convert.binarization_margin(model, x)          # why a few outputs may still differ
```

Keras and LCE compute the same network with different float arithmetic (LCE
accumulates binary products in integers and fuses batch normalisation into one
multiply-add). Where an activation about to be binarized lies within float rounding of
zero, the two can give it opposite signs, and that sample's outputs then differ by far
more than rounding. `binarization_margin` finds such samples.

Latency on x86 depends heavily on the interpreter flags (docs/models.md); the defaults
here are the fastest measured ones, `use_indirect_bgemm=True, use_xnnpack=True`.
"""

from __future__ import annotations

import collections
import dataclasses
import numbers
import time
from typing import Any

import numpy as np
import tensorflow as tf

from bayes_larq import _tflite
from bayes_larq._keras import all_layers, is_functional
from bayes_larq.defaults import check_integer
from bayes_larq.quantizers import is_one_bit

__all__ = ["MAX_RUNS", "Agreement", "binarization_margin", "check_runs", "check_tolerances",
           "compare", "convert", "interpreter", "latency_ms", "op_census", "tflite_predict"]


def convert(model: tf.keras.Model) -> bytes:
    """Convert a tf_keras (Larq) model to an LCE TFLite flatbuffer (bytes).

    A model with `BayesianSign` kernels is converted through its plain-Larq equivalent
    (`bayes_larq.debayesianize`: "ste_sign" kernels, the scale folded into BatchNorm),
    which predicts the same and gives LCE the pattern it fuses best; where a scale cannot
    be folded (`bayesianize.UnfoldableScale`: no BatchNorm after the layer) the model is
    converted as it is, LCE keeping the scale as a multiplication. Any other error
    propagates: a model that cannot be converted correctly is not converted.
    """
    import larq_compute_engine as lce

    from bayes_larq.bayesianize import UnfoldableScale, debayesianize
    from bayes_larq.quantizers import bayesian_kernels

    if bayesian_kernels(model):
        try:
            model = debayesianize(model)
        except UnfoldableScale:
            pass  # a scale with no BatchNorm to fold into: LCE folds it as a multiplier
    return lce.convert_keras_model(model)


def op_census(flatbuffer: bytes) -> collections.Counter:
    """Count the operators of every subgraph of a TFLite flatbuffer by name.

    Custom ops (LceBconv2d, LceQuantize, LceDequantize, LceBMaxPool2d) are named by
    their custom code, builtin ops by their TFLite name (CONV_2D, FULLY_CONNECTED, ...).
    """
    tflite_model = _tflite.tflite_model(flatbuffer)
    builtin_names = _tflite.builtin_operator_names()
    code_names = []
    for index in range(tflite_model.OperatorCodesLength()):
        code = tflite_model.OperatorCodes(index)
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        custom = code.CustomCode()
        code_names.append(custom.decode() if custom else builtin_names.get(builtin, str(builtin)))
    census = collections.Counter()
    for graph_index in range(tflite_model.SubgraphsLength()):
        graph = tflite_model.Subgraphs(graph_index)
        for op_index in range(graph.OperatorsLength()):
            census[code_names[graph.Operators(op_index).OpcodeIndex()]] += 1
    return census


def interpreter(flatbuffer: bytes, num_threads: int = 1, use_indirect_bgemm: bool = True,
                use_xnnpack: bool = True) -> Any:
    """An LCE interpreter (runs the LCE custom ops on x86 and ARM)."""
    return _tflite.lce_interpreter(flatbuffer, num_threads=num_threads,
                                   use_indirect_bgemm=use_indirect_bgemm,
                                   use_xnnpack=use_xnnpack)


def tflite_predict(flatbuffer: bytes, x: np.ndarray, **interpreter_kwargs: Any) -> np.ndarray:
    """Outputs of the converted model on the batch `x` (NumPy, float32)."""
    outputs = interpreter(flatbuffer, **interpreter_kwargs).predict(np.asarray(x, np.float32))
    return np.asarray(outputs)


@dataclasses.dataclass
class Agreement:
    """How closely a converted model reproduces its Keras model on the same inputs."""

    max_abs_diff: float
    top1_agreement: float
    samples: int

    @classmethod
    def of(cls, keras_out: np.ndarray, tflite_out: np.ndarray) -> "Agreement":
        """From the two models' outputs on the same batch: max |difference|, top-1 match."""
        tflite_out = np.asarray(tflite_out).reshape(np.shape(keras_out))
        return cls(max_abs_diff=float(np.max(np.abs(keras_out - tflite_out))),
                   top1_agreement=float(np.mean(keras_out.argmax(-1) == tflite_out.argmax(-1))),
                   samples=len(keras_out))

    def check(self, atol: float = 1e-3, min_top1_agreement: float = 1.0) -> "Agreement":
        """Raise ValueError when the converted model disagrees beyond tolerance."""
        check_tolerances(atol, min_top1_agreement)
        if not (self.max_abs_diff <= atol and self.top1_agreement >= min_top1_agreement):
            raise ValueError(
                f"Converted model disagrees with Keras on {self.samples} inputs: max abs "
                f"output difference {self.max_abs_diff:.3g} (tolerance {atol:g}), top-1 "
                f"agreement {self.top1_agreement:.4f} (required {min_top1_agreement:g})."
            )
        return self


def check_tolerances(atol: float, min_top1_agreement: float) -> None:
    """Raise ValueError unless `atol` is a number >= 0 (`math.inf`: any difference) and
    `min_top1_agreement` a share in [0, 1]: the tolerances of `Agreement.check`."""
    if isinstance(atol, bool) or not isinstance(atol, numbers.Real) or not atol >= 0:
        raise ValueError(f"`atol` must be a number >= 0; got {atol!r}.")
    if (isinstance(min_top1_agreement, bool) or not isinstance(min_top1_agreement, numbers.Real)
            or not 0 <= min_top1_agreement <= 1):
        raise ValueError(f"`min_top1_agreement` must be a share in [0, 1]; got "
                         f"{min_top1_agreement!r}.")


def compare(model: tf.keras.Model, flatbuffer: bytes, x: np.ndarray,
            **interpreter_kwargs: Any) -> Agreement:
    """Compare Keras and TFLite outputs on `x`: max abs difference and top-1 agreement."""
    x = np.asarray(x, np.float32)
    keras_out = np.asarray(model.predict(x, verbose=0, batch_size=64))
    return Agreement.of(keras_out, tflite_predict(flatbuffer, x, **interpreter_kwargs))


def binarization_margin(model: tf.keras.Model, x: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Per sample of `x`, the smallest |a| over every activation a that a 1-bit input
    quantizer of `model` binarizes (the inputs of `ste_sign` & co. on activations).

    A margin near float rounding (about 1e-6 of the activation scale) means Keras and a
    converted model may binarize that activation differently.

    Raises:
        ValueError: `model` is not functional, has no 1-bit input quantizer, or has one
            inside a nested model (whose activations this cannot reach).
    """
    if not is_functional(model):
        raise ValueError(f"binarization_margin needs a functional or Sequential model; "
                         f"{model.name!r} is subclassed, so its activations are not reachable.")
    top_level = {id(layer) for layer in model.layers}
    binarizing = [layer for layer in all_layers(model)
                  if is_one_bit(getattr(layer, "input_quantizer", None))]
    nested = [layer.name for layer in binarizing if id(layer) not in top_level]
    if nested:
        raise ValueError(f"{model.name!r} has 1-bit input quantizers inside nested models "
                         f"({nested}); rebuild it as one flat functional model.")
    if not binarizing:
        raise ValueError(f"{model.name!r} binarizes no activation (no 1-bit "
                         f"input_quantizer), so it has no binarization margin.")
    probe = tf.keras.Model(model.inputs, [layer.input for layer in binarizing])
    activations = probe.predict(np.asarray(x, np.float32), batch_size=batch_size, verbose=0)
    if len(binarizing) == 1:
        activations = [activations]
    return np.min([np.abs(a).reshape(len(a), -1).min(axis=1) for a in activations], axis=0)


MAX_RUNS = 100_000  # timed (or warm-up) interpreter runs of one latency measurement


def check_runs(repeats: int, warmup: int) -> None:
    """Raise ValueError unless `repeats` is an integer in [1, `MAX_RUNS`] and `warmup` one
    in [0, `MAX_RUNS`]: the runs of `latency_ms`."""
    check_integer("repeats", repeats, maximum=MAX_RUNS)
    check_integer("warmup", warmup, minimum=0, maximum=MAX_RUNS)


def latency_ms(flatbuffer: bytes, repeats: int = 10, warmup: int = 2,
               **interpreter_kwargs: Any) -> float:
    """Median single-image latency (ms) of a flatbuffer in the LCE interpreter.

    `repeats` timed runs follow `warmup` untimed ones (`check_runs`).
    """
    check_runs(repeats, warmup)
    runner = interpreter(flatbuffer, **interpreter_kwargs)
    shape = [1 if d is None else d for d in runner.input_shapes[0]]
    shape[0] = 1
    sample = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    timings = []
    for step in range(warmup + repeats):
        start = time.perf_counter()
        runner.predict(sample)
        if step >= warmup:
            timings.append(1e3 * (time.perf_counter() - start))
    return float(np.median(timings))

