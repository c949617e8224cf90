"""Every class of bad input gives a located error: the message, file:line:column, the source line
and a caret under the offending place."""

from __future__ import annotations

import textwrap

import pytest

from archdsl.api import load
from archdsl.core.values import parse_sets
from archdsl.language.errors import ArchError, display, source_lines


def assert_located(err: ArchError, text: str) -> None:
    """An error's place is inside the text, and its message shows the line the place names (counted as
    the lexer counts lines) with the caret under the place's character."""
    span = err.span
    assert span is not None, err.format()
    lines = source_lines(text)
    assert 1 <= span.line <= len(lines), err.format()
    line = lines[span.line - 1]
    assert 1 <= span.column <= len(line) + 1, err.format()
    printed, starts = display(line)
    shown = err.format({span.file: text}).split("\n")
    number = f" {span.line} | "
    at = [i for i, ln in enumerate(shown) if ln.startswith(number)]
    assert at and shown[at[0]] == number + printed, err.format()
    caret = shown[at[0] + 1]
    cell = starts[span.column - 1] if span.column - 1 < len(starts) else starts[-1] + 1
    assert caret[len(number):].index("^") == cell, err.format()


def check_error(tmp_path, source: str, message: str, line: int, column: int, sets=None, *, dedent=True) -> ArchError:
    spec = tmp_path / "bad.arch"
    text = textwrap.dedent(source).lstrip("\n") if dedent else source
    spec.write_bytes(text.encode())
    with pytest.raises(ArchError) as info:
        load(str(spec), parse_sets(sets) if isinstance(sets, list) else sets)
    err = info.value
    assert message in err.message, err.format()
    assert err.span is not None, err.format()
    assert (err.span.line, err.span.column) == (line, column), err.format()
    assert err.format().startswith(f"{spec}:{line}:{column}: error: ")
    assert_located(err, text)
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
    ("conv(8, 3", "syntax error: unexpected '}'; missing ')' to close conv(...) opened at", 4, 1),
    ("conv(8, 3 relu)", "syntax error: unexpected 'relu'; expected ')'", 3, 15),
    ("conv(8, [3, 3)", "syntax error: unexpected ')'; missing ']' to close '[' opened at", 3, 18),
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
    from archdsl.api import generate

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


# Numbers out of range, and limits (docs/language.md, "Limits") --------------------------------------

BIG_NET = """
network Net(classes = 10, width = 1.0, pad = 1) {
    input [3, 32, 32]
    conv(make_divisible(16 * width), 3, pad = pad)
    flatten
    dense(classes)
}
"""


@pytest.mark.parametrize("expr, message, column", [
    ("2 ** 20000", "2 ** 20000 is at least 2**64; integers are limited to 9,223,372,036,854,775,807", 10),
    ("2 ** 2 ** 2 ** 22", "2 ** 4194304 is at least 2**64", 15),  # was: hours and gigabytes
    ("9" * 5000, "this integer is too large (5,000 digits)", 10),
    ("9223372036854775808", "this number is too large: 9,223,372,036,854,775,808; integers are limited", 10),
    ("2 ** 62 * 4", "the result here is too large: 18,446,744,073,709,551,616", 10),
    ("int(1e300)", "the result of int() is too large: a number of about 301 digits", 10),
    ("int(1e309)", "this number is too large: it overflows to infinity", 14),
    ("round(1e309 - 1e309)", "this number is too large: it overflows to infinity", 16),
    ("1e308 * 10", "the result here is too large: it overflows to infinity", 10),
    ("10.0 ** 400", "the result here is too large: it overflows the range of numbers", 10),
    ("(-8) ** 0.5", "the result here is not a real number", 10),
    ("make_divisible(1e300)", "the result of make_divisible() is too large", 10),
])
def test_numbers_out_of_range_are_located(tmp_path, expr, message, column):
    check_error(tmp_path, net(f"conv({expr}, 1)"), message, 3, column)


@pytest.mark.parametrize("size, shown", [("1e308", "1e+308"), ("1e19", "1e+19")])
def test_input_sizes_out_of_range_are_located(tmp_path, size, shown):
    """Found by the mutation test: an input of 1e308 channels made the parameter and MAC counts too large
    for the report's numbers (an OverflowError at the summary line)."""
    check_error(tmp_path, f"network Net {{\n    input [{size}, 8, 8]\n    conv(4, 1)\n}}\n",
                f"an input size must be at most 9,223,372,036,854,775,807 (2**63 - 1), the limit of integers, "
                f"got {shown}", 2, 12)


