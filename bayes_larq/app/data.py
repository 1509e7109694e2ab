"""Datasets: Fashion-MNIST from local IDX files (or TFDS), CIFAR-10/100 and ImageNet via TFDS.

Everything a training run needs goes through :func:`load`, which returns a batched
``tf.data.Dataset`` of ``(float32 images, int64 labels)``::

    import bayes_larq
    from bayes_larq.app import data

    ds = data.load("fashion_mnist", "train", batch_size=128, training=True, limit=512)
    images, labels = next(iter(ds))      # (128, 28, 28, 1) float32 in [-1, 1], (128,) int64

What differs between datasets is data, a :class:`DatasetSpec` in :data:`DATASETS`;
:func:`load` has no per-dataset code.

Where the data comes from
-------------------------
* **Fashion-MNIST** is read from the four IDX files of the original distribution
  (``train-images-idx3-ubyte.gz``, ``train-labels-idx1-ubyte.gz``,
  ``t10k-images-idx3-ubyte.gz``, ``t10k-labels-idx1-ubyte.gz``; gzipped or not). They are
  looked for, in this order, in the ``data_dir`` argument, in the directory named by the
  environment variable ``BAYES_LARQ_FASHION_MNIST_DIR``, in
  ``/usr/share/datasets/fashion-mnist`` (Debian/Ubuntu: ``apt-get install
  dataset-fashion-mnist``), and finally through TFDS (``fashion_mnist``, downloaded into the
  TFDS data directory: ``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``). If all fail,
  :class:`DatasetNotFoundError` lists every place looked and how to install the data.
* **CIFAR-10, CIFAR-100, ImageNet (``imagenet2012``)** come from TFDS; ``data_dir`` is the
  TFDS data directory. ImageNet cannot be downloaded automatically: TFDS needs the
  ILSVRC2012 tar files in ``<data_dir>/downloads/manual/``.
  Before downloading, TFDS is first asked for an already prepared copy; a download is only
  attempted when the download server is reachable, so an offline machine gets a clear error
  within seconds instead of minutes of retries.

Preprocessing and normalisation
-------------------------------
========================  ===========================================  =====================================
dataset                   training (``training=True``)                 evaluation (``training=False``)
========================  ===========================================  =====================================
fashion_mnist             none (``augment=True``: zero-pad 2 px,      none
                          random 28x28 crop, random horizontal flip)
cifar10 / cifar100        zero-pad 4 px, random 32x32 crop,            none
                          random horizontal flip
imagenet2012              random resized crop (area 0.08-1 of the      shorter side resized to
                          image, aspect ratio 3/4-4/3) to              ``round(image_size * 256 / 224)``,
                          ``image_size`` (default 224), random         centre crop ``image_size``
                          horizontal flip
========================  ===========================================  =====================================

``load(..., augment=...)`` overrides the dataset's default (the training column): True
augments Fashion-MNIST too, False trains on the images as evaluated.

Pixel values ``x`` (0..255) are then normalised:

* Fashion-MNIST: ``x / 127.5 - 1`` (range [-1, 1]).
* CIFAR and ImageNet: per channel ``(x / 255 - mean) / std`` with the constants in
  :data:`CIFAR10_MEAN`, :data:`CIFAR10_STD`, :data:`CIFAR100_MEAN`, :data:`CIFAR100_STD`,
  :data:`IMAGENET_MEAN`, :data:`IMAGENET_STD` (channel order R, G, B). The CIFAR constants
  are the mean and standard deviation of all pixels of the respective training set; the
  ImageNet ones are the usual torchvision constants.

Determinism
-----------
For a fixed ``shuffle_seed`` (and a fixed global seed, ``tf.random.set_seed``, if one is
set), the batches of the k-th pass over a dataset returned by :func:`load` are the same in
every process and for every dataset object built with the same arguments:

* the example order is fixed: TFDS files are read without file shuffling, except ImageNet
  training without ``limit``, whose files are shuffled with ``ReadConfig(shuffle_seed=...)``;
* ``Dataset.shuffle(buffer, seed=shuffle_seed, reshuffle_each_iteration=True)`` gives a
  different, but seed-determined, order on every pass;
* augmentation uses only stateless random ops (``tf.image.stateless_*``). Their seeds come
  from ``tf.data.Dataset.random(seed=shuffle_seed + 1_000_003,
  rerandomize_each_iteration=True)`` zipped with the shuffled examples, so the seed of an
  example depends only on ``shuffle_seed``, the pass number and its position in the pass -
  not on thread scheduling;
* every map runs with ``num_parallel_calls=tf.data.AUTOTUNE, deterministic=True`` and the
  dataset carries ``tf.data.Options().deterministic = True``.

"The k-th pass" counts ``iter(dataset)`` calls: the shuffle and the augmentation seeds
advance each time an iterator is created (Keras' ``fit`` creates one per epoch, plus one
extra before the first epoch). A run that is resumed with a new dataset object starts
again at pass 0. For resumable training, build one dataset per epoch with
``load(..., epoch=e)`` instead (what ``bayes-larq train`` does): its order and augmentation
depend only on ``(shuffle_seed, e)``, and every iterator over it yields the same batches.
"""

