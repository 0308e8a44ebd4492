"""Training throughput of the presets, the package against its PyTorch peer.

For each preset of ``BUDGETS`` (stage 1, batch 100, synthetic images), in
interleaved rounds, each configuration of ``CONFIGS`` in its own process
(which imports only its own framework, hence the imports in the workers):
training images/second, peak memory and the share of the machine's matmul
peak, after checking the PyTorch peer (`torch_peer.py`) equal to the package.

    python benchmarks/throughput.py      # ~20 min on 2 idle cores (estimated)
    python benchmarks/throughput.py --quick --presets fashion_mnist  # smoke test

Writes ``throughput.{json,md}`` to ``--results``; docs/benchmarks.md reads them.
"""

import argparse
import json
import math
import os
import resource
import tempfile
import time

import common
import numpy as np
from common import markdown_table, ratio

BATCH_SIZE = 100
# preset: (warm-up steps, timed steps, rounds); celeba is ~10 s a step on 2
# CPU cores. A round runs every configuration once: a changing load hits all.
BUDGETS = {"fashion_mnist": (3, 20, 3), "fashion_mnist_infogan": (3, 20, 3),
           "cifar10": (2, 6, 3), "celeba": (1, 3, 2)}  # fmt: skip
QUICK_STEPS = (1, 2)  # --quick: one round, these steps, a short matmul
# key: (label, framework, precision), in a round's order (each PyTorch row
# right after the package's); the first is the baseline of the speed-ups.
CONFIGS = {
    "fused_bn": ("default: fused BN", "tensorflow", "float32"),
    "torch_eager": ("PyTorch eager", "torch", "float32"),
    "bfloat16": ("default + bfloat16", "tensorflow", "mixed_bfloat16"),
    "torch_bf16": ("PyTorch eager, bfloat16 autocast", "torch", "bfloat16 autocast"),
}
LABELS = {key: label for key, (label, _, _) in CONFIGS.items()}
DEFAULT, EAGER, BFLOAT16, EAGER_BF16 = LABELS.values()
# (package label, PyTorch label, key) of the reported ratios.
PEER_RATIOS = ((DEFAULT, EAGER, "eager"),
               (BFLOAT16, EAGER_BF16, "bfloat16_over_eager_bfloat16"),
               (BFLOAT16, EAGER, "bfloat16_over_eager"))  # fmt: skip


# ------------------------------------------------------------------ FLOPs
def multiply_adds(layer):
    """Multiply-adds per image of a forward pass through a layer or model:
    convolutions, transposed convolutions (each input pixel scatters a
    patch), dense layers, a spectral norm as the layer it wraps; batch norm,
    activations, additions and losses are left out (a few %)."""
    import keras

    if isinstance(layer, keras.Model):
        return sum(multiply_adds(inner) for inner in layer.layers)
    inner = layer.layer if isinstance(layer, keras.layers.Wrapper) else layer
    if isinstance(inner, keras.layers.Conv2DTranspose):
        pixels = math.prod(layer.input.shape[1:3])
    elif isinstance(inner, keras.layers.Conv2D):
        pixels = math.prod(layer.output.shape[1:3])
    elif isinstance(inner, keras.layers.Dense):
        pixels = 1
    else:
        return 0
    return int(pixels * math.prod(inner.kernel.shape))


def gflop_per_image(vae):
    """``{"forward_gflop_per_image", "train_gflop_per_image"}`` (train ~ 3x)."""
    forward = 2.0 * (multiply_adds(vae.encoder) + multiply_adds(vae.decoder)) / 1e9
    return {"forward_gflop_per_image": forward, "train_gflop_per_image": 3 * forward}


# ---------------------------------------------------------------- workers
def _rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB


