"""The evaluation protocol on a trained work directory, and plain FID.

``evaluate_workdir`` measures, against N test images (10,000 in the paper),
on the same 2048-d features of the FID Inception network:

- for REC (reconstructions from a sampled z) and for each latent sampler of
  `vae_balance.sampling.latent` -- GEN-1 (z ~ N(0, I)), GEN-2 (the two-stage VAE),
  GEN-2 adjusted (Asperti's variance renormalisation) and GMM (an ex-post
  Gaussian mixture fitted on the training codes, `vae_balance.sampling.gmm`) -- the
  FID, the KID (`vae_balance.evaluation.metrics`) and the improved precision and recall
  (`vae_balance.evaluation.precision_recall`), N images per set;
- the negative log-likelihood of 1,000 test images in nats and bits per
  dimension, next to the ELBO (`vae_balance.evaluation.likelihood`);
- the reconstruction MSE, and for each stage the variance law and the
  inactive latent counts (both definitions, see `vae_balance.evaluation.metrics`);
- a PNG grid of latent interpolations (`vae_balance.evaluation.interpolation`).

Results go to ``evaluation.json`` and ``evaluation.md`` in the work
directory (docs/evaluation.md describes every number). Features are cached
per image set under ``WORKDIR/features/`` (`vae_balance.fid.feature_cache`): a
second evaluation only computes what changed. CLI: ``python -m vae_balance
evaluate WORKDIR`` and ``python -m vae_balance fid REAL FAKE``
(`vae_balance.cli.evaluate`). Reading image sets and their FID
(`load_images`, `fid_from_sources`) is in `vae_balance.evaluation.image_sets`;
the entries of ``evaluation.json`` are put together by
`vae_balance.evaluation.results`.
"""

import os
import time
import types

import numpy as np

from vae_balance.datasets import pipeline, user_data
from vae_balance.datasets.registry import pad_box
from vae_balance.evaluation import likelihood
from vae_balance.evaluation.image_sets import check_images, minmax_stretch
from vae_balance.evaluation.interpolation import save_interpolations
from vae_balance.evaluation.report import markdown
from vae_balance.evaluation.results import (
    description_entries,
    likelihood_entries,
    protocol_entry,
    score_entries,
    set_entries,
)
from vae_balance.evaluation.scores import score_image_sets
from vae_balance.fid.feature_cache import FeatureCache, images_sha256
from vae_balance.fid.inception import get_feature_extractor
from vae_balance.files import atomic_write, sha256, write_json
from vae_balance.model import batchnorm
from vae_balance.sampling.code_statistics import read_code_variance
from vae_balance.sampling.gmm import DEFAULT_COMPONENTS, fit_gmm
from vae_balance.sampling.latent import build_samplers
from vae_balance.sampling.run import load_run

LABELS = {"rec": "REC", "gen1": "GEN-1", "gen2": "GEN-2"}
# The sets stretched by ``stretch=True`` (Dai & Wipf's per-image min-max).
STRETCHED = {
    "gen2": "gen2_stretched",
    "gen2_matched": "gen2_matched_stretched",
    "gmm": "gmm_stretched",
}
# The generated sets ``sets=`` chooses among (``evaluate --sets``).
SCORED_SETS = ("rec", "gen1", "gen2", "gen2_adjusted", "gen2_matched", "gmm")
# Scored when ``sets`` is None; gen2_matched only when asked for.
DEFAULT_SETS = ("rec", "gen1", "gen2", "gen2_adjusted", "gmm")
SECOND_STAGE_SETS = ("gen2", "gen2_adjusted", "gen2_matched")  # they need stage 2
INTERPOLATION_PAIRS = 8  # rows of images/interpolations.png
INTERPOLATION_STEPS = 10


