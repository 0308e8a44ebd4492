"""Balancing strategies head to head on Fashion-MNIST: same network, seed, budget.

Trains the `fashion_mnist` preset (both stages) once per strategy with
`vae_balance.training.job.train`, one work directory each under ``--out``
(rerun the same command to resume), then evaluates each run with
`vae_balance.evaluation.protocol.evaluate_workdir` on the first
``--fid-images`` test images (standard FID Inception features, cached per
run; the test images' once under ``--out/features``): REC / GEN-1 / GEN-2
FID, reconstruction MSE, KL, active latent variables and wall time. Writes
``compare_balancing.{json,md}`` and the curves ``compare_balancing_gamma.png``
(gamma^2 and the batch MSE over stage-1 steps, learned vs running) and
``compare_balancing_mse.png`` to ``--results``.

Strategies (`BalancedVAE` ``balance=``):

- ``running``: the paper (Asperti & Trentin): gamma^2 = running min-average
  of the batch MSE.
- ``learned``: Dai & Wipf: trainable log-gamma, initialised at 0.
- ``batch``: sigma-VAE: gamma^2 = this batch's MSE.
- ``fixed``: gamma = 1, KL weight 1: the plain VAE.
- ``beta``: gamma = 1, KL weight ``BETA`` (see below).

Full budget (the defaults: 12 + 24 epochs; on the project's 2-core CPU
machine about 75 min of training for the five runs, then about 30 min of FID
on 2,000 test images)::

    python benchmarks/compare_balancing.py

Several seeds, each (strategy, seed) run recorded on its own, with means,
standard deviations and paired per-seed differences (`balancing_seeds.py`)::

    python benchmarks/compare_balancing.py --seeds 0 1 2

Reduced budget (what fits in a short session)::

    python benchmarks/compare_balancing.py --epochs 1 --epochs2 2 \
        --fid-images 300

FID with N test images is biased upwards by roughly a constant / N: numbers
measured with different N are not comparable with each other, nor with
published 10,000-image FIDs.
"""

import argparse
import csv
import json
import os
import resource
import shlex
import sys
import time

import balancing_seeds as seeds
import common
import numpy as np
from common import markdown_table

from vae_balance.files import write_json
from vae_balance.workdir import Workdir

PRESET = "fashion_mnist"
# Fixed gamma = 1 with KL weight beta minimises, up to the factor 1 / beta,
# the same objective as gamma^2 = beta with KL weight 1. beta = 0.01 is thus
# the constant gamma^2 ~ the reconstruction MSE that the balanced runs reach
# on Fashion-MNIST (0.01-0.02): the constant one would pick by hand (not
# tuned further). The usual disentangling beta > 1 would only push further
# in the direction in which the plain VAE (beta = 1) already over-weights
# the KL.
BETA = 0.01
STRATEGIES = {
    "running": {"balance": "running"},
    "learned": {"balance": "learned"},
    "batch": {"balance": "batch"},
    "fixed": {"balance": "fixed", "gamma": 1.0, "kl_weight": 1.0},
    "beta": {"balance": "fixed", "gamma": 1.0, "kl_weight": BETA},
}
LABELS = {
    "running": "running (paper)",
    "learned": "learned (Dai & Wipf)",
    "batch": "batch (sigma-VAE)",
    "fixed": "fixed gamma=1 (plain VAE)",
    "beta": f"beta-VAE (gamma=1, beta={BETA:g})",
}
# The full budget, "as many epochs as fit in about two hours for all runs
# together on the 2-core machine", training and FID. Measured there (fused
# BatchNorm): a stage-1 epoch takes 51-55 s (86-92 ms per step) when the
# machine is not shared, a stage-2 epoch 6-11 s, and each job ~60 s of fixed
# costs (tracing, latents, grids, export): 5 x (12 x 53 + 24 x 7 + 60) s
# ~ 72 min. FID: 2,000 images per set through the Inception network at ~17
# images/s. The paper's 10,000 (--fid-images 10000) would take ~2.6 h of FID.
FULL_EPOCHS = 12
FULL_EPOCHS2 = 24
FULL_FID_IMAGES = 2000


