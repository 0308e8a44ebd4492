"""FID, KID and the paper's latent-space diagnostics, as plain functions.

Distances work on feature arrays (float64 NumPy); `extract_features` gets
them from images with a feature extractor, by default the standard FID
Inception network of `vae_balance.fid.inception`. The diagnostics take the
encoder's ``z_mean`` and ``z_log_sigma`` (log standard deviation) arrays.
"""

import keras
import numpy as np

from vae_balance.fid.inception import get_feature_extractor
from vae_balance.sampling.code_statistics import latent_variances, validated_codes


# ------------------------------------------------------------- features
def _batches(images, batch_size):
    if isinstance(images, np.ndarray):
        for start in range(0, len(images), batch_size):
            yield images[start : start + batch_size]
    else:  # an iterable of batches (a generator, a batched tf.data.Dataset)
        for batch in images:
            if isinstance(batch, (tuple, list)):
                batch = batch[0]
            yield np.asarray(batch)


def extract_features(images, feature_extractor=None, batch_size=50, verbose=1):
    """Features of images, batch by batch, with a Keras progress bar.

    Args:
        images: (n, h, w, c) array, uint8 in [0, 255] or floats in [0, 1], or
            an iterable of such batches.
        feature_extractor: callable batch -> (b, d) features (a Keras model
            works); None: the standard FID Inception network
            (`vae_balance.fid.inception.get_feature_extractor`).
        batch_size: images per call, for arrays.
        verbose: 0 silent, 1 progress bar.

    Returns:
        (n, d) float64 array.
    """
    if feature_extractor is None:
        feature_extractor = get_feature_extractor()
    # An iterable's length (a batched dataset's) counts batches, not images.
    progbar_total = len(images) if isinstance(images, np.ndarray) else None
    progbar = keras.utils.Progbar(progbar_total, verbose=verbose, unit_name="image")
    features, seen = [], 0
    for batch in _batches(images, batch_size):
        if batch.dtype != np.uint8:
            batch = batch.astype(np.float32, copy=False)
        out = np.asarray(feature_extractor(batch), dtype=np.float64)
        features.append(out.reshape(len(batch), -1))
        seen += len(batch)
        progbar.update(seen)
    if not features:
        raise ValueError("No images to extract features from.")
    if progbar_total is None:
        progbar.update(seen, finalize=True)
    return np.concatenate(features)


def feature_statistics(features):
    """Mean and covariance (float64) of (n, d) features, n >= 2.

    Raises:
        ValueError: fewer than 2 samples, or NaN / Inf in the features.
    """
    features = _checked_features(features)
    return features.mean(axis=0), np.cov(features, rowvar=False)


def _checked_features(features):
    """``features`` as a float64 (n, d) array, checked: n >= 2 and finite."""
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2:
        raise ValueError(f"Features must be (n, d), got shape {features.shape}.")
    if len(features) < 2:
        raise ValueError(
            f"Need at least 2 samples for a covariance, got {len(features)}. "
            "FID needs many more: the paper uses 10,000 images per set."
        )
    if not np.all(np.isfinite(features)):
        bad = int(np.sum(~np.all(np.isfinite(features), axis=1)))
        raise ValueError(
            f"{bad} of {len(features)} feature vectors contain NaN or Inf; "
            "check the images (NaN pixels from a diverged model?)."
        )
    return features


def _sqrt_psd(matrix):
    """Symmetric square root of a symmetric PSD matrix, via eigh."""
    eigenvalues, eigenvectors = np.linalg.eigh(matrix)
    eigenvalues = np.clip(eigenvalues, 0.0, None)  # round-off negatives
    return (eigenvectors * np.sqrt(eigenvalues)) @ eigenvectors.T


