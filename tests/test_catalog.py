"""The layer catalog is the one place a layer is declared: every entry has what each part of the
compiler needs of it (a channel rule that agrees with its shape rule, a description, an emitter for
each backend, a weight-transfer rule where it has weights), and nothing else lists the layers."""

from __future__ import annotations

from pathlib import Path

import pytest

from archdsl import api
from archdsl.core.layers import IN, LAYERS, Chan, channels_of

SPECS = Path(__file__).resolve().parent.parent / "specs"
CANONICAL = sorted({t.name for t in LAYERS.values()})

# Every layer type, and the forms of its arguments that change its channels, on a map and on flat
# features where it takes them.
EVERY_LAYER = """
network Every(width = 4) {
    input [3, 20, 18]
    preprocess(caffe) normalize([0.5, 0.4, 0.3], 0.2) rescale(2, offset = 1)
    conv(8, 3, pad = 1, groups = 1) bn relu spatial_dropout(0.2)
    dropblock(5, 0.1)
    conv(width * 2, [3, 1], stride = 2, pad = same, groups = 2) bn(gamma = false) relu6
    dwconv(3, multiplier = 2) dwconv([1, 3], pad = valid) silu hardswish hardsigmoid gelu tanh sigmoid
    sepconv(12, 3, multiplier = 3, dilation = 2, pad = 2) leaky_relu(0.2) identity lrn(3)
    upsample(2) channel_shuffle(3) upsample(like = in, mode = bilinear)
    deconv(width * 3, [2, 3], stride = 2, pad = [0, 1], output_pad = [1, 0], groups = 3)
    t = crop(like = in) channel_slice(1, 10)
    p, q = t split([4, 6])
    r, s = t split(2)
    concat(q, p, s, r) zeropad_channels([1, 3]) zeropad([1, 0, 2, 1]) crop([1, 0, 0, 1]) zeropad_channels(2)
    maxpool(2, ceil = true) avgpool(3, stride = 1, pad = 1, count_pad = false) layernorm layerscale
    adaptive_avgpool([2, 3]) flatten
    dense(10) dropout(0.1) bn layernorm dense(7, bias = false) softmax
}
"""


def _uses(elab) -> list:
    out = []

    def walk(inst) -> None:
        if inst.kind in LAYERS and inst.block is None:
            out.append(inst)
        for child in inst.children:
            walk(child)

    walk(elab.root)
    return out


@pytest.fixture(scope="module")
def every(tmp_path_factory):
    path = tmp_path_factory.mktemp("catalog") / "every.arch"
    path.write_text(EVERY_LAYER)
    return api.load(str(path))


def test_the_every_layer_spec_uses_every_layer(every):
    assert {inst.kind for inst in _uses(every)} >= set(CANONICAL)


@pytest.mark.parametrize("name", CANONICAL)
def test_every_entry_has_a_channel_rule_and_a_description(name):
    entry = LAYERS[name]
    assert isinstance(entry.channels, Chan)
    assert entry.category and entry.doc


@pytest.mark.parametrize("spec", ["every", "googlenet.arch", "densenet_cifar.arch", "efficientnet.arch",
                                  "resnet_cifar.arch", "xception.arch", "alexnet_paper.arch", "vgg16.arch"])
def test_channel_rules_agree_with_the_shape_rules(spec, every):
    """The symbolic rule, evaluated for each use, is the channel count shape inference gave it."""
    elab = every if spec == "every" else api.load(str(SPECS / spec))
    uses = _uses(elab)
    assert uses
    for inst in uses:
        got = channels_of(LAYERS[inst.kind].channels, inst.args, inst.in_shape)
        assert got == inst.out_shape.dims[0], f"{spec}: {inst.path} ({inst.kind}): rule {got}, shape {inst.out_shape}"


def test_a_layer_that_changes_channels_says_so():
    """Only an entry's own rule says its channels are the input's: the layers that change them have
    another rule (the backends no longer fall back to the input's channels for a layer they do not know)."""
    changing = {name for name in CANONICAL if LAYERS[name].channels != IN}
    assert changing == {"conv", "dwconv", "sepconv", "deconv", "dense", "zeropad_channels", "flatten", "channel_slice",
                        "split"}


def test_drawings_describe_layers_from_the_catalog(every):
    descriptions = {inst.kind: LAYERS[inst.kind].description(inst.args) for inst in _uses(every)}
    assert descriptions["sepconv"] == "sepconv 3x3, 12, dilation 2x2"
    assert descriptions["deconv"] == "deconv 2x3/2, 12, groups 3"
    assert descriptions["dwconv"] in ("dwconv 3x3, x2", "dwconv 1x3")
    assert descriptions["dense"] in ("dense 10", "dense 7")
    assert descriptions["relu"] == "relu"


@pytest.mark.parametrize("name", CANONICAL)
def test_every_entry_has_an_emitter_for_each_backend_and_a_transfer_rule(name):
    """Adding a layer to the catalog without its emitters (or, with weights, the rule that moves them
    between the frameworks) fails here, not in a user's compile."""
    from archdsl.backends import keras, torch  # noqa: F401 - each registers its emitters
    from archdsl.backends.registry import KERAS, TORCH, TORCH_FACTS, TRANSFER

    assert name in TORCH, f"{name}: no PyTorch emitter (archdsl/backends/torch_emitters.py)"
    assert name in TORCH_FACTS
    assert name in KERAS, f"{name}: no Keras emitter (archdsl/backends/keras_emitters.py)"
    rules = [rule for rule in TRANSFER.values() if name in rule.layers]
    if LAYERS[name].weights:
        assert rules, f"{name} has weights but no transfer rule between PyTorch and Keras (@transfer)"
    else:
        assert not rules, f"{name} has no weights, yet a transfer rule names it"


