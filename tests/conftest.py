"""Shared fixtures: tiny seeded models and data (8x8x1 images)."""

import hashlib
import os
import shutil
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# The shared helper modules (fid_helpers, datasets_helpers, datasets_fixtures)
# live here, beside the wings' test folders (tests/model/, tests/training/...).
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import fid_helpers  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import vae_balance  # noqa: E402
import vae_balance.fid.convert  # noqa: E402
import vae_balance.fid.inception  # noqa: E402

pytest_plugins = ["datasets_fixtures"]


# The longest files start first. Each file runs in one worker (--dist
# loadfile, --no-loadscope-reorder in setup.cfg): a long file handed out last
# leaves the other worker idle at the end. Measured in CI on 2026-12-07 (s):
# preemption ~200 and its two-worker part ~110 (one ~300 s file before it was
# split), scripts ~200, own data ~120, reliability ~60, training ~60.
LONGEST_FIRST = (
    "tests/training/test_preemption.py",
    "tests/test_scripts.py",
    "tests/test_user_data_job.py",
    "tests/training/test_preemption_two_workers.py",
    "tests/test_reliability.py",
    "tests/training/test_training.py",
)


def pytest_collection_modifyitems(config, items):
    def rank(item):
        path = item.nodeid.split("::")[0]
        if path in LONGEST_FIRST:
            return LONGEST_FIRST.index(path)
        return len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: the other files keep their order


@pytest.fixture
def images():
    """16 seeded float32 images of 8x8x1 in [0, 1] (two batches of 8)."""
    return np.random.default_rng(0).uniform(size=(16, 8, 8, 1)).astype("float32")


@pytest.fixture
def make_vae():
    """Factory of seeded "tiny" BalancedVAE models, compiled with Adam.

    Keyword arguments are `VAEConfig` overrides (``balance="learned"``...),
    plus ``learning_rate``, ``compile`` and ``run_eagerly``. Tracing Adam's
    graph step takes ~5 s on 2 cores, a few eager tiny steps well under 1 s:
    tests of many steps' numbers run eagerly (the same train_step code), the
    save / fit / distribution tests run compiled graphs.
    """

    def factory(
        preset="tiny", compile=True, learning_rate=1e-3, run_eagerly=False, **overrides
    ):
        keras.utils.set_random_seed(0)
        vae = vae_balance.build_vae(preset, **overrides)
        if compile:
            vae.compile(
                optimizer=keras.optimizers.Adam(learning_rate), run_eagerly=run_eagerly
            )
        return vae

    return factory


@pytest.fixture
def two_stages(make_vae, images):
    """A tiny first stage trained one epoch (BN statistics moved) and a stage 2."""
    vae = make_vae(run_eagerly=True)
    vae.fit(images, batch_size=8, epochs=1, verbose=0)
    keras.utils.set_random_seed(1)
    vae2 = vae_balance.build_second_stage("tiny")
    return vae, vae2


def _tiny_images(n, seed):
    return np.random.default_rng(seed).random((n, 8, 8, 1)).astype("float32")


def _digest(root):
    """Every file under ``root`` (but the lock) with its sha256."""
    found = {}
    for folder, _, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            if name != ".lock":
                with open(path, "rb") as f:
                    found[os.path.relpath(path, root)] = hashlib.sha256(
                        f.read()
                    ).hexdigest()
    return found


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """One "tiny" two-stage run of the training job, shared by the session.

    ``training.train(get_preset("tiny", epochs=2, epochs2=2), ...)`` on 64
    seeded 8x8x1 images (16 test images): both stages, latents.npz, the
    recalibrated BatchNorm record, the sampler export, grids, CSV logs.
    Read-only: a test that writes into a run uses ``copy_tiny_run``; the
    session's end checks that no file changed.

    Returns:
        dict with ``config``, ``workdir`` (str), ``result`` (the job's
        result), ``train_images`` and ``test_images``.
    """
    from vae_balance.config import get_preset
    from vae_balance.training import job as training

    workdir = str(tmp_path_factory.mktemp("tiny_run"))
    config = get_preset("tiny", epochs=2, epochs2=2)
    train_images, test_images = _tiny_images(64, 0), _tiny_images(16, 1)
    result = training.train(
        config, workdir, train_data=train_images, test_images=test_images, verbose=0
    )
    before = _digest(workdir)
    yield {
        "config": config,
        "workdir": workdir,
        "result": result,
        "train_images": train_images,
        "test_images": test_images,
    }
    assert _digest(workdir) == before, "a test wrote into the shared tiny_run"


@pytest.fixture
def copy_tiny_run(tiny_run, tmp_path):
    """Factory: ``copy_tiny_run(name="run", ignore=())`` copies the shared
    run to ``tmp_path / name`` (without the files matching ``ignore``) and
    returns its path as a str, for tests that write into a run."""

    def factory(name="run", ignore=()):
        target = str(tmp_path / name)
        patterns = shutil.ignore_patterns(".lock", *ignore)
        shutil.copytree(tiny_run["workdir"], target, ignore=patterns)
        return target

    return factory


@pytest.fixture(scope="session")
def converted(tmp_path_factory):
    """default_1.pt converted by the command-line converter (FID and
    evaluation tests), once per session: read-only."""
    path = str(tmp_path_factory.mktemp("fid") / "fid_inception.weights.h5")
    assert vae_balance.fid.inception.main(["convert", fid_helpers.REFERENCE, path]) == 0
    return path


@pytest.fixture(scope="session")
def keras_model(converted):
    """The Keras FID network with those weights (read-only)."""
    return vae_balance.fid.convert.load_fid_inception(converted)
