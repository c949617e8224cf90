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
from ..core.graph import Shape
from ..core.layers import Arg, ArgError, Chan, InChannels, InSize, SplitPart, Sum
from ..core.shapes import all_nodes
from ..language.errors import ArchError
from . import torch_emitters  # registers the PyTorch emitters (and writes a split's parts)
from .common import (
    Code,
    CodeUnit,
    Leaf,
    LocalNames,
    agreed,
    block_params,
    definition_doc,
    header_source,
    is_false,
    is_one,
    is_zero,
    literal,
    names_in,
    network_params,
    pad_parts,
    parsed,
    plus,
    py_name,
    quote,
    refers_to_params,
    skip_condition,
    substitute,
    surely_int,
    templates,
    times,
)
from .layout import Br, Suite, lay
from .registry import TORCH, TORCH_FACTS, TORCH_FUNCTIONAL

_PRELUDE_NEEDS = {"Conv2dSame": {"same_padding"}, "MaxPool2dSame": {"same_padding"},
                  "AvgPool2dSame": {"same_padding"}, "SeparableConv2d": {"Conv2dSame"}, "conv2d": {"Conv2dSame"},
                  "max_pool2d": {"MaxPool2dSame"}, "avg_pool2d": {"AvgPool2dSame"}}


def emit(elab: G.Elaborated, optimize: str | None = None) -> str:
    return _Module(elab, optimize).render()


def _allocates(item: object) -> bool:
    """Whether an item's result is a tensor of its own (not its input, a view or a named tensor)."""
    if isinstance(item, G.Layer):
        return TORCH_FACTS[item.type.name].allocates
    return isinstance(item, (G.Residual, G.Concat, G.Scale, G.Merge))


def _plain_items(seq: G.Seq) -> list:
    return [i for i in seq.items if not isinstance(i, (G.Check, G.Let, G.Freeze))]


