"""Scaling sweeps: one row per setting of one or more network parameters.

`archdsl sweep specs/efficientnet.arch phi=0..7` expands the network once per value (the spec is
parsed and elaborated once) and reports the input size, parameters, multiply-accumulates,
activations and outputs of each setting, so the effect of a width multiplier or a compound
coefficient can be read off one table. Several parameters give every combination.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import re
from dataclasses import dataclass

from ..api import expand
from ..core.graph import Program, Value
from ..core.values import parse_value
from ..language.errors import ArchError
from ..reports.summary import (
    COUNT_FIELDS,
    FORMATS,
    Totals,
    aligned,
    grouped,
    humanize,
    jsonable,
    markdown,
    rows,
    totals,
)

_AXIS = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.+)$")
_RANGE = re.compile(r"^\s*(-?\d+)\s*\.\.\s*(-?\d+)\s*$")


@dataclass(frozen=True)
class Axis:
    """One swept parameter and its values, in the order given."""

    name: str
    values: tuple[Value, ...]


def parse_axis(text: str) -> Axis:
    """`NAME=a,b,c` or `NAME=lo..hi` (whole numbers, both ends included)."""
    m = _AXIS.match(text)
    if not m:
        raise ArchError(f"a sweep is NAME=VALUES (e.g. phi=0..7 or width=0.5,0.75,1.0), got '{text}'")
    name, values = m.group(1), m.group(2)
    r = _RANGE.match(values)
    if r:
        lo, hi = int(r.group(1)), int(r.group(2))
        if hi < lo:
            raise ArchError(f"sweep {name}: the range {lo}..{hi} is empty (write the smaller end first)")
        if hi - lo >= 10_000:
            raise ArchError(f"sweep {name}: the range {lo}..{hi} has more than 10,000 values")
        return Axis(name, tuple(range(lo, hi + 1)))
    if "[" in values:
        raise ArchError(f"sweep {name}: list values cannot be swept; give numbers or true/false")
    parts = [p for p in values.split(",")]
    if any(not p.strip() for p in parts):
        raise ArchError(f"sweep {name}: an empty value in '{values}'")
    return Axis(name, tuple(parse_value(p) for p in parts))


@dataclass(frozen=True)
class SweepRow:
    setting: dict[str, Value]
    input_shape: tuple
    params: int
    macs: int | None
    activations: int | None
    outputs: dict[str, tuple]
    counts: Totals  # the parameter counts: trainable, frozen, Keras' (Counts)


def sweep(program: Program, axes: list[Axis], fixed: dict[str, Value] | None = None) -> list[SweepRow]:
    """Expand the program for every combination of the axes' values (the last axis varies fastest)."""
    names = [a.name for a in axes]
    if len(set(names)) != len(names):
        raise ArchError(f"sweep: a parameter is swept twice ({', '.join(names)})")
    overlap = set(names) & set(fixed or {})
    if overlap:
        raise ArchError(f"sweep: '{min(overlap)}' is both swept and set with --set")
    out = []
    for combo in itertools.product(*(a.values for a in axes)):
        setting = dict(zip(names, combo))
        try:
            elab = expand(program, {**(fixed or {}), **setting})
        except ArchError as err:
            err.notes.append("in the sweep at " + ", ".join(f"{k} = {_value(v)}" for k, v in setting.items()))
            raise
        t = totals(rows(elab))
        out.append(SweepRow(setting, tuple(elab.root.in_shape.dims), t.params, t.macs, t.activations,
                            {name: tuple(inst.out_shape.dims) for name, inst in elab.outputs}, t))
    return out


def _shape(dims: tuple) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in dims) + "]"


def _text_cells(r: SweepRow, frozen: bool) -> list[str]:
    outputs = ", ".join(_shape(d) if len(r.outputs) == 1 else f"{n} {_shape(d)}" for n, d in r.outputs.items())
    trainable = [grouped(r.counts.trainable_params)] if frozen else []
    return [*(_value(v) for v in r.setting.values()), _shape(r.input_shape), grouped(r.params), *trainable,
            grouped(r.macs), humanize(r.macs), grouped(r.activations), outputs]


def _value(v: Value) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def render(table: list[SweepRow], axes: list[Axis], fmt: str = "table", title: str | None = None) -> str:
    """The sweep in one of FORMATS (table, json, csv, markdown). JSON and CSV carry the parameter
    counts of summary.Counts (trainable, frozen, batch-norm statistics, Keras' counts) for every row;
    the table and Markdown add a `trainable` column where some setting freezes a part."""
    names = [a.name for a in axes]
    frozen = any(r.counts.frozen_layers for r in table)
    header = [*names, "input", "params", *(["trainable"] if frozen else []), "MACs", "MACs (short)", "activations",
              "output"]
    right = [True] * len(names) + [False, True, *([True] if frozen else []), True, True, True, False]
    if fmt == "json":
        data = [{"setting": {k: jsonable(v) for k, v in r.setting.items()}, "input_shape": list(r.input_shape),
                 "params": r.params, **r.counts.counts(), "macs": r.macs, "activations": r.activations,
                 "outputs": {k: list(v) for k, v in r.outputs.items()}} for r in table]
        body = ",\n".join(f"  {json.dumps(d)}" for d in data)
        return "[\n" + body + "\n]\n" if data else "[]\n"
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow([*names, "input_shape", "params", "macs", "activations", "outputs", *COUNT_FIELDS])
        for r in table:
            w.writerow([*(_value(v) for v in r.setting.values()), _shape(r.input_shape), r.params,
                        "" if r.macs is None else r.macs, "" if r.activations is None else r.activations,
                        " ".join(f"{n}={_shape(d)}" for n, d in r.outputs.items()), *r.counts.counts().values()])
        return buf.getvalue()
    cells = [_text_cells(r, frozen) for r in table]
    if fmt == "markdown":
        return "\n".join(markdown(header, cells, right, title)) + "\n"
    if fmt == "table":
        return "\n".join([*([title] if title else []), *aligned(header, cells, right)]) + "\n"
    raise ValueError(f"unknown format {fmt!r} (formats: {', '.join(FORMATS)})")
