"""deconv, the transposed convolution (PyTorch's ConvTranspose2d): its shapes, parameters and MACs
against hand-computed numbers and PyTorch's own layer; the generated PyTorch and Keras models compute
the same with the weights moved either way, in Keras' own Conv2DTranspose (with a Cropping2D for the
padding) and in archdsl's ConvTranspose2D where Keras' refuses the arguments; its errors are located."""

from __future__ import annotations

import shutil
import subprocess
import sys
from fractions import Fraction

import numpy as np
import pytest
import torch  # before keras: the generated modules import it first too

from archdsl.api import load
from archdsl.core.graph import Shape
from archdsl.core.layers import LAYERS
from archdsl.runtime.interop import keras_to_torch, torch_to_keras

from .frameworks import count_keras, count_torch, keras_outputs, sample_input, torch_outputs
from .test_backends import assert_parity, build
from .test_errors import check_error, net


def _spec(tmp_path, body: str, input_shape: str = "[8, 7, 9]"):
    spec = tmp_path / "deconv.arch"
    spec.write_text(f"network D {{\n    input {input_shape}\n    {body}\n}}\n")
    return load(str(spec))


def _layer(elab):
    (inst,) = [i for i in elab.root.children if i.kind == "deconv"]
    return inst


# Shapes, parameters, MACs -----------------------------------------------------------------------

# (arguments, input [C, H, W], output [C, H, W], parameters, MACs), worked out by hand:
# out = (n - 1) * stride - 2 * pad + dilation * (kernel - 1) + output_pad + 1,
# parameters = C_in * (filters / groups) * kh * kw (+ filters), MACs = that product * H_in * W_in
HAND = [
    # U-Net's up-convolution: (7 - 1) * 2 + 2 = 14, (9 - 1) * 2 + 2 = 18
    ("64, 2, stride = 2", (128, 7, 9), (64, 14, 18), 128 * 64 * 4 + 64, 128 * 64 * 4 * 63),
    # an autoencoder's decoder: exactly twice the size, (7 - 1) * 2 - 2 + 3 + 1 = 14
    ("16, 3, stride = 2, pad = 1, output_pad = 1", (32, 7, 9), (16, 14, 18), 32 * 16 * 9 + 16, 32 * 16 * 9 * 63),
    # DCGAN's generator: (7 - 1) * 2 - 2 + 4 = 14
    ("3, 4, stride = 2, pad = 1, bias = false", (64, 7, 9), (3, 14, 18), 64 * 3 * 16, 64 * 3 * 16 * 63),
    # dilation 2 at stride 1: 7 - 1 + 2 * 2 + 1 = 11
    ("8, 3, dilation = 2", (4, 7, 9), (8, 11, 13), 4 * 8 * 9 + 8, 4 * 8 * 9 * 63),
    # groups 2: each input channel meets filters / groups = 3 kernels
    ("6, 3, stride = 2, groups = 2", (4, 7, 9), (6, 15, 19), 4 * 3 * 9 + 6, 4 * 3 * 9 * 63),
    # unequal kernel, stride, pad and output_pad: (7 - 1) * 2 - 2 + 3 + 1 = 14, (9 - 1) * 3 - 0 + 2 + 2 = 28
    ("5, [3, 2], stride = [2, 3], pad = [1, 0], output_pad = [1, 2]", (4, 7, 9), (5, 14, 28),
     4 * 5 * 6 + 5, 4 * 5 * 6 * 63),
]


@pytest.mark.parametrize(("args", "x", "y", "params", "macs"), HAND, ids=[h[0] for h in HAND])
def test_shapes_parameters_and_macs(tmp_path, args, x, y, params, macs):
    inst = _layer(_spec(tmp_path, f"deconv({args})", f"[{x[0]}, {x[1]}, {x[2]}]"))
    assert tuple(inst.out_shape.dims) == y
    assert (inst.params, inst.macs) == (params, macs)
    a = inst.args
    module = torch.nn.ConvTranspose2d(x[0], a["filters"], a["kernel"], stride=a["stride"], padding=a["pad"],
                                      output_padding=a["output_pad"], groups=a["groups"], bias=a["bias"],
                                      dilation=a["dilation"])
    assert sum(p.numel() for p in module.parameters()) == params
    assert tuple(module(torch.zeros(1, *x)).shape[1:]) == y


