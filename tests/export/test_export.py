"""The exported SavedModel: native-size images, generate(n, seed), metadata,
saved_model_cli, reloading without vae_balance, and `python -m vae_balance
sample` on new and old exports."""

import copy
import json
import os
import shutil
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import vae_balance
from vae_balance import (
    TwoStageSampler,
    build_second_stage,
    export_sampler,
    get_preset,
)
from vae_balance.cli import main as cli
from vae_balance.export.metadata import (
    METADATA_FILE,
    describe_signatures,
    read_sampler_metadata,
)
from vae_balance.plots import image_grid

PAD = 2
SIGNATURES = {
    "sample",
    "generate",
    "decode",
    "encode",
    "reconstruct",
    "metadata",
    "serving_default",
}
ENV = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
ENV["TF_CPP_MIN_LOG_LEVEL"] = "2"


def _python(args, cwd):
    """``python *args`` in a fresh process (no PYTHON* variables)."""
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=240,
    )


def _pad(images):
    """The loader's zero border around native images."""
    return np.pad(images, [(0, 0), (PAD, PAD), (PAD, PAD), (0, 0)])


def _crop(images):
    return np.asarray(images)[:, PAD:-PAD, PAD:-PAD, :]


def test_export_refuses_an_existing_path_unless_overwrite(two_stages, tmp_path):
    path = tmp_path / "sampler"
    path.mkdir()
    (path / "keep.txt").write_text("not a model")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        export_sampler(two_stages, path)
    assert (path / "keep.txt").exists()
    export_sampler(two_stages, path, overwrite=True)
    assert not (path / "keep.txt").exists()
    assert (path / "saved_model.pb").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["sampler"]  # no staging left


@pytest.fixture(scope="module")
def padded(padded_stage1, tmp_path_factory):
    """Tiny Fashion-MNIST-shaped stages (28x28 padded to 32x32, latent 4),
    trained 2 and 3 eager steps so gamma^2 and the step counts moved, and
    their export with the config. Stage 1 is conftest.padded_stage1, shared
    with test_export_gmm.py."""
    config, vae, native, rng = padded_stage1  # conftest.py: shared, read-only
    rng = copy.deepcopy(rng)
    vae2 = build_second_stage(config)  # its weights follow stage 1's fit
    vae2.compile(optimizer=keras.optimizers.Adam(1e-3), run_eagerly=True)
    codes = rng.normal(size=(24, 4)).astype("float32")
    vae2.fit(codes, batch_size=8, epochs=1, verbose=0)
    path = tmp_path_factory.mktemp("export") / "sampler"
    export_sampler((vae, vae2), path, config=config)
    return {
        "config": config,
        "vae": vae,
        "vae2": vae2,
        "native": native,
        "path": path,
        "loaded": tf.saved_model.load(str(path)),
        "u": rng.normal(size=(5, 4)).astype("float32"),
        "z": rng.normal(size=(5, 4)).astype("float32"),
    }


def _expected(padded):
    """What each signature must return, computed with the Keras models."""
    vae, vae2, native = padded["vae"], padded["vae2"], padded["native"][:5]
    sampler = TwoStageSampler(vae.decoder, vae2.decoder)
    z_mean, z_log_sigma = vae.encoder(_pad(native), training=False)
    noise = {
        seed: tf.random.stateless_normal((4, 4), seed=[seed, 0], alg="philox")
        for seed in (1, 2)
    }
    return {
        "sample": _crop(sampler(padded["u"])),
        "decode": _crop(vae.decoder(padded["z"], training=False)),
        "z_mean": np.asarray(z_mean),
        "z_log_sigma": np.asarray(z_log_sigma),
        "reconstruct": _crop(vae.decoder(z_mean, training=False)),
        "generate_1": _crop(sampler(noise[1])),
        "generate_2": _crop(sampler(noise[2])),
    }


