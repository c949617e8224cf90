"""`archdsl inspect`: run a spec's generated PyTorch model on a batch and measure every layer.

The model is the spec's own generated code (api.generate), executed in memory; torch is imported only
when a function here runs, never on the compile path. One forward pass over a batch gives, per layer
of the summary (the same paths, in the same order), statistics of the layer's output; one backward pass
gives the gradient norm of the layer's parameters. Then the statistics are read along the depth, and
the layers where the signal or the gradient vanishes or explodes are flagged with the reason.

What is measured where (the `measured` column):
- `module`: the layer is a module of the generated model at the layer's path (model.get_submodule);
  a forward hook reads its output as the module returns it (before any later in-place operation).
- `call`: the layer is a function call in its block's forward() (activations, flatten: `F.relu(x)`,
  `torch.tanh(x)`), with no module of its own. A torch function mode sees every call made directly in
  the forward() of the block's module (not inside a layer's module); the calls are matched in order
  with the block's function-call layers of the same kind, and the call's result is measured.
  Crops and channel slices are indexing (`x[..., a:b, c:d]`, Tensor.__getitem__), matched the same way.
- `-`: neither (a layer forward() writes no code for: identity, dropblock at rate 0): not measured.

The definitions (x: every element of the layer's output over the batch, N samples):
- mean, std (population, over all elements), min, max;
- zeros: the fraction of elements exactly 0; dead: the fraction of units (channels of a [C, H, W]
  output, features of a [F] one) that are 0 for every sample and position of the batch (blank where a
  unit has fewer than 16 values in the batch: too few to tell);
- signal: the spread across the batch, sqrt(mean over units and positions of the variance over the N
  samples): how much the layer's output depends on the input (0 when every sample gives the same);
- saturated: sigmoid: x < 0.01 or x > 0.99; tanh: |x| > 0.99; hardsigmoid: x = 0 or x = 1 (its clamps);
  relu6: x = 6 (its upper clamp; x = 0 is counted in zeros); no other layer saturates (blank);
- grad_norm: the L2 norm of the gradient of all the layer's parameters (weights and biases, batch-norm
  scales and shifts) after one backward pass of the loss; weight_norm: the L2 norm of those
  parameters; blank for a layer without parameters, `frozen` where none trains.

The loss: for an output of C >= 2 values (a classifier), the cross-entropy against random labels (the
digits' labels with --input digits), the output taken as logits (as probabilities after a final
softmax); for any other output, the mean square error against standard normal targets; with several
outputs (train mode computes auxiliary heads too), their sum.
"""

from __future__ import annotations

import csv
import io
import math
import os
import sys
import types
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ..api import generate
from ..core.graph import Elaborated
from ..core.layers import LAYERS
from ..language.errors import ArchError
from ..reports.summary import aligned, json_text, markdown, rows

# A layer kind and the function names that compute it in a generated forward() (Tensor methods too).
CALLS = {
    "relu": ("relu", "relu_"), "relu6": ("relu6",), "tanh": ("tanh", "tanh_"), "sigmoid": ("sigmoid", "sigmoid_"),
    "silu": ("silu",), "swish": ("silu",), "hardswish": ("hardswish",), "hardsigmoid": ("hardsigmoid",),
    "gelu": ("gelu",), "leaky_relu": ("leaky_relu", "leaky_relu_"), "softmax": ("softmax",),
    "flatten": ("flatten",), "upsample": ("interpolate",), "crop": ("__getitem__",),
    "channel_slice": ("__getitem__",), "identity": (),
}
_KIND_OF_CALL = {name: kind for kind, names in CALLS.items() for name in names if kind != "swish"}

# How far the signal or the relative gradient may move before a layer is flagged: a factor of 100.
FACTOR = 100.0
INPUTS = ("random", "digits")
MODES = ("train", "eval")
COLUMNS = ("path", "layer", "output shape", "measured", "mean", "std", "min", "max", "zeros", "dead", "saturated",
           "signal", "grad norm", "flag")


