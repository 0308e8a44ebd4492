"""``python -m vae_balance``: train, sample, export, fid, evaluate."""

import argparse
import dataclasses
import json
import math
import os
import sys

from vae_balance.distribute import PRECISIONS, STRATEGIES
from vae_balance.model import BALANCES
from vae_balance.presets import PRESETS, get_preset

# --smoke: the same preset's data and image size, narrow networks, one epoch
# of each stage on a few images: a quick check that everything runs.
SMOKE = {
    "epochs": 1,
    "epochs2": 1,
    "batch_size": 16,
    "base_filters": 8,
    "fc_dim": 64,
    "second_dim": 64,
}
SMOKE_IMAGES = 64


def add_train_arguments(parser, default_preset=None):
    """The training flags shared by the CLI and the top-level scripts."""
    parser.add_argument(
        "--preset",
        default=default_preset,
        required=default_preset is None,
        choices=sorted(PRESETS),
        help="configuration to train (see vae_balance/presets.py)",
    )
    parser.add_argument(
        "--data-dir",
        help="local data (CIFAR python batches, CelebA folder, IDX files, or "
        "a folder of images); default: tensorflow-datasets / known locations",
    )
    parser.add_argument(
        "--workdir", help="output directory; rerun to resume (default runs/PRESET)"
    )
    parser.add_argument("--epochs", type=int, help="stage-1 epochs")
    parser.add_argument("--epochs2", type=int, help="stage-2 epochs")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--learning-rate", type=float, help="stage-1 learning rate")
    parser.add_argument("--balance", choices=BALANCES, help="balancing strategy")
    parser.add_argument("--kl-weight", type=float, help="KL multiplier k")
    parser.add_argument("--seed", type=int)
    parser.add_argument(
        "--limit", type=int, help="use only the first N training images"
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help=f"quick check: narrow networks, {SMOKE_IMAGES} images, 1 epoch each",
    )
    parser.add_argument(
        "--jit-compile",
        action="store_true",
        help="XLA-compile the train step (slower on CPU; drops the per-batch "
        "NaN and range checks)",
    )
    parser.add_argument(
        "--allow-config-change",
        action="store_true",
        help="resume a work directory made with a different configuration",
    )
    parser.add_argument(
        "--grid-every", type=int, default=5, help="epochs between image grids"
    )
    parser.add_argument(
        "--skip-bad",
        action="store_true",
        help="skip unreadable or wrongly sized image files (their count is "
        "logged) instead of stopping at the first one",
    )
    parser.add_argument(
        "--no-recalibrate-bn",
        dest="recalibrate_bn",
        action="store_false",
        help="skip recomputing stage 1's BatchNorm statistics after training "
        "(on by default: short runs otherwise give grey inference images)",
    )
    parser.add_argument(
        "--recalibrate-batches",
        type=int,
        default=100,
        help="training batches read to recompute the BatchNorm statistics",
    )
    parser.add_argument(
        "--strategy",
        default="default",
        choices=STRATEGIES,
        help="tf.distribute strategy: one device, all local GPUs, or one "
        "process per machine (TF_CONFIG); --batch-size is the global batch",
    )
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        help="Keras dtype policy (default: float32); losses, gamma and the "
        "running MSE stay float32",
    )


def _positive(name, value):
    if value is not None and not (math.isfinite(value) and value > 0):
        raise SystemExit(f"error: --{name} must be positive, got {value}")


def config_from_args(args):
    """The resolved VAEConfig of the train flags."""
    overrides = {}
    for flag, field in (
        ("epochs", "epochs"),
        ("epochs2", "epochs2"),
        ("batch_size", "batch_size"),
        ("learning_rate", "learning_rate"),
        ("balance", "balance"),
        ("kl_weight", "kl_weight"),
        ("seed", "seed"),
    ):
        value = getattr(args, flag)
        if value is not None:
            overrides[field] = value
    for name in ("epochs", "epochs2", "batch_size", "learning_rate", "limit"):
        _positive(name.replace("_", "-"), getattr(args, name))
    if args.kl_weight is not None and not (
        math.isfinite(args.kl_weight) and args.kl_weight >= 0
    ):
        raise SystemExit(f"error: --kl-weight must be >= 0, got {args.kl_weight}")
    if getattr(args, "recalibrate_batches", None) is not None:
        _positive("recalibrate-batches", args.recalibrate_batches)
    if args.grid_every is not None:
        _positive("grid-every", args.grid_every)
    if args.seed is not None and not 0 <= args.seed < 2**32:
        # NumPy's and Keras's seeding take 0 <= seed < 2**32.
        raise SystemExit(f"error: --seed must be in [0, 2**32), got {args.seed}")
    config = get_preset(args.preset)
    if args.smoke:
        config = dataclasses.replace(config, **SMOKE)
    try:
        return get_preset(config, **overrides)
    except ValueError as error:
        raise SystemExit(f"error: {error}") from None


