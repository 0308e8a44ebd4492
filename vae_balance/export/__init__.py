"""The export wing: the sampler as a SavedModel loadable without vae_balance.

Public names: `export_sampler`, `read_sampler_metadata`
(`vae_balance.export.savedmodel`).
"""

from vae_balance.export.savedmodel import export_sampler, read_sampler_metadata

__all__ = ["export_sampler", "read_sampler_metadata"]
