"""The five networks of the first issue, generated for both frameworks: they build, run, have
exactly the reference's parameter count, and compute the same function in PyTorch and Keras."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pytest

from archdsl.compiler import load
from archdsl.interop import torch_to_keras

from .frameworks import (
    ROOT,
    count_keras,
    count_torch,
    import_path,
    keras_outputs,
    randomize_batchnorm,
    sample_input,
    torch_outputs,
)


def _torchvision(name: str):
    import torchvision

    builders = {
        "alexnet": lambda: torchvision.models.alexnet(weights=None),
        "vgg16": lambda: torchvision.models.vgg16(weights=None),
        "googlenet": lambda: torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=False),
        "resnet50": lambda: torchvision.models.resnet50(weights=None),
    }
    return builders[name]()


# name -> (network class, reference parameter count or None to count a torchvision model)
NETWORKS = {
    "lenet5": ("LeNet5", 61_706),
    "alexnet": ("AlexNet", None),
    "vgg16": ("VGG16", None),
    "googlenet": ("GoogLeNet", None),
    "resnet50": ("ResNet50", None),
}


class Built:
    """A network's generated modules, its PyTorch and Keras models, and the checker's view."""

    cache: ClassVar[dict[str, Built]] = {}

    def __init__(self, name: str) -> None:
        self.name = name
        self.elab = load(str(ROOT / "specs" / f"{name}.arch"))
        self.torch_module = import_path(ROOT / "generated" / "torch" / f"{name}.py")
        self.keras_module = import_path(ROOT / "generated" / "keras" / f"{name}.py")
        self.torch_model = self.torch_module.build_model().eval()
        assert type(self.torch_model).__name__ == NETWORKS[name][0]
        self.keras_model = self.keras_module.build_model()

    @classmethod
    def get(cls, name: str) -> Built:
        if name not in cls.cache:
            cls.cache.clear()  # one network's models in memory at a time
            cls.cache[name] = Built(name)
        return cls.cache[name]


@pytest.mark.parametrize("name", NETWORKS)
def test_parameter_count_equals_reference(name):
    built = Built.get(name)
    expected = NETWORKS[name][1]
    if expected is None:
        expected = count_torch(_torchvision(name))
    assert built.elab.root.total_params() == expected
    assert count_torch(built.torch_model) == expected
    assert count_keras(built.keras_model) == expected


@pytest.mark.parametrize("name", NETWORKS)
def test_forward_pass_gives_every_named_output(name):
    built = Built.get(name)
    expected = {out: tuple(inst.out_shape.dims) for out, inst in built.elab.outputs}
    assert tuple(expected) == built.torch_module.OUTPUT_NAMES == built.keras_module.OUTPUT_NAMES
    x = sample_input(built.torch_module.INPUT_SHAPE)
    for outs, framework in ((torch_outputs(built.torch_model, x), "torch"),
                            (keras_outputs(built.keras_model, x), "keras")):
        assert len(outs) == len(expected), framework
        for (out_name, shape), value in zip(expected.items(), outs):
            assert value.shape == (2, *shape), (framework, out_name)
            assert np.isfinite(value).all(), (framework, out_name)


@pytest.mark.parametrize("name", NETWORKS)
def test_torch_weights_in_keras_give_the_same_outputs(name):
    built = Built.get(name)
    randomize_batchnorm(built.torch_model)
    torch_to_keras(built.torch_model, built.keras_model)
    x = sample_input(built.torch_module.INPUT_SHAPE, seed=1)
    expected = torch_outputs(built.torch_model, x)
    got = keras_outputs(built.keras_model, x)
    for out_name, a, b in zip(built.torch_module.OUTPUT_NAMES, expected, got):
        assert np.abs(a).max() > 1e-3, f"{out_name}: outputs too small to compare"
        diff = float(np.abs(a - b).max())
        assert diff <= 1e-4, f"{name}.{out_name}: max abs difference {diff:.3g}"


def test_converter_refuses_a_model_of_another_spec():
    lenet = Built.get("lenet5")
    other = import_path(ROOT / "generated" / "keras" / "alexnet.py").build_model()
    with pytest.raises(ValueError):
        torch_to_keras(lenet.torch_model, other)


@pytest.mark.parametrize("name", ["alexnet", "googlenet"])
def test_torchvision_weights_load_by_name_and_give_torchvision_outputs(name):
    """Where the spec labels its layers as torchvision names them, the generated model's state_dict
    has torchvision's keys, so a torchvision checkpoint loads as it is."""
    import torch

    built = Built.get(name)
    reference = _torchvision(name).eval()
    randomize_batchnorm(reference)
    missing = built.torch_model.load_state_dict(reference.state_dict(), strict=True)
    assert not missing.missing_keys and not missing.unexpected_keys
    x = torch.from_numpy(sample_input(built.torch_module.INPUT_SHAPE, seed=2))
    with torch.no_grad():
        expected = reference(x)  # in eval mode torchvision's GoogLeNet returns the logits only
        got = built.torch_model(x)
        got = got[-1] if isinstance(got, tuple) else got
        assert float((expected - got).abs().max()) <= 1e-5
        if name == "googlenet":  # the auxiliary heads tap the same places as torchvision's
            features = reference.inception4a(reference.maxpool3(reference.inception3b(reference.inception3a(
                reference.maxpool2(reference.conv3(reference.conv2(reference.maxpool1(reference.conv1(x)))))))))
            assert float((reference.aux1(features) - built.torch_model(x)[0]).abs().max()) <= 1e-5
