"""Fixtures shared by the test modules."""

import pytest

from bayes_larq.app import fashion_mnist, tfds_source
from fashion_files import write_fashion_dir


@pytest.fixture
def no_fashion_anywhere(monkeypatch, tmp_path):
    """No default directory, no env var, and TFDS offline with nothing prepared."""
    monkeypatch.setattr(fashion_mnist, "DEFAULT_FASHION_MNIST_DIR", str(tmp_path / "no-default"))
    monkeypatch.delenv(fashion_mnist.FASHION_MNIST_ENV, raising=False)
    monkeypatch.setattr(fashion_mnist, "_FASHION_TFDS_DATA_DIR", str(tmp_path / "tfds"))
    monkeypatch.setattr(tfds_source, "_probably_online", lambda host, port, timeout=3.0: False)
    return tmp_path


@pytest.fixture(scope="session")
def fashion_dir(tmp_path_factory):
    """A tiny Fashion-MNIST-like IDX directory: 96 training and 40 test images."""
    directory = tmp_path_factory.mktemp("fashion")
    write_fashion_dir(directory, n_train=96, n_test=40)
    return directory
