"""FID / KID numerics, the latent diagnostics, and the evaluation protocol."""

import json
import os
import shutil

import keras
import numpy as np
import pytest

from vae_balance import sampling
from vae_balance.cli import evaluate as evaluate_commands
from vae_balance.evaluation import image_sets, metrics
from vae_balance.evaluation import protocol as evaluation


def random_covariance(rng, d):
    a = rng.standard_normal((d, d))
    return a @ a.T / d + 0.1 * np.eye(d)


# ----------------------------------------------------------- Frechet
def test_frechet_distance_matches_the_closed_form_for_diagonal_gaussians():
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.standard_normal(16), rng.standard_normal(16)
    s1, s2 = rng.uniform(0.1, 2.0, 16), rng.uniform(0.1, 2.0, 16)
    # Commuting covariances: (s1 s2)^(1/2) = diag(sqrt(s1 s2)).
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(s1 + s2 - 2 * np.sqrt(s1 * s2))
    got = metrics.frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2))
    assert got == pytest.approx(expected, rel=1e-12)


def test_frechet_distance_matches_the_closed_form_for_scaled_full_covariances():
    rng = np.random.default_rng(1)
    sigma = random_covariance(rng, 32)
    mu1, mu2 = rng.standard_normal(32), rng.standard_normal(32)
    # sigma2 = c^2 sigma: tr((sigma sigma2)^(1/2)) = c tr(sigma), so the
    # distance is |mu1 - mu2|^2 + (1 - c)^2 tr(sigma).
    c = 1.7
    expected = np.sum((mu1 - mu2) ** 2) + (1 - c) ** 2 * np.trace(sigma)
    got = metrics.frechet_distance(mu1, sigma, mu2, c**2 * sigma)
    assert got == pytest.approx(expected, rel=1e-10)


def test_frechet_distance_agrees_with_scipy_sqrtm_on_non_commuting_covariances():
    linalg = pytest.importorskip("scipy.linalg")
    rng = np.random.default_rng(2)
    s1, s2 = random_covariance(rng, 24), random_covariance(rng, 24)
    mu1, mu2 = rng.standard_normal(24), rng.standard_normal(24)
    root = linalg.sqrtm(s1 @ s2).real
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * root)
    assert metrics.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(
        expected, rel=1e-9
    )


def test_frechet_distance_is_symmetric_and_zero_for_identical_gaussians():
    rng = np.random.default_rng(3)
    mu, s1, s2 = rng.standard_normal(8), random_covariance(rng, 8), np.eye(8)
    assert metrics.frechet_distance(mu, s1, mu, s1) == pytest.approx(0, abs=1e-10)
    assert metrics.frechet_distance(mu, s1, mu + 1, s2) == pytest.approx(
        metrics.frechet_distance(mu + 1, s2, mu, s1), rel=1e-10
    )


def test_fid_of_a_feature_set_against_itself_is_zero_even_when_singular():
    rng = np.random.default_rng(4)
    for n, d in ((500, 64), (50, 256)):  # full rank, then rank 49 of 256
        features = rng.standard_normal((n, d)) * rng.uniform(0.1, 3, d)
        scale = np.trace(np.cov(features, rowvar=False))
        assert metrics.fid_from_features(features, features) < 1e-9 * scale


def test_fid_of_samples_approaches_the_distance_of_their_gaussians():
    rng = np.random.default_rng(5)
    d = 8
    s1, s2 = random_covariance(rng, d), random_covariance(rng, d)
    mu1, mu2 = np.zeros(d), np.full(d, 0.5)
    x = rng.multivariate_normal(mu1, s1, 200_000)
    y = rng.multivariate_normal(mu2, s2, 200_000)
    expected = metrics.frechet_distance(mu1, s1, mu2, s2)
    assert metrics.fid_from_features(x, y) == pytest.approx(expected, rel=0.02)


