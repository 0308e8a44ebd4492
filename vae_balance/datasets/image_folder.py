"""A folder of your own images, read and decoded.

`read_folder` reads a folder of PNG / JPEG / BMP / WebP images, searched
recursively and sorted by path (other files are ignored, and counted); a
folder with ``train/`` and ``test/`` subfolders gives those two splits.
Files are decoded in threads (`decode_user_image`); grey images become RGB
when any image is in colour. A corrupt image, or one over Pillow's
decompression-bomb limit, raises `BadImageError` naming the file, unless
``skip_bad`` skips it (and counts it). `check_one_size` names two files of
different sizes when no ``image_size`` resizes them.
"""

import concurrent.futures
import hashlib
import os
import warnings

import numpy as np

from vae_balance.datasets.registry import DataError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


class BadImageError(DataError):
    """An image file that cannot be used: unreadable, truncated, or over
    Pillow's decompression-bomb limit (``skip_bad`` skips these)."""


def read_folder(source, skip_bad, log):
    """``(arrays, block, names)`` of a folder `DataSource`: ``arrays`` is
    ``{"all": [...]}`` or ``{"train": [...], "test": [...]}`` (lists of
    images), ``names`` the same with their paths, ``block`` the digest of the
    file listing (names and sizes) and its count."""
    root = source.path
    subfolders = [os.path.join(root, s) for s in ("train", "test")]
    splits = {"all": root}
    if all(os.path.isdir(s) for s in subfolders):
        splits = dict(zip(("train", "test"), subfolders))
    arrays, names, listing = {}, {}, []
    for split, folder in splits.items():
        files, ignored = image_files(folder)
        if ignored:
            log(f"[data] ignored {ignored} non-image file(s) under {folder}")
        listing += [f"{os.path.relpath(f, root)}\t{os.path.getsize(f)}" for f in files]
        arrays[split], names[split] = _decode_all(files, skip_bad, log)
    arrays = _harmonise_channels(arrays, log)
    digest = hashlib.sha256("\n".join(listing).encode()).hexdigest()
    return arrays, {"files_sha256": digest, "num_files": len(listing)}, names


def image_files(folder):
    """``(sorted image paths under folder, number of other files)``.

    Raises:
        DataError: no image file (an empty folder).
    """
    files, ignored = [], 0
    for directory, subfolders, names in os.walk(folder):
        subfolders.sort()
        for name in sorted(names):
            if name.startswith("."):
                continue
            if name.lower().endswith(IMAGE_EXTENSIONS):
                files.append(os.path.join(directory, name))
            else:
                ignored += 1
    if not files:
        raise DataError(
            f"No images ({', '.join(IMAGE_EXTENSIONS)}) under {folder}"
            + (f" ({ignored} other file(s) ignored)." if ignored else " (empty).")
        )
    return files, ignored


def decode_user_image(path):
    """One image file as uint8 ``(h, w, 1)`` (grey) or ``(h, w, 3)``.

    Refuses, without decoding them, images over Pillow's decompression-bomb
    limit (``PIL.Image.MAX_IMAGE_PIXELS``).

    Raises:
        DataError: naming the file: unreadable, truncated, or too large.
    """
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
                limit = Image.MAX_IMAGE_PIXELS
                if limit and width * height > limit:
                    raise BadImageError(
                        f"{path}: {width}x{height} pixels, over Pillow's "
                        f"decompression-bomb limit of {limit}; refused "
                        "without decoding it (resize it, or raise "
                        "PIL.Image.MAX_IMAGE_PIXELS if you trust the file)."
                    )
                image.load()
                grey = image.mode in ("1", "L", "LA", "I", "I;16", "F")
                array = np.asarray(image.convert("L" if grey else "RGB"))
    except BadImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise BadImageError(
            f"{path}: over Pillow's decompression-bomb limit; refused without "
            f"decoding it ({error})."
        ) from None
    except Exception as error:  # PIL raises OSError, SyntaxError, ValueError
        message = f"{path}: unreadable or truncated image ({error})."
        raise BadImageError(message) from None
    return array[..., None] if array.ndim == 2 else array


def decode_in_threads(decode, paths, skip_bad, error_type=DataError):
    """``decode(path)`` of every path, in order, on a few threads. An
    ``error_type`` raised by one is re-raised, or with ``skip_bad`` returned
    in its place."""

    def attempt(path):
        try:
            return decode(path)
        except error_type as error:
            if not skip_bad:
                raise
            return error

    workers = min(8, os.cpu_count() or 1)
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        return list(pool.map(attempt, paths))


def _decode_all(files, skip_bad, log):
    """(decoded images, their paths): bad files raise, or are skipped."""
    results = decode_in_threads(decode_user_image, files, skip_bad, BadImageError)
    bad = [r for r in results if isinstance(r, BadImageError)]
    if bad:
        log(f"[data] skipped {len(bad)} bad image file(s), e.g. {bad[0]}")
    kept = [(r, f) for r, f in zip(results, files) if not isinstance(r, DataError)]
    if not kept:
        raise DataError(f"No readable image among the {len(files)} files.")
    return [r for r, _ in kept], [f for _, f in kept]


def check_one_size(arrays, names):
    """DataError naming two files of different sizes (no image_size given)."""
    images = [i for split in arrays for i in arrays[split]]
    paths = [n for split in arrays for n in names[split]]
    first = images[0].shape[:2]
    for image, path in zip(images, paths):
        if image.shape[:2] != first:
            raise DataError(
                f"Images of different sizes: {paths[0]} is {first[0]}x{first[1]}"
                f", {path} is {image.shape[0]}x{image.shape[1]} (height x width)."
                " Pass --image-size HxW (image_size=) to resize them all."
            )


def _harmonise_channels(arrays, log):
    """Grey images become RGB when any image is in colour (count said)."""
    every = [image for images in arrays.values() for image in images]
    if len({image.shape[-1] for image in every}) == 1:
        return arrays
    grey = sum(image.shape[-1] == 1 for image in every)
    log(f"[data] converted {grey} grey image(s) to RGB (the others are in colour)")
    return {
        split: [np.repeat(i, 3, axis=-1) if i.shape[-1] == 1 else i for i in images]
        for split, images in arrays.items()
    }
