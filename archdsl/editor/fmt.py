"""The canonical formatter: `archdsl fmt`, and format_source() for the language server.

The formatter changes whitespace only. It keeps every token in its order and every comment, and the
author's line structure: a statement that spans lines still does (argument lists broken over lines,
`\\` continuations), aligned columns in argument lists stay aligned, trailing comments keep their
column. What it makes canonical (docs/fmt.md has the user's version):

- indentation: 4 spaces per `{ ... }` level; a line that starts with `}` is at its opener's level;
- spacing between tokens: `conv(64, 3, stride = 2)`, `name: item`, `a + b`, `-x`, `in.channels`,
  `{ relu }`, `} shortcut {`; a run of two or more spaces after `,`, `(` or `[` is kept (a column of
  an argument table);
- a body that spans lines has `{` at the end of its first line and `}` at the start of its last;
- continuation lines inside `( ... )` / `[ ... ]` or after `\\`: aligned with the token of an earlier
  line of the statement they were aligned with, or else indented 4 per open bracket;
- own-line comments: indented like the code around them (inside brackets like a continuation line),
  or kept under the comment of the line above when they were aligned with it;
- trailing comments: at their column (moved with their line's indentation), or two spaces after the
  code where the code now reaches it;
- blank lines: at most one in a row, none at the start or end of the file, right after a `{` or right
  before a `}`; one before a top-level `block` or `network` (and the comments directly above it);
- no trailing whitespace, no tabs outside comments, `\\n` line ends, one newline at the end of the file.

Newlines and blank lines carry no meaning where they are added or removed (the parser drops a
newline after `{` and before `}`, and folds runs of them), and format_source() checks that the
output reads as the same token stream as the input before it returns it.
"""

from __future__ import annotations

import difflib
import itertools
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

from ..language import tokens
from ..language.errors import ArchError
from ..language.parser import parse

INDENT = 4
TAB = 4  # columns of a tab stop, when measuring an input's columns (as error messages show tabs)

KEYWORDS = frozenset(tokens.KEYWORDS)  # the grammar's reserved words
_CALL_KEYWORDS = frozenset({"residual", "concat", "range"})  # written without a space before `(`
_OPERAND_KEYWORDS = frozenset({"in", "true", "false"})  # a `-` after one of these is binary
_OPENERS = ("(", "[")
_CLOSERS = (")", "]")
_ALIGN_AFTER = (",", "(", "[")  # a run of 2+ spaces after one of these is kept: a column of a table

@dataclass(slots=True)
class _Tok:
    kind: str  # name | num | str | op
    value: str
    col: int  # column in the input line (0-based, tabs to the next multiple of TAB)
    gap: str  # the whitespace before it on its line ("" for the first)
    unary: bool = False  # a `-` or `+` that is a sign, not a binary operator


@dataclass(slots=True)
class _Line:
    toks: list[_Tok] = field(default_factory=list)
    comment: str | None = None
    comment_col: int = 0
    cont: bool = False  # ends with a `\` line continuation

    @property
    def blank(self) -> bool:
        return not self.toks and self.comment is None and not self.cont


# The formatter's kinds of the token table's categories; whitespace, newlines and comments are
# layout, and an error token (none in a text that parsed) is dropped.
_KIND = {tokens.NAME: "name", tokens.KEYWORD: "name", tokens.NUMBER: "num", tokens.STRING: "str",
         tokens.OPERATOR: "op", tokens.PUNCTUATION: "op"}