def parse_args(argv=None):
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=FULL_EPOCHS)
    parser.add_argument("--epochs2", type=int, default=FULL_EPOCHS2)
    parser.add_argument(
        "--fid-images",
        type=int,
        help=f"test images N (default {FULL_FID_IMAGES}; with --seeds "
        f"{seeds.DEFAULT_FID_IMAGES})",
    )
    parser.add_argument(
        "--strategies",
        help=f"comma-separated subset of {','.join(STRATEGIES)} (default: all; "
        f"with --seeds {','.join(seeds.DEFAULT_STRATEGIES)})",
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
        help="with --seeds: one small directory per finished (strategy, seed) "
        "run (evaluation, timing, step log), the runs not to redo (default: "
        "RESULTS/compare_balancing_seeds)",
    )
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="with --seeds: rewrite the report from the records, train nothing",
    )
    parser.add_argument("--limit", type=int, help="first N training images only")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        help="several seeds: one run per (strategy, seed) in "
        "--out/<strategy>-seed<seed> (resumed where it stopped), skipped once "
        "recorded in --records, and a report with means, standard deviations "
        "and paired differences (benchmarks/balancing_seeds.py)",
    )
    parser.add_argument("--data-dir")
    args = parser.parse_args(argv)
    if args.strategies is None:
        args.strategies = ",".join(
            seeds.DEFAULT_STRATEGIES if args.seeds else STRATEGIES
        )
    if args.fid_images is None:
        args.fid_images = seeds.DEFAULT_FID_IMAGES if args.seeds else FULL_FID_IMAGES
    if args.records is None:
        args.records = os.path.join(args.results, "compare_balancing_seeds")
    if args.seeds and len(set(args.seeds)) != len(args.seeds):
        parser.error(f"--seeds repeats a seed: {args.seeds}")
    args.strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    unknown = sorted(set(args.strategies) - set(STRATEGIES))
    if unknown:
        parser.error(f"unknown strategies {unknown}; valid: {list(STRATEGIES)}")
    return args


def config_for(strategy, args, seed=None):
    """The preset with the strategy's balancing and the benchmark's budget.

    The learning-rate schedule keeps the preset's shape (halved at the same
    fractions of the run) whatever the number of epochs.
    """
    from vae_balance.config import get_preset

    base = get_preset(PRESET)
    return get_preset(
        base,
        seed=args.seed if seed is None else seed,
        epochs=args.epochs,
        epochs2=args.epochs2,
        lr_epochs=max(1, round(args.epochs * base.lr_epochs / base.epochs)),
        lr_epochs2=max(1, round(args.epochs2 * base.lr_epochs2 / base.epochs2)),
        **STRATEGIES[strategy],
    )


# ------------------------------------------------- training and evaluation
def train_strategy(strategy, args, seed=None, workdir=None):
    """Trains (or resumes) one strategy; returns its cumulative wall time.

    ``seed`` and ``workdir`` default to ``--seed`` and ``--out/<strategy>``.
    """
    from vae_balance.training import job as training

    workdir = workdir or os.path.join(args.out, strategy)
    label = strategy if seed is None else f"{strategy}, seed {seed}"
    os.makedirs(workdir, exist_ok=True)
    timing_path = os.path.join(workdir, "benchmark_timing.json")
    train_images = args.limit or 60000
    timing = {"seconds": 0.0, "cpu_seconds": 0.0, "epochs": 0, "epochs2": 0}
    if os.path.exists(timing_path):
        with open(timing_path) as f:
            timing = json.load(f)
    if timing.get("train_images", train_images) != train_images:
        raise ValueError(
            f"{workdir} was trained on {timing['train_images']} images, this "
            f"comparison asks for {train_images} (--limit): pass another --out, "
            "or delete that work directory to train it again."
        )
    done = os.path.exists(Workdir(workdir).stage_path("stage2"))
    if done and (timing["epochs"], timing["epochs2"]) == (args.epochs, args.epochs2):
        print(f"[{label}] already trained ({timing['seconds']:.0f} s)")
        return timing
    print(f"[{label}] training {args.epochs} + {args.epochs2} epochs -> {workdir}")
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
        # Stopped (SIGTERM, Ctrl-C, an error): the time spent so far is kept
        # and the resumed run adds its own. Only a hard kill (SIGKILL, power
        # loss) loses the time of the part it interrupted.
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
    images: REC, GEN-1, GEN-2 (and GEN-2 adjusted); features and scores
    cached in the run, the test images' shared under ``--out/features``."""
    from vae_balance.evaluation.protocol import evaluate_workdir

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


