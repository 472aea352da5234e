"""The networks of Note on the Stability of the Focal Loss (appendices A.4, A.6)."""

from __future__ import annotations

import keras
from keras import layers

from keras_focal.models._blocks import check_input_shape, pytorch_default_initializers
from keras_focal.models.unet import unet_logits


def stability_cnn(input_shape: tuple[int | None, ...] = (28, 28, 1), name: str = "stability_cnn") -> keras.Model:
    """The binary-classification CNN of the stability paper (Table 2).

    PyTorch's CIFAR-10 tutorial network on MNIST: conv 6@5x5, 2x2 max pool,
    conv 16@5x5, 2x2 max pool, fully connected 120 and 84 (all with ReLU)
    and one output logit; 43,661 trainable parameters for 28x28x1 inputs.
    Weights start as PyTorch initialises them (uniform in
    `+-1/sqrt(fan_in)`). The flattening is channels-last, a permutation of
    PyTorch's that changes nothing but the order of `fc1`'s inputs.

    Args:
        input_shape: `(height, width, channels)`; (28, 28, 1) for MNIST.
        name: the model's name.

    Returns:
        A `keras.Model` from images to `(batch, 1)` logits (use a
        `from_logits=True` sigmoid loss, as the paper does).

    Examples:
        >>> stability_cnn().count_params()
        43661
    """
    shape = check_input_shape(input_shape, min_size=16, why=" (two 5x5 convolutions and two 2x2 poolings)")
    channels = shape[-1]
    inputs = keras.Input(shape, name="image")
    x = layers.Conv2D(6, 5, activation="relu", name="conv1", **pytorch_default_initializers(25 * channels))(inputs)
    x = layers.MaxPooling2D(2, name="pool1")(x)
    x = layers.Conv2D(16, 5, activation="relu", name="conv2", **pytorch_default_initializers(25 * 6))(x)
    x = layers.MaxPooling2D(2, name="pool2")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(120, activation="relu", name="fc1", **pytorch_default_initializers(int(x.shape[-1])))(x)
    x = layers.Dense(84, activation="relu", name="fc2", **pytorch_default_initializers(120))(x)
    logits = layers.Dense(1, name="logits", dtype="float32", **pytorch_default_initializers(84))(x)
    return keras.Model(inputs, logits, name=name)


def stability_unet(input_shape: tuple[int | None, ...] = (28, 28, 1), name: str = "stability_unet") -> keras.Model:
    """The 2-D U-Net of the stability paper (appendix A.6, Table 3).

    clemkoa's U-Net as the paper modified it, i.e. `unet(input_shape,
    num_classes=1, depth=4, base_filters=64, batch_norm=True,
    activation=None)`: biased 3x3 convolutions each followed by batch
    normalisation and ReLU, 2x2 transposed-convolution upsampling padded
    back to the skip size (28 -> 14 -> 7 -> 3 -> 1 and back), and one logit
    per pixel. It has 31,042,369 trainable parameters, the paper's count
    (Keras lists the batch-normalisation moving statistics separately, as
    non-trainable).

    Weights start as PyTorch initialises them (uniform in
    `+-1/sqrt(fan_in)`), and batch normalisation uses PyTorch's epsilon and
    momentum, so that training follows the paper's as closely as Keras allows.

    Args:
        input_shape: `(height, width, channels)`; (28, 28, 1) for MNIST.
        name: the model's name.

    Returns:
        A `keras.Model` from images to `(batch, height, width, 1)` logits.
    """
    input_shape = check_input_shape(input_shape, min_size=16, why=" (four 2x2 poolings)")
    inputs = keras.Input(input_shape, name="image")
    logits = unet_logits(inputs, 1, 4, 64, True, pytorch_default_initializers)
    return keras.Model(inputs, logits, name=name)
