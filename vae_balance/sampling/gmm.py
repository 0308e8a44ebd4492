"""An ex-post Gaussian mixture on the stage-1 latent space, saved with the run.

RAE (Ghosh et al., ICLR 2020) and pythae sample a trained autoencoder by
fitting a Gaussian mixture on the training set's latent codes after training
and decoding draws from it. `LatentGMM` holds such a mixture as plain arrays:
scikit-learn's `GaussianMixture` (``covariance_type="full"``, seeded) fits it,
NumPy samples it, and it is stored as ``gmm.npz`` (weights, means, covariances
and a JSON description; no pickle) in the work directory. `fit_gmm` is the
step `vae_balance.evaluation.protocol` runs: it fits on the z_mean of ``latents.npz``
(written by the training job) once, and reuses the file while it still
matches those codes. The sampler object is `vae_balance.sampling.latent.GMMSampler`;
`vae_balance.export.savedmodel.export_sampler` adds it to a SavedModel.
"""

import dataclasses
import json
import os

import numpy as np
import tensorflow as tf

from vae_balance.files import atomic_write, sha256
from vae_balance.workdir import Workdir

DEFAULT_COMPONENTS = 10
# scikit-learn's default covariance floor, kept explicit: it enters the file.
DEFAULT_REG_COVAR = 1e-6
# How the exported `generate_gmm(num_samples, seed)` draws (also in the
# export's metadata); `LatentGMM.sample_stateless` is the one implementation.
GMM_NOISE = (
    "c = searchsorted(cumsum(weights), tf.random.stateless_uniform("
    '[num_samples], seed=[seed, 1], dtype=float64, alg="philox"), side="right"); '
    "z = means[c] + cholesky(covariances[c]) @ eps, eps = "
    "tf.random.stateless_normal([num_samples, latent_dim], seed=[seed, 0], "
    'alg="philox")'
)


