import bayes_larq  # noqa: F401  - selects tf_keras before TensorFlow is touched

import numpy as np

from bayes_larq import models
from bayes_larq.app import report


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

