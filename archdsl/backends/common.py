"""What both backends share: Python names, expression printing, channel expressions, per-instance facts."""

from __future__ import annotations

import ast
import builtins
import keyword
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from ..core import graph as G
from ..core.layers import INT_KINDS
from ..language.errors import ArchError
from .layout import Suite

# Names the generated modules define or import (every top-level name of the templates, tested) and
# the templates' own locals (build_model's `params`, `state_dict`, `model`), which no name from a spec
# may take: such a name gets a trailing "_"
GENERATED = frozenset([
    "annotations", "math", "torch", "nn", "F", "keras", "layers", "ops", "OrderedDict", "Callable", "self", "x",
    "name", "inputs", "outputs", "in_channels", "in_height", "in_width", "params", "state_dict", "model",
    "INPUT_SHAPE", "OUTPUT_NAMES", "AUXILIARY_OUTPUTS", "build_model", "prepare_for_inference", "fold_batchnorm",
    "make_divisible", "normalize_stats", "same_padding", "conv2d", "max_pool2d", "avg_pool2d", "conv2d_groups", "padded", "set_trainable", "Concat", "Residual", "Scale",
    "DropPath", "DropBlock2d", "DropBlock2D", "SeparableConv2d", "Conv2dSame", "MaxPool2dSame", "AvgPool2dSame", "PartialBatchNorm1d",
    "PartialBatchNorm2d", "LayerNorm2d", "LayerScale", "Rescale", "Normalize", "Preprocess", "Crop2d", "center_crop", "ChannelSlice", "ChannelSplit", "CenterCrop2D", "ChannelPad", "ChannelShuffle", "GroupedConv2D", "ConvTranspose2D", "Interpolate2D",
    "Pad2D", "LocalResponseNorm", "AdaptiveAvgPool2D", "_pair", "_fold", "_is_bn", "_is_conv"])
_TEMP = re.compile(r"^(identity|channels|branch|scaled|m|t|i|rep|shortcut|padding)\d*$")


_MANGLED = re.compile(r"u*__")  # what py_name prefixes with "u": names Python would mangle, and their images


def py_name(name: str, taken: frozenset[str] | set[str] = frozenset()) -> str:
    """A spec name as a Python identifier that shadows nothing the generated code uses (nor a name in
    `taken`), and that no other spec name is also written as: distinct names stay distinct.

    - A name that begins with two underscores would be mangled inside a class body (`self.__x` is
      `self._Net__x` there): it gets a leading "u" (`__x` -> `u__x`); so that `u__x` of the spec stays
      another name, every name of the form u...u__... gets one too (`u__x` -> `uu__x`).
    - A name whose stem (the name without its trailing underscores) is a Python keyword, a builtin,
      a name the generated code defines or uses, or in `taken`, gets a trailing underscore (`def` ->
      `def_`, and `def_` of the spec -> `def__`)."""
    return G.escaped(name, _MANGLED, lambda stem: (
        not stem or keyword.iskeyword(stem) or keyword.issoftkeyword(stem) or stem in GENERATED or stem in taken
        or hasattr(builtins, stem) or bool(_TEMP.match(stem))))  # no stem: `_` is the loops' throwaway variable


class LocalNames:
    """Spec names of parameters, lets, indices and outputs as Python locals of one module: none shadows
    a name in `reserved` (the module's classes or functions), and distinct spec names stay distinct.
    py_name alone keeps the stem apart from `reserved`'s stems; a local whose Python name is still one
    of `reserved` (a class `F_` from a block `F`, and a parameter `F`), or one another spec name took
    first, gets one more trailing underscore until it is free. Memoized: a name has one spelling in
    the whole module, so a call's keyword is the signature's parameter."""

    def __init__(self, reserved: set[str] | frozenset[str]) -> None:
        self.reserved = frozenset(reserved)
        self.stems = frozenset(r.rstrip("_") for r in reserved)
        self.names: dict[str, str] = {}
        self.taken: set[str] = set()

    def __call__(self, name: str) -> str:
        out = self.names.get(name)
        if out is None:
            out = py_name(name, self.stems)
            while out in self.reserved or out in self.taken:
                out += "_"
            self.names[name] = out
            self.taken.add(out)
        return out


