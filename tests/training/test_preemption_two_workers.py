"""Preemption of a two-worker run: signalling one worker stops both after the
same step with one checkpoint, and the resumed run ends bit for bit as an
uninterrupted one.

Apart from tests/training/test_preemption.py (the same tiny job, one process)
so that the two files run side by side in the suite.
"""

import json
import os
import signal

import numpy as np
import pytest
from resume_helpers import (
    EPOCHS,
    STEPS,
    checkpoint_names,
    csv_rows,
    free_ports,
    model_state,
    position_name,
    start_cli,
    tiny_job_args,
    write_tiny_pngs,
)

import vae_balance  # noqa: F401  (registers the classes for load_model)


def _two_workers(tmp_path, argv, plans):
    workers = [f"127.0.0.1:{port}" for port in free_ports(2)]
    processes = []
    for index, plan in enumerate(plans):
        tf_config = {
            "cluster": {"worker": workers},
            "task": {"type": "worker", "index": index},
        }
        env = {"TF_CONFIG": json.dumps(tf_config), "TMPDIR": str(tmp_path / "tmp")}
        processes.append(start_cli(tmp_path, argv, plan, env))
    try:
        outputs = [p.communicate(timeout=600)[0] for p in processes]
    finally:
        for p in processes:
            p.kill()
    return [p.returncode for p in processes], outputs


@pytest.mark.slow
def test_two_workers_share_one_workdir_stop_together_and_resume(tmp_path):
    data_dir = write_tiny_pngs(str(tmp_path / "data"))
    (tmp_path / "tmp").mkdir()
    workdir = str(tmp_path / "two-workers")
    argv = [*tiny_job_args(data_dir, workdir), "--strategy", "multiworker"]
    # Only worker 1 (not the chief) is signalled: both stop after that step.
    step = 5 + STEPS  # in stage 1's second epoch
    quiet = {"where": "nowhere", "signals": []}
    codes, outputs = _two_workers(
        tmp_path,
        argv,
        [quiet, {"where": "stage1", "step": step, "signals": ["SIGTERM"]}],
    )
    assert codes == [128 + signal.SIGTERM] * 2, outputs[0][-3000:] + outputs[1][-3000:]
    assert f"{position_name('stage1', step)}.keras" in checkpoint_names(workdir)
    assert "not the chief: writing to the scratch directory" in outputs[1]
    assert os.listdir(tmp_path / "tmp") == []  # the scratch copy is gone

    codes, outputs = _two_workers(tmp_path, argv, [quiet, quiet])
    assert codes == [0, 0], outputs[0][-3000:] + outputs[1][-3000:]
    assert "resuming from" in outputs[0] and "resuming from" in outputs[1]
    assert os.listdir(tmp_path / "tmp") == []
    rows = csv_rows(os.path.join(workdir, "steps_stage1.csv"))
    assert [int(r["step"]) for r in rows] == list(range(1, EPOCHS * STEPS + 1))

    # The same two workers, never interrupted.
    reference = str(tmp_path / "two-workers-reference")
    argv = [*tiny_job_args(data_dir, reference), "--strategy", "multiworker"]
    codes, outputs = _two_workers(tmp_path, argv, [quiet, quiet])
    assert codes == [0, 0], outputs[0][-3000:] + outputs[1][-3000:]
    differences = [
        float(np.max(np.abs(a - b), initial=0.0))
        for stage in ("stage1", "stage2")
        for a, b in zip(
            model_state(os.path.join(reference, f"{stage}.keras")),
            model_state(os.path.join(workdir, f"{stage}.keras")),
            strict=True,
        )
    ]
    print("two workers, resumed vs uninterrupted: max |difference|", max(differences))
    assert max(differences) == 0.0
