"""Where a preset's convolution time goes, one layer shape at a time.

The profile (`profile_step.py`) says the stage-1 step is 80-91% convolution
kernels. This benchmark asks how fast each of those kernels runs against what
the machine can do: for every distinct convolution of a preset's stage-1
networks (``Conv2D`` and ``Conv2DTranspose`` layers, grouped by input shape,
filters and stride), the time of one training pass through it (forward,
input gradient, weight and bias gradients; no input gradient for layers that
read the image), with batch 100, in

- the package's path: the Keras layer itself in a ``tf.function`` (TensorFlow's
  oneDNN kernels, as in the step), on 2 intra-op threads (the default here)
  and on 1 (how far the layer scales over the two cores);
- PyTorch eager, NCHW and channels_last (`torch_peer`'s layers, the same
  padding), the peer of `throughput.py`;
- "fresh tensors": the package on 2 threads and PyTorch channels_last again,
  each pass reading another input and output gradient (5 of each, in turn),
  so that it finds them out of the cache as in the step, where every layer's
  tensors were last touched several layers ago. Against the first column
  this measures what the memory traffic costs.

Each configuration runs in its own process, in interleaved rounds; the report
gives medians, the GFLOP/s of each shape (2 x multiply-adds, x3 for the
training pass), its fraction of a float32 matmul peak measured in the same
run, and the sum over the network's layers.

    python benchmarks/conv_shapes.py                  # fashion_mnist, ~3 min
    python benchmarks/conv_shapes.py --preset cifar10 --calls 6   # ~15 min
    python benchmarks/conv_shapes.py --configs tf,tf_fresh     # a subset

Writes ``conv_shapes_<preset>.{json,md}`` to ``--results`` (default
benchmarks/results). torch is optional: without it the PyTorch columns are
skipped, with a message.
"""

import argparse
import json
import os
import time

import common
import numpy as np
from common import command_line, describe_machine
from throughput import layer_multiply_adds, worker_matmul

BATCH_SIZE = 100
# (warm-up, timed) calls per shape and process; a TensorFlow call chains
# CHAIN passes (see worker_tf), PyTorch runs one pass per call.
PASSES = (3, 30)
QUICK_PASSES = (1, 2)
CHAIN = 5
CONFIGS = (
    {"key": "tf", "label": "package (TensorFlow oneDNN), 2 threads",
     "kind": "tf", "threads": 2},
    {"key": "tf_1thread", "label": "package, 1 intra-op thread",
     "kind": "tf", "threads": 1},
    {"key": "torch", "label": "PyTorch eager, NCHW", "kind": "torch",
     "channels_last": False},
    {"key": "torch_channels_last", "label": "PyTorch eager, channels_last",
     "kind": "torch", "channels_last": True},
    {"key": "tf_fresh", "label": "package, 2 threads, fresh tensors",
     "kind": "tf", "threads": 2, "fresh": True},
    {"key": "torch_channels_last_fresh",
     "label": "PyTorch channels_last, fresh tensors", "kind": "torch",
     "channels_last": True, "fresh": True},
)  # fmt: skip


# ------------------------------------------------------------------ shapes
def conv_shapes(preset):
    """The distinct convolutions of a preset's stage-1 networks.

    A list of dicts: ``kind`` ("conv" or "transpose"), ``in_shape`` (H, W, C),
    ``filters``, ``strides``, ``layers`` (names with this shape),
    ``input_grad`` (False when the layer reads the image: the step needs no
    gradient there) and ``multiply_adds`` per image (forward).
    """
    import keras

    import vae_balance

    config = vae_balance.get_preset(preset)
    vae = vae_balance.build_vae(config)
    shapes = {}
    for network in (vae.encoder, vae.decoder):
        inputs = {id(t) for t in network.inputs}
        for layer in network.layers:
            if not isinstance(
                layer, (keras.layers.Conv2D, keras.layers.Conv2DTranspose)
            ):
                continue
            transpose = isinstance(layer, keras.layers.Conv2DTranspose)
            in_shape = tuple(int(d) for d in layer.input.shape[1:])
            out_shape = tuple(int(d) for d in layer.output.shape[1:])
            key = ("transpose" if transpose else "conv", in_shape, layer.filters)
            key += (int(layer.strides[0]),)
            entry = shapes.setdefault(
                key,
                {
                    "kind": key[0],
                    "in_shape": list(in_shape),
                    "out_shape": list(out_shape),
                    "filters": int(layer.filters),
                    "strides": key[3],
                    "layers": [],
                    "input_grad": id(layer.input) not in inputs,
                    "multiply_adds": layer_multiply_adds(layer),
                },
            )
            entry["layers"].append(f"{network.name}/{layer.name}")
    return list(shapes.values())


