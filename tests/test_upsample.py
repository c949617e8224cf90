"""The decoder's and the shuffle's layers: upsampling, crops at the centre to a named tensor's size,
channel slices and shuffles: shapes and receptive fields, and the generated PyTorch and Keras models
computing the same thing (PyTorch's F.interpolate and nn.ChannelShuffle as the reference)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from archdsl.api import load
from archdsl.reports.summary import rows

from .test_backends import assert_parity, build

SPEC = """
block Up(filters) {
    skip = in
    conv(filters, 3, pad = 1) relu
    upsample(2)
    upsample(like = skip, mode = bilinear)
}

# back to the size of the block's own input, which the chain has overwritten (DeepLab's image
# pooling does this from one pixel, where a wrong size would go unseen: a constant map)
block Restore(filters) {
    maxpool(2) conv(filters, 1) relu
    upsample(like = in, mode = bilinear)
}

network UpNet(classes = 3) {
    input [4, 9, 11]
    e = conv(8, 3, pad = 1) relu
    conv(8, 3, stride = 2, pad = 1) relu
    upsample(2, mode = bilinear)
    upsample(size = [13, 7], mode = bilinear, align_corners = true)
    upsample(1.5)
    upsample(like = e)
    channel_shuffle(2)
    Up(8)
    Restore(8)
    upsample(factor = [2, 3], mode = bilinear)
    { upsample(0.5) conv(classes, 1) }
    upsample(size = [5, 23], mode = bilinear)
    upsample(factor = [3, 0.7], mode = bilinear, align_corners = true)
}
"""


# a U-Net level with valid convolutions (the paper's crop-and-concat, an odd excess too) and a
# ShuffleNetV2 unit (a split into two slices, a shuffle)
SPLITS = """
block Unit(c) {
    a = in channel_slice(0, in.channels / 2)
    b = in channel_slice(in.channels / 2, in.channels / 2) conv(c, 1) relu
    concat(a, b) channel_shuffle(2)
}

