"""A learning test of transfer learning, in both frameworks: tests/data/digits_transfer.arch (the
CIFAR ResNet-20 through its last stage as a base, batch norms in every block, a new head) on
scikit-learn's digits. A stand-in for pretrained weights: the base's batch-norm statistics are the
data's (one pass in train mode), the same weights in both frameworks. Phase 1, feature extraction:
the head trains over the frozen base, in train mode, with an optimizer given every parameter; every
weight of the base and every batch-norm statistic stays bit for bit the same, the head changes, the
loss goes down. Phase 2, fine-tuning: the model built with fine_tune = true (`unfreeze base.layer3
if fine_tune`) and given phase 1's weights trains again; now the last stage's weights and batch-norm
statistics change too, and the rest of the base still does not."""

from __future__ import annotations

import numpy as np
import pytest

from archdsl.api import load

from .frameworks import ROOT, generated_modules

SPEC = ROOT / "tests" / "data" / "digits_transfer.arch"
TOP = "base.layer3"  # the part that fine_tune unfreezes
BATCH = 32
STEPS = 12


@pytest.fixture(scope="module")
def digits():
    """STEPS batches of training images (8x8 digits, gray in 3 channels, channels first, in [0, 1])
    and their labels."""
    from sklearn.datasets import load_digits

    data = load_digits()
    n = BATCH * STEPS
    images = np.repeat(data.images[:n, None].astype(np.float32) / 16.0, 3, axis=1)  # (n, 3, 8, 8)
    return images, data.target[:n].astype(np.int64)


@pytest.fixture(scope="module")
def modules(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("transfer_learning")
    return generated_modules(load(str(SPEC)), tmp, "digits_transfer")


@pytest.fixture(scope="module")
def pretrained(modules, digits):
    """The PyTorch model's weights with the data's batch-norm statistics in the base (the average of
    one pass over the training images in train mode), so its features tell the digits apart as a
    pretrained base's would: random weights under fresh statistics give nearly the same features
    for every image. The generated set_trainable unfreezes the base for that pass."""
    import torch

    module = modules["torch"]
    torch.manual_seed(0)
    model = module.build_model()
    module.set_trainable(model.base, True)
    for bn in _torch_batch_norms(model, "base"):
        bn.reset_running_stats()
        bn.momentum = None  # a cumulative average
    model.train()
    with torch.no_grad():
        model(torch.from_numpy(digits[0]))
    return {k: v.clone() for k, v in model.state_dict().items()}


def _part(path: str) -> str:
    """Which part of the model a weight at a PyTorch path is in: the top block, the rest of the base
    or the head."""
    if path.startswith(TOP + "."):
        return "top"
    return "base" if path.startswith("base.") else "head"


def _changed(before: dict, after: dict) -> dict[str, list[str]]:
    """For each part: the tensors whose values are no longer bit for bit the same."""
    changed: dict[str, list[str]] = {"top": [], "base": [], "head": []}
    for key, value in before.items():
        if not np.array_equal(value, after[key]):
            changed[_part(key)].append(key)
    return changed


# PyTorch -------------------------------------------------------------------------------------------

def _torch_state(model) -> dict[str, np.ndarray]:
    return {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}


def _torch_train(model, digits, lr: float) -> tuple[float, float]:
    """STEPS steps of Adam over every parameter of the model (the frozen ones get no gradient), in
    train mode; the loss on the training images (eval mode) before and after."""
    import torch

    images, labels = (torch.from_numpy(a) for a in digits)
    loss_fn = torch.nn.CrossEntropyLoss()

    def loss() -> float:
        model.eval()
        with torch.no_grad():
            return float(loss_fn(model(images), labels))

    before = loss()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for batch in torch.arange(len(images)).split(BATCH):
        optimizer.zero_grad()
        loss_fn(model(images[batch]), labels[batch]).backward()
        optimizer.step()
    return before, loss()


def _torch_loss(module, state: dict, digits) -> float:
    """The loss of the PyTorch model with these weights on the training images, in eval mode."""
    import torch

    with torch.no_grad():
        out = _torch_model(module, state).eval()(torch.from_numpy(digits[0]))
        return float(torch.nn.functional.cross_entropy(out, torch.from_numpy(digits[1])))


def _torch_batch_norms(model, part: str) -> list:
    import torch

    return [m for m in model.get_submodule(part).modules() if isinstance(m, torch.nn.BatchNorm2d)]


def _torch_model(module, state: dict, **params):
    model = module.build_model(**params)
    model.load_state_dict(state)
    return model


def test_pytorch_head_over_a_frozen_base_then_fine_tuning_the_top_block(modules, digits, pretrained):
    import torch

    module = modules["torch"]
    torch.manual_seed(0)
    model = _torch_model(module, pretrained)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"head.weight", "head.bias"}
    model.train()
    assert model.training and not any(bn.training for bn in _torch_batch_norms(model, "base"))

    before = _torch_state(model)
    loss_before, loss_after = _torch_train(model, digits, lr=1e-2)
    changed = _changed(before, _torch_state(model))
    assert changed["base"] == [] and changed["top"] == []  # weights, running statistics, batch counts
    assert sorted(changed["head"]) == ["head.bias", "head.weight"]
    assert loss_after < 0.8 * loss_before, (loss_before, loss_after)

    # phase 2: the top block unfrozen, phase 1's weights
    tuned = _torch_model(module, model.state_dict(), fine_tune=True)
    assert {n for n, p in tuned.named_parameters() if p.requires_grad} == trainable | {
        n for n, _ in tuned.named_parameters() if _part(n) == "top"}
    before = _torch_state(tuned)
    loss_before2, loss_after2 = _torch_train(tuned, digits, lr=1e-3)
    assert loss_before2 == pytest.approx(loss_after)  # the same model as phase 1 left it
    changed = _changed(before, _torch_state(tuned))
    assert changed["base"] == []
    top = [k for k in before if _part(k) == "top"]
    assert sorted(changed["top"]) == sorted(top)  # every weight and statistic of the block, batch counts too
    assert any(k.endswith("running_var") for k in top) and any(k.endswith("conv1.weight") for k in top)
    assert sorted(changed["head"]) == ["head.bias", "head.weight"]
    assert loss_after2 < 0.5 * loss_before2, (loss_before2, loss_after2)


