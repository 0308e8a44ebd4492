"""The benchmark scripts' own arithmetic (the runs themselves are not tests)."""

import importlib
import importlib.util
import json
import os
import shutil
import sys

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
BENCHMARKS = os.path.join(HERE, os.pardir, "benchmarks")
sys.path.insert(0, BENCHMARKS)  # the scripts import their sibling `common`


def _load(name):
    path = os.path.join(BENCHMARKS, f"{name}.py")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_balance_dynamics_of_the_running_rule_with_a_constant_mse():
    compare = _load("compare_balancing")
    steps = np.arange(1, 1001)
    m, gamma = 1.0, []
    for _ in steps:  # gamma of step t comes from m after step t - 1
        gamma.append(np.sqrt(m))
        m = min(m, 0.99 * m + 0.01 * 0.01)
    log = {"step": steps, "mse": np.full(1000, 0.01), "gamma": np.array(gamma)}
    result = compare.balance_dynamics(log)
    # At step k, gamma^2 = 0.01 + 0.99 ** k  <=  2 x 0.01  from k = 459 on.
    assert result["steps_to_balance"] == 459
    expected = np.median((0.01 + 0.99 ** np.arange(401, 1001)) / 0.01)
    assert result["final_gamma2_over_mse"] == pytest.approx(expected, rel=1e-6)


def test_balance_dynamics_of_a_gamma_that_never_balances():
    compare = _load("compare_balancing")
    log = {
        "step": np.arange(1, 301),
        "mse": np.full(300, 0.01),
        "gamma": np.ones(300),
    }
    result = compare.balance_dynamics(log)
    assert result["steps_to_balance"] is None
    assert result["final_gamma2_over_mse"] == pytest.approx(100.0)
    assert compare.balance_dynamics({**log, "mse": np.ones(50)}) is None


def _row(preset, label, speed, framework="tensorflow"):
    return {
        "preset": preset,
        "config": label,
        "framework": framework,
        "parameters": 405139,
        "images_per_second": speed,
        "train_gflop_per_image": 0.1,
        "baseline_rss_mib": 500.0,
        "peak_rss_mib": 900.0,
    }


def test_peer_ratios_and_report(tmp_path):
    throughput = _load("throughput")
    runs = {
        throughput.DEFAULT: [_row("p", throughput.DEFAULT, s) for s in (100, 300)],
        throughput.EAGER: [_row("p", throughput.EAGER, s, "torch") for s in (50, 100)],
    }
    rows = throughput.summarise_rounds(runs)
    assert rows[0]["speed_up"] == 1.0 and rows[0]["images_per_second"] == 200.0
    assert rows[1]["speed_up"] == pytest.approx((0.5 + 1 / 3) / 2)  # per round
    assert rows[1]["images_per_second_rounds"] == [50.0, 100.0]
    check = {
        "parameters": {"trainable": 404433, "total": 405139},
        "forward_max_abs_difference": {"inference": {"z_mean": 1e-6}},
    }
    peer = throughput.summarise_peer(runs, check)
    assert peer["package_over_eager_rounds"] == [2.0, 3.0]
    assert peer["package_over_eager"] == 2.5
    assert "package_over_bfloat16_over_eager" not in peer  # not timed
    report = {
        "command": "python benchmarks/throughput.py --quick",
        "machine": "x86_64, 2 CPU cores, no GPU",
        "tensorflow": "2.21",
        "keras": "3.15",
        "started_utc": "start",
        "finished_utc": "end",
        "load_average": [1.0, 1.0],
        "matmul": {"peak_gflops": 100.0, "size": 2048, "repeats": 2},
        "repeats": {"p": 2},
        "steps": {"p": (1, 2)},
        "batch_size": 100,
        "train": rows,
        "peer": {"available": True, "torch": "2.x", "threads": 2},
        "note": "idle",
    }
    report["matmul"]["all_peak_gflops"] = [100.0]
    report["peer"]["presets"] = {"p": peer}
    throughput.write_report(report, str(tmp_path))
    text = (tmp_path / "throughput.md").read_text()
    assert json.loads((tmp_path / "throughput.json").read_text())["train"] == rows
    assert (
        "end UTC; 1-minute load average 1.00 at the start, 1.00 at the end. idle"
        in text
    )
    # 200 images/s x 0.1 GFLOP = 20 GFLOP/s, 20% of the 100 GFLOP/s peak
    assert (
        "| p | 0.41M | default: fused BN | 200.0 (100, 300) | 0.50 | 1.00x | 0.100 | "
        "20.0 | 20% | 900 MiB |"
    ) in text
    assert "| p | 0.41M | PyTorch eager | 75.0 (50, 100) | 1.33 | 0.42x |" in text
    assert "| p | 404,433 / 405,139 | 1.0e-06 | 2.50x (2.00x, 3.00x) | - | - |" in text


