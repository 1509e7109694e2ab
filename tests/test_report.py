import bayes_larq  # noqa: F401  - selects tf_keras before TensorFlow is touched

import numpy as np
import pytest

from bayes_larq import models, report


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
    mixture = {"mu_pos": np.array([0.5, 0.8, 1.0]), "mu_neg": np.array([0.7, 0.4, 0.9]),
               "sigma_pos": np.array([0.2, 0.3, 0.5]), "sigma_neg": np.array([0.4, 0.1, 0.3])}
    grid = np.linspace(-6, 6, 20001)
    density = report.mixture_density(grid, latent, mixture)
    np.testing.assert_allclose(density, numpy_mixture(grid, latent, **mixture), rtol=1e-10)
    assert np.trapz(density, grid) == pytest.approx(1.0, abs=1e-6)


def test_binarized_kernels_bayesian_and_plain():
    bonn_model = models.get("small_cnn", width=4)
    found = report.binarized_kernels(bonn_model)
    assert list(found) == ["unit1_conv", "unit2_conv", "unit3_conv", "unit4_conv"]
    quantizer = bonn_model.get_layer("unit2_conv").kernel_quantizer
    latent, mixture = found["unit2_conv"]
    np.testing.assert_array_equal(latent, bonn_model.get_layer("unit2_conv").kernel.numpy())
    np.testing.assert_array_equal(mixture["sigma_neg"], quantizer.sigma_neg.numpy())

    plain = models.get("small_cnn", width=4, bonn=False)
    latent, mixture = report.binarized_kernels(plain)["unit3_conv"]
    flat = latent.reshape(-1, latent.shape[-1])
    expected_mu_pos = [np.mean(c[c >= 0]) for c in flat.T]
    expected_sigma_neg = [np.std(-c[c < 0]) for c in flat.T]
    np.testing.assert_allclose(mixture["mu_pos"], expected_mu_pos, rtol=1e-5)
    np.testing.assert_allclose(mixture["sigma_neg"], expected_sigma_neg, rtol=1e-4)


def test_snapshot_round_trip_and_statistics(tmp_path):
    model = models.get("small_cnn", width=4)
    report.save_mixture_snapshot(tmp_path / "snap.npz", model)
    loaded = report.load_mixture_snapshot(tmp_path / "snap.npz")
    original = report.binarized_kernels(model)
    assert sorted(loaded) == sorted(original)
    for name, (latent, mixture) in original.items():
        np.testing.assert_array_equal(loaded[name][0], latent)
        for key, value in mixture.items():
            np.testing.assert_array_equal(loaded[name][1][key], value)

    latent, mixture = original["unit1_conv"]
    flipped = latent.copy()
    flipped.flat[:10] = -flipped.flat[:10]
    stats = report.layer_statistics(flipped, mixture, initial_latent=latent)
    assert stats["flipped_since_init"] == pytest.approx(10 / latent.size)
    assert stats["latent_scale"] == pytest.approx(np.mean(np.abs(latent)), rel=1e-6)
    assert stats["mu_pos"] == pytest.approx(np.mean(mixture["mu_pos"]), rel=1e-6)
