"""A Pygments lexer for `.arch` specs, so that documentation (Sphinx, MkDocs, anything that uses
Pygments) highlights ```arch blocks once archdsl is installed.

Pygments finds it through the entry point `archdsl = "archdsl.editor.highlight:ArchLexer"` (group
`pygments.lexers`). Pygments is not a dependency of archdsl: only Pygments loads this module, and
nothing else in archdsl imports it.

The tokens come from the language's token table (archdsl/language/tokens.py, read from the grammar):
its patterns for names, numbers, strings, comments and whitespace, its reserved words, operators and
punctuation. The names the lexer tells apart (layers with their aliases, functions, symbols) come from
the layer catalog (archdsl/core/layers.py, which imports no framework), so a new layer is highlighted
without an edit here. The editors' TextMate grammar (editors/vscode/syntaxes/archdsl.tmLanguage.json)
spells the same lists out; tests/test_highlight.py and tests/test_tokens.py check that they agree.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar

from pygments.lexer import RegexLexer, bygroups, include, words
from pygments.token import (
    Comment,
    Keyword,
    Name,
    Number,
    Operator,
    Punctuation,
    String,
    Text,
    Whitespace,
)

from ..core.layers import FUNCTIONS, LAYERS, SYMBOLS
from ..language import tokens
from ..language.tokens import grammar_keywords, pattern

__all__ = ["FUNCTION_NAMES", "LAYER_NAMES", "RESERVED", "SYMBOL_NAMES", "ArchLexer", "grammar_keywords"]

RESERVED: tuple[str, ...] = tokens.KEYWORDS
LAYER_NAMES: tuple[str, ...] = tuple(sorted(LAYERS))
FUNCTION_NAMES: tuple[str, ...] = tuple(sorted(FUNCTIONS))
SYMBOL_NAMES: tuple[str, ...] = tuple(sorted(SYMBOLS))

# How the reserved words are shown. A word the grammar gains later and that is not listed here is
# still a keyword (plain Keyword).
_DECLARATIONS = ("block", "network", "let")
_LOGICAL = ("and", "or", "not")
_CONSTANTS = ("true", "false")
_TYPES = ("tensor",)
_SPECIAL = {"import", "in", *_DECLARATIONS, *_LOGICAL, *_CONSTANTS, *_TYPES}
_KEYWORDS = tuple(w for w in RESERVED if w not in _SPECIAL)

_NAME = pattern("NAME")
_STRING = pattern("STRING")


def _number(lexer: RegexLexer, match) -> Iterator[tuple[int, object, str]]:
    """A NUMBER of the token table: an integer where it is only digits."""
    yield match.start(), Number.Integer if match.group().isdigit() else Number.Float, match.group()


def _continuation(lexer: RegexLexer, match) -> Iterator[tuple[int, object, str]]:
    """A LINE_CONT of the token table: the `\\` (Text), then its line end (Whitespace)."""
    yield match.start(), Text, match.group()[0]
    yield match.start() + 1, Whitespace, match.group()[1:]


class ArchLexer(RegexLexer):
    """Lexer for archdsl `.arch` specs (convolutional network descriptions)."""

    name = "archdsl"
    aliases: ClassVar[list[str]] = ["archdsl", "arch"]
    filenames: ClassVar[list[str]] = ["*.arch"]
    mimetypes: ClassVar[list[str]] = ["text/x-archdsl", "text/x-arch"]

    tokens: ClassVar[dict] = {
        "root": [
            include("space"),
            # definitions
            (rf"\b(block|network)(\s+)({_NAME})", bygroups(Keyword.Declaration, Whitespace, Name.Class)),
            (rf"\b(let)(\s+)({_NAME})", bygroups(Keyword.Declaration, Whitespace, Name.Variable)),
            (rf"\b(output)(\s+)({_NAME})", bygroups(Keyword, Whitespace, Name.Label)),
            (rf"\b(for)(\s+)({_NAME})(\s+)(in)(\s+)(range)\b",
             bygroups(Keyword, Whitespace, Name.Variable, Whitespace, Keyword, Whitespace, Keyword)),
            (rf"\b(import)(\s*)({_STRING})", bygroups(Keyword.Namespace, Whitespace, String.Double)),
            # `name: tensor` (a tensor parameter) before `name:` (a label)
            (rf"({_NAME})(\s*)(:)(\s*)(tensor)\b",
             bygroups(Name.Variable, Whitespace, Punctuation, Whitespace, Keyword.Type)),
            (rf"({_NAME})([^\S\n]*)(:)", bygroups(Name.Label, Whitespace, Punctuation)),
            # `a, b = x split(2)` binds a tensor a name: those before a comma here, the last as below
            (rf"{_NAME}(?=(?:[^\S\n]*,[^\S\n]*{_NAME})+[^\S\n]*=(?!=))", Name.Variable),
            # `name = chain` binds a tensor (`==` is a comparison)
            (rf"({_NAME})([^\S\n]*)(=)(?!=)", bygroups(Name.Variable, Whitespace, Operator)),
            (r"\(", Punctuation, "args"),
            include("expr"),
        ],
        # inside parentheses: `name = value` is a keyword argument or a parameter's default
        "args": [
            include("space"),
            (r"\(", Punctuation, "#push"),
            (r"\)", Punctuation, "#pop"),
            (rf"({_NAME})(\s*)(:)(\s*)(tensor)\b",
             bygroups(Name.Variable, Whitespace, Punctuation, Whitespace, Keyword.Type)),
            (rf"({_NAME})(\s*)(=)(?!=)", bygroups(Name.Attribute, Whitespace, Operator)),
            include("expr"),
        ],
        "space": [
            (pattern("WS"), Whitespace),
            (pattern("NEWLINE"), Whitespace),
            (r"[^\S\n]+", Whitespace),  # a lone carriage return, a vertical tab: not the language's, still space
            (pattern("COMMENT"), Comment.Single),
            (pattern("LINE_CONT"), _continuation),
        ],
        "expr": [
            (_STRING, String.Double),
            (pattern("OPEN_STRING"), String.Double),  # unterminated (half-typed) string: still a string
            (r"\b(in)(\.)(" + _NAME + ")", bygroups(Name.Builtin.Pseudo, Punctuation, Name.Attribute)),
            (rf"\b({_NAME})(\.)({_NAME})", bygroups(Name.Variable, Punctuation, Name.Attribute)),
            (r"\bin\b", Name.Builtin.Pseudo),
            (words(_DECLARATIONS, prefix=r"\b", suffix=r"\b"), Keyword.Declaration),
            (words(("import",), prefix=r"\b", suffix=r"\b"), Keyword.Namespace),
            (words(_CONSTANTS, prefix=r"\b", suffix=r"\b"), Keyword.Constant),
            (words(_TYPES, prefix=r"\b", suffix=r"\b"), Keyword.Type),
            (words(_LOGICAL, prefix=r"\b", suffix=r"\b"), Operator.Word),
            (words(_KEYWORDS, prefix=r"\b", suffix=r"\b"), Keyword),
            (words(LAYER_NAMES, prefix=r"\b", suffix=r"\b"), Name.Builtin),
            # a function only where it is called: `ceil = true` is a pool's argument
            (words(FUNCTION_NAMES, prefix=r"\b", suffix=r"\b(?=\s*\()"), Name.Function),
            (words(SYMBOL_NAMES, prefix=r"\b", suffix=r"\b"), Name.Constant),
            (_NAME, Name),
            (pattern("NUMBER"), _number),
            (pattern("OPERATOR"), Operator),
            (pattern("PUNCTUATION"), Punctuation),  # `)` too: an unmatched one is half-typed text
        ],
    }

