"""Quality against compute: GEN-2 and GMM FID along a run's training.

A run trained with ``--snapshot-every N`` keeps a copy of its stage-1
checkpoint every N epochs in ``WORKDIR/snapshots/``, with the CPU seconds
trained so far in its record. For each snapshot ``points`` measures one
point of the curve, at a fixed, cheap protocol:

1. the BatchNorm statistics recomputed for the snapshot's weights (100
   training batches), and the held-out reconstruction MSE with them;
2. the training set encoded once; a fresh stage 2 (the preset's dense VAE)
   fitted for ``--stage2-epochs`` epochs on it (``--stage2-lr``, halved every
   ``--stage2-lr-epochs``), and a 10-component Gaussian mixture on z_mean;
3. ``--num-images`` GEN-2 and GMM images (seeded) against as many test
   images (`vae_balance.evaluation.protocol.load_test_images`): standard FID
   (the 2015 Inception network), and GEN-2 with Dai & Wipf's per-image
   min-max stretch (`vae_balance.evaluation.image_sets.minmax_stretch`).

A point costs minutes, not a second full stage 2. Points are written to
``WORKDIR/quality_points/epochNNNN.json`` (rerunning skips them); the test
images' features are cached there too (`vae_balance.fid.feature_cache`) and,
with ``--shared-feature-cache DIR``, shared between runs. ``report`` writes
the curves of several runs to ``--out`` ``.json``, ``.md`` and ``.png``
(default ``benchmarks/results/quality_study``).

    python benchmarks/quality_study.py points runs/study/infogan-running \\
        --shared-feature-cache runs/study/features
    python benchmarks/quality_study.py report runs/study/infogan-running \\
        runs/study/infogan-learned runs/study/resnet-running \\
        --out benchmarks/results/quality_study
"""

import argparse
import glob
import json
import os
import time

import common
import keras
import numpy as np
import tensorflow as tf
from common import markdown_table

from vae_balance.config import VAEConfig
from vae_balance.datasets import pipeline
from vae_balance.evaluation import metrics
from vae_balance.evaluation.image_sets import minmax_stretch
from vae_balance.evaluation.protocol import load_test_images
from vae_balance.fid.feature_cache import FeatureCache
from vae_balance.fid.inception import get_feature_extractor
from vae_balance.files import write_json
from vae_balance.model import batchnorm
from vae_balance.model.builders import build_second_stage
from vae_balance.sampling.gmm import LatentGMM
from vae_balance.sampling.two_stage import encode_dataset, latent_dataset
from vae_balance.training.callbacks import staircase
from vae_balance.workdir import Workdir, load_checkpoint

POINTS_DIR = "quality_points"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    points = commands.add_parser("points", help="measure every snapshot of a run")
    points.add_argument("workdir")
    points.add_argument("--num-images", type=int, default=2000)
    points.add_argument("--stage2-epochs", type=int, default=10)
    points.add_argument("--stage2-lr", type=float, default=1e-3)
    points.add_argument("--stage2-lr-epochs", type=int, default=4)
    points.add_argument("--data-dir")
    points.add_argument(
        "--shared-feature-cache",
        help="folder where the test images' features are shared between runs",
    )
    points.add_argument("--seed", type=int, default=0)
    report = commands.add_parser("report", help="the curves' JSON, Markdown, PNG")
    report.add_argument("workdirs", nargs="+")
    report.add_argument("--out", default="benchmarks/results/quality_study")
    return parser.parse_args(argv)


# ------------------------------------------------------------------ points
def snapshots(workdir):
    """``[(epoch, model_path, record)]`` of a run's stage-1 snapshots."""
    found = []
    pattern = os.path.join(Workdir(workdir).snapshot_dir, "stage1-epoch*.keras")
    for path in sorted(glob.glob(pattern)):
        with open(path[: -len(".keras")] + ".json") as f:
            record = json.load(f)
        found.append((int(record["epoch"]), path, record))
    return found


def fit_second_stage(config, z_mean, z_log_sigma, args):
    """A fresh stage 2 on the codes, at the study's fixed budget."""
    vae2 = build_second_stage(config)
    vae2.compile(optimizer=keras.optimizers.Adam(args.stage2_lr, epsilon=1e-8))
    data = latent_dataset(z_mean, z_log_sigma, config.batch_size, args.seed + 1)
    schedule = keras.callbacks.LearningRateScheduler(
        staircase(args.stage2_lr, args.stage2_lr_epochs)
    )
    vae2.fit(data, epochs=args.stage2_epochs, callbacks=[schedule], verbose=0)
    return vae2


def generate(first_stage, second_stage, gmm, num_images, seed, config):
    """GEN-2 (u ~ N(0, I), Philox as the export's generate) and GMM images."""
    u_dim = second_stage.decoder.inputs[0].shape[-1]
    u = tf.random.stateless_normal([num_images, u_dim], seed=[seed, 0], alg="philox")
    z2 = second_stage.decoder.predict(u, batch_size=500, verbose=0)
    z_gmm = gmm.sample(num_images, seed=seed)
    gen2 = first_stage.decoder.predict(z2, batch_size=500, verbose=0)
    mixture = first_stage.decoder.predict(z_gmm, batch_size=500, verbose=0)
    return (
        pipeline.remove_padding(gen2, config),
        pipeline.remove_padding(mixture, config),
    )


