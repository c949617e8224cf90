"""Every claim of the zoo registry (specs/zoo/*.toml), checked: each network compiles to both
targets and runs; its parameter count equals every reference's (torchvision, timm,
keras.applications, or the published figure); the reference's weights loaded into the generated
model give the reference's outputs; PyTorch weights converted into the generated Keras model give
the same outputs. docs/zoo.md is current."""

from __future__ import annotations

import importlib
import inspect
import os
import subprocess
import sys

import numpy as np
import pytest

from archdsl.api import generate, load
from archdsl.runtime.interop import load_keras_reference, load_torch_reference, torch_to_keras
from archdsl.tools.zoo import Entry, read_registry, reference_builder

from .frameworks import (
    ROOT,
    count_keras,
    count_keras_trainable,
    count_torch,
    count_torch_trainable,
    eval_output_names,
    every_output,
    import_path,
    keras_outputs,
    randomize_batchnorm,
    sample_input,
    torch_outputs,
)

ENTRIES = read_registry(ROOT)
TOLERANCE = 1e-4


def _args(args: dict) -> dict:
    """Registry arguments; TOML has no null, so the string "None" stands for None."""
    return {k: None if v == "None" else v for k, v in args.items()}


def torch_reference(entry: Entry):
    if entry.torch_builder():  # a function of specs/zoo/MODULE.py
        return reference_builder(ROOT, entry.torch_builder())(**_args(entry.torch_reference_args)).eval()
    lib, _, name = entry.torch_reference.partition(":")
    if lib == "torchvision":
        import torchvision

        builder = torchvision.models  # a dotted name reaches a subpackage: "segmentation.fcn_resnet50"
        for part in name.split("."):
            builder = getattr(builder, part)
        args = _args(entry.torch_reference_args)
        if "weights_backbone" in inspect.signature(builder).parameters:
            args = {"weights_backbone": None, **args}  # its default downloads ImageNet weights
        return builder(weights=None, **args).eval()
    if lib == "timm":
        import timm

        return timm.create_model(name, pretrained=False, **_args(entry.torch_reference_args)).eval()
    raise ValueError(f"unknown reference library {lib!r}")


def keras_reference(entry: Entry, input_shape: tuple):
    import keras

    c, h, w = input_shape
    if entry.keras_builder():  # a function of specs/zoo/MODULE.py
        return reference_builder(ROOT, entry.keras_builder())(input_shape=(h, w, c), **_args(entry.keras_reference_args))
    builder = getattr(keras.applications, entry.keras_reference)
    return builder(weights=None, input_shape=(h, w, c), **_args(entry.keras_reference_args))


class Network:
    """One registry entry built for its test settings: spec, generated modules, both models."""

    def __init__(self, entry: Entry, tmp) -> None:
        self.entry = entry
        sets = {**entry.sets, **entry.test_sets}
        spec = os.path.relpath(entry.spec_path(ROOT), ROOT)
        cwd = os.getcwd()
        os.chdir(ROOT)
        try:
            self.default = load(spec, entry.sets)
            self.elab = load(spec, sets)
        finally:
            os.chdir(cwd)
        self.modules = {}
        for target in ("torch", "keras"):
            path = tmp / f"{entry.key}_{target}.py"
            path.write_text(generate(self.elab, target))
            self.modules[target] = import_path(path, f"zoo_{entry.key}_{target}")
        self.torch_model = self.modules["torch"].build_model().eval()
        self.keras_model = self.modules["keras"].build_model()
        self.input_shape = tuple(self.elab.root.in_shape.dims)


@pytest.fixture(scope="module", params=ENTRIES, ids=lambda e: e.key)
def net(request, tmp_path_factory):
    network = Network(request.param, tmp_path_factory.mktemp(request.param.key))
    yield network
    importlib.invalidate_caches()


def test_parameter_count_equals_every_reference(net):
    """Every parameter, and those that train (all but the frozen parts): the same in both generated
    models and in every reference."""
    e = net.entry
    params, trainable = net.elab.root.total_params(), net.elab.root.trainable_params()
    assert params == net.default.root.total_params(), "test_sets must not change the parameter count"
    assert (count_torch(net.torch_model), count_torch_trainable(net.torch_model)) == (params, trainable)
    assert (count_keras(net.keras_model), count_keras_trainable(net.keras_model)) == (params, trainable)
    checked = 0
    if e.params is not None:
        assert params == e.params
        checked += 1
    if e.torch_reference:
        reference = torch_reference(e)
        assert (count_torch(reference), count_torch_trainable(reference)) == (params, trainable)
        checked += 1
    if e.keras_reference:
        reference = keras_reference(e, net.input_shape)
        assert (count_keras(reference), count_keras_trainable(reference)) == (params, trainable)
        checked += 1
    assert checked, f"{e.key}: the registry gives no reference and no published count"


