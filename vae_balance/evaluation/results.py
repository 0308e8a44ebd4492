"""The entries of ``evaluation.json``: what was evaluated, how, and the numbers.

`vae_balance.evaluation.protocol.evaluate_workdir` measures; the helpers here
turn its measurements into the results dict, in the order of the file: the
description (`description_entries`), ``protocol`` (`protocol_entry`), each
image set's scores (`score_entries`), the likelihood (`likelihood_entries`),
then the reconstruction MSE, the BatchNorm check and the latent diagnostics
of both stages (`set_entries`, `latent_report`). docs/evaluation.md
describes every number.
"""

import os

import numpy as np

from vae_balance.datasets import pipeline
from vae_balance.evaluation import metrics
from vae_balance.evaluation.precision_recall import DEFAULT_K
from vae_balance.evaluation.scores import KID_SUBSET_SIZE, KID_SUBSETS, SETS
from vae_balance.model import losses
from vae_balance.sampling.code_statistics import latent_variances


def description_entries(run, real, seed, feature_extractor):
    """What was evaluated (a `LoadedRun`), on what, how: the first entries."""
    return {
        "workdir": os.path.abspath(run.workdir.root),
        "name": run.config.name,
        "dataset": run.config.dataset,
        "num_images": len(real),
        "seed": seed,
        "feature_extractor": getattr(
            feature_extractor, "name", type(feature_extractor).__name__
        ),
        "fid_image_shape": list(pipeline.remove_padding(real[:1], run.pad).shape[1:]),
    }


def protocol_entry(real, pad, features, seed, nll):
    """How every number was measured: images, network, weights, resize."""
    fingerprint = features.fingerprint
    preprocessing = fingerprint["preprocessing"] or {}
    return {
        "num_images": len(real),
        "num_generated": len(real),
        "image_shape": list(pipeline.remove_padding(real[:1], pad).shape[1:]),
        "network": fingerprint["network"],
        "weights_sha256": fingerprint["weights_sha256"],
        "resize": preprocessing.get("resize"),
        "preprocessing": preprocessing,
        "kid": {
            "kernel": "(x.y / d + 1)^3",
            "num_subsets": KID_SUBSETS,
            "subset_size": min(KID_SUBSET_SIZE, len(real)),
        },
        "precision_recall": {"k": DEFAULT_K},
        "nll": None
        if nll is None
        else {k: nll[k] for k in ("num_images", "num_samples", "bin_width")},
        "seed": seed,
    }


def score_entries(scores, labels, gmm_report):
    """The FID summary, each set's scores, their labels and the GMM's fit."""
    return {
        "fid": {name: score["fid"] for name, score in scores.items()},
        **{name: scores.get(name) for name in SETS},
        "labels": {name: labels[name] for name in scores},
        "gmm_fit": gmm_report,
    }


def likelihood_entries(report):
    """The top-level likelihood keys of the results (null without it)."""
    if report is None:
        return {"nll_nats": None, "nll_bits_per_dim": None, "elbo": None}
    settings = {k: v for k, v in report.items() if k not in ("elbo",)}
    return {
        "nll_nats": report["nll_nats"],
        "nll_bits_per_dim": report["nll_bits_per_dim"],
        "elbo": report["elbo"],
        "likelihood": settings,
    }


def set_entries(sets, bn_check):
    """The reconstruction MSE, BatchNorm check and latent-space reports."""
    return {
        # gen2_adjusted: latent.adjust_latents, each latent rescaled to
        # variance 1 over the generated set.
        # gen2_matched (when asked for): each to the training codes'
        # variance in it, code_statistics.code_variance.
        "adjust_target_variance": 1.0,
        "reconstruction_mse": sets["mse"],
        # Inference-mode vs training-mode (batch statistics) MSE of decoded
        # z_mean on the first 1,000 test images: about equal when BatchNorm's
        # moving statistics match the weights.
        "batchnorm_check": dict(zip(("inference_mse", "training_mse"), bn_check)),
        **_latent_reports(sets),
    }


def latent_report(z_mean, z_log_sigma):
    """One stage's latent diagnostics: variance law, KL, inactive latents."""
    variance_of_means, mean_variance = latent_variances(z_mean, z_log_sigma)
    return {
        "latent_dim": int(z_mean.shape[1]),
        "variance_law": metrics.variance_law(z_mean, z_log_sigma),
        "variance_law_reference_code": metrics.variance_law(
            z_mean, z_log_sigma, reference_bug=True
        ),
        "mean_variance_of_means": float(variance_of_means.mean()),
        "mean_posterior_variance": float(mean_variance.mean()),
        # KL(q(z|x) || N(0, I)) summed over the latents, mean over the images.
        "kl": float(np.mean(losses.kl_divergence(z_mean, z_log_sigma))),
        "inactive_mean_sigma": int(
            metrics.inactive_latents(z_mean, z_log_sigma, "mean_sigma").sum()
        ),
        "inactive_var_mean": int(
            metrics.inactive_latents(z_mean, z_log_sigma, "var_mean").sum()
        ),
    }


def _latent_reports(sets):
    """The ``stage1`` and ``stage2`` latent diagnostics of the results
    (``stage2`` None for a run evaluated without its stage 2)."""
    second = None
    if "u_mean" in sets:
        second = latent_report(sets["u_mean"], sets["u_log_sigma"])
        second["generated_latent_variance"] = float(
            sets["z_generated"].var(axis=0).mean()
        )
    return {
        "stage1": latent_report(sets["z_mean"], sets["z_log_sigma"]),
        "stage2": second,
    }
