"""Step checkpoints: what they hold, how they verify, how bad ones are set
aside, and how the logs are cut back to them."""

import csv
import json
import os

import keras
import numpy as np
import pytest

from vae_balance import files
from vae_balance.training import checkpointer, checkpoints
from vae_balance.training.checkpoints import CheckpointWarning
from vae_balance.workdir import Position, Workdir, WorkdirError, list_checkpoints


def _trained(make_vae, images, steps):
    vae = make_vae(run_eagerly=True)
    vae.fit(images[: 8 * steps], batch_size=8, epochs=1, verbose=0, shuffle=False)
    return vae


def _write(run, vae, position, reason="interval"):
    return checkpoints.write_checkpoint(run, "stage1", vae, position, 2, reason)


def _state(model):
    variables = model.weights + model.optimizer.variables
    return [v.numpy().copy() for v in variables] + [
        model.seed_generator.state.numpy().copy()
    ]


def test_names_order_by_position_and_parse_back():
    assert Position(3).name("stage1") == "stage1-epoch0003"
    assert Position(3, 120).name("stage2") == "stage2-epoch0003-step000120"
    assert Position(3, 120).global_step(500) == 1620
    assert sorted([Position(4), Position(3, 7), Position(3)]) == [
        Position(3),
        Position(3, 7),
        Position(4),
    ]


def test_a_step_checkpoint_holds_the_state_and_the_epoch_sums(
    tmp_path, make_vae, images
):
    run = Workdir(tmp_path)
    vae = _trained(make_vae, images, 1)  # one step: the epoch sums of step 1
    sums = {m.name: [float(v.numpy()) for v in m.variables] for m in vae.metrics}
    checkpoint = _write(run, vae, Position(0, 1))

    record = checkpoint.read_record()
    assert os.path.basename(checkpoint.path) == "stage1-epoch0000-step000001.keras"
    assert (record["epoch"], record["step"], record["global_step"]) == (0, 1, 1)
    assert record["steps_per_epoch"] == 2 and record["reason"] == "interval"
    assert record["metrics"] == sums and sums["loss"][1] == 1.0  # count 1
    assert len(record["sha256"]) == 64

    model, found = checkpoints.restore_newest(run, "stage1", 2)
    assert found == checkpoint
    for saved, loaded in zip(_state(vae), _state(model), strict=True):
        np.testing.assert_array_equal(saved, loaded)
    assert int(model.optimizer.iterations) == 1
    checkpoints.restore_metrics(model, found)
    assert float(model.metrics[0].result()) == float(vae.metrics[0].result())


