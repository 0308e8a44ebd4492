"""Reliability: kills, divergence, bad data, bad usage, fuzzing, unsafe files,
full disks. Every case must end in a clear message with nothing lost.

The kill tests run the real CLI in a child process that wraps one library call
(``keras.Model.save``, ``os.rename``, ``ExportArchive.write_out``) to SIGKILL
itself at a chosen point: test code only, no hook in the library. The child
that is killed during a checkpoint write first waits, holding the work
directory, until this process has tried a second run on it.

The stale temporaries and cut CSV rows are tested in test_workdir.py, a full
disk during a checkpoint save in test_callbacks.py, the refusal of bad flag
values in tests/cli/test_main.py.
"""

import errno
import gzip
import io
import json
import logging
import math
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time

import keras
import numpy as np
import pytest
import tensorflow as tf
from cli_helpers import cli_in_process
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from vae_balance.cli import main as cli
from vae_balance.config import PRESETS, get_preset
from vae_balance.datasets import formats, pipeline, registry
from vae_balance.export import savedmodel
from vae_balance.model import distribute
from vae_balance.model.balancing import BALANCES
from vae_balance.model.vae import BalancedVAE
from vae_balance.training import job as training
from vae_balance.workdir import (
    SaveError,
    Workdir,
    WorkdirError,
    list_checkpoints,
    load_checkpoint,
)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1")
FUZZ = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,  # the same examples on every run and in CI
    suppress_health_check=[HealthCheck.function_scoped_fixture],
    database=None,
)


def _write_png_folder(root, num_train=32, num_test=8, seed=0):
    """The tiny preset's data: train/ and test/ of 8x8 grayscale PNGs."""
    rng = np.random.default_rng(seed)
    for split, count in (("train", num_train), ("test", num_test)):
        os.makedirs(os.path.join(root, split))
        for i in range(count):
            pixels = rng.integers(0, 256, (8, 8), dtype=np.uint8)
            Image.fromarray(pixels).save(os.path.join(root, split, f"{i:03d}.png"))
    return root


def _temporaries(workdir):
    found = []
    for folder, subfolders, names in os.walk(workdir):
        found += [n for n in names + subfolders if ".tmp" in n or ".export-" in n]
    return found


# ------------------------------------------------- kills, locks, divergence
CHILD = textwrap.dedent(
    """
    import os, signal, sys, time
    import keras

    mode, signals, argv = sys.argv[1], sys.argv[2], sys.argv[3:]

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    if mode == "checkpoint-write":
        # Call 1 writes stage1-epoch0001.keras; then hold the work directory
        # until the parent has tried a second run. Call 2 (epoch 2) dies
        # halfway through writing its temporary file.
        original, calls = keras.Model.save, []

        def save(self, filepath, *args, **kwargs):
            calls.append(filepath)
            original(self, filepath, *args, **kwargs)
            if len(calls) == 1:
                open(os.path.join(signals, "ready"), "w").close()
                while not os.path.exists(os.path.join(signals, "go")):
                    time.sleep(0.05)
            elif len(calls) == 2:
                with open(filepath, "r+b") as f:
                    f.truncate(os.path.getsize(filepath) // 2)
                die()

        keras.Model.save = save
    elif mode == "export-between-renames":
        rename = os.rename

        def killing_rename(src, dst, *args, **kwargs):
            rename(src, dst, *args, **kwargs)
            if os.path.basename(src) == "sampler":  # the old export moved aside
                die()

        os.rename = killing_rename
    elif mode == "export-writing":
        # ExportArchive() builds the backend's subclass: patch that one.
        archive_class = type(keras.export.ExportArchive())
        write_out = archive_class.write_out

        def killing_write_out(self, filepath, *args, **kwargs):
            write_out(self, filepath, *args, **kwargs)
            os.remove(os.path.join(filepath, "saved_model.pb"))  # half written
            die()

        archive_class.write_out = killing_write_out

    from vae_balance.cli import main as cli
    sys.exit(cli.main(argv))
    """
)


