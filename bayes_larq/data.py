"""Datasets: Fashion-MNIST from local IDX files (or TFDS), CIFAR-10/100 and ImageNet via TFDS.

Everything a training run needs goes through :func:`load`, which returns a batched
``tf.data.Dataset`` of ``(float32 images, int64 labels)``::

    import bayes_larq
    from bayes_larq import data

    ds = data.load("fashion_mnist", "train", batch_size=128, training=True, limit=512)
    images, labels = next(iter(ds))      # (128, 28, 28, 1) float32 in [-1, 1], (128,) int64

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
fashion_mnist             none                                         none
cifar10 / cifar100        zero-pad 4 px, random 32x32 crop,            none
                          random horizontal flip
imagenet2012              random resized crop (area 0.08-1 of the      shorter side resized to
                          image, aspect ratio 3/4-4/3) to              ``round(image_size * 256 / 224)``,
                          ``image_size`` (default 224), random         centre crop ``image_size``
                          horizontal flip
========================  ===========================================  =====================================

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
import os
import socket
import struct
import urllib.request
import warnings
import zlib
from typing import NamedTuple

import numpy as np

__all__ = [
    "CIFAR100_MEAN",
    "CIFAR100_STD",
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "DATASETS",
    "DEFAULT_FASHION_MNIST_DIR",
    "DatasetError",
    "DatasetInfo",
    "DatasetNotFoundError",
    "FASHION_MNIST_ENV",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "dataset_info",
    "load",
    "load_fashion_mnist",
    "read_idx",
    "validate_split",
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


class DatasetInfo(NamedTuple):
    """Static facts about a supported dataset (``input_shape`` is what :func:`load` yields)."""

    name: str
    num_classes: int
    input_shape: tuple
    train_examples: int
    test_examples: int


DATASETS = {
    "fashion_mnist": DatasetInfo("fashion_mnist", 10, (28, 28, 1), 60_000, 10_000),
    "cifar10": DatasetInfo("cifar10", 10, (32, 32, 3), 50_000, 10_000),
    "cifar100": DatasetInfo("cifar100", 100, (32, 32, 3), 50_000, 10_000),
    # test_examples: the labelled ILSVRC2012 validation set (TFDS split "validation").
    "imagenet2012": DatasetInfo("imagenet2012", 1000, (224, 224, 3), 1_281_167, 50_000),
}

# Accepted split names -> TFDS split. ImageNet's labelled held-out set is TFDS's
# "validation"; TFDS's imagenet2012 "test" split has no labels, so "test" means validation.
# "holdout" is the end of the training split, carved off with ``load(..., holdout=N)``.
_SPLITS = {
    "fashion_mnist": {"train": "train", "holdout": "train", "test": "test"},
    "cifar10": {"train": "train", "holdout": "train", "test": "test"},
    "cifar100": {"train": "train", "holdout": "train", "test": "test"},
    "imagenet2012": {"train": "train", "holdout": "train", "validation": "validation",
                     "test": "validation"},
}

# Shuffle buffer (examples) used for training; capped at the number of examples.
# CIFAR/Fashion-MNIST: the whole training set (full shuffle). ImageNet: 10,000 JPEG-encoded
# examples (about 1.1 GB); its files are additionally shuffled every pass.
_SHUFFLE_BUFFER = {
    "fashion_mnist": 60_000,
    "cifar10": 50_000,
    "cifar100": 50_000,
    "imagenet2012": 10_000,
}

# Where TFDS downloads from; probed before a download is attempted (see _tfds_load).
_DOWNLOAD_HOSTS = {
    "fashion_mnist": ("fashion-mnist.s3-website.eu-central-1.amazonaws.com", 80),
    "cifar10": ("www.cs.toronto.edu", 443),
    "cifar100": ("www.cs.toronto.edu", 443),
}

# TFDS data directory used for the Fashion-MNIST fallback (None: TFDS's default,
# $TFDS_DATA_DIR or ~/tensorflow_datasets).
_FASHION_TFDS_DATA_DIR = None
_TFDS_DEFAULT_DIR_TEXT = "the TFDS data directory ($TFDS_DATA_DIR or ~/tensorflow_datasets)"


# --------------------------------------------------------------------------- names


def dataset_info(name):
    """The :class:`DatasetInfo` of ``name``; ValueError listing the valid names otherwise.

    >>> dataset_info("cifar100").num_classes
    100
    """
    if not isinstance(name, str) or name not in DATASETS:
        raise ValueError(
            f"Unknown dataset {name!r}; valid names: {', '.join(sorted(DATASETS))}."
        )
    return DATASETS[name]


def validate_split(name, split):
    """Check ``split`` for dataset ``name`` and return the TFDS split it reads.

    Valid splits are ``"train"``, ``"holdout"`` (the last examples of the training split,
    see :func:`load`) and ``"test"``; ImageNet also accepts ``"validation"``, and its
    ``"test"`` means the labelled validation set.

    >>> validate_split("imagenet2012", "test")
    'validation'
    """
    dataset_info(name)
    splits = _SPLITS[name]
    if not isinstance(split, str) or split not in splits:
        raise ValueError(
            f"Unknown split {split!r} for dataset {name!r}; valid splits: "
            f"{', '.join(splits)}."
        )
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


def read_idx(path):
    """Read an IDX file (the MNIST / Fashion-MNIST format), gzipped or raw, into NumPy.

    Layout: magic ``00 00 <dtype code> <ndim>``, then ``ndim`` big-endian uint32 sizes, then
    the big-endian data in C order. Gzip is recognised by content, not by file name. The
    file must hold exactly ``prod(sizes)`` values; anything else (bad gzip stream, wrong
    magic, unknown dtype code, truncated or over-long data) raises :class:`DatasetError`
    naming the file and the problem. Returns a writable array in native byte order.

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
    if len(labels) and labels.max() >= 10:
        raise DatasetError(f"{labels_path}: label {int(labels.max())} outside 0..9")
    return images, labels.astype(np.int64)


