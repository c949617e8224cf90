"""A generated module serves every setting of its spec's parameters, not only the one it was compiled
at: `build_model(**params)` of the module compiled at one registry setting builds another setting of
the same spec (at the same input size) as the module compiled at that setting does, the same layers
computing the same outputs from the same weights. Paddings that switch between TensorFlow's `same`
and a size with a parameter (MobileNetV2's and EfficientNet's `tf_pad`/`pad_same`, Xception's
pools) are where this once failed: the layer is chosen as the model is built."""

from __future__ import annotations

import collections

import numpy as np
import pytest

from archdsl.api import generate, load
from archdsl.tools.zoo import read_registry

from .frameworks import ROOT, import_path, keras_outputs, randomize_batchnorm, sample_input, torch_outputs

_BY_SPEC: dict[str, list] = collections.defaultdict(list)
for _entry in read_registry(ROOT):
    _BY_SPEC[_entry.spec].append(_entry)

# (spec, compiled at, built at): every other registry setting of a spec from its first, and back
PAIRS = []
for _spec, _entries in _BY_SPEC.items():
    first = _entries[0]
    for other in _entries[1:]:
        if other.test_sets == first.test_sets:
            PAIRS += [(_spec, first.key, other.key), (_spec, other.key, first.key)]

# Keras: the settings that switch a padding between `same` and a size (both ways), and Xception's
# pools with and without TensorFlow's padding
def _entry(key: str):
    return next(e for es in _BY_SPEC.values() for e in es if e.key == key)


def _settings(key: str, **more) -> tuple[str, dict]:
    e = _entry(key)
    return e.spec, {**e.sets, **e.test_sets, **more}


KERAS_PAIRS = []
for _a, _b in ((_settings("mobilenet_v2"), _settings("mobilenet_v2_keras")),
               (_settings("efficientnet_b0"), _settings("efficientnet_b0_keras")),
               (_settings("efficientnet_v2_s"), _settings("efficientnet_v2_s_keras")),
               (_settings("xception", resolution=71), _settings("xception", resolution=71, tf_pad=False))):
    KERAS_PAIRS += [(_a[0], _a[1], _b[1]), (_a[0], _b[1], _a[1])]


def _module(tmp_path, spec: str, sets: dict, target: str, tag: str):
    elab = load(str(ROOT / "specs" / f"{spec}.arch"), sets)
    path = tmp_path / f"{tag}_{target}.py"
    path.write_text(generate(elab, target))
    return elab, import_path(path, f"settings_{tmp_path.name}_{tag}_{target}")


def _layout(model) -> list[tuple[str, str]]:
    """Every module path of a PyTorch model with its class and settings (its repr without children)."""
    return [(path, f"{type(m).__name__}({m.extra_repr()})") for path, m in model.named_modules()]


def _close(got: list[np.ndarray], expected: list[np.ndarray]) -> None:
    assert [g.shape for g in got] == [e.shape for e in expected]
    assert all(float(np.abs(g - e).max()) <= 1e-5 for g, e in zip(got, expected, strict=True))


@pytest.mark.parametrize("spec, compiled, built", PAIRS, ids=[f"{a}->{b}" for _, a, b in PAIRS])
def test_pytorch_module_builds_another_setting(tmp_path, spec, compiled, built):
    a, b = _entry(compiled), _entry(built)
    _, module = _module(tmp_path, spec, {**a.sets, **a.test_sets}, "torch", "compiled")
    target, reference = _module(tmp_path, spec, {**b.sets, **b.test_sets}, "torch", "built")
    expected_model = reference.build_model().eval()
    randomize_batchnorm(expected_model)
    model = module.build_model(**target.args).eval()
    model.load_state_dict(expected_model.state_dict())  # strict: the same layers, of the same shapes
    # and the same kinds of layer at every path (a Conv2dSame where the other has an nn.Conv2d, or a
    # layer without weights that differs, loads the same state dict but computes something else)
    assert _layout(model) == _layout(expected_model)
    x = sample_input(reference.INPUT_SHAPE)
    _close(torch_outputs(model, x), torch_outputs(expected_model, x))


@pytest.mark.parametrize("spec, compiled, built", KERAS_PAIRS,
                         ids=lambda v: v if isinstance(v, str) else ",".join(f"{k}={x}" for k, x in v.items()) or "-")
def test_keras_module_builds_another_setting(tmp_path, spec, compiled, built):
    _, module = _module(tmp_path, spec, compiled, "keras", "compiled")
    target, reference = _module(tmp_path, spec, built, "keras", "built")
    expected_model = reference.build_model()
    model = module.build_model(**target.args)
    assert [layer.name for layer in model.layers if layer.weights] == \
        [layer.name for layer in expected_model.layers if layer.weights]
    rng = np.random.default_rng(0)
    for layer in expected_model.layers:
        if layer.weights:
            weights = [w + rng.uniform(-0.1, 0.1, w.shape).astype(w.dtype) if w.ndim == 1 else w
                       for w in layer.get_weights()]
            layer.set_weights(weights)
            model.get_layer(layer.name).set_weights(weights)
    x = sample_input(reference.INPUT_SHAPE)
    _close(keras_outputs(model, x), keras_outputs(expected_model, x))