def _child(tmp_path, mode, *argv):
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    signals = tmp_path / f"signals-{mode}"
    signals.mkdir()
    log = signals / "output.txt"
    with open(log, "w") as output:  # a file: a full pipe would block the child
        process = subprocess.Popen(
            [sys.executable, str(script), mode, str(signals), *map(str, argv)],
            cwd=REPO,
            env=ENV,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    return process, signals


def _finish(process, signals, timeout=300):
    process.wait(timeout=timeout)
    return (signals / "output.txt").read_text()


def _wait_for(path, process, signals, timeout=300):
    deadline = time.time() + timeout
    while not os.path.exists(path):
        if process.poll() is not None:
            raise AssertionError(_finish(process, signals)[-4000:])
        assert time.time() < deadline, f"timed out waiting for {path}"
        time.sleep(0.05)


def _sample(sampler_path):
    loaded = tf.saved_model.load(str(sampler_path))
    u = np.random.default_rng(0).standard_normal((4, 4)).astype("float32")
    return loaded.sample(tf.constant(u))["images"].numpy()


@pytest.fixture(scope="module")
def kill_scenario(tmp_path_factory):
    """One work directory through kills, a second run, a divergence, reruns.

    1. A CLI run (child) writes the epoch-1 checkpoint and waits; a second
       CLI run on the same work directory (this process) is refused. The
       child is then SIGKILLed halfway through writing the epoch-2 checkpoint.
    2. A rerun with ``--learning-rate 1e30`` resumes from epoch 1 and
       diverges; a rerun with ``--learning-rate 5e-4`` resumes again from
       epoch 1 and finishes both stages and the export.
    3. Two exports that replace the sampler are killed: while writing, and
       between moving the old export aside and renaming the new one in.

    Every run skips a bad PNG in train/ (``--skip-bad``). Returns what each
    step saw, for the tests below.
    """
    tmp_path = tmp_path_factory.mktemp("kills")
    data_dir = _write_png_folder(str(tmp_path / "data"))
    with open(os.path.join(data_dir, "train", "bad.png"), "w") as f:
        f.write("not a PNG")
    workdir = str(tmp_path / "run")
    train = ["train", "--preset", "tiny", "--data-dir", data_dir]
    train += ["--workdir", workdir, "--epochs", "2", "--epochs2", "1"]
    train += ["--skip-bad", "--grid-every", "100"]
    seen = {"workdir": workdir, "steps_per_epoch": 32 // 8}
    records = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())
    logging.getLogger("vae_balance.data").addHandler(handler)
    try:
        # 1. a run killed while writing a checkpoint; a second run meanwhile
        child, signals = _child(tmp_path, "checkpoint-write", *train)
        _wait_for(signals / "ready", child, signals)
        seen["first_pid"] = child.pid
        seen["second_run"] = cli_in_process(*train)
        (signals / "go").touch()
        seen["killed_output"] = _finish(child, signals)
        seen["killed_returncode"] = child.returncode
        seen["after_kill_files"] = sorted(
            os.listdir(os.path.join(workdir, "checkpoints"))
        )
        seen["after_kill_latest"] = _latest_checkpoint(workdir, "stage1")

        # 2. divergence, then a gentler learning rate
        seen["diverged"] = cli_in_process(*train, "--learning-rate", "1e30")
        seen["after_divergence_latest"] = _latest_checkpoint(workdir, "stage1")
        seen["rerun"] = cli_in_process(*train, "--learning-rate", "5e-4")
        sampler_path = os.path.join(workdir, "sampler")
        seen["samples"] = _sample(sampler_path)

        # 3. exports killed while replacing the sampler
        export = ["export", workdir, "--overwrite"]
        for mode in ("export-between-renames", "export-writing"):
            child, signals = _child(tmp_path, mode, *export)
            output = _finish(child, signals)
            seen[mode] = {
                "returncode": child.returncode,
                "output": output,
                "sampler_exists": os.path.exists(sampler_path),
                "listing": sorted(os.listdir(workdir)),
            }
            seen[mode]["sample_command"] = cli_in_process(
                "sample", sampler_path, "--num", "4", "--out", tmp_path / "grid.png"
            )
            seen[mode]["samples_after"] = _sample(sampler_path)
            seen[mode]["listing_after"] = sorted(os.listdir(workdir))
    finally:
        logging.getLogger("vae_balance.data").removeHandler(handler)
    seen["data_warnings"] = records
    return seen


@pytest.mark.slow
def test_a_second_run_on_a_busy_workdir_exits_naming_the_first_pid(kill_scenario):
    code, _ = kill_scenario["second_run"]
    assert isinstance(code, str) and code.startswith("error: ")  # exit status 1
    assert f"in use by another run (process id {kill_scenario['first_pid']})" in code


@pytest.mark.slow
def test_kill_during_a_checkpoint_write_keeps_the_previous_checkpoint(kill_scenario):
    assert kill_scenario["killed_returncode"] == -signal.SIGKILL
    files = kill_scenario["after_kill_files"]
    assert files[:2] == ["stage1-epoch0001.json", "stage1-epoch0001.keras"]
    assert len(files) == 3 and files[2].startswith("stage1-epoch0002.keras.tmp-")
    path, epochs_done = kill_scenario["after_kill_latest"]
    assert (os.path.basename(path), epochs_done) == ("stage1-epoch0001.keras", 1)


@pytest.mark.slow
def test_divergence_stops_with_a_message_and_keeps_the_checkpoint(kill_scenario):
    code, output = kill_scenario["diverged"]
    assert isinstance(code, str) and "non-finite loss at step" in code
    assert "--learning-rate" in code
    assert "removed 1 incomplete temporary file" in output  # the killed write
    assert "(epoch 1/2)" in output
    latest = kill_scenario["after_divergence_latest"]
    assert latest == kill_scenario["after_kill_latest"]


@pytest.mark.slow
def test_a_learning_rate_rerun_resumes_from_the_kept_checkpoint(kill_scenario):
    code, output = kill_scenario["rerun"]
    workdir, steps = kill_scenario["workdir"], kill_scenario["steps_per_epoch"]
    assert code == 0, output[-3000:]
    assert "stage1-epoch0001.keras (epoch 1/2)" in output
    with open(os.path.join(workdir, "config.json")) as f:
        assert json.load(f)["learning_rate"] == 5e-4
    rows = list_checkpoints(Workdir(workdir).checkpoint_dir, "stage1")
    assert [checkpoint.position.epoch for checkpoint in rows] == [1, 2]
    final = load_checkpoint(os.path.join(workdir, "stage1.keras"))
    assert int(final.optimizer.iterations) == 2 * steps
    with open(os.path.join(workdir, "steps_stage1.csv")) as f:
        logged = [int(line.split(",")[0]) for line in f.readlines()[1:]]
    assert logged == list(range(1, 2 * steps + 1))  # none lost, none doubled
    assert not _temporaries(workdir)


@pytest.mark.slow
def test_bad_files_are_skipped_only_on_request_with_a_count(kill_scenario):
    assert any("Skipped 1 bad image" in m for m in kill_scenario["data_warnings"])


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["export-between-renames", "export-writing"])
def test_a_killed_export_leaves_the_previous_sampler(kill_scenario, mode):
    seen = kill_scenario[mode]
    assert seen["returncode"] == -signal.SIGKILL, seen["output"][-3000:]
    if mode == "export-between-renames":
        # The old sampler is complete under .sampler.previous; the next
        # command that needs it (here `sample`) puts it back.
        assert not seen["sampler_exists"]
        assert ".sampler.previous" in seen["listing"]
        assert "Restored" in seen["sample_command"][1]
    else:
        assert seen["sampler_exists"]
        assert any(n.startswith(".sampler.export-") for n in seen["listing"])
    assert seen["sample_command"][0] is None or seen["sample_command"][0] == 0
    np.testing.assert_array_equal(seen["samples_after"], kill_scenario["samples"])
    assert ".sampler.previous" not in seen["listing_after"]
    assert not any(n.startswith(".sampler.export-") for n in seen["listing_after"])


