"""Importing bayes_larq selects tf_keras, or explains what to do when it cannot."""

import os
import subprocess
import sys

import pytest


def run_python(code):
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.parametrize("prelude", ["", "import tensorflow as tf"])
def test_import_selects_keras_2_whether_or_not_tensorflow_came_first(prelude):
    result = run_python(
        f"{prelude}\nimport bayes_larq, larq, tensorflow as tf\n"
        "from tensorflow.keras.optimizers.legacy import Optimizer\n"
        "print(tf.keras.layers.Layer.__module__, Optimizer.__module__)"
    )
    assert result.returncode == 0, result.stderr[-2000:]
    layer_module, optimizer_module = result.stdout.split()[-2:]
    assert layer_module.startswith("tf_keras") and optimizer_module.startswith("tf_keras")


def test_keras_3_already_bound_gives_instructions():
    result = run_python("import tensorflow as tf\ntf.keras.layers.Dense\nimport bayes_larq")
    assert result.returncode != 0
    message = result.stderr.strip().splitlines()[-1]
    assert "ImportError" in message and "Keras 3" in message
    assert "TF_USE_LEGACY_KERAS=1" in message and "pip install tf-keras" in message


def test_explicitly_disabled_legacy_keras_is_reported():
    result = run_python("import os\nos.environ['TF_USE_LEGACY_KERAS'] = '0'\nimport bayes_larq")
    assert result.returncode != 0
    assert "TF_USE_LEGACY_KERAS is set to '0'" in result.stderr


def test_larq_first_works_with_the_variable_and_is_explained_without_it():
    with_variable = run_python("import os\nos.environ['TF_USE_LEGACY_KERAS'] = '1'\n"
                               "import larq, bayes_larq\nprint(bayes_larq.BayesianSign)")
    assert with_variable.returncode == 0, with_variable.stderr[-2000:]
    without = run_python("try:\n    import larq\nexcept AttributeError:\n    pass\n"
                         "import bayes_larq")
    assert without.returncode != 0
    message = without.stderr.strip().splitlines()[-1]
    assert "Larq was imported before bayes_larq" in message
    assert "Import bayes_larq before larq, or set TF_USE_LEGACY_KERAS=1" in message
