"""Export of the two-stage sampler as a TF SavedModel.

`export_sampler` writes a SavedModel loadable without vae_balance, in named
steps (metadata, destination check, the archive's signatures, an atomic
write); `restore_interrupted_export` repairs what a killed export left. The
metadata it stores, and the readers of an export, are in
`vae_balance.export.metadata`.
"""

import json
import os
import shutil
import tempfile

import keras
import tensorflow as tf

from vae_balance.datasets.registry import pad_box
from vae_balance.export.metadata import (
    GENERATE_NOISE,
    METADATA_FILE,
    METADATA_FORMAT_VERSION,
    METADATA_SIGNATURE,
    build_metadata,
    describe_signatures,
    first_latent_dim,
    read_sampler_metadata,
    sampler_and_stages,
    sampler_metadata,
)
from vae_balance.sampling.gmm import LatentGMM
from vae_balance.sampling.noise import second_stage_noise
from vae_balance.sampling.rescaling import LatentRescaling

__all__ = [
    "GENERATE_NOISE",
    "METADATA_FILE",
    "METADATA_FORMAT_VERSION",
    "METADATA_SIGNATURE",
    "describe_signatures",
    "export_sampler",
    "read_sampler_metadata",
    "restore_interrupted_export",
    "sampler_metadata",
]


# Long: its public docstring documents every signature; the steps are helpers.
def export_sampler(
    sampler_or_models,
    path,
    overwrite=False,
    config=None,
    pad=None,
    gmm=None,
    code_variances=None,
):
    """Writes a TF SavedModel for sampling, loadable without vae_balance.

    Signatures (images float32 in [0, 1] at the dataset's native size: the
    network's ``pad`` border is cropped off, and added back as zeros to the
    images ``encode`` and ``reconstruct`` take, as the data loader does). Each
    returns a dict, also when called from Python:

    - ``sample(u)``: stage-2 noise ``u`` (n, u_dim) -> ``{"images"}``. Also
      the ``serving_default`` signature (input ``u``, as before).
    - ``generate(num_samples, seed)``: two int64 scalars -> ``{"images"}``
      of ``num_samples`` images from ``u = tf.random.stateless_normal(
      [num_samples, u_dim], seed=[seed, 0], alg="philox")``: the same seed
      gives the same images in every process and any client language.
    - ``generate_gmm(num_samples, seed)``: only with ``gmm``: the same
      conventions as ``generate`` (int64 scalars, Philox stateless draws,
      ``{"images"}``), the stage-1 latents drawn from the ex-post Gaussian
      mixture (`vae_balance.sampling.gmm.GMM_NOISE`, `LatentGMM.sample_stateless`).
    - ``generate_matched(num_samples, seed)``: only with ``code_variances``:
      ``generate``'s draws of u, their stage-2 latents rescaled per dimension
      to the training codes' variances by an affine map fixed at export
      (`vae_balance.sampling.rescaling.LatentRescaling`, measured on 10,000
      draws of seed 0: ``generate_matched(10000, 0)`` is the evaluation's
      ``gen2_matched`` set).
    - ``decode(z)``: stage-1 latents -> ``{"images"}`` (GEN-1 with z ~ N(0, I)).
    - ``encode(images)``: -> ``{"z_mean", "z_log_sigma"}``.
    - ``reconstruct(images)``: -> ``{"images"}``, decode(z_mean).
    - ``metadata()``: -> ``{"json"}``, a string scalar: `sampler_metadata`
      (config, latent sizes, shapes, pad, each stage's balance, final gamma^2
      and steps, versions). The same JSON is in ``assets.extra/vae_balance.json``;
      `read_sampler_metadata` reads either.

    ``encode`` and ``reconstruct`` need the stage-1 encoder (given by a
    pair of models, or ``TwoStageSampler(..., first_encoder=...)``).

    The SavedModel is written to a temporary folder beside ``path`` and renamed
    into place, so an interrupted export never leaves a partial one; a killed
    replacement leaves the previous export complete, put back in place by the
    next export (see `restore_interrupted_export`).

    Args:
        sampler_or_models: a `TwoStageSampler`, or ``(vae, vae2)`` (their
            balance state and optimizer steps go into the metadata).
        path: the SavedModel directory to create.
        overwrite: replace an existing ``path``; otherwise refuse.
        config: the run's `VAEConfig` (or its dict, e.g. ``config.json``):
            its ``pad`` is cropped and it is stored in the metadata. Without
            it, the metadata's ``config`` and ``preset`` are null and nothing
            is cropped unless ``pad`` is given.
        pad: pixels to crop per side; default ``config.pad``, else 0.
        gmm: a `vae_balance.sampling.gmm.LatentGMM` (or the path of a run's
            ``gmm.npz``) over the stage-1 latents: adds ``generate_gmm`` and
            the mixture's description to the metadata (``gmm``).
        code_variances: (latent_dim,) variances of the training codes, or the
            path of a run's ``latents.npz``: adds ``generate_matched`` and its
            map to the metadata (``matched``).

    Raises:
        ValueError: ``config`` does not match the models, or a bad ``pad``.
        FileExistsError: ``path`` exists and ``overwrite`` is False.

    Example:

    >>> export_sampler((vae, vae2), "sampler", config=config)
    >>> loaded = tf.saved_model.load("sampler")  # no vae_balance needed
    >>> images = loaded.generate(16, 0)["images"]  # (16, 28, 28, 1)
    >>> images = loaded.sample(tf.random.normal((16, 32)))["images"]
    >>> metadata = json.loads(loaded.metadata()["json"].numpy())
    """
    sampler, stages = sampler_and_stages(sampler_or_models)
    gmm = _as_gmm(gmm, sampler)
    matched = None
    if code_variances is not None:
        matched = LatentRescaling.fit(sampler.second_decoder, code_variances)
    metadata = build_metadata(sampler, stages, config, pad, gmm, matched)
    text = json.dumps(metadata, indent=2, allow_nan=False) + "\n"
    path = os.fspath(path)
    _check_destination(path, overwrite)
    archive = _build_archive(sampler, metadata, text, gmm, matched)
    _write_atomically(archive, path, text)
    return path


