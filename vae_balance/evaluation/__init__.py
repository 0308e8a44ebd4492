"""The evaluation wing: FID, KID, precision/recall, likelihood and reports.

Public names: `evaluate_workdir` (`vae_balance.evaluation.protocol`),
`fid_from_sources`, `load_images` (`vae_balance.evaluation.image_sets`).
"""

from vae_balance.evaluation.image_sets import fid_from_sources, load_images
from vae_balance.evaluation.protocol import evaluate_workdir

__all__ = ["evaluate_workdir", "fid_from_sources", "load_images"]
