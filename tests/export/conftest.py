"""What the export tests share: one tiny Fashion-MNIST-shaped first stage, and
the work directory of a run made of it (`two_stage_workdir`)."""

import copy
import json

import keras
import numpy as np
import pytest
from test_export import PAD, _pad

from vae_balance import build_second_stage, build_vae, get_preset
from vae_balance.workdir import save_model_atomic


@pytest.fixture(scope="session")
def padded_stage1():
    """A tiny stage 1 for 28x28 images padded to 32x32 (latent 4), trained 2
    eager steps on 16 seeded images so gamma^2 and the step count moved.

    Returns ``(config, vae, native, rng)``: ``rng`` is the generator after
    drawing the images, for the fixtures' further draws. Read-only.
    """
    config = get_preset(
        "tiny", dataset="fashion_mnist", image_shape=(32, 32, 1), pad=PAD
    )
    rng = np.random.default_rng(0)
    native = rng.uniform(size=(16, 28, 28, 1)).astype("float32")
    keras.utils.set_random_seed(0)
    vae = build_vae(config)
    vae.compile(optimizer=keras.optimizers.Adam(1e-3), run_eagerly=True)
    vae.fit(_pad(native), batch_size=8, epochs=1, verbose=0)
    return config, vae, native, rng


def two_stage_workdir(padded_stage1, tmp_path_factory):
    """The shared first stage, a seeded fresh second stage, and a work directory
    holding both and ``config.json``. Returns ``(config, vae, vae2, workdir,
    rng)``; ``rng`` is a copy of the first stage's generator, for the codes."""
    config, vae, _, rng = padded_stage1  # read-only
    keras.utils.set_random_seed(0)
    vae2 = build_second_stage(config)
    workdir = tmp_path_factory.mktemp("run")
    save_model_atomic(vae, str(workdir / "stage1.keras"))
    save_model_atomic(vae2, str(workdir / "stage2.keras"))
    (workdir / "config.json").write_text(json.dumps(config.to_dict()))
    return config, vae, vae2, workdir, copy.deepcopy(rng)
