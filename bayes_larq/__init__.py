"""bayes_larq: Bayesian Optimized 1-bit CNNs (BONN, ICCV 2019) on top of Larq.

The core, imported here: `losses`, `mixture`, `quantizers` (`BayesianSign`), `training`
(`BONN`), `flips` (the flip threshold), `callbacks`, `bayesianize` / `debayesianize`,
`profile`, `convert`, `staged` (two-step training), `layers` (ReActNet's learnable
activations), `weight_decay` (the paper's L2 on the kernels), `defaults`, and the model
builders `models`. The application (`bayes_larq.app`: data, runs, report, cli) is
loaded on first use of `bl.app`; the core never imports it.
"""

import importlib

from bayes_larq._legacy_keras import ensure_legacy_keras

ensure_legacy_keras()

from bayes_larq import (  # noqa: E402
    callbacks,
    convert,
    defaults,
    flips,
    layers,
    losses,
    mixture,
    models,
    profile,
    quantizers,
    staged,
    training,
    weight_decay,
)
from bayes_larq.bayesianize import bayesianize, debayesianize  # noqa: E402
from bayes_larq.quantizers import BayesianSign  # noqa: E402
from bayes_larq.training import BONN, BayesianFeatureLoss  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "BONN", "BayesianFeatureLoss", "BayesianSign", "app", "bayesianize", "callbacks",
    "convert", "debayesianize", "defaults", "flips", "layers",
    "losses", "mixture", "models", "profile", "quantizers", "staged", "training", "weight_decay",
    "__version__",
]


def __getattr__(name):
    """`bl.app` imports the application on first use (the core does not need it)."""
    if name == "app":
        return importlib.import_module("bayes_larq.app")
    raise AttributeError(f"module 'bayes_larq' has no attribute {name!r}")
