"""Tests of bayes_larq.app.data: IDX reader, Fashion-MNIST lookup, TFDS pipelines (no network).

References are computed independently here: IDX files are written byte by byte with
NumPy, normalisation uses the published constants, CIFAR augmentation is checked by
searching all pad-crop-flip variants in NumPy, ImageNet resizing against PIL.
"""

import bayes_larq  # noqa: F401  - selects tf_keras before TensorFlow is touched

import dataclasses
import gzip
import os
import re
import struct
import sys

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from bayes_larq.app import data, fashion_mnist, tfds_source
from fashion_files import idx_bytes, write_fashion_dir, write_idx

# Published per-channel constants (R, G, B), in [0, 1].
CIFAR10_MEAN, CIFAR10_STD = [0.4914, 0.4822, 0.4465], [0.2470, 0.2435, 0.2616]
CIFAR100_MEAN, CIFAR100_STD = [0.5071, 0.4865, 0.4409], [0.2673, 0.2564, 0.2762]
IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
STATS = {
    "cifar10": (CIFAR10_MEAN, CIFAR10_STD),
    "cifar100": (CIFAR100_MEAN, CIFAR100_STD),
    "imagenet2012": (IMAGENET_MEAN, IMAGENET_STD),
}
# --------------------------------------------------------------------------- helpers


def collect(ds):
    """All batches of one pass, concatenated to NumPy."""
    xs, ys = [], []
    for x, y in ds:
        xs.append(x.numpy())
        ys.append(y.numpy())
    return np.concatenate(xs), np.concatenate(ys)


def normalise(images_uint8, mean, std):
    return (np.asarray(images_uint8, np.float64) / 255.0 - np.array(mean)) / np.array(std)


def raw_tfds(name, split, encoded=False):
    """The raw (uint8 or JPEG bytes) examples TFDS yields; call inside mock_data."""
    kwargs = {"decoders": {"image": tfds.decode.SkipDecoding()}} if encoded else {}
    ds = tfds.load(name, split=split, as_supervised=True, **kwargs)
    return [(x, int(y)) for x, y in tfds.as_numpy(ds)]


# --------------------------------------------------------------------------- IDX reader


@pytest.mark.parametrize("gz", [True, False], ids=["gz", "raw"])
@pytest.mark.parametrize(
    "array",
    [
        np.arange(5 * 28 * 28, dtype=np.int64).reshape(5, 28, 28).astype(np.uint8),
        np.array([3, 1, 4, 1, 5, 9, 2, 6], np.uint8),
        np.array([[-70000, 2, 3], [4, 5, 2**31 - 1]], np.int32),
        np.array([-300, 0, 300], np.int16),
        np.array([-128, 0, 127], np.int8),
        np.array([[0.5, -1.25e-7], [3.0e30, -7.0]], np.float32),
        np.array([np.pi, -np.e], np.float64),
    ],
    ids=["images", "labels", "int32", "int16", "int8", "float32", "float64"],
)
def test_read_idx_round_trip(tmp_path, array, gz):
    path = write_idx(tmp_path / "f.idx", array, gz)
    out = data.read_idx(path)
    assert out.dtype == array.dtype.newbyteorder("=")
    assert out.dtype.isnative
    assert out.shape == array.shape
    np.testing.assert_array_equal(out, array)
    out[...] = 0  # writable


def test_read_idx_detects_gzip_by_content(tmp_path):
    labels = np.array([7, 8, 9], np.uint8)
    path = tmp_path / "labels.idx"  # gzipped, but no .gz suffix
    path.write_bytes(gzip.compress(idx_bytes(labels)))
    np.testing.assert_array_equal(data.read_idx(path), labels)


def _err(path):
    with pytest.raises(data.DatasetError) as info:
        data.read_idx(path)
    message = str(info.value)
    assert str(path) in message
    return message.lower()


def test_read_idx_truncated_data(tmp_path):
    good = idx_bytes(np.zeros((4, 28, 28), np.uint8))
    path = tmp_path / "trunc.idx"
    path.write_bytes(good[:-10])
    message = _err(path)
    assert "truncated" in message and "(4, 28, 28)" in message
    assert str(4 * 28 * 28) in message and str(4 * 28 * 28 - 10) in message


