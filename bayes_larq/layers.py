r"""ReActNet's learnable activations for binary networks (Liu et al., ECCV 2020).

Two per-channel layers that ReActNet adds around a binary convolution; the model
builders place them with `learnable_threshold=True` and `rprelu=True`
(`bayes_larq.models.common.LayerFactory`), docs/method.md says where and why.

* `LearnableShift` moves each channel by a learned offset, $y_c = x_c + \beta_c$. Before a
  layer that takes the sign of its input it is ReActNet's RSign: the sign threshold
  of channel $c$ becomes $-\beta_c$ instead of 0,
  $\mathrm{sign}(x_c + \beta_c)$.
* `RPReLU` is ReActNet's shifted PReLU,
  $y_c = \mathrm{PReLU}_{a_c}(x_c - \gamma_c) + \zeta_c$ with
  $\mathrm{PReLU}_a(z) = z$ for $z > 0$ and $a z$ otherwise: a learned slope $a_c$ for
  negative inputs, and learned shifts of the input ($\gamma_c$) and output ($\zeta_c$).

Both convert with Larq Compute Engine: the shift is an ADD that stays in float before
`LceQuantize`, and RPReLU becomes ADD, PRELU, ADD (the converter recognises the PReLU
pattern of `tf.keras.layers.PReLU`, which `RPReLU.call` uses).

```python
import bayes_larq as bl

model = bl.models.get("small_cnn", bonn=False, learnable_threshold=True, rprelu=True)
```
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf
from larq import utils as lq_utils

from bayes_larq.defaults import check_non_negative

__all__ = ["LearnableShift", "RPReLU"]


def _channel_weight(layer: tf.keras.layers.Layer, input_shape: tf.TensorShape, name: str,
                    initializer: Any) -> tf.Variable:
    """A float32 weight with one value per channel (the last axis) of `input_shape`."""
    channels = tf.TensorShape(input_shape)[-1]
    if channels is None:
        raise ValueError(f"{type(layer).__name__} {layer.name!r} needs a known number of "
                         f"channels (the last axis of its input); got shape {input_shape}.")
    return layer.add_weight(name=name, shape=(channels,), initializer=initializer,
                            trainable=True)


@lq_utils.register_keras_custom_object
class LearnableShift(tf.keras.layers.Layer):
    r"""Adds a learned offset per channel: $y_c = x_c + \beta_c$ ($\beta$ starts at 0).

    Placed before a layer whose input quantizer takes the sign, it is ReActNet's RSign
    (a learnable sign threshold): $\mathrm{sign}(x_c + \beta_c)$.
    $\partial y_c / \partial x_c = 1$ and $\partial L / \partial \beta_c$ is the sum of
    $\partial L / \partial y_c$ over the batch and the spatial positions.

    Examples:
        >>> shift = LearnableShift()
        >>> y = shift(tf.ones((2, 4, 4, 3)))
    """

    def build(self, input_shape: tf.TensorShape) -> None:
        self.shift = _channel_weight(self, input_shape, "shift", "zeros")
        super().build(input_shape)

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        return inputs + tf.cast(self.shift, inputs.dtype)


@lq_utils.register_keras_custom_object
class RPReLU(tf.keras.layers.Layer):
    r"""ReActNet's RPReLU: $y_c = \mathrm{PReLU}_{a_c}(x_c - \gamma_c) + \zeta_c$.

    $\mathrm{PReLU}_a(z) = \max(z, 0) + a \min(z, 0)$, per channel $c$ (the last axis).
    The slope $a$ starts at `initial_slope` (0.25, as ReActNet and PyTorch's PReLU), the
    shifts $\gamma$ and $\zeta$ at 0. Gradients, with $z_c = x_c - \gamma_c$:
    $\partial y_c / \partial x_c = 1$ if $z_c > 0$ else $a_c$;
    $\partial y_c / \partial \gamma_c = -\partial y_c / \partial x_c$;
    $\partial y_c / \partial a_c = \min(z_c, 0)$; $\partial y_c / \partial \zeta_c = 1$.

    Args:
        initial_slope: the starting slope $a$ for negative inputs, finite and >= 0.

    Examples:
        >>> rprelu = RPReLU()
        >>> y = rprelu(tf.constant([[-2.0, 3.0]]))  # [[-0.5, 3.0]]
    """

    def __init__(self, initial_slope: float = 0.25, **kwargs: Any):
        super().__init__(**kwargs)
        self.initial_slope = check_non_negative("initial_slope", initial_slope)

    def build(self, input_shape: tf.TensorShape) -> None:
        self.input_shift = _channel_weight(self, input_shape, "input_shift", "zeros")
        self.slope = _channel_weight(self, input_shape, "slope",
                                     tf.keras.initializers.Constant(self.initial_slope))
        self.output_shift = _channel_weight(self, input_shape, "output_shift", "zeros")
        super().build(input_shape)

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        dtype = inputs.dtype
        z = inputs - tf.cast(self.input_shift, dtype)
        # The form of tf.keras.layers.PReLU (its slope shaped [1, ..., 1, channels], one
        # axis fewer than the input), which the TFLite converter fuses into one PRELU op.
        slope = tf.reshape(tf.cast(self.slope, dtype), [1] * (inputs.shape.rank - 2) + [-1])
        negative = -slope * tf.nn.relu(-z)
        return tf.nn.relu(z) + negative + tf.cast(self.output_shift, dtype)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "initial_slope": self.initial_slope}
