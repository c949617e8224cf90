"""A residual whose identity skip is made only where a condition holds (`residual if cond { ... }`,
MobileNet's and EfficientNet's blocks, written once), and stochastic depth that drops the body for the
whole batch (`per_batch = true`, Huang et al. 2016) as well as per sample."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from archdsl.api import load
from archdsl.language.errors import ArchError

from .test_backends import assert_parity, build

SPEC = """
block IR(filters, stride = 1, rate = 0.0) {
    residual(rate, per_batch = true) if stride == 1 and in.channels == filters {
        conv(filters, 3, stride = stride, pad = 1) bn relu
    }
}

block Plain(filters, stride = 1) {
    residual if stride == 1 and in.channels == filters { conv(filters, 1) bn }
}

network R(skip = true) {
    input [4, 8, 8]
    IR(4)
    IR(8, 2)
    IR(8, rate = 0.2)
    Plain(8)
    Plain(6)
    residual(0.1, true) if skip { conv(6, 1) }
    residual if skip { conv(6, 1) } relu
    residual if false { conv(4, 1) }
}
"""


@pytest.mark.parametrize("skip", [True, False])
def test_a_conditional_residual_skips_only_where_its_condition_holds(tmp_path, skip):
    elab, tm, km, paths = build(tmp_path, SPEC, {"skip": skip})
    assert_parity(elab, tm, km)
    model = tm.build_model().eval()
    x = torch.randn(2, 4, 8, 8)
    with torch.no_grad():
        inner = model.ir1.bn1(model.ir1.conv1(x)).relu()
        assert torch.allclose(model.ir1(x), inner + x)  # stride 1, 4 -> 4: the skip
        y = model.ir1(x)
        assert torch.allclose(model.ir2(y), model.ir2.bn1(model.ir2.conv1(y)).relu())  # stride 2: the body alone
    code = paths["torch"].read_text()
    assert "if self.residual1 is not None:" in code  # with a drop path: the module, or None
    assert "self.residual1 = stride == 1 and in_channels == filters" in code  # without: the flag
    assert "if False" not in code and "if True" not in code


def test_per_batch_stochastic_depth_drops_the_body_for_the_whole_batch(tmp_path):
    """While training, per_batch drops the residual's body for every sample at once, at the rate;
    what is kept is scaled by 1 / (1 - rate). In both frameworks."""
    source = """
    network D {
        input [1, 4, 4]
        residual(drop_path = 0.25, per_batch = true) { rescale(1, offset = 1) }
    }
    """
    _, tm, km, _ = build(tmp_path, source)
    model = tm.build_model().train()
    x = torch.zeros(16, 1, 4, 4)
    torch_drops = 0

    keras_model = km.build_model()
    keras_drops = 0
    for _ in range(400):
        y = model(x)  # the body gives 1 everywhere: the output is 0 (dropped) or 1 / 0.75 (kept)
        values = {round(float(v), 4) for v in np.unique(y.detach().numpy())}
        assert values in ({0.0}, {round(1 / 0.75, 4)})
        torch_drops += values == {0.0}
        z = np.asarray(keras_model(np.zeros((16, 4, 4, 1), "float32"), training=True))
        values = {round(float(v), 4) for v in np.unique(z)}
        assert values in ({0.0}, {round(1 / 0.75, 4)})
        keras_drops += values == {0.0}
    for drops in (torch_drops, keras_drops):  # binomial(400, 0.25): mean 100, sd 8.7
        assert 65 <= drops <= 135


@pytest.mark.parametrize("source, message", [
    ("residual if true { conv(4, 1) } shortcut { conv(4, 1) }", "a projection shortcut has a condition of its own"),
    ("residual if 2 { conv(4, 1) }", "a residual's condition must be true or false, got 2"),
    ("residual(0.1, per_batch = 1) { conv(4, 1) }", "per_batch must be true or false, got 1"),
    ("residual(0.1, true, 3) { conv(4, 1) }", "residual takes two arguments"),
    ("residual(width = 2) { conv(4, 1) }", "residual has no argument 'width'"),
    ("{ residual if true { conv(4, 1) } }", "`residual if` can be used only at the top level"),
])
def test_bad_residuals_are_refused(tmp_path, source, message):
    spec = tmp_path / "bad.arch"
    spec.write_text(f"network Bad {{\n    input [4, 8, 8]\n    {source}\n}}\n")
    with pytest.raises(ArchError) as err:
        load(str(spec))
    assert message in str(err.value)
    assert err.value.span.line == 3
