"""vae_balance.data: every source in its real on-disk format, tiny and offline.

An autouse fixture replaces the socket functions, so a test that tried to
reach the network fails (tfds downloads would hang ~200 s offline).
"""

import dataclasses
import gzip
import logging
import os
import pickle
import socket
import struct
import time

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from vae_balance import data
from vae_balance.presets import PRESETS, get_preset

FASHION_DIR = "/usr/share/datasets/fashion-mnist"


@pytest.fixture(autouse=True)
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


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    """Caches go to a temporary folder, never to ~/.cache."""
    path = tmp_path / "cache"
    monkeypatch.setenv("VAE_BALANCE_CACHE_DIR", str(path))
    return path


def as_array(dataset):
    return np.concatenate(list(dataset.batch(100_000).as_numpy_iterator()))


# --------------------------------------------------------------- CIFAR-10
def cifar_batch(images, labels):
    """The real structure of a CIFAR-10 python batch (channel-major rows)."""
    return {
        b"batch_label": b"training batch 1 of 5",
        b"labels": [int(label) for label in labels],
        b"data": images.transpose(0, 3, 1, 2).reshape(len(images), 3072),
        b"filenames": [f"img_{i}.png".encode() for i in range(len(images))],
    }


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


def test_cifar_python_batches_load_as_float_images_in_order(cifar_dir):
    root, train, test = cifar_dir
    dataset = data.load_split("cifar10", "train", root)
    assert dataset.element_spec == tf.TensorSpec((32, 32, 3), tf.float32)
    assert data.num_examples(dataset) == 15
    np.testing.assert_allclose(as_array(dataset), train / 255.0, atol=1e-7)
    # The batches folder itself works too, and the legacy numpy.core name.
    test_split = data.load_split(
        PRESETS["cifar10"], "test", root / "cifar-10-batches-py"
    )
    np.testing.assert_array_equal(
        as_array(data.load_split("cifar10", "test", root, dtype="uint8")), test
    )
    assert data.num_examples(test_split) == 4


