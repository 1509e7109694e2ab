r"""Weight decay as the BONN paper applies it: an L2 penalty on the kernels.

```python
model = bl.models.get("resnet18", num_classes=1000)
model = bl.weight_decay.with_weight_decay(model, 1e-4)   # every conv and dense kernel
bonn = bl.BONN(model)
bonn.compile(tf.keras.optimizers.SGD(0.1, momentum=0.9), ...)
```

The paper trains with "SGD, momentum 0.9, weight decay 1e-4". `with_weight_decay`
gives every convolution and dense layer of a model the Keras kernel regularizer
`tf.keras.regularizers.L2(weight_decay / 2)`, so the model's loss gains

$$ \frac{\lambda_{wd}}{2} \sum_{\text{kernels}} \sum x^2 $$

and the gradient of each kernel element $x$ gains $\lambda_{wd}\,x$. The decay is
*coupled*: it enters the optimizer with the data gradient, so SGD with momentum $m$
and rate $\eta$ updates $v \leftarrow m v - \eta (g + \lambda_{wd} x)$,
$x \leftarrow x + v$: PyTorch's `SGD(weight_decay=...)`, the optimizer of the ResNet
recipe the paper follows. (Keras' optimizer argument `weight_decay` is *decoupled*,
$x \leftarrow x - \eta \lambda_{wd} x$ outside the momentum, which under momentum 0.9
decays about ten times less; with Adam this L2 is Adam's classic L2, not AdamW.)

What it applies to: the kernel of every `Conv*`, `Dense`, `QuantConv*` and
`QuantDense` layer (depthwise and pointwise kernels of separable layers too), which for
a binary layer is its latent, full-precision kernel. Not to biases, BatchNorm, the
reconstruction vectors W or the mixture mu and sigma of `BayesianSign`, nor the
feature-loss centers and sigmas: the paper does not say it decays them, and shrinking
W or sigma would change the kernel loss rather than regularise the network.

The regularizers are part of each layer's config, so the decay is saved with the model
(`.keras` checkpoints resume with it) and survives `bayes_larq.staged.binarize_kernels`
and `bayes_larq.bayesianize`.
"""

from __future__ import annotations

import tensorflow as tf

from bayes_larq import defaults

__all__ = ["REGULARIZED_KERNELS", "decayed_kernels", "with_weight_decay"]

# Kernel attribute -> the layer-config key of its regularizer.
REGULARIZED_KERNELS = {"kernel": "kernel_regularizer",
                       "depthwise_kernel": "depthwise_regularizer",
                       "pointwise_kernel": "pointwise_regularizer"}


def _decayable(layer: tf.keras.layers.Layer) -> list[str]:
    """The regularizer keys of `layer`'s kernels."""
    config = layer.get_config()
    return [key for attribute, key in REGULARIZED_KERNELS.items()
            if key in config and getattr(layer, attribute, None) is not None]


def with_weight_decay(model: tf.keras.Model, weight_decay: float) -> tf.keras.Model:
    """A copy of the functional `model`, weights kept, with weight decay `weight_decay`
    on every kernel (module docstring); `model` itself for 0.

    Raises:
        ValueError: `weight_decay` is not a finite number >= 0, a kernel already has a
            regularizer (it would be replaced), or `model` nests models.
    """
    weight_decay = defaults.check_non_negative("weight_decay", weight_decay)
    if weight_decay == 0:
        return model
    if any(isinstance(layer, tf.keras.Model) for layer in model.layers):
        raise ValueError(f"with_weight_decay needs a flat model; {model.name!r} nests models.")
    for layer in model.layers:
        taken = [key for key in _decayable(layer) if layer.get_config()[key] is not None]
        if taken:
            raise ValueError(f"Layer {layer.name!r} already has a {taken[0]}; weight decay "
                             f"would replace it. Remove it, or leave out weight_decay.")

    def decayed(layer):
        config = layer.get_config()
        for key in _decayable(layer):
            config[key] = tf.keras.regularizers.L2(weight_decay / 2)
        return layer.__class__.from_config(config)

    clone = tf.keras.models.clone_model(model, clone_function=decayed)
    clone.set_weights(model.get_weights())
    return clone


def decayed_kernels(model: tf.keras.Model) -> list[tf.Variable]:
    """The variables of `model` that carry a weight-decay (kernel) regularizer."""
    return [getattr(layer, attribute) for layer in model.layers
            for attribute, key in REGULARIZED_KERNELS.items()
            if getattr(layer, key, None) is not None
            and getattr(layer, attribute, None) is not None]
