r"""Two-step training (ReActNet): binary activations first, then binary weights too.

```python
import bayes_larq as bl

step1 = bl.models.get("small_cnn", bonn=False, precision="activations")  # real kernels
...compile and fit step1...
step2 = bl.staged.binarize_kernels(step1)             # "ste_sign" kernels, weights kept
step2 = bl.staged.binarize_kernels(step1, "bayesian_sign")      # or BONN's quantizer
...compile and fit step2 (or bl.BONN(step2))...
```

Step 1 trains a network whose binarized layers take the sign of their inputs (Larq's
`input_quantizer`) but keep real-valued kernels (no `kernel_quantizer`); step 2 starts
from every weight of step 1 (latent kernels, BatchNorm, everything) with the kernels
binarized as well. Each step is an ordinary `fit`.

A real kernel $x$ and its binary replacement differ in scale: per output channel $i$ the
binary layer computes with $\alpha_i\,\mathrm{sign}(x)$-like magnitudes $s_i$ (1 for
"ste_sign", $1/\bar w$ for `BayesianSign`) where the real one had, on average,
$\alpha_i = \mathrm{mean}_i |x|$. `binarize_kernels` folds the ratio $s_i / \alpha_i$ into
the BatchNormalization after the layer (its moving statistics, as
`bayes_larq.bayesianize` does), so that the step-2 model predicts exactly as the step-1
model would with its kernels replaced by $\alpha_i\,\mathrm{sign}(x)$ (XNOR-Net's scaled
binary kernel): the closest binary network to step 1, and where step 2 starts.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf
from larq import quantizers as lq_quantizers

from bayes_larq.bayesianize import _batch_norms_after, _own_weights, _scale_batch_norm
from bayes_larq.quantizers import BayesianSign, is_one_bit

__all__ = ["binarize_kernels", "binary_activation_layers"]


def binary_activation_layers(model: tf.keras.Model) -> list[tf.keras.layers.Layer]:
    """The layers of `model` that binarize their input but keep a real kernel."""
    return [layer for layer in model.layers
            if is_one_bit(getattr(layer, "input_quantizer", None))
            and hasattr(layer, "kernel_quantizer") and layer.kernel_quantizer is None]


def _fresh_quantizer(kernel_quantizer):
    """A new quantizer instance per layer from an alias or a quantizer to copy."""
    if isinstance(kernel_quantizer, str):
        return lq_quantizers.get(kernel_quantizer)
    return type(kernel_quantizer).from_config(kernel_quantizer.get_config())


def binarize_kernels(model: tf.keras.Model, kernel_quantizer: Any = "ste_sign",
                     kernel_constraint: Any = "weight_clip") -> tf.keras.Model:
    """The step-2 model of a step-1 `model`: every layer with a 1-bit input quantizer and
    a real kernel gets `kernel_quantizer` (an alias such as "ste_sign" or
    "bayesian_sign", or a quantizer whose config each layer copies) and
    `kernel_constraint`; every weight is kept, and the kernel scale is folded into the
    following BatchNorm (module docstring).

    Raises:
        ValueError: no such layer, `kernel_quantizer` is not 1-bit, a binarized layer has
            no BatchNormalization after it, or `model` cannot be cloned (subclassed or
            nested models).
    """
    targets = {layer.name for layer in binary_activation_layers(model)}
    if not targets:
        raise ValueError(f"{model.name!r} has no layer with a 1-bit input quantizer and a "
                         f"real kernel (a step-1 model: models.get(..., "
                         f"precision='activations')).")
    if not is_one_bit(_fresh_quantizer(kernel_quantizer)):
        raise ValueError(f"`kernel_quantizer` {kernel_quantizer!r} is not a 1-bit quantizer.")
    if any(isinstance(layer, tf.keras.Model) for layer in model.layers):
        raise ValueError(f"binarize_kernels needs a flat model; {model.name!r} nests models.")

    def clone_layer(layer):
        config = layer.get_config()
        if layer.name in targets:
            config["kernel_quantizer"] = _fresh_quantizer(kernel_quantizer)
            config["kernel_constraint"] = kernel_constraint
        return layer.__class__.from_config(config)

    try:
        clone = tf.keras.models.clone_model(model, clone_function=clone_layer)
    except (ValueError, NotImplementedError) as error:
        raise ValueError(f"Cannot clone model {model.name!r} ({error}); only functional "
                         f"and Sequential models are supported.") from error
    originals = {layer.name: layer for layer in model.layers}
    for layer in clone.layers:
        for target, source in zip(_own_weights(layer), _own_weights(originals[layer.name])):
            target.assign(source)
    for layer in clone.layers:
        if layer.name in targets:
            _fold_kernel_scale(layer)
    return clone


def _fold_kernel_scale(layer):
    kernel = layer.kernel.numpy()
    if isinstance(layer.kernel_quantizer, BayesianSign):
        layer.kernel_quantizer.reset_from_kernel(kernel)
    channels = kernel.reshape(-1, kernel.shape[-1])
    real_scale = np.abs(channels).mean(axis=0)
    binary = np.abs(np.asarray(layer.kernel_quantizer(tf.convert_to_tensor(kernel))))
    binary_scale = binary.reshape(-1, kernel.shape[-1]).mean(axis=0)
    batch_norms = _batch_norms_after(layer)
    if not batch_norms:
        raise ValueError(f"Layer {layer.name!r} has no BatchNormalization after it (after "
                         f"each of its calls, and nothing else using its output) to absorb "
                         f"the change of kernel scale from real to binary; add one.")
    for batch_norm in batch_norms:
        _scale_batch_norm(batch_norm, binary_scale / np.maximum(real_scale, 1e-12))
