"""Every class of bad input gives a located error: the message, file:line:column, the source line
and a caret under the offending place."""

from __future__ import annotations

import textwrap

import pytest

from archdsl.compiler import load, parse_sets
from archdsl.errors import ArchError


def check_error(tmp_path, source: str, message: str, line: int, column: int, sets=None) -> ArchError:
    spec = tmp_path / "bad.arch"
    spec.write_text(textwrap.dedent(source).lstrip("\n"))
    with pytest.raises(ArchError) as info:
        load(str(spec), parse_sets(sets))
    err = info.value
    assert message in err.message, err.format()
    assert err.span is not None, err.format()
    assert (err.span.line, err.span.column) == (line, column), err.format()
    text = err.format()
    lines = text.splitlines()
    assert lines[0].startswith(f"{spec}:{line}:{column}: error: ")
    src_line = spec.read_text().splitlines()[line - 1]
    gutter = [i for i, ln in enumerate(lines) if ln.endswith(src_line.expandtabs(4)) and "|" in ln]
    assert gutter, text
    caret_line = lines[gutter[0] + 1]
    bar = caret_line.index("|")
    assert caret_line[bar + 2 + column - 1] == "^", text
    return err


NET = """
network N(classes = 10) {{
    input [3, 32, 32]
{body}
}}
"""


def net(body: str) -> str:
    return NET.format(body=textwrap.indent(textwrap.dedent(body).strip("\n"), "    "))


def test_residual_of_unequal_shapes_names_block_instance(tmp_path):
    src = """
    block Res(c) {
        residual {
            conv(c, 3, pad = 1)
        }
    }
    network N {
        input [3, 32, 32]
        conv(8, 3, pad = 1)
        stage1: Res(16)
    }
    """
    err = check_error(tmp_path, src, "residual add of unequal shapes: the body gives [16, 32, 32], "
                                     "the identity shortcut gives [8, 32, 32]", 2, 5)
    assert "stage1 (Res)" in err.format()


def test_residual_with_false_shortcut_condition(tmp_path):
    src = """
    network N {
        input [3, 32, 32]
        residual { conv(8, 3, stride = 2, pad = 1) } shortcut if false { conv(8, 1, stride = 2) }
    }
    """
    err = check_error(tmp_path, src, "residual add of unequal shapes", 3, 5)
    assert "condition is false" in err.format()


def test_concat_of_unequal_spatial_sizes(tmp_path):
    src = net("""
        concat {
            branch { conv(8, 3, pad = 1) }
            branch { conv(8, 3, stride = 2, pad = 1) }
        }
    """)
    check_error(tmp_path, src, "concat of unequal spatial sizes: branch 1 gives [8, 32, 32], "
                               "branch 2 gives [8, 16, 16]", 3, 5)


def test_dense_on_unflattened_map(tmp_path):
    src = net("""
        conv(8, 3)
        dense(classes)
    """)
    err = check_error(tmp_path, src, "dense needs a flat input [features], got the feature map [8, 30, 30]", 4, 5)
    assert "flatten" in err.message


def test_spatial_size_below_one(tmp_path):
    src = net("""
        conv(8, 7, stride = 2)
        conv(8, 7, stride = 2)
        conv(8, 7, stride = 2)
    """)
    err = check_error(tmp_path, src, "the output would be -1 pixels high: window 7 over an input of 4", 5, 5)
    assert "conv3" in err.message


def test_wrong_argument_type(tmp_path):
    src = net("""
        conv(8, 3, stride = 1.5)
    """)
    check_error(tmp_path, src, "conv: 'stride' expects an integer or a pair [height, width], got 1.5", 3, 25)


def test_bool_where_a_number_is_expected(tmp_path):
    check_error(tmp_path, net("conv(true, 3)"), "'filters' expects an integer, got true", 3, 10)


def test_too_many_arguments(tmp_path):
    check_error(tmp_path, net("relu(2)"), "relu takes 0 arguments (no arguments), got 1", 3, 10)