@dataclasses.dataclass(frozen=True, eq=False)
class LatentGMM:
    """A Gaussian mixture over stage-1 latents, as NumPy arrays.

    Args:
        weights: (k,) mixture weights, summing to 1.
        means: (k, d) component means.
        covariances: (k, d, d) full covariance matrices (symmetric PD).
        info: JSON-ready description of the fit (components, seed,
            convergence, the codes it was fitted on).

    Example:

    >>> gmm = LatentGMM.fit(z_mean, num_components=10, seed=0)
    >>> z = gmm.sample(16, seed=0)  # (16, d) float32
    >>> gmm.save("runs/x/gmm.npz"); LatentGMM.load("runs/x/gmm.npz")
    """

    weights: np.ndarray
    means: np.ndarray
    covariances: np.ndarray
    info: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        weights = np.asarray(self.weights, np.float64)
        means = np.asarray(self.means, np.float64)
        covariances = np.asarray(self.covariances, np.float64)
        k = len(weights)
        if weights.ndim != 1 or means.ndim != 2 or len(means) != k:
            raise ValueError(
                f"A mixture needs weights (k,) and means (k, d), got "
                f"{weights.shape} and {means.shape}."
            )
        d = means.shape[1]
        if covariances.shape != (k, d, d):
            raise ValueError(
                f"covariances must be (k, d, d) = {(k, d, d)}, got "
                f"{covariances.shape} (only covariance_type='full' is stored)."
            )
        if np.any(weights < 0) or not np.isclose(weights.sum(), 1.0, atol=1e-6):
            raise ValueError(f"weights must be >= 0 and sum to 1, got {weights}.")
        object.__setattr__(self, "weights", weights)
        object.__setattr__(self, "means", means)
        object.__setattr__(self, "covariances", covariances)
        object.__setattr__(self, "info", dict(self.info))

    @property
    def num_components(self):
        return len(self.weights)

    @property
    def latent_dim(self):
        return int(self.means.shape[1])

    @property
    def cholesky(self):
        """(k, d, d) lower Cholesky factors L with L L^T = covariance."""
        return np.linalg.cholesky(self.covariances)

    # ------------------------------------------------------------ fitting
    @classmethod
    def fit(
        cls,
        z_mean,
        num_components=DEFAULT_COMPONENTS,
        seed=0,
        max_iter=500,
        reg_covar=DEFAULT_REG_COVAR,
    ):
        """Fits scikit-learn's `GaussianMixture` (full covariances) on codes.

        Args:
            z_mean: (n, d) latent codes, the training set's z_mean.
            num_components: mixture components (RAE and pythae use 10).
            seed: ``random_state`` of the k-means initialisation.
            max_iter: EM iterations at most.
            reg_covar: added to every covariance's diagonal.

        Raises:
            ValueError: fewer codes than components, or non-finite codes.
        """
        # Imported here: scikit-learn takes seconds to import and only the
        # fit needs it (loading, sampling and export do not).
        from sklearn.mixture import GaussianMixture

        z_mean = np.asarray(z_mean, np.float64)
        if z_mean.ndim != 2:
            raise ValueError(f"z_mean must be (n, d), got shape {z_mean.shape}.")
        if len(z_mean) < num_components:
            raise ValueError(
                f"{len(z_mean)} codes cannot fit {num_components} mixture "
                "components: lower --gmm-components or encode more images."
            )
        if not np.all(np.isfinite(z_mean)):
            raise ValueError("z_mean contains NaN or Inf: the encoder diverged?")
        mixture = GaussianMixture(
            n_components=num_components,
            covariance_type="full",
            max_iter=max_iter,
            reg_covar=reg_covar,
            random_state=seed,
        ).fit(z_mean)
        info = {
            "num_components": int(num_components),
            "covariance_type": "full",
            "seed": int(seed),
            "reg_covar": float(reg_covar),
            "converged": bool(mixture.converged_),
            "iterations": int(mixture.n_iter_),
            "mean_log_likelihood": float(mixture.score(z_mean)),
            "num_codes": int(len(z_mean)),
        }
        return cls(mixture.weights_, mixture.means_, mixture.covariances_, info)

    # ----------------------------------------------------------- sampling
    def sample(self, num, seed=None):
        """``num`` latents: a component c ~ weights, then ``means[c] + L[c] eps``.

        Args:
            num: number of latents.
            seed: an int, None, or a ``np.random.Generator`` (its stream goes
                on). Draws: the components first (``rng.choice``), then
                ``eps = rng.standard_normal((num, d))``.

        Returns:
            (num, d) float32.
        """
        rng = np.random.default_rng(seed)
        components = rng.choice(self.num_components, size=int(num), p=self.weights)
        epsilon = rng.standard_normal((int(num), self.latent_dim))
        z = self.means[components] + np.einsum(
            "nij,nj->ni", self.cholesky[components], epsilon
        )
        return z.astype(np.float32)

    def sample_stateless(self, num_samples, seed):
        """``num_samples`` latents from TensorFlow's stateless Philox draws.

        What the exported ``generate_gmm(num_samples, seed)`` signature draws
        (`GMM_NOISE`): the same seed gives the same latents in every process
        and any client language. Traceable (``num_samples`` and ``seed`` may
        be int64 tensors); the mixture's arrays become float32 constants.

        Returns:
            (num_samples, d) float32 tensor.
        """
        num_samples = tf.cast(num_samples, tf.int64)
        seed = tf.cast(seed, tf.int64)
        cdf = tf.constant(np.cumsum(self.weights), tf.float64)
        uniform = tf.random.stateless_uniform(
            tf.reshape(num_samples, [1]),
            seed=tf.stack([seed, tf.constant(1, tf.int64)]),
            dtype=tf.float64,
            alg="philox",
        )
        # The last cumulative weight may round below 1: clip to the last one.
        components = tf.minimum(
            tf.searchsorted(cdf, uniform, side="right"), self.num_components - 1
        )
        epsilon = tf.random.stateless_normal(
            tf.stack([num_samples, tf.constant(self.latent_dim, tf.int64)]),
            seed=tf.stack([seed, tf.constant(0, tf.int64)]),
            alg="philox",
        )
        means = tf.gather(tf.constant(self.means, tf.float32), components)
        factors = tf.gather(tf.constant(self.cholesky, tf.float32), components)
        return means + tf.einsum("nij,nj->ni", factors, epsilon)

    # --------------------------------------------------------------- files
    def save(self, path):
        """Writes ``.npz`` arrays (``weights``, ``means``, ``covariances``,
        ``info`` as a JSON string), atomically; loads without pickle."""
        info = np.array(json.dumps(self.info, sort_keys=True))
        atomic_write(
            path,
            write=lambda tmp: np.savez(
                tmp,
                weights=self.weights,
                means=self.means,
                covariances=self.covariances,
                info=info,
            ),
            suffix=".npz",
        )
        return path

    @classmethod
    def load(cls, path):
        """The mixture saved by `save` (``allow_pickle=False``).

        Raises:
            FileNotFoundError: no such file.
            ValueError: the file is not a saved mixture.
        """
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"{path} not found: fit the mixture with `fit_gmm` (run "
                "`python -m vae_balance evaluate WORKDIR`)."
            )
        with np.load(path, allow_pickle=False) as f:
            missing = {"weights", "means", "covariances"} - set(f.files)
            if missing:
                raise ValueError(
                    f"{path} is not a saved LatentGMM (missing "
                    f"{', '.join(sorted(missing))})."
                )
            info = json.loads(str(f["info"])) if "info" in f.files else {}
            return cls(f["weights"], f["means"], f["covariances"], info)


