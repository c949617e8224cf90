"""The zoo: every network in specs/, its reference implementations and what is verified against
them, from the registry files specs/zoo/*.toml. `archdsl zoo` renders docs/zoo.md from it; the
tests (tests/test_zoo.py) check every claim the registry makes.

A registry entry (one TOML table; its key names the entry, and the spec unless `spec` is given):

    [resnet50]
    title = "ResNet-50"
    paper = "He et al., 2015"
    variant = "torchvision layout (v1.5)"
    sets = { }                               # --set values that make this entry from the spec
    test_sets = { }                          # more --set values for the forward/parity tests only
    torch_reference = "torchvision:resnet50" # or "timm:NAME"; built with weights=None / pretrained=False
    torch_reference_args = { }
    keras_reference = "ResNet50"             # keras.applications NAME, built with weights=None
    keras_reference_args = { }
    params = 25557032                        # where no reference exists: the published count
    params_source = "the paper's Table 1"
    output = -1                              # which of the spec's outputs the references compute
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from ..api import load
from ..core.graph import Value
from ..core.layers import describe
from ..language.errors import ArchError

_FIELDS = {"spec", "title", "paper", "variant", "sets", "test_sets", "torch_reference", "torch_reference_args",
           "keras_reference", "keras_reference_args", "params", "params_source", "output", "notes"}


@dataclass
class Entry:
    key: str
    spec: str
    title: str
    paper: str = ""
    variant: str = ""
    sets: dict[str, Value] = field(default_factory=dict)
    test_sets: dict[str, Value] = field(default_factory=dict)
    torch_reference: str | None = None
    torch_reference_args: dict = field(default_factory=dict)
    keras_reference: str | None = None
    keras_reference_args: dict = field(default_factory=dict)
    params: int | None = None
    params_source: str = ""
    output: int = -1
    notes: str = ""

    def spec_path(self, root: Path) -> Path:
        return root / "specs" / f"{self.spec}.arch"


def _values(table: dict) -> dict[str, Value]:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in table.items()}


def read_registry(root: Path) -> list[Entry]:
    """Every entry of specs/zoo/*.toml, in file order then table order."""
    entries: list[Entry] = []
    seen: dict[str, str] = {}
    for path in sorted((root / "specs" / "zoo").glob("*.toml")):
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as e:
            raise ArchError(f"{path}: {e}") from None
        for key, table in data.items():
            unknown = set(table) - _FIELDS
            if unknown:
                raise ArchError(f"{path}: [{key}] has unknown fields: {', '.join(sorted(unknown))}")
            if key in seen:
                raise ArchError(f"{path}: [{key}] is also in {seen[key]}")
            seen[key] = str(path)
            entry = Entry(key=key, spec=table.get("spec", key), title=table.get("title", key),
                          **{k: v for k, v in table.items() if k not in ("spec", "title")})
            entry.sets, entry.test_sets = _values(entry.sets), _values(entry.test_sets)
            entries.append(entry)
    return entries


def _human(n: int) -> str:
    for div, unit in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if n >= div:
            return f"{n / div:.3g} {unit}"
    return str(n)


def _reference(entry: Entry) -> str:
    refs = []
    if entry.torch_reference:
        lib, _, name = entry.torch_reference.partition(":")
        args = "".join(f", {k}={v!r}" for k, v in entry.torch_reference_args.items())
        refs.append(f"`{lib}.{'models.' if lib == 'torchvision' else ''}{name}(weights=None{args})`"
                    if lib == "torchvision" else f"`{lib}.create_model({name!r}{args})`")
    if entry.keras_reference:
        args = "".join(f", {k}={v!r}" for k, v in entry.keras_reference_args.items())
        refs.append(f"`keras.applications.{entry.keras_reference}(weights=None{args})`")
    if not refs and entry.params is not None:
        refs.append(f"published count ({entry.params_source or 'the paper'})")
    return "<br>".join(refs) or "none"


def _parity(entry: Entry) -> str:
    checks = ["PyTorch = Keras"]
    if entry.torch_reference:
        checks.append(f"= {entry.torch_reference.split(':')[0]} outputs")
    if entry.keras_reference:
        checks.append("= keras.applications outputs")
    if not entry.torch_reference and not entry.keras_reference and entry.params is not None:
        checks.append("params = published")
    return "; ".join(checks)


def render(root: Path) -> str:
    """docs/zoo.md: one row per registry entry, numbers from the specs at their default input."""
    entries = read_registry(root)
    lines = [
        "# The zoo",
        "",
        "Every network archdsl ships a spec for, with its size at the spec's default input, the reference",
        "implementation it is checked against, and what the tests verify (`tests/test_zoo.py`): the",
        "parameter count equals every reference's; \"PyTorch = Keras\" means the PyTorch weights converted",
        "into the generated Keras model give the same outputs (max abs difference <= 1e-4, eval mode);",
        "\"= torchvision outputs\" (timm, keras.applications) means the reference's weights loaded into the",
        "generated model give the reference's outputs. MACs count the multiply-accumulates of convolution",
        "and dense weights.",
        "",
        "Written by `archdsl zoo -o docs/zoo.md` from `specs/zoo/*.toml` and the specs; do not edit.",
        "",
        "| network | spec | input | params | MACs | reference | verified |",
        "|---|---|---|---:|---:|---|---|",
    ]
    for e in entries:
        elab = load(str(e.spec_path(root).relative_to(root)) if e.spec_path(root).is_relative_to(root)
                    else str(e.spec_path(root)), e.sets)
        root_inst = elab.root
        sets = " ".join(f"`{k} = {describe(v)}`" for k, v in e.sets.items())
        spec = f"[`{e.spec}.arch`](../specs/{e.spec}.arch)" + (f" {sets}" if sets else "")
        title = e.title + (f" ({e.variant})" if e.variant else "")
        if e.paper:
            title += f"<br>*{e.paper}*"
        lines.append(f"| {title} | {spec} | {root_inst.in_shape} | {root_inst.total_params():,} | "
                     f"{_human(root_inst.total_macs())} | {_reference(e)} | {_parity(e)} |")
    return "\n".join(lines) + "\n"