@dataclass
class LayerStats:
    """One layer of the summary and what the batch measured there (None: not measured or undefined)."""

    path: str
    layer: str
    output_shape: list
    params: int
    measured: str = "-"  # module | call | -
    mean: float | None = None
    std: float | None = None
    min: float | None = None
    max: float | None = None
    zeros: float | None = None
    dead: float | None = None
    saturated: float | None = None
    signal: float | None = None
    grad_norm: float | None = None
    weight_norm: float | None = None
    frozen: bool = False
    flags: list[str] = field(default_factory=list)

    @property
    def weighted(self) -> bool:
        """A convolution or dense layer (the layers whose weights carry the signal along the depth)."""
        ltype = LAYERS.get(self.layer)
        return ltype is not None and ltype.category in ("conv", "dense") and self.params > 0

    @property
    def relative_grad(self) -> float | None:
        if self.grad_norm is None or not self.weight_norm:
            return None
        return self.grad_norm / self.weight_norm


@dataclass
class Inspection:
    network: str
    spec: str | None
    input: str  # what the batch was
    batch: int
    mode: str
    weights: str | None
    loss: float
    layers: list[LayerStats]
    findings: list[str]

    def to_dict(self) -> dict:
        return {"spec": self.spec, "network": self.network, "input": self.input, "batch": self.batch,
                "mode": self.mode, "weights": self.weights, "loss": self.loss,
                "layers": [{"path": s.path, "layer": s.layer, "output_shape": s.output_shape, "params": s.params,
                            "measured": s.measured, "mean": s.mean, "std": s.std, "min": s.min, "max": s.max,
                            "zeros": s.zeros, "dead": s.dead, "saturated": s.saturated, "signal": s.signal,
                            "grad_norm": s.grad_norm, "weight_norm": s.weight_norm, "frozen": s.frozen,
                            "flags": s.flags} for s in self.layers],
                "findings": self.findings}


# Building the model ---------------------------------------------------------------------------------

def generated_module(elab: Elaborated, target: str = "torch") -> types.ModuleType:
    """The spec's generated code for a target as a module, executed in memory and registered in
    sys.modules under a name of its own (so that pickling and Keras' serialization find its classes)."""
    code = generate(elab, target)
    name = f"archdsl_inspect_{target}_{elab.program.network.name}_{id(elab)}"
    module = types.ModuleType(name)
    module.__file__ = f"<archdsl inspect {target} {elab.program.network.name}>"
    sys.modules[name] = module
    exec(compile(code, module.__file__, "exec"), module.__dict__)  # noqa: S102 - archdsl's own generated code
    return module


def build(elab: Elaborated, weights: str | None = None, seed: int = 0):
    """The generated model with its default initialisation (under `seed`), or with the weights of a file:
    a PyTorch state_dict (.pt, .pth, .bin), or a Keras weights file (.keras, .weights.h5) of the spec's
    generated Keras model, copied into the PyTorch model (runtime.interop.keras_to_torch)."""
    import torch

    module = generated_module(elab)
    with torch.random.fork_rng(devices=[]):  # the caller's random state stays as it was
        torch.manual_seed(seed)
        model = module.build_model()
    if weights is not None:
        load_weights(model, elab, weights)
    return model


def load_weights(model, elab: Elaborated, path: str) -> None:
    import torch

    if not os.path.isfile(path):
        raise ArchError(f"--weights: no file '{path}'")
    lower = path.lower()
    if lower.endswith((".keras", ".h5")):
        _load_keras_weights(model, elab, path)
        return
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is the user's error
        raise ArchError(f"--weights: cannot read '{path}' as a PyTorch state_dict: {e}") from None
    if isinstance(state, dict):
        for key in ("state_dict", "model_state_dict", "model"):
            if isinstance(state.get(key), dict):
                state = state[key]
                break
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ArchError(f"--weights: '{path}' holds no state_dict (a mapping of parameter names to tensors)")
    mine = model.state_dict()
    missing = [k for k in mine if k not in state]
    unexpected = [k for k in state if k not in mine]
    wrong = [f"{k} {tuple(state[k].shape)} (the model's: {tuple(mine[k].shape)})" for k in mine
             if k in state and tuple(state[k].shape) != tuple(mine[k].shape)]
    problems = []
    if missing:
        problems.append(f"missing {_few(missing)}")
    if unexpected:
        problems.append(f"not in the model {_few(unexpected)}")
    if wrong:
        problems.append(f"of another shape {_few(wrong)}")
    if problems:
        raise ArchError(f"--weights: '{path}' does not fit network {elab.program.network.name}: "
                        + "; ".join(problems))
    model.load_state_dict(state)


