"""Quality against compute: GEN-2 and GMM FID along a run's training.

``points`` measures one point per stage-1 snapshot of a run trained with
``--snapshot-every N`` (its record has the CPU seconds trained so far), at a
fixed, cheap protocol: BatchNorm statistics recomputed (100 training batches)
and the held-out MSE; a fresh stage 2 (``--stage2-epochs``) and a
10-component mixture on the training codes; ``--num-images`` GEN-2, GMM and
min-max stretched GEN-2 images (`vae_balance.sampling.latent`), and REC (the
test images' z = mu + sigma * eps decoded: the floor of generation), scored
against as many test images by the evaluation's `score_image_sets`. Points go to
``WORKDIR/quality_points/epochNNNN.json`` (rerunning skips them;
``--epochs 8 12``: only those snapshots). ``report``
writes the curves of several runs to ``--out`` ``.json``, ``.md``, ``.png``.

    python benchmarks/quality_study.py points runs/study/infogan-running \\
        --shared-feature-cache runs/study/features
    python benchmarks/quality_study.py report runs/study/infogan-running \\
        runs/study/infogan-learned --out benchmarks/results/quality_study
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

from vae_balance.config import VAEConfig
from vae_balance.datasets import pipeline
from vae_balance.evaluation.image_sets import minmax_stretch
from vae_balance.evaluation.protocol import load_test_images, sampled_reconstructions
from vae_balance.evaluation.scores import score_image_sets
from vae_balance.fid.feature_cache import FeatureCache
from vae_balance.fid.inception import get_feature_extractor
from vae_balance.files import write_json
from vae_balance.model import batchnorm
from vae_balance.model.builders import build_second_stage
from vae_balance.sampling.gmm import LatentGMM
from vae_balance.sampling.latent import build_samplers
from vae_balance.sampling.two_stage import encode_dataset, latent_dataset
from vae_balance.training.callbacks import staircase
from vae_balance.workdir import Workdir, load_checkpoint

POINTS_DIR = "quality_points"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    add = commands.add_parser("points", help="measure every snapshot").add_argument
    add("workdir")
    add("--num-images", type=int, default=2000)
    add("--stage2-epochs", type=int, default=10)
    add("--stage2-lr", type=float, default=1e-3)
    add("--stage2-lr-epochs", type=int, default=4)
    add("--data-dir")
    add("--shared-feature-cache", help="where runs share the test images' features")
    add("--seed", type=int, default=0)
    add("--epochs", type=int, nargs="+", help="only these snapshots (default: all)")
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
        record = common.read_json(path[: -len(".keras")] + ".json")
        found.append((int(record["epoch"]), path, record))
    return found


def unmeasured(workdir, out_dir, epochs=None):
    """The snapshots without a point in ``out_dir`` (of ``epochs`` only)."""
    return [
        s
        for s in snapshots(workdir)
        if epochs is None or s[0] in epochs
        if not os.path.exists(os.path.join(out_dir, f"epoch{s[0]:04d}.json"))
    ]


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


def measure_point(args, config, snapshot, train, test, features):
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
    samplers = build_samplers(vae, vae2, gmm)
    sets = {n: samplers[n].generate(len(test), args.seed, 500) for n in ("gen2", "gmm")}
    sets["gen2_stretched"] = minmax_stretch(sets["gen2"], config.pad)
    rng = np.random.default_rng(args.seed)
    sets["rec"] = sampled_reconstructions(vae, test, rng, 500)[3]
    labels = {n: n for n in sets}
    scores = score_image_sets(
        test, sets, labels, features, config.pad, seed=args.seed, verbose=0
    )
    return {
        "epoch": epoch, "global_step": record["global_step"],
        "train_cpu_seconds": record.get("cpu_seconds"),
        "fid": {name: round(float(score["fid"]), 3) for name, score in scores.items()},
        "scores": scores, "val_mse_recalibrated": round(val_mse, 6),
        "val_mse_batch_statistics": round(train_mse, 6),
        "gamma_squared": float(keras.ops.convert_to_numpy(vae.gamma)) ** 2,
        "point_seconds": round(time.time() - start, 1),
        "point_cpu_seconds": round(time.process_time() - cpu_start, 1),
    }  # fmt: skip


def run_points(args):
    run = Workdir(args.workdir)
    config = VAEConfig.from_dict(run.read_config())
    out_dir = run.path(POINTS_DIR)
    todo = unmeasured(args.workdir, out_dir, args.epochs)
    if not todo:
        print(f"[points] {args.workdir}: every snapshot measured")
        return
    train = pipeline.load_split(config, "train", args.data_dir)
    train = np.stack(list(train.as_numpy_iterator())).astype("float32")
    test = load_test_images(config, args.num_images, args.data_dir) / np.float32(255)
    cache = os.path.join(out_dir, "features")
    features = FeatureCache(cache, get_feature_extractor(), args.shared_feature_cache)
    protocol = {"num_images": len(test), "gmm_components": 10, "seed": args.seed}
    stage2 = ("stage2_epochs", "stage2_lr", "stage2_lr_epochs")
    protocol.update({key: getattr(args, key) for key in stage2})
    for snapshot in todo:
        point = measure_point(args, config, snapshot, train, test, features)
        point["protocol"] = protocol
        write_json(os.path.join(out_dir, f"epoch{snapshot[0]:04d}.json"), point)
        print(f"[points] {args.workdir} epoch {snapshot[0]}: {json.dumps(point)}")


# ------------------------------------------------------------------ report
def history_epochs(workdir, stage):
    """Epochs in ``history_<stage>.csv``; None without it (a record of REC
    and GMM only, which need no stage 2)."""
    path = os.path.join(workdir, f"history_{stage}.csv")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return len(f.readlines()) - 1


def read_curve(workdir):
    """A run's setting, its points and its full evaluation (``evaluation.json``
    of `vae_balance evaluate`, with the epochs its histories hold), if any."""
    config = Workdir(workdir).read_config()
    network = config.get("network", "resnet")
    paths = sorted(glob.glob(os.path.join(workdir, POINTS_DIR, "epoch*.json")))
    curve = {
        "setting": f"{config['name']} ({network}), balance {config['balance']}",
        "points": [common.read_json(path) for path in paths],
        "final": None,
    }
    if os.path.exists(os.path.join(workdir, "evaluation.json")):
        final = common.read_json(os.path.join(workdir, "evaluation.json"))
        curve["final"] = {
            "num_images": final["num_images"], "fid": final["fid"],
            "stage1_epochs": history_epochs(workdir, "stage1"),
            "stage2_epochs": history_epochs(workdir, "stage2"),
        }  # fmt: skip
    return curve


def run_report(args):
    sets = ("gen2", "gmm", "gen2_stretched", "rec", "gen2_matched")  # "-": not measured
    curves = {
        os.path.basename(os.path.normpath(w)): read_curve(w) for w in args.workdirs
    }
    fid = lambda fids, k: f"{fids[k]:.1f}" if k in fids else None  # noqa: E731
    rows = [
        [name, p["epoch"], f"{(p['train_cpu_seconds'] or 0) / 3600:.2f}",
         *(fid(p["fid"], k) for k in sets), f"{p['val_mse_recalibrated']:.5f}"]
        for name, curve in curves.items()
        for p in curve["points"]
    ]  # fmt: skip
    finals = [
        [name, f["num_images"], f["stage1_epochs"], f["stage2_epochs"],
         *(fid(f["fid"], k) for k in sets)]
        for name, f in ((name, c["final"]) for name, c in curves.items()) if f
    ]  # fmt: skip
    fids = ["GEN-2 FID", "GMM FID", "GEN-2 FID, stretched", "REC FID", "GEN-2 matched"]
    table = common.markdown_table(
        ["run", "epoch", "train CPU h", *fids, "val MSE (recalibrated)"], rows
    ) + "\n\nFull evaluations (`evaluation.json`):\n\n" + common.markdown_table(
        ["run", "images per set", "stage-1 epochs", "stage-2 epochs", *fids], finals
    )  # fmt: skip
    common.write_report(args.out, curves, table + "\n")
    plot(curves, args.out + ".png")
    print(table)


def plot(curves, path):
    """Left: the points against stage-1 CPU hours. Right: the full
    evaluations' GEN-2 against stage-2 epochs, per stage 1; REC and GMM,
    which need no stage 2, as levels."""
    fig, (ax, right) = common.figure(13, 7.5, columns=2)
    for index, (name, curve) in enumerate(curves.items()):
        points = curve["points"]
        marks = (("gen2", "o-", "GEN-2"), ("gmm", "s--", "GMM"), ("rec", "^:", "REC"))
        for key, style, label in marks:
            measured = [p for p in points if key in p["fid"]]
            hours = [(p["train_cpu_seconds"] or 0) / 3600 for p in measured]
            fids = [p["fid"][key] for p in measured]
            label = f"{name}: {label}" if measured else None
            ax.plot(hours, fids, style, color=f"C{index}", label=label)
    finals = [
        ((c["setting"], c["final"]["stage1_epochs"]), c["final"])
        for c in curves.values() if c["final"]
    ]  # fmt: skip
    finals.sort(key=lambda f: (*f[0], f[1]["stage2_epochs"] or 0))
    for index, group in enumerate(sorted({g for g, _ in finals})):
        label = f"{group[0]}, stage 1 {group[1]} epochs"
        mine = [f for g, f in finals if g == group]
        for key, style in (("gen2", "o-"), ("gen2_matched", "x-.")):
            xy = [(f["stage2_epochs"], f["fid"][key]) for f in mine if key in f["fid"]]
            if xy:
                right.plot(*zip(*xy), style, color=f"C{index}", label=f"{label}: {key}")
        for key, line in (("gmm", "--"), ("rec", ":")):
            for level in [f["fid"][key] for f in mine if key in f["fid"]][-1:]:
                right.axhline(
                    level, color=f"C{index}", ls=line, label=f"{label}: {key.upper()}"
                )
    for axes in (ax, right):
        axes.axhline(29.3, color="grey", linestyle=":", label="Dai & Wipf, 2-Stage VAE")
        axes.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.13))
        axes.grid(alpha=0.3)
    sizes = {p["protocol"]["num_images"] for c in curves.values() for p in c["points"]}
    label = f"FID ({' or '.join(f'{n:,}' for n in sorted(sizes))} images per set)"
    ax.set(xlabel="stage-1 training, CPU hours (2-core machine)", ylabel=label)
    sizes = ", ".join(sorted({f"{f['num_images']:,}" for _, f in finals}))
    right.set(xlabel=f"stage-2 epochs (full evaluations, {sizes} images)", ylabel="FID")
    right.set(xlim=(0, None))
    common.save_figure(fig, path, dpi=120)


def main(argv=None):
    args = parse_args(argv)
    (run_points if args.command == "points" else run_report)(args)


if __name__ == "__main__":
    main()