# -------------------------------------------------------------- workdir
def evaluate_workdir(
    workdir,
    test_images=None,
    num_images=10000,
    data_dir=None,
    feature_extractor=None,
    batch_size=100,
    seed=0,
    verbose=1,
    gmm_components=DEFAULT_COMPONENTS,
    nll_images=likelihood.DEFAULT_NUM_IMAGES,
    nll_samples=likelihood.DEFAULT_NUM_SAMPLES,
    interpolation_pairs=INTERPOLATION_PAIRS,
    cache=True,
    shared_feature_cache=None,
    stretch=False,
    sets=None,
):
    """The evaluation of a trained two-stage run; writes the reports.

    Reads ``config.json``, ``stage1.keras``, ``stage2.keras`` (optional when
    ``sets`` has no GEN-2 set) and ``latents.npz`` (for the mixture)
    from ``workdir``; writes ``gmm.npz``
    (reused while it matches), ``features/``, ``images/interpolations.png``,
    ``evaluation.json`` and ``evaluation.md``. All generated sets have as
    many images as the real one. Images padded by the loader (``config.pad``)
    are cropped back to their native size for the features and the
    likelihood, as in published numbers; the MSE is on what the network sees.

    Args:
        workdir: a training work directory.
        test_images: (n, h, w, c) test images (uint8 or floats in [0, 1]) at
            the network's input shape or the native one before padding;
            None: the dataset's test split through `vae_balance.data`.
        num_images: evaluate on the first ``num_images`` test images (the
            paper: 10,000).
        data_dir: where `vae_balance.data` finds the dataset.
        feature_extractor: callable images -> features; None: the standard
            FID Inception network.
        batch_size: batch size of every forward pass.
        seed: seeds the latent noise of every set (see `_generate_sets`), the
            mixture's fit, KID's subsets and the likelihood's samples.
        verbose: progress bars.
        gmm_components: components of the ex-post mixture; 0: no ``gmm``.
        nll_images: test images of the likelihood (the first ones); 0: none.
        nll_samples: K, importance samples per image.
        interpolation_pairs: rows of the interpolation grid; 0: no grid.
        cache: cache features and scores under ``WORKDIR/features``.
        shared_feature_cache: a folder where the real set's features are
            shared between runs (used only when their key matches).
        stretch: also score each set of `STRETCHED` that is scored with its
            images min-max stretched (`image_sets.minmax_stretch`, as Dai &
            Wipf's Table 1), as ``<set>_stretched``; the others are unchanged.
        sets: names of `SCORED_SETS` to score (None: `DEFAULT_SETS`); the
            others are null (a feature pass saved each).

    Returns:
        The results dict, as written to ``evaluation.json``.
    """
    return _evaluate(types.SimpleNamespace(**locals()))  # the arguments, by name


def _evaluate(args):
    """`evaluate_workdir` on its arguments (a namespace of them, by name)."""
    start = time.time()
    batch_size, seed, verbose = args.batch_size, args.seed, args.verbose
    # Stage 2 is needed only for its sets: without them, a run whose stage 2
    # is not trained yet is evaluated too (its stage-2 rows are null).
    needs_second_stage = args.sets is None or bool(
        check_set_names(args.sets) & set(SECOND_STAGE_SETS)
    )
    run = load_run(args.workdir, second_stage=needs_second_stage)
    test_images, real = _test_images(run, args)
    x = _as_floats(real)
    feature_extractor = args.feature_extractor
    if feature_extractor is None:
        feature_extractor = get_feature_extractor()
    bn_check = _check_batchnorm(run, x, batch_size)
    matched = "gen2_matched" in (args.sets or ())
    sets, labels, gmm_report = _image_sets(
        run, x, args.gmm_components, args.stretch, batch_size, seed, verbose, matched
    )
    sets = _chosen_sets(sets, args.sets)
    features = FeatureCache(
        run.workdir.features_dir if args.cache else None,
        feature_extractor,
        args.shared_feature_cache,
    )
    scores = score_image_sets(
        real, sets, labels, features, run.pad, batch_size, seed, verbose
    )
    nll = _likelihood(
        run, test_images[: args.nll_images], args.nll_samples, seed, features, verbose
    )
    grid = _interpolations(run, test_images, args.interpolation_pairs, batch_size)
    results = {
        **description_entries(run, real, seed, feature_extractor),
        "protocol": {
            **protocol_entry(real, run.pad, features, seed, nll),
            "minmax_stretch": bool(args.stretch),
            "sets": None if args.sets is None else sorted(set(args.sets)),
        },
        **score_entries(scores, labels, gmm_report),
        **likelihood_entries(nll),
        **set_entries(sets, bn_check),
        "interpolations": grid,
        "cache": {"computed": features.computed, "reused": features.reused},
        "seconds": round(time.time() - start, 1),
    }
    _write_reports(run.workdir, results)
    return results


def _test_images(run, args):
    """``(test_images, real)``: the test images at the network's shape and
    the real set, their first ``num_images``.

    They are ``args.test_images`` (padded when given at the native size), else
    the first images of the split, enough for the likelihood's too.
    """
    test_images = args.test_images
    if test_images is None:
        wanted = max(args.num_images, args.nll_images or 0)
        test_images = load_test_images(run.config, wanted, args.data_dir)
    image_shape = tuple(int(d) for d in run.first_stage.encoder.inputs[0].shape[1:])
    test_images = _fit_test_images(test_images, image_shape, run.pad)
    real = test_images[: args.num_images]
    if len(real) < 2:
        raise ValueError(f"Need at least 2 test images, got {len(real)}.")
    return test_images, real


