"""The pure loss functions (vae_balance.model.losses) against numbers
computed by hand: per-sample sums, float32 whatever the input dtype."""

import math

import keras
import numpy as np
import pytest

from vae_balance.model import losses


def test_squared_error_sum_sums_each_sample_over_its_pixels():
    x = np.zeros((2, 2, 2, 1), "float32")
    x[1] = 1.0
    reconstruction = np.zeros((2, 2, 2, 1), "float32")
    reconstruction[0, 0, :, 0] = [1.0, 2.0]  # 1 + 4
    reconstruction[1] = 0.5  # 4 pixels of 0.25
    result = np.asarray(losses.squared_error_sum(x, reconstruction))
    assert result.shape == (2,)
    np.testing.assert_allclose(result, [5.0, 1.0], rtol=1e-7)


def test_squared_error_sum_is_float32_for_half_precision_inputs():
    x = np.full((1, 3, 3, 1), 0.25, "float16")
    result = losses.squared_error_sum(x, np.zeros_like(x))
    assert keras.backend.standardize_dtype(result.dtype) == "float32"
    assert float(result[0]) == pytest.approx(9 * 0.0625, rel=1e-7)


def test_kl_divergence_is_zero_at_the_prior_and_summed_over_latent_dims():
    zeros = np.zeros((1, 3), "float32")
    assert float(losses.kl_divergence(zeros, zeros)[0]) == 0.0
    # mu = (1, 2), log sigma = (0, ln 2):
    # 0.5 * [(1 + 1 - 0 - 1) + (4 + 4 - 2 ln 2 - 1)] = 4 - ln 2.
    z_mean = np.array([[1.0, 2.0], [0.0, 0.0]], "float32")
    z_log_sigma = np.array([[0.0, math.log(2.0)], [0.0, 0.0]], "float32")
    result = np.asarray(losses.kl_divergence(z_mean, z_log_sigma))
    assert result.shape == (2,)
    np.testing.assert_allclose(result, [4.0 - math.log(2.0), 0.0], rtol=1e-6)


def test_kl_divergence_takes_log_sigma_not_log_variance():
    # sigma = e^-1 (log-variance -2): 0.5 * (e^-2 + 2 - 1) per dimension.
    z_log_sigma = np.full((1, 4), -1.0, "float16")
    result = losses.kl_divergence(np.zeros((1, 4), "float16"), z_log_sigma)
    assert keras.backend.standardize_dtype(result.dtype) == "float32"
    expected = 4 * 0.5 * (math.exp(-2.0) + 1.0)
    assert float(result[0]) == pytest.approx(expected, rel=1e-6)


def test_gaussian_nll_is_the_negative_log_density_of_n_x_hat_gamma_squared():
    # D = 4, gamma^2 = 0.5: SE / 1 + 2 ln 0.5 + 4 * 0.5 ln(2 pi).
    result = np.asarray(losses.gaussian_nll(np.array([2.0, 0.0], "float32"), 0.5, 4))
    constant = 2.0 * math.log(0.5) + 2.0 * math.log(2.0 * math.pi)
    np.testing.assert_allclose(result, [2.0 + constant, constant], rtol=1e-6)
    assert losses.HALF_LOG_TWO_PI == pytest.approx(0.918938533, rel=1e-9)


def test_gaussian_nll_sums_the_per_pixel_normal_log_densities():
    rng = np.random.default_rng(0)
    x = rng.random((3, 2, 2, 1)).astype("float32")
    x_hat = rng.random((3, 2, 2, 1)).astype("float32")
    gamma = 0.3
    per_pixel = (x - x_hat) ** 2 / (2 * gamma**2) + math.log(gamma)
    expected = (per_pixel + 0.5 * math.log(2 * math.pi)).reshape(3, -1).sum(-1)
    squared_error = losses.squared_error_sum(x, x_hat)
    result = np.asarray(losses.gaussian_nll(squared_error, gamma**2, 4))
    np.testing.assert_allclose(result, expected, rtol=1e-5)
