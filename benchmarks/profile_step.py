"""Where one stage-1 training step spends its time: the TensorFlow profiler.

For each preset (default ``fashion_mnist`` and ``cifar10``, batch 100,
synthetic images, the package's default configuration) the script builds
`build_vae`, compiles it as the training job does, warms up, then traces
``--steps`` steps of ``fit`` with ``tf.profiler.experimental`` and reads the
trace (the XSpace protobuf the profiler writes) itself: every TensorFlow op
run on the executor threads, its duration, grouped

- by op type (``_MklNativeConv2DBackpropFilter``, ``FusedBatchNormV3``, ...),
- by layer (the op's name scope: ``encoder/scale1_conv2``, ...),
- by phase: forward, backward (``gradient_tape/``), optimizer (``Adam``)
  and the rest (loss, balancing state, metrics).

Shares are of the summed op time. The executor runs up to two ops at once
on these 2 cores (inter-op parallelism), so op time can exceed wall time;
the report gives both, and the wall time per step outside any op (Python,
``fit``'s loop and callbacks).

    python benchmarks/profile_step.py        # ~2 min on 2 idle cores
    python benchmarks/profile_step.py --presets cifar10 --steps 5

Writes ``NAME.{json,md}`` (``--name``, default ``profile_step``) to
``--results`` (default ``benchmarks/results``); ``--precision
mixed_bfloat16`` profiles the bfloat16 mode. One preset per subprocess, so
TensorFlow's thread pools and settings start fresh. The traces are removed
once read; ``--trace-dir DIR`` keeps them (``DIR/<preset>-<precision>``) for
TensorBoard's profile tab.
"""

import argparse
import collections
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from common import describe_machine

PRESETS = ("fashion_mnist", "cifar10")
BATCH_SIZE = 100
STEPS = {"fashion_mnist": 20, "cifar10": 5, "celeba": 2}
WARMUP = 3
TOP = 15


def _phase(name):
    if "gradient_tape/" in name:
        return "backward"
    if "adam" in name or "Adam" in name.split("/"):
        return "optimizer"
    if (
        "/encoder" in name
        or "/decoder" in name
        or name.startswith(("encoder", "decoder"))
    ):
        return "forward"
    return "other"


def _layer(name):
    """``encoder/scale1_conv2`` from an op's scoped name."""
    skipped = ("StatefulPartitionedCall", "gradient_tape")
    parts = [p for p in name.split("/") if p not in skipped]
    for i, part in enumerate(parts):
        base = part.rsplit("_", 1)[0] if part[-1:].isdigit() else part
        if base in ("encoder", "decoder") and i + 1 < len(parts):
            layer = parts[i + 1]
            if layer[-2:-1] == "_" and layer[-1].isdigit():
                layer = layer[:-2]
            return f"{base}/{layer}"
    return "(model: loss, balance, metrics, optimizer)"