def run_train(args):
    from vae_balance import data, training

    config = config_from_args(args)
    workdir = args.workdir or os.path.join(
        "runs", config.name + ("-smoke" if args.smoke else "")
    )
    limit = args.limit or (SMOKE_IMAGES if args.smoke else None)
    try:
        result = training.train(
            config,
            workdir,
            data_dir=args.data_dir,
            limit=limit,
            jit_compile=args.jit_compile,
            allow_config_change=args.allow_config_change,
            grid_every=args.grid_every,
            skip_bad=args.skip_bad,
            strategy=args.strategy,
            precision=args.precision,
            recalibrate_bn=args.recalibrate_bn,
            recalibrate_batches=args.recalibrate_batches,
        )
    except (
        training.TrainingDiverged,
        training.WorkdirError,  # and SaveError (disk full)
        data.DataError,
        data.DatasetNotFoundError,
    ) as error:
        skippable = config.dataset in ("folder", "celeb_a")  # image files
        hint = " (--skip-bad skips bad image files)" * (
            isinstance(error, data.DataError) and skippable and not args.skip_bad
        )
        raise SystemExit(f"error: {error}{hint}") from None
    print(f"Outputs in {os.path.abspath(result.workdir)}")
    return result


def run_sample(args):
    import numpy as np
    import tensorflow as tf

    from vae_balance.plots import save_grid
    from vae_balance.sampling import (
        describe_signatures,
        read_sampler_metadata,
        restore_interrupted_export,
    )

    if restore_interrupted_export(args.sampler):
        print(f"Restored {args.sampler} after an interrupted export")
    if not os.path.isfile(os.path.join(args.sampler, "saved_model.pb")):
        raise SystemExit(
            f"error: {args.sampler!r} is not a SavedModel directory (no "
            "saved_model.pb); export one with `python -m vae_balance export`."
        )
    no_metadata = (
        f"{args.sampler} has no metadata (no `metadata` signature: exported by "
        "an older vae_balance)"
    )
    if args.info:
        metadata = read_sampler_metadata(args.sampler)  # the JSON file if there
        if metadata is not None:
            print(json.dumps(metadata, indent=2))
            return
        print(
            f"warning: {no_metadata}: no configuration, padding, gamma^2 or "
            "versions to show; its signatures follow. Re-export it with "
            "`python -m vae_balance export WORKDIR --overwrite`.",
            file=sys.stderr,
        )
        loaded = tf.saved_model.load(args.sampler)
        print(json.dumps({"signatures": describe_signatures(loaded)}, indent=2))
        return
    if args.num <= 0:
        raise SystemExit(f"error: --num must be positive, got {args.num}")
    if not 0 <= args.seed < 2**63:  # an int64 for generate, NumPy's range
        raise SystemExit(f"error: --seed must be in [0, 2**63), got {args.seed}")
    loaded = tf.saved_model.load(args.sampler)
    metadata = read_sampler_metadata(loaded)
    signatures = loaded.signatures
    if metadata is not None:  # images come out at their native size
        pad = 0
        if args.pad is not None:
            print(
                f"warning: --pad ignored: {args.sampler} crops its images itself "
                f"(pad={metadata.get('pad')} in its metadata)",
                file=sys.stderr,
            )
    if "generate" in signatures:
        images = signatures["generate"](
            num_samples=tf.constant(args.num, tf.int64),
            seed=tf.constant(args.seed, tf.int64),
        )["images"]
    elif "sample" in signatures:
        function = signatures["sample"]
        (name, spec), *_ = function.structured_input_signature[1].items()
        u = np.random.default_rng(args.seed).standard_normal(
            (args.num, int(spec.shape[-1]))
        )
        outputs = function(**{name: tf.constant(u, tf.float32)})
        images = outputs.get("images", next(iter(outputs.values())))
    else:
        raise SystemExit(
            f"error: {args.sampler} has neither a `generate` nor a `sample` "
            f"signature (it has: {', '.join(sorted(signatures)) or 'none'}); "
            "it is not a vae_balance sampler."
        )
    if metadata is None:  # an older export: the crop comes from elsewhere
        config_path = os.path.join(
            os.path.dirname(os.path.abspath(args.sampler)), "config.json"
        )
        if args.pad is not None:
            pad, source = args.pad, "--pad"
        elif os.path.exists(config_path):
            with open(config_path) as f:
                pad = int(json.load(f).get("pad", 0))
            source = f"from {config_path}"
        else:
            pad, source = 0, "no config.json beside it and no --pad"
        print(
            f"warning: {no_metadata}: it does not crop its images to the "
            f"dataset's native size. Cropping {pad} pixels per side ({source}). "
            "Re-export it with `python -m vae_balance export WORKDIR "
            "--overwrite` to embed its configuration.",
            file=sys.stderr,
        )
    images = np.asarray(images)
    save_grid(images, args.out, pad=pad)
    height, width, channels = images.shape[1:]
    height, width = height - 2 * pad, width - 2 * pad
    print(f"Wrote {args.num} samples ({height}x{width}x{channels}) to {args.out}")


