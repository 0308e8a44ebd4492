"""Preemption: a job killed at random steps and resumed ends bit for bit as
an uninterrupted run.

One work directory goes through SIGTERM, SIGINT and SIGKILL at seeded random
steps of stage 1 and stage 2, a SIGTERM while the latent codes are encoded, a
SIGKILL during the export, a double SIGTERM, and a truncated latest
checkpoint; after each, the same command resumes it. An uninterrupted run of
the same command is the reference. The children run the real CLI and wrap one
callback method or library function to signal themselves at the chosen point:
test code only, no hook in the library.
"""

import os
import random
import signal

import numpy as np
import pytest
from resume_helpers import (
    EPOCHS,
    STEPS,
    checkpoint_names,
    csv_rows,
    model_state,
    position_name,
    run_cli,
    tiny_job_args,
    write_tiny_pngs,
)

import vae_balance  # noqa: F401  (registers the classes for load_model)


def _run(tmp_path, argv, plan=None):
    """Runs the CLI in a child (signalling itself per ``plan``)."""
    return run_cli(tmp_path, argv, plan, timeout=600)


@pytest.fixture(scope="module")
def preempted(tmp_path_factory):
    """The reference run and the killed-and-resumed run, and what each
    interruption left."""
    tmp_path = tmp_path_factory.mktemp("preemption")
    data_dir = write_tiny_pngs(str(tmp_path / "data"))

    def train(workdir):
        return tiny_job_args(data_dir, str(tmp_path / workdir))

    reference = _run(tmp_path, train("reference"))
    assert reference[0] == 0, reference[1][-3000:]

    # Seeded random steps, increasing within each stage (each resumed run
    # goes past the previous interruption).
    rng = random.Random(20261202)
    total = EPOCHS * STEPS
    s1 = sorted(rng.sample(range(2, total + 1), 3))
    s2 = sorted(rng.sample(range(2, total + 1), 3))
    plans = [
        {"where": "stage1", "step": s1[0], "signals": ["SIGTERM"]},
        {"where": "stage1", "step": s1[1], "signals": ["SIGINT"]},
        "truncate-latest-stage1",
        {"where": "stage1", "step": s1[2], "signals": ["SIGKILL"]},
        {"where": "latents", "signals": ["SIGTERM"]},
        {"where": "stage2", "step": s2[0], "signals": ["SIGKILL"]},
        {"where": "stage2", "step": s2[1], "signals": ["SIGTERM", "SIGTERM"]},
        {"where": "stage2", "step": s2[2], "signals": ["SIGINT"]},
        {"where": "export", "signals": ["SIGKILL"]},
    ]
    workdir = str(tmp_path / "killed")
    seen = []
    for plan in plans:
        if plan == "truncate-latest-stage1":
            latest = checkpoint_names(workdir)[-1]
            latest = os.path.join(workdir, "checkpoints", latest)
            with open(latest, "r+b") as f:
                f.truncate(os.path.getsize(latest) // 2)
            seen.append({"plan": plan, "truncated": latest})
            continue
        code, output = _run(tmp_path, train("killed"), plan)
        where = plan["where"]
        rows = []
        if where in ("stage1", "stage2"):
            rows = csv_rows(os.path.join(workdir, f"steps_{where}.csv"))
        seen.append(
            {
                "plan": plan,
                "code": code,
                "output": output,
                "last_row": int(rows[-1]["step"]) if rows else None,
                "checkpoints": checkpoint_names(workdir),
            }
        )
    final = _run(tmp_path, train("killed"))
    assert final[0] == 0, final[1][-3000:]
    return {
        "data_dir": data_dir,
        "reference": str(tmp_path / "reference"),
        "killed": workdir,
        "seen": seen,
        "final_output": final[1],
    }


@pytest.mark.slow
def test_sigterm_and_sigint_stop_after_the_step_with_a_checkpoint_there(preempted):
    graceful = [
        s
        for s in preempted["seen"]
        if isinstance(s["plan"], dict)
        and s["plan"]["where"].startswith("stage")
        and s["plan"]["signals"] in (["SIGTERM"], ["SIGINT"])
    ]
    assert len(graceful) == 3
    for seen in graceful:
        plan = seen["plan"]
        signum = getattr(signal, plan["signals"][0])
        assert seen["code"] == 128 + signum, seen["output"][-3000:]
        # The step in progress finished, and no other one ran.
        assert seen["last_row"] == plan["step"]
        name = position_name(plan["where"], plan["step"])
        assert f"{name}.keras" in seen["checkpoints"]
        resume = seen["output"].split("[stop] to resume, run the same command:")[1]
        assert "train --preset tiny" in resume and "--workdir" in resume


@pytest.mark.slow
def test_a_second_signal_exits_at_once_and_sigkill_loses_only_the_steps_since_the_last_checkpoint(  # noqa: E501
    preempted,
):
    by_signals = {
        (s["plan"]["where"], tuple(s["plan"]["signals"])): s
        for s in preempted["seen"]
        if isinstance(s["plan"], dict)
    }
    double = by_signals[("stage2", ("SIGTERM", "SIGTERM"))]
    assert double["code"] == 128 + signal.SIGTERM
    assert "second signal (SIGTERM): exiting now" in double["output"]
    name = position_name("stage2", double["plan"]["step"])
    assert f"{name}.keras" not in double["checkpoints"]  # no checkpoint: at once
    for where in ("stage1", "stage2"):
        killed = by_signals[(where, ("SIGKILL",))]
        assert killed["code"] == -signal.SIGKILL
    assert by_signals[("export", ("SIGKILL",))]["code"] == -signal.SIGKILL
    latents = by_signals[("latents", ("SIGTERM",))]
    assert latents["code"] == 128 + signal.SIGTERM
    assert "every file written so far is complete" in latents["output"]


@pytest.mark.slow
def test_a_truncated_latest_checkpoint_is_set_aside_and_the_previous_one_used(
    preempted,
):
    truncated = next(s for s in preempted["seen"] if "truncated" in s)["truncated"]
    after = preempted["seen"][
        preempted["seen"].index(next(s for s in preempted["seen"] if "truncated" in s))
        + 1
    ]
    assert f"Checkpoint {truncated} set aside" in after["output"]
    assert "fails its checksum" in after["output"]
    folder = os.path.dirname(truncated)
    assert any(
        n.startswith(os.path.basename(truncated) + ".corrupt-")
        for n in os.listdir(folder)
    )


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["stage1", "stage2"])
def test_the_resumed_run_ends_bit_for_bit_as_the_uninterrupted_one(preempted, stage):
    reference, killed = preempted["reference"], preempted["killed"]
    for a, b in zip(
        model_state(os.path.join(reference, f"{stage}.keras")),
        model_state(os.path.join(killed, f"{stage}.keras")),
        strict=True,
    ):
        np.testing.assert_array_equal(a, b)
    for name in (f"steps_{stage}.csv", f"history_{stage}.csv"):
        with open(os.path.join(reference, name), "rb") as f:
            expected = f.read()
        with open(os.path.join(killed, name), "rb") as f:
            assert f.read() == expected, name
    if stage == "stage2":
        for name in ("latents.npz",):
            with open(os.path.join(reference, name), "rb") as f:
                expected = f.read()
            with open(os.path.join(killed, name), "rb") as f:
                assert f.read() == expected
