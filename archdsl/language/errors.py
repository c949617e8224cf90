"""Located errors: every message a user sees names file:line:column and shows the line with a caret."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass


@dataclass(frozen=True)
class Span:
    """A region of a source file; lines and columns count from 1, the end column is exclusive."""

    file: str
    line: int
    column: int
    end_line: int
    end_column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


class ArchError(Exception):
    """An error in a spec or in the use of archdsl, with the place it comes from where there is one."""

    def __init__(self, message: str, span: Span | None = None, *, context: str | None = None,
                 notes: list[str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.span = span
        self.context = context  # e.g. "in layer3.1 (Bottleneck)"
        self.notes = list(notes or [])
        self.report: str | None = None  # a partial summary table, printed before the error

    def format(self, sources: dict[str, str] | None = None) -> str:
        """Render as `file:line:col: error: message`, the source line and a caret under the place."""
        head = f"{self.span}: error: {self.message}" if self.span else f"error: {self.message}"
        lines = [head]
        if self.context:
            lines.append(f"  {self.context}")
        if self.span is not None:
            text = (sources or {}).get(self.span.file)
            if text is None:
                text = _read(self.span.file)
            if text is not None:
                lines.extend(excerpt(text, self.span))
        for note in self.notes:
            lines.append(f"  note: {note}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.format()


# Source lines as the lexer counts them ------------------------------------------------------------

TAB_STOP = 4  # a tab in a printed source line advances to the next multiple of this


def source_lines(text: str) -> list[str]:
    """The lines of a source text as the lexer and every span count them: split at "\\n" only (a form
    feed, a vertical tab, U+2028 and the like are no line breaks in the language), a "\\r" before the
    "\\n" dropped. Line n of a span is source_lines(text)[n - 1]."""
    return [line.removesuffix("\r") for line in text.split("\n")]


def end_position(text: str) -> tuple[int, int]:
    """(line, column) just after the last character of a text that is not white space: where an
    unexpected end of file is reported."""
    body = text.rstrip(" \t\f\r\n")
    line = body.count("\n") + 1
    return line, len(body) - (body.rfind("\n") + 1) + 1


def shown(c: str) -> str:
    """How a character of a source line is printed: control and invisible characters as a visible
    sign (a NUL as \u2400, U+2028 as <U+2028>), so that the line prints as one line and shows what it holds."""
    code = ord(c)
    if code < 0x20:
        return chr(0x2400 + code)
    if code == 0x7F:
        return "\u2421"
    if c.isprintable():
        return c
    return f"<U+{code:04X}>"


def _cells(s: str) -> int:
    """Terminal cells a printed text takes: 2 for a wide (East Asian) character, 0 for a combining one."""
    n = 0
    for c in s:
        if unicodedata.combining(c):
            continue
        n += 2 if unicodedata.east_asian_width(c) in ("W", "F") else 1
    return n


def display(line: str) -> tuple[str, list[int]]:
    """A source line as printed (tabs expanded, invisible characters shown) and the terminal cell at
    which each of its characters starts, with one more entry for the end of the line."""
    out: list[str] = []
    starts: list[int] = []
    cell = 0
    for c in line:
        starts.append(cell)
        piece = " " * (TAB_STOP - cell % TAB_STOP) if c == "\t" else shown(c)
        out.append(piece)
        cell += _cells(piece)
    starts.append(cell)
    return "".join(out), starts


def excerpt(text: str, span: Span) -> list[str]:
    """The source line a span starts on, numbered, and a caret line under the span (to the end of the
    line for a span that goes on to later lines); nothing for a line the text does not have."""
    source = source_lines(text)
    if not 1 <= span.line <= len(source):
        return []
    line = source[span.line - 1]
    printed, starts = display(line)
    first = max(0, span.column - 1)
    start = starts[first] if first < len(starts) else starts[-1] + first - len(line)
    last = span.end_column - 1 if span.end_line == span.line else len(line)
    last = min(last, len(line))
    end = starts[last] if first < last else start + 1
    number = str(span.line)
    gutter = " " * len(number)
    return [f" {number} | {printed}", f" {gutter} | {' ' * start}^{'~' * max(0, end - start - 1)}"]


def _read(path: str) -> str | None:
    """A file's text as the compiler reads it (UTF-8, a byte order mark passed over), or None."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except (OSError, ValueError):
        return None
    return data.decode("utf-8-sig", errors="replace")
