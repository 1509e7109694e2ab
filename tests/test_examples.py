"""The notebooks in examples/: stored with the outputs of a full run, and they run (fast).

Users browse the notebooks before installing anything, so they are committed with the
outputs of a full run (`python examples/run_notebooks.py`). Here each one is executed in
fast mode (BAYES_LARQ_FAST=1) by nbclient in a fresh Jupyter kernel, on an in-memory copy
(the stored outputs are never rewritten); a last cell appended to the copy checks, inside
that kernel, what the notebook computed.
"""

import bayes_larq  # noqa: F401  - selects tf_keras before TensorFlow is touched

import inspect
import os
import pathlib

import nbformat
import pytest
from nbclient import NotebookClient

from bayes_larq.app import data, fashion_mnist
from fashion_files import write_fashion_dir

EXAMPLES = pathlib.Path(__file__).parents[1] / "examples"
NOTEBOOKS = sorted(EXAMPLES.glob("*.ipynb"))
FAST_EXAMPLES = 512  # the notebooks' fast-mode limit on training and test images


def real_fashion_mnist_dir():
    """A local directory with the real Fashion-MNIST IDX files, or None."""
    for directory in (os.environ.get(data.FASHION_MNIST_ENV), data.DEFAULT_FASHION_MNIST_DIR):
        if directory and all(fashion_mnist.find_files(directory, split)[0] is not None
                             for split in ("train", "test")):
            return directory
    return None


def test_examples_has_the_quickstart_notebook():
    assert EXAMPLES / "quickstart.ipynb" in NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.name)
def test_notebook_is_stored_with_the_outputs_of_a_full_run(path):
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    full_run = notebook.metadata["bayes_larq"]["full_run"]
    assert full_run["seconds"] > 0
    assert "**Stored outputs.**" in notebook.cells[0].source
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code and all(cell.execution_count is not None for cell in code)
    assert not any(output.get("output_type") == "error" for cell in code for output in cell.outputs)
    images = [output for cell in code for output in cell.outputs
              if "image/png" in output.get("data", {})]
    assert images, "a notebook users browse shows its plots"
    outputs = "".join(output.get("text", "") for cell in code for output in cell.outputs)
    assert "FAST" not in outputs or "FAST = False" in outputs or "fast" not in outputs


def check_quickstart(namespace, real_data):  # noqa: F821 - runs in the notebook's kernel
    """What the quickstart promises, recomputed from what it left in its namespace.

    Runs inside the notebook's kernel (`check_cell`), where CHECK_IMPORTS defines np,
    convert and report.
    """
    assert namespace["FAST"] is True
    classifier = namespace["bonn"].classifier
    assert classifier.get_layer("stem_conv").filters == namespace["WIDTH"] < 32
    x_test, y_test = namespace["x_test"], namespace["y_test"]
    assert x_test.shape == (FAST_EXAMPLES, 28, 28, 1) and y_test.shape == (FAST_EXAMPLES,)

    # Training logged the four loss terms; the total is the sum of the parts.
    logs = namespace["history"].history
    for term in ("loss", "ce_loss", "kernel_loss", "feature_loss", "val_accuracy"):
        assert len(logs[term]) == namespace["EPOCHS"] == 1 and np.isfinite(logs[term][-1]), term
    assert logs["kernel_loss"][-1] > 0 and logs["feature_loss"][-1] != 0
    parts = logs["ce_loss"][-1] + logs["kernel_loss"][-1] + logs["feature_loss"][-1]
    assert logs["loss"][-1] == pytest.approx(parts, rel=1e-5)
    assert 0 <= logs["unit2_conv/bimodality"][-1] <= 1  # MixtureMonitor's statistics

    # The reported test accuracy is the classifier's, on the same images.
    keras_logits = classifier.predict(x_test, verbose=0)
    accuracy = np.mean(keras_logits.argmax(-1) == y_test)
    assert namespace["test_accuracy"] == pytest.approx(accuracy, abs=1e-6)
    if real_data:
        assert accuracy > 0.15  # chance is 0.1 (std 0.013 on 512 images); 16 steps give ~0.2

    assert set(report.binarized_kernels(classifier)) == {
        "unit1_conv", "unit2_conv", "unit3_conv", "unit4_conv"}

    # The flatbuffer runs the four binary convolutions as LCE binary ops and agrees with
    # Keras on the test images.
    flatbuffer = namespace["flatbuffer"]
    census = convert.op_census(flatbuffer)
    assert census["LceBconv2d"] == 4 and census["LceQuantize"] >= 4
    assert census == namespace["census"]
    tflite_logits = convert.tflite_predict(flatbuffer, x_test).reshape(keras_logits.shape)
    agreement = np.mean(tflite_logits.argmax(-1) == keras_logits.argmax(-1))
    assert agreement >= 0.99
    assert namespace["agreement"].samples == FAST_EXAMPLES
    assert namespace["agreement"].top1_agreement >= 0.99
    assert 0 < namespace["latency"] < 1e3 and 0 < namespace["float_latency"] < 1e3


CHECKS = {"quickstart.ipynb": check_quickstart}
CHECK_IMPORTS = """\
import numpy as np
import pytest
from bayes_larq import convert
from bayes_larq.app import report
FAST_EXAMPLES = {fast}
"""


def check_cell(name, real_data):
    """Source of a cell that runs the notebook's check in its own kernel."""
    check = CHECKS[name]
    return (CHECK_IMPORTS.format(fast=FAST_EXAMPLES) + inspect.getsource(check)
            + f"\n{check.__name__}(globals(), real_data={real_data})\n")


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.name)
def test_notebook_runs_in_fast_mode(path, monkeypatch, tmp_path):
    monkeypatch.setenv("BAYES_LARQ_FAST", "1")
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's inline backend draws PNGs
    real_dir = real_fashion_mnist_dir()
    if real_dir is None:  # no local data (and no download): Fashion-MNIST-shaped noise
        write_fashion_dir(tmp_path / "fashion", n_train=FAST_EXAMPLES, n_test=FAST_EXAMPLES)
        monkeypatch.setenv(data.FASHION_MNIST_ENV, str(tmp_path / "fashion"))
    notebook = nbformat.read(path, as_version=4)
    if path.name in CHECKS:
        notebook.cells.append(nbformat.v4.new_code_cell(
            check_cell(path.name, real_data=real_dir is not None)))
    # Whatever a notebook writes lands in tmp_path; the stored notebook is not touched.
    NotebookClient(notebook, timeout=1200, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    plots = [cell for cell in notebook.cells if cell.cell_type == "code"
             and any("image/png" in output.get("data", {}) for output in cell.outputs)]
    assert plots, f"{path.name} drew no plot in fast mode"
