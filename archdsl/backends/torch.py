"""PyTorch backend: one nn.Module subclass per block definition, channels first.

Each block class takes its input channel count and the block's parameters; __init__ builds the
submodules under the spec's names with the spec's expressions (so one class serves every use of
the block), and sets `out_channels` for the caller. forward() follows the spec in order; the
composites at the top of a block (residual, concat, scale) are written out inline there, and the
ones nested inside a group become small generic modules (Concat, Residual, Scale).
"""

from __future__ import annotations

import re

from ..core import graph as G
from ..core.layers import GLOBAL, SAME, VALID
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
    is_none,
    is_one,
    is_true,
    is_zero,
    lay,
    literal,
    names_in,
    network_params,
    pad_chosen,
    pad_parts,
    paren,
    py_name,
    quote,
    refers_to_params,
    substitute,
    surely_int,
    templates,
)

_ACT_FUNCTIONAL = {
    "relu": "F.relu({x})", "relu6": "F.relu6({x})", "tanh": "torch.tanh({x})", "sigmoid": "torch.sigmoid({x})",
    "softmax": "F.softmax({x}, dim=1)", "silu": "F.silu({x})", "hardswish": "F.hardswish({x})",
    "hardsigmoid": "F.hardsigmoid({x})", "gelu": "F.gelu({x})", "flatten": "torch.flatten({x}, 1)",
}
_ACT_MODULE = {
    "relu": "nn.ReLU", "relu6": "nn.ReLU6", "tanh": "nn.Tanh", "sigmoid": "nn.Sigmoid", "silu": "nn.SiLU",
    "hardswish": "nn.Hardswish", "hardsigmoid": "nn.Hardsigmoid", "gelu": "nn.GELU", "flatten": "nn.Flatten",
    "identity": "nn.Identity",
}
_PRELUDE_ORDER = ("make_divisible", "same_padding", "Conv2dSame", "MaxPool2dSame", "AvgPool2dSame", "conv2d",
                  "max_pool2d", "avg_pool2d", "SeparableConv2d", "PartialBatchNorm1d", "PartialBatchNorm2d",
                  "LayerNorm2d", "LayerScale", "Rescale", "Normalize", "Crop2d", "ChannelPad", "DropPath", "Concat",
                  "Residual", "Scale")
_PRELUDE_NEEDS = {"Conv2dSame": {"same_padding"}, "MaxPool2dSame": {"same_padding"},
                  "AvgPool2dSame": {"same_padding"}, "SeparableConv2d": {"Conv2dSame"}, "conv2d": {"Conv2dSame"},
                  "max_pool2d": {"MaxPool2dSame"}, "avg_pool2d": {"AvgPool2dSame"}}


# Layers whose output is a new tensor, so an activation right after them may work in place.
_ALLOCATING = frozenset({"conv", "dwconv", "sepconv", "bn", "dense", "maxpool", "avgpool", "adaptive_avgpool",
                         "lrn", "layernorm", "layerscale", "rescale", "normalize", "zeropad", "zeropad_channels"})
_INPLACE = frozenset({"relu", "relu6", "silu", "hardswish", "hardsigmoid", "leaky_relu"})
# In place in the plain (trainable) model too: autograd computes their gradients from their result
# or an in-place-safe formula (torchvision's ReLU/ReLU6/SiLU/Hardswish(inplace=True)); leaky_relu only
# with a slope >= 0, which autograd requires of its in-place form.
_INPLACE_TRAINING = frozenset({"relu", "relu6", "silu", "hardswish", "hardsigmoid"})


def emit(elab: G.Elaborated, optimize: str | None = None) -> str:
    return _Module(elab, optimize).render()


def _allocates(item: object) -> bool:
    """Whether an item's result is a tensor of its own (not its input, a view or a named tensor)."""
    if isinstance(item, G.Layer):
        return item.type.name in _ALLOCATING
    return isinstance(item, (G.Residual, G.Concat, G.Scale, G.Merge))


def _plain_items(seq: G.Seq) -> list:
    return [i for i in seq.items if not isinstance(i, (G.Check, G.Let))]