def _feature_extractor():
    from vae_balance.fid.inception import get_feature_extractor

    return get_feature_extractor()


# ----------------------------------------------------------------- curves
def _read_log(path, keys):
    """Columns ``keys`` of a work directory's CSV log as float lists, or None."""
    if not os.path.exists(path):
        return None
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return {key: [float(row[key]) for row in rows if row.get(key)] for key in keys}


def read_steps(workdir):
    """Per-step stage-1 log (steps_stage1.csv) as arrays."""
    log = _read_log(
        Workdir(workdir).steps_csv("stage1"), ("step", "mse", "gamma", "running_mse")
    )
    return None if log is None else {k: np.array(v) for k, v in log.items()}


def read_history(workdir):
    """Per-epoch stage-1 training and held-out MSE (history_stage1.csv)."""
    return _read_log(Workdir(workdir).history_csv("stage1"), ("mse", "val_mse"))


def strategy_dynamics(strategy, steps):
    """`balancing_seeds.balance_dynamics` of a balancing strategy; None for
    a fixed gamma."""
    if STRATEGIES[strategy]["balance"] == "fixed":
        return None
    return seeds.balance_dynamics(steps)


def _figure(**kwargs):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(**kwargs)


def plot_mse(args, path):
    """Held-out reconstruction MSE after every stage-1 epoch, all strategies."""
    histories = {s: read_history(os.path.join(args.out, s)) for s in args.strategies}
    histories = {s: h for s, h in histories.items() if h and h["val_mse"]}
    if not histories:
        return None
    fig, ax = _figure(figsize=(8, 4.5))
    for strategy, history in histories.items():
        epochs = np.arange(1, len(history["val_mse"]) + 1)
        ax.plot(epochs, history["val_mse"], marker="o", ms=3, label=LABELS[strategy])
    ax.set_yscale("log")
    ax.set_xlabel("stage-1 epoch (600 steps)")
    ax.set_ylabel("held-out MSE (test images)")
    ax.set_title(f"{PRESET}: reconstruction error per epoch, seed {args.seed}")
    ax.legend()
    return common.save_figure(fig, path)


def plot_gamma(args, path):
    """gamma^2 and the batch MSE over stage-1 steps, learned vs running."""
    logs = {s: read_steps(os.path.join(args.out, s)) for s in ("running", "learned")}
    logs = {s: steps for s, steps in logs.items() if steps is not None}
    if not logs:
        return None
    fig, (top, bottom) = _figure(
        nrows=2, figsize=(8, 7), sharex=True, gridspec_kw={"height_ratios": [2, 1]}
    )
    for strategy, steps in logs.items():
        color = {"running": "tab:blue", "learned": "tab:red"}[strategy]
        gamma_squared = steps["gamma"] ** 2
        top.plot(steps["step"], steps["mse"], color=color, alpha=0.3, lw=0.8)
        label = f"{strategy}: gamma^2"
        top.plot(steps["step"], gamma_squared, color=color, lw=2, label=label)
        top.plot([], [], color=color, alpha=0.3, label=f"{strategy}: batch MSE")
        bottom.plot(steps["step"], gamma_squared / steps["mse"], color=color)
    top.set_yscale("log")
    top.set_ylabel("value ([0, 1] pixels)")
    top.set_title(
        f"{PRESET}: decoder variance vs reconstruction error, stage 1 "
        f"({args.epochs} epoch(s), seed {args.seed})"
    )
    top.legend()
    bottom.set_yscale("log")
    bottom.axhline(1.0, color="gray", lw=0.8)
    bottom.set_ylabel("gamma^2 / batch MSE")
    bottom.set_xlabel("step (batch 100)")
    return common.save_figure(fig, path)


