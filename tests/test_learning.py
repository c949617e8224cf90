"""A learning check: LeNet-5, generated for each framework, learns scikit-learn's bundled digits
(8x8 images, each pixel repeated 4x4 to LeNet's 32x32) to at least 95% test accuracy."""

from __future__ import annotations

import numpy as np
import pytest

from .frameworks import ROOT, import_path

EPOCHS = 15


@pytest.fixture(scope="module")
def digits():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    images = np.kron(data.images, np.ones((4, 4))).astype(np.float32) / 16.0  # (n, 32, 32) in [0, 1]
    images = images[:, None, :, :]  # one channel, channels first
    return train_test_split(images, data.target.astype(np.int64), test_size=0.2, random_state=0,
                            stratify=data.target)


def test_generated_pytorch_lenet5_learns_digits(digits):
    import torch

    x_train, x_test, y_train, y_test = digits
    torch.manual_seed(0)
    model = import_path(ROOT / "generated" / "torch" / "lenet5.py").build_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    xt, yt = torch.from_numpy(x_train), torch.from_numpy(y_train)
    generator = torch.Generator().manual_seed(0)
    for _ in range(EPOCHS):
        model.train()
        for batch in torch.randperm(len(xt), generator=generator).split(32):
            optimizer.zero_grad()
            loss_fn(model(xt[batch]), yt[batch]).backward()
            optimizer.step()
    model.eval()
    with torch.no_grad():
        predicted = model(torch.from_numpy(x_test)).argmax(dim=1).numpy()
    accuracy = float((predicted == y_test).mean())
    assert accuracy >= 0.95, f"test accuracy {accuracy:.3f}"


def test_generated_keras_lenet5_learns_digits(digits):
    import keras

    x_train, x_test, y_train, y_test = digits
    keras.utils.set_random_seed(0)
    model = import_path(ROOT / "generated" / "keras" / "lenet5.py").build_model()
    model.compile(optimizer=keras.optimizers.Adam(2e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    model.fit(x_train.transpose(0, 2, 3, 1), y_train, epochs=EPOCHS, batch_size=32, verbose=0)
    predicted = model.predict(x_test.transpose(0, 2, 3, 1), verbose=0).argmax(axis=1)
    accuracy = float((predicted == y_test).mean())
    assert accuracy >= 0.95, f"test accuracy {accuracy:.3f}"
