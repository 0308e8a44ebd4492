"""Your own images through the whole job, on real Fashion-MNIST pixels.

A folder of 40x48 PNGs (resized from the 28x28 originals) goes through
``train --data FOLDER`` twice: uninterrupted, and stopped by SIGTERM in
stage 1 and in stage 2 then resumed; the two end bit for bit alike. Its
export, copied elsewhere, generates 40x48 images in a fresh process, and
``evaluate`` scores the held-out split (the commands after the runs, export,
sample and a refused resume, run in this process: the same ``cli.main``).
An ``.npz`` of 28x28 images (padded to 32x32 for the ResNet, cropped back on
export) and a JPEG folder at 32x32 through ``vae_balance.train`` in Python do
the same in a few lines.
"""

import csv
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from cli_helpers import cli_in_process
from PIL import Image
from resume_helpers import ENV, model_state, run_cli

import vae_balance
from vae_balance.datasets.formats import read_idx
from vae_balance.export.metadata import read_sampler_metadata

FASHION = "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"
COUNT = 72  # 7 held out, 65 for training: 8 steps of 8 (the tiny preset)
STEPS = 8


def _fashion(count=COUNT):
    return read_idx(FASHION)[:count]


def _write_folder(folder, images, size, ext):
    os.makedirs(folder)
    for index, pixels in enumerate(images):
        image = Image.fromarray(pixels).resize((size[1], size[0]), Image.BILINEAR)
        image.save(os.path.join(folder, f"{index:03d}.{ext}"))
    return folder


def _generate_in_a_fresh_process(sampler, tmp_path):
    code = (
        "import sys, numpy as np, tensorflow as tf; "
        "m = tf.saved_model.load(sys.argv[1]); "
        "x = m.signatures['generate'](num_samples=tf.constant(4, tf.int64), "
        "seed=tf.constant(0, tf.int64))['images'].numpy(); "
        "np.save(sys.argv[2], x)"
    )
    out = str(tmp_path / "generated.npy")
    subprocess.run(
        [sys.executable, "-c", code, sampler, out], env=ENV, check=True, timeout=600
    )
    return np.load(out)


@pytest.fixture(scope="module")
def folder_runs(tmp_path_factory):
    """A 40x48 PNG folder trained uninterrupted, and with a SIGTERM in stage 1."""
    tmp_path = tmp_path_factory.mktemp("user_data")
    folder = _write_folder(str(tmp_path / "faces"), _fashion(), (40, 48), "png")

    def train(workdir):
        return [
            *("train", "--preset", "tiny", "--data", folder),
            *("--workdir", str(tmp_path / workdir), "--grid-every", "100"),
            *("--checkpoint-steps", "3"),
        ]

    reference = run_cli(tmp_path, train("reference"))
    assert reference[0] == 0, reference[1][-3000:]
    # One stop, in stage 1: the resumed run reads the folder again (the
    # held-out split, the data check) and goes on through stage 2; stops in
    # stage 2 are the preset runs' (tests/training/test_preemption.py).
    plan = {"where": "stage1", "step": 5, "signals": ["SIGTERM"]}
    stops = [run_cli(tmp_path, train("killed"), plan)]
    final = run_cli(tmp_path, train("killed"))
    assert final[0] == 0, final[1][-3000:]
    return {
        "tmp_path": tmp_path,
        "folder": folder,
        "reference": str(tmp_path / "reference"),
        "killed": str(tmp_path / "killed"),
        "output": reference[1],
        "stops": stops,
        "train": train,
    }


@pytest.mark.slow
def test_train_data_folder_prints_the_data_the_network_and_its_parameters(
    folder_runs,
):
    output = folder_runs["output"]
    assert "65 training and 7 held-out images (val_fraction 0.1), 40x48x1" in output
    assert "resnet at 64x64x1 (zero padding top, bottom, left, right: 12, 12, 8, 8" in (
        output
    )
    assert "[model] parameters: stage 1 " in output
    with open(os.path.join(folder_runs["reference"], "config.json")) as f:
        config = json.load(f)
    assert config["pad"] == [12, 12, 8, 8] and config["image_shape"] == [64, 64, 1]
    data = config["data"]
    assert data["kind"] == "folder" and data["path"] == folder_runs["folder"]
    assert (data["num_train"], data["num_held_out"]) == (65, 7)
    assert data["native_shape"] == [40, 48, 1] and len(data["files_sha256"]) == 64


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["stage1", "stage2"])
def test_a_folder_run_stopped_by_sigterm_resumes_bit_for_bit(folder_runs, stage):
    for code, output in folder_runs["stops"]:
        assert code == 128 + 15, output[-3000:]
        assert "--data" in output.split("to resume, run the same command:")[1]
    reference, killed = folder_runs["reference"], folder_runs["killed"]
    for a, b in zip(
        model_state(os.path.join(reference, f"{stage}.keras")),
        model_state(os.path.join(killed, f"{stage}.keras")),
        strict=True,
    ):
        np.testing.assert_array_equal(a, b)
    for name in (f"steps_{stage}.csv", f"history_{stage}.csv"):
        with open(os.path.join(reference, name), "rb") as f:
            expected = f.read()
        with open(os.path.join(killed, name), "rb") as f:
            assert f.read() == expected, name
    with open(os.path.join(killed, f"steps_{stage}.csv"), newline="") as f:
        assert len(list(csv.DictReader(f))) == 2 * STEPS