def _check_batchnorm(run, x, batch_size):
    """`batchnorm.check_batchnorm` of stage 1 on the first 1,000 images.

    The job recomputes stage 1's BatchNorm statistics; a run that skipped it
    (--no-recalibrate-bn, an older version) is flagged here.
    """
    return batchnorm.check_batchnorm(
        run.first_stage, x[:1000], batch_size, what=run.paths[0]
    )


def _image_sets(run, x, gmm_components, stretch, batch_size, seed, verbose, matched):
    """``(sets, labels, gmm_report)``: the latent codes and image sets of
    `_generate_sets` (with the stretched ones when asked, and GEN-2 matched
    when ``matched``), their labels and the mixture's fit (or why there is
    none)."""
    variances = _code_variances(run.workdir) if matched else None
    gmm, gmm_report = _mixture(run.workdir, gmm_components, seed, verbose)
    samplers = build_samplers(
        run.first_stage, run.second_stage, gmm, code_variances=variances
    )
    rng = np.random.default_rng(seed)
    sets = _generate_sets(*run.stages, samplers, x, batch_size, rng, seed)
    if stretch:
        sets.update(_stretched_sets(sets, run.pad))
    labels = {**LABELS, **{name: s.label for name, s in samplers.items()}}
    labels.update(
        {s: f"{labels[n]}, stretched" for n, s in STRETCHED.items() if n in labels}
    )
    return sets, labels, gmm_report


def load_test_images(config, num_images=None, data_dir=None):
    """The first ``num_images`` test images of a run's data, uint8: the
    dataset's test split (padded as for training), or your own images'
    held-out split."""
    if config.data:  # your own images: the run's held-out split
        return user_data.held_out_images(config, num_images)
    dataset = pipeline.load_split(
        config, "test", data_dir=data_dir, dtype="uint8", limit=num_images
    )
    return np.stack(list(dataset.as_numpy_iterator()))


def _fit_test_images(images, image_shape, pad):
    """Test images at the network's shape (padding native ones if needed)."""
    images = check_images(images, "test_images")
    if images.shape[1:] == image_shape:
        return images
    top, bottom, left, right = pad_box(pad)
    native = (
        image_shape[0] - top - bottom,
        image_shape[1] - left - right,
        image_shape[2],
    )
    if pad and images.shape[1:] == native:
        return np.pad(images, ((0, 0), (top, bottom), (left, right), (0, 0)))
    raise ValueError(
        f"Test images of shape {images.shape[1:]} do not fit the model's input "
        f"{image_shape}" + (f" (or {native} before padding)." if pad else ".")
    )


def _as_floats(images):
    return images.astype(np.float32) / 255.0 if images.dtype == np.uint8 else images


def sampled_reconstructions(first_stage, x, rng, batch_size=100):
    """REC: ``(z_mean, z_log_sigma, z, images)``, the images decoded from
    z = mu + sigma * eps of ``x`` (eps from the NumPy generator ``rng``;
    BatchNorm in inference mode)."""
    z_mean, z_log_sigma = (
        np.asarray(a)
        for a in first_stage.encoder.predict(x, batch_size=batch_size, verbose=0)
    )
    z = z_mean + np.exp(z_log_sigma) * rng.standard_normal(z_mean.shape)
    z = z.astype(np.float32)
    return z_mean, z_log_sigma, z, _predict(first_stage.decoder, z, batch_size)


def _predict(model, inputs, batch_size):
    return np.asarray(model.predict(inputs, batch_size=batch_size, verbose=0))


def _code_variances(workdir):
    """GEN-2 matched's targets: `code_variance` of the training codes."""
    try:
        return read_code_variance(workdir.latents_path)
    except FileNotFoundError as error:
        raise FileNotFoundError(
            f"{error} GEN-2 matched rescales to the variances of the training "
            "codes; or leave gen2_matched out of --sets."
        ) from error


def _mixture(workdir, num_components, seed, verbose):
    """``(LatentGMM or None, report)``: the run's mixture (`fit_gmm`), or why
    there is none (no latents.npz, or ``num_components`` 0)."""
    if not num_components:
        return None, {"skipped": "disabled (gmm_components=0)"}
    try:
        gmm = fit_gmm(workdir, num_components, seed, verbose=verbose)
    except FileNotFoundError as error:
        print(f"warning: no GMM sampler: {error}")
        return None, {"skipped": str(error)}
    return gmm, dict(gmm.info)


