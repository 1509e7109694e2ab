"""ResNet-18 in the Bi-Real Net form (Larq Zoo's design), for ImageNet and for CIFAR.

Each of the 16 3x3 convolutions of the 8 basic blocks is one Bi-Real unit
(`common.bireal_unit`): sign(x) -> binary 3x3 conv -> BatchNorm, added to a real-valued
shortcut that is the identity, or AvgPool(2) -> 1x1 conv -> BatchNorm where a stage
starts (3 downsampling shortcuts: 64->128, 128->256, 256->512). Stem and head:

* ImageNet (`resnet18`): 7x7/2 conv (64) -> BatchNorm -> 3x3/2 max-pool; global
  average pooling -> "logits" Dense. Float trainable parameters with 1000 classes:
  11,689,512, the same as torchvision's ResNet-18 (the AvgPool + 1x1 shortcut has the
  weights of torchvision's 1x1/2 shortcut).
* CIFAR (`resnet18_cifar`): 3x3/1 conv (64) -> BatchNorm, no max-pool, same stages and
  head (the usual CIFAR ResNet-18, 32x32 -> 4x4 before pooling).
"""

from collections.abc import Sequence

import tensorflow as tf

from .common import LayerFactory, bireal_stages, head, model_builder

__all__ = ["resnet18", "resnet18_cifar", "resnet_stages"]

STAGE_FILTERS = (64, 128, 256, 512)
BLOCKS_PER_STAGE = 2  # basic blocks of 2 convolutions: 4 x 2 x 2 = 16 binary 3x3 convs


def resnet_stages(factory: LayerFactory, x: tf.Tensor,
                  filters: Sequence[int] = STAGE_FILTERS,
                  blocks: int = BLOCKS_PER_STAGE) -> tf.Tensor:
    """The four stages of ResNet-18 (layers "stage1_block1_unit1_..." onwards)."""
    return bireal_stages(factory, x, filters, blocks, prefix="stage")


def _resnet18(factory: LayerFactory, inputs: tf.Tensor, num_classes: int, stem: tf.Tensor,
              name: str) -> tf.keras.Model:
    """The stages and the head after `stem`, the model named after `name`."""
    x = resnet_stages(factory, stem)
    outputs = head(factory, x, num_classes)
    return tf.keras.Model(inputs, outputs, name=factory.model_name(name))


@model_builder(num_classes=1000, input_shape=(224, 224, 3))
def resnet18(factory: LayerFactory, inputs: tf.Tensor, num_classes: int) -> tf.keras.Model:
    """Bi-Real-style ResNet-18 for ImageNet (224x224x3 by default), outputs logits.

    Paper scope binarizes the 16 3x3 convolutions; full scope also the 3 1x1
    downsampling convolutions and the classifier. The stem is real in both scopes.
    Fully convolutional with global pooling, so any input of at least 32x32 works.

    Examples:
        >>> model = resnet18(num_classes=10, input_shape=(64, 64, 3), bonn=False)
    """
    x = factory.conv(inputs, STAGE_FILTERS[0], 7, "stem", "stem_conv", strides=2)
    x = factory.batch_norm(x, "stem_bn")
    x = tf.keras.layers.MaxPool2D(3, strides=2, padding="same", name="stem_pool")(x)
    return _resnet18(factory, inputs, num_classes, x, "resnet18")


@model_builder(num_classes=10, input_shape=(32, 32, 3))
def resnet18_cifar(factory: LayerFactory, inputs: tf.Tensor,
                   num_classes: int) -> tf.keras.Model:
    """Bi-Real-style ResNet-18 for CIFAR (3x3 stem, no max-pool), outputs logits.

    Same binarization scopes as `resnet18`.

    Examples:
        >>> model = resnet18_cifar(num_classes=100)
    """
    x = factory.conv(inputs, STAGE_FILTERS[0], 3, "stem", "stem_conv")
    x = factory.batch_norm(x, "stem_bn")
    return _resnet18(factory, inputs, num_classes, x, "resnet18_cifar")
