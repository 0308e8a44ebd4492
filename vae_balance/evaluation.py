"""The paper's evaluation protocol on a trained work directory, and plain FID.

``evaluate_workdir`` measures, against N test images (10,000 in the paper):

- FID of REC (reconstructions from a sampled z), GEN-1 (z ~ N(0, I) ->
  decoder 1) and GEN-2 (u ~ N(0, I) -> decoder 2 -> decoder 1), the latter
  also with the variance renormalisation "adjust" of the generated latents;
- the reconstruction MSE;
- for each stage, the variance law and the inactive latent counts (both
  definitions, see `vae_balance.metrics`).

Results go to ``evaluation.json`` and ``evaluation.md`` in the work directory.
CLI: ``python -m vae_balance evaluate WORKDIR`` and
``python -m vae_balance fid REAL FAKE``. Reading image sets and their FID
(`load_images`, `fid_from_sources`) is in `vae_balance.image_sets`, still
importable from here.
"""

import argparse
import os
import time

import keras
import numpy as np

from vae_balance import batchnorm, metrics
from vae_balance.config import VAEConfig
from vae_balance.datasets import pipeline
from vae_balance.image_sets import (  # noqa: F401  (also importable from here)
    IMAGE_EXTENSIONS,
    check_images,
    fid_from_sources,
    load_images,
)
from vae_balance.workdir import STAGES, Workdir, WorkdirError, atomic_write, write_json


# -------------------------------------------------------------- workdir
# Long only by its documented arguments; the body is a sequence of named steps.
def evaluate_workdir(
    workdir,
    test_images=None,
    num_images=10000,
    data_dir=None,
    feature_extractor=None,
    batch_size=100,
    seed=0,
    verbose=1,
):
    """The paper's evaluation of a trained two-stage run; writes the reports.

    Reads ``config.json``, ``stage1.keras`` and ``stage2.keras`` from
    ``workdir``. All generated sets have as many images as the real one.
    Images padded by the loader (``config["pad"]``, 28 -> 32 for
    Fashion-MNIST) are cropped back to their native size for FID, as in
    published numbers; the MSE is measured on what the network sees.

    Args:
        workdir: a training work directory.
        test_images: (n, h, w, c) test images (uint8 or floats in [0, 1]), at
            the network's input shape or at the native shape before padding;
            None: the dataset's test split through `vae_balance.data`.
        num_images: evaluate on the first ``num_images`` test images (the
            paper: 10,000).
        data_dir: where `vae_balance.data` finds the dataset.
        feature_extractor: callable images -> features; None: the standard
            FID Inception network.
        batch_size: batch size of every forward pass.
        seed: seeds the latent noise of REC, GEN-1 and GEN-2.
        verbose: progress bars.

    Returns:
        The results dict, as written to ``evaluation.json``.
    """
    start = time.time()
    workdir = Workdir(workdir)
    config, first_stage, second_stage = _load_workdir(workdir)
    pad = int(config.get("pad", 0) or 0)
    image_shape = tuple(int(d) for d in first_stage.encoder.inputs[0].shape[1:])
    if test_images is None:
        test_images = _load_test_images(config, num_images, data_dir)
    real = _fit_test_images(test_images, image_shape, pad)[:num_images]
    if len(real) < 2:
        raise ValueError(f"Need at least 2 test images, got {len(real)}.")
    x = real.astype(np.float32) / 255.0 if real.dtype == np.uint8 else real
    if feature_extractor is None:
        from vae_balance.inception import get_feature_extractor

        feature_extractor = get_feature_extractor()
    # The job recomputes stage 1's BatchNorm statistics; a run that skipped
    # it (--no-recalibrate-bn, an older version) is flagged here.
    bn_check = batchnorm.check_batchnorm(
        first_stage, x[:1000], batch_size, what=workdir.stage_path("stage1")
    )
    sets = _generate_sets(
        first_stage, second_stage, x, batch_size, np.random.default_rng(seed)
    )
    fid = _fids(real, sets, feature_extractor, pad, batch_size, verbose)
    results = {
        **_description(workdir, config, real, seed, feature_extractor, pad),
        "fid": fid,
        # gen2_adjusted: metrics.adjust_latents, each latent rescaled to
        # variance 1 over the generated set.
        "adjust_target_variance": 1.0,
        "reconstruction_mse": sets["mse"],
        # Inference-mode vs training-mode (batch statistics) MSE of decoded
        # z_mean on the first 1,000 test images: about equal when BatchNorm's
        # moving statistics match the weights.
        "batchnorm_check": dict(zip(("inference_mse", "training_mse"), bn_check)),
        **_latent_reports(sets),
        "seconds": round(time.time() - start, 1),
    }
    _write_reports(workdir, results)
    return results


