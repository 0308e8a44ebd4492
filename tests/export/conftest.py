"""What the export tests share: one tiny Fashion-MNIST-shaped first stage."""

import keras
import numpy as np
import pytest
from test_export import PAD, _pad

from vae_balance import build_vae, get_preset


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
