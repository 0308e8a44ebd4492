"""Balancing strategies head to head on Fashion-MNIST, over seeds.

Every (strategy, seed) pair is one training run of the `fashion_mnist` preset
(both stages, `vae_balance.training.job.train`) in its own work directory,
``--out/<strategy>-seed<seed>`` (resumed where it stopped), evaluated right
after by `vae_balance.evaluation.protocol.evaluate_workdir` on the first
``--fid-images`` test images: FID, KID, precision and recall of REC, GEN-1
and GEN-2, and the reconstruction MSE (features cached per run, the test
images' once under ``--out/features``). One seed is ``--seeds 0``.

What a finished run leaves is its *record*, a small directory
``--records/<strategy>-seed<seed>/`` (default
``benchmarks/results/compare_balancing_seeds/``, committed): the evaluation
(``evaluation.json``), the training time and balance dynamics
(``record.json``, written last) and the per-step gamma and batch MSE of
stage 1 (``steps.npz``). A recorded run is neither trained nor evaluated
again: the comparison can stop at any point and continue later, from a
fresh clone or on another machine (copy the records). The report is
rewritten from the records alone after every new one, in ``--results``
(default ``benchmarks/results/``): ``compare_balancing_seeds.{json,md,png}``
with every cell, the mean and standard deviation per strategy, the paired
per-seed differences of ``running`` against ``learned`` and ``batch`` (95%
Student-t interval, sign test: `seed_statistics`) and gamma^2 / batch MSE
over the stage-1 steps (mean over seeds, min-max band).

Strategies (`BalancedVAE` ``balance=``): ``running`` (the paper: gamma^2 =
running min-average of the batch MSE), ``learned`` (Dai & Wipf: trainable
log-gamma), ``batch`` (sigma-VAE: this batch's MSE), ``fixed`` (gamma = 1,
the plain VAE) and ``beta`` (gamma = 1, KL weight ``BETA``).

    python benchmarks/compare_balancing.py       # seeds 0 1 2, running,learned,batch
    python benchmarks/compare_balancing.py --seeds 0 \\
        --strategies running,learned,batch,fixed,beta
    python benchmarks/compare_balancing.py --report-only    # train nothing
    python benchmarks/compare_balancing.py --seeds 0 --epochs 1 --epochs2 2 \\
        --fid-images 300 --out runs/compare_quick --results /tmp/compare_quick

On the project's idle 2-core machine a run takes about 10 min of training
(12 + 24 epochs) and 10 min of evaluation (5,000 images per set, plus 2 min
once for the test images'): about 3 h for the default 9 runs. FID with N
test images is biased upwards by roughly a constant / N: compare numbers of
one N only.
"""

import argparse
import csv
import json
import os
import resource
import sys
import time

import common
import numpy as np
import seed_statistics
from common import markdown_table

from vae_balance.files import write_json
from vae_balance.workdir import Workdir

PRESET = "fashion_mnist"
# Fixed gamma = 1 with KL weight beta minimises, up to the factor 1 / beta,
# the same objective as gamma^2 = beta with KL weight 1: beta = 0.01 is the
# constant gamma^2 ~ the MSE the balanced runs reach (0.01-0.02), the one
# one would pick by hand (not tuned further). The disentangling beta > 1
# would only push further towards the KL-dominated plain VAE.
BETA = 0.01
STRATEGIES = {
    "running": {"balance": "running"},
    "learned": {"balance": "learned"},
    "batch": {"balance": "batch"},
    "fixed": {"balance": "fixed", "gamma": 1.0, "kl_weight": 1.0},
    "beta": {"balance": "fixed", "gamma": 1.0, "kl_weight": BETA},
}
DEFAULT_STRATEGIES = ("running", "learned", "batch")
DEFAULT_SEEDS = (0, 1, 2)
DEFAULT_FID_IMAGES = 5000
# The full budget: 12 + 24 epochs. Measured on the 2-core machine (fused
# BatchNorm): a stage-1 epoch 51-55 s when not shared, a stage-2 epoch
# 6-11 s, and ~60 s of fixed costs per job (tracing, latents, grids, export).
FULL_EPOCHS = 12
FULL_EPOCHS2 = 24
PAIRS = (("running", "learned"), ("running", "batch"))
# (key, label, lower is better, format)
METRICS = (
    ("fid_rec", "REC FID", True, ".1f"),
    ("fid_gen1", "GEN-1 FID", True, ".1f"),
    ("fid_gen2", "GEN-2 FID", True, ".1f"),
    ("precision_gen2", "GEN-2 precision", False, ".3f"),
    ("recall_gen2", "GEN-2 recall", False, ".3f"),
    ("reconstruction_mse", "rec. MSE", True, ".5f"),
    ("final_gamma2_over_mse", "final gamma^2 / MSE", None, ".2f"),
    ("steps_to_balance", "steps to balance", True, ".0f"),
    ("train_cpu_seconds", "train CPU time (s)", None, ".0f"),
)