def _few(names: list[str], n: int = 3) -> str:
    shown = ", ".join(names[:n])
    return f"{len(names)} tensor{'s' * (len(names) != 1)}: {shown}" + (", ..." if len(names) > n else "")


def _load_keras_weights(model, elab: Elaborated, path: str) -> None:
    try:
        import keras  # noqa: F401
    except ImportError:
        raise ArchError("--weights: a Keras weights file needs Keras: pip install 'archdsl[keras]'") from None
    from ..runtime.interop import keras_to_torch

    keras_model = generated_module(elab, "keras").build_model()
    try:
        keras_model.load_weights(path)
    except Exception as e:  # noqa: BLE001
        raise ArchError(f"--weights: cannot load '{path}' into the generated Keras model: {e}") from None
    try:
        keras_to_torch(keras_model, model)
    except ValueError as e:
        raise ArchError(f"--weights: {e}") from None


# Inputs -----------------------------------------------------------------------------------------

def input_shape(elab: Elaborated, size: tuple[int, int] | None = None) -> tuple[int, ...]:
    """The network's input shape; `size` (height, width) fills in a height and width the spec leaves open."""
    shape = elab.root.in_shape
    dims = tuple(shape.dims)
    open_dims = [i for i, d in enumerate(dims) if d is None]
    if size is not None:
        if len(dims) != 3 or not open_dims or 0 in open_dims:
            raise ArchError(f"--size is for a spec that leaves its input's height and width open; network "
                            f"{elab.program.network.name}'s input is {shape}")
        dims = (dims[0], *(s if d is None else d for d, s in zip(dims[1:], size)))
    elif open_dims:
        raise ArchError(f"network {elab.program.network.name}: its input size is open ({shape}); inspect needs "
                        "one: give it with --size HEIGHTxWIDTH")
    return dims


def raw_pixels(elab: Elaborated) -> bool:
    """Whether the network expects pixel values 0..255: its first layer is `preprocess` or `rescale`."""
    table = rows(elab)
    return bool(table) and table[0].layer in ("preprocess", "rescale")


def random_batch(shape: tuple[int, ...], batch: int, seed: int):
    """Standard normal inputs, seeded."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    return torch.randn((batch, *shape), generator=gen)


def image_batch(paths: Sequence[str], shape: tuple[int, ...], scale: float = 1.0):
    """Image files, resized to the input's height and width (bilinear), as RGB or gray as the input's
    channels ask (1: gray; 3: RGB; another count: gray repeated), pixel values scaled to 0..scale."""
    import torch

    try:
        from PIL import Image
    except ImportError:
        raise ArchError("--image needs Pillow: pip install 'archdsl[inspect]'") from None
    if len(shape) != 3:
        raise ArchError(f"--image: the network's input is {list(shape)}, not an image [channels, height, width]")
    channels, height, width = shape
    arrays = []
    for path in paths:
        try:
            with Image.open(path) as img:
                img = img.convert("RGB" if channels == 3 else "L").resize((width, height), Image.BILINEAR)
                a = np.asarray(img, dtype=np.float32) / 255.0
        except OSError as e:
            raise ArchError(f"--image: cannot read '{path}': {e}") from None
        a = a.transpose(2, 0, 1) if a.ndim == 3 else np.repeat(a[None], channels, axis=0)
        arrays.append(a * scale)
    return torch.from_numpy(np.stack(arrays))


def digits_batch(shape: tuple[int, ...], batch: int, scale: float = 1.0, start: int = 0):
    """scikit-learn's 8x8 digits (values 0..16 scaled to 0..scale), resized to the input's size (bilinear),
    the gray channel repeated over the input's channels; and their labels."""
    import torch
    import torch.nn.functional as F

    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise ArchError("--input digits needs scikit-learn: pip install 'archdsl[inspect]'") from None
    if len(shape) != 3:
        raise ArchError(f"--input digits: the network's input is {list(shape)}, not an image")
    data = load_digits()
    images = torch.from_numpy(data.images[start:start + batch].astype(np.float32) / 16.0)[:, None]
    images = F.interpolate(images, size=shape[1:], mode="bilinear", align_corners=False).clamp(0, 1)
    return images.repeat(1, shape[0], 1, 1) * scale, torch.from_numpy(data.target[start:start + batch]).long()


