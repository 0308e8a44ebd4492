"""evaluate_workdir beyond the paper: every sampler's FID / KID / precision /
recall, the likelihood, the GMM, the interpolation grid, the protocol, and
the feature cache (a second evaluation computes nothing new)."""

import json
import math
import os
import shutil

import keras
import numpy as np
import pytest
from fid_helpers import needs_wheel
from test_metrics import tiny_extractor

from vae_balance.cli import evaluate as evaluate_commands
from vae_balance.evaluation import protocol as evaluation
from vae_balance.fid.feature_cache import FeatureCache, images_sha256, weights_sha256
from vae_balance.fid.inception import get_feature_extractor

SETS = ("rec", "gen1", "gen2", "gen2_adjusted", "gmm")
SCORES = {"fid", "kid", "kid_std", "precision", "recall"}


class CountingExtractor:
    """The tiny feature network, counting the images it is given."""

    def __init__(self):
        self.model = tiny_extractor()
        self.name = "tiny_features"
        self.images = 0

    def __call__(self, images):
        self.images += len(images)
        return self.model(images)


@pytest.fixture(scope="module")
def run(tiny_run, tmp_path_factory):
    """A copy of the session's trained "tiny" two-stage run, latents.npz
    included; the tests below evaluate it in turn (the second evaluation
    reads the first one's cache)."""
    workdir = tmp_path_factory.mktemp("evaluation") / "run"
    ignore = shutil.ignore_patterns(".lock")
    shutil.copytree(tiny_run["workdir"], workdir, ignore=ignore)
    return workdir


TEST_IMAGES = np.random.default_rng(11).integers(0, 256, (40, 8, 8, 1), np.uint8)


def _evaluate(workdir, extractor, **kwargs):
    settings = {
        "test_images": TEST_IMAGES,
        "num_images": 32,
        "feature_extractor": extractor,
        "batch_size": 16,
        "verbose": 0,
        "gmm_components": 2,
        "nll_samples": 8,
        "interpolation_pairs": 3,
    }
    return evaluation.evaluate_workdir(workdir, **{**settings, **kwargs})


def test_evaluate_reports_every_sampler_the_likelihood_and_the_protocol(run):
    extractor = CountingExtractor()
    results = _evaluate(run, extractor)
    # Real and five generated sets, 32 images each.
    assert extractor.images == 6 * 32
    for name in SETS:
        assert set(results[name]) == SCORES, name
        assert results[name]["fid"] == results["fid"][name] >= 0
        assert 0 <= results[name]["precision"] <= 1
        assert 0 <= results[name]["recall"] <= 1
        assert math.isfinite(results[name]["kid"]) and results[name]["kid_std"] >= 0
    assert results["labels"]["gmm"] == "GMM (2 components)"
    assert results["gmm_fit"]["num_components"] == 2
    assert os.path.isfile(run / "gmm.npz")

    # NLL of the 40 test images (fewer than the default 1,000), native 8x8x1.
    assert results["likelihood"]["num_images"] == 40
    assert results["likelihood"]["num_samples"] == 8
    assert results["likelihood"]["dimensions"] == 64
    nll, bits = results["nll_nats"], results["nll_bits_per_dim"]
    assert bits == pytest.approx((nll / 64 + math.log(255)) / math.log(2))
    assert results["elbo"]["bits_per_dim"] == pytest.approx(
        (-results["elbo"]["nats"] / 64 + math.log(255)) / math.log(2)
    )
    assert results["likelihood"]["gamma_squared"] == pytest.approx(
        float(keras.saving.load_model(run / "stage1.keras").gamma) ** 2, rel=1e-6
    )

    protocol = results["protocol"]
    assert (protocol["num_images"], protocol["num_generated"]) == (32, 32)
    assert protocol["network"] == "tiny_features"
    assert len(protocol["weights_sha256"]) == 64
    assert "resize" in protocol and protocol["precision_recall"]["k"] == 3
    assert protocol["kid"]["subset_size"] == 32
    assert results["stage1"]["latent_dim"] == 4
    assert results["interpolations"] == os.path.join("images", "interpolations.png")
    assert os.path.isfile(run / "images" / "interpolations.png")

    with open(run / "evaluation.json") as f:
        assert json.load(f) == results
    report = (run / "evaluation.md").read_text()
    for label in ("| REC |", "| GEN-1 |", "| GEN-2 |", "| GEN-2 adjusted |"):
        assert label in report
    assert "| GMM (2 components) |" in report
    assert f"{results['gmm']['fid']:.2f}" in report
    assert f"{bits:.4f} bits/dim" in report


def test_a_second_evaluation_computes_nothing_new(run):
    first = _evaluate(run, CountingExtractor())
    extractor = CountingExtractor()
    second = _evaluate(run, extractor)
    assert extractor.images == 0  # every set's features from the cache
    assert second["cache"]["computed"] == []
    assert "likelihood" in second["cache"]["reused"]
    for name in SETS:
        assert second[name] == first[name]
    assert second["nll_nats"] == first["nll_nats"]
    assert sorted(os.listdir(run / "features")) == sorted(
        [f"{name}.npz" for name in ("real", *SETS)] + ["results.json"]
    )

    # Another seed: new generated sets and scores, the same real features.
    extractor = CountingExtractor()
    other = _evaluate(run, extractor, seed=1)
    assert extractor.images == 5 * 32
    assert "real" in other["cache"]["reused"]
    assert other["gen1"]["fid"] != first["gen1"]["fid"]
    # Other weights of the network: every set again.
    changed = CountingExtractor()
    changed.model = tiny_extractor(seed=1)
    _evaluate(run, changed, seed=1)
    assert changed.images == 6 * 32


