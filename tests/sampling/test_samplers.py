"""The named latent samplers (gen1, gen2, gen2_adjusted, gen2_matched, gmm) and the
ex-post Gaussian mixture: fit, sampling, gmm.npz and the run's fit_gmm step."""

import os

import numpy as np
import pytest
import tensorflow as tf

from vae_balance.sampling import latent as samplers
from vae_balance.sampling.code_statistics import code_variance
from vae_balance.sampling.gmm import LatentGMM, fit_gmm


@pytest.fixture
def two_clusters():
    """600 2-d codes: 1/3 around (-5, 0) with cov diag(1, 0.25), 2/3 around
    (5, 2) with a correlated covariance."""
    rng = np.random.default_rng(0)
    a = rng.multivariate_normal([-5, 0], [[1, 0], [0, 0.25]], 200)
    b = rng.multivariate_normal([5, 2], [[2, 0.8], [0.8, 1]], 400)
    return np.concatenate([a, b]).astype("float32")


def _by_first_mean(gmm):
    order = np.argsort(gmm.means[:, 0])
    return gmm.weights[order], gmm.means[order], gmm.covariances[order]


# ------------------------------------------------------------------- GMM
def test_gmm_fit_recovers_two_known_clusters(two_clusters):
    gmm = LatentGMM.fit(two_clusters, num_components=2, seed=0)
    weights, means, covariances = _by_first_mean(gmm)
    np.testing.assert_allclose(weights, [1 / 3, 2 / 3], atol=1e-6)  # exact split
    np.testing.assert_allclose(means, [[-5, 0], [5, 2]], atol=0.2)
    np.testing.assert_allclose(covariances[0], [[1, 0], [0, 0.25]], atol=0.25)
    np.testing.assert_allclose(covariances[1], [[2, 0.8], [0.8, 1]], atol=0.35)
    assert gmm.info["converged"] and gmm.info["num_codes"] == 600
    assert gmm.info["covariance_type"] == "full"


def test_gmm_samples_follow_the_mixture_and_are_seeded():
    gmm = LatentGMM(
        weights=[0.25, 0.75],
        means=[[-5.0, 0.0], [5.0, 2.0]],
        covariances=[[[1.0, 0.0], [0.0, 0.25]], [[2.0, 0.8], [0.8, 1.0]]],
    )
    z = gmm.sample(40_000, seed=1)
    assert z.shape == (40_000, 2) and z.dtype == np.float32
    left, right = z[z[:, 0] < 0], z[z[:, 0] >= 0]
    assert len(left) / len(z) == pytest.approx(0.25, abs=0.01)
    np.testing.assert_allclose(np.cov(right, rowvar=False), gmm.covariances[1], 0.05)
    np.testing.assert_allclose(left.mean(axis=0), [-5, 0], atol=0.03)
    np.testing.assert_array_equal(gmm.sample(7, seed=3), gmm.sample(7, seed=3))
    assert not np.allclose(gmm.sample(7, seed=3), gmm.sample(7, seed=4))
    # The documented recipe: components first, then eps, from one generator.
    rng = np.random.default_rng(5)
    c = rng.choice(2, size=3, p=gmm.weights)
    eps = rng.standard_normal((3, 2))
    expected = gmm.means[c] + np.einsum("nij,nj->ni", gmm.cholesky[c], eps)
    np.testing.assert_allclose(gmm.sample(3, seed=5), expected, rtol=1e-6)


def test_gmm_saves_and_loads_as_plain_arrays(two_clusters, tmp_path):
    gmm = LatentGMM.fit(two_clusters, num_components=3, seed=2)
    path = gmm.save(tmp_path / "gmm.npz")
    with np.load(path, allow_pickle=False) as f:  # no pickled objects
        assert sorted(f.files) == ["covariances", "info", "means", "weights"]
        assert f["covariances"].shape == (3, 2, 2)
    loaded = LatentGMM.load(path)
    for name in ("weights", "means", "covariances"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(gmm, name))
    assert loaded.info == gmm.info
    np.testing.assert_array_equal(loaded.sample(9, seed=0), gmm.sample(9, seed=0))


