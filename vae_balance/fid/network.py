"""The FID Inception network (2015-12-05 graph) built from Keras layers.

The network of `vae_balance.fid.inception` with uninitialised weights; its units
are named as in pytorch-fid, the names `vae_balance.fid.convert` maps the
converted weights to.
"""

import keras

IMAGE_SIZE = 299
FEATURE_DIM = 2048
BN_EPSILON = 1e-3  # the graph's batch norm epsilon (no learned scale)


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