def test_bfloat16_peer_ratios_pair_the_packages_bfloat16_with_pytorchs():
    throughput = _load("throughput")
    runs = {
        throughput.DEFAULT: [_row("p", throughput.DEFAULT, s) for s in (100, 200)],
        throughput.EAGER: [_row("p", throughput.EAGER, s, "torch") for s in (50, 100)],
        throughput.BFLOAT16: [_row("p", throughput.BFLOAT16, s) for s in (300, 400)],
        throughput.EAGER_BF16: [
            _row("p", throughput.EAGER_BF16, s, "torch") for s in (100, 100)
        ],
    }
    check = {
        "parameters": {"trainable": 404433, "total": 405139},
        "forward_max_abs_difference": {"inference": {"z_mean": 1e-6}},
    }
    peer = throughput.summarise_peer(runs, check)
    assert peer["package_over_eager"] == 2.0
    assert peer["package_over_bfloat16_over_eager_bfloat16_rounds"] == [3.0, 4.0]
    assert peer["package_over_bfloat16_over_eager_bfloat16"] == 3.5
    assert peer["package_over_bfloat16_over_eager"] == 5.0  # 300/50, 400/100
    report = {"peer": {"available": True, "torch": "2.x", "threads": 2}}
    report["peer"]["presets"] = {"p": peer}
    text = "\n".join(throughput.peer_lines(report))
    assert (
        "| p | 404,433 / 405,139 | 1.0e-06 | 2.00x (2.00x, 2.00x) | "
        "3.50x (3.00x, 4.00x) | 5.00x (6.00x, 4.00x) |"
    ) in text
    assert "default + bfloat16 / PyTorch eager, bfloat16 autocast (rounds)" in text


def test_only_the_kept_configurations_can_be_asked_for(capsys):
    throughput = _load("throughput")
    args = throughput.parse_args([])
    assert args.configs == ["fused_bn", "torch_eager", "bfloat16", "torch_bf16"]
    assert args.presets == [
        "fashion_mnist",
        "fashion_mnist_infogan",
        "cifar10",
        "celeba",
    ]
    for removed in ("keras_bn", "xla", "torch_compile", "torch_channels_last"):
        with pytest.raises(SystemExit):
            throughput.parse_args(["--configs", f"fused_bn,{removed}"])
        assert f"unknown --configs ['{removed}']" in capsys.readouterr().err


def test_peer_section_without_torch_says_why():
    throughput = _load("throughput")
    reason = "PyTorch cannot be imported (ModuleNotFoundError: torch)"
    lines = throughput.peer_lines({"peer": {"available": False, "skipped": reason}})
    assert f"Not measured: {reason}." in lines


def test_paired_difference_of_three_seeds_solved_by_hand():
    stats = _load("seed_statistics")
    running = {0: 60.0, 1: 62.0, 2: 64.0}
    learned = {0: 61.0, 1: 64.0, 2: 67.0, 3: 70.0}  # seed 3 has no pair
    pair = stats.paired_difference(running, learned)
    # differences -1, -2, -3: mean -2, sd 1, t(0.975, 2) = 4.3027
    assert pair["seeds"] == [0, 1, 2]
    assert pair["differences"] == [-1.0, -2.0, -3.0]
    assert pair["mean"] == pytest.approx(-2.0)
    assert pair["std"] == pytest.approx(1.0)
    half = 4.302653 / np.sqrt(3)
    assert pair["interval"] == pytest.approx([-2.0 - half, -2.0 + half], abs=1e-5)
    # all three negative: 2 x (1/2)^3 = 0.25, the smallest p 3 seeds allow
    assert pair["sign_test_p"] == pytest.approx(0.25)
    text = stats.verdict(pair, "running", "learned")
    assert text.startswith("undecided: running ahead by 2")
    # consistent differences exclude 0 from the interval
    tight = stats.paired_difference({0: 1.0, 1: 1.1, 2: 0.9}, {0: 2.0, 1: 2.1, 2: 2.0})
    assert tight["interval"][1] < 0
    assert stats.verdict(tight, "running", "batch").startswith("running better by")
    assert stats.verdict(tight, "r", "b", lower_is_better=False).startswith(
        "b better by"
    )


