"""The training wing: the resumable two-stage job.

Public names: `train`, `RunResult` (`vae_balance.training.job`),
`RunOptions` (`vae_balance.training.options`).
"""

from vae_balance.training.job import RunResult, train
from vae_balance.training.options import RunOptions

__all__ = ["RunOptions", "RunResult", "train"]