def read_trace(logdir):
    """Op events of the executor threads: a list of (name, type, seconds)."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    paths = glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True)
    if not paths:
        raise RuntimeError(f"the profiler wrote no trace under {logdir}")
    space = xplane_pb2.XSpace()
    with open(sorted(paths)[-1], "rb") as f:
        space.ParseFromString(f.read())
    ops = []
    for plane in space.planes:
        if plane.name != "/host:CPU":
            continue
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):
                continue
            for event in line.events:
                label = plane.event_metadata[event.metadata_id].name
                if ":" not in label or label.startswith("ExecutorState"):
                    continue
                name, op_type = label.rsplit(":", 1)
                if op_type in ("StatefulPartitionedCall", "PartitionedCall"):
                    continue  # the function call wrapping every op
                ops.append((name, op_type, event.duration_ps * 1e-12))
    return ops


def _grouped(ops, key, steps, total):
    seconds = collections.Counter()
    counts = collections.Counter()
    for op in ops:
        seconds[key(op)] += op[2]
        counts[key(op)] += 1
    return [
        {
            "name": name,
            "ms_per_step": 1e3 * value / steps,
            "share": value / total,
            "calls_per_step": counts[name] / steps,
        }
        for name, value in seconds.most_common()
    ]


def worker(preset, steps, precision="float32", trace_dir=None):
    """Profiles ``steps`` training steps of ``preset``; returns the groups.

    The trace is written under ``trace_dir/<preset>-<precision>`` and kept
    (for TensorBoard's profile tab), or, without ``trace_dir``, in a
    temporary directory removed once read.
    """
    import keras
    import tensorflow as tf

    import vae_balance

    keras.mixed_precision.set_global_policy(precision)
    config = vae_balance.get_preset(preset)
    vae = vae_balance.build_vae(config)
    vae.compile(
        optimizer=keras.optimizers.Adam(
            config.learning_rate, epsilon=config.adam_epsilon
        )
    )
    batch = tf.random.uniform((BATCH_SIZE, *config.image_shape), seed=0)
    warm = tf.data.Dataset.from_tensors(batch).repeat(WARMUP)
    vae.fit(warm, epochs=1, verbose=0, shuffle=False)
    traced = tf.data.Dataset.from_tensors(batch).repeat(steps)
    if trace_dir:
        logdir = os.path.join(trace_dir, f"{preset}-{precision}")
        os.makedirs(logdir, exist_ok=True)
    else:
        logdir = tempfile.mkdtemp(prefix="vae_balance-profile-")
    try:
        tf.profiler.experimental.start(logdir)
        start = time.perf_counter()
        vae.fit(traced, epochs=1, verbose=0, shuffle=False)
        wall = time.perf_counter() - start
        tf.profiler.experimental.stop()
        ops = read_trace(logdir)
    finally:
        if not trace_dir:
            shutil.rmtree(logdir, ignore_errors=True)
    total = sum(op[2] for op in ops)
    return {
        "preset": preset,
        "precision": precision,
        "steps": steps,
        "batch_size": BATCH_SIZE,
        "wall_ms_per_step": 1e3 * wall / steps,
        "op_ms_per_step": 1e3 * total / steps,
        "ops_per_step": len(ops) / steps,
        "trace": os.path.abspath(logdir) if trace_dir else None,
        "by_type": _grouped(ops, lambda op: op[1], steps, total),
        "by_layer": _grouped(ops, lambda op: _layer(op[0]), steps, total),
        "by_phase": _grouped(ops, lambda op: _phase(op[0]), steps, total),
    }


def _table(rows, top):
    lines = ["| | ms / step | share | calls / step |", "|---|---|---|---|"]
    for row in rows[:top]:
        lines.append(
            f"| `{row['name']}` | {row['ms_per_step']:.1f} | "
            f"{100 * row['share']:.1f}% | {row['calls_per_step']:.0f} |"
        )
    rest = rows[top:]
    if rest:
        share = sum(r["share"] for r in rest)
        ms = sum(r["ms_per_step"] for r in rest)
        lines.append(f"| ({len(rest)} others) | {ms:.1f} | {100 * share:.1f}% | |")
    return "\n".join(lines)


def write_report(report, results, name="profile_step"):
    os.makedirs(results, exist_ok=True)
    with open(os.path.join(results, f"{name}.json"), "w") as f:
        json.dump(report, f, indent=2)
    lines = [
        "# Profile of one stage-1 training step",
        "",
        f"`{report['command']}` on {report['machine']}, {report['date']}. "
        "TensorFlow profiler trace of `fit` on synthetic images, batch "
        f"{BATCH_SIZE}, the package's default configuration in the dtype "
        "policy of each section's title; shares are of the summed op time "
        "on the executor threads (up to two ops run at once, so op time can "
        "exceed wall time).",
    ]
    for run in report["runs"]:
        lines += [
            "",
            f"## {run['preset']} ({run['precision']})",
            "",
            f"{run['steps']} traced steps: wall {run['wall_ms_per_step']:.1f} "
            f"ms/step, op time {run['op_ms_per_step']:.1f} ms/step, "
            f"{run['ops_per_step']:.0f} ops/step.",
            "",
            "By phase:",
            "",
            _table(run["by_phase"], TOP),
            "",
            "By op type:",
            "",
            _table(run["by_type"], TOP),
            "",
            "By layer (forward and backward together):",
            "",
            _table(run["by_layer"], TOP),
        ]
    with open(os.path.join(results, f"{name}.md"), "w") as f:
        f.write("\n".join(lines) + "\n")


def main(argv=None):
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--presets", default=",".join(PRESETS))
    parser.add_argument("--steps", type=int, help="traced steps (default per preset)")
    parser.add_argument(
        "--precision",
        default="float32",
        choices=("float32", "mixed_bfloat16"),
        help="Keras dtype policy of the profiled model (default float32)",
    )
    parser.add_argument("--results", default=os.path.join(here, "results"))
    parser.add_argument(
        "--name", default="profile_step", help="report file stem (default %(default)s)"
    )
    parser.add_argument(
        "--trace-dir",
        help="keep the profiler traces here, one directory per preset, for "
        "TensorBoard's profile tab (default: read, then removed)",
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        run = worker(args.worker, args.steps, args.precision, args.trace_dir)
        print(json.dumps(run))
        return
    runs = []
    for preset in args.presets.split(","):
        steps = args.steps or STEPS[preset]
        print(f"profiling {preset}: {steps} steps", flush=True)
        command = [sys.executable, os.path.abspath(__file__), "--worker", preset]
        command += ["--steps", str(steps), "--precision", args.precision]
        if args.trace_dir:
            command += ["--trace-dir", os.path.abspath(args.trace_dir)]
        done = subprocess.run(command, capture_output=True, text=True)
        lines = [x for x in done.stdout.splitlines() if x.startswith("{")]
        if done.returncode != 0 or not lines:
            raise SystemExit(f"profiling {preset} failed:\n{done.stderr[-3000:]}")
        run = json.loads(lines[-1])
        print(
            f"  wall {run['wall_ms_per_step']:.1f} ms/step; top ops: "
            + ", ".join(
                f"{r['name']} {100 * r['share']:.0f}%" for r in run["by_type"][:4]
            ),
            flush=True,
        )
        runs.append(run)
    report = {
        "command": "python benchmarks/profile_step.py "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": describe_machine(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "runs": runs,
    }
    write_report(report, args.results, args.name)
    print(f"wrote {os.path.join(args.results, args.name + '.md')}")


if __name__ == "__main__":
    main()
