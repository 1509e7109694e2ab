"""Wide-ResNet-22 family for CIFAR, binarized as in the paper (Bi-Real units).

WRN-22-k, in the notation of the BONN/PCNN papers "16k-16k-32k-64k": a 3x3 stem of
16k channels, then 3 groups of 3 basic blocks (2 convolutions each) with 16k, 32k and
64k channels at 32x32, 16x16 and 8x8. k = 1 gives "16-16-32-64", k = 4 (the default,
the paper's larger CIFAR model) "64-64-128-256". Weight layers: stem + 18 3x3 convs +
2 1x1 downsampling shortcuts (groups 2 and 3) + classifier = 22.

Each 3x3 convolution is a Bi-Real unit (`common.bireal_unit`) with its own real-valued
shortcut, as in the ResNet-18 builders, so all CIFAR/ImageNet models share one unit.
"""

import tensorflow as tf

from bayes_larq.defaults import check_integer

from .common import LayerFactory, bireal_stages, head, model_builder

__all__ = ["wrn22"]

BLOCKS_PER_GROUP = 3  # (22 - 4) / 6
GROUP_WIDTHS = (16, 32, 64)


@model_builder(num_classes=10, input_shape=(32, 32, 3))
def wrn22(factory: LayerFactory, inputs: tf.Tensor, num_classes: int,
          width_factor: int = 4) -> tf.keras.Model:
    """Binary WRN-22-`width_factor` for CIFAR, outputs logits.

    Args:
        width_factor: integer k >= 1; channels are 16k (stem, group 1), 32k, 64k.

    Examples:
        >>> model = wrn22(num_classes=100, width_factor=1)
    """
    k = check_integer("width_factor", width_factor, minimum=1)
    x = factory.conv(inputs, 16 * k, 3, "stem", "stem_conv")
    x = factory.batch_norm(x, "stem_bn")
    x = bireal_stages(factory, x, [width * k for width in GROUP_WIDTHS], BLOCKS_PER_GROUP,
                      prefix="group")
    outputs = head(factory, x, num_classes)
    return tf.keras.Model(inputs, outputs, name=factory.model_name(f"wrn22_{k}"))