def test_sign_test_and_summaries_solved_by_hand():
    stats = _load("seed_statistics")
    assert stats.sign_test([1, 2, 3, 4, 5]) == pytest.approx(2 / 32)
    assert stats.sign_test([1, -1, 2, 0]) == pytest.approx(1.0)  # 2+ / 1-
    assert stats.sign_test([0, 0]) == 1.0
    summary = stats.summarise([1, 2, 3, 6])
    assert summary["mean"] == 3.0 and summary["min"] == 1.0 and summary["max"] == 6.0
    assert summary["std"] == pytest.approx(np.std([1, 2, 3, 6], ddof=1))
    assert stats.summarise([5])["std"] is None
    with pytest.raises(ValueError, match="no seed"):
        stats.summarise([])
    with pytest.raises(ValueError, match="share no seed"):
        stats.paired_difference({0: 1.0}, {1: 2.0})
    steps, mean, low, high = stats.band(
        [([1, 2, 3], [1.0, 2.0, 3.0]), ([2, 3], [4.0, 5.0])]
    )
    assert steps.tolist() == [2, 3]
    assert mean.tolist() == [3.0, 4.0]
    assert low.tolist() == [2.0, 3.0] and high.tolist() == [4.0, 5.0]


def test_seed_report_pairs_the_runs_of_each_seed(tmp_path):
    balancing_report = _load("balancing_report")

    def cell(fid_gen2, precision, cpu):
        return {
            "fid_rec": fid_gen2 - 10,
            "fid_gen1": fid_gen2 + 20,
            "fid_gen2": fid_gen2,
            "precision_gen2": precision,
            "recall_gen2": 0.01,
            "reconstruction_mse": 0.01,
            "train_cpu_seconds": cpu,
            "final_gamma2_over_mse": 1.0,
            "steps_to_balance": 400.0,
        }

    cells = {
        "running": {0: cell(60, 0.40, 1400), 1: cell(62, 0.41, 1500)},
        "learned": {0: cell(65, 0.35, 1400), 1: cell(66, 0.36, 1450)},
        "batch": {0: cell(59, 0.42, 1480)},  # seed 1 not trained yet
    }
    summaries, pairs = balancing_report.summarise_cells(cells)
    assert summaries["running"]["fid_gen2"]["mean"] == 61.0
    assert summaries["batch"]["fid_gen2"]["std"] is None
    gen2 = pairs["running-learned"]["fid_gen2"]
    assert gen2["differences"] == [-5.0, -4.0]
    # t(0.975, 1) = 12.7: two seeds 1 apart leave [-10.9, 1.9]
    assert gen2["interval"] == pytest.approx([-10.85, 1.85], abs=0.01)
    assert gen2["verdict"].startswith("undecided: running ahead by 4.5")
    precision = pairs["running-learned"]["precision_gen2"]
    assert precision["verdict"].startswith("running better")
    assert pairs["running-batch"]["fid_gen2"]["seeds"] == [0]
    assert "undecided" in pairs["running-batch"]["fid_gen2"]["verdict"]
    assert "verdict" not in pairs["running-learned"]["train_cpu_seconds"]
    assert pairs["running-learned"]["recall_gen2"]["verdict"] == "tied on every seed"
    report = {
        "command": "python benchmarks/compare_balancing.py --seeds 0 1",
        "machines": ["x86_64, 2 CPU cores, no GPU"],
        "records_finished_utc": ["2026-12-02 21:37:41", "2026-12-02 22:00:00"],
        "epochs": 12,
        "epochs2": 24,
        "train_images": 60000,
        "fid_images": 5000,
        "seeds": [0, 1],
        "records": "compare_balancing_seeds",
        "cells": {s: {str(k): v for k, v in c.items()} for s, c in cells.items()},
        "summaries": summaries,
        "pairs": pairs,
        "curve": None,
    }
    text = "\n".join(balancing_report.report_lines(report))
    assert "finished 2026-12-02 21:37:41 to 2026-12-02 22:00:00 UTC" in text
    assert "| running | 2 | 51.0 +- 1.4 | 81.0 +- 1.4 | 61.0 +- 1.4 |" in text
    assert "| batch | 1 | 49.0 (1 seed) |" in text
    assert "| running-learned | GEN-2 FID | -5.0, -4.0 | -4.5 |" in text
    run_dir = _load("compare_balancing").run_dir
    assert run_dir("runs/c", "learned", 2) == "runs/c/learned-seed2"


