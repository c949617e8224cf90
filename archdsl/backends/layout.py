"""Code layout: generated code as statements in suites, each laid out at the indent of its suite
when the whole is written (no code is written with leading spaces of its own), as ruff format (black)
would lay it out: a call that does not fit on its line gets its arguments on one indented line, and if
they do not fit either, one a line with a trailing comma, recursively; a long expression is split
before its loosest operators.

A suite also forgets the assignments to locals that nothing reads (a spec may bind a value it never
uses; ruff calls the local unused, F841): reads are the names the statements' parsed code loads."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator

LINE_LENGTH = 88

class Br:
    """A bracketed piece of code: a call `head(args)` or a list `[args]`."""

    def __init__(self, head: str, args: list, open_: str = "(", close: str = ")") -> None:
        self.head, self.args, self.open, self.close = head, list(args), open_, close

    def flat(self) -> str:
        return f"{self.head}{self.open}{', '.join(flat(a) for a in self.args)}{self.close}"


def flat(code: object) -> str:
    """Code on one line: a bracketed piece, or an expression (a string, or a channel expression tree)."""
    return code.flat() if isinstance(code, Br) else str(code)


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
    trailer = re.fullmatch(r"\((\w+|\[\w+(?:, \w+)*\])\)", suffix)  # a call of a variable or a list of them
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


def _balanced_outer(text: str) -> bool:
    depth = 0
    for i, ch in enumerate(text):
        depth += ch == "("
        depth -= ch == ")"
        if depth == 0 and i < len(text) - 1:
            return False
    return True


# Statements and suites ----------------------------------------------------------------------------

class Statement:
    """A statement: its one line of code, `prefix code suffix` (for a compound statement, the header),
    and the names it loads. The code does not change once written."""

    target: str | None = None  # the plain local a simple assignment sets (what Suite.drop_unused may remove)
    BODY = ""  # what makes the line a statement Python parses (a compound header needs a suite)

    def __init__(self, code: object, prefix: str = "", suffix: str = "") -> None:
        self.code, self.prefix, self.suffix = code, prefix, suffix
        self._text: str | None = None
        self._reads: frozenset[str] | None = None

    def text(self) -> str:
        if self._text is None:
            self._text = f"{self.prefix}{flat(self.code)}{self.suffix}"
        return self._text

    def reads(self) -> frozenset[str]:
        """The names the statement loads (an augmented assignment's target too)."""
        if self._reads is None:
            tree = ast.parse(self.text() + self.BODY)
            names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
            names |= {n.target.id for n in ast.walk(tree)
                      if isinstance(n, ast.AugAssign) and isinstance(n.target, ast.Name)}
            self._reads = frozenset(names)
        return self._reads

    def lines(self, indent: int) -> list[str]:
        return lay(self.code, indent, self.prefix, self.suffix)

    def walk(self) -> Iterator[Statement]:
        yield self


class Simple(Statement):
    """A simple statement (`x = conv(x)`, `return x`); `target` where it assigns a plain local."""

    def __init__(self, code: object, prefix: str = "", suffix: str = "", target: str | None = None) -> None:
        super().__init__(code, prefix, suffix)
        self.target = target


class Compound(Statement):
    """A compound statement: its header (`if cond:`, `for i in range(n):`), its suite, and an `else:`
    suite written where it holds statements. An empty suite is written `pass`."""

    BODY = "\n    pass"

    def __init__(self, code: object, prefix: str, suffix: str = ":") -> None:
        super().__init__(code, prefix, suffix)
        self.body = Suite()
        self.orelse = Suite()

    def lines(self, indent: int) -> list[str]:
        pad = " " * indent
        out = super().lines(indent)
        out += self.body.lines(indent + 4) or [f"{pad}    pass"]
        if self.orelse.items:
            out += [f"{pad}else:", *self.orelse.lines(indent + 4)]
        return out

    def walk(self) -> Iterator[Statement]:
        yield self
        yield from self.body.walk()
        yield from self.orelse.walk()


class Suite:
    """Statements at one indent, written out (with the suites inside them) by lines(indent)."""

    def __init__(self) -> None:
        self.items: list[Statement] = []

    def add(self, statement: Statement) -> Statement:
        self.items.append(statement)
        return statement

    def assign(self, target: str, code: object, suffix: str = "") -> Simple:
        """`target = code suffix` (suffix: a call of the value, as Keras applies a layer)."""
        plain = target.isidentifier()
        return self.add(Simple(code, f"{target} = ", suffix, target if plain else None))  # type: ignore[return-value]

    def line(self, code: object, prefix: str = "", suffix: str = "") -> Simple:
        return self.add(Simple(code, prefix, suffix))  # type: ignore[return-value]

    def if_(self, condition: object) -> Compound:
        return self.add(Compound(condition, "if "))  # type: ignore[return-value]

    def for_(self, var: str, count: object) -> Compound:
        return self.add(Compound(count, f"for {var} in range(", "):"))  # type: ignore[return-value]

    def extend(self, other: Suite) -> None:
        self.items.extend(other.items)

    def lines(self, indent: int) -> list[str]:
        return [line for item in self.items for line in item.lines(indent)]

    def walk(self) -> Iterator[Statement]:
        for item in self.items:
            yield from item.walk()

    def drop_unused(self, names: set[str]) -> None:
        """Remove the assignments to the locals in names that nothing reads, and then those of the
        locals only they read."""
        names = set(names)
        while names:
            statements = list(self.walk())
            assigned = {s.target for s in statements if s.target in names}
            unused = {n for n in assigned if not any(n in s.text() and n in s.reads() for s in statements)}
            if not unused:
                return
            self._remove(unused)
            names -= unused

    def _remove(self, targets: set[str]) -> None:
        self.items = [item for item in self.items if item.target not in targets]
        for item in self.items:
            if isinstance(item, Compound):
                item.body._remove(targets)
                item.orelse._remove(targets)
