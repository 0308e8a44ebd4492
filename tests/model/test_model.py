"""BalancedVAE: hand-computed losses, the balancing state, saving, bad inputs."""

import copy
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

import vae_balance
from vae_balance import BalancedVAE

D = 4  # values per 2x2x1 image
HALF_LOG_TWO_PI = 0.91894  # 0.5 * log(2 pi), to the paper's 5 digits


# ------------------------------------------------ a hand-made 2x2 model
def _hand_networks():
    """Linear encoder and sigmoid decoder on 2x2x1 images, known weights."""
    image = keras.Input((2, 2, 1))
    flat = keras.layers.Flatten()(image)
    z_mean = keras.layers.Dense(2, name="z_mean")(flat)
    z_log_sigma = keras.layers.Dense(2, name="z_log_sigma")(flat)
    encoder = keras.Model(image, [z_mean, z_log_sigma])
    z = keras.Input((2,))
    pixels = keras.layers.Dense(D, activation="sigmoid", name="pixels")(z)
    decoder = keras.Model(z, keras.layers.Reshape((2, 2, 1))(pixels))
    rng = np.random.default_rng(42)
    weights = {
        "mean_kernel": rng.normal(0, 0.5, (D, 2)),
        "mean_bias": np.array([0.1, -0.2]),
        "log_sigma_kernel": rng.normal(0, 0.3, (D, 2)),
        "log_sigma_bias": np.array([-1.0, -0.5]),
        "decoder_kernel": rng.normal(0, 1.0, (2, D)),
        "decoder_bias": np.array([0.2, -0.1, 0.0, 0.3]),
    }
    weights = {k: v.astype("float32") for k, v in weights.items()}
    encoder.set_weights(
        [
            weights["mean_kernel"],
            weights["mean_bias"],
            weights["log_sigma_kernel"],
            weights["log_sigma_bias"],
        ]
    )
    decoder.set_weights([weights["decoder_kernel"], weights["decoder_bias"]])
    return encoder, decoder, weights


def _numpy_losses(x, epsilon, w, gamma_squared, kl_weight, min_gamma=1e-3):
    """The paper's loss (paper-notes section 1) in NumPy float64.

    ``gamma_squared=None`` means this batch's MSE (the "batch" strategy).
    """
    flat = x.reshape(len(x), -1).astype("float64")
    z_mean = flat @ w["mean_kernel"] + w["mean_bias"]
    z_log_sigma = flat @ w["log_sigma_kernel"] + w["log_sigma_bias"]
    z = z_mean + np.exp(z_log_sigma) * epsilon
    logits = z @ w["decoder_kernel"] + w["decoder_bias"]
    reconstruction = 1.0 / (1.0 + np.exp(-logits))
    squared_error = ((flat - reconstruction) ** 2).sum(axis=1)
    mse = squared_error.mean() / D
    if gamma_squared is None:
        gamma_squared = mse
    gamma = max(math.sqrt(gamma_squared), min_gamma)
    reconstruction_loss = np.mean(
        squared_error / (2 * gamma**2) + D * np.log(gamma) + D * HALF_LOG_TWO_PI
    )
    kl_loss = np.mean(
        0.5 * (z_mean**2 + np.exp(2 * z_log_sigma) - 2 * z_log_sigma - 1).sum(axis=1)
    )
    return {
        "loss": kl_weight * kl_loss + reconstruction_loss,
        "reconstruction_loss": reconstruction_loss,
        "kl_loss": kl_loss,
        "mse": mse,
        "gamma": gamma,
    }


HAND_IMAGES = np.array([[[0.1, 0.9], [0.5, 0.3]], [[0.8, 0.2], [0.0, 1.0]]], "float32")[
    ..., None
]

# balance -> (constructor kwargs, state to set, gamma^2 of the loss).
STRATEGIES = {
    "running": ({}, {"running_mse": 0.09}, 0.09),
    "learned": ({}, {"log_gamma": math.log(0.3)}, 0.09),
    "batch": ({}, {}, None),
    "fixed": ({"fixed_gamma": 0.5}, {}, 0.25),
}


