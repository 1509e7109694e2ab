r"""Statistics of a binarized layer's latent weights and of its two-mode mixture.

One function per statistic, each with one name, used by `BayesianSign` (initial and
closed-form mu / sigma), `bayes_larq.callbacks.MixtureMonitor` (per epoch) and the run
reports (at initialisation and at the end). All are NumPy functions of a latent kernel
whose last axis holds the output channels. The method is described in docs/method.md.

* `Mixture`: the four values of the mixture, $\mu^\pm_i$ and $\sigma^\pm_i$.
* `fit_mixture`: per output channel $i$, the closed-form optimum of the mixture,
  $\mu^\pm_i$ = mean magnitude and $\sigma^\pm_i$ = standard deviation of the
  weights on each side; `fit_reconstruction`: the least-squares reconstruction factor
  $w_i = \sum|x| / \sum x^2$.
* `mixture_density`: the layer's mixture density $p(x)$, averaged over channels.
* `bimodality_coefficient`: Sarle's $b = (g^2 + 1)/\kappa$.
* `flip_ratio`: share of weights whose sign differs from a reference kernel.
* `layer_statistics`: all of the above in one dict, the per-layer numbers of a report.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from bayes_larq.defaults import MIN_SIGMA

__all__ = [
    "MIXTURE_KEYS", "Mixture", "bimodality_coefficient", "fallback_mixture", "fit_mixture",
    "fit_reconstruction", "flip_ratio", "layer_statistics", "mixture_density",
]


class Mixture(NamedTuple):
    r"""The two-mode Gaussian mixture of a binarized layer's latent weights.

    Per output channel $i$, the weights $x \ge 0$ follow $\mathcal{N}(\mu^+_i, \sigma^+_i)$
    and the weights $x < 0$ follow $\mathcal{N}(-\mu^-_i, \sigma^-_i)$: `mu_pos` and
    `mu_neg` are the magnitudes of the two modes, `sigma_pos` and `sigma_neg` their
    standard deviations, each of shape `[channels]` (NumPy arrays, tensors or
    variables). The one form in which the four values travel: `BayesianSign.mixture()`,
    `fit_mixture`, the kernel loss (`bayes_larq.losses`) and the reports take and give
    it; as a named tuple it is also a `tf.nest` structure.
    """

    mu_pos: Any
    mu_neg: Any
    sigma_pos: Any
    sigma_neg: Any

    def as_dict(self) -> dict[str, Any]:
        """The four values by name (the keys of `MIXTURE_KEYS`), as reports store them."""
        return dict(zip(MIXTURE_KEYS, self))


MIXTURE_KEYS = tuple(Mixture.__annotations__)  # mu_pos, mu_neg, sigma_pos, sigma_neg

# Moments of a weight uniform on [0, 1] (a weight-clipped kernel seen from one side):
# used only when the first kernel seen cannot be read (e.g. built inside a tf.function).
FALLBACK_MU = 0.5
FALLBACK_SIGMA = float(np.sqrt(1.0 / 12.0))


def _side_moments(channel: np.ndarray, side_mask: np.ndarray, min_sigma: float):
    """Mean magnitude and std of one side (positive or negative) of a channel's weights."""
    magnitudes = np.abs(channel[side_mask]) if side_mask.any() else np.abs(channel)
    mu = float(magnitudes.mean()) if magnitudes.size and magnitudes.mean() > 0 else FALLBACK_MU
    sigma = float(np.sqrt(np.mean((magnitudes - mu) ** 2))) if magnitudes.size else 0.0
    return mu, max(sigma, min_sigma)


def _channels(kernel: np.ndarray) -> np.ndarray:
    kernel = np.asarray(kernel, dtype=np.float64)
    return kernel.reshape(-1, kernel.shape[-1])


def fit_mixture(kernel: np.ndarray, min_sigma: float = MIN_SIGMA) -> Mixture:
    r"""The closed-form mixture of a latent kernel (output channels last).

    Per output channel, `mu_pos` / `sigma_pos` are the mean and std of the non-negative
    weights, `mu_neg` / `sigma_neg` those of the magnitudes of the negative weights,
    where $\partial L_B/\partial\mu = \partial L_B/\partial\sigma = 0$. An empty side
    borrows the magnitudes of the whole channel; sigma is at least `min_sigma`.

    Examples:
        >>> mixture = fit_mixture(np.array([[0.5, -0.2], [0.3, -0.4]]))
        >>> [round(float(v), 2) for v in mixture.mu_pos]
        [0.4, 0.3]
    """
    flat = _channels(kernel)
    pos = [_side_moments(c, c >= 0, min_sigma) for c in flat.T]
    neg = [_side_moments(c, c < 0, min_sigma) for c in flat.T]
    (mu_pos, sigma_pos), (mu_neg, sigma_neg) = ([np.array(v, np.float32) for v in zip(*side)]
                                                for side in (pos, neg))
    return Mixture(mu_pos, mu_neg, sigma_pos, sigma_neg)