def run_export(args):
    from vae_balance import training
    from vae_balance.presets import VAEConfig
    from vae_balance.sampling import export_sampler

    models, paths = [], []
    for stage in training.STAGES:
        path = os.path.join(args.workdir, f"{stage}.keras")
        if not os.path.exists(path):
            found = training.latest_checkpoint(args.workdir, stage)
            if found is None:
                raise SystemExit(
                    f"error: no {stage}.keras and no {stage} checkpoint in "
                    f"{args.workdir!r}; train first."
                )
            path = found[0]
        paths.append(path)
        try:
            models.append(training.load_checkpoint(path))  # safe_mode on
        except training.WorkdirError as error:
            raise SystemExit(f"error: {error}") from None
    config = None
    config_path = os.path.join(args.workdir, "config.json")
    if os.path.exists(config_path):
        try:
            with open(config_path) as f:
                config = VAEConfig.from_dict(json.load(f))
        except (ValueError, KeyError, TypeError) as error:  # JSONDecodeError too
            raise SystemExit(f"error: cannot read {config_path}: {error}") from None
    else:
        print(
            f"warning: no config.json in {args.workdir}: the sampler's metadata "
            "has no configuration (null) and its images are not cropped",
            file=sys.stderr,
        )
    _recalibrate_for_export(args, models[0], paths[0], config)
    out = args.out or os.path.join(args.workdir, "sampler")
    try:
        export_sampler(tuple(models), out, overwrite=args.overwrite, config=config)
    except (FileExistsError, OSError, ValueError) as error:
        raise SystemExit(f"error: {error}") from None
    print(f"Exported sampler to {out}")


def _recalibrate_for_export(args, vae, path, config):
    """Recomputes stale stage-1 BatchNorm statistics before an export.

    A stage 1 read from a checkpoint, or from a run of an older version, was
    not recalibrated by the job (`training.is_recalibrated`).
    """
    from vae_balance import data, training

    if training.is_recalibrated(args.workdir, path) or not args.recalibrate_bn:
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
        before, after, info = training.recalibrate_loaded_stage1(
            vae, config, args.data_dir, args.recalibrate_batches
        )
    except (data.DataError, data.DatasetNotFoundError, ValueError) as error:
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


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m vae_balance",
        description="Balanced two-stage VAEs (Asperti & Trentin 2020) in Keras 3.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True)

    train = subparsers.add_parser("train", help="train both stages and export")
    add_train_arguments(train)
    train.set_defaults(func=run_train)

    sample = subparsers.add_parser("sample", help="PNG grid from an exported sampler")
    sample.add_argument("sampler", help="SavedModel directory (workdir/sampler)")
    sample.add_argument("--num", type=int, default=64)
    sample.add_argument(
        "--seed", type=int, default=0, help="the seed of generate(num, seed)"
    )
    sample.add_argument("--out", default="samples.png")
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

    export = subparsers.add_parser("export", help="export a trained work directory")
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

    try:
        from vae_balance import evaluation
    except ImportError:
        evaluation = None
    if evaluation is not None and hasattr(evaluation, "add_subcommands"):
        evaluation.add_subcommands(subparsers)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    args.func(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
