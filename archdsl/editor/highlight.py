"""A Pygments lexer for `.arch` specs, so that documentation (Sphinx, MkDocs, anything that uses
Pygments) highlights ```arch blocks once archdsl is installed.

Pygments finds it through the entry point `archdsl = "archdsl.editor.highlight:ArchLexer"` (group
`pygments.lexers`). Pygments is not a dependency of archdsl: only Pygments loads this module, and
nothing else in archdsl imports it.

The word lists come from the compiler: layer names (with their aliases), functions and symbols from
the layer catalog (archdsl/core/layers.py, which imports no framework), the reserved words from the
grammar (grammar/archdsl.lark: every quoted word in it is a keyword of the lexer). The editors'
TextMate grammar (editors/vscode/syntaxes/archdsl.tmLanguage.json) spells the same lists out, and
tests/test_highlight.py checks that they agree.
"""

from __future__ import annotations

import re
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
from ..language.parser import grammar_text

__all__ = ["FUNCTION_NAMES", "LAYER_NAMES", "RESERVED", "SYMBOL_NAMES", "ArchLexer"]


def grammar_keywords(text: str) -> tuple[str, ...]:
    """The reserved words of a Lark grammar: the quoted literals that look like names (Lark's lexer
    gives such a literal priority over NAME, so none of them can be a name)."""
    text = re.sub(r"//[^\n]*", "", text)  # comments
    return tuple(sorted(set(re.findall(r'"([A-Za-z_][A-Za-z0-9_]*)"', text))))


RESERVED: tuple[str, ...] = grammar_keywords(grammar_text())
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

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_FLOAT = r"(?:\d+\.\d*|\.\d+)(?:[eE][+-]?\d+)?|\d+[eE][+-]?\d+"


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
            (r'\b(import)(\s*)("[^"\n\\]*")', bygroups(Keyword.Namespace, Whitespace, String.Double)),
            # `name: tensor` (a tensor parameter) before `name:` (a label)
            (rf"({_NAME})(\s*)(:)(\s*)(tensor)\b",
             bygroups(Name.Variable, Whitespace, Punctuation, Whitespace, Keyword.Type)),
            (rf"({_NAME})([^\S\n]*)(:)", bygroups(Name.Label, Whitespace, Punctuation)),
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
            (r"[^\S\n]+", Whitespace),
            (r"\n", Whitespace),
            (r"#[^\n]*", Comment.Single),
            (r"\\(?=\r?\n)", Text),  # line continuation
        ],
        "expr": [
            (r'"[^"\n\\]*"', String.Double),
            (r'"[^"\n]*', String.Double),  # unterminated (half-typed) string: still a string
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
            (_FLOAT, Number.Float),
            (r"\d+", Number.Integer),
            (r"\*\*|//|==|!=|<=|>=|[-+*/%<>=?]", Operator),
            (r"[{}\[\],.:]", Punctuation),
            (r"\)", Punctuation),  # an unmatched `)` at the top level (half-typed text)
        ],
    }

