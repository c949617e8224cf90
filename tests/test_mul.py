"""`mul(a, b, ...)`: named tensors multiplied element-wise, the first by others of its shape or
shapes that broadcast to it (LR-ASPP's gate of a pooled branch): shapes, errors, and the PyTorch
and Keras models computing the same thing."""

from __future__ import annotations

import pytest

from archdsl.api import load
from archdsl.language.errors import ArchError

from .test_backends import assert_parity, build

# LR-ASPP's head (Howard et al., 2019) on a small map: a branch gated by a sigmoid of another
# branch's global pool, and a product of two tensors of one shape
SPEC = """
block Gated(c) {
    h = in conv(c, 1) bn relu
    gate = in avgpool(global) conv(c, 1, bias = false) sigmoid
    mul(h, gate)
}

network M(classes = 3) {
    input [6, 9, 7]
    a = Gated(4)
    b = conv(4, 3, pad = 1) tanh
    p = mul(a, b, a) relu
    mul(p, in) conv(classes, 1)
}
"""


def test_mul_computes_the_same_in_both_frameworks(tmp_path):
    elab, tm, km, paths = build(tmp_path, SPEC.replace("mul(p, in)", "q = mul(p, b)\n    q"))
    assert [tuple(i.out_shape.dims) for i in elab.root.walk() if i.kind == "mul"] == [(4, 9, 7)] * 3
    assert_parity(elab, tm, km, tol=1e-5)
    assert "h * gate" in paths["torch"].read_text() and "p * b" in paths["torch"].read_text()
    assert "layers.Multiply(" in paths["keras"].read_text()


@pytest.mark.parametrize("body, message", [
    ("mul(p, in) conv(classes, 1)", ("mul multiplies 'p' [4, 9, 7] by tensors of its shape or one that broadcasts "
                                     "to it (e.g. [4, 1, 1]); 'in' is [6, 9, 7]")),
    ("g = avgpool(global)\n    mul(g, p)", "'p' is [4, 9, 7]"),  # the gate comes second
    ("{ mul(p, b) }", "can be used only at the top level"),
    ("mul(p)", "mul(...) needs at least two tensors"),
])
def test_bad_products_are_refused_with_a_located_message(tmp_path, body, message):
    spec = tmp_path / "bad.arch"
    spec.write_text(SPEC.replace("mul(p, in) conv(classes, 1)", body))
    with pytest.raises(ArchError) as e:
        load(str(spec))
    assert message in e.value.message
