"""Importance-weighted log-likelihood of test images, in nats and bits/dim.

The stage-1 VAE defines a density on images: z ~ N(0, I), x | z ~
N(x_hat(z), gamma^2 I) with the trained gamma^2 (`BalancedVAE.gamma`: for the
paper's balance the running average of the MSE). `log_likelihood` estimates
log p(x) with the importance-weighted bound (IWAE) of K samples from the
encoder's q(z|x) = N(z_mean, sigma^2):

    log p(x) ~ log (1/K) sum_k p(x|z_k) p(z_k) / q(z_k|x),   z_k ~ q(z|x)

a lower bound in expectation that tightens as K grows (Burda et al. 2016),
and the ELBO next to it, E_q[log p(x|z)] (averaged over the same K samples)
minus the analytic KL(q || N(0, I)). Both use BatchNorm in inference mode.

This is the likelihood of the first stage with its N(0, I) prior, the model
GEN-1 samples; the two-stage model's density would need stage 2's marginal
density in the latent space instead.

Discretisation. The data are 8-bit pixels k in {0..255} scaled to x = k/255,
so neighbouring levels are 1/255 apart. Each level owns a bin of width
``BIN_WIDTH = 1/255`` centred on it, and the probability of the discrete
image is the density's mass on its bin, about ``p(x) * BIN_WIDTH^D``:

    -log2 P(pixels) ~ -log2 p(x) - D log2(1/255)
    bits/dim = (-log p(x) / D + log 255) / log 2

(with x = k/256 and bins of width 1/256 one would add log 256: 0.0056 bits/dim
more). It is an approximation: the density is taken as constant over a bin
(fine while gamma >> 1/255), and the Gaussian puts some mass outside [0, 1],
which no pixel value receives. Padding added by the loader (Fashion-MNIST's
28 -> 32) is not data: ``pad`` restricts the density to the native pixels
(the marginal of a factorised Gaussian is the same Gaussian on those
pixels), so D = 28 * 28 and the numbers compare with published ones.

Reference:
    Y. Burda, R. Grosse, R. Salakhutdinov, "Importance Weighted
    Autoencoders", ICLR 2016. L. Theis, A. van den Oord, M. Bethge, "A note
    on the evaluation of generative models", ICLR 2016 (discretisation).
"""

import math

import numpy as np

from vae_balance.datasets.pipeline import remove_padding

# K: 100 samples per image gives an estimate within a few tenths of a nat of
# the K -> infinity limit for well-fitted VAEs (Burda et al. report
# K = 5000; most of the gain is reached by K = 50 - 100), at a cost of K
# decoder passes per image: 100,000 for the default 1,000 images, about two
# minutes for the Fashion-MNIST network on 2 CPU cores (110 s measured),
# small next to FID.
DEFAULT_NUM_SAMPLES = 100
DEFAULT_NUM_IMAGES = 1000
BIN_WIDTH = 1.0 / 255.0  # the spacing of 8-bit pixels scaled by 1/255
LOG_TWO_PI = math.log(2.0 * math.pi)


def _as_float_images(images):
    images = np.asarray(images)
    if images.dtype == np.uint8:
        return images.astype(np.float32) / 255.0
    return images.astype(np.float32, copy=False)


def _log_sum_exp(values, axis):
    peak = np.max(values, axis=axis, keepdims=True)
    total = np.log(np.sum(np.exp(values - peak), axis=axis, keepdims=True))
    return np.squeeze(peak + total, axis=axis)


