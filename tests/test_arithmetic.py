"""The lecture arithmetic is exact (issue 4, items 2 and 5).

For every registry entry (so every spec in specs/), at its test settings, the numbers archdsl
computes without any framework are compared with what the generated PyTorch model does:

- parameters: `sum(p.numel())` of the model, and of each layer's module;
- MACs: a forward-hook counter over the model's nn.Conv2d and nn.Linear modules (the generated
  helpers Conv2dSame and SeparableConv2d are, or contain, nn.Conv2d), in total and per layer;
- activations: the shape of each layer's real output tensor (batch 1). Layers that are modules are
  seen by forward hooks; the activations and flatten that forward() calls as functions are seen by
  a TorchFunctionMode and matched to the rows of the module whose forward() calls them.

Then the totals of well-known networks at their default input are pinned to published figures
(torchvision's model docs, the papers, keras.applications), each with its source.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import pytest
import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from archdsl.api import generate, load
from archdsl.core.graph import Elaborated
from archdsl.core.layers import LAYERS
from archdsl.reports.summary import Row, rows
from archdsl.tools.zoo import Entry, read_registry

from .frameworks import ROOT, every_output, import_path

ENTRIES = read_registry(ROOT)
REGISTRY = {e.key: e for e in ENTRIES}

# What generated forward() code calls for a layer that is not a module (archdsl/backends/torch.py,
# _ACT_FUNCTIONAL and leaky_relu), by the function's __name__, which is the layer type's name, or the
# layer type FUNCTION_LAYERS gives it.
FUNCTIONAL = frozenset({"relu", "relu6", "tanh", "sigmoid", "softmax", "silu", "hardswish", "hardsigmoid", "gelu",
                        "leaky_relu", "flatten", "interpolate"})
FUNCTION_LAYERS = {"interpolate": "upsample"}  # upsample(like = t): F.interpolate(x, size=t.shape[-2:])


def _layer_type(row: Row) -> str:
    return LAYERS[row.layer].name  # an alias (swish, linear, batchnorm) as its type


def _parent(path: str) -> str:
    return path.rpartition(".")[0]


# Measuring a generated model -------------------------------------------------------------------

class Recorder(TorchFunctionMode):
    """One forward pass, watched: for each module (by object) how often it ran, the shapes it got and
    gave and the MACs of its own weights; for each module path the activation functions its own
    forward() called, in order, with their output shapes."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.name: dict[int, str] = {}
        for path, module in model.named_modules(remove_duplicate=False):
            self.name.setdefault(id(module), path)
        self.stack: list[str] = []
        self.calls: Counter[int] = Counter()
        self.inputs: dict[int, tuple[int, ...] | None] = {}
        self.outputs: dict[int, tuple[int, ...] | None] = {}
        self.macs: Counter[int] = Counter()
        self.functional: dict[str, list[tuple[str, tuple[int, ...]]]] = defaultdict(list)
        self.handles = []
        for module in model.modules():
            self.handles.append(module.register_forward_pre_hook(self._enter))
            self.handles.append(module.register_forward_hook(self._leave))

    def _enter(self, module: nn.Module, args) -> None:
        self.stack.append(self.name[id(module)])

    def _leave(self, module: nn.Module, args, out) -> None:
        self.stack.pop()
        key = id(module)
        self.calls[key] += 1
        self.inputs[key] = tuple(args[0].shape) if args and isinstance(args[0], torch.Tensor) else None
        self.outputs[key] = tuple(out.shape) if isinstance(out, torch.Tensor) else None
        if isinstance(out, torch.Tensor):
            per_sample = math.prod(out.shape[1:])  # output elements of one sample
            if isinstance(module, nn.Conv2d):  # grouped and depthwise too: each output sees C_in / groups channels
                kh, kw = module.kernel_size
                self.macs[key] += per_sample * (module.in_channels // module.groups) * kh * kw
            elif isinstance(module, nn.Linear):
                self.macs[key] += per_sample * module.in_features

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        name = getattr(func, "__name__", None)
        if name in FUNCTIONAL and isinstance(out, torch.Tensor) and self.stack:
            self.functional[self.stack[-1]].append((FUNCTION_LAYERS.get(name, name), tuple(out.shape)))
        return out

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def run(model: nn.Module, shape: tuple[int, ...]) -> Recorder:
    """One forward pass of a random input, recorded. One thread: a batch of one is too small to share,
    and threads that wait for each other are slow on a busy machine."""
    recorder = Recorder(model)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.no_grad(), recorder:
            model(torch.randn(*shape))
    finally:
        torch.set_num_threads(threads)
        recorder.remove()
    return recorder


@dataclass
class Seen:
    """What one module of the generated model did in the forward pass."""

    params: int  # its parameters, children included
    macs: int  # MACs the hook counted in it and its children
    calls: int
    in_shape: tuple[int, ...] | None
    out_shape: tuple[int, ...] | None


@dataclass(repr=False)
class Measured:
    entry: Entry
    elab: Elaborated
    table: list[Row]
    model_params: int
    model_macs: int
    modules: dict[str, Seen]  # every module path of the generated model ("" is the model)
    functional: dict[str, list[tuple[str, tuple[int, ...]]]]
    uncounted_weights: list[str] = field(default_factory=list)  # weights the MAC counter cannot see

    def __repr__(self) -> str:  # short, for assertion messages
        return f"Measured({self.entry.key})"


def measure(entry: Entry, tmp) -> Measured:
    elab = load(str(entry.spec_path(ROOT)), {**entry.sets, **entry.test_sets})
    source = tmp / f"{entry.key}.py"
    source.write_text(generate(elab, "torch"), encoding="utf-8")
    torch.manual_seed(0)
    # eval mode, but with the auxiliary heads computed: the summary counts them
    model = every_output(import_path(source, f"arithmetic_{entry.key}").build_model())
    recorder = run(model, (1, *elab.root.in_shape.dims))
    modules = {}
    for path, module in model.named_modules(remove_duplicate=False):
        key = id(module)
        modules[path] = Seen(sum(p.numel() for p in module.parameters()),
                             sum(recorder.macs[id(m)] for m in module.modules()),
                             recorder.calls[key], recorder.inputs.get(key), recorder.outputs.get(key))
    uncounted = [f"{path}.{name}" for path, module in model.named_modules()
                 if not isinstance(module, (nn.Conv2d, nn.Linear))
                 for name, p in module.named_parameters(recurse=False) if p.dim() >= 2]
    return Measured(entry, elab, rows(elab), sum(p.numel() for p in model.parameters()),
                    sum(recorder.macs.values()), modules, dict(recorder.functional), uncounted)


@pytest.fixture(scope="module", params=ENTRIES, ids=lambda e: e.key)
def measured(request, tmp_path_factory):
    return measure(request.param, tmp_path_factory.mktemp(request.param.key))


def _module_rows(m: Measured) -> list[Row]:
    return [r for r in m.table if r.path in m.modules]


def _function_rows(m: Measured) -> list[Row]:
    return [r for r in m.table if r.path not in m.modules]


# Item 2: the numbers equal what the generated model does ---------------------------------------

def test_parameters_equal_the_generated_model(measured):
    m = measured
    for r in _module_rows(m):
        assert m.modules[r.path].params == r.params, f"{m.entry.key}: {r.path} ({r.layer})"
    for r in _function_rows(m):
        assert r.params == 0, f"{m.entry.key}: {r.path} ({r.layer}) has parameters but no module"
    ours, table = m.elab.root.total_params(), sum(r.params for r in m.table)
    assert m.model_params == ours == table, m.entry.key


def test_macs_equal_a_forward_hook_count(measured):
    m = measured
    assert not m.uncounted_weights, f"{m.entry.key}: weights outside nn.Conv2d/nn.Linear: {m.uncounted_weights}"
    for r in _module_rows(m):  # conv, dwconv, sepconv and dense rows: their counts; every other layer: 0
        assert m.modules[r.path].macs == r.macs, f"{m.entry.key}: {r.path} ({r.layer})"
    for r in _function_rows(m):
        assert r.macs == 0, f"{m.entry.key}: {r.path} ({r.layer})"
    ours, table = m.elab.root.total_macs(), sum(r.macs for r in m.table)
    assert m.model_macs == ours == table, m.entry.key
    assert m.model_macs > 0


def test_activations_equal_the_output_tensor_sizes(measured):
    m = measured
    checked = 0
    for r in _module_rows(m):
        seen = m.modules[r.path]
        where = f"{m.entry.key}: {r.path} ({r.layer})"
        assert seen.calls == 1, f"{where}: the module ran {seen.calls} times"
        assert seen.out_shape == (1, *r.out_shape.dims), where
        assert math.prod(seen.out_shape) == r.activations, where
        assert seen.in_shape == (1, *r.in_shape.dims), where
        checked += 1
    # layers written as function calls in forward(): the calls each module's own forward() made, in
    # order, are exactly the rows under that module's path that have no module of their own
    expected = defaultdict(list)
    for r in _function_rows(m):
        if _layer_type(r) == "identity":  # no code at all: the tensor goes on as it is
            assert r.out_shape == r.in_shape
            checked += 1
            continue
        owner = _parent(r.path)
        assert owner in m.modules, f"{m.entry.key}: {r.path} ({r.layer}) is neither a module nor in one"
        expected[owner].append((_layer_type(r), (1, *r.out_shape.dims)))  # activations = their numel
    layer_paths = {r.path for r in m.table}
    for path in m.modules:
        if path in layer_paths:  # a layer's module (nn.ReLU calls F.relu inside, nn.Flatten .flatten)
            continue
        assert m.functional.get(path, []) == expected.get(path, []), f"{m.entry.key}: calls in {path or 'the model'}"
        checked += len(expected.get(path, []))
    assert checked == len(m.table), f"{m.entry.key}: {len(m.table) - checked} rows were not compared"


def test_every_spec_is_measured():
    specs = {p.stem for p in (ROOT / "specs").glob("*.arch")}
    assert specs and specs <= {e.spec for e in ENTRIES}


def test_the_counter_reproduces_torchvision_figures():
    """The hook counter above, run on torchvision's own models, gives torchvision's published GFLOPS
    (multiply-adds; torchvision/models/resnet.py and mobilenetv2.py, `_ops`): the same convention."""
    import torchvision

    for builder, gmacs in ((torchvision.models.resnet50, 4.089), (torchvision.models.mobilenet_v2, 0.301)):
        recorder = run(builder(weights=None).eval(), (1, 3, 224, 224))
        assert round(sum(recorder.macs.values()) / 1e9, 3) == gmacs, builder.__name__


# Item 5: published totals of well-known networks -----------------------------------------------

@dataclass(frozen=True)
class Published:
    """A registry entry's totals at its default input as a source gives them. A count is exact (an
    int) or rounded as published ("5.3 M", "4.089 G": compared to that many decimals)."""

    key: str
    params: int | str | None
    macs: str | None
    source: str
    sets: dict = field(default_factory=dict)  # where the source measured at another input than the spec's default
    params_without: tuple[str, ...] = ()  # outputs (auxiliary heads) the source's count leaves out
    macs_without: tuple[str, ...] = ()


# torchvision: the model docs (pytorch.org/vision/stable/models.html and each model's page) list for
# the IMAGENET1K_V1 weights `num_params` exactly and "GFLOPS", which are multiply-adds of the
# convolution and linear weights, at the weights' evaluation crop; the docs round to 2 decimals, the
# weights' meta (`_ops` in torchvision/models/<family>.py) gives 3, used here (torchvision 0.29).
TV = "torchvision model docs, {}_Weights.IMAGENET1K_V1 meta (num_params, _ops)"
PUBLISHED = [
    Published("alexnet", 61_100_840, "0.714 G", TV.format("AlexNet")),  # models/alexnet.py
    Published("vgg11", 132_863_336, "7.609 G", TV.format("VGG11")),  # models/vgg.py
    Published("vgg16", 138_357_544, "15.47 G", TV.format("VGG16")),  # models/vgg.py
    Published("vgg16_bn", 138_365_992, "15.47 G", TV.format("VGG16_BN")),  # models/vgg.py
    Published("vgg19", 143_667_240, "19.632 G", TV.format("VGG19")),  # models/vgg.py
    Published("resnet18", 11_689_512, "1.814 G", TV.format("ResNet18")),  # models/resnet.py
    Published("resnet34", 21_797_672, "3.664 G", TV.format("ResNet34")),  # models/resnet.py
    Published("resnet50", 25_557_032, "4.089 G", TV.format("ResNet50")),  # models/resnet.py (docs: 4.09)
    Published("resnet101", 44_549_160, "7.801 G", TV.format("ResNet101")),  # models/resnet.py
    Published("resnet152", 60_192_808, "11.514 G", TV.format("ResNet152")),  # models/resnet.py
    Published("wide_resnet50_2", 68_883_240, "11.398 G", TV.format("Wide_ResNet50_2")),  # models/resnet.py
    Published("resnext50_32x4d", 25_028_904, "4.23 G", TV.format("ResNeXt50_32X4D")),  # models/resnet.py
    Published("resnext101_32x8d", 88_791_336, "16.414 G", TV.format("ResNeXt101_32X8D")),  # models/resnet.py
    # models/googlenet.py: the checkpoint's model has no auxiliary heads (aux_logits=False), and
    # GFLOPS are counted in eval mode, where they do not run
    Published("googlenet", 6_624_904, "1.498 G", TV.format("GoogLeNet"), params_without=("aux1", "aux2"),
              macs_without=("aux1", "aux2")),
    # models/inception.py: the checkpoint keeps the auxiliary head (its parameters count), but it
    # runs only in training, so GFLOPS leave it out
    Published("inception_v3", 27_161_264, "5.713 G", TV.format("Inception_V3"), macs_without=("AuxLogits",)),
    Published("mobilenet_v2", 3_504_872, "0.301 G", TV.format("MobileNet_V2")),  # models/mobilenetv2.py
    Published("densenet121", 7_978_856, "2.834 G", TV.format("DenseNet121")),  # models/densenet.py
    Published("densenet169", 14_149_480, "3.36 G", TV.format("DenseNet169")),  # models/densenet.py
    Published("densenet201", 20_013_928, "4.291 G", TV.format("DenseNet201")),  # models/densenet.py
    Published("squeezenet1_0", 1_248_424, "0.819 G", TV.format("SqueezeNet1_0")),  # models/squeezenet.py
    Published("squeezenet1_1", 1_235_496, "0.349 G", TV.format("SqueezeNet1_1")),  # models/squeezenet.py
    # models/efficientnet.py, each at its weights' crop (= the spec's default resolution, except B2:
    # torchvision evaluates B2 at 288, the paper at 260)
    Published("efficientnet_b0", 5_288_548, "0.386 G", TV.format("EfficientNet_B0")),
    Published("efficientnet_b1", 7_794_184, "0.687 G", TV.format("EfficientNet_B1")),
    Published("efficientnet_b2", 9_109_994, "1.088 G", TV.format("EfficientNet_B2"), sets={"resolution": 288}),
    Published("efficientnet_b3", 12_233_232, "1.827 G", TV.format("EfficientNet_B3")),
    Published("efficientnet_b4", 19_341_616, "4.394 G", TV.format("EfficientNet_B4")),
    Published("efficientnet_b5", 30_389_784, "10.266 G", TV.format("EfficientNet_B5")),
    Published("efficientnet_b6", 43_040_704, "19.068 G", TV.format("EfficientNet_B6")),
    Published("efficientnet_b7", 66_347_960, "37.746 G", TV.format("EfficientNet_B7")),
    Published("efficientnet_v2_s", 21_458_488, "8.366 G", TV.format("EfficientNet_V2_S")),
    Published("convnext_tiny", 28_589_128, "4.456 G", TV.format("ConvNeXt_Tiny")),  # models/convnext.py
    # The papers, as rounded there. Simonyan and Zisserman 2014, Table 2: configurations A, A-LRN,
    # B, C, D, E have 133, 133, 133, 134, 138, 144 million parameters.
    Published("vgg11", "133 M", None, "VGG paper, Table 2 (A)"),
    Published("vgg11_lrn", "133 M", None, "VGG paper, Table 2 (A-LRN)"),
    Published("vgg13", "133 M", None, "VGG paper, Table 2 (B)"),
    Published("vgg16_conv1x1", "134 M", None, "VGG paper, Table 2 (C)"),
    Published("vgg16_config", "138 M", None, "VGG paper, Table 2 (D)"),
    Published("vgg19", "144 M", None, "VGG paper, Table 2 (E)"),
    # Howard et al. 2017 (MobileNets), Table 6: 1.0 MobileNet-224 569 million mult-adds, 4.2 million
    # parameters; 0.50 MobileNet-224 149 and 1.3. keras.applications.MobileNet(weights=None) has
    # 4,231,976 trainable weights (4,253,864 with the batch norms' moving statistics).
    Published("mobilenet_v1", "4.2 M", "569 M", "MobileNets paper, Table 6 (1.0 MobileNet-224)"),
    Published("mobilenet_v1", 4_231_976, None, "keras.applications.MobileNet, trainable weights"),
    Published("mobilenet_v1_050", "1.3 M", "149 M", "MobileNets paper, Table 6 (0.50 MobileNet-224)"),
    # Zoph et al. 2018 (NASNet), ImageNet results in the mobile setting: NASNet-A (4 @ 1056), 5.3M
    # parameters, 564M mult-adds;
    # keras.applications.NASNetMobile(weights=None): 5,326,716 weights, of which 36,738 are the batch
    # norms' moving statistics (not trainable) and 5,289,978 trainable.
    Published("nasnet_mobile", "5.3 M", "564 M", "NASNet paper, mobile setting (NASNet-A (4 @ 1056))"),
    Published("nasnet_mobile", 5_289_978, None, "keras.applications.NASNetMobile, trainable weights"),
    # Chollet 2017 (Xception), Table 3: Xception 22,855,952 parameters (keras.applications.Xception's
    # trainable weights, too).
    Published("xception", 22_855_952, None, "Xception paper, Table 3"),
    # Tan and Le 2019 (EfficientNet), Table 2: B0 5.3M parameters, 0.39B FLOPS ("FLOPS" there are
    # multiply-adds: the paper compares with ResNet-50's 4.1B).
    Published("efficientnet_b0", "5.3 M", "0.39 G", "EfficientNet paper, Table 2 (B0)"),
    # Huang et al. 2017 (DenseNet), Table 2: DenseNet-BC (L=100, k=12) 0.8M parameters.
    Published("densenet_bc_100_12", "0.8 M", None, "DenseNet paper, Table 2"),
    # He et al. 2015 (ResNet), Table 6: ResNet-110 on CIFAR-10, 1.7M parameters.
    Published("resnet110_cifar", "1.7 M", None, "ResNet paper, Table 6"),
    # Zagoruyko and Komodakis 2016 (Wide ResNets), CIFAR results: WRN-28-10, 36.5M parameters.
    Published("wrn28_10", "36.5 M", None, "Wide ResNet paper, CIFAR results"),
]

_UNITS = {"K": 1e3, "M": 1e6, "G": 1e9}


def _agrees(count: int, figure: int | str) -> bool:
    if isinstance(figure, int):
        return count == figure
    number, unit = figure.split()
    decimals = len(number.partition(".")[2])
    return round(count / _UNITS[unit], decimals) == float(number)


def _total(elab: Elaborated, what: str, without: tuple[str, ...]) -> int:
    outputs = {name for name, _ in elab.outputs}
    assert set(without) <= outputs, f"{without} are not all outputs of the network ({sorted(outputs)})"
    table = rows(elab)
    kept = [r for r in table if r.path.split(".")[0] not in without]
    assert len(kept) < len(table) or not without
    return sum(getattr(r, what) for r in kept)


@pytest.mark.parametrize("pub", PUBLISHED, ids=lambda p: f"{p.key}-{p.source.split(',')[0].split()[0]}")
def test_totals_equal_published_figures(pub):
    entry = REGISTRY[pub.key]
    elab = load(str(entry.spec_path(ROOT)), {**entry.sets, **pub.sets})
    assert pub.params is not None or pub.macs is not None
    if pub.params is not None:
        params = _total(elab, "params", pub.params_without)
        assert _agrees(params, pub.params), f"{pub.key}: {params:,} parameters, {pub.source} says {pub.params}"
    if pub.macs is not None:
        macs = _total(elab, "macs", pub.macs_without)
        assert _agrees(macs, pub.macs), f"{pub.key}: {macs:,} MACs, {pub.source} says {pub.macs}"