network U(width = 4) {
    input [3, 29, 28]
    e1 = conv(width, 3) relu conv(width, 3) relu
    maxpool(2)
    conv(2 * width, 3) relu
    up = deconv(width, 2, stride = 2)
    c = e1 crop(like = up)
    concat(c, up)
    Unit(width)
    channel_slice(0, 6)
    { channel_slice(1, 5) relu }
    conv(2, 1)
}
"""


def test_crops_to_a_tensor_and_channel_slices_compute_the_same_in_both_frameworks(tmp_path):
    elab, tm, km, paths = build(tmp_path, SPLITS)
    crop = next(i for i in elab.root.walk() if i.kind == "crop")
    assert (tuple(crop.in_shape.dims), tuple(crop.out_shape.dims)) == ((4, 25, 24), (4, 20, 20))
    assert_parity(elab, tm, km, tol=1e-5)
    torch_code = paths["torch"].read_text()
    assert "center_crop(e1, up)" in torch_code and "x = x[:, :6]" in torch_code
    assert "ChannelSlice(0, int(in_channels / 2))" in torch_code  # a parameter's expression: a module
    # the crop of the odd excess (25 - 20 = 5 rows) takes 2 above and 3 below, as center_crop does
    x = torch.arange(25 * 24, dtype=torch.float32).view(1, 1, 25, 24)
    assert torch.equal(tm.center_crop(x, torch.zeros(1, 1, 20, 20)), x[..., 2:22, 2:22])


def test_upsampling_and_shuffling_compute_the_same_in_both_frameworks(tmp_path):
    elab, tm, km, paths = build(tmp_path, SPEC)
    assert elab.root.out_shape.dims == (3, 15, 16)
    assert_parity(elab, tm, km, tol=1e-5)
    # Restore's `like = in` is the block's input, in both frameworks, however the chain rebinds x
    restore = next(i for i in elab.root.walk() if i.kind == "Restore")
    sizes = []
    model = tm.build_model()
    model.restore1.register_forward_hook(lambda module, args, out: sizes.append(tuple(out.shape[1:])))
    model(torch.zeros(1, *tm.INPUT_SHAPE))
    assert sizes == [tuple(restore.out_shape.dims)] == [(8, 9, 11)]
    assert tuple(km.build_model().get_layer("restore1-upsample1").output.shape[1:]) == (9, 11, 8)
    keras_code = paths["keras"].read_text()
    assert 'layers.UpSampling2D(2, interpolation="bilinear"' in keras_code  # Keras' own layer where exact
    assert "Interpolate2D(scale=1.5" in keras_code


@pytest.mark.parametrize("mode, corners", [("nearest", False), ("bilinear", False), ("bilinear", True)])
@pytest.mark.parametrize("size, factor", [((7, 5), None), ((40, 3), None), ((1, 1), None), (None, (2.5, 1.3)),
                                          (None, (0.4, 3.0))])
def test_interpolate2d_is_pytorchs_interpolate(mode, corners, size, factor):
    from archdsl.runtime.keras_layers import Interpolate2D

    x = np.random.default_rng(0).standard_normal((2, 3, 11, 6)).astype("float32")
    options = {} if mode == "nearest" else {"align_corners": corners}
    expected = torch.nn.functional.interpolate(torch.from_numpy(x), size=size, scale_factor=factor, mode=mode,
                                               **options).numpy()
    layer = Interpolate2D(size=size, scale=factor, mode=mode, align_corners=corners)
    got = np.asarray(layer(np.transpose(x, (0, 2, 3, 1)))).transpose(0, 3, 1, 2)
    assert got.shape == expected.shape
    assert float(np.abs(got - expected).max()) <= 1e-5


def test_channel_shuffle_is_pytorchs():
    from archdsl.runtime.keras_layers import ChannelShuffle

    x = np.arange(2 * 12 * 2 * 3, dtype="float32").reshape(2, 12, 2, 3)
    expected = torch.nn.ChannelShuffle(3)(torch.from_numpy(x)).numpy()
    got = np.asarray(ChannelShuffle(3)(np.transpose(x, (0, 2, 3, 1)))).transpose(0, 3, 1, 2)
    assert np.array_equal(got, expected)
    assert list(expected[0, :, 0, 0]) == [x[0, c, 0, 0] for c in (0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11)]


def test_receptive_field_through_an_upsampling(tmp_path):
    """An upsampling by 2 halves the jump (output pixels per input pixel); a 3x3 convolution after it
    grows the field by one input pixel, and a bilinear upsampling reads two input pixels."""
    spec = tmp_path / "rf.arch"
    spec.write_text("network R { input [1, 8, 8]\n conv(1, 3, stride = 2, pad = 1)\n upsample(2)\n conv(1, 3, pad = 1)\n"
                    " upsample(2, mode = bilinear)\n conv(1, 3, pad = 1) }\n")
    assert [r.rf_text for r in rows(load(str(spec)))] == ["3/2", "3/1", "5/1", "6/0.5", "7/0.5"]


@pytest.mark.parametrize("source, message", [
    ("upsample", "upsample needs a factor, a size, or like = a named tensor"),
    ("upsample(2, size = 4)", "upsample takes one of factor, size or like"),
    ("upsample(2, align_corners = true)", "align_corners is for bilinear interpolation"),
    ("upsample(2, mode = linear)", "unknown name 'linear'"),
    ("upsample(0.01)", "leaves nothing"),
    ("channel_shuffle(3)", "groups=3 must divide the input channels (4)"),
    ("{ upsample(like = in) }", "can be used only at the top level"),
    ("crop", "crop takes its sides or like = a named tensor"),
    ("crop(1, like = in)", "crop takes its sides or like, not both"),
    ("t = upsample(2)\n    in crop(like = t)", "cannot crop [4, 8, 8] to [4, 16, 16]"),
    ("channel_slice(2, 3)", "channels 2 to 4 are not all in the input's 4"),
])
def test_bad_upsampling_is_refused_with_a_located_message(tmp_path, source, message):
    spec = tmp_path / "bad.arch"
    spec.write_text(f"network Bad {{\n    input [4, 8, 8]\n    {source}\n}}\n")
    from archdsl.language.errors import ArchError

    with pytest.raises(ArchError) as err:
        load(str(spec))
    assert message in str(err.value)
    assert err.value.span.line == 3 + source.count("\n")  # the last line: the refused call
