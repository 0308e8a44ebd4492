"""Training and sampling throughput of the presets on this machine.

For the ``cifar10``, ``celeba`` and ``fashion_mnist`` presets (stage 1, batch
100, synthetic images): training images/second after a few warm-up steps in
four configurations, ``CONFIGS``: before the speed-up (Keras'
BatchNormalization), the default (`networks.FusedBatchNormalization`), the
default with XLA (``compile(jit_compile=True)``, explicit: BalancedVAE never
turns XLA on by itself) and the default in ``mixed_bfloat16`` (the CPU has
AVX512-BF16); the peak resident memory of each configuration
(one subprocess each, so the peaks are separable), the analytic FLOPs per
image (convolution and dense multiply-adds of the networks; a training step
~ 3x the forward pass) and the achieved fraction of this machine's peak,
measured in the same run with a large float32 matmul. Then the sampling
images/second of an exported SavedModel (`export_sampler` of a fresh
``fashion_mnist`` two-stage model, reloaded with ``tf.saved_model.load`` in a
fresh process).

    python benchmarks/throughput.py         # ~15-20 min on 2 cores

Writes ``throughput.{json,md}`` to ``--results``. Numbers from one run are
comparable with each other (ratios); absolute ones depend on the machine's
load.
"""

import argparse
import json
import os
import resource
import shlex
import subprocess
import sys
import tempfile
import time

import numpy as np
from common import describe_machine

PRESETS = ("fashion_mnist", "cifar10", "celeba")
BATCH_SIZE = 100
# (warm-up steps, timed steps): the first step traces (and with XLA,
# compiles); celeba is ~10 s a step on 2 CPU cores.
STEPS = {"fashion_mnist": (3, 20), "cifar10": (2, 6), "celeba": (1, 3)}
# Rounds per preset: each round runs every configuration once, in turn, so a
# change in the machine's load hits all of them alike; the report gives the
# median images/s and, as the speed-up, the median of the per-round ratios to
# the baseline.
REPEATS = {"fashion_mnist": 3, "cifar10": 3, "celeba": 2}
# (label, fused BatchNorm, XLA, precision policy); the first is the baseline
# that the speed-ups are measured against.
CONFIGS = (
    ("before: Keras BN", False, False, "float32"),
    ("default: fused BN", True, False, "float32"),
    ("fused BN + XLA", True, True, "float32"),
    ("fused BN + bfloat16", True, False, "mixed_bfloat16"),
)


# ------------------------------------------------------------------ FLOPs
def multiply_adds(model):
    """Multiply-adds of one forward pass per image: conv, transposed conv, dense.

    Conv2D: out_h * out_w * k_h * k_w * in_c * out_c. Conv2DTranspose: every
    input pixel scatters a k_h * k_w * out_c patch, in_h * in_w * k_h * k_w *
    in_c * out_c. Dense: in * out. Batch norm, activations, additions and the
    losses are ignored (a few percent).
    """
    import keras

    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            total += multiply_adds(layer)
        elif isinstance(layer, keras.layers.Conv2DTranspose):
            _, in_h, in_w, in_c = layer.input.shape
            k_h, k_w, out_c, _ = layer.kernel.shape
            total += in_h * in_w * k_h * k_w * in_c * out_c
        elif isinstance(layer, keras.layers.Conv2D):
            _, out_h, out_w, out_c = layer.output.shape
            k_h, k_w, in_c, _ = layer.kernel.shape
            total += out_h * out_w * k_h * k_w * in_c * out_c
        elif isinstance(layer, keras.layers.Dense):
            in_units, out_units = layer.kernel.shape
            total += in_units * out_units
    return int(total)


# ---------------------------------------------------------------- workers
def _rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB


