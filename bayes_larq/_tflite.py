"""Every use of TensorFlow Lite / LCE internals in bayes_larq, each with why no public API does it.

The sibling of `bayes_larq._keras` for the converted model: when a TensorFlow or LCE
release moves one of these, this module is the only place to change.
"""

from __future__ import annotations

from typing import Any

__all__ = ["builtin_operator_names", "lce_interpreter", "tflite_model"]


def tflite_model(flatbuffer: bytes) -> Any:
    """The root `Model` table of a TFLite flatbuffer, for reading its operators.

    Why private: TensorFlow ships the flatbuffer schema bindings only as
    `tensorflow.lite.python.schema_py_generated`; the public `tf.lite.Interpreter` lists
    tensors, not the operator codes of every subgraph (custom LCE ops included).
    """
    from tensorflow.lite.python import schema_py_generated as schema

    return schema.Model.GetRootAsModel(bytearray(flatbuffer), 0)


def builtin_operator_names() -> dict[int, str]:
    """{builtin operator code: its TFLite name (CONV_2D, ...)} from the same schema."""
    from tensorflow.lite.python import schema_py_generated as schema

    return {value: name for name, value in vars(schema.BuiltinOperator).items()
            if not name.startswith("_")}


def lce_interpreter(flatbuffer: bytes, **options: Any) -> Any:
    """LCE's interpreter of a flatbuffer (runs the LCE custom ops on x86 and ARM).

    Why private: LCE exports its interpreter only from
    `larq_compute_engine.tflite.python.interpreter`; TensorFlow's own interpreter does not
    register the LCE ops.
    """
    from larq_compute_engine.tflite.python.interpreter import Interpreter

    return Interpreter(flatbuffer, **options)