def test_stale_export_staging_is_cleaned_and_a_previous_export_restored(tmp_path):
    path = tmp_path / "sampler"
    (tmp_path / ".sampler.previous").mkdir()
    (tmp_path / ".sampler.previous" / "saved_model.pb").write_bytes(b"old")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / f".sampler.export-{dead.pid}-abc").mkdir()
    (tmp_path / f".sampler.export-{os.getppid()}-live").mkdir()  # a live pid
    assert savedmodel.restore_interrupted_export(path) is True
    assert (path / "saved_model.pb").read_bytes() == b"old"
    assert sorted(os.listdir(tmp_path)) == [
        f".sampler.export-{os.getppid()}-live",
        "sampler",
    ]
    # A previous export next to a complete new one is just removed.
    (tmp_path / ".sampler.previous").mkdir()
    assert savedmodel.restore_interrupted_export(path) is False
    assert not (tmp_path / ".sampler.previous").exists()


# ------------------------------------------------------------- disk full
def test_a_full_disk_elsewhere_in_a_run_is_a_save_error(tmp_path, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "x/curves.png")

    monkeypatch.setattr(training, "_run", full)
    with pytest.raises(SaveError, match="x/curves.png.*no space left"):
        training.train("tiny", str(tmp_path))


# ------------------------------------------------------------ gamma floor
def _identity_vae(balance, min_gamma=1e-3):
    """z = x (64 latent dims, sigma = e^-30): a perfect reconstruction.

    Learning rate 0 keeps it perfect; momentum 0.5 takes the running MSE below
    min_gamma^2 = 1e-6 within 20 steps (0.99 would need ~1400).
    """
    x = keras.Input((8, 8, 1))
    flat = keras.layers.Flatten()(x)
    z_mean = keras.layers.Dense(64, kernel_initializer="identity")(flat)
    z_log_sigma = keras.layers.Dense(
        64,
        kernel_initializer="zeros",
        bias_initializer=keras.initializers.Constant(-30),
    )(flat)
    encoder = keras.Model(x, [z_mean, z_log_sigma])
    z = keras.Input((64,))
    decoded = keras.layers.Dense(64, kernel_initializer="identity")(z)
    decoder = keras.Model(z, keras.layers.Reshape((8, 8, 1))(decoded))
    vae = BalancedVAE(
        encoder, decoder, balance=balance, min_gamma=min_gamma, momentum=0.5
    )
    vae.compile(optimizer=keras.optimizers.Adam(0.0), run_eagerly=True)
    return vae


