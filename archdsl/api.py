"""The public pipeline of archdsl: a spec file in, a report or generated code out.

    parse (parser.py) -> syntax tree (syntax.py) -> elaborate (elaborate.py) -> typed graph (graph.py)
    -> expand: shape inference (shapes.py) -> report (summary.py) | generate (backends/) -> write

    from archdsl import api

    elab = api.load("specs/resnet50.arch", {"classes": 10})   # elaborate + expand
    rows = api.report(elab)                                   # one row a layer: shapes, parameters, MACs
    api.write("resnet50.py", api.generate(elab, "torch"))

The command line, the language server, sweep and the zoo go through these functions. Nothing on this
path imports torch or tensorflow. Errors are ArchError, located in the spec (format() prints them).
Values given from outside a spec (`--set`) are parsed by archdsl.core.values; output files are written by
archdsl.util.files; archdsl.util.running runs a step on a deep stack.
"""

from __future__ import annotations

from .core.elaborate import Loader, elaborate_file
from .core.elaborate import elaborate as _elaborate_network
from .core.graph import Elaborated, Inst, Library, Program, Value
from .core.shapes import Expander
from .language.errors import ArchError
from .util.files import write_atomically
from .util.running import collector_paused, deep

TARGETS = ("torch", "keras")
OPTIMIZATIONS = ("inference",)

__all__ = ["OPTIMIZATIONS", "TARGETS", "ArchError", "Pipeline", "check", "compile_spec", "elaborate", "expand",
           "generate", "load", "report", "verify", "write"]


def elaborate(spec: str, loader: Loader | None = None, *, library: bool = False) -> Program | Library:
    """A spec file (and the files it imports) as its typed graph: a Program. With library=True a file of
    blocks without a network is a Library (its blocks elaborated); otherwise it is an error."""
    with collector_paused():
        if library:
            return deep(elaborate_file, spec, loader)
        return deep(_elaborate_network, spec, loader)


def expand(program: Program, overrides: dict[str, Value] | None = None) -> Elaborated:
    """One expansion of a program for one setting of its network parameters: every instance, its shapes,
    parameters and MACs, checked. The expansion keeps its instances itself (Elaborated.uses), so several
    expansions of one program coexist."""
    with collector_paused():
        return deep(lambda: Expander(program).run(overrides))


def load(spec: str, overrides: dict[str, Value] | None = None) -> Elaborated:
    """Parse, elaborate and shape-check a spec for one setting of its network parameters."""
    with collector_paused():
        return deep(Pipeline().load, spec, overrides)


def generate(elab: Elaborated, target: str, optimize: str | None = None) -> str:
    """Generated source code for a target ("torch" or "keras"); `optimize="inference"` gives the
    PyTorch emission for inference (in-place activations, batch norms folded, channels-last)."""
    if optimize is not None and optimize not in OPTIMIZATIONS:
        raise ArchError(f"unknown optimization '{optimize}' (optimizations: {', '.join(OPTIMIZATIONS)})")
    with collector_paused():
        return deep(_generate, elab, target, optimize)


def _generate(elab: Elaborated, target: str, optimize: str | None) -> str:
    if target == "torch":
        from .backends import torch as backend

        return backend.emit(elab, optimize)
    if target == "keras":
        if optimize is not None:
            raise ArchError(f"--optimize {optimize} is for --target torch; Keras models are optimized by "
                            "TensorFlow's own graph compiler (XLA)")
        from .backends import keras as backend_keras

        return backend_keras.emit(elab)
    raise ArchError(f"unknown target '{target}' (targets: {', '.join(TARGETS)})")


def verify(elab: Elaborated) -> None:
    """Raise the error that `compile` would report for some target, if any: `check` accepts exactly what
    both backends compile. The code generated is thrown away; a backend error says which target."""
    for target in TARGETS:
        try:
            generate(elab, target)
        except ArchError as err:
            err.notes.append(f"`archdsl compile --target {target}` cannot generate this, so check reports it")
            raise


def check(spec: str, overrides: dict[str, Value] | None = None) -> Elaborated | Library:
    """What `archdsl check` does: a spec loaded and verified for both targets, or a library's blocks
    elaborated (a library has no parameters to set)."""
    with collector_paused():
        return deep(Pipeline().check, spec, overrides)


def report(elab: Elaborated) -> list:
    """The per-layer report of an expansion (summary.Row: path, layer, shapes, parameters, MACs, ...)."""
    from .reports.summary import rows

    return rows(elab)


def compile_spec(spec: str, target: str, overrides: dict[str, Value] | None = None) -> str:
    """A spec's generated code for a target, in one call."""
    if target not in TARGETS:
        raise ArchError(f"unknown target '{target}' (targets: {', '.join(TARGETS)})")
    return generate(load(spec, overrides), target)


def write(path: str, text: str | bytes) -> None:
    """Write an output file whole or not at all (files.write_atomically)."""
    write_atomically(path, text)


class Pipeline:
    """The steps of one command over one spec, keeping what each made: the sources read (so an error is
    shown with the line it points into) and the layers checked before an error (a partial report)."""

    def __init__(self) -> None:
        self.program: Program | None = None
        self.library: Library | None = None
        self.expander: Expander | None = None

    @property
    def sources(self) -> dict[str, str] | None:
        loaded = self.program or self.library
        return loaded.sources if loaded is not None else None

    @property
    def done(self) -> list[Inst]:
        """The layers the last expansion checked, in order, up to an error if there was one."""
        return self.expander.done if self.expander is not None else []

    @property
    def per_node(self) -> dict[int, list[Inst]]:
        """The instances the last expansion made, by id of their definition node or block
        (Elaborated.per_node), up to an error if there was one."""
        return self.expander.per_node if self.expander is not None else {}

    def elaborate(self, spec: str) -> Program:
        self.program = _elaborate_network(spec)
        return self.program

    def expand(self, overrides: dict[str, Value] | None = None) -> Elaborated:
        assert self.program is not None
        self.expander = Expander(self.program)
        return self.expander.run(overrides)

    def load(self, spec: str, overrides: dict[str, Value] | None = None) -> Elaborated:
        self.elaborate(spec)
        return self.expand(overrides)

    def check(self, spec: str, overrides: dict[str, Value] | None = None) -> Elaborated | Library:
        """A spec expanded and verified for both targets, or a library (blocks, no network) elaborated."""
        program = elaborate_file(spec)
        if isinstance(program, Library):
            self.library = program
            if overrides:
                raise ArchError(f"--set {next(iter(overrides))}: '{spec}' is a library of blocks with no network, "
                                "so it has no parameters to set")
            return program
        self.program = program
        elab = self.expand(overrides)
        verify(elab)
        return elab
