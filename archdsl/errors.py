"""Located errors: every message a user sees names file:line:column and shows the line with a caret."""

from __future__ import annotations

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
                try:
                    with open(self.span.file, encoding="utf-8") as f:
                        text = f.read()
                except OSError:
                    text = None
            if text is not None:
                source_lines = text.splitlines()
                if 1 <= self.span.line <= len(source_lines):
                    src = source_lines[self.span.line - 1].expandtabs(4)
                    number = str(self.span.line)
                    gutter = " " * len(number)
                    width = 1
                    if self.span.end_line == self.span.line:
                        width = max(1, self.span.end_column - self.span.column)
                    width = min(width, max(1, len(src) - self.span.column + 1))
                    lines.append(f" {number} | {src}")
                    lines.append(f" {gutter} | {' ' * (self.span.column - 1)}^{'~' * (width - 1)}")
        for note in self.notes:
            lines.append(f"  note: {note}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.format()
