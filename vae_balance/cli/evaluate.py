"""The ``fid`` and ``evaluate`` commands of ``python -m vae_balance``.

``fid REAL FAKE`` measures the FID between two image sets;
``evaluate WORKDIR`` runs `vae_balance.evaluation.protocol.evaluate_workdir` on a
trained run and prints its ``evaluation.md``.
"""

import argparse
import os

from vae_balance.evaluation import likelihood
from vae_balance.evaluation.image_sets import fid_from_sources
from vae_balance.evaluation.protocol import (
    INTERPOLATION_PAIRS,
    SCORED_SETS,
    check_set_names,
    evaluate_workdir,
)
from vae_balance.fid.inception import get_feature_extractor
from vae_balance.sampling.gmm import DEFAULT_COMPONENTS
from vae_balance.workdir import Workdir, WorkdirError


def _at_least_two(text):
    value = int(text)
    if value < 2:
        raise argparse.ArgumentTypeError(f"need at least 2 images, got {value}")
    return value


def _non_negative(text):
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _positive(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _set_names(text):
    names = [name.strip() for name in text.split(",") if name.strip()]
    try:
        check_set_names(names)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return names


def run_fid(args):
    """``fid REAL FAKE``: prints the FID."""
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
    """``evaluate WORKDIR``: writes and prints the run's reports."""
    try:
        extractor = get_feature_extractor(args.network, weights=args.weights)
        results = evaluate_workdir(
            args.workdir,
            num_images=args.num_images,
            data_dir=args.data_dir,
            feature_extractor=extractor,
            batch_size=args.batch_size,
            seed=args.seed,
            gmm_components=args.gmm_components,
            nll_images=0 if args.no_nll else args.nll_images,
            nll_samples=args.nll_samples,
            interpolation_pairs=args.interpolation_pairs,
            cache=args.feature_cache,
            shared_feature_cache=args.shared_feature_cache,
            stretch=args.stretch,
            sets=args.sets,
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


def _add_evaluation_arguments(evaluate):
    """The samplers, likelihood, grid and cache flags of ``evaluate``."""
    evaluate.add_argument(
        "--gmm-components",
        type=_non_negative,
        default=DEFAULT_COMPONENTS,
        help="components of the ex-post Gaussian mixture fitted on the "
        "training set's z_mean (latents.npz), saved as gmm.npz; 0: no GMM "
        f"sampler (default {DEFAULT_COMPONENTS})",
    )
    evaluate.add_argument(
        "--nll-images",
        type=_non_negative,
        default=likelihood.DEFAULT_NUM_IMAGES,
        help="test images of the importance-weighted likelihood "
        f"(default {likelihood.DEFAULT_NUM_IMAGES})",
    )
    evaluate.add_argument(
        "--nll-samples",
        type=_positive,
        default=likelihood.DEFAULT_NUM_SAMPLES,
        help="K, importance samples of q(z|x) per image: K decoder passes per "
        f"image (default {likelihood.DEFAULT_NUM_SAMPLES})",
    )
    evaluate.add_argument(
        "--no-nll", action="store_true", help="skip the likelihood (nll_* null)"
    )
    evaluate.add_argument(
        "--interpolation-pairs",
        type=_non_negative,
        default=INTERPOLATION_PAIRS,
        help="rows of images/interpolations.png; 0: no grid "
        f"(default {INTERPOLATION_PAIRS})",
    )
    evaluate.add_argument(
        "--no-feature-cache",
        dest="feature_cache",
        action="store_false",
        help="recompute every feature and score (default: cached under "
        "WORKDIR/features, reused while images, network and preprocessing "
        "are the same)",
    )
    evaluate.add_argument(
        "--shared-feature-cache",
        default=os.environ.get("VAE_BALANCE_FEATURE_CACHE"),
        help="folder where the test images' features are shared between runs "
        "(reused only when their hash matches; default "
        "$VAE_BALANCE_FEATURE_CACHE, else none)",
    )


def _add_set_arguments(evaluate):
    """Which generated sets ``evaluate`` scores, and how."""
    evaluate.add_argument(
        "--stretch",
        action="store_true",
        help="also score GEN-2 (and GEN-2 matched, when asked) and GMM with each "
        "generated image min-max "
        "stretched, as Dai & Wipf's fid_score.py (comparable with their "
        "Table 1); the standard rows are kept",
    )
    evaluate.add_argument(
        "--sets",
        type=_set_names,
        help="score only these generated sets, comma-separated, among "
        f"{','.join(SCORED_SETS)} (with --stretch their stretched twins "
        "too); each costs a feature pass, ~7 min per 10,000 images on 2 "
        "cores (default: all but gen2_matched); without the gen2 sets, stage "
        "2 is not needed (a run still training it can be scored)",
    )


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
        help="evaluation of a work directory: FID, KID, precision and recall of "
        "REC / GEN-1 / GEN-2 / GEN-2 adjusted / GMM, NLL in bits/dim, ELBO, "
        "MSE, variance law, inactive latents, interpolations -> "
        "evaluation.json / .md",
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
    _add_evaluation_arguments(evaluate)
    _add_set_arguments(evaluate)
    _add_network_arguments(evaluate)
    evaluate.set_defaults(func=run_evaluate)