def _fake_run(seed, fid_gen2, fid_images=500):
    """An evaluation, a timing and a stage-1 step log as a run leaves them."""
    evaluation = {
        name: {"fid": fid, "kid": 0.01, "precision": 0.4, "recall": 0.01}
        for name, fid in (
            ("rec", fid_gen2 - 10),
            ("gen1", fid_gen2 + 20),
            ("gen2", fid_gen2),
        )
    }
    evaluation.update(
        num_images=fid_images,
        reconstruction_mse=0.012,
        cache={"computed": []},
        workdir="/machine/specific/path",
    )
    timing = {"seconds": 700.0 + seed, "cpu_seconds": 1300.0 + seed}
    timing.update(epochs=2, epochs2=3, train_images=60000)
    step = np.arange(1, 301)
    mse = np.full(300, 0.02)
    gamma = np.sqrt(np.where(step < 50, 0.2, 0.02))  # balanced from step 50
    steps = {"step": step, "gamma": gamma, "mse": mse, "running_mse": gamma**2}
    dynamics = sys.modules["compare_balancing"].balance_dynamics(steps)
    return evaluation, timing, steps, dynamics


ARGV = [
    "--seeds", "0", "1",
    "--strategies", "running,learned",
    "--epochs", "2", "--epochs2", "3", "--fid-images", "500",
]  # fmt: skip
FIDS = {("running", 0): 60, ("learned", 0): 65, ("running", 1): 61, ("learned", 1): 67}


def _seed_comparison(tmp_path, monkeypatch, record=True):
    """The comparison's modules and arguments; ``record``: all 4 runs recorded."""
    compare = _load("compare_balancing")
    monkeypatch.setitem(sys.modules, "compare_balancing", compare)
    args = compare.parse_args(
        [*ARGV, "--out", str(tmp_path / "runs"), "--results", str(tmp_path / "res")]
    )
    if record:
        for (strategy, seed), fid in FIDS.items():
            path = compare.run_dir(args.records, strategy, seed)
            compare.write_record(path, strategy, seed, args, *_fake_run(seed, fid))
    return compare, args


def test_a_record_keeps_the_runs_numbers_without_machine_paths(tmp_path, monkeypatch):
    compare, args = _seed_comparison(tmp_path, monkeypatch)
    path = compare.run_dir(args.records, "learned", 1)
    assert path == os.path.join(
        str(tmp_path), "res", "compare_balancing_seeds", "learned-seed1"
    )
    record = compare.read_record(path, "learned", 1, args)
    assert record["cell"]["fid_gen2"] == 67
    assert record["cell"]["fid_rec"] == 57
    assert record["cell"]["train_cpu_seconds"] == 1301.0
    # gamma^2 = 0.02 = the MSE from step 50: within 2x of the 100-step
    # average from the first step it is measured, 100; ratio 1 at the end.
    assert record["dynamics"]["steps_to_balance"] == 100
    assert record["cell"]["final_gamma2_over_mse"] == pytest.approx(1.0)
    np.testing.assert_array_equal(record["steps"]["step"], np.arange(1, 301))
    with open(os.path.join(path, "evaluation.json")) as f:
        kept = json.load(f)
    assert kept["gen2"]["fid"] == 67
    assert "cache" not in kept and "workdir" not in kept
    renamed = compare.run_dir(args.records, "learned", 2)
    os.rename(path, renamed)
    with pytest.raises(compare.RecordError, match="learned, seed 1, not of"):
        compare.read_record(renamed, "learned", 2, args)
    os.remove(os.path.join(renamed, "steps.npz"))
    with pytest.raises(compare.RecordError, match="incomplete or unreadable"):
        compare.read_record(renamed, "learned", 2, args)


