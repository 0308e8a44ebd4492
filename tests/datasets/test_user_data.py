"""Your own images (`vae_balance.datasets.user_data` and the modules it reads
with: `data_source`, `image_folder`, `array_sources`, `image_shapes`):
sources, sizes, splits, the recorded data block, and a named error for each
kind of bad input."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from vae_balance.config import PRESETS, VAEConfig
from vae_balance.datasets import (
    array_sources,
    data_source,
    image_folder,
    image_shapes,
    user_data,
)
from vae_balance.datasets.formats import read_idx
from vae_balance.datasets.pipeline import remove_padding
from vae_balance.datasets.registry import DataError, DatasetNotFoundError
from vae_balance.training import user_run

FASHION = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz"


@pytest.fixture(scope="module")
def fashion():
    """The first 40 Fashion-MNIST test images, uint8 (40, 28, 28)."""
    return read_idx(FASHION)[:40]


def _write(folder, images, ext="png", size=None, mode=None):
    os.makedirs(folder, exist_ok=True)
    for index, pixels in enumerate(images):
        image = Image.fromarray(pixels)
        if size is not None:
            image = image.resize((size[1], size[0]), Image.BILINEAR)
        if mode is not None:
            image = image.convert(mode)
        image.save(os.path.join(folder, f"{index:03d}.{ext}"))
    return str(folder)


def _quiet(*_):
    pass


# ------------------------------------------------------------- sources
def test_parse_source_names_a_folder_an_array_file_or_a_tfds_dataset(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((2, 4, 4), np.uint8))
    assert data_source.parse_source(str(tmp_path)).kind == "folder"
    assert data_source.parse_source(str(tmp_path / "x.npy")).kind == "array"
    tfds_mnist = data_source.DataSource("tfds", "mnist")
    assert data_source.parse_source("tfds:mnist") == tfds_mnist
    with pytest.raises(DatasetNotFoundError, match="no such folder or file"):
        data_source.parse_source(str(tmp_path / "missing"))
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DataError, match="not .npz or .npy"):
        data_source.parse_source(str(tmp_path / "notes.txt"))
    with pytest.raises(DataError, match="needs a dataset name"):
        data_source.parse_source("tfds:")


def test_a_png_folder_keeps_its_native_size_and_holds_out_a_tenth(fashion, tmp_path):
    folder = _write(tmp_path / "png", fashion, size=(40, 48))
    data = user_data.read_source(folder, batch_size=8, log=_quiet)
    assert data.train.shape == (36, 40, 48, 1) and data.held_out.shape == (4, 40, 48, 1)
    assert data.block["native_shape"] == [40, 48, 1]
    assert (data.block["num_train"], data.block["num_held_out"]) == (36, 4)
    assert data.block["split"] == "held-out" and data.block["val_fraction"] == 0.1
    # The same pixels as the files, in sorted order, split by a fixed seed.
    again = user_data.read_source(folder, batch_size=8, log=_quiet)
    np.testing.assert_array_equal(again.held_out, data.held_out)
    assert again.block == data.block
    with Image.open(os.path.join(folder, "000.png")) as first:
        pixels = np.asarray(first)
    everything = np.concatenate([data.train, data.held_out])
    assert any(np.array_equal(image[..., 0], pixels) for image in everything)


def test_a_jpeg_folder_resized_and_centre_cropped(fashion, tmp_path):
    folder = _write(tmp_path / "jpg", fashion, ext="jpg", size=(32, 32))
    data = user_data.read_source(
        folder, image_size="16x8", center_crop=True, batch_size=4, log=_quiet
    )
    assert data.image_shape == (16, 8, 1)
    assert data.block["native_shape"] == [32, 32, 1]
    assert data.block["image_size"] == [16, 8] and data.block["center_crop"]


def test_train_and_test_subfolders_are_the_two_splits(fashion, tmp_path):
    _write(tmp_path / "d" / "train", fashion[:30])
    _write(tmp_path / "d" / "test", fashion[30:])
    data = user_data.read_source(str(tmp_path / "d"), batch_size=8, log=_quiet)
    assert data.block["split"] == "test"
    assert (len(data.train), len(data.held_out)) == (30, 10)
    np.testing.assert_array_equal(data.held_out[..., 0], fashion[30:])


def test_npz_uses_the_key_x_or_its_only_array_and_lists_the_keys_otherwise(
    fashion, tmp_path
):
    np.savez(tmp_path / "x.npz", x=fashion, labels=np.arange(40))
    np.savez(tmp_path / "only.npz", images=fashion.astype("float32") / 255)
    np.savez(tmp_path / "two.npz", a=fashion, b=fashion)
    data = user_data.read_source(str(tmp_path / "x.npz"), batch_size=8, log=_quiet)
    assert data.block["key"] == "x" and data.train.dtype == np.uint8
    data = user_data.read_source(str(tmp_path / "only.npz"), batch_size=8)
    assert data.block["key"] == "images" and data.train.dtype == np.float32
    assert data.image_shape == (28, 28, 1)
    with pytest.raises(
        DataError, match=r"no array named 'x' among its keys \['a', 'b'\]"
    ):
        user_data.read_source(str(tmp_path / "two.npz"), batch_size=8)
    np.save(tmp_path / "bad.npy", fashion.astype("float32"))  # 0-255 floats
    with pytest.raises(DataError, match="floats must be in"):
        user_data.read_source(str(tmp_path / "bad.npy"), batch_size=8)


def test_tfds_sources_use_their_test_split_or_hold_out_one(monkeypatch, fashion):
    # A stub of the loader: tfds.load hangs offline.
    splits = {"train": fashion[:30], "test": fashion[30:]}
    monkeypatch.setattr(array_sources, "tfds_splits", lambda name: list(splits))
    monkeypatch.setattr(array_sources, "tfds_images", lambda name, split: splits[split])
    data = user_data.read_source("tfds:fashion_mnist", batch_size=8, log=_quiet)
    assert data.block["kind"] == "tfds" and data.block["path"] == "fashion_mnist"
    assert data.block["split"] == "test" and len(data.held_out) == 10
    del splits["test"]
    data = user_data.read_source("tfds:fashion_mnist", batch_size=8, log=_quiet)
    assert data.block["split"] == "held-out" and len(data.held_out) == 3


# ------------------------------------------------------ network and pads
def test_the_network_shape_and_the_uneven_padding_of_any_size():
    assert image_shapes.network_shape((40, 48, 1), "resnet") == (64, 64, 1)
    assert image_shapes.network_shape((100, 80, 3), "resnet") == (128, 128, 3)
    assert image_shapes.network_shape((100, 80, 3), "infogan") == (100, 80, 3)
    assert image_shapes.network_shape((27, 30, 1), "infogan") == (28, 32, 1)
    assert image_shapes.centre_pad((40, 48), (64, 64)) == (12, 12, 8, 8)
    assert image_shapes.centre_pad((27, 30), (28, 32)) == (0, 1, 1, 1)
    images = np.arange(2 * 27 * 30).reshape(2, 27, 30, 1)
    padded = image_shapes.pad_images(images, (0, 1, 1, 1))
    assert padded.shape == (2, 28, 32, 1)
    np.testing.assert_array_equal(remove_padding(padded, (0, 1, 1, 1)), images)


def test_a_config_made_from_100x80_images_round_trips_through_config_json(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (30, 100, 80, 3), np.uint8)
    data = user_data.read_source(images, batch_size=8, log=_quiet)
    config = user_run.config_for_data(data, "tiny", name="faces")
    assert config.image_shape == (128, 128, 3)
    assert config.pad == (14, 14, 24, 24)
    text = json.dumps(config.to_dict())
    again = VAEConfig.from_dict(json.loads(text))
    assert again == config and again.data["num_held_out"] == 3
    assert json.loads(text)["pad"] == [14, 14, 24, 24]
    infogan = user_run.config_for_data(data, "tiny", network="infogan")
    assert infogan.image_shape == (100, 80, 3) and infogan.pad == 0


def test_an_older_config_json_with_an_int_pad_still_loads():
    old = PRESETS["fashion_mnist"].to_dict()
    del old["data"]
    config = VAEConfig.from_dict(old)
    assert config.pad == 2 and config.data is None
    assert VAEConfig.from_dict({**old, "pad": [2, 2, 2, 2]}).pad == 2


def test_parameter_counts_of_a_tiny_network_on_40x48_images(fashion, tmp_path):
    data = user_data.read_source(
        _write(tmp_path / "f", fashion, size=(40, 48)), batch_size=8, log=_quiet
    )
    config = user_run.config_for_data(data, "tiny")
    lines = user_run.describe(config, data)
    assert "36 training and 4 held-out images" in lines[0]
    assert "resnet at 64x64x1" in lines[1] and "12, 12, 8, 8" in lines[1]
    counts = user_run.parameter_counts(config)
    stage1 = counts["encoder"] + counts["decoder"]
    assert f"stage 1 {stage1:,}" in lines[2] and stage1 > 0


# ------------------------------------------------------------ bad input
def test_mixed_sizes_name_two_files_and_their_sizes(fashion, tmp_path):
    folder = _write(tmp_path / "m", fashion[:20], size=(28, 28))
    Image.fromarray(fashion[0]).resize((30, 20)).save(os.path.join(folder, "zz.png"))
    with pytest.raises(DataError) as error:
        user_data.read_source(folder, batch_size=4, log=_quiet)
    message = str(error.value)
    assert "000.png is 28x28" in message and "zz.png is 20x30" in message
    assert "--image-size" in message
    data = user_data.read_source(folder, image_size=28, batch_size=4, log=_quiet)
    assert data.image_shape == (28, 28, 1) and data.block["native_shape"] == "mixed"


def test_grey_and_colour_images_become_rgb_and_the_count_is_said(fashion, tmp_path):
    folder = _write(tmp_path / "g", fashion[:12])
    _write(tmp_path / "g" / "colour", fashion[:8], mode="RGB")
    said = []
    data = user_data.read_source(folder, batch_size=4, log=said.append)
    assert data.image_shape == (28, 28, 3)
    assert "converted 12 grey image(s) to RGB" in " ".join(said)


def test_too_few_images_say_how_many_are_needed(fashion, tmp_path):
    folder = _write(tmp_path / "few", fashion[:10])
    with pytest.raises(DataError, match="10 images are too few .* 11 are needed"):
        user_data.read_source(folder, batch_size=10, log=_quiet)
    assert len(user_data.read_source(folder, batch_size=9, log=_quiet).train) == 9


def test_an_empty_or_unreadable_folder_is_a_named_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="No images .* under .*empty"):
        user_data.read_source(str(tmp_path / "empty"), batch_size=1)
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "a.png").write_bytes(b"not a png")
    with pytest.raises(image_folder.BadImageError, match="a.png: unreadable"):
        user_data.read_source(str(tmp_path / "junk"), batch_size=1)
    with pytest.raises(DataError, match="No readable image among the 1 files"):
        user_data.read_source(str(tmp_path / "junk"), batch_size=1, skip_bad=True)


def test_non_image_files_are_ignored_and_counted(fashion, tmp_path):
    folder = _write(tmp_path / "n", fashion[:20])
    for name in ("labels.csv", "README"):
        (tmp_path / "n" / name).write_text("x")
    said = []
    data = user_data.read_source(folder, batch_size=4, log=said.append)
    assert data.block["num_files"] == 20
    assert f"[data] ignored 2 non-image file(s) under {folder}" in said


def test_a_truncated_image_is_named_or_skipped_with_skip_bad(fashion, tmp_path):
    folder = _write(tmp_path / "t", fashion[:20])
    path = os.path.join(folder, "005.png")
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)
    with pytest.raises(
        image_folder.BadImageError, match="005.png: unreadable or truncated"
    ):
        user_data.read_source(folder, batch_size=4, log=_quiet)
    said = []
    data = user_data.read_source(folder, batch_size=4, skip_bad=True, log=said.append)
    assert len(data.train) + len(data.held_out) == 19
    assert "skipped 1 bad image file(s)" in " ".join(said)


def test_an_image_over_the_decompression_bomb_limit_is_refused_undecoded(
    fashion, tmp_path, monkeypatch
):
    folder = _write(tmp_path / "b", fashion[:20])
    Image.fromarray(np.zeros((40, 40), np.uint8)).save(os.path.join(folder, "big.png"))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 28x28 < 1000 < 40x40

    with pytest.raises(image_folder.BadImageError) as error:
        user_data.read_source(folder, batch_size=4, log=_quiet)
    message = str(error.value)
    assert "big.png: " in message and "decompression-bomb limit" in message
    assert "refused without decoding it" in message
    data = user_data.read_source(folder, batch_size=4, skip_bad=True, log=_quiet)
    assert len(data.train) + len(data.held_out) == 20


def test_a_changed_folder_is_refused_naming_what_changed(fashion, tmp_path):
    folder = _write(tmp_path / "c", fashion[:20])
    before = user_data.read_source(folder, batch_size=4, log=_quiet).block
    _write(tmp_path / "c" / "more", fashion[20:22])
    after = user_data.read_source(folder, batch_size=4, log=_quiet).block
    with pytest.raises(DataError) as error:
        user_data.check_unchanged(before, after, "runs/c")
    message = str(error.value)
    assert "num_files 20 -> 22" in message and "files_sha256" in message
    assert "--allow-config-change" in message