def parse_args(argv=None):
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=FULL_EPOCHS)
    parser.add_argument("--epochs2", type=int, default=FULL_EPOCHS2)
    parser.add_argument("--fid-images", type=int, default=DEFAULT_FID_IMAGES)
    parser.add_argument(
        "--strategies",
        default=",".join(DEFAULT_STRATEGIES),
        help=f"comma-separated subset of {','.join(STRATEGIES)}",
    )
    parser.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=list(DEFAULT_SEEDS),
        help="one run per (strategy, seed); one seed: --seeds 0",
    )
    parser.add_argument(
        "--out",
        default=os.path.join("runs", "compare_balancing"),
        help="one work directory per run goes here (resumable)",
    )
    parser.add_argument(
        "--results",
        default=os.path.join(here, "results"),
        help="where the JSON, Markdown and PNG go",
    )
    parser.add_argument(
        "--records",
        help="one small directory per finished run, the runs not to redo "
        "(default: RESULTS/compare_balancing_seeds)",
    )
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="rewrite the report from the records, train nothing",
    )
    parser.add_argument("--limit", type=int, help="first N training images only")
    parser.add_argument("--data-dir")
    args = parser.parse_args(argv)
    if args.records is None:
        args.records = os.path.join(args.results, "compare_balancing_seeds")
    if len(set(args.seeds)) != len(args.seeds):
        parser.error(f"--seeds repeats a seed: {args.seeds}")
    args.strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    unknown = sorted(set(args.strategies) - set(STRATEGIES))
    if unknown:
        parser.error(f"unknown strategies {unknown}; valid: {list(STRATEGIES)}")
    return args


def config_for(strategy, args, seed):
    """The preset with the strategy's balancing and the benchmark's budget;
    the learning rate is halved at the preset's fractions of the run."""
    from vae_balance.config import get_preset

    base = get_preset(PRESET)
    return get_preset(
        base,
        seed=seed,
        epochs=args.epochs,
        epochs2=args.epochs2,
        lr_epochs=max(1, round(args.epochs * base.lr_epochs / base.epochs)),
        lr_epochs2=max(1, round(args.epochs2 * base.lr_epochs2 / base.epochs2)),
        **STRATEGIES[strategy],
    )


def run_dir(out, strategy, seed):
    """The work directory (or record directory) of one (strategy, seed) run."""
    return os.path.join(out, f"{strategy}-seed{seed}")


# ------------------------------------------------- training and evaluation
def _read_timing(path, train_images, workdir):
    timing = {"seconds": 0.0, "cpu_seconds": 0.0, "epochs": 0, "epochs2": 0}
    if os.path.exists(path):
        with open(path) as f:
            timing = json.load(f)
    if timing.get("train_images", train_images) != train_images:
        raise ValueError(
            f"{workdir} was trained on {timing['train_images']} images, this "
            f"comparison asks for {train_images} (--limit): pass another --out, "
            "or delete that work directory to train it again."
        )
    return timing


