"""Named samplers of the stage-1 latent space, all with one interface.

A trained two-stage run can generate images four ways; each differs only in
how it draws the stage-1 latents z, which the stage-1 decoder then decodes:

==================  =============================================================
``gen1``            z ~ N(0, I), the stage-1 prior (`PriorSampler`)
``gen2``            u ~ N(0, I) -> decoder 2 -> z (Dai & Wipf's two-stage VAE,
                    `SecondStageSampler`)
``gen2_adjusted``   gen2's z with each dimension rescaled to variance 1 over the
                    set (Asperti's renormalisation, `adjust_latents`;
                    `AdjustedSecondStageSampler`)
``gen2_matched``    gen2's z with each dimension rescaled to the variance the
                    training codes have in it, Var(mu_j) + E(sigma_j^2)
                    (`vae_balance.sampling.code_statistics.code_variance`;
                    `MatchedSecondStageSampler`)
``gmm``             z from a Gaussian mixture fitted on the training set's z_mean
                    (`GMMSampler`, `vae_balance.sampling.gmm`)
==================  =============================================================

Every sampler has a ``name``, a display ``label``, ``sample_latents(num,
seed)`` and ``generate(num, seed, batch_size)``. ``seed`` is an int, None, or
a ``np.random.Generator`` whose stream goes on: `vae_balance.evaluation.protocol`
passes one generator through REC, gen1 and gmm in turn, and its int seed to
gen2, whose u is `vae_balance.sampling.noise.second_stage_noise` (the
export's convention: the same images as its ``generate(num, seed)``).
"""

import numpy as np

from vae_balance.sampling.noise import second_stage_noise
from vae_balance.sampling.rescaling import rescaling_to

SAMPLER_NAMES = ("gen1", "gen2", "gen2_adjusted", "gen2_matched", "gmm")


class LatentSampler:
    """Base class: draws stage-1 latents, decodes them with decoder 1.

    Args:
        first_decoder: the stage-1 decoder (z -> image in [0, 1]).
    """

    name = None
    label = None

    def __init__(self, first_decoder):
        self.first_decoder = first_decoder

    @property
    def latent_dim(self):
        """The stage-1 latent size."""
        return int(self.first_decoder.inputs[0].shape[-1])

    def sample_latents(self, num, seed=None, batch_size=100):
        """(num, latent_dim) float32 stage-1 latents.

        Args:
            num: number of latents.
            seed: int, None, or a ``np.random.Generator`` (used as is).
            batch_size: batch of any network pass it takes.
        """
        raise NotImplementedError

    def decode(self, latents, batch_size=100):
        """Images (NumPy, in [0, 1]) of stage-1 latents."""
        return np.asarray(
            self.first_decoder.predict(latents, batch_size=batch_size, verbose=0)
        )

    def generate(self, num, seed=None, batch_size=100):
        """``num`` images (NumPy, in [0, 1], at the network's size)."""
        return self.decode(self.sample_latents(num, seed, batch_size), batch_size)

    def __repr__(self):
        return f"{type(self).__name__}(name={self.name!r})"


class PriorSampler(LatentSampler):
    """GEN-1: z ~ N(0, I), ``rng.standard_normal((num, latent_dim))``."""

    name = "gen1"
    label = "GEN-1"

    def sample_latents(self, num, seed=None, batch_size=100):
        rng = np.random.default_rng(seed)
        return rng.standard_normal((int(num), self.latent_dim)).astype(np.float32)


class SecondStageSampler(LatentSampler):
    """GEN-2: u ~ N(0, I) -> decoder 2 -> z (no gamma_z noise added).

    u is `second_stage_noise` (stateless Philox draws): with an int seed, the
    images of `TwoStageSampler.sample` and of the export's ``generate``. A
    ``np.random.Generator`` seed gives one int seed from its stream.

    Args:
        first_decoder: the stage-1 decoder.
        second_decoder: the stage-2 decoder (u -> z).
    """

    name = "gen2"
    label = "GEN-2"

    def __init__(self, first_decoder, second_decoder):
        super().__init__(first_decoder)
        produced = tuple(second_decoder.outputs[0].shape[1:])
        if produced != (self.latent_dim,):
            raise ValueError(
                f"The second decoder produces {produced}, the first decoder "
                f"takes ({self.latent_dim},): build both with one latent_dim."
            )
        self.second_decoder = second_decoder

    @property
    def noise_dim(self):
        """The size of the stage-2 noise u."""
        return int(self.second_decoder.inputs[0].shape[-1])

    def sample_latents(self, num, seed=None, batch_size=100):
        u = second_stage_noise(int(num), self.noise_dim, seed)
        z = self.second_decoder.predict(u, batch_size=batch_size, verbose=0)
        return np.asarray(z, np.float32)