def test_sets_smaller_than_the_dimension_give_the_distance_of_their_gaussians():
    # Fewer samples than dimensions: fid_from_features takes the low-rank
    # route (the singular values of A^T B); the d x d route gives the same.
    rng = np.random.default_rng(6)
    d = 256
    x = rng.standard_normal((40, d)) * rng.uniform(0.1, 3, d)
    y = rng.standard_normal((70, d)) @ random_covariance(rng, d) / d + 0.3
    expected = metrics.frechet_distance(
        *metrics.feature_statistics(x), *metrics.feature_statistics(y)
    )
    assert expected > 100
    assert metrics.fid_from_features(x, y) == pytest.approx(expected, rel=1e-9)
    with pytest.raises(ValueError, match="different dimensions"):
        metrics.fid_from_features(x, y[:, :8])


def test_feature_statistics_reject_nan_features_and_too_few_samples():
    features = np.ones((10, 4))
    features[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        metrics.feature_statistics(features)
    with pytest.raises(ValueError, match="at least 2"):
        metrics.feature_statistics(np.ones((1, 4)))
    with pytest.raises(ValueError, match="at least 2"):
        metrics.fid_from_features(np.ones((1, 4)), np.ones((5, 4)))


def test_frechet_distance_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="different shapes"):
        metrics.frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))


# ------------------------------------------------------------------ KID
def test_kid_is_near_zero_for_one_distribution_and_grows_with_the_shift():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((300, 16))
    y = rng.standard_normal((300, 16))
    same, same_std = metrics.kernel_inception_distance(x, y, 10, 150, seed=0)
    small, _ = metrics.kernel_inception_distance(x, y + 0.5, 10, 150, seed=0)
    large, _ = metrics.kernel_inception_distance(x, y + 1.0, 10, 150, seed=0)
    assert abs(same) < 3 * same_std + 1e-3
    assert 0 < small < large
    assert small > 10 * abs(same)


def test_kid_of_one_point_set_matches_the_hand_computed_mmd():
    # m = 2 points per set in d = 1: k(a, b) = (a b + 1)^3.
    x, y = np.array([[0.0], [1.0]]), np.array([[1.0], [2.0]])
    k = lambda a, b: (a * b + 1) ** 3  # noqa: E731
    expected = (
        2 * k(0, 1) / 2
        + 2 * k(1, 2) / 2
        - 2 * (k(0, 1) + k(0, 2) + k(1, 1) + k(1, 2)) / 4
    )
    mean, std = metrics.kernel_inception_distance(x, y, num_subsets=3, seed=1)
    assert mean == pytest.approx(expected)
    assert std == pytest.approx(0.0)


# ---------------------------------------------------------- diagnostics
@pytest.fixture
def codes():
    """Two images, two latents: an active one and a collapsed one."""
    z_mean = np.array([[1.0, 0.0], [-1.0, 0.0]])
    z_log_sigma = np.log(np.array([[0.5, 1.0], [0.5, 1.0]]))
    return z_mean, z_log_sigma


def test_variance_law_by_hand(codes):
    # Var(mu) = [1, 0], E(sigma^2) = [0.25, 1]: mean(1.25, 1) = 1.125.
    assert metrics.variance_law(*codes) == pytest.approx(1.125)
    # The reference code's E(sigma) = [0.5, 1]: mean(1.5, 1) = 1.25.
    assert metrics.variance_law(*codes, reference_bug=True) == pytest.approx(1.25)
    variance_of_means, mean_variance = sampling.latent_variances(*codes)
    np.testing.assert_allclose(variance_of_means, [1.0, 0.0])
    np.testing.assert_allclose(mean_variance, [0.25, 1.0])


def test_inactive_latents_by_both_definitions(codes):
    np.testing.assert_array_equal(
        metrics.inactive_latents(*codes, "mean_sigma"), [False, True]
    )
    np.testing.assert_array_equal(
        metrics.inactive_latents(*codes, "var_mean"), [False, True]
    )
    # Thresholds are overridable: with Var(mu) < 2 both count as inactive.
    assert metrics.inactive_latents(*codes, "var_mean", threshold=2).sum() == 2
    with pytest.raises(ValueError, match="Valid rules"):
        metrics.inactive_latents(*codes, "sigma")


