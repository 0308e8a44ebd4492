"""The ``sample`` and ``export`` commands of ``python -m vae_balance``.

``sample SAMPLER`` writes a PNG grid from an exported sampler, or with ``--out
X.npz`` the images themselves (uint8, key ``x``) for an outside FID script
(``--gmm``: from its ex-post Gaussian mixture; ``--matched``: GEN-2 matched;
``--info``: prints its metadata); ``export WORKDIR`` exports the sampler
SavedModel of a trained work directory, recomputing stale stage-1 BatchNorm
statistics, with ``generate_gmm`` when the run has a ``gmm.npz`` and
``generate_matched`` when it has its ``latents.npz``.
"""

import json
import os
import sys

import numpy as np
import tensorflow as tf

from vae_balance.datasets import registry
from vae_balance.export.metadata import describe_signatures, read_sampler_metadata
from vae_balance.export.savedmodel import export_sampler, restore_interrupted_export
from vae_balance.files import atomic_write
from vae_balance.model import batchnorm
from vae_balance.plots import save_grid
from vae_balance.sampling.noise import second_stage_noise
from vae_balance.sampling.run import load_run
from vae_balance.workdir import Workdir, WorkdirError, is_recalibrated


# ---------------------------------------------------------------- sample
def run_sample(args):
    """``sample SAMPLER``: a PNG grid of generated images, or ``--info``."""
    _check_sampler_directory(args.sampler)
    if args.info:
        _print_sampler_info(args.sampler)
        return
    if args.num <= 0:
        raise SystemExit(f"error: --num must be positive, got {args.num}")
    if not 0 <= args.seed < 2**63:  # an int64 for generate, NumPy's range
        raise SystemExit(f"error: --seed must be in [0, 2**63), got {args.seed}")
    loaded = tf.saved_model.load(args.sampler)
    metadata = read_sampler_metadata(loaded)
    if metadata is not None:  # images come out at their native size
        pad = 0
        if args.pad is not None:
            print(
                f"warning: --pad ignored: {args.sampler} crops its images itself "
                f"(pad={metadata.get('pad')} in its metadata)",
                file=sys.stderr,
            )
    images = np.asarray(_generate(loaded.signatures, args))
    if metadata is None:  # an older export: the crop comes from elsewhere
        pad = _pad_of_an_old_export(args)
    if args.out.endswith(".npz"):
        save_npz(images, args.out, pad)
    else:
        save_grid(images, args.out, pad=pad)
    height, width, channels = images.shape[1:]
    height, width = height - 2 * pad, width - 2 * pad
    print(f"Wrote {args.num} samples ({height}x{width}x{channels}) to {args.out}")


def _no_metadata(sampler):
    return (
        f"{sampler} has no metadata (no `metadata` signature: exported by "
        "an older vae_balance)"
    )


def _check_sampler_directory(sampler):
    """Puts back an interrupted export; exits unless ``sampler`` is a SavedModel."""
    if restore_interrupted_export(sampler):
        print(f"Restored {sampler} after an interrupted export")
    if not os.path.isfile(os.path.join(sampler, "saved_model.pb")):
        raise SystemExit(
            f"error: {sampler!r} is not a SavedModel directory (no "
            "saved_model.pb); export one with `python -m vae_balance export`."
        )


def _print_sampler_info(sampler):
    """``--info``: the metadata as JSON, else a warning and the signatures."""
    metadata = read_sampler_metadata(sampler)  # the JSON file if there
    if metadata is not None:
        print(json.dumps(metadata, indent=2))
        return
    print(
        f"warning: {_no_metadata(sampler)}: no configuration, padding, gamma^2 "
        "or versions to show; its signatures follow. Re-export it with "
        "`python -m vae_balance export WORKDIR --overwrite`.",
        file=sys.stderr,
    )
    loaded = tf.saved_model.load(sampler)
    print(json.dumps({"signatures": describe_signatures(loaded)}, indent=2))


# The seeded signatures only some exports have: (flag, signature, what to do).
_OPTIONAL_SIGNATURES = (
    ("gmm", "generate_gmm", " after `python -m vae_balance evaluate` fitted gmm.npz"),
    ("matched", "generate_matched", ", with its latents.npz in the work directory"),
)


