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


def generated_module(key: str, target: str):
    """The generated module of a registry entry at its registry settings (the spec's default input,
    224x224 for every network benchmarked here)."""
    e = entry(key)
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        code = generate(load(os.path.relpath(e.spec_path(ROOT), ROOT), e.sets), target)
    finally:
        os.chdir(cwd)
    path = os.path.join(_TMP, f"{key}_{target}.py")
    Path(path).write_text(code, encoding="utf-8")
    return _import(path, f"bench_{key}_{target}")


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
