"""Generated models for the registry entries the benchmarks compare, and the item-4 hook
(`archdsl compile --optimize inference`). Imports neither torch nor tensorflow itself."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from common import PYTHON, ROOT

sys.path.insert(0, str(ROOT))

from archdsl.api import generate, load
from archdsl.tools.zoo import Entry, read_registry

# Registry keys; each entry names its reference.
# The pairs of issue 5, item 3, and issue 15's MobileNetV3 Large.
TORCH_KEYS = ("resnet50", "densenet121", "mobilenet_v2", "googlenet", "mobilenet_v3_large")
KERAS_KEYS = ("resnet50_keras", "densenet121_keras", "mobilenet_v2_keras", "mobilenet_v3_large_keras")

_TMP = tempfile.mkdtemp(prefix="archdsl-bench-models-")


def entry(key: str) -> Entry:
    return next(e for e in read_registry(ROOT) if e.key == key)


def reference_args(args: dict) -> dict:
    """TOML has no null: the registry writes None as the string "None"."""
    return {k: None if v == "None" else v for k, v in args.items()}


def _import(path: str, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _load(key: str, sets: dict | None = None):
    """A registry entry's spec, elaborated at its settings and `sets`, with paths relative to the
    repository as in the committed generated code."""
    e = entry(key)
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        return load(os.path.relpath(e.spec_path(ROOT), ROOT), {**e.sets, **(sets or {})})
    finally:
        os.chdir(cwd)


def generated_module(key: str, target: str, sets: dict | None = None):
    """The generated module of a registry entry at its registry settings (the spec's default input,
    224x224 for every network compared with torchvision or keras.applications), and `sets`."""
    code = generate(_load(key, sets), target)
    path = os.path.join(_TMP, f"{key}_{target}.py")
    Path(path).write_text(code, encoding="utf-8")
    return _import(path, f"bench_{key}_{target}")


# Networks that neither torchvision nor keras.applications has (issue 15): each compared with an
# independent hand-written model of its paper, at an input of its own.
# U-Net (Ronneberger et al., 2015): 252x252x1 tiles, batch 2. 252 = 16 * 8 + 124 is a valid tile (its
# poolings all see even sizes) whose 68x68 output keeps the expansive path's share of the work: at the
# smallest tile, 188, the output is 4x4 and the crops discard most of the copies, so the decoder's
# up-convolutions, crops and concatenations would hardly be timed. The paper's 572 costs 150 G MACs
# a tile; 252 costs 15.1 G, so a batch of 2 (30 G MACs a forward) weighs what ResNet-50's batch of
# 8 at 224 does (33 G). References: tests/test_unet.py's PaperUNet (PyTorch) and tests/unet_keras.py
# (Keras), which the tests check against the generated models (parameter count, outputs).
HANDWRITTEN = {"unet": {"sets": {"resolution": 252}, "batch": 2,
                        "torch": "hand-written PyTorch U-Net (tests/test_unet.py: PaperUNet)",
                        "keras": "hand-written functional Keras U-Net (tests/unet_keras.py)"}}
HANDWRITTEN_KEYS = tuple(HANDWRITTEN)  # compared in both frameworks


def handwritten_input(key: str) -> tuple[int, tuple[int, ...]]:
    """The batch and the one-sample input shape (channels, height, width) a hand-written pair runs at."""
    h = HANDWRITTEN[key]
    return h["batch"], tuple(_load(key, h["sets"]).root.in_shape.dims)


def handwritten_name(key: str, framework: str) -> str:
    """How the report names a hand-written pair's reference ("torch" or "keras"), with its input."""
    batch, shape = handwritten_input(key)
    return f"{HANDWRITTEN[key][framework]}, batch {batch}, {'x'.join(map(str, shape))}"


def handwritten_torch(key: str):
    """The hand-written PyTorch model of a HANDWRITTEN key (imports torch)."""
    if key == "unet":
        from tests.test_unet import PaperUNet

        return PaperUNet()
    raise KeyError(key)


def handwritten_keras(key: str):
    """The hand-written Keras model of a HANDWRITTEN key, built for its input (imports keras, never torch)."""
    if key == "unet":
        from tests.unet_keras import paper_unet_keras

        return paper_unet_keras(HANDWRITTEN[key]["sets"]["resolution"])
    raise KeyError(key)


# Item 4 (optimized inference emission) -------------------------------------------------------------
# `archdsl compile --optimize inference` does not exist yet. When it does, the torch and keras parts
# time its model next to the plain generated one and the reference (forward, inference only).

def optimize_available() -> tuple[bool, str]:
    proc = subprocess.run([PYTHON, "-m", "archdsl", "compile", "--help"], check=False, cwd=ROOT, capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    if "--optimize" in proc.stdout:
        return True, "archdsl compile --optimize is available"
    return False, "skipped: `archdsl compile` has no --optimize option yet (issue 5, item 4)"


def optimized_module(key: str, target: str):
    """The module `archdsl compile SPEC --target T --optimize inference` writes for a registry entry."""
    e = entry(key)
    path = os.path.join(_TMP, f"{key}_{target}_optimized.py")
    sets = [a for k, v in e.sets.items() for a in ("--set", f"{k}={_value(v)}")]
    spec = os.path.relpath(e.spec_path(ROOT), ROOT)
    proc = subprocess.run([PYTHON, "-m", "archdsl", "compile", spec, "--target", target, "--optimize", "inference",
                           "-o", path, *sets], check=False, cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}")
    return _import(path, f"bench_{key}_{target}_optimized")


def _value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, tuple):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    return repr(v)
