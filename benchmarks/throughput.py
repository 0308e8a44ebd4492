"""Training and sampling throughput of the presets on this machine.

For each preset of ``PRESETS`` (stage 1, batch 100, synthetic images):
training images/second after a few warm-up steps in the configurations of
``CONFIGS``: before the speed-up (Keras' BatchNormalization), the default
(`networks.FusedBatchNormalization`), the default with XLA
(``compile(jit_compile=True)``, explicit: BalancedVAE never turns XLA on by
itself) and the default in ``mixed_bfloat16`` (the CPU has AVX512-BF16); the
peak resident memory of each (one subprocess each), the analytic FLOPs per
image (convolution and dense multiply-adds; a training step ~ 3x the
forward pass) and the achieved fraction of this machine's float32 peak,
measured in the same run with a large matmul. The peer: the same networks,
loss and Adam step in PyTorch (`torch_peer.py`): eager (NCHW), eager in
channels_last, ``torch.compile`` and eager under bfloat16 autocast, timed in
the same rounds right after the package's default. Before any timing their
parameter counts, forward passes, loss and gradients (Keras weights copied
in) are checked equal to the package's; the report gives the per-round ratio
package / PyTorch and its median. PyTorch is optional: without it the peer
rows are skipped, with a message. Then the sampling images/second of an
exported SavedModel (a fresh ``fashion_mnist`` two-stage model, reloaded with
``tf.saved_model.load`` in a fresh process).

    python benchmarks/throughput.py         # ~35-45 min on 2 idle cores (estimated)
    python benchmarks/throughput.py --quick --presets fashion_mnist  # smoke test

Every configuration runs in its own subprocess (TensorFlow and PyTorch never
share a process or its thread pools; PyTorch uses ``os.cpu_count()`` threads).
tf.data's autotuner is off on the synthetic dataset (see ``worker_train``).

Writes ``throughput.{json,md}`` to ``--results``. Numbers from one run are
comparable with each other (ratios); absolute ones depend on the machine's
load.
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

# fashion_mnist_infogan: Dai & Wipf's Infogan net (13.3M parameters, dense-
# heavy) at 28x28, against the paper's ResNets.
PRESETS = ("fashion_mnist", "fashion_mnist_infogan", "cifar10", "celeba")
BATCH_SIZE = 100
# (warm-up steps, timed steps): the first step traces (and with XLA,
# compiles); celeba is ~10 s a step on 2 CPU cores.
STEPS = {
    "fashion_mnist": (3, 20),
    "fashion_mnist_infogan": (3, 20),
    "cifar10": (2, 6),
    "celeba": (1, 3),
}
# Rounds per preset: each round runs every configuration once, in turn, so a
# change in the machine's load hits all of them alike; the report gives the
# median images/s and, as the speed-up, the median of the per-round ratios to
# the baseline.
REPEATS = {"fashion_mnist": 3, "fashion_mnist_infogan": 3, "cifar10": 3, "celeba": 2}
# One round: every configuration once, in this order. "package" rows train
# `build_vae` with `fit`; "torch" rows the PyTorch peer (torch_peer.py),
# right after the package's default so that the ratio sees the same load.
# The first configuration is the baseline of the speed-ups; DEFAULT is the
# package's side of the peer ratios. --configs selects by key.
CONFIGS = (
    {"key": "keras_bn", "label": "before: Keras BN", "kind": "package",
     "fused_bn": False, "xla": False, "precision": "float32"},
    {"key": "fused_bn", "label": "default: fused BN", "kind": "package",
     "fused_bn": True, "xla": False, "precision": "float32"},
    {"key": "torch_eager", "label": "PyTorch eager", "kind": "torch",
     "compile": False},
    {"key": "torch_channels_last", "label": "PyTorch eager, channels_last",
     "kind": "torch", "compile": False, "channels_last": True},
    {"key": "torch_compile", "label": "PyTorch torch.compile", "kind": "torch",
     "compile": True},
    {"key": "xla", "label": "default + XLA", "kind": "package",
     "fused_bn": True, "xla": True, "precision": "float32"},
    {"key": "bfloat16", "label": "default + bfloat16", "kind": "package",
     "fused_bn": True, "xla": False, "precision": "mixed_bfloat16"},
    {"key": "torch_bf16", "label": "PyTorch eager, bfloat16 autocast",
     "kind": "torch", "compile": False, "bfloat16": True},
)  # fmt: skip
DEFAULT = "default: fused BN"
BFLOAT16 = "default + bfloat16"
EAGER, COMPILED = "PyTorch eager", "PyTorch torch.compile"
CHANNELS_LAST = "PyTorch eager, channels_last"
EAGER_BF16 = "PyTorch eager, bfloat16 autocast"
PEER_LABELS = (EAGER, CHANNELS_LAST, COMPILED, EAGER_BF16)
# (package label, PyTorch label, key) of the reported ratios.
PEER_RATIOS = (
    (DEFAULT, EAGER, "eager"),
    (DEFAULT, CHANNELS_LAST, "channels_last"),
    (DEFAULT, COMPILED, "compile"),
    (BFLOAT16, EAGER_BF16, "bfloat16_over_eager_bfloat16"),
    (BFLOAT16, EAGER, "bfloat16_over_eager"),
)
# --quick: one round, these (warm-up, timed) steps, a short matmul and sampler.
QUICK_STEPS = (1, 2)


# ------------------------------------------------------------------ FLOPs
def layer_multiply_adds(layer):
    """Multiply-adds of one layer's forward pass per image (0 for the rest).

    Conv2D: out_h * out_w * k_h * k_w * in_c * out_c. Conv2DTranspose: every
    input pixel scatters a k_h * k_w * out_c patch, in_h * in_w * k_h * k_w *
    in_c * out_c. Dense: in * out. A `keras.layers.SpectralNormalization`
    counts as the layer it wraps (its power iteration is one matrix-vector
    product each way: left out).
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
        in_units, out_units = inner.kernel.shape
        return int(in_units * out_units)
    return 0


