"""`archdsl compile --optimize inference`: the PyTorch emission for inference (in-place activations,
batch norms folded into the convolutions before them, channels-last memory) computes what the plain
emission computes, for every spec, from the plain model's weights."""

from __future__ import annotations

import re

import pytest
import torch

from archdsl.compiler import generate, load
from archdsl.errors import ArchError
from archdsl.zoo import read_registry

from .frameworks import ROOT, import_path, randomize_batchnorm, sample_input

ENTRIES = {}
for _entry in read_registry(ROOT):  # one setting per spec: its first registry entry, at the test size
    ENTRIES.setdefault(_entry.spec, _entry)

# Specs whose every batch norm follows a convolution (the others put batch norm first: pre-activation)
FULLY_FOLDED = {"resnet", "resnet50", "resnext", "wide_resnet", "se_resnet50", "googlenet", "inception_v3",
                "inception_v4", "inception_resnet_v2", "mobilenet_v1", "mobilenet_v2", "efficientnet", "xception"}


@pytest.mark.parametrize("spec", sorted(ENTRIES))
def test_inference_emission_gives_the_plain_models_outputs(tmp_path, spec):
    entry = ENTRIES[spec]
    elab = load(str(entry.spec_path(ROOT)), {**entry.sets, **entry.test_sets})
    plain_path, fast_path = tmp_path / "plain.py", tmp_path / "fast.py"
    plain_path.write_text(generate(elab, "torch"))
    fast_path.write_text(generate(elab, "torch", "inference"))
    plain = import_path(plain_path, f"plain_{spec}").build_model().eval()
    randomize_batchnorm(plain, seed=11)
    fast_module = import_path(fast_path, f"fast_{spec}")
    fast = fast_module.build_model(plain.state_dict())
    assert not fast.training
    x = torch.from_numpy(sample_input(fast_module.INPUT_SHAPE, batch=2, seed=12))
    with torch.no_grad():
        expected, got = plain(x), fast(x)
    expected = expected if isinstance(expected, tuple) else (expected,)
    got = got if isinstance(got, tuple) else (got,)
    for a, b in zip(expected, got, strict=True):
        assert a.shape == b.shape
        assert float((a - b).abs().max()) <= 1e-4
    norms = lambda m: sum(isinstance(n, torch.nn.BatchNorm2d) for n in m.modules())
    if spec in FULLY_FOLDED:
        assert norms(plain) > 0 and norms(fast) == 0, "every batch norm after a convolution is folded"
    convs = [m for m in fast.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(c.weight.is_contiguous(memory_format=torch.channels_last) for c in convs if c.weight.dim() == 4)


def test_activations_work_in_place_only_on_their_own_input():
    # ResNet's bottleneck: relu after bn may overwrite; NASNet's cells start from `in` and `prev`,
    # which other cells still read, so relu there must not work in place
    resnet = generate(load(str(ROOT / "specs" / "resnet50.arch")), "torch", "inference")
    assert "x = F.relu(x, inplace=True)" in resnet
    assert "x = x.contiguous(memory_format=torch.channels_last)" in resnet
    assert re.search(r"folds = \(\s*\(\"conv1\", \"bn1\"\)", resnet)
    nasnet = generate(load(str(ROOT / "specs" / "nasnet_mobile.arch")), "torch", "inference")
    assert "h = F.relu(inputs)" in nasnet and "F.relu(inputs, inplace=True)" not in nasnet


def test_inference_is_a_pytorch_option():
    elab = load(str(ROOT / "specs" / "lenet5.arch"))
    with pytest.raises(ArchError, match="for --target torch"):
        generate(elab, "keras", "inference")
    with pytest.raises(ArchError, match="unknown optimization"):
        generate(elab, "torch", "speed")