@pytest.mark.parametrize("step", ["evaluate", "train_on_batch"])
@pytest.mark.parametrize("balance", list(STRATEGIES))
def test_logged_losses_equal_numpy_recomputation(balance, step):
    kwargs, state, gamma_squared = STRATEGIES[balance]
    encoder, decoder, weights = _hand_networks()
    vae = BalancedVAE(
        encoder, decoder, balance=balance, kl_weight=2.5, seed=7, **kwargs
    )
    for name, value in state.items():
        getattr(vae, name).assign(value)
    vae.compile(optimizer=keras.optimizers.SGD(0.1))
    # The model's first draw: a twin generator with the same seed.
    epsilon = keras.random.normal((2, 2), seed=keras.random.SeedGenerator(7))
    expected = _numpy_losses(
        HAND_IMAGES, np.asarray(epsilon, "float64"), weights, gamma_squared, 2.5
    )
    if step == "evaluate":
        logs = vae.evaluate(HAND_IMAGES, batch_size=2, verbose=0, return_dict=True)
    else:
        logs = vae.train_on_batch(HAND_IMAGES, return_dict=True)
    assert set(logs) == {"loss", "reconstruction_loss", "kl_loss", "mse", "gamma"}
    for key, value in expected.items():
        np.testing.assert_allclose(logs[key], value, rtol=2e-5, err_msg=key)


def test_gamma_never_goes_below_min_gamma():
    encoder, decoder, weights = _hand_networks()
    vae = BalancedVAE(encoder, decoder, min_gamma=0.5, seed=7)
    vae.running_mse.assign(0.01)
    vae.compile(optimizer=keras.optimizers.SGD(0.1))
    epsilon = keras.random.normal((2, 2), seed=keras.random.SeedGenerator(7))
    expected = _numpy_losses(
        HAND_IMAGES, np.asarray(epsilon, "float64"), weights, 0.01, 1.0, 0.5
    )
    logs = vae.evaluate(HAND_IMAGES, batch_size=2, verbose=0, return_dict=True)
    assert logs["gamma"] == pytest.approx(0.5)
    assert float(vae.gamma) == pytest.approx(0.5)
    np.testing.assert_allclose(logs["loss"], expected["loss"], rtol=2e-5)


# ------------------------------------------------------- running average
def _numpy_running_mse(mse_per_step, rule, momentum, start=1.0):
    m = ema = start
    history = []
    for mse in mse_per_step:
        if rule == "min":
            m = min(m, momentum * m + (1 - momentum) * mse)
        elif rule == "ema":
            m = momentum * m + (1 - momentum) * mse
        else:  # "ema_min"
            ema = momentum * ema + (1 - momentum) * mse
            m = min(m, ema)
        history.append(m)
    return history


@pytest.mark.parametrize(
    "rule, momentum, start",
    [
        ("min", 0.99, 1.0),  # the paper
        ("min", 0.5, 0.12),  # fast: the min binds on some steps
        ("ema", 0.5, 0.12),
        ("ema_min", 0.5, 0.12),
    ],
)
def test_running_mse_follows_the_rule_over_five_steps(
    make_vae, images, rule, momentum, start
):
    vae = make_vae(running_rule=rule, momentum=momentum, run_eagerly=True)
    vae.running_mse.assign(start)
    vae.ema_mse.assign(start)
    logged_mse, running_mse = [], []
    for step in range(5):
        batch = images[8 * (step % 2) : 8 * (step % 2) + 8]
        logged_mse.append(vae.train_on_batch(batch, return_dict=True)["mse"])
        running_mse.append(float(vae.running_mse))
    expected = _numpy_running_mse(logged_mse, rule, momentum, start)
    np.testing.assert_allclose(running_mse, expected, rtol=1e-6)
    # The gamma of the next step is the square root of the new average.
    assert float(vae.gamma) == pytest.approx(math.sqrt(expected[-1]), rel=1e-6)


def test_min_rule_never_increases_running_mse_but_ema_does(make_vae, images):
    for rule, grows in (("min", False), ("ema", True)):
        vae = make_vae(running_rule=rule, run_eagerly=True)
        vae.running_mse.assign(1e-4)  # far below any reconstruction error
        vae.train_on_batch(images[:8])
        assert (float(vae.running_mse) > 1e-4) == grows, rule