def pass_gflop(shape):
    """GFLOP of one training pass at batch 100: 3 x (2 x multiply-adds)."""
    return 3 * 2.0 * shape["multiply_adds"] * BATCH_SIZE / 1e9


# ------------------------------------------------------------------ workers
def _time(run, warmup, timed):
    for _ in range(warmup):
        run()
    start = time.perf_counter()
    for _ in range(timed):
        run()
    return (time.perf_counter() - start) / timed


def worker_tf(shapes, threads, warmup, timed, fresh=False):
    """Seconds per training pass of each shape through the Keras layer.

    ``fresh``: each pass of a call reads its own input and output gradient
    (CHAIN of each), so that a pass finds its tensors out of the cache, as
    in the training step, instead of where the last pass left them.
    """
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    import keras

    copies = CHAIN if fresh else 1
    seconds = []
    for shape in shapes:
        cls = (
            keras.layers.Conv2DTranspose
            if shape["kind"] == "transpose"
            else keras.layers.Conv2D
        )
        layer = cls(shape["filters"], 3, strides=shape["strides"], padding="same")
        layer.build((BATCH_SIZE, *shape["in_shape"]))
        xs = [
            tf.random.normal((BATCH_SIZE, *shape["in_shape"]), seed=i)
            for i in range(copies)
        ]
        grads_out = [
            tf.random.normal((BATCH_SIZE, *shape["out_shape"]), seed=100 + i)
            for i in range(copies)
        ]
        watch_input = shape["input_grad"]

        @tf.function
        def step(xs, grads_out, layer=layer, watch_input=watch_input):
            # CHAIN passes in one call (one inter-op thread: they run one
            # after the other): the function call and host sync are
            # amortised, as in the training step, where the layer is one node
            # of a graph.
            sums = []
            for i in range(CHAIN):
                x = xs[i % len(xs)]
                with tf.GradientTape() as tape:
                    if watch_input:
                        tape.watch(x)
                    y = layer(x)
                sources = layer.trainable_variables + ([x] if watch_input else [])
                # The backward pass from a given output gradient, as PyTorch's
                # y.backward(grad_out).
                grads = tape.gradient(
                    y, sources, output_gradients=grads_out[i % len(grads_out)]
                )
                sums += [tf.reduce_sum(g[..., :1]) for g in grads]
            return tf.add_n(sums)

        per_call = _time(lambda: step(xs, grads_out).numpy(), warmup, timed)
        seconds.append(per_call / CHAIN)
    return {"seconds": seconds, "threads": threads, "fresh": fresh}