def measure_point(args, config, snapshot, train, test, real, extract):
    """One point of the curve; ``test`` at the network's shape."""
    epoch, path, record = snapshot
    start, cpu_start = time.time(), time.process_time()
    vae = load_checkpoint(path)
    batches = pipeline.make_train_dataset(
        tf.data.Dataset.from_tensor_slices(train), config.batch_size, config.seed + 1
    )
    batchnorm.recalibrate_batchnorm(vae, batches, 100, config.batch_size, config.seed)
    val_mse = batchnorm.reconstruction_mse(vae, test, False, config.batch_size)
    train_mse = batchnorm.reconstruction_mse(vae, test, True, config.batch_size)
    z_mean, z_log_sigma = encode_dataset(vae.encoder, train, 500, verbose=0)
    vae2 = fit_second_stage(config, z_mean, z_log_sigma, args)
    gmm = LatentGMM.fit(z_mean, num_components=10, seed=args.seed)
    gen2, mixture = generate(vae, vae2, gmm, len(test), args.seed, config)
    sets = {"gen2": gen2, "gmm": mixture, "gen2_stretched": minmax_stretch(gen2)}
    return {
        "epoch": epoch,
        "global_step": record["global_step"],
        "train_cpu_seconds": record.get("cpu_seconds"),
        "fid": {
            name: round(float(metrics.fid_from_features(real, extract(images))), 3)
            for name, images in sets.items()
        },
        "val_mse_recalibrated": round(val_mse, 6),
        "val_mse_batch_statistics": round(train_mse, 6),
        "gamma_squared": float(vae.running_mse.numpy()),
        "point_seconds": round(time.time() - start, 1),
        "point_cpu_seconds": round(time.process_time() - cpu_start, 1),
    }


def run_points(args):
    run = Workdir(args.workdir)
    config = VAEConfig.from_dict(run.read_config())
    out_dir = run.path(POINTS_DIR)
    todo = [
        s
        for s in snapshots(args.workdir)
        if not os.path.exists(os.path.join(out_dir, f"epoch{s[0]:04d}.json"))
    ]
    if not todo:
        print(f"[points] {args.workdir}: every snapshot measured")
        return
    train = pipeline.load_split(config, "train", args.data_dir)
    train = np.stack(list(train.as_numpy_iterator())).astype("float32")
    test = load_test_images(config, args.num_images, args.data_dir)
    test = test.astype("float32") / 255.0
    extractor = get_feature_extractor()

    def extract(images):
        return metrics.extract_features(images, extractor, verbose=0)

    cache = FeatureCache(
        os.path.join(out_dir, "features"), extractor, args.shared_feature_cache
    )
    native = pipeline.remove_padding(test, config)
    real, _ = cache.features("real", native, extract, share=True)
    protocol = {
        "num_images": len(test),
        "stage2_epochs": args.stage2_epochs,
        "stage2_lr": args.stage2_lr,
        "stage2_lr_epochs": args.stage2_lr_epochs,
        "gmm_components": 10,
        "seed": args.seed,
    }
    for snapshot in todo:
        point = measure_point(args, config, snapshot, train, test, real, extract)
        point["protocol"] = protocol
        write_json(os.path.join(out_dir, f"epoch{snapshot[0]:04d}.json"), point)
        print(f"[points] {args.workdir} epoch {snapshot[0]}: {json.dumps(point)}")


# ------------------------------------------------------------------ report
def read_points(workdir):
    points = []
    for path in sorted(glob.glob(os.path.join(workdir, POINTS_DIR, "epoch*.json"))):
        with open(path) as f:
            points.append(json.load(f))
    return points


def describe(workdir):
    config = Workdir(workdir).read_config()
    network = config.get("network", "resnet")
    return f"{config['name']} ({network}), balance {config['balance']}"


def run_report(args):
    curves = {
        os.path.basename(os.path.normpath(w)): {
            "setting": describe(w),
            "points": read_points(w),
        }
        for w in args.workdirs
    }
    rows = [
        [
            name,
            p["epoch"],
            f"{(p['train_cpu_seconds'] or 0) / 3600:.2f}",
            *(f"{p['fid'][k]:.1f}" for k in ("gen2", "gmm", "gen2_stretched")),
            f"{p['val_mse_recalibrated']:.5f}",
        ]
        for name, curve in curves.items()
        for p in curve["points"]
    ]
    table = markdown_table(
        ["run", "epoch", "train CPU h", "GEN-2 FID", "GMM FID",
         "GEN-2 FID, stretched", "val MSE (recalibrated)"],
        rows,
    )  # fmt: skip
    common.write_report(args.out, curves, table + "\n")
    plot(curves, args.out + ".png")
    print(table)


def plot(curves, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for index, curve in enumerate(curves.values()):
        points = curve["points"]
        hours = [(p["train_cpu_seconds"] or 0) / 3600 for p in points]
        for key, style, label in (("gen2", "o-", "GEN-2"), ("gmm", "s--", "GMM")):
            fids = [p["fid"][key] for p in points]
            label = f"{curve['setting']}: {label}"
            ax.plot(hours, fids, style, color=f"C{index}", label=label)
    ax.axhline(29.3, color="grey", linestyle=":", label="Dai & Wipf, 2-Stage VAE")
    ax.set_xlabel("stage-1 training, CPU hours (2-core machine)")
    ax.set_ylabel("FID (2,000 vs 2,000 test images)")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    common.save_figure(fig, path, dpi=120)


def main(argv=None):
    args = parse_args(argv)
    if args.command == "points":
        run_points(args)
    else:
        run_report(args)


if __name__ == "__main__":
    main()