def test_huge_network_parameter_default(tmp_path):
    check_error(tmp_path, "network Net(classes = 2 ** 20000) {\n    input [3, 8, 8]\n    flatten\n    dense(classes)\n}\n",
                "2 ** 20000 is at least 2**64", 1, 23)


@pytest.mark.parametrize("value, message, line, column", [
    ("nan", "the value set for 'width' is not a number (NaN)", 1, 27),
    ("inf", "the value set for 'width' is too large: it overflows to infinity", 1, 27),
    ("1e400", "the value set for 'width' is too large: it overflows to infinity", 1, 27),
    ("1e308", "the result here is too large: it overflows to infinity", 3, 25),
])
def test_set_values_out_of_range_are_located(tmp_path, value, message, line, column):
    check_error(tmp_path, BIG_NET, message, line, column, [f"width={value}"])
    check_error(tmp_path, BIG_NET, message, line, column, {"width": float(value)})  # the Python API: the same rule


@pytest.mark.parametrize("sets", [["pad=1e308"], {"pad": 1e308}, {"pad": 10**308}], ids=["cli", "float", "int"])
def test_set_integer_too_large_is_the_same_error_from_command_line_and_api(tmp_path, sets):
    # a float is an integer argument only where it is used; an integer is out of range where it is set
    where = (1, 40) if isinstance(sets, dict) and isinstance(sets["pad"], int) else (3, 47)
    err = check_error(tmp_path, BIG_NET, "", *where, sets)
    assert "9,223,372,036,854,775,807" in err.message


def test_set_value_of_another_type_from_the_api(tmp_path):
    check_error(tmp_path, BIG_NET, "the value set for 'classes' is not a value of the language (a str)", 1, 13,
                {"classes": "ten"})


def test_set_integer_too_long_for_python():
    with pytest.raises(ArchError, match="is too large; integers are limited"):
        parse_sets(["classes=" + "9" * 5000])


def test_huge_repetition_count_answers_at_once(tmp_path):
    import time

    start = time.perf_counter()
    check_error(tmp_path, net("relu * 1000000000"), "a repetition count of 1,000,000,000 is more than the limit of "
                "500,000 layers and composites", 3, 12)
    assert time.perf_counter() - start < 2


def test_expansion_past_the_limit_points_at_the_outermost_repetition(tmp_path, monkeypatch):
    import archdsl.core.shapes

    monkeypatch.setattr(archdsl.core.shapes, "MAX_INSTANCES", 1000)
    src = "block B() {\n    relu * 40\n}\n" + net("conv(4, 1)\n{ B() * 10 } * 10")
    check_error(tmp_path, src, "this repetition makes the network expand to more than the limit of 1,000", 8, 5)
    check_error(tmp_path, net("relu * 999\nrelu * 2"), "the network expands to more than the limit of 1,000", 4, 5)


def test_the_limits_hold_far_above_the_zoo():
    """The largest network of the zoo (any registry setting) is far inside the limits."""
    from pathlib import Path

    from archdsl.language.limits import MAX_INSTANCES, MAX_INT
    from archdsl.tools.zoo import read_registry

    root = Path(__file__).resolve().parent.parent
    biggest = biggest_size = 0
    for entry in read_registry(root):
        elab = load(str(entry.spec_path(root)), entry.sets)
        biggest = max(biggest, sum(1 for _ in elab.root.walk()))
        biggest_size = max(biggest_size, *(d or 0 for i in elab.root.walk() for d in i.out_shape.dims))
    assert 1000 < biggest and biggest * 300 < MAX_INSTANCES  # 1,482 (EfficientNet-B7): 337 times inside
    assert biggest_size < MAX_INT >> 40


def test_language_server_uses_the_same_limits(tmp_path):
    from archdsl.editor.lsp.analysis import analyze

    path = tmp_path / "net.arch"
    for body, message in (("relu * 1000000000", "a repetition count of 1,000,000,000 is more than the limit"),
                          ("conv(2 ** 2 ** 2 ** 22, 1)", "2 ** 4194304 is at least 2**64")):
        text = textwrap.dedent(net(body)).lstrip("\n")
        path.write_text(text)
        with pytest.raises(ArchError) as info:
            load(str(path))
        analysis = analyze(str(path), text)
        assert analysis.error is not None and message in analysis.error.message
        assert analysis.error.message == info.value.message and analysis.error.span == info.value.span


# Files that cannot be read -----------------------------------------------------------------------