def quote(s: str) -> str:
    """A Python string literal in the style ruff format writes (double quotes)."""
    if '"' not in s and "\\" not in s and s.isprintable():
        return f'"{s}"'
    return repr(s)


def literal(v: G.Value) -> str:
    if isinstance(v, bool):
        return "True" if v else "False"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, G.Symbol):
        return quote(v.name)
    if isinstance(v, str):
        return quote(v)
    if isinstance(v, tuple):
        inner = ", ".join(literal(x) for x in v)
        return f"({inner},)" if len(v) == 1 else f"({inner})"
    if v is None:
        return "None"
    raise AssertionError(v)  # pragma: no cover


_PREC = {"if": 0, "or": 1, "and": 2, "not": 3, "==": 4, "!=": 4, "<": 4, "<=": 4, ">": 4, ">=": 4,
         "+": 5, "-": 5, "*": 6, "/": 6, "//": 6, "%": 6, "neg": 7, "pos": 7, "**": 8}
_ATOM = 9


class ExprPrinter:
    """Prints typed-graph expressions as Python source."""

    def __init__(self, ref: Callable[[G.Ref], str], in_shape: Callable[[G.InShape], str],
                 functions: dict[str, str]) -> None:
        self.ref = ref
        self.in_shape = in_shape
        self.functions = functions  # language function -> Python callable text
        self.used_functions: set[str] = set()

    def __call__(self, e: G.Expr) -> str:
        return self._p(e)[0]

    def leaf(self, e: G.Expr) -> Leaf:
        """The expression as a leaf of a channel expression (its text and precedence)."""
        return Leaf(*self._p(e))

    def _p(self, e: G.Expr) -> tuple[str, int]:
        if isinstance(e, G.Const):
            text = literal(e.value)
            return text, (_PREC["neg"] if text.startswith("-") else _ATOM)
        if isinstance(e, G.Ref):
            return self.ref(e), _ATOM
        if isinstance(e, G.InShape):
            return self.in_shape(e), _ATOM
        if isinstance(e, G.ListE):
            items = [self(i) for i in e.items]
            return (f"({items[0]},)" if len(items) == 1 else f"({', '.join(items)})"), _ATOM
        if isinstance(e, G.Func):
            inner = e.args[0] if len(e.args) == 1 else None
            if e.func == "int" and isinstance(inner, G.Func) and inner.func in ("round", "ceil", "floor", "int",
                                                                                   "make_divisible") \
                    and (inner.func != "round" or len(inner.args) == 1):
                return self._p(inner)  # already an integer: int(...) would be redundant
            self.used_functions.add(e.func)
            return f"{self.functions.get(e.func, e.func)}({', '.join(self(a) for a in e.args)})", _ATOM
        if isinstance(e, G.Cond):
            return (f"{self._wrap(e.then, 1)} if {self._wrap(e.cond, 1)} else {self._wrap(e.otherwise, 0)}",
                    _PREC["if"])
        if isinstance(e, G.Op):
            p = _PREC[e.op]
            if e.op == "not":
                inner = e.args[0]
                if isinstance(inner, G.Op) and inner.op in _NEGATED:  # `a != b`, as ruff wants it (SIM201)
                    return self._p(G.Op(span=inner.span, op=_NEGATED[inner.op], args=inner.args))
                if isinstance(inner, G.Op) and inner.op == "not":  # `not not a` is `a` for a condition
                    return self._p(inner.args[0])
                text = self._wrap(inner, p)
                if text in ("True", "False"):
                    return ("False" if text == "True" else "True"), _ATOM
                return f"not {text}", p
            if e.op in ("neg", "pos"):
                return f"{'-' if e.op == 'neg' else '+'}{self._wrap(e.args[0], p)}", p
            if e.op == "**":  # right-associative; hugged between simple operands, as ruff format writes it
                base, exponent = e.args
                hug = _simple_power_operand(base, wrapped=True) and _simple_power_operand(exponent, wrapped=False)
                op = "**" if hug else " ** "
                return f"{self._wrap(e.args[0], p + 1)}{op}{self._wrap(e.args[1], p)}", p
            if p == 4:  # comparisons do not chain
                left, right = self._wrap(e.args[0], p + 1), self._wrap(e.args[1], p + 1)
                known = _compare_known(e.op, left, right)
                if known is not None:  # two constants (an input size the class knows, say), or a name and itself
                    return known, _ATOM
                return f"{left} {e.op} {right}", p
            return f"{self._wrap(e.args[0], p)} {e.op} {self._wrap(e.args[1], p + 1)}", p
        raise AssertionError(e)  # pragma: no cover

    def _wrap(self, e: G.Expr, min_prec: int) -> str:
        text, prec = self._p(e)
        return f"({text})" if prec < min_prec else text