def frechet_distance(mu1, sigma1, mu2, sigma2):
    """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2).

    ``|mu1 - mu2|^2 + tr(sigma1) + tr(sigma2) - 2 tr((sigma1 sigma2)^(1/2))``.
    The trace term is computed as the sum of the square roots of the
    eigenvalues of the symmetric PSD matrix ``s sigma2 s`` with
    ``s = sigma1^(1/2)`` (it is similar to sigma1 sigma2), in float64: no
    complex parts and no failure on singular covariances (n < d).

    Returns:
        A Python float.
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1 = np.atleast_2d(np.asarray(sigma1, np.float64))
    sigma2 = np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError(
            f"Statistics have different shapes: mu {mu1.shape} vs {mu2.shape}, "
            f"sigma {sigma1.shape} vs {sigma2.shape}."
        )
    for name, value in (("mu1", mu1), ("sigma1", sigma1), ("mu2", mu2)):
        if not np.all(np.isfinite(value)):
            raise ValueError(f"{name} contains NaN or Inf.")
    if not np.all(np.isfinite(sigma2)):
        raise ValueError("sigma2 contains NaN or Inf.")
    # Symmetrise: np.cov output is symmetric only up to round-off.
    sigma1 = (sigma1 + sigma1.T) / 2
    sigma2 = (sigma2 + sigma2.T) / 2
    root1 = _sqrt_psd(sigma1)
    middle = root1 @ sigma2 @ root1
    eigenvalues = np.linalg.eigvalsh((middle + middle.T) / 2)
    trace_sqrt = np.sum(np.sqrt(np.clip(eigenvalues, 0.0, None)))
    return _frechet(mu1 - mu2, np.trace(sigma1), np.trace(sigma2), trace_sqrt)


def fid_from_features(features1, features2):
    """FID between two (n, d) feature sets (n >= 2 each).

    When both sets have fewer samples than dimensions (small test and preview
    sets of 2048-d Inception features), the covariances are low-rank and the
    same distance is computed from the centred features themselves
    (`_low_rank_frechet_distance`, 20-100x faster), without a d x d root.
    """
    features1, features2 = _checked_features(features1), _checked_features(features2)
    if features1.shape[1] != features2.shape[1]:
        raise ValueError(
            f"Feature sets have different dimensions: {features1.shape} and "
            f"{features2.shape}."
        )
    if max(len(features1), len(features2)) < features1.shape[1]:
        return _low_rank_frechet_distance(features1, features2)
    return frechet_distance(
        *feature_statistics(features1), *feature_statistics(features2)
    )


def _low_rank_frechet_distance(x1, x2):
    """`frechet_distance` of two feature sets' Gaussians, computed exactly
    from the (n, d) float64 features.

    With ``A = (x1 - mean1).T / sqrt(n1 - 1)`` (d x n1) and ``B`` likewise,
    sigma1 = A A^T and sigma2 = B B^T. The non-zero eigenvalues of sigma1
    sigma2 are those of (A^T B)^T (A^T B), so ``tr((sigma1 sigma2)^(1/2))``
    is the sum of the singular values of the n1 x n2 matrix A^T B, and
    ``tr(sigma) = |A|_F^2``.
    """
    mean1, mean2 = x1.mean(axis=0), x2.mean(axis=0)
    a = (x1 - mean1) / np.sqrt(len(x1) - 1)
    b = (x2 - mean2) / np.sqrt(len(x2) - 1)
    trace_sqrt = np.sum(np.linalg.svd(a @ b.T, compute_uv=False))
    return _frechet(mean1 - mean2, np.sum(a * a), np.sum(b * b), trace_sqrt)


def _frechet(mean_difference, trace1, trace2, trace_sqrt):
    """``|mu1 - mu2|^2 + tr(sigma1) + tr(sigma2) - 2 tr((sigma1 sigma2)^(1/2))``
    from its parts, as a Python float clipped at 0 (round-off)."""
    distance = mean_difference @ mean_difference + trace1 + trace2 - 2 * trace_sqrt
    return float(max(distance, 0.0))


def kernel_inception_distance(
    features1, features2, num_subsets=100, subset_size=1000, seed=0
):
    """KID: unbiased MMD^2 with the cubic polynomial kernel, over subsets.

    ``k(x, y) = (x . y / d + 1)^3``; each of ``num_subsets`` rounds draws
    ``m = min(subset_size, n1, n2)`` samples of each set without replacement.

    Returns:
        ``(mean, std)`` over the subsets, in the features' units (published
        KIDs are often multiplied by 1000).

    Reference:
        Binkowski et al., "Demystifying MMD GANs", ICLR 2018.
    """
    features1 = np.asarray(features1, np.float64)
    features2 = np.asarray(features2, np.float64)
    if features1.ndim != 2 or features1.shape[1:] != features2.shape[1:]:
        raise ValueError(
            f"Feature sets must be (n, d) with the same d, got {features1.shape} "
            f"and {features2.shape}."
        )
    m = min(subset_size, len(features1), len(features2))
    if m < 2:
        raise ValueError(f"KID needs at least 2 samples per set, got {m}.")
    if not (np.all(np.isfinite(features1)) and np.all(np.isfinite(features2))):
        raise ValueError("Features contain NaN or Inf.")
    d = features1.shape[1]
    rng = np.random.default_rng(seed)
    values = np.empty(num_subsets)
    for i in range(num_subsets):
        x = features1[rng.choice(len(features1), m, replace=False)]
        y = features2[rng.choice(len(features2), m, replace=False)]
        k_xx = (x @ x.T / d + 1) ** 3
        k_yy = (y @ y.T / d + 1) ** 3
        k_xy = (x @ y.T / d + 1) ** 3
        values[i] = (
            (k_xx.sum() - np.trace(k_xx)) / (m * (m - 1))
            + (k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
            - 2 * k_xy.mean()
        )
    return float(values.mean()), float(values.std())


# ---------------------------------------------------------- diagnostics


def variance_law(z_mean, z_log_sigma, reference_bug=False):
    """The variance law ``mean_j [Var(mu_j) + E(sigma_j^2)]``, about 1.

    For a VAE whose aggregate posterior matches the N(0, I) prior each
    latent has unit variance, split between the spread of the means and the
    posterior variances (Asperti & Trentin, section on the variance law).

    Args:
        z_mean, z_log_sigma: (n, latent_dim) codes of a data set.
        reference_bug: use E(sigma_j) instead of E(sigma_j^2), as the authors'
            code did; only to compare with numbers printed by that code.

    Returns:
        A Python float.
    """
    if not reference_bug:
        return float(np.mean(np.add(*latent_variances(z_mean, z_log_sigma))))
    z_mean, z_log_sigma = validated_codes(z_mean, z_log_sigma)
    return float(np.mean(z_mean.var(axis=0) + np.exp(z_log_sigma).mean(axis=0)))


INACTIVE_RULES = {
    # The authors' code: a variable whose posterior stays near the prior.
    "mean_sigma": 0.8,
    # The common alternative (e.g. Burda et al.'s active units): its mean
    # does not depend on the input.
    "var_mean": 0.01,
}


def inactive_latents(z_mean, z_log_sigma, rule="mean_sigma", threshold=None):
    """Which latent variables are inactive (collapsed onto the prior).

    Args:
        z_mean, z_log_sigma: (n, latent_dim) codes of a data set.
        rule: ``"mean_sigma"``: ``E(sigma_j) > threshold`` (default 0.8, the
            reference code); ``"var_mean"``: ``Var(mu_j) < threshold``
            (default 0.01).
        threshold: overrides the rule's default.

    Returns:
        Boolean array (latent_dim,); ``.sum()`` is the inactive count.
    """
    if rule not in INACTIVE_RULES:
        raise ValueError(
            f"Unknown rule {rule!r}. Valid rules: {', '.join(INACTIVE_RULES)}."
        )
    z_mean, z_log_sigma = validated_codes(z_mean, z_log_sigma)
    threshold = INACTIVE_RULES[rule] if threshold is None else threshold
    if rule == "mean_sigma":
        return np.exp(z_log_sigma).mean(axis=0) > threshold
    return z_mean.var(axis=0) < threshold