def worker_torch(shapes, channels_last, warmup, timed, fresh=False):
    """The same passes in PyTorch eager; None without torch. ``fresh``: each
    call takes the next of CHAIN inputs and output gradients, in turn."""
    try:
        import torch
        from torch import nn
        from torch_peer import StridedSameConv, StridedSameConvTranspose, use_all_cores
    except ImportError as error:
        return {"available": False, "error": f"{type(error).__name__}: {error}"}
    threads = use_all_cores()
    torch.manual_seed(0)
    seconds = []
    for shape in shapes:
        h, w, c = shape["in_shape"]
        f = shape["filters"]
        if shape["kind"] == "transpose":
            module = StridedSameConvTranspose(c, f)
        elif shape["strides"] == 2:
            module = StridedSameConv(c, f)
        else:
            module = nn.Conv2d(c, f, 3, padding=1)
        oh, ow, oc = shape["out_shape"]
        copies = CHAIN if fresh else 1
        xs = [torch.randn(BATCH_SIZE, c, h, w) for _ in range(copies)]
        grads_out = [torch.randn(BATCH_SIZE, oc, oh, ow) for _ in range(copies)]
        if channels_last:
            module = module.to(memory_format=torch.channels_last)
            xs = [x.contiguous(memory_format=torch.channels_last) for x in xs]
            grads_out = [
                g.contiguous(memory_format=torch.channels_last) for g in grads_out
            ]
        for x in xs:
            x.requires_grad_(shape["input_grad"])
        turn = iter(range(10**9))

        def run(module=module, xs=xs, grads_out=grads_out, turn=turn):
            i = next(turn) % len(xs)
            module.zero_grad(set_to_none=True)
            module(xs[i]).backward(grads_out[i])

        seconds.append(_time(run, warmup, timed))
    return {"seconds": seconds, "threads": threads, "available": True}


WORKERS = {"tf": worker_tf, "torch": worker_torch, "matmul": worker_matmul}


def _run_config(config, shapes, warmup, timed):
    """One configuration of CONFIGS over every shape, in its own process."""
    if config["kind"] == "tf":
        specific = {"threads": config["threads"]}
    else:
        specific = {"channels_last": config["channels_last"]}
    return run_worker(
        config["kind"],
        shapes=shapes,
        warmup=warmup,
        timed=timed,
        fresh=config.get("fresh", False),
        **specific,
    )


def run_worker(name, **kwargs):
    """One worker in a fresh Python process, without TensorFlow's start-up logs."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    return common.run_worker(__file__, name, kwargs, env=env)


# ------------------------------------------------------------------ report
def summarise(shapes, rounds, peak_gflops):
    """Per-shape medians over the rounds, GFLOP/s and % of the matmul peak.

    ``rounds``: {config label: [worker result per round]}; a result without
    ``seconds`` (torch missing) gives None. Also the totals over the
    network's layers (a shape counts once per layer that has it).
    """
    rows = []
    totals = {}
    for i, shape in enumerate(shapes):
        gflop = pass_gflop(shape)
        row = dict(shape, gflop_per_pass=gflop, configs={})
        for label, results in rounds.items():
            times = [r["seconds"][i] for r in results if r.get("seconds")]
            if not times:
                row["configs"][label] = None
                continue
            median = float(np.median(times))
            row["configs"][label] = {
                "ms": 1e3 * median,
                "ms_rounds": [round(1e3 * t, 3) for t in times],
                "gflops": gflop / median,
                "percent_of_peak": 100.0 * gflop / median / peak_gflops,
            }
            totals.setdefault(label, 0.0)
            totals[label] += 1e3 * median * len(shape["layers"])
        rows.append(row)
    total_gflop = sum(pass_gflop(s) * len(s["layers"]) for s in shapes)
    summary = {}
    for label, ms in totals.items():
        summary[label] = {
            "ms_per_step": ms,
            "gflops": total_gflop / (ms / 1e3),
            "percent_of_peak": 100.0 * total_gflop / (ms / 1e3) / peak_gflops,
        }
    return rows, {"gflop_per_step": total_gflop, "configs": summary}


def _shape_name(row):
    h, w, c = row["in_shape"]
    kind = "transposed conv" if row["kind"] == "transpose" else "conv"
    stride = f", stride {row['strides']}" if row["strides"] != 1 else ""
    return f"{kind} {h}x{w}x{c} -> {row['filters']}{stride}"


# (numerator, denominator, header) of the report's time ratios.
RATIOS = (
    (CONFIGS[1]["label"], CONFIGS[0]["label"], "1 thread / 2 threads (time)"),
    (CONFIGS[4]["label"], CONFIGS[0]["label"], "fresh / cached (time, package)"),
)


def _ratios(configs, key):
    """The RATIOS' cells for one row: times divided, '-' where one is missing."""
    cells = []
    for numerator, denominator, _ in RATIOS:
        a, b = configs.get(numerator), configs.get(denominator)
        cells.append(f"{a[key] / b[key]:.2f}x" if a and b else "-")
    return cells


