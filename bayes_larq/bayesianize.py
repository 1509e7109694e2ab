r"""Turn a Larq model into a BONN model and back, weights and predictions kept.

```python
import bayes_larq as bl

bonn_model = bl.bayesianize(larq_model, lam=1e-4, nu=1e-4, reduction="sum")
bl.BONN(bonn_model).fit(...)                  # fine-tune with the Bayesian losses
plain = bl.debayesianize(bonn_model)          # plain Larq again, for users without bayes_larq
```

`bayesianize` replaces every 1-bit *kernel* quantizer (`ste_sign`, `approx_sign`,
`swish_sign`, `magnitude_aware_sign`, any Larq quantizer with precision 1) by
`BayesianSign`; input quantizers, multi-bit quantizers and float layers are left alone.
`BayesianSign` initialises W, mu and sigma from each kernel (`mixture.fit_mixture`).

Its forward pass is $\mathrm{sign}(x)/\bar{w}$ where the plain quantizer gives
$\mathrm{sign}(x)$, so the layer's output is divided by $\bar w$. To predict exactly as
before, that scale is folded into the BatchNormalization that follows the layer, in its
moving statistics, with $\epsilon$ and $\gamma$ unchanged:

$$
m' = m / \bar w, \qquad v' = (v + \epsilon) / \bar w^2 - \epsilon,
$$

so that $(z/\bar w - m') / \sqrt{v' + \epsilon} = (z - m)/\sqrt{v + \epsilon}$ exactly; in
training mode BatchNorm normalises by batch statistics and the scale cancels. A layer not
followed by a BatchNormalization gets W normalised to mean 1 instead (its scale is then
1). `debayesianize` is the inverse: "ste_sign" kernels, the scale folded back into the
BatchNorm ($m' = \bar w m$, $v' = \bar w^2 (v + \epsilon) - \epsilon$), which LCE fuses into its
binary convolution. Both directions are functional clones: Sequential and functional
models, nested models included; subclassed models are refused.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import tensorflow as tf

from bayes_larq._keras import is_functional
from bayes_larq.quantizers import (
    TRANSPOSED_CONVOLUTIONS,
    BayesianSign,
    bayesian_kernels,
    binary_kernels,
)

__all__ = ["UnfoldableScale", "bayesianize", "debayesianize", "swap_kernel_quantizers"]

QUANTIZER_ARGUMENTS = ("kernel_quantizer", "depthwise_quantizer", "pointwise_quantizer")


def _own_weights(layer: tf.keras.layers.Layer) -> list[tf.Variable]:
    """A layer's weights without the variables of its `BayesianSign` quantizers."""
    owned = set()
    for attribute in QUANTIZER_ARGUMENTS:
        quantizer = getattr(layer, attribute, None)
        if isinstance(quantizer, BayesianSign):
            owned.update(id(w) for w in quantizer.weights)
    return [w for w in layer.weights if id(w) not in owned]


def swap_kernel_quantizers(model: tf.keras.Model, replace: Callable[[Any], Any | None],
                           attributes: tuple[str, ...] = QUANTIZER_ARGUMENTS) -> tf.keras.Model:
    """A clone of `model` in which `replace(quantizer)` (when not None) takes the place of
    each kernel quantizer, with every other weight copied. Nested models are cloned the
    same way.

    Raises:
        ValueError: for a subclassed model (Keras cannot clone it from its config).
    """
    def clone_layer(layer):
        if isinstance(layer, tf.keras.Model):
            return swap_kernel_quantizers(layer, replace, attributes)
        config = layer.get_config()
        for attribute in attributes:
            new = replace(getattr(layer, attribute, None)) if attribute in config else None
            if new is not None:
                config[attribute] = new
        return layer.__class__.from_config(config)

    if not isinstance(model, tf.keras.Model):
        raise ValueError(f"Expected a tf.keras.Model; got {type(model).__name__}.")
    if not is_functional(model):
        raise ValueError(f"Cannot clone model {model.name!r}: it is subclassed; only "
                         f"functional and Sequential models are supported.")
    clone = tf.keras.models.clone_model(model, clone_function=clone_layer)
    originals = {layer.name: layer for layer in model.layers}
    for layer in clone.layers:
        original = originals.get(layer.name)
        if original is None or isinstance(layer, tf.keras.Model):
            continue  # a nested model copied its weights when it was cloned
        for target, source in zip(_own_weights(layer), _own_weights(original)):
            target.assign(source)
    return clone


