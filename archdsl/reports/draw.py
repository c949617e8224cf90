"""Drawing a network: the expanded instances as a data-flow graph, written as Graphviz DOT or Mermaid.

The drawing is built from an Elaborated network (archdsl/core/shapes.py), so every layer, every
repetition and every shape is the one the check computed. Block instances become clusters labelled
with their path and block name (nested blocks nest), leaf layers become nodes with a short
description (`conv 7x7/2, 64`), and every edge carries the shape of the tensor on it (`64x56x56`).
The data flow is the real one: the definition nodes are walked in step with their instances, the
way the Expander walks them, so that concat branches fork from one tensor and meet in a `concat`
node, a residual's body and shortcut meet in a `+` node, a scale's gate meets its input in an `x`
node, and named tensors (`h = ...`, `add(a, b)`, a block's `prev: tensor` parameter) connect the
layers that really produce and consume them. Every named output ends its chain in an output node.

`to_dot` and `to_mermaid` write the text (byte for byte the same for the same spec and settings);
`render` runs Graphviz `dot` for SVG or PNG. Nothing here imports torch or tensorflow.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

from ..core import graph as G
from ..core.graph import Elaborated, Inst, Shape
from ..core.layers import LAYERS
from ..language.errors import ArchError
from .formats import DRAW_FORMATS, DRAW_SUFFIXES

FORMATS = DRAW_FORMATS

# The format an output file's name asks for.
SUFFIXES = DRAW_SUFFIXES

DOT_MISSING = ("Graphviz `dot` is not on PATH: install the system package graphviz (e.g. `apt-get install "
               "graphviz` or `brew install graphviz`), or write the graph as text with --format dot "
               "(or --format mermaid)")

# Node fill colours by layer category (layers.py), and for the other kinds of node.
_FILL = {
    "conv": "#dbe9f6", "pool": "#e2f0d9", "dense": "#fce4d6", "norm": "#ececec", "activation": "#fff2cc",
    "regularization": "#f3f3f3", "shape": "#ffffff", "misc": "#ffffff",
    "input": "#d9ead3", "output": "#f4cccc", "join": "#d9d2e9", "block": "#cfe2f3",
}
# Cluster fills by nesting level (cycled), so that nested blocks stand out from their parents.
_CLUSTER_FILL = ("#f7f7f7", "#eef3f8", "#f8f4ec", "#f1f7ee")

# Words Mermaid reads as syntax: never used as node or subgraph ids.
_RESERVED = frozenset({"end", "graph", "subgraph", "flowchart", "style", "class", "classdef", "click",
                       "linkstyle", "direction", "default", "node", "edge", "digraph", "strict"})


# The drawing -------------------------------------------------------------------------------------

@dataclass
class DrawNode:
    """One box of the drawing: a layer, a collapsed block, a join, the input or an output."""

    id: str
    label: str  # lines separated by "\n"
    kind: str  # a layer category (conv, pool, ...) or input, output, join, block
    tooltip: str = ""


@dataclass
class Cluster:
    """A block instance drawn expanded: its nodes and the clusters of the blocks it calls."""

    id: str
    label: str
    items: list[DrawNode | Cluster] = field(default_factory=list)

    def has_nodes(self) -> bool:
        """Whether anything is drawn inside (a block whose body passes its input on draws nothing)."""
        return any(isinstance(i, DrawNode) or i.has_nodes() for i in self.items)

    def clusters(self) -> Iterator[Cluster]:
        """The clusters inside this one, depth first, those with nothing drawn left out."""
        for item in self.items:
            if isinstance(item, Cluster) and item.has_nodes():
                yield item
                yield from item.clusters()


@dataclass(frozen=True)
class Edge:
    tail: str
    head: str
    label: str  # the shape of the tensor, e.g. 64x56x56


@dataclass
class Drawing:
    """A network as nodes, nested clusters and shape-labelled edges, ready to be written out."""

    title: str
    root: Cluster  # the network itself: its id and label are not drawn as a cluster
    edges: list[Edge]
    # the first nodes of a concat's branches, in the spec's order (the channels' order): drawn side by
    # side from left to right
    rows: list[list[str]] = field(default_factory=list)

    def nodes(self) -> Iterator[DrawNode]:
        stack: list[DrawNode | Cluster] = [self.root]
        while stack:
            item = stack.pop()
            if isinstance(item, DrawNode):
                yield item
            else:
                stack.extend(reversed(item.items))


class _Port(NamedTuple):
    """A tensor in the drawing: the node that produces it and its shape."""

    node: str
    shape: Shape


# Building ----------------------------------------------------------------------------------------

def build(elab: Elaborated, depth: int | None = None) -> Drawing:
    """The drawing of an expanded network. `depth` is how many levels of nested blocks are drawn
    expanded, as clusters; a block nested deeper is one node. None expands every level; 0 draws
    every block called from the network body as one node."""
    if depth is not None and depth < 0:
        raise ArchError(f"--depth must be at least 0, got {depth}")
    return _Builder(elab, depth).build()


class _Builder:
    def __init__(self, elab: Elaborated, depth: int | None) -> None:
        self.elab = elab
        self.depth = depth
        self.level = 0  # how many expanded blocks enclose the place being drawn
        self.ids: set[str] = set()
        self.edges: list[Edge] = []
        net = elab.program.network
        self.root = Cluster(self._id("network"), net.name)
        self.stack = [self.root]
        self.outputs = 0
        self.added: list[str] = []  # node ids, in the order they are drawn
        self.rows: list[list[str]] = []

    def build(self) -> Drawing:
        root = self.elab.root
        net = self.elab.program.network
        port = self._add(self._id("input"), f"input\n{shape_text(root.in_shape)}", "input",
                         f"input {root.in_shape}", root.in_shape)
        end = self._seq(net.body, iter(root.children), port, {"in": port})
        if self.outputs == 0:  # no `output` statement: the end of the main path is the output
            self._output(self.elab.outputs[0][0], end)
        total = root.total_params()
        title = f"{net.name}: {total:,} params, {root.total_macs():,} MACs"
        return Drawing(title, self.root, self.edges, self.rows)

    # ids, nodes and edges

    def _id(self, base: str) -> str:
        """A fresh id made of letters, digits and underscores, from a path or a name."""
        stem = re.sub(r"[^A-Za-z0-9_]", "_", base) or "node"
        if stem[0].isdigit():
            stem = "n" + stem
        candidate, k = stem, 1
        while candidate in self.ids or candidate.lower() in _RESERVED:
            k += 1
            candidate = f"{stem}_{k}"
        self.ids.add(candidate)
        return candidate

    def _add(self, node_id: str, label: str, kind: str, tooltip: str, shape: Shape,
             inputs: tuple[_Port, ...] = ()) -> _Port:
        self.stack[-1].items.append(DrawNode(node_id, label, kind, tooltip))
        self.added.append(node_id)
        for port in inputs:
            self.edges.append(Edge(port.node, node_id, shape_text(port.shape)))
        return _Port(node_id, shape)

    def _output(self, name: str, port: _Port) -> None:
        self.outputs += 1
        title = "output" if name == "output" else f"output {name}"
        if name in self.elab.auxiliary:
            title = f"auxiliary {title}"
        self._add(self._id(f"output_{name}"), f"{title}\n{shape_text(port.shape)}", "output",
                  f"{title} {port.shape}", port.shape, (port,))

    # walking the definitions in step with the instances (as shapes.Expander does)

    def _seq(self, seq: G.Seq, children: Iterator[Inst], port: _Port, tensors: dict[str, _Port]) -> _Port:
        """Draw the items of a body from `port`, taking their instances from `children` in order;
        returns the tensor the body ends with. `tensors` holds the named tensors of the enclosing
        block (shared with nested bodies, as in the Expander)."""
        for item in seq.items:
            if isinstance(item, G.Load):
                port = tensors[item.name]
            elif isinstance(item, G.Store):
                tensors[item.name] = port
            elif isinstance(item, (G.Let, G.Check, G.Freeze)):
                continue
            elif isinstance(item, G.Output):  # a side output taps the main path, which goes on
                inst = _next(children, item)
                end = port if item.body is None else self._seq(item.body, iter(inst.children), port, tensors)
                self._output(item.name, end)
            else:
                port = self._node(item, _next(children, item), port, tensors)
        return port

    def _node(self, node: G.Node, inst: Inst, port: _Port, tensors: dict[str, _Port]) -> _Port:
        if isinstance(node, G.Layer):
            return self._add(self._id(inst.path), layer_label(inst), LAYERS[inst.kind].category, _tooltip(inst),
                             inst.out_shape, (port,))
        if isinstance(node, G.BlockCall):
            return self._block(node, inst, port, tensors)
        if isinstance(node, G.Merge):
            inputs = tuple(tensors[r.name] for r in node.inputs)
            label = {"add": "+", "mul": "*"}.get(node.op, "concat")
            return self._add(self._id(inst.path), label, "join",
                             f"{inst.path}: {node.op}({', '.join(r.name for r in node.inputs)}) -> {inst.out_shape}",
                             inst.out_shape, inputs)
        if isinstance(node, G.Seq):
            return self._seq(node, iter(inst.children), port, tensors)
        if isinstance(node, G.Repeat):
            for child in inst.children:
                if child.node is not node.body:
                    raise RuntimeError(f"drawing out of step with the expansion at {child.path}")
                port = self._node(node.body, child, port, tensors)
            return port
        if isinstance(node, G.Choice):
            chosen = node.then if inst.args["condition"] else node.otherwise
            return self._seq(chosen, iter(inst.children), port, tensors)
        children = iter(inst.children)
        if isinstance(node, G.Concat):
            ends, firsts = [], []
            for branch in node.branches:
                count = len(self.added)
                ends.append(self._seq(branch, children, port, tensors))
                if len(self.added) > count:  # (an empty branch passes its input on: no node)
                    firsts.append(self.added[count])
            if len(firsts) > 1:
                self.rows.append(firsts)
            return self._add(self._id(inst.path), "concat", "join", f"{inst.path}: concat -> {inst.out_shape}",
                             inst.out_shape, tuple(ends))
        if isinstance(node, G.Residual):
            body = self._seq(node.body, children, port, tensors)
            shortcut = self._seq(node.shortcut, children, port, tensors) if inst.args["shortcut"] else port
            rate = inst.args.get("drop_path") or 0.0
            tip = f"{inst.path}: residual add -> {inst.out_shape}" + (f", drop_path {rate:g}" if rate else "")
            return self._add(self._id(inst.path), "+", "join", tip, inst.out_shape, (body, shortcut))
        if isinstance(node, G.Scale):
            gate = self._seq(node.body, children, port, tensors)
            return self._add(self._id(inst.path), "x", "join", f"{inst.path}: scale -> {inst.out_shape}",
                             inst.out_shape, (port, gate))
        raise TypeError(node)  # pragma: no cover

    def _block(self, node: G.BlockCall, inst: Inst, port: _Port, tensors: dict[str, _Port]) -> _Port:
        block = inst.block
        assert block is not None
        extra = {}
        for p in block.tensor_params:
            ref = node.args[p.name]
            assert isinstance(ref, G.TensorRef)
            extra[p.name] = tensors[ref.name]
        name = f"{inst.path} ({block.name})" if inst.path else block.name
        if self.depth is not None and self.level >= self.depth:  # collapsed: one node
            params = inst.total_params()
            label = f"{name}\n{shape_text(inst.out_shape)}, {params:,} params"
            tip = f"{name}: {inst.in_shape} -> {inst.out_shape}, {params:,} params, {inst.total_macs():,} MACs"
            end = self._add(self._id(inst.path or block.name), label, "block", tip, inst.out_shape,
                            (port, *extra.values()))
            for name, shape in zip(node.unpack, inst.taps, strict=True):  # a base's feature maps leave it too
                tensors[name] = _Port(end.node, shape)
            return end
        cluster = Cluster(self._id(f"cluster_{inst.path or block.name}"), name)
        self.stack[-1].items.append(cluster)
        self.stack.append(cluster)
        self.level += 1
        inner = {"in": port, **extra}
        try:
            end = self._seq(block.body, iter(inst.children), port, inner)
        finally:
            self.level -= 1
            self.stack.pop()
        for name, tap in zip(node.unpack, block.taps, strict=True):
            tensors[name] = inner[tap]
        return end


def _next(children: Iterator[Inst], node: G.Node) -> Inst:
    inst = next(children, None)
    if inst is None or inst.node is not node:
        raise RuntimeError(f"drawing out of step with the expansion at {node.span}")
    return inst


# Labels ------------------------------------------------------------------------------------------

def shape_text(shape: Shape) -> str:
    """A shape as an edge label: `64x56x56`, `1000` for a flat one, `?` for an open size."""
    return "x".join("?" if d is None else str(d) for d in shape.dims)


def describe_layer(inst: Inst) -> str:
    """A layer in a few characters, as a lecture slide writes it (`conv 7x7/2, 64`): its catalog entry's
    description."""
    return LAYERS[inst.kind].description(inst.args)


def layer_label(inst: Inst) -> str:
    """The node label of a layer: its description, after the name the spec gave it if any."""
    text = describe_layer(inst)
    name = inst.node.label if inst.node is not None else None
    return f"{name}: {text}" if name and name != inst.kind else text


def _tooltip(inst: Inst) -> str:
    return (f"{inst.path}: {inst.kind}, {inst.in_shape} -> {inst.out_shape}, {inst.params:,} params, "
            f"{inst.macs:,} MACs")


# Writing -----------------------------------------------------------------------------------------

def _dot_str(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _dot_node(node: DrawNode) -> str:
    attrs = [f"label={_dot_str(node.label)}", f"fillcolor={_dot_str(_FILL.get(node.kind, '#ffffff'))}"]
    if node.kind == "join":
        if node.label in ("+", "x"):
            attrs += ["shape=circle", "width=0.3", "height=0.3", "fixedsize=true", "fontsize=12"]
        else:
            attrs += ["fontsize=9"]
    elif node.kind == "output":
        attrs += ['style="filled,bold"', "peripheries=2"]
    elif node.kind == "input":
        attrs += ['style="filled,bold"']
    elif node.kind == "block":
        attrs += ["shape=box3d", 'style="filled"']
    if node.tooltip:
        attrs.append(f"tooltip={_dot_str(node.tooltip)}")
    return f"{_dot_str(node.id)} [{', '.join(attrs)}];"


def to_dot(drawing: Drawing) -> str:
    """The drawing as Graphviz DOT text: `dot -Tsvg` draws it, top to bottom."""
    lines = [
        f"// {drawing.title} (archdsl graph)",
        f"digraph {_dot_str(drawing.root.label)} {{",
        ('  graph [rankdir=TB, newrank=true, fontname="Helvetica", fontsize=12, labelloc=t, nodesep=0.3, '
         f"ranksep=0.35, label={_dot_str(drawing.title)}];"),
        ('  node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=10, height=0.3, '
         'color="#666666"];'),
        '  edge [fontname="Helvetica", fontsize=8, color="#555555", fontcolor="#333333", arrowsize=0.6];',
    ]

    def emit(cluster: Cluster, level: int) -> None:
        pad = "  " * (level + 1)
        for item in cluster.items:
            if isinstance(item, DrawNode):
                lines.append(pad + _dot_node(item))
            elif item.has_nodes():
                lines.append(f"{pad}subgraph {_dot_str(item.id)} {{")
                lines.append(f"{pad}  label={_dot_str(item.label)}; style=\"rounded,filled\"; "
                             f"fillcolor={_dot_str(_CLUSTER_FILL[level % len(_CLUSTER_FILL)])}; "
                             f'color="#999999"; fontsize=10;')
                emit(item, level + 1)
                lines.append(f"{pad}}}")

    emit(drawing.root, 0)
    for row in drawing.rows:  # a concat's branches left to right, in the order of its channels
        lines.append(f"  {{rank=same; {' -> '.join(_dot_str(n) for n in row)} [style=invis];}}")
    for e in drawing.edges:
        lines.append(f"  {_dot_str(e.tail)} -> {_dot_str(e.head)} [label={_dot_str(' ' + e.label)}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _mermaid_str(text: str) -> str:
    text = text.replace("&", "#amp;").replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;")
    return '"' + text.replace("\n", "<br/>") + '"'


_MERMAID_SHAPES = {"input": ("([", "])"), "output": ("{{", "}}"), "block": ("[[", "]]")}


# Mermaid's default limits, which a diagram cannot raise (they are among its `secure` settings: only the
# renderer's own configuration, mermaid.initialize or mmdc --configFile, sets them)
MERMAID_MAX_EDGES = 500
MERMAID_MAX_TEXT = 50_000


def fits_mermaid(drawing: Drawing, text: str) -> bool:
    return len(drawing.edges) <= MERMAID_MAX_EDGES and len(text) <= MERMAID_MAX_TEXT


def mermaid(elab: Elaborated, depth: int | None = None, fenced: bool = False) -> tuple[str, str | None]:
    """The network as Mermaid text that renders with Mermaid's default limits (500 edges, 50,000
    characters), and a note on what was done for that (None if nothing). With depth None, every level
    of blocks is expanded that fits: where the whole network does not, the blocks nested deeper than the
    deepest level that fits are folded, one node each, and the diagram's title says so. An explicit
    depth is drawn as asked; the note then says which limits it passes."""
    full = build(elab, depth)
    text = to_mermaid(full)
    limits = f"Mermaid's default limits ({MERMAID_MAX_EDGES} edges, {MERMAID_MAX_TEXT:,} characters)"
    size = f"{len(full.edges)} edges and {len(text):,} characters"
    config = "maxEdges, maxTextSize: mermaid.initialize, or mmdc --configFile"
    if fits_mermaid(full, text):
        return to_mermaid(full, fenced), None
    if depth is not None:
        return to_mermaid(full, fenced), (f"--depth {depth}: {size}, over {limits}; only the renderer's "
                                          f"configuration raises them ({config}), or draw fewer levels with a "
                                          "smaller --depth")
    chosen: tuple[int, Drawing] | None = None
    level = 0
    while True:
        drawing = build(elab, level)
        if not fits_mermaid(drawing, to_mermaid(drawing)) or len(drawing.edges) == len(full.edges):
            break
        chosen = (level, drawing)
        level += 1
    if chosen is None:
        drawing = build(elab, 0)
        note = (f"even with every block folded (--depth 0) the diagram has {len(drawing.edges)} edges and "
                f"{len(to_mermaid(drawing)):,} characters, over {limits}; only the renderer's configuration "
                f"raises them ({config})")
        return to_mermaid(drawing, fenced, note), note
    level, drawing = chosen
    folded = "every block the network calls as one node" if level == 0 else \
        f"blocks nested deeper than {level} as one node each"
    note = (f"drawn at --depth {level}, {folded}: the whole network has {size}, over {limits}, which only "
            f"the renderer's configuration raises ({config}); --depth N chooses the levels")
    title = f"{drawing.title}; drawn at --depth {level} ({folded}) to stay within Mermaid's default limits"
    return to_mermaid(drawing, fenced, title), note


def to_mermaid(drawing: Drawing, fenced: bool = False, title: str | None = None) -> str:
    """The drawing as a Mermaid flowchart (`flowchart TB`, one subgraph per expanded block), for
    Markdown documentation; `fenced` wraps it in a ```mermaid block; `title` is shown above it (a
    front-matter title)."""
    kinds = sorted({n.kind for n in drawing.nodes()})
    lines = ["flowchart TB", f"  %% {drawing.title} (archdsl graph)"]
    if title is not None:
        lines[:0] = ["---", f"title: {_mermaid_str(title)}", "---"]
    lines += [f"  classDef {k} fill:{_FILL.get(k, '#ffffff')},stroke:#666666" for k in kinds]

    def emit(cluster: Cluster, level: int) -> None:
        pad = "  " * (level + 1)
        for item in cluster.items:
            if isinstance(item, DrawNode):
                if item.kind == "join" and item.label in ("+", "x"):
                    opening, closing = "((", "))"
                else:
                    opening, closing = _MERMAID_SHAPES.get(item.kind, ("[", "]"))
                lines.append(f"{pad}{item.id}{opening}{_mermaid_str(item.label)}{closing}:::{item.kind}")
            elif item.has_nodes():
                lines.append(f"{pad}subgraph {item.id} [{_mermaid_str(item.label)}]")
                emit(item, level + 1)
                lines.append(f"{pad}end")

    emit(drawing.root, 0)
    for e in drawing.edges:
        lines.append(f"  {e.tail} -->|{e.label}| {e.head}")
    text = "\n".join(lines) + "\n"
    return f"```mermaid\n{text}```\n" if fenced else text


# Graphviz ----------------------------------------------------------------------------------------

def find_dot() -> str:
    """The path of Graphviz's `dot`, or an error that says how to install it."""
    path = shutil.which("dot")
    if path is None:
        raise ArchError(DOT_MISSING)
    return path


def render(dot_text: str, fmt: str) -> bytes:
    """SVG or PNG drawn by Graphviz `dot` from DOT text."""
    if fmt not in ("svg", "png"):
        raise ArchError(f"dot renders svg or png, not '{fmt}'")
    dot = find_dot()
    try:
        done = subprocess.run([dot, f"-T{fmt}"], input=dot_text.encode("utf-8"), capture_output=True, check=False)
    except OSError as e:
        raise ArchError(f"cannot run '{dot}': {e.strerror or e}") from None
    if done.returncode != 0:
        detail = done.stderr.decode("utf-8", "replace").strip() or f"exit status {done.returncode}"
        raise ArchError(f"Graphviz dot failed: {detail}")
    return done.stdout
