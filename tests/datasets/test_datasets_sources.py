"""vae_balance.datasets.sources: local files of every dataset and
tensorflow-datasets, through `load_split`, tiny and offline.

The autouse fixture refuses every socket connection, so a test that tried to
reach the network fails (tfds downloads would hang ~200 s offline); the tfds
tests run on ``tfds.testing.mock_data``.
"""

import logging
import os
import time

import numpy as np
import pytest
import tensorflow as tf
from datasets_helpers import FASHION_DIR, as_array, celeba_image
from PIL import Image

from vae_balance.config import PRESETS
from vae_balance.datasets import formats, pipeline, sources
from vae_balance.datasets.registry import DataError, DatasetNotFoundError


@pytest.fixture(autouse=True)
def offline(network_attempts, cache_dir):
    """No network (a connection attempt fails the test), caches in tmp_path."""


# --------------------------------------------------------------- CIFAR-10
def test_cifar_python_batches_load_as_float_images_in_order(cifar_dir):
    root, train, test = cifar_dir
    dataset = pipeline.load_split("cifar10", "train", root)
    assert dataset.element_spec == tf.TensorSpec((32, 32, 3), tf.float32)
    assert pipeline.num_examples(dataset) == 15
    np.testing.assert_allclose(as_array(dataset), train / 255.0, atol=1e-7)
    # The batches folder itself works too, and the legacy numpy.core name.
    test_split = pipeline.load_split(
        PRESETS["cifar10"], "test", root / "cifar-10-batches-py"
    )
    np.testing.assert_array_equal(
        as_array(pipeline.load_split("cifar10", "test", root, dtype="uint8")), test
    )
    assert pipeline.num_examples(test_split) == 4


def test_cifar_limit_and_jpeg_roundtrip(cifar_dir):
    root, train, _ = cifar_dir
    plain = as_array(
        pipeline.load_split("cifar10", "train", root, limit=4, dtype="uint8")
    )
    jpeg = as_array(
        pipeline.load_split(
            "cifar10", "train", root, limit=4, dtype="uint8", jpeg_roundtrip=True
        )
    )
    np.testing.assert_array_equal(plain, train[:4])
    assert jpeg.shape == plain.shape and jpeg.dtype == np.uint8
    # Random pixels do not survive a quality-75 JPEG: it really re-encoded.
    assert np.abs(jpeg.astype(int) - plain).mean() > 5
    smooth = np.broadcast_to(
        (np.arange(32, dtype=np.uint8) * 8)[None, None, :, None], (1, 32, 32, 3)
    )
    roundtrip = formats.jpeg_roundtrip_images(np.ascontiguousarray(smooth))
    np.testing.assert_allclose(roundtrip, smooth, atol=8)


def test_cifar_has_no_validation_split():
    with pytest.raises(ValueError, match="no 'validation' split"):
        pipeline.load_split("cifar10", "validation")


def test_incomplete_cifar_names_the_missing_batch(cifar_dir):
    root, _, _ = cifar_dir
    os.remove(root / "cifar-10-batches-py" / "data_batch_3")
    with pytest.raises(DatasetNotFoundError, match="data_batch_3"):
        pipeline.load_split("cifar10", "train", root)


# ----------------------------------------------------------------- CelebA
def test_celeba_folder_uses_the_official_partition_and_the_crop(celeba_dir):
    root, values = celeba_dir
    sizes = {}
    for split in ("train", "validation", "test"):
        dataset = pipeline.load_split("celeb_a", split, root)
        assert dataset.element_spec == tf.TensorSpec((64, 64, 3), tf.float32)
        sizes[split] = pipeline.num_examples(dataset)
        images = as_array(dataset) * 255
        if split == "validation":
            for image, value in zip(images, values[3:5]):
                assert abs(image.mean() - value) < 1.0  # no pixel from outside
                assert np.abs(image - value).max() < 6  # JPEG ringing at most
    assert sizes == {"train": 3, "validation": 2, "test": 1}


def test_celeba_jpegs_are_decoded_once_into_the_cache(celeba_dir, cache_dir):
    root, _ = celeba_dir
    first = as_array(pipeline.load_split("celeba", "train", root, dtype="uint8"))
    assert len(list(cache_dir.glob("celeb_a-train-64-*.npy"))) == 1
    for path in (root / "img_align_celeba").glob("00000[123].jpg"):
        path.write_bytes(b"not read again")
    again = as_array(pipeline.load_split("celeba", "train", root, dtype="uint8"))
    np.testing.assert_array_equal(again, first)


