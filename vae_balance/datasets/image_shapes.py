"""The sizes of your own images: the one asked for, and the network's.

`parse_size` reads ``--image-size`` (``HxW`` or one side); `fit_size`
resizes every image to it (antialiased bilinear, Pillow), optionally after
a centre crop to its aspect ratio, or stacks them at their native size.
`network_shape` is the shape a network needs for the images, `centre_pad`
the zero border taking one to the other (uneven when the difference is odd)
and `pad_images` adds it.
"""

import numpy as np


# ------------------------------------------------------------ image size
def parse_size(image_size):
    """``(height, width)`` of ``image_size`` (None, an int, a pair or "HxW")."""
    if image_size is None:
        return None
    if isinstance(image_size, str):
        parts = image_size.lower().split("x")
        try:
            values = [int(p) for p in parts]
        except ValueError:
            values = []
    else:
        values = [image_size] if np.ndim(image_size) == 0 else list(image_size)
        values = [int(v) for v in values]
    if len(values) == 1:
        values = values * 2
    if len(values) != 2 or min(values) < 1:
        raise ValueError(
            f"image size {image_size!r}: give HxW (e.g. 64x48) or one side (64)."
        )
    return tuple(values)


def fit_size(images, size, center_crop):
    """The images resized to ``size`` (a list of arrays, or one array)."""
    if size is None:
        if isinstance(images, np.ndarray):
            return images
        return np.stack(images)
    out = [_resize(image, size, center_crop) for image in images]
    return np.stack(out)


def _resize(image, size, center_crop):
    """One (h, w, c) image at ``size`` (antialiased bilinear, Pillow)."""
    from PIL import Image

    height, width = size
    is_float = image.dtype != np.uint8
    array = image.astype(np.float32) if is_float else image
    if center_crop:
        h, w = array.shape[:2]
        scale = min(h / height, w / width)
        crop_h, crop_w = round(height * scale), round(width * scale)
        top, left = (h - crop_h) // 2, (w - crop_w) // 2
        array = array[top : top + crop_h, left : left + crop_w]
    channels = array.shape[-1]
    planes = []
    for c in range(channels):
        plane = Image.fromarray(array[..., c] if is_float else array[..., c], None)
        resized = plane.resize((width, height), Image.BILINEAR)
        planes.append(np.asarray(resized))
    out = np.stack(planes, axis=-1)
    return np.clip(out, 0, 1).astype(np.float32) if is_float else out


# ------------------------------------------------------ network and pads
def network_shape(image_shape, network):
    """The ``(H, W, C)`` a network needs for ``(h, w, c)`` images.

    "resnet": the next power-of-two square side (at least 4); "infogan": each
    side rounded up to a multiple of 4.
    """
    height, width, channels = image_shape
    if network == "resnet":
        side = max(4, 1 << (max(height, width) - 1).bit_length())
        return (side, side, channels)
    return (-(-height // 4) * 4, -(-width // 4) * 4, channels)


def centre_pad(image_shape, target_shape):
    """``(top, bottom, left, right)`` zero pixels taking one to the other."""
    rows = target_shape[0] - image_shape[0]
    cols = target_shape[1] - image_shape[1]
    return (rows // 2, rows - rows // 2, cols // 2, cols - cols // 2)


def pad_images(images, box):
    """``images`` with ``box = (top, bottom, left, right)`` zeros around."""
    top, bottom, left, right = box
    if not any(box):
        return images
    return np.pad(images, ((0, 0), (top, bottom), (left, right), (0, 0)))