def test_open_sizes_and_the_receptive_field_window():
    entry = LAYERS["deconv"]
    args = {p.name: p.normal(v) for p, v in zip(entry.params, (16, 3, 2, 1, 1, 1, 2, True))}
    res = entry.infer(args, Shape((4, None, None)))
    assert res.shape.dims == (16, None, None)
    assert (res.params, res.macs) == (4 * 16 * 9 + 16, 0)
    assert res.window == (3, Fraction(1, 2))  # a dilated kernel of 5 over a stride of 2: ceil(5 / 2) input pixels
    assert entry.infer({**args, "stride": (1, 1), "output_pad": (0, 0), "dilation": (1, 1)}, Shape((4, 5, 5))).window == (3, 1)


def test_description_and_channel_rule(tmp_path):
    inst = _layer(_spec(tmp_path, "deconv(64, 2, stride = 2)", "[128, 7, 9]"))
    assert LAYERS["deconv"].description(inst.args) == "deconv 2x2/2, 64"
    inst = _layer(_spec(tmp_path, "deconv(6, [3, 1], groups = 2, dilation = 2)", "[4, 7, 9]"))
    assert LAYERS["deconv"].description(inst.args) == "deconv 3x1, 6, groups 2, dilation 2x2"


# The generated models ---------------------------------------------------------------------------

# (the layer, the Keras class written for it, whether a Cropping2D follows)
PARITY = [
    ("deconv(4, 2, stride = 2)", "layers.Conv2DTranspose", False),  # U-Net
    ("deconv(4, 3, stride = 2, pad = 1, output_pad = 1)", "layers.Conv2DTranspose", True),  # autoencoder
    ("deconv(4, 4, stride = 2, pad = 1)", "layers.Conv2DTranspose", True),  # DCGAN
    ("deconv(4, 3, dilation = 2)", "layers.Conv2DTranspose", False),
    ("deconv(4, 3, dilation = 2, pad = 1)", "layers.Conv2DTranspose", True),
    ("deconv(6, 3, stride = 2, pad = 1, output_pad = 1, groups = 2)", "ConvTranspose2D", False),
    ("deconv(4, 3, stride = 2, bias = false)", "layers.Conv2DTranspose", False),
    ("deconv(5, [3, 2], stride = [2, 3], pad = [1, 0], output_pad = [1, 2])", "layers.Conv2DTranspose", True),
    # the output padding reaching past the pad: rows that only the bias reaches
    ("deconv(4, 3, stride = 3, pad = 1, output_pad = 2)", "layers.Conv2DTranspose", True),
    # a kernel shorter than the stride: Keras' output_padding=None would make stride * n pixels
    ("deconv(4, 1, stride = 3)", "layers.Conv2DTranspose", False),
    # what Conv2DTranspose refuses: strides with a dilation, output_pad not below the stride
    ("deconv(4, 3, stride = 2, dilation = 2, pad = 2, output_pad = 1)", "ConvTranspose2D", False),
    ("deconv(4, 3, dilation = 3, pad = 1, output_pad = 2)", "ConvTranspose2D", False),
    ("deconv(6, [2, 3], stride = [3, 2], dilation = [1, 2], pad = [0, 2], output_pad = [2, 1], groups = 3)",
     "ConvTranspose2D", False),
]


@pytest.mark.parametrize(("layer", "keras_class", "crops"), PARITY, ids=[p[0] for p in PARITY])
def test_pytorch_and_keras_compute_the_same(tmp_path, layer, keras_class, crops):
    elab, tm, km, paths = build(tmp_path, f"network D {{\n    input [6, 5, 7]\n    {layer}\n}}\n")
    keras_code, torch_code = paths["keras"].read_text(), paths["torch"].read_text()
    assert f"{keras_class}(" in keras_code
    assert ("layers.Cropping2D(" in keras_code) == crops
    assert "nn.ConvTranspose2d(" in torch_code
    assert_parity(elab, tm, km, tol=1e-5)


