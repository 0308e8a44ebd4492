"""Pure loss functions of the balanced VAE.

Convention (paper-notes section 1, and the reason this library exists): both
terms are per-sample SUMS -- over pixels for the reconstruction, over latent
dimensions for the KL -- then averaged over the batch. Mixing a mean-reduced
MSE with a summed KL silently gives the KL a weight D times too large, which is
the classic cause of blurry VAEs.

All functions compute in float32 whatever the inputs' dtype (mixed precision).
"""

import math

from keras import ops

HALF_LOG_TWO_PI = 0.5 * math.log(2.0 * math.pi)  # 0.91894


def _flat_float32(x):
    x = ops.cast(x, "float32")
    return ops.reshape(x, (ops.shape(x)[0], -1))


def squared_error_sum(x, reconstruction):
    """Per-sample sum of squared errors, shape (batch,)."""
    return ops.sum(
        ops.square(_flat_float32(x) - _flat_float32(reconstruction)), axis=-1
    )


def kl_divergence(z_mean, z_log_sigma):
    """KL(N(mu, sigma^2) || N(0, I)), summed over latent dims, shape (batch,).

    Args:
        z_mean: encoder means, (batch, latent_dim).
        z_log_sigma: encoder log standard deviations (not log-variances),
            (batch, latent_dim).
    """
    z_mean = ops.cast(z_mean, "float32")
    z_log_sigma = ops.cast(z_log_sigma, "float32")
    return 0.5 * ops.sum(
        ops.square(z_mean) + ops.exp(2.0 * z_log_sigma) - 2.0 * z_log_sigma - 1.0,
        axis=-1,
    )


def gaussian_nll(squared_error, gamma_squared, num_elements):
    """Negative log-likelihood of N(x_hat, gamma^2 I), per sample.

    ``sum_i (x - x_hat)^2 / (2 gamma^2) + D log gamma + D log sqrt(2 pi)``.

    Args:
        squared_error: per-sample sum of squared errors, (batch,).
        gamma_squared: scalar decoder variance gamma^2.
        num_elements: D, the number of values per sample.
    """
    d = float(num_elements)
    return (
        squared_error / (2.0 * gamma_squared)
        + 0.5 * d * ops.log(gamma_squared)
        + d * HALF_LOG_TWO_PI
    )