def test_the_real_features_are_shared_between_runs_only_when_they_match(run, tmp_path):
    shared = tmp_path / "shared"
    copy = tmp_path / "copy"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("features"))
    _evaluate(run, CountingExtractor(), shared_feature_cache=str(shared))
    assert len(list(shared.glob("real-*.npz"))) == 1
    extractor = CountingExtractor()
    results = _evaluate(copy, extractor, shared_feature_cache=str(shared))
    assert extractor.images == 5 * 32  # not the real set
    assert "real" in results["cache"]["reused"]
    extractor = CountingExtractor()  # other test images: no match
    _evaluate(
        copy,
        extractor,
        shared_feature_cache=str(shared),
        test_images=TEST_IMAGES[::-1].copy(),
    )
    # The real set and their reconstructions are new; the generated sets
    # (the same seed, the same draws) are the same images as before.
    assert extractor.images == 2 * 32


def test_without_latents_there_is_no_gmm_and_the_report_says_why(run, tmp_path):
    copy = tmp_path / "old_run"
    ignore = shutil.ignore_patterns("latents.npz", "gmm.npz", "features")
    shutil.copytree(run, copy, ignore=ignore)
    results = _evaluate(copy, CountingExtractor(), nll_images=0, cache=False)
    assert results["gmm"] is None and "gmm" not in results["fid"]
    assert "latents.npz" in results["gmm_fit"]["skipped"]
    assert results["nll_bits_per_dim"] is None and results["elbo"] is None
    assert not os.path.exists(copy / "features")
    assert "| GMM | not measured:" in (copy / "evaluation.md").read_text()


def test_the_cache_key_follows_images_network_and_preprocessing(tmp_path):
    images = np.random.default_rng(0).uniform(size=(4, 8, 8, 1)).astype("float32")
    cache = FeatureCache(tmp_path, CountingExtractor())
    key = cache.key(images)
    assert cache.key(images.copy()) == key
    assert cache.key(images[::-1]) != key
    other = FeatureCache(tmp_path, CountingExtractor())
    other.fingerprint = {**other.fingerprint, "preprocessing": {"resize": "x"}}
    assert other.key(images) != key
    # A quantizing network sees 8-bit levels: a change below half a level
    # leaves them, hence the key, unchanged.
    levels = np.random.default_rng(1).integers(0, 256, (4, 8, 8, 1)) / 255
    levels = levels.astype("float32")
    nudged = levels + np.float32(1e-4)
    assert images_sha256(nudged, quantize=True) == images_sha256(levels, True)
    assert images_sha256(nudged, quantize=False) != images_sha256(levels, False)
    as_uint8 = np.round(levels * 255).astype(np.uint8)
    assert images_sha256(as_uint8, True) == images_sha256(levels, True)
    # A plain function cannot be fingerprinted: nothing is cached.
    plain = FeatureCache(tmp_path / "plain", lambda images: images.mean((1, 2)))
    features, key = plain.features("set", images, lambda x: x.reshape(4, -1))
    assert key is None and not (tmp_path / "plain").exists()


def test_cli_flags_of_evaluate_and_their_defaults():
    import argparse

    parser = argparse.ArgumentParser()
    evaluate_commands.add_subcommands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["evaluate", "runs/x"])
    assert (args.gmm_components, args.nll_images, args.nll_samples) == (10, 1000, 100)
    assert (args.no_nll, args.feature_cache, args.interpolation_pairs) == (
        False,
        True,
        8,
    )
    args = parser.parse_args(
        ["evaluate", "runs/x", "--gmm-components", "0", "--no-nll"]
    )
    assert args.gmm_components == 0 and args.no_nll
    with pytest.raises(SystemExit):
        parser.parse_args(["evaluate", "runs/x", "--nll-samples", "0"])


def test_a_toy_set_of_three_images_has_no_precision_or_recall(run, tmp_path):
    copy = tmp_path / "toy"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("features"))
    results = _evaluate(
        copy, CountingExtractor(), num_images=3, nll_images=0, cache=False
    )
    assert results["gen1"]["precision"] is None and results["gen1"]["recall"] is None
    assert results["gen1"]["fid"] >= 0
    assert "| n/a | n/a |" in (copy / "evaluation.md").read_text()


@needs_wheel
@pytest.mark.slow
def test_the_protocol_names_the_fid_network_its_weights_and_resize(
    run, tmp_path, converted
):
    copy = tmp_path / "inception"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("features"))
    extractor = get_feature_extractor(weights=converted)
    results = _evaluate(
        copy, extractor, num_images=8, nll_images=0, interpolation_pairs=0
    )
    protocol = results["protocol"]
    assert protocol["network"] == results["feature_extractor"] == "fid_inception"
    assert protocol["weights_sha256"] == weights_sha256(extractor.model)
    assert "299x299" in protocol["resize"] and "ResizeBilinear" in protocol["resize"]
    assert protocol["preprocessing"]["quantize"] is True
    assert protocol["image_shape"] == [8, 8, 1]
    assert set(results["fid"]) == set(SETS)
    assert "NOT comparable" not in (copy / "evaluation.md").read_text()
