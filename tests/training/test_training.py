"""The training job: outputs, reruns, recalibration.

Most tests read the session's tiny run (conftest.tiny_run) or a copy of it.
Kills and resumes (SIGTERM, SIGINT, SIGKILL at random steps, each resumed
run equal bit for bit to an uninterrupted one) are test_preemption.py's.
The work directory's own rules (checkpoints, atomic writes) are tested in
test_workdir.py, the callbacks in test_callbacks.py; a divergence, a locked
work directory and another preset's work directory through the CLI in
test_reliability.py."""

import json
import os

import keras
import numpy as np
import pytest
from resume_helpers import csv_rows

from vae_balance.config import get_preset
from vae_balance.training import job as training
from vae_balance.workdir import (
    Workdir,
    is_recalibrated,
    list_checkpoints,
)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _images(n, seed=0):
    return np.random.default_rng(seed).random((n, 8, 8, 1)).astype("float32")


@pytest.fixture
def finished_run(tiny_run):
    """The session's tiny run (conftest.tiny_run: epochs=2, epochs2=2 on 64
    images), read-only."""
    return tiny_run["config"], tiny_run["workdir"], tiny_run["result"]


def test_train_writes_every_output(finished_run):
    config, workdir, result = finished_run
    for name in (
        "config.json",
        "stage1.keras",
        "stage2.keras",
        "latents.npz",
        "curves.png",
        "history_stage1.csv",
        "history_stage2.csv",
        "steps_stage1.csv",
        "steps_stage2.csv",
        "sampler/saved_model.pb",
        "images/gen2-final.png",
        "images/reconstructions-final.png",
        "images/gen1-final.png",
    ):
        assert os.path.exists(os.path.join(workdir, name)), name
    with open(os.path.join(workdir, "config.json")) as f:
        written = json.load(f)
    # The run's settings outside the config, checked on resume.
    assert (written["name"], written["precision"], written["limit"]) == (
        "tiny",
        "float32",
        None,
    )
    assert result.sampler_path == os.path.join(workdir, "sampler")
    assert os.listdir(os.path.join(workdir, "tensorboard", "stage1"))


