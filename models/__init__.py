"""Model builders and their registry (installed as `bayes_larq.models`).

```python
from bayes_larq import models

models.names()                      # ['resnet18', 'resnet18_cifar', 'small_cnn', 'wrn22']
model = models.get("wrn22", num_classes=100, width_factor=1, scope="full")
```

Every builder has the signature

    builder(num_classes=..., input_shape=..., bonn=True, scope="paper",
            precision="binary", float_activation=None, learnable_threshold=False,
            rprelu=False, <architecture arguments>,
            sync_batch_norm=False, **bayesian_sign)

(declared once, by the `model_builder` decorator of `models/common.py`; `check_options`
checks the shared arguments without building) and returns a functional
`tf.keras.Model` whose output is logits (no softmax) and whose
last layer is a Dense/QuantDense named "logits" (its input is the penultimate feature
vector). Compile with `SparseCategoricalCrossentropy(from_logits=True)`.

* `bonn=True`: binary kernels use `bayes_larq.quantizers.BayesianSign(**bayesian_sign)`
  (for example `lam=1e-4, reduction="sum", scale="channel"`); `bonn=False`: the plain
  Larq baseline ("ste_sign"). The settings are checked in both cases.
  Binary layers always use `input_quantizer="ste_sign"`, `kernel_constraint=
  "weight_clip"`, no bias, and `pad_values=1.0` when padded (LCE-friendly).
* `scope="paper"`: the BONN paper's scope: every 3x3 convolution of the residual
  blocks is binary; the first convolution, the 1x1 downsampling shortcuts and the
  classifier are real. `scope="full"`: also the 1x1 shortcuts and the classifier are
  binary. The first convolution stays real (its 1 or 3 input channels leave nothing
  for binary kernels to accelerate and binarizing the image loses most of it), and so
  do BatchNorm (folded into the binary convolutions by LCE), pooling and the shortcut
  additions. See docs/models.md.
* `precision="float"` (requires `bonn=False`): the same architecture without
  quantizers, with `float_activation` ("relu" by default) where the binary model takes
  the sign; for the accuracy-gap comparison.

Builders draw no random numbers except through Keras initializers, so
`tf.keras.utils.set_random_seed(seed)` before building makes a model reproducible.
"""

from typing import Any, Callable

import tensorflow as tf

from .common import PRECISIONS, SCOPES, check_options
from .resnet import resnet18, resnet18_cifar
from .small import small_cnn
from .wrn import wrn22

_REGISTRY = {
    "small_cnn": small_cnn,
    "resnet18": resnet18,
    "resnet18_cifar": resnet18_cifar,
    "wrn22": wrn22,
}

DEFAULT = "small_cnn"


def names() -> list[str]:
    """The registered model names, sorted."""
    return sorted(_REGISTRY)


def builder(name: str) -> Callable[..., tf.keras.Model]:
    """The builder function registered under `name`."""
    if name not in _REGISTRY:
        raise ValueError(f"Unknown model {name!r}; valid names: {', '.join(names())}.")
    return _REGISTRY[name]


def get(name: str, **kwargs: Any) -> tf.keras.Model:
    """Build the model registered under `name` with the builder's keyword arguments.

    Raises:
        ValueError: unknown name, scope, precision or bad architecture argument; the
            message names the valid choices.
    """
    return builder(name)(**kwargs)


def register(name: str, model_builder: Callable[..., tf.keras.Model]
             ) -> Callable[..., tf.keras.Model]:
    """Register a builder (same signature as above) under a new name."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"A model name must be a non-empty string; got {name!r}.")
    if name in _REGISTRY:
        raise ValueError(f"A model named {name!r} is already registered.")
    if not callable(model_builder):
        raise ValueError(f"`model_builder` must be callable; got {model_builder!r}.")
    _REGISTRY[name] = model_builder
    return model_builder


__all__ = [
    "DEFAULT", "PRECISIONS", "SCOPES", "builder", "check_options", "get", "names",
    "register",
    "resnet18", "resnet18_cifar", "small_cnn", "wrn22",
]