def _load_workdir(workdir):
    """``(config dict, stage 1, stage 2)`` of a `Workdir`.

    Raises:
        FileNotFoundError: no config.json, or a stage not finished.
        WorkdirError: config.json is not valid JSON.
    """
    config = workdir.read_config()
    if config is None:
        raise FileNotFoundError(
            f"{workdir.config_path} not found: is {workdir.root!r} a training "
            "work directory?"
        )
    models = []
    for stage in STAGES:
        path = workdir.stage_path(stage)
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"{path} not found: the run has not finished {stage} (train "
                "again with the same --workdir to resume)."
            )
        models.append(keras.saving.load_model(path, compile=False))
    return config, models[0], models[1]


def _load_test_images(config, num_images, data_dir):
    dataset = pipeline.load_split(
        VAEConfig.from_dict(config),
        "test",
        data_dir=data_dir,
        dtype="uint8",
        limit=num_images,
    )
    return np.stack(list(dataset.as_numpy_iterator()))


def _fit_test_images(images, image_shape, pad):
    """Test images at the network's shape (padding native ones if needed)."""
    images = check_images(images, "test_images")
    if images.shape[1:] == image_shape:
        return images
    native = (image_shape[0] - 2 * pad, image_shape[1] - 2 * pad, image_shape[2])
    if pad and images.shape[1:] == native:
        return np.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    raise ValueError(
        f"Test images of shape {images.shape[1:]} do not fit the model's input "
        f"{image_shape}" + (f" (or {native} before padding)." if pad else ".")
    )


def _predict(model, inputs, batch_size):
    return np.asarray(model.predict(inputs, batch_size=batch_size, verbose=0))


def _generate_sets(first_stage, second_stage, x, batch_size, rng):
    """The latent codes and the REC, GEN-1, GEN-2 (and adjusted) image sets.

    REC decodes z = mu + sigma * eps sampled from stage 1's encoder (BatchNorm
    in inference mode); GEN-1 decodes z ~ N(0, I); GEN-2 decodes the z that
    stage 2 generates from u ~ N(0, I). Every set has ``len(x)`` images.
    """
    num = len(x)
    z_mean, z_log_sigma = (
        np.asarray(a)
        for a in first_stage.encoder.predict(x, batch_size=batch_size, verbose=0)
    )
    z = z_mean + np.exp(z_log_sigma) * rng.standard_normal(z_mean.shape)
    z = z.astype(np.float32)
    reconstructions = _predict(first_stage.decoder, z, batch_size)
    noise = rng.standard_normal((num, z_mean.shape[1])).astype(np.float32)
    gen1 = _predict(first_stage.decoder, noise, batch_size)
    # Stage 2: codes of the stage-1 latents, and generation through it.
    u_mean, u_log_sigma = (
        np.asarray(a)
        for a in second_stage.encoder.predict(z, batch_size=batch_size, verbose=0)
    )
    u = rng.standard_normal((num, u_mean.shape[1])).astype(np.float32)
    z_generated = _predict(second_stage.decoder, u, batch_size)
    adjusted = metrics.adjust_latents(z_generated)
    return {
        "z_mean": z_mean,
        "z_log_sigma": z_log_sigma,
        "u_mean": u_mean,
        "u_log_sigma": u_log_sigma,
        "z_generated": z_generated,
        "mse": float(np.mean((x - reconstructions) ** 2)),
        "rec": reconstructions,
        "gen1": gen1,
        "gen2": _predict(first_stage.decoder, z_generated, batch_size),
        "gen2_adjusted": _predict(first_stage.decoder, adjusted, batch_size),
    }