@pytest.mark.parametrize("balance", ["running", "batch", "learned"])
def test_gamma_never_falls_below_min_gamma_on_a_perfect_reconstruction(balance):
    images = np.random.default_rng(0).random((16, 8, 8, 1)).astype("float32")
    vae = _identity_vae(balance)
    np.testing.assert_allclose(vae.predict(images, verbose=0), images, atol=1e-5)
    if balance == "learned":
        vae.log_gamma.assign(math.log(1e-3) - 5.0)  # pushed below the floor
    history = vae.fit(images, batch_size=8, epochs=12, verbose=0).history
    assert max(history["mse"]) < 1e-9  # the reconstruction stays perfect
    if balance == "running":
        assert float(vae.running_mse) < 1e-7  # below min_gamma^2 = 1e-6
    assert float(vae.gamma) >= 1e-3 - 1e-12
    assert min(history["gamma"]) >= 1e-3 - 1e-9
    assert all(math.isfinite(v) for v in history["loss"])
    # The floor is the documented default of every preset.
    assert all(config.min_gamma == 1e-3 for config in PRESETS.values())


# ------------------------------------------------------ unsafe checkpoints
def test_a_checkpoint_with_a_lambda_layer_is_refused_on_resume(tmp_path):
    marker = tmp_path / "code-ran"
    x = keras.Input((8, 8, 1))
    flat = keras.layers.Flatten()(x)
    # Python code in the file: it would create `marker` if it were run.
    target = str(marker)
    hook = keras.layers.Lambda(lambda t: (open(target, "w").close(), t)[1])
    z_mean = keras.layers.Dense(4)(hook(flat))
    z_log_sigma = keras.layers.Dense(4)(flat)
    encoder = keras.Model(x, [z_mean, z_log_sigma])
    z = keras.Input((4,))
    decoder = keras.Model(z, keras.layers.Reshape((8, 8, 1))(keras.layers.Dense(64)(z)))
    vae = BalancedVAE(encoder, decoder)
    vae.compile(optimizer="adam")
    workdir = tmp_path / "run"
    (workdir / "checkpoints").mkdir(parents=True)
    path = workdir / "checkpoints" / "stage1-epoch0001.keras"
    vae.save(path)
    marker.unlink()
    images = np.random.default_rng(0).random((16, 8, 8, 1)).astype("float32")
    with pytest.raises(WorkdirError) as error:
        training.train("tiny", str(workdir), train_data=images, test_images=images)
    message = str(error.value)
    assert f"Cannot load {path}" in message
    assert "`Lambda` layer" in message and "arbitrary code execution" in message
    assert not marker.exists()  # nothing in the file ran


