"""Precise BatchNorm statistics: recalibrate_batchnorm and check_batchnorm."""

import keras
import numpy as np
import pytest

import vae_balance
from vae_balance.model import batchnorm


def _fitted(make_vae, images, bn_momentum=0.999):
    vae = make_vae(bn_momentum=bn_momentum)
    vae.fit(images, epochs=2, batch_size=8, verbose=0, shuffle=False)
    return vae


def test_recalibration_sets_the_population_statistics_of_the_first_layer(
    make_vae, images
):
    vae = _fitted(make_vae, images)
    first = batchnorm.batchnorm_layers(vae.encoder)[0]
    info = vae_balance.recalibrate_batchnorm(vae, images, batch_size=8)
    assert info == {"layers": 8, "images": 16, "batches": 2}
    # The first BN layer's input is the stem convolution, upstream of any BN:
    # its statistics over all 16 images are known exactly.
    stem = keras.Model(vae.encoder.inputs[0], vae.encoder.get_layer("stem").output)
    features = np.asarray(stem(images)).astype("float64")
    np.testing.assert_allclose(first.moving_mean, features.mean((0, 1, 2)), atol=1e-6)
    np.testing.assert_allclose(
        first.moving_variance, features.var((0, 1, 2)), rtol=1e-5, atol=1e-7
    )


def test_recalibration_touches_only_the_moving_statistics(make_vae, images):
    vae = _fitted(make_vae, images)
    moving = {
        id(v)
        for layer in batchnorm.batchnorm_layers(vae.encoder)
        + batchnorm.batchnorm_layers(vae.decoder)
        for v in (layer.moving_mean, layer.moving_variance)
    }
    before = {id(v): np.array(v) for v in vae.variables}
    seed_state = np.array(vae.seed_generator.state)
    iterations = int(vae.optimizer.iterations)
    batchnorm.recalibrate_batchnorm(vae, images, batch_size=8)
    changed = {id(v) for v in vae.variables if not np.array_equal(before[id(v)], v)}
    assert changed and changed <= moving
    np.testing.assert_array_equal(vae.seed_generator.state, seed_state)
    assert int(vae.optimizer.iterations) == iterations


def test_recalibration_is_deterministic_and_bounded(make_vae, images):
    vae = _fitted(make_vae, images)
    info = batchnorm.recalibrate_batchnorm(vae, images, num_batches=1, batch_size=8)
    assert info["images"] == 8 and info["batches"] == 1
    first = [np.array(v) for v in vae.non_trainable_variables]
    batchnorm.recalibrate_batchnorm(vae, images, num_batches=1, batch_size=8)
    for a, b in zip(first, vae.non_trainable_variables):
        np.testing.assert_array_equal(a, b)


def test_stale_statistics_warn_and_recalibration_fixes_them(make_vae):
    # Structured images the tiny model can learn in a few steps.
    rng = np.random.default_rng(1)
    images = np.clip(
        rng.uniform(size=(64, 1, 1, 1)) + 0.1 * rng.normal(size=(64, 8, 8, 1)), 0, 1
    ).astype("float32")
    vae = make_vae(bn_momentum=0.999, learning_rate=1e-2)
    vae.fit(images, epochs=10, batch_size=8, verbose=0, shuffle=False)
    with pytest.warns(batchnorm.StaleBatchNormWarning, match="recalibrate_batchnorm"):
        inference, training = batchnorm.check_batchnorm(vae, images, batch_size=8)
    assert inference > batchnorm.MSE_RATIO_WARNING * training
    batchnorm.recalibrate_batchnorm(vae, images, batch_size=8)
    inference, training = batchnorm.check_batchnorm(vae, images, batch_size=8)
    assert inference < 1.3 * training


def test_training_mode_mse_leaves_the_moving_statistics_alone(make_vae, images):
    vae = _fitted(make_vae, images)
    before = [np.array(v) for v in vae.non_trainable_variables]
    batchnorm.reconstruction_mse(vae, images, training=True, batch_size=8)
    for a, b in zip(before, vae.non_trainable_variables):
        np.testing.assert_array_equal(a, b)


def test_a_model_without_batchnorm_is_left_alone(images):
    vae2 = vae_balance.build_second_stage("tiny")
    z = np.zeros((16, 4), "float32")
    assert batchnorm.recalibrate_batchnorm(vae2, z) == {
        "layers": 0,
        "images": 0,
        "batches": 0,
    }


def test_measuring_passes_leave_spectral_norm_state_alone(images):
    # Keras' SpectralNormalization rewrites its kernel and power-iteration
    # vector in every training-mode call; the recalibration and the
    # training-mode MSE must not.
    vae = vae_balance.build_vae(
        "fashion_mnist_infogan",
        image_shape=(8, 8, 1),
        dataset="folder",
        base_filters=4,
        fc_dim=8,
        latent_dim=2,
    )
    vae.compile(optimizer="adam")
    vae.fit(images, epochs=1, batch_size=8, verbose=0, shuffle=False)
    moving = {
        id(v)
        for layer in batchnorm.batchnorm_layers(vae.encoder)
        + batchnorm.batchnorm_layers(vae.decoder)
        for v in (layer.moving_mean, layer.moving_variance)
    }
    before = {id(v): np.array(v) for v in vae.variables}
    batchnorm.reconstruction_mse(vae, images, training=True, batch_size=8)
    batchnorm.recalibrate_batchnorm(vae, images, batch_size=8)
    changed = {id(v) for v in vae.variables if not np.array_equal(before[id(v)], v)}
    assert changed and changed <= moving