def write_report(report, results):
    os.makedirs(results, exist_ok=True)
    stem = os.path.join(results, f"conv_shapes_{report['preset']}")
    with open(stem + ".json", "w") as f:
        json.dump(report, f, indent=2)
    labels = [c["label"] for c in report["configs_run"]]
    lines = [
        f"# Convolution shapes of `{report['preset']}`, one training pass each",
        "",
        f"`{report['command']}`. {report['machine']}; TensorFlow "
        f"{report['tensorflow']}"
        + (f", PyTorch {report['torch']}" if report.get("torch") else "")
        + f". {report['started_utc']} to {report['finished_utc']} UTC, "
        f"{report['rounds']} interleaved rounds of {report['passes'][1]} timed "
        f"calls per shape after {report['passes'][0]} warm-up (a TensorFlow "
        f"call runs {report.get('chain', CHAIN)} passes, one after the other; "
        "a PyTorch call one), medians; 1-minute "
        f"load average at the start {report['load_average'][0]:.2f}, at the end "
        f"{report['load_average'][1]:.2f}. {report['note']}".rstrip(),
        "",
        "One pass: forward, weight and bias gradients and (but for the layers "
        "that read the image) the input gradient, batch 100, from a given "
        'output gradient; "fresh tensors": every pass reads another input '
        "and output gradient (5 in turn), out of the cache. GFLOP/s from "
        "3 x 2 x the multiply-adds; % against "
        f"the float32 TensorFlow matmul peak of the same run "
        f"({report['matmul']['peak_gflops']:.0f} GFLOP/s, "
        f"{report['matmul']['size']}x{report['matmul']['size']}).",
        "",
        "| shape | layers | MFLOP / pass | "
        + " | ".join(f"{label}: ms (GFLOP/s, % of peak)" for label in labels)
        + "".join(f" | {header}" for _, _, header in RATIOS)
        + " |",
        "|---|---|---|" + "---|" * (len(labels) + len(RATIOS)),
    ]
    for row in report["shapes"]:
        cells = []
        for label in labels:
            c = row["configs"].get(label)
            cells.append(
                "-"
                if c is None
                else f"{c['ms']:.2f} ({c['gflops']:.0f}, {c['percent_of_peak']:.0f}%)"
            )
        lines.append(
            f"| {_shape_name(row)} | {len(row['layers'])} | "
            f"{1e3 * row['gflop_per_pass']:.0f} | "
            + " | ".join(cells + _ratios(row["configs"], "ms"))
            + " |"
        )
    totals = report["totals"]["configs"]
    cells = []
    for label in labels:
        c = totals.get(label)
        cells.append(
            "-"
            if c is None
            else f"**{c['ms_per_step']:.1f}** ({c['gflops']:.0f}, "
            f"{c['percent_of_peak']:.0f}%)"
        )
    lines.append(
        f"| all convolutions of one step | "
        f"{sum(len(r['layers']) for r in report['shapes'])} | "
        f"{1e3 * report['totals']['gflop_per_step']:.0f} | "
        + " | ".join(cells + _ratios(totals, "ms_per_step"))
        + " |"
    )
    if report.get("torch_skipped"):
        lines += ["", f"PyTorch columns skipped: {report['torch_skipped']}."]
    lines += ["", "Layers per shape:", ""]
    for row in report["shapes"]:
        lines.append(f"- {_shape_name(row)}: {', '.join(row['layers'])}")
    lines.append("")
    with open(stem + ".md", "w") as f:
        f.write("\n".join(lines))
    return stem


