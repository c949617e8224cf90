"""Keras backend: Keras 3 functional API, channels last; one function per block definition.

A block function takes a tensor, the block's parameters and a name prefix, and returns a tensor;
every layer with weights is named by its PyTorch module path with `-` for `.` (`layer3-1-conv1` is
`layer3.1.conv1`: PyTorch, and so Keras' torch backend, forbids dots in a module name, and no spec
name has a dash, so the path comes back exactly; interop.keras_name/torch_path). Layers that only
Keras has (explicit padding, the channels-first permutation before a flatten, a subsampling) are
named by the layer's path and a suffix after two dashes (`conv1--pad`), which no path encodes to.
`build_model()` returns a keras.Model. Where PyTorch's semantics differ from a Keras layer's
(padding of a strided convolution, ceil-mode pooling, padding that must not win a max, the order
of features after a flatten), the code does explicitly what PyTorch does, so the two frameworks
compute the same thing on every Keras backend. Keras layers that Keras lacks come from
archdsl/runtime/keras_layers.py, whose classes' source the module copies (it stays standalone).
"""

from __future__ import annotations

import ast
import functools
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from ..core import graph as G
from . import keras_emitters  # noqa: F401 - registers the Keras emitters
from .common import (
    CodeUnit,
    LocalNames,
    block_params,
    definition_doc,
    header_source,
    is_false,
    is_true,
    is_zero,
    literal,
    network_params,
    py_name,
    quote,
    skip_condition,
    surely_int,
    templates,
)
from .layout import Br, Compound, Suite, lay
from .registry import KERAS

# the prelude's functions (keras_prelude.py.j2), in this order; then the classes of
# archdsl/runtime/keras_layers.py that the module needs, in that file's order
_PRELUDE_FUNCTIONS = ("make_divisible", "normalize_stats", "padded", "conv2d_groups", "set_trainable")


@functools.cache
def layer_sources() -> dict[str, str]:
    """The source of each class in archdsl/runtime/keras_layers.py, its decorator included: read as text,
    never imported (the compiler does not import keras)."""
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "runtime", "keras_layers.py")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    lines = text.splitlines()
    sources = {}
    for node in ast.parse(text).body:
        if isinstance(node, ast.ClassDef):
            start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            sources[node.name] = "\n".join(lines[start - 1:node.end_lineno])
    return sources


def emit(elab: G.Elaborated) -> str:
    return _Module(elab).render()


class _Module:
    def __init__(self, elab: G.Elaborated) -> None:
        self.elab = elab
        self.prelude: set[str] = set()
        self.functions: dict[str, str] = {}
        taken: set[str] = {"build_model", *_PRELUDE_FUNCTIONS}
        for block in elab.program.blocks.values():
            base = py_name(G.snake(block.name))
            name = base
            n = 1
            while name in taken:
                n += 1
                name = f"{base}{n}"
            taken.add(name)
            self.functions[block.name] = name
        self.function_names = set(self.functions.values())
        self.locals = LocalNames(self.function_names | {"build_model"})

    def need(self, name: str) -> None:
        self.prelude.add(name)

    def local(self, name: str) -> str:
        """A parameter, let or output as a Python local: it must not shadow a function of the module."""
        return self.locals(name)

    def render(self) -> str:
        program = self.elab.program
        functions = [_Function(self, b).render().rstrip() for b in program.blocks.values()]
        functions.append(_Function(self, program.network).render().rstrip())
        root = self.elab.root
        classes = [source for name, source in layer_sources().items() if name in self.prelude]
        return templates().get_template("keras.py.j2").render(
            source=header_source(program.spec),
            network=program.network.name,
            summary=f"{root.total_params():,} parameters, {root.total_macs():,} MACs at input {root.in_shape}",
            uses_math=any("math." in f for f in functions),
            uses_ops=any("ops." in c for c in classes),
            uses_layers=any("layers." in text for text in (*classes, *functions)),
            prelude=[n for n in _PRELUDE_FUNCTIONS if n in self.prelude],
            classes=classes,
            same_pad="SamePad2D" in self.prelude,
            functions=functions,
            input_shape=literal(tuple(root.in_shape.dims)),
            output_names=literal(tuple(name for name, _ in self.elab.outputs)),
            auxiliary_outputs=literal(self.elab.auxiliary),
        ).rstrip("\n") + "\n"


