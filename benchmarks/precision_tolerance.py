"""How far ``--precision mixed_bfloat16`` moves a training run, against seeds.

The opt-in bfloat16 mode (bfloat16 activations; float32 weights, BatchNorm
statistics, losses, gamma and running MSE) is 1.6x the float32 training step
of the ``cifar10`` preset on this CPU (throughput.py). This benchmark measures
how far it moves what training produces: it trains the paper's CIFAR-10 network
(preset ``fashion_mnist_full``: the cifar10 architecture on real Fashion-MNIST
images, 32x32x1) four times with the package's own job,

- float32, seed 0 (the reference);
- float32, seeds 1 and 2 (what changing the seed alone does);
- mixed_bfloat16, seed 0 (the same initial weights and data order as the
  reference; the same noise stream up to bfloat16 rounding, since z_mean and
  z_log_sigma are bfloat16 under that policy),

and compares what the job leaves: the batch MSE and gamma^2 over the last
100 stage-1 steps (gamma^2 is a running average of the batch MSE, so these two
rows largely measure the same thing), the held-out MSE of the last epoch and
the held-out MSE in inference mode after the BatchNorm recalibration. The
tolerance is met where bfloat16 moves a number by no more than the larger of
the two seed changes. Two seed changes are a small sample of the seed's
spread, and the bfloat16 run is paired with the reference (same seed) while
the seed runs are not: read a "yes" as "not distinguishable from a seed
change here", and the numbers hold for the first ``--epochs`` of the preset's
run only.

    python benchmarks/precision_tolerance.py      # ~45 min on the idle 2-core machine

Each run is a work directory under ``--out`` (resumed; skipped once done, after
checking that it was made with the same settings); the report is
``precision_tolerance.{json,md,png}`` in ``--results``.
"""

import argparse
import csv
import json
import os
import shlex
import subprocess
import sys
import time

import numpy as np
from common import describe_machine

from vae_balance.files import write_json

RUNS = (("float32", 0), ("float32", 1), ("float32", 2), ("mixed_bfloat16", 0))
REFERENCE, *SEED_PEERS, CANDIDATE = RUNS
TAIL = 100  # the last stage-1 steps the batch MSE and gamma^2 are averaged over
# (key, label, format)
METRICS = (
    ("batch_mse_tail", f"batch MSE, last {TAIL} steps", ".5f"),
    ("gamma2_tail", f"gamma^2, last {TAIL} steps", ".5f"),
    ("val_mse", "held-out MSE, last epoch", ".5f"),
    ("inference_mse", "held-out MSE, inference mode (recalibrated BN)", ".5f"),
)


class RunMismatch(RuntimeError):
    """A finished work directory was made with other settings."""


def run_name(precision, seed):
    return f"{precision}-seed{seed}"


def job_arguments(args, precision, seed, workdir):
    """The package CLI's arguments for one run (after ``python -m vae_balance``)."""
    return [
        "train",
        "--preset", args.preset,
        "--epochs", str(args.epochs), "--epochs2", "1",
        *(["--limit", str(args.limit)] if args.limit else []),
        "--seed", str(seed),
        "--precision", precision,
        "--grid-every", "1000",
        "--workdir", workdir,
    ]  # fmt: skip


def check_finished(workdir, timing, arguments, args, seed):
    """Raises RunMismatch when a finished run is not the one asked for."""
    recorded = timing.get("arguments")
    if recorded is not None and recorded != arguments:
        raise RunMismatch(
            f"{workdir} was trained with `{shlex.join(recorded)}`, not "
            f"`{shlex.join(arguments)}`: pass another --out, or delete that "
            "directory to retrain it"
        )
    with open(os.path.join(workdir, "config.json")) as f:
        config = json.load(f)
    expected = {"name": args.preset, "epochs": args.epochs, "seed": seed}
    found = {key: config.get(key) for key in expected}
    if found != expected:
        raise RunMismatch(
            f"{workdir} holds a run with {found}, not {expected}: pass another "
            "--out, or delete that directory to retrain it"
        )