def test_signatures_return_named_images_at_the_native_size(padded):
    loaded, u = padded["loaded"], tf.constant(padded["u"])
    signatures = loaded.signatures
    assert set(signatures) == SIGNATURES
    outputs = {
        name: sorted(function.structured_outputs)
        for name, function in signatures.items()
    }
    assert outputs.pop("encode") == ["z_log_sigma", "z_mean"]
    assert outputs.pop("metadata") == ["json"]
    assert all(keys == ["images"] for keys in outputs.values()), outputs

    expected = _expected(padded)
    native = tf.constant(padded["native"][:5])
    encoded = signatures["encode"](images=native)
    got = {
        "sample": signatures["sample"](u=u)["images"],
        "serving_default": signatures["serving_default"](u=u)["images"],
        "python_sample": loaded.sample(u)["images"],  # the same dicts
        "decode": signatures["decode"](z=tf.constant(padded["z"]))["images"],
        "z_mean": encoded["z_mean"],
        "z_log_sigma": encoded["z_log_sigma"],
        "reconstruct": signatures["reconstruct"](images=native)["images"],
    }
    for name in ("sample", "serving_default", "python_sample", "decode"):
        assert got[name].shape == (5, 28, 28, 1), name
        want = expected["decode" if name == "decode" else "sample"]
        np.testing.assert_allclose(got[name], want, atol=1e-5, err_msg=name)
    for name in ("z_mean", "z_log_sigma", "reconstruct"):
        np.testing.assert_allclose(got[name], expected[name], atol=1e-5, err_msg=name)
    with pytest.raises(TypeError, match="28, 28, 1"):  # network-size images
        loaded.encode(_pad(padded["native"][:2]))


def test_generate_is_seeded_stateless_noise(padded):
    generate = padded["loaded"].signatures["generate"]

    def draw(n, seed):
        return generate(
            num_samples=tf.constant(n, tf.int64), seed=tf.constant(seed, tf.int64)
        )["images"].numpy()

    first = draw(4, 1)
    assert first.shape == (4, 28, 28, 1)
    assert first.min() >= 0.0 and first.max() <= 1.0
    np.testing.assert_array_equal(first, draw(4, 1))
    assert not np.allclose(first, draw(4, 2), atol=1e-4)
    expected = _expected(padded)  # u = stateless_normal([n, u_dim], [seed, 0])
    np.testing.assert_allclose(first, expected["generate_1"], atol=1e-5)
    np.testing.assert_allclose(draw(4, 2), expected["generate_2"], atol=1e-5)
    # Python ints work too, through the loaded function.
    np.testing.assert_array_equal(padded["loaded"].generate(4, 1)["images"], first)
    with pytest.raises(tf.errors.InvalidArgumentError, match="num_samples"):
        draw(-1, 1)


def test_metadata_holds_the_config_shapes_gamma_and_versions(padded):
    loaded, path, config = padded["loaded"], padded["path"], padded["config"]
    metadata = read_sampler_metadata(loaded)  # the signature
    with open(path / METADATA_FILE) as f:
        assert json.load(f) == metadata  # the asset file: the same JSON
    text = loaded.signatures["metadata"]()["json"].numpy().decode()
    assert text == (path / METADATA_FILE).read_text()
    assert read_sampler_metadata(str(path)) == metadata

    assert metadata["format"] == "vae_balance.sampler"
    assert metadata["format_version"] == 1
    assert metadata["preset"] == "tiny"
    assert metadata["config"] == json.loads(json.dumps(config.to_dict()))
    assert metadata["latent_dim"] == metadata["u_dim"] == 4
    assert metadata["image_shape"] == [28, 28, 1]
    assert metadata["network_image_shape"] == [32, 32, 1]
    assert metadata["pad"] == PAD
    for stage, vae, steps in (
        ("stage1", padded["vae"], 2),
        ("stage2", padded["vae2"], 3),
    ):
        found = metadata["stages"][stage]
        assert found["balance"] == "running" and found["steps"] == steps
        running_mse = float(vae.running_mse)
        assert found["running_mse"] == pytest.approx(running_mse, rel=1e-7)
        assert found["gamma_squared"] == pytest.approx(float(vae.gamma) ** 2, 1e-6)
        assert found["gamma_squared"] == pytest.approx(running_mse, rel=1e-6)
        assert 0.0 < found["gamma_squared"] < 1.0  # moved by the training steps
    assert metadata["versions"]["vae_balance"] == vae_balance.__version__
    assert metadata["versions"]["tensorflow"] == tf.__version__
    assert metadata["versions"]["keras"] == keras.__version__
    # The documented signatures are the real ones.
    actual = describe_signatures(loaded)
    assert set(metadata["signatures"]) == set(actual)
    for name, table in metadata["signatures"].items():
        assert table["inputs"] == actual[name]["inputs"], name
        assert table["outputs"] == actual[name]["outputs"], name


