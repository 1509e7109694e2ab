"""Make `tf.keras` the Keras 2 API (tf_keras) that Larq needs, or fail clearly.

`import larq` before `import bayes_larq` works only when TF_USE_LEGACY_KERAS=1 is set
before it (Larq reads `tf.keras` when it is imported); without it Larq fails to import
and a later `import bayes_larq` says why (`LARQ_FIRST_HELP`). A `.pth` hook that sets the
variable in every interpreter of the environment would hide the order but change
`tf.keras` for every program there, so the order is documented instead (README, and
"Import order" in docs/index.md).

TensorFlow resolves the attribute `tf.keras` lazily from the environment variable
`TF_USE_LEGACY_KERAS`, but fixes the import path of `tensorflow.keras.*` (which Larq
uses in `from tensorflow.keras... import`) when TensorFlow itself is imported. So if
TensorFlow came first, the guard also points that import path at tf_keras.
"""

import importlib
import os
import sys

__all__ = ["ensure_legacy_keras"]

LEGACY_KERAS_HELP = (
    "bayes_larq (like Larq) needs the Keras 2 API, but {what}. Set "
    "TF_USE_LEGACY_KERAS=1 before anything touches `tf.keras`: either "
    "`export TF_USE_LEGACY_KERAS=1` in the shell, or put "
    "`import os; os.environ['TF_USE_LEGACY_KERAS'] = '1'` (or `import bayes_larq`) "
    "at the very top of your script, before any use of `tf.keras`. "
    "The Keras 2 package is installed with `pip install tf-keras`."
)


LARQ_FIRST_HELP = (
    " Larq was imported before bayes_larq without TF_USE_LEGACY_KERAS=1, so TensorFlow "
    "loaded Keras 3 (and `import larq` failed inside Larq). Import bayes_larq before "
    "larq, or set TF_USE_LEGACY_KERAS=1 before the first import."
)


def _larq_imported_first() -> bool:
    """A failed `import larq` leaves its first submodules (larq.quantizers, ...) loaded."""
    return any(name == "larq" or name.startswith("larq.") for name in sys.modules)


def _keras3_modules_already_loaded():
    """`tensorflow.keras.*` modules imported earlier from Keras 3 instead of tf_keras."""
    return sorted(
        name for name, module in list(sys.modules.items())
        if name.startswith("tensorflow.keras.") and module is not None
        and "tf_keras" not in (getattr(module, "__file__", None) or "tf_keras")
    )


def _point_tensorflow_keras_imports_at_tf_keras(tf):
    legacy_api = importlib.import_module("tf_keras.api._v2.keras")
    parent = os.path.dirname(os.path.dirname(legacy_api.__file__))
    if tf.__path__[0] != parent:
        tf.__path__.insert(0, parent)


def ensure_legacy_keras():
    """Select tf_keras behind `tf.keras`; raise ImportError if Keras 3 is already bound."""
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    if os.environ["TF_USE_LEGACY_KERAS"] not in ("1", "true", "True"):
        raise ImportError(LEGACY_KERAS_HELP.format(
            what=f"TF_USE_LEGACY_KERAS is set to {os.environ['TF_USE_LEGACY_KERAS']!r}"))
    try:
        import tensorflow as tf
        _point_tensorflow_keras_imports_at_tf_keras(tf)
    except ModuleNotFoundError as error:
        raise ImportError(LEGACY_KERAS_HELP.format(what=f"it is missing ({error})")) from error
    layer_module = tf.keras.layers.Layer.__module__
    if not layer_module.startswith("tf_keras"):
        raise ImportError(LEGACY_KERAS_HELP.format(
            what=f"`tf.keras` already resolved to Keras 3 ({layer_module})")
            + (LARQ_FIRST_HELP if _larq_imported_first() else ""))
    stale = _keras3_modules_already_loaded()
    if stale:
        raise ImportError(LEGACY_KERAS_HELP.format(
            what=f"Keras 3 modules were already imported as {', '.join(stale[:3])}"))
