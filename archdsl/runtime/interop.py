"""Weights across frameworks: copy a generated PyTorch model's weights into the generated Keras
model of the same spec (torch_to_keras), or back (keras_to_torch), so both compute the same function.

The two generated models name their layers alike: the Keras layer `layer1-bottleneck1-conv1` is the
PyTorch module `layer1.bottleneck1.conv1` (keras_name and torch_path turn one into the other; a
dash, because PyTorch, and so Keras' torch backend, forbids dots in a module name). Layers that only
Keras has are named with two dashes (`conv1--pad`) and carry no weights. What differs is layout:

- convolution kernels: PyTorch OIHW <-> Keras HWIO (grouped convolutions too, GroupedConv2D);
- transposed convolution kernels: PyTorch (in, out / groups, H, W) <-> Keras (H, W, out / groups, in)
  (Conv2DTranspose, and ConvTranspose2D with groups): the same permutation as a convolution's;
- depthwise kernels: PyTorch (C*M, 1, H, W) <-> Keras (H, W, C, M);
- dense kernels: transposed (the generated Keras code flattens in PyTorch's (C, H, W) order, so
  the features after a flatten need no reordering);
- batch norm: weight/bias/running statistics <-> gamma/beta/moving mean/moving variance.

torch and keras are imported by the caller's models, not by this module at import time.
"""

from __future__ import annotations

import numpy as np

from ..backends import keras_emitters  # noqa: F401 - registers the transfer rules
from ..backends.registry import TRANSFER


def keras_name(path: str) -> str:
    """The name of the Keras layer for the PyTorch module at path: `layer3.1.conv1` -> `layer3-1-conv1`."""
    return path.replace(".", "-")


def torch_path(name: str) -> str:
    """The PyTorch module path of a generated Keras layer with weights: `layer3-1-conv1` -> `layer3.1.conv1`
    (spec names never hold a dash)."""
    return name.replace("-", ".")


def _array(t) -> np.ndarray:
    return t.detach().cpu().numpy()


def _channels(layer) -> int:
    return int(layer.input.shape[-1])


# The layouts of the transfer rules (registered beside the Keras emitters, backends/keras_emitters.py):
# PyTorch -> Keras, and back.

def _conv_kernel(w: np.ndarray, layer) -> np.ndarray:
    return w.transpose(2, 3, 1, 0)  # OIHW -> HWIO; a transposed convolution's IOHW -> HWOI


def _conv_kernel_back(k: np.ndarray, layer) -> np.ndarray:
    return k.transpose(3, 2, 0, 1)


def _depthwise_kernel(w: np.ndarray, layer) -> np.ndarray:
    channels = _channels(layer)  # (C * M, 1, kh, kw) -> (kh, kw, C, M)
    return w.reshape(channels, -1, w.shape[2], w.shape[3]).transpose(2, 3, 0, 1)


def _depthwise_kernel_back(k: np.ndarray, layer) -> np.ndarray:
    kh, kw, c, m = k.shape
    return k.transpose(2, 3, 0, 1).reshape(c * m, 1, kh, kw)


def _same(v: np.ndarray, layer) -> np.ndarray:
    return v


def _transposed(v: np.ndarray, layer) -> np.ndarray:
    return v.T


LAYOUTS = {"same": (_same, _same), "conv": (_conv_kernel, _conv_kernel_back),
           "depthwise": (_depthwise_kernel, _depthwise_kernel_back), "dense": (_transposed, _transposed)}


def _tensors(layer) -> list[tuple[str, str, object, object]] | None:
    """(PyTorch submodule, attribute, to Keras, to PyTorch) for each of a Keras layer's weights, in
    Keras' order, from the transfer rule of its class; None for a class with no rule."""
    rule = TRANSFER.get(type(layer).__name__)
    if rule is None:
        return None
    return [(sub, attr, *LAYOUTS[layout]) for sub, attr, layout in rule.tensors(layer)]


def _pairs(torch_model, keras_model):
    """(Keras layer, PyTorch module path, its tensors) for each Keras layer with weights. Raises
    ValueError for a layer with no module at its path or no known mapping."""
    modules = dict(torch_model.named_modules())
    for layer in keras_model.layers:
        if not layer.weights:
            continue
        path = torch_path(layer.name)
        kind = type(layer).__name__
        if path not in modules:
            raise ValueError(f"Keras layer {layer.name!r} ({kind}) has no PyTorch module at {path!r}")
        tensors = _tensors(layer)
        if tensors is None:
            raise ValueError(f"no weight mapping for Keras layer {layer.name!r} of type {kind} "
                             f"(PyTorch module {type(modules[path]).__name__})")
        yield layer, path, tensors