def _generate_sets(first_stage, second_stage, samplers, x, batch_size, rng, seed):
    """The latent codes and the REC and sampler image sets.

    REC decodes z = mu + sigma * eps sampled from stage 1's encoder (BatchNorm
    in inference mode). Then, from the same generator, in this order: GEN-1's
    z (the draws of earlier versions, so their numbers stay comparable) and
    the mixture's draws. GEN-2's u is `second_stage_noise` of ``seed``, the
    noise of the export's ``generate(len(x), seed)``. GEN-2 adjusted
    renormalises GEN-2's very latents: the two sets differ only by the
    renormalisation. Every set has ``len(x)`` images.
    """
    num = len(x)
    z_mean, z_log_sigma, z, reconstructions = sampled_reconstructions(
        first_stage, x, rng, batch_size
    )
    sets = {
        "z_mean": z_mean,
        "z_log_sigma": z_log_sigma,
        "mse": float(np.mean((x - reconstructions) ** 2)),
        "rec": reconstructions,
        "gen1": samplers["gen1"].generate(num, rng, batch_size),
    }
    if second_stage is not None:
        sets.update(_second_stage_sets(second_stage, samplers, z, seed, batch_size))
    if "gmm" in samplers:
        sets["gmm"] = samplers["gmm"].generate(num, rng, batch_size)
    return sets


def _second_stage_sets(second_stage, samplers, z, seed, batch_size):
    """Stage 2's codes of the stage-1 latents ``z``, and GEN-2, GEN-2
    adjusted (and matched, when built) generated through it."""
    u_mean, u_log_sigma = (
        np.asarray(a)
        for a in second_stage.encoder.predict(z, batch_size=batch_size, verbose=0)
    )
    z_generated = samplers["gen2"].sample_latents(len(z), seed, batch_size)
    sets = {
        "u_mean": u_mean,
        "u_log_sigma": u_log_sigma,
        "z_generated": z_generated,
        "gen2": samplers["gen2"].decode(z_generated, batch_size),
    }
    # The renormalised sets: GEN-2's very latents, rescaled.
    for name in ("gen2_adjusted", "gen2_matched"):
        if name in samplers:
            adjusted = samplers[name].adjust(z_generated)
            sets[name] = samplers[name].decode(adjusted, batch_size)
    return sets


def check_set_names(names):
    """The set of ``names``; ValueError naming an unknown one and the valid."""
    names = set(names)
    unknown = sorted(names - set(SCORED_SETS))
    if unknown or not names:
        raise ValueError(
            f"Unknown image set(s) {', '.join(unknown) or '(none given)'}: choose "
            f"among {', '.join(SCORED_SETS)} (a stretched set follows its own)."
        )
    return names


def _chosen_sets(sets, names):
    """``sets`` without the image sets not in ``names`` (None:
    `DEFAULT_SETS`); the latent codes and the MSE stay."""
    names = set(DEFAULT_SETS) if names is None else check_set_names(names)
    names |= {STRETCHED[n] for n in names if n in STRETCHED}
    dropped = {n for n in SCORED_SETS + tuple(STRETCHED.values()) if n not in names}
    return {k: v for k, v in sets.items() if k not in dropped}


def _stretched_sets(sets, pad):
    """GEN-2 and GMM (when fitted) with each image min-max stretched."""
    return {
        stretched: minmax_stretch(sets[name], pad)
        for name, stretched in STRETCHED.items()
        if name in sets
    }


def _likelihood(run, images, num_samples, seed, features, verbose):
    """`likelihood.likelihood_report` of the test images (cached), or None."""
    if len(images) == 0 or not num_samples:
        return None
    inputs = {
        "stage1_sha256": sha256(run.workdir.stage_path("stage1")),
        "images_sha256": images_sha256(images, quantize=False),
        "num_samples": int(num_samples),
        "seed": int(seed),
        "pad": run.pad,
    }

    def compute():
        if verbose:
            print(
                f"Likelihood of {len(images)} test images, K = {num_samples} "
                "importance samples each"
            )
        return likelihood.likelihood_report(
            run.first_stage, images, num_samples, seed, run.pad
        )

    return features.result("likelihood", inputs, compute)


def _interpolations(run, images, pairs, batch_size):
    """``images/interpolations.png`` of the first test images, or None."""
    pairs = min(int(pairs or 0), len(images) // 2)
    if pairs < 1:
        return None
    workdir = run.workdir
    save_interpolations(
        run.first_stage,
        _as_floats(images),
        workdir.interpolations_path,
        num_pairs=pairs,
        steps=INTERPOLATION_STEPS,
        pad=run.pad,
        batch_size=batch_size,
    )
    return os.path.relpath(workdir.interpolations_path, workdir.root)


def _write_reports(workdir, results):
    """``evaluation.json`` and ``evaluation.md``, each written atomically."""
    write_json(workdir.evaluation_json, results)
    atomic_write(workdir.evaluation_md, markdown(results))
