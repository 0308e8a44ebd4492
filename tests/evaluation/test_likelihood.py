"""The importance-weighted log-likelihood against exact and brute-force
answers, and its conversion to bits per dimension."""

import math

import keras
import numpy as np
import pytest

from vae_balance import BalancedVAE
from vae_balance.evaluation import likelihood

# A linear-Gaussian VAE: x = W z + b + gamma * noise, z ~ N(0, I). Its density
# is N(b, W W^T + gamma^2 I), and W's orthogonal columns make the exact
# posterior Gaussian with a diagonal covariance: an encoder can be exact.
W = np.array([[0.6, 0.0], [0.0, 0.8], [0.3, 0.0]])
B = np.array([0.5, 0.4, 0.6])
GAMMA = 0.2


def _dense(inputs, kernel, bias):
    layer = keras.layers.Dense(len(bias))
    out = layer(inputs)
    layer.set_weights([np.asarray(kernel, "float32"), np.asarray(bias, "float32")])
    return out


def linear_gaussian_vae(exact_posterior=True):
    """The linear-Gaussian VAE, its encoder the exact posterior (or a crude
    one: mean 0, sigma 1, i.e. the prior)."""
    # Posterior: precision I + W^T W / gamma^2 (diagonal), mean
    # Sigma W^T (x - b) / gamma^2.
    sigma2 = 1.0 / (1.0 + np.diag(W.T @ W) / GAMMA**2)
    kernel = W * sigma2 / GAMMA**2  # (3, 2): x @ kernel
    if not exact_posterior:
        kernel, sigma2 = np.zeros_like(kernel), np.ones(2)
    x = keras.Input((3,))
    encoder = keras.Model(
        x,
        [
            _dense(x, kernel, -B @ kernel),
            _dense(x, np.zeros((3, 2)), 0.5 * np.log(sigma2)),
        ],
    )
    z = keras.Input((2,))
    decoder = keras.Model(z, _dense(z, W.T, B))
    return BalancedVAE(
        encoder, decoder, balance="fixed", fixed_gamma=GAMMA, input_range=None
    )


def exact_log_density(x):
    covariance = W @ W.T + GAMMA**2 * np.eye(3)
    difference = x - B
    _, log_det = np.linalg.slogdet(covariance)
    mahalanobis = np.einsum(
        "ni,ij,nj->n", difference, np.linalg.inv(covariance), difference
    )
    return -0.5 * (mahalanobis + log_det + 3 * math.log(2 * math.pi))


POINTS = np.array([[0.5, 0.4, 0.6], [0.9, 0.1, 0.7], [0.2, 0.9, 0.3]], "float32")


def test_an_exact_posterior_gives_the_exact_density_with_one_sample():
    # With q(z|x) = p(z|x), every weight p(x, z) / q(z|x) equals p(x): any K,
    # even 1, gives log p(x) exactly.
    vae = linear_gaussian_vae()
    exact = exact_log_density(POINTS.astype(np.float64))
    for k in (1, 7):
        log_px, _ = likelihood.log_likelihood(vae, POINTS, num_samples=k, seed=k)
        np.testing.assert_allclose(log_px, exact, atol=2e-4)
    # The ELBO, E_q[log p(x|z)] - KL, is then log p(x) too (K = 4000 samples
    # of the first term: Monte Carlo error about 0.02).
    _, elbo = likelihood.log_likelihood(vae, POINTS, num_samples=4000)
    np.testing.assert_allclose(elbo, exact, atol=0.08)


def test_iwae_approaches_the_density_from_below_as_k_grows():
    # The prior as proposal: K = 1 averages to the ELBO, here
    # E[log N(x; W z + b, g^2 I)] = -(|x - b|^2 + tr(W^T W)) / (2 g^2)
    # - 3/2 log(2 pi g^2); larger K tightens the bound up to log p(x).
    vae = linear_gaussian_vae(exact_posterior=False)
    exact = exact_log_density(POINTS.astype(np.float64))
    elbo = -(np.sum((POINTS - B) ** 2, axis=1) + np.trace(W.T @ W)) / (
        2 * GAMMA**2
    ) - 1.5 * math.log(2 * math.pi * GAMMA**2)
    repeats = np.tile(POINTS, (3000, 1))  # 3000 independent estimates per point
    means = {
        k: likelihood.log_likelihood(vae, repeats, num_samples=k)[0]
        .reshape(3000, 3)
        .mean(axis=0)
        for k in (1, 10)
    }
    np.testing.assert_allclose(means[1], elbo, atol=1.0)  # std of mean <= 0.25
    assert np.all(means[1] < means[10] - 3) and np.all(means[10] < exact)
    tight, _ = likelihood.log_likelihood(vae, POINTS, num_samples=200_000)
    np.testing.assert_allclose(tight, exact, atol=0.02)