# ------------------------------------------------------------- bad usage
def test_a_workdir_of_another_preset_is_refused_by_thecli_in_process(tmp_path):
    workdir = tmp_path / "run"
    (workdir / "checkpoints").mkdir(parents=True)
    config = json.dumps(get_preset("fashion_mnist").to_dict(), indent=2) + "\n"
    (workdir / "config.json").write_text(config)
    (workdir / "checkpoints" / "stage1-epoch0003.keras").write_bytes(b"model")
    before = {p: p.read_bytes() for p in workdir.rglob("*") if p.is_file()}
    data_dir = _write_png_folder(str(tmp_path / "data"), 8, 2)
    code, _ = cli_in_process(
        "train", "--preset", "tiny", "--data-dir", data_dir, "--workdir", workdir
    )
    assert isinstance(code, str) and code.startswith("error: ")
    assert "different configuration" in code
    assert "dataset: 'fashion_mnist' -> 'folder'" in code
    assert "--allow-config-change" in code
    after = {p: p.read_bytes() for p in workdir.rglob("*") if p.is_file()}
    assert {p: v for p, v in after.items() if p.name != ".lock"} == before


def test_bad_data_stops_the_cli_naming_the_file_unless_skip_bad(tmp_path):
    data_dir = _write_png_folder(str(tmp_path / "data"), 8, 2)
    bad = os.path.join(data_dir, "train", "004.png")
    with open(bad, "r+b") as f:
        f.truncate(30)
    argv = ["train", "--preset", "tiny", "--data-dir", data_dir]
    code, _ = cli_in_process(*argv, "--workdir", tmp_path / "run")
    assert isinstance(code, str) and code.startswith(f"error: {bad}: unreadable")
    assert "--skip-bad skips bad image files" in code
    args = cli.build_parser().parse_args([*argv, "--skip-bad"])
    assert args.skip_bad is True


