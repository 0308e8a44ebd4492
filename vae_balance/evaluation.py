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
``python -m vae_balance fid REAL FAKE``.
"""

import json
import os
import time

import numpy as np

from vae_balance import batchnorm, metrics

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


# ---------------------------------------------------------------- sources
def load_images(source):
    """Images of an ``.npz`` / ``.npy`` file or a folder, as (n, h, w, c).

    An ``.npz`` gives its ``"images"`` array, else its first array. Arrays
    must be uint8 in [0, 255] or floats in [0, 1]; a folder's images (PNG,
    JPEG, ...; sorted by path, searched recursively) must all have the same
    size and are read as grayscale if they all are, else RGB (uint8).
    """
    source = os.fspath(source)
    if os.path.isdir(source):
        return _load_folder(source)
    if not os.path.isfile(source):
        raise FileNotFoundError(f"No such image file or folder: {source!r}.")
    if source.endswith(".npz"):
        with np.load(source) as archive:
            if not archive.files:
                raise ValueError(f"{source} holds no arrays.")
            key = "images" if "images" in archive.files else archive.files[0]
            images = archive[key]
    elif source.endswith(".npy"):
        images = np.load(source)
    else:
        raise ValueError(
            f"Cannot read images from {source!r}: give an .npz / .npy file or a "
            "folder of images."
        )
    return _check_images(images, source)


def _load_folder(folder):
    from PIL import Image

    paths = sorted(
        os.path.join(root, name)
        for root, _, names in os.walk(folder)
        for name in names
        if name.lower().endswith(IMAGE_EXTENSIONS)
    )
    if not paths:
        raise ValueError(f"No images ({', '.join(IMAGE_EXTENSIONS)}) under {folder!r}.")
    opened = [Image.open(path) for path in paths]
    mode = "L" if all(image.mode in ("L", "1", "I;16") for image in opened) else "RGB"
    arrays = []
    for path, image in zip(paths, opened):
        with image:
            array = np.asarray(image.convert(mode), dtype=np.uint8)
        if arrays and array.shape != arrays[0].shape:
            raise ValueError(
                f"{path} is {array.shape[1]}x{array.shape[0]}, unlike "
                f"{paths[0]} ({arrays[0].shape[1]}x{arrays[0].shape[0]}); FID "
                "needs images of one size per set."
            )
        arrays.append(array)
    images = np.stack(arrays)
    return images[..., None] if images.ndim == 3 else images


def _check_images(images, what):
    images = np.asarray(images)
    if images.ndim == 3:  # (n, h, w) grayscale
        images = images[..., None]
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise ValueError(
            f"{what}: expected images (n, h, w) or (n, h, w, 1 or 3), got shape "
            f"{images.shape}."
        )
    if images.dtype == np.uint8:
        return images
    if not np.issubdtype(images.dtype, np.floating):
        raise ValueError(
            f"{what}: images must be uint8 (0-255) or floats in [0, 1], got "
            f"{images.dtype}."
        )
    if not np.all(np.isfinite(images)):
        raise ValueError(f"{what}: images contain NaN or Inf.")
    low, high = float(images.min()), float(images.max())
    if low < -1e-3 or high > 1 + 1e-3:
        raise ValueError(
            f"{what}: float images must be in [0, 1], found [{low:.3g}, "
            f"{high:.3g}]; divide 0-255 images by 255."
        )
    return images.astype(np.float32)


def fid_from_sources(real, fake, feature_extractor=None, batch_size=50, verbose=1):
    """FID between two image sets: arrays, ``.npz`` / ``.npy`` files, folders.

    Args:
        real, fake: (n, h, w, c) arrays (uint8 or floats in [0, 1]) or paths
            (see `load_images`). Sizes may differ between the two sets: every
            image is resized to the network's input.
        feature_extractor: callable images -> features; None: the standard FID
            Inception network (weights converted once on first use, docs/fid.md).
        batch_size: images per forward pass.
        verbose: progress bars.

    Returns:
        The FID, a Python float.
    """
    if feature_extractor is None:
        from vae_balance.inception import get_feature_extractor

        feature_extractor = get_feature_extractor()
    sets = []
    for name, source in (("real", real), ("fake", fake)):
        if isinstance(source, np.ndarray):
            images = _check_images(source, name)
        else:
            images = load_images(source)
        sets.append(
            metrics.extract_features(
                images, feature_extractor, batch_size=batch_size, verbose=verbose
            )
        )
    return metrics.fid_from_features(*sets)


# -------------------------------------------------------------- workdir
def _load_workdir(workdir):
    import keras

    import vae_balance  # noqa: F401  (registers the serialisable classes)

    config_path = os.path.join(workdir, "config.json")
    if not os.path.isfile(config_path):
        raise FileNotFoundError(
            f"{config_path} not found: is {workdir!r} a training work directory?"
        )
    with open(config_path) as f:
        config = json.load(f)
    models = []
    for stage in ("stage1", "stage2"):
        path = os.path.join(workdir, f"{stage}.keras")
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"{path} not found: the run has not finished {stage} (train "
                "again with the same --workdir to resume)."
            )
        models.append(keras.saving.load_model(path, compile=False))
    return config, models[0], models[1]


def _load_test_images(config, num_images, data_dir):
    from vae_balance import data
    from vae_balance.presets import VAEConfig

    dataset = data.load_split(
        VAEConfig.from_dict(config),
        "test",
        data_dir=data_dir,
        dtype="uint8",
        limit=num_images,
    )
    return np.stack(list(dataset.as_numpy_iterator()))


def _fit_test_images(images, image_shape, pad):
    """Test images at the network's shape (padding native ones if needed)."""
    images = _check_images(images, "test_images")
    if images.shape[1:] == image_shape:
        return images
    native = (image_shape[0] - 2 * pad, image_shape[1] - 2 * pad, image_shape[2])
    if pad and images.shape[1:] == native:
        return np.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    raise ValueError(
        f"Test images of shape {images.shape[1:]} do not fit the model's input "
        f"{image_shape}" + (f" (or {native} before padding)." if pad else ".")
    )