def _load_fashion_mnist_tfds(split):
    """Fashion-MNIST arrays from TFDS (may download); raises _TFDSUnavailable."""
    ds = _tfds_load(
        "fashion_mnist", split, data_dir=_FASHION_TFDS_DATA_DIR, batch_size=-1
    )
    import tensorflow_datasets as tfds

    images, labels = tfds.as_numpy(ds)
    return images.reshape(-1, 28, 28).astype(np.uint8), labels.astype(np.int64)


def load_fashion_mnist(split="train", data_dir=None):
    """Fashion-MNIST as NumPy arrays: ``(images uint8 [N, 28, 28], labels int64 [N])``.

    Looks for the IDX files of ``split`` ("train": 60,000 images, "test": 10,000) in
    ``data_dir``, then in ``$BAYES_LARQ_FASHION_MNIST_DIR``, then in
    ``/usr/share/datasets/fashion-mnist``, then asks TFDS (``fashion_mnist``; downloads if
    online). A directory that has the files but holds corrupt data raises
    :class:`DatasetError` at once; if no place has the data, :class:`DatasetNotFoundError`
    names every place looked and how to install the dataset.

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
    skipped = []  # directories the user named explicitly that lacked the files
    for label, directory, unset in places:
        if directory is None:
            looked.append(f"{label}: {unset}")
            continue
        files, reason = _find_fashion_files(directory, split)
        if files is not None:
            if skipped:
                warnings.warn(
                    f"Fashion-MNIST {split!r} not found in {'; '.join(skipped)}; "
                    f"using {directory}",
                    stacklevel=2,
                )
            return _read_fashion_files(*files)
        looked.append(f"{label} {directory}: {reason}")
        if unset is not None:
            skipped.append(looked[-1])

    tfds_dir = _FASHION_TFDS_DATA_DIR or _TFDS_DEFAULT_DIR_TEXT
    try:
        images, labels = _load_fashion_mnist_tfds(split)
    except _TFDSUnavailable as err:
        looked.append(f"TFDS 'fashion_mnist' in {tfds_dir}: {err}")
    else:
        warnings.warn(
            "Fashion-MNIST IDX files not found locally; using TFDS 'fashion_mnist'.",
            stacklevel=2,
        )
        return images, labels

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
    host = _DOWNLOAD_HOSTS.get(name)
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


def _tf():
    import bayes_larq  # noqa: F401  - selects tf_keras before TensorFlow is used
    import tensorflow as tf

    return tf


def _normalise(image, mean, std):
    """``(image / 255 - mean) / std`` per channel, float32."""
    tf = _tf()
    mean = tf.constant([255.0 * m for m in mean], tf.float32)
    std = tf.constant([255.0 * s for s in std], tf.float32)
    return (tf.cast(image, tf.float32) - mean) / std


def _seeds(seed, n):
    """``n`` independent stateless seeds (shape [n, 2]) from one int64 scalar."""
    tf = _tf()
    return tf.random.experimental.stateless_split(
        tf.stack([seed, tf.constant(0, tf.int64)]), num=n
    )


def _cifar_augment(image, seed):
    """Zero-pad by 4, random 32x32 crop, random horizontal flip (uint8 in, uint8 out)."""
    tf = _tf()
    crop_seed, flip_seed = tf.unstack(_seeds(seed, 2))
    image = tf.pad(image, [[CIFAR_PAD, CIFAR_PAD], [CIFAR_PAD, CIFAR_PAD], [0, 0]])
    image = tf.image.stateless_random_crop(image, [32, 32, 3], seed=crop_seed)
    return tf.image.stateless_random_flip_left_right(image, seed=flip_seed)


def _imagenet_train(encoded, seed, size):
    """Random resized crop of a JPEG (area 0.08-1, ratio 3/4-4/3) + flip, float32 0..255."""
    tf = _tf()
    box_seed, flip_seed = tf.unstack(_seeds(seed, 2))
    shape = tf.io.extract_jpeg_shape(encoded)
    whole_image = tf.constant([0.0, 0.0, 1.0, 1.0], tf.float32, shape=[1, 1, 4])
    begin, crop_size, _ = tf.image.stateless_sample_distorted_bounding_box(
        shape,
        whole_image,
        seed=box_seed,
        min_object_covered=0.0,  # the area range alone bounds the crop
        aspect_ratio_range=IMAGENET_CROP_RATIO,
        area_range=IMAGENET_CROP_AREA,
        max_attempts=10,
        use_image_if_no_bounding_boxes=True,
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


def epoch_seed(shuffle_seed, epoch):
    """The shuffle seed of one epoch: a 31-bit hash of ``(shuffle_seed, epoch)``."""
    state = np.random.SeedSequence([int(shuffle_seed) % 2**32, int(epoch)]).generate_state(1)
    return int(state[0] % 2**31)


def _check_positive_int(value, what, allow_none=False):
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{what} must be a positive integer, got {value!r}")


def _holdout_range(name, split, holdout):
    """(first, last) slice of the stored split that ``split`` reads, given ``holdout``.

    Negative indices count from the end, so the carve does not depend on the split's
    size (a custom IDX directory may hold fewer than the official 60,000 images).
    """
    if holdout is None:
        if split == "holdout":
            raise ValueError('split="holdout" needs holdout=N, the number of training '
                             "examples kept apart for validation")
        return None, None
    _check_positive_int(holdout, "holdout")
    train_examples = dataset_info(name).train_examples
    if holdout >= train_examples:
        raise ValueError(f"holdout={holdout} leaves no training examples: {name} has "
                         f"{train_examples:,}; hold out fewer")
    return {"train": (None, -holdout), "holdout": (-holdout, None)}.get(split, (None, None))


def _tfds_slice(split, first, last):
    """TFDS split string for ``split[first:last]`` (``split`` itself when unsliced)."""
    if first is None and last is None:
        return split
    return f"{split}[{'' if first is None else first}:{'' if last is None else last}]"


def load(
    name,
    split,
    batch_size,
    *,
    training,
    data_dir=None,
    limit=None,
    shuffle_seed=0,
    image_size=None,
    epoch=None,
    holdout=None,
):
    """A batched ``tf.data.Dataset`` of ``(float32 images, int64 labels)``.

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

    Example:
      >>> ds = load("fashion_mnist", "test", 32, training=False, limit=64)  # doctest: +SKIP
      >>> [x.shape for x in next(iter(ds))]  # doctest: +SKIP
      [TensorShape([32, 28, 28, 1]), TensorShape([32])]
    """
    info = dataset_info(name)
    tfds_split = validate_split(name, split)
    _check_positive_int(batch_size, "batch_size")
    _check_positive_int(limit, "limit", allow_none=True)
    first, last = _holdout_range(name, split, holdout)
    if not isinstance(shuffle_seed, (int, np.integer)) or isinstance(shuffle_seed, bool):
        raise ValueError(f"shuffle_seed must be an integer, got {shuffle_seed!r}")
    shuffle_seed = int(shuffle_seed)
    if epoch is not None:
        if isinstance(epoch, bool) or not isinstance(epoch, (int, np.integer)) or epoch < 0:
            raise ValueError(f"epoch must be None or an integer >= 0, got {epoch!r}")
        shuffle_seed = epoch_seed(shuffle_seed, epoch)
    reshuffle = epoch is None
    if name == "imagenet2012":
        image_size = IMAGENET_DEFAULT_SIZE if image_size is None else image_size
        _check_positive_int(image_size, "image_size")
    elif image_size not in (None, info.input_shape[0]):
        raise ValueError(
            f"image_size={image_size!r} is not supported for {name!r}; its images are "
            f"{info.input_shape[0]}x{info.input_shape[1]} (use image_size=None)"
        )
    tf = _tf()
    autotune = tf.data.AUTOTUNE

    if name == "fashion_mnist":
        images, labels = load_fashion_mnist(tfds_split, data_dir=data_dir)
        if first is not None or last is not None:
            if holdout >= len(labels):
                raise ValueError(f"holdout={holdout} leaves no training examples: the "
                                 f"training files hold {len(labels):,}; hold out fewer")
            images, labels = images[first:last], labels[first:last]
        if limit is not None:
            images, labels = images[:limit], labels[:limit]
        ds = tf.data.Dataset.from_tensor_slices((images[..., None], labels))
        num_examples = len(labels)
    else:
        import tensorflow_datasets as tfds

        if name == "imagenet2012":
            # Keep JPEG bytes until after the shuffle buffer; decode (and crop) in the map.
            shuffle_files = training and limit is None
            extra = dict(
                decoders={"image": tfds.decode.SkipDecoding()},
                shuffle_files=shuffle_files,
                read_config=tfds.ReadConfig(
                    shuffle_seed=shuffle_seed if shuffle_files else None,
                    shuffle_reshuffle_each_iteration=reshuffle if shuffle_files else None,
                ),
            )
        else:
            extra = dict(shuffle_files=False)
        try:
            ds = _tfds_load(name, _tfds_slice(tfds_split, first, last), data_dir=data_dir,
                            **extra)
        except _TFDSUnavailable as err:
            hint = (
                " ImageNet cannot be downloaded automatically: put ILSVRC2012_img_train.tar "
                "and ILSVRC2012_img_val.tar in <data_dir>/downloads/manual/ and run again "
                "(see the TFDS 'imagenet2012' page)."
                if name == "imagenet2012"
                else " With internet access TFDS downloads it into data_dir."
            )
            where = data_dir or _TFDS_DEFAULT_DIR_TEXT
            raise DatasetNotFoundError(
                f"TFDS dataset {name!r} ({tfds_split!r} split) is not available in {where}: "
                f"{err}.{hint}"
            ) from err
        if limit is not None:
            ds = ds.take(limit)
        available = {"train": info.train_examples - (holdout or 0),
                     "holdout": holdout}.get(split, info.test_examples)
        num_examples = min(limit or available, available)

    if training:
        buffer = max(1, min(_SHUFFLE_BUFFER[name], num_examples))
        ds = ds.shuffle(buffer, seed=shuffle_seed, reshuffle_each_iteration=reshuffle)

    if name == "fashion_mnist":
        ds = ds.batch(batch_size).map(
            lambda x, y: (tf.cast(x, tf.float32) / 127.5 - 1.0, tf.cast(y, tf.int64)),
            num_parallel_calls=autotune,
            deterministic=True,
        )
    else:
        mean, std = {
            "cifar10": (CIFAR10_MEAN, CIFAR10_STD),
            "cifar100": (CIFAR100_MEAN, CIFAR100_STD),
            "imagenet2012": (IMAGENET_MEAN, IMAGENET_STD),
        }[name]
        if training:
            seeds = tf.data.Dataset.random(
                seed=shuffle_seed + _AUGMENT_SEED_OFFSET, rerandomize_each_iteration=reshuffle
            )
            ds = tf.data.Dataset.zip((ds, seeds))
            if name == "imagenet2012":
                def prepare(example, seed):
                    image = _imagenet_train(example[0], seed, image_size)
                    return _normalise(image, mean, std), tf.cast(example[1], tf.int64)
            else:
                def prepare(example, seed):
                    image = _cifar_augment(example[0], seed)
                    return _normalise(image, mean, std), tf.cast(example[1], tf.int64)
        else:
            if name == "imagenet2012":
                def prepare(encoded, label):
                    image = _imagenet_eval(encoded, image_size)
                    return _normalise(image, mean, std), tf.cast(label, tf.int64)
            else:
                def prepare(image, label):
                    return _normalise(image, mean, std), tf.cast(label, tf.int64)
        ds = ds.map(prepare, num_parallel_calls=autotune, deterministic=True)
        ds = ds.batch(batch_size)

    ds = ds.prefetch(autotune)
    options = tf.data.Options()
    options.deterministic = True
    return ds.with_options(options)
