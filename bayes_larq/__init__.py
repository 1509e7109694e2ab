"""bayes_larq: Bayesian Optimized 1-bit CNNs (BONN, ICCV 2019) on top of Larq."""

from bayes_larq._legacy_keras import ensure_legacy_keras

ensure_legacy_keras()

from bayes_larq import callbacks, convert, data, losses, quantizers, training  # noqa: E402
from bayes_larq.quantizers import BayesianSign  # noqa: E402
from bayes_larq.training import BONN, BayesianFeatureLoss  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "BONN", "BayesianFeatureLoss", "BayesianSign", "callbacks", "convert", "data", "losses",
    "quantizers", "training", "__version__",
]