def _lex(text: str) -> list[_Line]:
    """Source that parsed, as lines (one per "\\n") of tokens, comment and continuation."""
    lines = [_Line()]
    col = 0  # column in the input line (tabs to the next multiple of TAB)
    gap = ""  # the whitespace right before the next token
    for tok in tokens.scan(text):
        line = lines[-1]
        if tok.category == tokens.NEWLINE or tok.kind == "LINE_CONT":
            line.cont = tok.kind == "LINE_CONT"
            lines.append(_Line())
            col, gap = 0, ""
        elif tok.category == tokens.WHITESPACE:
            gap = tok.text
            if "\t" in gap:
                for ch in gap:
                    col = (col // TAB + 1) * TAB if ch == "\t" else col + 1
            else:
                col += len(gap)
        elif tok.category == tokens.COMMENT:
            line.comment = tok.text.rstrip(" \t\f\r")
            line.comment_col = col
            col += len(tok.text)
            gap = ""
        elif tok.category in _KIND:
            line.toks.append(_Tok(_KIND[tok.category], tok.text, col, gap if line.toks else ""))
            col += len(tok.text)
            gap = ""
    previous: _Tok | None = None
    for line in lines:
        for tok in line.toks:
            if tok.value in ("-", "+") and tok.kind == "op":
                tok.unary = previous is None or (
                    previous.kind == "op" and previous.value not in (")", "]", "}", "?")) or (
                    previous.kind == "name" and previous.value in KEYWORDS
                    and previous.value not in _OPERAND_KEYWORDS)
            previous = tok
    return lines


def _significant(lines: list[_Line]) -> list[str]:
    """The token values the parser sees, with "\\n" for each newline it keeps (what the post-lexer in
    archdsl/language/parser.py does): two texts with equal lists mean the same."""
    result: list[str] = []
    depth = 0
    pending = False
    for line in lines:
        for tok in line.toks:
            if pending and tok.value != "}":
                result.append("\n")
            pending = False
            if tok.value in _OPENERS:
                depth += 1
            elif tok.value in _CLOSERS:
                depth = max(0, depth - 1)
            result.append(tok.value)
        if not line.cont and depth == 0 and result and result[-1] not in ("{", "\n"):
            pending = True
    return result


def _space(a: _Tok, b: _Tok) -> int:
    """Spaces between two tokens on one line, canonically (0 or 1)."""
    av, bv = a.value, b.value
    if b.kind == "op":
        if bv in (")", "]", ",", ":", "."):
            return 0
        if bv == "(" and a.kind == "name" and (av not in KEYWORDS or av in _CALL_KEYWORDS):
            return 0
        if bv in _OPENERS and (av in _OPENERS or a.unary):
            return 0
        if bv == "}" and av == "{":
            return 0
    if a.kind == "op" and (av in _OPENERS or av == "." or a.unary):
        return 0
    return 1


def _segments(lines: list[_Line]) -> list[list[tuple[int, int]]]:
    """For each line, its pieces as (start, end) token ranges: a line is cut after a `{` and before a
    `}` whose partner is on another line, so that a body spanning lines opens and closes on lines of
    its own."""
    cuts: list[set[int]] = [set() for _ in lines]
    stack: list[tuple[int, int]] = []
    for li, line in enumerate(lines):
        for ti, tok in enumerate(line.toks):
            if tok.kind != "op":
                continue
            if tok.value == "{":
                stack.append((li, ti))
            elif tok.value == "}" and stack:
                oli, oti = stack.pop()
                if oli != li:
                    if oti + 1 < len(lines[oli].toks):
                        cuts[oli].add(oti + 1)
                    if ti > 0:
                        cuts[li].add(ti)
    result = []
    for li, line in enumerate(lines):
        bounds = [0, *sorted(cuts[li]), len(line.toks)]
        result.append([(bounds[i], bounds[i + 1]) for i in range(len(bounds) - 1)])
    return result


class _Layout:
    def __init__(self, lines: list[_Line]) -> None:
        self.lines = lines
        self.out: list[str] = []
        self.comments: list[bool] = []  # for each line of out: whether it is an own-line comment
        self.depth = 0  # open `{`
        self.brackets = 0  # open `(` and `[`
        self.backslash = False  # the previous line ended with `\`
        self.stmt_indent = 0
        self.stmt_cols: list[tuple[int, int]] = []  # (input column, output column) of the statement's tokens
        self.blank_pending = False
        self.last_opens = False  # the last line written ends with `{`
        self.prev_comment: tuple[int, int] | None = None  # the comment of the line above: (input, output) column

    def continuing(self) -> bool:
        return self.brackets > 0 or self.backslash

    def continuation_indent(self, col: int, closers: int) -> int:
        for orig, new in reversed(self.stmt_cols):
            if orig == col:
                # inside brackets, a line is not aligned with the start of its statement (`)` is anyway)
                if new > self.stmt_indent or self.backslash:
                    return new
                break
        level = max(self.brackets - closers, 1 if self.backslash else 0)
        return self.stmt_indent + INDENT * level

    def emit(self, text: str, starts_with_close: bool, comment: bool = False) -> None:
        if self.blank_pending and self.out and not self.last_opens and not starts_with_close:
            self.out.append("")
            self.comments.append(False)
        self.blank_pending = False
        self.out.append(text)
        self.comments.append(comment)

    def separate(self) -> None:
        """Before a top-level `block` or `network`: a blank line above it and the comments just above it."""
        if self.blank_pending or self.depth != 0:
            return
        i = len(self.out)
        while i > 0 and self.comments[i - 1] and self.out[i - 1].startswith("#"):
            i -= 1
        if i > 0 and self.out[i - 1] != "":
            self.out.insert(i, "")
            self.comments.insert(i, False)

    def comment_line(self, line: _Line) -> None:
        if self.prev_comment is not None and self.prev_comment[0] == line.comment_col:
            indent = self.prev_comment[1]
        elif self.brackets > 0:
            indent = self.continuation_indent(line.comment_col, 0)
        else:
            indent = INDENT * self.depth
        self.emit(" " * indent + line.comment, False, True)
        self.last_opens = False
        self.prev_comment = (line.comment_col, indent)

    def code(self, toks: list[_Tok], comment: str | None, comment_col: int, cont: bool) -> None:
        first = toks[0]
        if self.continuing():
            closers = 0
            for tok in toks:
                if tok.value not in _CLOSERS:
                    break
                closers += 1
            indent = self.continuation_indent(first.col, closers)
        else:
            closing = first.kind == "op" and first.value == "}"
            indent = INDENT * max(0, self.depth - (1 if closing else 0))
            if self.depth == 0 and first.kind == "name" and first.value in ("block", "network"):
                self.separate()
            self.stmt_indent = indent
            self.stmt_cols = []
        parts = [" " * indent, first.value]
        col = indent
        self.stmt_cols.append((first.col, col))
        col += len(first.value)
        self.track(first)
        for a, b in itertools.pairwise(toks):
            if a.value in _ALIGN_AFTER and a.kind == "op" and b.value not in (*_CLOSERS, ",") \
                    and len(b.gap) >= 2 and b.gap.strip(" ") == "":
                gap = b.gap
            else:
                gap = " " * _space(a, b)
            parts.append(gap)
            col += len(gap)
            self.stmt_cols.append((b.col, col))
            parts.append(b.value)
            col += len(b.value)
            self.track(b)
        if cont:
            parts.append(" \\")
            col += 2
        if comment is not None:
            target = comment_col + indent - first.col
            if target < col + 1:
                target = col + 2
            parts.append(" " * (target - col) + comment)
            self.prev_comment = (comment_col, target)
        else:
            self.prev_comment = None
        self.emit("".join(parts), first.kind == "op" and first.value == "}")
        self.last_opens = toks[-1].kind == "op" and toks[-1].value == "{"
        self.backslash = cont

    def track(self, tok: _Tok) -> None:
        if tok.kind != "op":
            return
        if tok.value == "{":
            self.depth += 1
        elif tok.value == "}":
            self.depth = max(0, self.depth - 1)
        elif tok.value in _OPENERS:
            self.brackets += 1
        elif tok.value in _CLOSERS:
            self.brackets = max(0, self.brackets - 1)

    def run(self) -> str:
        for line, pieces in zip(self.lines, _segments(self.lines)):
            if line.blank:
                self.blank_pending = True
                self.backslash = False
                self.prev_comment = None
                continue
            if not line.toks:
                if line.comment is None:  # a line holding only `\`: it joins nothing to nothing
                    continue
                self.comment_line(line)
                self.backslash = False
                continue
            for i, (start, end) in enumerate(pieces):
                last = i == len(pieces) - 1
                self.code(line.toks[start:end], line.comment if last else None, line.comment_col,
                          line.cont and last)
        return "\n".join(self.out) + "\n" if self.out else ""


def format_source(text: str, file: str = "<string>") -> str:
    """The canonical form of one spec's text. Raises ArchError (located) for a syntax error. Pure: no
    file is read, nothing is cached beyond the parser's own cache."""
    parse(text, file)  # a syntax error is reported by the parser, with its place
    source = text.replace("\r\n", "\n")
    lines = _lex(source)
    result = _Layout(lines).run()
    if _significant(_lex(result)) != _significant(lines):  # pragma: no cover - a bug in this module
        raise ArchError(f"{file}: the formatter would change the meaning of this file (a bug in archdsl fmt); "
                        "the file is left as it is")
    return result


# The command ------------------------------------------------------------------------------------

def _expand(paths: list[str]) -> list[str]:
    """The files to format: each argument as given (`-` is stdin), a directory replaced by the *.arch
    files under it (hidden files and directories skipped), each file once."""
    files: list[str] = []
    seen: set[str] = set()
    for path in paths:
        found = [path]
        if path != "-" and os.path.isdir(path):
            found = []
            for root, dirs, names in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                found.extend(os.path.normpath(os.path.join(root, n)) for n in names if n.endswith(".arch") and not n.startswith("."))
            found.sort()
        for f in found:
            key = f if f == "-" else os.path.realpath(f)
            if key not in seen:
                seen.add(key)
                files.append(f)
    return files


def _read(path: str) -> str:
    if path == "-":
        return sys.stdin.read()
    try:
        with open(path, encoding="utf-8", newline="") as f:
            return f.read()
    except UnicodeDecodeError:
        raise ArchError(f"cannot read '{path}': not UTF-8 text") from None
    except OSError as e:
        raise ArchError(f"cannot read '{path}': {e.strerror or e}") from None


def _diff(path: str, before: str, after: str) -> str:
    def lines(text: str) -> list[str]:
        parts = text.split("\n")
        result = [p + "\n" for p in parts[:-1]]
        if parts[-1]:
            result.append(parts[-1])
        return result

    name = "<stdin>" if path == "-" else path
    out = []
    for line in difflib.unified_diff(lines(before), lines(after), f"{name} (original)", f"{name} (formatted)"):
        out.append(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n")
    return "".join(out)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def run(paths: list[str], *, check: bool, diff: bool, out: Callable[[str], None],
        err: Callable[[str], None]) -> int:
    """`archdsl fmt`: format each file in place (replaced whole, and only when it changes), `-` from
    stdin to stdout. With check or diff nothing is written: check lists the files that would change,
    diff prints their unified diffs; either way the status is 1 if any would. A file that cannot be
    read or has a syntax error is reported and the others are still formatted; the status is then 1.
    A summary line goes to stderr when files (not only stdin) were given."""
    from ..util.files import write_atomically

    files = _expand(paths)
    changed = unchanged = failed = 0
    for path in files:
        name = "<stdin>" if path == "-" else path
        text = None
        try:
            text = _read(path)
            result = format_source(text, name)
        except ArchError as e:
            err(e.format({name: text} if text is not None else None))
            failed += 1
            continue
        if path == "-":
            if diff:
                if result != text:
                    out(_diff(path, text, result))
            elif not check:
                out(result)
            if result != text:
                changed += 1
                if check and not diff:
                    out("would reformat: -")
            continue
        if result == text:
            unchanged += 1
            continue
        changed += 1
        if diff:
            out(_diff(path, text, result))
        elif check:
            out(f"would reformat: {path}")
        else:
            try:
                write_atomically(path, result)
            except OSError as e:
                err(ArchError(f"cannot write '{path}': {e.strerror or e}").format())
                changed -= 1
                failed += 1
    real = [f for f in files if f != "-"]
    if real:
        if check or diff:
            words = [f"{_plural(changed, 'file')} would be reformatted",
                     f"{_plural(unchanged, 'file')} already formatted"]
        else:
            words = [f"{_plural(changed, 'file')} reformatted", f"{_plural(unchanged, 'file')} left unchanged"]
        if failed:
            words.append(f"{_plural(failed, 'file')} could not be formatted")
        err(", ".join(words))
    if failed or ((check or diff) and changed):
        return 1
    return 0
