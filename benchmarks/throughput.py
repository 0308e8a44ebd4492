"""Training and sampling throughput of the presets on this machine.

For each preset of ``BUDGETS`` (stage 1, batch 100, synthetic images):
training images/second after a few warm-up steps in the configurations of
``CONFIGS``: Keras' BatchNormalization (before the speed-up), the default
(`networks.FusedBatchNormalization`), the default with XLA (explicit:
BalancedVAE never turns XLA on by itself) and in ``mixed_bfloat16``; and the
PyTorch peer (`torch_peer.py`: the same networks, loss and Adam step) eager
NCHW, eager channels_last, ``torch.compile`` and eager under bfloat16
autocast, timed in the same rounds. Before any timing the peer's parameter
counts, forward passes, loss and gradients (Keras weights copied in) are
checked equal to the package's. Also: each configuration's peak resident
memory, the analytic FLOPs per image and the fraction of this machine's
float32 matmul peak; then the sampling images/second of an exported
SavedModel (a fresh ``fashion_mnist`` two-stage model, reloaded in a fresh
process). PyTorch is optional: without it the peer rows are skipped.

    python benchmarks/throughput.py         # ~35-45 min on 2 idle cores (estimated)
    python benchmarks/throughput.py --quick --presets fashion_mnist  # smoke test
    python benchmarks/throughput.py --configs fused_bn,torch_eager,torch_compile

Every configuration runs in its own subprocess (TensorFlow and PyTorch never
share a process or its thread pools). Writes ``throughput.{json,md}`` to
``--results`` (default ``benchmarks/results/``; with ``--quick`` a temporary
folder). Ratios within one run are what to read: absolute numbers depend on
the machine's load.
"""

import argparse
import json
import os
import resource
import tempfile
import time

import common
import numpy as np
from common import first_line, markdown_table, ratio

BATCH_SIZE = 100
# preset: (warm-up steps, timed steps, rounds). The first step traces (with
# XLA, compiles); celeba is ~10 s a step on 2 CPU cores. Each round runs
# every configuration once, in turn, so that a change in the machine's load
# hits all alike; the report gives the median images/s and the median of
# the per-round ratios. fashion_mnist_infogan: Dai & Wipf's Infogan net
# (13.3M parameters, dense-heavy) against the paper's ResNets.
BUDGETS = {
    "fashion_mnist": (3, 20, 3),
    "fashion_mnist_infogan": (3, 20, 3),
    "cifar10": (2, 6, 3),
    "celeba": (1, 3, 2),
}
QUICK_STEPS = (1, 2)  # --quick: one round, these steps, short matmul and sampler
# One round, in this order: "package" rows train `build_vae` with `fit`,
# "torch" rows the peer, right after the package's default so that their
# ratio sees the same load. The first is the baseline of the speed-ups.
CONFIGS = (
    ("keras_bn", "before: Keras BN", "package",
     {"fused_bn": False, "xla": False, "precision": "float32"}),
    ("fused_bn", "default: fused BN", "package",
     {"fused_bn": True, "xla": False, "precision": "float32"}),
    ("torch_eager", "PyTorch eager", "torch", {}),
    ("torch_channels_last", "PyTorch eager, channels_last", "torch",
     {"channels_last": True}),
    ("torch_compile", "PyTorch torch.compile", "torch", {"compile": True}),
    ("xla", "default + XLA", "package",
     {"fused_bn": True, "xla": True, "precision": "float32"}),
    ("bfloat16", "default + bfloat16", "package",
     {"fused_bn": True, "xla": False, "precision": "mixed_bfloat16"}),
    ("torch_bf16", "PyTorch eager, bfloat16 autocast", "torch", {"bfloat16": True}),
)  # fmt: skip
LABELS = {key: label for key, label, _, _ in CONFIGS}
DEFAULT, BFLOAT16 = LABELS["fused_bn"], LABELS["bfloat16"]
EAGER, COMPILED = LABELS["torch_eager"], LABELS["torch_compile"]
CHANNELS_LAST, EAGER_BF16 = LABELS["torch_channels_last"], LABELS["torch_bf16"]
# (package label, PyTorch label, key) of the reported ratios.
PEER_RATIOS = (
    (DEFAULT, EAGER, "eager"),
    (DEFAULT, CHANNELS_LAST, "channels_last"),
    (DEFAULT, COMPILED, "compile"),
    (BFLOAT16, EAGER_BF16, "bfloat16_over_eager_bfloat16"),
    (BFLOAT16, EAGER, "bfloat16_over_eager"),
)


