"""What the subprocess tests of a run's stop and resume share.

`CHILD` runs the CLI in a child process that signals itself at a planned
place (a training step of a stage, the latent codes or the export); `run_cli`
runs it (or the plain CLI) and returns its status and output; `model_state`
is every number a resume must restore; `free_ports` finds loopback ports for
multi-worker runs.
"""

import json
import os
import socket
import subprocess
import sys
import textwrap

import keras

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1")

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