def multiply_adds(model):
    """Multiply-adds of one forward pass per image through nested models
    (`layer_multiply_adds`). Batch norm, activations, additions and the
    losses are ignored (a few percent)."""
    import keras

    return int(
        sum(
            multiply_adds(layer)
            if isinstance(layer, keras.Model)
            else layer_multiply_adds(layer)
            for layer in model.layers
        )
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
    """Best and median GFLOP/s of a size x size float32 matmul: the
    machine's peak that the report's "% of peak" divides by."""
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
    # tf.data's autotuner off: on these 2 cores, with it on, whole fits of
    # this one-tensor dataset ran at a fixed 127.5 ms/step instead of 65-80
    # for fashion_mnist, at random (measured 2026-12-02): the step is what
    # is timed here, not the autotuner's competition for the cores.
    options = tf.data.Options()
    options.autotune.enabled = False
    dataset = dataset.with_options(options)
    stamps = []

    class Clock(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            stamps.append(time.perf_counter())

    start = time.perf_counter()
    vae.fit(dataset, epochs=1, verbose=0, callbacks=[Clock()])
    timed = stamps[-1] - stamps[warmup - 1]
    return {
        "preset": preset,
        "config": label,
        "framework": "tensorflow",
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
        **gflop_per_image(vae),
        **_memory(baseline),
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


def worker_torch_train(preset, label, config, compile, warmup, steps, gflop, **options):
    """Images/second of the PyTorch peer's training steps (torch only);
    ``options``: ``channels_last``, ``bfloat16``."""
    baseline = _rss_mib()
    import torch_peer

    threads = torch_peer.use_all_cores()
    result = torch_peer.time_training(
        config, compile, warmup, steps, BATCH_SIZE, **options
    )
    return {
        **result,
        "preset": preset,
        "config": label,
        "framework": "torch",
        "compile": bool(compile),
        "fused_bn": None,
        "precision": "bfloat16 autocast" if options.get("bfloat16") else "float32",
        "xla": False,
        "jit_compile_in_effect": False,
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
    """One row per configuration from its rounds (see REPEATS).

    A configuration that was not available (torch.compile failing) keeps its
    error and no speeds.
    """
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
        if available:
            row["images_per_second"] = float(np.median(available))
            row["seconds_per_step"] = BATCH_SIZE / row["images_per_second"]
            row["speed_up"] = _median_ratio(speeds, baseline)
            row["peak_rss_mib"] = max(r["peak_rss_mib"] for r in results)
        else:
            row.update(images_per_second=None, seconds_per_step=None, speed_up=None)
        rows.append(row)
    return rows


def summarise_peer(runs, check):
    """The package against the PyTorch peer, round by round (PEER_RATIOS)."""
    peer = {
        "parameters": check["parameters"],
        "forward_max_abs_difference": check["forward_max_abs_difference"],
        "loss_and_gradients": check.get("loss_and_gradients"),
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
    achieved = row["images_per_second"] * row["train_gflop_per_image"]
    return f"{100 * achieved / peak:.0f}%"


def _speed(row):
    if row is None or not row.get("images_per_second"):
        return "-"
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


def peer_lines(report):
    """The Markdown section of the package against the PyTorch peer."""
    peer = report.get("peer", {})
    lines = ["## Against the peer: the same networks in PyTorch", ""]
    if not peer.get("available"):
        return lines + [f"Not measured: {peer.get('skipped', 'not asked for')}.", ""]
    peak = report["matmul"]["peak_gflops"]
    rows = {(r["preset"], r["config"]): r for r in report["train"]}
    table, bfloat16_table = [], []
    for preset, entry in peer["presets"].items():
        package = rows.get((preset, DEFAULT))
        peers = [
            rows.get((preset, label)) for label in (EAGER, CHANNELS_LAST, COMPILED)
        ]
        worst = max(
            v
            for mode in entry["forward_max_abs_difference"].values()
            for v in mode.values()
        )
        counts = entry["parameters"]
        table.append(
            [preset, f"{counts['trainable']:,} / {counts['total']:,}", f"{worst:.1e}"]
            + [_speed(package)]
            + [
                "not available"
                if row and not row.get("available", True)
                else _speed(row)
                for row in peers
            ]
            + [_with_rounds(entry, "eager")]
            + [
                ratio(entry.get(f"package_over_{key}"))
                for key in ("channels_last", "compile")
            ]
            + [", ".join(_percent_of_peak(row, peak) for row in [package] + peers)]
        )
        if "package_over_bfloat16_over_eager" in entry or (
            "package_over_bfloat16_over_eager_bfloat16" in entry
        ):
            bfloat16_table.append(
                [
                    preset,
                    _speed(rows.get((preset, BFLOAT16))),
                    _speed(rows.get((preset, EAGER_BF16))),
                    _with_rounds(entry, "bfloat16_over_eager_bfloat16"),
                    ratio(entry.get("package_over_bfloat16_over_eager")),
                ]
            )
    lines += [
        PEER_TEXT.format(**peer),
        "",
        markdown_table(
            ["preset", "params trainable / total", "forward max diff",
             "package images/s", "PyTorch eager", "eager, channels_last",
             "torch.compile", "package / eager (rounds)", "package / channels_last",
             "package / compile",
             "% of peak: package, eager, channels_last, compile"],
            table,
        ),
    ]  # fmt: skip
    if bfloat16_table:
        lines += [
            "",
            "bfloat16, opt-in on both sides: the package's `--precision "
            "mixed_bfloat16` (`default + bfloat16`: weights, BatchNorm "
            "statistics and losses float32) against PyTorch eager under "
            "`torch.autocast('cpu', dtype=torch.bfloat16)`, and against "
            "PyTorch's float32 eager step.",
            "",
            markdown_table(
                ["preset", "package bfloat16 images/s", "PyTorch eager bfloat16",
                 "package bf16 / PyTorch bf16 (rounds)",
                 "package bf16 / PyTorch float32 eager"],
                bfloat16_table,
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


def report_lines(report):
    """The Markdown report."""
    matmul = report["matmul"]
    peak = matmul["peak_gflops"]
    load = report["load_average"]
    return [
        "# Throughput",
        "",
        f"Command: `{report['command']}`",
        "",
        f"{report['machine']}; TensorFlow {report['tensorflow']}, Keras "
        f"{report['keras']}. Run from {report['started_utc']} to "
        f"{report['finished_utc']} UTC; 1-minute load average at the start "
        f"{load[0]:.2f}, at the end {load[1]:.2f} (this benchmark alone keeps "
        "it near 1-2; more means other processes shared the cores, and the "
        "absolute numbers are then a lower bound). The ratios within this run "
        "are what to read." + (f" {report['note']}" if report.get("note") else ""),
        "",
        f"Machine peak: {peak:.1f} GFLOP/s, the best {matmul['size']}x"
        f"{matmul['size']} float32 matmul of {len(matmul['all_peak_gflops'])} "
        f"measurements (best of {matmul['repeats']} each) taken at the start "
        "and after every round: "
        + ", ".join(f"{g:.0f}" for g in matmul["all_peak_gflops"])
        + " GFLOP/s. A spread means a changing load from other processes; a "
        "configuration timed while the load was lighter than at the best "
        "matmul can exceed 100%.",
        "",
        "## Training, stage 1, batch 100, synthetic data",
        "",
        markdown_table(
            ["preset", "params", "configuration", "XLA", "images/s (rounds)",
             "s/step", "speed-up", "GFLOP/image (train ~3x fwd)",
             "achieved GFLOP/s", "% of peak", "peak RSS"],
            [_train_row(row, peak) for row in report["train"]],
        ),
        "",
        "Each preset ran in rounds ("
        + ", ".join(f"{p} {n}" for p, n in report["repeats"].items())
        + "), every configuration once per round, in turn; images/s is the "
        "median over the rounds (each round in brackets) and the speed-up the "
        "median of the per-round ratios to the first configuration of the "
        "same preset, so a load that changes between rounds cancels. Fused "
        "BN: `FusedBatchNormalization` (TensorFlow's fused kernel; the same "
        "results as Keras' layer to float32 rounding), the default since it "
        "was measured here. bfloat16: `--precision mixed_bfloat16` (weights "
        "and BN statistics float32); FLOP/s of bfloat16 rows are against the "
        "float32 matmul peak. PyTorch rows: the same networks and step in "
        "PyTorch (the next section).",
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
        *peer_lines(report),
        "## Sampling: exported SavedModel (fashion_mnist, two stages)",
        "",
        "`export_sampler` of a fresh fashion_mnist two-stage model, "
        "`tf.saved_model.load` in a fresh process, `sample(u)` "
        "(u -> decoder 2 -> decoder 1).",
        "",
        markdown_table(
            ["batch", "images/s", "first call", "peak RSS"],
            [
                [row["batch_size"], f"{row['images_per_second']:.0f}",
                 f"{row['first_call_seconds']:.2f} s",
                 f"{row['peak_rss_mib']:.0f} MiB"]
                for row in report["sample"]
            ],
        ),
        "",
    ]  # fmt: skip


def write_report(report, results):
    """``throughput.{json,md}`` in ``results``; returns the Markdown."""
    stem = os.path.join(results, "throughput")
    return common.write_report(stem, report, report_lines(report))


# -------------------------------------------------------------------- run
def _run_config(config, preset, steps, check):
    """One configuration, once, in its own process; its result."""
    warmup, timed = steps[preset]
    common_kwargs = dict(preset=preset, label=config["label"], warmup=warmup)
    if config["kind"] == "torch":
        return run_worker(
            "torch_train",
            **common_kwargs,
            steps=timed,
            config=check["config"],
            compile=config["compile"],
            gflop=check["train_gflop_per_image"],
            channels_last=config.get("channels_last", False),
            bfloat16=config.get("bfloat16", False),
        )
    return run_worker(
        "train",
        **common_kwargs,
        steps=timed,
        **{k: config[k] for k in ("fused_bn", "xla", "precision")},
    )


def select_configs(keys):
    """The CONFIGS named by comma-separated keys, in CONFIGS' order."""
    known = {config["key"] for config in CONFIGS}
    wanted = [k for k in keys.split(",") if k]
    unknown = sorted(set(wanted) - known)
    if unknown:
        raise SystemExit(
            f"Unknown --configs {unknown}; valid: {', '.join(sorted(known))}."
        )
    return [config for config in CONFIGS if config["key"] in wanted]


def check_peer(presets, configs):
    """Runs the peer checks of every preset before any timing.

    Returns ``(configs, peer, checks)``: the configurations to time (without
    the PyTorch ones when torch cannot be imported, with a message), the
    report's ``peer`` entry and the per-preset check results.
    """
    if not any(config["kind"] == "torch" for config in configs):
        return configs, {"available": False, "skipped": "not asked for"}, {}
    checks = {}
    for preset in presets:
        checks[preset] = run_worker("torch_check", preset=preset)
        if not checks[preset]["available"]:
            reason = (
                f"PyTorch cannot be imported ({checks[preset]['error']}); the "
                "peer is an optional benchmark dependency: pip install torch"
            )
            print(f"  Skipping the PyTorch peer: {reason}.", flush=True)
            configs = [config for config in configs if config["kind"] != "torch"]
            return configs, {"available": False, "skipped": reason}, {}
        print(
            f"    {preset}: PyTorch peer has the same parameters "
            f"{checks[preset]['parameters']} and forward pass "
            f"{checks[preset]['forward_max_abs_difference']}",
            flush=True,
        )
    first = next(iter(checks.values()))
    return configs, {"available": True, "torch": first["torch"], "presets": {}}, checks


def parse_args(argv, here):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--presets",
        default=",".join(PRESETS),
        help=f"comma-separated presets (default: {','.join(PRESETS)})",
    )
    parser.add_argument(
        "--configs",
        default=",".join(config["key"] for config in CONFIGS),
        help="comma-separated configurations to time, of: "
        + ", ".join(config["key"] for config in CONFIGS)
        + " (default: all; the first is the baseline of the speed-ups)",
    )
    parser.add_argument(
        "--steps-scale", type=float, default=1.0, help="multiply the timed steps"
    )
    parser.add_argument(
        "--repeats", type=int, help="rounds per preset (default: REPEATS)"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke test: one round of every configuration, "
        f"{QUICK_STEPS[0]} warm-up and {QUICK_STEPS[1]} timed steps, a short "
        "matmul and sampler; writes to a temporary folder unless --results",
    )
    parser.add_argument(
        "--note", default="", help="what else ran on the machine, for the report"
    )
    parser.add_argument("--results", help="default: benchmarks/results")
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--kwargs", default="{}", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.presets = [p for p in args.presets.split(",") if p]
    unknown = sorted(set(args.presets) - set(STEPS))
    if unknown and not args.worker:
        parser.error(f"no STEPS for presets {unknown}; valid: {', '.join(STEPS)}")
    if args.results is None:
        args.results = (
            os.path.join(tempfile.gettempdir(), "throughput_quick")
            if args.quick
            else os.path.join(here, "results")
        )
    return args


def main(argv=None):
    here = os.path.dirname(os.path.abspath(__file__))
    args = parse_args(argv, here)
    if args.worker:
        print(json.dumps(WORKERS[args.worker](**json.loads(args.kwargs))), flush=True)
        return None

    import keras
    import tensorflow as tf

    presets, configs = args.presets, select_configs(args.configs)
    if args.quick:
        steps = {p: QUICK_STEPS for p in presets}
    else:
        steps = {
            p: (STEPS[p][0], max(1, round(STEPS[p][1] * args.steps_scale)))
            for p in presets
        }
    matmul_kwargs = {"repeats": 2} if args.quick else {}
    report = {
        "command": common.command_line("throughput.py", argv),
        "machine": common.describe_machine(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "started_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "steps": steps,
        "batch_size": BATCH_SIZE,
        "configs": [config["label"] for config in configs],
        "load_average": [os.getloadavg()[0]],
        "note": args.note,
        "train": [],
        "repeats": {},
    }
    # The peer must be the same network before anything is timed.
    configs, report["peer"], checks = check_peer(presets, configs)
    # The cores are shared: the matmul is measured at the start and after
    # every round, and the machine's peak is the best of them.
    matmuls = [run_worker("matmul", **matmul_kwargs)]
    for preset in presets:
        rounds = 1 if args.quick else (args.repeats or REPEATS[preset])
        report["repeats"][preset] = rounds
        runs = {config["label"]: [] for config in configs}
        for _ in range(rounds):
            for config in configs:
                result = _run_config(config, preset, steps, checks.get(preset))
                runs[config["label"]].append(result)
                speed = result.get("images_per_second")
                shown = f"{speed:.1f} images/s" if speed else "not available"
                print(f"    {preset}, {config['label']}: {shown}", flush=True)
            matmuls.append(run_worker("matmul", **matmul_kwargs))
        report["train"] += summarise_rounds(runs)
        if report["peer"]["available"]:
            report["peer"]["threads"] = next(
                r["threads"] for label in PEER_LABELS for r in runs.get(label, [])
            )
            report["peer"]["presets"][preset] = summarise_peer(runs, checks[preset])
    samples = ((100, 2),) if args.quick else ((100, 20), (1000, 5))
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
            for batch_size, repeats in samples
        ]
    report["matmul"] = max(matmuls, key=lambda m: m["peak_gflops"])
    report["matmul"]["all_peak_gflops"] = [round(m["peak_gflops"], 1) for m in matmuls]
    report["finished_utc"] = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
    report["load_average"].append(os.getloadavg()[0])
    print(write_report(report, args.results))
    return report


if __name__ == "__main__":
    main()