def _generate(signatures, args):
    """``args.num`` images from ``generate(num, seed)``, or from ``sample(u)``
    with the same noise, `second_stage_noise` (older exports)."""
    for flag, name, fix in _OPTIONAL_SIGNATURES:
        if not getattr(args, flag, False):
            continue
        if name not in signatures:
            raise SystemExit(
                f"error: {args.sampler} has no {name} signature: export the run "
                f"again{fix} (`python -m vae_balance export WORKDIR --overwrite`)."
            )
        return signatures[name](
            num_samples=tf.constant(args.num, tf.int64),
            seed=tf.constant(args.seed, tf.int64),
        )["images"]
    if "generate" in signatures:
        return signatures["generate"](
            num_samples=tf.constant(args.num, tf.int64),
            seed=tf.constant(args.seed, tf.int64),
        )["images"]
    if "sample" in signatures:
        function = signatures["sample"]
        (name, spec), *_ = function.structured_input_signature[1].items()
        u = second_stage_noise(args.num, int(spec.shape[-1]), args.seed)
        outputs = function(**{name: u})
        return outputs.get("images", next(iter(outputs.values())))
    raise SystemExit(
        f"error: {args.sampler} has neither a `generate` nor a `sample` "
        f"signature (it has: {', '.join(sorted(signatures)) or 'none'}); "
        "it is not a vae_balance sampler."
    )


def _pad_of_an_old_export(args):
    """The border to crop off an export without metadata: ``--pad``, else the
    ``pad`` of the config.json beside it, else 0; warns which."""
    workdir = Workdir(os.path.dirname(os.path.abspath(args.sampler)))
    if args.pad is not None:
        pad, source = args.pad, "--pad"
    else:
        try:
            config = workdir.read_config()
        except WorkdirError as error:
            raise SystemExit(f"error: {error}") from None
        if config is not None:
            pad, source = int(config.get("pad", 0)), f"from {workdir.config_path}"
        else:
            pad, source = 0, "no config.json beside it and no --pad"
    print(
        f"warning: {_no_metadata(args.sampler)}: it does not crop its images to "
        f"the dataset's native size. Cropping {pad} pixels per side ({source}). "
        "Re-export it with `python -m vae_balance export WORKDIR "
        "--overwrite` to embed its configuration.",
        file=sys.stderr,
    )
    return pad


# ---------------------------------------------------------------- export
def run_export(args):
    """``export WORKDIR``: the sampler SavedModel of a trained work directory,
    with ``generate_gmm`` when the run has a ``gmm.npz`` and ``generate_matched``
    when it has a ``latents.npz``."""
    try:
        run = load_run(args.workdir, require_config=False, unfinished=True)
    except (FileNotFoundError, WorkdirError) as error:
        raise SystemExit(f"error: {error}") from None
    except ValueError as error:  # gmm.npz
        raise SystemExit(f"error: {error} Delete it or run `evaluate` again.") from None
    if run.config is None:
        print(
            f"warning: no config.json in {run.workdir.root}: the sampler's "
            "metadata has no configuration (null) and its images are not cropped",
            file=sys.stderr,
        )
    _recalibrate_for_export(args, run.first_stage, run.paths[0], run.config)
    out = args.out or run.workdir.sampler_dir
    latents = run.workdir.latents_path  # GEN-2 matched's target variances
    try:
        export_sampler(
            run.stages,
            out,
            overwrite=args.overwrite,
            config=run.config,
            gmm=run.gmm,
            code_variances=latents if os.path.isfile(latents) else None,
        )
    except (FileExistsError, OSError, ValueError) as error:
        raise SystemExit(f"error: {error}") from None
    extras = [f"generate_gmm, {run.gmm.num_components} components"] if run.gmm else []
    extras += ["generate_matched"] if os.path.isfile(latents) else []
    extra = f" (with {'; '.join(extras)})" if extras else ""
    print(f"Exported sampler to {out}{extra}")


