"""GEN-2 matched in the SavedModel: generate_matched is the evaluation's
gen2_matched set at 10,000 draws of seed 0, follows the documented recipe
for any draw, is described in the metadata, and comes from
`python -m vae_balance export` when the run has its latents.npz."""

import shutil

import numpy as np
import pytest
import tensorflow as tf
from conftest import two_stage_workdir
from test_export import _crop

from vae_balance import export_sampler
from vae_balance.cli import main as cli
from vae_balance.export.metadata import describe_signatures, read_sampler_metadata
from vae_balance.sampling import code_variance
from vae_balance.sampling.latent import MatchedSecondStageSampler
from vae_balance.sampling.noise import second_stage_noise
from vae_balance.sampling.rescaling import REFERENCE_NUM, LatentRescaling


@pytest.fixture(scope="module")
def run(padded_stage1, tmp_path_factory):
    """A tiny run (28 -> 32, latent 4) whose codes have variances 4, 1, 0.25
    and 0.01 per dimension, in a work directory, and its export."""
    config, vae, vae2, workdir, rng = two_stage_workdir(padded_stage1, tmp_path_factory)
    z_mean = rng.standard_normal((400, 4)) * [1.9, 0.9, 0.4, 0.05]
    z_log_sigma = np.log(np.full((400, 4), [np.sqrt(0.39), np.sqrt(0.19), 0.3, 0.08]))
    np.savez(workdir / "latents.npz", z_mean=z_mean, z_log_sigma=z_log_sigma)
    path = tmp_path_factory.mktemp("export") / "sampler"
    export_sampler(
        (vae, vae2), path, config=config, code_variances=workdir / "latents.npz"
    )
    return {
        "vae": vae,
        "vae2": vae2,
        "workdir": workdir,
        "variances": code_variance(z_mean, z_log_sigma),
        "path": path,
        "loaded": tf.saved_model.load(str(path)),
    }


def _draw(loaded, n, seed):
    return loaded.signatures["generate_matched"](
        num_samples=tf.constant(n, tf.int64), seed=tf.constant(seed, tf.int64)
    )["images"].numpy()


def test_the_frozen_map_is_the_evaluations_rescaling_of_its_reference_set(
    run, tmp_path
):
    rescaling = LatentRescaling.fit(run["vae2"].decoder, run["variances"])
    np.testing.assert_allclose(run["variances"], [4.0, 1.0, 0.25, 0.0089], rtol=0.15)
    gen2 = run["vae2"].decoder(second_stage_noise(REFERENCE_NUM, 4, 0)).numpy()
    frozen = rescaling(gen2)
    np.testing.assert_allclose(frozen.var(axis=0), run["variances"], rtol=1e-4)
    matched = MatchedSecondStageSampler(
        run["vae"].decoder, run["vae2"].decoder, run["variances"]
    )
    np.testing.assert_allclose(
        frozen, matched.sample_latents(REFERENCE_NUM, 0, batch_size=500), atol=1e-5
    )
    with pytest.raises(ValueError, match="one positive variance per dimension"):
        LatentRescaling.fit(run["vae2"].decoder, [1.0, 1.0])
    wrong = tmp_path / "not_latents.npz"
    np.savez(wrong, x=np.zeros((3, 4)))
    with pytest.raises(ValueError, match="not a run's latents.npz"):
        LatentRescaling.fit(run["vae2"].decoder, wrong)
    with pytest.raises(FileNotFoundError, match="latents.npz not found.*--workdir"):
        LatentRescaling.fit(run["vae2"].decoder, tmp_path / "latents.npz")


def test_generate_matched_is_seeded_and_follows_the_recipe(run):
    loaded = run["loaded"]
    first = _draw(loaded, 6, 1)
    assert first.shape == (6, 28, 28, 1)
    assert 0.0 <= first.min() and first.max() <= 1.0
    np.testing.assert_array_equal(first, _draw(loaded, 6, 1))
    assert not np.allclose(first, _draw(loaded, 6, 2), atol=1e-4)
    rescaling = LatentRescaling.fit(run["vae2"].decoder, run["variances"])
    z = rescaling(run["vae2"].decoder(second_stage_noise(6, 4, 1)).numpy())
    np.testing.assert_allclose(first, _crop(run["vae"].decoder(z)), atol=1e-5)
    # Rescaled, so not generate's images.
    assert not np.allclose(first, loaded.generate(6, 1)["images"], atol=1e-3)
    with pytest.raises(tf.errors.InvalidArgumentError, match="num_samples"):
        _draw(loaded, -1, 1)


def test_the_metadata_describes_the_map_and_its_signature(run):
    metadata = read_sampler_metadata(run["loaded"])
    matched = metadata["matched"]
    assert matched["reference"]["num_samples"] == REFERENCE_NUM
    assert matched["reference"]["seed"] == 0
    np.testing.assert_allclose(matched["target_variances"], run["variances"], rtol=1e-6)
    assert len(matched["center"]) == len(matched["scale"]) == 4
    actual = describe_signatures(run["loaded"])
    assert set(metadata["signatures"]) == set(actual)
    assert (
        metadata["signatures"]["generate_matched"]["inputs"]
        == (actual["generate_matched"]["inputs"])
    )


def test_cli_export_of_a_run_with_latents_has_generate_matched(run, tmp_path, capsys):
    workdir = tmp_path / "run"
    shutil.copytree(run["workdir"], workdir)
    out = tmp_path / "matched"
    cli.main(["export", str(workdir), "--out", str(out), "--no-recalibrate-bn"])
    assert "(with generate_matched)" in capsys.readouterr().out
    np.testing.assert_allclose(
        _draw(tf.saved_model.load(str(out)), 4, 5),
        _draw(run["loaded"], 4, 5),
        atol=1e-6,
    )
    images = tmp_path / "matched.npz"
    cli.main(["sample", str(out), "--matched", "--num", "4", "--out", str(images)])
    with np.load(images) as saved:
        assert saved["x"].shape == (4, 28, 28)  # uint8, grey images without a channel
