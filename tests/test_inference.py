"""`archdsl compile --optimize inference`: the PyTorch emission for inference (in-place activations,
batch norms folded into the convolutions before them, channels-last memory) computes what the plain
emission computes, for every spec, from the plain model's weights."""

from __future__ import annotations

import re

import pytest
import torch

from archdsl.api import generate, load
from archdsl.language.errors import ArchError
from archdsl.tools.zoo import read_registry

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


# The plain (trainable) emission works in place too, where autograd allows it -----------------------

_INPLACE_ARG = re.compile(r",? ?inplace=True")
_INPLACE_ADD = re.compile(r"^(\s+)(\w+) \+= (.+)$", re.MULTILINE)  # a residual sum into the body's result


def _out_of_place(code: str) -> str:
    return _INPLACE_ADD.sub(r"\1\2 = \2 + \3", _INPLACE_ARG.sub("", code))


# Every way an activation comes to work in place in the plain emission (F.relu / F.relu6 in forward,
# nn.ReLU / nn.SiLU in an nn.Sequential, after conv, bn, pooling, add and concat), in networks that are
# quick at their test size.
GRADIENT_SPECS = ("resnet50", "mobilenet_v2", "mobilenet_v1", "efficientnet", "squeezenet", "densenet_cifar",
                  "xception", "vgg16", "alexnet", "googlenet", "vgg", "resnet_v2", "densenet", "nasnet_mobile")


@pytest.mark.parametrize("spec", GRADIENT_SPECS)
def test_plain_in_place_activations_keep_the_gradients(tmp_path, spec):
    """The plain model's in-place activations (after a layer, block or choice whose result is a fresh
    tensor nothing keeps for its gradient, never chained) and in-place residual sums (`x += identity`
    into such a result) give the gradients the same code computes without them."""
    entry = ENTRIES[spec]
    elab = load(str(entry.spec_path(ROOT)), {**entry.sets, **entry.test_sets})
    code = generate(elab, "torch")
    out_of_place = _out_of_place(code)
    if code == out_of_place:
        pytest.skip("no activation works in place in this network")
    (tmp_path / "a.py").write_text(code)
    (tmp_path / "b.py").write_text(out_of_place)
    module = import_path(tmp_path / "a.py", f"inplace_{spec}")
    torch.manual_seed(3)
    a = module.build_model().train()
    b = import_path(tmp_path / "b.py", f"outofplace_{spec}").build_model().train()
    b.load_state_dict(a.state_dict())
    x = torch.from_numpy(sample_input(module.INPUT_SHAPE, batch=2, seed=4))
    results = []
    for model in (a, b):
        torch.manual_seed(5)  # the same dropout masks
        outputs = model(x)
        outputs = outputs if isinstance(outputs, tuple) else (outputs,)
        sum((o.float() ** 2).mean() for o in outputs).backward()
        results.append(([o.detach() for o in outputs], {n: p.grad for n, p in model.named_parameters()}))
    (out_a, grads_a), (out_b, grads_b) = results
    for p, q in zip(out_a, out_b, strict=True):
        assert torch.allclose(p, q, atol=1e-5)
    assert grads_a.keys() == grads_b.keys()
    for name in grads_a:
        g, h = grads_a[name], grads_b[name]
        assert (g is None) == (h is None), name
        if g is not None:
            assert torch.allclose(g, h, rtol=1e-4, atol=1e-5), name


def test_plain_emission_works_in_place_only_where_autograd_allows(tmp_path):
    resnet = generate(load(str(ROOT / "specs" / "resnet50.arch")), "torch")
    assert "x = F.relu(x, inplace=True)" in resnet  # after a batch norm
    # NASNet's cells start from tensors other cells still read
    nasnet = generate(load(str(ROOT / "specs" / "nasnet_mobile.arch")), "torch")
    assert "F.relu(inputs, inplace=True)" not in nasnet and "h = F.relu(inputs)" in nasnet
    # two activations in a row: only the first may work in place (the second would overwrite the
    # result the first keeps for its gradient)
    program = ("network N {\n    input [3, 8, 8]\n    conv(4, 3) relu relu6\n    avgpool(global) flatten\n"
               "    dense(2)\n}\n")
    spec = tmp_path / "chain.arch"
    spec.write_text(program)
    code = generate(load(str(spec)), "torch")
    assert "x = F.relu(x, inplace=True)" in code and "x = F.relu6(x)" in code
    # the residual sum goes into the body's result where that is the body's own (a batch norm's, through
    # a choice and DropPath, as torchvision's `out += identity`), not where an activation keeps it
    assert "x = self.residual1(x)\n        x += self.shortcut1(identity)" in resnet
    program = """
block Ends(c) {
    conv(c, 3, pad = 1) relu
}

block Fresh(c) {
    conv(c, 3, pad = 1) bn
}

network N {
    input [4, 8, 8]
    residual { conv(4, 3, pad = 1) relu }
    residual { Ends(4) }
    residual { Fresh(4) }
    Fresh(4) relu
    Ends(4) relu6
    output y = identity
}
"""
    spec.write_text(program)
    forward = generate(load(str(spec)), "torch").split("class N(nn.Module)")[1]
    assert forward.count("x = x + identity") == 2 and forward.count("x += identity") == 1, forward
    # after a block whose result is its own, an activation works in place; after one ending in relu not
    assert "x = self.fresh2(x)\n        x = F.relu(x, inplace=True)" in forward
    assert "x = self.ends2(x)\n        x = F.relu6(x)" in forward
    # inside a group, an activation chosen by an `if` works in place after a batch norm as a lone one
    # does (torchvision's MobileNetV3: nn.Sequential(conv, bn, nn.Hardswish(inplace=True))), and
    # the one after it does not
    spec.write_text("network N(hs = true) {\n    input [4, 8, 8]\n    { conv(4, 1) bn if hs { hardswish } else { relu }"
                    " if hs { hardswish relu } }\n}\n")
    code = generate(load(str(spec)), "torch")
    assert code.count("m1 = nn.Hardswish(inplace=True)") == code.count("m1 = nn.ReLU(inplace=True)") == 1, code
    assert "nn.Sequential(nn.Hardswish(), nn.ReLU())" in code, code
