"""Dai & Wipf's per-image min-max stretch: the function, and ``evaluate
--stretch`` scoring GEN-2 and GMM both ways; ``evaluate --sets`` scoring
only the sets asked for."""

import shutil

import numpy as np
import pytest
from test_metrics import tiny_extractor

from vae_balance.cli.main import build_parser
from vae_balance.evaluation import protocol
from vae_balance.evaluation.image_sets import minmax_stretch


def test_each_image_is_stretched_to_the_full_range_on_its_own():
    images = np.zeros((3, 2, 2, 1), np.float32)
    images[0, :, :, 0] = [[0.2, 0.4], [0.3, 0.6]]
    images[1, :, :, 0] = [[0.5, 0.5], [0.5, 0.5]]  # constant: unchanged
    images[2, :, :, 0] = [[0.0, 0.1], [0.05, 0.1]]
    out = minmax_stretch(images)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out[0, :, :, 0], [[0, 0.5], [0.25, 1]], atol=1e-6)
    np.testing.assert_array_equal(out[1], images[1])
    np.testing.assert_allclose(out[2, :, :, 0], [[0, 1], [0.5, 1]], atol=1e-6)
    # uint8 images are read as [0, 255].
    as_bytes = np.array([[[[51], [102]], [[76], [153]]]], np.uint8)
    np.testing.assert_allclose(
        minmax_stretch(as_bytes)[0, :, :, 0], [[0, 51 / 102], [25 / 102, 1]], atol=1e-6
    )


def test_the_range_is_that_of_the_native_region_inside_the_border():
    images = np.full((1, 4, 4, 1), 0.9, np.float32)  # a bright border ...
    images[0, 1:3, 1:3, 0] = [[0.2, 0.3], [0.4, 0.6]]  # ... around 2x2 pixels
    out = minmax_stretch(images, pad=1)
    np.testing.assert_allclose(out[0, 1:3, 1:3, 0], [[0, 0.25], [0.5, 1]], atol=1e-6)


@pytest.fixture(scope="module")
def results(tiny_run, tmp_path_factory):
    """The shared tiny run evaluated twice on a copy: standard, and with
    ``stretch=True`` (the second reads the first one's cached sets)."""
    workdir = tmp_path_factory.mktemp("stretch") / "run"
    shutil.copytree(
        tiny_run["workdir"], workdir, ignore=shutil.ignore_patterns(".lock")
    )
    extractor = tiny_extractor()
    extractor.name = "tiny_features"
    settings = {
        "test_images": tiny_run["test_images"],
        "num_images": 16,
        "feature_extractor": extractor,
        "batch_size": 8,
        "verbose": 0,
        "gmm_components": 2,
        "nll_images": 0,
        "interpolation_pairs": 0,
    }
    standard = protocol.evaluate_workdir(workdir, **settings)
    stretched = protocol.evaluate_workdir(workdir, stretch=True, **settings)
    return standard, stretched, workdir, settings


def test_stretch_adds_stretched_gen2_and_gmm_and_keeps_the_standard_rows(results):
    standard, stretched, workdir, _ = results
    assert "gen2_stretched" not in standard["fid"]
    assert standard["protocol"]["minmax_stretch"] is False
    assert stretched["protocol"]["minmax_stretch"] is True
    for name in ("rec", "gen1", "gen2", "gen2_adjusted", "gmm"):
        assert stretched["fid"][name] == pytest.approx(standard["fid"][name])
    for name, base in (("gen2_stretched", "gen2"), ("gmm_stretched", "gmm")):
        assert np.isfinite(stretched["fid"][name])
        # A stretched set is another image set: another FID.
        assert stretched["fid"][name] != pytest.approx(stretched["fid"][base])
    assert stretched["labels"]["gen2_stretched"] == "GEN-2, stretched"
    assert stretched["labels"]["gmm_stretched"] == "GMM (2 components), stretched"
    report = (workdir / "evaluation.md").read_text()
    assert "| GEN-2, stretched |" in report
    assert "min-max stretched" in report


def test_the_cli_flag_reaches_the_evaluation():
    parser = build_parser()
    assert parser.parse_args(["evaluate", "run", "--stretch"]).stretch is True
    assert parser.parse_args(["evaluate", "run"]).stretch is False


