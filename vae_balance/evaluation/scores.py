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

# The image sets scored against the real test images, in report order (the
# stretched ones only when the evaluation asks for Dai & Wipf's stretch).
SETS = (
    "rec",
    "gen1",
    "gen2",
    "gen2_adjusted",
    "gen2_matched",
    "gmm",
    "gen2_stretched",
    "gen2_matched_stretched",
    "gmm_stretched",
)
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

    scorer = _Scorer(features, pad, batch_size, seed, verbose)
    scorer.read_real(real)
    return {
        name: scorer.score_set(name, sets[name], labels[name])
        for name in SETS
        if name in sets
    }


class _Scorer:
    """The steps of `score_image_sets`: the real set's features (and its
    manifold radii, computed once) against which each set is scored."""

    def __init__(self, features, pad, batch_size, seed, verbose):
        self.features = features
        self.pad = pad
        self.batch_size = batch_size
        self.seed = seed
        self.verbose = verbose
        self.real_features = self.real_key = self._real_radii = None

    def read_real(self, real):
        """The real set's features (shared between runs when allowed)."""
        self.real_features, self.real_key = self._features_of(
            "real", real, "the test images", share=True
        )

    def score_set(self, name, images, label):
        """One set's scores, from the cache when its inputs are the same."""
        fake_features, fake_key = self._features_of(name, images, label)
        inputs = {
            "real": self.real_key,
            "fake": fake_key,
            "kid": [KID_SUBSETS, KID_SUBSET_SIZE, self.seed],
            "precision_recall_k": DEFAULT_K,
        }
        if self.real_key is None:
            found = self._score(fake_features)
        else:
            found = self.features.result(
                f"scores_{name}", inputs, lambda: self._score(fake_features)
            )
        if self.verbose:
            print(
                f"  {label}: FID {found['fid']:.2f}, KID "
                f"{found['kid']:.4f}, precision {_fraction(found['precision'])}, "
                f"recall {_fraction(found['recall'])}"
            )
        return found

    def _extract(self, images):
        return metrics.extract_features(
            images, self.features.extractor, self.batch_size, self.verbose
        )

    def _features_of(self, name, images, label, share=False):
        images = pipeline.remove_padding(images, self.pad)
        before = len(self.features.reused)
        if self.verbose:
            print(f"Features of {label} ({len(images)} images):")
        found, key = self.features.features(name, images, self._extract, share=share)
        if self.verbose and len(self.features.reused) > before:
            print("  cached (same images, network and preprocessing)")
        return found, key

    def _score(self, fake_features):
        kid, kid_std = metrics.kernel_inception_distance(
            self.real_features, fake_features, KID_SUBSETS, KID_SUBSET_SIZE, self.seed
        )
        return {
            "fid": metrics.fid_from_features(self.real_features, fake_features),
            "kid": kid,
            "kid_std": kid_std,
            **self._manifolds(fake_features),
        }

    def _manifolds(self, fake_features):
        if min(len(self.real_features), len(fake_features)) <= DEFAULT_K:
            # k-th neighbours need more than k vectors (a toy evaluation).
            return {"precision": None, "recall": None}
        if self._real_radii is None:
            self._real_radii = manifold_radii(self.real_features, DEFAULT_K)
        return precision_recall(
            self.real_features, fake_features, DEFAULT_K, real_radii=self._real_radii
        )


def _fraction(value):
    return "n/a" if value is None else f"{value:.3f}"