def _batch_norms_after(layer) -> list[tf.keras.layers.BatchNormalization]:
    """The BatchNormalizations that take `layer`'s output, at every call of `layer` (a
    layer shared by several places of the graph has one output per call), provided they
    alone use those outputs and normalise nothing else; else [] (a change of `layer`'s
    scale then reaches a layer that no BatchNorm protects, or another layer's output)."""
    uses = layer.outbound_nodes
    batch_norms = {id(use.outbound_layer): use.outbound_layer for use in uses}
    if not uses or not all(isinstance(candidate, tf.keras.layers.BatchNormalization)
                           for candidate in batch_norms.values()):
        return []
    used_calls = {id(parent) for use in uses for parent in use.parent_nodes}
    if not all(id(call) in used_calls for call in layer.inbound_nodes):
        return []  # a call whose output goes no further than the model's output
    if any(tf.nest.flatten(call.inbound_layers) != [layer]
           for batch_norm in batch_norms.values() for call in batch_norm.inbound_nodes):
        return []  # a BatchNorm shared with another layer's output
    return list(batch_norms.values())


class UnfoldableScale(ValueError):
    """A binary layer's scale changed and nothing after it can absorb the change."""


def _scale_batch_norm(batch_norm, factor: np.ndarray) -> None:
    """Make `batch_norm` give the same inference output for inputs multiplied by `factor`."""
    epsilon = batch_norm.epsilon
    mean, variance = batch_norm.moving_mean.numpy(), batch_norm.moving_variance.numpy()
    new_variance = factor**2 * (variance + epsilon) - epsilon
    if np.any(new_variance < 0):
        raise UnfoldableScale(
            f"Cannot fold the binary scale into {batch_norm.name!r}: its moving variance "
            f"is too small for the factor {float(np.min(factor)):.3g} (epsilon "
            f"{epsilon:g}). Train it briefly first, or pass a BatchNorm with smaller epsilon.")
    batch_norm.moving_mean.assign(factor * mean)
    batch_norm.moving_variance.assign(new_variance)


def _channel_scale(quantizer, kernel: tf.Variable) -> np.ndarray:
    """Per last kernel axis, the magnitude of the quantized kernel (1 for "ste_sign",
    1/mean(W) for BayesianSign, mean |x| for magnitude_aware_sign, ...)."""
    quantized = np.abs(np.asarray(quantizer(tf.convert_to_tensor(kernel)), np.float64))
    return quantized.reshape(-1, quantized.shape[-1]).mean(axis=0)


def _output_factor(kernel, factor: np.ndarray) -> np.ndarray:
    r"""What a change `factor` of one kernel's scale (per last kernel axis) does to its
    layer's output: the factor per output channel, or a scalar.

    A kernel or pointwise kernel has its output channels last: `factor` as it is. A
    depthwise kernel `[..., C_in, M]` scales depthwise channel $c M + m$ by `factor[m]`;
    in a depthwise layer that is the output, in a separable one it feeds the pointwise
    convolution, which passes on only a scale common to all its inputs.
    """
    layer = kernel.layer
    if kernel.attribute != "depthwise_kernel":
        if isinstance(layer, TRANSPOSED_CONVOLUTIONS):
            raise UnfoldableScale(f"Layer {layer.name!r} ({type(layer).__name__}) changes its "
                                  f"binary kernel scale per input channel, which no later "
                                  f"layer can absorb.")
        return factor
    if not hasattr(layer, "pointwise_kernel"):
        return np.tile(factor, kernel.latent.shape[-2])
    if not np.allclose(factor, factor[0], rtol=1e-6):
        raise UnfoldableScale(f"Layer {layer.name!r} changes its depthwise kernel scale per "
                              f"channel; the binary pointwise convolution after it cannot "
                              f"absorb that. Keep one scale for the whole depthwise kernel.")
    return factor[:1]