def _as_gmm(gmm, sampler):
    """A `LatentGMM` (loaded from a path) over the sampler's latents, or None."""
    if gmm is None:
        return None
    if isinstance(gmm, (str, os.PathLike)):
        gmm = LatentGMM.load(gmm)
    if not isinstance(gmm, LatentGMM):
        raise TypeError(f"gmm must be a LatentGMM or a gmm.npz path, got {type(gmm)}.")
    if gmm.latent_dim != first_latent_dim(sampler):
        raise ValueError(
            f"The mixture is over {gmm.latent_dim}-d latents, the first decoder "
            f"takes {first_latent_dim(sampler)}: it belongs to another run."
        )
    return gmm


def _check_destination(path, overwrite):
    """Repairs an interrupted export at ``path``; refuses an existing one."""
    restore_interrupted_export(path)
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(
            f"Export path {path!r} already exists; pass overwrite=True (CLI: "
            "--overwrite) to replace it, or choose another path."
        )


def _crop(images, pad):
    """float32 images without the network's ``pad`` border (an int, or
    ``(top, bottom, left, right)``)."""
    images = tf.cast(images, tf.float32)
    top, bottom, left, right = pad_box(pad)
    if top or bottom or left or right:
        height, width = images.shape[1], images.shape[2]
        images = images[:, top : height - bottom, left : width - right, :]
    return images


def _uncrop(images, pad):
    """The loader's zero border added back, on images in [0, 1]."""
    top, bottom, left, right = pad_box(pad)
    if top or bottom or left or right:
        images = tf.pad(images, [[0, 0], [top, bottom], [left, right], [0, 0]])
    return images


def _non_negative(num_samples, name):
    check = tf.debugging.assert_non_negative(
        num_samples, message=f"{name}: num_samples must be >= 0"
    )
    with tf.control_dependencies([check]):
        return tf.identity(num_samples)


def _gmm_endpoint(sampler, gmm, pad):
    """``generate_gmm(num_samples, seed)``: decoded latents of the mixture."""

    def generate_gmm(num_samples, seed):
        num_samples = _non_negative(num_samples, "generate_gmm")
        z = gmm.sample_stateless(num_samples, seed)
        return {"images": _crop(sampler.first_decoder(z, training=False), pad)}

    return generate_gmm


def _matched_endpoint(sampler, matched, pad):
    """``generate_matched(num_samples, seed)``: GEN-2 with the frozen rescaling."""
    center = tf.constant(matched.center)
    scale = tf.constant(matched.scale)

    def generate_matched(num_samples, seed):
        num_samples = _non_negative(num_samples, "generate_matched")
        u = second_stage_noise(num_samples, sampler.latent_dim, seed)
        z = sampler.second_decoder(u, training=False)
        z = center + (tf.cast(z, tf.float32) - center) * scale
        return {"images": _crop(sampler.first_decoder(z, training=False), pad)}

    return generate_matched


def _sampling_endpoints(sampler, pad):
    """The ``sample``, ``generate`` and ``decode`` functions of the export."""

    def sample(u):
        return {"images": _crop(sampler(u, training=False), pad)}

    def generate(num_samples, seed):
        check = tf.debugging.assert_non_negative(
            num_samples, message="generate: num_samples must be >= 0"
        )
        with tf.control_dependencies([check]):
            u = second_stage_noise(num_samples, sampler.latent_dim, seed)
        return sample(u)

    def decode(z):
        return {"images": _crop(sampler.first_decoder(z, training=False), pad)}

    return sample, generate, decode