def worker_matmul(size=2048, repeats=8):
    """Best and median GFLOP/s of a float32 matmul: the "% of peak" divisor."""
    import tensorflow as tf

    a, b = tf.random.normal((size, size)), tf.random.normal((size, size))
    matmul = tf.function(lambda a, b: tf.reduce_sum(tf.linalg.matmul(a, b)))
    _, times = common.clock(lambda: matmul(a, b).numpy(), 1, repeats)
    gflop = 2.0 * size**3 / 1e9
    return {"size": size, "repeats": repeats, "peak_gflops": gflop / min(times),
            "median_gflops": gflop / sorted(times)[len(times) // 2]}  # fmt: skip


def time_package(preset, precision, warmup, steps):
    """The package's stage-1 steps through ``fit`` (XLA off), timed from
    batch-end stamps after the ``warmup`` first."""
    import keras
    import tensorflow as tf

    import vae_balance

    keras.mixed_precision.set_global_policy(precision)
    config = vae_balance.get_preset(preset)
    vae = vae_balance.build_vae(config)
    optimizer = keras.optimizers.Adam(config.learning_rate, epsilon=config.adam_epsilon)
    vae.compile(optimizer=optimizer, jit_compile=False)
    batch = tf.random.uniform((BATCH_SIZE, *config.image_shape), seed=0)
    dataset = tf.data.Dataset.from_tensors(batch).repeat(warmup + steps)
    # tf.data's autotuner off: on these 2 cores, with it on, whole fits of
    # this one-tensor dataset ran at a fixed 127.5 ms/step instead of 65-80
    # for fashion_mnist, at random (measured 2026-12-02).
    options = tf.data.Options()
    options.autotune.enabled = False
    stamps = [time.perf_counter()]
    clock = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: stamps.append(time.perf_counter())
    )
    vae.fit(dataset.with_options(options), epochs=1, verbose=0, callbacks=[clock])
    first, times = stamps[warmup] - stamps[0], list(np.diff(stamps[warmup:]))
    return {
        "parameters": int(vae.count_params()),
        **common.step_speed(first, times, warmup, BATCH_SIZE),
        **gflop_per_image(vae),
    }


def worker_train(preset, key, warmup, steps, config=None, gflop=None):
    """Images/second of one configuration of ``CONFIGS``; the peer gets the
    preset (``config``) and its FLOPs from the check: it has no TensorFlow."""
    label, framework, precision = CONFIGS[key]
    if framework == "torch":
        import torch_peer

        baseline = _rss_mib()
        bfloat16 = precision != "float32"
        result = torch_peer.time_training(config, warmup, steps, BATCH_SIZE, bfloat16)
        result.update(train_gflop_per_image=gflop, forward_gflop_per_image=gflop / 3)
    else:
        import vae_balance  # noqa: F401  (the baseline: TensorFlow loaded)

        baseline = _rss_mib()
        result = time_package(preset, precision, warmup, steps)
    return {"preset": preset, "config": label, "framework": framework,
            "precision": precision, **result, "baseline_rss_mib": round(baseline, 1),
            "peak_rss_mib": round(_rss_mib(), 1)}  # fmt: skip


def worker_check(preset):
    """The peer's parameter counts, forward pass, loss and gradients against
    the package's (raises on a difference), if PyTorch can be imported."""
    try:
        import torch_peer
    except ImportError as error:
        return {"available": False, "error": f"{type(error).__name__}: {error}"}
    import vae_balance

    return {
        "available": True,
        "torch": torch_peer.torch.__version__,
        "parameters": torch_peer.check_parameter_counts(preset),
        "forward_max_abs_difference": torch_peer.check_forward(preset),
        "loss_and_gradients": torch_peer.check_loss(preset),
        **gflop_per_image(vae_balance.build_vae(preset)),
        "config": vae_balance.get_preset(preset).to_dict(),
    }


WORKERS = {"matmul": worker_matmul, "train": worker_train, "check": worker_check}


def run_worker(name, **kwargs):
    """Runs one worker in a fresh Python process; returns its JSON result."""
    shown = {k: v for k, v in kwargs.items() if k != "config"}  # a long dict
    print(f"  {name} {shown}", flush=True)
    return common.run_worker(__file__, name, kwargs, label=f"{name} {shown}")


# -------------------------------------------------------------- summaries
def _speeds(results):
    return [r["images_per_second"] for r in results]


def _median_ratio(numerators, denominators):
    return float(np.median([n / d for n, d in zip(numerators, denominators)]))


def summarise_rounds(runs):
    """One row per configuration from its rounds ``{label: [result]}``: the
    median images/s and the median of the per-round ratios to the first."""
    baseline = _speeds(next(iter(runs.values())))
    rows = []
    for results in runs.values():
        speeds = _speeds(results)
        row = dict(results[0])
        row["images_per_second"] = float(np.median(speeds))
        row["images_per_second_rounds"] = [round(v, 2) for v in speeds]
        row["seconds_per_step"] = BATCH_SIZE / row["images_per_second"]
        row["speed_up"] = _median_ratio(speeds, baseline)
        row["peak_rss_mib"] = max(r["peak_rss_mib"] for r in results)
        rows.append(row)
    return rows


def summarise_peer(runs, check):
    """The package against the PyTorch peer, round by round (PEER_RATIOS)."""
    checked = ("parameters", "forward_max_abs_difference", "loss_and_gradients")
    peer = {key: check.get(key) for key in checked}
    for package_label, label, key in PEER_RATIOS:
        if package_label in runs and label in runs:
            package, speeds = _speeds(runs[package_label]), _speeds(runs[label])
            rounds = [round(p / t, 3) for p, t in zip(package, speeds)]
            peer[f"package_over_{key}_rounds"] = rounds
            peer[f"package_over_{key}"] = _median_ratio(package, speeds)
    return peer


# ----------------------------------------------------------------- report
def _with_rounds(entry, key):
    if f"package_over_{key}" not in entry:
        return "-"
    rounds = ", ".join(ratio(v) for v in entry[f"package_over_{key}_rounds"])
    return f"{ratio(entry[f'package_over_{key}'])} ({rounds})"


def peer_lines(report):
    """The peer's checks and the package's speed over it (PEER_RATIOS)."""
    peer = report.get("peer", {})
    lines = ["## Against the peer: the same networks in PyTorch", ""]
    if not peer.get("available"):
        return lines + [f"Not measured: {peer.get('skipped', 'not asked for')}.", ""]
    rows = []
    for preset, entry in peer["presets"].items():
        counts, forward = entry["parameters"], entry["forward_max_abs_difference"]
        worst = max(v for mode in forward.values() for v in mode.values())
        rows.append(
            [preset, f"{counts['trainable']:,} / {counts['total']:,}", f"{worst:.1e}"]
            + [_with_rounds(entry, key) for _, _, key in PEER_RATIOS]
        )
    headers = ["preset", "params trainable / total", "forward max diff"]
    headers += [f"{a} / {b} (rounds)" for a, b, _ in PEER_RATIOS]
    text = f"PyTorch {peer['torch']} on {peer['threads']} threads."
    return lines + [text, "", markdown_table(headers, rows), ""]


def _train_row(row, peak):
    achieved = row["images_per_second"] * row["train_gflop_per_image"]
    rounds = ", ".join(f"{v:.0f}" for v in row["images_per_second_rounds"])
    return [
        row["preset"], f"{row['parameters'] / 1e6:.2f}M", row["config"],
        f"{row['images_per_second']:.1f} ({rounds})", f"{row['seconds_per_step']:.2f}",
        ratio(row["speed_up"]), f"{row['train_gflop_per_image']:.3f}",
        f"{achieved:.1f}", f"{100 * achieved / peak:.0f}%",
        f"{row['peak_rss_mib']:.0f} MiB",
    ]  # fmt: skip


def report_lines(report):
    """The Markdown report: the data only, docs/benchmarks.md reads it."""
    matmul, load = report["matmul"], report["load_average"]
    rounds = ", ".join(f"{p} {n}" for p, n in report["repeats"].items())
    steps = ", ".join(f"{p} {w}/{s}" for p, (w, s) in report["steps"].items())
    return [
        "# Throughput", "", f"Command: `{report['command']}`", "",
        f"{report['machine']}; TensorFlow {report['tensorflow']}, Keras "
        f"{report['keras']}. {report['started_utc']} to {report['finished_utc']} "
        f"UTC; 1-minute load average {load[0]:.2f} at the start, {load[1]:.2f} at "
        f"the end. {report.get('note', '')}".rstrip(), "",
        f"Matmul peak: {matmul['peak_gflops']:.1f} GFLOP/s, the best "
        f"{matmul['size']}x{matmul['size']} float32 matmul (best of "
        f"{matmul['repeats']}) at the start and after every round: "
        + ", ".join(f"{g:.0f}" for g in matmul["all_peak_gflops"]) + ".", "",
        f"Batch {report['batch_size']}; rounds: {rounds}; warm-up / timed steps: "
        f"{steps}; RSS after imports: "
        f"{report['train'][0]['baseline_rss_mib']:.0f} MiB. How to read this: "
        "docs/benchmarks.md, \"Reading the throughput report\".", "",
        "## Training, stage 1, synthetic data", "",
        markdown_table(
            ["preset", "params", "configuration", "images/s (rounds)", "s/step",
             "speed-up", "GFLOP/image (train ~3x fwd)", "achieved GFLOP/s",
             "% of peak", "peak RSS"],
            [_train_row(row, matmul["peak_gflops"]) for row in report["train"]],
        ), "",
        *peer_lines(report),
    ]  # fmt: skip


def write_report(report, results):
    """``throughput.{json,md}`` in ``results``; returns the Markdown."""
    stem = os.path.join(results, "throughput")
    return common.write_report(stem, report, report_lines(report))


# -------------------------------------------------------------------- run
def check_peer(presets, configs):
    """The peer's checks of every preset, before any timing: ``(configs,
    peer, {preset: check})``, the PyTorch rows dropped without torch."""
    peer, checks = {"available": False, "skipped": "not asked for"}, {}
    for preset in presets if any(CONFIGS[k][1] == "torch" for k in configs) else []:
        check = checks[preset] = run_worker("check", preset=preset)
        if not check["available"]:
            peer["skipped"] = f"PyTorch cannot be imported ({check['error']})"
            return [k for k in configs if CONFIGS[k][1] != "torch"], peer, {}
        peer = {"available": True, "torch": check["torch"], "presets": {}}
    return configs, peer, checks


def time_preset(preset, configs, steps, rounds, check, matmuls, matmul_kwargs):
    """Every configuration of one preset, ``rounds`` times in turn, each in
    its own process (a matmul after every round); ``{label: [result]}``."""
    runs = {LABELS[key]: [] for key in configs}
    for _ in range(rounds):
        for key in configs:
            kwargs = dict(preset=preset, key=key, warmup=steps[0], steps=steps[1])
            if CONFIGS[key][1] == "torch":
                kwargs.update(config=check["config"])
                kwargs.update(gflop=check["train_gflop_per_image"])
            runs[LABELS[key]].append(run_worker("train", **kwargs))
            speed = runs[LABELS[key]][-1]["images_per_second"]
            print(f"    {preset}, {LABELS[key]}: {speed:.1f} images/s", flush=True)
        matmuls.append(run_worker("matmul", **matmul_kwargs))
    return runs


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--presets", default=",".join(BUDGETS))
    parser.add_argument("--configs", default=",".join(CONFIGS), help="default: all")
    parser.add_argument("--steps-scale", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, help="rounds (default: BUDGETS)")
    parser.add_argument("--quick", action="store_true", help="a smoke test")
    parser.add_argument("--note", default="", help="what else ran on the machine")
    parser.add_argument("--results", help="default: benchmarks/results")
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--kwargs", default="{}", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.presets = [p for p in args.presets.split(",") if p]
    wanted = [k for k in args.configs.split(",") if k]
    for what, names, known in (("presets", args.presets, BUDGETS),
                               ("configs", wanted, CONFIGS)):  # fmt: skip
        unknown = sorted(set(names) - set(known))
        if unknown and not args.worker:
            parser.error(f"unknown --{what} {unknown}; valid: {', '.join(known)}")
    args.configs = [key for key in CONFIGS if key in wanted]
    if args.results is None:
        here = os.path.dirname(os.path.abspath(__file__))
        quick = os.path.join(tempfile.gettempdir(), "throughput_quick")
        args.results = quick if args.quick else os.path.join(here, "results")
    return args  # fmt: skip


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        print(json.dumps(WORKERS[args.worker](**json.loads(args.kwargs))), flush=True)
        return None
    import keras
    import tensorflow as tf

    budgets = {p: BUDGETS[p] for p in args.presets}
    report = {
        "command": common.command_line("throughput.py", argv),
        "machine": common.describe_machine(),
        "tensorflow": tf.__version__, "keras": keras.__version__,
        "started_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "steps": {
            p: QUICK_STEPS if args.quick else (w, max(1, round(s * args.steps_scale)))
            for p, (w, s, _) in budgets.items()
        },
        "batch_size": BATCH_SIZE, "load_average": [os.getloadavg()[0]],
        "note": args.note, "train": [], "repeats": {},
    }  # fmt: skip
    # The peer must be the same network before anything is timed.
    configs, report["peer"], checks = check_peer(args.presets, args.configs)
    report["configs"] = [LABELS[key] for key in configs]
    # The cores are shared: the machine's peak is the best of the matmuls
    # measured at the start and after every round.
    matmul_kwargs = {"repeats": 2} if args.quick else {}
    matmuls = [run_worker("matmul", **matmul_kwargs)]
    for preset, (_, _, rounds) in budgets.items():
        rounds = report["repeats"][preset] = 1 if args.quick else args.repeats or rounds
        runs = time_preset(
            preset, configs, report["steps"][preset], rounds, checks.get(preset),
            matmuls, matmul_kwargs,
        )  # fmt: skip
        report["train"] += summarise_rounds(runs)
        if report["peer"]["available"]:
            threads = [r["threads"] for r in sum(runs.values(), []) if "threads" in r]
            report["peer"]["threads"] = threads[0]
            report["peer"]["presets"][preset] = summarise_peer(runs, checks[preset])
    report["matmul"] = max(matmuls, key=lambda m: m["peak_gflops"])
    report["matmul"]["all_peak_gflops"] = [round(m["peak_gflops"], 1) for m in matmuls]
    report["finished_utc"] = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
    report["load_average"].append(os.getloadavg()[0])
    print(write_report(report, args.results))
    return report


if __name__ == "__main__":
    main()
