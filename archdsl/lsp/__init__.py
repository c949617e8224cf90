"""The archdsl language server: `archdsl lsp` serves the Language Server Protocol over stdio.

archdsl/lsp/analysis.py holds what the server knows about a spec (independent of LSP);
archdsl/lsp/server.py the pygls server and its features.
"""

from __future__ import annotations


def serve() -> None:
    """Serve LSP over stdin/stdout until the client exits (pygls is imported only here)."""
    from .server import serve as _serve

    _serve()
