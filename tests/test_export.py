"""Every generated PyTorch model, one per spec in specs/, at the small test setting of its first zoo
registry entry (sets + test_sets, specs/zoo/*.toml): it compiles with torch.compile(fullgraph=True),
that is with no graph break anywhere, and computes the eager model's outputs; it exports to ONNX with
torch.onnx.export's default exporter, the exported model passes onnx.checker, and ONNX Runtime computes
the eager model's outputs from it (issue 5, item 4).

Choices, and why:
- torch.compile runs with backend="eager". fullgraph=True is enforced by Dynamo, the graph capture
  every backend shares: a graph break of any kind fails the call whatever the backend. "eager" runs the
  captured graph as it is, so the test proves whole-graph capture without paying for Inductor's C++
  code generation and compilation (10 s to a minute per network on a 2-core CPU with a cold cache, so
  many minutes for all of them). The default Inductor backend is run on two networks below, to show
  the captured graphs compile through it too.
- ONNX export uses torch.onnx.export(..., dynamo=True), the default and recommended exporter of
  torch 2.x today (torch.export, then translation with onnxscript). The legacy TorchScript exporter
  (dynamo=False) fails on vgg at its test size (adaptive_avg_pool2d to 7x7 from 1x1 is not exportable
  there), and for xception, xception_localization and nasnet_mobile it writes graphs that ONNX Runtime
  rejects (an Add with incompatible dimensions); the default exporter passes on every spec.
- Most of the time goes to ONNX export (torch.export, decompositions, onnxscript's optimizer) and to
  Dynamo's tracing, both growing with the number of layers, not with the input size: about 10 minutes
  for the file on a busy 2-core machine, the deepest networks (nasnet_mobile, densenet,
  inception_resnet_v2) taking 40 to 50 s each.
"""

from __future__ import annotations

import os
import shutil
from functools import cached_property

import numpy as np
import pytest

from archdsl.api import generate, load
from archdsl.tools.zoo import read_registry

from .frameworks import ROOT, import_path, randomize_batchnorm, sample_input

TOLERANCE = 1e-4
SPECS = sorted(p.stem for p in (ROOT / "specs").glob("*.arch"))
ENTRIES: dict = {}
for _entry in read_registry(ROOT):
    ENTRIES.setdefault(_entry.spec, _entry)  # the first registry entry of each spec

# ONNX Runtime's graph optimization "Pad_Fusion" (a level-1 rewrite rule, on by default) moves a Pad
# with constant 0 into a following MaxPool's `pads` attribute. MaxPool's own padding never wins the
# max (it acts as -inf), so where every real value of a border window is negative the fused graph
# gives that negative maximum instead of the 0 of the padded pixels: a wrong result, not a wrong
# export (with the rule off the same .onnx file gives the eager outputs). keras.applications'
# ResNetV2 pads with zeros before its first max pooling, on the un-activated stem convolution's
# output (pre-activation: no batch norm or ReLU there), so resnet_v2 hits it. onnxruntime 1.31.1
# has the bug, 1.32.0 computes the padded windows right: _ort_pad_fusion_is_wrong() asks the
# installed onnxruntime with a two-node graph, and the default-options test expects resnet_v2 to
# fail exactly where it says so.
ORT_WRONG_PAD_FUSION = "Pad_Fusion"
ORT_PAD_FUSION_HITS = {"resnet_v2"}


def _ort_pad_fusion_is_wrong() -> bool:
    """Whether the installed onnxruntime's default optimizations compute Pad(0) + MaxPool wrongly: a
    4x4 input of -1, padded by one pixel with zeros and max-pooled 3x3 / 2, has a 0 in every window
    that covers padding; the fused graph gives -1 there."""
    import onnxruntime
    from onnx import TensorProto, helper

    pads = helper.make_tensor("pads", TensorProto.INT64, [8], [0, 0, 1, 1, 0, 0, 1, 1])
    graph = helper.make_graph(
        [helper.make_node("Pad", ["x", "pads"], ["p"], mode="constant"),
         helper.make_node("MaxPool", ["p"], ["y"], kernel_shape=[3, 3], strides=[2, 2])],
        "pad_maxpool", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 2, 2])], initializer=[pads])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    x = -np.ones((1, 1, 4, 4), np.float32)
    results = []
    for disabled in ([ORT_WRONG_PAD_FUSION], []):
        session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"],
                                               disabled_optimizers=disabled)
        results.append(session.run(None, {"x": x})[0].ravel().tolist())
    assert results[0] == [0.0, 0.0, 0.0, -1.0], f"Pad + MaxPool without Pad_Fusion: {results[0]}"
    return results[1] != results[0]

# The default Inductor backend (C++ code generated and compiled) on two small networks.
INDUCTOR_SPECS = ["lenet5", "resnet"]


