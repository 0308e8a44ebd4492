"""Features of image sets, cached so that a second evaluation computes only
what is new.

A set's features depend on three things, and the cache key is the sha256 of
all three: the images (as the network sees them: rounded to 8-bit levels
when the extractor quantizes, else their float32 bytes), the network's
weights (the sha256 of its weight arrays), and the preprocessing (the
extractor's ``name`` and ``preprocessing`` description). `FeatureCache`
keeps one ``<set>.npz`` per image set in a folder (``WORKDIR/features/``:
``rec.npz``, ``gen1.npz``, ..., ``real.npz``), each with its key; a set whose
images, network or preprocessing changed is computed again and replaced.
The real set can also be looked up in a shared folder under its key
(``real-<key>.npz``), so that runs of one dataset evaluated with the same
network extract the test images' features once.

A feature extractor whose weights cannot be hashed (a plain function) is
never cached: there is no way to know that its features are still valid.
"""

import hashlib
import json
import os

import numpy as np

from vae_balance.files import atomic_write


def weights_sha256(model):
    """sha256 of a Keras model's weight arrays (shapes, dtypes, bytes), or
    None for an object without weights."""
    weights = getattr(model, "weights", None)
    if weights is None:
        return None
    digest = hashlib.sha256()
    for weight in weights:
        value = np.ascontiguousarray(np.asarray(weight))
        digest.update(f"{value.dtype.str}{value.shape}".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


def extractor_fingerprint(feature_extractor):
    """What a feature extractor's features depend on, JSON-ready.

    Returns:
        ``{"network", "weights_sha256", "preprocessing"}``; ``weights_sha256``
        is None when the extractor has no Keras model to hash (then nothing
        is cached).
    """
    found = getattr(feature_extractor, "_vae_balance_fingerprint", None)
    if found is not None:
        return found
    model = getattr(feature_extractor, "model", feature_extractor)
    fingerprint = {
        "network": getattr(feature_extractor, "name", type(feature_extractor).__name__),
        "weights_sha256": weights_sha256(model),
        "preprocessing": getattr(feature_extractor, "preprocessing", None),
    }
    try:  # hashing the Inception weights takes a fraction of a second: once
        feature_extractor._vae_balance_fingerprint = fingerprint
    except AttributeError:
        pass
    return fingerprint


def images_sha256(images, quantize):
    """sha256 of images as a feature extractor sees them.

    Args:
        images: (n, h, w, c) uint8, or floats in [0, 1].
        quantize: hash float images rounded to 8-bit levels (what a
            quantizing extractor sees), else their float32 bytes.
    """
    images = np.asarray(images)
    if images.dtype != np.uint8:
        images = images.astype(np.float32)
        if quantize:
            images = np.round(np.clip(images, 0.0, 1.0) * np.float32(255.0))
            images = images.astype(np.uint8)
    digest = hashlib.sha256(f"{images.dtype.str}{images.shape}".encode())
    digest.update(np.ascontiguousarray(images).tobytes())
    return digest.hexdigest()


class FeatureCache:
    """Features per named image set, kept in ``directory`` under their key.

    Args:
        directory: where ``<name>.npz`` files go (created when needed); None:
            no cache, every set is computed.
        feature_extractor: the extractor whose features are cached.
        shared_directory: optional folder where the real set's features are
            also looked up and stored as ``real-<key>.npz``.

    Attributes:
        computed, reused: names of the sets computed or read from the cache.
    """

    def __init__(self, directory, feature_extractor, shared_directory=None):
        self.extractor = feature_extractor
        self.fingerprint = extractor_fingerprint(feature_extractor)
        enabled = self.fingerprint["weights_sha256"] is not None
        self.directory = directory if enabled else None
        self.shared_directory = shared_directory if enabled else None
        self.quantize = bool(getattr(feature_extractor, "quantize", False))
        self.computed, self.reused = [], []

    def key(self, images):
        """The cache key of an image set: images, weights and preprocessing."""
        text = json.dumps(
            {**self.fingerprint, "images_sha256": images_sha256(images, self.quantize)},
            sort_keys=True,
        )
        return hashlib.sha256(text.encode()).hexdigest()

    def features(self, name, images, compute, share=False):
        """The features of ``images``, from the cache or ``compute(images)``.

        Args:
            name: the set's name (a file name: ``rec``, ``gen1``, ``real``).
            images: the set, as given to ``compute``.
            compute: callable images -> (n, d) features.
            share: also look up / store the set in ``shared_directory``.

        Returns:
            ``(features, key)``; key is None without a cache.
        """
        if self.directory is None:
            self.computed.append(name)
            return compute(images), None
        key = self.key(images)
        candidates = [os.path.join(self.directory, f"{name}.npz")]
        if share and self.shared_directory:
            candidates.append(os.path.join(self.shared_directory, f"{name}-{key}.npz"))
        for path in candidates:
            features = _read(path, key)
            if features is not None:
                self.reused.append(name)
                if path != candidates[0]:
                    _write(candidates[0], features, key, self.fingerprint)
                return features, key
        features = compute(images)
        self.computed.append(name)
        for path in candidates:
            _write(path, features, key, self.fingerprint)
        return features, key

    def result(self, name, inputs, compute):
        """A JSON-ready value derived from ``inputs``, cached in
        ``results.json`` under ``name`` while ``inputs`` are the same.

        Used for what is costly to recompute from cached features (KID,
        precision and recall of 10,000 vectors) or from the model (the
        likelihood).

        Args:
            name: the entry's name (one value per name is kept).
            inputs: JSON-ready dict of everything the value depends on.
            compute: callable () -> the value.
        """
        if self.directory is None:
            return compute()
        key = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()
        path = os.path.join(self.directory, "results.json")
        stored = {}
        if os.path.isfile(path):
            try:
                with open(path) as f:
                    stored = json.load(f)
            except (OSError, ValueError):
                stored = {}
        entry = stored.get(name)
        if isinstance(entry, dict) and entry.get("key") == key:
            self.reused.append(name)
            return entry["value"]
        value = compute()
        self.computed.append(name)
        stored[name] = {"key": key, "value": value}
        os.makedirs(self.directory, exist_ok=True)
        atomic_write(path, json.dumps(stored, indent=1, sort_keys=True) + "\n")
        return value


def _read(path, key):
    """The features stored at ``path`` under ``key``, else None."""
    if not os.path.isfile(path):
        return None
    try:
        with np.load(path, allow_pickle=False) as f:
            if str(f["key"]) != key:
                return None
            return np.asarray(f["features"], np.float64)
    except (OSError, ValueError, KeyError):  # a foreign or damaged file
        return None


def _write(path, features, key, fingerprint):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    atomic_write(
        path,
        write=lambda tmp: np.savez(
            tmp,
            features=features,
            key=np.array(key),
            fingerprint=np.array(json.dumps(fingerprint, sort_keys=True)),
        ),
        suffix=".npz",
    )