# Measuring --------------------------------------------------------------------------------------

def tensor_stats(x, kind: str) -> dict:
    """The statistics of one layer's output (see the module's docstring for the definitions)."""
    x = x.detach().float()
    out = {"mean": x.mean().item(), "std": x.std(correction=0).item() if x.numel() else 0.0,
           "min": x.min().item(), "max": x.max().item(), "zeros": (x == 0).float().mean().item()}
    if x.dim() >= 2 and x.numel() // x.shape[1] >= 16:
        nonzero = (x != 0).transpose(0, 1).reshape(x.shape[1], -1).any(dim=1)
        out["dead"] = 1.0 - nonzero.float().mean().item()
    out["signal"] = x.var(dim=0, correction=0).mean().sqrt().item() if x.shape[0] > 1 else None
    if kind == "sigmoid":
        out["saturated"] = ((x < 0.01) | (x > 0.99)).float().mean().item()
    elif kind == "tanh":
        out["saturated"] = (x.abs() > 0.99).float().mean().item()
    elif kind == "hardsigmoid":
        out["saturated"] = ((x == 0) | (x == 1)).float().mean().item()
    elif kind == "relu6":
        out["saturated"] = (x == 6).float().mean().item()
    return out


def _record(stats: LayerStats, value, how: str, kept: dict | None = None) -> None:
    import torch

    if stats.measured != "-" or not isinstance(value, torch.Tensor) or not value.is_floating_point():
        return
    if kept is not None:
        kept[stats.path] = value.detach().clone()
    for key, v in tensor_stats(value, stats.layer).items():
        setattr(stats, key, v)
    if None in stats.output_shape and len(stats.output_shape) == value.dim() - 1:
        stats.output_shape = list(value.shape[1:])  # a size the spec leaves open, as this batch has it
    stats.measured = how


class _Probe:
    """The hooks of one forward pass: a forward hook on every layer that is a module, and a torch
    function mode that measures the function-call layers of each block (see the module's docstring)."""

    def __init__(self, model, table: list[LayerStats], keep: Sequence[str] = ()) -> None:
        from torch.overrides import TorchFunctionMode

        self.modules = dict(model.named_modules())
        self.handles = []
        self.stack: list[str] = []  # the modules whose forward() is running, innermost last
        self.inside_layers = 0  # how many of those are layer modules
        self.expected: dict[str, list[LayerStats]] = {}  # block module path -> its call layers, in order
        self.next: dict[str, int] = {}
        self.keep = set(keep)
        self.kept: dict[str, object] = {}  # path -> a copy of the output of a layer in keep
        layer_paths = set()
        for s in table:
            if s.path in self.modules and s.path:
                layer_paths.add(s.path)
            elif s.layer in CALLS:
                self.expected.setdefault(self._owner(s.path), []).append(s)
        by_path = {s.path: s for s in table}
        for name, module in self.modules.items():
            is_layer = name in layer_paths
            self.handles.append(module.register_forward_pre_hook(self._enter(name, is_layer)))
            self.handles.append(module.register_forward_hook(self._leave(name, is_layer, by_path.get(name))))
        probe = self

        class Calls(TorchFunctionMode):
            def __torch_function__(self, func, types, args=(), kwargs=None):
                result = func(*args, **(kwargs or {}))
                if not probe.inside_layers and probe.stack:
                    probe.call(getattr(func, "__name__", ""), result)
                return result

        self.mode = Calls()

    def _owner(self, path: str) -> str:
        parts = path.split(".")
        for i in range(len(parts) - 1, -1, -1):
            prefix = ".".join(parts[:i])
            if prefix in self.modules:
                return prefix
        return ""

    def _enter(self, name: str, is_layer: bool):
        def hook(module, args):
            self.stack.append(name)
            self.inside_layers += is_layer
        return hook

    def _leave(self, name: str, is_layer: bool, stats: LayerStats | None):
        def hook(module, args, output):
            self.stack.pop()
            self.inside_layers -= is_layer
            if is_layer and stats is not None:
                _record(stats, output, "module", self.kept if name in self.keep else None)
        return hook

    def call(self, name: str, result) -> None:
        kind = _KIND_OF_CALL.get(name)
        owner = self.stack[-1]
        expected = self.expected.get(owner)
        if kind is None or not expected:
            return
        start = self.next.get(owner, 0)
        for i in range(start, len(expected)):
            if kind in CALLS and name in CALLS[expected[i].layer]:
                _record(expected[i], result, "call", self.kept if expected[i].path in self.keep else None)
                self.next[owner] = i + 1
                return

    def close(self) -> None:
        for h in self.handles:
            h.remove()