def _key(path: str, sub: str, attr: str) -> str:
    return ".".join(p for p in (path, sub, attr) if p)


def _state(torch_model) -> set[str]:
    return {k for k in torch_model.state_dict() if not k.endswith("num_batches_tracked")}


def _all_used(torch_model, used: set[str]) -> None:
    missing = sorted(_state(torch_model) - used)
    if missing:
        raise ValueError(f"PyTorch weights with no Keras layer: {', '.join(missing[:5])}"
                         f"{' ...' if len(missing) > 5 else ''}")


def torch_to_keras(torch_model, keras_model) -> None:
    """Copy every weight of a generated PyTorch model into the generated Keras model (in place).

    Raises ValueError if a layer has no counterpart or a shape does not fit, so a partial copy
    never passes silently. Compare the two in eval mode (PyTorch) and inference (Keras).
    """
    state = torch_model.state_dict()
    used: set[str] = set()
    for layer, path, tensors in _pairs(torch_model, keras_model):
        weights = []
        for sub, attr, to_keras, _ in tensors:
            key = _key(path, sub, attr)
            if key not in state:
                raise ValueError(f"Keras layer {layer.name!r}: PyTorch has no tensor {key!r}")
            used.add(key)
            weights.append(to_keras(_array(state[key]), layer))
        expected = [tuple(v.shape) for v in layer.get_weights()]
        got = [tuple(v.shape) for v in weights]
        if expected != got:
            raise ValueError(f"layer {layer.name!r}: Keras expects weights of shapes {expected}, converted {got}")
        layer.set_weights(weights)
    _all_used(torch_model, used)


def keras_to_torch(keras_model, torch_model) -> None:
    """Copy every weight of a generated Keras model into the generated PyTorch model of the same
    spec (in place): torch_to_keras backwards. Raises ValueError as it does."""
    import torch

    state = torch_model.state_dict()
    new_state = {}
    for layer, path, tensors in _pairs(torch_model, keras_model):
        for (sub, attr, _, to_torch), value in zip(tensors, layer.get_weights()):
            key = _key(path, sub, attr)
            if key not in state:
                raise ValueError(f"Keras layer {layer.name!r}: PyTorch has no tensor {key!r}")
            converted = to_torch(np.asarray(value), layer)
            if tuple(converted.shape) != tuple(state[key].shape):
                raise ValueError(f"layer {layer.name!r}: PyTorch expects {key} of shape {tuple(state[key].shape)}, "
                                 f"converted {tuple(converted.shape)}")
            new_state[key] = torch.from_numpy(np.ascontiguousarray(converted)).to(state[key].dtype)
    _all_used(torch_model, set(new_state))
    torch_model.load_state_dict(new_state, strict=False)


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


def _torch_part(model, part: str | None):
    """The submodule of a generated PyTorch model at a part's path (`base`, `base.block5`); the
    model itself for None."""
    if not part:
        return model
    try:
        return model.get_submodule(part)
    except AttributeError:
        names = [n for n, _ in model.named_children()]
        raise ValueError(f"the model has no part {part!r} (its top-level parts: {', '.join(names)})") from None


def _describe(key: str | None, state: dict) -> str:
    return "nothing" if key is None else f"{key} {tuple(state[key].shape)}"


def _fits(ours: tuple, theirs: tuple) -> bool:
    return tuple(ours) == tuple(theirs) or [d for d in ours if d != 1] == [d for d in theirs if d != 1]


def _structure_error(ours: dict, theirs: dict, mine: list[str], their_keys: list[str]) -> ValueError:
    """The error for two models whose tensors do not pair: the counts, and the first pair in order
    whose shapes do not fit, or the first tensor left without a pair."""
    for k in range(max(len(mine), len(their_keys))):
        a = mine[k] if k < len(mine) else None
        b = their_keys[k] if k < len(their_keys) else None
        if a is None or b is None or not _fits(tuple(ours[a].shape), tuple(theirs[b].shape)):
            break
    hint = ""
    if len(their_keys) > len(mine) and a is None:
        hint = (" (a reference with its top? build it without: torchvision's `.features`, timm's "
                "`num_classes=0, global_pool=\"\"`, or pass its part without the top)")
    return ValueError(f"the models differ in structure: {len(ours)} tensors here, {len(theirs)} in the reference; "
                      f"tensor {k + 1} in order: {_describe(a, ours)} here, {_describe(b, theirs)} in the "
                      f"reference{hint}")


