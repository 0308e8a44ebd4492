"""The CLI run in the test's own process, for tests of its messages."""

import contextlib
import io

from vae_balance.cli import main as cli


def cli_in_process(*argv):
    """``python -m vae_balance *argv`` in this process: (exit code, stdout)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            code = cli.main([str(a) for a in argv])
        except SystemExit as exit_:
            code = exit_.code
    return code, out.getvalue()
