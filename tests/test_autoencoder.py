"""A learning check for a decoder: the convolutional autoencoder of specs/autoencoder.arch (strided
convolutions to a [8, 2, 2] code, stride-2 transposed convolutions back, a sigmoid), generated for
each framework, learns to reconstruct scikit-learn's 8x8 digits (pixels scaled to [0, 1]) in a few
seconds of training: the mean squared error on held-out digits falls below BOUND.

For scale (the held-out fifth of the digits): predicting the training digits' mean image for every
digit gives an MSE of 0.074, the untrained networks 0.188 (PyTorch) and 0.179 (Keras); after
EPOCHS epochs (Adam, learning rate 0.01, batches of 64, MSE loss, seeds fixed) they reach 0.0205
(PyTorch) and 0.0124 (Keras) on the development machine. BOUND = 0.03 is under half the mean
image's error."""

from __future__ import annotations

import numpy as np
import pytest

from .frameworks import ROOT, import_path

EPOCHS = 6
BATCH = 64
LEARNING_RATE = 1e-2
BOUND = 0.03


@pytest.fixture(scope="module")
def digits():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    images = (data.images.astype(np.float32) / 16.0)[:, None, :, :]  # (n, 1, 8, 8) in [0, 1]
    x_train, x_test = train_test_split(images, test_size=0.2, random_state=0, stratify=data.target)
    mean_image_error = float(((x_test - x_train.mean(axis=0)) ** 2).mean())
    assert mean_image_error > 2 * BOUND, f"the mean image's MSE {mean_image_error:.4f}"
    return x_train, x_test


def _mse(reconstruction, x) -> float:
    return float(((np.asarray(reconstruction) - x) ** 2).mean())


def test_generated_pytorch_autoencoder_learns_to_reconstruct_digits(digits):
    import torch

    x_train, x_test = digits
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a model this small runs faster on one thread than on two contended ones
    try:
        torch.manual_seed(0)
        model = import_path(ROOT / "generated" / "torch" / "autoencoder.py").build_model()
        with torch.no_grad():
            assert _mse(model(torch.from_numpy(x_test)), x_test) > 2 * BOUND  # untrained
        optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
        xt = torch.from_numpy(x_train)
        generator = torch.Generator().manual_seed(0)
        model.train()
        for _ in range(EPOCHS):
            for batch in torch.randperm(len(xt), generator=generator).split(BATCH):
                optimizer.zero_grad()
                torch.nn.functional.mse_loss(model(xt[batch]), xt[batch]).backward()
                optimizer.step()
        model.eval()
        with torch.no_grad():
            error = _mse(model(torch.from_numpy(x_test)), x_test)
    finally:
        torch.set_num_threads(threads)
    assert error < BOUND, f"held-out reconstruction MSE {error:.4f}"


def test_generated_keras_autoencoder_learns_to_reconstruct_digits(digits):
    import keras

    x_train, x_test = (x.transpose(0, 2, 3, 1) for x in digits)  # channels last
    keras.utils.set_random_seed(0)
    model = import_path(ROOT / "generated" / "keras" / "autoencoder.py").build_model()
    assert _mse(model(x_test, training=False), x_test) > 2 * BOUND  # untrained
    model.compile(optimizer=keras.optimizers.Adam(LEARNING_RATE), loss="mse")
    model.fit(x_train, x_train, epochs=EPOCHS, batch_size=BATCH, verbose=0)
    error = _mse(model(x_test, training=False), x_test)
    assert error < BOUND, f"held-out reconstruction MSE {error:.4f}"