_NEGATED = {"==": "!=", "!=": "=="}
_COMPARE = {"==": lambda a, b: a == b, "!=": lambda a, b: a != b, "<": lambda a, b: a < b,
            "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b}


def _compare_known(op: str, left: str, right: str) -> str | None:
    """A comparison whose value the printed code already shows, as True or False: of two literals
    (ruff: "two constants compared", PLR0133), or of a name with itself (PLR0124)."""
    import ast

    if left == right and all(part.isidentifier() for part in left.split(".")):
        return str(op in ("==", "<=", ">="))
    try:
        a, b = ast.literal_eval(left), ast.literal_eval(right)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None
    if not all(isinstance(v, (int, float, str, bool, tuple)) or v is None for v in (a, b)):
        return None
    try:
        return str(bool(_COMPARE[op](a, b)))
    except TypeError:  # an ordering of values that have none: the checker has refused it already
        return None


def _simple_power_operand(e: G.Expr, wrapped: bool) -> bool:
    """Whether ruff format hugs `**` next to this operand (`x**2`): a name or a non-negative number
    (the printer parenthesizes negations, which are then not simple), or, as the exponent, a power
    of simple operands itself (`a**b**2`)."""
    if isinstance(e, G.Const):
        return isinstance(e.value, (int, float)) and not isinstance(e.value, bool) and e.value >= 0
    if isinstance(e, G.Op) and e.op == "**" and not wrapped:
        return _simple_power_operand(e.args[0], True) and _simple_power_operand(e.args[1], False)
    return isinstance(e, (G.Ref, G.InShape))


# Channel expressions ------------------------------------------------------------------------------

class Code:
    """A Python expression the backends compute with (a channel count, a module's argument): a tree of
    sums and products over leaves, printed once, where it is placed, with just the parentheses its
    operators' precedence needs."""

    prec: int

    def operand(self, min_prec: int) -> str:
        return f"({self})" if self.prec < min_prec else str(self)


@dataclass(frozen=True)
class Leaf(Code):
    """A name, a number or a printed spec expression, with the precedence of its outermost operator."""

    text: str
    prec: int = _ATOM

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class Plus(Code):
    terms: tuple[Code, ...]
    prec = _PREC["+"]

    def __str__(self) -> str:  # left to right: a later term that is a difference keeps its parentheses
        return " + ".join(t.operand(self.prec + (i > 0)) for i, t in enumerate(self.terms))


@dataclass(frozen=True)
class Times(Code):
    factors: tuple[Code, ...]
    prec = _PREC["*"]

    def __str__(self) -> str:
        return " * ".join(f.operand(self.prec + (i > 0)) for i, f in enumerate(self.factors))


def plus(*terms: Code) -> Code:
    """The sum of channel expressions (a sum's terms joined into it)."""
    flat_terms = tuple(x for t in terms for x in (t.terms if isinstance(t, Plus) else (t,)))
    return flat_terms[0] if len(flat_terms) == 1 else Plus(flat_terms) if flat_terms else Leaf("0")


def times(*factors: Code) -> Code:
    """The product of channel expressions (a product's factors joined into it)."""
    flat_factors = tuple(x for f in factors for x in (f.factors if isinstance(f, Times) else (f,)))
    return flat_factors[0] if len(flat_factors) == 1 else Times(flat_factors) if flat_factors else Leaf("1")


def parsed(text: str) -> Leaf:
    """Code that ast has written (a formula with names substituted) as a leaf: its precedence from
    its parsed outermost node."""
    node = ast.parse(text, mode="eval").body
    if isinstance(node, ast.BinOp):
        prec = _PREC[{ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.FloorDiv: "//",
                      ast.Mod: "%", ast.Pow: "**"}.get(type(node.op), "**")]
    elif isinstance(node, ast.UnaryOp):
        prec = _PREC["not"] if isinstance(node.op, ast.Not) else _PREC["neg"]
    elif isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and node.value < 0:
        prec = _PREC["neg"]
    else:
        prec = {ast.IfExp: _PREC["if"], ast.Compare: _PREC["=="]}.get(type(node), _ATOM)
        if isinstance(node, ast.BoolOp):
            prec = _PREC["and" if isinstance(node.op, ast.And) else "or"]
    return Leaf(text, prec)


@lru_cache(maxsize=1)
def templates() -> Environment:
    folder = os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates")
    env = Environment(loader=FileSystemLoader(folder), undefined=StrictUndefined,
                      keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True, autoescape=False)
    return env


def definition_doc(owner: G.BlockDef | G.NetworkDef) -> str:
    """The docstring of a block's (the network's) class or function: what it is and where it is defined."""
    where = f"{header_source(owner.span.file)}:{owner.span.line}"
    if isinstance(owner, G.NetworkDef):
        return f'"""network {owner.name} ({where})."""'
    if owner.base is not None:
        return f'"""network {owner.name} {owner.base}, as a base ({where})."""'
    return f'"""block {owner.name} ({where})."""'


def header_source(path: str) -> str:
    """The spec path as it may appear in a generated comment or docstring: any character that could
    end or escape them (quotes, backslashes, newlines, non-ASCII) is percent-encoded."""
    from urllib.parse import quote as percent

    return percent(path, safe="/._-+:@,=~ ()[]")


# Facts that depend on the concrete input ------------------------------------------------------------

_RAISE = object()


def agreed(node: G.Node, uses: list[G.Inst], fact: Callable[[G.Inst], object], what: str, owner: str,
           default: object = _RAISE) -> object:
    """A fact about a definition node that must be the same in all its instances, `uses` (e.g. the
    feature count after a flatten): it becomes a literal in the generated code. A node with no instance
    (in an `if` branch that no use takes) gives `default`, or an error if there is none."""
    values = []
    for inst in uses:
        v = fact(inst)
        if v not in values:
            values.append(v)
    if not values:
        if default is _RAISE:
            raise ArchError(f"{what} is not known here: no use of this layer in {owner} is expanded with these "
                            "parameters (it is in an `if` branch that is never taken), and the generated code "
                            "needs it; compile with parameters that use it, or write it without the branch",
                            node.span)
        return default
    if len(values) > 1:
        raise ArchError(f"{what} differs between the uses of {owner} ({', '.join(map(str, values[:4]))}); "
                        "the generated code needs it fixed per definition: split the block or make the "
                        "sizes agree", node.span)
    return values[0]


def refers_to_params(e: G.Expr) -> bool:
    """Whether an expression reads a parameter, a let or the input shape (so it cannot be a
    Python default value)."""
    if isinstance(e, (G.Ref, G.InShape)):
        return True
    if isinstance(e, G.Func):
        return any(refers_to_params(a) for a in e.args)
    if isinstance(e, G.Op):
        return any(refers_to_params(a) for a in e.args)
    if isinstance(e, G.Cond):
        return any(refers_to_params(a) for a in (e.cond, e.then, e.otherwise))
    if isinstance(e, G.ListE):
        return any(refers_to_params(a) for a in e.items)
    return False


def block_calls(node: G.Node) -> Iterator[G.BlockCall]:
    """The block calls in a body (or any node), at any depth."""
    if isinstance(node, G.BlockCall):
        yield node
    parts = node.items if isinstance(node, G.Seq) else node.branches if isinstance(node, G.Concat) else \
        [getattr(node, a, None) for a in ("body", "shortcut", "then", "otherwise")]
    for part in parts:
        if isinstance(part, G.Node):
            yield from block_calls(part)


def fixed_values(program: G.Program, owner: G.BlockDef | G.NetworkDef, e: G.Expr) -> frozenset | None:
    """The values an expression of a block's can take in the generated module whatever build_model()
    is given: constants, and parameters that every call in the program passes such values (or whose
    default is one). None where it may take others: it reads a parameter of the network (which
    build_model() takes), a let, a loop index or the input's shape."""
    if isinstance(e, G.Const):
        return frozenset([e.value]) if not isinstance(e.value, tuple) or all(
            isinstance(v, (int, float, str)) for v in e.value) else None
    if not (isinstance(e, G.Ref) and e.kind == "param" and isinstance(owner, G.BlockDef)):
        return None
    param = next(p for p in owner.params if p.name == e.name)
    values: set = set()
    callers = [*program.blocks.values(), program.network]
    calls = [(caller, call) for caller in callers for call in block_calls(caller.body) if call.block == owner.name]
    if not calls:
        return None
    for caller, call in calls:
        if e.name in call.args:
            got = fixed_values(program, caller, call.args[e.name])
        else:  # the default, in the block's own scope
            got = None if param.default is None else fixed_values(program, owner, param.default)
        if got is None:
            return None
        values |= got
    return frozenset(values)


def value_type(values: list) -> str:
    """A Python annotation for the values a parameter takes."""
    kinds = set()
    for v in values:
        if isinstance(v, bool):
            kinds.add("bool")
        elif isinstance(v, int):
            kinds.add("int")
        elif isinstance(v, float):
            kinds.add("float")
        elif isinstance(v, G.Symbol):
            kinds.add("str")
        elif isinstance(v, tuple):
            items = value_type(list(v)) if v else "int"
            kinds.add(f"tuple[{items}, ...]")
        else:
            kinds.add("object")
    if kinds == {"int", "float"}:
        return "float"
    if not kinds:  # a block no use of which is expanded: its parameters' types are not seen
        return "int"
    return kinds.pop() if len(kinds) == 1 else "object"


def block_params(block: G.BlockDef, uses: list[G.Inst], printer, local=py_name,
                 tensor: Callable[[str], str] = str) -> tuple[list[str], Suite]:
    """Typed Python parameters of a block (whose calls in the expansion are `uses`), and the statements
    that fill in defaults computed from other parameters (Python defaults cannot refer to them). A
    tensor parameter is written as `tensor(name)` says."""
    params, fixups = [], Suite()
    for p in block.params:
        name = local(p.name)
        if p.tensor:
            params.append(tensor(name))
            continue
        ann = value_type([i.args[p.name] for i in uses if p.name in i.args])
        if p.default is None:
            params.append(f"{name}: {ann}")
        elif refers_to_params(p.default):
            params.append(f"{name}: {ann} | None = None")
            fixups.if_(f"{name} is None").body.assign(name, printer(p.default))
        else:
            params.append(f"{name}: {ann} = {printer(p.default)}")
    return params, fixups


def names_in(code: str) -> set[str]:
    """The plain names a Python expression reads (attributes like self.x count as 'self')."""
    import ast

    try:
        tree = ast.parse(code, mode="eval")
    except SyntaxError:
        return {"<unparsable>"}
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}


