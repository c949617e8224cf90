"""Upsampling and channel shuffle: shapes and receptive fields, and the generated PyTorch and Keras
models computing the same thing (PyTorch's F.interpolate and nn.ChannelShuffle as the reference)."""

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
    upsample(factor = [2, 3], mode = bilinear)
    { upsample(0.5) conv(classes, 1) }
    upsample(size = [5, 23], mode = bilinear)
    upsample(factor = [3, 0.7], mode = bilinear, align_corners = true)
}
"""


def test_upsampling_and_shuffling_compute_the_same_in_both_frameworks(tmp_path):
    elab, tm, km, paths = build(tmp_path, SPEC)
    assert elab.root.out_shape.dims == (3, 15, 16)
    assert_parity(elab, tm, km, tol=1e-5)
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
])
def test_bad_upsampling_is_refused_with_a_located_message(tmp_path, source, message):
    spec = tmp_path / "bad.arch"
    spec.write_text(f"network Bad {{\n    input [4, 8, 8]\n    {source}\n}}\n")
    from archdsl.language.errors import ArchError

    with pytest.raises(ArchError) as err:
        load(str(spec))
    assert message in str(err.value)
    assert err.value.span.line == 3
