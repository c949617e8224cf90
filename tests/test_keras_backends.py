"""Generated Keras models on each Keras 3 backend (TensorFlow, JAX, PyTorch): given a generated
PyTorch model's weights, each computes the PyTorch model's outputs; the weights go back to PyTorch
unchanged; a `.keras` file saved on any backend loads, in a fresh process that never imported the
generated module, on every backend, and computes the same outputs.

KERAS_BACKEND must be set before keras is first imported, so each backend runs in a subprocess of
its own (this module's worker functions), over a representative set of specs: every Keras layer of
archdsl.runtime.keras_layers, every layer kind, blocks, repetition, residual (shortcut, drop path), concat,
scale, named tensors, flatten before layers of every kind, the padding modes (same, valid, sizes,
chosen as the model is built), ceil-mode pooling, grouped, depthwise, separable and transposed
convolutions, strides with dilation, unequal strides, LRN, dropout, DropBlock and drop path in
inference, upsampling (by factors, to sizes and to a named tensor's size), crops to a tensor's size,
channel slices and shuffles; and three
networks of the zoo at small sizes (ResNet-20, MobileNetV2, GoogLeNet as the paper draws it)."""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from archdsl.api import generate, load
from archdsl.backends.keras import layer_sources

from .frameworks import ROOT

BACKENDS = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}  # backend -> the package it needs
TOLERANCE = 1e-4

EVERY = """
# what the other specs leave out: strides with dilation (`same`, sizes, chosen as the model is built),
# unequal strides of depthwise and separable convolutions, groups from a parameter, transposed
# convolutions (Keras' Conv2DTranspose, and ConvTranspose2D for groups and strides with a dilation),
# features after a flatten through a channel padding, a residual, a scale and a layer scale
block Down(c, s, g = 1, p = same) {
    conv(c, 3, stride = s, dilation = 2, pad = p, groups = g) bn relu
}
block Flat(n) {
    residual { dense(in.channels) relu dense(in.channels) }
    scale { dense(n) sigmoid }
    layerscale(0.5)
}
network Every(g = 2, tf_pad = true) {
    input [4, 31, 30]
    rescale(0.5, offset = 0.1) normalize([0.4, 0.5, 0.6, 0.7], [0.2, 0.3, 0.25, 0.5])
    a: conv(8, 3, stride = 2, dilation = 2, pad = same)
    b: conv(8, 3, stride = [1, 2], dilation = [2, 1], pad = 1)
    Down(8, 2, g = g, p = same if tf_pad else 1)
    dwconv(3, stride = [2, 1], pad = same, multiplier = 2)
    sepconv(12, 3, stride = [1, 2], pad = 1)
    zeropad_channels([2, 2]) layernorm(eps = 1e-5) layerscale(0.5) silu
    crop([1, 0, 0, 1]) zeropad([0, 1, 1, 0]) tanh
    conv(16, 1, groups = 4) hardsigmoid dropblock(3, 0.1)
    deconv(16, 3, stride = 2, pad = 1, output_pad = 1)
    deconv(16, [2, 3], stride = [1, 2], dilation = 2, pad = [1, 2], output_pad = [1, 0], groups = g) maxpool(2)
    leaky_relu(0.1) identity leaky_relu(slope = -0.1)
    avgpool(3, stride = 2, pad = 1, ceil = true) avgpool(3, stride = 2, pad = 1, count_pad = false)
    flatten zeropad_channels([1, 2]) Flat(1) dense(6)
}
"""

MAPS = """
# a flatten as an output, and one in a block used on a map and on flat features; the caffe preprocessing
block Head(n) {
    flatten dense(n)
}
network Maps {
    input [3, 9, 8]
    preprocess(caffe)
    conv(4, 3, stride = 2, dilation = 2, pad = 2) gelu
    output map = flatten
    conv(5, 1) relu6
    output head = Head(7)
    output again = Head(3)
}
"""


def _specs() -> dict[str, tuple[str | Path, dict]]:
    from .test_backends import DAG, POOLS
    from .test_split import KERAS as SPLIT
    from .test_upsample import SPEC as UPSAMPLING
    from .test_upsample import SPLITS

    return {
        "kitchen_sink": ((ROOT / "tests" / "data" / "kitchen_sink.arch").read_text(), {}),
        "pools": (POOLS, {}),
        "dag": (DAG, {}),
        "every": (EVERY, {}),
        "every_valid": (EVERY, {"tf_pad": False, "g": 8}),
        "maps": (MAPS, {}),
        "upsampling": (UPSAMPLING, {}),  # Interpolate2D (nearest, bilinear, to a tensor), ChannelShuffle
        "splits": (SPLITS, {}),  # CenterCrop2D, ChannelSlice
        "split": (SPLIT, {}),  # ChannelSplit (equal parts, sizes)
        # networks of the zoo, at small sizes: blocks imported from specs/lib, the paths of real models
        "resnet_cifar": (ROOT / "specs" / "resnet_cifar.arch", {"depth": 20}),
        "mobilenet_v2": (ROOT / "specs" / "mobilenet_v2.arch", {"resolution": 64, "classes": 10}),
        "googlenet_paper": (ROOT / "specs" / "googlenet_paper.arch", {"resolution": 96, "classes": 10}),
    }