def test_output_padding_is_written_only_where_keras_default_differs(tmp_path):
    """Keras' Conv2DTranspose without output_padding makes max(kernel, stride) - kernel pixels more than
    PyTorch: output_padding=0 is written where the (dilated) kernel is shorter than the stride, or where
    the spec does not say (a branch no use takes included)."""
    from archdsl.api import generate

    elab = _spec(tmp_path, """deconv(4, [3, 3], stride = [2, 2]) deconv(4, [1, 2], stride = 2)
    if false { deconv(4, [2, 1], stride = [1, 2]) } else { identity } deconv(4, 2, stride = 2, dilation = 1)""")
    code = "".join(generate(elab, "keras").split())
    assert "layers.Conv2DTranspose(4,(3,3),strides=(2,2),name=" in code
    assert "layers.Conv2DTranspose(4,(1,2),strides=2,output_padding=0,name=" in code
    assert "layers.Conv2DTranspose(4,(2,1),strides=(1,2),output_padding=0,name=" in code
    assert "layers.Conv2DTranspose(4,2,strides=2,name=" in code


def test_the_torch_model_is_pytorchs_transposed_convolution(tmp_path):
    elab, tm, km, _ = build(tmp_path, """
        network D {
            input [6, 5, 7]
            deconv(4, [3, 2], stride = [2, 3], pad = [1, 0], output_pad = [1, 2], groups = 2, dilation = [1, 2])
        }
    """)
    model = tm.build_model().eval()
    keras_model = km.build_model()
    torch_to_keras(model, keras_model)
    x = sample_input((6, 5, 7))
    layer = model.deconv1
    with torch.no_grad():
        expected = torch.nn.functional.conv_transpose2d(
            torch.from_numpy(x), layer.weight, layer.bias, stride=(2, 3), padding=(1, 0), output_padding=(1, 2),
            groups=2, dilation=(1, 2)).numpy()
    assert expected.shape[1:] == tuple(_layer(elab).out_shape.dims) == (4, 10, 23)  # (5 - 1) * 2 - 2 + 2 + 1 + 1, (7 - 1) * 3 + 2 + 2 + 1
    assert np.array_equal(torch_outputs(model, x)[0], expected)
    assert float(np.abs(keras_outputs(keras_model, x)[0] - expected).max()) <= 1e-5


BLOCKS = """
block Up(c, p = 1, s = 2) {
    deconv(c, 4, stride = s, pad = p) bn relu
}
block Grouped(c, g) {
    deconv(c, 3, pad = 1, groups = g, bias = false) bn
}
network Decoder(g = 2) {
    input [8, 4, 5]
    Up(8) Up(8, p = 0) Grouped(4, g) Up(4, p = 2, s = 3) Grouped(4, 1)
}
"""


def test_block_parameters_as_arguments(tmp_path):
    """Arguments from a block's parameters: the padding cropped as written, a stride from a parameter
    with output_padding written out (Keras' default would differ for a kernel shorter than the stride),
    groups from a parameter in archdsl's ConvTranspose2D (whatever build_model() is given)."""
    elab, tm, km, paths = build(tmp_path, BLOCKS)
    keras_code = "".join(paths["keras"].read_text().split())  # as one line, without spaces
    assert "layers.Cropping2D(p," in keras_code
    assert "layers.Conv2DTranspose(c,4,strides=s,output_padding=0," in keras_code
    assert "ConvTranspose2D(c,3,padding=1,groups=g,use_bias=False," in keras_code
    assert_parity(elab, tm, km, tol=1e-4)
    elab, tm, km, _ = build(tmp_path, BLOCKS, {"g": 4}, name="four")
    assert_parity(elab, tm, km, tol=1e-4)


