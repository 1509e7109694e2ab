"""The library's defaults and argument checks: one place that every layer above reads.

`BayesianSign`, the model builders, `bayes_larq.app.runs` and the command line take
their default loss weights, reductions and scales from here, and validate arguments
with the checks below, so a default or an error message is written once.

The loss-weight defaults are the setting measured to lose least against plain Larq; the
evidence and how to rerun it are in docs/evidence.md.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Iterable

__all__ = [
    "LAM", "MAX_COUNT", "NU", "THETA", "REDUCTION", "REDUCTIONS", "SCALE", "SCALES",
    "PRIOR_GRADIENT",
    "PRIOR_GRADIENTS", "MIN_SIGMA", "check_choice", "check_non_negative", "check_integer",
    "check_positive",
]

LAM = 1e-4  # weight of the Bayesian kernel loss L_B
NU = 1e-2  # weight of the mixture prior inside L_B
THETA = 1e-3  # weight of the Bayesian feature loss L_F
REDUCTIONS = ("mean", "sum")
REDUCTION = "mean"  # L_B divided by a layer's weight count; "sum" is the paper's
SCALES = ("layer", "channel")
SCALE = "layer"  # one binary-kernel scale 1/mean(W) per layer, as the paper
PRIOR_GRADIENTS = ("sum", "mean")
PRIOR_GRADIENT = "sum"  # the exact gradient of L_B for mu and sigma
MIN_SIGMA = 1e-3  # lower bound of every mixture / feature standard deviation


def check_choice(name: str, value: Any, allowed: Iterable[Any]) -> Any:
    """Return `value`, or raise ValueError naming `name` and the allowed values."""
    allowed = tuple(allowed)
    if value not in allowed:
        raise ValueError(
            f"`{name}` must be one of {', '.join(repr(a) for a in allowed)}; got {value!r}."
        )
    return value


def _finite_at_least(name: str, value: Any, minimum: float, inclusive: bool) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    above = number >= minimum if inclusive else number > minimum
    if isinstance(value, bool) or not (above and number < math.inf):
        bound = ">=" if inclusive else ">"
        raise ValueError(f"`{name}` must be a finite number {bound} {minimum:g}; got {value!r}.")
    return number


def check_non_negative(name: str, value: Any) -> float:
    """Return `value` as a float, or raise ValueError if it is not a finite number >= 0."""
    return _finite_at_least(name, value, 0.0, inclusive=True)


def check_positive(name: str, value: Any) -> float:
    """Return `value` as a float, or raise ValueError if it is not a finite number > 0."""
    return _finite_at_least(name, value, 0.0, inclusive=False)


# The largest batch size or example count accepted: tf.data and TensorFlow's int32 shapes
# take no more; a larger value is a typo that would fail deep inside TensorFlow.
MAX_COUNT = 2**31 - 1


def check_integer(name: str, value: Any, minimum: int = 1, allow_none: bool = False,
                  maximum: int | None = None) -> int | None:
    """Return `value` as an int, or raise ValueError if it is not an integer in
    [`minimum`, `maximum`]."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}; got {value!r}.")
    if maximum is not None and value > maximum:
        raise ValueError(f"`{name}` must be an integer <= {maximum}; got {value!r}.")
    return int(value)