def _fids(real, sets, feature_extractor, pad, batch_size, verbose):
    """FID of each generated set against the real images, at native size."""

    def features(images, label):
        if verbose:
            print(f"Features of {label} ({len(images)} images):")
        return metrics.extract_features(
            pipeline.remove_padding(images, pad), feature_extractor, batch_size, verbose
        )

    real_features = features(real, "the test images")
    fid = {}
    for key, label in (
        ("rec", "REC"),
        ("gen1", "GEN-1"),
        ("gen2", "GEN-2"),
        ("gen2_adjusted", "GEN-2 adjusted"),
    ):
        fid[key] = metrics.fid_from_features(real_features, features(sets[key], label))
    return fid


def _latent_report(z_mean, z_log_sigma):
    variance_of_means, mean_variance = metrics.latent_variances(z_mean, z_log_sigma)
    return {
        "latent_dim": int(z_mean.shape[1]),
        "variance_law": metrics.variance_law(z_mean, z_log_sigma),
        "variance_law_reference_code": metrics.variance_law(
            z_mean, z_log_sigma, reference_bug=True
        ),
        "mean_variance_of_means": float(variance_of_means.mean()),
        "mean_posterior_variance": float(mean_variance.mean()),
        "inactive_mean_sigma": int(
            metrics.inactive_latents(z_mean, z_log_sigma, "mean_sigma").sum()
        ),
        "inactive_var_mean": int(
            metrics.inactive_latents(z_mean, z_log_sigma, "var_mean").sum()
        ),
    }


def _description(workdir, config, real, seed, feature_extractor, pad):
    """What was evaluated, on what, how: the first entries of the results."""
    return {
        "workdir": os.path.abspath(workdir.root),
        "name": config.get("name"),
        "dataset": config.get("dataset"),
        "num_images": len(real),
        "seed": seed,
        "feature_extractor": getattr(
            feature_extractor, "name", type(feature_extractor).__name__
        ),
        "fid_image_shape": list(pipeline.remove_padding(real[:1], pad).shape[1:]),
    }


def _latent_reports(sets):
    """The ``stage1`` and ``stage2`` latent diagnostics of the results."""
    second = _latent_report(sets["u_mean"], sets["u_log_sigma"])
    second["generated_latent_variance"] = float(sets["z_generated"].var(axis=0).mean())
    return {
        "stage1": _latent_report(sets["z_mean"], sets["z_log_sigma"]),
        "stage2": second,
    }


def _write_reports(workdir, results):
    """``evaluation.json`` and ``evaluation.md``, each written atomically."""
    write_json(workdir.evaluation_json, results)
    atomic_write(workdir.evaluation_md, _markdown(results))