def substitute(code: str, values: dict[str, str], strict: bool = True) -> str | None:
    """Replace names in a Python expression by other expressions (parenthesised as needed).
    With strict, every name must have a value; otherwise unknown names stay."""
    import ast

    try:
        tree = ast.parse(code, mode="eval")
    except SyntaxError:
        return None
    missing = False

    class _Sub(ast.NodeTransformer):
        def visit_Name(self, node: ast.Name):
            nonlocal missing
            if node.id in values:
                return ast.parse(values[node.id], mode="eval").body
            if strict:
                missing = True
            return node

    class _Fold(ast.NodeTransformer):
        """Comparisons of two constants (ruff: PLR0133) and the choices they decide, worked out."""

        def visit_Compare(self, node: ast.Compare):
            self.generic_visit(node)
            if len(node.ops) == 1 and isinstance(node.left, ast.Constant) \
                    and isinstance(node.comparators[0], ast.Constant):
                op = {ast.Eq: "==", ast.NotEq: "!=", ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">="}
                known = _compare_known(op[type(node.ops[0])], repr(node.left.value), repr(node.comparators[0].value))
                if known is not None:
                    return ast.Constant(known == "True")
            return node

        def visit_IfExp(self, node: ast.IfExp):
            self.generic_visit(node)
            if isinstance(node.test, ast.Constant) and isinstance(node.test.value, bool):
                return node.body if node.test.value else node.orelse
            return node

    new = _Fold().visit(_Sub().visit(tree))
    if missing:
        return None
    return ast.unparse(new).replace("'", '"')