def train_strategy(strategy, args, seed):
    """Trains (or resumes) ``--out/<strategy>-seed<seed>``; returns its
    cumulative timing (wall and CPU seconds, epochs, stops)."""
    from vae_balance.training import job as training

    workdir = run_dir(args.out, strategy, seed)
    os.makedirs(workdir, exist_ok=True)
    timing_path = os.path.join(workdir, "benchmark_timing.json")
    train_images = args.limit or 60000
    timing = _read_timing(timing_path, train_images, workdir)
    done = os.path.exists(Workdir(workdir).stage_path("stage2"))
    if done and (timing["epochs"], timing["epochs2"]) == (args.epochs, args.epochs2):
        print(f"[{strategy}, seed {seed}] already trained ({timing['seconds']:.0f} s)")
        return timing
    print(f"[{strategy}, seed {seed}] training {args.epochs} + {args.epochs2} epochs")
    start, cpu_start = time.time(), _cpu_seconds()
    stops = timing.get("stops", 0)

    def spent(epochs, epochs2, stops):
        return {
            "seconds": timing["seconds"] + time.time() - start,
            "cpu_seconds": timing.get("cpu_seconds", 0.0) + _cpu_seconds() - cpu_start,
            "epochs": epochs,
            "epochs2": epochs2,
            "train_images": train_images,
            "stops": stops,
        }

    try:
        training.train(
            config_for(strategy, args, seed),
            workdir,
            data_dir=args.data_dir,
            limit=args.limit,
            verbose=2,
            grid_every=max(args.epochs, args.epochs2),
        )
    except BaseException:
        # Stopped (SIGTERM, Ctrl-C, an error): the time so far is kept and
        # the resumed run adds its own; only a hard kill loses a part.
        write_json(timing_path, spent(0, 0, stops + 1))
        raise
    timing = spent(args.epochs, args.epochs2, stops)
    write_json(timing_path, timing)
    return timing


