"""The ex-post GMM sampler through save, load and export: generate_gmm in the
SavedModel (in this process and a fresh one without vae_balance), its
metadata, and `python -m vae_balance export` picking up a run's gmm.npz."""

import os
import shutil
import textwrap

import numpy as np
import pytest
import tensorflow as tf
from conftest import two_stage_workdir
from test_export import _crop, _python

from vae_balance import export_sampler
from vae_balance.cli import main as cli
from vae_balance.export.metadata import describe_signatures, read_sampler_metadata
from vae_balance.sampling.gmm import GMM_NOISE, LatentGMM
from vae_balance.sampling.latent import GMMSampler
from vae_balance.workdir import GMM_FILE


@pytest.fixture(scope="module")
def run(padded_stage1, tmp_path_factory):
    """A Fashion-MNIST-shaped tiny run (28 -> 32, latent 4) in a work
    directory: both stages, config.json, latents.npz, gmm.npz; and the
    export of (vae, vae2) with the mixture reloaded from gmm.npz."""
    config, vae, vae2, workdir, rng = two_stage_workdir(padded_stage1, tmp_path_factory)
    # Codes in three clusters, so that the mixture's components differ.
    codes = np.concatenate(
        [rng.normal(loc, 0.3, size=(40, 4)) for loc in (-2.0, 0.0, 2.0)]
    ).astype("float32")
    np.savez(workdir / "latents.npz", z_mean=codes, z_log_sigma=codes * 0 - 1)
    fitted = LatentGMM.fit(codes, num_components=3, seed=0)
    fitted.save(workdir / GMM_FILE)
    gmm = LatentGMM.load(workdir / GMM_FILE)  # the round trip
    path = tmp_path_factory.mktemp("export") / "sampler"
    export_sampler((vae, vae2), path, config=config, gmm=gmm)
    return {
        "config": config,
        "vae": vae,
        "vae2": vae2,
        "workdir": workdir,
        "gmm": gmm,
        "fitted": fitted,
        "path": path,
        "loaded": tf.saved_model.load(str(path)),
    }


def _expected(run, n, seed):
    """generate_gmm's images by the documented recipe, with the Keras decoder."""
    z = run["gmm"].sample_stateless(n, seed)
    return _crop(run["vae"].decoder(z, training=False))


def _draw(loaded, n, seed):
    return loaded.signatures["generate_gmm"](
        num_samples=tf.constant(n, tf.int64), seed=tf.constant(seed, tf.int64)
    )["images"].numpy()


def test_the_mixture_round_trips_through_gmm_npz(run):
    for name in ("weights", "means", "covariances"):
        np.testing.assert_array_equal(
            getattr(run["gmm"], name), getattr(run["fitted"], name)
        )
    sampler = GMMSampler(run["vae"].decoder, run["gmm"])
    reference = GMMSampler(run["vae"].decoder, run["fitted"])
    np.testing.assert_array_equal(sampler.generate(5, 3), reference.generate(5, 3))


def test_stateless_draws_follow_the_mixture():
    gmm = LatentGMM(
        [0.2, 0.8], [[-4.0, 0.0], [4.0, 1.0]], [np.eye(2) * 0.5, [[1, 0.5], [0.5, 1]]]
    )
    z = gmm.sample_stateless(40_000, 7).numpy()
    assert z.shape == (40_000, 2) and z.dtype == np.float32
    left, right = z[z[:, 0] < 0], z[z[:, 0] >= 0]
    assert len(left) / len(z) == pytest.approx(0.2, abs=0.01)
    np.testing.assert_allclose(left.mean(axis=0), [-4, 0], atol=0.03)
    np.testing.assert_allclose(
        np.cov(right, rowvar=False), [[1, 0.5], [0.5, 1]], atol=0.04
    )
    np.testing.assert_array_equal(
        gmm.sample_stateless(5, 7), gmm.sample_stateless(5, 7)
    )
    assert not np.allclose(gmm.sample_stateless(5, 7), gmm.sample_stateless(5, 8))


def test_generate_gmm_is_seeded_and_decodes_the_mixture(run):
    loaded = run["loaded"]
    assert "generate_gmm" in loaded.signatures
    first = _draw(loaded, 6, 1)
    assert first.shape == (6, 28, 28, 1)
    assert 0.0 <= first.min() and first.max() <= 1.0
    np.testing.assert_array_equal(first, _draw(loaded, 6, 1))
    assert not np.allclose(first, _draw(loaded, 6, 2), atol=1e-4)
    np.testing.assert_allclose(first, _expected(run, 6, 1), atol=1e-5)
    np.testing.assert_array_equal(loaded.generate_gmm(6, 1)["images"], first)
    with pytest.raises(tf.errors.InvalidArgumentError, match="num_samples"):
        _draw(loaded, -1, 1)