from __future__ import annotations

import gzip
import math
import numbers
import os
import socket
import struct
import urllib.request
import warnings
import zlib
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Callable, Mapping

import numpy as np

from bayes_larq.defaults import check_integer

if TYPE_CHECKING:
    import tensorflow as tf

__all__ = [
    "CIFAR100_MEAN", "CIFAR100_STD", "CIFAR10_MEAN", "CIFAR10_STD", "DATASETS",
    "DEFAULT_FASHION_MNIST_DIR", "DatasetError", "DatasetInfo", "DatasetNotFoundError",
    "DatasetSpec", "FASHION_MNIST_APT_COMMAND", "FASHION_MNIST_ENV", "IMAGENET_MEAN",
    "IMAGENET_STD", "check_augment", "dataset_info", "epoch_seed", "load", "load_fashion_mnist",
    "read_idx", "validate_split",
]

FASHION_MNIST_ENV = "BAYES_LARQ_FASHION_MNIST_DIR"
DEFAULT_FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_APT_COMMAND = "apt-get install dataset-fashion-mnist"

#: Per-channel (R, G, B) mean / standard deviation of the CIFAR-10 training pixels, in [0, 1].
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
#: Per-channel (R, G, B) mean / standard deviation of the CIFAR-100 training pixels, in [0, 1].
CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)
#: Per-channel (R, G, B) ImageNet mean / standard deviation (torchvision constants), in [0, 1].
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

CIFAR_PAD = 4
FASHION_MNIST_PAD = 2
IMAGENET_DEFAULT_SIZE = 224
IMAGENET_CROP_AREA = (0.08, 1.0)
IMAGENET_CROP_RATIO = (3.0 / 4.0, 4.0 / 3.0)
# Offset between the shuffle seed and the augmentation seed stream, so that the two
# Philox streams are not the same numbers.
_AUGMENT_SEED_OFFSET = 1_000_003


class DatasetError(ValueError):
    """A dataset file exists but is corrupt, truncated or not what it should be."""


class DatasetNotFoundError(FileNotFoundError):
    """A dataset is not available anywhere it was looked for."""


# --------------------------------------------------------------------------- preprocessing


def _tf():
    import bayes_larq  # noqa: F401  - selects tf_keras before TensorFlow is used
    import tensorflow as tf

    return tf


def _seeds(seed, n):
    """``n`` independent stateless seeds (shape [n, 2]) from one int64 scalar."""
    tf = _tf()
    return tf.random.experimental.stateless_split(
        tf.stack([seed, tf.constant(0, tf.int64)]), num=n
    )


def _pad_crop_flip(pad):
    """Zero-pad by ``pad``, random ``size`` x ``size`` crop, random horizontal flip (uint8
    in and out): the augmentation of CIFAR (pad 4) and, on request, Fashion-MNIST (pad 2)."""

    def augment(image, seed, size):
        tf = _tf()
        crop_seed, flip_seed = tf.unstack(_seeds(seed, 2))
        image = tf.pad(image, [[pad, pad], [pad, pad], [0, 0]])
        channels = image.shape[-1]
        image = tf.image.stateless_random_crop(image, [size, size, channels], seed=crop_seed)
        return tf.image.stateless_random_flip_left_right(image, seed=flip_seed)

    return augment


