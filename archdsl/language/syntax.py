"""The syntax tree: what a spec says, as written, with the source span of every node.

Nothing here is resolved or checked; that is elaboration's work (archdsl/core/elaborate.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import Span


@dataclass(frozen=True)
class Symbol:
    """A bare word that stands for itself as an argument value: `same`, `valid`, `global`."""

    name: str

    def __str__(self) -> str:
        return self.name


# Expressions ---------------------------------------------------------------------------------

@dataclass
class Expr:
    span: Span


@dataclass
class Num(Expr):
    value: int | float


@dataclass
class Bool(Expr):
    value: bool


@dataclass
class Name(Expr):
    id: str


@dataclass
class InAttr(Expr):
    """`in.channels`, `in.height`, `in.width`: the shape of the tensor entering the block."""

    attr: str


@dataclass
class InTensor(Expr):
    """`in` as a value: the tensor entering the block (an argument of add/concat or a block)."""


@dataclass
class TensorAttr(Expr):
    """`p.channels`, `p.height`, `p.width`: the shape of a named tensor."""

    name: str
    attr: str


@dataclass
class FunCall(Expr):
    func: str
    args: list[Expr]


@dataclass
class ListExpr(Expr):
    items: list[Expr]


@dataclass
class BinOp(Expr):
    op: str  # + - * / // % ** == != < <= > >= and or
    left: Expr
    right: Expr


@dataclass
class UnaryOp(Expr):
    op: str  # - + not
    operand: Expr


@dataclass
class Ternary(Expr):
    cond: Expr
    then: Expr
    otherwise: Expr


@dataclass
class Unknown(Expr):
    """`?` in an input shape: a spatial size left open."""


# Items: what a chain is made of ---------------------------------------------------------------

@dataclass
class Arg:
    name: str | None
    value: Expr
    span: Span


@dataclass
class Item:
    span: Span
    label: str | None = field(default=None, kw_only=True)
    label_span: Span | None = field(default=None, kw_only=True)


@dataclass
class Call(Item):
    """A layer (`conv(64, 3)`) or a block (`Bottleneck(64)`); which one is decided by elaboration."""

    name: str
    args: list[Arg]
    name_span: Span
    # `Net(...) through label`: a network used as a part (a base), up to and including the item its
    # label names; several labels expose several feature maps. None for a plain call.
    through: list[tuple[str, Span]] | None = None


@dataclass
class Group(Item):
    body: Body


@dataclass
class Concat(Item):
    branches: list[Body]


@dataclass
class ConcatCall(Item):
    """`concat(a, b, ...)`: named tensors joined on channels."""

    args: list[Arg]


@dataclass
class InRef(Item):
    """`in` at the start of a chain: the chain starts from the block's input."""


@dataclass
class Residual(Item):
    args: list[Arg]
    body: Body
    shortcut: Body | None
    shortcut_if: Expr | None
    shortcut_span: Span | None
    when: Expr | None = None  # `residual if cond { ... }`: the skip only where cond holds


@dataclass
class Scale(Item):
    body: Body


@dataclass
class If(Item):
    cond: Expr
    then: Body
    otherwise: Body | None


@dataclass
class Repeat(Item):
    item: Item
    count: Expr
    index: str | None = None  # `for i in range(n) { ... }` binds i to 0 .. n-1


# Statements and definitions -------------------------------------------------------------------

@dataclass
class Stmt:
    span: Span


@dataclass
class Let(Stmt):
    name: str
    value: Expr


@dataclass
class Assert(Stmt):
    """`assert cond, "message"`: the spec's own check of its parameters."""

    cond: Expr
    message: str | None


@dataclass
class Input(Stmt):
    dims: list[Expr]


@dataclass
class Output(Stmt):
    name: str
    chain: list[Item] | None
    auxiliary: bool = False  # `auxiliary output`: computed only while training


@dataclass
class Chain(Stmt):
    items: list[Item]


@dataclass
class Bind(Stmt):
    """`name = chain`: the chain's result gets a name (a tensor other statements can start from)."""

    name: str
    name_span: Span
    items: list[Item]


@dataclass
class Split(Stmt):
    """`a, b = x split(2)`: a tensor's channels split into parts, each named; the chain is the tensor
    and the split(...) call (elaboration checks that it is)."""

    names: list[str]
    name_spans: list[Span]
    items: list[Item]


@dataclass
class Freeze(Stmt):
    """`freeze base, head.fc if cond` (`unfreeze ...`): the parts that the paths of labels name keep
    their weights while the network trains (or train again)."""

    paths: list[tuple[str, Span]]  # dotted paths of labels, as written
    trainable: bool  # false for `freeze`, true for `unfreeze`
    cond: Expr | None


@dataclass
class Body:
    stmts: list[Stmt]
    span: Span


@dataclass
class Param:
    name: str
    default: Expr | None
    span: Span
    tensor: bool = False  # `prev: tensor`: a second input tensor, not a number


@dataclass
class BlockDef:
    name: str
    params: list[Param]
    body: Body
    span: Span
    name_span: Span


@dataclass
class NetworkDef:
    name: str
    params: list[Param]
    body: Body
    span: Span
    name_span: Span


@dataclass
class Import:
    path: str
    span: Span


@dataclass
class Module:
    file: str
    imports: list[Import]
    blocks: list[BlockDef]
    networks: list[NetworkDef]