def test_read_idx_truncated_gzip(tmp_path):
    path = tmp_path / "trunc.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.zeros((4, 28, 28), np.uint8)))[:-20])
    assert "gzip" in _err(path)


def test_read_idx_corrupt_gzip(tmp_path):
    blob = bytearray(gzip.compress(idx_bytes(np.arange(1000, dtype=np.int32))))
    blob[-6] ^= 0xFF  # damages the CRC / length trailer
    path = tmp_path / "corrupt.gz"
    path.write_bytes(bytes(blob))
    assert "gzip" in _err(path)


def test_read_idx_wrong_magic(tmp_path):
    path = tmp_path / "png.idx"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    assert "magic" in _err(path)


def test_read_idx_unknown_dtype_code(tmp_path):
    path = tmp_path / "code.idx"
    path.write_bytes(bytes([0, 0, 0x07, 1]) + struct.pack(">I", 2) + bytes(2))
    message = _err(path)
    assert "0x07" in message and "type" in message


def test_read_idx_extra_bytes(tmp_path):
    path = tmp_path / "long.idx"
    path.write_bytes(idx_bytes(np.arange(6, dtype=np.uint8)) + b"\x00\x01")
    message = _err(path)
    assert "too long" in message and "8" in message and "6" in message


def test_read_idx_truncated_header(tmp_path):
    path = tmp_path / "hdr.idx"
    path.write_bytes(bytes([0, 0, 0x08, 3]) + struct.pack(">I", 10))
    assert "header" in _err(path)
    (tmp_path / "tiny.idx").write_bytes(b"\x00\x00")
    assert "truncated" in _err(tmp_path / "tiny.idx")


def test_dataset_errors_are_standard_exceptions():
    assert issubclass(data.DatasetError, ValueError)
    assert issubclass(data.DatasetNotFoundError, FileNotFoundError)


# --------------------------------------------------------------------------- Fashion-MNIST


@pytest.mark.parametrize("gz", [True, False], ids=["gz", "raw"])
def test_load_fashion_mnist_from_argument(tmp_path, no_fashion_anywhere, gz):
    arrays = write_fashion_dir(tmp_path / "fm", gz=gz)
    for split in ("train", "test"):
        images, labels = data.load_fashion_mnist(split, data_dir=tmp_path / "fm")
        assert images.dtype == np.uint8 and labels.dtype == np.int64
        np.testing.assert_array_equal(images, arrays[split][0])
        np.testing.assert_array_equal(labels, arrays[split][1])


def test_load_fashion_mnist_from_env_var(tmp_path, no_fashion_anywhere, monkeypatch):
    arrays = write_fashion_dir(tmp_path / "env", seed=1)
    monkeypatch.setenv(data.FASHION_MNIST_ENV, str(tmp_path / "env"))
    images, labels = data.load_fashion_mnist("test")
    np.testing.assert_array_equal(images, arrays["test"][0])
    np.testing.assert_array_equal(labels, arrays["test"][1])


def test_load_fashion_mnist_search_order(tmp_path, no_fashion_anywhere, monkeypatch):
    arg = write_fashion_dir(tmp_path / "arg", seed=1)
    env = write_fashion_dir(tmp_path / "env", seed=2)
    default = write_fashion_dir(tmp_path / "default", seed=3)
    monkeypatch.setattr(fashion_mnist, "DEFAULT_FASHION_MNIST_DIR", str(tmp_path / "default"))
    monkeypatch.setenv(data.FASHION_MNIST_ENV, str(tmp_path / "env"))
    np.testing.assert_array_equal(data.load_fashion_mnist("train", tmp_path / "arg")[0],
                                  arg["train"][0])
    np.testing.assert_array_equal(data.load_fashion_mnist("train")[0], env["train"][0])
    # An explicit directory without the files is an error, never a silent fallback.
    (tmp_path / "empty").mkdir()
    with pytest.raises(data.DatasetError, match="is not in .*empty \\(the data_dir argument\\)"):
        data.load_fashion_mnist("train", tmp_path / "empty")
    only_train = tmp_path / "only-train"
    write_fashion_dir(only_train)
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        (only_train / name).unlink()
    data.load_fashion_mnist("train", only_train)
    with pytest.raises(data.DatasetError, match="'test' is not in"):
        data.load_fashion_mnist("test", only_train)
    monkeypatch.setenv(data.FASHION_MNIST_ENV, str(tmp_path / "missing"))
    with pytest.raises(data.DatasetError, match="BAYES_LARQ_FASHION_MNIST_DIR"):
        data.load_fashion_mnist("train")
    monkeypatch.delenv(data.FASHION_MNIST_ENV)
    np.testing.assert_array_equal(data.load_fashion_mnist("train")[0], default["train"][0])