def test_registering_an_unknown_or_doubled_layer_fails():
    from archdsl.backends.registry import keras_layer, torch_module

    with pytest.raises(ValueError, match="not a layer of the catalog"):
        torch_module("convolution")(lambda *a: None)
    with pytest.raises(ValueError, match="has an emitter already"):
        keras_layer("conv")(lambda *a: None)
    with pytest.raises(ValueError, match="alias"):
        keras_layer("linear")(lambda *a: None)


def test_no_backend_names_a_layer_kind():
    """The backends dispatch on the catalog's registry; no chain of conditions over layer kinds is left
    in the module walkers, interop or drawing (the emitters' files name the layers they register)."""
    import re

    package = Path(__file__).resolve().parent.parent / "archdsl"
    kinds = "|".join(sorted(CANONICAL, key=len, reverse=True))
    pattern = re.compile(rf"""(==|!=|\bin)\s*\(?\s*["']({kinds})["']""")
    for path in ("backends/torch.py", "backends/keras.py", "backends/common.py", "runtime/interop.py",
                 "reports/draw.py", "reports/summary.py"):
        text = re.sub(r"category\s*==\s*[\"'][a-z]+[\"']", "", (package / path).read_text(encoding="utf-8"))
        found = pattern.findall(text)  # (a category, as `conv`, is not a layer kind)
        assert not found, f"{path} compares against layer kinds: {found}"


SPATIAL = """
network Spatial(rate = 0.4) {
    input [16, 6, 5]
    spatial_dropout(rate)
}
"""


def test_spatial_dropout_drops_whole_channels_in_both_frameworks(tmp_path):
    """The layer added after the redesign (docs/internals.md): in training, each channel of each sample
    is zeroed whole or kept and scaled by 1 / (1 - rate), in PyTorch and in Keras; in inference it is
    the identity in both."""
    import numpy as np
    import torch

    from tests.frameworks import import_path

    spec = tmp_path / "spatial.arch"
    spec.write_text(SPATIAL)
    elab = api.load(str(spec))
    for target in ("torch", "keras"):
        (tmp_path / f"{target}_spatial.py").write_text(api.generate(elab, target))
    torch_model = import_path(tmp_path / "torch_spatial.py").build_model()
    keras_model = import_path(tmp_path / "keras_spatial.py").build_model()
    x = np.random.default_rng(0).uniform(1.0, 2.0, (64, 16, 6, 5)).astype("float32")
    torch.manual_seed(0)
    torch_model.train()
    with torch.no_grad():
        outputs = {"torch": torch_model(torch.from_numpy(x)).numpy()}
    outputs["keras"] = np.transpose(np.asarray(keras_model(np.transpose(x, (0, 2, 3, 1)), training=True)), (0, 3, 1, 2))
    for name, out in outputs.items():
        scaled = out / x
        per_channel = scaled.reshape(64, 16, -1)
        dropped = np.all(per_channel == 0, axis=2)
        whole = np.all(np.isclose(per_channel, 1 / 0.6, rtol=1e-5), axis=2)
        assert np.all(dropped | whole), f"{name}: a channel was partly dropped"
        assert 0.3 < dropped.mean() < 0.5, f"{name}: dropped {dropped.mean():.2f} of the channels, rate 0.4"
    torch_model.eval()
    with torch.no_grad():
        assert np.array_equal(torch_model(torch.from_numpy(x)).numpy(), x)
    assert np.array_equal(np.asarray(keras_model(np.transpose(x, (0, 2, 3, 1)), training=False)),
                          np.transpose(x, (0, 2, 3, 1)))


def test_the_catalog_splits_each_layers_parameters_into_weights_and_biases_as_pytorch_does(every, tmp_path):
    """LayerType.biases: for every layer of the every-layer spec, the biases are the elements of the
    generated PyTorch module's `bias` tensors (a norm's shift is one too) and the weights its others."""
    from archdsl.reports.summary import rows
    from tests.frameworks import import_path

    (tmp_path / "every_torch.py").write_text(api.generate(every, "torch"))
    model = import_path(tmp_path / "every_torch.py", "catalog_every_biases").build_model()
    found: dict[str, list[int]] = {}
    for name, p in model.named_parameters():
        path, _, leaf = name.rpartition(".")
        counts = found.setdefault(path.split(".")[0], [0, 0])
        counts[leaf == "bias"] += p.numel()
    table = rows(every)
    assert {LAYERS[r.layer].name for r in table if r.biases} == {"conv", "dwconv", "sepconv", "deconv", "dense",
                                                                   "bn", "layernorm"}
    for r in table:
        assert 0 <= r.biases <= r.params and r.weights + r.biases == r.params
        assert [r.weights, r.biases] == found.get(r.path, [0, 0]), f"{r.path} ({r.layer})"
