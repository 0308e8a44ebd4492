"""What the subprocess tests of a run's stop and resume share.

`CHILD` runs the CLI in a child process that signals itself at a planned
place (a training step of a stage, the latent codes or the export); `run_cli`
runs it (or the plain CLI) and returns its status and output; `model_state`
is every number a resume must restore; `free_ports` finds loopback ports for
multi-worker runs. `write_tiny_pngs` and `tiny_job_args` are the preemption
tests' job (the "tiny" preset, 2 + 2 epochs of 8 steps, a step checkpoint every
5 steps); `csv_rows`, `checkpoint_names` and `position_name` read what it left.
"""

import csv
import json
import os
import socket
import subprocess
import sys
import textwrap

import keras
import numpy as np
from PIL import Image

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1")
STEPS = 8  # the tiny job: 64 training images, batch 8
EPOCHS = 2  # per stage: 16 steps

# plan: {"where": "stage1" | "stage2" | "latents" | "export" | "nowhere",
#        "step": global step (stages), "signals": ["SIGTERM", ...]}
CHILD = textwrap.dedent(
    """
    import json, os, signal, sys
    from vae_balance.training import callbacks
    from vae_balance.cli import main as cli
    from vae_balance.export import savedmodel as export
    from vae_balance.training import job as training

    plan = json.loads(sys.argv[1])
    signums = [getattr(signal, name) for name in plan["signals"]]

    def send():
        for signum in signums:
            os.kill(os.getpid(), signum)

    if plan["where"] == "nowhere":
        pass
    elif plan["where"] in ("stage1", "stage2"):
        def on_train_batch_begin(self, batch, logs=None):
            step = self._epoch * self.steps_per_epoch + self.start_step + batch + 1
            if self.stage == plan["where"] and step == plan["step"]:
                send()  # during the step: it runs, then the run stops
        callbacks.StepHistory.on_train_batch_begin = on_train_batch_begin
    elif plan["where"] == "latents":
        encode = training.encode_dataset
        def encode_dataset(*args, **kwargs):
            send()
            return encode(*args, **kwargs)
        training.encode_dataset = encode_dataset
    elif plan["where"] == "export":
        write = export._write_atomically
        def write_atomically(*args, **kwargs):
            send()
            return write(*args, **kwargs)
        export._write_atomically = write_atomically

    sys.exit(cli.main(sys.argv[2:]))
    """
)


def start_cli(tmp_path, argv, plan, env=None):
    """Starts the child CLI (see `CHILD`) without waiting."""
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    return subprocess.Popen(
        [sys.executable, str(script), json.dumps(plan), *argv],
        cwd=REPO,
        env=dict(ENV, **(env or {})),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def run_cli(tmp_path, argv, plan=None, timeout=900):
    """``(status, output)`` of the CLI, in a child signalling itself per
    ``plan`` (None: the plain ``python -m vae_balance``)."""
    command = [sys.executable, "-m", "vae_balance", *argv]
    if plan is not None:
        script = tmp_path / "child.py"
        script.write_text(CHILD)
        command = [sys.executable, str(script), json.dumps(plan), *argv]
    done = subprocess.run(
        command,
        cwd=REPO,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
    )
    return done.returncode, done.stdout


def model_state(path):
    """Weights, optimizer variables and the noise state of a saved model."""
    model = keras.saving.load_model(path)
    variables = model.weights + model.optimizer.variables
    return [v.numpy() for v in variables] + [model.seed_generator.state.numpy()]


def free_ports(count):
    """``count`` free TCP ports on 127.0.0.1."""
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def write_tiny_pngs(root):
    """64 train and 16 test seeded 8x8 PNGs under ``root``; returns ``root``."""
    rng = np.random.default_rng(0)
    for split, count in (("train", 8 * STEPS), ("test", 16)):
        os.makedirs(os.path.join(root, split))
        for i in range(count):
            pixels = (rng.random((8, 8)) * 255).astype("uint8")
            Image.fromarray(pixels).save(os.path.join(root, split, f"{i:03d}.png"))
    return root


def tiny_job_args(data_dir, workdir):
    """The CLI arguments of the tiny job on ``data_dir`` into ``workdir``."""
    return [
        *("train", "--preset", "tiny", "--data-dir", data_dir),
        *("--workdir", workdir, "--grid-every", "100"),
        *("--epochs", str(EPOCHS), "--epochs2", str(EPOCHS)),
        *("--checkpoint-steps", "5"),
    ]


def csv_rows(path):
    """The rows of a CSV log as dicts ([] if it is not there)."""
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def checkpoint_names(workdir):
    """The sorted .keras names in ``workdir``/checkpoints."""
    folder = os.path.join(workdir, "checkpoints")
    return sorted(n for n in os.listdir(folder) if n.endswith(".keras"))


def position_name(stage, step):
    """The checkpoint name (without .keras) of global ``step`` of ``stage``."""
    epoch, within = divmod(step, STEPS)
    return f"{stage}-epoch{epoch:04d}" + (f"-step{within:06d}" if within else "")