def load_torch_reference(model, reference, part: str | None = None) -> None:
    """Put a reference PyTorch model's weights (torchvision, timm, a hand-written model) into the
    generated PyTorch model of the same network, in place.

    If every tensor's name agrees, they are copied by name; otherwise all are paired in the order
    both models register them (the order of the spec and of the reference's __init__), each pair
    checked for shape. Raises ValueError, naming the first pair that does not fit, if the two differ in
    structure. Buffers (batch-norm statistics) are copied too.

    part: the path of a part of the model to fill instead of the whole (`"base"` for a spec's
    `base: VGG16() through block5`, `"base.block5"`), from a reference built without its top:
    torchvision's `vgg16().features`, timm's `create_model("resnet50", num_classes=0, global_pool="")`
    or `features_only=True`. The same as `load_torch_reference(model.get_submodule(part), reference)`.
    """
    import torch

    model = _torch_part(model, part)
    ours = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    theirs = {k: v for k, v in reference.state_dict().items() if not k.endswith("num_batches_tracked")}
    if set(ours) == set(theirs) and all(tuple(ours[k].shape) == tuple(theirs[k].shape) for k in ours):
        pairs = {k: k for k in ours}  # the spec names its layers as the reference does
    else:  # a name that agrees by chance may mean another tensor: pair everything by order
        mine, their_keys = _children_first(model, ours), _children_first(reference, theirs)
        if len(mine) != len(their_keys) or not all(
                _fits(tuple(ours[a].shape), tuple(theirs[b].shape)) for a, b in zip(mine, their_keys)):
            raise _structure_error(ours, theirs, mine, their_keys)
        pairs = dict(zip(mine, their_keys))
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


def _weighted_depths(model, counted=None) -> dict[int, int]:
    """For each layer with weights (by id): the most layers with weights on a path from an input to
    it, itself included. Layers without weights (padding, activations, merges) do not count, so
    two models that differ only in those agree; nor do the layers for which counted (if given) is
    false, so a part of a model is numbered from its own first layer."""
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
        own = len(_weighted_leaves(layer)) if counted is None or counted(layer) else 0
        value = max((of(p) for p in parents), default=0) + own
        depth[key] = value
        return value

    for layer in model.layers:
        of(layer)
    return depth


def _keras_part(model, part: str | None):
    """Whether a layer of a generated Keras model is in the part at a path (`base`, `base.block5`:
    the layer named `base-block5` and those named `base-block5-...`); None for the whole model."""
    if not part:
        return None
    prefix = keras_name(part)

    def inside(layer) -> bool:
        return layer.name == prefix or layer.name.startswith(prefix + "-")

    if not any(inside(layer) for layer in model.layers):
        tops = sorted({layer.name.split("-")[0] for layer in model.layers if layer.weights})
        raise ValueError(f"the model has no part {part!r} (no layer named {prefix!r} or {prefix + '-...'!r}; "
                         f"its parts with weights: {', '.join(tops)})")
    return inside


def _weighted_groups(model, inside=None) -> dict[int, list]:
    """The leaf layers with weights of a model (or of its part where inside is true) by depth."""
    depths = _weighted_depths(model, inside)
    out: dict[int, list] = {}
    for layer in model.layers:
        if not getattr(layer, "weights", None) or (inside is not None and not inside(layer)):
            continue
        inner = _weighted_leaves(layer)
        first = depths[id(layer)] - len(inner) + 1
        for k, leaf in enumerate(inner):  # a nested model is a chain of its layers
            out.setdefault(first + k, []).append(leaf)
    return out


def _depth_error(ours: dict[int, list], theirs: dict[int, list]) -> ValueError:
    """The error for two models whose layers with weights do not line up: the first depth at which
    they differ (in the number of layers or the shapes of their weights), and the layers there."""
    def names(group: dict[int, list], depth: int) -> str:
        layers = group.get(depth, [])
        listed = ", ".join(f"{layer.name} {[tuple(w.shape) for w in layer.weights]}" for layer in layers[:3])
        return (listed + (" ..." if len(layers) > 3 else "")) or "nothing"

    def shapes(group: dict[int, list], depth: int) -> list:
        return sorted(str([tuple(w.shape) for w in layer.weights]) for layer in group.get(depth, []))

    count = (sum(len(v) for v in ours.values()), sum(len(v) for v in theirs.values()))
    first = min(d for d in set(ours) | set(theirs) if shapes(ours, d) != shapes(theirs, d))
    hint = ""
    if count[1] > count[0] and not ours.get(first):
        hint = " (a reference with its top? build it with include_top=False)"
    return ValueError(f"the models differ in structure: {count[0]} layers with weights here, {count[1]} in the "
                      f"reference; at depth {first} (layers with weights from the input): {names(ours, first)} "
                      f"here, {names(theirs, first)} in the reference{hint}")


