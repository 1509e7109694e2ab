"""The notebooks in examples/ run top to bottom (fast mode) and are stored without outputs.

Jupyter is not needed: each notebook's JSON is parsed and its code cells are `exec`ed in
order in one namespace, as a kernel would run them. IPython-only lines (`!shell`,
`%magic`) are blanked out, and cells that start with a cell magic (`%%...`) are skipped.
"""

import bayes_larq  # noqa: F401  - selects tf_keras before TensorFlow is touched

import json
import os
import pathlib

import matplotlib
import numpy as np
import pytest

from bayes_larq import convert
from bayes_larq.app import data, report
from fashion_files import write_fashion_dir

EXAMPLES = pathlib.Path(__file__).parents[1] / "examples"
NOTEBOOKS = sorted(EXAMPLES.glob("*.ipynb"))
IPYTHON_ONLY = ("!", "%")
FAST_EXAMPLES = 512  # the notebooks' fast-mode limit on training and test images


def read_notebook(path):
    return json.loads(path.read_text())


def cell_source(cell):
    source = cell["source"]
    return source if isinstance(source, str) else "".join(source)


def python_cells(notebook):
    """(index, source) of every code cell, IPython-only lines blanked (line numbers kept)."""
    found = []
    for index, cell in enumerate(notebook["cells"]):
        if cell["cell_type"] != "code":
            continue
        lines = cell_source(cell).splitlines()
        if lines and lines[0].lstrip().startswith("%%"):
            continue  # a cell magic: the whole cell is not Python
        kept = ["" if line.lstrip().startswith(IPYTHON_ONLY) else line for line in lines]
        found.append((index, "\n".join(kept) + "\n"))
    return found


def run_notebook(path):
    """Exec the code cells of `path` in order in one namespace; returns the namespace."""
    namespace = {"__name__": "__main__"}
    for index, source in python_cells(read_notebook(path)):
        try:
            exec(compile(source, f"{path.name}, cell {index}", "exec"), namespace)
        except Exception as error:
            error.add_note(f"raised by code cell {index} of {path}:\n{source}")
            raise
    return namespace


def real_fashion_mnist_dir():
    """A local directory with the real Fashion-MNIST IDX files, or None."""
    for directory in (os.environ.get(data.FASHION_MNIST_ENV), data.DEFAULT_FASHION_MNIST_DIR):
        if directory and all(data._find_fashion_files(directory, split)[0] is not None
                             for split in ("train", "test")):
            return directory
    return None


def test_examples_has_the_quickstart_notebook():
    assert EXAMPLES / "quickstart.ipynb" in NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.name)
def test_notebook_is_stored_without_outputs(path):
    notebook = read_notebook(path)
    assert notebook["nbformat"] == 4
    assert notebook["metadata"]["kernelspec"]["language"] == "python"
    assert python_cells(notebook), f"{path.name} has no code cells"
    for index, cell in enumerate(notebook["cells"]):
        assert cell["cell_type"] in ("markdown", "code", "raw"), index
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [], f"cell {index} has stored outputs; clear them"
            assert cell["execution_count"] is None, f"cell {index} has an execution count"
        else:
            assert "outputs" not in cell and "attachments" not in cell, index


def check_quickstart(namespace, real_data):
    """What the quickstart promises, recomputed here from what it left in its namespace."""
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

    # The latent-weight plot was drawn, with the fitted mixture over the histogram.
    plt = matplotlib.pyplot
    axes = {axis.get_title(): axis for number in plt.get_fignums()
            for axis in plt.figure(number).axes}
    title = next(t for t in axes if t.startswith(f"{namespace['LAYER']} (end)"))
    assert axes[title].patches and axes[title].lines
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


@pytest.mark.filterwarnings("ignore:FigureCanvasAgg is non-interactive")
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.name)
def test_notebook_runs_in_fast_mode(path, monkeypatch, tmp_path):
    monkeypatch.setenv("BAYES_LARQ_FAST", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.chdir(tmp_path)  # whatever a notebook writes lands in tmp_path
    real_dir = real_fashion_mnist_dir()
    if real_dir is None:  # no local data (and no download): Fashion-MNIST-shaped noise
        write_fashion_dir(tmp_path / "fashion", n_train=FAST_EXAMPLES, n_test=FAST_EXAMPLES)
        monkeypatch.setenv(data.FASHION_MNIST_ENV, str(tmp_path / "fashion"))
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.close("all")
    try:
        namespace = run_notebook(path)
        if path.name in CHECKS:
            CHECKS[path.name](namespace, real_data=real_dir is not None)
    finally:
        plt.close("all")
