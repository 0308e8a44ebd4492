"""Scale-out: tf.distribute strategies and mixed precision.

The strategy tests run in subprocesses: logical CPU devices and the
multi-worker runtime must be configured before TensorFlow initialises, which
the rest of the test session has already done.
"""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
from resume_helpers import free_ports

import vae_balance
from vae_balance.model import distribute

# Where two float32 runs of the same 3 steps may differ: the order of float
# sums (all-reduce of gradients and of BN statistics against single-device
# reductions). Measured max differences are ~1e-7 (see the report in
# docs/distributed.md); the bound leaves an order of magnitude of margin.
RTOL, ATOL = 1e-5, 1e-6


def _python(script, *args, env=None, timeout=300, cwd=None):
    """Starts ``python -c script args`` with quiet TF logs."""
    full_env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", **(env or {}))
    return subprocess.Popen(
        [sys.executable, "-c", script, *map(str, args)],
        env=full_env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _wait(processes, timeout):
    """Waits for every process; kills all of them on the first timeout."""
    outputs = []
    try:
        for process in processes:
            output, _ = process.communicate(timeout=timeout)
            outputs.append(output)
    except subprocess.TimeoutExpired:
        for process in processes:
            process.kill()
        raise
    for process, output in zip(processes, outputs):
        assert process.returncode == 0, output[-4000:]
    return outputs


# --------------------------------------------- MirroredStrategy, 2 devices
MIRRORED_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2
    )
    import keras
    import numpy as np
    import vae_balance
    from vae_balance.model import batchnorm

    images = np.random.default_rng(0).uniform(size=(24, 8, 8, 1))
    images = images.astype("float32")

    def train(strategy):
        with strategy.scope():
            keras.utils.set_random_seed(0)
            vae = vae_balance.build_vae("tiny")
            # SGD, not Adam: Adam is invariant to a gradient scale, so it
            # would hide a loss that is not divided by the replica count.
            vae.compile(optimizer=keras.optimizers.SGD(0.01))
        step_logs, running = [], []

        class Record(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                step_logs.append({k: float(v) for k, v in logs.items()})
                running.append(float(vae.running_mse.numpy()))
                assert abs(float(vae.gamma) ** 2 - running[-1]) < 1e-6

        # Global batches of 7, 7 and 2: split 4 + 3 (uneven, as 100 images on
        # 8 GPUs would be) and 1 + 1. Keras logs per batch are means since
        # the start of the epoch.
        vae.fit(
            images[:16], batch_size=7, epochs=1, shuffle=False, verbose=0,
            callbacks=[Record()],
        )
        replicas = [
            float(v) for v in strategy.experimental_local_results(vae.running_mse.value)
        ] if strategy.num_replicas_in_sync > 1 else [running[-1]]
        replica_weights = [
            [np.asarray(v) for v in strategy.experimental_local_results(w.value)]
            for w in vae.weights
        ]
        spread = max(
            float(np.max(np.abs(copies[0] - c)))
            for copies in replica_weights for c in copies
        )
        return vae, step_logs, running, replicas, spread

    single, logs1, running1, _, _ = train(tf.distribute.get_strategy())
    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    assert mirrored.num_replicas_in_sync == 2
    vae2, logs2, running2, replicas, spread = train(mirrored)

    # Every replica returns the global batch's logs (TPUStrategy keeps only
    # the first replica's), equal to one device's test step.
    batch = next(iter(mirrored.experimental_distribute_dataset(
        tf.data.Dataset.from_tensor_slices(images[:7]).batch(7)
    )))
    vae2.reset_metrics()
    replica_logs = mirrored.run(tf.function(vae2.test_step), args=(batch,))
    replica_logs = {
        k: [float(v) for v in mirrored.experimental_local_results(value)]
        for k, value in replica_logs.items()
    }
    single.reset_metrics()
    test_logs = single.test_on_batch(images[:7], return_dict=True)

    # The noise contract itself: the replicas' epsilon, concatenated, is one
    # device's draw for the global batch, for an even (4 + 4) and an uneven
    # (4 + 3) split; and the static-shape branch kept for TPUs (even splits)
    # on these two devices by presenting MirroredStrategy as a TPUStrategy.
    def replica_noise(size):
        zeros = np.zeros((size, 4), "float32")
        dataset = tf.data.Dataset.from_tensor_slices(zeros).batch(size)
        z = next(iter(mirrored.experimental_distribute_dataset(dataset)))
        vae2.seed_generator.state.assign([5, 0])
        noise = mirrored.run(tf.function(lambda z: vae2.sample_z(z, z)), args=(z,))
        noise = [np.asarray(v) for v in mirrored.experimental_local_results(noise)]
        one_device = keras.random.normal((size, 4), seed=keras.random.SeedGenerator(5))
        return float(np.max(np.abs(np.concatenate(noise) - np.asarray(one_device))))

    noise_differences = {"even": replica_noise(8), "uneven": replica_noise(7)}
    tpu_strategy = tf.distribute.TPUStrategy
    tf.distribute.TPUStrategy = tf.distribute.MirroredStrategy
    try:
        noise_differences["tpu_branch_even"] = replica_noise(8)
    finally:
        tf.distribute.TPUStrategy = tpu_strategy

    weights = {
        "single": [w.numpy().tolist() for w in single.weights],
        "mirrored": [np.asarray(w.value).tolist() for w in vae2.weights],
    }

    # Precise BatchNorm of the two trained models, each under its strategy.
    recalibrated = {}
    for name, vae in (("single", single), ("mirrored", vae2)):
        batchnorm.recalibrate_batchnorm(vae, images, batch_size=8)
        layers = batchnorm.batchnorm_layers(vae.encoder)
        layers += batchnorm.batchnorm_layers(vae.decoder)
        recalibrated[name] = [
            np.concatenate([l.moving_mean.numpy(), l.moving_variance.numpy()]).tolist()
            for l in layers
        ]
        recalibrated[name + "_synchronized"] = layers[0].synchronized
    json.dump(
        {
            "logs": [logs1, logs2],
            "replica_test_logs": replica_logs,
            "noise_differences": noise_differences,
            "test_logs": test_logs,
            "running_mse": [running1, running2],
            "replica_running_mse": replicas,
            "replica_weight_spread": spread,
            "weights": weights,
            "names": [w.path for w in single.weights],
            "recalibrated": recalibrated,
        },
        open(sys.argv[1], "w"),
    )
    """
)


@pytest.fixture(scope="module")
def two_devices(tmp_path_factory):
    """What MIRRORED_SCRIPT measured, in one process with two CPU devices."""
    out = tmp_path_factory.mktemp("mirrored") / "mirrored.json"
    _wait([_python(MIRRORED_SCRIPT, out)], timeout=300)
    return json.loads(out.read_text())


@pytest.mark.slow
def test_mirrored_strategy_on_two_devices_matches_one_device(two_devices):
    result = two_devices
    single_logs, mirrored_logs = result["logs"]
    assert len(single_logs) == len(mirrored_logs) == 3
    for step, (single, mirrored) in enumerate(zip(single_logs, mirrored_logs)):
        assert set(single) == {"loss", "reconstruction_loss", "kl_loss", "mse", "gamma"}
        for key in single:
            np.testing.assert_allclose(
                mirrored[key], single[key], rtol=RTOL, err_msg=f"{key} {step}"
            )
    np.testing.assert_allclose(*result["running_mse"][::-1], rtol=RTOL)
    assert result["running_mse"][0][-1] < 1.0
    assert result["noise_differences"] == {
        "even": 0.0,
        "uneven": 0.0,
        "tpu_branch_even": 0.0,
    }
    for key, value in result["test_logs"].items():
        replicas = result["replica_test_logs"][key]
        assert replicas[0] == replicas[1], key
        np.testing.assert_allclose(replicas[0], value, rtol=RTOL, err_msg=key)
    # Every replica holds the same balancing state and weights.
    assert len(set(result["replica_running_mse"])) == 1
    assert result["replica_weight_spread"] == 0.0
    for name, single, mirrored in zip(
        result["names"], result["weights"]["single"], result["weights"]["mirrored"]
    ):
        np.testing.assert_allclose(mirrored, single, rtol=RTOL, atol=ATOL, err_msg=name)


# --------------------------------- MultiWorkerMirroredStrategy, 2 processes
WORKER_SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(2)
    from vae_balance.model import distribute

    strategy = distribute.get_strategy("multiworker")  # reads TF_CONFIG
    assert strategy.num_replicas_in_sync == 2
    import keras
    import numpy as np
    import vae_balance

    folder = sys.argv[1]
    task = json.loads(os.environ["TF_CONFIG"])["task"]["index"]
    images = np.random.default_rng(0).uniform(size=(32, 8, 8, 1))
    images = images.astype("float32")
    with strategy.scope():
        keras.utils.set_random_seed(0)
        vae = vae_balance.build_vae("tiny")
        # SGD: tracing Adam's update costs ~5 s per process on 2 CPU cores;
        # Adam's state round trip is tested in test_model.py.
        vae.compile(optimizer=keras.optimizers.SGD(0.01))
    history = vae.fit(images, batch_size=8, epochs=1, shuffle=False, verbose=0)
    np.savez(
        os.path.join(folder, f"worker{task}.npz"),
        running_mse=vae.running_mse.numpy(),
        iterations=vae.optimizer.iterations.numpy(),
        loss=history.history["loss"][0],
        *[w.numpy() for w in vae.weights],
    )
    if task == 0:  # only the chief writes the checkpoint
        vae.save(os.path.join(folder, "chief.keras"))
    """
)


