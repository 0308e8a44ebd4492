"""The export wing: the sampler as a SavedModel loadable without vae_balance.

Public names: `export_sampler` (`vae_balance.export.savedmodel`),
`read_sampler_metadata` (`vae_balance.export.metadata`).
"""

from vae_balance.export.metadata import read_sampler_metadata
from vae_balance.export.savedmodel import export_sampler

__all__ = ["export_sampler", "read_sampler_metadata"]