def _run(code: str, backend: str, timeout: int = 600) -> dict:
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=timeout, check=False)
    assert result.returncode == 0, f"KERAS_BACKEND={backend}:\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> Path:
    """Every spec compiled for both targets into one folder, with jobs.json listing them."""
    folder = tmp_path_factory.mktemp("keras_backends")
    jobs = []
    for key, (source, sets) in _specs().items():
        if isinstance(source, Path):  # a spec of specs/, where its imports are
            spec = source
        else:
            spec = folder / f"{key}.arch"
            spec.write_text(textwrap.dedent(source))
        elab = load(str(spec), sets or None)
        # saved and loaded: the specs written here, which use every custom layer (the zoo's networks add
        # size, not layers, and loading costs most under JAX)
        entry = {"key": key, "outputs": [name for name, _ in elab.outputs], "save": not isinstance(source, Path)}
        for target in ("torch", "keras"):
            path = folder / f"{key}_{target}.py"
            path.write_text(generate(elab, target))
            entry[target] = str(path)
        jobs.append(entry)
    (folder / "jobs.json").write_text(json.dumps(jobs))
    return folder


def _available(backend: str) -> None:
    if importlib.util.find_spec(BACKENDS[backend]) is None:
        pytest.skip(f"KERAS_BACKEND={backend} needs the package {BACKENDS[backend]!r}, which is not installed")


@pytest.fixture(scope="module")
def saved(compiled) -> dict[str, dict]:
    """Each backend's run of worker(): outputs compared, weights back to PyTorch, models saved."""
    results = {}
    for backend, package in BACKENDS.items():
        if importlib.util.find_spec(package) is None:
            continue
        code = f"from tests.test_keras_backends import worker; worker({str(compiled)!r}, {backend!r})"
        results[backend] = _run(code, backend)
    return results


@pytest.mark.parametrize("backend", BACKENDS)
def test_keras_computes_what_pytorch_computes_on_each_backend(saved, backend):
    _available(backend)
    result = saved[backend]
    assert result["backend"] == backend
    assert set(result["diffs"]) == set(_specs())
    for key, diffs in result["diffs"].items():
        for output, diff in diffs.items():
            assert diff <= TOLERANCE, f"{backend}: {key}.{output} differs by {diff:.3g}"
        assert result["scales"][key] > 1e-3, f"{key}: outputs all but zero, nothing compared"
    # and back: the Keras model's weights in a fresh PyTorch model give the same outputs again
    for key, diff in result["round_trip"].items():
        assert diff == 0.0, f"{backend}: {key} after keras_to_torch differs by {diff:.3g}"


@pytest.mark.parametrize("backend", BACKENDS)
def test_saved_models_load_without_the_generated_module(saved, compiled, backend):
    """Every `.keras` file, saved on every backend, loads in a fresh process that imports keras and
    archdsl.runtime.keras_layers only (never the generated module), and computes what it computed."""
    _available(backend)
    files = sorted(str(p) for p in compiled.glob("*.keras"))
    assert len(files) == len(saved) * sum(not isinstance(source, Path) for source, _ in _specs().values())
    code = f"from tests.test_keras_backends import loader; loader({files!r})"
    result = _run(code, backend)
    assert result["generated_imported"] == []
    assert sorted(result["diffs"]) == files
    for path, diff in result["diffs"].items():
        assert diff <= 1e-5, f"{backend}: {Path(path).name} loaded computes other outputs ({diff:.3g})"


