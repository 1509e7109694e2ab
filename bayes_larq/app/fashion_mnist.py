"""Fashion-MNIST as NumPy arrays: the four IDX files, looked for where they are
installed, else TFDS; every place looked is named when none has them."""

from __future__ import annotations

import os
import warnings

import numpy as np

from bayes_larq.app.errors import DatasetError, DatasetNotFoundError, Setting
from bayes_larq.app.idx import read_idx
from bayes_larq.app.tfds_source import TFDS_DEFAULT_DIR_TEXT, TFDSUnavailable, tfds_load

__all__ = ["DEFAULT_FASHION_MNIST_DIR", "DOWNLOAD_HOST", "FASHION_MNIST_APT_COMMAND",
           "FASHION_MNIST_ENV", "find_files", "load_fashion_mnist", "local_files"]

FASHION_MNIST_ENV = "BAYES_LARQ_FASHION_MNIST_DIR"
DEFAULT_FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_APT_COMMAND = "apt-get install dataset-fashion-mnist"
DOWNLOAD_HOST = ("fashion-mnist.s3-website.eu-central-1.amazonaws.com", 80)
# TFDS data directory used for the Fashion-MNIST fallback (None: TFDS's default,
# $TFDS_DATA_DIR or ~/tensorflow_datasets).
_FASHION_TFDS_DATA_DIR = None

_FASHION_PREFIX = {"train": "train", "test": "t10k"}


def _idx_candidates(prefix, kind, rank):
    base = f"{prefix}-{kind}-idx{rank}-ubyte"
    return [f"{base}.gz", base, f"{prefix}-{kind}.idx{rank}-ubyte"]


def find_files(directory: str | os.PathLike, split: str
               ) -> tuple[tuple[str, str] | None, str | None]:
    """(images_path, labels_path), or (None, reason) if the directory lacks them."""
    if not os.path.isdir(directory):
        return None, "does not exist" if not os.path.exists(directory) else "not a directory"
    prefix = _FASHION_PREFIX[split]
    found, missing = [], []
    for kind, rank in (("images", 3), ("labels", 1)):
        names = _idx_candidates(prefix, kind, rank)
        hit = next((n for n in names if os.path.isfile(os.path.join(directory, n))), None)
        if hit is None:
            missing.append(f"{names[0]} (or {names[1]})")
        else:
            found.append(os.path.join(directory, hit))
    if missing:
        return None, f"no {' or '.join(missing)}"
    return tuple(found), None


def _read_fashion_files(images_path, labels_path):
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
        raise DatasetError(
            f"{images_path}: expected uint8 images of shape [N, 28, 28], "
            f"found {images.dtype} {images.shape}"
        )
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise DatasetError(
            f"{labels_path}: expected a 1-D uint8 label array, found {labels.dtype} {labels.shape}"
        )
    if len(labels) != len(images):
        raise DatasetError(
            f"{images_path} has {len(images)} images but {labels_path} has {len(labels)} labels"
        )
    if not len(labels):
        raise DatasetError(f"{images_path} holds no images (an IDX header without data); "
                           f"restore the file")
    if labels.max() >= 10:
        raise DatasetError(f"{labels_path}: label {int(labels.max())} outside 0..9")
    return images, labels.astype(np.int64)


def local_files(split: str = "train", data_dir: str | os.PathLike | None = None
                ) -> tuple[tuple[str, str] | None, list[str]]:
    """The IDX files `load_fashion_mnist` reads for `split`, from the first of `data_dir`,
    ``$BAYES_LARQ_FASHION_MNIST_DIR`` and the default directory that has them (None when
    none has them: TFDS is next), and every place looked, for the error message.

    Raises:
        DatasetError: `data_dir` or the variable names a directory without the files (a
            place the user named is never passed over silently).
    """
    if split not in _FASHION_PREFIX:
        raise ValueError(f"Unknown split {split!r} for dataset 'fashion_mnist'; valid splits: "
                         f"{', '.join(_FASHION_PREFIX)}.")
    env_dir = os.environ.get(FASHION_MNIST_ENV) or None
    places = [
        ("data_dir argument", None if data_dir is None else os.fspath(data_dir), "not given"),
        (f"${FASHION_MNIST_ENV}", env_dir, "not set"),
        ("default directory", DEFAULT_FASHION_MNIST_DIR, None),
    ]
    looked = []
    for label, directory, unset in places:
        if directory is None:
            looked.append(f"{label}: {unset}")
            continue
        files, reason = find_files(directory, split)
        if files is not None:
            return files, looked
        if unset is not None:
            raise DatasetError(
                f"Fashion-MNIST {split!r} is not in {directory} (the {label}): {reason}. "
                f"Put the four IDX files there, or name another directory.")
        looked.append(f"{label} {directory}: {reason}")
    return None, looked


def load_fashion_mnist(
    split: str = "train", data_dir: str | os.PathLike | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST as NumPy arrays: ``(images uint8 [N, 28, 28], labels int64 [N])``.

    A directory that has the files but holds corrupt data raises :class:`DatasetError` at
    once; if no place has the data, :class:`DatasetNotFoundError` names every place looked
    and how to install the dataset.

    Args:
      split: "train" (60,000 images) or "test" (10,000).
      data_dir: the directory of the IDX files of ``split``. Without it,
        ``$BAYES_LARQ_FASHION_MNIST_DIR``, then ``/usr/share/datasets/fashion-mnist``, then
        TFDS (``fashion_mnist``; downloads if online). A directory named by the argument or
        the variable must hold the files: it is an error, not a fallback, when it does not.

    >>> images, labels = load_fashion_mnist("test")   # doctest: +SKIP
    >>> images.shape, labels.shape   # doctest: +SKIP
    ((10000, 28, 28), (10000,))
    """
    files, looked = local_files(split, data_dir)
    if files is not None:
        return _read_fashion_files(*files)

    tfds_dir = _FASHION_TFDS_DATA_DIR or TFDS_DEFAULT_DIR_TEXT
    try:  # may download
        ds = tfds_load("fashion_mnist", split, data_dir=_FASHION_TFDS_DATA_DIR,
                       download_host=DOWNLOAD_HOST, batch_size=-1)
    except TFDSUnavailable as err:
        looked.append(f"TFDS 'fashion_mnist' in {tfds_dir}: {err}")
    else:
        import tensorflow_datasets as tfds

        images, labels = tfds.as_numpy(ds)
        warnings.warn(
            "Fashion-MNIST IDX files not found locally; using TFDS 'fashion_mnist'.",
            stacklevel=2,
        )
        return images.reshape(-1, 28, 28).astype(np.uint8), labels.astype(np.int64)

    filenames = ", ".join(
        _idx_candidates(_FASHION_PREFIX[split], kind, rank)[0]
        for kind, rank in (("images", 3), ("labels", 1))
    )
    raise DatasetNotFoundError(
        f"Fashion-MNIST ({split!r} split: {filenames}) was not found. Looked in:\n"
        + "".join(f"  {n}. {line}\n" for n, line in enumerate(looked, 1))
        + "To get it, do one of:\n"
        f"  * Debian/Ubuntu: `sudo {FASHION_MNIST_APT_COMMAND}` "
        f"(installs the IDX files in {DEFAULT_FASHION_MNIST_DIR});\n"
        "  * put the four IDX files (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz,\n"
        "    t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz) in a directory and set\n"
        f"    {FASHION_MNIST_ENV}=<dir> or pass ", Setting("data_dir", "<dir>"), ";\n"
        "  * with internet access, let TFDS download 'fashion_mnist'."
    )
