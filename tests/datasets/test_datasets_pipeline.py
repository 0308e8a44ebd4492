"""vae_balance.datasets.pipeline and .arrays: folders, arrays, batching,
padding."""

import dataclasses
import logging

import numpy as np
import pytest
import tensorflow as tf
from datasets_helpers import as_array
from PIL import Image

from vae_balance.config import PRESETS
from vae_balance.datasets import arrays, pipeline
from vae_balance.datasets.registry import DataError, DatasetNotFoundError


@pytest.fixture(autouse=True)
def offline(network_attempts, cache_dir):
    """No network (a connection attempt fails the test), caches in tmp_path."""


def test_load_dataset_batches_a_preset(idx_dir):
    folder, _, _ = idx_dir
    train, test = pipeline.load_dataset(
        PRESETS["fashion_mnist"], folder, batch_size=2, seed=0, limit=5
    )
    train_shapes = [batch.shape for batch in train]
    assert train_shapes == [(2, 32, 32, 1)] * 2  # 5 images: the remainder dropped
    assert [batch.shape[0] for batch in test] == [2, 1]  # 3 test images, all kept
    assert train.element_spec.dtype == tf.float32


def test_folder_splits_load_sorted_images(image_folder):
    root, images = image_folder
    train = pipeline.load_split("folder", "train", root)
    np.testing.assert_allclose(as_array(train), images[:4] / 255.0, atol=1e-7)
    test = arrays.from_folder(root / "test", image_shape=(10, 10, 3), dtype="uint8")
    np.testing.assert_array_equal(as_array(test)[:, 1:9, 1:9], images[4:])
    with pytest.raises(DatasetNotFoundError, match="No 'validation' subfolder"):
        pipeline.load_split("folder", "validation", root)


@pytest.mark.parametrize(
    "bad",
    ["truncated", "not-an-image", "wrong-size", "grayscale"],
)
def test_bad_images_in_a_folder_are_named_or_skipped(image_folder, bad, caplog):
    root, images = image_folder
    path = root / "train" / "sub" / "bad.png"
    if bad == "truncated":
        Image.fromarray(images[0]).save(path)
        path.write_bytes(path.read_bytes()[:60])
    elif bad == "not-an-image":
        path.write_text("hello")
    elif bad == "wrong-size":
        Image.fromarray(np.zeros((9, 8, 3), np.uint8)).save(path)
    else:
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(path)
    with pytest.raises(DataError, match=r"sub/bad\.png"):
        pipeline.load_split("folder", "train", root)
    with pytest.raises(DataError, match=r"sub/bad\.png"):
        arrays.from_folder(root / "train", image_shape=(8, 8, 3))
    with caplog.at_level(logging.WARNING, logger="vae_balance.data"):
        dataset = pipeline.load_split("folder", "train", root, skip_bad=True)
    assert pipeline.num_examples(dataset) == 4
    assert "Skipped 1 bad image" in caplog.text


def test_from_arrays_checks_dtype_range_and_nan():
    uint8 = np.arange(2 * 28 * 28, dtype=np.int64).reshape(2, 28, 28) % 256
    dataset = arrays.from_arrays(uint8.astype(np.uint8), image_shape=(32, 32, 1))
    images = as_array(dataset)
    assert images.shape == (2, 32, 32, 1) and images.dtype == np.float32
    np.testing.assert_allclose(images[:, 2:30, 2:30, 0], uint8 / 255.0, atol=1e-7)
    floats = np.random.default_rng(3).uniform(size=(5, 4, 4, 3))
    np.testing.assert_allclose(as_array(arrays.from_arrays(floats)), floats, atol=1e-7)
    floats[3, 0, 0, 0] = np.nan
    with pytest.raises(DataError, match=r"images\[3\] contains NaN"):
        arrays.from_arrays(floats)
    floats[3, 0, 0, 0] = 0.5
    floats[1, 1, 1, 1] = 255.0
    with pytest.raises(DataError, match=r"images\[1\].*outside \[0, 1\]"):
        arrays.from_arrays(floats)
    floats[1, 1, 1, 1] = 0.5
    with pytest.raises(DataError, match="dtype int64"):
        arrays.from_arrays(uint8)
    with pytest.raises(DataError, match="do not fit"):
        arrays.from_arrays(floats[:, :3], image_shape=(4, 4, 3))


# ------------------------------------------------------------------ pipelines
def test_make_train_dataset_is_seeded_reshuffled_and_full():
    images = arrays.from_arrays(np.arange(10, dtype=np.uint8).reshape(10, 1, 1, 1))

    def epochs(seed, count=2):
        dataset = pipeline.make_train_dataset(images, batch_size=4, seed=seed)
        return [
            [
                (batch.numpy() * 255).round().astype(int).ravel().tolist()
                for batch in dataset
            ]
            for _ in range(count)
        ]

    first = epochs(0)
    assert first == epochs(0)  # same seed, same epochs
    assert first != epochs(1)
    assert first[0] != first[1]  # reshuffled every epoch
    assert all(len(batch) == 4 for epoch in first for batch in epoch)
    assert len(first[0]) == 2  # 10 images: 2 full batches, the rest dropped
    uint8 = images.map(lambda x: tf.cast(tf.round(x * 255), tf.uint8))
    batch = next(iter(pipeline.make_train_dataset(uint8, 4, 0, shuffle=False)))
    assert batch.dtype == tf.float32
    np.testing.assert_allclose(batch.numpy().ravel(), np.arange(4) / 255.0, atol=1e-7)
    with pytest.raises(DataError, match="fewer than one batch"):
        pipeline.make_train_dataset(images, batch_size=11, seed=0)
    assert [b.shape[0] for b in pipeline.make_eval_dataset(uint8, 4)] == [4, 4, 2]


def test_large_arrays_are_streamed_in_chunks(tmp_path, monkeypatch):
    monkeypatch.setattr(arrays, "_IN_MEMORY_BYTES", 0)
    array = np.lib.format.open_memmap(
        tmp_path / "big.npy", mode="w+", dtype=np.uint8, shape=(2500, 2, 2, 1)
    )
    array[:] = (np.arange(2500) % 256).astype(np.uint8)[:, None, None, None]
    dataset = arrays.array_dataset(array)
    assert pipeline.num_examples(dataset) == 2500
    np.testing.assert_array_equal(as_array(dataset), array)


def test_names_presets_and_padding():
    assert pipeline.config_padding("fashion_mnist") == 2
    assert pipeline.config_padding(PRESETS["fashion_mnist_full"]) == 2
    assert pipeline.config_padding("cifar10") == 0
    assert pipeline.config_padding("celeba") == 0
    images = np.ones((3, 32, 32, 1))
    assert pipeline.remove_padding(images, "mnist").shape == (3, 28, 28, 1)
    assert pipeline.remove_padding(images, 0) is images
    no_data = dataclasses.replace(PRESETS["cifar10"], dataset="none")
    with pytest.raises(ValueError, match="has dataset 'none'"):
        pipeline.load_split(no_data, "train")
    with pytest.raises(ValueError, match="Unknown dataset 'imagenet'"):
        pipeline.load_split("imagenet", "train")
