"""specs/regnet.arch rounds its stage widths to the group width as torchvision does (the zoo's
regnet_x_400mf and regnet_y_400mf check that against torchvision) or, with `pycls_round`, as pycls,
the paper's code, does: round(width / g) * g, halves to even. For RegNetX-400MF the two differ in the
last stage (392 / 16 = 24.5: 400 in torchvision, 384 in pycls), which is why torchvision's model has
5,495,976 parameters and the paper's, and timm's regnetx_004, 5,157,512."""

from __future__ import annotations

import pytest

from archdsl.api import load

from .frameworks import ROOT

CASES = {  # settings -> (stage widths, parameters: pycls / timm's regnetx_004, regnety_004)
    "x": ({}, [32, 64, 160, 384], 5_157_512),
    "y": ({"y": True}, [48, 104, 208, 440], 4_344_144),
}


@pytest.mark.parametrize("case", CASES)
def test_pycls_rounding_gives_the_papers_widths_and_count(case):
    sets, widths, params = CASES[case]
    e = load(str(ROOT / "specs" / "regnet.arch"), {**sets, "pycls_round": True})
    stages = [i for i in e.root.walk() if i.kind == "Stage"]
    assert [i.out_shape.dims[0] for i in stages] == widths
    assert e.root.total_params() == params
