"""The benchmark scripts' own arithmetic (the runs themselves are not tests)."""

import importlib.util
import os
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
