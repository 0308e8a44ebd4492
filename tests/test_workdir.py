"""The work directory: checkpoints, atomic writes, CSV truncation and the
stale temporaries of killed writers. Its lock is tested end to end in
test_reliability.py (a second CLI run on a busy work directory)."""

import os

import pytest

from vae_balance import workdir as workdir_module
from vae_balance.workdir import Workdir, WorkdirError


def test_stale_temporaries_never_count_as_checkpoints_and_are_removed(tmp_path):
    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir()
    for name in (
        "stage1-epoch0001.keras",
        "stage1-epoch0002.keras",
        "stage1-epoch0003.keras.tmp-123.keras",
        "stage2-epoch0001.keras",
    ):
        (checkpoints / name).write_bytes(b"x")
    (tmp_path / "config.json.tmp-77").write_text("{")
    (tmp_path / "latents.npz.tmp.npz").write_bytes(b"")
    found = workdir_module.list_checkpoints(str(checkpoints), "stage1")
    assert [(c.path, c.position.epoch) for c in found] == [
        (str(checkpoints / "stage1-epoch0001.keras"), 1),
        (str(checkpoints / "stage1-epoch0002.keras"), 2),
    ]
    removed = Workdir(tmp_path).remove_stale_temporaries()
    assert sorted(removed) == [
        "config.json.tmp-77",
        "latents.npz.tmp.npz",
        "stage1-epoch0003.keras.tmp-123.keras",
    ]
    assert sorted(os.listdir(checkpoints)) == [
        "stage1-epoch0001.keras",
        "stage1-epoch0002.keras",
        "stage2-epoch0001.keras",
    ]


def test_a_csv_row_cut_by_a_kill_is_dropped_on_resume(tmp_path):
    path = tmp_path / "steps_stage1.csv"
    path.write_text("step,epoch,loss\n1,0,0.5\n2,0,0.4\n3,1,0.3\n4,")
    workdir_module.truncate_csv(str(path), lambda row: int(row["epoch"]) < 1)
    assert path.read_text().splitlines() == ["step,epoch,loss", "1,0,0.5", "2,0,0.4"]
    path.write_text("step,epoch,loss\n1,0,0.5\n2,0,0.4\n3,")  # cut in epoch 0
    workdir_module.truncate_csv(str(path), lambda row: int(row["epoch"]) < 1)
    assert path.read_text().splitlines() == ["step,epoch,loss", "1,0,0.5", "2,0,0.4"]


def test_atomic_write_replaces_the_file_or_leaves_it_as_it_was(tmp_path):
    path = str(tmp_path / "a.txt")
    workdir_module.atomic_write(path, "old")
    workdir_module.atomic_write(path, b"new")
    with open(path) as f:
        assert f.read() == "new"

    def fail(tmp):
        with open(tmp, "w") as f:
            f.write("half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        workdir_module.atomic_write(path, write=fail, suffix=".txt")
    with open(path) as f:
        assert f.read() == "new"
    assert os.listdir(tmp_path) == ["a.txt"]  # no temporary left behind


def test_a_resume_in_another_precision_or_on_other_images_is_refused(tmp_path):
    import json

    from vae_balance import get_preset

    config = get_preset("tiny")
    workdir = Workdir(str(tmp_path))
    first = {"precision": "float32", "limit": 64}
    workdir.check_and_write_config(config, settings=first)
    written = json.loads((tmp_path / "config.json").read_text())
    assert (written["precision"], written["limit"], written["name"]) == (
        "float32",
        64,
        "tiny",
    )
    workdir.check_and_write_config(config, settings=dict(first))  # the same: fine
    before = (tmp_path / "config.json").read_bytes()
    for other, detail in (
        ({"precision": "mixed_bfloat16", "limit": 64},
         "precision: 'float32' -> 'mixed_bfloat16'"),
        ({"precision": "float32", "limit": None}, "limit: 64 -> None"),
    ):  # fmt: skip
        with pytest.raises(WorkdirError, match="different configuration") as error:
            workdir.check_and_write_config(config, settings=other)
        assert detail in str(error.value)
        assert "--allow-config-change" in str(error.value)
        assert (tmp_path / "config.json").read_bytes() == before  # kept
    workdir.check_and_write_config(
        config, allow_config_change=True, settings={"precision": "mixed_bfloat16"}
    )
    assert json.loads((tmp_path / "config.json").read_text())["precision"] == (
        "mixed_bfloat16"
    )


def test_a_config_json_without_the_run_settings_still_resumes(tmp_path):
    import json

    from vae_balance import get_preset

    config = get_preset("tiny")
    (tmp_path / "config.json").write_text(json.dumps(config.to_dict()))  # older
    workdir = Workdir(str(tmp_path))
    workdir.check_and_write_config(
        config, settings={"precision": "float32", "limit": None}
    )
    written = json.loads((tmp_path / "config.json").read_text())
    assert written["precision"] == "float32" and written["limit"] is None
    with pytest.raises(WorkdirError, match="latent_dim"):  # fields still checked
        workdir.check_and_write_config(
            get_preset("tiny", latent_dim=3), settings={"precision": "float32"}
        )


def test_a_balance_change_under_trained_checkpoints_is_refused_even_if_allowed(
    tmp_path,
):
    from vae_balance import get_preset

    workdir = Workdir(str(tmp_path))
    workdir.check_and_write_config(get_preset("tiny"))
    learned = get_preset("tiny", balance="learned")
    # No stage trained yet: an allowed change is written.
    workdir.check_and_write_config(learned, allow_config_change=True)
    workdir.check_and_write_config(get_preset("tiny"), allow_config_change=True)
    os.makedirs(workdir.checkpoint_dir, exist_ok=True)
    open(workdir.stage_path("stage1"), "wb").close()
    before = (tmp_path / "config.json").read_bytes()
    with pytest.raises(WorkdirError) as error:
        workdir.check_and_write_config(learned, allow_config_change=True)
    message = str(error.value)
    assert "holds stage1 trained with another balance" in message
    assert "balance: 'running' -> 'learned'" in message
    assert "even with --allow-config-change" in message
    assert "another --workdir" in message
    assert (tmp_path / "config.json").read_bytes() == before  # kept
    # Other allowed changes still go through.
    workdir.check_and_write_config(
        get_preset("tiny", running_rule="ema"), allow_config_change=True
    )