def test_celeba_kaggle_layout_with_csv_partition(celeba_dir, tmp_path):
    root, values = celeba_dir
    kaggle = tmp_path / "kaggle"
    nested = kaggle / "img_align_celeba" / "img_align_celeba"
    nested.parent.mkdir(parents=True)
    (root / "img_align_celeba").rename(nested)
    rows = (root / "list_eval_partition.txt").read_text().split()
    csv = "image_id,partition\n" + "".join(
        f"{rows[i]},{rows[i + 1]}\n" for i in range(0, len(rows), 2)
    )
    (kaggle / "list_eval_partition.csv").write_text(csv)
    test = as_array(pipeline.load_split("celeb_a", "test", kaggle, limit=1))
    assert test.shape == (1, 64, 64, 3)
    assert abs(test.mean() * 255 - values[5]) < 1.0


def test_celeba_partition_listing_a_missing_file(celeba_dir, caplog):
    root, _ = celeba_dir
    os.remove(root / "img_align_celeba" / "000002.jpg")
    with pytest.raises(DataError, match="000002.jpg"):
        pipeline.load_split("celeb_a", "train", root)
    with caplog.at_level(logging.WARNING, logger="vae_balance.data"):
        dataset = pipeline.load_split("celeb_a", "train", root, skip_bad=True)
    assert pipeline.num_examples(dataset) == 2
    assert "1 train file(s) missing" in caplog.text


