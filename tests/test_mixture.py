"""Mixture statistics against NumPy: closed-form fit, density, bimodality, flip ratio."""

import bayes_larq  # noqa: F401  - selects tf_keras before TensorFlow is touched

import numpy as np
import pytest

from bayes_larq.mixture import (
    Mixture,
    bimodality_coefficient,
    fit_mixture,
    fit_reconstruction,
    flip_ratio,
    layer_statistics,
    mixture_density,
)


def numpy_mixture(x, latent, mu_pos, mu_neg, sigma_pos, sigma_neg):
    """The layer mixture written out channel by channel with explicit Gaussians."""
    flat = latent.reshape(-1, latent.shape[-1])
    total = np.zeros_like(x, dtype=np.float64)
    for c in range(flat.shape[1]):
        share = np.mean(flat[:, c] >= 0)
        for weight, mean, sigma in ((share, mu_pos[c], sigma_pos[c]),
                                    (1 - share, -mu_neg[c], sigma_neg[c])):
            total += weight * np.exp(-(x - mean) ** 2 / (2 * sigma**2)) / np.sqrt(
                2 * np.pi * sigma**2)
    return total / flat.shape[1]


def test_mixture_density_matches_numpy_and_integrates_to_one():
    rng = np.random.default_rng(0)
    latent = rng.normal(0.1, 1.0, size=(3, 3, 4, 3))
    mixture = Mixture(mu_pos=np.array([0.5, 0.8, 1.0]), mu_neg=np.array([0.7, 0.4, 0.9]),
                      sigma_pos=np.array([0.2, 0.3, 0.5]), sigma_neg=np.array([0.4, 0.1, 0.3]))
    grid = np.linspace(-6, 6, 20001)
    density = mixture_density(grid, latent, mixture)
    np.testing.assert_allclose(density, numpy_mixture(grid, latent, *mixture), rtol=1e-10)
    assert np.trapz(density, grid) == pytest.approx(1.0, abs=1e-6)


def test_bimodality_coefficient_reference_values():
    rng = np.random.default_rng(0)
    assert abs(bimodality_coefficient(rng.normal(size=200_000)) - 1 / 3) < 0.01
    assert abs(bimodality_coefficient(rng.uniform(-1, 1, 200_000)) - 5 / 9) < 0.01
    two_modes = np.concatenate([rng.normal(-1, 0.01, 1000), rng.normal(1, 0.01, 1000)])
    assert bimodality_coefficient(two_modes) > 0.99


def test_fit_mixture_is_the_stationary_point_of_the_prior():
    rng = np.random.default_rng(2)
    kernel = rng.normal(0.05, 0.3, size=(3, 3, 5, 4))
    kernel[..., 3] = np.abs(kernel[..., 3])  # a channel with no negative weight
    fitted = fit_mixture(kernel, min_sigma=1e-3)
    reconstruction = fit_reconstruction(kernel)
    assert reconstruction.shape == kernel.shape
    flat = kernel.reshape(-1, 4)
    for c in range(4):
        positive, negative = flat[flat[:, c] >= 0, c], -flat[flat[:, c] < 0, c]
        negative = negative if negative.size else np.abs(flat[:, c])  # borrows the channel
        np.testing.assert_allclose(fitted.mu_pos[c], positive.mean(), rtol=1e-5)
        np.testing.assert_allclose(fitted.sigma_pos[c], positive.std(), rtol=1e-4)
        np.testing.assert_allclose(fitted.mu_neg[c], negative.mean(), rtol=1e-5)
        np.testing.assert_allclose(fitted.sigma_neg[c], negative.std(), rtol=1e-4)
        w = np.abs(flat[:, c]).sum() / np.square(flat[:, c]).sum()
        np.testing.assert_allclose(reconstruction.reshape(-1, 4)[:, c], w, rtol=1e-5)
    constant = fit_mixture(np.full((2, 2), 0.3), min_sigma=0.01)  # zero spread -> the floor
    np.testing.assert_allclose(constant.sigma_pos, 0.01)
    np.testing.assert_allclose(constant.mu_pos, 0.3, rtol=1e-6)


def test_layer_statistics_and_flip_ratio():
    rng = np.random.default_rng(4)
    latent = rng.normal(size=(3, 3, 2, 6))
    mixture = fit_mixture(latent)
    flipped = latent.copy()
    flipped.flat[:10] = -flipped.flat[:10]
    assert flip_ratio(flipped, latent) == pytest.approx(10 / latent.size)
    stats = layer_statistics(flipped, mixture, reference=latent, w_bar=1.5)
    assert stats["flip_ratio"] == pytest.approx(10 / latent.size)
    assert stats["latent_scale"] == pytest.approx(np.mean(np.abs(latent)), rel=1e-6)
    assert stats["mu_pos"] == pytest.approx(np.mean(mixture.mu_pos), rel=1e-6)
    assert stats["w_bar"] == 1.5
    assert "flip_ratio" not in layer_statistics(latent, mixture)