@pytest.mark.slow
def test_a_changed_folder_is_refused_on_resume(folder_runs):
    extra = os.path.join(folder_runs["folder"], "zz-new.png")
    Image.fromarray(np.zeros((40, 48), np.uint8)).save(extra)
    try:
        code, _ = cli_in_process(*folder_runs["train"]("reference"))
    finally:
        os.remove(extra)
    assert isinstance(code, str) and code.startswith("error: ")  # exit status 1
    assert "changed since the run started" in code
    assert f"num_files {COUNT} -> {COUNT + 1}" in code


@pytest.mark.slow
def test_the_export_of_a_folder_run_generates_40x48_images_from_a_copy(
    folder_runs,
):
    tmp_path = folder_runs["tmp_path"]
    exported = str(tmp_path / "exported")
    code, output = cli_in_process("export", folder_runs["killed"], "--out", exported)
    assert code == 0, output[-3000:]
    copied = str(tmp_path / "elsewhere" / "sampler")
    shutil.copytree(exported, copied)
    metadata = read_sampler_metadata(copied)
    assert metadata["image_shape"] == [40, 48, 1] and metadata["pad"] == [12, 12, 8, 8]
    assert metadata["data"]["kind"] == "folder"
    assert metadata["data"]["native_shape"] == [40, 48, 1]
    images = _generate_in_a_fresh_process(copied, tmp_path)
    assert images.shape == (4, 40, 48, 1)
    assert 0 <= images.min() and images.max() <= 1 and images.std() > 0
    code, output = cli_in_process(
        "sample", copied, "--num", "4", "--out", tmp_path / "s.png"
    )
    assert code == 0 and "Wrote 4 samples (40x48x1)" in output, output[-2000:]


@pytest.mark.slow
def test_evaluate_scores_the_held_out_split_of_a_folder_run(folder_runs):
    from vae_balance.evaluation import protocol

    def features(images):  # a stand-in for Inception: per-image statistics
        x = np.asarray(images, "float32").reshape(len(images), -1)
        return np.stack([x.mean(1), x.std(1), x.max(1), (x > 0.5).mean(1)], 1)

    results = protocol.evaluate_workdir(
        folder_runs["killed"],
        feature_extractor=features,
        num_images=6,
        nll_images=2,
        nll_samples=2,
        interpolation_pairs=0,
        gmm_components=1,
        verbose=0,
    )
    assert results["num_images"] == 6
    assert results["fid_image_shape"] == [40, 48, 1]
    assert all(np.isfinite(v) for v in results["fid"].values() if v is not None)


@pytest.mark.slow
def test_an_npz_of_28x28_images_trains_and_exports_28x28(tmp_path):
    path = str(tmp_path / "fashion.npz")
    np.savez(path, x=_fashion())
    workdir = str(tmp_path / "npz")
    # In this process (the folder runs above are the subprocess ones), one
    # epoch per stage: the shapes do not depend on the training.
    code, output = cli_in_process(
        *("train", "--preset", "tiny", "--data", path, "--workdir", workdir),
        *("--epochs", "1", "--epochs2", "1", "--grid-every", "100"),
    )
    assert code == 0, output[-3000:]
    assert "resnet at 32x32x1 (zero padding top, bottom, left, right: 2, 2, 2, 2" in (
        output
    )
    copied = str(tmp_path / "copy")
    shutil.copytree(os.path.join(workdir, "sampler"), copied)
    assert _generate_in_a_fresh_process(copied, tmp_path).shape == (4, 28, 28, 1)


@pytest.mark.slow
def test_python_train_on_a_jpeg_folder_in_a_few_lines(tmp_path):
    folder = _write_folder(str(tmp_path / "jpg"), _fashion(), (32, 32), "jpg")
    result = vae_balance.train(
        folder,
        str(tmp_path / "run"),
        preset="tiny",
        network="infogan",
        epochs=1,
        epochs2=1,
        grid_every=100,
    )
    metadata = read_sampler_metadata(result.sampler_path)
    assert metadata["image_shape"] == [32, 32, 1] and metadata["pad"] == 0
    assert metadata["config"]["network"] == "infogan"
    assert metadata["data"]["path"] == folder
    with open(os.path.join(result.workdir, "history_stage1.csv"), newline="") as f:
        assert len(list(csv.DictReader(f))) == 1
