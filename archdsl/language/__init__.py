"""The language: its syntax tree, parser, token table, errors and limits."""