def test_missing_argument(tmp_path):
    check_error(tmp_path, net("conv(8)"), "conv needs its argument 'kernel'", 3, 5)


def test_argument_given_twice(tmp_path):
    check_error(tmp_path, net("conv(8, 3, filters = 4)"), "argument 'filters' of conv is given twice", 3, 16)


def test_unknown_layer_suggests(tmp_path):
    err = check_error(tmp_path, net("conv(8, 3) rellu"), "unknown layer or block 'rellu'", 3, 16)
    assert "did you mean 'relu'" in err.message


def test_unknown_block(tmp_path):
    check_error(tmp_path, net("Bottleneck(64)"), "unknown layer or block 'Bottleneck'", 3, 5)


def test_unknown_keyword(tmp_path):
    err = check_error(tmp_path, net("conv(8, 3, strides = 2)"), "conv has no argument 'strides'", 3, 16)
    assert "did you mean 'stride'" in err.message


def test_unknown_keyword_of_block(tmp_path):
    src = """
    block B(width) { conv(width, 3) }
    network N {
        input [3, 32, 32]
        B(width = 8, depth = 2)
    }
    """
    check_error(tmp_path, src, "block B has no argument 'depth'", 4, 18)


def test_unknown_parameter_name(tmp_path):
    src = """
    block B(width) { conv(widht, 3) }
    network N {
        input [3, 32, 32]
        B(8)
    }
    """
    err = check_error(tmp_path, src, "unknown name 'widht' in block B", 1, 23)
    assert "did you mean 'width'" in err.message


def test_unknown_network_parameter_from_command_line(tmp_path):
    spec = tmp_path / "n.arch"
    spec.write_text(net("conv(8, 3)"))
    with pytest.raises(ArchError, match="network N has no parameter 'depth'"):
        load(str(spec), parse_sets(["depth=3"]))


@pytest.mark.parametrize("body, message, line, column", [
    ("conv(8, 3", "syntax error: unexpected '}'; expected ')', ','; is a ')' missing?", 4, 1),
    ("conv(8, 3))", "syntax error: unexpected ')'", 3, 15),
    ("let = 3", "syntax error: unexpected '='", 3, 9),
    ("conv(8, 3) $", "syntax error: unexpected character '$'", 3, 16),
])
def test_syntax_errors(tmp_path, body, message, line, column):
    check_error(tmp_path, net(body), message, line, column)


def test_syntax_error_at_end_of_file(tmp_path):
    spec = tmp_path / "eof.arch"
    spec.write_text("network N {\n    input [3, 8, 8]\n    conv(4, 3)\n")
    with pytest.raises(ArchError, match="syntax error: unexpected end of file") as info:
        load(str(spec))
    assert info.value.span.line == 3


def test_error_in_imported_file_points_there(tmp_path):
    (tmp_path / "lib.arch").write_text("block B(c) {\n    conv(c, 3, pad = same, strid = 1)\n}\n")
    spec = tmp_path / "main.arch"
    spec.write_text('import "lib.arch"\nnetwork N {\n    input [3, 8, 8]\n    B(4)\n}\n')
    with pytest.raises(ArchError) as info:
        load(str(spec))
    assert info.value.span.file.endswith("lib.arch")
    assert (info.value.span.line, info.value.span.column) == (2, 28)


def test_recursive_block(tmp_path):
    src = """
    block A(c) { B(c) }
    block B(c) { A(c) }
    network N {
        input [3, 8, 8]
        A(4)
    }
    """
    err = check_error(tmp_path, src, "blocks cannot be recursive", 2, 14)
    assert "block 'A' calls itself (through A -> B)" in err.message