def test_celeba_bad_jpegs_name_the_file(celeba_dir, caplog, cache_dir):
    root, _ = celeba_dir
    folder = root / "img_align_celeba"
    Image.fromarray(np.zeros((100, 100, 3), np.uint8)).save(folder / "000001.jpg")
    content = (folder / "000003.jpg").read_bytes()
    (folder / "000003.jpg").write_bytes(content[: len(content) // 3])
    with pytest.raises(DataError, match=r"000001\.jpg.*\(100, 100, 3\)"):
        pipeline.load_split("celeb_a", "train", root)
    os.remove(folder / "000001.jpg")
    Image.fromarray(celeba_image(9)).save(folder / "000001.jpg")
    with pytest.raises(DataError, match=r"000003\.jpg.*truncated"):
        pipeline.load_split("celeb_a", "train", root)
    with caplog.at_level(logging.WARNING, logger="vae_balance.data"):
        dataset = pipeline.load_split("celeb_a", "train", root, skip_bad=True)
    assert pipeline.num_examples(dataset) == 2
    assert "Skipped 1 bad image" in caplog.text
    (cache,) = cache_dir.glob("celeb_a-train-64-*.npy")  # the 2 good ones
    assert np.load(cache).shape == (2, 64, 64, 3)
    assert not list(cache_dir.glob("*partial*"))


def test_celeba_malformed_partition_and_empty_split(celeba_dir):
    root, _ = celeba_dir
    partition = root / "list_eval_partition.txt"
    lines = partition.read_text().splitlines()
    partition.write_text("\n".join(lines[:5]) + "\n")  # no test image left
    with pytest.raises(DataError, match="'test' split of celeb_a is empty"):
        pipeline.load_split("celeb_a", "test", root)
    partition.write_text("\n".join(lines[:2] + ["000003.jpg 7"]) + "\n")
    with pytest.raises(DataError, match="list_eval_partition.txt, line 3"):
        pipeline.load_split("celeb_a", "train", root)


def test_celeba_images_without_partition_file_say_what_is_missing(celeba_dir):
    root, _ = celeba_dir
    os.remove(root / "list_eval_partition.txt")
    with pytest.raises(DatasetNotFoundError, match="list_eval_partition"):
        pipeline.load_split("celeb_a", "train", root)


# ------------------------------------------------------ tensorflow-datasets
def test_tfds_cifar10_is_read_through_the_builder(tfds_mock, tmp_path):
    dataset = pipeline.load_split("cifar10", "train", tmp_path / "tfds", source="tfds")
    assert dataset.element_spec == tf.TensorSpec((32, 32, 3), tf.float32)
    images = as_array(dataset)
    expected = tfds_mock.load("cifar10", split="train", shuffle_files=False)
    expected = np.stack([e["image"] for e in expected.as_numpy_iterator()])
    np.testing.assert_allclose(images, expected / 255.0, atol=1e-7)
    limited = pipeline.load_split("cifar10", "test", tmp_path, source="tfds", limit=2)
    assert pipeline.num_examples(limited) == 2


def test_tfds_celeb_a_gets_the_same_crop_and_a_cache(tfds_mock, tmp_path, cache_dir):
    dataset = pipeline.load_split("celeb_a", "validation", tmp_path, source="tfds")
    images = as_array(
        pipeline.load_split("celeb_a", "validation", tmp_path, dtype="uint8")
    )
    raw = tfds_mock.load("celeb_a", split="validation", shuffle_files=False)
    raw = np.stack([e["image"] for e in raw.as_numpy_iterator()])
    assert raw.shape == (5, 218, 178, 3)
    np.testing.assert_array_equal(images, formats.celeba_crop_resize(raw))
    assert dataset.element_spec.shape == (64, 64, 3)
    assert len(list(cache_dir.glob("celeb_a-tfds-validation-64-*.npy"))) == 1


def test_tfds_fashion_mnist_is_padded(tfds_mock, tmp_path):
    dataset = pipeline.load_split("fashion_mnist", "test", tmp_path, source="tfds")
    images = as_array(dataset)
    assert images.shape == (5, 32, 32, 1)
    inner = pipeline.remove_padding(images, "fashion_mnist")
    assert inner.shape == (5, 28, 28, 1) and inner.any()
    assert np.abs(images).sum() == np.abs(inner).sum()  # the border is zeros


def test_missing_tfds_dataset_fails_fast_offline(tmp_path, network_attempts):
    start = time.time()
    with pytest.raises(DatasetNotFoundError) as error:
        pipeline.load_split("cifar10", "train", tmp_path)
    assert time.time() - start < 10
    message = str(error.value)
    assert "cifar-10-batches-py" in message and str(tmp_path) in message
    assert "not prepared" in message and "unreachable" in message
    assert f"tfds build cifar10 --data_dir {tmp_path}" in message
    assert network_attempts  # the probe ran (and was refused)
    network_attempts.clear()


def test_download_false_does_not_probe_the_network(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="download=False"):
        pipeline.load_split("mnist", "test", tmp_path, download=False)
    with pytest.raises(DatasetNotFoundError, match="Looked for") as error:
        pipeline.load_split("celeb_a", "test", tmp_path, source="local")
    assert "img_align_celeba" in str(error.value)


def test_network_probe_returns_false_quickly(network_attempts):
    start = time.time()
    assert sources._network_reachable("example.invalid", timeout=1.0) is False
    assert time.time() - start < 2
    network_attempts.clear()


# --------------------------------------------------- IDX: (Fashion-)MNIST
def test_idx_files_are_padded_to_32x32(idx_dir):
    folder, train, test = idx_dir
    for split, expected in (("train", train), ("test", test)):
        dataset = pipeline.load_split("mnist", split, folder)
        assert dataset.element_spec == tf.TensorSpec((32, 32, 1), tf.float32)
        images = as_array(dataset)
        np.testing.assert_allclose(
            pipeline.remove_padding(images, "mnist")[..., 0],
            expected / 255.0,
            atol=1e-7,
        )
        border = images.copy()
        border[:, 2:30, 2:30] = 0
        assert not border.any()


def test_real_fashion_mnist_is_found_without_data_dir():
    if not os.path.isdir(FASHION_DIR):
        pytest.skip("apt install dataset-fashion-mnist")
    train = pipeline.load_split("fashion_mnist", "train")
    test = pipeline.load_split(PRESETS["fashion_mnist"], "test", dtype="uint8")
    assert (pipeline.num_examples(train), pipeline.num_examples(test)) == (60000, 10000)
    assert train.element_spec == tf.TensorSpec((32, 32, 1), tf.float32)
    images = as_array(test)
    assert images.shape == (10000, 32, 32, 1)
    assert not images[:, :2].any() and not images[:, -2:].any()
    assert not images[:, :, :2].any() and not images[:, :, -2:].any()
    raw = formats.read_idx(os.path.join(FASHION_DIR, "t10k-images-idx3-ubyte.gz"))
    np.testing.assert_array_equal(pipeline.remove_padding(images, 2)[..., 0], raw)
    assert pipeline.config_padding(PRESETS["fashion_mnist"]) == 2