# ------------------------------------------------------------------ FLOPs
def layer_multiply_adds(layer):
    """Multiply-adds of one layer's forward pass per image (0 for the rest).

    Conv2D: out_h * out_w * k_h * k_w * in_c * out_c; Conv2DTranspose (every
    input pixel scatters a patch): in_h * in_w * k_h * k_w * in_c * out_c;
    Dense: in * out. A `keras.layers.SpectralNormalization` counts as the
    layer it wraps (its power iteration is left out).
    """
    import keras

    inner = layer.layer if isinstance(layer, keras.layers.Wrapper) else layer
    if isinstance(inner, keras.layers.Conv2DTranspose):
        _, in_h, in_w, in_c = layer.input.shape
        k_h, k_w, out_c, _ = inner.kernel.shape
        return int(in_h * in_w * k_h * k_w * in_c * out_c)
    if isinstance(inner, keras.layers.Conv2D):
        _, out_h, out_w, out_c = layer.output.shape
        k_h, k_w, in_c, _ = inner.kernel.shape
        return int(out_h * out_w * k_h * k_w * in_c * out_c)
    if isinstance(inner, keras.layers.Dense):
        return int(inner.kernel.shape[0] * inner.kernel.shape[1])
    return 0


def multiply_adds(model):
    """Multiply-adds of one forward pass per image through nested models;
    batch norm, activations, additions and losses are left out (a few %)."""
    import keras

    return sum(
        multiply_adds(layer)
        if isinstance(layer, keras.Model)
        else layer_multiply_adds(layer)
        for layer in model.layers
    )


def gflop_per_image(vae):
    """``{"forward_gflop_per_image", "train_gflop_per_image"}`` (train ~ 3x)."""
    forward = 2.0 * (multiply_adds(vae.encoder) + multiply_adds(vae.decoder)) / 1e9
    return {"forward_gflop_per_image": forward, "train_gflop_per_image": 3 * forward}


# ---------------------------------------------------------------- workers
def _rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB


def _memory(baseline):
    return {
        "baseline_rss_mib": round(baseline, 1),
        "peak_rss_mib": round(_rss_mib(), 1),
    }