@pytest.mark.parametrize("name, message", [
    ("lib\0.arch", "cannot read '{dir}/lib\\x00.arch': a file name cannot contain a NUL character"),
    ("folder", "cannot read '{dir}/folder': it is a directory, not a spec file"),
    ("", "cannot read '{dir}/': it is a directory, not a spec file"),
    ("x" * 300 + ".arch", "File name too long"),
    ("latin1.arch", "it is not UTF-8 text (byte 0xe9 at line 2, byte 15 of the line)"),
    ("fifo.arch", "it is not a regular file (a device or a pipe)"),
    ("/dev/zero", "cannot read '/dev/zero': it is not a regular file (a device or a pipe)"),
    ("missing.arch", "cannot find '{dir}/missing.arch'"),
], ids=["nul", "directory", "empty", "long", "not-utf8", "fifo", "device", "missing"])
def test_import_that_cannot_be_read(tmp_path, name, message):
    import os

    (tmp_path / "folder").mkdir()
    (tmp_path / "latin1.arch").write_bytes("block B() {\n    relu # caf\u00e9\n}\n".encode("latin-1"))
    if hasattr(os, "mkfifo"):
        os.mkfifo(tmp_path / "fifo.arch")
    elif name == "fifo.arch":
        pytest.skip("no named pipes here")
    src = f'import "{name}"\nnetwork N {{\n    input [3, 8, 8]\n    relu\n}}\n'
    check_error(tmp_path, src, message.replace("{dir}", str(tmp_path)), 1, 1, dedent=False)


def test_byte_order_mark_is_passed_over(tmp_path):
    spec = tmp_path / "bom.arch"
    spec.write_bytes(b"\xef\xbb\xbfnetwork N {\n    input [3, 8, 8]\n    conv(4, 1, stride = 0)\n}\n")
    with pytest.raises(ArchError) as info:
        load(str(spec))
    assert (info.value.span.line, info.value.span.column) == (3, 25)
    assert " 3 |     conv(4, 1, stride = 0)\n   |                         ^" in info.value.format()


# The line under the caret is the line the error names ---------------------------------------------