def _encoding_endpoints(encoder, pad, decode):
    """The ``encode`` and ``reconstruct`` functions (stage-1 encoder needed)."""

    def encode(images):
        z_mean, z_log_sigma = encoder(_uncrop(images, pad), training=False)
        return {
            "z_mean": tf.cast(z_mean, tf.float32),
            "z_log_sigma": tf.cast(z_log_sigma, tf.float32),
        }

    def reconstruct(images):
        z_mean, _ = encoder(_uncrop(images, pad), training=False)
        return decode(z_mean)

    return encode, reconstruct


def _build_archive(sampler, metadata, text, gmm=None, matched=None):
    """A `keras.export.ExportArchive` with every signature of the export."""
    sample, generate, decode = _sampling_endpoints(sampler, metadata["pad"])
    archive = keras.export.ExportArchive()
    archive.track(sampler)
    u_spec = tf.TensorSpec((None, sampler.latent_dim), tf.float32, name="u")
    z_spec = tf.TensorSpec((None, first_latent_dim(sampler)), tf.float32, name="z")
    # The first endpoint is also serving_default.
    archive.add_endpoint("sample", sample, input_signature=[u_spec])
    seeded = [
        tf.TensorSpec((), tf.int64, name="num_samples"),
        tf.TensorSpec((), tf.int64, name="seed"),
    ]
    archive.add_endpoint("generate", generate, input_signature=seeded)
    if gmm is not None:
        archive.add_endpoint(
            "generate_gmm",
            _gmm_endpoint(sampler, gmm, metadata["pad"]),
            input_signature=seeded,
        )
    if matched is not None:
        archive.add_endpoint(
            "generate_matched",
            _matched_endpoint(sampler, matched, metadata["pad"]),
            input_signature=seeded,
        )
    archive.add_endpoint("decode", decode, input_signature=[z_spec])
    if sampler.first_encoder is not None:
        encode, reconstruct = _encoding_endpoints(
            sampler.first_encoder, metadata["pad"], decode
        )
        image_spec = tf.TensorSpec(
            (None, *metadata["image_shape"]), tf.float32, name="images"
        )
        archive.add_endpoint("encode", encode, input_signature=[image_spec])
        archive.add_endpoint("reconstruct", reconstruct, input_signature=[image_spec])
    archive.add_endpoint(
        METADATA_SIGNATURE, lambda: {"json": tf.constant(text)}, input_signature=[]
    )
    return archive


def _write_atomically(archive, path, text):
    """Writes the archive and its metadata file beside ``path``, then renames."""
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    name = os.path.basename(os.path.abspath(path))
    staging = tempfile.mkdtemp(prefix=f".{name}.export-{os.getpid()}-", dir=parent)
    try:
        archive.write_out(staging, verbose=False)
        os.makedirs(
            os.path.join(staging, os.path.dirname(METADATA_FILE)), exist_ok=True
        )
        with open(os.path.join(staging, METADATA_FILE), "w") as f:
            f.write(text)
        if os.path.exists(path):
            # Two renames: a kill between them leaves the previous export
            # complete under `old`, which restore_interrupted_export puts back.
            old = _previous_export(path)
            os.rename(path, old)
            os.rename(staging, path)
            shutil.rmtree(old)
        else:
            os.rename(staging, path)
    finally:
        if os.path.exists(staging):
            shutil.rmtree(staging, ignore_errors=True)


def _previous_export(path):
    parent, name = os.path.split(os.path.abspath(path))
    return os.path.join(parent, f".{name}.previous")


def restore_interrupted_export(path):
    """Repairs what a killed `export_sampler` may have left beside ``path``.

    `export_sampler` writes to a hidden staging folder and renames it into
    place; replacing an export takes two renames (the old one aside, the new
    one in). A process killed in between leaves no ``path`` but the complete
    previous export under ``.NAME.previous``: it is renamed back. A previous
    export left next to a complete new one is deleted, and so are the staging
    folders of dead processes. `export_sampler` calls this first.

    Returns:
        True when a previous export was put back in place.
    """
    path = os.path.abspath(os.fspath(path))
    parent, name = os.path.split(path)
    restored = False
    old = _previous_export(path)
    if os.path.isdir(old):
        if os.path.exists(path):
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(old, path)
            restored = True
    prefix = f".{name}.export-"
    if os.path.isdir(parent):
        for entry in os.listdir(parent):
            if not entry.startswith(prefix):
                continue
            pid = entry[len(prefix) :].split("-", 1)[0]
            if pid.isdigit() and not _process_alive(int(pid)):
                shutil.rmtree(os.path.join(parent, entry), ignore_errors=True)
    return restored


def _process_alive(pid):
    if pid == os.getpid():
        return False  # this process is not exporting while it cleans up
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True
