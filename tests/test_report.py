import bayes_larq  # noqa: F401  - selects tf_keras before TensorFlow is touched

import numpy as np
import pytest

from bayes_larq import models
from bayes_larq.app import report


def test_binarized_kernels_bayesian_and_plain():
    bonn_model = models.get("small_cnn", width=4)
    found = report.binarized_kernels(bonn_model)
    assert list(found) == ["unit1_conv", "unit2_conv", "unit3_conv", "unit4_conv"]
    quantizer = bonn_model.get_layer("unit2_conv").kernel_quantizer
    latent, mixture = found["unit2_conv"]
    np.testing.assert_array_equal(latent, bonn_model.get_layer("unit2_conv").kernel.numpy())
    np.testing.assert_array_equal(mixture.sigma_neg, quantizer.sigma_neg.numpy())

    plain = models.get("small_cnn", width=4, bonn=False)
    latent, mixture = report.binarized_kernels(plain)["unit3_conv"]
    flat = latent.reshape(-1, latent.shape[-1])
    expected_mu_pos = [np.mean(c[c >= 0]) for c in flat.T]
    expected_sigma_neg = [np.std(-c[c < 0]) for c in flat.T]
    np.testing.assert_allclose(mixture.mu_pos, expected_mu_pos, rtol=1e-5)
    np.testing.assert_allclose(mixture.sigma_neg, expected_sigma_neg, rtol=1e-4)


def test_snapshot_round_trip_and_statistics(tmp_path):
    model = models.get("small_cnn", width=4)
    report.save_mixture_snapshot(tmp_path / "snap.npz", model)
    loaded = report.load_mixture_snapshot(tmp_path / "snap.npz")
    original = report.binarized_kernels(model)
    assert sorted(loaded) == sorted(original)
    for name, (latent, mixture) in original.items():
        np.testing.assert_array_equal(loaded[name][0], latent)
        for ours, stored in zip(mixture, loaded[name][1], strict=True):
            np.testing.assert_array_equal(stored, ours)


def test_a_snapshot_as_run_directories_hold_it_loads_as_a_mixture(tmp_path):
    """init_mixture.npz of existing runs: keys "<layer>|latent", "<layer>|mu_pos", ..."""
    values = {key: np.full(2, index, np.float32) for index, key in
              enumerate(("mu_pos", "mu_neg", "sigma_pos", "sigma_neg"), start=1)}
    np.savez_compressed(tmp_path / "old.npz", **{"conv|latent": np.zeros((3, 2))},
                        **{f"conv|{key}": value for key, value in values.items()})
    latent, mixture = report.load_mixture_snapshot(tmp_path / "old.npz")["conv"]
    assert latent.shape == (3, 2) and list(mixture.sigma_pos) == [3.0, 3.0]
    assert [float(v[0]) for v in mixture] == [1.0, 2.0, 3.0, 4.0]
    np.savez_compressed(tmp_path / "partial.npz", **{"conv|latent": np.zeros((3, 2))})
    with pytest.raises(ValueError, match="is not a mixture snapshot"):
        report.load_mixture_snapshot(tmp_path / "partial.npz")