def test_forward_pass_in_both_frameworks(net):
    x = sample_input(net.input_shape, batch=2)
    expected = [(2, *inst.out_shape.dims) for _, inst in net.elab.outputs]
    evaluated = [(2, *inst.out_shape.dims) for name, inst in net.elab.outputs if name not in net.elab.auxiliary]
    for outs, shapes in ((torch_outputs(net.torch_model, x), evaluated),  # eval mode skips the auxiliary heads
                         (torch_outputs(every_output(net.torch_model), x), expected),
                         (keras_outputs(net.keras_model, x), expected)):
        assert [o.shape for o in outs] == shapes
        assert all(np.isfinite(o).all() for o in outs)
    net.torch_model.eval()


def _close(a: np.ndarray, b: np.ndarray, what: str) -> None:
    assert a.shape == b.shape, what
    assert np.abs(a).max() > 1e-6, f"{what}: outputs are all but zero, nothing is compared"
    diff = float(np.abs(a - b).max())
    assert diff <= TOLERANCE, f"{what}: max abs difference {diff:.3g}"


def test_torch_reference_weights_give_reference_outputs(net):
    if not net.entry.torch_reference:
        pytest.skip("no PyTorch reference implementation")
    import torch

    reference = torch_reference(net.entry)
    randomize_batchnorm(reference, seed=3)
    load_torch_reference(net.torch_model, reference)
    x = sample_input(net.input_shape, batch=2, seed=4)
    with torch.no_grad():
        ref = reference(torch.from_numpy(x))
    # in eval mode, as the reference: the outputs that are not auxiliary
    ours = dict(zip(eval_output_names(net.modules["torch"]), torch_outputs(net.torch_model, x)))
    if isinstance(ref, dict):  # torchvision's segmentation models: out (and aux), by the spec's names
        assert sorted(ref) == sorted(ours), f"{net.entry.key}: outputs {sorted(ours)}, the reference's {sorted(ref)}"
    else:
        ref = {net.modules["torch"].OUTPUT_NAMES[net.entry.output]: ref[0] if isinstance(ref, tuple) else ref}
    for name, value in ref.items():
        _close(ours[name], value.numpy(), f"{net.entry.key}.{name} vs {net.entry.torch_reference}")


def test_keras_reference_weights_give_reference_outputs(net):
    if not net.entry.keras_reference:
        pytest.skip("no keras.applications reference")
    reference = keras_reference(net.entry, net.input_shape)
    rng = np.random.default_rng(5)
    reference.set_weights([w + rng.uniform(-0.1, 0.1, w.shape).astype(w.dtype) if w.ndim == 1 else w
                           for w in reference.get_weights()])
    load_keras_reference(net.keras_model, reference)
    x = sample_input(net.input_shape, batch=2, seed=6)
    ref = np.asarray(reference(x.transpose(0, 2, 3, 1), training=False))
    ours = keras_outputs(net.keras_model, x)[net.entry.output]
    ref = ref.transpose(0, 3, 1, 2) if ref.ndim == 4 else ref
    _close(ours, ref, f"{net.entry.key} vs keras.applications.{net.entry.keras_reference}")


def test_torch_weights_in_keras_give_the_same_outputs(net):
    import torch

    torch.manual_seed(0)
    model = every_output(net.modules["torch"].build_model())  # PyTorch's default initialization
    randomize_batchnorm(model, seed=7)
    torch_to_keras(model, net.keras_model)
    x = sample_input(net.input_shape, batch=2, seed=8)
    for name, a, b in zip(net.modules["torch"].OUTPUT_NAMES, torch_outputs(model, x),
                          keras_outputs(net.keras_model, x)):
        _close(a, b, f"{net.entry.key}.{name}")


def test_every_spec_is_in_the_zoo():
    specs = {p.stem for p in (ROOT / "specs").glob("*.arch")}
    assert specs <= {e.spec for e in ENTRIES}, f"specs without a registry entry: {specs - {e.spec for e in ENTRIES}}"


def test_zoo_doc_is_current():
    result = subprocess.run([sys.executable, "-m", "archdsl", "zoo", "--check", "-o", "docs/zoo.md"], cwd=ROOT,
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
