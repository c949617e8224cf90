"""The transfer-learning specs (specs/zoo/transfer.toml) in both phases: with the base frozen and with
`fine_tune = true`. The generated models train exactly the parameters that the book's model does
(the reference builders of specs/zoo/references.py, frozen as the book freezes them): Keras'
trainable and non-trainable weights equal the reference's, PyTorch's parameters that require
gradients are the trainable ones, and both equal the counts worked out by hand in the specs' headers.
The outputs agree with the references' under weights scaled to keep the activations' size (the zoo's
comparisons use default initializations, under which these deep plain stacks give all but constant
outputs), and a frozen batch norm computes the same in training as in evaluation in both frameworks."""

from __future__ import annotations

import os

import numpy as np
import pytest

from archdsl.api import generate, load
from archdsl.runtime.interop import keras_to_torch, load_keras_reference, load_torch_reference, torch_to_keras
from archdsl.tools.zoo import read_registry, reference_builder

from .frameworks import ROOT, count_torch, count_torch_trainable, import_path, keras_outputs, torch_outputs

# parameters, trainable with the base frozen, trainable with fine_tune = true (the specs' headers)
EXPECTED = {
    "flowers_xception": (20_817_197, 10_245, 20_817_197),
    "cats_dogs_vgg16": (16_812_353, 2_097_665, 9_177_089),
    "cifar10_vgg16": (14_748_170, 33_482, 7_112_906),
}
ENTRIES = [e for e in read_registry(ROOT) if e.key in EXPECTED]
TOLERANCE = 1e-4


def _size(weights) -> int:
    return sum(int(np.prod(w.shape)) for w in weights)


class Transfer:
    """One entry's spec compiled at its test settings; the models of each phase, built once."""

    def __init__(self, entry, tmp) -> None:
        self.entry = entry
        cwd = os.getcwd()
        os.chdir(ROOT)
        try:
            self.elab = {phase: load(os.path.relpath(entry.spec_path(ROOT), ROOT),
                                     {**entry.sets, **entry.test_sets, "fine_tune": phase}) for phase in (False, True)}
        finally:
            os.chdir(cwd)
        self.modules = {}
        for target in ("torch", "keras"):
            path = tmp / f"{entry.key}_{target}.py"
            path.write_text(generate(self.elab[False], target))  # fine_tune is an argument of build_model
            self.modules[target] = import_path(path, f"transfer_{entry.key}_{target}")
        self.params = {k: v for k, v in self.elab[False].args.items() if k != "fine_tune"}
        c, h, w = self.elab[False].root.in_shape.dims
        self.input_shape = (c, h, w)
        self._built = {}

    def model(self, kind: str, phase: bool):
        """kind: torch or keras (generated), torch_reference or keras_reference (the book's way)."""
        if (kind, phase) not in self._built:
            if kind in ("torch", "keras"):
                model = self.modules[kind].build_model(**self.params, fine_tune=phase)
            elif kind == "torch_reference":
                model = reference_builder(ROOT, self.entry.torch_builder())(fine_tune=phase)
            else:
                c, h, w = self.input_shape
                model = reference_builder(ROOT, self.entry.keras_builder())(input_shape=(h, w, c), fine_tune=phase)
            self._built[kind, phase] = model.eval() if kind.startswith("torch") else model
        return self._built[kind, phase]


@pytest.fixture(scope="module", params=ENTRIES, ids=lambda e: e.key)
def transfer(request, tmp_path_factory):
    return Transfer(request.param, tmp_path_factory.mktemp(request.param.key))


