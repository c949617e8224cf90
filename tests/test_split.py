"""The channel split into named tensors, `a, b = x split(2)` and `a, b, c = x split([16, 32, 16])`: its
syntax (parsed with its places, formatted unchanged), each name's shape, its errors, and the generated
PyTorch and Keras models computing the same thing."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from archdsl.api import load
from archdsl.editor.fmt import format_source
from archdsl.language import syntax as S
from archdsl.language.parser import parse

from .test_backends import assert_parity, build
from .test_errors import check_error

# equal parts of the block's input and of a named tensor, sizes given as literals and as a parameter's
# list, and a number of parts from a parameter (checked against the names when expanded)
SPEC = """
block Unit(c) {
    a, b = in split(2)
    b2 = b conv(c, 1) relu
    concat(a, b2) channel_shuffle(2)
}

block Three(n = 3) {
    x, y, z = in split(n)
    concat(z, x, y)
}

network SplitNet(sizes = [2, 6, 4]) {
    input [12, 7, 6]
    t = Unit(6)
    p, q, r = t split([3, 4, 5])
    u = concat(r, p, q) conv(12, 3, pad = 1) relu
    e, f, g = u split(sizes)
    concat(g, e, f)
    Three()
    conv(4, 1)
}
"""


# the Keras layer on each Keras backend (tests/test_keras_backends.py): sizes, and equal parts by a parameter
KERAS = """
block Three(n = 3) {
    x, y, z = in split(n)
    concat(z, x, y)
}