def test_gmm_errors_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match="cannot fit 10 mixture components"):
        LatentGMM.fit(np.zeros((5, 2)), num_components=10)
    with pytest.raises(ValueError, match="sum to 1"):
        LatentGMM([0.5, 0.6], np.zeros((2, 1)), np.ones((2, 1, 1)))
    with pytest.raises(ValueError, match="full"):
        LatentGMM([1.0], np.zeros((1, 3)), np.ones((1, 3)))
    with pytest.raises(FileNotFoundError, match="fit_gmm"):
        LatentGMM.load(tmp_path / "gmm.npz")


def test_fit_gmm_fits_once_on_the_runs_latents_and_refits_when_they_change(
    two_clusters, tmp_path, monkeypatch
):
    with pytest.raises(FileNotFoundError, match="latents.npz"):
        fit_gmm(tmp_path, verbose=0)
    latents = tmp_path / "latents.npz"
    np.savez(latents, z_mean=two_clusters, z_log_sigma=np.zeros_like(two_clusters))
    first = fit_gmm(tmp_path, num_components=2, seed=0, verbose=0)
    assert os.path.isfile(tmp_path / "gmm.npz")
    assert first.num_components == 2 and first.info["num_codes"] == 600

    fits = []
    original = LatentGMM.fit.__func__

    def counting_fit(cls, *args, **kwargs):
        fits.append(args)
        return original(cls, *args, **kwargs)

    monkeypatch.setattr(LatentGMM, "fit", classmethod(counting_fit))
    again = fit_gmm(tmp_path, num_components=2, seed=0, verbose=0)
    assert fits == []  # reused gmm.npz
    np.testing.assert_array_equal(again.means, first.means)
    fit_gmm(tmp_path, num_components=3, seed=0, verbose=0)  # other settings
    assert len(fits) == 1
    np.savez(latents, z_mean=two_clusters[:300], z_log_sigma=two_clusters[:300])
    refitted = fit_gmm(tmp_path, num_components=3, seed=0, verbose=0)
    assert len(fits) == 2 and refitted.info["num_codes"] == 300


# -------------------------------------------------------------- samplers
def test_samplers_share_one_interface_and_decode_their_latents(two_stages):
    vae, vae2 = two_stages
    gmm = LatentGMM([1.0], [[0.0, 1.0, 2.0, 3.0]], [np.eye(4) * 0.5])
    variances = np.array([1.0, 0.5, 0.01, 2.0], np.float32)
    found = samplers.build_samplers(vae, vae2, gmm, code_variances=variances)
    assert tuple(found) == samplers.SAMPLER_NAMES
    for name, sampler in found.items():
        assert sampler.name == name and sampler.label
        z = sampler.sample_latents(6, seed=0, batch_size=4)
        assert z.shape == (6, 4) and z.dtype == np.float32
        np.testing.assert_array_equal(z, sampler.sample_latents(6, 0, 4))
        images = sampler.generate(6, seed=0, batch_size=4)
        assert images.shape == (6, 8, 8, 1)
        expected = vae.decoder.predict(z, verbose=0)
        np.testing.assert_allclose(images, expected, atol=1e-6, err_msg=name)
    assert found["gmm"].label == "GMM (1 components)"
    assert not {"gmm", "gen2_matched"} & set(samplers.build_samplers(vae, vae2))
    with pytest.raises(ValueError, match="fitted on another run"):
        samplers.GMMSampler(vae.decoder, LatentGMM([1.0], [[0.0]], [[[1.0]]]))