def worker_matmul(size=2048, repeats=8):
    """Best and median GFLOP/s of a size x size float32 matmul."""
    import tensorflow as tf

    a = tf.random.normal((size, size))
    b = tf.random.normal((size, size))
    matmul = tf.function(lambda a, b: tf.reduce_sum(tf.linalg.matmul(a, b)))
    matmul(a, b).numpy()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        matmul(a, b).numpy()
        times.append(time.perf_counter() - start)
    flops = 2.0 * size**3
    times.sort()
    return {
        "size": size,
        "repeats": repeats,
        "peak_gflops": flops / times[0] / 1e9,
        "median_gflops": flops / times[len(times) // 2] / 1e9,
    }


def worker_train(preset, label, fused_bn, xla, precision, warmup, steps):
    """Images/second of stage-1 training steps on synthetic data."""
    import keras
    import tensorflow as tf

    import vae_balance

    baseline = _rss_mib()
    keras.mixed_precision.set_global_policy(precision)
    config = vae_balance.get_preset(preset)
    vae = vae_balance.build_vae(config, fused_bn=fused_bn)
    vae.compile(
        optimizer=keras.optimizers.Adam(
            config.learning_rate, epsilon=config.adam_epsilon
        ),
        jit_compile=bool(xla),
    )
    batch = tf.random.uniform((BATCH_SIZE, *config.image_shape), seed=0)
    dataset = tf.data.Dataset.from_tensors(batch).repeat(warmup + steps)
    stamps = []

    class Clock(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            stamps.append(time.perf_counter())

    start = time.perf_counter()
    vae.fit(dataset, epochs=1, verbose=0, callbacks=[Clock()])
    timed = stamps[-1] - stamps[warmup - 1]
    forward = multiply_adds(vae.encoder) + multiply_adds(vae.decoder)
    return {
        "preset": preset,
        "config": label,
        "fused_bn": bool(fused_bn),
        "precision": precision,
        "xla": bool(xla),
        "jit_compile_in_effect": bool(vae.jit_compile),
        "parameters": int(vae.count_params()),
        "warmup_steps": warmup,
        "timed_steps": steps,
        "first_steps_seconds": round(stamps[warmup - 1] - start, 2),
        "seconds_per_step": timed / steps,
        "images_per_second": steps * BATCH_SIZE / timed,
        "forward_gflop_per_image": 2.0 * forward / 1e9,
        "train_gflop_per_image": 3 * 2.0 * forward / 1e9,
        "baseline_rss_mib": round(baseline, 1),
        "peak_rss_mib": round(_rss_mib(), 1),
    }


def worker_export(path):
    """A fresh (untrained) fashion_mnist two-stage model, exported."""
    import vae_balance

    vae = vae_balance.build_vae("fashion_mnist")
    vae2 = vae_balance.build_second_stage("fashion_mnist")
    vae_balance.export_sampler((vae, vae2), path, overwrite=True)
    return {"path": path, "latent_dim": int(vae2.encoder.inputs[0].shape[-1])}


def worker_sample(path, latent_dim, batch_size, repeats):
    """Images/second of the reloaded SavedModel's ``sample`` endpoint."""
    import tensorflow as tf

    baseline = _rss_mib()
    loaded = tf.saved_model.load(path)
    u = tf.random.normal((batch_size, latent_dim), seed=0)
    start = time.perf_counter()
    loaded.sample(u)["images"].numpy()
    first = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(repeats):
        loaded.sample(u)["images"].numpy()
    seconds = time.perf_counter() - start
    return {
        "batch_size": batch_size,
        "repeats": repeats,
        "first_call_seconds": round(first, 3),
        "images_per_second": repeats * batch_size / seconds,
        "baseline_rss_mib": round(baseline, 1),
        "peak_rss_mib": round(_rss_mib(), 1),
    }


WORKERS = {
    "matmul": worker_matmul,
    "train": worker_train,
    "export": worker_export,
    "sample": worker_sample,
}


def run_worker(name, **kwargs):
    """Runs one worker in a fresh Python process; returns its JSON result."""
    command = [sys.executable, os.path.abspath(__file__), "--worker", name]
    command += ["--kwargs", json.dumps(kwargs)]
    print(f"  {name} {kwargs}", flush=True)
    done = subprocess.run(command, capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = "\n".join(done.stderr.splitlines()[-15:])
        raise RuntimeError(f"worker {name} {kwargs} failed:\n{tail}")
    return json.loads(lines[-1])


def summarise_rounds(runs):
    """One row per configuration from its rounds (see REPEATS)."""
    baseline = runs[CONFIGS[0][0]]
    rows = []
    for label, results in runs.items():
        speeds = [r["images_per_second"] for r in results]
        row = dict(results[0])
        row["images_per_second_rounds"] = [round(v, 2) for v in speeds]
        row["images_per_second"] = float(np.median(speeds))
        row["seconds_per_step"] = BATCH_SIZE / row["images_per_second"]
        row["speed_up"] = float(
            np.median([r / b["images_per_second"] for r, b in zip(speeds, baseline)])
        )
        row["peak_rss_mib"] = max(r["peak_rss_mib"] for r in results)
        rows.append(row)
    return rows


# ----------------------------------------------------------------- report


def write_report(report, results):
    os.makedirs(results, exist_ok=True)
    with open(os.path.join(results, "throughput.json"), "w") as f:
        json.dump(report, f, indent=2)
        f.write("\n")
    peak = report["matmul"]["peak_gflops"]
    lines = [
        "# Throughput",
        "",
        f"Command: `{report['command']}`",
        "",
        f"{report['machine']}; TensorFlow {report['tensorflow']}, Keras "
        f"{report['keras']}. Run from {report['started_utc']} to "
        f"{report['finished_utc']} UTC; 1-minute load average at the start "
        f"{report['load_average'][0]:.2f}, at the end "
        f"{report['load_average'][1]:.2f} (this benchmark alone keeps it near "
        "1-2; more means other processes shared the cores, and the absolute "
        "numbers are then a lower bound). The ratios within this run are what "
        "to read." + (f" {report['note']}" if report.get("note") else ""),
        "",
        f"Machine peak: {peak:.1f} GFLOP/s, the best {report['matmul']['size']}x"
        f"{report['matmul']['size']} float32 matmul of "
        f"{len(report['matmul']['all_peak_gflops'])} measurements (best of "
        f"{report['matmul']['repeats']} each) taken at the start and after "
        "every round: "
        + ", ".join(f"{g:.0f}" for g in report["matmul"]["all_peak_gflops"])
        + " GFLOP/s. A spread means a changing load from other processes; a "
        "configuration timed while the load was lighter than at the best "
        "matmul can exceed 100%.",
        "",
        "## Training, stage 1, batch 100, synthetic data",
        "",
        "| preset | params | configuration | XLA | images/s (rounds) | s/step "
        "| speed-up | GFLOP/image (train ~3x fwd) | achieved GFLOP/s | % of peak "
        "| peak RSS |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in report["train"]:
        achieved = row["images_per_second"] * row["train_gflop_per_image"]
        xla = "yes" if row["jit_compile_in_effect"] else "no"
        if row["xla"] and not row["jit_compile_in_effect"]:
            xla = "asked, refused"
        lines.append(
            f"| {row['preset']} | {row['parameters'] / 1e6:.2f}M | "
            f"{row['config']} | {xla} | "
            f"{row['images_per_second']:.1f} ("
            + ", ".join(f"{v:.0f}" for v in row["images_per_second_rounds"])
            + f") | {row['seconds_per_step']:.2f} | "
            f"{row['speed_up']:.2f}x | "
            f"{row['train_gflop_per_image']:.3f} | {achieved:.1f} | "
            f"{100 * achieved / peak:.0f}% | {row['peak_rss_mib']:.0f} MiB |"
        )
    lines += [
        "",
        "Each preset ran in rounds ("
        + ", ".join(f"{p} {n}" for p, n in report["repeats"].items())
        + "), every configuration once per round, in turn; images/s is the "
        "median over the rounds (each round in brackets) and the speed-up the "
        "median of the per-round ratios to the first configuration of the "
        "same preset, so a load that changes between rounds cancels. Fused "
        "BN: `FusedBatchNormalization` (TensorFlow's fused "
        "kernel; the same results as Keras' layer to float32 rounding), "
        "the default since it was measured here. bfloat16: "
        "`--precision mixed_bfloat16` (weights and BN statistics float32); "
        "FLOP/s of bfloat16 rows are against the float32 matmul peak.",
        "",
        "Warm-up / timed steps: "
        + ", ".join(f"{p} {w}/{s}" for p, (w, s) in report["steps"].items())
        + ". FLOPs: 2 x the multiply-adds of the convolutions, transposed "
        "convolutions and dense layers of encoder + decoder for one image "
        "(forward), x3 for a training step; batch norm, activations and the "
        "loss are left out. Peak RSS: ru_maxrss of a separate process per "
        "configuration (TensorFlow alone, after imports: "
        f"{report['train'][0]['baseline_rss_mib']:.0f} MiB).",
        "",
        "## Sampling: exported SavedModel (fashion_mnist, two stages)",
        "",
        "`export_sampler` of a fresh fashion_mnist two-stage model, "
        "`tf.saved_model.load` in a fresh process, `sample(u)` "
        "(u -> decoder 2 -> decoder 1).",
        "",
        "| batch | images/s | first call | peak RSS |",
        "|---|---|---|---|",
    ]
    for row in report["sample"]:
        lines.append(
            f"| {row['batch_size']} | {row['images_per_second']:.0f} | "
            f"{row['first_call_seconds']:.2f} s | {row['peak_rss_mib']:.0f} MiB |"
        )
    lines.append("")
    with open(os.path.join(results, "throughput.md"), "w") as f:
        f.write("\n".join(lines))


def main(argv=None):
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--presets", default=",".join(PRESETS))
    parser.add_argument(
        "--steps-scale", type=float, default=1.0, help="multiply the timed steps"
    )
    parser.add_argument(
        "--repeats", type=int, help="rounds per preset (default: REPEATS)"
    )
    parser.add_argument(
        "--note", default="", help="what else ran on the machine, for the report"
    )
    parser.add_argument("--results", default=os.path.join(here, "results"))
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--kwargs", default="{}", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(WORKERS[args.worker](**json.loads(args.kwargs))), flush=True)
        return None

    import keras
    import tensorflow as tf

    presets = [p for p in args.presets.split(",") if p]
    steps = {
        p: (STEPS[p][0], max(1, round(STEPS[p][1] * args.steps_scale))) for p in presets
    }
    report = {
        "command": shlex.join(
            ["python", "benchmarks/throughput.py"]
            + list(sys.argv[1:] if argv is None else argv)
        ),
        "machine": describe_machine(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "started_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "steps": steps,
        "batch_size": BATCH_SIZE,
        "load_average": [os.getloadavg()[0]],
        "note": args.note,
    }
    # The cores are shared: the matmul is measured before every configuration
    # and once more at the end, and the machine's peak is the best of them.
    matmuls = [run_worker("matmul")]
    report["train"] = []
    report["repeats"] = {}
    for preset in presets:
        rounds = args.repeats or REPEATS[preset]
        report["repeats"][preset] = rounds
        runs = {config[0]: [] for config in CONFIGS}
        for _ in range(rounds):
            for label, fused_bn, xla, precision in CONFIGS:
                warmup, timed = steps[preset]
                runs[label].append(
                    run_worker(
                        "train",
                        preset=preset,
                        label=label,
                        fused_bn=fused_bn,
                        xla=xla,
                        precision=precision,
                        warmup=warmup,
                        steps=timed,
                    )
                )
                print(
                    f"    {preset}, {label}: "
                    f"{runs[label][-1]['images_per_second']:.1f} images/s"
                )
            matmuls.append(run_worker("matmul"))
        report["train"] += summarise_rounds(runs)
    with tempfile.TemporaryDirectory() as tmp:
        exported = run_worker("export", path=os.path.join(tmp, "sampler"))
        report["sample"] = [
            run_worker(
                "sample",
                path=exported["path"],
                latent_dim=exported["latent_dim"],
                batch_size=batch_size,
                repeats=repeats,
            )
            for batch_size, repeats in ((100, 20), (1000, 5))
        ]
    report["matmul"] = max(matmuls, key=lambda m: m["peak_gflops"])
    report["matmul"]["all_peak_gflops"] = [round(m["peak_gflops"], 1) for m in matmuls]
    report["finished_utc"] = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
    report["load_average"].append(os.getloadavg()[0])
    write_report(report, args.results)
    with open(os.path.join(args.results, "throughput.md")) as f:
        print(f.read())
    return report


if __name__ == "__main__":
    main()
