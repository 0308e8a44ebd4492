"""Fixtures of the tests/test_datasets_*.py files: tiny datasets in their real
on-disk formats, offline.

Loaded by those modules through ``pytest_plugins``; none is autouse here (each
module asks for `network_attempts` and `cache_dir` through its own autouse
fixture), so other test modules are unaffected.
"""

import gzip
import pickle
import socket

import numpy as np
import pytest
from datasets_helpers import celeba_image, cifar_batch, idx_bytes
from PIL import Image

from vae_balance.datasets import sources


@pytest.fixture
def network_attempts(monkeypatch):
    """Every connection attempt is refused and recorded; none is allowed
    unless the test clears the record."""
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("network disabled in tests")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", lambda self, *a: refuse(*a))
    yield attempts
    assert not attempts, f"the test tried to reach the network: {attempts}"


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    """Caches go to a temporary folder, never to ~/.cache."""
    path = tmp_path / "cache"
    monkeypatch.setenv("VAE_BALANCE_CACHE_DIR", str(path))
    return path


# --------------------------------------------------------------- CIFAR-10


@pytest.fixture
def cifar_dir(tmp_path):
    """cifar-10-batches-py with 5 x 3 train images and 4 test images, written
    with pickle protocols 2-5 (and NumPy 1's module name for the test batch,
    like the official Python 2 files)."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "cifar" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    train = rng.integers(0, 256, (15, 32, 32, 3), dtype=np.uint8)
    for index in range(5):
        part = train[3 * index : 3 * index + 3]
        with open(folder / f"data_batch_{index + 1}", "wb") as file:
            pickle.dump(
                cifar_batch(part, [0, 1, 2]), file, protocol=[2, 3, 4, 5, 2][index]
            )
    test = rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    content = pickle.dumps(cifar_batch(test, [3, 4, 5, 6]), protocol=2)
    assert b"numpy._core.multiarray" in content
    content = content.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    (folder / "test_batch").write_bytes(content)
    return folder.parent, train, test


# ----------------------------------------------------------------- CelebA


@pytest.fixture
def celeba_dir(tmp_path):
    """img_align_celeba/ with 6 JPEGs and the official partition file:
    3 train, 2 validation, 1 test."""
    root = tmp_path / "celeba"
    (root / "img_align_celeba").mkdir(parents=True)
    values = [100, 120, 140, 160, 180, 200]
    partition = [0, 0, 0, 1, 1, 2]
    lines = []
    for index, (value, part) in enumerate(zip(values, partition)):
        name = f"{index + 1:06d}.jpg"
        Image.fromarray(celeba_image(value)).save(
            root / "img_align_celeba" / name, quality=100
        )
        lines.append(f"{name} {part}\n")
    (root / "list_eval_partition.txt").write_text("".join(lines))
    return root, values


# ------------------------------------------------------ tensorflow-datasets
@pytest.fixture
def tfds_mock(monkeypatch):
    """tfds.testing.mock_data (offline: tfds 4.9.10's wheel ships no metadata,
    so the AUTO policy falls back to USE_CODE); the reachability probe is
    answered "yes" so the real code path runs to the mocked (no-op)
    download_and_prepare."""
    import tensorflow_datasets as tfds

    monkeypatch.setattr(sources, "_network_reachable", lambda *args, **kwargs: True)
    with tfds.testing.mock_data(num_examples=5):
        yield tfds


# --------------------------------------------------- IDX: (Fashion-)MNIST


@pytest.fixture
def idx_dir(tmp_path):
    """train images gzipped (7), test images raw (3), the real IDX header."""
    rng = np.random.default_rng(1)
    train = rng.integers(1, 256, (7, 28, 28), dtype=np.uint8)
    test = rng.integers(1, 256, (3, 28, 28), dtype=np.uint8)
    folder = tmp_path / "mnist"
    folder.mkdir()
    with gzip.open(folder / "train-images-idx3-ubyte.gz", "wb") as file:
        file.write(idx_bytes(train))
    (folder / "t10k-images-idx3-ubyte").write_bytes(idx_bytes(test))
    return folder, train, test


# ------------------------------------------------------------------ folders
@pytest.fixture
def image_folder(tmp_path):
    """train/ with 4 good 8x8 RGB PNGs and a README; test/ with 2."""
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, (6, 8, 8, 3), dtype=np.uint8)
    for split, indices in (("train", range(4)), ("test", range(4, 6))):
        (tmp_path / "folder" / split / "sub").mkdir(parents=True)
        for i in indices:
            Image.fromarray(images[i]).save(tmp_path / "folder" / split / f"{i}.png")
    (tmp_path / "folder" / "train" / "README.txt").write_text("ignored")
    return tmp_path / "folder", images
