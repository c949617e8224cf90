"""Weights across frameworks: copy a generated PyTorch model's weights into the generated Keras
model of the same spec, so both compute the same function.

The two generated models name their layers alike (the Keras layer `layer1.bottleneck1.conv1` is the
PyTorch module at that path), so the mapping is by name; what differs is layout:

- convolution kernels: PyTorch OIHW -> Keras HWIO (grouped convolutions too, GroupedConv2D);
- depthwise kernels: PyTorch (C*M, 1, H, W) -> Keras (H, W, C, M);
- dense kernels: transposed; after a flatten, rows reordered from PyTorch's (C, H, W) order to
  Keras' (H, W, C) order (also for a batch norm on the flat features);
- batch norm: weight/bias/running statistics -> gamma/beta/moving mean/moving variance.

torch and keras are imported by the caller's models, not by this module at import time.
"""

from __future__ import annotations

import numpy as np

_PASS_THROUGH = {"Dropout", "Activation", "LeakyReLU", "ReLU", "Softmax", "Identity", "BatchNormalization",
                 "DropPath", "LayerNormalization", "LayerScale", "Rescaling"}


def _array(t) -> np.ndarray:
    return t.detach().cpu().numpy()


def _flatten_order(tensor) -> np.ndarray | None:
    """For a flat Keras tensor: the PyTorch feature index of each Keras feature, when the tensor
    comes from flattening a feature map (through layers that keep features in place); else None."""
    while True:
        history = getattr(tensor, "_keras_history", None)
        if history is None:
            return None
        op = history.operation
        kind = type(op).__name__
        if kind == "Flatten":
            shape = op.input.shape
            if len(shape) != 4:
                return None
            _, h, w, c = shape
            if h * w == 1:
                return None
            # Keras flattens (h, w, c); PyTorch flattened (c, h, w)
            hh, ww, cc = np.meshgrid(np.arange(h), np.arange(w), np.arange(c), indexing="ij")
            return (cc * h * w + hh * w + ww).reshape(-1)
        if kind not in _PASS_THROUGH:
            return None
        tensor = op.input


def torch_to_keras(torch_model, keras_model) -> None:
    """Copy every weight of a generated PyTorch model into the generated Keras model (in place).

    Raises ValueError if a layer has no counterpart or a shape does not fit, so a partial copy
    never passes silently. Compare the two in eval mode (PyTorch) and inference (Keras).
    """
    modules = dict(torch_model.named_modules())
    used: set[str] = set()

    def take(path: str, attr: str) -> np.ndarray:
        module = modules[path]
        tensor = getattr(module, attr)
        used.add(f"{path}.{attr}" if path else attr)
        return _array(tensor)

    for layer in keras_model.layers:
        if not layer.weights:
            continue
        name = layer.name
        kind = type(layer).__name__
        if name not in modules:
            raise ValueError(f"Keras layer {name!r} ({kind}) has no PyTorch module at that path")
        module = modules[name]
        if kind in ("Conv2D", "GroupedConv2D"):  # GroupedConv2D: the generated code's Conv2D with groups
            weights = [take(name, "weight").transpose(2, 3, 1, 0)]
            if layer.use_bias:
                weights.append(take(name, "bias"))
        elif kind == "DepthwiseConv2D":
            w = take(name, "weight")  # (C * M, 1, kh, kw)
            channels = layer.input.shape[-1]
            weights = [w.reshape(channels, -1, w.shape[2], w.shape[3]).transpose(2, 3, 0, 1)]
            if layer.use_bias:
                weights.append(take(name, "bias"))
        elif kind == "SeparableConv2D":
            dw = take(f"{name}.depthwise", "weight")
            channels = layer.input.shape[-1]
            weights = [dw.reshape(channels, -1, dw.shape[2], dw.shape[3]).transpose(2, 3, 0, 1),
                       take(f"{name}.pointwise", "weight").transpose(2, 3, 1, 0)]
            if layer.use_bias:
                weights.append(take(f"{name}.pointwise", "bias"))
        elif kind == "Dense":
            w = take(name, "weight")  # (out, in)
            order = _flatten_order(layer.input)
            if order is not None:
                w = w[:, order]
            weights = [w.T]
            if layer.use_bias:
                weights.append(take(name, "bias"))
        elif kind == "BatchNormalization":
            order = _flatten_order(layer.input) if len(layer.input.shape) == 2 else None
            weights = [take(name, "weight")] if layer.scale else []
            weights += [take(name, "bias")] if layer.center else []
            weights += [take(name, "running_mean"), take(name, "running_var")]
            if order is not None:
                weights = [v[order] for v in weights]
        elif kind == "LayerNormalization":
            order = _flatten_order(layer.input) if len(layer.input.shape) == 2 else None
            weights = [take(name, "weight"), take(name, "bias")]
            if order is not None:
                weights = [v[order] for v in weights]
        elif kind == "LayerScale":
            weights = [take(name, "gamma")]
        else:
            raise ValueError(f"no weight mapping for Keras layer {name!r} of type {kind} "
                             f"(PyTorch module {type(module).__name__})")
        expected = [tuple(v.shape) for v in layer.get_weights()]
        got = [tuple(v.shape) for v in weights]
        if expected != got:
            raise ValueError(f"layer {name!r}: Keras expects weights of shapes {expected}, converted {got}")
        layer.set_weights(weights)

    state = {k for k in torch_model.state_dict() if not k.endswith("num_batches_tracked")}
    missing = sorted(state - used)
    if missing:
        raise ValueError(f"PyTorch weights with no Keras layer: {', '.join(missing[:5])}"
                         f"{' ...' if len(missing) > 5 else ''}")


