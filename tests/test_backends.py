"""The backends on every construct of the language: a spec that uses them all gives the same
outputs in PyTorch and Keras; names from a spec cannot break or inject into generated code."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from archdsl.api import generate, load
from archdsl.runtime.interop import torch_to_keras

from .frameworks import (
    ROOT,
    count_keras,
    count_torch,
    every_output,
    import_path,
    keras_outputs,
    randomize_batchnorm,
    sample_input,
    torch_outputs,
)


def build(tmp_path, source: str, sets: dict | None = None, name: str = "spec"):
    spec = tmp_path / f"{name}.arch"
    spec.write_text(textwrap.dedent(source))
    elab = load(str(spec), sets)
    paths = {}
    for target in ("torch", "keras"):
        path = tmp_path / f"{name}_{target}.py"
        path.write_text(generate(elab, target))
        paths[target] = path
    tm = import_path(paths["torch"], f"{tmp_path.name}_{name}_torch")
    km = import_path(paths["keras"], f"{tmp_path.name}_{name}_keras")
    return elab, tm, km, paths


def assert_parity(elab, tm, km, input_shape=None, tol=1e-4):
    torch_model = every_output(tm.build_model())  # eval mode, auxiliary outputs too
    keras_model = km.build_model()
    total = elab.root.total_params()
    assert count_torch(torch_model) == total == count_keras(keras_model)
    randomize_batchnorm(torch_model)
    torch_to_keras(torch_model, keras_model)
    x = sample_input(input_shape or tm.INPUT_SHAPE)
    expected, got = torch_outputs(torch_model, x), keras_outputs(keras_model, x)
    assert len(expected) == len(got) == len(elab.outputs)
    for (name, inst), a, b in zip(elab.outputs, expected, got):
        assert a.shape[1:] == tuple(inst.out_shape.dims), name
        assert float(np.abs(a - b).max()) <= tol, name


def test_kitchen_sink_parity(tmp_path):
    source = (ROOT / "tests" / "data" / "kitchen_sink.arch").read_text()
    elab, tm, km, paths = build(tmp_path, source)
    assert_parity(elab, tm, km)
    text = paths["torch"].read_text()
    for helper in ("class Concat", "class Residual", "class Scale", "class SeparableConv2d", "class Conv2dSame"):
        assert helper in text  # nested composites and `same` with stride 2 use the small helper modules


@pytest.mark.parametrize("sets", [{"width": 8, "classes": 3}, {"width": 24}])
def test_network_parameters_change_the_model(tmp_path, sets):
    source = (ROOT / "tests" / "data" / "kitchen_sink.arch").read_text()
    elab, tm, km, _ = build(tmp_path, source, sets)
    assert elab.args["width"] == sets["width"]
    assert_parity(elab, tm, km)


POOLS = """
network Pools {
    input [3, 24, 24]
    concat {
        branch { maxpool(3, stride = 2, pad = 1) }
        branch { maxpool(3, stride = 2, ceil = true) }
        branch { avgpool(3, stride = 2, pad = 1) }
        branch { avgpool(3, stride = 2, ceil = true) }
        branch { avgpool(3, stride = 2, pad = same) }
        branch { maxpool(2, stride = 2, pad = same) }
        branch { conv(4, 4, stride = 2, pad = same) }
        branch { conv(4, 3, stride = 2, pad = 1) }
        branch { dwconv(5, stride = 2, pad = 2, multiplier = 3, bias = false) }
        branch { sepconv(6, 3, stride = 2, pad = same, bias = false) }
        branch { zeropad([1, 0, 1, 0]) conv(4, 3, stride = 2, dilation = 1) }
        branch { adaptive_avgpool(12) }
    }
    lrn(3, alpha = 0.001, beta = 0.5, k = 2)
    output pooled = adaptive_avgpool(5)
    residual(drop_path = 0.2) { conv(48, 3, pad = 1, groups = 16) bn(eps = 0.001) gelu }
    output maps
}
"""


def test_padding_and_pooling_semantics_agree(tmp_path):
    elab, tm, km, _ = build(tmp_path, POOLS)
    assert [str(inst.out_shape) for _, inst in elab.outputs] == ["[48, 5, 5]", "[48, 12, 12]"]
    assert_parity(elab, tm, km)


def test_flatten_then_dense_and_bn_on_features(tmp_path):
    source = """
    network Head {
        input [6, 5, 7]
        flatten bn dense(9) silu dropout(0.1) dense(4, bias = false) softmax
    }
    """
    elab, tm, km, _ = build(tmp_path, source)
    assert_parity(elab, tm, km)


def test_open_input_size(tmp_path):
    source = """
    network Open(classes = 5) {
        input [3, ?, ?]
        conv(8, 3, stride = 2, pad = 1) relu6 avgpool(global) flatten dense(classes)
    }
    """
    elab, tm, km, _ = build(tmp_path, source)
    assert tm.INPUT_SHAPE == (3, None, None)
    assert_parity(elab, tm, km, input_shape=(3, 20, 28))


def test_choice_and_lets_with_expressions(tmp_path):
    source = """
    block B(c, deep = false, k = c * 2) {
        let mid = max(4, make_divisible(k * 0.75, 4))
        if deep and mid > 4 { conv(mid, 3, pad = 1) hardswish conv(c, 1) } else { conv(c, 1) }
        { conv(c, 1) hardsigmoid } * (2 if deep else 0)
    }
    network Choose(w = 1.5) {
        input [3, 16, 16]
        B(round(8 * w), deep = true)
        B(4)
        avgpool(2) flatten dense(3) tanh
    }
    """
    elab, tm, km, _ = build(tmp_path, source)
    assert_parity(elab, tm, km)


HOSTILE = '''
block nn(self, x = 1, name = 2) {
    forward: conv(self, 3, pad = 1)
    class: bn
    eval: relu
    from: { conv(self, 1) relu } * x
}
block F(print) {
    nn(print, name = 3)
}
network torch(classes = 4, F = 8) {
    input [3, 8, 8]
    def: F(F)
    lambda: avgpool(global)
    flatten
    return: dense(classes)
    output yield
}
'''


def test_spec_names_cannot_break_or_inject_into_generated_code(tmp_path):
    elab, tm, km, paths = build(tmp_path, HOSTILE)
    for path in paths.values():
        tree = ast.parse(path.read_text())
        strings = [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)]
        assert not any("import os" in s for s in strings)
    assert_parity(elab, tm, km)
    ruff = subprocess.run([sys.executable, "-m", "ruff", "check", "--isolated", *map(str, paths.values())],
                          check=False, capture_output=True, text=True)
    assert ruff.returncode == 0, ruff.stdout


def test_spec_path_cannot_inject_into_header(tmp_path):
    evil = tmp_path / 'x"""\nimport os\n#.arch'
    evil.write_text("network N {\n    input [3, 4, 4]\n    conv(2, 1)\n}\n")
    elab = load(str(evil))
    for target in ("torch", "keras"):
        code = generate(elab, target)
        tree = ast.parse(code)
        assert not any(isinstance(n, (ast.Import, ast.ImportFrom)) and any(a.name == "os" for a in n.names)
                       for n in ast.walk(tree))
        assert code.splitlines()[0].startswith("# Generated by archdsl from ")


