"""Improved precision and recall of a generated set (Kynkaanniemi et al. 2019).

FID mixes two failures into one number: samples that do not look like data
(low fidelity, e.g. blur) and data that no sample resembles (low coverage,
e.g. dropped modes). Improved precision and recall separate them, on the same
features as FID (2048-d pool_3 of the FID Inception network):

- Each set's *manifold* is the union of balls centred on its feature vectors,
  each with the radius to that vector's k-th nearest neighbour in the set
  (itself excluded; k = 3 in the paper).
- precision = the fraction of generated vectors inside the real manifold;
- recall = the fraction of real vectors inside the generated manifold.

Both are in [0, 1]; identical sets give 1 and 1. Distances are Euclidean,
computed block by block (``batch_size`` rows against the other set) with
``|a|^2 + |b|^2 - 2 a.b``: memory is ``batch_size x n`` numbers, so 10,000
against 10,000 2048-d vectors needs about 40 MB per block in float32, as the
reference implementation computes them.

Reference:
    T. Kynkaanniemi, T. Karras, S. Laine, J. Lehtinen, T. Aila, "Improved
    Precision and Recall Metric for Assessing Generative Models", NeurIPS
    2019.
"""

import numpy as np

DEFAULT_K = 3
DEFAULT_BATCH_SIZE = 1000


def _check_features(features, name, k):
    features = np.asarray(features)
    if features.ndim != 2:
        raise ValueError(f"{name} must be (n, d) features, got shape {features.shape}.")
    if len(features) <= k:
        raise ValueError(
            f"{name}: {len(features)} vectors, need more than k={k} for the "
            "k-th nearest neighbour (the paper uses 10,000 per set)."
        )
    if not np.all(np.isfinite(features)):
        raise ValueError(f"{name} contain NaN or Inf; check the images.")
    return features


def _squared_norms(features, dtype):
    features = np.asarray(features, dtype)
    return features, np.einsum("ij,ij->i", features, features)


def _distance_blocks(queries, reference, batch_size, dtype):
    """``(start, squared distances (b, n_reference))`` per block of queries."""
    queries, query_norms = _squared_norms(queries, dtype)
    reference, reference_norms = _squared_norms(reference, dtype)
    for start in range(0, len(queries), batch_size):
        block = queries[start : start + batch_size]
        squared = (
            query_norms[start : start + batch_size, None]
            + reference_norms[None, :]
            - 2 * block @ reference.T
        )
        yield start, np.maximum(squared, 0)  # round-off can go below 0


def manifold_radii(
    features, k=DEFAULT_K, batch_size=DEFAULT_BATCH_SIZE, dtype=np.float32
):
    """Distance of each vector to its k-th nearest neighbour in the set.

    The vector itself (distance 0) is not a neighbour; duplicates are.

    Args:
        features: (n, d), n > k.
        k: which neighbour.
        batch_size: rows per block of distances.
        dtype: of the distance computation (float32 as the reference code;
            float64 for exact small cases).

    Returns:
        (n,) float64 radii.
    """
    features = _check_features(features, "features", k)
    radii = np.empty(len(features))
    for start, squared in _distance_blocks(features, features, batch_size, dtype):
        # Column k of the sorted row: index 0 is the vector itself.
        kth = np.partition(squared, k, axis=1)[:, k]
        radii[start : start + len(kth)] = np.sqrt(kth)
    return radii


def precision_recall(
    real_features,
    fake_features,
    k=DEFAULT_K,
    batch_size=DEFAULT_BATCH_SIZE,
    real_radii=None,
    dtype=np.float32,
):
    """Improved precision and recall of ``fake_features`` against the real ones.

    A point is inside a manifold when its distance to some centre is at most
    that centre's radius (`manifold_radii`).

    Args:
        real_features: (n, d) features of real images.
        fake_features: (m, d) features of generated images.
        k: the nearest neighbour defining the radii (3 in the paper).
        batch_size: generated rows per block of distances.
        real_radii: `manifold_radii` of the real set, if already computed
            (the evaluation reuses them for every generated set).
        dtype: of the distance computation.

    Returns:
        ``{"precision": float, "recall": float}``.

    Example:

    >>> precision_recall(real, real)  # {"precision": 1.0, "recall": 1.0}
    """
    real = _check_features(real_features, "real_features", k)
    fake = _check_features(fake_features, "fake_features", k)
    if real.shape[1] != fake.shape[1]:
        raise ValueError(
            f"real and fake features differ in size: {real.shape[1]} vs "
            f"{fake.shape[1]}; extract both with one network."
        )
    if real_radii is None:
        real_radii = manifold_radii(real, k, batch_size, dtype)
    elif np.shape(real_radii) != (len(real),):
        raise ValueError(
            f"real_radii has shape {np.shape(real_radii)}, expected ({len(real)},)."
        )
    fake_radii = manifold_radii(fake, k, batch_size, dtype)
    real_squared = np.square(real_radii)[None, :]
    fake_squared = np.square(fake_radii)
    in_real = np.zeros(len(fake), bool)  # per generated vector
    in_fake = np.zeros(len(real), bool)  # per real vector
    for start, squared in _distance_blocks(fake, real, batch_size, dtype):
        stop = start + len(squared)
        in_real[start:stop] = np.any(squared <= real_squared, axis=1)
        in_fake |= np.any(squared <= fake_squared[start:stop, None], axis=0)
    return {"precision": float(in_real.mean()), "recall": float(in_fake.mean())}