# Reference implementations ---------------------------------------------------------------------

def _fit(ours: tuple, value: np.ndarray, what: str) -> np.ndarray:
    """A reference tensor in our layout: the same shape, or the same numbers with singleton axes
    added or dropped (a Linear's (out, in) as a 1x1 convolution's (out, in, 1, 1), a (C, 1, 1)
    scale as (C,))."""
    if tuple(value.shape) == tuple(ours):
        return value
    if [d for d in value.shape if d != 1] == [d for d in ours if d != 1]:
        return value.reshape(ours)
    raise ValueError(f"{what}: shapes do not fit, {tuple(ours)} here, {tuple(value.shape)} in the reference")


def _children_first(model, state: dict) -> list[str]:
    """The state's keys in module order, a module's own tensors after its submodules' (a reference
    may keep a block's layer scale on the block itself, where a spec has a layer after the others)."""
    order: list[str] = []

    def visit(module, prefix: str) -> None:
        for name, child in module.named_children():
            visit(child, f"{prefix}{name}.")
        for name, _ in module.named_parameters(recurse=False):
            order.append(prefix + name)
        for name, _ in module.named_buffers(recurse=False):
            order.append(prefix + name)

    visit(model, "")
    return [k for k in order if k in state]


def load_torch_reference(model, reference) -> None:
    """Put a reference PyTorch model's weights (torchvision, timm, a hand-written model) into the
    generated PyTorch model of the same network, in place.

    If every tensor's name agrees, they are copied by name; otherwise all are paired in the order
    both models register them (the order of the spec and of the reference's __init__), each pair
    checked for shape. Raises ValueError, naming the first pair that does not fit, if the two differ in
    structure. Buffers (batch-norm statistics) are copied too.
    """
    import torch

    ours = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    theirs = {k: v for k, v in reference.state_dict().items() if not k.endswith("num_batches_tracked")}
    if len(ours) != len(theirs):
        raise ValueError(f"the models differ in structure: {len(ours)} tensors here, {len(theirs)} in the reference")
    if set(ours) == set(theirs) and all(tuple(ours[k].shape) == tuple(theirs[k].shape) for k in ours):
        pairs = {k: k for k in ours}  # the spec names its layers as the reference does
    else:  # a name that agrees by chance may mean another tensor: pair everything by order
        pairs = dict(zip(_children_first(model, ours), _children_first(reference, theirs)))
    new_state = {}
    for k, r in pairs.items():
        value = _fit(tuple(ours[k].shape), _array(theirs[r]), f"{k} <- {r}")
        new_state[k] = torch.from_numpy(np.ascontiguousarray(value)).to(ours[k].dtype)
    model.load_state_dict(new_state, strict=False)
    missing = [k for k in ours if k not in new_state]
    if missing:  # pragma: no cover - the counts agree, so every tensor has a pair
        raise ValueError(f"no reference tensor for {missing[0]}")


def _weighted_leaves(layer) -> list:
    """The layers with weights that a layer stands for: itself, or those of a nested model."""
    if not getattr(layer, "weights", None):
        return []
    if hasattr(layer, "layers"):
        return [leaf for sub in layer.layers for leaf in _weighted_leaves(sub)]
    return [layer]


def _weighted_depths(model) -> dict[int, int]:
    """For each layer with weights (by id): the most layers with weights on a path from an input to
    it, itself included. Layers without weights (padding, activations, merges) do not count, so
    two models that differ only in those agree."""
    depth: dict[int, int] = {}

    def of(layer) -> int:
        key = id(layer)
        if key in depth:
            return depth[key]
        parents = []
        for node in getattr(layer, "_inbound_nodes", []):
            for tensor in node.input_tensors:
                history = getattr(tensor, "_keras_history", None)
                if history is not None:
                    parents.append(history.operation)
        value = max((of(p) for p in parents), default=0) + len(_weighted_leaves(layer))
        depth[key] = value
        return value

    for layer in model.layers:
        of(layer)
    return depth


def load_keras_reference(model, reference) -> None:
    """Put a reference Keras model's weights (keras.applications) into the generated Keras model of
    the same network, in place.

    Layers with weights are paired by their place in the graph: the number of weighted layers on the
    way from the input (so the two models may create parallel branches in different orders, as
    keras.applications creates a shortcut before the residual body), then by the shapes of their
    weights, then in order. Raises ValueError if the structures differ.
    """
    def groups(m) -> dict[int, list]:
        depths = _weighted_depths(m)
        out: dict[int, list] = {}
        for layer in m.layers:
            if not getattr(layer, "weights", None):
                continue
            inner = _weighted_leaves(layer)
            first = depths[id(layer)] - len(inner) + 1
            for k, leaf in enumerate(inner):  # a nested model is a chain of its layers
                out.setdefault(first + k, []).append(leaf)
        return out

    ours, theirs = groups(model), groups(reference)
    if sorted((d, len(v)) for d, v in ours.items()) != sorted((d, len(v)) for d, v in theirs.items()):
        raise ValueError("the models differ in structure: their layers with weights do not line up by depth")
    for depth, mine_list in ours.items():
        free = list(theirs[depth])
        for mine in mine_list:
            shapes = [tuple(w.shape) for w in mine.get_weights()]
            match = next((r for r in free if [tuple(w.shape) for w in r.get_weights()] == shapes), None)
            if match is None:
                match = next((r for r in free if len(r.get_weights()) == len(shapes)), None)
            if match is None:
                raise ValueError(f"{mine.name}: no layer of the reference at depth {depth} fits it")
            free.remove(match)
            values = match.get_weights()
            mine.set_weights([_fit(s, v, f"{mine.name} <- {match.name}") for s, v in zip(shapes, values)])