# ------------------------------------------------------ one-seed report
def strategy_row(strategy, evaluation, steps):
    """The report's entry of one evaluated run (`evaluate_workdir` results)."""
    stage1 = evaluation["stage1"]
    latent_dim = stage1["latent_dim"]
    return {
        "strategy": strategy,
        "fid": {name: evaluation["fid"][name] for name in ("rec", "gen1", "gen2")},
        "reconstruction_mse": evaluation["reconstruction_mse"],
        "kl": stage1["kl"],
        "latent_dim": latent_dim,
        "active_var_mean": latent_dim - stage1["inactive_var_mean"],
        "active_mean_sigma": latent_dim - stage1["inactive_mean_sigma"],
        "variance_law": stage1["variance_law"],
        # The decoder's gamma and running MSE at the last stage-1 step.
        "final_gamma": float(steps["gamma"][-1]) if steps else None,
        "final_running_mse": float(steps["running_mse"][-1]) if steps else None,
        "eval_seconds": evaluation.get("seconds"),
    }


def _cells(entry):
    fid = entry.get("fid")
    cells = [f"{fid[k]:.1f}" for k in ("rec", "gen1", "gen2")] if fid else [None] * 3
    if "reconstruction_mse" in entry:
        cells += [
            f"{entry['reconstruction_mse']:.4f}",
            f"{entry['kl']:.1f}",
            f"{entry['active_var_mean']} / {entry['active_mean_sigma']} of "
            f"{entry['latent_dim']}",
            None if entry["final_gamma"] is None else f"{entry['final_gamma']:.3f}",
        ]
    else:
        cells += [None] * 4
    return cells + [
        f"{entry['train_seconds']:.0f} s",
        f"{entry.get('time_ratio_to_running', float('nan')):.2f}",
        f"{entry['train_cpu_seconds']:.0f} s",
        f"{entry['train_cpu_seconds'] / max(entry['train_seconds'], 1e-9):.2f}",
    ]