def test_header_only_idx_is_an_error(tmp_path, no_fashion_anywhere):
    write_fashion_dir(tmp_path / "fm", n_train=0, n_test=0)
    with pytest.raises(data.DatasetError, match="holds no images"):
        data.load_fashion_mnist("train", tmp_path / "fm")


def test_load_fashion_mnist_corrupt_file_is_an_error(tmp_path, no_fashion_anywhere):
    write_fashion_dir(tmp_path / "fm")
    labels = tmp_path / "fm" / "t10k-labels-idx1-ubyte.gz"
    labels.write_bytes(labels.read_bytes()[:-5])
    with pytest.raises(data.DatasetError, match="t10k-labels"):
        data.load_fashion_mnist("test", tmp_path / "fm")


def test_load_fashion_mnist_mismatched_counts(tmp_path, no_fashion_anywhere):
    write_fashion_dir(tmp_path / "fm")
    write_idx(tmp_path / "fm" / "train-labels-idx1-ubyte.gz", np.zeros(5, np.uint8), True)
    with pytest.raises(data.DatasetError, match="12 images.*5 labels"):
        data.load_fashion_mnist("train", tmp_path / "fm")


def test_missing_fashion_mnist_names_every_place(tmp_path, no_fashion_anywhere):
    with pytest.raises(data.DatasetNotFoundError) as info:
        data.load_fashion_mnist("train")
    message = str(info.value)
    assert "data_dir argument: not given" in message
    assert f"${data.FASHION_MNIST_ENV}: not set" in message
    assert str(tmp_path / "no-default") in message
    assert "TFDS" in message and "fashion_mnist" in message
    # The library names the Python argument; the command line renders it as --data-dir.
    assert "apt-get install dataset-fashion-mnist" in message and "data_dir='<dir>'" in message
    assert "unreachable" in message  # real TFDS: nothing prepared, download not attempted
    assert isinstance(info.value, FileNotFoundError)