network KerasSplit {
    input [6, 4, 5]
    a, b = in split([2, 4])
    concat(b, a) Three()
}
"""


def test_split_parses_with_the_places_of_its_names():
    module = parse("network N {\n    input [8, 4, 4]\n    a, bb = in split(2)\n    concat(bb, a)\n}\n", "n.arch")
    stmt = module.networks[0].body.stmts[1]
    assert isinstance(stmt, S.Split) and stmt.names == ["a", "bb"]
    assert [(s.line, s.column, s.end_column) for s in stmt.name_spans] == [(3, 5, 6), (3, 8, 10)]
    assert isinstance(stmt.items[0], S.InRef) and isinstance(stmt.items[1], S.Call)
    assert (stmt.span.column, stmt.span.end_column) == (5, 24)


def test_split_is_formatted_and_read_back_unchanged():
    messy = "network N {\n  input [8, 4, 4]\n  a ,b=in   split( [ 3,5 ] )\n  concat(b , a)\n}\n"
    tidy = format_source(messy)
    assert "    a, b = in split([3, 5])\n" in tidy
    assert format_source(tidy) == tidy


def test_split_is_highlighted_as_a_layer_and_its_names_as_names():
    from pygments.token import Name, Operator, Punctuation

    from archdsl.editor.highlight import ArchLexer

    tokens = [(t, v) for t, v in ArchLexer().get_tokens("a,  bc = in split([2, 6])\n") if v.strip()]
    assert tokens[:6] == [(Name.Variable, "a"), (Punctuation, ","), (Name.Variable, "bc"), (Operator, "="),
                          (Name.Builtin.Pseudo, "in"), (Name.Builtin, "split")]
    tokens = [(t, v) for t, v in ArchLexer().get_tokens("concat(a, b)\n") if v.strip()]
    assert (Name, "a") in tokens and (Name, "b") in tokens  # a use, not a binding
    # the editors' TextMate grammar alike
    from .test_highlight import GRAMMAR_PATH, TextMate, load_json

    text = "    a, bc = in split([2, 6])\n    concat(a, bc)\n"
    scopes = TextMate(load_json(GRAMMAR_PATH)).scopes(text)
    assigned = "variable.other.assignment.archdsl"
    assert assigned in scopes[4] and assigned in scopes[7] and assigned not in scopes[text.index("a, bc)")]
    assert "support.function.layer.archdsl" in scopes[text.index("split")]


def test_each_name_gets_its_parts_shape(tmp_path):
    spec = tmp_path / "s.arch"
    spec.write_text(SPEC)
    elab = load(str(spec))
    parts = [(i.path, tuple(i.out_shape.dims)) for i in elab.root.walk() if i.kind == "split"]
    assert parts == [("unit1.split1", (6, 7, 6)), ("unit1.split2", (6, 7, 6)),
                     ("split1", (3, 7, 6)), ("split2", (4, 7, 6)), ("split3", (5, 7, 6)),
                     ("split4", (2, 7, 6)), ("split5", (6, 7, 6)), ("split6", (4, 7, 6)),
                     ("three1.split1", (4, 7, 6)), ("three1.split2", (4, 7, 6)), ("three1.split3", (4, 7, 6))]
    assert all(i.params == i.macs == 0 for i in elab.root.walk() if i.kind == "split")


def test_summary_and_graph_show_each_part(tmp_path):
    from archdsl.reports.draw import build as draw
    from archdsl.reports.summary import rows

    spec = tmp_path / "s.arch"
    spec.write_text(SPEC)
    elab = load(str(spec))
    table = {r.path: r for r in rows(elab)}
    assert str(table["split2"].out_shape) == "[4, 7, 6]" and table["split2"].layer == "split"
    assert str(table["split2"].in_shape) == "[12, 7, 6]" and table["split2"].params == 0
    drawing = draw(elab)
    edges = {(e.tail, e.head): e.label for e in drawing.edges}
    labels = {n.id: n.label for n in drawing.nodes()}
    assert labels["split2"] == "split 2 of 3, 4 channels" and labels["unit1_split2"] == "split 2 of 2"
    # each part from the split tensor, each part into the concat that joins them again
    assert [edges[("unit1_channel_shuffle1", f"split{i}")] for i in (1, 2, 3)] == ["12x7x6"] * 3
    assert [edges[(f"split{i}", "concat1")] for i in (1, 2, 3)] == ["3x7x6", "4x7x6", "5x7x6"]
    assert edges[("unit1_split2", "unit1_conv1")] == "6x7x6"


def test_split_computes_the_same_in_both_frameworks(tmp_path):
    elab, tm, km, paths = build(tmp_path, SPEC)
    assert elab.root.out_shape.dims == (4, 7, 6)
    assert_parity(elab, tm, km, tol=1e-5)
    torch_code, keras_code = paths["torch"].read_text(), paths["keras"].read_text()
    assert "self.split2 = ChannelSlice(in_channels // 2, in_channels // 2)" in torch_code
    assert "self.split3 = ChannelSlice(2 * (in_channels // n), in_channels // n)" in torch_code
    assert "self.split3 = ChannelSlice(7, 5)" in torch_code
    assert "self.split6 = ChannelSlice(sizes[0] + sizes[1], sizes[2])" in torch_code  # a parameter's sizes
    assert "self.three1 = Three(sizes[2] + sizes[0] + sizes[1])" in torch_code
    # ... which the models take when built with other sizes
    from archdsl.runtime.interop import torch_to_keras

    from .frameworks import keras_outputs, sample_input, torch_outputs

    torch_model, keras_model = tm.build_model(sizes=(6, 3, 3)), km.build_model(sizes=(6, 3, 3))
    torch_to_keras(torch_model, keras_model)
    x = sample_input(tm.INPUT_SHAPE)
    [expected], [got] = torch_outputs(torch_model, x), keras_outputs(keras_model, x)
    assert float(np.abs(expected - got).max()) <= 1e-5
    assert "a = self.split1(inputs)\n        b = self.split2(inputs)" in torch_code
    assert 'b = ChannelSplit(2, 1, name=f"{name}-split2")(inputs)' in keras_code
    assert 'q = ChannelSplit((3, 4, 5), 1, name="split2")(t_)' in keras_code
    # what each part holds: channels in order, the first part first
    x = torch.arange(2 * 12 * 2 * 2, dtype=torch.float32).view(2, 12, 2, 2)
    slices = [tm.ChannelSlice(0, 3), tm.ChannelSlice(3, 4), tm.ChannelSlice(7, 5)]
    assert torch.equal(torch.cat([s(x) for s in slices], dim=1), x)


def test_keras_channel_split_takes_the_parts_in_order():
    from archdsl.runtime.keras_layers import ChannelSplit

    x = np.arange(2 * 3 * 2 * 12, dtype="float32").reshape(2, 3, 2, 12)
    equal = [np.asarray(ChannelSplit(3, i)(x)) for i in range(3)]
    sized = [np.asarray(ChannelSplit([5, 1, 6], i)(x)) for i in range(3)]
    assert [p.shape[-1] for p in equal] == [4, 4, 4] and [p.shape[-1] for p in sized] == [5, 1, 6]
    assert np.array_equal(np.concatenate(equal, axis=-1), x) and np.array_equal(np.concatenate(sized, axis=-1), x)
    assert ChannelSplit.from_config(ChannelSplit([5, 1, 6], 2).get_config())._bounds(12) == (6, 6)


BAD = """
network Bad(n = 3) {{
    input [8, 4, 4]
    t = relu
    {line}
    concat(b, a)
}}
"""


@pytest.mark.parametrize("line, message, column", [
    ("a, b = t split(3)", "split into 3 parts, but 2 names are given (a, b): one name a part", 20),
    ("a, b = t split([2, 3, 3])", "split into 3 sizes, but 2 names are given (a, b)", 20),
    ("a, b = t split(n)", "split1 (split): split into 3 parts, but 2 names are given: one name a part", 20),
    ("a, b = t relu split(2)", "split(...) takes the named tensor (or `in`) just before it", 14),
    ("a = t split(2)", "split(...) gives one tensor a part, so its parts are named where it is used", 11),
    ("a, b = t split([3, 4])", "the sizes [3, 4] add up to 7, not to the input's 8 channels", 20),
    ("a, b = t split([3, 0])", "must be at least 1, got 0", 20),
    ("a, a = t split(2)", "the tensor 'a' is already bound (at", 8),
    ("a, t = t split(2)", "the tensor 't' is already bound (at", 8),
    ("a, b = t conv(4, 1) split(2)", "split(...) takes the named tensor (or `in`) just before it", 14),
    ("a, b = split(2)", "split(...) takes the named tensor (or `in`) just before it", 12),
    ("a, b = t relu", "`a, b = ...` names the parts of a channel split, so it ends with split(...)", 14),
    ("a, b = t split(2, 1)", "a split's parts take their indices from the names", 23),
    ("a, b = t s: split(2)", "a label names a layer or block; the parts of a split are named", 14),
    ("a, n = t split(2)", "'n' is a parameter; a tensor needs another name", 8),
    ("{ a, b = t split(2) }", "named tensors (`name = ...`) can be bound only at the top level", 7),
])
def test_bad_splits_are_located_errors(tmp_path, line, message, column):
    check_error(tmp_path, BAD.format(line=line), message, 4, column)


def test_channels_that_do_not_divide_are_a_located_error_from_the_command_line(tmp_path):
    spec = tmp_path / "odd.arch"
    spec.write_text(textwrap.dedent("""\
        network Odd {
            input [9, 4, 4]
            a, b = in split(2)
            concat(b, a)
        }
        """))
    done = subprocess.run([sys.executable, "-m", "archdsl", "check", str(spec)], capture_output=True, text=True,
                          check=False)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.startswith(f"{spec}:3:21: error: ")
    assert "the input's 9 channels do not split into 2 equal parts" in done.stderr
    assert "\n 3 |     a, b = in split(2)\n   |                     ^\n" in done.stderr