# Constant arguments: what both backends leave out when it is the framework's default ----------------

def const(e: G.Expr):
    """The value of a constant expression, or a marker equal to nothing."""
    return e.value if isinstance(e, G.Const) else _NOT_CONST


_NOT_CONST = object()


def is_one(e: G.Expr) -> bool:
    return const(e) in (1, (1, 1))


def pad_chosen(node: G.Layer, uses: list[G.Inst]) -> bool:
    """Whether a layer's padding is an expression over parameters that may come out as `same` or
    `valid` as well as a size (`same if tf_pad else 1`, or a parameter that is `same` in a use): its
    layer is then chosen as the model is built, for whatever values build_model() gets, instead of
    from the uses the spec was compiled for."""
    e = node.args["pad"]
    if isinstance(e, G.Const):
        return False
    if any(isinstance(i.args.get("pad"), G.Symbol) for i in uses):
        return True

    def symbols(x) -> bool:
        if isinstance(x, G.Const):
            return isinstance(x.value, G.Symbol)
        if isinstance(x, G.Cond):
            return symbols(x.then) or symbols(x.otherwise)
        if isinstance(x, (G.Func, G.Op)):
            return any(symbols(a) for a in x.args)
        return False

    return symbols(e)


def is_zero(e: G.Expr) -> bool:
    v = const(e)
    return not isinstance(v, bool) and v in (0, (0, 0))


