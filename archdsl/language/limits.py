"""The limits of the language: how large a number and how large an expansion a spec may ask for.

They are far beyond any real network (the largest spec of the zoo, EfficientNet-B7, expands to
about 1,500 instances and computes with integers below 10 million), and they keep every answer
quick: a spec that asks for more gets a located error at the number, the expression or the
repetition that goes past them, instead of a compiler that runs for hours or out of memory. The
compiler (archdsl/core/shapes.py, archdsl/language/parser.py) and the language server take them from here.
docs/language.md, "Limits", documents them.
"""

from __future__ import annotations

import math

from .errors import ArchError, Span
from .syntax import Symbol

MAX_INT = 2**63 - 1
"""The largest magnitude of an integer a spec computes with: a literal, a parameter (its default or a
`--set` value), the result of every operation and function, a tensor size. The 64-bit integers
PyTorch and TensorFlow count sizes in. An integer power is computed only when its result is inside
this range (so `2 ** 64` is an error at once, whatever its size would be)."""

MAX_INSTANCES = 500_000
"""The most instances one expansion of a network may make: layers, block instances and composites
(groups, repetitions, residuals, ...), each copy of a repeated body counted. The scale benchmark's
largest network makes 200,001; checking (or compiling) one near the limit takes about 4 s of CPU and
350 MB here, so every answer comes within seconds."""

MAX_NESTING = 1_000
"""The deepest a spec's syntax tree may go: groups, branches and composites inside one another, and
operators in an expression (`1 + 1 + 1` is two levels). The zoo's deepest spec has 19 levels. Blocks
calling blocks are no nesting in this sense: they nest 10,000 deep and more."""


class LimitError(Exception):
    """A value out of the language's range; the caller turns it into a located ArchError."""


def check_value(value, *, what: str = "the value here") -> None:
    """Raise LimitError if a value (a number, a bool, a symbol or a list of them) is out of range:
    an integer of more than MAX_INT in magnitude, a float that is infinite or not a number, or
    anything that is not a value of the language (a complex number)."""
    if isinstance(value, bool) or value is None:
        return
    if isinstance(value, int):
        if not -MAX_INT <= value <= MAX_INT:
            raise LimitError(f"{what} is too large: {_magnitude(value)}; integers are limited to "
                             f"{MAX_INT:,} (2**63 - 1) in magnitude")
        return
    if isinstance(value, float):
        if math.isnan(value):
            raise LimitError(f"{what} is not a number (NaN)")
        if math.isinf(value):
            raise LimitError(f"{what} is too large: it overflows to {'-' if value < 0 else ''}infinity")
        return
    if isinstance(value, tuple):
        for item in value:
            check_value(item, what=what)
        return
    if isinstance(value, complex):
        raise LimitError(f"{what} is not a real number ({value})")
    if not isinstance(value, Symbol):
        raise LimitError(f"{what} is not a value of the language (a {type(value).__name__}); values are "
                         "integers, numbers, true, false, same, valid, global and lists of them")


def _magnitude(value: int) -> str:
    """A short description of a large integer: itself if short, else its number of digits (without
    converting it to text, which Python refuses past 4,300 digits)."""
    if value.bit_length() <= 100:
        return f"{value:,}"
    return f"a number of about {int(value.bit_length() * math.log10(2)) + 1:,} digits"


def located(value, span: Span | None, *, what: str = "the value here", context: str | None = None):
    """The value if it is in range; else a located ArchError at span."""
    try:
        check_value(value, what=what)
    except LimitError as e:
        raise ArchError(str(e), span, context=context) from None
    return value


def power_too_large(base, exponent) -> bool:
    """Whether an integer power would be out of range, decided before computing it: |base| >= 2 with
    an exponent of 64 or more is at least 2**64 (and might take hours and gigabytes to compute)."""
    return (isinstance(base, int) and isinstance(exponent, int) and not isinstance(exponent, bool)
            and abs(base) >= 2 and exponent >= 64)