def load_keras_reference(model, reference, part: str | None = None) -> None:
    """Put a reference Keras model's weights (keras.applications) into the generated Keras model of
    the same network, in place.

    Layers with weights are paired by their place in the graph: the number of weighted layers on the
    way from the input (so the two models may create parallel branches in different orders, as
    keras.applications creates a shortcut before the residual body), then by the shapes of their
    weights, then in order. Raises ValueError, naming the first layers that do not line up or fit, if
    the structures differ.

    part: the path of a part of the model to fill instead of the whole (`"base"` for a spec's
    `base: Xception() through exit_flow`: the layers named `base` and `base-...`), from a reference
    built without its top (`keras.applications.Xception(include_top=False, weights=None)`); the
    part's layers are numbered from its first, whatever comes before it. The same argument as
    load_torch_reference's.
    """
    ours, theirs = _weighted_groups(model, _keras_part(model, part)), _weighted_groups(reference)
    if sorted((d, len(v)) for d, v in ours.items()) != sorted((d, len(v)) for d, v in theirs.items()):
        raise _depth_error(ours, theirs)
    for depth, mine_list in ours.items():
        free = list(theirs[depth])
        for mine in mine_list:
            shapes = [tuple(w.shape) for w in mine.get_weights()]
            match = next((r for r in free if [tuple(w.shape) for w in r.get_weights()] == shapes), None)
            if match is None:
                match = next((r for r in free if len(r.get_weights()) == len(shapes)), None)
            if match is None:
                theirs_here = ", ".join(f"{r.name} {[tuple(w.shape) for w in r.weights]}" for r in free)
                raise ValueError(f"{mine.name} {shapes}: no layer of the reference at depth {depth} fits it "
                                 f"(left there: {theirs_here or 'nothing'})")
            free.remove(match)
            values = _in_our_feature_order(mine, match, match.get_weights())
            mine.set_weights([_fit(s, v, f"{mine.name} <- {match.name}") for s, v in zip(shapes, values)])


# layers that keep the features of a flat tensor in place
_PASS_THROUGH = {"Dropout", "Activation", "LeakyReLU", "ReLU", "Softmax", "Identity", "BatchNormalization",
                 "LayerNormalization", "LayerScale", "Rescaling"}


def _chw_order(tensor) -> np.ndarray | None:
    """For a flat Keras tensor that comes from flattening a feature map (through layers that keep
    features in place): the index in PyTorch's (C, H, W) order of each of its features; None where
    that is the order (a generated model flattens channels first) or the tensor comes from no flatten."""
    while True:
        history = getattr(tensor, "_keras_history", None)
        if history is None:
            return None
        op = history.operation
        kind = type(op).__name__
        if kind == "Flatten":
            before = getattr(op.input, "_keras_history", None)
            if len(op.input.shape) != 4 or (before is not None and type(before.operation).__name__ == "Permute"):
                return None
            _, h, w, c = op.input.shape
            hh, ww, cc = np.meshgrid(np.arange(h), np.arange(w), np.arange(c), indexing="ij")
            return (cc * h * w + hh * w + ww).reshape(-1)  # Keras flattened (h, w, c)
        if kind not in _PASS_THROUGH:
            return None
        tensor = op.input


def _in_our_feature_order(mine, reference, values: list) -> list:
    """A reference layer's weights for our layer, with its rows after a flatten put in our order:
    keras.applications flattens (H, W, C), generated models (C, H, W) as PyTorch does."""
    if len(reference.input.shape) != 2:
        return values
    theirs, ours = _chw_order(reference.input), _chw_order(mine.input)
    if theirs is None and ours is None:
        return values
    n = reference.input.shape[-1]
    theirs = np.arange(n) if theirs is None else theirs
    ours = np.arange(n) if ours is None else ours
    rows = np.argsort(theirs)[ours]  # our feature k is their feature rows[k]
    if type(reference).__name__ == "Dense":  # the kernel's rows; not the bias
        return [values[0][rows], *values[1:]]
    return [v[rows] if v.shape[:1] == (n,) else v for v in values]