# ----------------------------------------------------- strategy, precision
def test_train_sets_the_precision_then_builds_inside_the_strategy_scope(
    tmp_path, monkeypatch
):
    events = []
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")

    def get_strategy(name):
        events.append(("strategy", name))
        return strategy

    class Built(Exception):
        pass

    def build_vae(config):
        events.append(("build", tf.distribute.get_strategy() is strategy))
        raise Built

    monkeypatch.setattr(distribute, "get_strategy", get_strategy)
    monkeypatch.setattr(distribute, "set_precision", lambda name: events.append(name))
    monkeypatch.setattr(training, "build_vae", build_vae)
    images = np.random.default_rng(0).random((16, 8, 8, 1)).astype("float32")
    with pytest.raises(Built):
        training.train(
            "tiny",
            str(tmp_path),
            train_data=images,
            test_images=images,
            strategy="mirrored",
            precision="mixed_bfloat16",
        )
    assert events == [("strategy", "mirrored"), "mixed_bfloat16", ("build", True)]


# ------------------------------------------------------------------ fuzzing
@st.composite
def corrupted(draw, valid):
    """``valid`` with 1-4 random edits: byte overwrites, cuts, insertions."""
    content = bytearray(valid)
    for _ in range(draw(st.integers(1, 4))):
        if not content:
            break
        index = draw(st.integers(0, len(content) - 1))
        edit = draw(st.sampled_from(["overwrite", "cut", "insert"]))
        if edit == "overwrite":
            content[index] = draw(st.integers(0, 255))
        elif edit == "cut":
            del content[index:]
        else:
            content[index:index] = draw(st.binary(min_size=1, max_size=8))
    return bytes(content)