def write_report(args, rows, timings, command, curve, started):
    """``compare_balancing.{json,md}`` of the runs trained (and evaluated)."""
    full = (args.epochs, args.epochs2, args.fid_images, args.limit) == (
        FULL_EPOCHS,
        FULL_EPOCHS2,
        FULL_FID_IMAGES,
        None,
    )
    reference = timings.get("running", {}).get("seconds")
    report = {
        "command": command,
        "budget": "full" if full else "reduced",
        "preset": PRESET,
        "epochs": args.epochs,
        "epochs2": args.epochs2,
        "train_images": args.limit or 60000,
        "fid_images": args.fid_images,
        "fid_network": "fid_inception (2015-12-05 graph, converted weights)",
        "seed": args.seed,
        "beta": BETA,
        "machine": common.describe_machine(),
        "python": sys.version.split()[0],
        "started_utc": started,
        "finished_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
        "strategies": {},
    }
    for strategy, timing in timings.items():
        workdir = os.path.join(args.out, strategy)
        entry = {
            "label": LABELS[strategy],
            "train_seconds": round(timing["seconds"], 1),
            "train_cpu_seconds": round(timing.get("cpu_seconds", 0.0), 1),
        }
        if reference:
            entry["time_ratio_to_running"] = round(timing["seconds"] / reference, 3)
        entry.update(strategy_dynamics(strategy, read_steps(workdir)) or {})
        history = read_history(workdir)
        if history:
            entry["val_mse_per_epoch"] = [round(v, 6) for v in history["val_mse"]]
        entry.update(rows.get(strategy, {}))
        report["strategies"][strategy] = entry
    images = args.limit or 60000
    if full:
        budget = (
            f"Budget: the full one, the script's defaults: {args.epochs} stage-1 "
            f"+ {args.epochs2} stage-2 epochs on all 60,000 training images "
            f"({args.epochs * 600} stage-1 steps), FID on the first "
            f"{args.fid_images} test images (10,000, the paper's protocol, "
            "would take ~2.6 h of Inception alone on this CPU: "
            "`--fid-images 10000`, or a GPU)."
        )
    else:
        budget = (
            f"**Reduced budget**: {args.epochs} stage-1 + {args.epochs2} stage-2 "
            f"epoch(s) on {images} training images, FID on {args.fid_images} "
            "test images. The full budget is the default command, `python "
            f"benchmarks/compare_balancing.py` ({FULL_EPOCHS} + {FULL_EPOCHS2} "
            "epochs on all 60,000 images, about 75 min of training for the five "
            "runs on the 2-core machine when it is not shared, then FID on "
            f"{FULL_FID_IMAGES} test images, about 30 min more). These reduced "
            f"runs cover the first {args.epochs * images // 100} stage-1 steps "
            "only: read them as such."
        )
    lines = [
        "# Balancing strategies on Fashion-MNIST",
        "",
        f"Command: `{command}`",
        "",
        budget,
        "",
        f"Preset `{PRESET}` (the same network, seed {args.seed} and schedule for "
        "every strategy; learning rate halved at the preset's fractions of the "
        "run). Evaluation: `vae_balance.evaluation.protocol.evaluate_workdir`; "
        "FID with the standard 2015-12-05 Inception network on the first "
        f"{args.fid_images} test images (28x28, padding cropped), generated sets "
        f"of the same size; with N = {args.fid_images} every FID is biased "
        "upwards, so compare the rows with each other, not with published "
        "10,000-image numbers. MSE, KL and active latents are measured on the "
        "same test images (KL: summed over latents, mean over images; active: "
        "Var(mu_j) >= 0.01, and mean sigma_j <= 0.8 as in the reference code); "
        "final gamma: the decoder's at the last stage-1 step. Times: wall clock "
        f"of the whole two-stage job ({report['machine']}), as ratios to "
        "`running` measured in this one run, and the job's CPU time (all "
        "threads), which other processes sharing the cores affect far less "
        "than the wall clock; cores = CPU / wall. Every job does the same work "
        "per step (learned: one more scalar), so time differences come from "
        "the machine's changing load, not from the strategy. The strategy is "
        "used by both stages; stage 2 always has KL weight 1, so `fixed` and "
        "`beta` share their stage-2 objective.",
        "",
        markdown_table(
            ["strategy", "REC FID", "GEN-1 FID", "GEN-2 FID", "rec. MSE", "KL",
             "active (Var mu / sigma)", "final gamma", "train time",
             "time ratio", "CPU time", "cores"],
            [[e["label"], *_cells(e)] for e in report["strategies"].values()],
        ),
        "",
        f"beta = {BETA:g}: fixed gamma = 1 with KL weight beta minimises the "
        "same objective (up to the factor 1/beta) as gamma^2 = beta with KL "
        "weight 1, so beta = 0.01 is the constant gamma^2 one would pick by "
        "hand, close to the MSE the balanced runs reach (not tuned further); "
        "the disentangling beta > 1 would only push further towards the "
        "KL-dominated plain VAE.",
        "",
        *dynamics_lines(report, args),
    ]  # fmt: skip
    if curve:
        lines += [
            f"![gamma^2 and batch MSE, learned vs running]({os.path.basename(curve)})",
            "",
            "gamma^2 (thick) and the batch MSE (thin) per stage-1 step; below, "
            "their ratio (1: balanced). running: gamma^2 starts at 1 and moves "
            "at most 1% of the way to the batch MSE per step (a time constant "
            "of 100 steps), then follows it from above. learned: log-gamma "
            "starts at 0 and moves by Adam steps of the learning rate, so "
            "gamma^2 lags the MSE by far more; meanwhile the KL is "
            "over-weighted by the ratio shown below.",
            "",
        ]
    stem = os.path.join(args.results, "compare_balancing")
    common.write_report(stem, report, lines)
    return report