def test_a_rerun_with_every_run_recorded_trains_nothing(tmp_path, monkeypatch):
    compare, args = _seed_comparison(tmp_path, monkeypatch)

    def no_training(*a, **k):
        raise AssertionError("a recorded run was trained again")

    monkeypatch.setattr(compare, "train_strategy", no_training)
    command = "python benchmarks/compare_balancing.py --seeds 0 1"
    report = compare.run_seeds(args, command)
    assert report["pairs"]["running-learned"]["fid_gen2"]["differences"] == [-5, -6]
    assert report["summaries"]["learned"]["fid_gen2"]["mean"] == 66.0
    results = tmp_path / "res"
    assert (results / "compare_balancing_seeds.png").stat().st_size > 0
    text = (results / "compare_balancing_seeds.md").read_text()
    assert "| running-learned | GEN-2 FID | -5.0, -6.0 | -5.5 |" in text
    assert "`compare_balancing_seeds/<strategy>-seed<seed>/`" in text
    # Nothing new: the same report, byte for byte.
    before = {p.name: p.read_bytes() for p in results.iterdir() if p.is_file()}
    compare.run_seeds(args, command)
    assert before == {p.name: p.read_bytes() for p in results.iterdir() if p.is_file()}

    # Another budget: a clear error; records and report stay as they were.
    other = compare.parse_args(
        [*ARGV, "--out", str(tmp_path / "runs"), "--results", str(results)]
        + ["--fid-images", "5000"]
    )
    record_json = results / "compare_balancing_seeds" / "running-seed0" / "record.json"
    record_bytes = record_json.read_bytes()
    with pytest.raises(compare.RecordError, match="fid_images: record 500, asked 5000"):
        compare.run_seeds(other, command + " --fid-images 5000")
    assert record_json.read_bytes() == record_bytes
    assert before == {p.name: p.read_bytes() for p in results.iterdir() if p.is_file()}


def test_only_the_runs_without_a_record_are_trained_and_evaluated(
    tmp_path, monkeypatch
):
    compare, args = _seed_comparison(tmp_path, monkeypatch)
    # learned-seed1 stopped before its record.json: unfinished, made again;
    # running-seed1 was never recorded.
    os.remove(os.path.join(args.records, "learned-seed1", "record.json"))
    shutil.rmtree(os.path.join(args.records, "running-seed1"))
    trained, evaluated = [], []

    def train(strategy, args, seed):
        trained.append((strategy, seed))
        return _fake_run(seed, FIDS[strategy, seed])[1]

    def evaluate(workdir, args, seed, extractor):
        assert extractor == "inception"
        strategy = os.path.basename(workdir).rpartition("-seed")[0]
        evaluated.append((strategy, seed))
        return _fake_run(seed, FIDS[strategy, seed] + 100)[0]

    monkeypatch.setattr(compare, "train_strategy", train)
    monkeypatch.setattr(compare, "read_steps", lambda w: _fake_run(0, 0)[2])
    monkeypatch.setattr(compare, "evaluate_run", evaluate)
    inception = importlib.import_module("vae_balance.fid.inception")
    monkeypatch.setattr(inception, "get_feature_extractor", lambda: "inception")
    args.report_only = True
    report = compare.run_seeds(args, "python benchmarks/compare_balancing.py")
    assert trained == evaluated == []
    assert report["cells"]["running"] == {0: report["cells"]["running"][0]}
    args.report_only = False
    report = compare.run_seeds(args, "python benchmarks/compare_balancing.py")
    assert trained == evaluated == [("running", 1), ("learned", 1)]
    assert report["cells"]["running"][0]["fid_gen2"] == 60  # kept
    assert report["cells"]["running"][1]["fid_gen2"] == 161  # new
    assert report["cells"]["learned"][1]["fid_gen2"] == 167
    assert report["pairs"]["running-learned"]["fid_gen2"]["differences"] == [-5, -6]