def test_normalization_scaling_and_cropping_layers(tmp_path):
    source = """
    network NewLayers {
        input [3, 20, 20]
        rescale(0.5, offset = 0.1) normalize([0.4, 0.5, 0.6], [0.2, 0.3, 0.25])
        conv(8, 3) layernorm(eps = 1e-6) layerscale(0.5) gelu
        crop([1, 2, 0, 3])
        { layernorm layerscale crop(1) rescale(2.0) normalize(0.1, 2.0) } * 1
        avgpool(global) flatten layernorm dense(3)
    }
    """
    elab, tm, km, _ = build(tmp_path, source)
    assert elab.root.total_params() == 224 + 16 + 8 + 16 + 8 + 16 + 27
    assert_parity(elab, tm, km)


def test_batch_norm_with_only_a_scale_or_a_shift(tmp_path):
    source = """
    network PartialBN {
        input [3, 12, 12]
        conv(8, 3, bias = false) bn(eps = 0.001, gamma = false) relu
        conv(8, 3) bn(beta = false) bn(gamma = false, beta = false)
        avgpool(global) flatten dense(2)
    }
    """
    elab, tm, km, _ = build(tmp_path, source)
    assert elab.root.total_params() == 216 + 8 + 584 + 8 + 18
    assert_parity(elab, tm, km)


def test_option_a_shortcut_with_zero_channels(tmp_path):
    source = """
    block Basic(c, stride = 1) {
        residual {
            conv(c, 3, stride = stride, pad = 1, bias = false) bn relu conv(c, 3, pad = 1, bias = false) bn
        } shortcut if stride != 1 or in.channels != c {
            avgpool(1, stride = stride) zeropad_channels([(c - in.channels) // 2, (c - in.channels + 1) // 2])
        }
        relu
    }
    network OptionA {
        input [3, 16, 16]
        conv(4, 3, pad = 1) Basic(4) Basic(8, stride = 2) Basic(16, stride = 2)
        avgpool(global) flatten dense(10)
    }
    """
    elab, tm, km, _ = build(tmp_path, source)
    assert_parity(elab, tm, km)


