"""The paper's networks: exact parameter counts and layer settings."""

import keras
import numpy as np
import pytest

from vae_balance import build_second_stage, build_vae
from vae_balance.model import networks


def _trainable_count(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


@pytest.mark.parametrize(
    "preset, encoder_count, decoder_count",
    [
        ("cifar10", 1_135_840, 4_054_627),  # paper-notes table, section 2
        ("celeba", 3_333_344, 15_988_323),
    ],
)
def test_first_stage_has_the_reference_parameter_counts(
    preset, encoder_count, decoder_count
):
    vae = build_vae(preset)
    assert _trainable_count(vae.encoder) == encoder_count
    assert _trainable_count(vae.decoder) == decoder_count
    assert _trainable_count(vae) == encoder_count + decoder_count


def test_cifar10_second_stage_has_the_reference_parameter_count():
    vae2 = build_second_stage("cifar10")
    assert _trainable_count(vae2.encoder) + _trainable_count(vae2.decoder) == (
        17_457_344
    )
    assert _trainable_count(vae2) == 17_457_344


def test_batch_norm_uses_the_reference_momentum_and_epsilon():
    vae = build_vae("tiny")
    norms = [
        layer
        for net in (vae.encoder, vae.decoder)
        for layer in net.layers
        if isinstance(layer, keras.layers.BatchNormalization)
    ]
    assert len(norms) == 8  # two per res block, two scales per network
    for layer in norms:
        assert layer.momentum == pytest.approx(0.999)
        assert layer.epsilon == pytest.approx(1e-5)


def test_networks_have_no_regulariser():
    vae = build_vae("tiny")
    for net in (vae.encoder, vae.decoder):
        for layer in net.layers:
            assert getattr(layer, "kernel_regularizer", None) is None
    assert not vae.losses


def test_second_stage_has_no_batch_norm_and_no_input_range():
    vae2 = build_second_stage("tiny")
    layers = vae2.encoder.layers + vae2.decoder.layers
    assert not any(isinstance(x, keras.layers.BatchNormalization) for x in layers)
    assert vae2.input_range is None
    assert vae2.kl_weight == 1.0


def test_decoder_output_is_an_image_in_unit_range():
    vae = build_vae("tiny")
    z = np.random.default_rng(0).normal(0, 3, (5, 4)).astype("float32")
    images = vae.decoder.predict(z, verbose=0)
    assert images.shape == (5, 8, 8, 1)
    assert images.min() >= 0.0 and images.max() <= 1.0


def test_decoder_filters_double_per_resolution_coarsest_first():
    assert networks.decoder_filters(32, 32) == [512, 256, 128, 64, 32]
    assert networks.decoder_filters(64, 32, max_filters=256) == [
        256,
        256,
        256,
        128,
        64,
        32,
    ]


@pytest.mark.parametrize("side", [28, 0, 1, 48])
def test_decoder_refuses_a_side_that_is_not_a_power_of_two(side):
    with pytest.raises(ValueError, match="power-of-two"):
        networks.decoder_filters(side)


def test_kl_weight_defaults_to_the_reference_code_rule():
    assert build_vae("cifar10").kl_weight == 1.0  # (2 * 32 / 64) ** 2
    assert build_vae("celeba").kl_weight == 4.0  # (2 * 64 / 64) ** 2


def _bn_pair(momentum=0.9, channels=4, **kwargs):
    rng = np.random.default_rng(0)
    weights = [
        rng.normal(size=channels).astype("float32"),  # gamma
        rng.normal(size=channels).astype("float32"),  # beta
        rng.normal(size=channels).astype("float32"),  # moving mean
        rng.uniform(0.5, 2, size=channels).astype("float32"),  # moving variance
    ]
    pair = []
    for cls in (keras.layers.BatchNormalization, networks.FusedBatchNormalization):
        layer = cls(momentum=momentum, epsilon=1e-5, **kwargs)
        layer.build((None, 5, 5, channels))
        layer.set_weights(weights)
        pair.append(layer)
    return pair


def test_fused_batch_norm_matches_keras_batch_norm_in_training():
    import tensorflow as tf

    x = tf.constant(np.random.default_rng(1).normal(2, 3, (8, 5, 5, 4)), "float32")
    results = []
    for layer in _bn_pair():
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True)
            loss = tf.reduce_sum(y * tf.sin(y))
        grads = tape.gradient(loss, [x] + layer.trainable_weights)
        results.append((y, grads, [w.numpy() for w in layer.non_trainable_weights]))
    (y_keras, g_keras, s_keras), (y_fused, g_fused, s_fused) = results
    np.testing.assert_allclose(y_fused, y_keras, atol=1e-6)
    for fused, plain in zip(g_fused, g_keras):
        np.testing.assert_allclose(fused, plain, rtol=1e-5, atol=1e-5)
    # Moving statistics with the biased batch variance, as Keras: 200 values
    # per channel, so the unbiased one would be off by 0.1 x var / 199.
    for fused, plain in zip(s_fused, s_keras):
        np.testing.assert_allclose(fused, plain, rtol=1e-6)


