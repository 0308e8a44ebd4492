"""Per-dimension statistics of a run's stage-1 codes z = mu + sigma * eps.

Over a data set, each latent dimension j has the variance ``Var(mu_j) +
E(sigma_j^2)``: the spread of the means plus the mean posterior variance
(`latent_variances` gives the two terms, `code_variance` their sum). Their
mean over the dimensions is the variance law, about 1 for a VAE whose codes
match the N(0, I) prior (`vae_balance.evaluation.metrics.variance_law`);
GEN-2 matched rescales stage 2's latents to them
(`vae_balance.sampling.latent.MatchedSecondStageSampler`).
"""

import os

import numpy as np


def validated_codes(z_mean, z_log_sigma):
    """``(z_mean, z_log_sigma)`` as float64 arrays, checked to be two (n, d) arrays."""
    z_mean = np.asarray(z_mean, np.float64)
    z_log_sigma = np.asarray(z_log_sigma, np.float64)
    if z_mean.shape != z_log_sigma.shape or z_mean.ndim != 2:
        raise ValueError(
            f"z_mean {z_mean.shape} and z_log_sigma {z_log_sigma.shape} must be "
            "two (n, latent_dim) arrays."
        )
    if len(z_mean) < 2:
        raise ValueError("Need the codes of at least 2 images.")
    return z_mean, z_log_sigma


def latent_variances(z_mean, z_log_sigma):
    """Per latent dimension j: ``(Var(mu_j), E[sigma_j^2])`` over the data, float64."""
    z_mean, z_log_sigma = validated_codes(z_mean, z_log_sigma)
    return z_mean.var(axis=0), np.exp(2 * z_log_sigma).mean(axis=0)


def code_variance(z_mean, z_log_sigma):
    """Per-dimension variance of the codes over a set, ``Var(mu_j) + E(sigma_j^2)``,
    float32 (GEN-2 matched's targets)."""
    variance_of_means, mean_variance = latent_variances(z_mean, z_log_sigma)
    return (variance_of_means + mean_variance).astype(np.float32)


def read_code_variance(path):
    """`code_variance` of the codes in a run's ``latents.npz`` (``z_mean`` and
    ``z_log_sigma``, which the job writes before stage 2)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"{os.fspath(path)} not found: the job writes a run's latents.npz "
            "before stage 2; train again with the same --workdir to write it."
        )
    with np.load(path) as codes:
        if not {"z_mean", "z_log_sigma"} <= set(codes.files):
            raise ValueError(
                f"{os.fspath(path)} has no z_mean and z_log_sigma: it is not a "
                "run's latents.npz; train again with the same --workdir to write it."
            )
        return code_variance(codes["z_mean"], codes["z_log_sigma"])