def softmax_outputs(elab: Elaborated, training: bool) -> list[bool]:
    """For each output the model returns (train mode: every output, in spec order; eval mode: those that
    are not auxiliary), whether its last layer is a softmax (its values are probabilities)."""
    table = rows(elab)
    auxiliary = set(elab.auxiliary)
    out = []
    for name, inst in elab.outputs:
        if not training and name in auxiliary:
            continue
        mine = [r for r in table if r.path == inst.path or r.path.startswith(inst.path + ".")]
        out.append(bool(mine) and mine[-1].layer == "softmax")
    return out


def _loss(outputs, labels, softmax: list[bool], seed: int):
    import torch
    import torch.nn.functional as F

    gen = torch.Generator().manual_seed(seed + 1)
    total = 0
    for i, out in enumerate(outputs):
        final_softmax = softmax[i] if i < len(softmax) else False
        if out.dim() == 2 and out.shape[1] >= 2:
            target = labels if labels is not None and int(labels.max()) < out.shape[1] else \
                torch.randint(0, out.shape[1], (out.shape[0],), generator=gen)
            logp = torch.log(out.clamp_min(1e-12)) if final_softmax else F.log_softmax(out, dim=1)
            total = total + F.nll_loss(logp, target)
        else:
            total = total + F.mse_loss(out, torch.randn(out.shape, generator=gen))
    return total


def measure(model, elab: Elaborated, x, labels=None, mode: str = "train",
            seed: int = 0) -> tuple[list[LayerStats], float]:
    """One forward pass of x through model (hooked) and one backward pass of the loss: the table."""
    import torch

    table = [LayerStats(r.path, r.layer, list(r.out_shape.dims), r.params) for r in rows(elab)]
    model.train(mode == "train")
    probe = _Probe(model, table)
    model.zero_grad(set_to_none=True)
    try:
        with probe.mode:
            out = model(x)
    except RuntimeError as e:
        raise ArchError(f"the model cannot run this batch ({list(x.shape)}): {str(e).splitlines()[0]}"
                        + (" (batch norm in train mode needs more than one value a channel: a larger --batch, "
                           "or --mode eval)" if "more than 1 value" in str(e) else "")) from None
    finally:
        probe.close()
    outputs = list(out) if isinstance(out, (tuple, list)) else [out]
    loss = _loss(outputs, labels, softmax_outputs(elab, mode == "train"), seed)
    if loss.requires_grad:
        loss.backward()
    modules = dict(model.named_modules())
    for s in table:
        module = modules.get(s.path) if s.path else None
        if module is None or s.params == 0:
            continue
        params = list(module.parameters())
        if not params:
            continue
        with torch.no_grad():
            s.weight_norm = math.sqrt(sum(float(p.detach().double().pow(2).sum()) for p in params))
            grads = [p.grad for p in params if p.grad is not None]
            if not any(p.requires_grad for p in params):
                s.frozen = True
            elif grads:
                s.grad_norm = math.sqrt(sum(float(g.double().pow(2).sum()) for g in grads))
            elif s.measured != "-":  # it ran, and no gradient came back to it
                s.grad_norm = 0.0
    return table, float(loss.detach())


