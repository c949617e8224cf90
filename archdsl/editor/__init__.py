"""Editor support: the formatter, syntax highlighting and the language server."""