# ------------------------------------------------------- the run's step
def gmm_path(workdir):
    """``WORKDIR/gmm.npz``."""
    return Workdir(workdir).gmm_path


def fit_gmm(workdir, num_components=DEFAULT_COMPONENTS, seed=0, refit=False, verbose=1):
    """The run's mixture: ``gmm.npz`` if it fits, else fitted and saved.

    The mixture is fitted on the z_mean of ``latents.npz`` (the training set,
    encoded by the job with the final, recalibrated stage-1 encoder). A saved
    ``gmm.npz`` is reused when it has ``num_components`` components, the same
    ``seed`` and was fitted on the current ``latents.npz`` (its sha256);
    otherwise it is fitted again and replaced.

    Args:
        workdir: the run's work directory.
        num_components: mixture components.
        seed: seed of the fit.
        refit: fit again even if ``gmm.npz`` matches.
        verbose: print what is done.

    Returns:
        The `LatentGMM`.

    Raises:
        FileNotFoundError: no ``latents.npz`` (the job writes it before stage
            2; a run stopped earlier has none).
    """
    run = Workdir(workdir)
    path = run.gmm_path
    if not os.path.isfile(run.latents_path):
        raise FileNotFoundError(
            f"{run.latents_path} not found: the training job writes the "
            "training set's latent codes there before stage 2; finish training "
            "(rerun `python -m vae_balance train` with this --workdir)."
        )
    latents_hash = sha256(run.latents_path)
    wanted = {
        "num_components": int(num_components),
        "seed": int(seed),
        "latents_sha256": latents_hash,
    }
    if os.path.isfile(path) and not refit:
        try:
            saved = LatentGMM.load(path)
        except ValueError:
            saved = None
        if saved is not None and all(saved.info.get(k) == v for k, v in wanted.items()):
            if verbose:
                print(f"[gmm] reusing {path} ({saved.num_components} components)")
            return saved
    with np.load(run.latents_path) as f:
        z_mean = f["z_mean"]
    if verbose:
        print(
            f"[gmm] fitting {num_components} full-covariance components on "
            f"{len(z_mean)} training codes (z_mean of {run.latents_path})"
        )
    gmm = LatentGMM.fit(z_mean, num_components, seed)
    gmm = dataclasses.replace(gmm, info={**gmm.info, **wanted})
    gmm.save(path)
    return gmm