def test_evaluate_does_not_move_running_mse(make_vae, images):
    vae = make_vae(run_eagerly=True)
    vae.fit(images, batch_size=8, epochs=1, verbose=0)
    before = float(vae.running_mse)
    assert before < 1.0
    vae.evaluate(images, batch_size=8, verbose=0)
    vae.predict(images, verbose=0)
    vae(images, training=True)
    assert float(vae.running_mse) == before


@pytest.mark.parametrize("balance", ["running", "learned", "batch", "fixed"])
def test_only_learned_balance_has_a_trainable_gamma(make_vae, balance):
    vae = make_vae(balance=balance, compile=False)
    trainable = {id(w) for w in vae.trainable_weights}
    assert id(vae.running_mse) not in trainable
    assert id(vae.ema_mse) not in trainable
    assert vae.running_mse in vae.non_trainable_weights
    if balance == "learned":
        assert id(vae.log_gamma) in trainable
    else:
        assert vae.log_gamma is None
        assert not any(
            "gamma" in w.path
            for w in vae.trainable_weights
            if w.path.startswith("vae/")
        )


def test_learned_log_gamma_moves_with_training(make_vae, images):
    vae = make_vae(balance="learned", run_eagerly=True)
    vae.train_on_batch(images[:8])
    assert float(vae.log_gamma) != 0.0


def test_one_fit_step_changes_the_weights_and_running_mse(make_vae, images):
    vae = make_vae(run_eagerly=True)
    before = [w.copy() for w in vae.get_weights()]
    vae.train_on_batch(images[:8])
    changed = [not np.array_equal(a, b) for a, b in zip(before, vae.get_weights())]
    assert sum(changed) > len(changed) // 2
    assert float(vae.running_mse) < 1.0


# ------------------------------------------------------------ save / load
def _max_difference(first, second):
    return max(float(np.max(np.abs(a - b))) for a, b in zip(first, second))


def test_save_load_restores_outputs_state_optimizer_and_training(
    make_vae, images, tmp_path
):
    vae = make_vae(run_eagerly=True)  # saved in the compile config, reloaded
    vae.fit(images, batch_size=8, epochs=1, shuffle=False, verbose=0)
    path = tmp_path / "vae.keras"
    vae.save(path)
    loaded = keras.saving.load_model(path)

    assert isinstance(loaded, BalancedVAE)
    np.testing.assert_array_equal(
        loaded.predict(images, verbose=0), vae.predict(images, verbose=0)
    )
    assert float(loaded.running_mse) == float(vae.running_mse) < 1.0
    assert int(loaded.optimizer.iterations) == int(vae.optimizer.iterations) == 2
    assert len(loaded.optimizer.variables) == len(vae.optimizer.variables)
    assert (
        _max_difference(
            [v.numpy() for v in loaded.optimizer.variables],
            [v.numpy() for v in vae.optimizer.variables],
        )
        == 0.0
    )
    # The position in the noise stream travels with the model, so one more
    # epoch on both (same data order) gives the same weights and state.
    np.testing.assert_array_equal(
        loaded.seed_generator.state.numpy(), vae.seed_generator.state.numpy()
    )
    first = vae.fit(images, batch_size=8, epochs=1, shuffle=False, verbose=0)
    second = loaded.fit(images, batch_size=8, epochs=1, shuffle=False, verbose=0)
    assert first.history == second.history
    assert _max_difference(vae.get_weights(), loaded.get_weights()) == 0.0
    assert float(loaded.running_mse) == float(vae.running_mse)


def test_save_weights_round_trip_carries_running_mse_and_noise_seed(
    make_vae, images, tmp_path
):
    vae = make_vae(balance="learned", run_eagerly=True)
    vae.train_on_batch(images[:8])
    path = tmp_path / "vae.weights.h5"
    vae.save_weights(path)
    fresh = make_vae(balance="learned", compile=False)
    fresh.load_weights(path)
    assert float(fresh.running_mse) == float(vae.running_mse)
    assert float(fresh.log_gamma) == float(vae.log_gamma)
    np.testing.assert_array_equal(
        fresh.seed_generator.state.numpy(), vae.seed_generator.state.numpy()
    )
    assert _max_difference(fresh.get_weights(), vae.get_weights()) == 0.0


