"""Balancing strategies head to head on Fashion-MNIST, over seeds.

Each (strategy, seed) run trains the `fashion_mnist` preset in
``--out/<strategy>-seed<seed>`` (resumed where it stopped), is evaluated by
`vae_balance.evaluation.evaluate_workdir` and leaves a committed record in
``--records/<strategy>-seed<seed>/`` (``record.json`` written last); a
recorded run is not made again. After each record, the report
``compare_balancing_seeds.{json,md,png}`` is rewritten from the records alone.

    python benchmarks/compare_balancing.py    # seeds 0 1 2, running,learned,batch
    python benchmarks/compare_balancing.py --report-only    # train nothing

The strategies, the statistics, run times: docs/benchmarks.md.
"""

import argparse
import csv
import os
import resource
import sys
import time

import balancing_report
import common
import numpy as np

from vae_balance.config import get_preset
from vae_balance.evaluation import evaluate_workdir
from vae_balance.fid import inception
from vae_balance.files import write_json
from vae_balance.training import job as training
from vae_balance.workdir import Workdir

PRESET = "fashion_mnist"
BETA = 0.01  # ~ the MSE the balanced runs reach: docs/benchmarks.md says why
STRATEGIES = {
    "running": {"balance": "running"},
    "learned": {"balance": "learned"},
    "batch": {"balance": "batch"},
    "fixed": {"balance": "fixed", "gamma": 1.0, "kl_weight": 1.0},
    "beta": {"balance": "fixed", "gamma": 1.0, "kl_weight": BETA},
}
DEFAULT_STRATEGIES = ("running", "learned", "batch")


def parse_args(argv=None):
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add = parser.add_argument
    add("--epochs", type=int, default=12, help="stage 1 (the full budget: 12)")
    add("--epochs2", type=int, default=24, help="stage 2 (the full budget: 24)")
    add("--fid-images", type=int, default=5000)
    add("--strategies", default=",".join(DEFAULT_STRATEGIES), help=",".join(STRATEGIES))
    add("--seeds", type=int, nargs="+", default=[0, 1, 2], help="one seed: --seeds 0")
    add("--out", default=os.path.join("runs", "compare_balancing"), help="work dirs")
    add("--results", default=os.path.join(here, "results"), help="the report")
    add("--records", help="default: RESULTS/compare_balancing_seeds")
    add("--report-only", action="store_true", help="rewrite the report only")
    add("--limit", type=int, help="first N training images only")
    add("--data-dir")
    args = parser.parse_args(argv)
    if args.records is None:
        args.records = os.path.join(args.results, "compare_balancing_seeds")
    if len(set(args.seeds)) != len(args.seeds):
        parser.error(f"--seeds repeats a seed: {args.seeds}")
    args.strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    unknown = sorted(set(args.strategies) - set(STRATEGIES))
    if unknown:
        parser.error(f"unknown strategies {unknown}; valid: {list(STRATEGIES)}")
    return args  # fmt: skip


