"""The token table: every kind of token of the language once, read from the grammar
(grammar/archdsl.lark), and scan(), which splits any text into such tokens.

The editor tools tokenize with it rather than with regexes of their own: the formatter
(archdsl/editor/fmt.py), the language server's scanners (archdsl/editor/lsp/analysis.py) and the
Pygments lexer (archdsl/editor/highlight.py); tests/test_tokens.py checks the TextMate grammar
(editors/vscode/syntaxes/archdsl.tmLanguage.json) against it.

What comes from the grammar: the keywords (its quoted literals that look like names: Lark's lexer gives
them priority over NAME), the operators and punctuation (its other quoted literals, in its rules and in
terminals made only of literals, such as COMP_OP), and the patterns of NAME, NUMBER, STRING, COMMENT,
WS and LINE_CONT. Only the category of each literal (operator or punctuation) and the kinds that exist
for half-typed text (an unterminated string, an unknown character) are this module's.

Layer, function and symbol names are not keywords: they are names, and the layer catalog
(archdsl/core/layers.py) is the editor's business, not the language's.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass

from .parser import grammar_text

__all__ = [
    "CATEGORIES", "KEYWORDS", "KINDS", "OPERATORS", "PUNCTUATION_MARKS", "Token", "TokenKind", "grammar_keywords",
    "grammar_literals", "kind", "pattern", "scan"]

# Categories of tokens
KEYWORD = "keyword"
OPERATOR = "operator"
PUNCTUATION = "punctuation"
NUMBER = "number"
NAME = "name"
STRING = "string"
COMMENT = "comment"
NEWLINE = "newline"
WHITESPACE = "whitespace"
ERROR = "error"
CATEGORIES = (KEYWORD, OPERATOR, PUNCTUATION, NUMBER, NAME, STRING, COMMENT, NEWLINE, WHITESPACE, ERROR)

_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PUNCTUATION_CHARS = frozenset("(){}[],.:")  # the literals that group or separate; the others operate


def _strip_comments(text: str) -> str:
    """A Lark grammar without its `//` comments (none of its literals or patterns holds `//` outside
    quotes, and a quoted "//" is kept)."""
    return re.sub(r'^((?:[^"/\n]|"[^"\n]*"|/(?!/))*)//[^\n]*', r"\1", text, flags=re.MULTILINE)


def grammar_keywords(text: str) -> tuple[str, ...]:
    """The reserved words of a Lark grammar: the quoted literals that look like names."""
    return tuple(sorted({w for w in _literals(text) if _WORD.fullmatch(w)}))


def grammar_literals(text: str) -> tuple[str, ...]:
    """The quoted literals of a Lark grammar that are not words (operators and punctuation), longest
    first (the order a lexer tries them in)."""
    return tuple(sorted({w for w in _literals(text) if not _WORD.fullmatch(w)}, key=lambda w: (-len(w), w)))


_REGEX_TERMINAL = re.compile(r"^(_?[A-Z][A-Z0-9_]*)\s*:\s*/(.*)/[imslux]*\s*$", re.MULTILINE)


def _literals(text: str) -> set[str]:
    text = _REGEX_TERMINAL.sub("", _strip_comments(text))  # a pattern's quotes are not literals
    return set(re.findall(r'"((?:[^"\\\n]|\\.)+)"', text))


def grammar_patterns(text: str) -> dict[str, str]:
    """The terminals of a Lark grammar defined by one regular expression: {name: pattern}."""
    out = {}
    for name, body in _REGEX_TERMINAL.findall(_strip_comments(text)):
        out[name] = body
    return out


@dataclass(frozen=True, slots=True)
class TokenKind:
    """One kind of token: its name (the grammar's terminal where it has one), its regular expression
    and its category (one of CATEGORIES)."""

    name: str
    pattern: str
    category: str
    doc: str = ""


@dataclass(frozen=True, slots=True)
class Token:
    """One token of a text: its kind's name and category, its text, where it starts (0-based offset,
    1-based line and column, as the parser's spans count)."""

    kind: str
    category: str
    text: str
    offset: int
    line: int
    column: int

    @property
    def end(self) -> int:
        return self.offset + len(self.text)


def _alternation(words: tuple[str, ...]) -> str:
    return "|".join(re.escape(w) for w in sorted(words, key=lambda w: (-len(w), w)))


@functools.cache
def _table() -> tuple[tuple[TokenKind, ...], tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    text = grammar_text()
    patterns = grammar_patterns(text)
    keywords = grammar_keywords(text)
    literals = grammar_literals(text)
    operators = tuple(w for w in literals if w not in _PUNCTUATION_CHARS)
    punctuation = tuple(w for w in literals if w in _PUNCTUATION_CHARS)
    kinds = (
        TokenKind("NEWLINE", r"\r?\n", NEWLINE, "a line end (the grammar's _NL folds runs of them)"),
        TokenKind("WS", patterns["WS"], WHITESPACE, "spaces and tabs"),
        TokenKind("LINE_CONT", patterns["LINE_CONT"], WHITESPACE, "a `\\` that continues the line"),
        TokenKind("COMMENT", patterns["COMMENT"], COMMENT, "`#` to the end of the line"),
        TokenKind("STRING", patterns["STRING"], STRING, "a string (an import's path, an assertion's message)"),
        TokenKind("OPEN_STRING", r'"[^"\n]*"?', STRING,
                  "a string the grammar does not read (unterminated, or holding a `\\`): half-typed text"),
        TokenKind("NUMBER", patterns["NUMBER"], NUMBER, "an integer or a float"),
        TokenKind("KEYWORD", rf"(?:{_alternation(keywords)})(?![A-Za-z0-9_])", KEYWORD, "a reserved word"),
        TokenKind("NAME", patterns["NAME"], NAME, "a name: a layer, block, parameter, label, symbol..."),
        TokenKind("OPERATOR", _alternation(operators), OPERATOR, "an operator, `=` and `?` included"),
        TokenKind("PUNCTUATION", _alternation(punctuation), PUNCTUATION, "brackets, `,`, `.` and `:`"),
        TokenKind("ERROR", r".|\n", ERROR, "a character that is no part of the language"),
    )
    return kinds, keywords, operators, punctuation


KINDS: tuple[TokenKind, ...]
KINDS, KEYWORDS, OPERATORS, PUNCTUATION_MARKS = _table()
_BY_NAME = {k.name: k for k in KINDS}


def kind(name: str) -> TokenKind:
    """The kind of this name (KeyError for no such kind)."""
    return _BY_NAME[name]


def pattern(name: str) -> str:
    """The regular expression of a kind, as a non-capturing group (to build larger regexes from)."""
    return f"(?:{_BY_NAME[name].pattern})"


_SCANNER = re.compile("|".join(f"(?P<{k.name}>{k.pattern})" for k in KINDS), re.DOTALL)


def scan(text: str) -> Iterator[Token]:
    """The tokens of any text, whitespace, newlines and comments included, in order: their texts put
    together give the text back. It never fails: a character that is no part of the language is an
    ERROR token of its own."""
    line, line_start = 1, 0
    pos = 0
    n = len(text)
    while pos < n:
        m = _SCANNER.match(text, pos)
        assert m is not None  # ERROR matches any character
        name = m.lastgroup
        assert name is not None
        value = m.group()
        yield Token(name, _BY_NAME[name].category, value, pos, line, pos - line_start + 1)
        breaks = value.count("\n")
        if breaks:
            line += breaks
            line_start = pos + value.rindex("\n") + 1
        pos = m.end()
