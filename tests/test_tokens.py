"""The token table (archdsl/language/tokens.py): that it is the grammar's, that scan() splits any text
without failing, that the tools built on it agree with it, and that the editors' TextMate grammar
(editors/vscode/syntaxes/archdsl.tmLanguage.json) classifies each of its tokens the way it does."""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from archdsl.core.layers import FUNCTIONS, LAYERS, SYMBOLS
from archdsl.language import tokens as T

from .test_highlight import (
    GRAMMAR_PATH,
    KEYWORD_SCOPES,
    SOURCES,
    TextMate,
    compiler_keywords,
    compiler_lark,
    load_json,
    words_of,
)

# The TextMate scopes that say a token's category. Names carry many scopes (labels, parameters, layers,
# definitions...): what a name must not have is a keyword's scope.
SCOPES = {
    T.KEYWORD: KEYWORD_SCOPES,
    T.OPERATOR: ("keyword.operator",),
    T.PUNCTUATION: ("punctuation.",),
    T.NUMBER: ("constant.numeric",),
    T.STRING: ("string.quoted.double",),
    T.COMMENT: ("comment.line",),
}
WHOLE = (T.NUMBER, T.COMMENT, T.STRING)  # categories whose every character the TextMate grammar must mark


@pytest.fixture(scope="module")
def tm() -> TextMate:
    return TextMate(load_json(GRAMMAR_PATH))


def has(scopes: list[str], prefixes: tuple[str, ...]) -> bool:
    return any(s.startswith(prefixes) for s in scopes)


# The table is the grammar's --------------------------------------------------------------------


def test_keywords_are_the_grammars():
    assert set(T.KEYWORDS) == compiler_keywords()
    for w in T.KEYWORDS:
        assert [(t.kind, t.text) for t in T.scan(w)] == [("KEYWORD", w)]


def test_operators_and_punctuation_are_the_grammars():
    lark = compiler_lark()
    literals = {t.pattern.value for t in lark.terminals if t.pattern.type == "str"}
    marks = set(T.OPERATORS) | set(T.PUNCTUATION_MARKS)
    assert literals - compiler_keywords() <= marks
    assert {"==", "!=", "<=", ">=", "<", ">", "+", "-", "//", "/", "%", "**", "*", "=", "?"} == set(T.OPERATORS)
    assert set("(){}[],.:") == set(T.PUNCTUATION_MARKS)
    for mark in marks:  # each is one token of the compiler's lexer, and of the table
        assert [t.value for t in lark.lex(mark)] == [mark]
        assert [t.text for t in T.scan(mark)] == [mark]


_ESCAPES = {"t": "\t", "f": "\f", "n": "\n", "r": "\r"}


def test_terminal_patterns_are_the_grammars():
    lark = {t.name: t.pattern for t in compiler_lark().terminals}
    for name in ("NAME", "NUMBER", "STRING", "COMMENT", "WS", "LINE_CONT"):
        # Lark reads the escapes `\t`, `\f`, `\n` and `\r` of a pattern as the characters themselves
        ours = re.sub(r"(?<!\\)((?:\\\\)*)\\([tfnr])", lambda m: m.group(1) + _ESCAPES[m.group(2)],
                      T.kind(name).pattern)
        assert ours == lark[name].value, name
    assert {k.category for k in T.KINDS} == set(T.CATEGORIES)


@pytest.mark.parametrize("text", SOURCES)
def test_scan_agrees_with_the_compilers_lexer(text):
    """Every token the compiler's lexer reads, scan() reads alike (place, text and kind)."""
    ignored = {"WS", "_NL", "LINE_CONT"}
    theirs = [t for t in compiler_lark().lex(text, dont_ignore=True) if t.type not in ignored]
    ours = [t for t in T.scan(text) if t.category not in (T.WHITESPACE, T.NEWLINE)]
    assert [(t.start_pos, t.value) for t in theirs] == [(t.offset, t.text) for t in ours]
    for a, b in zip(theirs, ours, strict=True):
        if a.type in ("NAME", "NUMBER", "STRING", "COMMENT"):
            assert b.kind == a.type, (a, b)
        elif a.value in T.KEYWORDS:
            assert b.category == T.KEYWORD, (a, b)
        else:
            assert b.category in (T.OPERATOR, T.PUNCTUATION), (a, b)
    assert not [t for t in T.scan(text) if t.category == T.ERROR]


# scan() ---------------------------------------------------------------------------------------------


def check_scan(text: str) -> list[T.Token]:
    toks = list(T.scan(text))
    assert "".join(t.text for t in toks) == text
    offset = 0
    for t in toks:
        assert t.text and t.offset == offset
        assert t.line == text.count("\n", 0, offset) + 1
        assert t.column == offset - (text.rfind("\n", 0, offset) + 1) + 1
        assert t.category == T.kind(t.kind).category
        offset = t.end
    return toks


@pytest.mark.parametrize("text", SOURCES[:5])
def test_scan_round_trip_on_specs(text):
    check_scan(text)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(alphabet=st.sampled_from('ab_1.e+-*/=<>!?#"\\\n\r\t ({[]}),:;$~é\x00'), max_size=60) | st.text(max_size=40))
def test_scan_never_fails(text):
    toks = check_scan(text)
    for t in toks:
        if t.category == T.ERROR:
            assert len(t.text) == 1