def _imagenet_train(encoded, seed, size):
    """Random resized crop of a JPEG (area 0.08-1, ratio 3/4-4/3) + flip, float32 0..255."""
    tf = _tf()
    box_seed, flip_seed = tf.unstack(_seeds(seed, 2))
    shape = tf.io.extract_jpeg_shape(encoded)
    whole_image = tf.constant([0.0, 0.0, 1.0, 1.0], tf.float32, shape=[1, 1, 4])
    begin, crop_size, _ = tf.image.stateless_sample_distorted_bounding_box(
        shape, whole_image, seed=box_seed, min_object_covered=0.0,  # area range bounds it
        aspect_ratio_range=IMAGENET_CROP_RATIO, area_range=IMAGENET_CROP_AREA,
        max_attempts=10, use_image_if_no_bounding_boxes=True,
    )  # after 10 failed attempts the whole image is used
    window = tf.stack([begin[0], begin[1], crop_size[0], crop_size[1]])
    image = tf.io.decode_and_crop_jpeg(encoded, window, channels=3)
    image = tf.image.resize(image, [size, size], method="bilinear", antialias=True)
    image = tf.image.stateless_random_flip_left_right(image, seed=flip_seed)
    return tf.ensure_shape(image, [size, size, 3])


def _imagenet_eval(encoded, size):
    """Resize the shorter side to round(size * 256 / 224), centre crop size x size."""
    tf = _tf()
    image = tf.io.decode_jpeg(encoded, channels=3)
    resize_min = int(round(size * 256 / 224))
    hw = tf.cast(tf.shape(image)[:2], tf.float32)
    new_hw = tf.cast(tf.round(hw * (resize_min / tf.reduce_min(hw))), tf.int32)
    new_hw = tf.maximum(new_hw, resize_min)
    image = tf.image.resize(image, new_hw, method="bilinear", antialias=True)
    top, left = (new_hw[0] - size) // 2, (new_hw[1] - size) // 2
    image = image[top : top + size, left : left + size, :]
    return tf.ensure_shape(image, [size, size, 3])


# --------------------------------------------------------------------------- dataset specs

_STANDARD_SPLITS = MappingProxyType({"train": "train", "holdout": "train", "test": "test"})


@dataclass(frozen=True)
class DatasetSpec:
    """Everything :func:`load` needs to know about one dataset (a row of :data:`DATASETS`).

    Args:
      name, num_classes, input_shape, train_examples, test_examples: static facts;
        ``input_shape`` is what :func:`load` yields (ImageNet: at the default image size).
      source: "idx" (IDX files, else TFDS: :func:`load_fashion_mnist`) or "tfds".
      shuffle_buffer: training shuffle buffer in examples (capped at the split's size).
      splits: accepted split name -> the stored split it reads.
      download_host: (host, port) probed before TFDS downloads; None: not probed.
      mean, std: per channel (R, G, B), in [0, 1]: images become ``(x / 255 - mean) / std``;
        None: ``x / 127.5 - 1``.
      train_preprocess, eval_preprocess: per example, ``(image, seed, size)`` (augmentation)
        and ``(image, size)`` -> pixel values 0..255; None: the image as stored.
      augments_by_default: training data goes through ``train_preprocess`` unless
        :func:`load` is told otherwise (``augment``).
      encoded: TFDS yields JPEG bytes, decoded by the preprocessing (after the shuffle).
      shuffle_files: training without ``limit`` reads the TFDS files in a seeded order.
      resizable: ``image_size`` may differ from ``input_shape``.
      missing_hint: appended to the :class:`DatasetNotFoundError` of a TFDS dataset.
    """

    name: str
    num_classes: int
    input_shape: tuple[int, int, int]
    train_examples: int
    test_examples: int
    source: str
    shuffle_buffer: int
    splits: Mapping[str, str] = field(default_factory=lambda: _STANDARD_SPLITS, hash=False)
    download_host: tuple[str, int] | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    train_preprocess: Callable[..., Any] | None = None
    eval_preprocess: Callable[..., Any] | None = None
    augments_by_default: bool = True
    encoded: bool = False
    shuffle_files: bool = False
    resizable: bool = False
    missing_hint: str = " With internet access TFDS downloads it into data_dir."