@pytest.mark.slow
def test_two_worker_processes_train_identically_and_the_chief_checkpoint_resumes(
    tmp_path, images
):
    workers = [f"127.0.0.1:{port}" for port in free_ports(2)]
    processes = []
    for index in range(2):
        tf_config = {
            "cluster": {"worker": workers},
            "task": {"type": "worker", "index": index},
        }
        processes.append(
            _python(WORKER_SCRIPT, tmp_path, env={"TF_CONFIG": json.dumps(tf_config)})
        )
    _wait(processes, timeout=400)

    chief, other = (np.load(tmp_path / f"worker{i}.npz") for i in range(2))
    assert int(chief["iterations"]) == int(other["iterations"]) == 4  # 32 / 8
    assert float(chief["running_mse"]) == float(other["running_mse"]) < 1.0
    assert float(chief["loss"]) == float(other["loss"])  # global-batch logs
    assert np.isfinite(float(chief["loss"]))
    weights = [k for k in chief.files if k.startswith("arr_")]
    for key in weights:
        np.testing.assert_array_equal(chief[key], other[key], err_msg=key)

    vae = keras.saving.load_model(tmp_path / "chief.keras")
    assert float(vae.running_mse) == float(chief["running_mse"])
    assert int(vae.optimizer.iterations) == 4
    for key, weight in zip(weights, vae.weights):
        np.testing.assert_array_equal(weight.numpy(), chief[key], err_msg=key)
    resumed = vae.fit(images, batch_size=8, epochs=1, verbose=0)
    assert int(vae.optimizer.iterations) == 6
    assert np.isfinite(resumed.history["loss"][0])
    assert float(vae.running_mse) < float(chief["running_mse"])