def _markdown(results):
    """The text of ``evaluation.md``."""
    fid, s1, s2 = results["fid"], results["stage1"], results["stage2"]
    comparable = results["feature_extractor"] == "fid_inception"
    lines = [
        f"# Evaluation of {results['name']} ({results['dataset']})",
        "",
        f"{results['num_images']} test images, seed {results['seed']}, features: "
        f"{results['feature_extractor']}"
        + ("" if comparable else " (NOT comparable with published FIDs)")
        + f", FID on {'x'.join(map(str, results['fid_image_shape']))} images.",
        "",
        "| FID | REC | GEN-1 | GEN-2 | GEN-2 adjusted |",
        "|---|---|---|---|---|",
        f"| | {fid['rec']:.2f} | {fid['gen1']:.2f} | {fid['gen2']:.2f} | "
        f"{fid['gen2_adjusted']:.2f} |",
        "",
        f"Reconstruction MSE: {results['reconstruction_mse']:.5f}",
        "",
        "| latent diagnostics | stage 1 | stage 2 |",
        "|---|---|---|",
        f"| latent dim | {s1['latent_dim']} | {s2['latent_dim']} |",
        f"| variance law mean_j [Var(mu_j) + E(sigma_j^2)] | "
        f"{s1['variance_law']:.3f} | {s2['variance_law']:.3f} |",
        f"| same with E(sigma_j) (reference code) | "
        f"{s1['variance_law_reference_code']:.3f} | "
        f"{s2['variance_law_reference_code']:.3f} |",
        f"| inactive, mean sigma > 0.8 (reference code) | "
        f"{s1['inactive_mean_sigma']} | {s2['inactive_mean_sigma']} |",
        f"| inactive, Var(mu) < 0.01 | {s1['inactive_var_mean']} | "
        f"{s2['inactive_var_mean']} |",
        "",
        f"Mean variance of the stage-2 generated latents: "
        f"{s2['generated_latent_variance']:.3f} (1 after adjust).",
        "",
    ]
    return "\n".join(lines)


# ------------------------------------------------------------------ CLI
def _at_least_two(text):
    value = int(text)
    if value < 2:
        raise argparse.ArgumentTypeError(f"need at least 2 images, got {value}")
    return value


def run_fid(args):
    from vae_balance.inception import get_feature_extractor

    try:
        extractor = get_feature_extractor(args.network, weights=args.weights)
        value = fid_from_sources(
            args.real, args.fake, extractor, batch_size=args.batch_size
        )
    except (FileNotFoundError, ValueError) as error:
        raise SystemExit(f"error: {error}") from None
    print(f"FID {value:.4f}")
    return value


def run_evaluate(args):
    from vae_balance.inception import get_feature_extractor

    try:
        extractor = get_feature_extractor(args.network, weights=args.weights)
        results = evaluate_workdir(
            args.workdir,
            num_images=args.num_images,
            data_dir=args.data_dir,
            feature_extractor=extractor,
            batch_size=args.batch_size,
            seed=args.seed,
        )
    except (FileNotFoundError, ValueError, WorkdirError) as error:
        raise SystemExit(f"error: {error}") from None
    with open(Workdir(args.workdir).evaluation_md) as f:
        print(f.read())
    return results


def _add_network_arguments(parser):
    parser.add_argument(
        "--network",
        default="fid_inception",
        choices=("fid_inception", "keras_inception_v3"),
        help="feature network; only fid_inception (the 2015-12-05 graph) gives "
        "FIDs comparable with published ones",
    )
    parser.add_argument(
        "--weights",
        help="FID Inception .weights.h5, or a .pt/.pth to convert once (default: "
        "$VAE_BALANCE_FID_WEIGHTS, else ~/.cache/vae_balance/)",
    )
    parser.add_argument("--batch-size", type=int, default=50)


def add_subcommands(subparsers):
    """Registers ``fid REAL FAKE`` and ``evaluate WORKDIR`` on a CLI."""
    fid = subparsers.add_parser(
        "fid", help="FID between two image sets (.npz / .npy / folders)"
    )
    fid.add_argument("real", help=".npz (key 'images' or first array), .npy, folder")
    fid.add_argument("fake", help=".npz (key 'images' or first array), .npy, folder")
    _add_network_arguments(fid)
    fid.set_defaults(func=run_fid)

    evaluate = subparsers.add_parser(
        "evaluate",
        help="paper protocol on a work directory: REC / GEN-1 / GEN-2 FID, MSE, "
        "variance law, inactive latents -> evaluation.json / .md",
    )
    evaluate.add_argument("workdir")
    evaluate.add_argument(
        "--num-images",
        type=_at_least_two,
        default=10000,
        help="test images, and images per generated set (paper: 10000)",
    )
    evaluate.add_argument("--data-dir", help="where the test split is")
    evaluate.add_argument("--seed", type=int, default=0)
    _add_network_arguments(evaluate)
    evaluate.set_defaults(func=run_evaluate)