# ------------------------------------------------- feature extraction
def tiny_extractor(seed=0, dim=8):
    """A tiny random-weight stand-in for the Inception network."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((None, None, None))
    x = keras.layers.Lambda(lambda t: keras.ops.mean(t, axis=-1, keepdims=True))(inputs)
    x = keras.layers.Conv2D(dim, 3, activation="tanh")(x)
    features = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, features, name="tiny_features")


def test_extract_features_batches_arrays_and_iterables_alike():
    rng = np.random.default_rng(8)
    images = rng.uniform(size=(23, 8, 8, 1)).astype("float32")
    extractor = tiny_extractor()
    whole = metrics.extract_features(images, extractor, batch_size=23, verbose=0)
    batched = metrics.extract_features(images, extractor, batch_size=5, verbose=0)
    iterable = metrics.extract_features(
        (images[i : i + 7] for i in range(0, 23, 7)), extractor, verbose=0
    )
    assert whole.shape == (23, 8) and whole.dtype == np.float64
    np.testing.assert_allclose(batched, whole, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(iterable, whole, rtol=1e-5, atol=1e-6)


def test_fid_from_sources_reads_npz_and_image_folders(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(9)
    real = rng.integers(0, 256, (12, 8, 8, 1), dtype=np.uint8)
    fake = rng.uniform(size=(10, 8, 8, 1)).astype("float32")
    np.savez(tmp_path / "real.npz", other=np.zeros(3), images=real)
    np.savez(tmp_path / "fake.npz", fake)  # no "images" key: first array
    folder = tmp_path / "real_png"
    folder.mkdir()
    for i, image in enumerate(real):
        Image.fromarray(image[..., 0]).save(folder / f"{i:03d}.png")
    np.testing.assert_array_equal(image_sets.load_images(folder), real)

    extractor = tiny_extractor()
    kwargs = {"feature_extractor": extractor, "verbose": 0}
    from_npz = image_sets.fid_from_sources(
        tmp_path / "real.npz", tmp_path / "fake.npz", **kwargs
    )
    from_folder = image_sets.fid_from_sources(folder, tmp_path / "fake.npz", **kwargs)
    from_arrays = image_sets.fid_from_sources(real, fake, **kwargs)
    assert from_npz > 0
    assert from_folder == pytest.approx(from_npz, rel=1e-9)
    assert from_arrays == pytest.approx(from_npz, rel=1e-9)
    same = image_sets.fid_from_sources(folder, tmp_path / "real.npz", **kwargs)
    assert same == pytest.approx(0, abs=1e-9)


def test_fid_from_sources_rejects_out_of_range_floats(tmp_path):
    np.save(tmp_path / "bad.npy", np.full((4, 8, 8, 1), 255.0, np.float32))
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        image_sets.load_images(tmp_path / "bad.npy")


# ----------------------------------------------------------- evaluation
@pytest.fixture(scope="module")
def tiny_workdir(tiny_run, tmp_path_factory):
    """A copy of the session's trained "tiny" two-stage run (evaluation
    writes its reports into it), without latents.npz: no mixture, the
    paper's four sets only."""
    workdir = tmp_path_factory.mktemp("evaluation") / "run"
    ignore = shutil.ignore_patterns(".lock", "latents.npz")
    shutil.copytree(tiny_run["workdir"], workdir, ignore=ignore)
    return str(workdir)