def is_true(e: G.Expr) -> bool:
    return const(e) is True


def is_false(e: G.Expr) -> bool:
    return const(e) is False


def skip_condition(node: G.Residual) -> G.Expr | None | bool:
    """When a residual makes its skip connection: None (always), False (never: the body alone, a
    `residual if false`), or the condition's expression, decided as the model is built."""
    if node.when is None or is_true(node.when):
        return None
    return False if is_false(node.when) else node.when


def is_none(e: G.Expr) -> bool:
    return isinstance(e, G.Const) and e.value is None


def pad_parts(e: G.Expr, printer) -> tuple[str, ...] | None:
    """A padding argument written in the spec as p, [a, b] or [t, b, l, r], as printed parts in
    the spec's own form (so expressions stay symbolic); None when its form is only known from its
    value (a parameter holding a list)."""
    if isinstance(e, G.ListE):
        return tuple(printer(i) for i in e.items)
    if isinstance(e, G.Const) and isinstance(e.value, tuple):
        return tuple(printer(G.Const(span=e.span, value=v)) for v in e.value)
    if isinstance(e, (G.Const, G.Op, G.Func)):  # a number: the same on every side
        return (printer(e),)
    return None


def integral(v: G.Value) -> bool:
    """An integer, or a list of integers (a [height, width] pair): usable where sizes are wanted."""
    if isinstance(v, tuple):
        return all(integral(x) for x in v)
    return isinstance(v, int) and not isinstance(v, bool)


