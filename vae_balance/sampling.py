"""Deprecated import path: re-exports `vae_balance.sampler` and `vae_balance.export`.

Kept for one release so existing ``from vae_balance.sampling import ...``
keeps working. Import from the new modules instead:

- `vae_balance.sampler`: `TwoStageSampler`, `encode_dataset`, `latent_dataset`.
- `vae_balance.export`: `export_sampler`, `sampler_metadata`,
  `read_sampler_metadata`, `describe_signatures`,
  `restore_interrupted_export` and the ``METADATA_*`` / ``GENERATE_NOISE``
  constants (defined in `vae_balance.export_metadata`).
"""

from vae_balance.export import (
    GENERATE_NOISE,
    METADATA_FILE,
    METADATA_FORMAT_VERSION,
    METADATA_SIGNATURE,
    describe_signatures,
    export_sampler,
    read_sampler_metadata,
    restore_interrupted_export,
    sampler_metadata,
)
from vae_balance.sampler import TwoStageSampler, encode_dataset, latent_dataset

__all__ = [
    "GENERATE_NOISE",
    "METADATA_FILE",
    "METADATA_FORMAT_VERSION",
    "METADATA_SIGNATURE",
    "TwoStageSampler",
    "describe_signatures",
    "encode_dataset",
    "export_sampler",
    "latent_dataset",
    "read_sampler_metadata",
    "restore_interrupted_export",
    "sampler_metadata",
]
