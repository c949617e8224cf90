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

from ..core import graph as G
from ..core.layers import GLOBAL, SAME, VALID, same_pads
from ..language.errors import ArchError
from .common import (
    Br,
    CodeUnit,
    LocalNames,
    agreed,
    block_params,
    const,
    drop_unused_assignments,
    four_sides,
    header_source,
    int_code,
    is_false,
    is_one,
    is_true,
    is_zero,
    lay,
    literal,
    network_params,
    pad_chosen,
    pad_parts,
    py_name,
    quote,
    surely_int,
    templates,
)

_ACTIVATIONS = {
    "relu": "relu", "relu6": "relu6", "tanh": "tanh", "sigmoid": "sigmoid", "softmax": "softmax",
    "silu": "silu", "hardswish": "hard_swish", "hardsigmoid": "hard_sigmoid", "gelu": "gelu",
}
# the prelude's functions (keras_prelude.py.j2), then the classes of archdsl/runtime/keras_layers.py, in this order
_PRELUDE_FUNCTIONS = ("make_divisible", "normalize_stats", "padded", "conv2d_groups")
_PRELUDE_CLASSES = ("Pad2D", "SamePad2D", "PaddedAvgPool2D", "ChannelPad", "GroupedConv2D",
                    "LayerScale", "LeakyReLUAnySlope", "LocalResponseNorm", "AdaptiveAvgPool2D")


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
        classes = [layer_sources()[n] for n in _PRELUDE_CLASSES if n in self.prelude]
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