def fit_reconstruction(kernel: np.ndarray) -> np.ndarray:
    r"""The closed-form reconstruction vector W of a latent kernel, the kernel's shape.

    Per output channel the least-squares scalar $w = \sum|x| / \sum x^2$ (the best single
    factor with $\mathrm{sign}(x) \approx w x$; 1 for an all-zero channel), broadcast.
    """
    flat = _channels(kernel)
    sum_abs, sum_sq = np.abs(flat).sum(axis=0), np.square(flat).sum(axis=0)
    w_channel = np.where(sum_sq > 0, sum_abs / np.where(sum_sq > 0, sum_sq, 1.0), 1.0)
    shape = np.shape(kernel)
    return np.broadcast_to(w_channel, flat.shape).reshape(shape).astype(np.float32)


def fallback_mixture(channels: int, min_sigma: float = MIN_SIGMA) -> Mixture:
    """The mixture when the kernel is unknown: the moments of a uniform weight."""
    sigma = np.full(channels, max(FALLBACK_SIGMA, min_sigma), np.float32)
    mu = np.full(channels, FALLBACK_MU, np.float32)
    return Mixture(mu, mu.copy(), sigma, sigma.copy())


def mixture_density(x: np.ndarray, latent: np.ndarray, mixture: Mixture) -> np.ndarray:
    r"""The layer's mixture density at the points `x`, averaged over its $C$ channels.

    $$
    p(x) = \frac{1}{C}\sum_i \Big[\pi_i\,\mathcal{N}(x; \mu^+_i, \sigma^+_i)
         + (1 - \pi_i)\,\mathcal{N}(x; -\mu^-_i, \sigma^-_i)\Big],
    \qquad \pi_i = \text{share of } x \ge 0 \text{ in channel } i.
    $$
    """
    x = np.asarray(x, np.float64)[:, None]
    channels = np.asarray(latent).reshape(-1, np.asarray(latent).shape[-1])
    positive_share = np.mean(channels >= 0, axis=0)

    def normal(mean, sigma):
        return np.exp(-0.5 * ((x - mean) / sigma) ** 2) / (sigma * np.sqrt(2 * np.pi))

    per_channel = (positive_share * normal(mixture.mu_pos, mixture.sigma_pos)
                   + (1 - positive_share) * normal(-mixture.mu_neg, mixture.sigma_neg))
    return per_channel.mean(axis=1)


def bimodality_coefficient(values: np.ndarray) -> float:
    r"""Sarle's bimodality coefficient $b = (g^2 + 1) / \kappa$ of a sample.

    $g$ is the skewness and $\kappa$ the (non-excess) kurtosis. $b = 1/3$ for a
    Gaussian, $5/9$ for a uniform distribution, and it tends to 1 for two well-separated
    modes; values above 5/9 suggest bimodality. 0 for a constant sample.

    Examples:
        >>> round(bimodality_coefficient([-1.0, -1.0, 1.0, 1.0]), 3)
        1.0
    """
    values = np.asarray(values, np.float64).ravel()
    centered = values - values.mean()
    variance = np.mean(centered**2)
    if variance == 0:
        return 0.0
    skewness = np.mean(centered**3) / variance**1.5
    kurtosis = np.mean(centered**4) / variance**2
    return float((skewness**2 + 1) / kurtosis)


def flip_ratio(latent: np.ndarray, reference: np.ndarray) -> float:
    """Share of weights whose sign (x >= 0 is +1) differs between `latent` and `reference`."""
    return float(np.mean((np.asarray(latent) >= 0) != (np.asarray(reference) >= 0)))


def layer_statistics(latent: np.ndarray, mixture: Mixture,
                     reference: np.ndarray | None = None,
                     w_bar: float | None = None) -> dict[str, float]:
    """The per-layer numbers of reports and monitors, averaged over output channels.

    Keys: mu_pos, mu_neg, sigma_pos, sigma_neg (of `mixture`), latent_scale (mean |x|),
    bimodality (`bimodality_coefficient`), and, when given, flip_ratio (against
    `reference`, e.g. the kernel at initialisation or at the previous epoch) and w_bar
    (the mean of W, whose inverse scales the binary kernel).
    """
    stats = {key: float(np.mean(value)) for key, value in mixture.as_dict().items()}
    stats["latent_scale"] = float(np.mean(np.abs(latent)))
    stats["bimodality"] = bimodality_coefficient(latent)
    if reference is not None:
        stats["flip_ratio"] = flip_ratio(latent, reference)
    if w_bar is not None:
        stats["w_bar"] = float(w_bar)
    return stats
