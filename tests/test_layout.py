"""Generated code written as code: statements in suites laid out at their indent when the whole is
written (archdsl/backends/layout.py), channel expressions as trees printed once with just the
parentheses their precedence needs (archdsl/backends/common.py), and no backend writing code with
leading spaces of its own or parenthesizing a string."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from archdsl.backends.common import Leaf, parsed, plus, times
from archdsl.backends.layout import Br, Compound, Suite

BACKENDS = Path(__file__).resolve().parent.parent / "archdsl" / "backends"


def test_a_suite_is_written_at_the_indent_it_is_given():
    suite = Suite()
    suite.assign("x", "1")
    choice = suite.if_("x > 0")
    choice.body.assign("y", Br("f", ["x"]))
    loop = choice.orelse.for_("i", "3")
    loop.body.line("x", "y += ")
    assert suite.lines(4) == ["    x = 1", "    if x > 0:", "        y = f(x)", "    else:",
                              "        for i in range(3):", "            y += x"]
    assert [line[4:] for line in suite.lines(8)] == suite.lines(4)


def test_an_empty_suite_is_pass_and_an_empty_else_is_left_out():
    suite = Suite()
    suite.add(Compound("flag", "if "))
    assert suite.lines(0) == ["if flag:", "    pass"]


def test_a_long_statement_is_laid_out_at_its_suites_indent():
    suite = Suite()
    suite.if_("deep").body.assign("x", Br("layers.Conv2D", [f"argument_{i}" for i in range(8)]))
    lines = suite.lines(4)
    assert lines[1] == "        x = layers.Conv2D("
    assert lines[-1] == "        )"
    assert all(len(line) <= 88 for line in lines)


def test_a_layer_applied_to_a_list_of_tensors_breaks_the_call_of_the_list_first():
    suite = Suite()  # as ruff format lays it out: the last brackets split first where the rest fits
    suite.assign("x", Br("Interpolate2D", ['mode="bilinear"', "align_corners=False", 'name=f"{name}-upsample1"']),
                 "([x, inputs])")
    assert suite.lines(4) == ['    x = Interpolate2D(mode="bilinear", align_corners=False, name=f"{name}-upsample1")(',
                              "        [x, inputs]", "    )"]


def test_unread_assignments_are_dropped_with_what_only_they_read():
    suite = Suite()
    suite.assign("a", "1")
    suite.assign("b", "a + 1")  # read only by c, which nothing reads
    suite.assign("c", "b * 2")
    suite.assign("kept", "3")
    suite.line(Br("f", ["kept", "self.b", "a=4", 'name="a"']), "y = ")  # an attribute, a keyword, a string
    loop = suite.for_("_", "2")
    loop.body.assign("c", "0")
    suite.drop_unused({"a", "b", "c", "kept"})
    assert suite.lines(0) == ["kept = 3", 'y = f(kept, self.b, a=4, name="a")', "for _ in range(2):", "    pass"]


def test_a_read_in_its_own_assignment_or_an_augmented_one_keeps_a_local():
    suite = Suite()
    suite.assign("n", "1")
    suite.assign("n", "n + 1")
    suite.assign("m", "0")
    suite.line("1", "m += ")
    suite.drop_unused({"n", "m"})
    assert len(suite.lines(0)) == 4


@pytest.mark.parametrize(("code", "text"), [
    (plus(Leaf("a"), Leaf("b")), "a + b"),
    (plus(plus(Leaf("a"), Leaf("b")), Leaf("c")), "a + b + c"),  # a sum's terms joined
    (plus(Leaf("a"), Leaf("b - c", 5)), "a + (b - c)"),  # a later difference keeps its parentheses
    (plus(Leaf("f // 2", 6), Leaf("f // 2", 6)), "f // 2 + f // 2"),
    (times(plus(Leaf("a"), Leaf("b")), Leaf("5"), Leaf("5")), "(a + b) * 5 * 5"),
    (times(Leaf("int(w * 2)"), Leaf("4")), "int(w * 2) * 4"),
    (times(Leaf("a"), Leaf("b // c", 6)), "a * (b // c)"),
    (plus(parsed("a if c else b"), Leaf("d")), "(a if c else b) + d"),
    (times(parsed("-x"), Leaf("2")), "-x * 2"),
    (plus(parsed("x or y"), Leaf("1")), "(x or y) + 1"),
    (times(), "1"),
    (plus(), "0"),
])
def test_channel_expressions_print_with_the_parentheses_precedence_needs(code, text):
    assert str(code) == text
    assert ast.dump(ast.parse(str(code), mode="eval")) == ast.dump(ast.parse(text, mode="eval"))


def test_channel_expressions_compare_as_trees():
    assert plus(Leaf("a"), Leaf("b")) == plus(Leaf("a"), Leaf("b"))
    assert plus(Leaf("a"), Leaf("b")) != plus(Leaf("b"), Leaf("a"))
    assert times(Leaf("c")) == Leaf("c")


@pytest.mark.parametrize("path", sorted(p for p in BACKENDS.glob("*.py") if p.name != "layout.py"),
                         ids=lambda p: p.name)
def test_no_backend_writes_leading_spaces_or_parses_code_with_a_regex(path):
    """Indentation is the layout's business: no string a backend writes begins with spaces, no
    `" " * indent`; and no backend module parenthesizes or edits code with a regular expression."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            assert not node.value.startswith("  "), (path.name, node.lineno, node.value)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult):
            assert not (isinstance(node.left, ast.Constant) and node.left.value == " "), (path.name, node.lineno)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "re":
            assert node.attr in ("compile", "escape"), (path.name, node.lineno, node.attr)