def train(args, precision, seed):
    """Trains one run with the package's CLI (its own process); its timing.

    Returns:
        ``{"seconds": ..., "resumed": ...}`` (``resumed`` is False for runs
        recorded before it was).
    """
    workdir = os.path.join(args.out, run_name(precision, seed))
    arguments = job_arguments(args, precision, seed, workdir)
    timing_path = os.path.join(workdir, "benchmark_timing.json")
    if os.path.exists(timing_path):  # written only after the job succeeded
        with open(timing_path) as f:
            timing = json.load(f)
        check_finished(workdir, timing, arguments, args, seed)
        return {"seconds": timing["seconds"], "resumed": timing.get("resumed", False)}
    command = [sys.executable, "-m", "vae_balance", *arguments]
    print(f"[{run_name(precision, seed)}] {shlex.join(command)}", flush=True)
    resumed = os.path.exists(os.path.join(workdir, "config.json"))
    start = time.time()
    subprocess.run(command, check=True)
    seconds = time.time() - start
    write_json(
        timing_path, {"seconds": seconds, "resumed": resumed, "arguments": arguments}
    )
    return {"seconds": seconds, "resumed": resumed}


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def run_metrics(workdir, tail=TAIL):
    """What one run's job left, as METRICS names it (MSE per pixel in [0, 1])."""
    steps = _rows(os.path.join(workdir, "steps_stage1.csv"))
    if len(steps) < tail:
        raise ValueError(
            f"{workdir}: {len(steps)} stage-1 steps logged, fewer than the "
            f"{tail} averaged over: train more steps (--epochs, --limit)"
        )
    mse = np.array([float(row["mse"]) for row in steps])
    gamma = np.array([float(row["gamma"]) for row in steps])  # gamma, not gamma^2
    history = _rows(os.path.join(workdir, "history_stage1.csv"))
    with open(os.path.join(workdir, "batchnorm.json")) as f:
        batchnorm = json.load(f)["stage1"]
    return {
        "steps": len(steps),
        "batch_mse_tail": float(mse[-tail:].mean()),
        "gamma2_tail": float((gamma[-tail:] ** 2).mean()),
        "val_mse": float(history[-1]["val_mse"]),
        "inference_mse": float(batchnorm["val_mse_after"]),
        "curve": {"mse": mse.tolist(), "gamma2": (gamma**2).tolist()},
    }


def compare(metrics):
    """Per metric: the relative move of bfloat16 and of each seed, and the verdict.

    Args:
        metrics: ``{run name: run_metrics(...)}`` of the RUNS.
    """
    steps = {name: m["steps"] for name, m in metrics.items()}
    if len(set(steps.values())) > 1:
        raise ValueError(f"the runs trained different numbers of steps: {steps}")
    reference = metrics[run_name(*REFERENCE)]
    rows = {}
    for key, *_ in METRICS:
        base = reference[key]
        by_precision = metrics[run_name(*CANDIDATE)][key] / base - 1
        by_seed = [metrics[run_name(*peer)][key] / base - 1 for peer in SEED_PEERS]
        largest = max(abs(move) for move in by_seed)
        rows[key] = {
            "bfloat16_vs_float32": by_precision,
            "seeds_vs_seed0": by_seed,
            "largest_seed_move": largest,
            "within_seed_moves": abs(by_precision) <= largest,
        }
    return rows


def plot(metrics, path, window=20):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    kernel = np.ones(window) / window
    for (precision, seed), style in zip(RUNS, ("-", ":", "-.", "--"), strict=True):
        curve = metrics[run_name(precision, seed)]["curve"]
        for ax, key in zip(axes, ("mse", "gamma2"), strict=True):
            smooth = np.convolve(curve[key], kernel, mode="valid")
            ax.plot(np.arange(window, len(curve[key]) + 1), smooth, style,
                    label=f"{precision}, seed {seed}")  # fmt: skip
    for ax, label in zip(axes, ("batch MSE", "gamma^2"), strict=True):
        ax.set_yscale("log")
        ax.set_xlabel("stage-1 step (batch 100)")
        ax.set_ylabel(f"{label} ({window}-step average)")
        ax.legend()
    fig.suptitle("paper CIFAR-10 network on Fashion-MNIST: bfloat16 against seeds")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return os.path.basename(path)