class Built:
    """One spec's generated PyTorch model at its test setting, in eval mode, with its eager outputs
    on a batch of 2; the ONNX file is exported on first use."""

    def __init__(self, spec: str, tmp) -> None:
        import torch

        assert spec in ENTRIES, f"{spec}: no registry entry in specs/zoo/*.toml gives a test setting"
        entry = ENTRIES[spec]
        self.spec, self.tmp = spec, tmp
        self.sets = {**entry.sets, **entry.test_sets}
        cwd = os.getcwd()
        os.chdir(ROOT)  # spec paths relative to the repository, as in the committed generated code
        try:
            elab = load(os.path.relpath(entry.spec_path(ROOT), ROOT), self.sets)
        finally:
            os.chdir(cwd)
        path = tmp / f"{spec}.py"
        path.write_text(generate(elab, "torch"))
        torch.manual_seed(0)
        self.model = import_path(path, f"export_{spec}").build_model().eval()
        randomize_batchnorm(self.model)
        self.x = torch.from_numpy(sample_input(tuple(elab.root.in_shape.dims), batch=2))
        with torch.no_grad():
            self.expected = _numpy(self.model(self.x))
        # in eval mode: the outputs that are not auxiliary (those are computed while training only)
        shapes = [(2, *inst.out_shape.dims) for name, inst in elab.outputs if name not in elab.auxiliary]
        assert [o.shape for o in self.expected] == shapes, f"{spec}: eager outputs {self.expected} != {shapes}"

    @cached_property
    def onnx_path(self) -> str:
        import torch

        path = str(self.tmp / f"{self.spec}.onnx")
        torch.onnx.export(self.model, (self.x,), path, dynamo=True)
        return path

    def onnxruntime_outputs(self, disabled_optimizers: list[str]) -> list[np.ndarray]:
        import onnxruntime

        session = onnxruntime.InferenceSession(self.onnx_path, providers=["CPUExecutionProvider"],
                                               disabled_optimizers=disabled_optimizers)
        assert len(session.get_inputs()) == 1, [i.name for i in session.get_inputs()]
        return session.run(None, {session.get_inputs()[0].name: self.x.numpy()})


def _numpy(out) -> list[np.ndarray]:
    """A model's outputs (one tensor, or a tuple of them where a spec has several) as arrays."""
    return [o.detach().numpy() for o in (out if isinstance(out, tuple) else (out,))]


def _close(got: list[np.ndarray], expected: list[np.ndarray], what: str) -> None:
    assert len(got) == len(expected), f"{what}: {len(got)} outputs, expected {len(expected)}"
    for i, (a, b) in enumerate(zip(got, expected)):
        a = np.asarray(a)
        assert a.shape == b.shape, f"{what}, output {i}: shape {a.shape}, expected {b.shape}"
        assert np.abs(b).max() > 1e-6, f"{what}, output {i}: outputs are all but zero, nothing is compared"
        diff = float(np.abs(a - b).max())
        assert diff <= TOLERANCE, f"{what}, output {i}: max abs difference {diff:.3g}"


def _compiled_outputs(model, x, backend: str = "eager") -> list[np.ndarray]:
    import torch

    torch._dynamo.reset()  # no cache entries or recompilation counts carried over from another network
    compiled = torch.compile(model, fullgraph=True, backend=backend)
    try:
        with torch.no_grad():
            return _numpy(compiled(x))
    finally:
        torch._dynamo.reset()


@pytest.fixture(scope="module", params=SPECS)
def net(request, tmp_path_factory):
    tmp = tmp_path_factory.mktemp(f"export_{request.param}")
    yield Built(request.param, tmp)
    shutil.rmtree(tmp, ignore_errors=True)  # the .onnx files hold every weight: up to 550 MB (vgg16)


def test_torch_compile_fullgraph_gives_the_eager_outputs(net):
    _close(_compiled_outputs(net.model, net.x), net.expected, f"{net.spec} {net.sets}: torch.compile")


def test_onnx_export_passes_the_checker_and_onnxruntime_gives_the_eager_outputs(net):
    import onnx

    onnx.checker.check_model(onnx.load(net.onnx_path), full_check=True)
    outputs = net.onnxruntime_outputs(disabled_optimizers=[ORT_WRONG_PAD_FUSION])
    _close(outputs, net.expected, f"{net.spec} {net.sets}: onnxruntime")


def test_onnxruntime_with_all_default_optimizations_gives_the_eager_outputs(net, request):
    if net.spec in ORT_PAD_FUSION_HITS and _ort_pad_fusion_is_wrong():
        request.node.add_marker(pytest.mark.xfail(
            strict=True, raises=AssertionError,
            reason="onnxruntime's Pad_Fusion folds a zero Pad into the next MaxPool, which pads with -inf "
                   "(see ORT_WRONG_PAD_FUSION above); the exported graph itself is right"))
    outputs = net.onnxruntime_outputs(disabled_optimizers=[])
    _close(outputs, net.expected, f"{net.spec} {net.sets}: onnxruntime, default session options")


@pytest.mark.parametrize("spec", INDUCTOR_SPECS)
def test_torch_compile_fullgraph_with_inductor(spec, tmp_path):
    built = Built(spec, tmp_path)
    _close(_compiled_outputs(built.model, built.x, backend="inductor"), built.expected,
           f"{spec} {built.sets}: torch.compile, Inductor")


def test_fullgraph_check_fails_on_a_graph_break():
    """The check above is not vacuous: data-dependent control flow, a graph break, fails it."""
    import torch

    class Branchy(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if x.sum() > 0:
                return x + 1
            return x - 1

    with pytest.raises(torch._dynamo.exc.TorchDynamoException):
        _compiled_outputs(Branchy(), torch.ones(2, 3))
