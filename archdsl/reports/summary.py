"""The per-layer report: output shapes, parameters, multiply-accumulates, activations, receptive field.

Pure functions over an Elaborated (or over the list of layer instances a failed check got through,
`Expander.done`), so the CLI and later tools share one table. Numbers count one sample (the batch is
symbolic); MACs are weight multiply-accumulates of convolutions and dense layers, never FLOPs.

Activations are counted in two conventions (ACTIVATIONS): `all`, every layer's output elements (not
the input), and `lecture`, the memory of a forward pass as CS231n's VGG-16 slide counts it: the input
and the outputs of the convolution, pooling and dense layers (catalog categories LECTURE_CATEGORIES),
a pooling whose output is its input left out. Where a network has auxiliary outputs, the totals also
give the network without the layers of its auxiliary heads (Totals.without_auxiliary).
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction

from ..core.graph import Elaborated, Inst, Shape
from ..core.layers import LAYERS
from .formats import ACTIVATIONS, DTYPE_BYTES, FORMATS

# Instance kinds that are structure, not layers: they never make a row of the table.
COMPOSITE_KINDS = frozenset({"group", "repeat", "choice", "concat", "residual", "scale", "output", "seq"})

COLUMNS = ("path", "layer", "output shape", "params", "MACs", "activations", "receptive field")
# The parameter counts the JSON and CSV reports always carry, beside `params` (see Counts)
COUNT_FIELDS = ("trainable_params", "frozen_params", "bn_statistics", "keras_params", "keras_non_trainable_params")
# The columns the CSV report adds after `frozen`: weights and biases apart, and the lecture's activations
LECTURE_FIELDS = ("weights", "biases", "lecture_activations")

# The catalog categories whose outputs the lecture's convention counts, with the input (ACTIVATIONS)
LECTURE_CATEGORIES = frozenset({"conv", "pool", "dense"})


class Counts:
    """The parameter counts of a row or of the totals, in both conventions. archdsl's (PyTorch's
    parameters()): `params`, of which `trainable_params` train and `frozen_params` are frozen by a
    `freeze` statement. Keras' (count_params(), model.summary()): each batch norm's moving mean and
    variance are weights too, non-trainable ones, so `keras_params` = params + bn_statistics and
    `keras_non_trainable` = frozen_params + bn_statistics (Keras' trainable count is trainable_params)."""

    params: int
    trainable: int | None  # None: every param trains
    bn_statistics: int
    biases: int  # the params that are biases (additive terms: LayerType.biases); the rest are weights

    @property
    def weights(self) -> int:
        """The params that are not biases: kernels, dense matrices, norms' scales."""
        return self.params - self.biases

    @property
    def trainable_params(self) -> int:
        return self.params if self.trainable is None else self.trainable

    @property
    def frozen_params(self) -> int:
        return self.params - self.trainable_params

    @property
    def keras_params(self) -> int:
        return self.params + self.bn_statistics

    @property
    def keras_non_trainable(self) -> int:
        return self.frozen_params + self.bn_statistics

    def counts(self) -> dict[str, int]:
        """The counts under their names in the JSON and CSV reports (COUNT_FIELDS)."""
        return dict(zip(COUNT_FIELDS, (self.trainable_params, self.frozen_params, self.bn_statistics,
                                       self.keras_params, self.keras_non_trainable)))


@dataclass(frozen=True)
class Row(Counts):
    """One leaf layer of the expanded network."""

    path: str
    layer: str  # the layer type, e.g. "conv"
    in_shape: Shape
    out_shape: Shape
    params: int
    macs: int | None  # None where an open input size (`?`) leaves it unknown
    activations: int | None  # output elements; None where a size is open
    # receptive field size and jump at the output, in input pixels; after an upsampling the jump is a
    # fraction of a pixel, and the size is then rounded up to the pixels it touches
    rf: tuple[int | Fraction, int | Fraction] | None
    layers: int = 1  # how many layers the row stands for (more than one for a collapsed block)
    trainable: int | None = None  # the params a `freeze` leaves trainable; None: all of them
    frozen_layers: int = 0  # how many of its layers are frozen
    bn_statistics: int = 0  # batch-norm running mean and variance elements (buffers, not params)
    biases: int = 0
    # the lecture's activations: the output elements of the layers it counts (lecture_layers of them);
    # None where a size is open
    lecture: int | None = 0
    lecture_layers: int = 0
    auxiliary: bool = False  # a layer of an auxiliary head (`auxiliary output`), computed in training only

    @property
    def frozen(self) -> bool:
        """Every layer of the row is frozen."""
        return self.frozen_layers == self.layers

    @property
    def frozen_mark(self) -> str:
        """The table's mark: 'yes' (frozen), 'partly' (a collapsed row with some layers frozen) or ''."""
        return "yes" if self.frozen else "partly" if self.frozen_layers else ""

    @property
    def rf_size(self) -> int | None:
        return None if self.rf is None else math.ceil(self.rf[0])

    @property
    def rf_jump(self) -> int | float | None:
        if self.rf is None:
            return None
        jump = self.rf[1]
        return int(jump) if jump == int(jump) else round(float(jump), 4)

    @property
    def rf_text(self) -> str:
        return "-" if self.rf is None else f"{self.rf_size}/{self.rf_jump}"


@dataclass(frozen=True)
class Totals(Counts):
    layers: int
    params: int
    macs: int | None
    activations: int | None
    dtype: str
    trainable: int | None = None  # None: every param trains
    frozen_layers: int = 0  # leaf layers under a `freeze`
    bn_statistics: int = 0
    biases: int = 0
    input_activations: int | None = 0  # the input's elements, which the lecture counts
    layer_lecture: int | None = 0  # the lecture's activations of the layers (the input not included)
    convention: str = "all"  # the activations the table shows (ACTIVATIONS)
    auxiliary: tuple[str, ...] = ()  # the auxiliary outputs, whose heads without_auxiliary leaves out
    without_auxiliary: Totals | None = None  # the totals without the auxiliary heads' layers, where there are some

    @property
    def activation_bytes(self) -> int | None:
        return None if self.activations is None else self.activations * DTYPE_BYTES[self.dtype]

    @property
    def lecture_activations(self) -> int | None:
        """The lecture's count: the input and the outputs of the convolutions, poolings and dense layers."""
        return _sum((self.input_activations, self.layer_lecture))

    @property
    def lecture_activation_bytes(self) -> int | None:
        n = self.lecture_activations
        return None if n is None else n * DTYPE_BYTES[self.dtype]

    @property
    def shown_activations(self) -> int | None:
        """The activations in the convention the table shows."""
        return self.lecture_activations if self.convention == "lecture" else self.activations

    @property
    def param_bytes(self) -> int:
        """The memory the parameters take at the dtype."""
        return self.params * DTYPE_BYTES[self.dtype]

    @property
    def keras_param_bytes(self) -> int:
        """The memory of Keras' weights at the dtype (the batch-norm moving statistics too)."""
        return self.keras_params * DTYPE_BYTES[self.dtype]


def is_layer(inst: Inst) -> bool:
    """A leaf layer: an instance of a built-in layer type (block calls and composites are not)."""
    return inst.block is None and inst.kind not in COMPOSITE_KINDS and inst.kind in LAYERS


def layer_insts(elab: Elaborated) -> list[Inst]:
    """The leaf layers of an expanded network, in the order the data flows through the spec."""
    return [i for i in elab.root.walk() if is_layer(i)]


def lecture_counts(inst: Inst) -> bool:
    """Whether the lecture's convention counts a layer's output: a convolution, pooling or dense layer
    (by its catalog category), except a pooling whose output is its input (the same shape through a
    window of one pixel at stride 1: torchvision VGG's adaptive_avgpool(7) on its 7x7 map)."""
    ltype = LAYERS.get(inst.kind)
    if ltype is None or ltype.category not in LECTURE_CATEGORIES:
        return False
    if ltype.category == "pool" and inst.out_shape == inst.in_shape:
        return ltype.infer(inst.args, inst.in_shape).window != (1, 1)
    return True


def make_row(inst: Inst, auxiliary: bool = False) -> Row:
    activations = inst.out_shape.numel()
    macs: int | None = inst.macs
    open_size = any(d is None for d in inst.out_shape.dims)
    if open_size and not inst.macs and inst.kind in LAYERS and LAYERS[inst.kind].category == "conv":
        macs = None  # a convolution over a size left open: its MACs depend on that size
    ltype = LAYERS.get(inst.kind)
    counted = lecture_counts(inst)
    return Row(inst.path, inst.kind, inst.in_shape, inst.out_shape, inst.params, macs, activations, inst.rf,
               trainable=0 if inst.frozen else inst.params, frozen_layers=int(inst.frozen),
               bn_statistics=bn_statistics(inst),
               biases=ltype.bias_count(inst.args, inst.in_shape) if ltype is not None else 0,
               lecture=activations if counted else 0, lecture_layers=int(counted), auxiliary=auxiliary)


def bn_statistics(inst: Inst) -> int:
    """The running mean and variance a layer keeps (buffers in PyTorch, non-trainable weights in
    Keras): two per channel of every batch norm (archdsl's `bn` always tracks them)."""
    ltype = LAYERS.get(inst.kind)
    return ltype.statistics * inst.in_shape.channels if ltype is not None else 0


def auxiliary_heads(elab: Elaborated) -> list[Inst]:
    """The instances of the auxiliary outputs' heads (`auxiliary output name = ...`), in spec order."""
    return [inst for name, inst in elab.outputs if name in elab.auxiliary]


def rows(source: Elaborated | Iterable[Inst]) -> list[Row]:
    """Rows for an expanded network, or for a list of instances (only its leaf layers are kept)."""
    if not isinstance(source, Elaborated):
        return [make_row(i) for i in source if is_layer(i)]
    aux = {id(i) for head in auxiliary_heads(source) for i in head.walk()}
    return [make_row(i, id(i) in aux) for i in layer_insts(source)]


def collapse(source: Elaborated | Iterable[Inst], depth: int) -> list[Row]:
    """The rows with blocks nested more than `depth` levels deep folded into one row each (the
    same levels as `archdsl graph --depth`): `depth` 0 gives the network's own layers and one row
    per block it calls, 1 expands those blocks and folds the blocks they call, and so on. A folded
    row's params, MACs and activations are the sums of the layers inside it, so the totals do not
    change. A partial expansion (the layers checked before an error) has no block structure: its
    rows are all shown."""
    if depth < 0:
        raise ValueError("depth must be at least 0")
    if not isinstance(source, Elaborated):
        return rows(source)
    out: list[Row] = []
    heads = {id(head) for head in auxiliary_heads(source)}

    def visit(inst: Inst, level: int, aux: bool) -> None:
        for child in inst.children:
            if is_layer(child):
                out.append(make_row(child, aux))
            elif child.block is not None and level + 1 > depth:
                members = rows(child.walk())
                if members:
                    out.append(Row(child.path, child.block.name, child.in_shape, child.out_shape,
                                   sum(m.params for m in members), _sum(m.macs for m in members),
                                   _sum(m.activations for m in members), child.rf, layers=len(members),
                                   trainable=sum(m.trainable_params for m in members),
                                   frozen_layers=sum(m.frozen_layers for m in members),
                                   bn_statistics=sum(m.bn_statistics for m in members),
                                   biases=sum(m.biases for m in members), lecture=_sum(m.lecture for m in members),
                                   lecture_layers=sum(m.lecture_layers for m in members), auxiliary=aux))
            else:
                visit(child, level + (child.block is not None), aux or id(child) in heads)

    visit(source.root, 0, False)
    return out


def _sum(values: Iterable[int | None]) -> int | None:
    total = 0
    for v in values:
        if v is None:
            return None
        total += v
    return total


def totals(table: list[Row], dtype: str = "float32", *, input_activations: int | None = 0,
           convention: str = "all", auxiliary: tuple[str, ...] = ()) -> Totals:
    """The sums of the rows; `input_activations` (the input's elements) for the lecture's count,
    `convention` the activations the table shows. Where rows belong to auxiliary heads (named in
    `auxiliary`), `without_auxiliary` holds the totals of the others."""
    if dtype not in DTYPE_BYTES:
        raise ValueError(f"unknown dtype {dtype!r}")
    if convention not in ACTIVATIONS:
        raise ValueError(f"unknown activation convention {convention!r}")

    def add(table: list[Row], without: Totals | None) -> Totals:
        return Totals(sum(r.layers for r in table), sum(r.params for r in table), _sum(r.macs for r in table),
                      _sum(r.activations for r in table), dtype, trainable=sum(r.trainable_params for r in table),
                      frozen_layers=sum(r.frozen_layers for r in table),
                      bn_statistics=sum(r.bn_statistics for r in table), biases=sum(r.biases for r in table),
                      input_activations=input_activations, layer_lecture=_sum(r.lecture for r in table),
                      convention=convention, auxiliary=auxiliary if without is not None else (),
                      without_auxiliary=without)

    main = [r for r in table if not r.auxiliary]
    return add(table, add(main, None) if len(main) < len(table) else None)


# Numbers --------------------------------------------------------------------------------------

def grouped(n: int | None) -> str:
    """An integer with thousands separators; '?' where it is unknown."""
    return "?" if n is None else f"{n:,}"


def humanize(n: int | None) -> str:
    """A count with a decimal prefix and three significant digits: 4.09 G, 194 K, 11.7 M, 80."""
    if n is None:
        return "?"
    if abs(n) < 1000:
        return str(n)
    value = float(n)
    for prefix in ("K", "M", "G", "T"):
        value /= 1000
        if round(abs(value), 2) < 10:
            return f"{value:.2f} {prefix}"
        if round(abs(value), 1) < 100:
            return f"{value:.1f} {prefix}"
        if round(abs(value)) < 1000:
            return f"{value:.0f} {prefix}"
    return f"{value / 1000:.0f} P"


def human_bytes(n: int | None) -> str:
    """A byte count with a binary prefix: 98.0 MiB."""
    if n is None:
        return "?"
    value = float(n)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{n} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError(n)  # pragma: no cover


# How the totals name the lecture's convention of counting activations
LECTURE_NAME = "lecture convention: the input and the outputs of convolutions, poolings and dense layers"


def totals_line(t: Totals, *, biases: bool = False, param_memory: bool = False) -> str:
    """The totals, e.g. for the end of a table: the parameters (trainable and frozen where a part is
    frozen; weights and biases with `biases`), MACs and activations (in the totals' convention); with
    batch norms, a line with Keras' counts between; with `param_memory`, the bytes the parameters take
    at the dtype; where the network has auxiliary heads, a last line without them."""
    n = t.shown_activations
    size = t.lecture_activation_bytes if t.convention == "lecture" else t.activation_bytes
    name = f" ({LECTURE_NAME})" if t.convention == "lecture" else ""
    activations = (f"activations{name}: {grouped(n)} elements = {grouped(size)} bytes as "
                   f"{t.dtype}{_paren_bytes(size)} per sample")
    lines = [f"total: {params_text(t, biases)}, {grouped(t.macs)} MACs ({humanize(t.macs)})",
             *([keras_line(t)] if t.bn_statistics else []),
             *([memory_line(t)] if param_memory else []), activations]
    if t.without_auxiliary is not None:
        lines.append(without_auxiliary_line(t, biases=biases, param_memory=param_memory))
    return "\n".join(lines)


def params_text(t: Totals, biases: bool = False) -> str:
    """`16,812,353 params`, or `16,812,353 params (2,097,665 trainable, 14,714,688 frozen)` where a part is frozen;
    with `biases`, `138,357,544 params (138,344,128 weights, 13,416 biases)`."""
    parts = []
    if t.frozen_layers:
        parts.append(f"{grouped(t.trainable_params)} trainable, {grouped(t.frozen_params)} frozen")
    if biases:
        parts.append(f"{grouped(t.weights)} weights, {grouped(t.biases)} biases")
    return f"{grouped(t.params)} params" + (f" ({'; '.join(parts)})" if parts else "")


def memory_line(t: Totals) -> str:
    """The memory the parameters take at the dtype; with batch norms, Keras' weights too (the "Size"
    column of the Keras Applications table is about the latter in MiB)."""
    line = (f"parameter memory: {grouped(t.param_bytes)} bytes as {t.dtype}{_paren_bytes(t.param_bytes)} "
            f"for {grouped(t.params)} params")
    if t.bn_statistics:
        line += (f"; Keras' {grouped(t.keras_params)}: {grouped(t.keras_param_bytes)} bytes"
                 f"{_paren_bytes(t.keras_param_bytes)}")
    return line


def without_auxiliary_line(t: Totals, *, biases: bool = False, param_memory: bool = False) -> str:
    """`without the auxiliary heads (aux1, aux2): 6,624,904 params, 1,498,376,192 MACs (1.50 G), 11,100,024
    activations`, then Keras' count where it differs (`; Keras: 6,639,464 params`)."""
    w = t.without_auxiliary
    assert w is not None
    memory = f" = {grouped(w.param_bytes)} bytes as {w.dtype}{_paren_bytes(w.param_bytes)}" if param_memory else ""
    convention = " (lecture convention)" if w.convention == "lecture" else ""
    keras = f"; Keras: {grouped(w.keras_params)} params" if w.bn_statistics else ""
    return (f"without the auxiliary heads ({', '.join(t.auxiliary)}): {params_text(w, biases)}{memory}, "
            f"{grouped(w.macs)} MACs ({humanize(w.macs)}), {grouped(w.shown_activations)} activations{convention}"
            f"{keras}")


def keras_line(t: Totals) -> str:
    """What Keras' model.summary() counts: the batch norms' moving statistics too, as non-trainable."""
    return (f"Keras: {grouped(t.keras_params)} params ({grouped(t.trainable_params)} trainable, "
            f"{grouped(t.keras_non_trainable)} non-trainable), counting the {grouped(t.bn_statistics)} batch-norm "
            "moving statistics")


def _paren_bytes(n: int | None) -> str:
    return f" ({human_bytes(n)})" if n is not None and n >= 1024 else ""


def outputs_text(elab: Elaborated) -> str:
    """The network's outputs with their shapes: `output logits [1000]`, `outputs aux1 [1000], logits [1000]`."""
    if not elab.program.network.outputs:  # no `output` statement: the end of the main path
        return f"output {elab.outputs[0][1].out_shape}" if elab.outputs else "output ?"
    auxiliary = set(elab.auxiliary)
    parts = [f"{name} {inst.out_shape}" + (" (auxiliary)" if name in auxiliary else "") for name, inst in elab.outputs]
    return ("output " if len(parts) == 1 else "outputs ") + ", ".join(parts)


def check_line(spec: str, elab: Elaborated) -> str:
    """`ok: specs/resnet50.arch: network ResNet50, 25,557,032 params, 4.09 G MACs, output logits [1000]`;
    where a part is frozen, `20,817,197 params (10,245 trainable)`."""
    t = totals(rows(elab))
    params = f"{grouped(t.params)} params" + (f" ({grouped(t.trainable_params)} trainable)" if t.frozen_layers else "")
    return (f"ok: {spec}: network {elab.program.network.name}, {params}, "
            f"{humanize(t.macs)} MACs, {outputs_text(elab)}")


# Formats --------------------------------------------------------------------------------------

def _cells(r: Row, frozen: bool = False, convention: str = "all", biases: bool = False) -> list[str]:
    """A row's cells; in the lecture's convention, `-` for the activations of a layer it does not count."""
    activations = grouped(r.activations) if convention == "all" else grouped(r.lecture) if r.lecture_layers else "-"
    cells = [r.path, r.layer, str(r.out_shape), grouped(r.params), grouped(r.macs), activations, r.rf_text]
    if frozen:
        cells.insert(4, r.frozen_mark)
    if biases:
        cells[4:4] = [grouped(r.weights), grouped(r.biases)]
    return cells


_RIGHT = (False, False, False, True, True, True, True)


def _header(t: Totals, biases: bool = False) -> tuple[list[str], list[bool]]:
    """The table's columns, with `frozen` after `params` where a part of the network is frozen, and
    `weights` and `biases` after `params` with `biases`."""
    header, right = list(COLUMNS), list(_RIGHT)
    if t.frozen_layers:
        header.insert(4, "frozen")
        right.insert(4, False)
    if biases:
        header[4:4], right[4:4] = ["weights", "biases"], [True, True]
    return header, right


def aligned(header: list[str], body: list[list[str]], right) -> list[str]:
    """Plain-text table lines: the header, a rule, the rows; columns padded, numbers right-aligned."""
    widths = [max(len(row[c]) for row in [header, *body]) for c in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if r else c.ljust(w) for c, w, r in zip(cells, widths, right)).rstrip()

    return [line(header), "  ".join("-" * w for w in widths), *(line(cells) for cells in body)]


def markdown(header: list[str], body: list[list[str]], right, title: str | None = None) -> list[str]:
    """GitHub-flavoured Markdown table lines (numbers right-aligned), after a bold title if given."""

    def esc(s: str) -> str:
        return s.replace("|", "\\|")

    lines = [f"**{esc(title)}**", ""] if title else []
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join("---:" if r else "---" for r in right) + "|")
    lines += ["| " + " | ".join(esc(c) for c in cells) + " |" for cells in body]
    return lines