def test_open_input_size(tmp_path):
    _, tm, km, _ = build(tmp_path, """
        network Open {
            input [4, ?, ?]
            deconv(6, 3, stride = 2, pad = 1, output_pad = 1) relu
            deconv(6, 3, stride = 2, pad = 2, output_pad = 1, groups = 3)
        }
    """)
    model, keras_model = tm.build_model().eval(), km.build_model()
    torch_to_keras(model, keras_model)
    for size in ((6, 5), (3, 8)):
        x = sample_input((4, *size))
        expected, got = torch_outputs(model, x)[0], keras_outputs(keras_model, x)[0]
        assert expected.shape[1:] == got.shape[1:] == (6, 4 * size[0] - 2, 4 * size[1] - 2)
        assert float(np.abs(expected - got).max()) <= 1e-5


def test_weights_go_back_from_keras(tmp_path):
    """keras_to_torch: the Keras model's own weights (random, both classes) put into the PyTorch model
    give its outputs; and back into Keras, the same weights."""
    elab, tm, km, _ = build(tmp_path, """
        network D {
            input [6, 5, 7]
            deconv(4, 3, stride = 2, pad = 1, output_pad = 1)
            deconv(6, [2, 3], stride = 2, dilation = [1, 2], groups = 2)
        }
    """)
    keras_model, model = km.build_model(), tm.build_model().eval()
    rng = np.random.default_rng(1)
    keras_model.set_weights([rng.standard_normal(w.shape).astype("float32") for w in keras_model.get_weights()])
    keras_to_torch(keras_model, model)
    assert count_torch(model) == count_keras(keras_model) == elab.root.total_params()
    x = sample_input((6, 5, 7))
    assert float(np.abs(torch_outputs(model, x)[0] - keras_outputs(keras_model, x)[0]).max()) <= 1e-4
    again = km.build_model()
    torch_to_keras(model, again)
    for a, b in zip(keras_model.get_weights(), again.get_weights()):
        assert np.array_equal(a, b)


def test_generated_code_is_ruff_formatted(tmp_path):
    _, _, _, paths = build(tmp_path, BLOCKS)
    ruff = [shutil.which("ruff")] if shutil.which("ruff") else [sys.executable, "-m", "ruff"]
    for path in paths.values():
        for command in (["check", "--isolated"], ["format", "--isolated", "--check"]):
            result = subprocess.run([*ruff, *command, str(path)], capture_output=True, text=True, check=False)
            assert result.returncode == 0, f"{path.name}: ruff {command[0]}:\n{result.stdout}{result.stderr}"


# Errors -----------------------------------------------------------------------------------------

def test_output_pad_must_be_below_the_stride_or_the_dilation(tmp_path):
    err = check_error(tmp_path, net("deconv(8, 3, stride = 2, output_pad = 2)"),
                      "output_pad 2 must be smaller than the stride (2) or the dilation (1) along the height", 3, 43)
    assert "as PyTorch requires" in err.message
    check_error(tmp_path, net("deconv(8, 3, stride = [2, 1], dilation = [1, 2], output_pad = [1, 2])"),
                "output_pad 2 must be smaller than the stride (1) or the dilation (2) along the width", 3, 67)


def test_output_pad_below_the_dilation_is_taken(tmp_path):
    inst = _layer(_spec(tmp_path, "deconv(8, 3, dilation = 3, output_pad = 2)"))
    assert tuple(inst.out_shape.dims) == (8, 7 - 1 + 6 + 2 + 1, 9 - 1 + 6 + 2 + 1)


def test_groups_must_divide_the_channels_and_the_filters(tmp_path):
    check_error(tmp_path, net("deconv(8, 3, groups = 2)"),
                "groups=2 must divide both the input channels (3) and the filters (8)", 3, 27)
    check_error(tmp_path, net("conv(4, 1) deconv(6, 3, groups = 4)"),
                "groups=4 must divide both the input channels (4) and the filters (6)", 3, 38)


def test_an_output_below_one_pixel(tmp_path):
    err = check_error(tmp_path, net("conv(8, 32) deconv(8, 1, pad = 1)"),
                      "the output would be -1 pixels high: an input of 1 at stride 1, window 1 and output_pad 0 "
                      "gives 1, less the padding 1 on each side", 3, 36)
    assert "deconv1" in err.message


def test_same_and_valid_are_not_a_deconv_padding(tmp_path):
    check_error(tmp_path, net("deconv(8, 3, pad = same)"), "expects an integer or a pair", 3, 24)
