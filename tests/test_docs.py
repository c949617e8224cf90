"""The examples in docs/language.md are real: each parses, and each that states a network checks."""

from __future__ import annotations

import re

import pytest

from archdsl.compiler import load
from archdsl.parser import parse

from .frameworks import ROOT

EXAMPLES = re.findall(r"```arch\n(.*?)```", (ROOT / "docs" / "language.md").read_text(), re.DOTALL)


def test_the_reference_has_examples():
    assert len(EXAMPLES) >= 10


@pytest.mark.parametrize("index", range(len(EXAMPLES)))
def test_language_reference_example_checks(tmp_path, index):
    source = EXAMPLES[index]
    spec = tmp_path / "example.arch"
    spec.write_text(source)
    (tmp_path / "lib").symlink_to(ROOT / "specs" / "lib")  # examples may import the shipped libraries
    if "network" in source:
        load(str(spec))  # raises a located ArchError if the example does not check
    else:
        module = parse(source, str(spec))
        assert module.blocks
