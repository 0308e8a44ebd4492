"""The sampling wing: drawing images from a trained run.

Public names: `TwoStageSampler`, `encode_dataset`, `latent_dataset`
(`vae_balance.sampling.two_stage`), `LatentGMM`, `fit_gmm`
(`vae_balance.sampling.gmm`), `build_samplers` (`vae_balance.sampling.latent`),
`code_variance`, `latent_variances` (`vae_balance.sampling.code_statistics`),
`LatentRescaling` (`vae_balance.sampling.rescaling`),
`LoadedRun`, `load_run` (`vae_balance.sampling.run`).
"""

from vae_balance.sampling.code_statistics import code_variance, latent_variances
from vae_balance.sampling.gmm import LatentGMM, fit_gmm
from vae_balance.sampling.latent import build_samplers
from vae_balance.sampling.rescaling import LatentRescaling
from vae_balance.sampling.run import LoadedRun, load_run
from vae_balance.sampling.two_stage import (
    TwoStageSampler,
    encode_dataset,
    latent_dataset,
)

__all__ = [
    "LatentGMM",
    "LatentRescaling",
    "LoadedRun",
    "TwoStageSampler",
    "build_samplers",
    "code_variance",
    "encode_dataset",
    "fit_gmm",
    "latent_dataset",
    "latent_variances",
    "load_run",
]