def worker(folder: str, backend: str) -> None:
    """In a process whose KERAS_BACKEND is backend: for each spec, the PyTorch model (random weights,
    batch-norm statistics and scales) and the Keras model given its weights on the same input;
    keras_to_torch into a fresh PyTorch model; the Keras model saved as FOLDER/KEY.BACKEND.keras
    with its input and outputs. Prints a JSON line."""
    import torch  # noqa: I001 (before keras: the TensorFlow backend crashes torchvision imported after it)
    import keras

    from archdsl.runtime.interop import keras_to_torch, torch_to_keras

    from .frameworks import every_output, import_path, randomize_batchnorm, sample_input, torch_outputs

    def randomized(module):
        torch.manual_seed(0)
        model = every_output(module.build_model())
        randomize_batchnorm(model)
        gen = torch.Generator().manual_seed(1)
        with torch.no_grad():
            for name, p in model.named_parameters():
                if p.ndim == 1:  # biases, norm scales and shifts, layer scales (1e-6 would hide the rest)
                    p.copy_(torch.rand(p.shape, generator=gen) + 0.5)
        return model

    def keras_run(model, x):
        out = model(x.transpose(0, 2, 3, 1), training=False)
        out = out if isinstance(out, (list, tuple)) else [out]
        arrays = [keras.ops.convert_to_numpy(o) for o in out]
        return [a.transpose(0, 3, 1, 2) if a.ndim == 4 else a for a in arrays]

    assert keras.backend.backend() == backend
    diffs, scales, round_trip, seconds = {}, {}, {}, {}
    for job in json.loads(Path(folder, "jobs.json").read_text()):
        key = job["key"]
        start = time.perf_counter()
        tm = import_path(job["torch"], f"_{key}_torch")
        km = import_path(job["keras"], f"_{key}_keras")
        torch_model = randomized(tm)
        keras_model = km.build_model()
        torch_to_keras(torch_model, keras_model)
        x = sample_input(tm.INPUT_SHAPE)
        expected, got = torch_outputs(torch_model, x), keras_run(keras_model, x)
        assert len(expected) == len(got) == len(job["outputs"])
        diffs[key] = {name: float(np.abs(a - b).max()) for name, a, b in zip(job["outputs"], expected, got)}
        scales[key] = min(float(np.abs(a).max()) for a in expected)
        fresh = every_output(tm.build_model())
        keras_to_torch(keras_model, fresh)
        again = torch_outputs(fresh, x)
        round_trip[key] = max(float(np.abs(a - b).max()) for a, b in zip(expected, again))
        if job["save"]:
            path = Path(folder, f"{key}.{backend}.keras")
            keras_model.save(path)
            np.savez(path.with_suffix(".npz"), *got, x=x)
        seconds[key] = round(time.perf_counter() - start, 2)
    print(json.dumps({"backend": keras.backend.backend(), "diffs": diffs, "scales": scales,
                      "round_trip": round_trip, "seconds": seconds}))


def loader(files: list[str]) -> None:
    """In a fresh process: load each `.keras` file with only keras and archdsl.runtime.keras_layers imported,
    run it on the input saved beside it, print the largest difference from the saved outputs."""
    import keras

    import archdsl.runtime.keras_layers  # noqa: F401 (registers the archdsl> layers with Keras)

    diffs = {}
    for path in files:
        model = keras.saving.load_model(path)
        saved = np.load(Path(path).with_suffix(".npz"))
        x = saved["x"]
        out = model(x.transpose(0, 2, 3, 1), training=False)
        out = out if isinstance(out, (list, tuple)) else [out]
        arrays = [keras.ops.convert_to_numpy(o) for o in out]
        arrays = [a.transpose(0, 3, 1, 2) if a.ndim == 4 else a for a in arrays]
        # relative to the outputs' size (at least 1): another backend rounds otherwise
        diffs[path] = max(float(np.abs(a - saved[f"arr_{i}"]).max() / max(1.0, np.abs(saved[f"arr_{i}"]).max()))
                          for i, a in enumerate(arrays))
    generated = [name for name in sys.modules if name.endswith(("_keras", "_torch")) and name.startswith("_")]
    print(json.dumps({"diffs": diffs, "generated_imported": generated}))


# Without a framework ---------------------------------------------------------------------------------

def test_generated_modules_copy_the_layers_of_archdsl_keras_layers(compiled):
    """One source: each class a generated module defines is archdsl/runtime/keras_layers.py's, verbatim, and
    the specs here use every one of them."""
    sources = layer_sources()
    tree = ast.parse((ROOT / "archdsl" / "runtime" / "keras_layers.py").read_text())
    exported = next(n for n in tree.body if isinstance(n, ast.Assign) and n.targets[0].id == "__all__")
    assert sorted(sources) == sorted(ast.literal_eval(exported.value))
    used = set()
    for path in compiled.glob("*_keras.py"):
        text = path.read_text()
        for node in ast.parse(text).body:
            if isinstance(node, ast.ClassDef):
                assert ast.get_source_segment(text, node) in sources[node.name], node.name
                assert '@keras.saving.register_keras_serializable(package="archdsl")' in sources[node.name]
                used.add(node.name)
    assert used == set(sources)
