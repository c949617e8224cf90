"""Values given from outside a spec: `--set NAME=VALUE` on the command line (and sweep's axes).

The text is read here; whether the value is in the language's range (archdsl/language/limits.py) is checked
where it meets the network's parameter (archdsl/core/shapes.py), with an error located there, for a value
from the command line and one passed to api.load() alike.
"""

from __future__ import annotations

import re

from ..language.errors import ArchError
from ..language.limits import MAX_INT
from .graph import Value

_SET = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.+?)\s*$")
_INTEGER = re.compile(r"^[+-]?[0-9][0-9_]*$")
_MAX_TEXT_DIGITS = 4000  # Python converts at most 4,300 digits of text to an int


def parse_value(text: str) -> Value:
    """A value given on the command line: an integer, a number, true/false, or [a, b, ...]."""
    t = text.strip()
    if t in ("true", "false"):
        return t == "true"
    if t.startswith("[") and t.endswith("]"):
        inner = t[1:-1].strip()
        return tuple(parse_value(p) for p in inner.split(",")) if inner else ()
    if _INTEGER.match(t) and len(t) > _MAX_TEXT_DIGITS:
        raise ArchError(f"--set: '{t[:20]}...' ({len(t):,} digits) is too large; integers are limited to "
                        f"{MAX_INT:,} (2**63 - 1) in magnitude")
    try:
        return int(t)
    except ValueError:
        pass
    try:
        return float(t)
    except ValueError:
        raise ArchError(f"--set: '{text}' is not a value (give an integer, a number, true, false or [a, b])") from None


def parse_sets(items: list[str] | None) -> dict[str, Value]:
    """`--set NAME=VALUE` options, in order; a later one wins."""
    out: dict[str, Value] = {}
    for item in items or []:
        m = _SET.match(item)
        if not m:
            raise ArchError(f"--set expects NAME=VALUE, got '{item}'")
        out[m.group(1)] = parse_value(m.group(2))
    return out