class _Path:
    """A layer name under construction: literal parts and Python variables (the block's name
    prefix, loop indices), joined by `-` (a PyTorch module path with `-` for `.`), rendered as a
    string literal or an f-string."""

    def __init__(self, parts: tuple[tuple[str, str], ...] = ()) -> None:
        self.parts = parts

    def __truediv__(self, name: str) -> _Path:
        """The path one level down: name is a module name, or a path of a few (`branches.0`)."""
        return _Path(self.parts + (("lit", name.replace(".", "-")),)) if name else self

    def var(self, name: str) -> _Path:
        return _Path(self.parts + (("var", name),))

    def suffix(self, text: str) -> _Path:
        """The name of a layer only Keras has, after the layer or composite at this path:
        `conv1--pad` (no module path encodes to two dashes in a row)."""
        return _Path(self.parts + (("suffix", "--" + text),))

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
        self.lines: list[str] = []
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
        doc = (f'"""{"network" if self.is_network else "block"} {owner.name} '
               f'({header_source(owner.span.file)}:{owner.span.line})."""')
        if self.is_network:
            net: G.NetworkDef = owner  # type: ignore[assignment]
            params, fixups = network_params(self.m.elab, self.expr, self.m.local, indent=4)
            self.lines.extend(fixups)
            dims = [self.expr(d) if d is not None else "None" for d in net.input]
            shape = dims[1:] + dims[:1] if len(dims) == 3 else dims
            self.lines.extend(lay(Br("keras.Input", [f"shape={'(' + ', '.join(shape) + (',)' if len(shape) == 1 else ')')}",
                                                     'name="input"']), 4, "inputs = "))
            result = self.seq(net.body, "inputs", "x", _Path(), 4)
            if self.outputs:
                outs = self.outputs[0] if len(self.outputs) == 1 else Br("", self.outputs, "[", "]")
            else:
                outs = result
            self.lines.extend(lay(Br("keras.Model", ["inputs", outs, f"name={quote(net.name)}"]), 4, "return "))
            signature = lay(Br("def build_model", params), 0, "", " -> keras.Model:")
        else:
            block: G.BlockDef = owner  # type: ignore[assignment]
            typed, fixups = block_params(block, self.uses(block), self.expr, self.m.local, indent=4,
                                         tensor=lambda name: f"{name}: keras.KerasTensor")
            head: list[str] = []
            x = self.input_var
            if "channels" in block.uses_in:
                head.append(f"    in_channels = {x}.shape[-1]")
            if "height" in block.uses_in:
                head.append(f"    in_height = {x}.shape[1]")
            if "width" in block.uses_in:
                head.append(f"    in_width = {x}.shape[2]")
            self.lines.extend(fixups)
            self.lines.extend(head)
            result = self.seq(block.body, x, "x", _Path().var("name"), 4)
            self.lines.append(f"    return {result}")
            signature = lay(Br(f"def {self.m.functions[block.name]}", [f"{x}: keras.KerasTensor", *typed, "*",
                                                                         "name: str"]), 0, "", " -> keras.KerasTensor:")
        lines = drop_unused_assignments(self.lines, self.let_locals | {"in_channels", "in_height", "in_width"})
        return templates().get_template("keras_function.py.j2").render(signature=signature, doc=doc, lines=lines)

    # sequences and composites

    def seq(self, seq: G.Seq, src: str, dst: str, path: _Path, indent: int) -> str:
        """Emit seq applied to the tensor in src, results in dst; returns the variable holding the result."""
        var = src
        targets = G.statement_targets(seq)
        for index, item in enumerate(seq.items):
            if isinstance(item, G.Check):  # checked when the spec was expanded
                continue
            if isinstance(item, G.Load):
                var = self.tensors[item.name]
                continue
            if isinstance(item, G.Store):
                name = self.tensor_var(item.name)
                if var != name:
                    self.lines.append(f"{' ' * indent}{name} = {var}")
                self.tensors[item.name] = var = name
                continue
            if isinstance(item, G.Let):
                self.let_ints[item.name] = surely_int(item.value, self.is_int)
                self.let_locals.add(self.m.local(item.name))
                self.lines.extend(lay(self.expr(item.value), indent, f"{self.m.local(item.name)} = "))
                continue
            target = targets.get(index)
            var = self.node(item, var, self.tensor_var(target) if target else dst, path, indent)
        return var

    def node(self, node: G.Node, src: str, dst: str, path: _Path, indent: int) -> str:
        here = path / node.name
        pad = " " * indent
        if isinstance(node, G.Layer):
            return self.layer(node, src, dst, here, indent)
        if isinstance(node, G.Merge):
            cls = {"add": "layers.Add", "concat": "layers.Concatenate"}[node.op]
            names = [self.tensors[r.name] for r in node.inputs]
            self.lines.extend(lay(Br(f"{cls}(name={here.code()})", [Br("", names, "[", "]")]), indent, f"{dst} = "))
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
            self.lines.extend(lay(Br(self.m.functions[block.name], args), indent, f"{dst} = "))
            return dst
        if isinstance(node, G.Seq):
            return self.seq(node, src, dst, here, indent)
        base = path if node.inline else here
        if isinstance(node, G.Concat):
            results = []
            for branch in node.branches:
                var = self.fresh("branch")
                results.append(self.seq(branch, src, var, base / branch.name, indent))
            self.lines.extend(lay(Br(f"layers.Concatenate(name={here.code()})", [Br("", results, "[", "]")]),
                                  indent, f"{dst} = "))
            return dst
        if isinstance(node, G.Residual):
            identity = self.fresh("identity")
            self.lines.append(f"{pad}{identity} = {src}")
            body = self.seq(node.body, src, dst, base / node.body.name, indent)
            other = identity
            if node.shortcut is not None:
                sc_path = base / node.shortcut.name
                if node.condition is not None:
                    start = len(self.lines)
                    self.lines.extend(lay(self.expr(node.condition), indent, "if ", ":"))
                    header = len(self.lines)
                    result = self.seq(node.shortcut, identity, identity, sc_path, indent + 4)
                    if result != identity:
                        self.lines.append(f"{pad}    {identity} = {result}")
                    if len(self.lines) == header:  # a shortcut that computes nothing (identity): no `if`
                        del self.lines[start:]
                else:
                    other = self.seq(node.shortcut, identity, self.fresh("shortcut"), sc_path, indent)
            if not is_zero(node.drop_path):
                # stochastic depth: a dropout of whole samples (Keras scales the kept ones by
                # 1 / (1 - rate), as PyTorch's DropPath does); nothing in inference
                ranks = {inst.out_shape.rank for inst in self.uses(node)}
                if len(ranks) == 1:
                    noise = literal((None,) + (1,) * ranks.pop())
                else:  # pragma: no cover - a residual used on maps and on flat features
                    noise = f"(None,) + (1,) * (len({body}.shape) - 1)"
                self.lines.extend(lay(Br("layers.Dropout", [self.expr(node.drop_path), f"noise_shape={noise}",
                                                            f"name={here.suffix('drop_path').code()}"]),
                                      indent, f"{dst} = ", f"({body})"))
                body = dst
            self.lines.extend(lay(Br(f"layers.Add(name={here.code()})", [Br("", [body, other], "[", "]")]),
                                  indent, f"{dst} = "))
            return dst
        if isinstance(node, G.Scale):
            gate = self.fresh("scaled")
            result = self.seq(node.body, src, gate, base / node.body.name, indent)
            name = here.suffix("mul") if node.inline else here
            self.lines.extend(lay(Br(f"layers.Multiply(name={name.code()})", [Br("", [src, result], "[", "]")]),
                                  indent, f"{dst} = "))
            return dst
        if isinstance(node, G.Choice):
            self.lines.extend(lay(self.expr(node.condition), indent, "if ", ":"))
            before = len(self.lines)
            result = self.seq(node.then, src, dst, here, indent + 4)
            if result != dst:
                self.lines.append(f"{pad}    {dst} = {result}")
            if len(self.lines) == before:  # an empty branch: the input goes through
                self.lines.append(f"{pad}    pass")
            self.lines.append(f"{pad}else:")
            before = len(self.lines)
            result = self.seq(node.otherwise, src, dst, here, indent + 4)
            if result != dst:
                self.lines.append(f"{pad}    {dst} = {result}")
            if len(self.lines) == before:
                self.lines.pop()  # no `else:` for an empty branch
            return dst
        if isinstance(node, G.Repeat):
            if src != dst:
                self.lines.append(f"{pad}{dst} = {src}")
            i = self.m.local(node.index) if node.index else self.fresh("i")
            start = len(self.lines)
            self.lines.extend(lay(int_code(node.count, self.expr, self.is_int), indent, f"for {i} in range(", "):"))
            before = len(self.lines)
            result = self.node(node.body, dst, dst, here.var(i), indent + 4)
            if result != dst:
                self.lines.append(f"{pad}    {dst} = {result}")
            if len(self.lines) == before:  # a body that computes nothing (identity): no loop
                del self.lines[start:]
            return dst
        if isinstance(node, G.Output):
            var = self.m.local(node.name)
            self.outputs.append(var)
            if node.body is None:
                self.lines.append(f"{pad}{var} = {src}")
                return src
            result = self.seq(node.body, src, var, here, indent)
            if result != var:
                self.lines.append(f"{pad}{var} = {result}")
            return src
        raise AssertionError(node)  # pragma: no cover

    # layers

    def apply(self, ctor: Br, src: str, dst: str, indent: int) -> str:
        self.lines.extend(lay(ctor, indent, f"{dst} = ", f"({src})"))
        return dst

    def layer(self, node: G.Layer, src: str, dst: str, path: _Path, indent: int) -> str:
        kind = node.type.name
        a = node.args
        e = lambda ex: self.typed(node, ex)
        name = f"name={path.code()}"
        if kind == "identity":
            return src
        if kind in _ACTIVATIONS:
            return self.apply(Br("layers.Activation", [quote(_ACTIVATIONS[kind]), name]), src, dst, indent)
        if kind == "leaky_relu":
            cls = "layers.LeakyReLU"
            slopes = [i.args["slope"] for i in self.uses(node)] or [const(a["slope"])]
            if not all(isinstance(v, (int, float)) and v >= 0 for v in slopes):  # Keras' refuses < 0
                self.m.need("LeakyReLUAnySlope")
                cls = "LeakyReLUAnySlope"
            return self.apply(Br(cls, [f"negative_slope={e(a['slope'])}", name]), src, dst, indent)
        if kind == "flatten":
            return self.flatten(node, src, dst, path, indent)
        if kind == "dropout":
            return self.apply(Br("layers.Dropout", [e(a["rate"]), name]), src, dst, indent)
        if kind == "dense":
            args = [e(a["units"])]
            if not is_true(a["bias"]):
                args.append(f"use_bias={e(a['bias'])}")
            return self.apply(Br("layers.Dense", [*args, name]), src, dst, indent)
        if kind == "bn":
            m = a["momentum"]
            momentum = literal(round(1.0 - m.value, 12)) if isinstance(m, G.Const) else f"1 - {e(m)}"
            args = [f"epsilon={e(a['eps'])}", f"momentum={momentum}"]
            args += [f"{k}={e(a[ours])}" for k, ours in (("scale", "gamma"), ("center", "beta")) if not is_true(a[ours])]
            return self.apply(Br("layers.BatchNormalization", [*args, name]), src, dst, indent)
        if kind == "lrn":
            self.m.prelude.add("LocalResponseNorm")
            return self.apply(Br("LocalResponseNorm", [e(a["size"]), f"alpha={e(a['alpha'])}",
                                                       f"beta={e(a['beta'])}", f"k={e(a['k'])}", name]),
                              src, dst, indent)
        if kind == "layernorm":
            return self.apply(Br("layers.LayerNormalization", [f"epsilon={e(a['eps'])}", name]), src, dst, indent)
        if kind == "layerscale":
            self.m.prelude.add("LayerScale")
            return self.apply(Br("LayerScale", [e(a["init"]), name]), src, dst, indent)
        if kind == "rescale":
            args = [e(a["scale"])] + ([] if is_zero(a["offset"]) else [f"offset={e(a['offset'])}"])
            return self.apply(Br("layers.Rescaling", [*args, name]), src, dst, indent)
        if kind == "normalize":
            def per_channel(inst: G.Inst, arg: str) -> tuple:
                values = inst.args[arg]
                return values if len(values) > 1 else values * inst.in_shape.channels

            try:
                mean = agreed(node, self.uses(node), lambda i: per_channel(i, "mean"), "the mean", self.owner_desc(),
                              default=_constant_floats(a["mean"]))
                std = agreed(node, self.uses(node), lambda i: per_channel(i, "std"), "the standard deviation",
                             self.owner_desc(), default=_constant_floats(a["std"]))
            except ArchError:  # they differ between the uses of the block
                mean = std = None
            if mean is None or std is None:  # from the block's parameters, as the model is built
                self.m.need("normalize_stats")
                stats = Br("**normalize_stats", [e(a["mean"]), e(a["std"])])
                return self.apply(Br("layers.Normalization", [stats, name]), src, dst, indent)
            if len(mean) != len(std):
                mean, std = (mean * len(std), std) if len(mean) == 1 else (mean, std * len(mean))
            variance = tuple(float(v) * float(v) for v in std)  # type: ignore[union-attr]
            return self.apply(Br("layers.Normalization", [f"mean={literal(mean)}", f"variance={literal(variance)}",
                                                          name]), src, dst, indent)
        if kind == "zeropad_channels":
            self.m.prelude.add("ChannelPad")
            parts = pad_parts(a["pad"], self.expr)
            if parts is None:
                pads = literal(agreed(node, self.uses(node), lambda i: i.args["pad"], "the channel padding",
                                      self.owner_desc()))
            else:
                pads = f"({parts[0]}, {parts[-1]})"
            return self.apply(Br("ChannelPad", [pads, name]), src, dst, indent)
        if kind == "crop":
            t, b, left, r = four_sides(node, self.uses(node), "crop", lambda ex: int_code(ex, self.expr, self.is_int),
                                       self.owner_desc())
            return self.apply(Br("layers.Cropping2D", [f"(({t}, {b}), ({left}, {r}))", name]), src, dst, indent)
        if kind == "zeropad":
            t, b, left, r = four_sides(node, self.uses(node), "pad", lambda ex: int_code(ex, self.expr, self.is_int),
                                       self.owner_desc())
            return self.apply(Br("layers.ZeroPadding2D", [f"(({t}, {b}), ({left}, {r}))", name]), src, dst, indent)
        if kind in ("conv", "dwconv", "sepconv"):
            return self.conv(node, src, dst, path, indent)
        if kind in ("maxpool", "avgpool"):
            return self.pool(node, src, dst, path, indent)
        if kind == "adaptive_avgpool":
            ratio = agreed(node, self.uses(node), lambda i: _adaptive_plan(i), "the pooling windows", self.owner_desc(),
                           default="general")
            if ratio == 1:
                return self.apply(Br("layers.Identity", [name]), src, dst, indent)
            if isinstance(ratio, tuple):
                return self.apply(Br("layers.AveragePooling2D", [literal(ratio), name]), src, dst, indent)
            self.m.prelude.add("AdaptiveAvgPool2D")
            return self.apply(Br("AdaptiveAvgPool2D", [e(a["size"]), name]), src, dst, indent)
        raise AssertionError(kind)  # pragma: no cover

    def flatten(self, node: G.Layer, src: str, dst: str, path: _Path, indent: int) -> str:
        """PyTorch flattens (C, H, W), Keras' Flatten the (H, W, C) it holds: a Permute to channels
        first before it, so every layer after a flatten sees PyTorch's features in PyTorch's order
        (a dense, a batch norm, a layer scale, a padding of the features, a model output). None
        where the order is the same: a 1 x 1 map or one channel, or features already flat."""
        def reorders(inst: G.Inst) -> bool:
            x = inst.in_shape
            return x.rank == 3 and x.channels != 1 and (x.height, x.width) != (1, 1)

        permute = Br("layers.Permute", ["(3, 1, 2)", f"name={path.suffix('chw').code()}"])
        insts = self.uses(node)
        if insts and all(reorders(i) for i in insts):
            src = self.apply(permute, src, dst, indent)
        elif not insts or any(reorders(i) for i in insts):  # the input's rank is known as the model is built
            if src != dst:
                self.lines.append(f"{' ' * indent}{dst} = {src}")
            self.lines.append(f"{' ' * indent}if len({dst}.shape) == 4:")
            src = self.apply(permute, dst, dst, indent + 4)
        return self.apply(Br("layers.Flatten", [f"name={path.code()}"]), src, dst, indent)

    def conv(self, node: G.Layer, src: str, dst: str, path: _Path, indent: int) -> str:
        kind = node.type.name
        a = node.args
        e = lambda ex: self.typed(node, ex)
        padding = self.conv_padding(node)
        grouping = self.grouping(node) if kind == "conv" else "none"
        subsample = self.subsampled(node, grouping)
        window = f"({e(a['kernel'])}, {e(a['stride'])}, {e(a['dilation'])})"
        if padding == "explicit":
            src = self.apply(Br("layers.ZeroPadding2D", [e(a["pad"]), f"name={path.suffix('pad').code()}"]),
                             src, dst, indent)
        elif padding == "chosen":
            padding = self.padded(a["pad"], src, dst, path, indent, window=window if subsample else None)
            src = dst
        elif padding == "same" and subsample:  # `same` at the strides, before a convolution at stride 1
            self.m.need("SamePad2D")
            src = self.apply(Br("SamePad2D", [e(a["kernel"]), e(a["stride"]), e(a["dilation"]),
                                              f"name={path.suffix('pad').code()}"]), src, dst, indent)
            padding = "valid"
        if grouping == "depthwise":
            kind = "dwconv"
        args: list[str] = []
        if kind in ("conv", "sepconv"):
            args.append(e(a["filters"]))
        args.append(e(a["kernel"]))
        if grouping == "chosen":
            args.append(e(a["groups"]))
        if not is_one(a["stride"]) and not subsample:
            args.append(f"strides={e(a['stride'])}")
        if padding == "same":
            args.append('padding="same"')
        elif padding not in ("valid", "explicit"):  # a local: what padded() chose
            args.append(f"padding={padding}")
        if not is_one(a["dilation"]):
            args.append(f"dilation_rate={e(a['dilation'])}")
        if grouping == "grouped":
            args.append(f"groups={e(a['groups'])}")
        if grouping == "depthwise":
            multiplier = agreed(node, self.uses(node), lambda i: i.args["filters"] // i.args["groups"],
                                "the depth multiplier", self.owner_desc())
            if multiplier != 1:
                args.append(f"depth_multiplier={multiplier}")
        elif kind in ("dwconv", "sepconv") and not is_one(a["multiplier"]):
            args.append(f"depth_multiplier={e(a['multiplier'])}")
        if not is_true(a["bias"]):
            args.append(f"use_bias={e(a['bias'])}")
        cls = {"conv": "layers.Conv2D", "dwconv": "layers.DepthwiseConv2D", "sepconv": "layers.SeparableConv2D"}[kind]
        if grouping == "grouped":
            self.m.need("GroupedConv2D")
            cls = "GroupedConv2D"
        if grouping == "chosen":  # the layer is chosen as the model is built: a call, not a layer
            self.m.need("GroupedConv2D")
            self.m.need("conv2d_groups")
            self.lines.extend(lay(Br("conv2d_groups", [src, *args, f"name={path.code()}"]), indent, f"{dst} = "))
            src = dst
        else:
            src = self.apply(Br(cls, [*args, f"name={path.code()}"]), src, dst, indent)
        if subsample:  # every stride-th output of the convolution at stride 1: a pooling of one pixel
            src = self.apply(Br("layers.MaxPooling2D", ["1", f"strides={e(a['stride'])}",
                                                        f"name={path.suffix('stride').code()}"]), src, dst, indent)
        return src

    def subsampled(self, node: G.Layer, grouping: str) -> bool:
        """Whether a convolution computes at stride 1, a pooling of one pixel then taking every
        stride-th output (PyTorch's windows exactly): where Keras has no layer for it. Keras'
        Conv2D refuses strides with a dilation; TensorFlow's depthwise convolution on CPU (where
        oneDNN does not run it) refuses unequal strides. Decided from the uses, as they were
        expanded (from the spec alone for a layer no use reaches)."""
        depthwise = node.type.name in ("dwconv", "sepconv") or grouping != "none"

        def needs(stride, dilation) -> bool:
            stride, dilation = (v if isinstance(v, tuple) else (v, v) for v in (stride, dilation))
            return (max(stride) > 1 and max(dilation) > 1) or (depthwise and stride[0] != stride[1])

        if self.uses(node):
            return any(needs(i.args["stride"], i.args["dilation"]) for i in self.uses(node))
        stride, dilation = const(node.args["stride"]), const(node.args["dilation"])
        return isinstance(stride, (int, tuple)) and isinstance(dilation, (int, tuple)) and needs(stride, dilation)

    def grouping(self, node: G.Layer) -> str:
        """How a conv's groups are written in Keras: 'none' (one group: Conv2D), 'chosen' (groups
        from the block's parameters: conv2d_groups() picks Conv2D, DepthwiseConv2D or GroupedConv2D
        as the model is built, for whatever values build_model() is given), 'depthwise' (groups a
        constant and one input channel per group in every use, with one depth multiplier:
        DepthwiseConv2D) or 'grouped' (other constant groups: GroupedConv2D). Keras' own
        Conv2D(groups=g) computes right, but its TensorFlow backend compiles every grouped
        convolution with XLA anew on each call on CPU (MobileNetV2 ran 8x slower than
        keras.applications'); a layer that picks its kernel at run time ran 5% slower than
        Conv2D and DepthwiseConv2D do."""
        groups = node.args["groups"]
        if is_one(groups):
            return "none"
        if not isinstance(groups, G.Const):
            return "chosen"
        if self.uses(node) and all(i.args["groups"] == i.in_shape.channels for i in self.uses(node)) and \
                len({i.args["filters"] // i.args["groups"] for i in self.uses(node)}) == 1:
            return "depthwise"
        return "grouped"

    def padded(self, pad: G.Expr, src: str, dst: str, path: _Path, indent: int, value: str | None = None,
               window: str | None = None) -> str:
        """`dst, paddingN = padded(src, pad, ...)`: the padding chosen as the model is built (see
        common.pad_chosen); returns the local that holds the Keras padding for the layer. window:
        (kernel, strides, dilation) of a convolution subsampled after it (`same` pads here)."""
        self.m.need("Pad2D")
        self.m.need("padded")
        if window:
            self.m.need("SamePad2D")
        var = self.fresh("padding")
        args = [src, self.expr(pad), *([value] if value else []), f"name={path.suffix('pad').code()}",
                *([f"window={window}"] if window else [])]
        self.lines.extend(lay(Br("padded", args), indent, f"{dst}, {var} = "))
        return var

    def conv_padding(self, node: G.Layer) -> str:
        """'valid', 'same' (where Keras' same pads exactly as the spec says), 'explicit' or 'chosen'
        (same, valid or a size from the parameters, chosen as the model is built)."""
        if pad_chosen(node, self.uses(node)):
            return "chosen"
        insts = self.uses(node)
        if not insts:  # not seen in use: decide from the spec alone
            pad = const(node.args["pad"])
            return "same" if pad == SAME else "valid" if pad in (VALID, 0, (0, 0)) else "explicit"
        if all(i.args["pad"] == SAME for i in insts):
            return "same"
        if all(i.args["pad"] == VALID or i.args["pad"] == (0, 0) for i in insts):
            return "valid"
        if any(isinstance(i.args["pad"], G.Symbol) for i in insts):
            raise ArchError("the padding mixes same/valid and sizes between uses of this layer", node.span)
        if all(_symmetric_same(i) for i in insts):
            return "same"
        return "explicit"

    def pool(self, node: G.Layer, src: str, dst: str, path: _Path, indent: int) -> str:
        kind = node.type.name
        a = node.args
        e = lambda ex: self.typed(node, ex)
        name = f"name={path.code()}"
        if all(i.args["kernel"] == GLOBAL for i in self.uses(node)):
            cls = "layers.GlobalMaxPooling2D" if kind == "maxpool" else "layers.GlobalAveragePooling2D"
            return self.apply(Br(cls, ["keepdims=True", name]), src, dst, indent)
        cls = "layers.MaxPooling2D" if kind == "maxpool" else "layers.AveragePooling2D"
        args = [e(a["kernel"])]
        if not (isinstance(a["stride"], G.Const) and a["stride"].value is None):
            args.append(f"strides={e(a['stride'])}")
        if pad_chosen(node, self.uses(node)) and is_false(a["ceil"]) and (kind == "maxpool" or is_true(a["count_pad"])):
            padding = self.padded(a["pad"], src, dst, path, indent, 'float("-inf")' if kind == "maxpool" else None)
            return self.apply(Br(cls, [*args, f"padding={padding}", name]), dst, dst, indent)
        plan = agreed(node, self.uses(node), lambda i: _pool_plan(i), "the padding this pooling needs in Keras",
                      self.owner_desc(), default=None)
        if plan is None:  # not seen in use: what the spec alone says
            plan = _static_pool_plan(node)
        if plan == "same" and kind == "avgpool" and not all(_even_same(i) for i in self.uses(node)):
            self.m.need("PaddedAvgPool2D")
            return self.apply(Br("PaddedAvgPool2D", [*args, 'padding="same"', name]), src, dst, indent)
        if plan == "same":
            args.append('padding="same"')
        elif plan != "valid":
            pads, value = plan  # type: ignore[misc]
            if value == "zero":
                src = self.apply(Br("layers.ZeroPadding2D", [literal(pads), f"name={path.suffix('pad').code()}"]),
                                 src, dst, indent)
            elif value == "-inf":
                self.m.prelude.add("Pad2D")
                src = self.apply(Br("Pad2D", [literal(pads), 'value=float("-inf")',
                                              f"name={path.suffix('pad').code()}"]), src, dst, indent)
            elif isinstance(value, tuple):  # ("counted", pads): the padding that counts in the average
                self.m.need("PaddedAvgPool2D")
                return self.apply(Br("PaddedAvgPool2D", [*args, f"padding={literal(pads)}",
                                                         f"counted={literal(value[1])}", name]), src, dst, indent)
            else:
                raise ArchError(f"{kind}: {value}", node.span)
        return self.apply(Br(cls, [*args, name]), src, dst, indent)


def _constant_floats(e: G.Expr) -> tuple | None:
    """A number or a list of numbers written as constants in the spec."""
    if isinstance(e, G.Const) and isinstance(e.value, (int, float)) and not isinstance(e.value, bool):
        return (float(e.value),)
    if isinstance(e, G.ListE) and all(isinstance(i, G.Const) for i in e.items):
        return tuple(float(i.value) for i in e.items)  # type: ignore[arg-type]
    if isinstance(e, G.Const) and isinstance(e.value, tuple):
        return tuple(float(v) for v in e.value)
    return None


def _static_pool_plan(node: G.Layer):
    """The Keras form of a pooling no use of which is expanded: from constant arguments only."""
    a = node.args
    pad, ceil = const(a["pad"]), const(a["ceil"])
    if pad == SAME:
        return "same"
    if ceil is not False:
        raise ArchError("ceil-mode pooling in a branch no use takes: its Keras padding depends on the input size",
                        node.span)
    if pad in (VALID, 0, (0, 0)):
        return "valid"
    if not isinstance(pad, (int, tuple)):
        raise ArchError("the padding of a pooling in a branch no use takes must be a constant", node.span)
    ph, pw = (pad, pad) if isinstance(pad, int) else pad
    if node.type.name == "maxpool":
        return (((ph, ph), (pw, pw)), "-inf")
    if const(a["count_pad"]) is False:
        return (((ph, ph), (pw, pw)), ("counted", ((0, 0), (0, 0))))
    return (((ph, ph), (pw, pw)), "zero")


def _even_same(inst: G.Inst) -> bool:
    """Whether TensorFlow's `same` pads a pooling alike before and after: Keras' own
    AveragePooling2D(padding="same") then computes it on every backend (its torch backend repeats
    the edge pixels for an uneven padding, and averages them in)."""
    x, kernel = inst.in_shape, inst.args["kernel"]
    stride = inst.args["stride"] or kernel
    return all(n is not None and len(set(same_pads(n, k, s))) == 1
               for n, k, s in zip((x.height, x.width), kernel, stride))


def _symmetric_same(inst: G.Inst) -> bool:
    """Keras' `same` pads (k - 1) / 2 on each side when the stride is 1 and the kernel odd."""
    (kh, kw), (sh, sw), (dh, dw), (ph, pw) = (inst.args["kernel"], inst.args["stride"], inst.args["dilation"],
                                              inst.args["pad"])
    return (sh, sw) == (1, 1) and all(d * (k - 1) % 2 == 0 and p == d * (k - 1) // 2
                                      for k, d, p in ((kh, dh, ph), (kw, dw, pw)))


def _pool_plan(inst: G.Inst):
    """How Keras reproduces a PyTorch pooling on this input: 'valid', 'same', or (pads, value)."""
    a = inst.args
    kernel, stride = a["kernel"], a["stride"] or a["kernel"]
    if a["pad"] == SAME:
        return "same"
    pad = (0, 0) if a["pad"] == VALID else a["pad"]
    x, y = inst.in_shape, inst.out_shape
    needed = []  # (before, after) per axis for the windows PyTorch takes
    for n, o, k, s, p in ((x.height, y.height, kernel[0], stride[0], pad[0]),
                          (x.width, y.width, kernel[1], stride[1], pad[1])):
        if n is None:
            if a["ceil"]:
                return (None, "ceil mode needs the input size known to be written in Keras")
            needed.append((p, p))
            continue
        needed.append((p, max((o - 1) * s + k - n - p, 0)))
    if all(b == 0 and after == 0 for b, after in needed):
        return "valid"
    same_ok = all(n is not None for n in (x.height, x.width))
    if same_ok:
        tf = [same_pads(n, k, s) for n, k, s in ((x.height, kernel[0], stride[0]), (x.width, kernel[1], stride[1]))]
        outs_match = (-(-x.height // stride[0]), -(-x.width // stride[1])) == (y.height, y.width)
        same_ok = outs_match and all(t[0] == nb[0] for t, nb in zip(tf, needed))
    if a.get("count_pad", True) is False or inst.kind == "maxpool":
        # padded pixels must not count (average) or win (max): Keras' same does exactly that
        if same_ok:
            return "same"
        if inst.kind == "maxpool":
            return (tuple(needed), "-inf")
        return (tuple(needed), ("counted", ((0, 0), (0, 0))))  # no padding counts
    # average pooling counting padded zeros: pad with zeros, but PyTorch does not count a ceil-mode overhang
    if any(after > p for (_, after), p in zip(needed, pad)):
        if all(p == 0 for p in pad) and same_ok:
            return "same"
        return (tuple(needed), ("counted", tuple((p, min(after, p)) for (_, after), p in zip(needed, pad))))
    return (tuple(needed), "zero")


def _adaptive_plan(inst: G.Inst):
    (oh, ow), x = inst.args["size"], inst.in_shape
    if x.height is None:
        return "general"
    if (x.height, x.width) == (oh, ow):
        return 1
    if x.height % oh == 0 and x.width % ow == 0:
        return (x.height // oh, x.width // ow)
    return "general"