def config_for(strategy, args, seed):
    """The preset with the strategy's balancing and the benchmark's budget;
    the learning rate is halved at the preset's fractions of the run."""
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
def train_strategy(strategy, args, seed):
    """Trains (or resumes) ``--out/<strategy>-seed<seed>``; returns its
    cumulative timing (wall and CPU seconds, epochs, stops)."""
    workdir = run_dir(args.out, strategy, seed)
    os.makedirs(workdir, exist_ok=True)
    timing_path = os.path.join(workdir, "benchmark_timing.json")
    train_images = args.limit or 60000
    timing = {"seconds": 0.0, "cpu_seconds": 0.0, "epochs": 0, "epochs2": 0}
    if os.path.exists(timing_path):
        timing = common.read_json(timing_path)
    if timing.get("train_images", train_images) != train_images:
        raise ValueError(
            f"{workdir} was trained on {timing['train_images']} images, this "
            f"comparison asks for {train_images} (--limit): pass another --out, "
            "or delete that work directory to train it again."
        )
    done = os.path.exists(Workdir(workdir).stage_path("stage2"))
    if done and (timing["epochs"], timing["epochs2"]) == (args.epochs, args.epochs2):
        print(f"[{strategy}, seed {seed}] already trained ({timing['seconds']:.0f} s)")
        return timing
    print(f"[{strategy}, seed {seed}] training {args.epochs} + {args.epochs2} epochs")
    start, cpu_start, stops = time.time(), _cpu_seconds(), timing.get("stops", 0)

    def spent(epochs, epochs2, stops):
        cpu = timing.get("cpu_seconds", 0.0) + _cpu_seconds() - cpu_start
        seconds = timing["seconds"] + time.time() - start
        return dict(seconds=seconds, cpu_seconds=cpu, epochs=epochs, epochs2=epochs2,
                    train_images=train_images, stops=stops)  # fmt: skip

    try:
        training.train(
            config_for(strategy, args, seed), workdir, data_dir=args.data_dir,
            limit=args.limit, verbose=2, grid_every=max(args.epochs, args.epochs2),
        )  # fmt: skip
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
    """`evaluate_workdir` on the first ``--fid-images`` test images (no
    mixture, likelihood or interpolations), their features shared."""
    return evaluate_workdir(
        workdir, num_images=args.fid_images, data_dir=args.data_dir,
        feature_extractor=extractor, seed=seed, verbose=0, gmm_components=0,
        nll_images=0, interpolation_pairs=0,
        shared_feature_cache=os.path.join(args.out, "features"),
    )  # fmt: skip


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
    """How fast gamma^2 reaches the reconstruction error, from the step log:
    the first step at which gamma^2 <= ``factor`` x the ``window``-step moving
    average of the batch MSE (None: never), and the median of gamma^2 / batch
    MSE over the last ``tail`` steps."""
    if steps is None or len(steps["mse"]) < window:
        return None
    average = np.convolve(steps["mse"], np.ones(window) / window, mode="valid")
    within = np.nonzero(steps["gamma"][window - 1 :] ** 2 <= factor * average)[0]
    ratio = steps["gamma"] ** 2 / steps["mse"]
    first = int(steps["step"][window - 1 + within[0]]) if len(within) else None
    return {
        "balance_factor": factor,
        "steps_to_balance": first,
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
    asked = {"epochs": args.epochs, "epochs2": args.epochs2}
    return {**asked, "train_images": args.limit or 60000, "fid_images": args.fid_images}


class RecordError(ValueError):
    """A record that cannot stand for the run asked for."""


def check_budget(made, args, what, remedy):
    """RecordError, naming what differs, when ``made`` is not this budget."""
    asked = budget(args).items()
    found = [
        f"{k}: record {made.get(k)}, asked {v}" for k, v in asked if made.get(k) != v
    ]
    if found:
        raise RecordError(f"{what} ({', '.join(found)}); {remedy}")


def read_record(path, strategy, seed, args):
    """The record of (``strategy``, ``seed``) in ``path``; None without
    ``record.json`` (unfinished: the run is made again). RecordError for a
    record unreadable, incomplete, of another run or of another budget."""
    record_path = os.path.join(path, "record.json")
    if not os.path.exists(record_path):
        return None
    try:
        record = common.read_json(record_path)
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
    remedy = "pass --records (or --results) and --out for it, or delete it"
    check_budget(made, args, f"{record_path} was made with another budget", remedy)
    return record


def write_record(path, strategy, seed, args, evaluation, timing, steps, dynamics):
    """Writes a finished run's record, ``record.json`` last; returns it.
    RecordError, writing nothing, for a run of another budget."""
    made = {key: timing.get(key) for key in ("epochs", "epochs2", "train_images")}
    made["train_images"] = made["train_images"] or budget(args)["train_images"]
    made["fid_images"] = evaluation["num_images"]
    what = f"The run in {evaluation.get('workdir')} does not match this comparison"
    check_budget(made, args, what, "delete its --out to train it again")
    os.makedirs(path, exist_ok=True)
    dropped = ("cache", "interpolations", "workdir")  # no machine-specific paths
    kept = {k: v for k, v in evaluation.items() if k not in dropped}
    write_json(os.path.join(path, "evaluation.json"), kept)
    curve = {"step": steps["step"].astype(np.int32)}
    curve.update({k: steps[k].astype(np.float32) for k in ("gamma", "mse")})
    np.savez_compressed(os.path.join(path, "steps.npz"), **curve)
    record = {
        "strategy": strategy, "seed": seed, "budget": budget(args),
        "finished_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
        "machine": common.describe_machine(), "timing": timing,
        "dynamics": dynamics,
        "cell": balancing_report.cell(evaluation, timing, dynamics),
    }  # fmt: skip
    write_json(os.path.join(path, "record.json"), record)
    return {**record, "steps": curve}


def all_records(args):
    """``{strategy: {seed: record}}`` of every record in ``--records``: the
    strategies of ``--strategies`` first, then any other recorded."""
    found = {}
    names = os.listdir(args.records) if os.path.isdir(args.records) else []
    for name in sorted(names):
        strategy, _, seed = name.rpartition("-seed")
        if strategy and seed.isdigit():
            record = read_record(
                run_dir(args.records, strategy, seed), strategy, int(seed), args
            )
            if record is not None:
                found.setdefault(strategy, {})[int(seed)] = record
    order = list(args.strategies) + sorted(set(found) - set(args.strategies))
    return {s: found[s] for s in order if s in found}  # fmt: skip


def write_report(args, command):
    """The report (JSON, Markdown, PNG) of the records in ``--records``
    alone (and the command): nothing new, the same files."""
    records = all_records(args)
    for strategy in args.strategies:
        records.setdefault(strategy, {})
    cells = {
        strategy: {seed: record["cell"] for seed, record in sorted(by_seed.items())}
        for strategy, by_seed in records.items()
    }
    summaries, pairs = balancing_report.summarise_cells(cells)
    curve = balancing_report.plot_ratio_bands(
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
        "cells": cells, "summaries": summaries, "pairs": pairs, "curve": curve,
    }  # fmt: skip
    stem = os.path.join(args.results, "compare_balancing_seeds")
    common.write_report(stem, report, balancing_report.report_lines(report))
    return report


# --------------------------------------------------------------------- run
def run_seeds(args, command):
    """Makes the runs without a record, seed by seed (a stopped comparison
    has whole pairs), rewriting the report after each; returns the report."""
    os.makedirs(args.out, exist_ok=True)
    os.makedirs(args.results, exist_ok=True)
    runs = [(strategy, seed) for seed in args.seeds for strategy in args.strategies]
    missing = [
        (strategy, seed)
        for strategy, seed in runs
        if read_record(run_dir(args.records, strategy, seed), strategy, seed, args)
        is None
    ]
    todo = ", ".join(f"{s}-seed{seed}" for s, seed in missing) or "none"
    print(f"{len(runs) - len(missing)} of {len(runs)} runs recorded in "
          f"{args.records}; to train and evaluate: {todo}", flush=True)  # fmt: skip
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
            extractor = inception.get_feature_extractor()
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
    # The command that makes the runs and the report (not --report-only).
    argv = sys.argv[1:] if argv is None else argv
    kept = [a for a in argv if a != "--report-only"]
    report = run_seeds(args, common.command_line("compare_balancing.py", kept))
    print("\n".join(balancing_report.report_lines(report)))
    return report


if __name__ == "__main__":
    main()