def test_config_round_trip_rebuilds_the_same_model(make_vae):
    vae = make_vae(
        balance="fixed", gamma=0.3, momentum=0.9, running_rule="ema", compile=False
    )
    clone = BalancedVAE.from_config(vae.get_config())
    config = clone.get_config()
    for key in (
        "balance",
        "kl_weight",
        "momentum",
        "running_rule",
        "fixed_gamma",
        "min_gamma",
        "input_range",
        "seed",
    ):
        assert config[key] == vae.get_config()[key], key
    assert config["fixed_gamma"] == 0.3 and "gamma" not in config
    assert clone.count_params() == vae.count_params()


def test_configs_saved_with_the_old_gamma_key_still_load(make_vae):
    saved = make_vae(balance="fixed", compile=False).get_config()
    del saved["fixed_gamma"]

    def config():  # from_config consumes the nested network configs
        return copy.deepcopy(saved)

    old_fixed = BalancedVAE.from_config({**config(), "gamma": 0.3})
    assert old_fixed.fixed_gamma == 0.3
    assert float(old_fixed.gamma) == pytest.approx(0.3)
    # Earlier versions wrote "gamma": 1.0 for every balance.
    old_running = BalancedVAE.from_config(
        {**config(), "balance": "running", "gamma": 1.0}
    )
    assert old_running.fixed_gamma is None
    assert old_running.get_config()["fixed_gamma"] is None


def test_fixed_gamma_is_refused_by_the_balances_that_set_gamma_themselves():
    encoder, decoder, _ = _hand_networks()
    for balance in ("running", "learned", "batch"):
        with pytest.raises(ValueError, match=f"balance='{balance}' sets gamma"):
            BalancedVAE(encoder, decoder, balance=balance, fixed_gamma=0.5)
    assert BalancedVAE(encoder, decoder, balance="fixed").fixed_gamma == 1.0
    with pytest.raises(ValueError, match="min_gamma <= fixed_gamma"):
        BalancedVAE(encoder, decoder, balance="fixed", fixed_gamma=1e-4)
    with pytest.raises(ValueError, match="'gamma'"):  # the old name is gone
        BalancedVAE(encoder, decoder, balance="fixed", gamma=0.5)


def test_compile_without_optimizer_uses_the_papers_adam_and_trains(images):
    vae = vae_balance.build_vae("tiny")
    vae.compile(run_eagerly=True)
    optimizer = vae.optimizer
    assert isinstance(optimizer, keras.optimizers.Adam)
    assert float(optimizer.learning_rate) == pytest.approx(1e-4)
    assert (optimizer.beta_1, optimizer.beta_2, optimizer.epsilon) == (
        0.9,
        0.999,
        1e-8,
    )
    before = [w.numpy() for w in vae.trainable_weights]
    vae.train_on_batch(images[:8])
    assert int(optimizer.iterations) == 1
    after = [w.numpy() for w in vae.trainable_weights]
    assert _max_difference(before, after) > 0.0
    # An explicit optimizer still wins.
    vae.compile(optimizer=keras.optimizers.SGD(0.5))
    assert isinstance(vae.optimizer, keras.optimizers.SGD)


# ------------------------------------------------------------- bad inputs
def test_mismatched_networks_name_both_shapes():
    encoder = vae_balance.model.networks.build_encoder(
        (8, 8, 1), latent_dim=4, base_filters=4, num_scales=2
    )
    decoder = vae_balance.model.networks.build_decoder(
        (8, 8, 1), latent_dim=3, base_filters=4
    )
    with pytest.raises(ValueError, match=r"\(4,\).*\(3,\)"):
        BalancedVAE(encoder, decoder)
    decoder = vae_balance.model.networks.build_decoder(
        (16, 16, 1), latent_dim=4, base_filters=4
    )
    with pytest.raises(ValueError, match=r"\(8, 8, 1\).*\(16, 16, 1\)"):
        BalancedVAE(encoder, decoder)


def test_unknown_balance_lists_the_valid_ones():
    encoder, decoder, _ = _hand_networks()
    with pytest.raises(ValueError, match="running, learned, batch, fixed"):
        BalancedVAE(encoder, decoder, balance="computed")


@pytest.mark.parametrize("momentum", [0.0, 1.0, -0.5, 1.5])
def test_momentum_outside_zero_one_is_refused(momentum):
    encoder, decoder, _ = _hand_networks()
    with pytest.raises(ValueError, match="momentum"):
        BalancedVAE(encoder, decoder, momentum=momentum)