def test_export_without_a_config_fills_what_the_models_tell(padded, tmp_path):
    vae, vae2 = padded["vae"], padded["vae2"]
    export_sampler((vae, vae2), tmp_path / "plain")
    loaded = tf.saved_model.load(str(tmp_path / "plain"))
    metadata = read_sampler_metadata(loaded)
    assert metadata["config"] is None and metadata["preset"] is None
    assert metadata["pad"] == 0 and metadata["image_shape"] == [32, 32, 1]
    assert metadata["stages"]["stage1"]["steps"] == 2
    assert metadata["stages"]["stage2"]["steps"] == 3
    u = tf.constant(padded["u"])
    assert loaded.sample(u)["images"].shape == (5, 32, 32, 1)

    # A bare sampler: no encoder, no balance state, an explicit crop.
    sampler = TwoStageSampler(vae.decoder, vae2.decoder)
    export_sampler(sampler, tmp_path / "bare", pad=PAD)
    loaded = tf.saved_model.load(str(tmp_path / "bare"))
    metadata = read_sampler_metadata(str(tmp_path / "bare"))
    assert metadata["stages"] == {"stage1": None, "stage2": None}
    assert metadata["pad"] == PAD and metadata["config"] is None
    assert set(loaded.signatures) == SIGNATURES - {"encode", "reconstruct"}
    assert set(metadata["signatures"]) == set(loaded.signatures)
    assert loaded.generate(3, 0)["images"].shape == (3, 28, 28, 1)

    with pytest.raises(ValueError, match="image_shape"):
        export_sampler((vae, vae2), tmp_path / "wrong", config=get_preset("tiny"))
    with pytest.raises(ValueError, match="pad=1"):
        export_sampler((vae, vae2), tmp_path / "wrong", config=padded["config"], pad=1)
    with pytest.raises(ValueError, match="pad=16"):
        export_sampler((vae, vae2), tmp_path / "wrong", pad=16)
    assert not (tmp_path / "wrong").exists()


def _saved_model_cli(*argv):
    command = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    return subprocess.run(
        [command, *argv],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=240,
    )