def capture(model, elab: Elaborated, x, paths: Sequence[str]) -> dict:
    """The outputs of the layers at `paths` for a batch x (eval mode, no gradient), by path."""
    import torch

    table = [LayerStats(r.path, r.layer, list(r.out_shape.dims), r.params) for r in rows(elab)]
    known = {s.path for s in table}
    for path in paths:
        if path not in known:
            near = [p for p in known if path in p][:3] or [s.path for s in table[:3]]
            raise ArchError(f"no layer '{path}' in network {elab.program.network.name} (the paths are those of "
                            f"`archdsl summary`, e.g. {', '.join(near)})")
    model.eval()
    probe = _Probe(model, table, keep=paths)
    try:
        with torch.no_grad(), probe.mode:
            model(x)
    finally:
        probe.close()
    missing = [p for p in paths if p not in probe.kept]
    if missing:
        raise ArchError(f"layer {missing[0]} cannot be measured: its output is neither a module's nor a function "
                        "call's in the generated code")
    return probe.kept


# Reading along the depth ------------------------------------------------------------------------

def _ratio(a: float, b: float) -> str:
    """How many times a is b, as `53,281x` or `1.6e18x`; `infinitely` where b is 0."""
    if b == 0:
        return "infinitely"
    r = a / b
    if r >= 1e5:
        mantissa, exponent = f"{r:.1e}".split("e")
        return f"{mantissa}e{int(exponent)}x"
    return f"{r:,.0f}x" if r >= 10 else f"{r:.2g}x"