def test_missing_fashion_mnist_without_tfds(tmp_path, no_fashion_anywhere, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # import fails
    with pytest.raises(data.DatasetNotFoundError, match="not installed"):
        data.load_fashion_mnist("train")
    (tmp_path / "partial").mkdir()
    write_idx(tmp_path / "partial" / "train-images-idx3-ubyte.gz",
              np.zeros((2, 28, 28), np.uint8), True)
    with pytest.raises(data.DatasetError, match="train-labels-idx1-ubyte.gz"):
        data.load_fashion_mnist("train", data_dir=tmp_path / "partial")


REAL_FASHION = "/usr/share/datasets/fashion-mnist"


@pytest.mark.skipif(
    not os.path.isfile(os.path.join(REAL_FASHION, "t10k-labels-idx1-ubyte.gz")),
    reason="Debian package dataset-fashion-mnist not installed",
)
def test_real_local_fashion_mnist(monkeypatch):
    monkeypatch.delenv(data.FASHION_MNIST_ENV, raising=False)
    assert data.DEFAULT_FASHION_MNIST_DIR == REAL_FASHION
    for split, n in (("train", 60_000), ("test", 10_000)):
        images, labels = data.load_fashion_mnist(split)
        assert images.shape == (n, 28, 28) and images.dtype == np.uint8
        assert labels.shape == (n,) and labels.dtype == np.int64
        np.testing.assert_array_equal(np.bincount(labels, minlength=10), [n // 10] * 10)
        assert images.min() == 0 and images.max() == 255
        info = data.dataset_info("fashion_mnist")
        assert (info.train_examples if split == "train" else info.test_examples) == n


def test_fashion_pipeline(tmp_path, no_fashion_anywhere):
    arrays = write_fashion_dir(tmp_path / "fm", n_train=40, n_test=10)
    images, labels = arrays["train"]
    expected = images[..., None].astype(np.float64) / 127.5 - 1.0

    ds = data.load("fashion_mnist", "train", 16, training=False, data_dir=tmp_path / "fm")
    assert ds.element_spec[0].dtype == tf.float32 and ds.element_spec[1].dtype == tf.int64
    assert [tuple(x.shape) for x, _ in ds] == [(16, 28, 28, 1), (16, 28, 28, 1), (8, 28, 28, 1)]
    x, y = collect(ds)
    np.testing.assert_allclose(x, expected, atol=1e-6)  # in order, no augmentation
    np.testing.assert_array_equal(y, labels)

    train = data.load("fashion_mnist", "train", 16, training=True, data_dir=tmp_path / "fm")
    x1, y1 = collect(train)
    x2, _ = collect(train)
    order = [int(np.flatnonzero(np.all(np.abs(expected - xi) < 1e-6, axis=(1, 2, 3)))[0])
             for xi in x1]
    assert sorted(order) == list(range(40)) and order != list(range(40))  # a permutation
    np.testing.assert_array_equal(y1, labels[order])
    assert not np.array_equal(x1, x2)  # reshuffled on the next pass

    limited = data.load("fashion_mnist", "train", 4, training=True,
                        data_dir=tmp_path / "fm", limit=6)
    xl, _ = collect(limited)
    assert len(xl) == 6
    found = {int(np.flatnonzero(np.all(np.abs(expected - xi) < 1e-6, axis=(1, 2, 3)))[0])
             for xi in xl}
    assert found == set(range(6))  # the first 6 examples, taken before shuffling


def _find_pad_crop_flip_source(out, raws, pad):
    """(index, dy, dx, flipped) with out == crop/flip of a zero-padded raw, else None."""
    size = out.shape[0]
    for i, raw in enumerate(raws):
        padded = np.pad(raw, ((pad, pad), (pad, pad), (0, 0)))
        for dy in range(2 * pad + 1):
            for dx in range(2 * pad + 1):
                crop = padded[dy:dy + size, dx:dx + size]
                for flipped, candidate in ((False, crop), (True, crop[:, ::-1])):
                    if np.array_equal(candidate, out):
                        return i, dy, dx, flipped
    return None


def test_fashion_augmentation_on_request(tmp_path, no_fashion_anywhere):
    images, labels = write_fashion_dir(tmp_path / "fm", n_train=24, n_test=4)["train"]

    def load(**kwargs):
        return data.load("fashion_mnist", "train", 8, data_dir=tmp_path / "fm", epoch=0,
                         **kwargs)

    plain = collect(load(training=True))[0]
    np.testing.assert_array_equal(plain, collect(load(training=True, augment=False))[0])
    x, y = collect(load(training=True, augment=True))
    restored = np.round((x + 1.0) * 127.5).astype(np.uint8)
    sources = [_find_pad_crop_flip_source(r, images[..., None], pad=2) for r in restored]
    assert None not in sources, "an image is not a pad-2 crop/flip of any training image"
    assert sorted(s[0] for s in sources) == list(range(24))
    np.testing.assert_array_equal(y, labels[[s[0] for s in sources]])
    assert any(s[1:3] != (2, 2) for s in sources) and len({s[3] for s in sources}) == 2
    np.testing.assert_array_equal(x, collect(load(training=True, augment=True))[0])
    with pytest.raises(ValueError, match="augment=True needs training=True"):
        load(training=False, augment=True)
    with pytest.raises(ValueError, match="`augment` must be True, False or None"):
        load(training=True, augment=1)


def test_fashion_pipeline_determinism(tmp_path, no_fashion_anywhere):
    write_fashion_dir(tmp_path / "fm", n_train=30, n_test=5)

    def make(seed):
        return data.load("fashion_mnist", "train", 8, training=True,
                         data_dir=tmp_path / "fm", shuffle_seed=seed)

    a, b = make(0), make(0)
    a1, a2 = collect(a)[1], collect(a)[1]
    np.testing.assert_array_equal(a1, collect(b)[1])
    np.testing.assert_array_equal(a2, collect(b)[1])
    assert not np.array_equal(collect(make(1))[1], a1)
    # "Pass k" counts iterators: discarding one iterator skips a pass (resuming).
    c = make(0)
    iter(c)
    np.testing.assert_array_equal(collect(c)[1], a2)


def test_fashion_pipeline_epoch_argument(tmp_path, no_fashion_anywhere):
    arrays = write_fashion_dir(tmp_path / "fm", n_train=30, n_test=5)

    def labels(epoch, seed=0):
        return collect(data.load("fashion_mnist", "train", 8, training=True, epoch=epoch,
                                 data_dir=tmp_path / "fm", shuffle_seed=seed))[1]

    first = data.load("fashion_mnist", "train", 8, training=True, epoch=0,
                      data_dir=tmp_path / "fm")
    np.testing.assert_array_equal(collect(first)[1], collect(first)[1])  # no reshuffle
    np.testing.assert_array_equal(collect(first)[1], labels(0))  # a function of (seed, epoch)
    assert sorted(labels(0)) == sorted(arrays["train"][1])
    assert not np.array_equal(labels(0), labels(1))
    assert not np.array_equal(labels(1), labels(1, seed=1))
    assert data.epoch_seed(0, 1) != data.epoch_seed(1, 0)  # not a sum of the two
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="`epoch` must be an integer >= 0; got"):
            data.load("fashion_mnist", "train", 8, training=True, epoch=bad,
                      data_dir=tmp_path / "fm")


# --------------------------------------------------------------------------- TFDS pipelines


@pytest.mark.parametrize("name,num_classes", [("cifar10", 10), ("cifar100", 100)])
def test_cifar_pipelines(name, num_classes):
    mean, std = STATS[name]
    n = 12
    with tfds.testing.mock_data(num_examples=n):
        raws = raw_tfds(name, "test")
        raw_images = np.stack([x for x, _ in raws])
        raw_labels = np.array([y for _, y in raws])

        ds = data.load(name, "test", 5, training=False)
        assert ds.element_spec[0].shape.as_list() == [None, 32, 32, 3]
        x, y = collect(ds)
        assert x.dtype == np.float32 and y.dtype == np.int64
        np.testing.assert_allclose(x, normalise(raw_images, mean, std), atol=1e-5)
        np.testing.assert_array_equal(y, raw_labels)
        assert y.max() < num_classes
        # Uniform random mock pixels: channel means near (0.5 - mean) / std.
        expected_means = (raw_images.mean(axis=(0, 1, 2)) / 255 - np.array(mean)) / np.array(std)
        np.testing.assert_allclose(x.mean(axis=(0, 1, 2)), expected_means, atol=1e-4)
        np.testing.assert_allclose(x.mean(axis=(0, 1, 2)), (0.5 - np.array(mean)) / np.array(std),
                                   atol=0.1)
        np.testing.assert_allclose(x.std(axis=(0, 1, 2)), 0.2887 / np.array(std), rtol=0.1)

        train = data.load(name, "train", 5, training=True, shuffle_seed=3)
        xt, yt = collect(train)
        xt2, _ = collect(train)
        assert xt.shape == (n, 32, 32, 3)
        restored = np.round((xt * np.array(std) + np.array(mean)) * 255)
        sources = [_find_pad_crop_flip_source(r.astype(np.uint8), raw_images, pad=4)
                   for r in restored]
        assert None not in sources, "a train image is not a pad-crop-flip of any example"
        assert sorted(s[0] for s in sources) == list(range(n))
        np.testing.assert_array_equal(yt, raw_labels[[s[0] for s in sources]])
        assert any(s[1:] != (4, 4, False) for s in sources)  # augmentation changed images
        assert len({s[3] for s in sources}) == 2  # some flipped, some not
        assert not np.array_equal(xt, xt2)

        again = collect(data.load(name, "train", 5, training=True, shuffle_seed=3))[0]
        np.testing.assert_array_equal(again, xt)  # same seed -> same batches
        other = collect(data.load(name, "train", 5, training=True, shuffle_seed=4))[0]
        assert not np.array_equal(other, xt)
        epoch_two = data.load(name, "train", 5, training=True, shuffle_seed=3, epoch=2)
        np.testing.assert_array_equal(collect(epoch_two)[0], collect(epoch_two)[0])
        assert not np.array_equal(
            collect(epoch_two)[0],
            collect(data.load(name, "train", 5, training=True, shuffle_seed=3, epoch=3))[0])

        limited = collect(data.load(name, "test", 2, training=False, limit=5))
        np.testing.assert_allclose(limited[0], normalise(raw_images[:5], mean, std), atol=1e-5)


def _pil_resize(image, height, width):
    """Bilinear (antialiased) resize of each channel with PIL in float mode."""
    from PIL import Image

    return np.stack([
        np.asarray(Image.fromarray(image[..., c].astype(np.float32), mode="F")
                   .resize((width, height), Image.BILINEAR))
        for c in range(image.shape[-1])
    ], axis=-1)


def test_imagenet_eval_resize_and_center_crop():
    size = 24
    resize_min = round(size * 256 / 224)
    with tfds.testing.mock_data(num_examples=5):
        raws = raw_tfds("imagenet2012", "validation", encoded=True)
        x, y = collect(data.load("imagenet2012", "test", 2, training=False, image_size=size))
    assert x.shape == (5, size, size, 3) and x.dtype == np.float32 and y.dtype == np.int64
    np.testing.assert_array_equal(y, [label for _, label in raws])
    for (encoded, _), out in zip(raws, x):
        decoded = tf.io.decode_jpeg(encoded, channels=3).numpy()
        h, w = decoded.shape[:2]
        scale = resize_min / min(h, w)
        new_h, new_w = max(resize_min, round(h * scale)), max(resize_min, round(w * scale))
        resized = _pil_resize(decoded, new_h, new_w)
        top, left = (new_h - size) // 2, (new_w - size) // 2
        expected = normalise(resized[top:top + size, left:left + size], IMAGENET_MEAN,
                             IMAGENET_STD)
        np.testing.assert_allclose(out, expected, atol=1e-4)


def test_imagenet_default_size_and_validation_split():
    with tfds.testing.mock_data(num_examples=2):
        x, _ = collect(data.load("imagenet2012", "validation", 2, training=False))
    assert x.shape == (2, 224, 224, 3)
    assert data.dataset_info("imagenet2012").input_shape == (224, 224, 3)


def _find_resized_crop(out, encoded, size):
    """(top, left, h, w, flipped) of a crop whose PIL resize equals ``out``, else None.

    Only windows with area >= 0.08 * image area and aspect ratio w/h in [3/4, 4/3]
    (with slack for rounding to whole pixels), or the whole image, are tried. Windows are
    decoded with tf.io.decode_and_crop_jpeg: on these noise JPEGs its pixels differ from a
    crop of the fully decoded image near chroma block edges.
    """
    height, width = tf.io.extract_jpeg_shape(encoded).numpy()[:2]
    windows = [(height, width)] + [
        (h, w) for h in range(1, height + 1) for w in range(1, width + 1)
        if h * w >= 0.08 * height * width - max(h, w) and 0.7 <= w / h <= 1.45
    ]
    for h, w in windows:
        for top in range(height - h + 1):
            for left in range(width - w + 1):
                crop = tf.io.decode_and_crop_jpeg(encoded, [top, left, h, w], channels=3)
                resized = _pil_resize(crop.numpy(), size, size)
                for flipped, candidate in ((False, resized), (True, resized[:, ::-1])):
                    if np.max(np.abs(candidate - out)) < 1e-2:
                        return top, left, h, w, flipped
    return None


def test_imagenet_train_random_resized_crop():
    size = 8
    n = 16
    with tfds.testing.mock_data(num_examples=n):
        raws = raw_tfds("imagenet2012", "train", encoded=True)
        train = data.load("imagenet2012", "train", 4, training=True, image_size=size,
                          shuffle_seed=5)
        x1, y1 = collect(train)
        x2, _ = collect(train)
        again = collect(data.load("imagenet2012", "train", 4, training=True,
                                  image_size=size, shuffle_seed=5))[0]
        limited = collect(data.load("imagenet2012", "train", 4, training=True,
                                    image_size=size, limit=3))
    labels = [label for _, label in raws]
    assert len(set(labels)) == n  # mock labels identify the examples
    assert x1.shape == (n, size, size, 3) and x1.dtype == np.float32
    assert sorted(y1.tolist()) == sorted(labels)
    np.testing.assert_array_equal(again, x1)  # deterministic for a fixed seed
    assert not np.array_equal(x1, x2)  # new crops / order on the next pass
    assert sorted(limited[1].tolist()) == sorted(labels[:3])

    pixels = x1 * np.array(IMAGENET_STD) + np.array(IMAGENET_MEAN)
    assert pixels.min() > -1e-3 and pixels.max() < 1 + 1e-3
    # Each output is a (possibly flipped) resized crop within the area / ratio bounds.
    checked = 0
    for out, label in zip(pixels * 255, y1):
        encoded = raws[labels.index(label)][0]
        if np.prod(tf.io.extract_jpeg_shape(encoded).numpy()[:2]) > 200:
            continue  # keep the brute-force search small (3 of the 16 mock images)
        assert _find_resized_crop(out, encoded, size) is not None
        checked += 1
    assert checked == 3


# --------------------------------------------------------------------------- names and checks


def test_dataset_info():
    expected = {
        "fashion_mnist": (10, (28, 28, 1), 60_000, 10_000),
        "cifar10": (10, (32, 32, 3), 50_000, 10_000),
        "cifar100": (100, (32, 32, 3), 50_000, 10_000),
        "imagenet2012": (1000, (224, 224, 3), 1_281_167, 50_000),
    }
    assert set(data.DATASETS) == set(expected)
    for name, (classes, shape, n_train, n_test) in expected.items():
        info = data.dataset_info(name)
        assert info.name == name and info.num_classes == classes
        assert tuple(info.input_shape) == shape
        assert (info.train_examples, info.test_examples) == (n_train, n_test)
    assert data.FASHION_MNIST_ENV == "BAYES_LARQ_FASHION_MNIST_DIR"


def test_load_reads_everything_dataset_specific_from_the_spec(monkeypatch, fashion_dir):
    """A new row in DATASETS and no code: load() normalises with the row's mean / std and
    reads its splits, so a dataset is data, not a branch of load()."""
    spec = dataclasses.replace(data.DATASETS["fashion_mnist"], name="fashion_scaled",
                               mean=(0.5,), std=(0.25,))
    monkeypatch.setitem(data.DATASETS, "fashion_scaled", spec)
    images, labels = data.load_fashion_mnist("test", data_dir=fashion_dir)
    batch, batch_labels = next(iter(data.load("fashion_scaled", "test", 8, training=False,
                                              data_dir=fashion_dir, limit=8)))
    expected = (images[:8, ..., None].astype(np.float64) / 255 - 0.5) / 0.25
    np.testing.assert_allclose(batch.numpy(), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(batch_labels.numpy(), labels[:8])
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.num_classes = 3


def test_public_names():
    assert sorted(data.__all__) == sorted(set(data.__all__))
    for name in data.__all__:
        assert hasattr(data, name), name
    assert {"DatasetSpec", "DatasetInfo", "DATASETS", "load", "read_idx"} <= set(data.__all__)


def test_bad_names_and_splits():
    with pytest.raises(ValueError, match="mnist.*cifar10.*cifar100.*fashion_mnist.*imagenet2012"):
        data.dataset_info("mnist")
    with pytest.raises(ValueError, match="'valid'.*train, holdout, test"):
        data.validate_split("cifar10", "valid")
    assert data.validate_split("imagenet2012", "test") == "validation"
    assert data.validate_split("cifar100", "train") == "train"
    with pytest.raises(ValueError, match="imagenet2012"):
        data.load("imagenet", "train", 8, training=True)
    with pytest.raises(ValueError, match="'validation'.*train, holdout, test"):
        data.load("fashion_mnist", "validation", 8, training=False)
    with pytest.raises(ValueError, match=re.escape("`batch_size` must be an integer >= 1; got 0.")):
        data.load("cifar10", "train", 0, training=True)
    with pytest.raises(ValueError, match=re.escape("`limit` must be an integer >= 1; got 0.")):
        data.load("cifar10", "train", 8, training=True, limit=0)
    with pytest.raises(ValueError, match="image_size=64 is not supported for 'cifar10'"):
        data.load("cifar10", "train", 8, training=True, image_size=64)
    with pytest.raises(ValueError, match=re.escape("`image_size` must be an integer >= 1; got 0.")):
        data.load("imagenet2012", "train", 8, training=True, image_size=0)
    with pytest.raises(ValueError, match=re.escape("`shuffle_seed` must be an integer; got 1.5.")):
        data.load("cifar10", "train", 8, training=True, shuffle_seed=1.5)


def test_tfds_dataset_missing_offline(tmp_path, monkeypatch):
    monkeypatch.setattr(tfds_source, "_probably_online", lambda host, port, timeout=3.0: False)
    with pytest.raises(data.DatasetNotFoundError) as info:
        data.load("cifar10", "train", 8, training=True, data_dir=str(tmp_path / "tfds"))
    message = str(info.value)
    assert "cifar10" in message and str(tmp_path / "tfds") in message
    assert "unreachable" in message


def test_holdout_carves_the_end_of_the_training_split(tmp_path, no_fashion_anywhere):
    arrays = write_fashion_dir(tmp_path / "fm", n_train=40, n_test=10)
    images, labels = arrays["train"]

    def read(split, **kwargs):
        return collect(data.load("fashion_mnist", split, 16, training=False,
                                 data_dir=tmp_path / "fm", **kwargs))

    x_train, y_train = read("train", holdout=12)
    x_holdout, y_holdout = read("holdout", holdout=12)
    np.testing.assert_array_equal(y_train, labels[:28])
    np.testing.assert_array_equal(y_holdout, labels[28:])
    np.testing.assert_allclose(x_holdout[..., 0], images[28:] / 127.5 - 1.0, atol=1e-6)
    shuffled = collect(data.load("fashion_mnist", "train", 8, training=True, epoch=0,
                                 data_dir=tmp_path / "fm", holdout=12))[1]
    assert sorted(shuffled) == sorted(labels[:28])  # augmentation never sees the holdout
    np.testing.assert_array_equal(read("test", holdout=12)[1], arrays["test"][1])
    assert len(read("train", holdout=12, limit=5)[1]) == 5
    with pytest.raises(ValueError, match='needs holdout=N'):
        read("holdout")
    with pytest.raises(ValueError, match="leaves no training examples"):
        read("train", holdout=40)
    with pytest.raises(ValueError, match="leaves no training examples"):
        read("train", holdout=60_000)
    with pytest.raises(ValueError, match=re.escape("`holdout` must be an integer >= 1; got 0.")):
        read("train", holdout=0)


def test_holdout_slices_tfds_splits(monkeypatch):
    asked = []

    def fake_tfds_load(name, split, data_dir=None, **kwargs):
        asked.append(split)
        images = np.zeros((3, 32, 32, 3), np.uint8)
        return tf.data.Dataset.from_tensor_slices((images, np.arange(3)))

    monkeypatch.setattr(data, "_tfds_load", fake_tfds_load)
    for split in ("train", "holdout", "test"):
        data.load("cifar10", split, 2, training=False, holdout=10_000)
    data.load("cifar10", "train", 2, training=False)
    assert asked == ["train[:-10000]", "train[-10000:]", "test", "train"]