VALID_CIFAR = pickle.dumps(
    {
        b"batch_label": b"training batch 1 of 5",
        b"labels": [3, 7],
        b"data": np.arange(2 * 3072, dtype=np.int64).astype(np.uint8).reshape(2, 3072),
        b"filenames": [b"a.png", b"b.png"],
    },
    protocol=2,
)
VALID_IDX = (
    bytes([0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 28, 0, 0, 0, 28])
    + bytes(range(256)) * (2 * 28 * 28 // 256)
    + bytes(2 * 28 * 28 % 256)
)


def _image_bytes(fmt):
    buffer = io.BytesIO()
    pixels = np.random.default_rng(0).integers(0, 256, (8, 8), dtype=np.uint8)
    Image.fromarray(pixels).save(buffer, format=fmt)
    return buffer.getvalue()


@FUZZ
@given(content=st.one_of(st.binary(max_size=256), corrupted(VALID_CIFAR)))
def test_fuzzed_cifar_batches_load_or_raise_a_data_error_naming_the_file(
    tmp_path, content
):
    """40 examples: random bytes (<= 256) or the pickle of a valid 2-image
    batch with 1-4 overwrites / cuts / insertions; only DataError may escape."""
    path = tmp_path / "data_batch_1"
    path.write_bytes(content)
    try:
        images, labels = formats.read_cifar_batch(path)
    except registry.DataError as error:
        assert str(path) in str(error)
    else:
        assert images.dtype == np.uint8 and images.shape[1:] == (32, 32, 3)
        assert len(labels) == len(images)


@FUZZ
@given(
    content=st.one_of(st.binary(max_size=64), corrupted(VALID_IDX)),
    gzipped=st.booleans(),
    corrupt_gzip=st.booleans(),
)
def test_fuzzed_idx_files_load_or_raise_a_data_error_naming_the_file(
    tmp_path, content, gzipped, corrupt_gzip
):
    """40 examples: random bytes (<= 64) or a valid 2-image IDX file with
    1-4 edits, raw or gzipped, the gzip stream itself possibly cut."""
    folder = tmp_path / "idx"
    folder.mkdir(exist_ok=True)
    for old in folder.iterdir():
        old.unlink()
    name = "train-images-idx3-ubyte"
    if gzipped:
        name += ".gz"
        content = gzip.compress(content)
        if corrupt_gzip:
            content = content[: len(content) // 2] + content[len(content) // 2 + 1 :]
    (folder / name).write_bytes(content)
    try:
        dataset = pipeline.load_split("mnist", "train", folder)
    except registry.DataError as error:
        assert name in str(error)
    else:
        assert dataset.element_spec.shape == (32, 32, 1)


@FUZZ
@given(
    content=st.one_of(
        st.binary(max_size=128),
        corrupted(_image_bytes("PNG")),
        corrupted(_image_bytes("BMP")),
        corrupted(_image_bytes("JPEG")),
    ),
    extension=st.sampled_from([".png", ".bmp", ".jpg"]),
)
def test_fuzzed_image_files_in_a_folder_load_or_raise_a_data_error(
    tmp_path, content, extension
):
    """40 examples: random bytes (<= 128) or an 8x8 grayscale PNG / BMP /
    JPEG with 1-4 edits, under any of the three extensions, next to a good
    PNG; the tiny preset (8x8x1) must load both or name the bad file."""
    root = tmp_path / "folder"
    if root.exists():
        for old in root.iterdir():
            old.unlink()
    root.mkdir(exist_ok=True)
    (root / "a-good.png").write_bytes(_image_bytes("PNG"))
    bad = root / f"b-fuzzed{extension}"
    bad.write_bytes(content)
    try:
        dataset = pipeline.load_split("tiny", "train", root)
    except registry.DataError as error:
        assert str(bad) in str(error)
    else:
        assert pipeline.num_examples(dataset) == 2
        assert dataset.element_spec.shape == (8, 8, 1)


FLAGS = [
    "--preset", "--epochs", "--epochs2", "--batch-size", "--learning-rate",
    "--balance", "--kl-weight", "--seed", "--limit", "--smoke", "--grid-every",
    "--skip-bad", "--strategy", "--precision", "--jit-compile", "--workdir",
]  # fmt: skip
VALUES = [
    "tiny", "cifar10", "running", "fixed", "mirrored", "mixed_bfloat16", "0",
    "1", "-1", "3", "1e-3", "-0.5", "nan", "inf", "-inf", "1e400", "4294967296",
    "", "--", "-",
]  # fmt: skip


@FUZZ
@given(
    tokens=st.lists(
        st.one_of(st.sampled_from(FLAGS), st.sampled_from(VALUES), st.text(max_size=6)),
        max_size=10,
    )
)
def test_fuzzed_train_arguments_give_a_valid_config_or_a_usage_error(tokens, capsys):
    """40 examples: up to 10 tokens drawn from the train flags, edge values
    (0, -1, nan, inf, 1e400, 2**32, empty) and random text, after
    ``train --preset tiny``; parsing and resolving either exit with a message
    or give a config that a run can use."""
    argv = ["train", "--preset", "tiny", *tokens]
    try:
        args = cli.build_parser().parse_args(argv)
        config = cli.config_from_args(args)
    except SystemExit as exit_:
        if exit_.code == 0:  # -h / --help in the random text
            assert "usage:" in capsys.readouterr().out
            return
        message = exit_.code if isinstance(exit_.code, str) else capsys.readouterr().err
        assert "error" in message
        return
    assert config.name in PRESETS and config.balance in BALANCES
    for field in ("epochs", "epochs2", "batch_size"):
        assert isinstance(getattr(config, field), int) and getattr(config, field) > 0
    assert math.isfinite(config.learning_rate) and config.learning_rate > 0
    assert math.isfinite(config.resolved_kl_weight())
    assert config.resolved_kl_weight() >= 0 and 0 <= config.seed < 2**32
    assert args.limit is None or args.limit > 0


def _latest_checkpoint(workdir, stage):
    """``(path, epochs_done)`` of a stage's newest checkpoint, or None."""
    found = list_checkpoints(Workdir(workdir).checkpoint_dir, stage)
    return (found[-1].path, found[-1].position.epoch) if found else None
