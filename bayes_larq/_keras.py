"""Every use of Keras / TensorFlow internals in bayes_larq, each with why no public API does it.

Nothing else in the package touches a private attribute of Keras or TensorFlow (TFLite and
LCE internals: `bayes_larq._tflite`), and tests/test_layout.py checks it; when a
Keras release moves one of these, this module is the only place to change. Two related
mechanisms live where they act, for a reason:

* `bayes_larq._legacy_keras` imports `tf_keras.api._v2.keras` to point `tf.keras` at
  Keras 2 before anything else imports Keras; it must run first, so it cannot import
  this module's TensorFlow.
* `bayes_larq.training.BONN` keeps its second view of the classifier's layers in a class
  attribute (`_network = None`): Keras tracks only attributes set on instances, so the
  view is neither saved twice nor counted twice in `weights`. This uses no private API.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from larq.quantizers import _BaseQuantizer
from tf_keras.src.engine import base_layer_utils

__all__ = ["LarqMetricsQuantizer", "all_layers", "calling_layer", "close_summary_writers",
           "eager_value", "is_functional", "reads_a_variable"]

# Why private: Larq adds its training metrics (`metrics=[...]`, `lq.context.metrics_scope`)
# only to quantizers derived from this class; `larq.quantizers.get_kernel_quantizer`
# fills in the scope's metrics by an isinstance check on it. No public class does.
LarqMetricsQuantizer = _BaseQuantizer


def calling_layer() -> tf.keras.layers.Layer | None:
    """The layer whose `call` is running now (the Larq layer reading its quantized kernel),
    or None outside any layer.

    Why private: a Larq layer hands its kernel quantizer only the kernel tensor; Keras'
    call context is the one record of which layer is reading it.
    """
    return base_layer_utils.call_context().layer


def all_layers(model: tf.keras.layers.Layer) -> list[tf.keras.layers.Layer]:
    """Every layer nested in `model` (sub-models, and quantizers inside Larq layers), in
    model order, without `model` itself.

    Why private: `model.layers` lists only the top level, and the public
    `tf.Module.submodules` walks attributes alphabetically, not in model order (reports
    and plots list layers as the network runs), and also yields optimizers and metrics.
    """
    return list(model._flatten_layers(include_self=False))


def is_functional(model: tf.keras.Model) -> bool:
    """True for a functional or Sequential model (one built from a graph of layers).

    Why private: tf_keras exports no `Functional` class; a subclassed `tf.keras.Model`
    has `inputs` / `outputs` after it is called too, so only this flag tells them apart.
    """
    return bool(getattr(model, "_is_graph_network", False))


def _source_op(tensor):
    """The op behind `tensor`, through identities and casts (mixed precision hands a
    layer its float32 kernel cast to float16)."""
    op = getattr(tensor, "op", None)
    while op is not None and op.type in ("Identity", "Cast"):
        op = op.inputs[0].op
    return op


def reads_a_variable(tensor) -> bool:
    """True when `tensor` is a variable or a (symbolic) read of one: a kernel, not an
    activation. Why graph ops: Keras hands a quantizer a plain tensor either way."""
    if isinstance(tensor, tf.Variable):
        return True
    op = _source_op(tensor)
    return op is not None and op.type == "ReadVariableOp"


def eager_value(tensor) -> np.ndarray | None:
    """The NumPy value of `tensor` (of the variable behind it, in the variable's dtype,
    when it is a read or a cast of one), or None when it cannot be read without running
    a graph.

    During Keras functional construction, Larq passes a kernel quantizer a *symbolic*
    read of the latent kernel; the variable behind it already holds its initial value,
    so we follow the read back to the captured variable handle and read it eagerly.

    Why private (graph `captures` and `tf.raw_ops`): Keras offers no public hook that
    hands a sub-layer the value of its parent's variable at build time. The public
    alternative, initialising from the kernel on the first call behind an "initialised"
    flag, puts variable assignments inside every traced call: the inference graph and
    the TFLite conversion would carry them, and a model's state would depend on whether
    it first ran `predict` or `fit`. Reading the value once, at build, keeps the saved,
    loaded, converted and distributed model free of that state.
    """
    if hasattr(tensor, "numpy") and not hasattr(tensor, "graph"):
        return tensor.numpy()
    if isinstance(tensor, tf.Variable):
        return tensor.numpy()
    op = _source_op(tensor)
    if op is None or op.type != "ReadVariableOp":
        return None
    handle = op.inputs[0]
    for external, internal in getattr(tensor.graph, "captures", ()):
        if internal is handle and hasattr(external, "numpy"):
            with tf.init_scope():
                return tf.raw_ops.ReadVariableOp(resource=external,
                                                 dtype=op.get_attr("dtype")).numpy()
    return None


def close_summary_writers(callbacks: list[tf.keras.callbacks.Callback]) -> None:
    """Close the TensorBoard writers of `callbacks` (Keras' `TensorBoard` and any callback
    holding a `_writer`): an open writer recreates its event file, and the directories
    above it, when it flushes, so a deleted run directory would come back."""
    for callback in callbacks:
        if isinstance(callback, tf.keras.callbacks.TensorBoard):
            callback._close_writers()
        writer = getattr(callback, "_writer", None)
        if writer is not None:
            writer.close()