def _cpu_seconds():
    """CPU time of this process, all threads: user + system."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def evaluate_run(workdir, args, seed, extractor):
    """`evaluate_workdir` of one run on the first ``--fid-images`` test
    images (no mixture, likelihood or interpolations); the test images'
    features shared under ``--out/features``."""
    from vae_balance.evaluation import evaluate_workdir

    return evaluate_workdir(
        workdir,
        num_images=args.fid_images,
        data_dir=args.data_dir,
        feature_extractor=extractor,
        seed=seed,
        verbose=0,
        gmm_components=0,
        nll_images=0,
        interpolation_pairs=0,
        shared_feature_cache=os.path.join(args.out, "features"),
    )


def read_steps(workdir):
    """The per-step stage-1 log (step, mse, gamma, running_mse) as arrays,
    or None without one."""
    path = Workdir(workdir).steps_csv("stage1")
    if not os.path.exists(path):
        return None
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    keys = ("step", "mse", "gamma", "running_mse")
    return {k: np.array([float(r[k]) for r in rows if r.get(k)]) for k in keys}


def balance_dynamics(steps, factor=2.0, window=100, tail=600):
    """How fast gamma^2 reaches the reconstruction error, from the step log.

    The batch MSE is smoothed by a ``window``-step moving average; returns the
    first step at which gamma^2 <= ``factor`` x that average (None: never),
    and the median of gamma^2 / batch MSE over the last ``tail`` steps.
    """
    if steps is None or len(steps["mse"]) < window:
        return None
    average = np.convolve(steps["mse"], np.ones(window) / window, mode="valid")
    gamma_squared = steps["gamma"][window - 1 :] ** 2
    within = np.nonzero(gamma_squared <= factor * average)[0]
    ratio = steps["gamma"] ** 2 / steps["mse"]
    return {
        "balance_factor": factor,
        "steps_to_balance": (
            int(steps["step"][window - 1 + within[0]]) if len(within) else None
        ),
        "final_gamma2_over_mse": float(np.median(ratio[-tail:])),
    }


def strategy_dynamics(strategy, steps):
    """`balance_dynamics` of a balancing strategy; None for a fixed gamma."""
    if STRATEGIES[strategy]["balance"] == "fixed":
        return None
    return balance_dynamics(steps)


# ----------------------------------------------------------------- records
def budget(args):
    """What a record must have been made with to stand for this comparison."""
    return {
        "epochs": args.epochs,
        "epochs2": args.epochs2,
        "train_images": args.limit or 60000,
        "fid_images": args.fid_images,
    }


class RecordError(ValueError):
    """A record that cannot stand for the run asked for."""


def _budget_differences(made, asked):
    return ", ".join(
        f"{key}: record {made.get(key)}, asked {value}"
        for key, value in asked.items()
        if made.get(key) != value
    )


def read_record(path, strategy, seed, args):
    """The record of (``strategy``, ``seed``) in ``path``; None without
    ``record.json`` (an unfinished record: the run is made again).

    Raises RecordError, overwriting nothing, for a record that is unreadable,
    incomplete, of another run (a copied or renamed directory) or of another
    budget: the comparison stops and says what to do.
    """
    record_path = os.path.join(path, "record.json")
    if not os.path.exists(record_path):
        return None
    try:
        with open(record_path) as f:
            record = json.load(f)
        with np.load(os.path.join(path, "steps.npz")) as steps:
            record["steps"] = {key: steps[key] for key in steps.files}
        made, run = record["budget"], (record["strategy"], int(record["seed"]))
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise RecordError(
            f"{path} is an incomplete or unreadable record ({error!r}). Delete "
            "the directory to make that run again."
        ) from error
    if run != (strategy, seed):
        raise RecordError(
            f"{record_path} is the record of {run[0]}, seed {run[1]}, not of "
            f"{strategy}, seed {seed}: a copied or renamed directory? Move it "
            f"to {run_dir(os.path.dirname(path), *run)} or delete it."
        )
    if made != budget(args):
        raise RecordError(
            f"{record_path} was made with another budget "
            f"({_budget_differences(made, budget(args))}); records of different "
            "budgets cannot be compared. Pass --records (or --results) and --out "
            "to other directories for this budget, or delete that record to "
            "remake the run."
        )
    return record


def write_record(path, strategy, seed, args, evaluation, timing, steps, dynamics):
    """Writes a finished run's record, ``record.json`` last; returns it.
    ``dynamics``: `balance_dynamics` of ``steps`` (None for a fixed gamma).
    Raises RecordError, writing nothing, for a run of another budget."""
    made = {
        "epochs": timing["epochs"],
        "epochs2": timing["epochs2"],
        "train_images": timing.get("train_images", budget(args)["train_images"]),
        "fid_images": evaluation["num_images"],
    }
    if made != budget(args):
        raise RecordError(
            f"The run in {evaluation.get('workdir')} does not match this "
            f"comparison ({_budget_differences(made, budget(args))}); delete its "
            "work directory (--out) to train it again."
        )
    os.makedirs(path, exist_ok=True)
    dropped = ("cache", "interpolations", "workdir")  # no machine-specific paths
    kept = {k: v for k, v in evaluation.items() if k not in dropped}
    write_json(os.path.join(path, "evaluation.json"), kept)
    curve = {
        "step": steps["step"].astype(np.int32),
        "gamma": steps["gamma"].astype(np.float32),
        "mse": steps["mse"].astype(np.float32),
    }
    np.savez_compressed(os.path.join(path, "steps.npz"), **curve)
    record = {
        "strategy": strategy,
        "seed": seed,
        "budget": budget(args),
        "finished_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
        "machine": common.describe_machine(),
        "timing": timing,
        "dynamics": dynamics,
        "cell": cell(evaluation, timing, dynamics),
    }
    write_json(os.path.join(path, "record.json"), record)
    return {**record, "steps": curve}


def all_records(args):
    """``{strategy: {seed: record}}`` of every record in ``--records``: the
    strategies of ``--strategies`` first, then any other recorded."""
    found = {}
    names = os.listdir(args.records) if os.path.isdir(args.records) else []
    for name in sorted(names):
        strategy, _, seed = name.rpartition("-seed")
        if not strategy or not seed.isdigit():
            continue
        path = os.path.join(args.records, name)
        record = read_record(path, strategy, int(seed), args)
        if record is not None:
            found.setdefault(strategy, {})[int(seed)] = record
    order = list(args.strategies) + sorted(set(found) - set(args.strategies))
    return {s: found[s] for s in order if s in found}


def cell(evaluation, timing, dynamics):
    """The metrics of one (strategy, seed) run, as METRICS names them."""
    values = {
        "fid_rec": evaluation["rec"]["fid"],
        "fid_gen1": evaluation["gen1"]["fid"],
        "fid_gen2": evaluation["gen2"]["fid"],
        "precision_gen2": evaluation["gen2"]["precision"],
        "recall_gen2": evaluation["gen2"]["recall"],
        "reconstruction_mse": evaluation["reconstruction_mse"],
        "train_cpu_seconds": timing.get("cpu_seconds"),
        "train_seconds": timing.get("seconds"),
        # Times the training was stopped and resumed (records of older
        # versions do not say: None).
        "train_stops": timing.get("stops"),
    }
    if dynamics:
        values["final_gamma2_over_mse"] = dynamics["final_gamma2_over_mse"]
        values["steps_to_balance"] = dynamics["steps_to_balance"]
    return {k: (None if v is None else float(v)) for k, v in values.items()}


def summarise_cells(cells):
    """``{strategy: {metric: summary}}`` and ``{"a-b": {metric: pair}}``.

    Args:
        cells: ``{strategy: {seed: {metric: value}}}``.
    """
    summaries = {}
    for strategy, by_seed in cells.items():
        summaries[strategy] = {}
        for key, *_ in METRICS:
            values = [c[key] for c in by_seed.values() if c.get(key) is not None]
            if values:
                summaries[strategy][key] = seed_statistics.summarise(values)
    pairs = {}
    for a, b in PAIRS:
        if a not in cells or b not in cells:
            continue
        pairs[f"{a}-{b}"] = {}
        for key, _, lower_is_better, _ in METRICS:
            first = {s: c[key] for s, c in cells[a].items() if c.get(key) is not None}
            second = {s: c[key] for s, c in cells[b].items() if c.get(key) is not None}
            if not set(first) & set(second):
                continue
            pair = seed_statistics.paired_difference(first, second)
            if lower_is_better is not None:
                pair["verdict"] = seed_statistics.verdict(pair, a, b, lower_is_better)
            pairs[f"{a}-{b}"][key] = pair
    return summaries, pairs


def _mean_std(summary, fmt):
    if summary is None:
        return "-"
    if summary["std"] is None:
        return f"{summary['mean']:{fmt}} (1 seed)"
    return f"{summary['mean']:{fmt}} +- {summary['std']:{fmt}}"


def _pair_row(name, label, pair, fmt):
    interval = pair["interval"]
    if interval is not None:
        interval = f"[{interval[0]:{fmt}}, {interval[1]:{fmt}}]"
    return [
        name,
        label,
        ", ".join(f"{d:{fmt}}" for d in pair["differences"]),
        f"{pair['mean']:{fmt}}",
        interval,
        f"{pair['sign_test_p']:.2g}",
        pair["verdict"],
    ]


def _made(report):
    """The report's first paragraph: where, when and how the runs were made."""
    made = "no runs recorded yet"
    if report["records_finished_utc"]:
        first, last = report["records_finished_utc"]
        machines = "; ".join(report["machines"])
        made = f"runs made on {machines}, finished {first} to {last} UTC"
    return (
        f"{made}; {report['epochs']} + {report['epochs2']} epochs "
        f"per run on {report['train_images']} training images; seeds "
        f"{', '.join(map(str, report['seeds']))} (a seed sets the initial "
        "weights, the data order and the noise: runs with the same seed form a "
        f"pair); evaluation on the first {report['fid_images']} test images "
        "against as many generated ones (standard FID Inception features; "
        "precision and recall with k = 3). Each run's record (evaluation, "
        f"training time, step log) is in `{report['records']}/<strategy>-seed"
        "<seed>/`. Missing cells: runs not recorded yet (rerun the command to "
        "continue)."
    )


