"""The TextMate grammar's word lists (editors/vscode/syntaxes/archdsl.tmLanguage.json), written from
the layer catalog: a layer added to the catalog reaches the editors' highlighting by
`python -m archdsl.editor.textmate` (tools/regenerate runs it; tests/test_highlight.py fails while
the file is out of date). The rest of the grammar is written by hand, and tests/test_tokens.py holds
it to the token table."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ..core.layers import FUNCTIONS, LAYERS, SYMBOLS
from ..util.files import write_atomically

GRAMMAR = Path(__file__).resolve().parent.parent.parent / "editors" / "vscode" / "syntaxes" / "archdsl.tmLanguage.json"


def words(names) -> str:
    """An alternation that matches the longest word first (Oniguruma and Python's re alike)."""
    return "|".join(sorted(names, key=lambda w: (-len(w), w)))


def updated(text: str) -> str:
    """The grammar's text with its word lists the catalog's."""
    grammar = json.loads(text)
    repo = grammar["repository"]
    repo["layers"]["match"] = rf"\b(?:{words(LAYERS)})\b"
    repo["functions"]["match"] = rf"\b(?:{words(FUNCTIONS)})\b(?=\s*\()"
    repo["symbols"]["match"] = rf"\b(?:{words(SYMBOLS)})\b"
    return json.dumps(grammar, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    text = GRAMMAR.read_text(encoding="utf-8")
    new = updated(text)
    if new != text:
        write_atomically(str(GRAMMAR), new)
        print(f"updated {GRAMMAR.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
