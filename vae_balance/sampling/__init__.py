"""The sampling wing: drawing images from a trained run.

Public names: `TwoStageSampler`, `encode_dataset`, `latent_dataset`
(`vae_balance.sampling.two_stage`), `LatentGMM`, `fit_gmm`
(`vae_balance.sampling.gmm`), `build_samplers`, `code_variance`
(`vae_balance.sampling.latent`),
`LoadedRun`, `load_run` (`vae_balance.sampling.run`).
"""

from vae_balance.sampling.gmm import LatentGMM, fit_gmm
from vae_balance.sampling.latent import build_samplers, code_variance
from vae_balance.sampling.run import LoadedRun, load_run
from vae_balance.sampling.two_stage import (
    TwoStageSampler,
    encode_dataset,
    latent_dataset,
)

__all__ = [
    "LatentGMM",
    "LoadedRun",
    "TwoStageSampler",
    "build_samplers",
    "code_variance",
    "encode_dataset",
    "fit_gmm",
    "latent_dataset",
    "load_run",
]