def test_a_stopped_run_keeps_its_time_and_the_report_says_it_was_resumed(
    tmp_path, monkeypatch
):
    compare, args = _seed_comparison(tmp_path, monkeypatch, False)
    training = importlib.import_module("vae_balance.training.job")
    clock = iter([1000.0, 1100.0, 5000.0, 5030.0])  # start, stop; start, end
    monkeypatch.setattr(compare.time, "time", lambda: next(clock))
    cpu = iter([10.0, 170.0, 20.0, 60.0])
    monkeypatch.setattr(compare, "_cpu_seconds", lambda: next(cpu))
    calls = []

    def train(*a, **k):
        calls.append(k)
        if len(calls) == 1:
            raise KeyboardInterrupt  # as a SIGTERM's TrainingInterrupted does

    monkeypatch.setattr(training, "train", train)
    with pytest.raises(KeyboardInterrupt):
        compare.train_strategy("running", args, seed=0)
    timing = compare.train_strategy("running", args, seed=0)
    assert len(calls) == 2
    assert timing["seconds"] == pytest.approx(100.0 + 30.0)
    assert timing["cpu_seconds"] == pytest.approx(160.0 + 40.0)
    assert (timing["epochs"], timing["epochs2"], timing["stops"]) == (2, 3, 1)

    evaluation, _, steps, dynamics = _fake_run(0, 60)
    path = compare.run_dir(args.records, "running", 0)
    record = compare.write_record(
        path, "running", 0, args, evaluation, timing, steps, dynamics
    )
    assert record["cell"]["train_seconds"] == pytest.approx(130.0)
    assert record["cell"]["train_stops"] == 1
    compare.write_record(
        compare.run_dir(args.records, "learned", 0),
        "learned", 0, args, *_fake_run(0, 65),
    )  # fmt: skip
    compare.write_report(args, "c")
    text = (tmp_path / "res" / "compare_balancing_seeds.md").read_text()
    assert "Stopped and resumed from their checkpoints: running, seed 0 (1x)." in text


def test_one_seed_is_the_seeds_mode_with_seeds_0(tmp_path, monkeypatch):
    compare = _load("compare_balancing")
    monkeypatch.setitem(sys.modules, "compare_balancing", compare)
    defaults = compare.parse_args([])
    assert defaults.seeds == [0, 1, 2]
    assert defaults.strategies == ["running", "learned", "batch"]
    args = compare.parse_args(
        ["--seeds", "0", "--strategies", "running,fixed", "--epochs", "2"]
        + ["--epochs2", "3", "--fid-images", "500"]
        + ["--out", str(tmp_path / "runs"), "--results", str(tmp_path / "res")]
    )
    for strategy, fid in (("running", 60), ("fixed", 240)):
        evaluation, timing, steps, _ = _fake_run(0, fid)
        dynamics = compare.strategy_dynamics(strategy, steps)
        path = compare.run_dir(args.records, strategy, 0)
        compare.write_record(
            path, strategy, 0, args, evaluation, timing, steps, dynamics
        )
    command = "python benchmarks/compare_balancing.py --seeds 0"
    report = compare.write_report(args, command)
    assert report["seeds"] == [0] and report["strategies"] == ["running", "fixed"]
    assert report["summaries"]["running"]["fid_gen2"]["std"] is None
    assert report["cells"]["running"][0]["steps_to_balance"] == 100
    assert "steps_to_balance" not in report["cells"]["fixed"][0]  # a fixed gamma
    assert report["pairs"] == {}
    text = (tmp_path / "res" / "compare_balancing_seeds.md").read_text()
    assert "| running | 1 | 50.0 (1 seed) | 80.0 (1 seed) | 60.0 (1 seed) |" in text
    assert (
        "| fixed | 0 | 230.0 | 260.0 | 240.0 | 0.400 | 0.010 | 0.01200 | - | - |"
        in (text)
    )
    assert (tmp_path / "res" / "compare_balancing_seeds.png").stat().st_size > 0


def test_multiply_adds_of_the_infogan_count_through_spectral_norm():
    throughput = _load("throughput")
    import vae_balance

    vae = vae_balance.build_vae("fashion_mnist_infogan")
    # conv1 14*14*4*4*1*64 + conv2 7*7*4*4*64*128 + fc3 6272*1024 + 1024*128
    encoder = 200_704 + 6_422_528 + 6_422_528 + 131_072
    # fc1 64*1024 + fc2 1024*6272 + deconv 7*7*4*4*128*64 + 14*14*4*4*64*1
    decoder = 65_536 + 6_422_528 + 6_422_528 + 200_704
    assert throughput.multiply_adds(vae.encoder) == encoder
    assert throughput.multiply_adds(vae.decoder) == decoder
    flops = throughput.gflop_per_image(vae)
    assert flops["train_gflop_per_image"] == pytest.approx(6 * 26_288_128 / 1e9)


