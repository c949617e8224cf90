"""The examples in docs/language.md are real: each parses, and each that states a network checks."""

from __future__ import annotations

import os
import re

import pytest

from archdsl.api import generate, load
from archdsl.language.parser import parse

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
    for shipped in (ROOT / "specs").glob("*.arch"):  # and the shipped networks, as bases
        (tmp_path / shipped.name).symlink_to(shipped)
    if "network" in source:
        load(str(spec))  # raises a located ArchError if the example does not check
    else:
        module = parse(source, str(spec))
        assert module.blocks


def test_readme_example_is_what_the_compiler_writes(tmp_path):
    """The README's PyTorch code (between <!-- generated-example --> markers) is the compile of its
    example spec, as it is today, and `check` prints the line the README shows."""
    readme = (ROOT / "README.md").read_text()
    spec = re.search(r"```\n(# A small residual network.*?)```", readme, re.DOTALL).group(1)
    shown = re.search(r"<!-- generated-example -->\n```python\n(.*?)```\n<!-- /generated-example -->", readme,
                      re.DOTALL).group(1)
    (tmp_path / "tiny_resnet.arch").write_text(spec)
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        elab = load("tiny_resnet.arch")
        code = generate(elab, "torch")
    finally:
        os.chdir(cwd)
    assert shown.strip() in code
    params = f"{elab.root.total_params():,} params"
    assert f"ok: tiny_resnet.arch: network TinyResNet, {params}" in readme
