"""Which work directory a process of a multi-worker run writes.

Keras' multi-worker checkpointing: only the chief writes the run's work
directory; every other worker writes to a scratch directory of its own (under
``$TMPDIR``), started from a copy of the chief's resumable state and deleted
when the job ends (docs/distributed.md).
"""

import contextlib
import os
import shutil
import tempfile

from vae_balance.model import distribute

__all__ = ["RESUME_FILES", "worker_workdir"]

# What a non-chief worker copies from the chief's work directory to resume.
RESUME_FILES = (
    "config.json",
    "batchnorm.json",
    "latents.npz",
    "stage1.keras",
    "stage2.keras",
    "history_stage1.csv",
    "history_stage2.csv",
    "steps_stage1.csv",
    "steps_stage2.csv",
    "checkpoints",
)


@contextlib.contextmanager
def worker_workdir(workdir, strategy):
    """The work directory this process writes under ``strategy``.

    Yields ``workdir`` itself for the chief (and every process of a
    one-machine strategy); for another worker, a scratch copy of the chief's
    resumable state (`RESUME_FILES`), deleted on the way out.
    """
    is_chief, task = distribute.worker_role(strategy)
    if is_chief:
        yield workdir
        return
    scratch = _scratch_copy(workdir, task)
    try:
        yield scratch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _scratch_copy(workdir, task):
    scratch = tempfile.mkdtemp(prefix=f"vae_balance-{task}-")
    for name in RESUME_FILES:
        source = os.path.join(workdir, name)
        if os.path.isdir(source):
            shutil.copytree(source, os.path.join(scratch, name))
        elif os.path.exists(source):
            shutil.copy2(source, scratch)
    print(f"[{task}] not the chief: writing to the scratch directory {scratch}")
    return scratch