class _Module:
    def __init__(self, elab: G.Elaborated, optimize: str | None = None) -> None:
        self.elab = elab
        # --optimize inference: activations in place where nothing else holds their input, batch norms
        # folded into the convolutions before them when weights are loaded, channels-last memory
        self.inference = optimize == "inference"
        self.prelude: set[str] = set()
        self.uses_ordered = False
        self.residual_drop_path = False  # a Residual helper with stochastic depth is used
        self.out_formulas: dict[str, str] = {}  # block -> its out channels from its parameters
        self.size_args: dict[str, list[str]] = {}  # block -> the input sizes its class takes
        self.classes = {py_name(b.name) for b in elab.program.blocks.values()} | {py_name(elab.program.network.name)}
        self.locals = LocalNames(self.classes)  # no local may take a class's name
        self.owned_blocks: dict[str, bool] = {}  # block -> its result is its own tensor (owned_after)

    def local(self, name: str) -> str:
        """A parameter, let or output as a Python local: it must not shadow a class of the module."""
        return self.locals(name)

    def need(self, name: str) -> None:
        self.prelude.add(name)
        for dep in _PRELUDE_NEEDS.get(name, ()):
            self.need(dep)

    def owned_after(self, item: object, inplace: bool, input_owned: bool) -> bool:
        """Whether an item's result, as the generated code computes it, is a tensor of its own that
        nothing else holds and nothing keeps for a gradient, so that the next item may overwrite
        it: a layer that allocates (a convolution, a batch norm: their backward needs their input,
        not their result); a sum, concatenation or product; a block or a choice whose every way
        ends so; an activation only in the inference emission (in training it keeps its result).
        input_owned: whether the item's input is, for items that may return it (an identity, the
        empty branch of a choice). Every sequence starts from an input that is not owned, as the
        emission does: its caller may still hold it."""
        if inplace:
            return self.inference
        if isinstance(item, G.Layer) and item.type.name == "identity":
            return input_owned
        if isinstance(item, G.BlockCall):
            return self.block_owned(item.block)
        if isinstance(item, G.Choice):
            return all(self.seq_owned(branch) if any(isinstance(i, G.Node) for i in branch.items) else input_owned
                       for branch in (item.then, item.otherwise))
        if isinstance(item, G.Seq):
            return self.seq_owned(item) if any(isinstance(i, G.Node) for i in item.items) else input_owned
        return _allocates(item)

    def seq_owned(self, seq: G.Seq) -> bool:
        owned = False
        for item in _plain_items(seq):
            if isinstance(item, (G.Load, G.Store, G.Output)):
                owned = False
                continue
            owned = self.owned_after(item, owned and self.in_place(item), owned)
        return owned

    def block_owned(self, name: str) -> bool:
        if name not in self.owned_blocks:
            self.owned_blocks[name] = False  # blocks are not recursive; a guard all the same
            self.owned_blocks[name] = self.seq_owned(self.elab.program.blocks[name].body)
        return self.owned_blocks[name]

    def in_place(self, item: object) -> bool:
        """Whether an activation may overwrite its input, given that the input is the previous
        item's own result (nothing else holds it, and the layer that made it does not keep it for its
        gradient). In the plain model no in-place activation follows another (the first keeps its
        result for its gradient); --optimize inference chains them."""
        if not isinstance(item, G.Layer):
            return False
        kind = item.type.name
        if self.inference:
            return kind in _INPLACE
        if kind == "leaky_relu":
            uses = self.elab.uses(item)
            return all(isinstance(i.args["slope"], (int, float)) and i.args["slope"] >= 0 for i in uses) and bool(uses)
        return kind in _INPLACE_TRAINING

    def render(self) -> str:
        program = self.elab.program
        classes = []
        for block in program.blocks.values():  # every block the code can call, used here or not
            classes.append(_Class(self, block).render().rstrip())
        net = _Class(self, program.network)
        classes.append(net.render().rstrip())
        prelude_names = [n for n in _PRELUDE_ORDER if n in self.prelude]
        net_def = program.network
        root = self.elab.root
        return templates().get_template("torch.py.j2").render(
            source=header_source(program.spec),
            network=net_def.name,
            network_class=py_name(net_def.name),
            summary=f"{root.total_params():,} parameters, {root.total_macs():,} MACs at input {root.in_shape}",
            uses_math=any("math." in c for c in classes),
            uses_ordered=self.uses_ordered,
            uses_functional=any("F." in c for c in classes) or bool(self.prelude & {
                "Conv2dSame", "MaxPool2dSame", "AvgPool2dSame", "LayerNorm2d", "ChannelPad"}),
            prelude=prelude_names,
            residual_drop_path=self.residual_drop_path,
            inference=self.inference,
            classes=classes,
            input_shape=literal(tuple(root.in_shape.dims)),
            output_names=literal(tuple(name for name, _ in self.elab.outputs)),
            auxiliary_outputs=literal(self.elab.auxiliary),
        ).rstrip("\n") + "\n"