def dynamics_lines(report, args):
    """Markdown: how fast each strategy balances, and its MSE per epoch."""
    entries = report["strategies"]
    if not any("val_mse_per_epoch" in e for e in entries.values()):
        return []
    epochs = max(len(e.get("val_mse_per_epoch", [])) for e in entries.values())
    shown = sorted({1, min(3, epochs), (epochs + 1) // 2, epochs})
    rows = []
    for entry in entries.values():
        mse = entry.get("val_mse_per_epoch", [])
        steps = entry.get("steps_to_balance", "-")
        ratio = entry.get("final_gamma2_over_mse")
        rows.append(
            [
                entry["label"],
                "never" if "steps_to_balance" in entry and steps is None else steps,
                None if ratio is None else f"{ratio:.2f}",
            ]
            + [f"{mse[e - 1]:.4f}" if e <= len(mse) else None for e in shown]
        )
    lines = [
        "### How fast: balancing and reconstruction error over training",
        "",
        "Steps until gamma^2 first comes within 2x of the batch MSE (100-step "
        "moving average, so step 100 is the first measured), the median "
        "gamma^2 / batch MSE over the last 600 steps (1: balanced; "
        "fixed-gamma strategies have none), and the held-out MSE (test images, "
        "after each stage-1 epoch) at epochs " + ", ".join(str(e) for e in shown) + ".",
        "",
        markdown_table(
            ["strategy", "steps to gamma^2 <= 2x MSE", "final gamma^2 / MSE"]
            + [f"MSE ep. {e}" for e in shown],
            rows,
        ),
        "",
    ]
    if os.path.exists(os.path.join(args.results, "compare_balancing_mse.png")):
        lines += ["![held-out MSE per epoch](compare_balancing_mse.png)", ""]
    return lines


def run_one_seed(args, command):
    """Trains every strategy (``--seed``), then evaluates them; the report is
    written after training and after every evaluation."""
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
    os.makedirs(args.out, exist_ok=True)
    os.makedirs(args.results, exist_ok=True)
    timings = {s: train_strategy(s, args) for s in args.strategies}
    curve = plot_gamma(args, os.path.join(args.results, "compare_balancing_gamma.png"))
    plot_mse(args, os.path.join(args.results, "compare_balancing_mse.png"))
    rows = {}
    report = write_report(args, rows, timings, command, curve, started)
    extractor = _feature_extractor()
    for strategy in args.strategies:
        workdir = os.path.join(args.out, strategy)
        evaluation = evaluate_run(workdir, args, args.seed, extractor)
        rows[strategy] = strategy_row(strategy, evaluation, read_steps(workdir))
        print(f"[{strategy}] FID {rows[strategy]['fid']}", flush=True)
        report = write_report(args, rows, timings, command, curve, started)
    return report


# ----------------------------------------------------------------- seeds
def run_seeds(args, command):
    """Trains and evaluates the (strategy, seed) runs without a record, then
    reports (`balancing_seeds`); returns the report.

    Seed by seed (a stopped comparison has whole pairs); the report is
    rewritten after every new record. ``--report-only``: the report of the
    records as they are, nothing trained.
    """
    os.makedirs(args.out, exist_ok=True)
    os.makedirs(args.results, exist_ok=True)
    runs = [(strategy, seed) for seed in args.seeds for strategy in args.strategies]
    missing = [
        (strategy, seed)
        for strategy, seed in runs
        if seeds.read_record(
            seeds.run_dir(args.records, strategy, seed), strategy, seed, args
        )
        is None
    ]
    print(
        f"{len(runs) - len(missing)} of {len(runs)} runs recorded in "
        f"{args.records}; to train and evaluate: "
        + (", ".join(f"{s}-seed{seed}" for s, seed in missing) or "none"),
        flush=True,
    )
    if args.report_only:
        missing = []
    extractor = None
    report = None
    for strategy, seed in missing:
        workdir = seeds.run_dir(args.out, strategy, seed)
        timing = train_strategy(strategy, args, seed=seed, workdir=workdir)
        steps = read_steps(workdir)
        if steps is None:
            raise FileNotFoundError(
                f"{workdir} has no stage-1 step log: delete the work directory "
                "to train the run again."
            )
        extractor = extractor or _feature_extractor()
        print(f"[{strategy}, seed {seed}] evaluating {workdir}", flush=True)
        evaluation = evaluate_run(workdir, args, seed, extractor)
        seeds.write_record(
            seeds.run_dir(args.records, strategy, seed),
            strategy,
            seed,
            args,
            evaluation,
            timing,
            steps,
            strategy_dynamics(strategy, steps),
        )
        report = seeds.write_report(args, command)
        print(f"[{strategy}, seed {seed}] recorded", flush=True)
    return report or seeds.write_report(args, command)


def main(argv=None):
    args = parse_args(argv)
    # The command that makes the runs and the report (--report-only only
    # rewrites it).
    command = shlex.join(
        ["python", "benchmarks/compare_balancing.py"]
        + [a for a in (sys.argv[1:] if argv is None else argv) if a != "--report-only"]
    )
    if args.seeds:
        report = run_seeds(args, command)
        print("\n".join(seeds.report_lines(report)))
        return report
    report = run_one_seed(args, command)
    with open(os.path.join(args.results, "compare_balancing.md")) as f:
        print(f.read())
    return report


if __name__ == "__main__":
    main()