@pytest.mark.parametrize("step", ["train_on_batch", "evaluate"])
@pytest.mark.parametrize(
    "bad, message",
    [
        (1.5, "above 1.0"),
        (-0.2, "below 0.0"),
        (np.nan, "NaN or Inf"),
        (np.inf, "NaN or Inf"),
    ],
)
def test_bad_batches_are_refused_with_a_readable_error(step, bad, message):
    encoder, decoder, _ = _hand_networks()
    vae = BalancedVAE(encoder, decoder)
    vae.compile(optimizer=keras.optimizers.SGD(0.1))
    x = HAND_IMAGES.copy()
    x[1, 0, 1, 0] = bad
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        if step == "evaluate":
            vae.evaluate(x, batch_size=2, verbose=0)
        else:
            vae.train_on_batch(x)
    assert float(vae.running_mse) == 1.0


def test_integer_images_other_than_uint8_are_refused():
    encoder, decoder, _ = _hand_networks()
    vae = BalancedVAE(encoder, decoder)
    with pytest.raises(TypeError, match="float inputs"):
        vae((HAND_IMAGES * 255).astype("int32"))


def test_uint8_images_give_the_loss_of_their_float_version():
    encoder, decoder, _ = _hand_networks()
    vae = BalancedVAE(encoder, decoder, seed=3)
    vae.compile(optimizer=keras.optimizers.SGD(0.1))
    as_uint8 = np.round(HAND_IMAGES * 255).astype("uint8")
    as_float = as_uint8.astype("float32") / 255.0
    logs = []
    for x in (as_uint8, as_float):
        vae.seed_generator.state.assign([3, 0])  # the same noise for both
        logs.append(vae.evaluate(x, batch_size=2, verbose=0, return_dict=True))
    for key in logs[0]:
        np.testing.assert_allclose(logs[0][key], logs[1][key], rtol=1e-6)
    assert logs[0]["mse"] > 0.0


def test_compile_keeps_xla_off_so_input_checks_run(monkeypatch):
    """On a GPU machine Keras would pick XLA, which drops tf.debugging checks."""
    real = tf.config.list_physical_devices
    fake_gpu = tf.config.PhysicalDevice("/physical_device:GPU:0", "GPU")
    monkeypatch.setattr(
        tf.config,
        "list_physical_devices",
        lambda kind=None: real(kind) + ([fake_gpu] if kind in (None, "GPU") else []),
    )
    encoder, decoder, _ = _hand_networks()
    vae = BalancedVAE(encoder, decoder)
    vae.compile(optimizer=keras.optimizers.SGD(0.1))
    assert vae.jit_compile is False


def test_weights_saved_without_the_noise_seed_still_load(
    make_vae, tmp_path, monkeypatch
):
    vae = make_vae(compile=False)
    vae.running_mse.assign(0.25)
    path = tmp_path / "old.weights.h5"
    with monkeypatch.context() as patch:  # Keras' default: no seed state
        patch.setattr(
            BalancedVAE, "save_own_variables", keras.layers.Layer.save_own_variables
        )
        vae.save_weights(path)
    fresh = make_vae(compile=False)
    fresh.load_weights(path)
    assert float(fresh.running_mse) == 0.25


def test_train_step_is_traced_once_per_batch_shape_not_per_epoch():
    # 20 images at batch 8: batches of 8, 8, 4 for three epochs. Keras traces
    # the first shape, then once more relaxes the batch dimension; nothing in
    # the step (the balancing update included) may force a trace per epoch.
    vae = vae_balance.build_vae("tiny", seed=0)
    vae.compile(keras.optimizers.Adam(1e-3))
    traces = []
    train_step = vae.train_step

    def counting_train_step(data):
        traces.append(data.shape)  # runs in Python only while tracing
        return train_step(data)

    vae.train_step = counting_train_step
    x = np.random.default_rng(0).random((20, 8, 8, 1)).astype("float32")
    dataset = tf.data.Dataset.from_tensor_slices(x).batch(8)
    vae.fit(dataset, epochs=3, verbose=0, shuffle=False)
    vae.fit(dataset, epochs=1, verbose=0, shuffle=False)  # reuses the function
    assert 1 <= len(traces) <= 2, traces
    assert int(vae.optimizer.iterations) == 12
