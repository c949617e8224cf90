"""The five networks of the first issue from generated/: torchvision checkpoints load into them by
name, and the converter refuses a model of another spec. (Counts, forward passes and parity of
every network, these five included, are checked in tests/test_zoo.py.)"""

from __future__ import annotations

from typing import ClassVar

import pytest

from archdsl.compiler import load
from archdsl.interop import torch_to_keras

from .frameworks import (
    ROOT,
    import_path,
    randomize_batchnorm,
    sample_input,
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
