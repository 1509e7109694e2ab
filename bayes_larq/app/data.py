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
Per dataset, in :mod:`bayes_larq.app.preprocess` (its docstring has the table):
Fashion-MNIST is not augmented unless ``augment=True`` (pad 2, random crop, flip), CIFAR
pads 4, crops and flips, ImageNet takes a random resized crop; pixel values are then
normalised (``x / 127.5 - 1`` for Fashion-MNIST, per-channel mean and standard deviation
for CIFAR and ImageNet).

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

import numbers
import os
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Callable, Mapping

import numpy as np

from bayes_larq.app.errors import DatasetError, DatasetNotFoundError
from bayes_larq.app.fashion_mnist import (
    DEFAULT_FASHION_MNIST_DIR,
    FASHION_MNIST_APT_COMMAND,
    FASHION_MNIST_ENV,
    load_fashion_mnist,
)
from bayes_larq.app.fashion_mnist import DOWNLOAD_HOST as FASHION_MNIST_DOWNLOAD_HOST
from bayes_larq.app.idx import read_idx
from bayes_larq.app.preprocess import imagenet_eval, imagenet_train, normalise, pad_crop_flip
from bayes_larq.app.preprocess import lazy_tensorflow as _tf
from bayes_larq.app.tfds_source import TFDS_DEFAULT_DIR_TEXT, TFDSUnavailable
from bayes_larq.app.tfds_source import tfds_load as _tfds_load
from bayes_larq.defaults import MAX_COUNT, check_integer

if TYPE_CHECKING:
    import tensorflow as tf

__all__ = [
    "CIFAR100_MEAN", "CIFAR100_STD", "CIFAR10_MEAN", "CIFAR10_STD", "DATASETS",
    "DEFAULT_FASHION_MNIST_DIR", "DatasetError", "DatasetInfo", "DatasetNotFoundError",
    "DatasetSpec", "FASHION_MNIST_APT_COMMAND", "FASHION_MNIST_ENV", "IMAGENET_MEAN",
    "IMAGENET_STD", "check_augment", "check_count", "dataset_info", "default_augment",
    "epoch_seed", "load", "load_fashion_mnist",
    "read_idx", "validate_split",
]

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
# Offset between the shuffle seed and the augmentation seed stream, so that the two
# Philox streams are not the same numbers.
_AUGMENT_SEED_OFFSET = 1_000_003


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
                    shuffle_buffer=60_000, train_preprocess=pad_crop_flip(FASHION_MNIST_PAD),
                    augments_by_default=False,
                    download_host=FASHION_MNIST_DOWNLOAD_HOST),
        DatasetSpec("cifar10", 10, (32, 32, 3), 50_000, 10_000, source="tfds",
                    shuffle_buffer=50_000, download_host=("www.cs.toronto.edu", 443),
                    mean=CIFAR10_MEAN, std=CIFAR10_STD, train_preprocess=pad_crop_flip(CIFAR_PAD)),
        DatasetSpec("cifar100", 100, (32, 32, 3), 50_000, 10_000, source="tfds",
                    shuffle_buffer=50_000, download_host=("www.cs.toronto.edu", 443),
                    mean=CIFAR100_MEAN, std=CIFAR100_STD,
                    train_preprocess=pad_crop_flip(CIFAR_PAD)),
        # test_examples: the labelled validation set; TFDS's "test" split has no labels,
        # so "test" reads "validation" too.
        DatasetSpec("imagenet2012", 1000, (IMAGENET_DEFAULT_SIZE, IMAGENET_DEFAULT_SIZE, 3),
                    1_281_167, 50_000, source="tfds", shuffle_buffer=10_000,
                    splits=MappingProxyType({"train": "train", "holdout": "train",
                                             "validation": "validation", "test": "validation"}),
                    mean=IMAGENET_MEAN, std=IMAGENET_STD, train_preprocess=imagenet_train,
                    eval_preprocess=imagenet_eval, encoded=True, shuffle_files=True,
                    resizable=True, missing_hint=(
                        " ImageNet cannot be downloaded automatically: put "
                        "ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar in "
                        "<data_dir>/downloads/manual/ and run again (see the TFDS "
                        "'imagenet2012' page).")),
    )
}



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


# --------------------------------------------------------------------------- pipelines


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
                        data_dir=data_dir, download_host=spec.download_host, **kwargs)
    except TFDSUnavailable as err:
        where = data_dir or TFDS_DEFAULT_DIR_TEXT
        raise DatasetNotFoundError(
            f"TFDS dataset {spec.name!r} ({stored!r} split) is not available in {where}: "
            f"{err}.{spec.missing_hint}"
        ) from err
    stored_size = spec.train_examples if stored == "train" else spec.test_examples
    return ds, len(range(stored_size)[carve])


_SOURCES = {"idx": _read_idx_source, "tfds": _read_tfds_source}


def check_count(name: str, value: int | None, allow_none: bool = False) -> int | None:
    """`value` as a batch size or a number of examples: an integer in [1, `MAX_COUNT`]
    (tf.data's and TensorFlow's int32 shapes take no more), or None with `allow_none`."""
    return check_integer(name, value, allow_none=allow_none, maximum=MAX_COUNT)


def check_augment(augment: bool | None) -> bool | None:
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
    batch_size = check_count("batch_size", batch_size)
    limit = check_count("limit", limit, allow_none=True)
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
        lambda x, y: (normalise(x, spec.mean, spec.std), tf.cast(y, tf.int64)), **parallel)
    options = tf.data.Options()
    options.deterministic = True
    return ds.prefetch(tf.data.AUTOTUNE).with_options(options)