#: The former name of :class:`DatasetSpec`, whose first five fields it had.
DatasetInfo = DatasetSpec

# Shuffle buffers: CIFAR/Fashion-MNIST the whole training set (a full shuffle); ImageNet
# 10,000 JPEG-encoded examples (about 1.1 GB), and its files are shuffled every pass.
DATASETS = {
    spec.name: spec
    for spec in (
        DatasetSpec("fashion_mnist", 10, (28, 28, 1), 60_000, 10_000, source="idx",
                    shuffle_buffer=60_000, train_preprocess=_pad_crop_flip(FASHION_MNIST_PAD),
                    augments_by_default=False,
                    download_host=("fashion-mnist.s3-website.eu-central-1.amazonaws.com", 80)),
        DatasetSpec("cifar10", 10, (32, 32, 3), 50_000, 10_000, source="tfds",
                    shuffle_buffer=50_000, download_host=("www.cs.toronto.edu", 443),
                    mean=CIFAR10_MEAN, std=CIFAR10_STD, train_preprocess=_pad_crop_flip(CIFAR_PAD)),
        DatasetSpec("cifar100", 100, (32, 32, 3), 50_000, 10_000, source="tfds",
                    shuffle_buffer=50_000, download_host=("www.cs.toronto.edu", 443),
                    mean=CIFAR100_MEAN, std=CIFAR100_STD, train_preprocess=_pad_crop_flip(CIFAR_PAD)),
        # test_examples: the labelled validation set; TFDS's "test" split has no labels,
        # so "test" reads "validation" too.
        DatasetSpec("imagenet2012", 1000, (IMAGENET_DEFAULT_SIZE, IMAGENET_DEFAULT_SIZE, 3),
                    1_281_167, 50_000, source="tfds", shuffle_buffer=10_000,
                    splits=MappingProxyType({"train": "train", "holdout": "train",
                                             "validation": "validation", "test": "validation"}),
                    mean=IMAGENET_MEAN, std=IMAGENET_STD, train_preprocess=_imagenet_train,
                    eval_preprocess=_imagenet_eval, encoded=True, shuffle_files=True,
                    resizable=True, missing_hint=(
                        " ImageNet cannot be downloaded automatically: put "
                        "ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar in "
                        "<data_dir>/downloads/manual/ and run again (see the TFDS "
                        "'imagenet2012' page).")),
    )
}

# TFDS data directory used for the Fashion-MNIST fallback (None: TFDS's default,
# $TFDS_DATA_DIR or ~/tensorflow_datasets).
_FASHION_TFDS_DATA_DIR = None
_TFDS_DEFAULT_DIR_TEXT = "the TFDS data directory ($TFDS_DATA_DIR or ~/tensorflow_datasets)"


# --------------------------------------------------------------------------- names


def dataset_info(name: str) -> DatasetSpec:
    """The :class:`DatasetSpec` of ``name``; ValueError listing the valid names otherwise.

    Args:
      name: a key of :data:`DATASETS`.

    >>> dataset_info("cifar100").num_classes
    100
    """
    if not isinstance(name, str) or name not in DATASETS:
        raise ValueError(f"Unknown dataset {name!r}; valid names: {', '.join(sorted(DATASETS))}.")
    return DATASETS[name]


def validate_split(name: str, split: str) -> str:
    """Check ``split`` for dataset ``name`` and return the stored (TFDS) split it reads.

    Valid splits are ``"train"``, ``"holdout"`` (the last examples of the training split,
    see :func:`load`) and ``"test"``; ImageNet also accepts ``"validation"``, and its
    ``"test"`` means the labelled validation set.

    Args:
      name: a key of :data:`DATASETS`.
      split: the split asked for.

    >>> validate_split("imagenet2012", "test")
    'validation'
    """
    splits = dataset_info(name).splits
    if not isinstance(split, str) or split not in splits:
        raise ValueError(f"Unknown split {split!r} for dataset {name!r}; valid splits: "
                         f"{', '.join(splits)}.")
    return splits[split]