def format_table(table: list[Row], t: Totals, title: str | None = None, *, biases: bool = False,
                 param_memory: bool = False) -> str:
    """A plain-text table with aligned columns and the totals lines (see totals_line())."""
    header, right = _header(t, biases)
    lines = aligned(header, [_cells(r, bool(t.frozen_layers), t.convention, biases) for r in table], right)
    lines.insert(2 + len(table), lines[1])  # the rule again, above the totals
    return "\n".join([*([title] if title else []), *lines, totals_line(t, biases=biases,
                                                                        param_memory=param_memory)]) + "\n"


def format_markdown(table: list[Row], t: Totals, title: str | None = None, *, biases: bool = False,
                    param_memory: bool = False) -> str:
    """A GitHub-flavoured Markdown table, numbers right-aligned, then the totals."""
    header, right = _header(t, biases)
    body = []
    for r in table:
        cells = _cells(r, bool(t.frozen_layers), t.convention, biases)
        cells[0] = f"`{cells[0]}`" if cells[0] else ""
        body.append(cells)
    return "\n".join([*markdown(header, body, right, title), "",
                      totals_line(t, biases=biases, param_memory=param_memory)]) + "\n"


def format_csv(table: list[Row], t: Totals) -> str:
    """Comma-separated values, plain integers, one row per layer and a row `total`, then, where the
    network has auxiliary heads, a row `total without auxiliary`. The columns after receptive_field
    are the parameter counts of Counts.counts(), `frozen` (true or false), then LECTURE_FIELDS
    (weights, biases, the lecture's activations: 0 for a layer it does not count; on the totals, the
    input's included) and `auxiliary` (true for a layer of an auxiliary head)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["path", "layer", "output_shape", "params", "macs", "activations", "receptive_field",
                *COUNT_FIELDS, "frozen", *LECTURE_FIELDS, "auxiliary"])

    def num(n: int | None) -> str:
        return "" if n is None else str(n)

    for r in table:
        w.writerow([r.path, r.layer, str(r.out_shape), r.params, num(r.macs), num(r.activations), r.rf_text,
                    *r.counts().values(), "true" if r.frozen else "false", r.weights, r.biases, num(r.lecture),
                    "true" if r.auxiliary else "false"])
    for name, s in (("total", t), ("total without auxiliary", t.without_auxiliary)):
        if s is not None:
            w.writerow([name, "", "", s.params, num(s.macs), num(s.activations), "", *s.counts().values(), "",
                        s.weights, s.biases, num(s.lecture_activations), ""])
    return buf.getvalue()


def _dims(shape: Shape) -> list[int | None]:
    return list(shape.dims)


def to_dict(table: list[Row], t: Totals, elab: Elaborated | None = None, network: str | None = None,
            spec: str | None = None) -> dict:
    """The report as plain data; `complete` is false when the check stopped at an error."""
    data: dict = {}
    if spec is not None:
        data["spec"] = spec
    if elab is not None:
        network = elab.program.network.name
    if network is not None:
        data["network"] = network
    if elab is not None:
        data["args"] = {k: jsonable(v) for k, v in elab.args.items()}
    data["complete"] = elab is not None
    data["layers"] = [
        {
            "path": r.path,
            "layer": r.layer,
            "input_shape": _dims(r.in_shape),
            "output_shape": _dims(r.out_shape),
            "params": r.params,
            **r.counts(),
            "frozen": r.frozen,
            "macs": r.macs,
            "activations": r.activations,
            "receptive_field": None if r.rf is None else {"size": r.rf_size, "jump": r.rf_jump},
            "weights": r.weights,
            "biases": r.biases,
            "lecture_activations": r.lecture,
            "auxiliary": r.auxiliary,
            **({"collapsed_layers": r.layers} if r.layers > 1 or r.layer not in LAYERS else {}),
        }
        for r in table
    ]
    data["totals"] = totals_dict(t)
    if t.without_auxiliary is not None:
        data["totals"]["without_auxiliary"] = totals_dict(t.without_auxiliary)
    if elab is not None:
        data["outputs"] = {name: _dims(inst.out_shape) for name, inst in elab.outputs}
        data["auxiliary_outputs"] = list(elab.auxiliary)
    return data


def totals_dict(t: Totals) -> dict:
    """The totals as JSON data: the counts, both conventions of activations and the memory at the dtype."""
    return {
        "layers": t.layers,
        "params": t.params,
        **t.counts(),
        "frozen_layers": t.frozen_layers,
        "macs": t.macs,
        "activations": t.activations,
        "dtype": t.dtype,
        "activation_bytes": t.activation_bytes,
        "weights": t.weights,
        "biases": t.biases,
        "input_activations": t.input_activations,
        "lecture_activations": t.lecture_activations,
        "lecture_activation_bytes": t.lecture_activation_bytes,
        "param_bytes": t.param_bytes,
        "keras_param_bytes": t.keras_param_bytes,
    }


def jsonable(v):
    """A network parameter value as JSON data: tuples as lists, symbols as their names."""
    if isinstance(v, (bool, int, float)) or v is None:
        return v
    if isinstance(v, tuple):
        return [jsonable(x) for x in v]
    return str(v)


def format_json(table: list[Row], t: Totals, elab: Elaborated | None = None, network: str | None = None,
                spec: str | None = None) -> str:
    """JSON, one layer per line so that diffs of two reports stay readable."""
    return json_text(to_dict(table, t, elab, network, spec))


def json_text(data: dict) -> str:
    """A report's data as JSON with one entry of its "layers" per line, so that diffs of two reports
    stay readable."""
    parts = []
    for key, value in data.items():
        if key == "layers" and value:
            inner = ",\n".join(f"    {json.dumps(layer)}" for layer in value)
            parts.append(f'  "layers": [\n{inner}\n  ]')
        else:
            parts.append(f"  {json.dumps(key)}: {json.dumps(value)}")
    return "{\n" + ",\n".join(parts) + "\n}\n"


def render(source: Elaborated | Iterable[Inst], fmt: str = "table", dtype: str = "float32", *,
           network: str | None = None, spec: str | None = None, depth: int | None = None,
           activations: str = "all", biases: bool = False, param_memory: bool = False) -> str:
    """The report in one of FORMATS, for an expanded network or the layers checked before an error;
    with `depth`, blocks nested deeper are collapsed (see collapse()). `activations` is the convention
    the table and Markdown show (ACTIVATIONS), `biases` adds their weights and biases columns, and
    `param_memory` their line of the parameters' memory at the dtype; JSON and CSV carry all of it."""
    elab = source if isinstance(source, Elaborated) else None
    if not isinstance(source, Elaborated):
        source = list(source)
    table = rows(source) if depth is None else collapse(source, depth)
    t = totals(table, dtype, input_activations=input_elements(elab if elab is not None else source),
               convention=activations, auxiliary=elab.auxiliary if elab is not None else ())
    name = elab.program.network.name if elab is not None else network
    title = None
    if name is not None:
        title = f"network {name}" + (f" ({spec})" if spec else "")
        if elab is None:
            title += ": the layers checked before the error"
    if fmt == "table":
        return format_table(table, t, title, biases=biases, param_memory=param_memory)
    if fmt == "markdown":
        return format_markdown(table, t, title, biases=biases, param_memory=param_memory)
    if fmt == "csv":
        return format_csv(table, t)
    if fmt == "json":
        return format_json(table, t, elab, network, spec)
    raise ValueError(f"unknown format {fmt!r} (formats: {', '.join(FORMATS)})")


def input_elements(source: Elaborated | list[Inst]) -> int | None:
    """The elements of the network's input (None where a size is open): the lecture counts them. For the
    layers checked before an error, the input of the first."""
    if isinstance(source, Elaborated):
        return source.root.in_shape.numel()
    return source[0].in_shape.numel() if source else 0
