"""Every use of TensorFlow Lite / LCE internals in bayes_larq, each with why no public API does it.

The sibling of `bayes_larq._keras` for the converted model: when a TensorFlow or LCE
release moves one of these, this module is the only place to change.
"""

from __future__ import annotations

from typing import Any

__all__ = ["builtin_operator_names", "check_flatbuffer", "lce_interpreter", "tflite_model"]


def tflite_model(flatbuffer: bytes) -> Any:
    """The root `Model` table of a TFLite flatbuffer, for reading its operators.

    Why private: TensorFlow ships the flatbuffer schema bindings only as
    `tensorflow.lite.python.schema_py_generated`; the public `tf.lite.Interpreter` lists
    tensors, not the operator codes of every subgraph (custom LCE ops included).
    """
    from tensorflow.lite.python import schema_py_generated as schema

    return schema.Model.GetRootAsModel(bytearray(flatbuffer), 0)


def check_flatbuffer(flatbuffer: bytes) -> None:
    """Raise ValueError unless `flatbuffer` reads as a whole, consistent TFLite model.

    The interpreter trusts every offset and index of the file, so a truncated or
    byte-flipped one can crash the process; here each table is read in Python (where a
    bad offset raises) and each index is checked against what it points into.
    """
    if len(flatbuffer) < 8 or bytes(flatbuffer[4:8]) != b"TFL3":
        raise ValueError("not a TFLite flatbuffer (no TFL3 identifier)")
    from tensorflow.lite.python import schema_py_generated as schema

    try:
        model = schema.ModelT.InitFromObj(tflite_model(flatbuffer))
    except Exception as err:  # noqa: BLE001 - any failure to read a table is corruption
        raise ValueError(f"truncated or corrupt ({type(err).__name__} while reading "
                         f"it)") from None
    buffers, codes = model.buffers or [], model.operatorCodes or []
    for buffer in buffers:
        if buffer.offset > 1 and buffer.offset + buffer.size > len(flatbuffer):
            raise ValueError("a buffer lies beyond the end of the file (truncated)")
    if not model.subgraphs:
        raise ValueError("it holds no subgraph")
    for graph in model.subgraphs:
        tensors = graph.tensors or []
        _check_indices("tensor buffer", [t.buffer for t in tensors], len(buffers))
        used = [*_listed(graph.inputs), *_listed(graph.outputs)]
        for op in graph.operators or []:
            _check_indices("operator code", [op.opcodeIndex], len(codes))
            used += [*_listed(op.inputs), *_listed(op.outputs)]
        _check_indices("tensor", [i for i in used if i != -1], len(tensors))


def _listed(values):
    return [] if values is None else [int(v) for v in values]


def _check_indices(kind, indices, count):
    if any(not 0 <= index < count for index in indices):
        raise ValueError(f"a {kind} index is out of range (corrupt)")


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

    check_flatbuffer(flatbuffer)
    return Interpreter(flatbuffer, **options)