def test_evaluate_workdir_writes_the_paper_protocol_reports(tiny_workdir):
    test_images = np.random.default_rng(11).integers(
        0, 256, (40, 8, 8, 1), dtype=np.uint8
    )
    results = evaluation.evaluate_workdir(
        tiny_workdir,
        test_images=test_images,
        num_images=32,
        feature_extractor=tiny_extractor(),
        batch_size=16,
        verbose=0,
    )
    assert results["num_images"] == 32
    assert results["feature_extractor"] == "tiny_features"
    assert set(results["fid"]) == {"rec", "gen1", "gen2", "gen2_adjusted"}
    assert all(np.isfinite(v) and v >= 0 for v in results["fid"].values())
    assert 0 < results["reconstruction_mse"] < 1
    check = results["batchnorm_check"]
    assert 0 < check["inference_mse"] < 1.5 * check["training_mse"]  # recalibrated
    for stage, latent_dim in (("stage1", 4), ("stage2", 4)):
        report = results[stage]
        assert report["latent_dim"] == latent_dim
        assert report["variance_law"] > 0
        assert 0 <= report["inactive_mean_sigma"] <= latent_dim
        assert 0 <= report["inactive_var_mean"] <= latent_dim
        assert report["kl"] > 0
    with open(os.path.join(tiny_workdir, "evaluation.json")) as f:
        assert json.load(f) == results
    with open(os.path.join(tiny_workdir, "evaluation.md")) as f:
        report = f.read()
    assert "GEN-2 adjusted" in report and "NOT comparable" in report
    assert f"{results['fid']['gen1']:.2f}" in report

    # Seeded: the same call gives the same numbers.
    again = evaluation.evaluate_workdir(
        tiny_workdir,
        test_images=test_images,
        num_images=32,
        feature_extractor=tiny_extractor(),
        batch_size=16,
        verbose=0,
    )
    assert again["fid"] == pytest.approx(results["fid"], rel=1e-6)


def test_evaluate_workdir_reconstruction_mse_is_that_of_the_stage1_model(
    tiny_workdir,
):
    # The REC images decode z = mu + sigma * eps; the MSE is measured on them.
    images = np.random.default_rng(12).uniform(size=(16, 8, 8, 1)).astype("float32")
    results = evaluation.evaluate_workdir(
        tiny_workdir,
        test_images=images,
        feature_extractor=tiny_extractor(),
        verbose=0,
    )
    vae = keras.saving.load_model(os.path.join(tiny_workdir, "stage1.keras"))
    z_mean, z_log_sigma = vae.encoder.predict(images, verbose=0)
    eps = np.random.default_rng(0).standard_normal(z_mean.shape)
    z = (z_mean + np.exp(z_log_sigma) * eps).astype("float32")
    expected = np.mean((images - vae.decoder.predict(z, verbose=0)) ** 2)
    assert results["num_images"] == 16
    assert results["reconstruction_mse"] == pytest.approx(expected, rel=1e-5)
    assert results["stage1"]["variance_law"] == pytest.approx(
        metrics.variance_law(z_mean, z_log_sigma), rel=1e-5
    )


def test_evaluate_workdir_names_what_is_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        evaluation.evaluate_workdir(tmp_path, test_images=np.zeros((4, 8, 8, 1)))


def test_cli_subcommands_are_registered():
    import argparse

    parser = argparse.ArgumentParser()
    evaluate_commands.add_subcommands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["fid", "a.npz", "b"])
    assert (args.real, args.fake, args.network) == ("a.npz", "b", "fid_inception")
    args = parser.parse_args(["evaluate", "runs/x", "--num-images", "500"])
    assert (args.workdir, args.num_images, args.data_dir) == ("runs/x", 500, None)
    assert args.func is evaluate_commands.run_evaluate


def test_the_latent_report_gives_the_mean_kl_solved_by_hand():
    from vae_balance.evaluation.results import latent_report

    # KL per image = 0.5 * sum(mu^2 + sigma^2 - 2 log sigma - 1): image 1
    # (mu 1, 0; sigma 1) gives 0.5, image 2 (mu 0; log sigma log 2, 0) gives
    # 0.5 * (4 - 2 log 2 - 1) = 1.5 - log 2.
    z_mean = np.array([[1.0, 0.0], [0.0, 0.0]], "float32")
    z_log_sigma = np.array([[0.0, 0.0], [np.log(2.0), 0.0]], "float32")
    kl = latent_report(z_mean, z_log_sigma)["kl"]
    assert kl == pytest.approx((0.5 + 1.5 - np.log(2.0)) / 2, rel=1e-6)