def test_recursion_found_in_any_branch_and_in_blocks_nothing_calls(tmp_path):
    src = """
    block A(c) {
        residual { conv(c, 1) } shortcut { if c > 1 { conv(c, 1) } else { B(c) } }
    }
    block B(c) { concat { branch { relu } branch { C(c) * 2 } } }
    block C(c) { A(c) }
    network N {
        input [3, 8, 8]
        A(3)
    }
    """
    err = check_error(tmp_path, src, "blocks cannot be recursive", 5, 14)
    assert "block 'A' calls itself (through A -> B -> C)" in err.message
    unused = """
    block Loop(c) { conv(c, 1) Loop(c) }
    network N {
        input [3, 8, 8]
        conv(4, 1)
    }
    """
    err = check_error(tmp_path, unused, "block 'Loop' calls itself (through Loop)", 1, 28)


def test_layers_after_last_output(tmp_path):
    src = net("""
        conv(8, 3)
        output features
        relu
    """)
    check_error(tmp_path, src, "comes after the last output", 5, 5)


def test_auxiliary_outputs_need_a_head_and_an_output_beside_them(tmp_path):
    # an auxiliary output is a head computed while training only: it needs its chain, ...
    check_error(tmp_path, net("""
        conv(8, 3)
        auxiliary output features
        output logits = avgpool(global) flatten dense(classes)
    """), "syntax error: unexpected end of line; expected '='", 4, 30)
    # ... and an evaluation needs something to return
    check_error(tmp_path, net("""
        conv(8, 3) avgpool(global) flatten
        auxiliary output a = dense(classes)
        auxiliary output b = dense(2)
    """), "every output of this network is auxiliary", 5, 5)
    # outside the network's top level it is an output like any other
    check_error(tmp_path, """
        block B(c) {
            conv(c, 3)
            auxiliary output a = conv(c, 1)
        }
        network N {
            input [3, 8, 8]
            B(4)
        }
    """, "`output` is allowed only at the top level of a network", 3, 5)


def test_scale_body_must_broadcast(tmp_path):
    src = net("""
        conv(8, 3)
        scale { avgpool(global) conv(4, 1) sigmoid }
    """)
    check_error(tmp_path, src, "scale multiplies its input [8, 30, 30]", 4, 5)


def test_groups_must_divide_channels(tmp_path):
    check_error(tmp_path, net("conv(8, 3, groups = 2)"), "groups=2 must divide both the input channels (3)", 3, 25)


def test_open_size_needs_known_size_for_flatten(tmp_path):
    spec = tmp_path / "open.arch"
    spec.write_text("network N {\n    input [3, ?, ?]\n    conv(8, 3) flatten dense(10)\n}\n")
    with pytest.raises(ArchError, match="flatten of \\[8, \\?, \\?\\] needs every size known"):
        load(str(spec))


def test_open_size_checks_what_it_can(tmp_path):
    spec = tmp_path / "open.arch"
    spec.write_text("network N {\n    input [3, ?, ?]\n    conv(8, 3) avgpool(global) flatten dense(10)\n}\n")
    elab = load(str(spec))
    assert str(elab.root.out_shape) == "[10]"
    assert elab.root.total_params() == 8 * 27 + 8 + 8 * 10 + 10


def test_duplicate_label(tmp_path):
    check_error(tmp_path, net("a: conv(8, 3)\na: relu"), "the name 'a' is used twice", 4, 5)


def test_assert_in_a_block_reports_its_message_place_and_values(tmp_path):
    src = """
    block Fire(version = 1.0) {
        assert version == 1.0 or version == 1.1, "SqueezeNet has versions 1.0 and 1.1"
        conv(16, 1) relu
    }
    network N(v = 1.2) {
        input [3, 8, 8]
        Fire(v)
    }
    """
    err = check_error(tmp_path, src, "SqueezeNet has versions 1.0 and 1.1", 2, 5)
    assert "version = 1.2" in err.format()
    assert "fire1 (Fire)" in err.format()


def test_assert_that_holds_generates_nothing(tmp_path):
    spec = tmp_path / "net.arch"
    spec.write_text("network N(w = 2) {\n    input [3, 8, 8]\n    assert w > 0\n    conv(w, 3)\n}\n")
    from archdsl.compiler import generate

    for target in ("torch", "keras"):
        code = generate(load(str(spec)), target)
        assert not [line for line in code.splitlines() if line.strip().startswith("assert")]


