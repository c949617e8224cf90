"""Weights into a base: the interop loaders fill a part of a generated model (`base: VGG16() through
block5` is the PyTorch submodule `model.base`, the Keras layers `base-...`) from a reference built
without its top (torchvision's `vgg16().features`, timm's `num_classes=0, global_pool=""` or
`features_only`, keras.applications' `include_top=False`), randomly initialised: nothing is
downloaded. After loading, the base computes the reference's outputs; a reference that does not fit
is a ValueError naming the first tensor or layer that does not line up."""

from __future__ import annotations

import numpy as np
import pytest

from archdsl.api import generate, load
from archdsl.runtime.interop import load_keras_reference, load_torch_reference

from .frameworks import ROOT, import_path, randomize_batchnorm

DATA = ROOT / "tests" / "data"


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """generated(spec, target): the generated module of tests/data/<spec>.arch, compiled once."""
    tmp = tmp_path_factory.mktemp("base_weights")
    modules = {}

    def get(spec: str, target: str):
        if (spec, target) not in modules:
            path = tmp / f"{spec}_{target}.py"
            path.write_text(generate(load(str(DATA / f"{spec}.arch")), target))
            modules[spec, target] = import_path(path, f"base_weights_{spec}_{target}")
        return modules[spec, target]

    return get


@pytest.fixture(scope="module")
def vgg16_features():
    """torchvision's VGG-16 less its top (its `features`), randomly initialised; built once."""
    import torch
    import torchvision

    torch.manual_seed(0)
    return torchvision.models.vgg16(weights=None).features


def _torch_input(seed: int = 0):
    import torch

    return torch.from_numpy(np.random.default_rng(seed).standard_normal((2, 3, 32, 32)).astype(np.float32))


def _torch_max_difference(base, reference) -> float:
    import torch

    base.eval()
    reference.eval()
    x = _torch_input()
    with torch.no_grad():
        ours, theirs = base(x), reference(x)
    assert ours.shape == theirs.shape
    assert float(theirs.abs().max()) > 1e-3  # not a vanishing output that anything would match
    return float((ours - theirs).abs().max())


def test_torchvision_vgg16_features_fill_a_vgg16_base(generated, vgg16_features):
    import torch

    model = generated("vgg16_base", "torch").build_model()
    reference = vgg16_features  # the whole vgg16 less its top
    head = model.head.weight.detach().clone()
    load_torch_reference(model, reference, part="base")
    assert _torch_max_difference(model.base, reference) <= 1e-6
    assert torch.equal(model.head.weight, head)  # the head is left alone
    # `part` is the submodule itself
    other = generated("vgg16_base", "torch").build_model()
    load_torch_reference(other.base, reference)
    assert all(torch.equal(a, b) for a, b in zip(other.base.state_dict().values(), model.base.state_dict().values()))


def test_timm_resnet18_without_its_top_fills_a_resnet_base(generated):
    import timm
    import torch

    torch.manual_seed(0)
    model = generated("resnet18_base", "torch").build_model()
    reference = timm.create_model("resnet18", pretrained=False, num_classes=0, global_pool="")
    randomize_batchnorm(reference, seed=1)  # the running statistics must come across too
    load_torch_reference(model, reference, part="base")
    assert _torch_max_difference(model.base, reference) <= 1e-5
    last_bn = model.base.get_submodule("layer4.basic_block2.0.bn2")
    assert torch.equal(last_bn.running_var, reference.layer4[1].bn2.running_var)


def test_timm_features_only_fills_a_base_with_several_feature_maps(generated):
    """`c3, c4, c5 = base: ResNet(depth = 18) through layer2, layer3, layer4` against timm's
    features_only model with out_indices (2, 3, 4): the same weights, the same three maps."""
    import timm
    import torch

    torch.manual_seed(0)
    model = generated("resnet18_features", "torch").build_model()
    reference = timm.create_model("resnet18", pretrained=False, features_only=True, out_indices=(2, 3, 4))
    randomize_batchnorm(reference, seed=4)
    load_torch_reference(model, reference, part="base")
    model.eval()
    reference.eval()
    x = _torch_input()
    with torch.no_grad():
        ours, theirs = model.base(x), reference(x)
    assert [tuple(t.shape) for t in ours] == [tuple(t.shape) for t in theirs] == [
        (2, 128, 4, 4), (2, 256, 2, 2), (2, 512, 1, 1)]
    assert max(float((a - b).abs().max()) for a, b in zip(ours, theirs)) <= 1e-5


def test_torch_reference_that_does_not_fit_names_the_first_mismatch(generated, vgg16_features):
    import torch
    import torchvision

    model = generated("vgg16_base", "torch").build_model()
    features = vgg16_features
    with_top = torch.nn.Sequential(features, torch.nn.Flatten(), torch.nn.Linear(512, 10))
    with pytest.raises(ValueError) as e:  # a classifier is left over
        load_torch_reference(model, with_top, part="base")
    assert ("26 tensors here, 28 in the reference; tensor 27 in order: nothing here, "
            "2.weight (10, 512) in the reference (a reference with its top?") in str(e.value)
    vgg13_features = torchvision.models.vgg.make_layers(torchvision.models.vgg.cfgs["B"])  # vgg13().features
    with pytest.raises(ValueError) as e:  # VGG-13: two convolutions in block3 where VGG-16 has three
        load_torch_reference(model, vgg13_features, part="base")
    assert ("26 tensors here, 20 in the reference; tensor 13 in order: block3.group1.2.0.weight "
            "(256, 256, 3, 3) here, 15.weight (512, 256, 3, 3) in the reference") in str(e.value)
    with pytest.raises(ValueError, match="the model has no part 'backbone' \\(its top-level parts: base, head\\)"):
        load_torch_reference(model, features, part="backbone")