# Keras ---------------------------------------------------------------------------------------------

def _keras_state(model) -> dict[str, np.ndarray]:
    """Every weight (trainable or not: batch-norm moving statistics too) under its PyTorch path."""
    from archdsl.runtime.interop import torch_path

    return {f"{torch_path(layer.name)}.{w.name}": np.array(w.numpy())
            for layer in model.layers for w in layer.weights}


def _keras_train(model, digits, lr: float) -> tuple[float, float]:
    """STEPS steps of Adam with model.fit (train mode); the loss on the training images (inference
    mode) before and after."""
    import keras

    images, labels = digits
    images = images.transpose(0, 2, 3, 1)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def loss() -> float:
        return float(loss_fn(labels, model(images, training=False)))

    before = loss()
    model.compile(optimizer=keras.optimizers.Adam(lr), loss=loss_fn, jit_compile=False)
    model.fit(images, labels, batch_size=BATCH, epochs=1, shuffle=False, verbose=0)
    return before, loss()


def test_keras_head_over_a_frozen_base_then_fine_tuning_the_top_block(modules, digits, pretrained):
    import keras

    from archdsl.runtime.interop import torch_to_keras

    module = modules["keras"]
    keras.utils.set_random_seed(0)
    model = module.build_model()
    torch_to_keras(_torch_model(modules["torch"], pretrained), model)  # the same weights as PyTorch's
    assert {w.path.split("/")[0] for w in model.trainable_weights} == {"head"}

    before = _keras_state(model)
    loss_before, loss_after = _keras_train(model, digits, lr=1e-2)
    assert loss_before == pytest.approx(_torch_loss(modules["torch"], pretrained, digits), rel=1e-4)
    changed = _changed(before, _keras_state(model))
    assert changed["base"] == [] and changed["top"] == []  # kernels, gammas, betas, moving statistics
    assert sorted(changed["head"]) == ["head.bias", "head.kernel"]
    assert loss_after < 0.8 * loss_before, (loss_before, loss_after)

    # phase 2: the top block unfrozen, phase 1's weights
    tuned = module.build_model(fine_tune=True)
    tuned.set_weights(model.get_weights())
    before = _keras_state(tuned)
    loss_before2, loss_after2 = _keras_train(tuned, digits, lr=1e-3)
    assert loss_before2 == pytest.approx(loss_after, rel=1e-5)  # the same model as phase 1 left it
    changed = _changed(before, _keras_state(tuned))
    assert changed["base"] == []
    top = [k for k in before if _part(k) == "top"]
    assert sorted(changed["top"]) == sorted(top)  # every weight and moving statistic of the block
    assert any(k.endswith("moving_variance") for k in top) and any(k.endswith("kernel") for k in top)
    assert sorted(changed["head"]) == ["head.bias", "head.kernel"]
    assert loss_after2 < 0.5 * loss_before2, (loss_before2, loss_after2)