class _Module:
    def __init__(self, elab: G.Elaborated, optimize: str | None = None) -> None:
        self.elab = elab
        # --optimize inference: activations in place where nothing else holds their input, batch norms
        # folded into the convolutions before them when weights are loaded, channels-last memory
        self.inference = optimize == "inference"
        self.prelude: set[str] = set()
        self.uses_ordered = False
        self.residual_drop_path = False  # a Residual helper with stochastic depth is used
        self.drop_per_batch = False  # a stochastic depth drops for the whole batch
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
        if isinstance(item, G.Layer) and TORCH_FACTS[item.type.name].passes_input:
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
        facts = TORCH_FACTS[item.type.name]
        if self.inference:
            return facts.inplace_inference
        if callable(facts.inplace_training):
            return facts.inplace_training(self.elab.uses(item))
        return facts.inplace_training

    def render(self) -> str:
        program = self.elab.program
        classes = []
        for block in program.blocks.values():  # every block the code can call, used here or not
            classes.append(_Class(self, block).render().rstrip())
        net = _Class(self, program.network)
        classes.append(net.render().rstrip())
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
                "Conv2dSame", "MaxPool2dSame", "AvgPool2dSame", "LayerNorm2d", "ChannelPad", "DropBlock2d"}),
            prelude=self.prelude,  # the helpers, in the template's order
            residual_drop_path=self.residual_drop_path,
            drop_per_batch=self.drop_per_batch,
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
        self.init = Suite()  # __init__'s statements
        self.fwd = Suite()  # forward()'s statements
        self.previous: G.Node | None = None  # the item before the one being emitted, in its sequence
        self.lets: dict[str, str] = {}  # let bindings at the top of the class, for out_channels formulas
        self.input_var = "inputs" if G.names_input(owner.body) else "x"
        self.src = self.input_var  # the variable holding the tensor the next item takes
        self.tensors: dict[str, tuple[str, Code]] = {}  # named tensor -> (variable, its channels)
        self.size_args: set[str] = set()  # in.height / in.width, where uses differ: constructor arguments
        self.folds: list[tuple[str, str]] = []  # top-level (conv, bn) attribute pairs, --optimize inference
        self.owned = False  # the tensor the next item takes is the previous item's own result
        self.let_locals: set[str] = set()  # the Python names of the lets
        self.channel_vars: set[str] = set()  # the locals that hold a channel count (dropped where unread)

    # names and expressions

    def _in_shape(self, e: G.InShape) -> str:
        if e.attr == "channels":
            return "in_channels" if not self.is_network else str(self.input_channels)
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
            self.input_channels = self.leaf(net.input[0]) if net.input[0] is not None else Leaf("0")
            cin: Code = self.input_channels
            params, fixups = network_params(self.m.elab, self.expr, self.m.local)
            self.init.extend(fixups)
        else:
            block: G.BlockDef = owner  # type: ignore[assignment]
            cin = Leaf("in_channels")
            typed, fixups = block_params(block, self.uses(block), self.expr, self.m.local,
                                         tensor=lambda name: f"{name}_channels: int")
            params = ["in_channels: int", *typed]
            self.init.extend(fixups)
            for p in block.tensor_params:
                self.tensors[p.name] = (self.m.local(p.name), Leaf(f"{self.m.local(p.name)}_channels"))
        self.tensors["in"] = (self.input_var, cin)
        if self.is_network and self.m.inference and len(owner.input) == 3:
            self.fwd.assign(self.input_var, f"{self.input_var}.contiguous(memory_format=torch.channels_last)")
        cout = self.top(owner.body, cin)
        methods = self.freeze(owner.body) if self.is_network else ""
        if self.size_args:
            sizes = [a for a in ("height", "width") if a in self.size_args]
            self.m.size_args[owner.name] = sizes
            params[1:1] = [f"in_{a}: int" for a in sizes]
        if not self.is_network:
            taps = owner.taps  # type: ignore[union-attr]
            if taps:  # a base's feature maps: their channels, the last being out_channels
                self.init.assign("self.feature_channels",
                                 Br("", [*(self.tensors[t][1] for t in taps), cout], "(", ")"))
            self.init.assign("self.out_channels", cout)
            formula = substitute(str(cout), self.lets, strict=False)
            known = {"in_channels", *(self.m.local(p.name) + ("_channels" if p.tensor else "") for p in owner.params)}
            if formula is not None and names_in(formula) <= known:
                self.m.out_formulas[owner.name] = formula
        doc = definition_doc(owner)
        if self.is_network:
            if self.outputs:
                result = self.outputs[0] if len(self.outputs) == 1 else ", ".join(self.outputs)
                returns = "torch.Tensor" if len(self.outputs) == 1 else \
                    "tuple[" + ", ".join(["torch.Tensor"] * len(self.outputs)) + "]"
                if self.aux_outputs:  # computed and returned while training only
                    self.fwd.if_("self.training").body.line(result, "return ")
                    evaluated = [o for o in self.outputs if o not in self.aux_outputs]
                    result = evaluated[0] if len(evaluated) == 1 else ", ".join(evaluated)
                    returns += " | " + ("torch.Tensor" if len(evaluated) == 1 else
                                        "tuple[" + ", ".join(["torch.Tensor"] * len(evaluated)) + "]")
            else:
                result, returns = self.src, "torch.Tensor"
        elif owner.taps:  # type: ignore[union-attr]
            result = ", ".join([*(self.tensors[t][0] for t in owner.taps), self.src])  # type: ignore[union-attr]
            returns = "tuple[" + ", ".join(["torch.Tensor"] * (len(owner.taps) + 1)) + "]"  # type: ignore[union-attr]
        else:
            result, returns = self.src, "torch.Tensor"
        self.init.drop_unused(self.channel_vars | self.let_locals)
        signature = lay(Br("def __init__", ["self", *params]), 4, "", " -> None:")
        inputs = [f"{self.input_var}: torch.Tensor"]
        if not self.is_network:
            inputs += [f"{self.m.local(p.name)}: torch.Tensor" for p in owner.tensor_params]  # type: ignore[union-attr]
        forward = lay(Br("def forward", ["self", *inputs]), 4, "", f" -> {returns}:")
        folds = Suite()
        if self.folds:
            pairs = [Br("", [quote(conv), quote(bn)], "(", ")") for conv, bn in self.folds]
            folds.assign("folds", Br("", pairs, "(", ")") if len(pairs) > 1 else f"({pairs[0].flat()},)")
        return templates().get_template("torch_class.py.j2").render(
            name=py_name(owner.name), doc=doc, signature=signature, init=self.init.lines(8),
            forward=self.fwd.lines(8), forward_signature=forward, result=result, folds=folds.lines(4),
            methods=methods)

    def freeze(self, body: G.Seq) -> str:
        """The network's freeze statements, at the end of __init__ (set_trainable on each part, under its
        condition), and the train() that keeps the frozen batch norms in eval mode. "" if it has none."""
        freezes = [i for i in body.items if isinstance(i, G.Freeze)]
        if not freezes:
            return ""
        self.m.need("set_trainable")
        for item in freezes:
            suite = self.init if item.cond is None else self.init.if_(self.expr(item.cond)).body
            for _, path, _ in item.paths:
                suite.line(Br("set_trainable", [f"self.{path}", str(item.trainable)]))
        program = self.m.elab.program
        if not any(isinstance(n, G.Layer) and n.type.statistics
                   for body in (program.network.body, *(b.body for b in program.blocks.values()))
                   for n in all_nodes(body)):
            return ""  # no batch norm in any setting (no running statistics): nn.Module's train() is right
        return templates().get_template("torch_train.py.j2").render(name=py_name(self.owner.name))

    # top-level items: attributes of the class, forward written inline

    def top(self, seq: G.Seq, cin: Code, dst: str = "x") -> Code:
        targets = G.statement_targets(seq)
        self.owned = False  # the first item takes the input, which its caller may still hold
        for index, item in enumerate(seq.items):
            if isinstance(item, (G.Check, G.Freeze)):  # checked when the spec was expanded; frozen at the end
                continue
            if isinstance(item, G.Load):
                self.src, cin = self.tensors[item.name]
                self.owned = False
                continue
            if isinstance(item, G.Store):
                self.owned = False
                var = self.tensor_var(item.name)
                if self.src != var:
                    self.fwd.assign(var, self.src)
                self.src = var
                self.tensors[item.name] = (var, cin)
                continue
            if isinstance(item, G.Let):
                value = self.expr(item.value)
                self.let_ints[item.name] = surely_int(item.value, self.is_int)
                self.let_locals.add(self.m.local(item.name))
                self.init.assign(self.m.local(item.name), value)
                self.lets[self.m.local(item.name)] = substitute(value, self.lets, strict=False) or value
                continue
            if self.m.inference and isinstance(item, G.Layer) and TORCH_FACTS[item.type.name].fold_source \
                    and self._foldable(item) and isinstance(self.previous, G.Layer) \
                    and TORCH_FACTS[self.previous.type.name].fold_target \
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

    def top_node(self, node: G.Node, cin: Code, dst: str, inplace: bool = False) -> Code:
        attr = f"self.{node.name}"
        src = self.src
        if not isinstance(node, G.Output):
            self.src = dst
        if isinstance(node, G.Layer):
            functional = TORCH_FUNCTIONAL.get(node.type.name)
            # forward() sees no parameter of the class: a layer whose arguments read one is a module
            reads_params = any(refers_to_params(e) for e in node.args.values())
            code = functional(self, node, src, inplace) if functional is not None and not reads_params else None
            if code is None and any(isinstance(e, G.TensorRef) for e in node.args.values()):
                raise ArchError(f"{node.type.name} with a named tensor is applied in PyTorch's forward(), which "
                                "sees no parameter of the block: give its other arguments as constants", node.span)
            if code is not None:  # applied in forward(), no module
                if code == src:  # it computes nothing
                    self.src = src
                else:
                    self.fwd.assign(dst, code)
                return self.layer_cout(node, cin)
            ctor, cout = self.layer(node, cin)
            self.init.assign(attr, ctor)
            self.fwd.assign(dst, f"{attr}({src})")
            return cout
        if isinstance(node, G.BlockCall):
            self.init.assign(attr, self.block_call(node, cin))
            extra = [self.tensors[a.name][0] for a in node.args.values() if isinstance(a, G.TensorRef)]
            targets = [self.tensor_var(name) for name in node.unpack]  # a base's feature maps, then the last
            for i, (name, var) in enumerate(zip(node.unpack, targets, strict=True)):
                self.tensors[name] = (var, Leaf(f"{attr}.feature_channels[{i}]"))
            self.fwd.assign(", ".join([*targets, dst]), Br(attr, [src, *extra]))
            return Leaf(f"{attr}.out_channels")
        if isinstance(node, G.Merge):
            names = [self.tensors[r.name][0] for r in node.inputs]
            if node.op in ("add", "mul"):
                self.fwd.assign(dst, (" + " if node.op == "add" else " * ").join(names))
                return self.tensors[node.inputs[0].name][1]
            self.fwd.assign(dst, Br("torch.cat", [Br("", names, "[", "]"), "dim=1"]))
            return plus(*(self.tensors[r.name][1] for r in node.inputs))
        if isinstance(node, G.Residual) and skip_condition(node) is False:  # the body alone
            self.src = src
            return self.top(node.body, cin, dst)
        if isinstance(node, G.Residual):
            when = skip_condition(node)
            identity = self.fresh("identity")
            self.fwd.assign(identity, src)
            self.src = src
            cout = self.top(node.body, cin, dst)
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
                    choice = self.init.if_(self.expr(node.condition))
                    self.assign(sc_attr, node.shortcut, cin, choice.body)
                    choice.orelse.assign(sc_attr, "nn.Identity()")
                other = f"{sc_attr}({identity})"
            body = body_var
            add = self.fwd
            if not is_zero(node.drop_path):
                self.m.need("DropPath")
                drop = Br("DropPath", [self.expr(node.drop_path), *self.per_batch(node)])
                if when is None:
                    self.init.assign(attr, drop)
                else:  # the module where the skip is made, None where the body stands alone
                    choice = self.init.if_(self.expr(when))
                    choice.body.assign(attr, drop)
                    choice.orelse.assign(attr, "None")
                    add = self.fwd.if_(f"{attr} is not None").body
                body = f"{attr}({body_var})"
            elif when is not None:  # whether the skip is made, as torchvision's use_res_connect
                self.init.assign(attr, self.expr(when))
                add = self.fwd.if_(attr).body
            if when is not None and body_var != dst:
                self.fwd.assign(dst, body_var)
            if body_owned:  # in place, as torchvision's `out += identity`
                if body != dst:  # DropPath gives back its input, or a new tensor it does not keep
                    add.assign(dst, body)
                add.line(other, f"{dst} += ")
                return cout
            add.assign(dst, f"{body} + {other}")
            return cout
        if isinstance(node, G.Concat):
            calls, couts = [], []
            for branch in node.branches:
                battr = f"self.{branch.name}"
                couts.append(self.assign(battr, branch, cin))
                calls.append(f"{battr}({src})")
            self.fwd.assign(dst, Br("torch.cat", [Br("", calls, "[", "]"), "dim=1"]))
            return plus(*couts)
        if isinstance(node, G.Scale):
            battr = f"self.{node.body.name}"
            self.assign(battr, node.body, cin)
            self.fwd.assign(dst, f"{src} * {battr}({src})")
            return cin
        if isinstance(node, G.Output):
            var = self.m.local(node.name)
            if node.body is None:
                self.fwd.assign(var, src)
            else:
                self.assign(attr, node.body, cin)
                if node.auxiliary:  # a head for training only: evaluation skips it
                    self.fwd.if_("self.training").body.assign(var, f"{attr}({src})")
                    self.aux_outputs.append(var)
                else:
                    self.fwd.assign(var, f"{attr}({src})")
            self.outputs.append(var)
            return cin
        # a group, a repetition or a choice: one attribute holding a module
        cout = self.assign(attr, node, cin)
        self.fwd.assign(dst, f"{attr}({src})")
        return cout

    def assign(self, target: str, node: G.Node, cin: Code, suite: Suite | None = None) -> Code:
        """Write __init__ code (into suite, __init__'s own by default) that sets `target` to the module
        for node; returns its out channels."""
        suite = self.init if suite is None else suite
        code, cout = self.build(node, cin, target, suite)
        if code is not None:
            suite.assign(target, code)
        return cout

    # nested items: modules built as expressions

    def build(self, node: G.Node, cin: Code, target: str | None, suite: Suite,
              inplace: bool = False, owned: bool = False) -> tuple[Br | str | None, Code]:
        """(module expression, or None where the statements written into suite assigned target
        already; out channels). With inplace (the input is the previous module's own result), an
        activation may work in place; owned (the same, for a sequence or a choice) passes that on to
        their first items, so `bn if hs { hardswish } else { relu }` is written in place as well."""
        if isinstance(node, G.Layer):
            return self.layer(node, cin, inplace)
        if isinstance(node, G.BlockCall):
            ctor = self.block_call(node, cin)
            known = self.block_out(node, cin)
            if known is not None:
                return ctor, known
            if target is not None:
                return ctor, Leaf(f"{target}.out_channels")
            var = self.fresh("m")
            suite.assign(var, ctor)
            return var, Leaf(f"{var}.out_channels")
        if isinstance(node, G.Seq):
            if len(node.items) == 1 and node.nodes and node.nodes[0].label is None:
                only = node.nodes[0]
                return self.build(only, cin, target, suite, owned and self.m.in_place(only), owned)
            parts: list[tuple[str | None, Br | str]] = []
            for item in node.items:
                if isinstance(item, G.Check):  # checked when the spec was expanded
                    continue
                if isinstance(item, G.Let):
                    self.let_ints[item.name] = surely_int(item.value, self.is_int)
                    self.let_locals.add(self.m.local(item.name))
                    suite.assign(self.m.local(item.name), self.expr(item.value))
                    continue
                inplace = owned and self.m.in_place(item)
                code, cin = self.build(item, cin, None, suite, inplace=inplace, owned=owned)
                owned = self.m.owned_after(item, inplace, owned)
                self.previous = item
                parts.append((item.label and item.name, code))  # type: ignore[arg-type]
            if not parts:
                return "nn.Identity()", cin
            if len(parts) == 1 and parts[0][0] is None:
                return parts[0][1], cin
            if any(label for label, _ in parts):
                self.m.uses_ordered = True
                pairs = [Br("", [quote(label or str(i)), code], "(", ")") for i, (label, code) in enumerate(parts)]
                return Br("nn.Sequential", [Br("OrderedDict", [Br("", pairs, "[", "]")])]), cin
            return Br("nn.Sequential", [code for _, code in parts]), cin
        if isinstance(node, G.Concat):
            self.m.need("Concat")
            codes, couts = [], []
            for branch in node.branches:
                code, c = self.build(branch, cin, None, suite)
                codes.append(code)
                couts.append(c)
            return Br("Concat", codes), plus(*couts)
        if isinstance(node, G.Residual) and skip_condition(node) is False:  # the body alone
            return self.build(node.body, cin, target, suite)
        if isinstance(node, G.Residual):
            self.m.need("Residual")
            body, cout = self.build(node.body, cin, None, suite)
            args: list[Br | str] = [body]
            if node.shortcut is not None:
                if node.condition is not None:  # the shortcut, or None: the identity
                    choice = suite.if_(self.expr(node.condition))
                    sc, _ = self.build(node.shortcut, cin, None, choice.body)
                    var = self.fresh("m")
                    choice.body.assign(var, sc)
                    choice.orelse.assign(var, "None")
                    args.append(var)
                else:
                    sc, _ = self.build(node.shortcut, cin, None, suite)
                    args.append(sc)
            if not is_zero(node.drop_path):
                self.m.need("DropPath")
                self.m.residual_drop_path = True  # the Residual helper takes a rate
                args.append(f"drop_path={self.expr(node.drop_path)}")
                args += self.per_batch(node)
            when = skip_condition(node)
            if when is None:
                return Br("Residual", args), cout
            var = self.fresh("m")  # the body, wrapped in a Residual where the skip is made
            suite.assign(var, body)
            suite.if_(self.expr(when)).body.assign(var, Br("Residual", [var, *args[1:]]))
            return var, cout
        if isinstance(node, G.Scale):
            self.m.need("Scale")
            body, _ = self.build(node.body, cin, None, suite)
            return Br("Scale", [body]), cin
        if isinstance(node, G.Choice):
            var = target or self.fresh("m")
            choice = suite.if_(self.expr(node.condition))
            c_then, o_then = self.build(node.then, cin, var, choice.body, owned=owned)
            c_else, o_else = self.build(node.otherwise, cin, var, choice.orelse, owned=owned)
            for code, branch in ((c_then, choice.body), (c_else, choice.orelse)):
                if code is not None:
                    branch.assign(var, code)
            cout = o_then
            if o_then != o_else:  # the branches' channel counts differ: a local holds the one taken
                chan = self.fresh("channels")
                self.channel_vars.add(chan)
                choice.body.assign(chan, o_then)
                choice.orelse.assign(chan, o_else)
                cout = Leaf(chan)
            return None if target else var, cout
        if isinstance(node, G.Repeat):
            var = target or self.fresh("m")
            chan = self.fresh("channels")
            self.channel_vars.add(chan)
            suite.assign(var, "nn.Sequential()")
            suite.assign(chan, cin)
            loop = suite.for_(self.m.local(node.index) if node.index else "_", self.int_code(node.count))
            code, cout = self.build(node.body, Leaf(chan), None, loop.body)
            loop.body.line(Br(f"{var}.append", [code]))  # type: ignore[list-item]
            if cout != Leaf(chan):
                loop.body.assign(chan, cout)
            return None if target else var, Leaf(chan)
        raise AssertionError(node)  # pragma: no cover

    def per_batch(self, node: G.Residual) -> list[str]:
        """DropPath's per_batch argument where the residual drops its body for the whole batch."""
        if is_false(node.per_batch):
            return []
        self.m.drop_per_batch = True  # DropPath (and Residual) take per_batch
        return [f"per_batch={self.expr(node.per_batch)}"]

    def block_out(self, node: G.BlockCall, cin: Code) -> Code | None:
        """A block's output channels as an expression of the call's arguments, where the block's
        class computes them from its parameters alone (so the caller needs no temporary)."""
        formula = self.m.out_formulas.get(node.block)
        if formula is None:
            return None
        block = self.m.elab.program.blocks[node.block]
        values = {"in_channels": str(cin)}
        for p in block.params:
            if p.tensor:
                values[f"{self.m.local(p.name)}_channels"] = str(self.tensors[node.args[p.name].name][1])  # type: ignore[union-attr]
            elif p.name in node.args:
                values[self.m.local(p.name)] = self.expr(node.args[p.name])
            elif p.default is not None and not refers_to_params(p.default):
                values[self.m.local(p.name)] = self.expr(p.default)
            else:
                return None
        code = substitute(formula, values)
        return None if code is None else parsed(code)

    def block_call(self, node: G.BlockCall, cin: Code) -> Br:
        block = self.m.elab.program.blocks[node.block]
        args: list[Code | str] = [cin, *self.size_values(node)]
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

    def layer(self, node: G.Layer, cin: Code, inplace: bool = False) -> tuple[Br | str, Code]:
        """(constructor, out channels) of a layer used as a module: its catalog entry's PyTorch emitter
        (backends/torch_emitters.py) and channel rule."""
        return TORCH[node.type.name](self, node, cin, inplace), self.layer_cout(node, cin)

    def layer_cout(self, node: G.Layer, cin: Code) -> Code:
        """A layer's output channels as code: its catalog entry's rule over the input's channels and
        the layer's arguments."""
        return self.channel_code(node, node.type.channels, cin)

    def channel_code(self, node: G.Layer, rule: Chan, cin: Code) -> Code:
        if isinstance(rule, InChannels):
            return cin
        if isinstance(rule, Arg):
            return self.typed_leaf(node, node.args[rule.name]) if rule.index is None else \
                self.arg_part(node, rule.name, rule.index)
        if isinstance(rule, InSize):
            return Leaf(str(self.in_size(node)[0 if rule.attr == "height" else 1]))
        if isinstance(rule, SplitPart):
            return torch_emitters.split_part(self, node, cin)[1]
        if isinstance(rule, Sum):
            return plus(*(self.channel_code(node, r, cin) for r in rule.terms))
        factors = [r for r in rule.factors if not self.is_unit(node, r)]  # type: ignore[attr-defined]
        return times(*(self.channel_code(node, r, cin) for r in factors))

    def is_unit(self, node: G.Layer, rule: Chan) -> bool:
        """Whether a factor of a channel rule is surely 1 (a multiplier of 1, a 1 x 1 map flattened)."""
        if isinstance(rule, Arg) and rule.index is None:
            return is_one(node.args[rule.name])
        if isinstance(rule, InSize):
            return self.in_size(node)[0 if rule.attr == "height" else 1] == 1
        return False

    def in_size(self, node: G.Layer) -> tuple[int, int]:
        """The input's (height, width) of a layer, the same in every use (1 x 1 for flat features),
        or known from the spec alone after a pooling to a fixed size."""
        size = agreed(node, self.uses(node),
                      lambda i: (i.in_shape.height, i.in_shape.width) if i.in_shape.rank == 3 else (1, 1),
                      "the input size", self.owner_desc(), default=None)
        return size or _fixed_size(self.previous) or agreed(node, self.uses(node), lambda i: None, "the input size",
                                                             self.owner_desc())

    def arg_part(self, node: G.Layer, name: str, index: int) -> Leaf:
        """One element of an argument's normal form as code (a channel padding's before or after),
        symbolic where the spec writes the argument out, else the value every use agrees on."""
        parts = pad_parts(node.args[name], self.leaf)
        if parts is None:
            value = agreed(node, self.uses(node), lambda i: i.args[name], f"the {name}", self.owner_desc())
            return Leaf(str(value[index]))  # type: ignore[index]
        return parts[0] if len(parts) == 1 else parts[index]


def _fixed_size(node: G.Node | None) -> tuple[int, int] | None:
    """The spatial size of a layer's output known from the spec alone, whatever its input's size (a
    global or adaptive pooling): its catalog shape rule on an input of unknown size, where its arguments
    are constants."""
    if not isinstance(node, G.Layer) or not all(isinstance(e, G.Const) for e in node.args.values()):
        return None
    try:
        args = {p.name: p.normal(node.args[p.name].value) for p in node.type.params}  # type: ignore[attr-defined]
        out = node.type.infer(args, Shape((1, None, None))).shape
    except (ArgError, TypeError):  # a rule that needs the input's size: not known from the spec
        return None
    return (out.height, out.width) if out.rank == 3 and out.height is not None and out.width is not None else None