def test_whole_floats_become_integers_in_generated_code(tmp_path):
    """`c / 2` is a float in Python even when whole: counts and sizes are passed through int()."""
    source = """
    block B(c, n) {
        let mid = c / 2
        conv(mid, 3, pad = 1) relu
        { conv(c * 1.0, [1, 3 / 1], pad = [0, 1]) } * (n / 2)
    }
    network Floats(width = 1.5) {
        input [3, 12, 12]
        B(8 * 2, 4)
        B(16, 4.0)
        adaptive_avgpool(14)
        avgpool(global) flatten dense(10 * width // 1)
    }
    """
    elab, tm, km, paths = build(tmp_path, source)
    assert "range(int(n / 2))" in paths["torch"].read_text()
    assert_parity(elab, tm, km)


def test_drop_path_runs_in_training_and_is_identity_in_eval(tmp_path):
    import torch

    source = """
    network DropPathNet {
        input [3, 8, 8]
        conv(4, 3, pad = 1)
        residual(drop_path = 0.5) { conv(4, 3, pad = 1) }
        { residual(drop_path = 0.3) { conv(4, 1) } } * 2
    }
    """
    elab, tm, km, _ = build(tmp_path, source)
    assert_parity(elab, tm, km)  # eval: no branch dropped
    x = sample_input((3, 8, 8), batch=16)
    model = tm.build_model().train()
    assert model(torch.from_numpy(x)).shape == (16, 4, 8, 8)
    assert km.build_model()(x.transpose(0, 2, 3, 1), training=True).shape == (16, 8, 8, 4)


def test_for_loop_index_reaches_the_body(tmp_path):
    source = """
    block B(c, rate) {
        residual(drop_path = rate) { conv(c, 3, pad = 1) bn relu }
    }
    network Loop(blocks = 3) {
        input [3, 16, 16]
        conv(8, 3, pad = 1)
        stage: for i in range(blocks) {
            B(8, 0.1 * i / blocks)
        }
        for j in range(2) { conv(8 * (j + 1), 1) relu }
    }
    """
    elab, tm, km, paths = build(tmp_path, source)
    rates = [inst.args["rate"] for inst in elab.root.walk() if inst.kind == "B"]
    assert rates == [0.0, 0.1 / 3, 0.2 / 3]
    assert [str(i.out_shape) for i in elab.root.walk() if i.path.startswith("group1.") and i.kind == "conv"] == [
        "[8, 16, 16]", "[16, 16, 16]"]
    assert "for j in range(2):" in paths["torch"].read_text()
    assert_parity(elab, tm, km)



DAG = """
# named tensors, blocks with a second tensor input, add/concat of tensors, a residual in the middle
# of named statements, and tensor names that are Python keywords or names generated code uses
block Cell(filters, prev: tensor, shrink = false) {
    assert (prev.height != in.height) == shrink, "shrink says whether prev is larger"
    lambda = prev avgpool(2 if shrink else 1) conv(filters, 1)
    x = in relu conv(filters, 3, pad = 1) bn
    inputs = add(x, lambda)
    self = in conv(filters, 1)
    residual { conv(filters, 3, pad = 1) } shortcut { conv(filters, 1) }
    channels1 = bn
    concat(inputs, self, channels1, lambda)
}

block Pad(c) {
    # used at two sizes: the PyTorch class takes in.height as a constructor argument
    zeropad([in.height % 2, 1, in.width % 2, 1])
    conv(c, 2)
}

network N(classes = 5) {
    input [3, 16, 16]
    stem: conv(8, 3, stride = 2, pad = 1)
    s0 = bn
    s1 = Pad(8)
    c1 = Cell(8, prev = s0)
    c2 = s1 maxpool(1) Cell(8, prev = c1)
    c2 maxpool(2)
    class = Cell(8, prev = c2, shrink = true)
    Pad(16)
    output aux = avgpool(global) flatten dense(classes)
    r = class conv(16, 1)
    concat(class, r)
    conv(8, 1)
    output logits = avgpool(global) flatten dense(classes)
}
"""


