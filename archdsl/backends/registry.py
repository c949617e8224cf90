"""Per-layer emitters, registered against the catalog's entries (archdsl/core/layers.py).

Each backend keeps its emitters beside it (torch_emitters.py, keras_emitters.py): one function per
catalog layer type, or one for a family of types that share their code, registered with the
decorators below. The backends look a layer up here by its catalog name and know no layer by name
themselves; tests/test_catalog.py fails where a catalog entry lacks an emitter for a backend, or,
if it has weights, a rule that moves them between the two frameworks (runtime/interop.py reads it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..core.layers import LAYERS

# catalog layer -> its PyTorch emitter: the module a class builds for it (constructor code, as a call)
TORCH: dict[str, Callable] = {}
# catalog layer -> a PyTorch function form, for the layers forward() may apply without a module
# (activations, flatten); optional
TORCH_FUNCTIONAL: dict[str, Callable] = {}
# catalog layer -> its Keras emitter: the layers a function applies for it
KERAS: dict[str, Callable] = {}


@dataclass(frozen=True)
class Transfer:
    """How the weights of one Keras layer class that a catalog layer is emitted as sit in PyTorch:
    `tensors(keras_layer)` lists, in Keras' weight order, (PyTorch submodule under the layer's path,
    "" for the module itself; its tensor's name; the layout: "same", "conv" (OIHW <-> HWIO, and a
    transposed convolution's IOHW <-> HWOI, the same permutation),
    "depthwise" ((C*M, 1, H, W) <-> (H, W, C, M)) or "dense" (transposed))."""

    layers: tuple[str, ...]  # the catalog layers emitted as this Keras class
    tensors: Callable[[object], list[tuple[str, str, str]]]


TRANSFER: dict[str, Transfer] = {}  # Keras layer class -> its rule


def _register(table: dict[str, Callable], kinds: tuple[str, ...]) -> Callable[[Callable], Callable]:
    def register(fn: Callable) -> Callable:
        for kind in kinds:
            if kind not in LAYERS or LAYERS[kind].name != kind:
                raise ValueError(f"{fn.__name__}: {kind!r} is not a layer of the catalog (or is an alias)")
            if kind in table:
                raise ValueError(f"{fn.__name__}: {kind!r} has an emitter already ({table[kind].__name__})")
            table[kind] = fn
        return fn
    return register


@dataclass(frozen=True)
class TorchFacts:
    """What the PyTorch backend's memory planning needs to know of a layer (a default for a layer that
    says nothing: its result may be a view of its input, it never works in place)."""

    allocates: bool = False  # its result is a new tensor of its own (not its input or a view of it)
    passes_input: bool = False  # it computes nothing: its result is its input
    # may overwrite its input (the previous layer's own result): in the plain model (a bool, or a test
    # of the layer's uses: `fn(uses) -> bool`), and in --optimize inference
    inplace_training: bool | Callable[[list], bool] = False
    inplace_inference: bool = False
    # --optimize inference folds a layer that is a fold source (a batch norm) into the fold target right
    # before it (a convolution)
    fold_source: bool = False
    fold_target: bool = False


TORCH_FACTS: dict[str, TorchFacts] = {}


def torch_module(*kinds: str, **facts) -> Callable[[Callable], Callable]:
    """Registers `fn(unit, node, cin, inplace) -> constructor code` as the PyTorch module of these
    layers; keyword arguments are their TorchFacts."""
    register = _register(TORCH, kinds)

    def register_with_facts(fn: Callable) -> Callable:
        register(fn)
        TORCH_FACTS.update({kind: TorchFacts(**facts) for kind in kinds})
        return fn
    return register_with_facts


def torch_functional(*kinds: str) -> Callable[[Callable], Callable]:
    """Registers `fn(unit, node, src, inplace) -> expression` as the function form of these layers, which
    forward() applies at the top of a class; None where this use needs the module after all."""
    return _register(TORCH_FUNCTIONAL, kinds)


def keras_layer(*kinds: str) -> Callable[[Callable], Callable]:
    """Registers `fn(unit, node, src, dst, path) -> variable` as the Keras emission of these layers."""
    return _register(KERAS, kinds)


def transfer(keras_class: str, *layers: str) -> Callable[[Callable], Callable]:
    """Registers `fn(keras_layer) -> [(submodule, tensor, layout)]` for a Keras class that these catalog
    layers (with weights) are emitted as."""
    def register(fn: Callable) -> Callable:
        for layer in layers:
            if layer not in LAYERS or not LAYERS[layer].weights:
                raise ValueError(f"{fn.__name__}: {layer!r} is not a catalog layer with weights")
        if keras_class in TRANSFER:
            raise ValueError(f"{fn.__name__}: Keras class {keras_class!r} has a transfer rule already")
        TRANSFER[keras_class] = Transfer(layers, fn)
        return fn
    return register