@pytest.mark.slow
def test_saved_model_cli_shows_and_runs_generate(padded, tmp_path):
    path = str(padded["path"])
    shown = _saved_model_cli("show", "--dir", path, "--all")
    assert shown.returncode == 0, shown.stderr[-3000:]
    for name in SIGNATURES:
        assert f"signature_def['{name}']" in shown.stdout, name
    generate = shown.stdout.split("signature_def['generate']")[1].split("Method")[0]
    assert "inputs['num_samples']" in generate and "inputs['seed']" in generate
    assert "dtype: DT_INT64" in generate
    assert "outputs['images']" in generate
    assert "shape: (-1, 28, 28, 1)" in generate
    assert "outputs['json']" in shown.stdout and "DT_STRING" in shown.stdout
    assert "outputs['z_mean']" in shown.stdout
    assert "outputs['output_0']" not in shown.stdout

    run = _saved_model_cli(
        "run",
        "--dir",
        path,
        "--tag_set",
        "serve",
        "--signature_def",
        "generate",
        "--input_exprs",
        "num_samples=4;seed=1",
        "--outdir",
        str(tmp_path),
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Result for output key images" in run.stdout
    images = np.load(tmp_path / "images.npy")
    assert images.shape == (4, 28, 28, 1)
    expected = padded["loaded"].generate(4, 1)["images"]
    np.testing.assert_allclose(images, expected, atol=1e-6)


# A fresh interpreter that cannot import vae_balance (the editable install's
# finder is on sys.meta_path via a .pth file, so -I alone does not hide it).
RELOAD_SCRIPT = textwrap.dedent(
    """
    import importlib.abc, json, os, sys

    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "vae_balance" or name.startswith("vae_balance."):
                raise ModuleNotFoundError(f"{name} is blocked in this test")

    sys.meta_path.insert(0, Blocker())
    try:
        import vae_balance  # noqa: F401
    except ImportError:
        pass
    else:
        raise SystemExit("vae_balance is importable: the test would prove nothing")

    import numpy as np
    import tensorflow as tf

    folder, sampler = sys.argv[1], sys.argv[2]
    inputs = {k: np.load(os.path.join(folder, k + ".npy")) for k in "uzx"}
    loaded = tf.saved_model.load(sampler)
    signatures = loaded.signatures
    u = tf.constant(inputs["u"])

    def generate(n, seed):
        return signatures["generate"](
            num_samples=tf.constant(n, tf.int64), seed=tf.constant(seed, tf.int64)
        )["images"]

    encoded = loaded.encode(inputs["x"])
    outputs = {
        "sample": loaded.sample(u)["images"],
        "serving_default": signatures["serving_default"](u=u)["images"],
        "decode": loaded.decode(inputs["z"])["images"],
        "z_mean": encoded["z_mean"],
        "z_log_sigma": encoded["z_log_sigma"],
        "reconstruct": loaded.reconstruct(inputs["x"])["images"],
        "generate_1": generate(4, 1),
        "generate_1_again": generate(4, 1),
        "generate_2": generate(4, 2),
    }
    for name, value in outputs.items():
        np.save(os.path.join(folder, "out_" + name + ".npy"), value.numpy())
    metadata = json.loads(signatures["metadata"]()["json"].numpy())
    with open(os.path.join(folder, "metadata.json"), "w") as f:
        json.dump(metadata, f)
    assert "vae_balance" not in sys.modules
    print("reloaded", sorted(signatures))
    """
)


@pytest.mark.slow
def test_a_copied_export_reloads_without_vae_balance_in_a_fresh_process(
    padded, tmp_path
):
    copy = tmp_path / "elsewhere" / "copied_sampler"
    shutil.copytree(padded["path"], copy)  # no config.json beside it
    inputs = {"u": padded["u"], "z": padded["z"], "x": padded["native"][:5]}
    for name, value in inputs.items():
        np.save(tmp_path / f"{name}.npy", value)
    expected = _expected(padded)
    expected["serving_default"] = expected["generate_1_again"] = None

    result = _python(["-I", "-c", RELOAD_SCRIPT, str(tmp_path), str(copy)], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "'generate'" in result.stdout and "'metadata'" in result.stdout
    out = {name: np.load(tmp_path / f"out_{name}.npy") for name in expected}
    for name, value in expected.items():
        if value is not None:
            np.testing.assert_allclose(out[name], value, atol=1e-5, err_msg=name)
    np.testing.assert_array_equal(out["serving_default"], out["sample"])
    for name in ("sample", "decode", "reconstruct", "generate_1"):
        assert out[name].shape[1:] == (28, 28, 1), name
    # Same seed, same images, in this process and the fresh one.
    np.testing.assert_array_equal(out["generate_1"], out["generate_1_again"])
    here = padded["loaded"].generate(4, 1)["images"].numpy()
    np.testing.assert_allclose(out["generate_1"], here, atol=1e-6, rtol=0)
    assert not np.allclose(out["generate_1"], out["generate_2"], atol=1e-4)
    with open(tmp_path / "metadata.json") as f:
        metadata = json.load(f)
    assert metadata == read_sampler_metadata(padded["loaded"])
    assert metadata["config"]["pad"] == PAD
    assert set(metadata["stages"]) == {"stage1", "stage2"}
    assert all(s["gamma_squared"] > 0 for s in metadata["stages"].values())


def _grid(path):
    """A saved grid PNG as gray values in [0, 1]."""
    return np.asarray(Image.open(path).convert("L"), "float32") / 255.0


@pytest.mark.slow
def test_cli_samples_a_copied_export_at_the_native_size(padded, tmp_path):
    copy = tmp_path / "copied_sampler"
    shutil.copytree(padded["path"], copy)
    grid = tmp_path / "grid.png"
    command = ["-m", "vae_balance", "sample", str(copy)]
    result = _python(
        [*command, "--num", "4", "--seed", "1", "--out", str(grid)], tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Wrote 4 samples (28x28x1)" in result.stdout
    assert "warning" not in result.stderr
    assert Image.open(grid).size == (2 * 28, 2 * 28)
    # The tiles are generate(4, seed=1), unpadded.
    expected = image_grid(padded["loaded"].generate(4, 1)["images"])[..., 0]
    np.testing.assert_allclose(_grid(grid), expected, atol=2 / 255)


def test_cli_sample_writes_the_images_as_a_uint8_npz(padded, tmp_path, capsys):
    out = tmp_path / "gen2.npz"
    cli.main(
        ["sample", str(padded["path"]), "--num", "5", "--seed", "2", "--out", str(out)]
    )
    assert "Wrote 5 samples (28x28x1)" in capsys.readouterr().out
    with np.load(out) as saved:
        assert list(saved.keys()) == ["x"]
        x = saved["x"]
    assert x.dtype == np.uint8 and x.shape == (5, 28, 28)
    # generate(5, seed=2) at the native size, rounded to bytes.
    images = padded["loaded"].generate(5, 2)["images"].numpy()[..., 0]
    np.testing.assert_array_equal(x, np.round(np.clip(images, 0, 1) * 255))
    assert 0 < x.max() and x.min() < 255


def test_cli_sample_info_prints_the_metadata(padded, tmp_path, capsys):
    copy = tmp_path / "copied_sampler"
    shutil.copytree(padded["path"], copy)
    cli.main(["sample", str(copy), "--info"])
    printed = json.loads(capsys.readouterr().out)
    assert printed == read_sampler_metadata(padded["loaded"])
    # --pad is for old exports only: ignored, with a warning.
    cli.main(
        [
            "sample",
            str(copy),
            "--num",
            "2",
            "--pad",
            "3",
            "--out",
            str(tmp_path / "g.png"),
        ]
    )
    assert "--pad ignored" in capsys.readouterr().err
    assert Image.open(tmp_path / "g.png").size == (2 * 28, 28)


def _old_export(vae, vae2, path):
    """The export of vae_balance before metadata: unnamed, padded outputs."""
    sampler = TwoStageSampler(vae.decoder, vae2.decoder, vae.encoder)
    archive = keras.export.ExportArchive()
    archive.track(sampler)
    u = tf.TensorSpec((None, sampler.latent_dim), tf.float32, name="u")
    z = tf.TensorSpec((None, 4), tf.float32, name="z")
    archive.add_endpoint("sample", lambda u: sampler(u), input_signature=[u])
    archive.add_endpoint("decode", lambda z: vae.decoder(z), input_signature=[z])
    archive.write_out(str(path), verbose=False)


def test_cli_samples_an_old_export_with_a_fallback_and_says_what_it_lacks(
    padded, tmp_path, capsys
):
    run = tmp_path / "run"
    _old_export(padded["vae"], padded["vae2"], run / "sampler")
    loaded = tf.saved_model.load(str(run / "sampler"))
    assert read_sampler_metadata(loaded) is None
    assert read_sampler_metadata(str(run / "sampler")) is None

    def sample(*flags):
        out = tmp_path / "grid.png"
        argv = ["sample", str(run / "sampler"), "--num", "4", "--out", str(out)]
        cli.main([*argv, *flags])
        return Image.open(out).size, capsys.readouterr()

    # Alone: nothing says how to crop; it writes the 32x32 network images.
    size, printed = sample()
    assert size == (64, 64)
    assert "has no metadata" in printed.err and "older vae_balance" in printed.err
    assert "Cropping 0 pixels" in printed.err and "no config.json" in printed.err
    size, printed = sample("--pad", "2")
    assert size == (56, 56) and "Cropping 2 pixels per side (--pad)" in printed.err
    # The run's config.json beside it, as `train` leaves it.
    (run / "config.json").write_text(json.dumps(padded["config"].to_dict()))
    size, printed = sample()
    assert size == (56, 56)
    assert "Cropping 2 pixels" in printed.err and "config.json" in printed.err

    cli.main(["sample", str(run / "sampler"), "--info"])
    printed = capsys.readouterr()
    assert "has no metadata" in printed.err
    described = json.loads(printed.out)["signatures"]
    assert described["sample"]["outputs"] == {
        "output_0": {"dtype": "float32", "shape": [None, 32, 32, 1]}
    }


def test_cli_refuses_a_saved_model_that_is_not_a_sampler(tmp_path):
    module = tf.Module()
    module.double = tf.function(
        lambda x: {"y": 2 * x}, input_signature=[tf.TensorSpec((None,), tf.float32)]
    )
    tf.saved_model.save(module, str(tmp_path / "other"), signatures=module.double)
    with pytest.raises(SystemExit, match="neither a `generate` nor a `sample`"):
        cli.main(["sample", str(tmp_path / "other"), "--out", str(tmp_path / "g.png")])
    assert not (tmp_path / "g.png").exists()