def _crop(images, pad):
    return images[:, pad:-pad, pad:-pad, :] if pad else images


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
    config, vae, vae2 = _load_workdir(workdir)
    image_shape = tuple(int(d) for d in vae.encoder.inputs[0].shape[1:])
    pad = int(config.get("pad", 0) or 0)
    if test_images is None:
        test_images = _load_test_images(config, num_images, data_dir)
    real = _fit_test_images(test_images, image_shape, pad)[:num_images]
    num = len(real)
    if num < 2:
        raise ValueError(f"Need at least 2 test images, got {num}.")
    x = real.astype(np.float32) / 255.0 if real.dtype == np.uint8 else real
    if feature_extractor is None:
        from vae_balance.inception import get_feature_extractor

        feature_extractor = get_feature_extractor()
    rng = np.random.default_rng(seed)
    # The job recomputes stage 1's BatchNorm statistics; a run that skipped
    # it (--no-recalibrate-bn, an older version) is flagged here.
    bn_inference, bn_training = batchnorm.check_batchnorm(
        vae, x[:1000], batch_size, what=os.path.join(workdir, "stage1.keras")
    )

    def predict(model, inputs):
        return np.asarray(model.predict(inputs, batch_size=batch_size, verbose=0))

    def features(images, label):
        if verbose:
            print(f"Features of {label} ({len(images)} images):")
        return metrics.extract_features(
            _crop(images, pad), feature_extractor, batch_size, verbose
        )

    # Stage 1: encode, reconstruct from a sampled z (BN in inference mode).
    z_mean, z_log_sigma = (
        np.asarray(a) for a in vae.encoder.predict(x, batch_size=batch_size, verbose=0)
    )
    z = z_mean + np.exp(z_log_sigma) * rng.standard_normal(z_mean.shape)
    z = z.astype(np.float32)
    reconstructions = predict(vae.decoder, z)
    mse = float(np.mean((x - reconstructions) ** 2))
    first_latent = z_mean.shape[1]
    gen1 = predict(
        vae.decoder, rng.standard_normal((num, first_latent)).astype(np.float32)
    )
    # Stage 2: codes of the stage-1 latents, and generation through it.
    u_mean, u_log_sigma = (
        np.asarray(a) for a in vae2.encoder.predict(z, batch_size=batch_size, verbose=0)
    )
    second_latent = u_mean.shape[1]
    u = rng.standard_normal((num, second_latent)).astype(np.float32)
    z_generated = predict(vae2.decoder, u)
    gen2 = predict(vae.decoder, z_generated)
    gen2_adjusted = predict(vae.decoder, metrics.adjust_latents(z_generated))

    real_features = features(real, "the test images")
    fid = {}
    for key, label, images in (
        ("rec", "REC", reconstructions),
        ("gen1", "GEN-1", gen1),
        ("gen2", "GEN-2", gen2),
        ("gen2_adjusted", "GEN-2 adjusted", gen2_adjusted),
    ):
        fid[key] = metrics.fid_from_features(real_features, features(images, label))

    stage2 = _latent_report(u_mean, u_log_sigma)
    stage2["generated_latent_variance"] = float(z_generated.var(axis=0).mean())
    results = {
        "workdir": os.path.abspath(workdir),
        "name": config.get("name"),
        "dataset": config.get("dataset"),
        "num_images": num,
        "seed": seed,
        "feature_extractor": getattr(
            feature_extractor, "name", type(feature_extractor).__name__
        ),
        "fid_image_shape": list(_crop(real[:1], pad).shape[1:]),
        "fid": fid,
        # gen2_adjusted: metrics.adjust_latents, each latent rescaled to
        # variance 1 over the generated set.
        "adjust_target_variance": 1.0,
        "reconstruction_mse": mse,
        # Inference-mode vs training-mode (batch statistics) MSE of decoded
        # z_mean on the first 1,000 test images: about equal when BatchNorm's
        # moving statistics match the weights.
        "batchnorm_check": {"inference_mse": bn_inference, "training_mse": bn_training},
        "stage1": _latent_report(z_mean, z_log_sigma),
        "stage2": stage2,
        "seconds": round(time.time() - start, 1),
    }
    _write_reports(workdir, results)
    return results


def _write_reports(workdir, results):
    json_path = os.path.join(workdir, "evaluation.json")
    tmp = f"{json_path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(results, f, indent=2)
        f.write("\n")
    os.replace(tmp, json_path)
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
    md_path = os.path.join(workdir, "evaluation.md")
    with open(md_path + ".tmp", "w") as f:
        f.write("\n".join(lines))
    os.replace(md_path + ".tmp", md_path)


# ------------------------------------------------------------------ CLI
def _at_least_two(text):
    import argparse

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
    except (FileNotFoundError, ValueError) as error:
        raise SystemExit(f"error: {error}") from None
    with open(os.path.join(args.workdir, "evaluation.md")) as f:
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
