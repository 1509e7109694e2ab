"""A small, fast binary CNN for 28x28 grey images (Fashion-MNIST): the default model.

Layout (28x28x1 input, values about [-1, 1]):

    stem   3x3 conv (32), BatchNorm, 2x2 max-pool            -> 14x14x32   real
    unit1  Bi-Real unit, 64 filters, stride 2                 ->  7x7x64    binary 3x3
           (shortcut: 2x2 avg-pool, 1x1 conv, BatchNorm)                    real / full: binary
    unit2  Bi-Real unit, 64 filters                           ->  7x7x64    binary 3x3
    unit3  Bi-Real unit, 128 filters, stride 2                ->  4x4x128   binary 3x3
           (shortcut as unit1)
    unit4  Bi-Real unit, 128 filters                          ->  4x4x128   binary 3x3
    head   global average pooling -> "logits" Dense (10)                    real / full: binary

So it has the same parts as the paper's ResNets (a real stem, binary 3x3 convolutions
with real shortcuts, 1x1 downsampling shortcuts, a classifier) at about 6.7 M MACs per
image, and trains an epoch of Fashion-MNIST in under a minute on 2 CPU cores (see
docs/models.md for the measurement; a unit at 14x14 would add 1.8 M MACs but, being
memory-bound on CPU, about 60% more time per step). `width` scales every channel count.
"""

import tensorflow as tf

from bayes_larq.defaults import check_integer

from .common import LayerFactory, bireal_unit, head, model_builder

__all__ = ["small_cnn"]

# (filters as a multiple of `width`, stride) of the binary units
UNITS = ((2, 2), (2, 1), (4, 2), (4, 1))


@model_builder(num_classes=10, input_shape=(28, 28, 1))
def small_cnn(factory: LayerFactory, inputs: tf.Tensor, num_classes: int,
              width: int = 32) -> tf.keras.Model:
    """The fast Fashion-MNIST network (4 binary 3x3 convs), outputs logits.

    Args:
        width: channels of the stem (integer >= 1, default 32); the binary units use
            2x and 4x that.

    Examples:
        >>> model = small_cnn(bonn=False)
    """
    width = check_integer("width", width, minimum=1)
    x = factory.conv(inputs, width, 3, "stem", "stem_conv")
    x = factory.batch_norm(x, "stem_bn")
    x = tf.keras.layers.MaxPool2D(2, padding="same", name="stem_pool")(x)
    for index, (multiple, strides) in enumerate(UNITS, start=1):
        x = bireal_unit(factory, x, multiple * width, f"unit{index}", strides=strides)
    outputs = head(factory, x, num_classes)
    return tf.keras.Model(inputs, outputs, name=factory.model_name("small_cnn"))
