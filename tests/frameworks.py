"""Shared by the tests that run generated code: import a generated module, make inputs, run both
frameworks and compare. Only tests import torch and keras; the compiler never does."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

ROOT = Path(__file__).resolve().parent.parent


def import_path(path: Path | str, name: str | None = None):
    """Import a Python file as a module (generated code is not a package)."""
    path = Path(path)
    name = name or f"_archdsl_generated_{path.parent.name}_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def generated_modules(elab, directory: Path, stem: str) -> dict:
    """The generated PyTorch and Keras modules of an expansion, written to directory/stem_<target>.py and
    imported under the name stem_<target>: {"torch": module, "keras": module}."""
    from archdsl.api import generate

    out = {}
    for target in ("torch", "keras"):
        path = Path(directory) / f"{stem}_{target}.py"
        path.write_text(generate(elab, target))
        out[target] = import_path(path, f"{stem}_{target}")
    return out


def randomize_batchnorm(model, seed: int = 0) -> None:
    """Give batch norm layers non-trivial statistics so eval-mode parity tests them."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                n = m.num_features
                m.running_mean.copy_(torch.rand(n, generator=gen) - 0.5)
                m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
                if m.weight is not None:
                    m.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                if m.bias is not None:
                    m.bias.copy_(torch.rand(n, generator=gen) - 0.5)


def every_output(model):
    """The model in eval mode in every layer (batch-norm statistics, no dropout), but computing its
    auxiliary outputs (`auxiliary output`) as train mode does: the generated network class tests
    its own `training` flag for them, the layers theirs. Returns the model."""
    model.eval()
    model.training = True
    return model


def eval_output_names(module) -> list[str]:
    """The outputs a generated PyTorch model returns in eval mode, in order."""
    return [n for n in module.OUTPUT_NAMES if n not in module.AUXILIARY_OUTPUTS]


def sample_input(shape: tuple, batch: int = 2, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, *shape)).astype(np.float32)


def torch_outputs(model, x: np.ndarray) -> list[np.ndarray]:
    import torch

    with torch.no_grad():
        out = model(torch.from_numpy(x))
    out = out if isinstance(out, tuple) else (out,)
    return [o.numpy() for o in out]


def keras_outputs(model, x: np.ndarray) -> list[np.ndarray]:
    """Outputs of a Keras model in PyTorch's layout (channels first) for comparison."""
    inp = x.transpose(0, 2, 3, 1) if x.ndim == 4 else x
    out = model(inp, training=False)
    out = out if isinstance(out, (list, tuple)) else [out]
    result = []
    for o in out:
        o = np.asarray(o)
        result.append(o.transpose(0, 3, 1, 2) if o.ndim == 4 else o)
    return result


def count_torch(model) -> int:
    return sum(p.numel() for p in model.parameters())


def count_torch_trainable(model) -> int:
    """The parameters that train: those that require gradients (not frozen)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _keras_layers(model) -> list:
    """Every layer of a Keras model, a nested model (a base in a Sequential) before its own layers."""
    return [sub for layer in model.layers for sub in [layer, *(_keras_layers(layer) if hasattr(layer, "layers") else [])]]


def count_keras(model) -> int:
    """The weights Keras trains with nothing frozen (archdsl's parameter count: batch norms' moving
    statistics are not among them); the layers' trainable flags are left as they were, those inside a
    nested model too (a container's flag is set on its layers: it is restored before theirs)."""
    flags = [(layer, layer.trainable) for layer in _keras_layers(model)]
    for layer in model.layers:
        layer.trainable = True
    try:
        return sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    finally:
        for layer, flag in flags:
            layer.trainable = flag


def count_keras_trainable(model) -> int:
    """The weights Keras trains as the model is: none of a frozen part's."""
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)