def test_named_tensors_and_two_input_blocks(tmp_path):
    elab, tm, km, paths = build(tmp_path, DAG)
    assert_parity(elab, tm, km)
    torch_code = paths["torch"].read_text()
    assert "def forward(self, inputs: torch.Tensor, prev: torch.Tensor)" in torch_code
    assert "in_height: int" in torch_code  # Pad is used at heights 8 and 4
    assert "class_ = self.cell3(" in torch_code and "self_ = " in torch_code and "lambda_ = " in torch_code
    ruff = subprocess.run([sys.executable, "-m", "ruff", "check", "--isolated", *map(str, paths.values())],
                          check=False, capture_output=True, text=True)
    assert ruff.returncode == 0, ruff.stdout


POWERS = """
network P(a = 2, b = 3) {
    input [3, 8, 8]
    conv(int(a ** 2 + (-a) ** 2 + a ** -1 * 2), 1, stride = int(a ** b ** 2 - (-2) ** 2 + 2.0 ** -a + 2 ** a))
}
"""


def test_powers_are_written_as_ruff_format_writes_them(tmp_path):
    spec = tmp_path / "powers.arch"
    spec.write_text(POWERS)
    elab = load(str(spec))
    for target in ("torch", "keras"):
        path = tmp_path / f"powers_{target}.py"
        path.write_text(generate(elab, target))
        assert "a**b**2" in path.read_text() and "(-a) ** 2" in path.read_text()
        fmt = subprocess.run([sys.executable, "-m", "ruff", "format", "--isolated", "--check", str(path)],
                             check=False, capture_output=True, text=True)
        assert fmt.returncode == 0, fmt.stdout + fmt.stderr


GROUPS = """
block B(filters, groups = 1) {
    conv(filters, 3, pad = 1, groups = groups) bn relu
}

network Groups(g = 1) {
    input [8, 10, 10]
    B(8, g)
    B(16, 8)
    B(16, 4)
    avgpool(global) flatten
    dense(3)
}
"""


@pytest.mark.parametrize("g, first", [(1, "Conv2D"), (8, "DepthwiseConv2D"), (2, "GroupedConv2D")])
def test_keras_groups_from_a_parameter_take_the_layer_that_fits(tmp_path, g, first):
    """A convolution whose groups are a block parameter gets its Keras layer as the model is built:
    Conv2D for one group, DepthwiseConv2D (with its depth multiplier) for one input channel per
    group, GroupedConv2D otherwise; for whatever value build_model() is given, and with the
    PyTorch model's outputs."""
    elab, tm, km, _ = build(tmp_path, GROUPS, {"g": g})
    kinds = [type(layer).__name__ for layer in km.build_model().layers if "conv" in layer.name]
    assert kinds == [first, "DepthwiseConv2D", "GroupedConv2D"]
    assert_parity(elab, tm, km)
    # the module compiled at g = 1 builds every other setting too, with the same weights layout
    _, tm1, km1, _ = build(tmp_path, GROUPS, {"g": 1}, name="at_one")
    torch_model, keras_model = tm1.build_model(g=g).eval(), km1.build_model(g=g)
    assert [type(layer).__name__ for layer in keras_model.layers if "conv" in layer.name] == kinds
    randomize_batchnorm(torch_model)
    torch_to_keras(torch_model, keras_model)
    x = sample_input(tm1.INPUT_SHAPE)
    assert float(np.abs(torch_outputs(torch_model, x)[0] - keras_outputs(keras_model, x)[0]).max()) <= 1e-4


ONE_GROUP = """
block B(filters, groups = 1) {
    conv(filters, 3, pad = 1, groups = groups) bn relu
}

block Stage(filters, groups = 1) {
    B(filters, groups)
    B(filters, groups = groups)
}

network OneGroup(width = 8) {
    input [8, 10, 10]
    Stage(width)
    Stage(16, 1)
    avgpool(global) flatten
    dense(3)
}
"""


def test_keras_groups_every_call_leaves_at_one_take_conv2d(tmp_path):
    """A block's groups that every call in the module leaves at 1, whatever build_model() is given
    (ResNet's Bottleneck, which ResNeXt shares), is a Conv2D with the block's groups: no
    conv2d_groups() nor GroupedConv2D in the module, and the block function still honours groups."""
    elab, tm, km, paths = build(tmp_path, ONE_GROUP)
    text = paths["keras"].read_text()
    assert "conv2d_groups" not in text and "GroupedConv2D" not in text
    assert "groups=groups" in text
    assert_parity(elab, tm, km)
    import keras

    inputs = keras.Input((10, 10, 8))
    direct = keras.Model(inputs, km.b(inputs, 8, groups=2, name="direct"))
    assert [(type(layer).__name__, layer.groups) for layer in direct.layers if "conv" in layer.name] == [("Conv2D", 2)]
    assert direct.count_params() == 8 * 4 * 9 + 8 + 4 * 8
    for spec in ("resnet50", "resnet", "se_resnet50", "wide_resnet", "resnet_keras"):
        module = (Path(__file__).resolve().parent.parent / "generated" / "keras" / f"{spec}.py").read_text()
        assert "GroupedConv2D" not in module and "conv2d_groups" not in module, spec