def test_samplers_draw_what_the_evaluation_drew_before_them(two_stages):
    """REC's eps, then GEN-1's z from one generator, as the evaluation has
    always drawn them (old numbers stay comparable); GEN-2's u is the
    stateless second_stage_noise, the export's convention (since 0.2.0)."""
    vae, vae2 = two_stages
    n, seed = 10, 3
    rng = np.random.default_rng(seed)
    eps = rng.standard_normal((n, 4))
    noise = rng.standard_normal((n, 4)).astype(np.float32)
    u = tf.random.stateless_normal([n, 4], seed=[seed, 0], alg="philox")
    z_generated = vae2.decoder.predict(u, batch_size=5, verbose=0)
    old = {
        "gen1": vae.decoder.predict(noise, batch_size=5, verbose=0),
        "gen2": vae.decoder.predict(z_generated, batch_size=5, verbose=0),
        "gen2_adjusted": vae.decoder.predict(
            samplers.adjust_latents(z_generated), batch_size=5, verbose=0
        ),
    }
    found = samplers.build_samplers(vae, vae2)
    rng = np.random.default_rng(seed)
    np.testing.assert_array_equal(rng.standard_normal((n, 4)), eps)
    gen1 = found["gen1"].generate(n, rng, batch_size=5)
    gen2_latents = found["gen2"].sample_latents(n, seed, batch_size=5)
    adjusted = found["gen2_adjusted"].adjust(gen2_latents)
    np.testing.assert_array_equal(gen1, old["gen1"])
    np.testing.assert_array_equal(found["gen2"].decode(gen2_latents, 5), old["gen2"])
    np.testing.assert_array_equal(
        found["gen2_adjusted"].decode(adjusted, 5), old["gen2_adjusted"]
    )
    np.testing.assert_allclose(adjusted.var(axis=0), 1.0, rtol=1e-4)
    # An int seed is the same as a fresh generator with that seed.
    np.testing.assert_array_equal(
        found["gen1"].sample_latents(n, seed),
        np.random.default_rng(seed).standard_normal((n, 4)).astype(np.float32),
    )


def test_adjust_restores_the_target_variance_and_keeps_the_mean():
    rng = np.random.default_rng(7)
    z = 0.5 * rng.standard_normal((1000, 3)) + np.array([0.0, 1.0, -2.0])
    adjusted = samplers.adjust_latents(z)
    np.testing.assert_allclose(adjusted.var(axis=0), 1.0, rtol=1e-5)
    np.testing.assert_allclose(adjusted.mean(axis=0), z.mean(axis=0), atol=1e-5)
    # Rescaling only: each dimension is an increasing affine map of the input.
    np.testing.assert_allclose(np.corrcoef(z[:, 0], adjusted[:, 0])[0, 1], 1.0)
    per_dim = samplers.adjust_latents(z, target_variance=[1.0, 4.0, 0.25])
    np.testing.assert_allclose(per_dim.var(axis=0), [1.0, 4.0, 0.25], rtol=1e-5)


def test_matched_gen2_takes_each_dimension_to_the_variance_of_the_codes(two_stages):
    vae, vae2 = two_stages
    rng = np.random.default_rng(1)
    # Codes whose dimensions break the variance law: spreads 1, 0.1 and 0.
    z_mean = rng.standard_normal((5000, 4)) * [1.0, 0.1, 0.0, 1.0]
    z_log_sigma = np.log(np.full((5000, 4), [0.1, 0.01, 0.9, 0.5]))
    variances = code_variance(z_mean, z_log_sigma)
    np.testing.assert_allclose(variances, [1.01, 0.0101, 0.81, 1.25], rtol=0.05)
    matched = samplers.MatchedSecondStageSampler(vae.decoder, vae2.decoder, variances)
    z = matched.sample_latents(500, seed=0, batch_size=100)
    np.testing.assert_allclose(z.var(axis=0), variances, rtol=1e-4)
    gen2 = samplers.SecondStageSampler(vae.decoder, vae2.decoder)
    np.testing.assert_allclose(  # GEN-2's latents, each dimension rescaled
        z.mean(axis=0), gen2.sample_latents(500, 0, 100).mean(axis=0), atol=1e-5
    )
    with pytest.raises(ValueError, match="3 code variances for a 4-d latent space"):
        samplers.MatchedSecondStageSampler(vae.decoder, vae2.decoder, [1.0, 1.0, 1.0])