def test_scan_kinds():
    got = [(t.kind, t.text) for t in T.scan('let x = in.c ** 2.5e-1 # note\n"p" "q\\ ;') if t.category != T.WHITESPACE]
    assert got == [("KEYWORD", "let"), ("NAME", "x"), ("OPERATOR", "="), ("KEYWORD", "in"), ("PUNCTUATION", "."),
                   ("NAME", "c"), ("OPERATOR", "**"), ("NUMBER", "2.5e-1"), ("COMMENT", "# note"), ("NEWLINE", "\n"),
                   ("STRING", '"p"'), ("OPEN_STRING", '"q\\ ;')]
    assert [t.kind for t in T.scan("iffy if1 if")] == ["NAME", "WS", "NAME", "WS", "KEYWORD"]
    assert [(t.kind, t.line, t.column) for t in T.scan("a \\\n  b")] == [
        ("NAME", 1, 1), ("WS", 1, 2), ("LINE_CONT", 1, 3), ("WS", 2, 1), ("NAME", 2, 3)]
    assert [t.kind for t in T.scan("@\r")] == ["ERROR", "ERROR"]


# The tools built on the table agree with it --------------------------------------------------------


def test_tools_use_the_tables_words():
    from archdsl.editor import fmt
    from archdsl.editor.lsp import analysis, server

    assert fmt.KEYWORDS == set(T.KEYWORDS)
    assert analysis.KEYWORDS == T.KEYWORDS
    for words in (server._VALUE_WORDS, server._ITEM_KEYWORDS, server._TOP_KEYWORDS, fmt._CALL_KEYWORDS,
                  fmt._OPERAND_KEYWORDS):
        assert set(words) <= set(T.KEYWORDS), words
    pytest.importorskip("pygments")
    from archdsl.editor import highlight

    assert highlight.RESERVED == T.KEYWORDS


# The TextMate grammar against the table ------------------------------------------------------------


def check_textmate(tm: TextMate, text: str) -> None:
    scopes = tm.scopes(text)
    for tok in T.scan(text):
        if tok.category not in SCOPES and tok.category != T.NAME:
            continue
        got = scopes[tok.offset]
        where = f"{tok.kind} {tok.text!r} at {tok.line}:{tok.column} in {text!r}: {got}"
        if tok.category == T.NAME:
            assert not has(got, KEYWORD_SCOPES + ("constant.numeric", "comment", "string")), where
            continue
        assert has(got, SCOPES[tok.category]), where
        if tok.category in WHOLE:
            assert all(has(scopes[k], SCOPES[tok.category]) for k in range(tok.offset, tok.end)), where


@pytest.mark.parametrize("text", SOURCES)
def test_textmate_classifies_specs_as_the_table(tm, text):
    check_textmate(tm, text)


def test_textmate_classifies_every_keyword_and_mark(tm):
    for w in T.KEYWORDS:
        check_textmate(tm, f"x {w} y")
    for op in T.OPERATORS:
        check_textmate(tm, f"a {op} b" if op != "?" else "input [3, ?, 32]")
    check_textmate(tm, "block B(a, b: tensor) {\n    x: f(a.c, [1, 2]) { relu }\n}\n")


_TM_SAFE = st.characters(min_codepoint=0x20, max_codepoint=0x7E)  # TextMate splits lines as Python does not


@settings(max_examples=150, deadline=None)
@given(st.from_regex(T.kind("NUMBER").pattern, fullmatch=True), st.text(_TM_SAFE, max_size=20).filter(
    lambda s: '"' not in s and "\\" not in s), st.text(_TM_SAFE | st.just("\t"), max_size=20))
def test_textmate_classifies_every_number_string_and_comment_form(number, string, comment):
    tm = TextMate(load_json(GRAMMAR_PATH))
    for text in (f"x = {number}", f"conv({number}, 3)", f'import "{string}"', f'assert x, "{string}"',
                 f'import "{string}', f"conv #{comment}", f"#{comment}\n", f"relu  #{comment}"):
        toks = [t for t in T.scan(text) if t.category in SCOPES]
        assert toks and not [t for t in T.scan(text) if t.category == T.ERROR]
        check_textmate(tm, text)


def test_textmate_lists_nothing_the_table_lacks():
    repo = load_json(GRAMMAR_PATH)["repository"]
    keywords = set().union(*(words_of(p["match"]) for p in repo["keywords"]["patterns"]))
    assert keywords == set(T.KEYWORDS)
    assert words_of(repo["layers"]["match"]) == set(LAYERS)
    assert words_of(repo["functions"]["match"]) == set(FUNCTIONS)
    assert words_of(repo["symbols"]["match"]) == set(SYMBOLS)
    # whatever short mark its operator and punctuation rules match is one of the table's
    marks = set(T.OPERATORS) | set(T.PUNCTUATION_MARKS)
    chars = [chr(c) for c in range(0x21, 0x7F) if not chr(c).isalnum() and chr(c) not in '_"#\\']
    candidates = chars + [a + b for a in chars for b in chars]
    for rule in ("operators", "punctuation"):
        for p in repo[rule]["patterns"]:
            matched = {c for c in candidates if re.fullmatch(p["match"], c)}
            assert matched and matched <= marks, (rule, p["match"], matched - marks)
    for mark in marks:  # and every mark of the table is matched by one of them
        assert any(re.fullmatch(p["match"], mark) for rule in ("operators", "punctuation")
                   for p in repo[rule]["patterns"]) or mark in "()", mark
