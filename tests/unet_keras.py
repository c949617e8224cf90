"""A functional Keras U-Net written from Ronneberger et al. (2015), Fig. 1, independently of archdsl's
generated code: the Keras reference of tests/test_unet.py and of the benchmarks (benchmarks/models.py).
A module of its own, apart from test_unet.py's PyTorch module: the Keras benchmark's worker must not
import torch (never after TensorFlow, and not into a process that times Keras)."""

from __future__ import annotations


def paper_unet_keras(resolution: int = 572, in_channels: int = 1, classes: int = 2, base: int = 64):
    """Fig. 1's network as a functional Keras model (channels last), built as test_unet.py's PaperUNet
    is: five levels of two unpadded 3x3 convolutions with ReLU, 2x2 max pooling between them, four
    steps of a 2x2 up-convolution of stride 2, the copy cropped at its centre and put first, two
    convolutions; a 1x1 convolution to the classes."""
    import keras
    from keras import layers

    def two_convolutions(x, width):
        x = layers.Conv2D(width, 3, activation="relu")(x)
        return layers.Conv2D(width, 3, activation="relu")(x)

    inputs = keras.Input(shape=(resolution, resolution, in_channels))
    x, copies = inputs, []
    for level in range(5):
        x = two_convolutions(x if level == 0 else layers.MaxPooling2D(2)(x), base * 2**level)
        copies.append(x)
    copies.pop()
    for level in reversed(range(4)):
        x = layers.Conv2DTranspose(base * 2**level, 2, strides=2)(x)
        copy = copies.pop()
        excess = copy.shape[1] - x.shape[1], copy.shape[2] - x.shape[2]
        copy = layers.Cropping2D(((excess[0] // 2, excess[0] - excess[0] // 2),
                                  (excess[1] // 2, excess[1] - excess[1] // 2)))(copy)
        x = two_convolutions(layers.Concatenate()([copy, x]), base * 2**level)
    return keras.Model(inputs, layers.Conv2D(classes, 1)(x), name="paper_unet")
