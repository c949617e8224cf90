"""The archdsl language server: `archdsl lsp` serves the Language Server Protocol over stdio.

archdsl/editor/lsp/analysis.py holds what the server knows about a spec (independent of LSP);
archdsl/editor/lsp/server.py the pygls server and its features.

The server's libraries (pygls, lsprotocol and theirs: cattrs, attrs) are not in archdsl's plain
install, only in its `lsp` extra: `pip install "archdsl[lsp]"`.
"""

from __future__ import annotations

# The top-level packages the language server imports (pygls and lsprotocol) and those they need.
DEPENDENCIES = ("pygls", "lsprotocol", "cattrs", "attrs")
INSTALL = 'pip install "archdsl[lsp]"'


class MissingDependency(Exception):
    """The language server's libraries are not installed (or are too old to import)."""


def serve() -> None:
    """Serve LSP over stdin/stdout until the client exits (pygls is imported only here).

    Raises MissingDependency, saying what to install, where pygls or lsprotocol cannot be imported.
    """
    try:
        from .server import serve as _serve
    except ImportError as e:  # ModuleNotFoundError, or an ImportError from a pygls too old or too new
        missing = (e.name or "").partition(".")[0]
        if missing not in DEPENDENCIES:
            raise
        if isinstance(e, ModuleNotFoundError) and e.name == missing:
            problem = f"{missing}, which is not installed"
        else:  # installed, but not a version the server can use
            problem = f"{missing}, and the installed one cannot be used ({e})"
        raise MissingDependency(
            f"the language server needs {problem}; install archdsl's extra `lsp`:\n"
            f"    {INSTALL}\n"
            f'(from a checkout of the repository: pip install -e ".[lsp]")'
        ) from e

    _serve()