def report_lines(report):
    seeds = ", ".join(str(seed) for _, seed in SEED_PEERS)
    lines = [
        "# bfloat16 against float32 and against the seed",
        "",
        f"Command: `{report['command']}`",
        "",
        f"{report['machine']}, {report['finished_utc']} UTC. Preset "
        f"`{report['preset']}` (the paper's CIFAR-10 network on Fashion-MNIST), "
        f"{report['epochs']} of its {report['preset_epochs']} stage-1 epochs "
        f"({report['steps']} steps of batch {report['batch_size']}), the "
        "package's job (`python -m vae_balance train`) in its own process per "
        "run. Values are mean squared errors per pixel (images in [0, 1]); "
        "the last epoch's held-out MSE is Keras' `val_mse` (sampled z, the "
        "moving BatchNorm statistics), the inference-mode one decodes z_mean "
        "after the BatchNorm statistics are recomputed. Moves are relative to "
        "float32 seed 0. The bfloat16 run has seed 0 too (the same initial "
        "weights and data order); the tolerance holds where it moves a number "
        f"no more than the largest move of float32 seeds {seeds}, a small "
        "sample of the seed's spread. gamma^2 is a running average of the "
        "batch MSE: those two rows largely measure one thing.",
        "",
        "| | "
        + " | ".join(run_name(*run) for run in RUNS)
        + f" | bfloat16 vs float32 | seeds {seeds} vs seed 0 | within the seeds' "
        "moves |",
        "|---" * (len(RUNS) + 4) + "|",
    ]
    for key, label, fmt in METRICS:
        values = " | ".join(
            f"{report['runs'][run_name(*run)][key]:{fmt}}" for run in RUNS
        )
        row = report["comparison"][key]
        within = "yes" if row["within_seed_moves"] else "**no**"
        by_seed = ", ".join(f"{move:+.2%}" for move in row["seeds_vs_seed0"])
        lines.append(
            f"| {label} | {values} | {row['bfloat16_vs_float32']:+.2%} | "
            f"{by_seed} | {within} |"
        )
    times = ", ".join(
        f"{name} {values['job_seconds']:.0f} s"
        + (" (resumed: the last part only)" if values.get("resumed") else "")
        for name, values in report["runs"].items()
    )
    lines += ["", f"Whole job (both stages, export): {times}.", ""]
    lines += [f"![curves]({report['plot']})", ""]
    return lines


def main(argv=None):
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="fashion_mnist_full")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--limit", type=int, help="first N training images only")
    parser.add_argument("--out", default=os.path.join("runs", "precision_tolerance"))
    parser.add_argument("--results", default=os.path.join(here, "results"))
    args = parser.parse_args(argv)
    command = shlex.join(
        ["python", "benchmarks/precision_tolerance.py"]
        + list(sys.argv[1:] if argv is None else argv)
    )
    os.makedirs(args.results, exist_ok=True)
    from vae_balance.config import get_preset

    preset = get_preset(args.preset)
    metrics = {}
    for precision, seed in RUNS:
        timing = train(args, precision, seed)
        name = run_name(precision, seed)
        metrics[name] = run_metrics(os.path.join(args.out, name))
        metrics[name]["job_seconds"] = timing["seconds"]  # the whole job, both stages
        metrics[name]["resumed"] = timing["resumed"]
    comparison = compare(metrics)
    report = {
        "command": command,
        "machine": describe_machine(),
        "finished_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "preset": args.preset,
        "epochs": args.epochs,
        "preset_epochs": preset.epochs,
        "steps": metrics[run_name(*REFERENCE)]["steps"],
        "batch_size": preset.batch_size,
        "limit": args.limit,
        "runs": {
            name: {k: v for k, v in m.items() if k != "curve"}
            for name, m in metrics.items()
        },  # fmt: skip
        "comparison": comparison,
        "plot": plot(metrics, os.path.join(args.results, "precision_tolerance.png")),
    }
    write_json(os.path.join(args.results, "precision_tolerance.json"), report)
    text = "\n".join(report_lines(report))
    with open(os.path.join(args.results, "precision_tolerance.md"), "w") as f:
        f.write(text)
    print(text)
    return report


if __name__ == "__main__":
    main()