def _recalibrate_for_export(args, vae, path, config):
    """Recomputes stale stage-1 BatchNorm statistics before an export.

    A stage 1 read from a checkpoint, or from a run of an older version, was
    not recalibrated by the job (`vae_balance.workdir.is_recalibrated`).
    """
    if is_recalibrated(args.workdir, path) or not args.recalibrate_bn:
        return
    if config is None:
        print(
            f"warning: {path}: BatchNorm statistics not recomputed (no "
            "config.json to find the training data)",
            file=sys.stderr,
        )
        return
    print(f"{path}: BatchNorm statistics not recomputed by the job; recomputing")
    try:
        before, after, info = batchnorm.recalibrate_loaded_stage1(
            vae, config, args.data_dir, args.recalibrate_batches
        )
    except (registry.DataError, registry.DatasetNotFoundError, ValueError) as error:
        raise SystemExit(
            f"error: {path} holds BatchNorm statistics that were not "
            f"recomputed after training, and its training data could not be "
            f"read: {error}. Pass --data-dir, or --no-recalibrate-bn to export "
            "them as they are."
        ) from None
    print(
        f"BatchNorm statistics recomputed from {info['images']} training images: "
        f"validation MSE (inference mode) {before:.5f} -> {after:.5f}"
    )


# ---------------------------------------------------------------- parser
def add_subcommands(subparsers):
    """Registers ``sample SAMPLER`` and ``export WORKDIR`` on a CLI."""
    _add_sample_command(subparsers)
    _add_export_command(subparsers)


def save_npz(images, path, pad=0):
    """``images`` (floats in [0, 1]) as uint8 under the key ``x`` of a
    compressed ``.npz``: ``(n, H, W)`` for grey images, ``(n, H, W, C)``
    otherwise, without the loader's border ``pad``."""
    images = np.asarray(images)
    if pad:
        images = images[:, pad:-pad, pad:-pad]
    x = np.round(np.clip(images, 0.0, 1.0) * 255).astype(np.uint8)
    if x.shape[-1] == 1:
        x = x[..., 0]
    atomic_write(path, write=lambda tmp: np.savez_compressed(tmp, x=x), suffix=".npz")
    return x


def _add_sample_command(subparsers):
    sample = subparsers.add_parser("sample", help="PNG grid from an exported sampler")
    sample.add_argument("sampler", help="SavedModel directory (workdir/sampler)")
    sample.add_argument("--num", type=int, default=64)
    sample.add_argument(
        "--seed", type=int, default=0, help="the seed of generate(num, seed)"
    )
    sample.add_argument(
        "--out",
        default="samples.png",
        help="a PNG grid, or X.npz: the images, uint8, key x (default %(default)s)",
    )
    sample.add_argument(
        "--gmm",
        action="store_true",
        help="draw the latents from the ex-post Gaussian mixture "
        "(generate_gmm, in exports of runs with a gmm.npz)",
    )
    sample.add_argument(
        "--matched",
        action="store_true",
        help="GEN-2 matched: the stage-2 latents rescaled to the training codes' "
        "variances (generate_matched, in exports of runs with a latents.npz)",
    )
    sample.add_argument(
        "--pad",
        type=int,
        help="border to crop, only for exports without metadata (older "
        "vae_balance); default: config.json beside SAMPLER",
    )
    sample.add_argument(
        "--info",
        action="store_true",
        help="print the sampler's metadata (JSON: config, shapes, gamma^2, "
        "versions, signatures) and exit",
    )
    sample.set_defaults(func=run_sample)


def _add_export_command(subparsers):
    export = subparsers.add_parser(
        "export",
        help="export a trained work directory (with generate_gmm when the run "
        "has a gmm.npz, fitted by `evaluate`, and generate_matched when it has "
        "its latents.npz)",
    )
    export.add_argument("workdir")
    export.add_argument("--out", help="default: WORKDIR/sampler")
    export.add_argument("--overwrite", action="store_true")
    export.add_argument(
        "--data-dir", help="training data, to recompute stale BatchNorm statistics"
    )
    export.add_argument(
        "--no-recalibrate-bn",
        dest="recalibrate_bn",
        action="store_false",
        help="export a checkpoint's BatchNorm statistics as they are",
    )
    export.add_argument("--recalibrate-batches", type=int, default=100)
    export.set_defaults(func=run_export)
