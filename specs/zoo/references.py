"""Reference models that no library builds whole, composed as the book or course they come from
writes them: a keras.applications (or torchvision) base with weights=None and the head the text adds,
frozen as the text freezes it. A registry entry names one as "references:FUNCTION" (see
archdsl/tools/zoo.py). A Keras builder takes input_shape (height, width, channels) and the entry's
keras_reference_args; a PyTorch builder the entry's torch_reference_args. torch and keras are
imported inside the builders: the compiler never imports this module."""

from __future__ import annotations


def flowers_xception_keras(input_shape, classes=5, fine_tune=False):
    """The deck "Redes Neuronales Convolucionales Profundas" (Géron's code): Xception without its top,
    global average pooling, a softmax layer; every base layer frozen in the first phase, every one
    trainable in the second. xception.preprocess_input, which the deck applies in its tf.data
    pipeline, is the model's first step here."""
    import keras

    inputs = keras.Input(shape=input_shape)
    x = keras.applications.xception.preprocess_input(inputs)
    base_model = keras.applications.xception.Xception(weights=None, include_top=False, input_tensor=x)
    avg = keras.layers.GlobalAveragePooling2D()(base_model.output)
    output = keras.layers.Dense(classes, activation="softmax")(avg)
    model = keras.Model(inputs=inputs, outputs=output)  # the deck's base_model.input: [inputs] here
    for layer in base_model.layers:
        layer.trainable = fine_tune
    return model


def cats_dogs_vgg16_keras(input_shape, fine_tune=False):
    """Chollet, "Deep learning with Python" (1st ed.), listing 5.20: the VGG16 convolutional base in a
    Sequential model with flatten, Dense(256, relu), Dense(1, sigmoid); `conv_base.trainable = False`
    (5.3.1), and for fine-tuning (5.3.2) the book's loop, trainable from block5_conv1 on. The
    ImageDataGenerator's rescale=1./255 is the model's first layer here."""
    from keras import layers

    model, conv_base = _vgg16_sequential_keras(input_shape)
    model.add(layers.Dense(256, activation="relu"))
    model.add(layers.Dense(1, activation="sigmoid"))
    conv_base.trainable = False
    if fine_tune:
        conv_base.trainable = True
        set_trainable = False
        for layer in conv_base.layers:
            if layer.name == "block5_conv1":
                set_trainable = True
            layer.trainable = set_trainable
    return model


def cifar10_vgg16_keras(input_shape, classes=10, units=64, fine_tune=False):
    """B. Adhikari's notebook "Fine Tuning the VGG16 Model for CIFAR-10 Dataset": the VGG16 base at
    32x32 in a Sequential model with flatten, Dense(units, relu), Dropout(0.5), Dense(10, softmax);
    for fine-tuning all but the base's last 4 layers (block5's convolutions and pool) frozen, as the
    notebook does; the first phase freezes the whole base. Its x / 255 is the first layer here."""
    from keras import layers

    model, conv_base = _vgg16_sequential_keras(input_shape)
    model.add(layers.Dense(units, activation="relu"))
    model.add(layers.Dropout(0.5))
    model.add(layers.Dense(classes, activation="softmax"))
    if fine_tune:
        for layer in conv_base.layers[:-4]:
            layer.trainable = False
    else:
        conv_base.trainable = False
    return model


def _vgg16_sequential_keras(input_shape):
    """The books' Sequential model up to its head: the pixels divided by 255, keras.applications' VGG16
    without its top (weights=None), flatten; and that base, which the caller freezes its way."""
    import keras
    from keras import layers, models

    conv_base = keras.applications.VGG16(weights=None, include_top=False, input_shape=input_shape)
    model = models.Sequential()
    model.add(keras.Input(shape=input_shape))
    model.add(layers.Rescaling(1.0 / 255))
    model.add(conv_base)
    model.add(layers.Flatten())
    return model, conv_base


def _vgg16_head_torch(head, fine_tune):
    """torchvision's vgg16().features after an x / 255, then `head`; the features frozen, but for
    block5 (features[24:], its three convolutions and pool) with fine_tune."""
    import torch
    import torchvision

    class Rescale(torch.nn.Module):
        def forward(self, x):
            return x / 255

    features = torchvision.models.vgg16(weights=None).features
    for index, layer in enumerate(features):
        layer.requires_grad_(fine_tune and index >= 24)
    return torch.nn.Sequential(Rescale(), features, torch.nn.Flatten(), *head)


def cats_dogs_vgg16_torch(fine_tune=False):
    """The model of cats_dogs_vgg16_keras from torchvision's VGG16 features, frozen the same way."""
    from torch import nn

    return _vgg16_head_torch([nn.Linear(512 * 4 * 4, 256), nn.ReLU(), nn.Linear(256, 1), nn.Sigmoid()], fine_tune)


def cifar10_vgg16_torch(classes=10, units=64, fine_tune=False):
    """The model of cifar10_vgg16_keras from torchvision's VGG16 features, frozen the same way."""
    from torch import nn

    head = [nn.Linear(512, units), nn.ReLU(), nn.Dropout(0.5), nn.Linear(units, classes), nn.Softmax(dim=1)]
    return _vgg16_head_torch(head, fine_tune)
