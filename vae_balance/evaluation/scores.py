"""Scores of generated image sets against the real images, on one set of
features: FID, KID and improved precision and recall.

`score_image_sets` is the scoring step of `vae_balance.evaluation.protocol`: it reads
or extracts each set's features through a
`vae_balance.fid.feature_cache.FeatureCache` and caches the scores with them.
"""

from vae_balance.datasets import pipeline
from vae_balance.evaluation import metrics
from vae_balance.evaluation.precision_recall import (
    DEFAULT_K,
    manifold_radii,
    precision_recall,
)

# The image sets scored against the real test images, in report order.
SETS = ("rec", "gen1", "gen2", "gen2_adjusted", "gmm")
KID_SUBSETS = 100  # KID: subsets of ...
KID_SUBSET_SIZE = 1000  # ... 1,000 images each, as Binkowski et al.


def score_image_sets(
    real, sets, labels, features, pad=0, batch_size=50, seed=0, verbose=1
):
    """FID, KID, precision and recall of each image set against the real one.

    Features are those of ``features`` (a `FeatureCache`: read from its
    folder when the images, network and preprocessing are the same, else
    extracted and stored); the scores of a set are cached too, keyed on both
    sets' feature keys and the settings. The real set's manifold radii are
    computed once for all sets.

    Args:
        real: (n, H, W, C) real images at the network's size.
        sets: ``{name: images}``; the names of `SETS` found are scored, in
            that order (other entries are ignored).
        labels: ``{name: label}`` for the progress output.
        features: a `vae_balance.fid.feature_cache.FeatureCache`.
        pad: the loader's border, cropped before the features.
        batch_size: images per feature-extractor call.
        seed: of KID's subsets.
        verbose: progress output.

    Returns:
        ``{name: {"fid", "kid", "kid_std", "precision", "recall"}}``;
        precision and recall are None for sets of at most k = 3 images.
    """

    def extract(images):
        return metrics.extract_features(images, features.extractor, batch_size, verbose)

    def features_of(name, images, label, share=False):
        images = pipeline.remove_padding(images, pad)
        before = len(features.reused)
        if verbose:
            print(f"Features of {label} ({len(images)} images):")
        found, key = features.features(name, images, extract, share=share)
        if verbose and len(features.reused) > before:
            print("  cached (same images, network and preprocessing)")
        return found, key

    real_features, real_key = features_of("real", real, "the test images", True)
    real_radii = []  # computed once, when a set's scores are not cached

    def manifolds(fake_features):
        if min(len(real_features), len(fake_features)) <= DEFAULT_K:
            # k-th neighbours need more than k vectors (a toy evaluation).
            return {"precision": None, "recall": None}
        if not real_radii:
            real_radii.append(manifold_radii(real_features, DEFAULT_K))
        return precision_recall(
            real_features, fake_features, DEFAULT_K, real_radii=real_radii[0]
        )

    def score(fake_features):
        kid, kid_std = metrics.kernel_inception_distance(
            real_features, fake_features, KID_SUBSETS, KID_SUBSET_SIZE, seed
        )
        return {
            "fid": metrics.fid_from_features(real_features, fake_features),
            "kid": kid,
            "kid_std": kid_std,
            **manifolds(fake_features),
        }

    scores = {}
    for name in SETS:
        if name not in sets:
            continue
        fake_features, fake_key = features_of(name, sets[name], labels[name])
        inputs = {
            "real": real_key,
            "fake": fake_key,
            "kid": [KID_SUBSETS, KID_SUBSET_SIZE, seed],
            "precision_recall_k": DEFAULT_K,
        }
        if real_key is None:
            scores[name] = score(fake_features)
        else:
            scores[name] = features.result(
                f"scores_{name}", inputs, lambda: score(fake_features)
            )
        if verbose:
            found = scores[name]
            print(
                f"  {labels[name]}: FID {found['fid']:.2f}, KID "
                f"{found['kid']:.4f}, precision {_fraction(found['precision'])}, "
                f"recall {_fraction(found['recall'])}"
            )
    return scores


def _fraction(value):
    return "n/a" if value is None else f"{value:.3f}"
