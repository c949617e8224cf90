"""The former name of archdsl.api, the public pipeline, kept so that scripts written against it run:
`from archdsl.compiler import load, generate` is `from archdsl.api import load, generate`."""

from __future__ import annotations

from .api import OPTIMIZATIONS, TARGETS, check, compile_spec, expand, generate, load, report, verify, write
from .core.elaborate import elaborate
from .core.values import parse_sets, parse_value
from .util.files import abandon_writes, write_atomically
from .util.running import collector_paused, deep

__all__ = ["OPTIMIZATIONS", "TARGETS", "abandon_writes", "check", "collector_paused", "compile_spec", "deep",
           "elaborate", "expand", "generate", "load", "parse_sets", "parse_value", "report", "verify", "write",
           "write_atomically"]
