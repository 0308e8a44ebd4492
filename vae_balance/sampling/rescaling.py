"""GEN-2 matched with frozen statistics: the exported ``generate_matched``.

`vae_balance.sampling.latent.MatchedSecondStageSampler` (the evaluation's
``gen2_matched`` set) rescales each dimension of GEN-2's latents around the
generated set's own mean and spread, to the variance the training codes have
in it (`vae_balance.sampling.code_statistics.code_variance`). An export draws
any number of images, a few at a time, so it fixes that affine map once:
`LatentRescaling.fit` measures GEN-2's latents of ``REFERENCE_NUM`` draws of
seed ``REFERENCE_SEED`` (the evaluation's set), and every later draw z becomes
``center + (z - center) * scale``. ``generate_matched(10000, 0)`` is therefore
the evaluation's 10,000-image GEN-2 matched set.
"""

import dataclasses
import os

import numpy as np

from vae_balance.sampling.code_statistics import read_code_variance
from vae_balance.sampling.noise import SECOND_STAGE_NOISE, second_stage_noise

REFERENCE_NUM = 10_000
REFERENCE_SEED = 0


@dataclasses.dataclass(frozen=True)
class LatentRescaling:
    """A per-dimension affine map of stage-1 latents, ``center + (z - center) * scale``.

    Attributes:
        center, scale: (latent_dim,) float32.
        target_variances: (latent_dim,) the variances the map gives the
            reference draws (the training codes' `code_variance`).
        reference_num, reference_seed: the GEN-2 draws it was measured on.
    """

    center: np.ndarray
    scale: np.ndarray
    target_variances: np.ndarray
    reference_num: int = REFERENCE_NUM
    reference_seed: int = REFERENCE_SEED

    @classmethod
    def fit(cls, second_decoder, variances, num=REFERENCE_NUM, seed=REFERENCE_SEED):
        """The map taking GEN-2's latents of ``num`` draws of ``seed`` to
        ``variances`` per dimension (around their mean).

        Args:
            second_decoder: the stage-2 decoder (u -> z).
            variances: (latent_dim,) target variances; or the path of a run's
                ``latents.npz``, whose codes give them (`code_variance`).
        """
        if isinstance(variances, (str, os.PathLike)):
            variances = read_code_variance(variances)
        variances = np.asarray(variances, np.float64)
        latent_dim = int(second_decoder.outputs[0].shape[-1])
        if variances.shape != (latent_dim,) or not np.all(variances > 0):
            raise ValueError(
                f"{variances.shape} code variances for a {latent_dim}-d latent "
                "space: give one positive variance per dimension (`code_variance` "
                "of the run's latents.npz)."
            )
        u = second_stage_noise(num, int(second_decoder.inputs[0].shape[-1]), seed)
        z = second_decoder.predict(u, batch_size=500, verbose=0)
        center, scale = rescaling_to(z, variances)
        return cls(
            center.astype(np.float32),
            scale.astype(np.float32),
            variances.astype(np.float32),
            int(num),
            int(seed),
        )

    def __call__(self, z):
        """The rescaled latents: a NumPy array or a tensor, like ``z``."""
        return self.center + (z - self.center) * self.scale

    def metadata(self):
        """The JSON-ready description an export stores (``matched``)."""
        return {
            "center": self.center.tolist(),
            "scale": self.scale.tolist(),
            "target_variances": self.target_variances.tolist(),
            "reference": {
                "num_samples": self.reference_num,
                "seed": self.reference_seed,
                "noise": SECOND_STAGE_NOISE,
            },
        }


def rescaling_to(z, target_variance):
    """``(center, scale)``, float64: the per-dimension affine map
    ``center + (z - center) * scale`` that gives each dimension of ``z`` the
    variance ``target_variance`` over the set, around its mean.

    Args:
        z: (n, latent_dim) latents, n >= 2.
        target_variance: scalar or (latent_dim,) array of variances.
    """
    z = np.asarray(z, np.float64)
    if z.ndim != 2 or len(z) < 2:
        raise ValueError(f"z must be (n >= 2, latent_dim), got shape {z.shape}.")
    center = z.mean(axis=0)
    scale = np.sqrt(np.asarray(target_variance, np.float64)) / np.maximum(
        z.std(axis=0), 1e-12
    )
    return center, scale