def _randomize_keras_batchnorm(model, seed: int) -> None:
    import keras

    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.get_weights()[0].shape[0]
            layer.set_weights([rng.random(n) + 0.5, rng.random(n) - 0.5, rng.random(n) - 0.5, rng.random(n) + 0.5])


def _keras_base(model, part: str = "base"):
    """A model from the generated model's input to the output of its part's last layer."""
    import keras

    inside = [layer for layer in model.layers if layer.name == part or layer.name.startswith(part + "-")]
    return keras.Model(model.input, inside[-1].output)


@pytest.mark.parametrize("spec, family, size", [("vgg16_base", "VGG16", 32), ("xception_base", "Xception", 71)])
def test_keras_applications_without_top_fill_a_base(generated, spec, family, size):
    import keras

    model = generated(spec, "keras").build_model()
    reference = getattr(keras.applications, family)(include_top=False, weights=None, input_shape=(size, size, 3))
    _randomize_keras_batchnorm(reference, seed=2)
    load_keras_reference(model, reference, part="base")
    images = np.random.default_rng(0).uniform(0, 255, (2, size, size, 3)).astype(np.float32)
    # the generated Xception spec preprocesses (tf mode) before its base; VGG16's has no preprocessing
    preprocessed = images / 127.5 - 1 if family == "Xception" else images
    ours = np.asarray(_keras_base(model)(images, training=False))
    theirs = np.asarray(reference(preprocessed, training=False))
    assert ours.shape == theirs.shape and np.abs(theirs).max() > 1e-3
    assert np.abs(ours - theirs).max() <= 1e-4 * max(1.0, np.abs(theirs).max())
    # the whole model is the reference under the head: global pooling (Xception), the dense layer
    head = model.get_layer("head")
    features = theirs.mean(axis=(1, 2)) if family == "Xception" else theirs.reshape(2, -1)
    logits = features @ head.kernel.numpy() + head.bias.numpy()
    expected = np.asarray(keras.ops.softmax(logits)) if family == "Xception" else logits
    np.testing.assert_allclose(np.asarray(model(images, training=False)), expected, rtol=1e-4, atol=1e-5)


def test_keras_reference_that_does_not_fit_names_the_first_mismatch(generated):
    import keras

    model = generated("vgg16_base", "keras").build_model()
    reference = keras.applications.VGG16(include_top=False, weights=None, input_shape=(32, 32, 3))
    with pytest.raises(ValueError) as e:  # no part: the generated head is left over
        load_keras_reference(model, reference)
    assert ("14 layers with weights here, 13 in the reference; at depth 14 (layers with weights from the "
            "input): head [(512, 3), (3,)] here, nothing in the reference") in str(e.value)
    with_top = keras.Sequential([reference, keras.layers.Flatten(), keras.layers.Dense(10, name="predictions")])
    with pytest.raises(ValueError) as e:
        load_keras_reference(model, with_top, part="base")
    assert ("13 layers with weights here, 14 in the reference; at depth 14 (layers with weights from the "
            "input): nothing here, predictions [(512, 10), (10,)] in the reference (a reference with its top? "
            "build it with include_top=False)") in str(e.value)
    narrow = keras.Sequential([keras.Input((32, 32, 3))] + [keras.layers.Conv2D(8, 3) for _ in range(13)])
    with pytest.raises(ValueError, match=r"base-block1-group1-0-0 <- \S+: shapes do not fit, \(3, 3, 3, 64\) here, "
                                         r"\(3, 3, 3, 8\) in the reference"):
        load_keras_reference(model, narrow, part="base")
    with pytest.raises(ValueError, match="the model has no part 'backbone'"):
        load_keras_reference(model, reference, part="backbone")


def test_keras_part_after_other_layers_with_weights(generated):
    """A part is numbered from its own first layer: a stem with weights before the base does not
    shift it. The reference is another generated model's base, as a model of its own."""
    source = generated("digits_transfer", "keras").build_model()
    rng = np.random.default_rng(3)
    for layer in source.layers:
        layer.set_weights([rng.random(w.shape).astype(np.float32) + 0.5 for w in layer.weights])
    reference = _keras_base(source)
    model = generated("stem_base", "keras").build_model()
    load_keras_reference(model, reference, part="base")
    theirs = {layer.name: layer.get_weights() for layer in source.layers if layer.weights}
    ours = [layer for layer in model.layers if layer.weights and layer.name.startswith("base-")]
    assert len(ours) == 38
    for layer in ours:
        assert all(np.array_equal(a, b) for a, b in zip(layer.get_weights(), theirs[layer.name], strict=True))
    with pytest.raises(ValueError) as e:  # the whole model: the first to differ is the stem
        load_keras_reference(model, reference)
    assert ("41 layers with weights here, 38 in the reference; at depth 1 (layers with weights from the input): "
            "stem [(1, 1, 3, 3), (3,)] here, base-conv1 [(3, 3, 3, 16)] in the reference") in str(e.value)