def test_a_nonlinear_decoder_against_numerical_integration_over_z():
    # latent_dim 1, 4 values: p(x) = integral of N(z; 0, 1) N(x; f(z), g^2 I)
    # by the trapezoid rule on a fine grid, against K = 5000 samples.
    keras.utils.set_random_seed(3)
    z_in = keras.Input((1,))
    decoder = keras.Model(
        z_in,
        keras.layers.Dense(4, activation="sigmoid")(
            keras.layers.Dense(8, activation="tanh")(z_in)
        ),
    )
    x_in = keras.Input((4,))
    encoder = keras.Model(
        x_in,
        [
            _dense(x_in, np.full((4, 1), 0.5), [-1.0]),
            _dense(x_in, np.zeros((4, 1)), [math.log(0.8)]),
        ],
    )
    vae = BalancedVAE(
        encoder, decoder, balance="fixed", fixed_gamma=0.3, input_range=None
    )
    grid = np.linspace(-8, 8, 16001)
    reconstructions = np.asarray(decoder(grid[:, None].astype("float32")), np.float64)
    x = np.asarray(decoder(np.array([[-1.0], [0.3], [1.5]], "float32"))) + 0.1
    squared = np.sum((x[:, None, :] - reconstructions[None]) ** 2, axis=-1)
    log_integrand = (
        -0.5 * grid**2
        - 0.5 * math.log(2 * math.pi)
        - 0.5 * squared / 0.09
        - 2 * math.log(2 * math.pi * 0.09)
    )
    exact = np.log(np.trapezoid(np.exp(log_integrand), grid, axis=1))
    log_px, elbo = likelihood.log_likelihood(vae, x, num_samples=5000, seed=0)
    np.testing.assert_allclose(log_px, exact, atol=0.02)
    assert np.all(elbo < exact)


def test_padding_is_left_out_of_the_density(make_vae, images):
    # With one sample and one seed, the padded and unpadded estimates share z:
    # they differ by the border pixels' Gaussian log-density.
    vae = make_vae(compile=False)
    x = images[:3]
    full, _ = likelihood.log_likelihood(vae, x, num_samples=1, seed=0)
    inner, _ = likelihood.log_likelihood(vae, x, num_samples=1, seed=0, pad=1)
    z_mean, z_log_sigma = (np.asarray(a) for a in vae.encoder(x))
    eps = np.random.default_rng(0).standard_normal(z_mean.shape)
    z = (z_mean + np.exp(z_log_sigma) * eps).astype("float32")
    border = np.ones((8, 8, 1), bool)
    border[1:-1, 1:-1] = False
    error = (x - np.asarray(vae.decoder(z), np.float64))[:, border]
    gamma_squared = float(vae.gamma) ** 2
    border_log_density = np.sum(
        -0.5 * error**2 / gamma_squared - 0.5 * math.log(2 * math.pi * gamma_squared),
        axis=1,
    )
    np.testing.assert_allclose(full - inner, border_log_density, rtol=1e-5)
    report = likelihood.likelihood_report(vae, x, num_samples=2, pad=1)
    assert report["dimensions"] == 36 and report["num_images"] == 3


def test_bits_per_dim_of_the_discretised_density():
    # A uniform density on [0, 1]^D (log p = 0) gives log2(255) bits/dim: about
    # the 8 bits of a uniform 8-bit pixel (exactly 8 with bins of 1/256).
    assert likelihood.bits_per_dim(0.0, 784) == pytest.approx(math.log2(255))
    assert likelihood.bits_per_dim(0.0, 784, 1 / 256) == pytest.approx(8.0)
    # -log p = D nats: one nat per value more, 1 / log 2 bits.
    assert likelihood.bits_per_dim(784.0, 784) == pytest.approx(
        math.log2(255) + 1 / math.log(2)
    )


def test_the_report_holds_nats_bits_and_the_elbo():
    vae = linear_gaussian_vae()
    report = likelihood.likelihood_report(vae, POINTS, num_samples=5, seed=0)
    exact = exact_log_density(POINTS.astype(np.float64))
    assert report["nll_nats"] == pytest.approx(-exact.mean(), abs=2e-4)
    assert report["nll_bits_per_dim"] == pytest.approx(
        (-exact.mean() / 3 + math.log(255)) / math.log(2), abs=1e-4
    )
    assert report["gamma_squared"] == pytest.approx(GAMMA**2)
    assert report["elbo"]["bits_per_dim"] == pytest.approx(
        likelihood.bits_per_dim(-report["elbo"]["nats"], 3)
    )
    assert (report["num_samples"], report["dimensions"], report["bin_width"]) == (
        5,
        3,
        "1/255",
    )
    with pytest.raises(ValueError, match="num_samples"):
        likelihood.log_likelihood(vae, POINTS, num_samples=0)