# ------------------------------------------------------------------ main
def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="fashion_mnist")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds")
    parser.add_argument(
        "--calls",
        type=int,
        default=PASSES[1],
        help=f"timed calls per shape and process (default {PASSES[1]}; "
        "fewer for the large presets)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="one round, 1 + 2 passes (a smoke test)"
    )
    parser.add_argument(
        "--configs",
        default=",".join(c["key"] for c in CONFIGS),
        help="comma-separated, of: " + ", ".join(c["key"] for c in CONFIGS),
    )
    parser.add_argument("--note", default="", help="what else ran on the machine")
    parser.add_argument("--results", help="default: benchmarks/results")
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--kwargs", default="{}", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None):
    here = os.path.dirname(os.path.abspath(__file__))
    args = parse_args(argv)
    if args.worker:
        print(json.dumps(WORKERS[args.worker](**json.loads(args.kwargs))), flush=True)
        return None
    import tensorflow as tf

    import vae_balance

    if args.preset not in vae_balance.PRESETS:
        raise SystemExit(
            f"Unknown --preset {args.preset!r}; one of: "
            f"{', '.join(sorted(vae_balance.PRESETS))}."
        )
    known = {c["key"] for c in CONFIGS}
    wanted = [k for k in args.configs.split(",") if k]
    if not wanted or set(wanted) - known:
        raise SystemExit(
            f"Unknown --configs {sorted(set(wanted) - known) or wanted}; valid: "
            f"{', '.join(sorted(known))}."
        )
    configs = [c for c in CONFIGS if c["key"] in wanted]
    results = args.results or os.path.join(here, "results")
    passes = QUICK_PASSES if args.quick else (PASSES[0], args.calls)
    repeats = 1 if args.quick else args.repeats
    report = {
        "command": command_line("conv_shapes.py", argv),
        "machine": describe_machine(),
        "tensorflow": tf.__version__,
        "preset": args.preset,
        "batch_size": BATCH_SIZE,
        "passes": list(passes),
        "chain": CHAIN,
        "rounds": repeats,
        "note": args.note,
        "started_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "load_average": [os.getloadavg()[0]],
    }
    shapes = conv_shapes(args.preset)
    print(f"{len(shapes)} convolution shapes in {args.preset}.", flush=True)
    report["matmul"] = run_worker("matmul", repeats=2 if args.quick else 8)
    rounds = {c["label"]: [] for c in configs}
    warmup, timed = passes
    for r in range(repeats):
        for config in list(configs):
            result = _run_config(config, shapes, warmup, timed)
            if config["kind"] == "torch" and not result.get("available"):
                report["torch_skipped"] = (
                    f"PyTorch cannot be imported ({result['error']}); pip install torch"
                )
                print(f"  Skipping PyTorch: {report['torch_skipped']}.")
                configs = [c for c in configs if c["kind"] != "torch"]
                rounds = {c["label"]: rounds[c["label"]] for c in configs}
                continue
            rounds[config["label"]].append(result)
            total = sum(t * len(s["layers"]) for t, s in zip(result["seconds"], shapes))
            print(
                f"  round {r + 1}, {config['label']}: "
                f"{1e3 * total:.1f} ms of convolutions per step",
                flush=True,
            )
    if "torch_skipped" not in report:
        import importlib.metadata

        report["torch"] = importlib.metadata.version("torch")
    report["configs_run"] = configs
    report["shapes"], report["totals"] = summarise(
        shapes, rounds, report["matmul"]["peak_gflops"]
    )
    report["finished_utc"] = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
    report["load_average"].append(os.getloadavg()[0])
    stem = write_report(report, results)
    print(f"Wrote {stem}.json and .md")
    return report


if __name__ == "__main__":
    main()