def test_step_history_reproduces_the_balancing_rule(finished_run):
    _, workdir, _ = finished_run
    rows = csv_rows(os.path.join(workdir, "steps_stage1.csv"))
    assert len(rows) == 2 * (64 // 8)
    m = 1.0
    for row in rows:
        # gamma logged at a step is sqrt of the m it started from.
        assert float(row["gamma"]) == pytest.approx(np.sqrt(m), rel=1e-4)
        m = min(m, 0.99 * m + 0.01 * float(row["mse"]))
        assert float(row["running_mse"]) == pytest.approx(m, rel=1e-4)


def test_a_finished_run_resumes_to_a_no_op(finished_run, copy_tiny_run):
    config, _, _ = finished_run
    workdir = copy_tiny_run()
    before = keras.saving.load_model(os.path.join(workdir, "stage1.keras"))
    result = training.train(
        config,
        workdir,
        train_data=_images(64),
        test_images=_images(16, 1),
        verbose=0,
    )
    after = keras.saving.load_model(os.path.join(workdir, "stage1.keras"))
    assert result.stage1_logs == {} and result.stage2_logs == {}
    assert float(after.running_mse) == float(before.running_mse)
    assert int(after.optimizer.iterations) == 2 * 8


def test_more_stage1_epochs_retrain_stage2_on_the_new_codes(tiny_run, copy_tiny_run):
    # The session's finished run (2 + 2 epochs), given a third stage-1 epoch.
    workdir, x = copy_tiny_run(), tiny_run["train_images"]
    old_latents = np.load(os.path.join(workdir, "latents.npz"))["z_mean"]
    old_stage2 = keras.saving.load_model(os.path.join(workdir, "stage2.keras"))
    training.train(
        get_preset(tiny_run["config"], epochs=3),
        workdir,
        train_data=x,
        test_images=tiny_run["test_images"],
        verbose=0,
    )
    new_latents = np.load(os.path.join(workdir, "latents.npz"))["z_mean"]
    assert not np.allclose(old_latents, new_latents)
    stage1 = keras.saving.load_model(os.path.join(workdir, "stage1.keras"))
    assert int(stage1.optimizer.iterations) == 3 * 64 // 8
    # stage 2 was trained again from scratch on the new codes: new weights,
    # its two epochs' steps logged once (not appended to the old ones).
    rows = csv_rows(os.path.join(workdir, "steps_stage2.csv"))
    assert [int(r["step"]) for r in rows] == list(range(1, 2 * 64 // 8 + 1))
    stage2 = keras.saving.load_model(os.path.join(workdir, "stage2.keras"))
    assert int(stage2.optimizer.iterations) == 2 * 64 // 8
    changed = [
        not np.allclose(old, new)
        for old, new in zip(old_stage2.trainable_weights, stage2.trainable_weights)
    ]
    assert any(changed)  # a kept stage 2 would be identical


def test_the_job_records_its_batchnorm_recalibration(finished_run):
    config, workdir, _ = finished_run
    with open(os.path.join(workdir, "batchnorm.json")) as f:
        record = json.load(f)["stage1"]
    assert record["images"] == 64 and record["batches"] == 8  # one pass, batch 8
    assert is_recalibrated(workdir, os.path.join(workdir, "stage1.keras"))
    checkpoint = _latest_checkpoint(workdir, "stage1")[0]
    assert not is_recalibrated(workdir, checkpoint)


def test_a_resumed_run_recalibrates_only_a_stage_1_that_was_not(
    tiny_run, copy_tiny_run
):
    workdir, config = copy_tiny_run(), tiny_run["config"]
    x, test_images = tiny_run["train_images"], tiny_run["test_images"]
    stage1 = os.path.join(workdir, "stage1.keras")
    calibrated = open(stage1, "rb").read()
    # A rerun leaves the recalibrated stage 1 and stage 2 as they are.
    stage2_time = os.path.getmtime(os.path.join(workdir, "stage2.keras"))
    training.train(config, workdir, train_data=x, test_images=test_images, verbose=0)
    assert open(stage1, "rb").read() == calibrated
    assert os.path.getmtime(os.path.join(workdir, "stage2.keras")) == stage2_time
    # A run of an older version (no record): recalibrated, stage 2 retrained.
    os.remove(os.path.join(workdir, "batchnorm.json"))
    training.train(config, workdir, train_data=x, test_images=test_images, verbose=0)
    assert is_recalibrated(workdir, stage1)
    assert os.path.getmtime(os.path.join(workdir, "stage2.keras")) > stage2_time


def test_export_recalibrates_a_checkpoint_or_says_what_it_needs(
    copy_tiny_run, tmp_path, capsys
):
    from PIL import Image

    from vae_balance.cli import main as cli

    stale = copy_tiny_run("stale", ignore=["sampler"])
    os.remove(os.path.join(stale, "batchnorm.json"))  # as before this version
    with pytest.raises(SystemExit, match="--data-dir, or --no-recalibrate-bn"):
        cli.main(["export", stale])
    data_dir = tmp_path / "data"
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        os.makedirs(data_dir / split)
        for i in range(16):
            pixels = rng.integers(0, 256, (8, 8), dtype=np.uint8)
            Image.fromarray(pixels).save(data_dir / split / f"{i:03d}.png")
    assert cli.main(["export", stale, "--data-dir", str(data_dir)]) == 0
    out = capsys.readouterr().out
    assert "BatchNorm statistics recomputed from 16 training images" in out
    assert os.path.exists(os.path.join(stale, "sampler", "saved_model.pb"))
    assert (
        cli.main(
            ["export", stale, "--out", str(tmp_path / "s2"), "--no-recalibrate-bn"]
        )
        == 0
    )


def _latest_checkpoint(workdir, stage):
    """``(path, epochs_done)`` of a stage's newest checkpoint, or None."""
    found = list_checkpoints(Workdir(workdir).checkpoint_dir, stage)
    return (found[-1].path, found[-1].position.epoch) if found else None