def test_the_metadata_describes_the_mixture_and_its_signature(run):
    metadata = read_sampler_metadata(run["loaded"])
    assert metadata["gmm"]["num_components"] == 3
    assert metadata["gmm"]["latent_dim"] == 4
    assert metadata["gmm"]["noise"] == GMM_NOISE
    assert metadata["gmm"]["fit"]["converged"] is True
    actual = describe_signatures(run["loaded"])
    assert set(metadata["signatures"]) == set(actual)
    table = metadata["signatures"]["generate_gmm"]
    assert table["inputs"] == actual["generate_gmm"]["inputs"]
    assert table["outputs"] == actual["generate_gmm"]["outputs"]
    assert table["outputs"]["images"]["shape"] == [None, 28, 28, 1]


def test_export_without_a_mixture_has_no_generate_gmm(run, tmp_path):
    export_sampler((run["vae"], run["vae2"]), tmp_path / "plain")
    loaded = tf.saved_model.load(str(tmp_path / "plain"))
    assert "generate_gmm" not in loaded.signatures
    assert "generate_matched" not in loaded.signatures  # no code_variances either
    assert read_sampler_metadata(loaded)["gmm"] is None
    assert read_sampler_metadata(loaded)["matched"] is None
    with pytest.raises(SystemExit, match="no generate_matched signature"):
        cli.main(["sample", str(tmp_path / "plain"), "--matched"])
    wrong = LatentGMM([1.0], [[0.0, 0.0]], [np.eye(2)])
    with pytest.raises(ValueError, match="another run"):
        export_sampler((run["vae"], run["vae2"]), tmp_path / "wrong", gmm=wrong)


def test_cli_export_includes_the_runs_gmm_npz(run, tmp_path, capsys):
    workdir = tmp_path / "run"
    shutil.copytree(run["workdir"], workdir)
    out = tmp_path / "with_gmm"
    cli.main(["export", str(workdir), "--out", str(out), "--no-recalibrate-bn"])
    assert "with generate_gmm, 3 components" in capsys.readouterr().out
    loaded = tf.saved_model.load(str(out))
    np.testing.assert_allclose(
        _draw(loaded, 4, 5), _draw(run["loaded"], 4, 5), atol=1e-6
    )
    grid = tmp_path / "gmm.png"
    cli.main(["sample", str(out), "--gmm", "--num", "4", "--out", str(grid)])
    assert grid.exists()

    os.remove(workdir / GMM_FILE)
    cli.main(
        [
            "export",
            str(workdir),
            "--out",
            str(tmp_path / "plain"),
            "--no-recalibrate-bn",
        ]
    )
    plain = str(tmp_path / "plain")
    assert "generate_gmm" not in tf.saved_model.load(plain).signatures
    with pytest.raises(SystemExit, match="no generate_gmm"):
        cli.main(["sample", plain, "--gmm", "--out", str(tmp_path / "x.png")])


RELOAD_SCRIPT = textwrap.dedent(
    """
    import importlib.abc, sys

    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "vae_balance" or name.startswith("vae_balance."):
                raise ModuleNotFoundError(f"{name} is blocked in this test")

    sys.meta_path.insert(0, Blocker())
    import numpy as np
    import tensorflow as tf

    folder, sampler = sys.argv[1], sys.argv[2]
    function = tf.saved_model.load(sampler).signatures["generate_gmm"]
    for seed in (1, 2):
        images = function(
            num_samples=tf.constant(4, tf.int64), seed=tf.constant(seed, tf.int64)
        )["images"]
        np.save(f"{folder}/gmm_{seed}.npy", images.numpy())
    assert "vae_balance" not in sys.modules
    print("reloaded")
    """
)


@pytest.mark.slow
def test_generate_gmm_reloads_without_vae_balance_in_a_fresh_process(run, tmp_path):
    copy = tmp_path / "elsewhere" / "sampler"
    shutil.copytree(run["path"], copy)
    result = _python(["-I", "-c", RELOAD_SCRIPT, str(tmp_path), str(copy)], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    for seed in (1, 2):
        there = np.load(tmp_path / f"gmm_{seed}.npy")
        np.testing.assert_allclose(there, _draw(run["loaded"], 4, seed), atol=1e-6)
        np.testing.assert_allclose(there, _expected(run, 4, seed), atol=1e-5)