def _ends(values: list[float], n: int = 3) -> tuple[float, float]:
    """The median of the first n and of the last n values (the start and the end of the depth)."""
    k = min(n, max(1, len(values) // 2))
    return float(np.median(values[:k])), float(np.median(values[-k:]))


def flag(table: list[LayerStats], trained: bool) -> list[str]:
    """Mark the layers where the signal or the gradient has moved by more than FACTOR along the depth,
    and say why, a sentence per finding; returns the findings (the layers' flags are set too).

    Along the convolution and dense layers (`weighted`), in order: the signal vanishes when the median
    signal of the last three is below the median of the first three divided by FACTOR (explodes: above it
    times FACTOR), and then every weighted layer so far below (above) the start is flagged. The gradients
    vanish when the median relative gradient (grad norm / weight norm) of the first three is below that of
    the last three divided by FACTOR**1.5 (explode: above it times FACTOR**1.5), and then every weighted
    layer that far from the end's is flagged. A dip in between that the end recovers from (a gating
    branch, say) is no finding. Layers whose gradient is exactly 0 are left out of that reading and flagged
    `no gradient`. Each ReLU whose units are at least half dead, and each activation at least half
    saturated, is flagged too."""
    findings: list[str] = []
    kinds = sorted({s.layer for s in table if LAYERS.get(s.layer) and LAYERS[s.layer].category == "activation"})
    norms = [s for s in table if LAYERS.get(s.layer) and LAYERS[s.layer].category == "norm"]
    acts = " and ".join(kinds) if kinds else "no"
    why_norm = ("with no normalization layer to restore the scale" if not norms
                else f"in spite of {len(norms)} normalization layer{'s' * (len(norms) != 1)}")
    init = "" if trained else " at PyTorch's default initialisation (weights of variance 1/(3 fan_in))"
    cause = f"{acts} activations{init}, {why_norm}"
    weighted = [s for s in table if s.weighted and s.signal is not None]
    if len(weighted) >= 2:
        start, end = _ends([s.signal for s in weighted])
        if start > 0 and end < start / FACTOR:
            worst = min(weighted, key=lambda s: s.signal)
            for s in weighted:
                if s.signal < start / FACTOR:
                    s.flags.append("vanishing")
            findings.append(
                "the signal vanishes: its spread across the batch falls "
                + (f"{_ratio(start, worst.signal)} " if worst.signal else "")
                + f"from {start:.3g} (the median of the first three convolution/dense layers) to "
                + (f"{worst.signal:.3g}" if worst.signal else "exactly 0")
                + f" at {worst.path}, "
                f"{weighted.index(worst) + 1} such layers deep ({cause}): the deep layers see nearly the same "
                "output for every input")
        elif start > 0 and end > start * FACTOR:
            worst = max(weighted, key=lambda s: s.signal)
            for s in weighted:
                if s.signal > start * FACTOR:
                    s.flags.append("exploding")
            findings.append(
                f"the signal explodes: its spread across the batch grows {_ratio(worst.signal, start)} from "
                f"{start:.3g} (the median of the first three convolution/dense layers) to {worst.signal:.3g} at "
                f"{worst.path}, "
                f"{weighted.index(worst) + 1} such layers deep ({cause})")
    # a layer whose gradient is exactly 0 got none this pass (a branch that stochastic depth dropped, a path
    # of dead units): it says nothing of how the gradient scales along the depth, and is reported apart
    graded = [s for s in table if s.weighted and s.relative_grad]
    none = [s for s in table if s.weighted and s.relative_grad == 0]
    if none:
        for s in none:
            s.flags.append("no gradient")
        findings.append(
            f"{len(none)} convolution/dense layer{'s' * (len(none) != 1)} got no gradient at all in this pass "
            f"({', '.join(s.path for s in none[:3])}{', ...' if len(none) > 3 else ''}): a branch dropped in "
            "train mode (stochastic depth, dropout), units dead on the way back, or a gradient below float32's "
            "smallest number")
    if len(graded) >= 2:
        start, end = _ends([s.relative_grad for s in graded])
        limit = FACTOR ** 1.5
        if start < end / limit or start > end * limit:
            vanishing = start < end
            word = "vanishing" if vanishing else "exploding"
            extreme = (min if vanishing else max)(graded, key=lambda s: s.relative_grad)
            for s in graded:
                if (s.relative_grad < end / limit) if vanishing else (s.relative_grad > end * limit):
                    s.flags.append(f"{word} gradient")
            findings.append(
                f"{word} gradients: the gradient relative to the weights (grad norm / weight norm) is "
                f"{_ratio(*((end, extreme.relative_grad) if vanishing else (extreme.relative_grad, end)))} "
                f"{'smaller' if vanishing else 'larger'} at {extreme.path} ({extreme.relative_grad:.3g}) than at "
                f"the last three convolution/dense layers (median {end:.3g}): "
                + ("the first layers barely learn" if vanishing else
                   "a step size that suits the last layers throws the first ones far")
                + f" ({cause})")
    for s in table:
        if s.layer in ("relu", "relu6", "leaky_relu") and s.dead is not None and s.dead >= 0.5:
            s.flags.append("dead")
            findings.append(f"{s.path}: {s.dead:.0%} of its units are 0 for every input of the batch (dead ReLUs)")
        if s.saturated is not None and s.saturated >= 0.5:
            s.flags.append("saturated")
            findings.append(f"{s.path}: {s.saturated:.0%} of its outputs are saturated ({s.layer}), where the "
                            "slope is nearly 0 and the gradient does not pass")
    return findings


def inspect(elab: Elaborated, *, spec: str | None = None, weights: str | None = None, inputs: str = "random",
            images: Sequence[str] = (), batch: int = 16, seed: int = 0, mode: str | None = None,
            size: tuple[int, int] | None = None):
    """Build, load, run and measure: the Inspection, and the model and batch it ran (for pictures)."""
    import torch

    if batch < 1:
        raise ArchError(f"--batch must be at least 1, got {batch}")
    if inputs not in INPUTS:
        raise ArchError(f"unknown input '{inputs}' (inputs: {', '.join(INPUTS)}, or --image FILE)")
    shape = input_shape(elab, size)
    model = build(elab, weights, seed)
    scale = 255.0 if raw_pixels(elab) else 1.0
    labels = None
    if images:
        x = image_batch(images, shape, scale)
        what = "image " + ", ".join(images)
    elif inputs == "digits":
        x, labels = digits_batch(shape, batch, scale)
        what = f"scikit-learn digits 0..{batch - 1}"
    else:
        x = random_batch(shape, batch, seed)
        what = f"random normal (seed {seed})"
    mode = mode or ("eval" if weights else "train")
    if mode not in MODES:
        raise ArchError(f"unknown mode '{mode}' (modes: {', '.join(MODES)})")
    buffers = {name: b.detach().clone() for name, b in model.named_buffers()}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        table, loss = measure(model, elab, x, labels, mode, seed)
    with torch.no_grad():  # train mode moved the batch norms' running statistics: put them back
        for name, b in model.named_buffers():
            b.copy_(buffers[name])
    model.zero_grad(set_to_none=True)
    findings = flag(table, trained=weights is not None)
    result = Inspection(elab.program.network.name, spec, what, int(x.shape[0]), mode, weights, loss, table, findings)
    return result, model, x, labels


# Formats ----------------------------------------------------------------------------------------

def _num(v: float | None) -> str:
    if v is None:
        return ""
    if v == 0:
        return "0"
    if abs(v) >= 1e4 or abs(v) < 1e-3:
        return f"{v:.2e}"
    return f"{v:.4g}"


def _frac(v: float | None) -> str:
    return "" if v is None else f"{v:.1%}" if v else "0"


def _cells(s: LayerStats) -> list[str]:
    grad = "frozen" if s.frozen else _num(s.grad_norm)
    shape = "[" + ", ".join("?" if d is None else str(d) for d in s.output_shape) + "]"
    return [s.path, s.layer, shape, s.measured, _num(s.mean),
            _num(s.std), _num(s.min), _num(s.max), _frac(s.zeros), _frac(s.dead), _frac(s.saturated),
            _num(s.signal), grad, ", ".join(s.flags)]


_RIGHT = (False, False, False, False, True, True, True, True, True, True, True, True, True, False)


def _head(r: Inspection) -> str:
    return (f"network {r.network}" + (f" ({r.spec})" if r.spec else "") +
            f": {r.batch} input{'s' * (r.batch != 1)}, {r.input}; {r.mode} mode; "
            + (f"weights {r.weights}" if r.weights else "default initialisation") + f"; loss {r.loss:.4g}")


def _foot(r: Inspection) -> list[str]:
    lines = [f"flag: {f}" for f in r.findings] or [
        (f"no layer flagged: the signal keeps its scale along the depth within {FACTOR:g}x and the relative "
        f"gradients within {FACTOR ** 1.5:g}x; no ReLU half dead, no activation half saturated")]
    return lines + [("measured: module = the output of the layer's module; call = the result of its function call "
                    "in the block's forward(); - = not measured. See `archdsl inspect --help` for the definitions.")]


def render(r: Inspection, fmt: str = "table") -> str:
    if fmt == "json":
        return json_text(r.to_dict())
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["path", "layer", "output_shape", "measured", "mean", "std", "min", "max", "zeros", "dead",
                    "saturated", "signal", "grad_norm", "weight_norm", "frozen", "flags"])

        def v(x):
            return "" if x is None else repr(x)

        for s in r.layers:
            w.writerow([s.path, s.layer, str(s.output_shape), s.measured, v(s.mean), v(s.std), v(s.min), v(s.max),
                        v(s.zeros), v(s.dead), v(s.saturated), v(s.signal), v(s.grad_norm), v(s.weight_norm),
                        "true" if s.frozen else "false", ";".join(s.flags)])
        return buf.getvalue()
    body = [_cells(s) for s in r.layers]
    if fmt == "markdown":
        for cells in body:
            cells[0] = f"`{cells[0]}`" if cells[0] else ""
        return "\n".join([*markdown(list(COLUMNS), body, _RIGHT, _head(r)), "", *_foot(r)]) + "\n"
    if fmt == "table":
        return "\n".join([_head(r), *aligned(list(COLUMNS), body, _RIGHT), *_foot(r)]) + "\n"
    raise ArchError(f"unknown format '{fmt}'")