_INT_FUNCS = {"int", "round", "ceil", "floor", "make_divisible"}


def surely_int(e: G.Expr, ints: Callable[[G.Ref], bool]) -> bool:
    """Whether an expression is an integer in every use, so generated code needs no int(...)
    where a framework wants one (a count written `depth / 2` is a float in Python)."""
    if isinstance(e, G.Const):
        return isinstance(e.value, int) and not isinstance(e.value, bool)
    if isinstance(e, G.Ref):
        return ints(e)
    if isinstance(e, G.InShape):
        return True
    if isinstance(e, G.Func):
        if e.func in _INT_FUNCS:
            return e.func != "round" or len(e.args) == 1
        if e.func in ("min", "max", "abs"):
            return all(surely_int(a, ints) for a in e.args)
        return False
    if isinstance(e, G.Op):
        if e.op in ("+", "-", "*", "//", "%", "neg", "pos"):
            return all(surely_int(a, ints) for a in e.args)
        return False
    if isinstance(e, G.Cond):
        return surely_int(e.then, ints) and surely_int(e.otherwise, ints)
    return False


def int_code(e: G.Expr, printer: Callable[[G.Expr], Leaf], ints: Callable[[G.Ref], bool]) -> Leaf:
    """An integer-valued argument as code: as written where it is surely an integer, else in
    int(...) (the checker has made sure its value is whole). Lists element by element."""
    if isinstance(e, G.ListE):
        items = [str(int_code(i, printer, ints)) for i in e.items]
        return Leaf(f"({items[0]},)" if len(items) == 1 else f"({', '.join(items)})")
    if isinstance(e, G.Const) and isinstance(e.value, float) and e.value.is_integer():
        return Leaf(str(int(e.value)))  # `64.0`, which the checker took as the integer 64
    code = printer(e)
    if surely_int(e, ints) or (isinstance(e, G.Const) and not isinstance(e.value, (int, float))):
        return code
    return Leaf(f"int({code})")


def four_sides(node: G.Layer, uses: list[G.Inst], arg: str, printer, owner: str) -> tuple[str, str, str, str]:
    """A zeropad/crop argument as (top, bottom, left, right) code, symbolic where the spec writes
    it out (p, [ph, pw], [t, b, l, r]), else the value every use agrees on."""
    parts = pad_parts(node.args[arg], printer)
    if parts is None or len(parts) not in (1, 2, 4):
        t, b, le, r = agreed(node, uses, lambda i: i.args[arg], f"the {arg}", owner)  # type: ignore[misc]
        return str(t), str(b), str(le), str(r)
    if len(parts) == 1:
        return parts[0], parts[0], parts[0], parts[0]
    if len(parts) == 2:
        return parts[0], parts[0], parts[1], parts[1]
    return parts[0], parts[1], parts[2], parts[3]


def network_params(elab: G.Elaborated, printer, local=py_name) -> tuple[list[str], Suite]:
    """Typed Python parameters of the network's class or builder, defaulting to the values in force,
    and the statements that compute defaults the spec derives from other parameters (so overriding one
    parameter of the generated model still derives the others as the spec says)."""
    params, fixups = [], Suite()
    for p in elab.program.network.params:
        value = elab.args[p.name]
        name, ann = local(p.name), value_type([value])
        if p.name not in elab.overridden and p.default is not None and refers_to_params(p.default):
            params.append(f"{name}: {ann} | None = None")
            fixups.if_(f"{name} is None").body.assign(name, printer(p.default))
        else:
            params.append(f"{name}: {ann} = {literal(value)}")
    return params, fixups