def _tables(report):
    """The three tables: means, paired differences, every run."""
    labels = [label for _, label, *_ in METRICS]
    means = [
        [strategy, len(report["cells"].get(strategy, {}))]
        + [_mean_std(summary.get(key), fmt) for key, _, _, fmt in METRICS]
        for strategy, summary in report["summaries"].items()
    ]
    pairs = [
        _pair_row(name, label, by_metric[key], fmt)
        for name, by_metric in report["pairs"].items()
        for key, label, _, fmt in METRICS
        if "verdict" in by_metric.get(key, {})
    ]
    runs = [
        [strategy, seed]
        + [
            None if values.get(key) is None else f"{values[key]:{fmt}}"
            for key, _, _, fmt in METRICS
        ]
        for strategy, by_seed in report["cells"].items()
        for seed, values in sorted(by_seed.items(), key=lambda i: int(i[0]))
    ]
    pair_headers = ["pair", "metric", "per seed", "mean", "95% interval",
                    "sign test p", "verdict"]  # fmt: skip
    return (
        markdown_table(["strategy", "seeds", *labels], means),
        markdown_table(pair_headers, pairs),
        markdown_table(["strategy", "seed", *labels], runs),
    )


def report_lines(report):
    """The Markdown report."""
    means, pairs, runs = _tables(report)
    lines = [
        "# Balancing strategies over seeds (Fashion-MNIST)",
        "",
        f"Command: `{report['command']}`",
        "",
        _made(report),
        "",
        "## Mean +- standard deviation over seeds",
        "",
        means,
        "",
        "## Paired per-seed differences",
        "",
        "Difference a - b per seed, its mean, the 95% Student-t interval of the "
        "mean and the exact two-sided sign test (with 3 seeds its smallest "
        "p-value is 0.25).",
        "",
        pairs,
        "",
        "## Every run",
        "",
        runs,
    ]
    stopped = [
        f"{strategy}, seed {seed} ({values['train_stops']:.0f}x)"
        for strategy, by_seed in report["cells"].items()
        for seed, values in by_seed.items()
        if values.get("train_stops")
    ]
    if stopped:
        lines += [
            "",
            "Stopped and resumed from their checkpoints: "
            + "; ".join(stopped)
            + ". Their times add up the parts; the steps since the last "
            "checkpoint before a stop were made twice.",
        ]
    if report.get("curve"):
        lines += [
            "",
            f"![gamma^2 / batch MSE over seeds]({os.path.basename(report['curve'])})",
            "",
            "gamma^2 / batch MSE per stage-1 step (100-step moving averages), the "
            "mean over seeds (line) and their min-max (band); 1 = balanced.",
        ]
    return lines + [""]


