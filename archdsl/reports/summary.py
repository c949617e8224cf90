"""The per-layer report: output shapes, parameters, multiply-accumulates, activations, receptive field.

Pure functions over an Elaborated (or over the list of layer instances a failed check got through,
`Expander.done`), so the CLI and later tools share one table. Numbers count one sample (the batch is
symbolic); MACs are weight multiply-accumulates of convolutions and dense layers, never FLOPs.
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
from .formats import DTYPE_BYTES, FORMATS

# Instance kinds that are structure, not layers: they never make a row of the table.
COMPOSITE_KINDS = frozenset({"group", "repeat", "choice", "concat", "residual", "scale", "output", "seq"})

COLUMNS = ("path", "layer", "output shape", "params", "MACs", "activations", "receptive field")
# The parameter counts the JSON and CSV reports always carry, beside `params` (see Counts)
COUNT_FIELDS = ("trainable_params", "frozen_params", "bn_statistics", "keras_params", "keras_non_trainable_params")


class Counts:
    """The parameter counts of a row or of the totals, in both conventions. archdsl's (PyTorch's
    parameters()): `params`, of which `trainable_params` train and `frozen_params` are frozen by a
    `freeze` statement. Keras' (count_params(), model.summary()): each batch norm's moving mean and
    variance are weights too, non-trainable ones, so `keras_params` = params + bn_statistics and
    `keras_non_trainable` = frozen_params + bn_statistics (Keras' trainable count is trainable_params)."""

    params: int
    trainable: int | None  # None: every param trains
    bn_statistics: int

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

    @property
    def activation_bytes(self) -> int | None:
        return None if self.activations is None else self.activations * DTYPE_BYTES[self.dtype]


def is_layer(inst: Inst) -> bool:
    """A leaf layer: an instance of a built-in layer type (block calls and composites are not)."""
    return inst.block is None and inst.kind not in COMPOSITE_KINDS and inst.kind in LAYERS


def layer_insts(elab: Elaborated) -> list[Inst]:
    """The leaf layers of an expanded network, in the order the data flows through the spec."""
    return [i for i in elab.root.walk() if is_layer(i)]


def make_row(inst: Inst) -> Row:
    activations = inst.out_shape.numel()
    macs: int | None = inst.macs
    open_size = any(d is None for d in inst.out_shape.dims)
    if open_size and not inst.macs and inst.kind in LAYERS and LAYERS[inst.kind].category == "conv":
        macs = None  # a convolution over a size left open: its MACs depend on that size
    return Row(inst.path, inst.kind, inst.in_shape, inst.out_shape, inst.params, macs, activations, inst.rf,
               trainable=0 if inst.frozen else inst.params, frozen_layers=int(inst.frozen),
               bn_statistics=bn_statistics(inst))


def bn_statistics(inst: Inst) -> int:
    """The running mean and variance a layer keeps (buffers in PyTorch, non-trainable weights in
    Keras): two per channel of every batch norm (archdsl's `bn` always tracks them)."""
    ltype = LAYERS.get(inst.kind)
    return ltype.statistics * inst.in_shape.channels if ltype is not None else 0


def rows(source: Elaborated | Iterable[Inst]) -> list[Row]:
    """Rows for an expanded network, or for a list of instances (only its leaf layers are kept)."""
    insts = layer_insts(source) if isinstance(source, Elaborated) else [i for i in source if is_layer(i)]
    return [make_row(i) for i in insts]


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

    def visit(inst: Inst, level: int) -> None:
        for child in inst.children:
            if is_layer(child):
                out.append(make_row(child))
            elif child.block is not None and level + 1 > depth:
                members = rows(child.walk())
                if members:
                    out.append(Row(child.path, child.block.name, child.in_shape, child.out_shape,
                                   sum(m.params for m in members), _sum(m.macs for m in members),
                                   _sum(m.activations for m in members), child.rf, layers=len(members),
                                   trainable=sum(m.trainable_params for m in members),
                                   frozen_layers=sum(m.frozen_layers for m in members),
                                   bn_statistics=sum(m.bn_statistics for m in members)))
            else:
                visit(child, level + (child.block is not None))

    visit(source.root, 0)
    return out


def _sum(values: Iterable[int | None]) -> int | None:
    total = 0
    for v in values:
        if v is None:
            return None
        total += v
    return total


def totals(table: list[Row], dtype: str = "float32") -> Totals:
    if dtype not in DTYPE_BYTES:
        raise ValueError(f"unknown dtype {dtype!r}")
    return Totals(sum(r.layers for r in table), sum(r.params for r in table), _sum(r.macs for r in table),
                  _sum(r.activations for r in table), dtype, trainable=sum(r.trainable_params for r in table),
                  frozen_layers=sum(r.frozen_layers for r in table),
                  bn_statistics=sum(r.bn_statistics for r in table))


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


def totals_line(t: Totals) -> str:
    """The totals, two lines, e.g. for the end of a table: the parameters (trainable and frozen where
    a part is frozen), MACs and activations; with batch norms, a line with Keras' counts between."""
    activations = (f"activations: {grouped(t.activations)} elements = {grouped(t.activation_bytes)} bytes as "
                   f"{t.dtype}{_paren_bytes(t.activation_bytes)} per sample")
    return "\n".join([f"total: {params_text(t)}, {grouped(t.macs)} MACs ({humanize(t.macs)})",
                      *([keras_line(t)] if t.bn_statistics else []), activations])


def params_text(t: Totals) -> str:
    """`16,812,353 params`, or `16,812,353 params (2,097,665 trainable, 14,714,688 frozen)` where a part is frozen."""
    if not t.frozen_layers:
        return f"{grouped(t.params)} params"
    return f"{grouped(t.params)} params ({grouped(t.trainable_params)} trainable, {grouped(t.frozen_params)} frozen)"


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

def _cells(r: Row, frozen: bool = False) -> list[str]:
    cells = [r.path, r.layer, str(r.out_shape), grouped(r.params), grouped(r.macs), grouped(r.activations), r.rf_text]
    if frozen:
        cells.insert(4, r.frozen_mark)
    return cells


_RIGHT = (False, False, False, True, True, True, True)


def _header(t: Totals) -> tuple[list[str], list[bool]]:
    """The table's columns, with `frozen` after `params` where a part of the network is frozen."""
    header, right = list(COLUMNS), list(_RIGHT)
    if t.frozen_layers:
        header.insert(4, "frozen")
        right.insert(4, False)
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


def format_table(table: list[Row], t: Totals, title: str | None = None) -> str:
    """A plain-text table with aligned columns and a totals line."""
    header, right = _header(t)
    lines = aligned(header, [_cells(r, bool(t.frozen_layers)) for r in table], right)
    lines.insert(2 + len(table), lines[1])  # the rule again, above the totals
    return "\n".join([*([title] if title else []), *lines, totals_line(t)]) + "\n"


def format_markdown(table: list[Row], t: Totals, title: str | None = None) -> str:
    """A GitHub-flavoured Markdown table, numbers right-aligned, then the totals."""
    header, right = _header(t)
    body = []
    for r in table:
        cells = _cells(r, bool(t.frozen_layers))
        cells[0] = f"`{cells[0]}`" if cells[0] else ""
        body.append(cells)
    return "\n".join([*markdown(header, body, right, title), "", totals_line(t)]) + "\n"


def format_csv(table: list[Row], t: Totals) -> str:
    """Comma-separated values, plain integers, one row per layer and a last row `total`. The columns
    after receptive_field are the parameter counts of Counts.counts() and `frozen` (true or false)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["path", "layer", "output_shape", "params", "macs", "activations", "receptive_field",
                *COUNT_FIELDS, "frozen"])

    def num(n: int | None) -> str:
        return "" if n is None else str(n)

    for r in table:
        w.writerow([r.path, r.layer, str(r.out_shape), r.params, num(r.macs), num(r.activations), r.rf_text,
                    *r.counts().values(), "true" if r.frozen else "false"])
    w.writerow(["total", "", "", t.params, num(t.macs), num(t.activations), "", *t.counts().values(), ""])
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
            **({"collapsed_layers": r.layers} if r.layers > 1 or r.layer not in LAYERS else {}),
        }
        for r in table
    ]
    data["totals"] = {
        "layers": t.layers,
        "params": t.params,
        **t.counts(),
        "frozen_layers": t.frozen_layers,
        "macs": t.macs,
        "activations": t.activations,
        "dtype": t.dtype,
        "activation_bytes": t.activation_bytes,
    }
    if elab is not None:
        data["outputs"] = {name: _dims(inst.out_shape) for name, inst in elab.outputs}
        data["auxiliary_outputs"] = list(elab.auxiliary)
    return data


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
    data = to_dict(table, t, elab, network, spec)
    parts = []
    for key, value in data.items():
        if key == "layers" and value:
            inner = ",\n".join(f"    {json.dumps(layer)}" for layer in value)
            parts.append(f'  "layers": [\n{inner}\n  ]')
        else:
            parts.append(f"  {json.dumps(key)}: {json.dumps(value)}")
    return "{\n" + ",\n".join(parts) + "\n}\n"


def render(source: Elaborated | Iterable[Inst], fmt: str = "table", dtype: str = "float32", *,
           network: str | None = None, spec: str | None = None, depth: int | None = None) -> str:
    """The report in one of FORMATS, for an expanded network or the layers checked before an error;
    with `depth`, blocks nested deeper are collapsed (see collapse())."""
    elab = source if isinstance(source, Elaborated) else None
    if not isinstance(source, Elaborated):
        source = list(source)
    table = rows(source) if depth is None else collapse(source, depth)
    t = totals(table, dtype)
    name = elab.program.network.name if elab is not None else network
    title = None
    if name is not None:
        title = f"network {name}" + (f" ({spec})" if spec else "")
        if elab is None:
            title += ": the layers checked before the error"
    if fmt == "table":
        return format_table(table, t, title)
    if fmt == "markdown":
        return format_markdown(table, t, title)
    if fmt == "csv":
        return format_csv(table, t)
    if fmt == "json":
        return format_json(table, t, elab, network, spec)
    raise ValueError(f"unknown format {fmt!r} (formats: {', '.join(FORMATS)})")