@pytest.mark.parametrize("phase", [False, True], ids=["frozen", "fine_tune"])
def test_trainable_parameters_as_the_book_freezes_them(transfer, phase):
    params, frozen, fine_tuned = EXPECTED[transfer.entry.key]
    trainable = fine_tuned if phase else frozen
    assert (transfer.elab[phase].root.total_params(), transfer.elab[phase].root.trainable_params()) == (params, trainable)
    torch_model = transfer.model("torch", phase)
    assert (count_torch(torch_model), count_torch_trainable(torch_model)) == (params, trainable)
    if transfer.entry.torch_builder():
        reference = transfer.model("torch_reference", phase)
        assert (count_torch(reference), count_torch_trainable(reference)) == (params, trainable)
    ours, reference = transfer.model("keras", phase), transfer.model("keras_reference", phase)
    for model in (ours, reference):
        assert _size(model.trainable_weights) == trainable
    # the frozen weights, and the batch norms' moving statistics (never trainable in Keras), tensor for tensor
    assert sorted(tuple(w.shape) for w in ours.non_trainable_weights) == \
        sorted(tuple(w.shape) for w in reference.non_trainable_weights)
    assert sorted(tuple(w.shape) for w in ours.trainable_weights) == \
        sorted(tuple(w.shape) for w in reference.trainable_weights)


def _kernel(shape: tuple, fan_in: int, relu: bool, rng) -> np.ndarray:
    """A kernel that keeps the activations' size (He et al.: variance 2 / fan in before a ReLU, 1 / fan
    in for a depthwise convolution, which its pointwise one follows without a ReLU between)."""
    return rng.normal(0, np.sqrt((2 if relu else 1) / fan_in), shape).astype(np.float32)


def _vector(shape: tuple, scale: bool, rng) -> np.ndarray:
    """Batch-norm scales and variances in [0.5, 1.5); biases, shifts and means in [-0.05, 0.05)."""
    return (rng.uniform(0.5, 1.5, shape) if scale else rng.uniform(-0.05, 0.05, shape)).astype(np.float32)


def _images(shape: tuple, seed: int) -> np.ndarray:
    """Two RGB images of 0 to 255, channels first, the second darker."""
    rng = np.random.default_rng(seed)
    return np.stack([rng.uniform(0, 255, shape), rng.uniform(0, 120, shape)]).astype(np.float32)


def _set_keras_weights(model, x: np.ndarray, seed: int) -> None:
    """New weights for a Keras model (kernels (h, w, in, out), a depthwise one (h, w, in, 1), Dense
    (in, out)); the last layer's kernel then scaled so that its largest logit on x is 3, where a
    softmax or sigmoid is neither saturated nor flat."""
    import keras

    rng = np.random.default_rng(seed)
    values = []
    for w in model.weights:
        shape = tuple(w.shape)
        if len(shape) >= 2:
            depthwise = len(shape) == 4 and shape[-1] == 1 and shape[-2] > 1
            values.append(_kernel(shape, int(np.prod(shape[:2] if depthwise else shape[:-1])), not depthwise, rng))
        else:
            values.append(_vector(shape, w.path.endswith(("gamma", "moving_variance")), rng))
    model.set_weights(values)
    last = model.layers[-1]
    features = np.asarray(keras.Model(model.inputs[0], last.input)(x.transpose(0, 2, 3, 1), training=False))
    kernel, bias = last.get_weights()
    last.set_weights([kernel * 3 / np.abs(features @ kernel).max(), bias])


def _set_torch_weights(model, x: np.ndarray, seed: int) -> None:
    """The same for a PyTorch model: kernels (out, in / groups, h, w) and (out, in), a depthwise one
    (C, 1, h, w); the last Linear scaled the same way."""
    import torch

    rng = np.random.default_rng(seed)
    state = {}
    for name, t in model.state_dict().items():
        shape = tuple(t.shape)
        if not t.is_floating_point():
            state[name] = t
        elif len(shape) >= 2:
            depthwise = len(shape) == 4 and shape[1] == 1 and shape[2] * shape[3] > 1
            state[name] = torch.from_numpy(_kernel(shape, int(np.prod(shape[1:])), not depthwise, rng))
        else:
            state[name] = torch.from_numpy(_vector(shape, name.endswith(("weight", "running_var")), rng))
    model.load_state_dict(state)
    last = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
    seen = []
    hook = last.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0] @ module.weight.T))
    training = model.training
    model.eval()
    with torch.no_grad():
        model(torch.from_numpy(x))
        last.weight.mul_(3 / seen[0].abs().max())
    hook.remove()
    model.train(training)