def plot_ratio_bands(records, path, window=100):
    """gamma^2 / batch MSE per strategy: mean over seeds and min-max band.

    Args:
        records: ``{strategy: {seed: record}}`` (`read_record`).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    plotted = False
    kernel = np.ones(window) / window
    for strategy, by_seed in records.items():
        curves = []
        for record in by_seed.values():
            steps = record["steps"]
            if len(steps["mse"]) < window:
                continue
            ratio = steps["gamma"].astype(np.float64) ** 2 / steps["mse"]
            smooth = np.convolve(ratio, kernel, mode="valid")
            curves.append((steps["step"][window - 1 :], smooth))
        if not curves:
            continue
        plotted = True
        x, mean, low, high = seed_statistics.band(curves)
        (line,) = ax.plot(x, mean, label=f"{strategy} ({len(curves)} seeds)")
        ax.fill_between(x, low, high, color=line.get_color(), alpha=0.25)
    if not plotted:
        plt.close(fig)
        return None
    ax.set_yscale("log")
    ax.axhline(1.0, color="gray", lw=0.8)
    ax.set_xlabel("stage-1 step (batch 100)")
    ax.set_ylabel("gamma^2 / batch MSE")
    ax.set_title("fashion_mnist: balance over training, mean and min-max over seeds")
    ax.legend()
    return common.save_figure(fig, path)


def write_report(args, command):
    """The report (JSON, Markdown, PNG) of every record in ``--records``.

    Its content depends on the records alone (and the command): a rerun
    with nothing new writes the same files.
    """
    records = all_records(args)
    for strategy in args.strategies:
        records.setdefault(strategy, {})
    cells = {
        strategy: {seed: record["cell"] for seed, record in sorted(by_seed.items())}
        for strategy, by_seed in records.items()
    }
    summaries, pairs = summarise_cells(cells)
    curve = plot_ratio_bands(
        records, os.path.join(args.results, "compare_balancing_seeds.png")
    )
    done = [record for by_seed in records.values() for record in by_seed.values()]
    finished = sorted(record["finished_utc"] for record in done)
    report = {
        "command": command,
        "machines": sorted({record["machine"] for record in done}),
        "records_finished_utc": [finished[0], finished[-1]] if finished else None,
        **budget(args),
        "seeds": sorted(set(args.seeds) | {s for c in cells.values() for s in c}),
        "strategies": list(records),
        "records": os.path.relpath(args.records, args.results),
        "cells": cells,
        "summaries": summaries,
        "pairs": pairs,
        "curve": curve,
    }
    stem = os.path.join(args.results, "compare_balancing_seeds")
    common.write_report(stem, report, report_lines(report))
    return report


# --------------------------------------------------------------------- run
def run_seeds(args, command):
    """Trains and evaluates the (strategy, seed) runs without a record, seed
    by seed (a stopped comparison has whole pairs), rewriting the report
    after every new record; returns the report. ``--report-only``: the
    report of the records as they are, nothing trained."""
    os.makedirs(args.out, exist_ok=True)
    os.makedirs(args.results, exist_ok=True)
    runs = [(strategy, seed) for seed in args.seeds for strategy in args.strategies]
    missing = [
        (strategy, seed)
        for strategy, seed in runs
        if read_record(run_dir(args.records, strategy, seed), strategy, seed, args)
        is None
    ]
    print(
        f"{len(runs) - len(missing)} of {len(runs)} runs recorded in "
        f"{args.records}; to train and evaluate: "
        + (", ".join(f"{s}-seed{seed}" for s, seed in missing) or "none"),
        flush=True,
    )
    extractor = report = None
    for strategy, seed in [] if args.report_only else missing:
        workdir = run_dir(args.out, strategy, seed)
        timing = train_strategy(strategy, args, seed)
        steps = read_steps(workdir)
        if steps is None:
            raise FileNotFoundError(
                f"{workdir} has no stage-1 step log: delete the work directory "
                "to train the run again."
            )
        if extractor is None:
            from vae_balance.fid.inception import get_feature_extractor

            extractor = get_feature_extractor()
        print(f"[{strategy}, seed {seed}] evaluating {workdir}", flush=True)
        evaluation = evaluate_run(workdir, args, seed, extractor)
        dynamics = strategy_dynamics(strategy, steps)
        path = run_dir(args.records, strategy, seed)
        write_record(path, strategy, seed, args, evaluation, timing, steps, dynamics)
        report = write_report(args, command)
        print(f"[{strategy}, seed {seed}] recorded", flush=True)
    return report or write_report(args, command)


def main(argv=None):
    args = parse_args(argv)
    # The command that makes the runs and the report (--report-only only
    # rewrites it).
    argv = sys.argv[1:] if argv is None else argv
    kept = [a for a in argv if a != "--report-only"]
    report = run_seeds(args, common.command_line("compare_balancing.py", kept))
    print("\n".join(report_lines(report)))
    return report


if __name__ == "__main__":
    main()