def test_quality_points_are_chosen_by_epoch_and_reported(tmp_path):
    quality = _load("quality_study")
    run = tmp_path / "run"
    (run / "snapshots").mkdir(parents=True)
    config = {"name": "fashion_mnist_infogan", "network": "infogan"}
    (run / "config.json").write_text(json.dumps({**config, "balance": "running"}))
    for epoch in (2, 4, 6):
        stem = run / "snapshots" / f"stage1-epoch{epoch:04d}"
        stem.with_suffix(".keras").write_bytes(b"")
        record = {
            "epoch": epoch,
            "global_step": 937 * epoch,
            "cpu_seconds": 180 * epoch,
        }
        stem.with_suffix(".json").write_text(json.dumps(record))
    points = run / quality.POINTS_DIR
    points.mkdir()
    point = {
        "epoch": 4, "train_cpu_seconds": 720.0, "val_mse_recalibrated": 0.0081,
        "fid": {"gen2": 59.6, "gmm": 49.0, "gen2_stretched": 59.62},
        "protocol": {"num_images": 2000},
    }  # fmt: skip
    (points / "epoch0004.json").write_text(json.dumps(point))
    point = {**point, "epoch": 6, "train_cpu_seconds": 1080.0}
    point["fid"] = {"gen2": 57.8, "gmm": 49.6, "gen2_stretched": 57.1, "rec": 41.25}
    (points / "epoch0006.json").write_text(json.dumps(point))
    epochs = [s[0] for s in quality.unmeasured(str(run), str(points))]
    assert epochs == [2]
    assert [s[0] for s in quality.unmeasured(str(run), str(points), [2, 4])] == [2]
    # A full evaluation: its FIDs at the epochs of the run's histories.
    fid = {"gen2": 37.85, "gen2_stretched": 37.63}
    (run / "evaluation.json").write_text(json.dumps({"num_images": 10000, "fid": fid}))
    (run / "history_stage1.csv").write_text("epoch,mse\n" + "0,0.1\n" * 24)
    (run / "history_stage2.csv").write_text("epoch,mse\n" + "0,0.1\n" * 60)
    out = tmp_path / "report" / "quality_study"
    quality.main(["report", str(run), "--out", str(out)])
    table = out.with_suffix(".md").read_text()
    assert "| run | 4 | 0.20 | 59.6 | 49.0 | 59.6 | - | - | 0.00810 |" in table
    assert "| run | 6 | 0.30 | 57.8 | 49.6 | 57.1 | 41.2 | - | 0.00810 |" in table
    assert "| run | 10000 | 24 | 60 | 37.9 | - | 37.6 | - | - |" in table
    curves = json.loads(out.with_suffix(".json").read_text())
    assert (
        curves["run"]["setting"] == "fashion_mnist_infogan (infogan), balance running"
    )
    assert curves["run"]["final"]["stage2_epochs"] == 60
    assert out.with_suffix(".png").stat().st_size > 0


def test_step_curves_average_windows_and_epochs_of_a_steps_csv(tmp_path):
    curves = _load("step_curves")
    path = tmp_path / "steps_stage1.csv"
    with open(path, "w") as f:
        f.write("step,epoch,loss,reconstruction_loss,kl_loss,mse,gamma,running_mse\n")
        for step in range(1, 11):
            epoch = (step - 1) // 4
            f.write(f"{step},{epoch},0,0,{step},{step / 100},{1 / step},0.5\n")
    table = curves.read_steps(path, 3, 9)
    assert list(table["step"]) == [3, 4, 5, 6, 7, 8, 9]
    out = curves.windows(table, 3)
    assert list(out["step"]) == [3, 6, 9] and list(out["epoch"]) == [0, 1, 2]
    np.testing.assert_allclose(out["kl_loss"], [4.0, 7.0, 9.0])
    epochs = curves.per_epoch(table)
    assert [e[0] for e in epochs] == [0, 1, 2]
    assert epochs[1][1] == pytest.approx(0.065) and epochs[1][3] == pytest.approx(1 / 8)
    with pytest.raises(ValueError, match="no steps in"):
        curves.read_steps(path, 20, 30)