def test_fused_batch_norm_in_bfloat16_keeps_float32_statistics():
    import tensorflow as tf

    x = np.random.default_rng(1).normal(2, 3, (8, 5, 5, 4)).astype("float32")
    outputs, stats = [], []
    for layer in _bn_pair(dtype="mixed_bfloat16"):
        with tf.GradientTape() as tape:
            xb = tf.cast(x, "bfloat16")
            tape.watch(xb)
            y = layer(xb, training=True)
            loss = tf.reduce_sum(tf.cast(y, "float32") ** 2)
        assert y.dtype == tf.bfloat16
        assert all(w.dtype == "float32" for w in layer.weights)
        grad = tape.gradient(loss, xb)
        outputs.append((tf.cast(y, "float32").numpy(), tf.cast(grad, "float32")))
        stats.append([w.numpy() for w in layer.non_trainable_weights])
    (y_keras, g_keras), (y_fused, g_fused) = outputs
    # bfloat16 has 8 significant bits: outputs of size ~3 agree to its
    # rounding (2^-8 relative); the statistics are float32 on both sides,
    # from the same bfloat16 inputs.
    np.testing.assert_allclose(y_fused, y_keras, rtol=2e-2, atol=2e-2)
    np.testing.assert_allclose(g_fused, g_keras, rtol=5e-2, atol=5e-2)
    for fused, plain in zip(stats[1], stats[0]):
        np.testing.assert_allclose(fused, plain, rtol=1e-5)


def test_fused_batch_norm_takes_the_keras_path_when_it_cannot_fuse():
    x = np.random.default_rng(2).normal(size=(3, 5, 5, 4)).astype("float32")
    plain, fused = _bn_pair()
    np.testing.assert_allclose(fused(x, training=False), plain(x, training=False))
    plain, fused = _bn_pair(synchronized=True)
    assert not fused._fusable(x, True, None)
    np.testing.assert_allclose(
        fused(x, training=True), plain(x, training=True), atol=1e-6
    )


def test_vae_uses_fused_batch_norm_unless_asked_not_to(tmp_path):
    def bn_classes(vae):
        return {
            type(layer).__name__
            for net in (vae.encoder, vae.decoder)
            for layer in net.layers
            if isinstance(layer, keras.layers.BatchNormalization)
        }

    vae = build_vae("tiny")
    assert bn_classes(vae) == {"FusedBatchNormalization"}
    assert bn_classes(build_vae("tiny", fused_bn=False)) == {"BatchNormalization"}
    path = str(tmp_path / "vae.keras")
    vae.save(path)
    assert bn_classes(keras.saving.load_model(path)) == {"FusedBatchNormalization"}


def test_infogan_preset_has_the_anchor_parameter_counts():
    # Hand count of Dai & Wipf's Infogan at 28x28x1, latent 64 (config.py).
    vae = build_vae("fashion_mnist_infogan")
    assert _trainable_count(vae.encoder) == 6_689_344
    assert _trainable_count(vae.decoder) == 6_642_241
    assert _trainable_count(vae) == 13_331_585
    vae2 = build_second_stage("fashion_mnist_infogan")
    assert _trainable_count(vae2) == 4_540_608
    wrapped = [
        layer.layer.name
        for layer in vae.encoder.layers
        if isinstance(layer, keras.layers.SpectralNormalization)
    ]
    assert wrapped == ["conv1", "conv2", "fc3", "gaussian"]
    assert vae.encoder.output_shape == [(None, 64), (None, 64)]
    assert vae.decoder.output_shape == (None, 28, 28, 1)


def test_infogan_softplus_sigma_is_the_anchors():
    head = networks.GaussianHead(2, "softplus")
    params = np.array([[0.5, -1.0, 0.0, 3.0]], "float32")
    z_mean, z_log_sigma = head(params)
    np.testing.assert_allclose(z_mean, [[0.5, -1.0]])
    expected = np.log(1e-6 + np.log1p(np.exp([0.0, 3.0])))
    np.testing.assert_allclose(z_log_sigma, [expected], rtol=1e-6)
    with pytest.raises(ValueError, match="softplus"):
        networks.GaussianHead(2, "relu")


def test_infogan_needs_sides_divisible_by_four():
    with pytest.raises(ValueError, match="divisible by 4"):
        networks.build_infogan_encoder((30, 28, 1), latent_dim=2)
    decoder = networks.build_infogan_decoder(
        (12, 8, 3), latent_dim=2, base_filters=4, fc_dim=8
    )
    assert decoder.output_shape == (None, 12, 8, 3)