# ------------------------------------------------------------ precision
@pytest.fixture
def precision():
    """Sets a global dtype policy for one test, then restores float32."""
    yield distribute.set_precision
    keras.mixed_precision.set_global_policy("float32")


def test_bfloat16_training_stays_finite_with_float32_balancing_state(
    precision, make_vae, images
):
    policy = precision("mixed_bfloat16")
    assert policy.compute_dtype == "bfloat16"
    vae = make_vae(run_eagerly=True)
    assert vae.encoder.get_layer("stem").compute_dtype == "bfloat16"
    assert vae.running_mse.dtype == "float32"
    history = vae.fit(images, batch_size=8, epochs=2, verbose=0)
    for key, values in history.history.items():
        assert np.all(np.isfinite(values)), key
    assert vae.running_mse.dtype == "float32"
    assert 0.0 < float(vae.running_mse) < 1.0
    assert vae.gamma.dtype == "float32"
    # The losses are computed in float32 from the bfloat16 network outputs.
    z_mean, _ = vae.encoder(images[:2])
    assert z_mean.dtype == "bfloat16"
    logs = vae.evaluate(images, batch_size=8, verbose=0, return_dict=True)
    assert all(np.isfinite(value) for value in logs.values())


def test_float16_compiles_with_loss_scaling_and_trains(precision, make_vae, images):
    precision("mixed_float16")
    vae = make_vae(run_eagerly=True)
    assert isinstance(vae.optimizer, keras.optimizers.LossScaleOptimizer)
    assert vae.running_mse.dtype == "float32"
    logs = [vae.train_on_batch(images[:8], return_dict=True) for _ in range(3)]
    assert all(np.isfinite(value) for step in logs for value in step.values())
    assert vae.running_mse.dtype == "float32" and float(vae.running_mse) < 1.0
    assert all(np.all(np.isfinite(w)) for w in vae.get_weights())


# --------------------------------------------------------------- helpers
def test_get_strategy_by_name_and_unknown_names_list_the_valid_ones():
    import tensorflow as tf

    assert distribute.get_strategy("default") is tf.distribute.get_strategy()
    assert isinstance(
        distribute.get_strategy("mirrored"), tf.distribute.MirroredStrategy
    )
    with pytest.raises(ValueError, match="default, mirrored, multiworker"):
        distribute.get_strategy("tpu")


def test_set_precision_refuses_unknown_names_and_leaves_the_policy(precision):
    with pytest.raises(ValueError, match="float32, mixed_float16, mixed_bfloat16"):
        precision("float16")
    assert keras.mixed_precision.global_policy().name == "float32"
    assert precision("mixed_bfloat16").name == "mixed_bfloat16"


def test_one_device_build_keeps_local_batch_norm_and_it_can_be_forced():
    vae = vae_balance.build_vae("tiny")
    norm = vae.encoder.get_layer("scale0_bn1")
    assert norm.synchronized is False
    forced = vae_balance.build_vae("tiny", synchronized_bn=True)
    assert forced.encoder.get_layer("scale0_bn1").synchronized is True


# ------------------------------------ precise BatchNorm under a strategy
@pytest.mark.slow
def test_recalibration_under_a_mirrored_strategy_matches_one_device(two_devices):
    # MIRRORED_SCRIPT's two trained models, recalibrated on its 24 images.
    result = two_devices["recalibrated"]
    assert result["mirrored_synchronized"] and not result["single_synchronized"]
    for single, mirrored in zip(result["single"], result["mirrored"], strict=True):
        np.testing.assert_allclose(mirrored, single, rtol=RTOL, atol=ATOL)
