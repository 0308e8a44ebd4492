"""FusedAdam: Keras' Adam in one TensorFlow kernel per variable."""

import textwrap

import keras
import numpy as np
import pytest
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


def _compiled_apply(optimizer, variables):
    @tf.function
    def apply(grads):
        optimizer.apply(grads, variables)

    return apply


@pytest.mark.parametrize("amsgrad", [False, True])
def test_fused_adam_gives_keras_adam_updates_to_float32_rounding(amsgrad):
    rng = np.random.default_rng(0)
    start = [rng.normal(size=shape).astype("float32") for shape in ((3, 4), (4,))]
    # Gradients spanning the scales a network sees, from 1e-9 (a bias before
    # BatchNorm) to 10.
    scales = 10.0 ** rng.uniform(-9, 1, size=(6, 1))
    grads = [
        [(s * rng.normal(size=w.shape)).astype("float32") for w in start]
        for s in scales
    ]
    args = dict(learning_rate=1e-3, epsilon=1e-8, amsgrad=amsgrad)
    results = []
    for optimizer in (keras.optimizers.Adam(**args), FusedAdam(**args)):
        variables = [keras.Variable(w) for w in start]
        optimizer.build(variables)
        apply = _compiled_apply(optimizer, variables)
        for step_grads in grads:
            apply([tf.constant(g) for g in step_grads])
        results.append(
            [np.asarray(v) for v in variables]
            + [np.asarray(v) for v in optimizer.variables]
        )
    keras_result, fused_result = results
    assert len(keras_result) == len(fused_result)
    names = ["weights", "bias", "iterations", "learning_rate"]
    names += ["m", "v", "m", "v"] + (["v_hat", "v_hat"] if amsgrad else [])
    for name, a, b in zip(names, keras_result, fused_result):
        # The kernel computes 1 - beta_2 from the float32 beta_2:
        # 0.00099998713 for 0.999, where Keras casts 0.001; the second
        # moments differ by those 1.3e-5 (relative), everything else by
        # float32 rounding (relative to each array's largest value).
        rtol = 2e-5 if name.startswith("v") else 1e-6
        np.testing.assert_allclose(b, a, atol=rtol * np.max(np.abs(a)), err_msg=name)
    assert int(np.asarray(fused_result[len(start)])) == 6  # iterations


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
    # (The same numbers: every later step of the job's resumed runs as well.)
    batch = _images(8)
    vae.train_on_batch(batch)
    loaded.train_on_batch(batch)
    for a, b in zip(vae.weights, loaded.weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert loaded.optimizer.get_config() == vae.optimizer.get_config()


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