@pytest.mark.parametrize("char", ["\f", "\v", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029", "\r"],
                         ids=["ff", "vt", "fs", "gs", "rs", "nel", "ls", "ps", "cr"])
def test_odd_line_breaks_do_not_shift_the_printed_line(tmp_path, char):
    # in a comment the character is harmless; the error two lines below must show its own line
    src = f"network N {{  # a comment with {char} in it\n    input [3, 8, 8]\n    conv(4, 1, stride = 0)\n}}\n"
    err = check_error(tmp_path, src, "'stride' must be at least 1", 3, 25, dedent=False)
    assert " 3 |     conv(4, 1, stride = 0)\n" in err.format()


def test_form_feed_between_tokens(tmp_path):
    src = "network N {\n    input [3, 8, 8]\f\n\f    conv(4, 1, stride = 0)\n}\n"
    err = check_error(tmp_path, src, "'stride' must be at least 1", 3, 26, dedent=False)
    assert " 3 | \u240c    conv(4, 1, stride = 0)\n" in err.format()


@pytest.mark.parametrize("char", ["\v", "\x1c", "\x85", "\u2028", "\0", "\x1b"])
def test_unexpected_invisible_character_is_shown(tmp_path, char):
    src = f"network N {{\n    input [3, 8, 8]\n    conv(4,{char} 1)\n}}\n"
    err = check_error(tmp_path, src, f"unexpected character {char!r}", 3, 12, dedent=False)
    assert "\n" not in err.format().split("\n")[1] and char not in err.format()


def test_caret_under_the_right_character_after_tabs_and_wide_characters(tmp_path):
    src = "network N {\n\tinput [3, 8, 8]\n\t\tconv(4, 1,\tstride = 0)  # \u8ba1\u7b97\n}\n"
    err = check_error(tmp_path, src, "'stride' must be at least 1", 3, 23, dedent=False)
    assert err.format().endswith(" 3 |         conv(4, 1,  stride = 0)  # \u8ba1\u7b97\n"
                                 "   |                              ^")
    src = "network N {\n\tinput [3, 8, 8]\n\t\u8ba1\u7b97 \u8ba1\n}\n"  # each takes two cells of a terminal
    err = check_error(tmp_path, src, "unexpected character", 3, 2, dedent=False)
    assert err.format().endswith(" 3 |     \u8ba1\u7b97 \u8ba1\n   |     ^~")


def test_end_of_file_is_reported_after_the_last_token(tmp_path):
    src = "network N {\n    input [3, 8, 8]\n    conv(4, 1\u2028\n\n  \n"
    check_error(tmp_path, src, "unexpected character '\\u2028'", 3, 14, dedent=False)
    src = "network N {\n    input [3, 8, 8]\n    conv(4, 1)  # comment\n\n  \n"
    check_error(tmp_path, src, "unexpected end of file", 3, 26, dedent=False)


@pytest.mark.parametrize("body, column", [
    ("{ " * 400 + "relu" + " }" * 400, 669),
    ("conv(" + "-" * 1200 + "4, 1)", 1003),
    ("conv(" + "1 + " * 1200 + "4, 1)", 10),
], ids=["groups", "unary", "sum"])
def test_nesting_past_the_limit_is_located(tmp_path, body, column):
    src = f"network N {{\n    input [3, 8, 8]\n    {body}\n}}\n"
    check_error(tmp_path, src, "this nests too deeply: more than 1,000 levels", 3, column, dedent=False)


def test_nesting_inside_the_limit_checks(tmp_path):
    spec = tmp_path / "deep.arch"
    spec.write_text("network N {\n    input [3, 8, 8]\n    " + "{ " * 300 + "relu" + " }" * 300 + "\n    conv("
                    + "-" * 900 + "4, 1)\n}\n")
    assert load(str(spec)).root.out_shape.dims == (4, 8, 8)


# A bracket left open is named, with the place it opened ------------------------------------------------

def test_missing_brace_names_the_block_and_where_it_opened(tmp_path):
    src = "block Foo(c) {\n    conv(c, 3)\n    relu\n\nnetwork Net {\n    input [3, 8, 8]\n    Foo(4)\n}\n"
    err = check_error(tmp_path, src, "syntax error: unexpected 'network'; missing '}' to close block Foo opened at "
                      f"{tmp_path / 'bad.arch'}:1:14", 5, 1, dedent=False)
    assert err.notes == [f"the '{{' of block Foo is at {tmp_path / 'bad.arch'}:1:14"]


def test_missing_brace_of_an_inner_body_is_suggested_by_indentation(tmp_path):
    src = """
    block Foo(c) {
        residual {
            conv(c, 3, pad = 1)
        relu
    }

    network Net {
        input [3, 8, 8]
        Foo(3)
    }
    """
    err = check_error(tmp_path, src, "missing '}' to close block Foo opened at", 7, 1)
    assert "the '}' at 5:1 is indented like that line but closes residual (opened at 2:14)" in err.notes[-1]


def test_missing_brace_at_end_of_file_lists_what_is_open(tmp_path):
    src = "network Net {\n    input [3, 8, 8]\n    residual {\n        relu\n"
    err = check_error(tmp_path, src, "unexpected end of file; missing '}' to close residual opened at", 4, 13,
                      dedent=False)
    assert err.notes[-1] == "still open around it: network Net at 1:13"


def test_missing_parenthesis_on_an_earlier_line(tmp_path):
    err = check_error(tmp_path, net("conv(4, 3\nrelu"), "unexpected 'relu'; missing ')' to close conv(...) opened at", 4, 5)
    assert "newlines inside (...) are ignored" in err.notes[0]


@pytest.mark.parametrize("body, message, line, column", [
    ("relu\n}", "unexpected '}'; there is no '{' open here for this '}' to close", 5, 1),
    ("relu)", "unexpected ')'; there is no '(' open here", 3, 9),
])
def test_one_closing_bracket_too_many(tmp_path, body, message, line, column):
    check_error(tmp_path, net(body), message, line, column)


# Names ------------------------------------------------------------------------------------------------

def test_network_named_like_a_block(tmp_path):
    src = """
    block Net(c) {
        conv(c, 3)
    }
    network Net {
        input [3, 8, 8]
        Net(4)
    }
    """
    err = check_error(tmp_path, src, "the network has the name of a block, 'Net'", 4, 9)
    assert err.notes == [f"block Net is defined at {tmp_path / 'bad.arch'}:1:7"]


def test_network_named_like_an_imported_block(tmp_path):
    (tmp_path / "lib.arch").write_text("block Stem(c) {\n    conv(c, 3)\n}\n")
    err = check_error(tmp_path, 'import "lib.arch"\nnetwork Stem {\n    input [3, 8, 8]\n    relu\n}\n',
                      "the network has the name of a block, 'Stem'", 2, 9, dedent=False)
    assert err.notes == [f"block Stem is defined at {tmp_path / 'lib.arch'}:1:7"]


def test_repetition_surely_past_the_limit_answers_before_expanding(tmp_path):
    import time

    src = "block B() {\n    conv(3, 1) bn relu\n    { relu relu } * 3\n}\n" + net("B * 100000")
    start = time.perf_counter()
    check_error(tmp_path, src, "this repetition makes the network expand to more than the limit of 500,000", 8, 5)
    assert time.perf_counter() - start < 2