def test_cifar_limit_and_jpeg_roundtrip(cifar_dir):
    root, train, _ = cifar_dir
    plain = as_array(data.load_split("cifar10", "train", root, limit=4, dtype="uint8"))
    jpeg = as_array(
        data.load_split(
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
    roundtrip = data.jpeg_roundtrip_images(np.ascontiguousarray(smooth))
    np.testing.assert_allclose(roundtrip, smooth, atol=8)


def test_cifar_has_no_validation_split():
    with pytest.raises(ValueError, match="no 'validation' split"):
        data.load_split("cifar10", "validation")


def test_incomplete_cifar_names_the_missing_batch(cifar_dir):
    root, _, _ = cifar_dir
    os.remove(root / "cifar-10-batches-py" / "data_batch_3")
    with pytest.raises(data.DatasetNotFoundError, match="data_batch_3"):
        data.load_split("cifar10", "train", root)


def py2_cifar_pickle(rows, labels):
    """A batch as the official files hold it: a Python 2 pickle (protocol 2,
    SHORT_BINSTRING strings, NumPy 1's numpy.core.multiarray), opcode by
    opcode, since Python 3 cannot write one."""

    def string(text):
        return b"U" + bytes([len(text)]) + text

    def uint16(value):
        return b"M" + struct.pack("<H", value)

    raw = rows.tobytes()
    return b"".join(
        [
            b"\x80\x02}q\x00(",
            string(b"data"),
            b"cnumpy.core.multiarray\n_reconstruct\nq\x01cnumpy\nndarray\nq\x02",
            b"K\x00\x85" + string(b"b") + b"\x87Rq\x03(K\x01",
            uint16(rows.shape[0]) + uint16(rows.shape[1]) + b"\x86",
            b"cnumpy\ndtype\nq\x04" + string(b"u1") + b"K\x00K\x01\x87Rq\x05(K\x03",
            string(b"|") + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb",
            b"\x89T" + struct.pack("<I", len(raw)) + raw + b"tb",
            string(b"labels") + b"]q\x06(",
            b"".join(b"K" + bytes([label]) for label in labels),
            b"eu.",
        ]
    )


def test_python2_batch_like_the_official_files(tmp_path):
    images = np.random.default_rng(5).integers(0, 256, (2, 32, 32, 3), np.uint8)
    rows = cifar_batch(images, [0, 0])[b"data"]
    path = tmp_path / "data_batch_1"
    path.write_bytes(py2_cifar_pickle(rows, [3, 7]))
    reference = pickle.loads(path.read_bytes(), encoding="bytes")
    np.testing.assert_array_equal(reference[b"data"], rows)  # a valid pickle
    loaded, labels = data.read_cifar_batch(path)
    np.testing.assert_array_equal(loaded, images)
    np.testing.assert_array_equal(labels, [3, 7])


class CreatesAFile:
    """Unpickling this with pickle.load would create ``path``."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_malicious_cifar_pickle_is_refused_and_runs_nothing(cifar_dir, tmp_path):
    root, _, _ = cifar_dir
    target = tmp_path / "pwned"
    payload = pickle.dumps({b"data": CreatesAFile(str(target)), b"labels": []})
    pickle.loads(payload)  # the payload works: a plain unpickler runs it
    assert target.exists()
    target.unlink()
    batch = root / "cifar-10-batches-py" / "data_batch_2"
    batch.write_bytes(payload)
    with pytest.raises(data.DataError, match="data_batch_2.*refused global") as error:
        data.load_split("cifar10", "train", root)
    assert str(batch) in str(error.value)
    assert not target.exists()


@pytest.mark.parametrize(
    "content, message",
    [
        (pickle.dumps([1, 2, 3]), "is a dict"),
        (
            pickle.dumps({b"data": np.zeros((2, 3072), np.float32), b"labels": [0, 0]}),
            "expected b'data' uint8",
        ),
        (
            pickle.dumps({b"data": np.array([None, 1], object), b"labels": []}),
            "object dtype",
        ),
        (pickle.dumps({b"x": 1})[:-5], "not a readable"),
    ],
    ids=["not-a-dict", "float-data", "object-array", "truncated"],
)
def test_bad_cifar_batches_raise_errors_naming_the_file(tmp_path, content, message):
    path = tmp_path / "data_batch_1"
    path.write_bytes(content)
    with pytest.raises(data.DataError, match=message) as error:
        data.read_cifar_batch(path)
    assert str(path) in str(error.value)


# ----------------------------------------------------------------- CelebA
def celeba_image(inside, outside=50):
    """218x178 RGB: ``inside`` in the paper's crop region, ``outside`` around."""
    image = np.full((218, 178, 3), outside, np.uint8)
    image[45:173, 25:153] = inside
    return image


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


def test_celeba_crop_resize_takes_rows_45_173_and_cols_25_153():
    np.testing.assert_array_equal(
        data.celeba_crop_resize(celeba_image(200, outside=0)[None]),
        np.full((1, 64, 64, 3), 200, np.uint8),
    )
    ramp = np.broadcast_to(
        np.arange(178, dtype=np.uint8)[None, :, None], (218, 178, 3)
    ).copy()
    out = data.celeba_crop_resize(ramp[None])[0, :, :, 0].astype(float)
    # Columns 25..152 averaged in pairs: 25.5, 27.5, ..., 151.5 (rounded).
    np.testing.assert_allclose(out[0], np.arange(25.5, 153, 2), atol=0.51)
    assert (out == out[0]).all()  # rows are all alike
    # 2-pixel stripes: a plain bilinear 2x downsample keeps them (0 / 255), the
    # antialiased one (a 4-tap triangle) blends neighbours: 64 and 191.
    stripes = np.zeros((218, 178, 3), np.uint8)
    stripes[:, 25 + 2 :: 4] = 255
    stripes[:, 25 + 3 :: 4] = 255
    out = data.celeba_crop_resize(stripes[None])[0, 10, 1:-1, 0]
    np.testing.assert_array_equal(np.unique(out), [64, 191])


def test_celeba_folder_uses_the_official_partition_and_the_crop(celeba_dir):
    root, values = celeba_dir
    sizes = {}
    for split in ("train", "validation", "test"):
        dataset = data.load_split("celeb_a", split, root)
        assert dataset.element_spec == tf.TensorSpec((64, 64, 3), tf.float32)
        sizes[split] = data.num_examples(dataset)
        images = as_array(dataset) * 255
        if split == "validation":
            for image, value in zip(images, values[3:5]):
                assert abs(image.mean() - value) < 1.0  # no pixel from outside
                assert np.abs(image - value).max() < 6  # JPEG ringing at most
    assert sizes == {"train": 3, "validation": 2, "test": 1}


def test_celeba_jpegs_are_decoded_once_into_the_cache(celeba_dir, cache_dir):
    root, _ = celeba_dir
    first = as_array(data.load_split("celeba", "train", root, dtype="uint8"))
    assert len(list(cache_dir.glob("celeb_a-train-64-*.npy"))) == 1
    for path in (root / "img_align_celeba").glob("00000[123].jpg"):
        path.write_bytes(b"not read again")
    again = as_array(data.load_split("celeba", "train", root, dtype="uint8"))
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
    test = as_array(data.load_split("celeb_a", "test", kaggle, limit=1))
    assert test.shape == (1, 64, 64, 3)
    assert abs(test.mean() * 255 - values[5]) < 1.0


def test_celeba_partition_listing_a_missing_file(celeba_dir, caplog):
    root, _ = celeba_dir
    os.remove(root / "img_align_celeba" / "000002.jpg")
    with pytest.raises(data.DataError, match="000002.jpg"):
        data.load_split("celeb_a", "train", root)
    with caplog.at_level(logging.WARNING, logger="vae_balance.data"):
        dataset = data.load_split("celeb_a", "train", root, skip_bad=True)
    assert data.num_examples(dataset) == 2
    assert "1 train file(s) missing" in caplog.text


def test_celeba_bad_jpegs_name_the_file(celeba_dir, caplog, cache_dir):
    root, _ = celeba_dir
    folder = root / "img_align_celeba"
    Image.fromarray(np.zeros((100, 100, 3), np.uint8)).save(folder / "000001.jpg")
    content = (folder / "000003.jpg").read_bytes()
    (folder / "000003.jpg").write_bytes(content[: len(content) // 3])
    with pytest.raises(data.DataError, match=r"000001\.jpg.*\(100, 100, 3\)"):
        data.load_split("celeb_a", "train", root)
    os.remove(folder / "000001.jpg")
    Image.fromarray(celeba_image(9)).save(folder / "000001.jpg")
    with pytest.raises(data.DataError, match=r"000003\.jpg.*truncated"):
        data.load_split("celeb_a", "train", root)
    with caplog.at_level(logging.WARNING, logger="vae_balance.data"):
        dataset = data.load_split("celeb_a", "train", root, skip_bad=True)
    assert data.num_examples(dataset) == 2
    assert "Skipped 1 bad image" in caplog.text
    (cache,) = cache_dir.glob("celeb_a-train-64-*.npy")  # the 2 good ones
    assert np.load(cache).shape == (2, 64, 64, 3)
    assert not list(cache_dir.glob("*partial*"))


def test_celeba_malformed_partition_and_empty_split(celeba_dir):
    root, _ = celeba_dir
    partition = root / "list_eval_partition.txt"
    lines = partition.read_text().splitlines()
    partition.write_text("\n".join(lines[:5]) + "\n")  # no test image left
    with pytest.raises(data.DataError, match="'test' split of celeb_a is empty"):
        data.load_split("celeb_a", "test", root)
    partition.write_text("\n".join(lines[:2] + ["000003.jpg 7"]) + "\n")
    with pytest.raises(data.DataError, match="list_eval_partition.txt, line 3"):
        data.load_split("celeb_a", "train", root)


def test_celeba_images_without_partition_file_say_what_is_missing(celeba_dir):
    root, _ = celeba_dir
    os.remove(root / "list_eval_partition.txt")
    with pytest.raises(data.DatasetNotFoundError, match="list_eval_partition"):
        data.load_split("celeb_a", "train", root)


# ------------------------------------------------------ tensorflow-datasets
@pytest.fixture
def tfds_mock(monkeypatch):
    """tfds.testing.mock_data (offline: tfds 4.9.10's wheel ships no metadata,
    so the AUTO policy falls back to USE_CODE); the reachability probe is
    answered "yes" so the real code path runs to the mocked (no-op)
    download_and_prepare."""
    import tensorflow_datasets as tfds

    monkeypatch.setattr(data, "_network_reachable", lambda *args, **kwargs: True)
    with tfds.testing.mock_data(num_examples=5):
        yield tfds


def test_tfds_cifar10_is_read_through_the_builder(tfds_mock, tmp_path):
    dataset = data.load_split("cifar10", "train", tmp_path / "tfds", source="tfds")
    assert dataset.element_spec == tf.TensorSpec((32, 32, 3), tf.float32)
    images = as_array(dataset)
    expected = tfds_mock.load("cifar10", split="train", shuffle_files=False)
    expected = np.stack([e["image"] for e in expected.as_numpy_iterator()])
    np.testing.assert_allclose(images, expected / 255.0, atol=1e-7)
    limited = data.load_split("cifar10", "test", tmp_path, source="tfds", limit=2)
    assert data.num_examples(limited) == 2


def test_tfds_celeb_a_gets_the_same_crop_and_a_cache(tfds_mock, tmp_path, cache_dir):
    dataset = data.load_split("celeb_a", "validation", tmp_path, source="tfds")
    images = as_array(data.load_split("celeb_a", "validation", tmp_path, dtype="uint8"))
    raw = tfds_mock.load("celeb_a", split="validation", shuffle_files=False)
    raw = np.stack([e["image"] for e in raw.as_numpy_iterator()])
    assert raw.shape == (5, 218, 178, 3)
    np.testing.assert_array_equal(images, data.celeba_crop_resize(raw))
    assert dataset.element_spec.shape == (64, 64, 3)
    assert len(list(cache_dir.glob("celeb_a-tfds-validation-64-*.npy"))) == 1


def test_tfds_fashion_mnist_is_padded(tfds_mock, tmp_path):
    dataset = data.load_split("fashion_mnist", "test", tmp_path, source="tfds")
    images = as_array(dataset)
    assert images.shape == (5, 32, 32, 1)
    inner = data.remove_padding(images, "fashion_mnist")
    assert inner.shape == (5, 28, 28, 1) and inner.any()
    assert np.abs(images).sum() == np.abs(inner).sum()  # the border is zeros


def test_missing_tfds_dataset_fails_fast_offline(tmp_path, network_attempts):
    start = time.time()
    with pytest.raises(data.DatasetNotFoundError) as error:
        data.load_split("cifar10", "train", tmp_path)
    assert time.time() - start < 10
    message = str(error.value)
    assert "cifar-10-batches-py" in message and str(tmp_path) in message
    assert "not prepared" in message and "unreachable" in message
    assert f"tfds build cifar10 --data_dir {tmp_path}" in message
    assert network_attempts  # the probe ran (and was refused)
    network_attempts.clear()


def test_download_false_does_not_probe_the_network(tmp_path):
    with pytest.raises(data.DatasetNotFoundError, match="download=False"):
        data.load_split("mnist", "test", tmp_path, download=False)
    with pytest.raises(data.DatasetNotFoundError, match="Looked for") as error:
        data.load_split("celeb_a", "test", tmp_path, source="local")
    assert "img_align_celeba" in str(error.value)


def test_network_probe_returns_false_quickly(network_attempts):
    start = time.time()
    assert data._network_reachable("example.invalid", timeout=1.0) is False
    assert time.time() - start < 2
    network_attempts.clear()


# --------------------------------------------------- IDX: (Fashion-)MNIST
def idx_bytes(images):
    header = bytes([0, 0, 0x08, images.ndim])
    header += b"".join(int(d).to_bytes(4, "big") for d in images.shape)
    return header + images.tobytes()


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


def test_idx_files_are_padded_to_32x32(idx_dir):
    folder, train, test = idx_dir
    for split, expected in (("train", train), ("test", test)):
        dataset = data.load_split("mnist", split, folder)
        assert dataset.element_spec == tf.TensorSpec((32, 32, 1), tf.float32)
        images = as_array(dataset)
        np.testing.assert_allclose(
            data.remove_padding(images, "mnist")[..., 0], expected / 255.0, atol=1e-7
        )
        border = images.copy()
        border[:, 2:30, 2:30] = 0
        assert not border.any()


def test_truncated_idx_file_is_named(idx_dir):
    folder, _, _ = idx_dir
    path = folder / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(data.DataError, match="t10k-images-idx3-ubyte.*truncated"):
        data.load_split("fashion_mnist", "test", folder)


def test_load_dataset_batches_a_preset(idx_dir):
    folder, _, _ = idx_dir
    train, test = data.load_dataset(
        PRESETS["fashion_mnist"], folder, batch_size=2, seed=0, limit=5
    )
    train_shapes = [batch.shape for batch in train]
    assert train_shapes == [(2, 32, 32, 1)] * 2  # 5 images: the remainder dropped
    assert [batch.shape[0] for batch in test] == [2, 1]  # 3 test images, all kept
    assert train.element_spec.dtype == tf.float32


def test_real_fashion_mnist_is_found_without_data_dir():
    if not os.path.isdir(FASHION_DIR):
        pytest.skip("apt install dataset-fashion-mnist")
    train = data.load_split("fashion_mnist", "train")
    test = data.load_split(PRESETS["fashion_mnist"], "test", dtype="uint8")
    assert (data.num_examples(train), data.num_examples(test)) == (60000, 10000)
    assert train.element_spec == tf.TensorSpec((32, 32, 1), tf.float32)
    images = as_array(test)
    assert images.shape == (10000, 32, 32, 1)
    assert not images[:, :2].any() and not images[:, -2:].any()
    assert not images[:, :, :2].any() and not images[:, :, -2:].any()
    raw = data.read_idx(os.path.join(FASHION_DIR, "t10k-images-idx3-ubyte.gz"))
    np.testing.assert_array_equal(data.remove_padding(images, 2)[..., 0], raw)
    assert data.get_padding(PRESETS["fashion_mnist"]) == 2


# ------------------------------------------------------------ folders, arrays
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


def test_folder_splits_load_sorted_images(image_folder):
    root, images = image_folder
    train = data.load_split("folder", "train", root)
    np.testing.assert_allclose(as_array(train), images[:4] / 255.0, atol=1e-7)
    test = data.from_folder(root / "test", image_shape=(10, 10, 3), dtype="uint8")
    np.testing.assert_array_equal(as_array(test)[:, 1:9, 1:9], images[4:])
    with pytest.raises(data.DatasetNotFoundError, match="No 'validation' subfolder"):
        data.load_split("folder", "validation", root)


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
    with pytest.raises(data.DataError, match=r"sub/bad\.png"):
        data.load_split("folder", "train", root)
    with pytest.raises(data.DataError, match=r"sub/bad\.png"):
        data.from_folder(root / "train", image_shape=(8, 8, 3))
    with caplog.at_level(logging.WARNING, logger="vae_balance.data"):
        dataset = data.load_split("folder", "train", root, skip_bad=True)
    assert data.num_examples(dataset) == 4
    assert "Skipped 1 bad image" in caplog.text


def test_from_arrays_checks_dtype_range_and_nan():
    uint8 = np.arange(2 * 28 * 28, dtype=np.int64).reshape(2, 28, 28) % 256
    dataset = data.from_arrays(uint8.astype(np.uint8), image_shape=(32, 32, 1))
    images = as_array(dataset)
    assert images.shape == (2, 32, 32, 1) and images.dtype == np.float32
    np.testing.assert_allclose(images[:, 2:30, 2:30, 0], uint8 / 255.0, atol=1e-7)
    floats = np.random.default_rng(3).uniform(size=(5, 4, 4, 3))
    np.testing.assert_allclose(as_array(data.from_arrays(floats)), floats, atol=1e-7)
    floats[3, 0, 0, 0] = np.nan
    with pytest.raises(data.DataError, match=r"images\[3\] contains NaN"):
        data.from_arrays(floats)
    floats[3, 0, 0, 0] = 0.5
    floats[1, 1, 1, 1] = 255.0
    with pytest.raises(data.DataError, match=r"images\[1\].*outside \[0, 1\]"):
        data.from_arrays(floats)
    floats[1, 1, 1, 1] = 0.5
    with pytest.raises(data.DataError, match="dtype int64"):
        data.from_arrays(uint8)
    with pytest.raises(data.DataError, match="do not fit"):
        data.from_arrays(floats[:, :3], image_shape=(4, 4, 3))


# ------------------------------------------------------------------ pipelines
def test_make_train_dataset_is_seeded_reshuffled_and_full():
    images = data.from_arrays(np.arange(10, dtype=np.uint8).reshape(10, 1, 1, 1))

    def epochs(seed, count=2):
        dataset = data.make_train_dataset(images, batch_size=4, seed=seed)
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
    batch = next(iter(data.make_train_dataset(uint8, 4, 0, shuffle=False)))
    assert batch.dtype == tf.float32
    np.testing.assert_allclose(batch.numpy().ravel(), np.arange(4) / 255.0, atol=1e-7)
    with pytest.raises(data.DataError, match="fewer than one batch"):
        data.make_train_dataset(images, batch_size=11, seed=0)
    assert [b.shape[0] for b in data.make_eval_dataset(uint8, 4)] == [4, 4, 2]


def test_large_arrays_are_streamed_in_chunks(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "_IN_MEMORY_BYTES", 0)
    array = np.lib.format.open_memmap(
        tmp_path / "big.npy", mode="w+", dtype=np.uint8, shape=(2500, 2, 2, 1)
    )
    array[:] = (np.arange(2500) % 256).astype(np.uint8)[:, None, None, None]
    dataset = data._array_dataset(array)
    assert data.num_examples(dataset) == 2500
    np.testing.assert_array_equal(as_array(dataset), array)


def test_names_presets_and_padding():
    assert data.get_padding("fashion_mnist") == 2
    assert data.get_padding(PRESETS["fashion_mnist_full"]) == 2
    assert data.get_padding("cifar10") == 0
    assert data.get_padding("celeba") == 0
    images = np.ones((3, 32, 32, 1))
    assert data.remove_padding(images, "mnist").shape == (3, 28, 28, 1)
    assert data.remove_padding(images, 0) is images
    no_data = dataclasses.replace(PRESETS["cifar10"], dataset="none")
    with pytest.raises(ValueError, match="has dataset 'none'"):
        data.load_split(no_data, "train")
    with pytest.raises(ValueError, match="Unknown dataset 'imagenet'"):
        data.load_split("imagenet", "train")


def test_config_pad_must_match_the_loader_padding():
    for config in PRESETS.values():
        assert config.pad == data.get_padding(config)
    with pytest.raises(ValueError, match=r"pad=0.*pads its images by 2.*Set pad=2"):
        get_preset("fashion_mnist", pad=0)
    with pytest.raises(ValueError, match="Set pad=18"):
        get_preset("fashion_mnist", image_shape=(64, 64, 1))
    assert get_preset("fashion_mnist", image_shape=(64, 64, 1), pad=18).pad == 18
    # Folders: the native size is unknown in advance, pad is the user's.
    assert get_preset("tiny", pad=3).pad == 3
