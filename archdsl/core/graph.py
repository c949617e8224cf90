"""The typed graph: what elaboration makes of a spec, and what the backends read.

Two levels live here. *Definitions* (BlockDef, NetworkDef and their nodes) keep the structure of
the spec with every name resolved, every layer bound to its signature (defaults filled in) and
every node given its module path; expressions stay symbolic, so a block becomes one reusable class
or function. *Instances* (Inst) are the expansion for one setting of the network's parameters:
every repetition unrolled, every expression evaluated, every tensor's shape, parameters and
multiply-accumulates known (archdsl/core/shapes.py builds them). The instances of one expansion are
kept by its Elaborated, never on the definitions, so two expansions of one program can coexist:
`elab.uses(node)` is every instance a definition node (or block) expands to in that expansion.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from fractions import Fraction
from typing import TYPE_CHECKING

from ..language.errors import Span
from ..language.syntax import Symbol

if TYPE_CHECKING:
    from .layers import LayerType


def snake(name: str) -> str:
    """A block name in snake case (`InvertedResidual` -> `inverted_residual`): how auto-names and
    Keras functions are named after blocks."""
    s = re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name)
    s = re.sub(r"(?<=[A-Z])([A-Z][a-z])", r"_\1", s)
    return s.lower()


def escaped(name: str, prefixed: re.Pattern, reserved) -> str:
    """A spec name as a Python identifier that no other spec name is also written as: a name that
    `prefixed` matches at its start (one Python would mangle, or one of nn.Module's own) gets a
    leading "u" (and so does every name of the form u...<that>, so `u__x` of the spec stays apart
    from `__x`); a name whose stem (without trailing underscores) is `reserved` gets a trailing
    underscore (so `def_` of the spec, `def__`, stays apart from `def`, `def_`)."""
    if prefixed.match(name):
        name = "u" + name
    return name + "_" if reserved(name.rstrip("_")) else name


Value = int | float | bool | Symbol | tuple | None


# Expressions ----------------------------------------------------------------------------------

@dataclass
class Expr:
    span: Span


@dataclass
class Const(Expr):
    value: Value


@dataclass
class Ref(Expr):
    """A block/network parameter or a `let` binding."""

    name: str
    kind: str  # "param", "let" or "index" (of a `for`)


@dataclass
class InShape(Expr):
    attr: str  # channels, height, width


@dataclass
class TensorRef(Expr):
    """A named tensor as a value (an argument of add/concat or of a block's tensor parameter);
    `in` is the tensor entering the block."""

    name: str


@dataclass
class TensorAttr(Expr):
    """`p.channels`, `p.height`, `p.width` of a named tensor (in assert conditions)."""

    name: str
    attr: str


@dataclass
class Func(Expr):
    func: str
    args: list[Expr]


@dataclass
class Op(Expr):
    op: str  # unary: neg pos not; binary: + - * / // % ** == != < <= > >= and or
    args: list[Expr]


@dataclass
class Cond(Expr):
    cond: Expr
    then: Expr
    otherwise: Expr


@dataclass
class ListE(Expr):
    items: list[Expr]


# Definitions ----------------------------------------------------------------------------------

@dataclass(eq=False)
class Node:
    span: Span
    name: str  # path component inside its parent (attribute name or index)
    label: str | None = field(default=None, kw_only=True)  # the name the spec gave, if any
    label_span: Span | None = field(default=None, kw_only=True, repr=False)
    # a composite at the top of a block: generated forward() writes it inline, its parts are
    # attributes of the block (paths relative to the block), not of a module of its own
    inline: bool = field(default=False, kw_only=True)


@dataclass(eq=False)
class Layer(Node):
    type: LayerType
    args: dict[str, Expr]  # every parameter of the layer type, defaults filled in


@dataclass(eq=False)
class BlockCall(Node):
    block: str
    args: dict[str, Expr]  # only the arguments given; the rest take the block's defaults
    # a base exposing several feature maps (`c3, c4, c5 = R() through layer2, layer3, layer4`): the
    # caller's names for the block's taps, all but the last (which is the call's result, stored as usual)
    unpack: list[str] = field(default_factory=list)


@dataclass(eq=False)
class Let:
    span: Span
    name: str
    value: Expr


@dataclass(eq=False)
class Load:
    """A chain that starts from a named tensor (`h = p conv(...)`): the items after it take that
    tensor instead of the result of the statement before. `in` is the block's input."""

    span: Span
    name: str


@dataclass(eq=False)
class Store:
    """The end of `name = chain`: the result so far gets a name; the chain's result also goes on
    to the next statement."""

    span: Span
    name: str


@dataclass(eq=False)
class Check:
    """`assert cond, "message"`, checked when the spec is expanded; no code is generated for it."""

    span: Span
    cond: Expr
    message: str | None


@dataclass(eq=False)
class Freeze:
    """`freeze a, b.c if cond` / `unfreeze ...`: the parts the paths name (a layer, a block call, a base,
    a group, and everything inside) do not train (train again), where cond holds. No layer; the
    expansion marks the instances (Inst.frozen), the backends write it after the model is built."""

    span: Span
    # the dotted paths of labels as written, the module paths they name (labels escaped as names are,
    # `global` is `global_`), and where they are written
    paths: list[tuple[str, str, Span]]
    trainable: bool
    cond: Expr | None


@dataclass(eq=False)
class Seq(Node):
    """A run of items. At the top of a block it is the block's body; nested, it is a group that
    the PyTorch backend makes one module of (a single module, or an nn.Sequential)."""

    items: list[Node | Let | Check | Load | Store | Freeze]

    @property
    def nodes(self) -> list[Node]:
        return [i for i in self.items if isinstance(i, Node)]


@dataclass(eq=False)
class Concat(Node):
    branches: list[Seq]


@dataclass(eq=False)
class Merge(Node):
    """`add(a, b, ...)`, `mul(a, b, ...)` or `concat(a, b, ...)` of named tensors (it starts a chain)."""

    op: str  # "add", "mul" or "concat"
    inputs: list[TensorRef]


@dataclass(eq=False)
class Residual(Node):
    body: Seq
    shortcut: Seq | None
    condition: Expr | None  # the shortcut is used when this holds; identity otherwise
    drop_path: Expr  # stochastic depth rate, 0 for none
    per_batch: Expr = None  # type: ignore[assignment]  # drop the body for the whole batch (Huang et al.), not per sample
    when: Expr | None = None  # `residual if cond`: the skip connection only where this holds, else the body alone


@dataclass(eq=False)
class Scale(Node):
    body: Seq


@dataclass(eq=False)
class Choice(Node):
    """`if cond { ... } else { ... }`: one of two groups, chosen when the model is built."""

    condition: Expr
    then: Seq
    otherwise: Seq


@dataclass(eq=False)
class Repeat(Node):
    body: Node
    count: Expr
    index: str | None = None  # the name bound to 0, 1, ... in the body (`for i in range(n)`)


@dataclass(eq=False)
class Output(Node):
    """`output name = chain`: a named output that taps the main path; the main path goes on.
    An auxiliary output (`auxiliary output name = chain`) is computed only while training."""

    body: Seq | None
    auxiliary: bool = False


@dataclass
class Param:
    name: str
    default: Expr | None
    span: Span
    tensor: bool = False  # a second input tensor of the block (`prev: tensor`), not a number


@dataclass(eq=False)
class BlockDef:
    name: str
    params: list[Param]
    body: Seq
    span: Span
    uses_in: set[str] = field(default_factory=set)  # which of in.channels/height/width it reads
    base: str | None = None  # a network used as a base: its cut ("through block5", "whole")
    taps: list[str] = field(default_factory=list)  # a base's named tensors returned before its result

    @property
    def tensor_params(self) -> list[Param]:
        return [p for p in self.params if p.tensor]


@dataclass(eq=False)
class NetworkDef:
    name: str
    params: list[Param]
    input: list[Expr | None]  # None for an open size `?`
    input_span: Span
    body: Seq
    span: Span
    outputs: list[Output] = field(default_factory=list)


@dataclass(eq=False)
class Program:
    spec: str  # the spec file as given on the command line
    sources: dict[str, str]  # file -> text, for error messages
    blocks: dict[str, BlockDef]  # definitions in dependency order (callees first)
    network: NetworkDef


@dataclass(eq=False)
class Library:
    """A file of blocks without a network (specs/lib/*.arch), checked on its own: every block it
    defines or imports elaborated. Shapes need an input, so they are checked where a network uses
    the blocks."""

    spec: str  # the file as given
    sources: dict[str, str]  # file -> text, for error messages
    blocks: dict[str, BlockDef]  # every block loaded (its own and those it imports), elaborated
    own: list[str]  # the names of the blocks the file itself defines, in order
    imports: int = 0  # how many other files it reads


def names_input(seq: Seq) -> bool:
    """Whether a body names its input tensor (`in` starting a chain or as an argument), so that
    generated code must keep the input in a variable of its own."""
    for item in seq.items:
        if isinstance(item, Load) and item.name == "in":
            return True
        if isinstance(item, Merge) and any(r.name == "in" for r in item.inputs):
            return True
        if isinstance(item, (BlockCall, Layer)) and any(isinstance(a, TensorRef) and a.name == "in"
                                                        for a in item.args.values()):
            return True  # a tensor argument: a block's, or a layer's `like = in`
    return False


def statement_targets(seq: Seq) -> dict[int, str | None]:
    """For each node of a body, by index: the named tensor its statement binds (`name = ...`), or
    None for a statement whose result only goes on to the next one."""
    targets: dict[int, str | None] = {}
    target: str | None = None
    for i in range(len(seq.items) - 1, -1, -1):
        item = seq.items[i]
        if isinstance(item, Store):
            target = item.name
        elif isinstance(item, Load):
            target = None
        elif isinstance(item, Node):
            targets[i] = target
            if isinstance(item, Merge):
                target = None
    return targets


# Shapes and instances -------------------------------------------------------------------------

@dataclass(frozen=True)
class Shape:
    """(channels, height, width) with a symbolic batch, or (features,) after flatten/dense.
    A spatial size may be None: left open by the input (`?`)."""

    dims: tuple[int | None, ...]

    @property
    def rank(self) -> int:
        return len(self.dims)

    @property
    def channels(self) -> int:
        return self.dims[0]  # type: ignore[return-value]

    @property
    def height(self) -> int | None:
        return self.dims[1] if self.rank == 3 else None

    @property
    def width(self) -> int | None:
        return self.dims[2] if self.rank == 3 else None

    def numel(self) -> int | None:
        n = 1
        for d in self.dims:
            if d is None:
                return None
            n *= d
        return n

    def __str__(self) -> str:
        return "[" + ", ".join("?" if d is None else str(d) for d in self.dims) + "]"


@dataclass(eq=False)
class Inst:
    """One node of the expanded network for one setting of its parameters."""

    node: Node | None  # the definition node it comes from (None for the network itself)
    path: str  # module path, e.g. "layer2.0.conv1"
    kind: str  # layer type name, block name, or composite kind
    in_shape: Shape
    out_shape: Shape
    args: dict[str, Value] = field(default_factory=dict)  # evaluated layer/block arguments
    params: int = 0  # parameters of this node alone (children not included), frozen or not
    macs: int = 0  # multiply-accumulates of this node alone
    children: list[Inst] = field(default_factory=list)
    block: BlockDef | None = None  # for a block call: its definition
    rf: tuple[int | Fraction, int | Fraction] | None = None  # receptive field size and jump (stride product) at output
    frozen: bool = False  # under a `freeze` statement's path (and no later `unfreeze`): its weights do not train
    taps: tuple[Shape, ...] = ()  # a base's feature maps returned before its result (BlockCall.unpack)

    def walk(self):
        """This instance and every one below it, depth first in order (iterative: networks may be
        deep, and nested generators would cost a step per level for every instance)."""
        stack = [self]
        while stack:
            inst = stack.pop()
            yield inst
            stack.extend(reversed(inst.children))

    def total_params(self) -> int:
        return sum(i.params for i in self.walk())

    def trainable_params(self) -> int:
        return sum(i.params for i in self.walk() if not i.frozen)

    def total_macs(self) -> int:
        return sum(i.macs for i in self.walk())


@dataclass(eq=False)
class Elaborated:
    """A program expanded for one setting of the network parameters."""

    program: Program
    args: dict[str, Value]  # the network parameters in force
    root: Inst
    outputs: list[tuple[str, Inst]]  # (name, the instance whose output it is)
    overridden: frozenset[str] = frozenset()  # the parameters set from outside (--set)
    # id of a definition node (Node or BlockDef of `program`, which keeps them alive) -> its instances
    # in this expansion, in order
    per_node: dict[int, list[Inst]] = field(default_factory=dict, repr=False)

    def uses(self, node: Node | BlockDef) -> list[Inst]:
        """Every instance of a definition node (a layer, block call, composite, group) or of a block
        (its calls) in this expansion, in order; empty for one that no use reaches."""
        return self.per_node.get(id(node), [])

    @property
    def auxiliary(self) -> tuple[str, ...]:
        """The outputs computed only while training (`auxiliary output`), in spec order."""
        return tuple(name for name, inst in self.outputs if isinstance(inst.node, Output) and inst.node.auxiliary)