def _fold_output_factor(layer, factor: np.ndarray, kernels: list) -> None:
    r"""Make `layer`, whose output (bias excluded) is now `factor` times the original's,
    give the original's predictions again.

    With BatchNormalizations right after it, one after each of its calls (a shared layer
    has several, `_batch_norms_after`), and a linear or ReLU activation (which a positive
    factor passes through), the bias is multiplied by `factor` so the whole output is,
    and each BatchNorm absorbs `factor` (`_scale_batch_norm`). Otherwise the layer's
    `BayesianSign` W is multiplied by `factor`, which divides its scale by it.
    """
    batch_norms = _batch_norms_after(layer)
    activation = getattr(getattr(layer, "activation", None), "__name__", "linear")
    if batch_norms and activation in ("linear", "relu"):
        bias = getattr(layer, "bias", None) if getattr(layer, "use_bias", False) else None
        for batch_norm in batch_norms:
            _scale_batch_norm(batch_norm, factor)
        if bias is not None:
            bias.assign(bias * tf.cast(factor, bias.dtype))
        return
    bayesian = [k.quantizer for k in kernels if isinstance(k.quantizer, BayesianSign)
                and k.attribute != "depthwise_kernel"]
    if bayesian and (bayesian[0].scale == "channel" or np.allclose(factor, factor.flat[0])):
        w = bayesian[0].reconstruction
        w.assign(w * tf.cast(factor if bayesian[0].scale == "channel" else factor.flat[0],
                             w.dtype))
        return
    raise UnfoldableScale(
        f"Layer {layer.name!r} changes its binary kernel scale and has no "
        f"BatchNormalization after it (after each of its calls, and nothing else using its "
        f"output) to absorb the change; plain Larq cannot express BayesianSign's scale "
        f"there. Add a BatchNormalization after it.")


def _match_scales(original: tf.keras.Model, clone: tf.keras.Model) -> None:
    """Per binary layer of `clone`, fold the ratio of its kernels' scales to those of
    `original` (each kernel matched by layer name and kernel attribute) into what follows
    it, once per layer (`_output_factor`, `_fold_output_factor`), so predictions match."""
    before = {(k.layer.name, k.attribute): _channel_scale(k.quantizer, k.latent)
              for k in binary_kernels(original)}
    by_layer = {}
    for kernel in binary_kernels(clone):
        by_layer.setdefault(kernel.layer.name, []).append(kernel)
    for kernels in by_layer.values():
        total = np.ones(1)
        for kernel in kernels:
            key = (kernel.layer.name, kernel.attribute)
            if key in before:
                factor = _channel_scale(kernel.quantizer, kernel.latent) / before[key]
                if not np.allclose(factor, 1.0, rtol=1e-6):
                    total = total * _output_factor(kernel, factor)
        if not np.allclose(total, 1.0, rtol=1e-6):
            _fold_output_factor(kernels[0].layer, total, kernels)


def bayesianize(model: tf.keras.Model, **bayesian_sign: Any) -> tf.keras.Model:
    """A copy of `model` with `BayesianSign(**bayesian_sign)` on every 1-bit kernel.

    Weights are kept; W, mu and sigma start from the kernels; the binary scale is folded
    into the following BatchNormalization (module docstring), so the copy predicts as
    `model` does, up to float rounding.

    Raises:
        ValueError: `model` has no 1-bit kernel quantizer, is subclassed, or a setting
            of `BayesianSign` is invalid.
        NotImplementedError: a 1-bit kernel BayesianSign does not support (that of a
            transposed convolution: `quantizers.unsupported_role`).
    """
    BayesianSign.check_settings(bayesian_sign)
    if not binary_kernels(model):
        raise ValueError(f"{model.name!r} has no 1-bit kernel quantizer (ste_sign, "
                         f"approx_sign, ... on a kernel), so there is nothing to bayesianize.")
    binary = {id(k.quantizer) for k in binary_kernels(model)}
    clone = swap_kernel_quantizers(
        model, lambda q: BayesianSign(**bayesian_sign)
        if id(q) in binary and not isinstance(q, BayesianSign) else None,
        attributes=("kernel_quantizer", "pointwise_quantizer"))
    # A kernel that already had a BayesianSign keeps its learned W, mu and sigma.
    learned = {(k.layer.name, k.attribute): k.quantizer for k in bayesian_kernels(model)}
    for kernel in bayesian_kernels(clone):
        kept = learned.get((kernel.layer.name, kernel.attribute))
        if kept is None:
            kernel.quantizer.reset_from_kernel(kernel.latent.numpy())
        else:
            for target, source in zip(kernel.quantizer.weights, kept.weights):
                target.assign(source)
    _match_scales(model, clone)
    return clone


def debayesianize(model: tf.keras.Model, fold_scale: bool = True) -> tf.keras.Model:
    """A plain Larq copy of `model`: every `BayesianSign` becomes "ste_sign".

    With `fold_scale` (default) the binary scale $1/\\bar w$ goes into the following
    BatchNormalization, so the copy predicts as `model` does; a BayesianSign layer not
    followed by one must have $\\bar w = 1$ (ValueError otherwise). `fold_scale=False`
    gives the inference twin that `bayes_larq.profile` measures (scale dropped).
    """
    clone = swap_kernel_quantizers(
        model, lambda q: "ste_sign" if isinstance(q, BayesianSign) else None)
    if fold_scale:
        _match_scales(model, clone)
    return clone
