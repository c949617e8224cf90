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

A reference that no library builds whole (a library's base with the head a book adds, frozen as the
book freezes it) is a function of a Python module beside the registry files: "MODULE:FUNCTION", as
torch_reference (any MODULE but torchvision and timm) or keras_reference, names FUNCTION of
specs/zoo/MODULE.py (specs/zoo/references.py). It is called with the entry's reference arguments, a
Keras builder with input_shape = (height, width, channels) too, and builds the model without weights.
The tests check what it leaves trainable against the spec's freeze statements at the entry's sets.
"""

from __future__ import annotations

import importlib.util
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

    def torch_builder(self) -> str | None:
        """The PyTorch reference where it is a builder of specs/zoo/MODULE.py ("MODULE:FUNCTION")."""
        lib = (self.torch_reference or "").partition(":")[0]
        return self.torch_reference if self.torch_reference and lib not in _LIBRARIES else None

    def keras_builder(self) -> str | None:
        """The Keras reference where it is a builder of specs/zoo/MODULE.py ("MODULE:FUNCTION")."""
        return self.keras_reference if self.keras_reference and ":" in self.keras_reference else None


_LIBRARIES = ("torchvision", "timm")


def reference_builder(root: Path, reference: str):
    """The function a reference "MODULE:FUNCTION" names: FUNCTION of specs/zoo/MODULE.py, the module
    imported from its path (it imports torch or keras only when a builder runs)."""
    module, _, function = reference.partition(":")
    path = root / "specs" / "zoo" / f"{module}.py"
    spec = importlib.util.spec_from_file_location(f"archdsl_zoo_{module}", path)
    loaded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    return getattr(loaded, function)


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
            for builder in (entry.torch_builder(), entry.keras_builder()):
                module, _, function = (builder or "").partition(":")
                if builder and not (function and (root / "specs" / "zoo" / f"{module}.py").is_file()):
                    raise ArchError(f"{path}: [{key}] reference {builder!r}: no specs/zoo/{module}.py, or no function")
            entries.append(entry)
    return entries


def _human(n: int) -> str:
    for div, unit in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if n >= div:
            return f"{n / div:.3g} {unit}"
    return str(n)


def _reference(entry: Entry) -> str:
    refs = []
    for builder, framework in ((entry.torch_builder(), "PyTorch"), (entry.keras_builder(), "Keras")):
        if builder:
            module, _, function = builder.partition(":")
            refs.append(f"[`{module}.{function}`](../specs/zoo/{module}.py) ({framework})")
    if entry.torch_reference and not entry.torch_builder():
        lib, _, name = entry.torch_reference.partition(":")
        args = "".join(f", {k}={v!r}" for k, v in entry.torch_reference_args.items())
        refs.append(f"`{lib}.{'models.' if lib == 'torchvision' else ''}{name}(weights=None{args})`"
                    if lib == "torchvision" else f"`{lib}.create_model({name!r}{args})`")
    if entry.keras_reference and not entry.keras_builder():
        args = "".join(f", {k}={v!r}" for k, v in entry.keras_reference_args.items())
        refs.append(f"`keras.applications.{entry.keras_reference}(weights=None{args})`")
    if not refs and entry.params is not None:
        refs.append(f"published count ({entry.params_source or 'the paper'})")
    return "<br>".join(refs) or "none"


def _parity(entry: Entry) -> str:
    checks = ["PyTorch = Keras"]
    if entry.torch_reference:
        checks.append("= PyTorch reference outputs" if entry.torch_builder()
                      else f"= {entry.torch_reference.split(':')[0]} outputs")
    if entry.keras_reference:
        checks.append("= Keras reference outputs" if entry.keras_builder() else "= keras.applications outputs")
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
        "and dense weights. A network with frozen parts (`freeze`) shows how many of its parameters train;",
        "both frameworks' models and every reference train exactly those. A reference in",
        "[`specs/zoo/references.py`](../specs/zoo/references.py) is composed as its book writes it: a",
        "library's base (weights=None), the book's head, frozen as the book freezes it.",
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
        params = f"{root_inst.total_params():,}"
        if root_inst.trainable_params() != root_inst.total_params():
            params += f"<br>{root_inst.trainable_params():,} trainable"
        lines.append(f"| {title} | {spec} | {root_inst.in_shape} | {params} | "
                     f"{_human(root_inst.total_macs())} | {_reference(e)} | {_parity(e)} |")
    return "\n".join(lines) + "\n"
