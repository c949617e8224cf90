"""An expansion keeps its results apart from the definitions (issue 14): the instances of every
definition node live in the Elaborated that the expander returns, so two expansions of one program
coexist, and generating code from one is not disturbed by the other."""

from __future__ import annotations

import textwrap

import pytest

from archdsl import api
from archdsl.core import graph as G

SPEC = textwrap.dedent("""\
    block Unit(width, slope = 0.1) {
        conv(width, 3, pad = 1)
        bn
        leaky_relu(slope)
    }

    network Net(depth = 2, width = 8, resolution = 16, slope = 0.1) {
        input [3, resolution, resolution]
        Unit(width, slope) * depth
        maxpool(2)
        flatten
        dense(10)
    }
""")
# deeper, wider, a larger input (so a flattened feature count differs) and a negative slope (which
# Keras' own LeakyReLU refuses and PyTorch cannot compute in place)
OTHER = {"depth": 3, "width": 16, "resolution": 32, "slope": -0.2}


@pytest.fixture
def program(tmp_path) -> G.Program:
    spec = tmp_path / "net.arch"
    spec.write_text(SPEC)
    program = api.elaborate(str(spec))
    assert isinstance(program, G.Program)
    return program


def _node(where: G.Seq, kind: type | str) -> G.Node:
    """The one node of a body of a kind (a node class, or the name of a layer type)."""
    found = [n for n in where.nodes
             if (isinstance(n, G.Layer) and n.type.name == kind if isinstance(kind, str) else isinstance(n, kind))]
    assert len(found) == 1
    return found[0]


def test_two_expansions_of_one_program_keep_their_own_uses(program):
    first = api.expand(program)
    second = api.expand(program, OTHER)
    block = program.blocks["Unit"]
    conv = _node(block.body, "conv")
    repeat = _node(program.network.body, G.Repeat)
    flatten = _node(program.network.body, "flatten")

    # the block and its convolution: one use per repetition, each expansion its own
    assert [i.path for i in first.uses(block)] == ["unit1.0", "unit1.1"]
    assert [i.path for i in second.uses(block)] == ["unit1.0", "unit1.1", "unit1.2"]
    assert [i.args["width"] for i in first.uses(block)] == [8, 8]
    assert [i.args["slope"] for i in second.uses(block)] == [-0.2] * 3
    assert {i.out_shape for i in first.uses(conv)} == {G.Shape((8, 16, 16))}
    assert {i.out_shape for i in second.uses(conv)} == {G.Shape((16, 32, 32))}
    assert [i.args["count"] for i in first.uses(repeat)] == [2]
    assert [i.args["count"] for i in second.uses(repeat)] == [3]
    assert [i.in_shape for i in first.uses(flatten)] == [G.Shape((8, 8, 8))]
    assert [i.in_shape for i in second.uses(flatten)] == [G.Shape((16, 16, 16))]
    # the uses are the instances of the expansion's own tree, and no list is shared
    assert all(any(i is j for j in first.root.walk()) for i in first.uses(conv))
    assert not set(map(id, first.uses(conv))) & set(map(id, second.uses(conv)))
    # a node no use reaches has none; the definitions carry no instances of their own
    assert api.expand(program, {"depth": 0}).uses(conv) == []
    assert not hasattr(conv, "instances") and not hasattr(block, "instances")


@pytest.mark.parametrize("target", api.TARGETS)
def test_code_from_an_expansion_is_unchanged_by_a_later_one(program, target):
    fresh = api.generate(api.expand(program), target)
    first = api.expand(program)
    second = api.expand(program, OTHER)
    other = api.generate(second, target)
    assert api.generate(first, target) == fresh
    assert other != fresh
    assert api.generate(second, target) == other
