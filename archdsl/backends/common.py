"""What both backends share: Python names, expression printing, code layout, per-instance facts."""

from __future__ import annotations

import ast
import builtins
import keyword
import os
import re
from collections.abc import Callable
from functools import lru_cache

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from ..core import graph as G
from ..core.layers import INT_KINDS
from ..language.errors import ArchError

LINE_LENGTH = 88

# Names the generated modules define or import (every top-level name of the templates, tested) and
# the templates' own locals (build_model's `params`, `state_dict`, `model`), which no name from a spec
# may take: such a name gets a trailing "_"
GENERATED = frozenset([
    "annotations", "math", "torch", "nn", "F", "keras", "layers", "ops", "OrderedDict", "Callable", "self", "x",
    "name", "inputs", "outputs", "in_channels", "in_height", "in_width", "params", "state_dict", "model",
    "INPUT_SHAPE", "OUTPUT_NAMES", "AUXILIARY_OUTPUTS", "build_model", "prepare_for_inference", "fold_batchnorm",
    "make_divisible", "normalize_stats", "same_padding", "conv2d", "max_pool2d", "avg_pool2d", "conv2d_groups", "padded", "Concat", "Residual", "Scale",
    "DropPath", "SeparableConv2d", "Conv2dSame", "MaxPool2dSame", "AvgPool2dSame", "PartialBatchNorm1d",
    "PartialBatchNorm2d", "LayerNorm2d", "LayerScale", "Rescale", "Normalize", "Crop2d", "ChannelPad", "GroupedConv2D",
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

    if left == right and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]*", left):
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


def atomic(text: str) -> bool:
    """Whether a piece of Python needs no parentheses as an operand."""
    return re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]*(\[-?\d+\])?(\.[A-Za-z_]+)?|\d+|\(.*\)", text) is not None \
        and not (text.startswith("(") and not _balanced_outer(text))


def _balanced_outer(text: str) -> bool:
    depth = 0
    for i, ch in enumerate(text):
        depth += ch == "("
        depth -= ch == ")"
        if depth == 0 and i < len(text) - 1:
            return False
    return True


def paren(text: str) -> str:
    return text if atomic(text) else f"({text})"


# Code layout --------------------------------------------------------------------------------------
#
# Generated code is laid out as ruff format (black) would: a call that does not fit on its line
# gets its arguments on one indented line, and if they do not fit either, one a line with a
# trailing comma, recursively.

class Br:
    """A bracketed piece of code: a call `head(args)` or a list `[args]`."""

    def __init__(self, head: str, args: list, open_: str = "(", close: str = ")") -> None:
        self.head, self.args, self.open, self.close = head, list(args), open_, close

    def flat(self) -> str:
        return f"{self.head}{self.open}{', '.join(flat(a) for a in self.args)}{self.close}"


def flat(code: str | Br) -> str:
    return code.flat() if isinstance(code, Br) else code


_DELIMITERS = ([" if ", " else "], [" or "], [" and "], [" == ", " != ", " < ", " <= ", " > ", " >= "],
               [" + ", " - "], [" * ", " / ", " // ", " % "])


def _delimiter_split(code: str) -> list[str]:
    """An expression split before each of its loosest top-level operators, one operand a line, as
    ruff format splits a right-hand side that does not fit."""
    for group in _DELIMITERS:
        depth, cuts, i = 0, [], 0
        while i < len(code):
            ch = code[i]
            if ch in "([{":
                depth += 1
            elif ch in ")]}":
                depth -= 1
            elif depth == 0:
                for d in group:
                    if code.startswith(d, i):
                        cuts.append(i)
                        i += len(d) - 1
                        break
            i += 1
        if cuts:
            parts, start = [], 0
            for c in cuts:
                parts.append(code[start:c].strip())
                start = c + 1
            parts.append(code[start:].strip())
            return parts
    return [code]


def _operand_lines(part: str, indent: int) -> list[str]:
    """One operand of a split expression (with the operator before it) at the indent; where it does
    not fit and is in parentheses, their content split in turn, as ruff format does."""
    pad = " " * indent
    m = re.fullmatch(r"((?:[^\s(]+ )?)\((.*)\)(,?)", part)
    if len(pad + part) <= LINE_LENGTH or m is None or not _balanced_outer(f"({m.group(2)})"):
        return [pad + part]
    inner = _delimiter_split(m.group(2))
    if len(inner) == 1:
        return [pad + part]
    return [f"{pad}{m.group(1)}(", *(line for p in inner for line in _operand_lines(p, indent + 4)),
            f"{pad}){m.group(3)}"]


def lay(code: str | Br, indent: int, prefix: str = "", suffix: str = "") -> list[str]:
    """Lines for `prefix code suffix` at the given indent."""
    pad = " " * indent
    one = f"{pad}{prefix}{flat(code)}{suffix}"
    if len(one) <= LINE_LENGTH:
        return [one]
    trailer = re.fullmatch(r"\((\w+)\)", suffix)
    if trailer and len(f"{pad}{prefix}{flat(code)}(") <= LINE_LENGTH:  # split the last brackets first
        return [f"{pad}{prefix}{flat(code)}(", f"{pad}    {trailer.group(1)}", f"{pad})"]
    if not isinstance(code, Br) or not code.args:
        if prefix.endswith("= ") and not suffix:  # a long right-hand side, in parentheses
            body = flat(code)
            if len(" " * (indent + 4) + body) <= LINE_LENGTH:
                return [f"{pad}{prefix}(", f"{pad}    {body}", f"{pad})"]
            parts = _delimiter_split(body)
            if len(parts) > 1:
                return [f"{pad}{prefix}(", *(f"{pad}    {p}" for p in parts), f"{pad})"]
        elif suffix in ("", ",") and (not prefix or re.fullmatch(r"\w+=", prefix)):
            # an argument of a call laid out one a line: split before its loosest operators, each
            # operand on a line of its own at the argument's indent, as ruff format does
            parts = _delimiter_split(flat(code))
            if len(parts) > 1:
                parts[0], parts[-1] = prefix + parts[0], parts[-1] + suffix
                return [line for part in parts for line in _operand_lines(part, indent)]
        return [one]
    inner = " " * (indent + 4)
    head = f"{pad}{prefix}{code.head}{code.open}"
    tail = f"{pad}{code.close}{suffix}"
    body = f"{inner}{', '.join(flat(a) for a in code.args)}"
    if len(body) <= LINE_LENGTH:
        return [head, body, tail]
    lines = [head]
    for a in code.args:  # one a line; a lone argument gets no trailing comma (as ruff format writes it)
        lines.extend(lay(a, indent + 4, "", "," if len(code.args) > 1 else ""))
    lines.append(tail)
    return lines


@lru_cache(maxsize=1)
def templates() -> Environment:
    folder = os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates")
    env = Environment(loader=FileSystemLoader(folder), undefined=StrictUndefined,
                      keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True, autoescape=False)
    return env


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


def block_params(block: G.BlockDef, uses: list[G.Inst], printer, local=py_name, indent: int = 4,
                 tensor: Callable[[str], str] = str) -> tuple[list[str], list[str]]:
    """Typed Python parameters of a block (whose calls in the expansion are `uses`), and the lines
    that fill in defaults computed from other parameters (Python defaults cannot refer to them). A
    tensor parameter is written as `tensor(name)` says."""
    params, fixups = [], []
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
            fixups.append(f"{' ' * indent}if {name} is None:")
            fixups.extend(lay(printer(p.default), indent + 4, f"{name} = "))
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


def is_none(e: G.Expr) -> bool:
    return isinstance(e, G.Const) and e.value is None


def pad_parts(e: G.Expr, printer) -> tuple[str, ...] | None:
    """A padding argument written in the spec as p, [a, b] or [t, b, l, r], as printed parts in
    the spec's own form (so expressions stay symbolic); None when its form is only known from its
    value (a parameter holding a list)."""
    if isinstance(e, G.ListE):
        return tuple(printer(i) for i in e.items)
    if isinstance(e, G.Const) and isinstance(e.value, tuple):
        return tuple(literal(v) for v in e.value)
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


def int_code(e: G.Expr, printer, ints: Callable[[G.Ref], bool]) -> str:
    """An integer-valued argument as code: as written where it is surely an integer, else in
    int(...) (the checker has made sure its value is whole). Lists element by element."""
    if isinstance(e, G.ListE):
        items = [int_code(i, printer, ints) for i in e.items]
        return f"({items[0]},)" if len(items) == 1 else f"({', '.join(items)})"
    if isinstance(e, G.Const) and isinstance(e.value, float) and e.value.is_integer():
        return str(int(e.value))  # `64.0`, which the checker took as the integer 64
    text = printer(e)
    if surely_int(e, ints) or (isinstance(e, G.Const) and not isinstance(e.value, (int, float))):
        return text
    return f"int({text})"


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


def network_params(elab: G.Elaborated, printer, local=py_name, indent: int = 4) -> tuple[list[str], list[str]]:
    """Typed Python parameters of the network's class or builder, defaulting to the values in force,
    and the lines that compute defaults the spec derives from other parameters (so overriding one
    parameter of the generated model still derives the others as the spec says)."""
    params, fixups = [], []
    for p in elab.program.network.params:
        value = elab.args[p.name]
        name, ann = local(p.name), value_type([value])
        if p.name not in elab.overridden and p.default is not None and refers_to_params(p.default):
            params.append(f"{name}: {ann} | None = None")
            fixups += [f"{' ' * indent}if {name} is None:", *lay(printer(p.default), indent + 4, f"{name} = ")]
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
        text = self.printer(e)
        if "make_divisible" in self.printer.used_functions:
            self.m.need("make_divisible")
        return text

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
        for p in node.type.params:
            if node.args.get(p.name) is e and p.kind in INT_KINDS:
                return int_code(e, self.expr, self.is_int)
        return self.expr(e)

    def sides(self, node: G.Layer, arg: str) -> tuple[str, str, str, str]:
        """A zeropad/crop argument as (top, bottom, left, right) integer code (four_sides)."""
        return four_sides(node, self.uses(node), arg, lambda ex: int_code(ex, self.expr, self.is_int),
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


def drop_unused_assignments(lines: list[str], names: set[str]) -> list[str]:
    """Remove the assignments to the locals in names that nothing reads (a spec may bind a value it
    never uses; ruff calls the local unused, F841), and then of those only they read."""
    changed = True
    while changed:
        changed = False
        for name in sorted(names):
            starts = [i for i, line in enumerate(lines) if re.match(rf"\s*{re.escape(name)} = ", line)]
            if not starts:
                continue
            # a read: not an attribute, not in a string, not a keyword argument or an assignment (`name=`)
            use = re.compile(rf"(?<![.\w\"']){re.escape(name)}\b(?!\s*=(?!=))")
            if any(use.search(line) for line in lines):
                continue
            drop = set()
            for i in starts:
                drop.add(i)
                if lines[i].endswith("("):  # a long value, laid out over lines up to its ")"
                    indent = len(lines[i]) - len(lines[i].lstrip())
                    j = i + 1
                    while not lines[j].startswith(" " * indent + ")"):
                        drop.add(j)
                        j += 1
                    drop.add(j)
            lines = [line for k, line in enumerate(lines) if k not in drop]
            changed = True
    return _no_empty_bodies(lines)


def _no_empty_bodies(lines: list[str]) -> list[str]:
    """`pass` in a compound statement (`if`, `for`) whose body the removals above emptied."""
    out: list[str] = []
    for k, line in enumerate(lines):
        out.append(line)
        if line.endswith(":") and not line.lstrip().startswith("#"):
            indent = len(line) - len(line.lstrip())
            following = next((n for n in lines[k + 1:] if n.strip()), "")
            if len(following) - len(following.lstrip()) <= indent:
                out.append(" " * (indent + 4) + "pass")
    return out