class LayerPath:
    """A layer name under construction: literal parts and Python variables (the block's name
    prefix, loop indices), joined by `-` (a PyTorch module path with `-` for `.`), rendered as a
    string literal or an f-string."""

    def __init__(self, parts: tuple[tuple[str, str], ...] = ()) -> None:
        self.parts = parts

    def __truediv__(self, name: str) -> LayerPath:
        """The path one level down: name is a module name, or a path of a few (`branches.0`)."""
        return LayerPath(self.parts + (("lit", name.replace(".", "-")),)) if name else self

    def var(self, name: str) -> LayerPath:
        return LayerPath(self.parts + (("var", name),))

    def suffix(self, text: str) -> LayerPath:
        """The name of a layer only Keras has, after the layer or composite at this path:
        `conv1--pad` (no module path encodes to two dashes in a row)."""
        return LayerPath(self.parts + (("suffix", "--" + text),))

    def code(self) -> str:
        pieces = []
        for kind, text in self.parts:
            piece = "{" + text + "}" if kind == "var" else text
            pieces.append(piece if not pieces or kind == "suffix" else "-" + piece)
        if all(kind != "var" for kind, _ in self.parts):
            return quote("".join(pieces))
        return 'f"' + "".join(pieces) + '"'


class _Function(CodeUnit):
    """One Python function: a block definition, or build_model() for the network."""

    FIRST_PLAIN = ("identity", "i")
    RESERVED_LOCALS = frozenset({"x", "inputs", "name", "in_channels", "in_height", "in_width"})
    FRESH_LOCALS = re.compile(r"(identity|branch|shortcut|scaled|i|padding)\d*")

    def __init__(self, module: _Module, owner: G.BlockDef | G.NetworkDef) -> None:
        super().__init__(module, owner)
        self.out = Suite()  # where statements are written: the function's body, or an `if`'s or a loop's
        self.let_locals: set[str] = set()  # lets as locals: dropped where nothing reads them
        self.input_var = "inputs" if self.is_network or G.names_input(owner.body) else "x"
        self.tensors: dict[str, str] = {"in": self.input_var}  # named tensor -> its variable
        if not self.is_network:
            for p in owner.tensor_params:  # type: ignore[union-attr]
                self.tensors[p.name] = self.m.local(p.name)

    def _in_shape(self, e: G.InShape) -> str:
        if self.is_network:
            net: G.NetworkDef = self.owner  # type: ignore[assignment]
            index = {"channels": 0, "height": 1, "width": 2}[e.attr]
            d = net.input[index]
            return self.expr(d) if d is not None else "None"
        return {"channels": "in_channels", "height": "in_height", "width": "in_width"}[e.attr]

    def tensor_var(self, name: str) -> str:
        """The Python variable of a named tensor."""
        if name in self.tensors:
            return self.tensors[name]
        return self.new_tensor_var(name, self.tensors.values())

    def render(self) -> str:
        owner = self.owner
        doc = definition_doc(owner)
        if self.is_network:
            net: G.NetworkDef = owner  # type: ignore[assignment]
            params, fixups = network_params(self.m.elab, self.expr, self.m.local)
            self.out.extend(fixups)
            dims = [self.expr(d) if d is not None else "None" for d in net.input]
            shape = dims[1:] + dims[:1] if len(dims) == 3 else dims
            self.out.assign("inputs", Br("keras.Input", [f"shape={'(' + ', '.join(shape) + (',)' if len(shape) == 1 else ')')}",
                                                         'name="input"']))
            result = self.seq(net.body, "inputs", "x", LayerPath())
            if self.outputs:
                outs = self.outputs[0] if len(self.outputs) == 1 else Br("", self.outputs, "[", "]")
            else:
                outs = result
            model = Br("keras.Model", ["inputs", outs, f"name={quote(net.name)}"])
            freezes = [i for i in net.body.items if isinstance(i, G.Freeze)]
            if freezes:  # the freeze statements, on the model's layers by path
                self.m.need("set_trainable")
                self.out.assign("model", model)
                for item in freezes:
                    suite = self.out if item.cond is None else self.out.if_(self.expr(item.cond)).body
                    for _, path, _ in item.paths:  # the layers' names: the module path with "-" for "."
                        suite.line(Br("set_trainable", ["model", quote(path.replace(".", "-")), str(item.trainable)]))
                model = "model"
            self.out.line(model, "return ")
            signature = lay(Br("def build_model", params), 0, "", " -> keras.Model:")
        else:
            block: G.BlockDef = owner  # type: ignore[assignment]
            typed, fixups = block_params(block, self.uses(block), self.expr, self.m.local,
                                         tensor=lambda name: f"{name}: keras.KerasTensor")
            x = self.input_var
            self.out.extend(fixups)
            for index, attr in enumerate(("channels", "height", "width")):
                if attr in block.uses_in:
                    self.out.assign(f"in_{attr}", f"{x}.shape[{-1 if index == 0 else index}]")
            result = self.seq(block.body, x, "x", LayerPath().var("name"))
            returns = "keras.KerasTensor"
            if block.taps:  # a base's feature maps, then its result
                result = ", ".join([*(self.tensors[t] for t in block.taps), result])
                returns = "tuple[" + ", ".join(["keras.KerasTensor"] * (len(block.taps) + 1)) + "]"
            self.out.line(result, "return ")
            signature = lay(Br(f"def {self.m.functions[block.name]}", [f"{x}: keras.KerasTensor", *typed, "*",
                                                                         "name: str"]), 0, "", f" -> {returns}:")
        self.out.drop_unused(self.let_locals | {"in_channels", "in_height", "in_width"})
        return templates().get_template("keras_function.py.j2").render(signature=signature, doc=doc,
                                                                       lines=self.out.lines(4))

    @contextmanager
    def into(self, suite: Suite) -> Iterator[Suite]:
        """Write into suite (an `if`'s or a loop's) what is written while in the `with`."""
        outer, self.out = self.out, suite
        try:
            yield suite
        finally:
            self.out = outer

    # sequences and composites

    def seq(self, seq: G.Seq, src: str, dst: str, path: LayerPath) -> str:
        """Write seq applied to the tensor in src, results in dst; returns the variable holding the result."""
        var = src
        targets = G.statement_targets(seq)
        for index, item in enumerate(seq.items):
            if isinstance(item, (G.Check, G.Freeze)):  # checked when the spec was expanded; frozen at the end
                continue
            if isinstance(item, G.Load):
                var = self.tensors[item.name]
                continue
            if isinstance(item, G.Store):
                name = self.tensor_var(item.name)
                if var != name:
                    self.out.assign(name, var)
                self.tensors[item.name] = var = name
                continue
            if isinstance(item, G.Let):
                self.let_ints[item.name] = surely_int(item.value, self.is_int)
                self.let_locals.add(self.m.local(item.name))
                self.out.assign(self.m.local(item.name), self.expr(item.value))
                continue
            target = targets.get(index)
            var = self.node(item, var, self.tensor_var(target) if target else dst, path)
        return var

    def branch(self, suite: Suite, dst: str, write: Callable[[], str]) -> None:
        """Write into suite what write() writes, its result ending in dst."""
        with self.into(suite):
            result = write()
            if result != dst:
                suite.assign(dst, result)

    def node(self, node: G.Node, src: str, dst: str, path: LayerPath) -> str:
        here = path / node.name
        if isinstance(node, G.Layer):
            return self.layer(node, src, dst, here)
        if isinstance(node, G.Merge):
            cls = {"add": "layers.Add", "mul": "layers.Multiply", "concat": "layers.Concatenate"}[node.op]
            names = [self.tensors[r.name] for r in node.inputs]
            self.out.assign(dst, Br(f"{cls}(name={here.code()})", [Br("", names, "[", "]")]))
            return dst
        if isinstance(node, G.BlockCall):
            block = self.m.elab.program.blocks[node.block]
            args = [src]
            positional = True
            for p in block.params:
                if p.name not in node.args:
                    positional = False
                    continue
                arg = node.args[p.name]
                value = self.tensors[arg.name] if isinstance(arg, G.TensorRef) else self.expr(arg)
                args.append(value if positional else f"{self.m.local(p.name)}={value}")
            args.append(f"name={here.code()}")
            targets = [self.tensor_var(name) for name in node.unpack]  # a base's feature maps, then the last
            self.tensors.update(zip(node.unpack, targets, strict=True))
            self.out.assign(", ".join([*targets, dst]), Br(self.m.functions[block.name], args))
            return dst
        if isinstance(node, G.Seq):
            return self.seq(node, src, dst, here)
        base = path if node.inline else here
        if isinstance(node, G.Concat):
            results = []
            for branch in node.branches:
                var = self.fresh("branch")
                results.append(self.seq(branch, src, var, base / branch.name))
            self.out.assign(dst, Br(f"layers.Concatenate(name={here.code()})", [Br("", results, "[", "]")]))
            return dst
        if isinstance(node, G.Residual) and skip_condition(node) is False:  # the body alone
            return self.seq(node.body, src, dst, base / node.body.name)
        if isinstance(node, G.Residual):
            when = skip_condition(node)
            identity = self.fresh("identity")
            self.out.assign(identity, src)
            body = self.seq(node.body, src, dst, base / node.body.name)
            other = identity
            if node.shortcut is not None:
                sc_path = base / node.shortcut.name
                if node.condition is not None:
                    choice = Compound(self.expr(node.condition), "if ")
                    self.branch(choice.body, identity, lambda: self.seq(node.shortcut, identity, identity, sc_path))
                    if choice.body.items:  # a shortcut that computes nothing (identity): no `if`
                        self.out.add(choice)
                else:
                    other = self.seq(node.shortcut, identity, self.fresh("shortcut"), sc_path)
            suite = self.out
            if when is not None:  # the skip where the condition holds, else the body alone
                if body != dst:
                    self.out.assign(dst, body)
                    body = dst
                suite = self.out.if_(self.expr(when)).body
            with self.into(suite):
                if not is_zero(node.drop_path):
                    # stochastic depth: a dropout of whole samples, or of the whole batch (Keras scales the
                    # kept ones by 1 / (1 - rate), as PyTorch's DropPath does); nothing in inference
                    ranks = {inst.out_shape.rank for inst in self.uses(node)}
                    batch = "None" if is_false(node.per_batch) else "1" if is_true(node.per_batch) else \
                        f"1 if {self.expr(node.per_batch)} else None"
                    if len(ranks) == 1:
                        noise = f"({', '.join([batch, *['1'] * ranks.pop()])})"
                    else:  # pragma: no cover - a residual used on maps and on flat features
                        noise = f"({batch},) + (1,) * (len({body}.shape) - 1)"
                    self.out.assign(dst, Br("layers.Dropout", [self.expr(node.drop_path), f"noise_shape={noise}",
                                                               f"name={here.suffix('drop_path').code()}"]), f"({body})")
                    body = dst
                self.out.assign(dst, Br(f"layers.Add(name={here.code()})", [Br("", [body, other], "[", "]")]))
            return dst
        if isinstance(node, G.Scale):
            gate = self.fresh("scaled")
            result = self.seq(node.body, src, gate, base / node.body.name)
            name = here.suffix("mul") if node.inline else here
            self.out.assign(dst, Br(f"layers.Multiply(name={name.code()})", [Br("", [src, result], "[", "]")]))
            return dst
        if isinstance(node, G.Choice):  # an empty branch: the input goes through (`pass`, or no `else:`)
            choice = self.out.if_(self.expr(node.condition))
            self.branch(choice.body, dst, lambda: self.seq(node.then, src, dst, here))
            self.branch(choice.orelse, dst, lambda: self.seq(node.otherwise, src, dst, here))
            return dst
        if isinstance(node, G.Repeat):
            if src != dst:
                self.out.assign(dst, src)
            i = self.m.local(node.index) if node.index else self.fresh("i")
            loop = Compound(self.int_code(node.count), f"for {i} in range(", "):")
            self.branch(loop.body, dst, lambda: self.node(node.body, dst, dst, here.var(i)))
            if loop.body.items:  # a body that computes nothing (identity): no loop
                self.out.add(loop)
            return dst
        if isinstance(node, G.Output):
            var = self.m.local(node.name)
            self.outputs.append(var)
            if node.body is None:
                self.out.assign(var, src)
                return src
            result = self.seq(node.body, src, var, here)
            if result != var:
                self.out.assign(var, result)
            return src
        raise AssertionError(node)  # pragma: no cover

    # layers

    def apply(self, ctor: Br, src: str, dst: str) -> str:
        """`dst = ctor(src)`: a layer applied."""
        self.out.assign(dst, ctor, f"({src})")
        return dst

    def layer(self, node: G.Layer, src: str, dst: str, path: LayerPath) -> str:
        """A layer, as its catalog entry's Keras emitter writes it (backends/keras_emitters.py)."""
        return KERAS[node.type.name](self, node, src, dst, path)
