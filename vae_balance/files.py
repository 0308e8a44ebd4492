"""Atomic file writes, checksums and OS errors: how every file of a run is written.

A file is written under a temporary name beside it and renamed over it, so a
process killed at any point leaves the previous complete file or the new one,
never a partial one. TensorFlow-free (the FID weight reader uses it too).
"""

import contextlib
import errno
import hashlib
import json
import os


def atomic_write(path, content=None, *, write=None, suffix=""):
    """Replaces ``path`` by a complete new file, or leaves it as it was.

    The file is written under ``<path>.tmp-<pid><suffix>`` and renamed over
    ``path``; if writing fails, the temporary file is removed and the error
    raised again.

    Args:
        path: the file to write.
        content: a ``str`` (written as text) or ``bytes``, flushed to the disk
            before the rename. Exclusive with ``write``.
        write: a callable that writes the temporary path it is given (e.g.
            ``model.save``, ``np.savez``, a figure's ``savefig``).
        suffix: ends the temporary name, for writers that require an
            extension (``".keras"``, ``".npz"``, ``".png"``).

    Returns:
        ``path``.
    """
    if (content is None) == (write is None):
        raise ValueError("atomic_write: give exactly one of content and write")
    tmp = f"{path}.tmp-{os.getpid()}{suffix}"
    try:
        if write is not None:
            write(tmp)
        else:
            with open(tmp, "wb" if isinstance(content, bytes) else "w") as f:
                f.write(content)
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        _remove_quietly(tmp)
        raise
    return path


def write_json(path, value):
    """Writes ``value`` as indented JSON (and a final newline), atomically."""
    return atomic_write(path, json.dumps(value, indent=2) + "\n")


def sha256(path):
    """The hex sha256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _remove_quietly(path):
    with contextlib.suppress(OSError):
        os.remove(path)


def is_disk_full(error):
    """True when an `OSError` means no space (or quota) left on the device."""
    return error.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))


def describe_os_error(error):
    """The message of an `OSError`, saying so when the disk is full."""
    if is_disk_full(error):
        return f"no space left on the device ({error})"
    return str(error)