CELL = """
block Cell(c, prev: tensor) {{
{body}
}}
network N {{
    input [3, 8, 8]
{net}
}}
"""


def cell(body: str, network: str = "s0 = conv(4, 1)\nCell(4, prev = s0)") -> str:
    return CELL.format(body=textwrap.indent(textwrap.dedent(body).strip("\n"), "    "),
                       net=textwrap.indent(network, "    "))


@pytest.mark.parametrize("body, network, message, line, column", [
    ("a = prev conv(c, 1)\nadd(in, prev)", None, "the tensor name 'a' is never used", 2, 5),
    ("conv(c, 1)\nadd(in, prev)", None, ("the result of this line is never used: the next line starts from "
     "the inputs of add(...)"), 2, 5),
    ("relu\nprev conv(c, 1)", None, ("the result of this line is never used: the next line starts from the "
     "tensor 'prev'"), 2, 5),
    ("in conv(c, 1)", None, "the tensor parameter 'prev' is never used", 1, 15),
    ("{ a = prev }\nconv(c, 1)", None, "can be bound only at the top level", 2, 7),
    ("concat { branch { prev } branch { relu } }", None, "the tensor 'prev' can be used only at the top level",
     2, 23),
    ("conv(c, 1) prev", None, "a named tensor starts a chain", 2, 16),
    ("conv(c, 1) add(in, prev)", None, "add(...) takes its inputs from its arguments, so it starts a chain", 2, 16),
    ("add(in, prev)", "s0 = conv(5, 1)\nin conv(3, 1)\nCell(4, prev = s0)", ("add of unequal shapes: 'in' is [3, 8, 8], "
     "'prev' is [5, 8, 8]"), 2, 5),
    ("concat(in, prev)", "s0 = conv(5, 3)\nin conv(3, 1)\nCell(4, prev = s0)", ("concat of unequal spatial sizes: 'in' is "
     "[3, 8, 8], 'prev' is [5, 6, 6]"), 2, 5),
    ("conv(prev, 1)", None, "'prev' is a tensor, not a value", 2, 10),
    ("a = prev relu\na = prev relu\nadd(a, in)", None, "the tensor 'a' is already bound", 3, 5),
    ("c = prev relu\nadd(c, in)", None, "'c' is a parameter; a tensor needs another name", 2, 5),
    ("conv(prev.channels, 1)\nadd(in, prev)", None, ("prev.channels: the sizes of a named tensor can be used "
     "only in `assert`"), 2, 10),
    ("add(in, prev)", "s0 = conv(3, 1)\nCell(4, prev = 3)", "parameter 'prev' of block Cell takes a named tensor",
     7, 20),
    ("add(in, prev)", "s0 = conv(3, 1)\nCell(4, prev = s1)", "unknown tensor 's1'", 7, 20),
    ("add(in, prev)", "s0 = conv(3, 1)\n{ Cell(4, prev = s0) }", ("block Cell takes a tensor (prev), so it can be "
     "called only at the top level"), 7, 7),
    ("add(in, prev)", "s0 = conv(3, 1)\nCell(4, prev = s0) * 2", ("block Cell takes a tensor (prev), so it can be "
     "called only at the top level"), 7, 5),
    ("add(in)", "s0 = conv(3, 1)\nCell(4, prev = s0)", "add(...) needs at least two tensors", 2, 5),
    ("assert prev.height == 2 * in.height, \"prev is twice in\"\nadd(in, prev)", "s0 = conv(3, 1)\nCell(4, prev = s0)",
     "prev is twice in", 2, 5),
])
def test_named_tensor_errors(tmp_path, body, network, message, line, column):
    source = cell(body, network) if network else cell(body)
    check_error(tmp_path, source, message, line, column)