def test_truncated_and_flipped_checkpoints_are_set_aside_for_the_previous(
    tmp_path, make_vae, images
):
    run = Workdir(tmp_path)
    vae = _trained(make_vae, images, 1)
    oldest = _write(run, vae, Position(0, 1))
    vae.fit(images[:8], batch_size=8, epochs=1, verbose=0)
    flipped = _write(run, vae, Position(1), "epoch")
    vae.fit(images[:8], batch_size=8, epochs=1, verbose=0)
    truncated = _write(run, vae, Position(1, 1))
    with open(truncated.path, "r+b") as f:  # a copy cut short
        f.truncate(os.path.getsize(truncated.path) // 2)
    data = bytearray(open(flipped.path, "rb").read())  # one bit rotted
    data[len(data) // 2] ^= 0x01
    open(flipped.path, "wb").write(bytes(data))

    with pytest.warns(CheckpointWarning) as caught:
        model, found = checkpoints.restore_newest(run, "stage1", 2)
    assert found == oldest and int(model.optimizer.iterations) == 1
    messages = [str(w.message) for w in caught]
    assert len(messages) == 2
    assert truncated.path in messages[0] and "fails its checksum" in messages[0]
    assert flipped.path in messages[1] and "fails its checksum" in messages[1]
    kept = sorted(os.listdir(run.checkpoint_dir))
    assert sum(".keras.corrupt-" in n for n in kept) == 2
    assert sum(".corrupt-" in n for n in kept) == 4  # models and records
    assert list_checkpoints(run.checkpoint_dir, "stage1") == [oldest]


def test_a_checkpoint_that_does_not_load_is_set_aside_and_none_left_stops(
    tmp_path, make_vae, images
):
    run = Workdir(tmp_path)
    checkpoint = _write(run, _trained(make_vae, images, 1), Position(0, 1))
    with open(checkpoint.path, "wb") as f:
        f.write(b"not a zip file")
    record = json.loads(open(checkpoint.record_path).read())
    record["sha256"] = checkpoints.sha256(checkpoint.path)  # checksum agrees
    open(checkpoint.record_path, "w").write(json.dumps(record))
    with pytest.warns(CheckpointWarning, match="Cannot load"):
        with pytest.raises(WorkdirError, match="No stage1 checkpoint .* verifies"):
            checkpoints.restore_newest(run, "stage1", 2)
    names = os.listdir(run.checkpoint_dir)
    assert len(names) == 2 and all(".corrupt-" in n for n in names)  # not deleted


def test_a_record_of_another_steps_per_epoch_is_not_resumed(tmp_path, make_vae, images):
    run = Workdir(tmp_path)
    _write(run, _trained(make_vae, images, 1), Position(0, 1))
    with pytest.warns(CheckpointWarning, match="another --limit or --batch-size"):
        with pytest.raises(WorkdirError):
            checkpoints.restore_newest(run, "stage1", 5)


def test_an_orphan_record_and_no_checkpoint_mean_a_fresh_start(tmp_path):
    run = Workdir(tmp_path)
    os.makedirs(run.checkpoint_dir)
    orphan = os.path.join(run.checkpoint_dir, "stage1-epoch0000-step000001.json")
    open(orphan, "w").write("{}")
    assert checkpoints.restore_newest(run, "stage1", 2) is None
    assert not os.path.exists(orphan)


def test_resume_cuts_the_logs_back_to_the_checkpoint(tmp_path, make_vae, images):
    run = Workdir(tmp_path)
    steps_csv, history_csv = run.steps_csv("stage1"), run.history_csv("stage1")
    with open(steps_csv, "w") as f:
        f.write("step,epoch,loss\n1,0,1.0\n2,0,2.0\n3,1,3.0\n")
    with open(history_csv, "w") as f:
        f.write("epoch,loss\n0,1.5\n")
    events = os.path.join(run.tensorboard_dir("stage1"), "train")
    os.makedirs(events)
    kept = os.path.join(events, "events.out.tfevents.1")
    open(kept, "wb").write(b"x" * 10)
    grids = run.tensorboard_dir("images")  # the image grids, both stages'
    os.makedirs(grids)
    grid_events = os.path.join(grids, "events.out.tfevents.a")
    open(grid_events, "wb").write(b"g" * 8)
    checkpoint = _write(run, _trained(make_vae, images, 1), Position(1, 1))

    with open(steps_csv, "a") as f:  # the killed run went on
        f.write("4,1,4.0\n5,1,5.0\n")
    with open(history_csv, "a") as f:
        f.write("1,2.5\n")
    open(kept, "ab").write(b"y" * 5)
    later = os.path.join(events, "events.out.tfevents.2")
    open(later, "wb").write(b"z")
    open(grid_events, "ab").write(b"h" * 4)  # a grid after the checkpoint
    # The resumed process' own grid writer, opened before the stage resumes.
    own = os.path.join(grids, "events.out.tfevents.b")
    open(own, "wb").write(b"o" * 3)

    checkpoints.restore_logs(run, "stage1", checkpoint, 2)
    with open(steps_csv) as f:
        assert [row["step"] for row in csv.DictReader(f)] == ["1", "2", "3"]
    with open(history_csv) as f:
        assert [row["epoch"] for row in csv.DictReader(f)] == ["0"]
    assert open(kept, "rb").read() == b"x" * 10
    assert not os.path.exists(later)
    assert open(grid_events, "rb").read() == b"g" * 8
    assert open(own, "rb").read() == b"o" * 3  # never cut or removed
    # A record of an earlier version, without the grids' lengths: they stay.
    record = json.loads(open(checkpoint.record_path).read())
    del record["logs"]["tensorboard_images"]
    open(checkpoint.record_path, "w").write(json.dumps(record))
    open(grid_events, "ab").write(b"h")
    checkpoints.restore_logs(run, "stage1", checkpoint, 2)
    assert open(grid_events, "rb").read() == b"g" * 8 + b"h"


def test_epoch_checkpoint_callback_writes_records_and_keeps_two(
    tmp_path, make_vae, images
):
    vae = make_vae(run_eagerly=True)
    callback = checkpointer.EpochCheckpoint(str(tmp_path), "stage1")
    vae.fit(images, batch_size=8, epochs=3, callbacks=[callback], verbose=0)
    names = sorted(os.listdir(tmp_path / "checkpoints"))
    assert names == [
        "stage1-epoch0002.json",
        "stage1-epoch0002.keras",
        "stage1-epoch0003.json",
        "stage1-epoch0003.keras",
    ]
    model, found = checkpoints.restore_newest(Workdir(tmp_path), "stage1", 2)
    assert found.position == Position(3) and int(model.optimizer.iterations) == 6
    assert isinstance(model, keras.Model)


def test_snapshots_are_kept_with_their_cpu_seconds(tmp_path, make_vae, images):
    vae = make_vae(run_eagerly=True)
    callback = checkpointer.Checkpointer(
        Workdir(tmp_path),
        "stage1",
        None,
        None,
        minutes=None,
        snapshot_every=2,
        cpu_seconds=100.0,
    )
    vae.fit(images, batch_size=8, epochs=5, callbacks=[callback], verbose=0)
    kept = sorted(os.listdir(tmp_path / "snapshots"))
    assert kept == [
        "stage1-epoch0002.json",
        "stage1-epoch0002.keras",
        "stage1-epoch0004.json",
        "stage1-epoch0004.keras",
    ]  # the checkpoints themselves are pruned to the newest two
    records = [
        json.load(open(tmp_path / "snapshots" / name))
        for name in kept
        if name.endswith(".json")
    ]
    cpu = [record["cpu_seconds"] for record in records]
    assert 100.0 < cpu[0] < cpu[1]
    assert records[1]["sha256"] == files.sha256(
        str(tmp_path / "snapshots" / "stage1-epoch0004.keras")
    )