def _close(a: np.ndarray, b: np.ndarray, what: str) -> float:
    diff = float(np.abs(a - b).max())
    assert diff <= TOLERANCE, f"{what}: max abs difference {diff:.3g}"
    return diff


def test_outputs_equal_the_references(transfer):
    """The references' weights in the generated models give the references' outputs; the Keras
    weights moved into the generated PyTorch model give them too. The two images' outputs must
    differ, or nothing is compared."""
    import torch

    x = _images(transfer.input_shape, seed=12)
    reference = transfer.model("keras_reference", False)
    _set_keras_weights(reference, x, seed=11)
    expected = np.asarray(reference(x.transpose(0, 2, 3, 1), training=False))
    assert np.ptp(expected, axis=0).max() > 0.02, "the reference's outputs hardly depend on the image"
    ours = transfer.model("keras", False)
    load_keras_reference(ours, reference)
    _close(keras_outputs(ours, x)[0], expected, "Keras vs the Keras reference")
    torch_model = transfer.model("torch", False)
    keras_to_torch(ours, torch_model)
    _close(torch_outputs(torch_model, x)[0], expected, "PyTorch (the Keras weights) vs the Keras reference")
    if transfer.entry.torch_builder():
        reference = transfer.model("torch_reference", False)
        _set_torch_weights(reference, x, seed=13)
        with torch.no_grad():
            expected = reference(torch.from_numpy(x)).numpy()
        assert np.ptp(expected, axis=0).max() > 0.02, "the reference's outputs hardly depend on the image"
        load_torch_reference(torch_model, reference)
        _close(torch_outputs(torch_model, x)[0], expected, "PyTorch vs the PyTorch reference")


def test_a_frozen_base_computes_the_same_in_training(transfer):
    """With the base frozen, its batch norms normalize with their moving statistics in training mode
    too (Keras' rule, kept by the generated PyTorch model's train()): in training mode both frameworks
    give what they give in evaluation. (A base without batch norms differs in training only by
    dropout; tests/test_bases.py checks trainable batch norms in training mode.)"""
    if not any(type(m).__name__ == "BatchNorm2d" for m in transfer.model("torch", False).modules()):
        pytest.skip("no batch norm")
    import torch

    x = _images(transfer.input_shape, seed=15)
    torch_model = transfer.model("torch", False)
    _set_torch_weights(torch_model, x, seed=14)
    keras_model = transfer.model("keras", False)
    torch_to_keras(torch_model, keras_model)
    evaluated = torch_outputs(torch_model, x)[0]
    torch_model.train()
    with torch.no_grad():
        trained = torch_model(torch.from_numpy(x)).numpy()
    torch_model.eval()
    _close(trained, evaluated, "PyTorch: training mode vs evaluation")
    _close(np.asarray(keras_model(x.transpose(0, 2, 3, 1), training=True)), evaluated, "Keras in training mode")
    unfrozen = transfer.model("torch", True)  # the control: a trainable batch norm uses the batch's statistics
    unfrozen.load_state_dict(torch_model.state_dict())
    unfrozen.train()
    with torch.no_grad():
        assert float(np.abs(unfrozen(torch.from_numpy(x)).numpy() - evaluated).max()) > 0.02
    unfrozen.eval()


def test_the_feature_extraction_notebooks_classifier():
    """cifar10_vgg16 with `units = 256` is the classifier that Transfer_Learning_VGG16_for_CIFAR10.ipynb
    trains on the base's outputs: 512 * 256 + 256 = 131,328 and 256 * 10 + 10 = 2,570 parameters on
    the 14,714,688 of the frozen base."""
    elab = load(str(ROOT / "specs" / "cifar10_vgg16.arch"), {"units": 256})
    assert (elab.root.total_params(), elab.root.trainable_params()) == (14_848_586, 133_898)
