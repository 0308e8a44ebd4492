"""Quality against compute: GEN-2 and GMM FID along a run's training.

A run trained with ``--snapshot-every N`` keeps a copy of its stage-1
checkpoint every N epochs in ``WORKDIR/snapshots/``, with the CPU seconds
trained so far in its record. For each snapshot this script measures one
point of the curve, at a fixed, cheap protocol:

1. the BatchNorm statistics recomputed for the snapshot's weights (100
   training batches), and the held-out reconstruction MSE with them;
2. the training set encoded once; a fresh stage 2 (the preset's dense VAE)
   fitted for ``--stage2-epochs`` epochs on it (``--stage2-lr``, halved every
   ``--stage2-lr-epochs``), and a 10-component Gaussian mixture on z_mean;
3. ``--num-images`` GEN-2 and GMM images (seeded) against as many test
   images: standard FID (the 2015 Inception network, `vae_balance.fid`), and
   GEN-2 with Dai & Wipf's per-image min-max stretch (their ``fid_score.py``).

A point costs minutes, not a second full stage 2. Points are cached in
``WORKDIR/quality_points/epochNNNN.json``: rerunning skips them.

    python benchmarks/quality_study.py points runs/study/infogan-running
    python benchmarks/quality_study.py report runs/study/infogan-running \\
        runs/study/infogan-learned runs/study/resnet-running \\
        --out benchmarks/results/quality_study
"""

import argparse
import glob
import json
import os
import sys
import time

import keras
import numpy as np
import tensorflow as tf

from vae_balance.config import VAEConfig
from vae_balance.datasets import pipeline
from vae_balance.evaluation import metrics
from vae_balance.evaluation.image_sets import minmax_stretch
from vae_balance.fid.inception import get_feature_extractor
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
    points.add_argument("--real-features", help=".npz cache of the test features")
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


def load_images(config, split, num_images, data_dir):
    images = pipeline.load_split(config, split, data_dir, limit=num_images)
    return np.stack(list(images.as_numpy_iterator())).astype("float32")


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


def real_features(args, extractor, test):
    """The test images' features (cached in ``--real-features``)."""
    path = args.real_features
    if path and os.path.exists(path):
        with np.load(path) as saved:
            if int(saved["num_images"]) == len(test):
                return saved["features"]
    features = metrics.extract_features(test, extractor, verbose=0)
    if path:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        np.savez(path, features=features, num_images=len(test))
    return features


def measure_point(args, config, snapshot, train, test, real, extractor):
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
    scores = {}
    for name, images in (
        ("gen2", gen2),
        ("gmm", mixture),
        ("gen2_stretched", minmax_stretch(gen2)),
    ):
        features = metrics.extract_features(images, extractor, verbose=0)
        scores[name] = round(float(metrics.fid_from_features(real, features)), 3)
    return {
        "epoch": epoch,
        "global_step": record["global_step"],
        "train_cpu_seconds": record.get("cpu_seconds"),
        "fid": scores,
        "val_mse_recalibrated": round(val_mse, 6),
        "val_mse_batch_statistics": round(train_mse, 6),
        "gamma_squared": float(vae.running_mse.numpy()),
        "point_seconds": round(time.time() - start, 1),
        "point_cpu_seconds": round(time.process_time() - cpu_start, 1),
    }


def run_points(args):
    run = Workdir(args.workdir)
    with open(run.config_path) as f:
        config = VAEConfig.from_dict(json.load(f))
    out_dir = run.path(POINTS_DIR)
    todo = [
        s
        for s in snapshots(args.workdir)
        if not os.path.exists(os.path.join(out_dir, f"epoch{s[0]:04d}.json"))
    ]
    if not todo:
        print(f"[points] {args.workdir}: every snapshot measured")
        return
    train = load_images(config, "train", None, args.data_dir)
    test = load_images(config, "test", args.num_images, args.data_dir)
    extractor = get_feature_extractor()
    real = real_features(args, extractor, pipeline.remove_padding(test, config))
    for snapshot in todo:
        point = measure_point(args, config, snapshot, train, test, real, extractor)
        point["protocol"] = {
            "num_images": len(test),
            "stage2_epochs": args.stage2_epochs,
            "stage2_lr": args.stage2_lr,
            "stage2_lr_epochs": args.stage2_lr_epochs,
            "gmm_components": 10,
            "seed": args.seed,
        }
        os.makedirs(out_dir, exist_ok=True)
        target = os.path.join(out_dir, f"epoch{snapshot[0]:04d}.json")
        with open(target + ".tmp", "w") as f:
            json.dump(point, f, indent=2)
        os.replace(target + ".tmp", target)
        print(f"[points] {args.workdir} epoch {snapshot[0]}: {json.dumps(point)}")
        sys.stdout.flush()


# ------------------------------------------------------------------ report
def read_points(workdir):
    paths = sorted(glob.glob(os.path.join(workdir, POINTS_DIR, "epoch*.json")))
    return [json.load(open(path)) for path in paths]


def describe(workdir):
    with open(os.path.join(workdir, "config.json")) as f:
        config = json.load(f)
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
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out + ".json", "w") as f:
        json.dump(curves, f, indent=2)
    lines = [
        "| run | epoch | train CPU h | GEN-2 FID | GMM FID | GEN-2 FID, stretched"
        " | val MSE (recalibrated) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, curve in curves.items():
        for p in curve["points"]:
            hours = (p["train_cpu_seconds"] or 0) / 3600
            fid = p["fid"]
            lines.append(
                f"| {name} | {p['epoch']} | {hours:.2f} | {fid['gen2']:.1f} | "
                f"{fid['gmm']:.1f} | {fid['gen2_stretched']:.1f} | "
                f"{p['val_mse_recalibrated']:.5f} |"
            )
    with open(args.out + ".md", "w") as f:
        f.write("\n".join(lines) + "\n")
    plot(curves, args.out + ".png")
    print("\n".join(lines))


def plot(curves, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for index, (name, curve) in enumerate(curves.items()):
        points = curve["points"]
        if not points:
            continue
        hours = [(p["train_cpu_seconds"] or 0) / 3600 for p in points]
        color = f"C{index}"
        ax.plot(
            hours,
            [p["fid"]["gen2"] for p in points],
            "o-",
            color=color,
            label=f"{curve['setting']}: GEN-2",
        )
        ax.plot(
            hours,
            [p["fid"]["gmm"] for p in points],
            "s--",
            color=color,
            label=f"{curve['setting']}: GMM",
        )
    ax.axhline(29.3, color="grey", linestyle=":", label="Dai & Wipf, 2-Stage VAE")
    ax.set_xlabel("stage-1 training, CPU hours (2-core machine)")
    ax.set_ylabel("FID (2,000 vs 2,000 test images)")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    args = parse_args(argv)
    if args.command == "points":
        run_points(args)
    else:
        run_report(args)


if __name__ == "__main__":
    main()