def test_keras_groups_from_a_network_parameter_stay_chosen_as_the_model_is_built(tmp_path):
    """Groups a network parameter reaches (build_model(g=...) may change them) keep conv2d_groups()."""
    _, _, _, paths = build(tmp_path, GROUPS)
    assert "conv2d_groups(" in paths["keras"].read_text()


AUXILIARY = """
block Head(classes) {
    avgpool(global) flatten dropout(0.5) dense(classes)
}

network Aux(classes = 5) {
    input [3, 16, 16]
    conv(8, 3, pad = 1) bn relu
    auxiliary output early = Head(classes)
    conv(16, 3, stride = 2, pad = 1) bn relu
    output features
    auxiliary output late = Head(classes)
    avgpool(global) flatten
    output logits = dense(classes)
}
"""


def test_auxiliary_outputs_are_computed_while_training_only(tmp_path):
    """`auxiliary output`: PyTorch's train mode computes and returns every output, in spec order;
    eval mode neither runs the auxiliary heads nor returns them (as torchvision's GoogLeNet and
    Inception-v3 do); Keras' functional model computes them all; the weights map either way."""
    import torch

    elab, tm, km, _ = build(tmp_path, AUXILIARY)
    assert elab.auxiliary == ("early", "late")
    for module in (tm, km):
        assert module.OUTPUT_NAMES == ("early", "features", "late", "logits")
        assert module.AUXILIARY_OUTPUTS == ("early", "late")
    model = tm.build_model()
    calls = []
    for name in ("early", "late"):
        getattr(model, name).register_forward_hook(lambda m, i, o, name=name: calls.append(name))
    x = torch.from_numpy(sample_input(tm.INPUT_SHAPE))
    train = model.train()(x)
    assert [tuple(o.shape) for o in train] == [(2, 5), (2, 16, 8, 8), (2, 5), (2, 5)] and calls == ["early", "late"]
    calls.clear()
    with torch.no_grad():
        evaluated = model.eval()(x)
    assert [tuple(o.shape) for o in evaluated] == [(2, 16, 8, 8), (2, 5)] and calls == []
    assert len(km.build_model().outputs) == 4
    assert_parity(elab, tm, km)  # every output, the auxiliary ones included (every_output)


def test_every_name_the_templates_define_is_kept_from_spec_names():
    """A block, parameter or label may not take a name the generated module defines (a prelude class
    or function, a module constant): backends.common.GENERATED lists them all, and py_name renames
    a spec's name that would shadow one."""
    from archdsl.backends.common import GENERATED, py_name

    folder = ROOT / "archdsl" / "backends" / "templates"
    defined = set()
    for template in folder.glob("*.j2"):
        for m in re.finditer(r"^(?:(?:class|def) (\w+)|([A-Z_]+) = )", template.read_text(), re.MULTILINE):
            defined.add(m.group(1) or m.group(2))
    assert {"Conv2dSame", "conv2d", "padded", "build_model", "AUXILIARY_OUTPUTS"} <= defined
    assert defined <= GENERATED, sorted(defined - GENERATED)
    assert all(py_name(n) != n for n in defined)


def test_a_layer_whose_arguments_read_a_parameter_is_a_module_not_a_call_in_forward(tmp_path):
    """forward() sees none of the class's parameters: `leaky_relu(s)` with a block parameter s is an
    nn.LeakyReLU built in __init__ (it was F.leaky_relu(x, s) in forward(): a NameError)."""
    elab, tm, km, paths = build(tmp_path, """
    block B(s = 0.1) {
        conv(4, 3) leaky_relu(s) channel_slice(1, in.channels - 1)
    }
    network N {
        input [3, 8, 8]
        B(0.2)
        leaky_relu(0.3)
    }
    """)
    code = paths["torch"].read_text()
    assert "nn.LeakyReLU(s" in code and "ChannelSlice(1, in_channels - 1)" in code
    assert "F.leaky_relu(x, 0.3" in code  # constants: applied in forward()
    assert_parity(elab, tm, km)