# --------------------------------------------------------------------------- IDX

# IDX data type codes (third byte of the magic number) -> big-endian NumPy dtype.
_IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (the MNIST / Fashion-MNIST format), gzipped or raw, into NumPy.

    Layout: magic ``00 00 <dtype code> <ndim>``, then ``ndim`` big-endian uint32 sizes, then
    the big-endian data in C order. Gzip is recognised by content, not by file name. The
    file must hold exactly ``prod(sizes)`` values; anything else (bad gzip stream, wrong
    magic, unknown dtype code, truncated or over-long data) raises :class:`DatasetError`
    naming the file and the problem. Returns a writable array in native byte order.

    Args:
      path: the IDX file.

    >>> import os, tempfile
    >>> p = os.path.join(tempfile.mkdtemp(), "x.idx")
    >>> _ = open(p, "wb").write(bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 8, 9]))
    >>> read_idx(p)
    array([7, 8, 9], dtype=uint8)
    """
    path = os.fspath(path)
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(raw)
        except (EOFError, OSError, zlib.error) as err:
            raise DatasetError(
                f"{path}: corrupt or truncated gzip data ({type(err).__name__}: {err})"
            ) from err
    else:
        data = raw
    if len(data) < 4:
        raise DatasetError(
            f"{path}: truncated IDX file: {len(data)} bytes, shorter than the 4-byte magic number"
        )
    if data[0] != 0 or data[1] != 0:
        raise DatasetError(
            f"{path}: not an IDX file: magic number {data[:4].hex()} does not start with "
            "0000 (IDX magic is 00 00 <type code> <number of dimensions>)"
        )
    code, ndim = data[2], data[3]
    if code not in _IDX_DTYPES:
        valid = ", ".join(f"0x{c:02x} ({d.name})" for c, d in _IDX_DTYPES.items())
        raise DatasetError(f"{path}: unknown IDX data type code 0x{code:02x}; valid: {valid}")
    if ndim == 0:
        raise DatasetError(f"{path}: IDX header declares 0 dimensions")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DatasetError(
            f"{path}: truncated IDX header: {ndim} dimensions need {header} header bytes, "
            f"the file has {len(data)}"
        )
    shape = struct.unpack(f">{ndim}I", data[4:header])
    dtype = _IDX_DTYPES[code]
    count = math.prod(shape)
    expected = count * dtype.itemsize
    found = len(data) - header
    if found != expected:
        what = "truncated" if found < expected else "too long"
        raise DatasetError(
            f"{path}: {what}: header declares shape {shape} of {dtype.name} "
            f"({expected} data bytes), but {found} data bytes follow the header"
        )
    array = np.frombuffer(data, dtype=dtype, count=count, offset=header).reshape(shape)
    return array.astype(dtype.newbyteorder("="))  # copy: native order and writable


# --------------------------------------------------------------------------- Fashion-MNIST

_FASHION_PREFIX = {"train": "train", "test": "t10k"}


def _idx_candidates(prefix, kind, rank):
    base = f"{prefix}-{kind}-idx{rank}-ubyte"
    return [f"{base}.gz", base, f"{prefix}-{kind}.idx{rank}-ubyte"]


def _find_fashion_files(directory, split):
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
    validate_split("fashion_mnist", split)
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
        files, reason = _find_fashion_files(directory, split)
        if files is not None:
            return _read_fashion_files(*files)
        if unset is not None:  # a directory the user named: never fall back silently
            raise DatasetError(
                f"Fashion-MNIST {split!r} is not in {directory} (the {label}): {reason}. "
                f"Put the four IDX files there, or name another directory.")
        looked.append(f"{label} {directory}: {reason}")

    tfds_dir = _FASHION_TFDS_DATA_DIR or _TFDS_DEFAULT_DIR_TEXT
    try:  # may download
        ds = _tfds_load("fashion_mnist", split, data_dir=_FASHION_TFDS_DATA_DIR, batch_size=-1)
    except _TFDSUnavailable as err:
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
        f"    {FASHION_MNIST_ENV}=<dir> or pass --data-dir <dir> (data_dir=<dir>);\n"
        "  * with internet access, let TFDS download 'fashion_mnist'."
    )


# --------------------------------------------------------------------------- TFDS


class _TFDSUnavailable(Exception):
    """TFDS could not provide a dataset (not installed, not prepared and offline, ...)."""


def _probably_online(host, port, timeout=3.0):
    """False if the download host is certainly unreachable (no proxy, connection fails)."""
    if urllib.request.getproxies():
        return True  # cannot tell through a proxy; let TFDS try
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _tfds_load(name, split, data_dir=None, **kwargs):
    """``tfds.load(name, split=split, as_supervised=True, ...)``, or raise _TFDSUnavailable.

    An already prepared dataset is used as is. Otherwise a download is only attempted when
    the download server answers (or a proxy is configured), because TFDS retries an
    unreachable server for minutes before it gives up.
    """
    try:
        import tensorflow_datasets as tfds
    except ImportError as err:
        raise _TFDSUnavailable(
            f"tensorflow-datasets is not installed ({err}); `pip install tensorflow-datasets`"
        ) from err
    kwargs = dict(split=split, data_dir=data_dir, as_supervised=True, **kwargs)
    try:
        return tfds.load(name, download=False, **kwargs)
    except AssertionError:
        pass  # TFDS's signal for "not prepared in data_dir"
    host = DATASETS[name].download_host if name in DATASETS else None
    if host is not None and not _probably_online(*host):
        raise _TFDSUnavailable(
            f"not prepared there, and the download server {host[0]} is unreachable (offline?)"
        )
    try:
        return tfds.load(name, download=True, **kwargs)
    except Exception as err:  # noqa: BLE001 - reported with the places looked
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise _TFDSUnavailable(
            f"not prepared there, and downloading failed: {type(err).__name__}: {first_line}"
        ) from err


# --------------------------------------------------------------------------- pipelines


def _normalise(images, mean, std):
    """Float32 ``(x / 255 - mean) / std`` per channel; ``x / 127.5 - 1`` if ``mean`` is None."""
    tf = _tf()
    images = tf.cast(images, tf.float32)
    if mean is None:
        return images / 127.5 - 1.0
    mean = tf.constant([255.0 * m for m in mean], tf.float32)
    std = tf.constant([255.0 * s for s in std], tf.float32)
    return (images - mean) / std


def epoch_seed(shuffle_seed: int, epoch: int) -> int:
    """The shuffle seed of one epoch: a 31-bit hash of ``(shuffle_seed, epoch)``.

    Args:
      shuffle_seed: the seed given to :func:`load`.
      epoch: the epoch, counted from 0.
    """
    state = np.random.SeedSequence([int(shuffle_seed) % 2**32, int(epoch)]).generate_state(1)
    return int(state[0] % 2**31)


def _carve(spec, split, holdout):
    """The slice of the stored split that ``split`` reads, after checking ``holdout``; it
    counts from the end, so a custom IDX directory may hold fewer than 60,000 images."""
    if holdout is None:
        if split == "holdout":
            raise ValueError('split="holdout" needs holdout=N, the number of training '
                             "examples kept apart for validation")
        return slice(None)
    holdout = check_integer("holdout", holdout)
    if holdout >= spec.train_examples:
        raise ValueError(f"holdout={holdout} leaves no training examples: {spec.name} has "
                         f"{spec.train_examples:,}; hold out fewer")
    ends = {"train": slice(None, -holdout), "holdout": slice(-holdout, None)}
    return ends.get(split, slice(None))


# Source readers: (spec, stored split, carve, data_dir, file_shuffle) -> (dataset of
# (image, label) in stored order, its size). file_shuffle: None or (seed, reshuffle).


def _read_idx_source(spec, stored, carve, data_dir, file_shuffle):
    """Source "idx": the Fashion-MNIST arrays (:func:`load_fashion_mnist`), carved."""
    images, labels = load_fashion_mnist(stored, data_dir=data_dir)
    if carve != slice(None):
        holdout = -(carve.start or carve.stop)
        if holdout >= len(labels):
            raise ValueError(f"holdout={holdout} leaves no training examples: the "
                             f"training files hold {len(labels):,}; hold out fewer")
        images, labels = images[carve], labels[carve]
    ds = _tf().data.Dataset.from_tensor_slices((images[..., None], labels))
    return ds, len(labels)


def _read_tfds_source(spec, stored, carve, data_dir, file_shuffle):
    """Source "tfds": the carved TFDS split, as stored (JPEG bytes if ``spec.encoded``)."""
    import tensorflow_datasets as tfds

    kwargs = {"shuffle_files": file_shuffle is not None}
    if spec.encoded:
        kwargs["decoders"] = {"image": tfds.decode.SkipDecoding()}
    if spec.shuffle_files:
        seed, reshuffle = file_shuffle or (None, None)
        kwargs["read_config"] = tfds.ReadConfig(shuffle_seed=seed,
                                                shuffle_reshuffle_each_iteration=reshuffle)
    try:
        # e.g. "train[:-5000]"; carve.start / stop are None or negative, never 0.
        tfds_split = f"{stored}[{carve.start or ''}:{carve.stop or ''}]"
        ds = _tfds_load(spec.name, stored if carve == slice(None) else tfds_split,
                        data_dir=data_dir, **kwargs)
    except _TFDSUnavailable as err:
        where = data_dir or _TFDS_DEFAULT_DIR_TEXT
        raise DatasetNotFoundError(
            f"TFDS dataset {spec.name!r} ({stored!r} split) is not available in {where}: "
            f"{err}.{spec.missing_hint}"
        ) from err
    stored_size = spec.train_examples if stored == "train" else spec.test_examples
    return ds, len(range(stored_size)[carve])


_SOURCES = {"idx": _read_idx_source, "tfds": _read_tfds_source}


def check_augment(augment):
    """Return ``augment`` if it is True, False or None; ValueError naming it otherwise."""
    if not (augment is None or isinstance(augment, bool)):
        raise ValueError(f"`augment` must be True, False or None (the dataset's default); "
                         f"got {augment!r}.")
    return augment


def default_augment(spec: DatasetSpec) -> bool:
    """Whether training data of ``spec`` is augmented when ``augment`` is not given."""
    return spec.augments_by_default and spec.train_preprocess is not None


def _check_augment(spec, augment, training):
    """Whether to augment: ``augment`` checked against ``training``, None -> the default."""
    check_augment(augment)
    if augment and not training:
        raise ValueError("augment=True needs training=True: evaluation data is never "
                         "augmented.")
    if augment and spec.train_preprocess is None:
        raise ValueError(f"{spec.name!r} has no training augmentation; use augment=None.")
    if augment is None:
        return training and default_augment(spec)
    return augment


def load(name: str, split: str, batch_size: int, *, training: bool,
         data_dir: str | os.PathLike | None = None, limit: int | None = None,
         shuffle_seed: int = 0, image_size: int | None = None, epoch: int | None = None,
         holdout: int | None = None, augment: bool | None = None) -> tf.data.Dataset:
    """A batched ``tf.data.Dataset`` of ``(float32 images, int64 labels)``.

    Every dataset goes through the same steps, configured by its :class:`DatasetSpec`:
    read the (carved) split from its source, ``limit``, shuffle, preprocess each example
    (ImageNet decodes its JPEGs here, after the shuffle buffer), batch, normalise.

    Args:
      name: "fashion_mnist", "cifar10", "cifar100" or "imagenet2012".
      split: "train", "holdout" or "test" (ImageNet: "test" and "validation" both read the
        labelled validation set).
      batch_size: examples per batch; the last batch may be smaller.
      training: True -> shuffle (seeded, reshuffled every pass) and augment;
        False -> fixed order, no augmentation. Augmentation and normalisation are listed in
        the module docstring.
      data_dir: Fashion-MNIST: directory with the IDX files (see :func:`load_fashion_mnist`);
        otherwise the TFDS data directory (None: TFDS's default).
      limit: only the first ``limit`` examples of the split (taken before shuffling).
      shuffle_seed: seed of the shuffle order and of the augmentation.
      image_size: ImageNet output size (default 224); the other datasets only accept
        None or their native size.
      epoch: None -> one dataset for every epoch, reshuffled (and re-augmented) on each
        new iterator, so the order of a pass depends on how many iterators came before
        it. An integer >= 0 -> the shuffle order and augmentation of that epoch alone, a
        pure function of ``(shuffle_seed, epoch)``: a training run resumed at an epoch
        boundary then sees exactly the batches of the uninterrupted run.
      holdout: None, or the number of examples at the end of the training split kept
        apart for choosing settings: "train" then reads all but the last ``holdout``
        examples and "holdout" reads exactly those (in stored order). The test set stays
        untouched. ``limit`` applies after the carve.
      augment: None -> the dataset's default (module docstring); True -> augment the
        training data (Fashion-MNIST included); False -> training images get the
        evaluation preprocessing only. Evaluation data is never augmented.

    Example:
      >>> ds = load("fashion_mnist", "test", 32, training=False, limit=64)  # doctest: +SKIP
      >>> [x.shape for x in next(iter(ds))]  # doctest: +SKIP
      [TensorShape([32, 28, 28, 1]), TensorShape([32])]
    """
    spec = dataset_info(name)
    stored = validate_split(name, split)
    batch_size = check_integer("batch_size", batch_size)
    limit = check_integer("limit", limit, allow_none=True)
    carve = _carve(spec, split, holdout)
    if isinstance(shuffle_seed, bool) or not isinstance(shuffle_seed, numbers.Integral):
        raise ValueError(f"`shuffle_seed` must be an integer; got {shuffle_seed!r}.")
    shuffle_seed = int(shuffle_seed)
    epoch = check_integer("epoch", epoch, minimum=0, allow_none=True)
    if epoch is not None:
        shuffle_seed = epoch_seed(shuffle_seed, epoch)
    reshuffle = epoch is None
    augment = _check_augment(spec, augment, training)
    native = spec.input_shape[0]
    if not spec.resizable and image_size not in (None, native):
        raise ValueError(f"image_size={image_size!r} is not supported for {name!r}; its images "
                         f"are {native}x{spec.input_shape[1]} (use image_size=None)")
    resize = spec.resizable and image_size is not None
    size = check_integer("image_size", image_size) if resize else native
    tf = _tf()
    parallel = dict(num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

    shuffle_files = training and limit is None and spec.shuffle_files
    file_shuffle = (shuffle_seed, reshuffle) if shuffle_files else None
    ds, num_examples = _SOURCES[spec.source](spec, stored, carve, data_dir, file_shuffle)
    if limit is not None:
        ds = ds.take(limit)
        num_examples = min(limit, num_examples)
    if training:
        buffer = max(1, min(spec.shuffle_buffer, num_examples))
        ds = ds.shuffle(buffer, seed=shuffle_seed, reshuffle_each_iteration=reshuffle)
    if augment:
        preprocess = spec.train_preprocess
        seeds = tf.data.Dataset.random(seed=shuffle_seed + _AUGMENT_SEED_OFFSET,
                                       rerandomize_each_iteration=reshuffle)
        ds = tf.data.Dataset.zip((ds, seeds)).map(
            lambda example, seed: (preprocess(example[0], seed, size), example[1]), **parallel)
    elif spec.eval_preprocess is not None:
        prepare = spec.eval_preprocess
        ds = ds.map(lambda image, label: (prepare(image, size), label), **parallel)
    ds = ds.batch(batch_size).map(
        lambda x, y: (_normalise(x, spec.mean, spec.std), tf.cast(y, tf.int64)), **parallel)
    options = tf.data.Options()
    options.deterministic = True
    return ds.prefetch(tf.data.AUTOTUNE).with_options(options)