def worker_matmul(size=2048, repeats=8):
    """Best and median GFLOP/s of a size x size float32 matmul: the peak
    that the report's "% of peak" divides by."""
    import tensorflow as tf

    a, b = tf.random.normal((size, size)), tf.random.normal((size, size))
    matmul = tf.function(lambda a, b: tf.reduce_sum(tf.linalg.matmul(a, b)))
    _, times = common.clock(lambda: matmul(a, b).numpy(), 1, repeats)
    gflop = 2.0 * size**3 / 1e9
    return {
        "size": size,
        "repeats": repeats,
        "peak_gflops": gflop / min(times),
        "median_gflops": gflop / sorted(times)[len(times) // 2],
    }


def _fit_clock(vae, dataset, warmup):
    """Trains one epoch of ``dataset``; ``(warm-up seconds, step seconds)``
    of the steps after the ``warmup`` first, from batch-end stamps."""
    import keras

    stamps = [time.perf_counter()]

    class Clock(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            stamps.append(time.perf_counter())

    vae.fit(dataset, epochs=1, verbose=0, callbacks=[Clock()])
    return stamps[warmup] - stamps[0], list(np.diff(stamps[warmup:]))


def worker_train(preset, label, warmup, steps, fused_bn, xla, precision):
    """Images/second of the package's stage-1 training steps."""
    import keras
    import tensorflow as tf

    import vae_balance

    baseline = _rss_mib()
    keras.mixed_precision.set_global_policy(precision)
    config = vae_balance.get_preset(preset)
    vae = vae_balance.build_vae(config, fused_bn=fused_bn)
    optimizer = keras.optimizers.Adam(config.learning_rate, epsilon=config.adam_epsilon)
    vae.compile(optimizer=optimizer, jit_compile=bool(xla))
    batch = tf.random.uniform((BATCH_SIZE, *config.image_shape), seed=0)
    dataset = tf.data.Dataset.from_tensors(batch).repeat(warmup + steps)
    # tf.data's autotuner off: on these 2 cores, with it on, whole fits of
    # this one-tensor dataset ran at a fixed 127.5 ms/step instead of 65-80
    # for fashion_mnist, at random (measured 2026-12-02).
    options = tf.data.Options()
    options.autotune.enabled = False
    first, times = _fit_clock(vae, dataset.with_options(options), warmup)
    return {
        **_row(preset, label, "tensorflow", precision, xla, fused_bn),
        "jit_compile_in_effect": bool(vae.jit_compile),
        "parameters": int(vae.count_params()),
        **common.step_speed(first, times, warmup, BATCH_SIZE),
        **gflop_per_image(vae),
        **_memory(baseline),
    }


def _row(preset, label, framework, precision, xla=False, fused_bn=None):
    return {
        "preset": preset,
        "config": label,
        "framework": framework,
        "fused_bn": fused_bn,
        "precision": precision,
        "xla": bool(xla),
        "jit_compile_in_effect": False,
    }


def worker_torch_check(preset):
    """PyTorch available? Then the peer's parameter counts, forward pass, loss
    and gradients against the package's (raises on a difference)."""
    try:
        import torch
    except ImportError as error:
        return {"available": False, "error": f"{type(error).__name__}: {error}"}
    import torch_peer

    import vae_balance

    return {
        "available": True,
        "torch": torch.__version__,
        "parameters": torch_peer.check_parameter_counts(preset),
        "forward_max_abs_difference": torch_peer.check_forward(preset),
        "forward_max_abs_difference_channels_last": torch_peer.check_forward(
            preset, channels_last=True
        ),
        "loss_and_gradients": torch_peer.check_loss(preset),
        **gflop_per_image(vae_balance.build_vae(preset)),
        "config": vae_balance.get_preset(preset).to_dict(),
    }


def worker_torch_train(preset, label, warmup, steps, config, gflop, **options):
    """Images/second of the PyTorch peer's training steps (torch only);
    ``options``: ``compile``, ``channels_last``, ``bfloat16``."""
    baseline = _rss_mib()
    import torch_peer

    threads = torch_peer.use_all_cores()
    result = torch_peer.time_training(config, warmup=warmup, steps=steps, **options)
    precision = "bfloat16 autocast" if options.get("bfloat16") else "float32"
    return {
        **result,
        **_row(preset, label, "torch", precision),
        "compile": bool(options.get("compile")),
        "threads": threads,
        "forward_gflop_per_image": gflop / 3,
        "train_gflop_per_image": gflop,
        **_memory(baseline),
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
    first, times = common.clock(lambda: loaded.sample(u)["images"].numpy(), 1, repeats)
    return {
        "batch_size": batch_size,
        "repeats": repeats,
        "first_call_seconds": round(first, 3),
        "images_per_second": repeats * batch_size / sum(times),
        **_memory(baseline),
    }


WORKERS = {
    "matmul": worker_matmul,
    "train": worker_train,
    "torch_check": worker_torch_check,
    "torch_train": worker_torch_train,
    "export": worker_export,
    "sample": worker_sample,
}


def run_worker(name, **kwargs):
    """Runs one worker in a fresh Python process; returns its JSON result."""
    shown = {k: v for k, v in kwargs.items() if k != "config"}  # a long dict
    print(f"  {name} {shown}", flush=True)
    return common.run_worker(__file__, name, kwargs, label=f"{name} {shown}")


# -------------------------------------------------------------- summaries
def _speeds(results):
    """Images/s per round; None where the configuration was not available."""
    return [r.get("images_per_second") for r in results]


def _median_ratio(numerators, denominators):
    """Median of the per-round ratios; None if no round has both."""
    ratios = [n / d for n, d in zip(numerators, denominators) if n is not None and d]
    return float(np.median(ratios)) if ratios else None


def summarise_rounds(runs):
    """One row per configuration from its rounds ``{label: [result]}``; one
    that was not available (torch.compile failing) keeps its error."""
    baseline = _speeds(next(iter(runs.values())))
    rows = []
    for results in runs.values():
        speeds = _speeds(results)
        available = [v for v in speeds if v is not None]
        row = dict(next((r for r in results if "images_per_second" in r), results[0]))
        row["available"] = bool(available)
        row["images_per_second_rounds"] = [
            None if v is None else round(v, 2) for v in speeds
        ]
        row.update(images_per_second=None, seconds_per_step=None, speed_up=None)
        if available:
            row["images_per_second"] = float(np.median(available))
            row["seconds_per_step"] = BATCH_SIZE / row["images_per_second"]
            row["speed_up"] = _median_ratio(speeds, baseline)
            row["peak_rss_mib"] = max(r["peak_rss_mib"] for r in results)
        rows.append(row)
    return rows


def summarise_peer(runs, check):
    """The package against the PyTorch peer, round by round (PEER_RATIOS)."""
    peer = {
        key: check.get(key)
        for key in ("parameters", "forward_max_abs_difference", "loss_and_gradients")
    }
    for package_label, label, key in PEER_RATIOS:
        package = _speeds(runs.get(package_label, []))
        if label not in runs or not package:
            continue
        speeds = _speeds(runs[label])
        peer[f"package_over_{key}_rounds"] = [
            None if p is None or t is None else round(p / t, 3)
            for p, t in zip(package, speeds)
        ]
        peer[f"package_over_{key}"] = _median_ratio(package, speeds)
        errors = [r["error"] for r in runs[label] if r.get("error")]
        if errors:
            peer[f"{key}_error"] = errors[0]
    return peer


# ----------------------------------------------------------------- report
def _percent_of_peak(row, peak):
    if row is None or not row.get("images_per_second"):
        return "-"
    return (
        f"{100 * row['images_per_second'] * row['train_gflop_per_image'] / peak:.0f}%"
    )


def _speed(row):
    if row is None or not row.get("images_per_second"):
        return "not available" if row and not row.get("available", True) else "-"
    rounds = ", ".join(
        "-" if v is None else f"{v:.0f}" for v in row["images_per_second_rounds"]
    )
    return f"{row['images_per_second']:.1f} ({rounds})"


def _with_rounds(entry, key):
    rounds = ", ".join(ratio(v) for v in entry.get(f"package_over_{key}_rounds", []))
    return f"{ratio(entry.get(f'package_over_{key}'))} ({rounds})"


PEER_TEXT = (
    "PyTorch {torch} on {threads} threads, the networks of "
    "`benchmarks/torch_peer.py` (NCHW, and NHWC as channels_last): the same "
    "layers, balanced loss, batch and Adam (fused) as the package's default "
    "configuration, timed in the same rounds right after it, each in its own "
    "process. Parameter counts (trainable / total with the BatchNorm "
    "statistics, spectral norm's vectors and the balancing state) were checked "
    "equal before timing, and the forward pass with the Keras weights copied "
    "in (z_mean, z_log_sigma, reconstruction; inference and training mode, "
    "batch 8) agreed to the largest absolute difference given; so did the "
    "loss and every gradient with the same noise (batch 4, "
    "`loss_and_gradients` in the JSON). torch.compile: the forward pass and "
    "loss (TorchInductor, its backward through AOTAutograd), the fused Adam "
    "step eager; the first steps compile (`first_steps_seconds` in the JSON). "
    "The ratio is the package's images/s over PyTorch's, per round (in "
    "brackets) and their median; % of peak is against the float32 matmul "
    "peak above. The package / eager ratio is against idiomatic NCHW PyTorch; "
    "the other two columns say whether PyTorch does better another way."
)
BFLOAT16_TEXT = (
    "bfloat16, opt-in on both sides: the package's `--precision "
    "mixed_bfloat16` (`default + bfloat16`: weights, BatchNorm statistics and "
    "losses float32) against PyTorch eager under `torch.autocast('cpu', "
    "dtype=torch.bfloat16)`, and against PyTorch's float32 eager step."
)


def _peer_rows(preset, entry, rows, peak):
    """The float32 and (or None) the bfloat16 table rows of one preset."""
    package = rows.get((preset, DEFAULT))
    peers = [rows.get((preset, label)) for label in (EAGER, CHANNELS_LAST, COMPILED)]
    worst = max(
        v
        for mode in entry["forward_max_abs_difference"].values()
        for v in mode.values()
    )
    counts = entry["parameters"]
    row = [preset, f"{counts['trainable']:,} / {counts['total']:,}", f"{worst:.1e}"]
    row += [_speed(r) for r in [package] + peers] + [_with_rounds(entry, "eager")]
    row += [ratio(entry.get(f"package_over_{k}")) for k in ("channels_last", "compile")]
    row += [", ".join(_percent_of_peak(r, peak) for r in [package] + peers)]
    bfloat16 = None
    if any(
        f"package_over_bfloat16_over_{k}" in entry for k in ("eager", "eager_bfloat16")
    ):
        bfloat16 = [
            preset,
            _speed(rows.get((preset, BFLOAT16))),
            _speed(rows.get((preset, EAGER_BF16))),
            _with_rounds(entry, "bfloat16_over_eager_bfloat16"),
            ratio(entry.get("package_over_bfloat16_over_eager")),
        ]
    return row, bfloat16


def peer_lines(report):
    """The Markdown section of the package against the PyTorch peer."""
    peer = report.get("peer", {})
    lines = ["## Against the peer: the same networks in PyTorch", ""]
    if not peer.get("available"):
        return lines + [f"Not measured: {peer.get('skipped', 'not asked for')}.", ""]
    rows = {(r["preset"], r["config"]): r for r in report["train"]}
    pairs = [
        _peer_rows(preset, entry, rows, report["matmul"]["peak_gflops"])
        for preset, entry in peer["presets"].items()
    ]
    lines += [
        PEER_TEXT.format(**peer),
        "",
        markdown_table(
            ["preset", "params trainable / total", "forward max diff",
             "package images/s", "PyTorch eager", "eager, channels_last",
             "torch.compile", "package / eager (rounds)", "package / channels_last",
             "package / compile",
             "% of peak: package, eager, channels_last, compile"],
            [row for row, _ in pairs],
        ),
    ]  # fmt: skip
    if any(bf16 for _, bf16 in pairs):
        lines += [
            "",
            BFLOAT16_TEXT,
            "",
            markdown_table(
                ["preset", "package bfloat16 images/s", "PyTorch eager bfloat16",
                 "package bf16 / PyTorch bf16 (rounds)",
                 "package bf16 / PyTorch float32 eager"],
                [bf16 for _, bf16 in pairs if bf16],
            ),
        ]  # fmt: skip
    errors = [
        f"{preset}: {first_line(entry['compile_error'], 400)}"
        for preset, entry in peer["presets"].items()
        if entry.get("compile_error")
    ]
    if errors:
        lines += ["", "torch.compile was not available: " + "; ".join(errors) + "."]
    return lines + [""]


def _train_row(row, peak):
    if not row.get("available", True):
        error = f"not available: {first_line(row.get('error'))}"
        return [row["preset"], None, row["config"], None, error] + [None] * 6
    achieved = row["images_per_second"] * row["train_gflop_per_image"]
    xla = "yes" if row["jit_compile_in_effect"] else "no"
    if row["xla"] and not row["jit_compile_in_effect"]:
        xla = "asked, refused"
    return [
        row["preset"],
        f"{row['parameters'] / 1e6:.2f}M",
        row["config"],
        "n/a" if row.get("framework") == "torch" else xla,
        _speed(row),
        f"{row['seconds_per_step']:.2f}",
        ratio(row["speed_up"]),
        f"{row['train_gflop_per_image']:.3f}",
        f"{achieved:.1f}",
        f"{100 * achieved / peak:.0f}%",
        f"{row['peak_rss_mib']:.0f} MiB",
    ]


def _header(report):
    """The machine, the load and the matmul peak: the report's first lines."""
    matmul, load = report["matmul"], report["load_average"]
    return [
        f"{report['machine']}; TensorFlow {report['tensorflow']}, Keras "
        f"{report['keras']}. Run from {report['started_utc']} to "
        f"{report['finished_utc']} UTC; 1-minute load average at the start "
        f"{load[0]:.2f}, at the end {load[1]:.2f} (this benchmark alone keeps "
        "it near 1-2; more means other processes shared the cores, and the "
        "absolute numbers are then a lower bound). The ratios within this run "
        "are what to read." + (f" {report['note']}" if report.get("note") else ""),
        "",
        f"Machine peak: {matmul['peak_gflops']:.1f} GFLOP/s, the best "
        f"{matmul['size']}x{matmul['size']} float32 matmul of "
        f"{len(matmul['all_peak_gflops'])} measurements (best of "
        f"{matmul['repeats']} each) taken at the start and after every round: "
        + ", ".join(f"{g:.0f}" for g in matmul["all_peak_gflops"])
        + " GFLOP/s. A spread means a changing load from other processes; a "
        "configuration timed while the load was lighter than at the best "
        "matmul can exceed 100%.",
    ]


TRAIN_TEXT = (
    "every configuration once per round, in turn; images/s is the median over "
    "the rounds (each round in brackets) and the speed-up the median of the "
    "per-round ratios to the first configuration of the same preset, so a load "
    "that changes between rounds cancels. Fused BN: `FusedBatchNormalization` "
    "(TensorFlow's fused kernel; the same results as Keras' layer to float32 "
    "rounding), the default since it was measured here. bfloat16: `--precision "
    "mixed_bfloat16` (weights and BN statistics float32); FLOP/s of bfloat16 "
    "rows are against the float32 matmul peak. PyTorch rows: the same networks "
    "and step in PyTorch (the next section)."
)


def report_lines(report):
    """The Markdown report."""
    peak = report["matmul"]["peak_gflops"]
    rounds = ", ".join(f"{p} {n}" for p, n in report["repeats"].items())
    steps = ", ".join(f"{p} {w}/{s}" for p, (w, s) in report["steps"].items())
    return [
        "# Throughput", "", f"Command: `{report['command']}`", "",
        *_header(report), "",
        "## Training, stage 1, batch 100, synthetic data", "",
        markdown_table(
            ["preset", "params", "configuration", "XLA", "images/s (rounds)",
             "s/step", "speed-up", "GFLOP/image (train ~3x fwd)",
             "achieved GFLOP/s", "% of peak", "peak RSS"],
            [_train_row(row, peak) for row in report["train"]],
        ), "",
        f"Each preset ran in rounds ({rounds}), {TRAIN_TEXT}", "",
        f"Warm-up / timed steps: {steps}. FLOPs: 2 x the multiply-adds of the "
        "convolutions, transposed convolutions and dense layers of encoder + "
        "decoder for one image (forward), x3 for a training step; batch norm, "
        "activations and the loss are left out. Peak RSS: ru_maxrss of a "
        "separate process per configuration (TensorFlow alone, after imports: "
        f"{report['train'][0]['baseline_rss_mib']:.0f} MiB).", "",
        *peer_lines(report),
        "## Sampling: exported SavedModel (fashion_mnist, two stages)", "",
        "`export_sampler` of a fresh fashion_mnist two-stage model, "
        "`tf.saved_model.load` in a fresh process, `sample(u)` "
        "(u -> decoder 2 -> decoder 1).", "",
        markdown_table(
            ["batch", "images/s", "first call", "peak RSS"],
            [[row["batch_size"], f"{row['images_per_second']:.0f}",
              f"{row['first_call_seconds']:.2f} s", f"{row['peak_rss_mib']:.0f} MiB"]
             for row in report["sample"]],
        ), "",
    ]  # fmt: skip


def write_report(report, results):
    """``throughput.{json,md}`` in ``results``; returns the Markdown."""
    stem = os.path.join(results, "throughput")
    return common.write_report(stem, report, report_lines(report))


# -------------------------------------------------------------------- run
def check_peer(presets, configs):
    """Runs the peer checks of every preset before any timing.

    Returns ``(configs, peer, checks)``: the configurations to time (without
    the PyTorch ones when torch cannot be imported, with a message), the
    report's ``peer`` entry and the per-preset check results.
    """
    if not any(kind == "torch" for _, _, kind, _ in configs):
        return configs, {"available": False, "skipped": "not asked for"}, {}
    checks = {}
    for preset in presets:
        check = checks[preset] = run_worker("torch_check", preset=preset)
        if not check["available"]:
            reason = (
                f"PyTorch cannot be imported ({check['error']}); the peer is an "
                "optional benchmark dependency: pip install torch"
            )
            print(f"  Skipping the PyTorch peer: {reason}.", flush=True)
            configs = [c for c in configs if c[2] != "torch"]
            return configs, {"available": False, "skipped": reason}, {}
        print(
            f"    {preset}: PyTorch peer has the same parameters "
            f"{check['parameters']} and forward pass "
            f"{check['forward_max_abs_difference']}",
            flush=True,
        )
    first = next(iter(checks.values()))
    return configs, {"available": True, "torch": first["torch"], "presets": {}}, checks


def time_preset(preset, configs, steps, rounds, check, matmuls, matmul_kwargs):
    """Every configuration of one preset, ``rounds`` times in turn, each in
    its own process (a matmul after every round); ``{label: [result]}``."""
    runs = {label: [] for _, label, _, _ in configs}
    warmup, timed = steps
    for _ in range(rounds):
        for _, label, kind, options in configs:
            kwargs = dict(preset=preset, label=label, warmup=warmup, steps=timed)
            if kind == "torch":
                kwargs.update(
                    config=check["config"], gflop=check["train_gflop_per_image"]
                )
            worker = "torch_train" if kind == "torch" else "train"
            result = run_worker(worker, **kwargs, **options)
            runs[label].append(result)
            speed = result.get("images_per_second")
            shown = f"{speed:.1f} images/s" if speed else "not available"
            print(f"    {preset}, {label}: {shown}", flush=True)
        matmuls.append(run_worker("matmul", **matmul_kwargs))
    return runs


def time_sampling(quick):
    """Images/s of an exported sampler, reloaded in fresh processes."""
    samples = ((100, 2),) if quick else ((100, 20), (1000, 5))
    with tempfile.TemporaryDirectory() as tmp:
        exported = run_worker("export", path=os.path.join(tmp, "sampler"))
        return [
            run_worker("sample", **exported, batch_size=size, repeats=repeats)
            for size, repeats in samples
        ]


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--presets",
        default=",".join(BUDGETS),
        help=f"comma-separated presets (default: {','.join(BUDGETS)})",
    )
    parser.add_argument(
        "--configs",
        default=",".join(LABELS),
        help="comma-separated configurations to time, of: "
        + ", ".join(LABELS)
        + " (default: all; the first is the "
        "baseline of the speed-ups)",
    )
    parser.add_argument(
        "--steps-scale", type=float, default=1.0, help="multiply the timed steps"
    )
    parser.add_argument(
        "--repeats", type=int, help="rounds per preset (default: BUDGETS)"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"smoke test: one round, {QUICK_STEPS[0]} warm-up and "
        f"{QUICK_STEPS[1]} timed steps, a short matmul and sampler",
    )
    parser.add_argument("--note", default="", help="what else ran on the machine")
    parser.add_argument("--results", help="default: benchmarks/results")
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--kwargs", default="{}", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.presets = [p for p in args.presets.split(",") if p]
    wanted = [k for k in args.configs.split(",") if k]
    for what, names, known in (
        ("presets", args.presets, BUDGETS),
        ("configs", wanted, LABELS),
    ):
        unknown = sorted(set(names) - set(known))
        if unknown and not args.worker:
            parser.error(f"unknown --{what} {unknown}; valid: {', '.join(known)}")
    args.configs = [c for c in CONFIGS if c[0] in wanted]
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
    steps = {
        p: QUICK_STEPS if args.quick else (w, max(1, round(s * args.steps_scale)))
        for p, (w, s, _) in budgets.items()
    }
    report = {
        "command": common.command_line("throughput.py", argv),
        "machine": common.describe_machine(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "started_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "steps": steps,
        "batch_size": BATCH_SIZE,
        "load_average": [os.getloadavg()[0]],
        "note": args.note,
        "train": [],
        "repeats": {},
    }
    # The peer must be the same network before anything is timed.
    configs, report["peer"], checks = check_peer(args.presets, args.configs)
    report["configs"] = [label for _, label, _, _ in configs]
    # The cores are shared: the machine's peak is the best of the matmuls
    # measured at the start and after every round.
    matmul_kwargs = {"repeats": 2} if args.quick else {}
    matmuls = [run_worker("matmul", **matmul_kwargs)]
    for preset, (_, _, rounds) in budgets.items():
        rounds = 1 if args.quick else (args.repeats or rounds)
        report["repeats"][preset] = rounds
        runs = time_preset(
            preset, configs, steps[preset], rounds, checks.get(preset), matmuls,
            matmul_kwargs,
        )  # fmt: skip
        report["train"] += summarise_rounds(runs)
        if report["peer"]["available"]:
            report["peer"]["threads"] = next(
                r["threads"] for r in sum(runs.values(), []) if "threads" in r
            )
            report["peer"]["presets"][preset] = summarise_peer(runs, checks[preset])
    report["sample"] = time_sampling(args.quick)
    report["matmul"] = max(matmuls, key=lambda m: m["peak_gflops"])
    report["matmul"]["all_peak_gflops"] = [round(m["peak_gflops"], 1) for m in matmuls]
    report["finished_utc"] = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
    report["load_average"].append(os.getloadavg()[0])
    print(write_report(report, args.results))
    return report


if __name__ == "__main__":
    main()