def test_only_the_chosen_sets_are_scored_with_the_same_numbers(results):
    standard, stretched, workdir, settings = results
    # A fresh cache: the chosen sets' features are extracted again, and the
    # others never are (their rows are null).
    shutil.rmtree(workdir / "features")
    chosen = protocol.evaluate_workdir(workdir, stretch=True, sets=["gen2"], **settings)
    assert set(chosen["fid"]) == {"gen2", "gen2_stretched"}
    for name in ("gen2", "gen2_stretched"):
        assert chosen["fid"][name] == pytest.approx(stretched["fid"][name])
    assert chosen["rec"] is None and chosen["gmm"] is None
    assert chosen["protocol"]["sets"] == ["gen2"]
    assert standard["protocol"]["sets"] is None
    assert chosen["reconstruction_mse"] == pytest.approx(standard["reconstruction_mse"])
    computed = set(chosen["cache"]["computed"])
    assert {"gen2", "gen2_stretched"} <= computed
    assert not computed & {"rec", "gen1", "gen2_adjusted", "gmm", "gmm_stretched"}
    report = (workdir / "evaluation.md").read_text()
    assert "| GEN-2, stretched | 0" in report
    assert "| REC | not measured: not asked for (--sets) |" in report


def test_an_unknown_set_is_refused_naming_the_valid_ones():
    with pytest.raises(ValueError, match="Unknown image set.*gen3.*choose among rec"):
        protocol.check_set_names(["gen2", "gen3"])
    parser = build_parser()
    assert parser.parse_args(["evaluate", "run", "--sets", "gen2, gmm"]).sets == [
        "gen2",
        "gmm",
    ]
    assert parser.parse_args(["evaluate", "run"]).sets is None
    with pytest.raises(SystemExit):
        parser.parse_args(["evaluate", "run", "--sets", "gen3"])


def test_stage_one_sets_are_scored_without_a_stage_two(results, tmp_path):
    standard, _, workdir, settings = results
    # A run whose stage 2 is not trained (yet): only stage 1's sets can be scored.
    stage1_only = tmp_path / "run"
    shutil.copytree(workdir, stage1_only)
    (stage1_only / "stage2.keras").unlink()
    chosen = protocol.evaluate_workdir(stage1_only, sets=["rec", "gmm"], **settings)
    for name in ("rec", "gmm"):  # the same draws as with stage 2 loaded
        assert chosen["fid"][name] == pytest.approx(standard["fid"][name])
    assert chosen["stage2"] is None
    assert chosen["stage1"] == pytest.approx(standard["stage1"])
    report = (stage1_only / "evaluation.md").read_text()
    assert "Stage 2: not loaded" in report
    with pytest.raises(FileNotFoundError, match="stage2.keras not found.*resume"):
        protocol.evaluate_workdir(stage1_only, sets=["gmm", "gen2"], **settings)


def test_matched_gen2_is_scored_only_when_asked_for(results, tmp_path):
    standard, _, workdir, settings = results
    assert standard["gen2_matched"] is None
    assert "GEN-2 matched" not in (workdir / "evaluation.md").read_text()
    chosen = protocol.evaluate_workdir(
        workdir, sets=["gen2", "gen2_matched"], stretch=True, **settings
    )
    assert set(chosen["fid"]) == {
        "gen2",
        "gen2_stretched",
        "gen2_matched",
        "gen2_matched_stretched",
    }
    assert chosen["labels"]["gen2_matched_stretched"] == "GEN-2 matched, stretched"
    assert chosen["fid"]["gen2"] == pytest.approx(standard["fid"]["gen2"])
    assert np.isfinite(chosen["fid"]["gen2_matched"])
    assert chosen["fid"]["gen2_matched"] != pytest.approx(chosen["fid"]["gen2"])
    assert "| GEN-2 matched | " in (workdir / "evaluation.md").read_text()
    # It rescales to the training codes' variances: without them, a clear error.
    no_codes = tmp_path / "run"
    shutil.copytree(workdir, no_codes)
    (no_codes / "latents.npz").unlink()
    with pytest.raises(FileNotFoundError, match="latents.npz not found.*gen2_matched"):
        protocol.evaluate_workdir(no_codes, sets=["gen2_matched"], **settings)
