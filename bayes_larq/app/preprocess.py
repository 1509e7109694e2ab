"""Per-example preprocessing of the input pipelines: seeded, stateless augmentation
(pad-crop-flip, ImageNet's random resized crop), ImageNet's evaluation crop, and
normalisation. Each function is pure given its seed, so a pass is the same in every
process (see `bayes_larq.app.data`, "Determinism").

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
  `bayes_larq.app.data` (`CIFAR10_MEAN`, `CIFAR10_STD`, `CIFAR100_MEAN`, `CIFAR100_STD`,
  `IMAGENET_MEAN`, `IMAGENET_STD`; channel order R, G, B). The CIFAR constants
  are the mean and standard deviation of all pixels of the respective training set; the
  ImageNet ones are the usual torchvision constants.
"""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    import tensorflow as tf

__all__ = ["imagenet_eval", "imagenet_train", "lazy_tensorflow", "normalise", "pad_crop_flip"]

IMAGENET_CROP_AREA = (0.08, 1.0)
IMAGENET_CROP_RATIO = (3.0 / 4.0, 4.0 / 3.0)


def lazy_tensorflow() -> ModuleType:
    """TensorFlow, imported when first needed (after bayes_larq selected tf_keras)."""
    import bayes_larq  # noqa: F401  - selects tf_keras before TensorFlow is used
    import tensorflow as tf

    return tf


def _seeds(seed, n):
    """``n`` independent stateless seeds (shape [n, 2]) from one int64 scalar."""
    tf = lazy_tensorflow()
    return tf.random.experimental.stateless_split(
        tf.stack([seed, tf.constant(0, tf.int64)]), num=n
    )


def pad_crop_flip(pad: int) -> Callable[[tf.Tensor, tf.Tensor, int], tf.Tensor]:
    """Zero-pad by ``pad``, random ``size`` x ``size`` crop, random horizontal flip (uint8
    in and out): the augmentation of CIFAR (pad 4) and, on request, Fashion-MNIST (pad 2)."""

    def augment(image, seed, size):
        tf = lazy_tensorflow()
        crop_seed, flip_seed = tf.unstack(_seeds(seed, 2))
        image = tf.pad(image, [[pad, pad], [pad, pad], [0, 0]])
        channels = image.shape[-1]
        image = tf.image.stateless_random_crop(image, [size, size, channels], seed=crop_seed)
        return tf.image.stateless_random_flip_left_right(image, seed=flip_seed)

    return augment


def imagenet_train(encoded: tf.Tensor, seed: tf.Tensor, size: int) -> tf.Tensor:
    """Random resized crop of a JPEG (area 0.08-1, ratio 3/4-4/3) + flip, float32 0..255."""
    tf = lazy_tensorflow()
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


def imagenet_eval(encoded: tf.Tensor, size: int) -> tf.Tensor:
    """Resize the shorter side to round(size * 256 / 224), centre crop size x size."""
    tf = lazy_tensorflow()
    image = tf.io.decode_jpeg(encoded, channels=3)
    resize_min = int(round(size * 256 / 224))
    hw = tf.cast(tf.shape(image)[:2], tf.float32)
    new_hw = tf.cast(tf.round(hw * (resize_min / tf.reduce_min(hw))), tf.int32)
    new_hw = tf.maximum(new_hw, resize_min)
    image = tf.image.resize(image, new_hw, method="bilinear", antialias=True)
    top, left = (new_hw[0] - size) // 2, (new_hw[1] - size) // 2
    image = image[top : top + size, left : left + size, :]
    return tf.ensure_shape(image, [size, size, 3])


def normalise(images: tf.Tensor, mean: tuple[float, ...] | None,
              std: tuple[float, ...] | None) -> tf.Tensor:
    """Float32 ``(x / 255 - mean) / std`` per channel; ``x / 127.5 - 1`` if ``mean`` is None."""
    tf = lazy_tensorflow()
    images = tf.cast(images, tf.float32)
    if mean is None:
        return images / 127.5 - 1.0
    mean = tf.constant([255.0 * m for m in mean], tf.float32)
    std = tf.constant([255.0 * s for s in std], tf.float32)
    return (images - mean) / std
