"""Stopping a training run cleanly on SIGTERM or SIGINT.

Preemptible cloud machines send SIGTERM with a short grace period; Ctrl-C
sends SIGINT. Inside `StopRequests`:

- during a stage's fit (`StopRequests.deferred`), the first signal is
  recorded and the run goes on to the end of the current step; the
  `vae_balance.training.checkpointer.Checkpointer` then writes a step checkpoint and
  raises `TrainingInterrupted`;
- elsewhere (loading data, encoding the latents, the export), the first
  signal raises `TrainingInterrupted` at once: every file of the run is
  written atomically, so nothing complete is lost and the next run redoes
  the unfinished part;
- a second signal exits at once (status 128 + signal number), as a user
  pressing Ctrl-C twice expects.

The command line turns `TrainingInterrupted` into the resume command and
exit status 128 + signal number (130 for SIGINT, 143 for SIGTERM).
"""

import contextlib
import os
import signal
import sys
import threading

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class TrainingInterrupted(Exception):
    """The run stopped on a signal; the same command resumes it.

    Attributes:
        signum: the signal number.
        checkpoint: the checkpoint written on the way out, or None.
    """

    def __init__(self, signum, checkpoint=None):
        self.signum = int(signum)
        self.checkpoint = checkpoint
        name = signal.Signals(self.signum).name
        where = (
            f"a checkpoint was written: {checkpoint}"
            if checkpoint
            else "every file written so far is complete"
        )
        super().__init__(f"{name} received: the run stopped; {where}.")

    @property
    def exit_status(self):
        """128 + the signal number, as a shell reports a signalled process."""
        return 128 + self.signum


class StopRequests:
    """Installs SIGTERM and SIGINT handlers for a run (main thread only).

    ``requested`` is the first signal's number, or None. Outside the main
    thread (where Python cannot install handlers) it does nothing.
    """

    def __init__(self):
        self.requested = None
        self._deferring = False
        self._previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for signum in SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    @contextlib.contextmanager
    def deferred(self):
        """Inside: a signal waits for the end of the current step."""
        self._deferring = True
        try:
            yield self
        finally:
            self._deferring = False
        if self.requested:  # arrived after the last step's check
            raise TrainingInterrupted(self.requested)

    def _handle(self, signum, frame):
        name = signal.Signals(signum).name
        if self.requested is not None:
            print(f"\n[stop] second signal ({name}): exiting now", flush=True)
            sys.stderr.flush()
            os._exit(128 + signum)
        self.requested = signum
        if not self._deferring:
            raise TrainingInterrupted(signum)
        print(
            f"\n[stop] {name} received: finishing the current step, then writing "
            "a checkpoint (send it again to exit at once)",
            flush=True,
        )
