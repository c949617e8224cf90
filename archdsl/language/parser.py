"""Parse: source text to the syntax tree (archdsl/language/syntax.py), with a located error for bad input.

The parser is Lark's LALR(1) parser for grammar/archdsl.lark. The command line also keeps each
file's syntax tree on disk (disk_cache): a spec compiled again unchanged is read back instead of
parsed, and Lark, a third of a compile's start-up, is then not even imported.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import os
import pickle
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from .. import __version__
from . import errors, limits
from . import syntax as S
from .errors import ArchError, Span, end_position
from .limits import MAX_INT, MAX_NESTING, located

if TYPE_CHECKING:
    from lark import Lark, Token

_OPENERS = {"(": ")", "[": "]"}


def grammar_text() -> str:
    """The grammar ships inside the wheel as archdsl/language/grammar; a source checkout keeps it in grammar/.
    (Read as a plain file next to this module: importlib.resources would cost more start-up time than
    the rest of the parser.)"""
    here = Path(__file__).resolve().parent
    packaged = here / "grammar" / "archdsl.lark"
    path = packaged if packaged.is_file() else here.parent.parent / "grammar" / "archdsl.lark"
    return path.read_text(encoding="utf-8")


class _Newlines:
    """Post-lexer: newlines end statements, except inside brackets, after `{` and before `}`."""

    always_accept = ("_NL",)

    def process(self, stream):
        depth = 0
        pending: Token | None = None
        previous: str | None = None  # value of the last token passed on, "_NL" for a newline
        for tok in stream:
            if tok.type == "_NL":
                if depth == 0 and previous not in (None, "{", "_NL"):
                    pending = tok
                continue
            if tok.value in _OPENERS:
                depth += 1
            elif tok.value in (")", "]"):
                depth = max(0, depth - 1)
            if pending is not None:
                if tok.value != "}":
                    yield pending
                pending = None
            previous = tok.value
            yield tok
        # a newline at the very end is dropped


@functools.cache
def _lark() -> Lark:
    from lark import Lark

    return Lark(grammar_text(), parser="lalr", lexer="basic", postlex=_Newlines(), propagate_positions=True,
                maybe_placeholders=True, cache=True)


_FRIENDLY = {
    "NAME": "a name", "NUMBER": "a number", "STRING": "a string", "_NL": "end of line",
    "LPAR": "'('", "RPAR": "')'", "LBRACE": "'{'", "RBRACE": "'}'", "LSQB": "'['", "RSQB": "']'",
    "COMMA": "','", "COLON": "':'", "EQUAL": "'='", "STAR": "'*'", "DOT": "'.'", "QMARK": "'?'",
    "ADD_OP": "'+' or '-'", "MUL_OP": "an operator", "COMP_OP": "a comparison", "$END": "end of file",
}


def _describe(token: Token) -> str:
    if token.type == "$END":
        return "end of file"
    if token.type == "_NL":
        return "end of line"
    return repr(str(token.value))


def _expected(names: set[str]) -> str:
    words = sorted({_FRIENDLY.get(n, f"'{n.lower()}'" if n.isupper() else n) for n in names
                    if not n.startswith("__")})
    if not words:
        return ""
    if len(words) > 6:
        words = words[:6] + ["..."]
    return "; expected " + ", ".join(words)


def parse(text: str, file: str) -> S.Module:
    """Parse one spec file into its syntax tree; raises ArchError on a syntax error. The same text
    of the same file is parsed once per process (the tree is never changed after parsing), so the
    library files that many specs import cost one parse; under disk_cache(), once per machine."""
    return _parse(text, file)


# The on-disk cache of syntax trees -----------------------------------------------------------------

_cache_dir: str | None = None
MAX_CACHED_TEXT = 1 << 20  # characters: a larger file is parsed every time (its tree would be tens of MB)
MAX_CACHE_ENTRIES = 512  # files; past that, storing a tree removes the least recently written ones


def cache_directory() -> str | None:
    """Where the command line keeps syntax trees: $ARCHDSL_CACHE_DIR (set but empty: nowhere), else
    $XDG_CACHE_HOME/archdsl, else ~/.cache/archdsl."""
    directory = os.environ.get("ARCHDSL_CACHE_DIR")
    if directory is None:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        directory = os.path.join(base, "archdsl")
    return directory or None


@contextlib.contextmanager
def disk_cache(directory: str | None) -> Iterator[None]:
    """Keep syntax trees on disk in `directory` for the duration (None: not at all), one file per
    spec path, replaced when its text changes. An entry is used only for the same text of the same
    file parsed by the same archdsl (its version, grammar, parser, syntax tree classes and Lark), and
    only from a directory that belongs to this user and that nobody else can write (an entry is a
    pickle); a cache that cannot be read or written is passed over without a word."""
    global _cache_dir
    saved = _cache_dir
    _cache_dir = directory
    try:
        yield
    finally:
        _cache_dir = saved


@functools.cache
def _fingerprint() -> bytes:
    """What a cached tree depends on besides its text: this archdsl's version, grammar, parser,
    syntax and span classes and limits (their source), and Lark's version (its __init__.py, found without
    importing it)."""
    digest = hashlib.sha256(__version__.encode())
    digest.update(grammar_text().encode())
    lark = importlib.util.find_spec("lark")
    for module in (__file__, S.__file__, errors.__file__, limits.__file__,
                   lark.origin if lark is not None else None):
        if module:
            with open(module, "rb") as f:
                digest.update(f.read())
    return digest.digest()


def _private(st: os.stat_result) -> bool:
    """Owned by this user, and writable by nobody else (where files have owners)."""
    if not hasattr(os, "getuid"):
        return True
    return st.st_uid == os.getuid() and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def _entry(text: str, file: str) -> tuple[str, bytes]:
    """The cache file for a spec path, and the key its content must carry."""
    name = hashlib.sha256(os.path.abspath(file).encode() + b"\0" + file.encode()).hexdigest()[:32]
    key = hashlib.sha256(_fingerprint() + file.encode() + b"\0" + text.encode()).digest()
    return os.path.join(_cache_dir, f"{name}.tree"), key  # type: ignore[arg-type]


def _cached(text: str, file: str) -> S.Module | None:
    try:
        if not _private(os.stat(_cache_dir)):  # type: ignore[arg-type]
            return None
        path, key = _entry(text, file)
        with open(path, "rb") as f:
            if not _private(os.fstat(f.fileno())) or f.read(len(key)) != key:
                return None
            module = pickle.load(f)
        return module if isinstance(module, S.Module) else None
    except Exception:  # noqa: BLE001 - a missing, stale or broken entry is a miss
        return None


def _store(text: str, file: str, module: S.Module) -> None:
    try:
        os.makedirs(_cache_dir, mode=0o700, exist_ok=True)  # type: ignore[arg-type]
        if not _private(os.stat(_cache_dir)):  # type: ignore[arg-type]
            return
        path, key = _entry(text, file)
        fd, tmp = tempfile.mkstemp(prefix=".tree-", dir=_cache_dir)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(key)
                pickle.dump(module, f, protocol=pickle.HIGHEST_PROTOCOL)
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
        _prune(_cache_dir)  # type: ignore[arg-type]
    except Exception:  # noqa: BLE001, S110 - no cache, no harm: the next compile parses again
        pass


def _prune(directory: str) -> None:
    """Keep the cache to MAX_CACHE_ENTRIES files (one per spec path ever compiled otherwise), and
    remove temporary files an interrupted store left behind (over an hour old)."""
    with os.scandir(directory) as it:
        files = list(it)
    entries = [e for e in files if e.name.endswith(".tree")]
    for e in files:
        with contextlib.suppress(OSError):
            if e.name.startswith(".tree-") and e.stat().st_mtime < time.time() - 3600:
                os.unlink(e.path)
    if len(entries) <= MAX_CACHE_ENTRIES:
        return
    entries.sort(key=lambda e: e.stat().st_mtime)
    for e in entries[:len(entries) - MAX_CACHE_ENTRIES]:
        with contextlib.suppress(OSError):
            os.unlink(e.path)


@functools.lru_cache(maxsize=256)
def _parse(text: str, file: str) -> S.Module:
    use_cache = _cache_dir is not None and len(text) <= MAX_CACHED_TEXT
    if use_cache:
        module = _cached(text, file)
        if module is not None:
            return module
    module = _parse_text(text, file)
    if use_cache:
        _store(text, file, module)
    return module


def _parse_text(text: str, file: str) -> S.Module:
    from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

    try:
        tree = _lark().parse(text)
    except UnexpectedCharacters as e:
        span = Span(file, e.line, e.column, e.line, e.column + 1)
        char = text[e.pos_in_stream] if e.pos_in_stream < len(text) else "?"
        raise ArchError(f"syntax error: unexpected character {char!r}", span) from None
    except UnexpectedToken as e:
        tok = e.token
        if tok.type == "$END":
            line, column = end_position(text)
            span = Span(file, line, column, line, column + 1)
        else:
            end_col = tok.end_column if tok.end_line == tok.line and tok.end_column else tok.column + 1
            span = Span(file, tok.line, tok.column, tok.line, end_col)
        unclosed = _unclosed(text, file, tok, span)
        if unclosed is not None:
            message, notes = unclosed
            raise ArchError(f"syntax error: unexpected {_describe(tok)}; {message}", span, notes=notes) from None
        hint = ""
        if tok.type in ("RBRACE", "$END", "_NL") and "RPAR" in e.expected:
            hint = "; is a ')' missing?"
        elif tok.type in ("RBRACE", "$END", "_NL") and "RSQB" in e.expected:
            hint = "; is a ']' missing?"
        elif tok.type == "$END" and "RBRACE" in e.expected:
            hint = "; is a '}' missing?"
        raise ArchError(f"syntax error: unexpected {_describe(tok)}{_expected(set(e.expected))}{hint}",
                        span) from None
    except UnexpectedEOF as e:  # pragma: no cover - LALR reports $END as UnexpectedToken
        line, column = end_position(text)
        raise ArchError(f"syntax error: unexpected end of file{_expected(set(e.expected))}",
                        Span(file, line, column, line, column + 1)) from None
    except UnexpectedInput as e:  # pragma: no cover - any other lark error still gets a place
        raise ArchError("syntax error", Span(file, e.line, e.column, e.line, e.column + 1)) from None
    return _ToSyntax(file).transform(tree)


_CLOSERS = {"(": ")", "[": "]", "{": "}"}
_TOP_KEYWORDS = ("block", "network", "import")
_BODY_KEYWORDS = ("residual", "shortcut", "concat", "branch", "scale", "if", "else", "for")


def _unclosed(text: str, file: str, tok: Token, span: Span) -> tuple[str, list[str]] | None:
    """For a syntax error at `tok`: if a bracket opened before it is still open and the error is where
    its closing bracket went missing (a definition or the end of the file after an open `{`; a later
    line, or another closing bracket, after an open `(` or `[`), what to say about it: the message
    after "unexpected ...;" and notes. A closing bracket with none open is said to be one too many."""
    from lark.exceptions import LarkError

    tokens: list[Token] = []
    stack: list[int] = []  # indices into tokens of the brackets still open
    pairs: list[tuple[int, int]] = []  # (opener, closer) indices of the brackets closed
    end = len(text) if tok.type == "$END" else tok.start_pos
    try:
        for t in _lark().lex(text):
            if t.start_pos >= end:
                break
            tokens.append(t)
            if t.value in _CLOSERS and t.type != "STRING":
                stack.append(len(tokens) - 1)
            elif t.value in (")", "]", "}") and stack and _CLOSERS[tokens[stack[-1]].value] == t.value:
                pairs.append((stack.pop(), len(tokens) - 1))
    except LarkError:  # a bad character further on: the brackets before it are what counts
        pass
    value = "" if tok.type == "$END" else str(tok.value)
    if value in (")", "]", "}") and (not stack or (tokens[stack[-1]].value == "{" and value != "}")):
        opener = {")": "(", "]": "[", "}": "{"}[value]
        return f"there is no '{opener}' open here for this '{value}' to close: is it one too many?", []
    if not stack:
        return None
    top = tokens[stack[-1]]
    where = Span(file, top.line, top.column, top.line, top.column + 1)
    what = _opened_by(tokens, stack[-1])
    closer = _CLOSERS[top.value]
    if top.value == "{":
        if tok.type != "$END" and value not in _TOP_KEYWORDS:
            return None
        notes = [f"the '{{' of {what} is at {where}"]
        outer = [i for i in stack[:-1] if tokens[i].value == "{"]
        if outer:
            notes.append("still open around it: " + ", ".join(
                f"{_opened_by(tokens, i)} at {tokens[i].line}:{tokens[i].column}" for i in reversed(outer)))
        stray = _misplaced_closer(tokens, pairs, stack[-1])
        if stray is not None:
            notes.append(stray)
        return f"missing '}}' to close {what} opened at {where}", notes
    if tok.type == "$END" or tok.line > top.line or value in (")", "]", "}"):
        return (f"missing '{closer}' to close {what} opened at {where}",
                [f"newlines inside {top.value}...{closer} are ignored, so the next line was read as more of it"]
                if tok.type != "$END" and tok.line > top.line else [])
    return None


def _opened_by(tokens: list[Token], i: int) -> str:
    """What the bracket tokens[i] opens, in words: `block Foo`, `network Net`, `residual`, `dense(`..."""
    t = tokens[i]
    if t.value != "{":
        before = tokens[i - 1] if i > 0 else None
        if t.value == "(" and before is not None and before.type == "NAME":
            return f"{before.value}(...)"
        return f"'{t.value}'"
    j = i - 1
    if j >= 0 and tokens[j].value == ")":  # block NAME(...) { / network NAME(...) {
        depth = 0
        while j >= 0:
            depth += {")": 1, "(": -1}.get(tokens[j].value, 0)
            if depth == 0:
                break
            j -= 1
        j -= 1
    if j >= 1 and tokens[j].type == "NAME" and tokens[j - 1].value in ("block", "network"):
        return f"{tokens[j - 1].value} {tokens[j].value}"
    k = i - 1
    while k >= 0 and tokens[k].line == t.line and tokens[k].value not in ("{", "}"):
        if tokens[k].value in _BODY_KEYWORDS and tokens[k].type != "NAME":
            return tokens[k].value
        k -= 1
    return "a group"


def _misplaced_closer(tokens: list[Token], pairs: list[tuple[int, int]], outer: int) -> str | None:
    """Inside the open `{` at tokens[outer]: a `}` indented like the line of that outer `{` but closing an
    inner one whose line is indented otherwise, a hint that the inner one is what lacks its `}`."""
    def indent(t: Token) -> int:
        return t.column - 1 if t is not None else 0

    first_on_line: dict[int, Token] = {}
    for t in tokens:
        first_on_line.setdefault(t.line, t)
    outer_indent = indent(first_on_line[tokens[outer].line])
    for o, c in pairs:
        if o < outer:
            continue
        opener, closer = tokens[o], tokens[c]
        if closer.line == opener.line or first_on_line[closer.line] is not closer:
            continue
        if indent(closer) == outer_indent and indent(first_on_line[opener.line]) != outer_indent:
            return (f"the '}}' at {closer.line}:{closer.column} is indented like that line but closes "
                    f"{_opened_by(tokens, o)} (opened at {opener.line}:{opener.column}): is that one missing its '}}'?")
    return None


def _unquote(token: Token) -> str:
    return str(token)[1:-1]


class _ToSyntax:
    """Turns Lark's parse tree into syntax.py nodes, each with its span. Each rule's method takes
    the node's meta (its place) and its children, already turned, as arguments."""

    def __init__(self, file: str) -> None:
        self.file = file

    def transform(self, tree):
        """The syntax node of a parse tree: children first, iteratively (no recursion limit);
        tokens and placeholders (None) are passed on as they are."""
        from lark import Tree

        results: list = []
        todo: list = [(tree, False, 1)]
        while todo:
            node, children_done, depth = todo.pop()
            if not isinstance(node, Tree):
                results.append(node)
            elif not children_done:
                if depth > MAX_NESTING:
                    self._too_deep(node, todo)
                todo.append((node, True, depth))
                todo.extend((child, False, depth + 1) for child in reversed(node.children))
            else:
                n = len(node.children)
                args = results[len(results) - n:]
                del results[len(results) - n:]
                results.append(getattr(self, node.data)(node.meta, *args))
        return results[0]

    def _too_deep(self, node, todo: list) -> None:
        """The error for a syntax tree deeper than limits.MAX_NESTING, at the innermost node that has a
        place (or the nearest enclosing one)."""
        from lark import Tree

        places = [node] + [n for n, done, _ in reversed(todo) if done and isinstance(n, Tree)]
        meta = next((n.meta for n in places if not n.meta.empty), None)
        span = self._span(meta) if meta is not None else Span(self.file, 1, 1, 1, 2)
        raise ArchError(f"this nests too deeply: more than {MAX_NESTING:,} levels of groups, composites and "
                        "operators inside one another", span)

    def _span(self, meta) -> Span:
        return Span(self.file, meta.line, meta.column, meta.end_line, meta.end_column)

    def _tok(self, tok: Token) -> Span:
        return Span(self.file, tok.line, tok.column, tok.end_line, tok.end_column)

    # definitions
    def start(self, meta, *items):
        module = S.Module(self.file, [], [], [])
        for item in items:
            if isinstance(item, S.Import):
                module.imports.append(item)
            elif isinstance(item, S.BlockDef):
                module.blocks.append(item)
            elif isinstance(item, S.NetworkDef):
                module.networks.append(item)
        return module

    def import_stmt(self, meta, path):
        return S.Import(_unquote(path), self._span(meta))

    def block_def(self, meta, name, *rest):
        *params, body = rest
        return S.BlockDef(str(name), [p for p in params if p is not None], body, self._span(meta),
                          self._tok(name))

    def network_def(self, meta, name, *rest):
        *params, body = rest
        return S.NetworkDef(str(name), [p for p in params if p is not None], body, self._span(meta),
                            self._tok(name))

    def param(self, meta, name, default):
        return S.Param(str(name), default, self._span(meta))

    def tensor_param(self, meta, name):
        return S.Param(str(name), None, self._span(meta), tensor=True)

    def body(self, meta, *stmts):
        return S.Body([s for s in stmts if s is not None], self._span(meta))

    # statements
    def let_stmt(self, meta, name, value):
        return S.Let(self._span(meta), str(name), value)

    def assert_stmt(self, meta, cond, message):
        return S.Assert(self._span(meta), cond, _unquote(message) if message is not None else None)

    def input_stmt(self, meta, *dims):
        return S.Input(self._span(meta), list(dims))

    def dim(self, meta, value):
        if isinstance(value, str):  # the `?` token
            return S.Unknown(self._tok(value))
        return value

    def freeze_stmt(self, meta, *rest):
        *paths, cond = rest
        return S.Freeze(self._span(meta), list(paths), False, cond)

    def unfreeze_stmt(self, meta, *rest):
        *paths, cond = rest
        return S.Freeze(self._span(meta), list(paths), True, cond)

    def label_path(self, meta, *names):
        return ".".join(str(n) for n in names), self._span(meta)

    def output_stmt(self, meta, name, chain):
        return S.Output(self._span(meta), str(name), chain.items if chain is not None else None)

    def aux_output_stmt(self, meta, name, chain):
        return S.Output(self._span(meta), str(name), chain.items, auxiliary=True)

    def chain(self, meta, *items):
        return S.Chain(self._span(meta), list(items))

    def bind_stmt(self, meta, name, chain):
        return S.Bind(self._span(meta), str(name), self._tok(name), chain.items)

    def split_stmt(self, meta, *rest):
        *names, chain = rest
        return S.Split(self._span(meta), [str(n) for n in names], [self._tok(n) for n in names], chain.items)

    # items
    def repeat(self, meta, item, count):
        return S.Repeat(self._span(meta), item, count)

    def labelled(self, meta, name, item):
        item.label = str(name)
        item.label_span = self._tok(name)
        return item

    def call(self, meta, name, args):
        return S.Call(self._span(meta), str(name), args or [], self._tok(name))

    def base_call(self, meta, name, args, *labels):
        return S.Call(self._span(meta), str(name), args or [], self._tok(name),
                      through=[(str(n), self._tok(n)) for n in labels])

    def arglist(self, meta, *args):
        return [a for a in args if a is not None]

    def posarg(self, meta, value):
        return S.Arg(None, value, self._span(meta))

    def kwarg(self, meta, name, value):
        return S.Arg(str(name), value, self._span(meta))

    def group(self, meta, body):
        return S.Group(self._span(meta), body)

    def concat(self, meta, *branches):
        return S.Concat(self._span(meta), list(branches))

    def branch(self, meta, body):
        return body

    def concat_call(self, meta, args):
        return S.ConcatCall(self._span(meta), args or [])

    def in_ref(self, meta):
        return S.InRef(self._span(meta))

    def residual(self, meta, args, when, body, shortcut):
        sc_body = sc_if = sc_span = None
        if shortcut is not None:
            sc_if, sc_body, sc_span = shortcut
        return S.Residual(self._span(meta), args or [], body, sc_body, sc_if, sc_span, when)

    def shortcut(self, meta, cond, body):
        return (cond, body, self._span(meta))

    def scale(self, meta, body):
        return S.Scale(self._span(meta), body)

    def if_item(self, meta, cond, then, otherwise):
        return S.If(self._span(meta), cond, then, otherwise)

    def for_item(self, meta, name, count, body):
        return S.Repeat(self._span(meta), S.Group(body.span, body), count, index=str(name))

    def else_body(self, meta, body):
        return body

    def else_if(self, meta, item):
        return S.Body([S.Chain(item.span, [item])], item.span)

    # expressions
    def ternary(self, meta, then, cond, otherwise):
        return S.Ternary(self._span(meta), cond, then, otherwise)

    def or_(self, meta, a, b):
        return S.BinOp(self._span(meta), "or", a, b)

    def and_(self, meta, a, b):
        return S.BinOp(self._span(meta), "and", a, b)

    def not_(self, meta, a):
        return S.UnaryOp(self._span(meta), "not", a)

    def compare(self, meta, a, op, b):
        return S.BinOp(self._span(meta), str(op), a, b)

    def binop(self, meta, a, op, b):
        return S.BinOp(self._span(meta), str(op), a, b)

    def mulop(self, meta, a, b):
        return S.BinOp(self._span(meta), "*", a, b)

    def neg(self, meta, op, a):
        return S.UnaryOp(self._span(meta), str(op), a)

    def power(self, meta, a, b):
        return S.BinOp(self._span(meta), "**", a, b)

    def number(self, meta, tok):
        text = str(tok)
        span = self._span(meta)
        if any(c in text for c in ".eE"):
            value: int | float = float(text)
        elif len(text.lstrip("0")) > len(str(MAX_INT)):  # out of range, and maybe too long for int()
            raise ArchError(f"this integer is too large ({len(text.lstrip('0')):,} digits); integers are "
                            f"limited to {MAX_INT:,} (2**63 - 1) in magnitude", span)
        else:
            value = int(text)
        return S.Num(span, located(value, span, what="this number"))

    def true(self, meta):
        return S.Bool(self._span(meta), True)

    def false(self, meta):
        return S.Bool(self._span(meta), False)

    def name(self, meta, tok):
        return S.Name(self._span(meta), str(tok))

    def funcall(self, meta, name, *args):
        return S.FunCall(self._span(meta), str(name), [a for a in args if a is not None])

    def in_attr(self, meta, attr):
        return S.InAttr(self._span(meta), str(attr))

    def in_tensor(self, meta):
        return S.InTensor(self._span(meta))

    def tensor_attr(self, meta, name, attr):
        return S.TensorAttr(self._span(meta), str(name), str(attr))

    def list(self, meta, *items):
        return S.ListExpr(self._span(meta), [i for i in items if i is not None])