class _Class(CodeUnit):
    """One nn.Module subclass: a block definition, or the network."""

    FIRST_PLAIN = ("identity",)
    RESERVED_LOCALS = frozenset({"x", "inputs", "self", "in_channels"})
    FRESH_LOCALS = re.compile(r"(identity|m|channels)\d*")

    def __init__(self, module: _Module, owner: G.BlockDef | G.NetworkDef) -> None:
        super().__init__(module, owner)
        self.init: list[str] = []
        self.fwd: list[str] = []
        self.previous: G.Node | None = None  # the item before the one being emitted, in its sequence
        self.lets: dict[str, str] = {}  # let bindings at the top of the class, for out_channels formulas
        self.input_var = "inputs" if G.names_input(owner.body) else "x"
        self.src = self.input_var  # the variable holding the tensor the next item takes
        self.tensors: dict[str, tuple[str, str]] = {}  # named tensor -> (variable, channels code)
        self.size_args: set[str] = set()  # in.height / in.width, where uses differ: constructor arguments
        self.folds: list[tuple[str, str]] = []  # top-level (conv, bn) attribute pairs, --optimize inference
        self.owned = False  # the tensor the next item takes is the previous item's own result
        self.let_locals: set[str] = set()  # the Python names of the lets

    # names and expressions

    def _in_shape(self, e: G.InShape) -> str:
        if e.attr == "channels":
            return "in_channels" if not self.is_network else self.input_channels
        insts = self.uses(self.owner) if not self.is_network else None
        sizes = {getattr(i.in_shape, e.attr) for i in insts} if insts is not None else \
            {getattr(self.m.elab.root.in_shape, e.attr)}
        if None in sizes:
            raise ArchError(f"in.{e.attr} is left open by the network's input (`?`); the PyTorch class needs it",
                            e.span)
        if len(sizes) == 1:
            return str(sizes.pop())
        # uses at different sizes: the class takes the size as an argument, each call passes its own
        self.size_args.add(e.attr)
        return f"in_{e.attr}"

    def size_values(self, node: G.BlockCall) -> list[str]:
        """The input sizes a call passes to a block class that takes them (see _in_shape)."""
        values = []
        for attr in self.m.size_args.get(node.block, ()):
            # a call that no use expands (in an `if` branch not taken at this setting) has no size to
            # pass: None, which the class never reads at this setting
            value = agreed(node, self.uses(node), lambda i, a=attr: getattr(i.in_shape, a), f"the input {attr}",
                           self.owner_desc(), default=None)
            values.append(str(value))
        return values

    # the class

    def render(self) -> str:
        owner = self.owner
        if self.is_network:
            net: G.NetworkDef = owner  # type: ignore[assignment]
            self.input_channels = self.expr(net.input[0]) if net.input[0] is not None else "0"
            cin = self.input_channels
            params, fixups = network_params(self.m.elab, self.expr, self.m.local, indent=8)
            self.init.extend(fixups)
        else:
            block: G.BlockDef = owner  # type: ignore[assignment]
            cin = "in_channels"
            typed, fixups = block_params(block, self.uses(block), self.expr, self.m.local, indent=8,
                                         tensor=lambda name: f"{name}_channels: int")
            params = ["in_channels: int", *typed]
            self.init.extend(fixups)
            for p in block.tensor_params:
                self.tensors[p.name] = (self.m.local(p.name), f"{self.m.local(p.name)}_channels")
        self.tensors["in"] = (self.input_var, cin)
        if self.is_network and self.m.inference and len(owner.input) == 3:
            self.fwd.append(f"        {self.input_var} = {self.input_var}.contiguous(memory_format=torch.channels_last)")
        cout = self.top(owner.body, cin, 8)
        if self.size_args:
            sizes = [a for a in ("height", "width") if a in self.size_args]
            self.m.size_args[owner.name] = sizes
            params[1:1] = [f"in_{a}: int" for a in sizes]
        if not self.is_network:
            self.init.extend(lay(cout, 8, "self.out_channels = "))
            formula = substitute(cout, self.lets, strict=False)
            known = {"in_channels", *(self.m.local(p.name) + ("_channels" if p.tensor else "") for p in owner.params)}
            if formula is not None and names_in(formula) <= known:
                self.m.out_formulas[owner.name] = formula
        doc = (f'"""{"network" if self.is_network else "block"} {owner.name} '
               f'({header_source(owner.span.file)}:{owner.span.line})."""')
        if self.is_network:
            if self.outputs:
                result = self.outputs[0] if len(self.outputs) == 1 else ", ".join(self.outputs)
                returns = "torch.Tensor" if len(self.outputs) == 1 else \
                    "tuple[" + ", ".join(["torch.Tensor"] * len(self.outputs)) + "]"
                if self.aux_outputs:  # computed and returned while training only
                    self.fwd.append("        if self.training:")
                    self.fwd.extend(lay(result, 12, "return "))
                    evaluated = [o for o in self.outputs if o not in self.aux_outputs]
                    result = evaluated[0] if len(evaluated) == 1 else ", ".join(evaluated)
                    returns += " | " + ("torch.Tensor" if len(evaluated) == 1 else
                                        "tuple[" + ", ".join(["torch.Tensor"] * len(evaluated)) + "]")
            else:
                result, returns = self.src, "torch.Tensor"
        else:
            result, returns = self.src, "torch.Tensor"
        self.init = drop_unused_assignments(_drop_unused(self.init), self.let_locals)
        signature = lay(Br("def __init__", ["self", *params]), 4, "", " -> None:")
        inputs = [f"{self.input_var}: torch.Tensor"]
        if not self.is_network:
            inputs += [f"{self.m.local(p.name)}: torch.Tensor" for p in owner.tensor_params]  # type: ignore[union-attr]
        forward = lay(Br("def forward", ["self", *inputs]), 4, "", f" -> {returns}:")
        folds = []
        if self.folds:
            pairs = [Br("", [quote(conv), quote(bn)], "(", ")") for conv, bn in self.folds]
            folds = (lay(Br("", pairs, "(", ")"), 4, "folds = ") if len(pairs) > 1 else
                     [f"    folds = (({quote(self.folds[0][0])}, {quote(self.folds[0][1])}),)"])
        return templates().get_template("torch_class.py.j2").render(
            name=py_name(owner.name), doc=doc, signature=signature, init=self.init, forward=self.fwd,
            forward_signature=forward, result=result, folds=folds)

    # top-level items: attributes of the class, forward written inline

    def top(self, seq: G.Seq, cin: str, indent: int, dst: str = "x") -> str:
        targets = G.statement_targets(seq)
        self.owned = False  # the first item takes the input, which its caller may still hold
        for index, item in enumerate(seq.items):
            if isinstance(item, G.Check):  # checked when the spec was expanded
                continue
            if isinstance(item, G.Load):
                self.src, cin = self.tensors[item.name]
                self.owned = False
                continue
            if isinstance(item, G.Store):
                self.owned = False
                var = self.tensor_var(item.name)
                if self.src != var:
                    self.fwd.append(f"        {var} = {self.src}")
                self.src = var
                self.tensors[item.name] = (var, cin)
                continue
            if isinstance(item, G.Let):
                value = self.expr(item.value)
                self.let_ints[item.name] = surely_int(item.value, self.is_int)
                self.let_locals.add(self.m.local(item.name))
                self.init.extend(lay(value, 8, f"{self.m.local(item.name)} = "))
                self.lets[self.m.local(item.name)] = substitute(value, self.lets, strict=False) or value
                continue
            if self.m.inference and isinstance(item, G.Layer) and item.type.name == "bn" and self._foldable(item) \
                    and isinstance(self.previous, G.Layer) and self.previous.type.name in ("conv", "dwconv", "sepconv") \
                    and index > 0 and seq.items[index - 1] is self.previous:
                self.folds.append((self.previous.name, item.name))
            target = targets.get(index)
            inplace = self.owned and self.m.in_place(item)
            cin = self.top_node(item, cin, self.tensor_var(target) if target else dst, inplace=inplace)
            self.owned = False if target else self.m.owned_after(item, inplace, self.owned)
            self.previous = item
        return cin

    def _foldable(self, node: G.Layer) -> bool:
        """A batch norm over a feature map (a BatchNorm2d), which fold_batchnorm() can fold."""
        return agreed(node, self.uses(node), lambda i: i.in_shape.rank, "the input rank", self.owner_desc(),
                      default=3) == 3

    def tensor_var(self, name: str) -> str:
        """The Python variable of a named tensor."""
        if name in self.tensors:
            return self.tensors[name][0]
        return self.new_tensor_var(name, (var for var, _ in self.tensors.values()))

    def top_node(self, node: G.Node, cin: str, dst: str, inplace: bool = False) -> str:
        attr = f"self.{node.name}"
        src = self.src
        if not isinstance(node, G.Output):
            self.src = dst
        if isinstance(node, G.Layer):
            kind = node.type.name
            if kind in _ACT_FUNCTIONAL or kind in ("leaky_relu", "identity"):
                if kind == "identity":
                    self.src = src
                    return cin
                self.fwd.append(f"        {dst} = {self.functional(node, src, inplace)}")
                return self.layer_cout(node, cin)
            ctor, cout = self.layer(node, cin)
            self.init.extend(lay(ctor, 8, f"{attr} = "))
            self.fwd.append(f"        {dst} = {attr}({src})")
            return cout
        if isinstance(node, G.BlockCall):
            ctor = self.block_call(node, cin)
            self.init.extend(lay(ctor, 8, f"{attr} = "))
            extra = [self.tensors[a.name][0] for a in node.args.values() if isinstance(a, G.TensorRef)]
            self.fwd.extend(lay(Br(attr, [src, *extra]), 8, f"{dst} = "))
            return f"{attr}.out_channels"
        if isinstance(node, G.Merge):
            names = [self.tensors[r.name][0] for r in node.inputs]
            if node.op == "add":
                self.fwd.extend(lay(" + ".join(names), 8, f"{dst} = "))
                return self.tensors[node.inputs[0].name][1]
            self.fwd.extend(lay(Br("torch.cat", [Br("", names, "[", "]"), "dim=1"]), 8, f"{dst} = "))
            return " + ".join(paren(self.tensors[r.name][1]) for r in node.inputs)
        if isinstance(node, G.Residual):
            identity = self.fresh("identity")
            self.fwd.append(f"        {identity} = {src}")
            self.src = src
            cout = self.top(node.body, cin, 8, dst)
            body_var = self.src
            # the body's result is its own tensor, which nothing else holds and the layer that made it
            # (a convolution, a batch norm, ...) does not keep for its gradient: the sum may go into it
            body_owned = self.owned and body_var == dst
            self.src = dst
            other = identity
            if node.shortcut is not None:
                sc_attr = f"self.{node.shortcut.name}"
                if node.condition is None:
                    self.assign(sc_attr, node.shortcut, cin)
                else:
                    self.init.extend(lay(self.expr(node.condition), 8, "if ", ":"))
                    self.assign(sc_attr, node.shortcut, cin, indent=12)
                    self.init.append("        else:")
                    self.init.append(f"            {sc_attr} = nn.Identity()")
                other = f"{sc_attr}({identity})"
            body = body_var
            if not is_zero(node.drop_path):
                self.m.need("DropPath")
                self.init.extend(lay(Br("DropPath", [self.expr(node.drop_path)]), 8, f"{attr} = "))
                body = f"{attr}({body_var})"
            if body_owned:  # in place, as torchvision's `out += identity`
                if body != dst:  # DropPath gives back its input, or a new tensor it does not keep
                    self.fwd.append(f"        {dst} = {body}")
                self.fwd.append(f"        {dst} += {other}")
                return cout
            self.fwd.append(f"        {dst} = {body} + {other}")
            return cout
        if isinstance(node, G.Concat):
            calls, couts = [], []
            for branch in node.branches:
                battr = f"self.{branch.name}"
                couts.append(self.assign(battr, branch, cin))
                calls.append(f"{battr}({src})")
            self.fwd.extend(lay(Br("torch.cat", [Br("", calls, "[", "]"), "dim=1"]), 8, f"{dst} = "))
            return " + ".join(_summand(c) for c in couts)
        if isinstance(node, G.Scale):
            battr = f"self.{node.body.name}"
            self.assign(battr, node.body, cin)
            self.fwd.append(f"        {dst} = {src} * {battr}({src})")
            return cin
        if isinstance(node, G.Output):
            var = self.m.local(node.name)
            if node.body is None:
                self.fwd.append(f"        {var} = {src}")
            else:
                self.assign(attr, node.body, cin)
                if node.auxiliary:  # a head for training only: evaluation skips it
                    self.fwd.append("        if self.training:")
                    self.fwd.append(f"            {var} = {attr}({src})")
                    self.aux_outputs.append(var)
                else:
                    self.fwd.append(f"        {var} = {attr}({src})")
            self.outputs.append(var)
            return cin
        # a group, a repetition or a choice: one attribute holding a module
        cout = self.assign(attr, node, cin)
        self.fwd.append(f"        {dst} = {attr}({src})")
        return cout

    def assign(self, target: str, node: G.Node, cin: str, indent: int = 8) -> str:
        """Emit __init__ code that sets `target` to the module for node; returns its out channels."""
        setup, code, cout = self.build(node, cin, target, indent)
        self.init.extend(setup)
        if code is not None:
            self.init.extend(lay(code, indent, f"{target} = "))
        return cout

    # nested items: modules built as expressions

    def build(self, node: G.Node, cin: str, target: str | None, indent: int,
              inplace: bool = False) -> tuple[list[str], Br | str | None, str]:
        """(setup lines, module expression or None if setup already assigned target, out channels).
        With inplace (the input is the previous module's own result), an activation may work in place."""
        pad = " " * indent
        if isinstance(node, G.Layer):
            ctor, cout = self.layer(node, cin, inplace)
            return [], ctor, cout
        if isinstance(node, G.BlockCall):
            ctor = self.block_call(node, cin)
            known = self.block_out(node, cin)
            if known is not None:
                return [], ctor, known
            if target is not None:
                return [], ctor, f"{target}.out_channels"
            var = self.fresh("m")
            return lay(ctor, indent, f"{var} = "), var, f"{var}.out_channels"
        if isinstance(node, G.Seq):
            if len(node.items) == 1 and node.nodes and node.nodes[0].label is None:
                return self.build(node.nodes[0], cin, target, indent)
            setup: list[str] = []
            parts: list[tuple[str | None, Br | str]] = []
            owned = False
            for item in node.items:
                if isinstance(item, G.Check):  # checked when the spec was expanded
                    continue
                if isinstance(item, G.Let):
                    self.let_ints[item.name] = surely_int(item.value, self.is_int)
                    self.let_locals.add(self.m.local(item.name))
                    setup.extend(lay(self.expr(item.value), indent, f"{self.m.local(item.name)} = "))
                    continue
                inplace = owned and self.m.in_place(item)
                s, code, cin = self.build(item, cin, None, indent, inplace=inplace)
                owned = self.m.owned_after(item, inplace, owned)
                self.previous = item
                setup.extend(s)
                parts.append((item.label and item.name, code))  # type: ignore[arg-type]
            if not parts:
                return setup, "nn.Identity()", cin
            if len(parts) == 1 and parts[0][0] is None:
                return setup, parts[0][1], cin
            if any(label for label, _ in parts):
                self.m.uses_ordered = True
                pairs = [Br("", [quote(label or str(i)), code], "(", ")") for i, (label, code) in enumerate(parts)]
                return setup, Br("nn.Sequential", [Br("OrderedDict", [Br("", pairs, "[", "]")])]), cin
            return setup, Br("nn.Sequential", [code for _, code in parts]), cin
        if isinstance(node, G.Concat):
            self.m.need("Concat")
            setup, codes, couts = [], [], []
            for branch in node.branches:
                s, code, c = self.build(branch, cin, None, indent)
                setup.extend(s)
                codes.append(code)
                couts.append(c)
            return setup, Br("Concat", codes), " + ".join(paren(c) for c in couts)
        if isinstance(node, G.Residual):
            self.m.need("Residual")
            setup, body, cout = self.build(node.body, cin, None, indent)
            args: list[Br | str] = [body]
            if node.shortcut is not None:
                s, sc, _ = self.build(node.shortcut, cin, None, indent)
                if node.condition is not None:
                    var = self.fresh("m")
                    setup.extend(lay(self.expr(node.condition), indent, "if ", ":"))
                    setup.extend(s and [f"    {line}" for line in s])
                    setup.extend(lay(sc, indent + 4, f"{var} = "))
                    setup.append(f"{pad}else:")
                    setup.append(f"{pad}    {var} = None")
                    args.append(var)
                else:
                    setup.extend(s)
                    args.append(sc)
            if not is_zero(node.drop_path):
                self.m.need("DropPath")
                self.m.residual_drop_path = True  # the Residual helper takes a rate
                args.append(f"drop_path={self.expr(node.drop_path)}")
            return setup, Br("Residual", args), cout
        if isinstance(node, G.Scale):
            self.m.need("Scale")
            setup, body, _ = self.build(node.body, cin, None, indent)
            return setup, Br("Scale", [body]), cin
        if isinstance(node, G.Choice):
            var = target or self.fresh("m")
            s_then, c_then, o_then = self.build(node.then, cin, var, indent + 4)
            s_else, c_else, o_else = self.build(node.otherwise, cin, var, indent + 4)
            setup = lay(self.expr(node.condition), indent, "if ", ":")
            cout = o_then
            chan = None
            if o_then != o_else:
                chan = self.fresh("channels")
                cout = chan
            setup += s_then + (lay(c_then, indent + 4, f"{var} = ") if c_then is not None else [])
            if chan:
                setup.append(f"{pad}    {chan} = {o_then}")
            setup += [f"{pad}else:"] + s_else + (lay(c_else, indent + 4, f"{var} = ") if c_else is not None else [])
            if chan:
                setup.append(f"{pad}    {chan} = {o_else}")
            return setup, None if target else var, cout
        if isinstance(node, G.Repeat):
            var = target or self.fresh("m")
            chan = self.fresh("channels")
            setup = [f"{pad}{var} = nn.Sequential()", f"{pad}{chan} = {cin}"]
            loop = self.m.local(node.index) if node.index else "_"
            setup += lay(int_code(node.count, self.expr, self.is_int), indent, f"for {loop} in range(", "):")
            s, code, cout = self.build(node.body, chan, None, indent + 4)
            setup += s + lay(Br(f"{var}.append", [code]), indent + 4)
            if cout != chan:
                setup.append(f"{pad}    {chan} = {cout}")
            return setup, None if target else var, chan
        raise AssertionError(node)  # pragma: no cover

    def block_out(self, node: G.BlockCall, cin: str) -> str | None:
        """A block's output channels as an expression of the call's arguments, where the block's
        class computes them from its parameters alone (so the caller needs no temporary)."""
        formula = self.m.out_formulas.get(node.block)
        if formula is None:
            return None
        block = self.m.elab.program.blocks[node.block]
        values = {"in_channels": cin}
        for p in block.params:
            if p.tensor:
                values[f"{self.m.local(p.name)}_channels"] = self.tensors[node.args[p.name].name][1]  # type: ignore[union-attr]
            elif p.name in node.args:
                values[self.m.local(p.name)] = self.expr(node.args[p.name])
            elif p.default is not None and not refers_to_params(p.default):
                values[self.m.local(p.name)] = self.expr(p.default)
            else:
                return None
        return substitute(formula, values)

    def block_call(self, node: G.BlockCall, cin: str) -> Br:
        block = self.m.elab.program.blocks[node.block]
        args: list[str] = [cin, *self.size_values(node)]
        positional = True
        for p in block.params:
            if p.name not in node.args:
                positional = False
                continue
            arg = node.args[p.name]
            value = self.tensors[arg.name][1] if isinstance(arg, G.TensorRef) else self.expr(arg)
            name = self.m.local(p.name) + ("_channels" if p.tensor else "")
            args.append(value if positional else f"{name}={value}")
        return Br(py_name(block.name), args)

    # layers

    def functional(self, node: G.Layer, src: str, inplace: bool = False) -> str:
        kind = node.type.name
        if kind == "leaky_relu":
            return f"F.leaky_relu({src}, {self.expr(node.args['slope'])}{', inplace=True' if inplace else ''})"
        code = _ACT_FUNCTIONAL[kind].format(x=src)
        return code[:-1] + ", inplace=True)" if inplace else code

    def layer_cout(self, node: G.Layer, cin: str) -> str:
        kind = node.type.name
        a = node.args
        if kind in ("conv", "sepconv"):
            return self.typed(node, a["filters"])
        if kind == "dwconv":
            return cin if is_one(a["multiplier"]) else f"{paren(cin)} * {paren(self.typed(node, a['multiplier']))}"
        if kind == "dense":
            return self.typed(node, a["units"])
        if kind == "zeropad_channels":
            before, after = self.channel_pads(node)
            return f"{paren(cin)} + {paren(before)} + {paren(after)}"
        if kind == "flatten":
            size = agreed(node, self.uses(node),
                          lambda i: (i.in_shape.height, i.in_shape.width) if i.in_shape.rank == 3 else (1, 1),
                          "the size flattened", self.owner_desc(), default=None)
            size = size or _pooled_size(self.previous) or agreed(node, self.uses(node), lambda i: None,
                                                                 "the size flattened", self.owner_desc())
            return cin if size == (1, 1) else f"{paren(cin)} * {size[0]} * {size[1]}"
        return cin

    def layer(self, node: G.Layer, cin: str, inplace: bool = False) -> tuple[Br | str, str]:
        """(constructor, out channels) of a layer used as a module."""
        kind = node.type.name
        a = node.args
        e = lambda ex: self.typed(node, ex)
        cout = self.layer_cout(node, cin)
        if kind in _ACT_MODULE:
            return f"{_ACT_MODULE[kind]}({'inplace=True' if inplace else ''})", cout
        if kind == "leaky_relu":
            return Br("nn.LeakyReLU", [e(a["slope"]), *(["inplace=True"] if inplace else [])]), cout
        if kind == "softmax":
            return "nn.Softmax(dim=1)", cout
        if kind in ("conv", "dwconv", "sepconv"):
            chosen = pad_chosen(node, self.uses(node))  # same, valid or a size, as build_model()'s parameters say
            same = not chosen and self.pad_is(node, SAME)
            dynamic = same and self.needs_dynamic_same(node)
            args: list[str] = [cin]
            if kind == "conv":
                args.append(e(a["filters"]))
            elif kind == "dwconv":
                args.append(cout)
            else:
                args.append(e(a["filters"]))
            args.append(e(a["kernel"]))
            if not is_one(a["stride"]):
                args.append(f"stride={e(a['stride'])}")
            pad = self.expr(a["pad"]) if chosen else self.conv_padding(node, dynamic)
            if pad is not None:
                args.append(f"padding={pad}")
            if not is_one(a["dilation"]):
                args.append(f"dilation={e(a['dilation'])}")
            if kind == "conv" and not is_one(a["groups"]):
                args.append(f"groups={e(a['groups'])}")
            if kind == "dwconv":
                args.append(f"groups={cin}")
            if kind == "sepconv":
                if not is_one(a["multiplier"]):
                    args.append(f"multiplier={e(a['multiplier'])}")
                if dynamic:
                    args.append("same=True")
            if not is_true(a["bias"]):
                args.append(f"bias={e(a['bias'])}")
            if kind == "sepconv":  # SeparableConv2d takes padding="same" too
                self.m.need("SeparableConv2d")
                return Br("SeparableConv2d", args), cout
            if dynamic:
                self.m.need("Conv2dSame")
                return Br("Conv2dSame", args), cout
            if chosen:
                self.m.need("conv2d")
                return Br("conv2d", args), cout
            return Br("nn.Conv2d", args), cout
        if kind in ("maxpool", "avgpool"):
            if const(a["kernel"]) == GLOBAL:
                return ("nn.AdaptiveMaxPool2d(1)" if kind == "maxpool" else "nn.AdaptiveAvgPool2d(1)"), cout
            same = self.pad_is(node, SAME)
            dynamic = same and self.needs_dynamic_same(node)
            cls = {"maxpool": "nn.MaxPool2d", "avgpool": "nn.AvgPool2d"}[kind]
            args = [e(a["kernel"])]
            if not is_none(a["stride"]):
                args.append(f"stride={e(a['stride'])}")
            if pad_chosen(node, self.uses(node)):  # same, valid or a size, as build_model()'s parameters say
                helper = {"maxpool": "max_pool2d", "avgpool": "avg_pool2d"}[kind]
                self.m.need(helper)
                args.append(f"padding={self.expr(a['pad'])}")
                if not is_false(a["ceil"]):
                    args.append(f"ceil_mode={e(a['ceil'])}")
                if kind == "avgpool" and not is_true(a["count_pad"]):
                    args.append(f"count_include_pad={e(a['count_pad'])}")
                return Br(helper, args), cout
            if dynamic:
                cls = {"maxpool": "MaxPool2dSame", "avgpool": "AvgPool2dSame"}[kind]
                self.m.need(cls)
            elif same:
                args.append(f"padding={self.half_kernel(node)}")
            elif not self.pad_is(node, VALID) and not is_zero(a["pad"]):
                args.append(f"padding={e(a['pad'])}")
            if not dynamic and not is_false(a["ceil"]):
                args.append(f"ceil_mode={e(a['ceil'])}")
            if kind == "avgpool" and not dynamic:
                if same:
                    args.append("count_include_pad=False")
                elif not is_true(a["count_pad"]):
                    args.append(f"count_include_pad={e(a['count_pad'])}")
            return Br(cls, args), cout
        if kind == "adaptive_avgpool":
            return Br("nn.AdaptiveAvgPool2d", [e(a["size"])]), cout
        if kind == "dense":
            args = [cin, e(a["units"])]
            if not is_true(a["bias"]):
                args.append(f"bias={e(a['bias'])}")
            return Br("nn.Linear", args), cout
        if kind == "dropout":
            return Br("nn.Dropout", [] if const(a["rate"]) == 0.5 else [e(a["rate"])]), cout
        if kind == "bn":
            rank = agreed(node, self.uses(node), lambda i: i.in_shape.rank, "the input rank", self.owner_desc(),
                          default=3)
            args = [cin]
            if const(a["eps"]) != 1e-5:
                args.append(f"eps={e(a['eps'])}")
            if const(a["momentum"]) != 0.1:
                args.append(f"momentum={e(a['momentum'])}")
            if is_true(a["gamma"]) and is_true(a["beta"]):
                return Br("nn.BatchNorm1d" if rank == 1 else "nn.BatchNorm2d", args), cout
            if is_false(a["gamma"]) and is_false(a["beta"]):
                return Br("nn.BatchNorm1d" if rank == 1 else "nn.BatchNorm2d", [*args, "affine=False"]), cout
            partial = "PartialBatchNorm1d" if rank == 1 else "PartialBatchNorm2d"
            self.m.need(partial)
            return Br(partial, [*args, f"scale={e(a['gamma'])}", f"center={e(a['beta'])}"]), cout
        if kind == "lrn":
            return Br("nn.LocalResponseNorm", [e(a["size"]), f"alpha={e(a['alpha'])}", f"beta={e(a['beta'])}",
                                               f"k={e(a['k'])}"]), cout
        if kind == "layernorm":
            rank = agreed(node, self.uses(node), lambda i: i.in_shape.rank, "the input rank", self.owner_desc(),
                          default=3)
            args = [cin] if const(a["eps"]) == 1e-5 else [cin, f"eps={e(a['eps'])}"]
            if rank == 3:
                self.m.need("LayerNorm2d")
                return Br("LayerNorm2d", args), cout
            return Br("nn.LayerNorm", args), cout
        if kind == "layerscale":
            self.m.need("LayerScale")
            return Br("LayerScale", [cin, e(a["init"])]), cout
        if kind == "rescale":
            self.m.need("Rescale")
            return Br("Rescale", [e(a["scale"])] + ([] if is_zero(a["offset"]) else [e(a["offset"])])), cout
        if kind == "normalize":
            self.m.need("Normalize")
            return Br("Normalize", [e(a["mean"]), e(a["std"])]), cout
        if kind == "zeropad_channels":
            self.m.need("ChannelPad")
            return Br("ChannelPad", [f"({', '.join(self.channel_pads(node))})"]), cout
        if kind == "crop":
            self.m.need("Crop2d")
            t, b, left, r = four_sides(node, self.uses(node), "crop", lambda ex: int_code(ex, self.expr, self.is_int),
                                       self.owner_desc())
            return Br("Crop2d", [f"({t}, {b}, {left}, {r})"]), cout
        if kind == "zeropad":
            t, b, left, r = four_sides(node, self.uses(node), "pad", lambda ex: int_code(ex, self.expr, self.is_int),
                                       self.owner_desc())
            return Br("nn.ZeroPad2d", [f"({left}, {r}, {t}, {b})"]), cout
        raise AssertionError(kind)  # pragma: no cover

    # padding

    def channel_pads(self, node: G.Layer) -> tuple[str, str]:
        parts = pad_parts(node.args["pad"], self.expr)
        if parts is None:
            before, after = agreed(node, self.uses(node), lambda i: i.args["pad"], "the channel padding",
                                   self.owner_desc())
            return str(before), str(after)
        if len(parts) == 1:
            return parts[0], parts[0]
        return parts[0], parts[1]

    def pad_is(self, node: G.Layer, symbol) -> bool:
        if not self.uses(node):
            return const(node.args["pad"]) == symbol
        return all(i.args.get("pad") == symbol for i in self.uses(node))

    def needs_dynamic_same(self, node: G.Layer) -> bool:
        """TensorFlow's `same` is symmetric only for stride 1 and an odd (dilated) kernel."""
        if not self.uses(node):
            return True  # not seen in use: the general form
        for inst in self.uses(node):
            (kh, kw), stride = inst.args["kernel"], inst.args.get("stride") or inst.args["kernel"]
            dh, dw = inst.args.get("dilation", (1, 1))
            if stride != (1, 1) or (dh * (kh - 1)) % 2 or (dw * (kw - 1)) % 2:
                return True
        return False

    def half_kernel(self, node: G.Layer) -> str:
        pads = agreed(node, self.uses(node), lambda i: tuple((k - 1) // 2 for k in i.args["kernel"]), "the padding",
                      self.owner_desc())
        return literal(pads[0] if pads[0] == pads[1] else pads)  # type: ignore[index]

    def conv_padding(self, node: G.Layer, dynamic: bool) -> str | None:
        pad = node.args["pad"]
        if dynamic or self.pad_is(node, VALID) or is_zero(pad):
            return None
        if self.pad_is(node, SAME):
            return '"same"'
        return self.typed(node, pad)  # an integral float (`pad = 1.0`) as an integer


def _drop_unused(lines: list[str]) -> list[str]:
    """Remove assignments to channel-count variables that nothing reads (after an `if` at the end
    of a network, say)."""
    while True:  # until none is left: dropping one may leave another that only it read
        assigned = {m.group(1) for line in lines if (m := re.match(r"\s*(channels\d+) = ", line))}
        unused = set()
        for var in assigned:
            word = re.compile(rf"\b{var}\b")
            total = sum(len(word.findall(line)) for line in lines)
            writes = sum(1 for line in lines if re.match(rf"\s*{var} = ", line))
            if total == writes:
                unused.add(var)
        if not unused:
            return lines
        lines = [line for line in lines if not any(re.match(rf"\s*{v} = ", line) for v in unused)]


def _summand(code: str) -> str:
    """Channel-count code as a term of a sum: in parentheses only where it binds more loosely than `+`
    (a conditional `a if c else b`)."""
    import ast

    try:
        node = ast.parse(code, mode="eval").body
    except SyntaxError:
        return paren(code)
    if isinstance(node, (ast.IfExp, ast.BoolOp, ast.Compare, ast.Lambda, ast.NamedExpr)):
        return f"({code})"
    return code


def _pooled_size(node: G.Node | None) -> tuple[int, int] | None:
    """The spatial size after a global or adaptive pooling, known from the spec alone."""
    if isinstance(node, G.Layer):
        if node.type.name in ("avgpool", "maxpool") and const(node.args["kernel"]) == GLOBAL:
            return (1, 1)
        size = const(node.args["size"]) if node.type.name == "adaptive_avgpool" else None
        if isinstance(size, int) and not isinstance(size, bool):
            return (size, size)
        if isinstance(size, tuple) and len(size) == 2:
            return size
    return None
