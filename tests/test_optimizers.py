"""FusedAdam: Keras' Adam in one TensorFlow kernel per variable."""

import textwrap

import keras
import numpy as np
import tensorflow as tf

import vae_balance
from vae_balance.optimizers import FusedAdam


def _images(n=16, shape=(8, 8, 1)):
    return np.random.default_rng(0).uniform(size=(n, *shape)).astype("float32")


def _trained(optimizer, steps=4):
    keras.utils.set_random_seed(0)
    vae = vae_balance.build_vae("tiny")
    vae.compile(optimizer=optimizer)
    vae.fit(_images(), batch_size=8, epochs=steps // 2, shuffle=False, verbose=0)
    return vae


def test_fused_adam_gives_keras_adam_weights_to_float32_rounding():
    args = dict(learning_rate=1e-3, beta_1=0.9, beta_2=0.999, epsilon=1e-8)
    batch = _images(8)
    models = []
    for optimizer in (keras.optimizers.Adam(**args), FusedAdam(**args)):
        keras.utils.set_random_seed(0)
        vae = vae_balance.build_vae("tiny")
        vae.compile(optimizer=optimizer)
        models.append(vae)
    keras_vae, fused_vae = models
    losses = []
    for step in range(6):
        losses.append(
            [float(m.train_on_batch(batch, return_dict=True)["loss"]) for m in models]
        )
        if step == 0:
            # One step from the same weights: float32 rounding (measured
            # 1.2e-7), against a step size of 1e-3.
            for a, b in zip(keras_vae.weights, fused_vae.weights):
                np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6)
            for a, b in zip(
                keras_vae.optimizer.variables, fused_vae.optimizer.variables
            ):
                np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6)
    # Later steps: the same losses to float32 rounding. (Weights are not
    # compared: a convolution bias followed by BatchNorm has a gradient
    # that is zero up to rounding, which Adam's normalisation turns into
    # lr-sized steps of either sign, with either optimizer.)
    np.testing.assert_allclose(*np.array(losses).T, rtol=1e-6)
    assert int(fused_vae.optimizer.iterations) == 6
    assert float(keras_vae.running_mse) == float(fused_vae.running_mse)


def test_fused_adam_runs_one_op_per_variable_where_keras_runs_many():
    keras.utils.set_random_seed(0)
    counts = {}
    for name, cls in (("keras", keras.optimizers.Adam), ("fused", FusedAdam)):
        vae = vae_balance.build_vae("tiny")
        vae.compile(optimizer=cls(1e-3))
        graph = (
            tf.function(vae.train_step)
            .get_concrete_function(tf.TensorSpec((8, 8, 8, 1), tf.float32))
            .graph
        )
        counts[name] = len(graph.get_operations())
        apply_ops = [
            op for op in graph.get_operations() if op.type == "ResourceApplyAdam"
        ]
        if name == "fused":
            assert len(apply_ops) == len(vae.trainable_weights)
        else:
            assert not apply_ops
    # 25-odd ops per variable become about 8 (the kernel and its inputs).
    assert counts["fused"] < 0.7 * counts["keras"], counts


def test_fused_adam_saves_and_resumes_as_adam_does(tmp_path):
    vae = _trained(FusedAdam(1e-3), steps=4)
    path = str(tmp_path / "vae.keras")
    vae.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded.optimizer, FusedAdam)
    assert int(loaded.optimizer.iterations) == 4
    for a, b in zip(vae.optimizer.variables, loaded.optimizer.variables):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # One more step from the reloaded state equals one more step in memory.
    batch = _images(8)
    vae.train_on_batch(batch)
    loaded.train_on_batch(batch)
    for a, b in zip(vae.weights, loaded.weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert loaded.optimizer.get_config() == vae.optimizer.get_config()


def test_fused_adam_keeps_keras_path_for_amsgrad():
    args = dict(learning_rate=1e-3, amsgrad=True)
    keras_vae = _trained(keras.optimizers.Adam(**args), steps=4)
    fused_vae = _trained(FusedAdam(**args), steps=4)
    for a, b in zip(keras_vae.weights, fused_vae.weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


MIRRORED_SCRIPT = textwrap.dedent(
    """
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2
    )
    import keras, numpy as np, vae_balance

    images = np.random.default_rng(0).uniform(size=(16, 8, 8, 1)).astype("float32")

    fused_calls = []
    apply_adam = tf.raw_ops.ResourceApplyAdam

    def counted(**kwargs):
        fused_calls.append(1)
        return apply_adam(**kwargs)

    tf.raw_ops.ResourceApplyAdam = counted

    def train(strategy, cls):
        with strategy.scope():
            keras.utils.set_random_seed(0)
            vae = vae_balance.build_vae("tiny")
            # epsilon 1e-2: Adam turns the rounding-sized gradients of the
            # convolution biases before BatchNorm into lr-sized steps when
            # epsilon is below them (see the one-device test); the order of
            # the all-reduce's sums changes that rounding.
            vae.compile(optimizer=cls(1e-3, epsilon=1e-2))
        vae.fit(images, batch_size=8, epochs=2, shuffle=False, verbose=0)
        return vae

    single = train(tf.distribute.get_strategy(), keras.optimizers.Adam)
    mirrored = train(
        tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]), vae_balance.FusedAdam
    )
    worst = max(
        float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
        for a, b in zip(single.weights, mirrored.weights)
    )
    print("MAXDIFF", worst, "FUSED", len(fused_calls))
    # The fused kernel ran, once per variable and replica.
    assert len(fused_calls) == 2 * len(mirrored.trainable_weights), fused_calls
    assert worst < 1e-6, worst
    """
)


def test_fused_adam_under_mirrored_strategy_matches_one_device():
    from test_distribute import _python, _wait

    (output,) = _wait([_python(MIRRORED_SCRIPT)], timeout=300)
    assert "MAXDIFF" in output
