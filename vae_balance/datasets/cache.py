"""The ``.npy`` cache of decoded, cropped and resized CelebA images.

The 202,599 CelebA JPEGs are decoded once, then memory-mapped from a cache
file under `default_cache_dir`, named by a hash of what they came from.
"""

import hashlib
import logging
import os

import numpy as np

# The package's public logger name (callers attach handlers to it).
logger = logging.getLogger("vae_balance.data")

_CACHE_VERSION = "v1"


def default_cache_dir():
    """``$VAE_BALANCE_CACHE_DIR``, else ``$XDG_CACHE_HOME/vae_balance``, else
    ``~/.cache/vae_balance``."""
    if os.environ.get("VAE_BALANCE_CACHE_DIR"):
        return os.environ["VAE_BALANCE_CACHE_DIR"]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
    return os.path.join(os.path.expanduser(base), "vae_balance")


def cache_key(*parts):
    """A short hash of the cache version and ``parts`` (what the data came from)."""
    text = "|".join(str(part) for part in (_CACHE_VERSION,) + parts)
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def cache_path(cache_dir, stem, key):
    """``<cache_dir or default_cache_dir()>/<stem>-<key>.npy``."""
    cache_dir = os.path.expanduser(cache_dir or default_cache_dir())
    return os.path.join(cache_dir, f"{stem}-{key}.npy")


def collect(chunks, shape, cache, max_count=None):
    """The uint8 chunks as one array, saved atomically to ``cache`` if given.

    With a cache and a known ``max_count`` the chunks go straight into a
    memory-mapped ``.npy`` (CelebA train is 2 GB: no second copy in memory).
    """
    if cache is None or max_count is None:
        array = np.concatenate(list(chunks) or [np.zeros((0,) + shape, np.uint8)])
        if cache is None or len(array) == 0:
            return array
        max_count, chunks = len(array), [array]
    os.makedirs(os.path.dirname(cache), exist_ok=True)
    partial = f"{cache}.{os.getpid()}.partial.npy"
    try:
        output = np.lib.format.open_memmap(
            partial, mode="w+", dtype=np.uint8, shape=(max_count,) + shape
        )
        count = 0
        for chunk in chunks:
            output[count : count + len(chunk)] = chunk
            count += len(chunk)
        output.flush()
        del output
        if count == 0:
            return np.zeros((0,) + shape, np.uint8)
        if count < max_count:  # skipped images: rewrite the used rows only
            used = np.load(partial, mmap_mode="r")[:count]
            np.save(partial + ".npy", used)
            del used
            os.replace(partial + ".npy", partial)
        os.replace(partial, cache)
    finally:
        for leftover in (partial, partial + ".npy"):
            if os.path.exists(leftover):
                os.remove(leftover)
    logger.info("Cached %d images in %s", count, cache)
    return np.load(cache, mmap_mode="r")