class CodeUnit:
    """What the PyTorch class and the Keras function of one block (or of the network) share: the
    names and expressions of its parameters and lets, and fresh local names."""

    FIRST_PLAIN: tuple[str, ...] = ()  # local names whose first use goes without a number
    RESERVED_LOCALS: frozenset[str] = frozenset()  # locals the generated code itself defines
    FRESH_LOCALS = re.compile(r"(?!)")  # the names fresh() makes, which a spec's name must not take

    def __init__(self, module, owner: G.BlockDef | G.NetworkDef) -> None:
        self.m = module
        self.owner = owner
        self.is_network = isinstance(owner, G.NetworkDef)
        self.counters: dict[str, int] = {}
        self.outputs: list[str] = []
        self.aux_outputs: list[str] = []  # the outputs computed only while training
        self.let_ints: dict[str, bool] = {}  # let -> holds an integer
        self.printer = ExprPrinter(lambda e: module.local(e.name), self._in_shape,
                                   {"ceil": "math.ceil", "floor": "math.floor", "make_divisible": "make_divisible"})

    def _in_shape(self, e: G.InShape) -> str:  # pragma: no cover - each backend says how
        raise NotImplementedError

    def expr(self, e: G.Expr) -> str:
        return self.leaf(e).text

    def leaf(self, e: G.Expr) -> Leaf:
        """An expression as a leaf of channel expressions (code with its precedence)."""
        code = self.printer.leaf(e)
        if "make_divisible" in self.printer.used_functions:
            self.m.need("make_divisible")
        return code

    def uses(self, node: G.Node | G.BlockDef) -> list[G.Inst]:
        """The instances of a definition node (or block) in the expansion being generated."""
        return self.m.elab.uses(node)

    def is_int(self, ref: G.Ref) -> bool:
        """Whether a parameter or let holds an integer in every use."""
        if ref.kind == "let":
            return self.let_ints.get(ref.name, False)
        if ref.kind == "index":
            return True
        if self.is_network:
            return integral(self.m.elab.args.get(ref.name))
        values = [i.args.get(ref.name) for i in self.uses(self.owner)]
        return bool(values) and all(integral(v) for v in values)

    def typed(self, node: G.Layer, e: G.Expr) -> str:
        """A layer argument as code; integer arguments in int(...) unless surely integers."""
        return str(self.typed_leaf(node, e))

    def typed_leaf(self, node: G.Layer, e: G.Expr) -> Leaf:
        for p in node.type.params:
            if node.args.get(p.name) is e and p.kind in INT_KINDS:
                return self.int_code(e)
        return self.leaf(e)

    def int_code(self, e: G.Expr) -> Leaf:
        """An integer-valued expression as code (int_code)."""
        return int_code(e, self.leaf, self.is_int)

    def sides(self, node: G.Layer, arg: str) -> tuple[str, str, str, str]:
        """A zeropad/crop argument as (top, bottom, left, right) integer code (four_sides)."""
        return four_sides(node, self.uses(node), arg, lambda ex: str(self.int_code(ex)),
                          self.owner_desc())

    def new_tensor_var(self, name: str, taken) -> str:
        """A Python variable for a named tensor: its name, with trailing underscores where it would
        clash with another tensor's variable, an output or a local of the generated code."""
        var = self.m.local(name)
        taken = {*taken, *self.RESERVED_LOCALS, *self.outputs}
        while var in taken or self.FRESH_LOCALS.fullmatch(var):
            var += "_"
        return var

    def fresh(self, base: str) -> str:
        self.counters[base] = self.counters.get(base, 0) + 1
        n = self.counters[base]
        return base if n == 1 and base in self.FIRST_PLAIN else f"{base}{n}"

    def owner_desc(self) -> str:
        return f"network {self.owner.name}" if self.is_network else f"block {self.owner.name}"