def log_likelihood(
    vae,
    images,
    num_samples=DEFAULT_NUM_SAMPLES,
    seed=0,
    pad=0,
    batch_size=1000,
):
    """Per-image IWAE estimate of log p(x) and ELBO, in nats.

    Args:
        vae: the first-stage `BalancedVAE` (its encoder, decoder and gamma).
        images: (n, ...) images at the network's shape, uint8 or floats in
            [0, 1].
        num_samples: K, samples of q(z|x) per image.
        seed: seeds the samples.
        pad: loader padding (pixels per side) left out of the density.
        batch_size: latents decoded per decoder call (images are grouped so
            that a group's K samples fill about one call).

    Returns:
        ``(log_px, elbo)``: two (n,) float64 arrays, nats per image, of the
        native pixels.
    """
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}.")
    x = _as_float_images(images)
    gamma_squared = float(np.asarray(vae.gamma, np.float64)) ** 2
    rng = np.random.default_rng(seed)
    group = max(1, batch_size // num_samples)
    log_px, elbo = [], []
    for start in range(0, len(x), group):
        batch = x[start : start + group]
        z_mean, z_log_sigma = (
            np.asarray(a, np.float64) for a in vae.encoder(batch, training=False)
        )
        log_weights, log_decoder = _log_weights(
            vae.decoder,
            batch,
            z_mean,
            z_log_sigma,
            num_samples,
            gamma_squared,
            pad,
            rng,
            batch_size,
        )
        log_px.append(_log_sum_exp(log_weights, axis=1) - math.log(num_samples))
        kl = 0.5 * np.sum(
            z_mean**2 + np.exp(2 * z_log_sigma) - 2 * z_log_sigma - 1, axis=1
        )
        elbo.append(log_decoder.mean(axis=1) - kl)
    return np.concatenate(log_px), np.concatenate(elbo)


def _log_weights(
    decoder,
    x,
    z_mean,
    z_log_sigma,
    num_samples,
    gamma_squared,
    pad,
    rng,
    batch_size,
):
    """``(log p(x,z_k) - log q(z_k|x), log p(x|z_k))``, each (b, K)."""
    b, latent_dim = z_mean.shape
    epsilon = rng.standard_normal((b, num_samples, latent_dim))
    sigma = np.exp(z_log_sigma)[:, None, :]
    z = z_mean[:, None, :] + sigma * epsilon
    target = remove_padding(x, pad).reshape(b, 1, -1).astype(np.float64)
    dimensions = target.shape[-1]
    flat = z.reshape(b * num_samples, latent_dim).astype(np.float32)
    squared = np.empty(b * num_samples)
    for start in range(0, len(flat), batch_size):
        chunk = np.asarray(decoder(flat[start : start + batch_size], training=False))
        reconstruction = remove_padding(chunk, pad).reshape(len(chunk), -1)
        rows = np.arange(start, start + len(chunk)) // num_samples
        squared[start : start + len(chunk)] = np.sum(
            (target[rows, 0] - reconstruction.astype(np.float64)) ** 2, axis=1
        )
    squared = squared.reshape(b, num_samples)
    log_decoder = -0.5 * squared / gamma_squared - 0.5 * dimensions * (
        LOG_TWO_PI + math.log(gamma_squared)
    )
    log_prior = -0.5 * np.sum(z**2, axis=-1) - 0.5 * latent_dim * LOG_TWO_PI
    log_posterior = (
        -0.5 * np.sum(epsilon**2, axis=-1)
        - np.sum(z_log_sigma, axis=-1)[:, None]
        - 0.5 * latent_dim * LOG_TWO_PI
    )
    return log_decoder + log_prior - log_posterior, log_decoder


def bits_per_dim(nll_nats, dimensions, bin_width=BIN_WIDTH):
    """Bits per dimension of discrete pixels from a continuous NLL.

    ``(nll_nats / D - log(bin_width)) / log 2``: the density's mass on a
    pixel's bin taken as density times bin width (see the module docstring).

    Args:
        nll_nats: -log p(x) per image, nats (a float or an array).
        dimensions: D, values per image (native pixels times channels).
        bin_width: 1/255 for pixels k/255.
    """
    return (np.asarray(nll_nats) / dimensions - math.log(bin_width)) / math.log(2.0)


def likelihood_report(
    vae, images, num_samples=DEFAULT_NUM_SAMPLES, seed=0, pad=0, batch_size=1000
):
    """The NLL and ELBO of test images, as `evaluation.protocol` reports them.

    Args:
        vae, images, num_samples, seed, pad, batch_size: as `log_likelihood`.

    Returns:
        A JSON-ready dict: ``nll_nats`` (mean -log p(x) per image),
        ``nll_bits_per_dim``, ``nll_nats_standard_error`` (over images),
        ``elbo`` (``{"nats": mean ELBO per image, "bits_per_dim": -ELBO in
        bits/dim, an upper bound of nll_bits_per_dim}``), and the settings:
        ``num_images``, ``num_samples``, ``dimensions``, ``gamma_squared``,
        ``bin_width``, ``seed``.
    """
    log_px, elbo = log_likelihood(vae, images, num_samples, seed, pad, batch_size)
    x = np.asarray(images)
    dimensions = int(np.prod(remove_padding(x[:1], pad).shape[1:]))
    nll = -float(np.mean(log_px))
    return {
        "nll_nats": nll,
        "nll_bits_per_dim": float(bits_per_dim(nll, dimensions)),
        "nll_nats_standard_error": float(np.std(log_px) / math.sqrt(len(log_px))),
        "elbo": {
            "nats": float(np.mean(elbo)),
            "bits_per_dim": float(bits_per_dim(-np.mean(elbo), dimensions)),
        },
        "num_images": int(len(log_px)),
        "num_samples": int(num_samples),
        "dimensions": dimensions,
        "gamma_squared": float(np.asarray(vae.gamma, np.float64)) ** 2,
        "bin_width": "1/255",
        "seed": int(seed),
    }