class AdjustedSecondStageSampler(SecondStageSampler):
    """GEN-2 adjusted: GEN-2's latents renormalised to ``target_variance``.

    The renormalisation uses the statistics of the whole generated set
    (`adjust_latents`), so a set's latents depend on ``num``.

    Args:
        first_decoder, second_decoder: as `SecondStageSampler`.
        target_variance: variance per dimension after the rescaling (1: the
            N(0, I) of the stage-1 prior).
    """

    name = "gen2_adjusted"
    label = "GEN-2 adjusted"

    def __init__(self, first_decoder, second_decoder, target_variance=1.0):
        super().__init__(first_decoder, second_decoder)
        self.target_variance = target_variance

    def adjust(self, latents):
        """The renormalised copy of GEN-2 latents (float32)."""
        return adjust_latents(latents, self.target_variance)

    def sample_latents(self, num, seed=None, batch_size=100):
        return self.adjust(super().sample_latents(num, seed, batch_size))


class MatchedSecondStageSampler(AdjustedSecondStageSampler):
    """GEN-2 matched: GEN-2's latents renormalised, each dimension to the
    variance of the codes stage 2 was trained on (`code_variance`).

    Asperti's renormalisation to 1 assumes the variance law: every
    dimension of the codes has variance 1. A stage 1 whose codes break it
    (active dimensions of variance 0.01 beside inactive ones of 0.65: one
    decoder variance in stage 2 is then far above the small dimensions'
    spread, and stage 2 gives them a fraction of it) is renormalised to what
    its codes have instead.

    Args:
        first_decoder, second_decoder: as `SecondStageSampler`.
        variances: (latent_dim,) variances of the training codes.
    """

    name = "gen2_matched"
    label = "GEN-2 matched"

    def __init__(self, first_decoder, second_decoder, variances):
        variances = np.asarray(variances, np.float32)
        super().__init__(first_decoder, second_decoder, variances)
        if variances.shape != (self.latent_dim,):
            raise ValueError(
                f"{variances.shape[0] if variances.ndim == 1 else variances.shape} "
                f"code variances for a {self.latent_dim}-d latent space: give one "
                "per dimension (`code_variance` of the run's latents.npz)."
            )


class GMMSampler(LatentSampler):
    """z from a Gaussian mixture fitted ex post on the training codes.

    Args:
        first_decoder: the stage-1 decoder.
        gmm: a `vae_balance.sampling.gmm.LatentGMM` over the stage-1 latent space.
    """

    name = "gmm"

    def __init__(self, first_decoder, gmm):
        super().__init__(first_decoder)
        if gmm.latent_dim != self.latent_dim:
            raise ValueError(
                f"The mixture is over {gmm.latent_dim}-d latents, the decoder "
                f"takes {self.latent_dim}: it was fitted on another run; fit it "
                "again (`fit_gmm(workdir, refit=True)`)."
            )
        self.gmm = gmm

    @property
    def label(self):
        return f"GMM ({self.gmm.num_components} components)"

    def sample_latents(self, num, seed=None, batch_size=100):
        return self.gmm.sample(num, seed)


def build_samplers(
    first_stage, second_stage, gmm=None, target_variance=1.0, code_variances=None
):
    """``{name: sampler}`` of a trained run, in `SAMPLER_NAMES` order.

    Args:
        first_stage, second_stage: the two `BalancedVAE` stages; stage 2 None:
            no ``gen2`` and ``gen2_adjusted`` entries.
        gmm: a `LatentGMM`, or None (no ``gmm`` entry).
        target_variance: of ``gen2_adjusted``.
        code_variances: (latent_dim,) of ``gen2_matched`` (`code_variance`);
            None: no ``gen2_matched`` entry.
    """
    decoder = first_stage.decoder
    samplers = [PriorSampler(decoder)]
    if second_stage is not None:
        second = second_stage.decoder
        samplers += [
            SecondStageSampler(decoder, second),
            AdjustedSecondStageSampler(decoder, second, target_variance),
        ]
        if code_variances is not None:
            samplers.append(MatchedSecondStageSampler(decoder, second, code_variances))
    if gmm is not None:
        samplers.append(GMMSampler(decoder, gmm))
    return {sampler.name: sampler for sampler in samplers}


def adjust_latents(z, target_variance=1.0):
    """Variance renormalisation ("adjust") of generated latent codes.

    VAE outputs have less variance than the data they imitate; in a two-stage
    VAE the latents produced by the second stage are too concentrated for
    the first decoder. This rescales each dimension of ``z`` around its mean
    so that its variance over the batch equals ``target_variance``: by
    default 1, the N(0, I) distribution that the first stage's latents
    follow (the variance law), as in Asperti's companion paper. The statistics
    are over all of ``z`` (the reference code used batches of 100).

    Args:
        z: (n, latent_dim) generated latents, n >= 2.
        target_variance: scalar or (latent_dim,) array of variances.

    Returns:
        float32 array like ``z``.

    Reference:
        A. Asperti, "Variance Loss in Variational Autoencoders",
        arXiv:2002.09860, 2020.
    """
    center, scale = rescaling_to(z, target_variance)
    return (center + (np.asarray(z, np.float64) - center) * scale).astype(np.float32)
