"""The language server (pygls): diagnostics as you type, hover with shapes, parameters and MACs,
go to definition, completion, document symbols and formatting for `.arch` files.

Every open document is analysed from the editor's text (archdsl/editor/lsp/analysis.py), its imports
from the editors' texts where they are open too. An analysis is redone only when the text of its
file or of a file it read has changed; changes are analysed after a short pause (the latest text
only), and any request analyses first whatever is stale, so an answer is never about old text.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import logging
import os
import re
import sys
import traceback
from collections.abc import Callable
from urllib.parse import unquote, urlparse

from lsprotocol import types as T
from pygls.lsp.server import LanguageServer
from pygls.uris import from_fs_path, to_fs_path

from ... import __version__
from ...core.layers import FUNCTIONS, LAYERS, SYMBOLS
from ...language import syntax as S
from ...language.errors import ArchError, Span
from ...reports.summary import grouped, humanize, outputs_text, rows, totals
from . import analysis as A

log = logging.getLogger("archdsl.editor.lsp")

DEBOUNCE_S = 0.08  # pause after a change before analysing (changes in between replace it)


def _has_formatter() -> bool:
    try:
        return importlib.util.find_spec("archdsl.editor.fmt") is not None
    except (ImportError, ValueError):
        return False


class ArchServer(LanguageServer):
    def __init__(self) -> None:
        super().__init__("archdsl", __version__)
        self.analyses: dict[str, A.Analysis] = {}  # uri -> analysis of the document's latest text
        self.good: dict[str, A.Analysis] = {}  # uri -> the last analysis that got a typed graph
        self.parsed: dict[str, A.Analysis] = {}  # uri -> the last analysis whose file parsed
        self.snapshots: dict[str, dict[str, tuple]] = {}  # uri -> the state of each file it read
        self.published: dict[str, list[T.Diagnostic]] = {}
        self.forced: set[str] = set()  # documents changed since their diagnostics were last sent
        self.pending: asyncio.TimerHandle | None = None
        self.debounce = DEBOUNCE_S
        self.overrides: dict = {}

    # documents and paths

    def documents(self) -> dict[str, object]:
        return dict(self.workspace.text_documents)

    def is_open(self, uri: str) -> bool:
        return uri in self.workspace.text_documents

    def doc_path(self, uri: str) -> str:
        path = None
        try:
            path = to_fs_path(uri)
        except (ValueError, TypeError, AttributeError):
            path = None
        if not path:
            parsed = urlparse(uri)
            name = os.path.basename(unquote(parsed.path or parsed.netloc or "untitled")) or "untitled"
            path = os.path.join(os.getcwd(), name if name.endswith(".arch") else name + ".arch")
        return A.norm(path)

    def overlay(self) -> dict[str, str]:
        return {self.doc_path(uri): doc.source for uri, doc in self.documents().items()}

    def uri_for(self, path: str) -> str:
        for uri in self.documents():
            if self.doc_path(uri) == path:
                return uri
        return from_fs_path(path) or path

    def text_of(self, path: str, analysis: A.Analysis | None = None, overlay: dict[str, str] | None = None) -> str:
        """The current text of a file: the editor's where it is open, else what was read, else the disk."""
        overlay = self.overlay() if overlay is None else overlay
        if path in overlay:
            return overlay[path]
        if analysis is not None and path in analysis.sources:
            return analysis.sources[path]
        try:
            with open(path, encoding="utf-8") as f:
                return f.read()
        except (OSError, UnicodeDecodeError):
            return ""

    # analysis

    @staticmethod
    def file_state(path: str, overlay: dict[str, str]) -> tuple:
        """What an analysis depends on in a file: the editor's text where it is open, else the file's
        modification time and size on disk (None where it is missing)."""
        if path in overlay:
            return ("buffer", overlay[path])
        try:
            st = os.stat(path)
        except OSError:
            return ("disk", None)
        return ("disk", st.st_mtime_ns, st.st_size)

    def is_fresh(self, uri: str, overlay: dict[str, str]) -> bool:
        a = self.analyses.get(uri)
        if a is None:
            return False
        snapshot = self.snapshots.get(uri, {})
        return all(self.file_state(f, overlay) == snapshot.get(f) for f in a.files | {a.path})

    def refresh(self) -> None:
        """Analyse every open document whose text, or the text of an open file it reads, changed;
        then send the diagnostics that changed."""
        if self.pending is not None:
            self.pending.cancel()
            self.pending = None
        overlay = self.overlay()
        docs = self.documents()
        for uri in list(self.analyses):
            if uri not in docs:
                del self.analyses[uri]
                self.good.pop(uri, None)
                self.parsed.pop(uri, None)
                self.snapshots.pop(uri, None)
        for uri, doc in docs.items():
            if self.is_fresh(uri, overlay):
                continue
            path = self.doc_path(uri)
            a = A.analyze(path, doc.source, overlay, self.overrides)
            if a.internal:
                self.log_to_client(f"archdsl: internal error analysing {path}:\n{a.internal}")
            self.analyses[uri] = a
            self.snapshots[uri] = {f: self.file_state(f, overlay) for f in a.files | {path}}
            if a.module is not None:
                self.parsed[uri] = a
            if a.program is not None and (a.elab is not None or uri not in self.good
                                          or self.good[uri].elab is None):
                self.good[uri] = a
        self.publish()

    def schedule(self, uri: str) -> None:
        self.forced.add(uri)
        if self.pending is not None:
            self.pending.cancel()
        loop = asyncio.get_running_loop()
        self.pending = loop.call_later(self.debounce, self._refresh_later)

    def _refresh_later(self) -> None:
        self.pending = None
        try:
            self.refresh()
        except Exception:
            log.exception("internal error in analysis")
            self.internal_error("analysis")

    def log_to_client(self, message: str, kind: T.MessageType = T.MessageType.Error) -> None:
        try:
            self.window_log_message(T.LogMessageParams(type=kind, message=message))
        except Exception:
            log.exception("cannot send a log message")

    def internal_error(self, what: str) -> None:
        """Tell the client's log about a failure (the server's own log has it already)."""
        tb = traceback.format_exc()
        self.log_to_client(f"archdsl: internal error in {what}:\n{tb}")

    # diagnostics

    def collect(self) -> dict[str, list[T.Diagnostic]]:
        out: dict[str, list[T.Diagnostic]] = {}
        seen: set[tuple] = set()

        def add(uri: str, diag: T.Diagnostic, key: str) -> None:
            k = (uri, diag.range.start.line, diag.range.start.character, diag.range.end.line,
                 diag.range.end.character, key)
            if k not in seen:
                seen.add(k)
                out.setdefault(uri, []).append(diag)

        foreign = []  # errors in another file than the one analysed: after every file's own errors
        for uri, a in self.analyses.items():
            out.setdefault(uri, [])
            if a.internal:
                line = a.internal.strip().splitlines()[-1]
                add(uri, T.Diagnostic(range=_zero(), severity=T.DiagnosticSeverity.Warning, source="archdsl",
                                      message=f"archdsl could not check this file (internal error: {line}); "
                                              "see the server log"), "internal")
            err = a.error
            if err is None:
                continue
            if err.span is None or A.norm(err.span.file) == a.path:
                rng = self.span_range(err.span, a.text) if err.span else _zero()
                add(uri, _diag(rng, _message(err)), err.message)
            else:
                foreign.append((uri, a, err))
        for uri, a, err in foreign:
            # an error in another file: there, and at the import that leads to it
            message = _message(err)
            file = A.norm(err.span.file)
            other_uri = self.uri_for(file)
            other_range = self.span_range(err.span, self.text_of(file, a))
            add(other_uri, _diag(other_range, f"{message}\n(found checking {os.path.basename(a.path)})"),
                err.message)
            imp = _import_leading_to(a, file)
            rel = os.path.relpath(file, os.path.dirname(a.path))
            rng = self.span_range(imp.span, a.text) if imp is not None else _zero()
            related = [T.DiagnosticRelatedInformation(location=T.Location(uri=other_uri, range=other_range),
                                                      message=err.message)]
            add(uri, _diag(rng, f"{rel}:{err.span.line}:{err.span.column}: {message}", related), err.message)
        return out

    def publish(self) -> None:
        new = self.collect()
        docs = self.documents()
        for uri in set(new) | set(self.published):
            diags = new.get(uri, [])
            if diags == self.published.get(uri, []) and uri not in self.forced:
                continue
            version = getattr(docs.get(uri), "version", None)
            self.text_document_publish_diagnostics(T.PublishDiagnosticsParams(uri=uri, diagnostics=diags,
                                                                              version=version))
            if diags:
                self.published[uri] = diags
            else:
                self.published.pop(uri, None)
        self.forced.clear()

    # positions

    def units(self, s: str) -> int:
        enc = str(self.workspace.position_encoding or "utf-16")
        if "8" in enc:
            return len(s.encode("utf-8"))
        if "32" in enc:
            return len(s)
        return len(s.encode("utf-16-le")) // 2

    def to_points(self, line_text: str, units: int) -> int:
        count = 0
        for i, c in enumerate(line_text):
            if count >= units:
                return i
            count += self.units(c)
        return len(line_text)

    def position(self, text: str, line0: int, col0: int) -> T.Position:
        lines = text.split("\n")
        line0 = max(0, min(line0, len(lines) - 1))
        line_text = lines[line0].rstrip("\r")
        col0 = max(0, min(col0, len(line_text)))
        return T.Position(line=line0, character=self.units(line_text[:col0]))

    def span_range(self, span: Span, text: str) -> T.Range:
        """The range of a span; a span without extent becomes the word (or character) at its start."""
        lines = text.split("\n")
        line0 = max(0, min(span.line - 1, len(lines) - 1))
        line_text = lines[line0].rstrip("\r")
        c0 = max(0, span.column - 1)
        end_line0, c1 = span.end_line - 1, span.end_column - 1
        if (end_line0, c1) <= (line0, c0) or end_line0 >= len(lines):
            end_line0 = line0
            word, start, end = A.word_at(line_text, c0)
            c1 = end if word and start == c0 else c0 + 1
        if c0 >= len(line_text) and end_line0 == line0 and line_text:
            c0, c1 = len(line_text) - 1, len(line_text)  # past the end of the line: its last character
        return T.Range(start=self.position(text, line0, c0), end=self.position(text, end_line0, c1))

    def cursor(self, uri: str, pos: T.Position) -> tuple[str, str, int, int, str]:
        """(path, text, line0, col0 in code points, the line's text) of a request's position."""
        doc = self.workspace.get_text_document(uri)
        text = doc.source
        lines = text.split("\n")
        line0 = max(0, min(pos.line, len(lines) - 1))
        line_text = lines[line0].rstrip("\r")
        return self.doc_path(uri), text, line0, self.to_points(line_text, pos.character), line_text

    def location(self, span: Span, analysis: A.Analysis | None = None) -> T.Location:
        path = A.norm(span.file)
        return T.Location(uri=self.uri_for(path), range=self.span_range(span, self.text_of(path, analysis)))

    # knowledge shared by the features

    def candidates(self, uri: str, path: str) -> list[A.Analysis]:
        """Analyses that may know the instances of what is in the file `path`: the document's own,
        those of other open documents that read the file, then the last good ones."""
        out: list[A.Analysis] = []
        own = self.analyses.get(uri)
        if own is not None:
            out.append(own)
        out.extend(a for u, a in self.analyses.items() if u != uri and path in a.modules)
        if uri in self.good:
            out.append(self.good[uri])
        out.extend(a for u, a in self.good.items() if u != uri and path in a.modules)
        seen: set[int] = set()
        return [a for a in out if not (id(a) in seen or seen.add(id(a)))]  # type: ignore[func-returns-value]

    def blocks(self, uri: str) -> dict[str, tuple[list[str], str, Span | None]]:
        """Every block the document can call: name -> (parameter names, signature, where defined)."""
        a = self.analyses.get(uri)
        path = self.doc_path(uri)
        text = self.workspace.get_text_document(uri).source
        overlay = self.overlay()
        out: dict[str, tuple[list[str], str, Span | None]] = {}
        defs = dict(a.blocks) if a is not None else {}
        if a is None or a.module is None:  # this file does not parse: its imports, then the old tree
            defs = {**A.imported_blocks(path, text, overlay), **defs}
            good = self.good.get(uri)
            if good is not None:
                defs = {**good.blocks, **defs}
        for name, b in defs.items():
            src = self.text_of(A.norm(b.name_span.file), a, overlay)
            out[name] = ([p.name for p in b.params], A.block_signature(b, src), b.name_span)
        if a is None or a.module is None:
            for name, params in A.scan_blocks(text).items():
                if name not in out or (out[name][2] is not None and A.norm(out[name][2].file) == path):
                    out[name] = (params, f"block {name}({', '.join(params)})", out.get(name, (0, 0, None))[2])
        return out


def _zero() -> T.Range:
    return T.Range(start=T.Position(line=0, character=0), end=T.Position(line=0, character=1))


def _message(err: ArchError) -> str:
    parts = [err.message]
    if err.context:
        parts.append(err.context)
    parts.extend(f"note: {n}" for n in err.notes)
    return "\n".join(parts)


def _diag(rng: T.Range, message: str, related: list | None = None) -> T.Diagnostic:
    return T.Diagnostic(range=rng, message=message, severity=T.DiagnosticSeverity.Error, source="archdsl",
                        related_information=related)


def _import_leading_to(a: A.Analysis, file: str):
    """The import of the analysed file through which `file` is (transitively) read."""
    if a.module is None:
        return None
    base = os.path.dirname(a.path)
    for imp in a.module.imports:
        start = A.norm(os.path.join(base, imp.path))
        todo, seen = [start], set()
        while todo:
            f = todo.pop()
            if f == file:
                return imp
            if f in seen:
                continue
            seen.add(f)
            module = a.modules.get(f)
            if module is not None:
                todo.extend(A.norm(os.path.join(os.path.dirname(f), i.path)) for i in module.imports)
    return a.module.imports[0] if a.module.imports else None


def guarded(server: ArchServer, default=None) -> Callable:
    """A handler that logs any exception and answers `default`: no request takes the server down."""

    def wrap(f: Callable) -> Callable:
        @functools.wraps(f)
        def inner(params):
            try:
                return f(params)
            except Exception:
                log.exception("internal error in %s", f.__name__)
                server.internal_error(f.__name__)
                return default

        return inner

    return wrap


# Features -------------------------------------------------------------------------------------------

def create_server() -> ArchServer:
    server = ArchServer()

    @server.feature(T.INITIALIZE)
    @guarded(server)
    def initialize(params: T.InitializeParams) -> None:
        options = params.initialization_options or {}
        if isinstance(options, dict):
            if isinstance(options.get("debounce"), (int, float)):
                server.debounce = max(0.0, float(options["debounce"]))
            if isinstance(options.get("set"), dict):
                server.overrides = dict(options["set"])

    @server.feature(T.TEXT_DOCUMENT_DID_OPEN)
    @guarded(server)
    def did_open(params: T.DidOpenTextDocumentParams) -> None:
        server.forced.add(params.text_document.uri)
        server.refresh()

    @server.feature(T.TEXT_DOCUMENT_DID_CHANGE)
    @guarded(server)
    def did_change(params: T.DidChangeTextDocumentParams) -> None:
        server.schedule(params.text_document.uri)

    @server.feature(T.TEXT_DOCUMENT_DID_SAVE)
    @guarded(server)
    def did_save(params: T.DidSaveTextDocumentParams) -> None:
        server.refresh()

    @server.feature(T.TEXT_DOCUMENT_DID_CLOSE)
    @guarded(server)
    def did_close(params: T.DidCloseTextDocumentParams) -> None:
        server.refresh()

    @server.feature(T.WORKSPACE_DID_CHANGE_WATCHED_FILES)
    @guarded(server)
    def did_change_watched_files(params: T.DidChangeWatchedFilesParams) -> None:
        server.refresh()  # a file changed on disk: the analyses that read it are stale (by its mtime)

    @server.feature(T.TEXT_DOCUMENT_HOVER)
    @guarded(server)
    def hover(params: T.HoverParams) -> T.Hover | None:
        if not server.is_open(params.text_document.uri):
            return None
        server.refresh()
        return _hover(server, params.text_document.uri, params.position)

    @server.feature(T.TEXT_DOCUMENT_DEFINITION)
    @guarded(server)
    def definition(params: T.DefinitionParams) -> T.Location | None:
        if not server.is_open(params.text_document.uri):
            return None
        server.refresh()
        return _definition(server, params.text_document.uri, params.position)

    @server.feature(T.TEXT_DOCUMENT_COMPLETION,
                    T.CompletionOptions(trigger_characters=["(", ",", '"', "/"]))
    @guarded(server)
    def completion(params: T.CompletionParams) -> T.CompletionList | None:
        if not server.is_open(params.text_document.uri):
            return None
        server.refresh()
        return _completion(server, params.text_document.uri, params.position)

    @server.feature(T.TEXT_DOCUMENT_DOCUMENT_SYMBOL)
    @guarded(server)
    def document_symbol(params: T.DocumentSymbolParams) -> list[T.DocumentSymbol] | None:
        if not server.is_open(params.text_document.uri):
            return None
        server.refresh()
        return _symbols(server, params.text_document.uri)

    if _has_formatter():
        @server.feature(T.TEXT_DOCUMENT_FORMATTING)
        @guarded(server)
        def formatting(params: T.DocumentFormattingParams) -> list[T.TextEdit] | None:
            from ..fmt import format_source  # written by another part of archdsl; imported when used

            uri = params.text_document.uri
            if not server.is_open(uri):
                return None
            text = server.workspace.get_text_document(uri).source
            try:
                new = format_source(text, server.doc_path(uri))
            except ArchError:
                return None  # a spec with an error is left as it is (the diagnostics say why)
            if new == text:
                return []
            lines = text.split("\n")
            end = T.Position(line=len(lines) - 1, character=server.units(lines[-1]))
            return [T.TextEdit(range=T.Range(start=T.Position(line=0, character=0), end=end), new_text=new)]

    return server


def _markdown(value: str, rng: T.Range | None) -> T.Hover:
    return T.Hover(contents=T.MarkupContent(kind=T.MarkupKind.Markdown, value=value), range=rng)


def _hover(server: ArchServer, uri: str, pos: T.Position) -> T.Hover | None:
    path, text, line0, col0, line_text = server.cursor(uri, pos)
    if A.in_comment(line_text, col0):
        return None
    word, w0, w1 = A.word_at(line_text, col0)
    rng = T.Range(start=server.position(text, line0, w0), end=server.position(text, line0, w1))
    own = server.analyses.get(uri)
    current = A.target_at(own.module, line0 + 1, col0 + 1) if own is not None and own.module is not None else None
    found = None
    for cand in server.candidates(uri, path):
        hit = A.node_at(cand, path, text, line0 + 1, col0 + 1)
        if hit is None or (current is not None and (hit[0].kind, hit[0].name) != (current.kind, current.name)):
            continue
        if cand.uses(hit[1]) or (found is None and cand is own):
            found = (cand, hit[0], hit[1])
            if cand.uses(hit[1]):
                break
    target = current if current is not None else (found[1] if found else None)
    blocks = server.blocks(uri)
    parts: list[str] = []
    if target is None:
        imp = A.import_at(line_text, col0)
        if imp is not None:
            return _markdown(_import_hover(server, path, imp), rng)
        if word in LAYERS:
            return _markdown(A.layer_doc(LAYERS[word], word), rng)
        if word in blocks:
            return _markdown(f"```arch\n{blocks[word][1]}\n```", rng)
        return None
    if target.kind == "import":
        return _markdown(_import_hover(server, path, target.name), rng)
    if target.kind == "kwarg":
        call = target.call
        doc = A.param_doc(call.name if call else "", target.name, own.blocks if own else {})
        return _markdown(doc, rng) if doc else None
    if target.kind == "call":
        name = target.name
        label = target.node.label if isinstance(target.node, S.Call) else None  # type: ignore[attr-defined]
        if name in LAYERS:
            parts.append(A.layer_doc(LAYERS[name], name))
        elif name in blocks:
            _, signature, where = blocks[name]
            loc = f" ({os.path.relpath(A.norm(where.file), os.path.dirname(path))}:{where.line})" if where else ""
            parts.append(f"```arch\n{signature}\n```\nblock{loc}")
        else:
            parts.append(f"`{name}`: unknown layer or block")
        if label and word == label:
            parts.insert(0, f"**{label}**: `{name}`")
    elif target.kind == "composite":
        parts.append(f"**{target.name}**")
    elif target.kind == "tensor":
        parts.append(f"tensor **{target.name}**" + _tensor_origin(target))
    elif target.kind == "blockdef":
        if target.name in blocks:
            parts.append(f"```arch\n{blocks[target.name][1]}\n```")
    elif target.kind == "network":
        fresh = own if own is not None and own.elab is not None else server.good.get(uri, own)
        parts.append(_network_hover(fresh))
    elif target.kind == "output":
        parts.append(_output_hover(server, uri, target.name))
    if found is not None and target.kind not in ("network", "output"):
        cand, _, node = found
        if cand.uses(node):
            parts.append("---\n" + A.instances_text(node, cand.uses(node), A.where_text(cand)))
            if cand.elab is None:
                parts.append("_the shape check stopped at an error: instances after it are not shown_")
        elif target.kind in ("call", "composite", "blockdef") and cand.elab is not None:
            parts.append("---\n_not used in this expansion_")
    if target.kind in ("call", "blockdef") and (found is None or not found[0].uses(found[2])):
        a = own
        if a is not None and a.library and not any(c.program for c in server.candidates(uri, path)):
            parts.append("_open a spec that imports this file to see shapes, parameters and MACs_")
    return _markdown("\n\n".join(p for p in parts if p), rng) if parts else None


def _tensor_origin(target: A.Target) -> str:
    """What a named tensor is, where its statement says more than `name = ...`: a part of a channel
    split, or a base's feature map at a label."""
    stmt = target.node
    if not isinstance(stmt, S.Split):
        return ""
    call = stmt.items[-1]
    if isinstance(call, S.Call) and call.through is not None and target.name in stmt.names:
        label = call.through[min(stmt.names.index(target.name), len(call.through) - 1)][0]
        return f", the feature map of {call.label or call.name} ({call.name}) at `{label}`"
    return ", a part of a channel split"


def _import_hover(server: ArchServer, path: str, imp: str) -> str:
    target = A.norm(os.path.join(os.path.dirname(path), imp))
    if not os.path.exists(target) and target not in server.overlay():
        return f"`{imp}`: no such file ({target})"
    text = server.text_of(target)
    names = sorted(A.scan_blocks(text))
    return f"`{target}`\n\nblocks: {', '.join(f'`{n}`' for n in names) or 'none'}"


def _network_hover(a: A.Analysis | None) -> str:
    if a is None or a.program is None:
        return ""
    net = a.program.network
    lines = [f"**network {net.name}**"]
    if a.elab is not None:
        t = totals(rows(a.elab))
        lines.append(f"input {a.elab.root.in_shape} · {outputs_text(a.elab)}  ")
        lines.append(f"{grouped(t.params)} params · {grouped(t.macs)} MACs ({humanize(t.macs)}) · {t.layers} layers")
    return "\n".join(lines)


def _output_hover(server: ArchServer, uri: str, name: str) -> str:
    for a in (server.analyses.get(uri), server.good.get(uri)):
        if a is not None and a.elab is not None:
            for out_name, inst in a.elab.outputs:
                if out_name == name:
                    return f"output **{name}**: {inst.out_shape}"
    return f"output **{name}**"


def _definition(server: ArchServer, uri: str, pos: T.Position) -> T.Location | None:
    path, text, line0, col0, line_text = server.cursor(uri, pos)
    imp = A.import_at(line_text, col0)
    if imp is not None:
        target = A.norm(os.path.join(os.path.dirname(path), imp))
        if not os.path.exists(target) and target not in server.overlay():
            return None
        zero = T.Range(start=T.Position(line=0, character=0), end=T.Position(line=0, character=0))
        return T.Location(uri=server.uri_for(target), range=zero)
    if A.in_comment(line_text, col0):
        return None
    word, _, _ = A.word_at(line_text, col0)
    if not word:
        return None
    blocks = server.blocks(uri)
    if word in blocks and blocks[word][2] is not None:
        return server.location(blocks[word][2], server.analyses.get(uri))
    # a parameter or let of the enclosing block or network
    a = server.analyses.get(uri)
    module = a.module if a is not None and a.module is not None else None
    if module is not None:
        for d in [*module.blocks, *module.networks]:
            if d.span.line <= line0 + 1 <= d.span.end_line:
                lets = [s for s in d.body.stmts if isinstance(s, S.Let) and s.name == word
                        and s.span.line <= line0 + 1]
                if lets:
                    return server.location(_name_span(lets[-1].span, "let", text), a)
                for p in d.params:
                    if p.name == word:
                        return server.location(A.word_span(p.span, word), a)
                for name, span in A.tensor_names(d):
                    if name == word:
                        return server.location(span, a)
    return None


# Keywords offered where they may stand (tests/test_tokens.py holds each to be one of the grammar's).
_VALUE_WORDS = ("true", "false", "in", "not", "and", "or", "if", "else")
_ITEM_KEYWORDS = ("residual", "concat", "branch", "shortcut", "scale", "if", "else", "for", "let", "output", "auxiliary",
                  "input", "assert", "in")
_TOP_KEYWORDS = ("import", "block", "network")


def _completion(server: ArchServer, uri: str, pos: T.Position) -> T.CompletionList | None:
    path, text, line0, col0, line_text = server.cursor(uri, pos)
    K = T.CompletionItemKind
    items: list[T.CompletionItem] = []
    prefix = A.import_prefix(line_text, col0)
    if prefix is not None:
        return T.CompletionList(is_incomplete=False, items=_file_items(path, prefix))
    if A.in_comment(line_text, col0):
        return None
    blocks = server.blocks(uri)
    ctx = A.call_context(text, line0, col0)
    if ctx is not None and (ctx.callee in LAYERS or ctx.callee in blocks or ctx.callee == "residual"):
        if ctx.at_name:
            if ctx.callee in LAYERS:
                sig = [(p.name, p.doc) for p in LAYERS[ctx.callee].params]
            elif ctx.callee == "residual":
                sig = [("drop_path", "stochastic-depth rate of the residual branch")]
            else:
                sig = [(n, f"parameter of block {ctx.callee}") for n in blocks[ctx.callee][0]]
            for i, (name, doc) in enumerate(sig):
                if name in ctx.given or i < ctx.positional:
                    continue
                items.append(T.CompletionItem(label=f"{name} =", kind=K.Property, detail=f"{ctx.callee}: {doc}",
                                              insert_text=f"{name} = ", filter_text=name, sort_text=f"0{i:02d}"))
        items.extend(_value_items(server, uri, line0))
        return T.CompletionList(is_incomplete=False, items=items)
    if ctx is not None or _expression_position(line_text[:col0]):
        return T.CompletionList(is_incomplete=False, items=_value_items(server, uri, line0))
    seen: set[str] = set()
    for name, ltype in LAYERS.items():
        seen.add(name)
        items.append(T.CompletionItem(label=name, kind=K.Function, detail=A.layer_signature(ltype, name),
                                      documentation=T.MarkupContent(kind=T.MarkupKind.Markdown,
                                                                    value=A.layer_doc(ltype, name)),
                                      sort_text=f"1{name}"))
    for name, (params, signature, where) in blocks.items():
        if name in seen:
            continue
        items.append(T.CompletionItem(label=name, kind=K.Class, detail=signature, sort_text=f"0{name}"))
    items += _tensor_items(_enclosing(server, uri, line0))  # a chain may start from a named tensor
    before = line_text[:col0].strip()
    for kw in (_TOP_KEYWORDS if not before or before.isidentifier() else ()) + _ITEM_KEYWORDS:
        items.append(T.CompletionItem(label=kw, kind=K.Keyword, sort_text=f"2{kw}"))
    return T.CompletionList(is_incomplete=False, items=items)


def _expression_position(before: str) -> bool:
    """Whether the text before the cursor on its line ends where a value is expected."""
    return re.search(r"(=|\*|[-+/%<>,\[]|\bif|\band|\bor|\bnot|\bassert|\brange\()\s*[A-Za-z_0-9.]*$", before) \
        is not None and not re.match(rf"\s*{A.NAME_PATTERN}\s*=\s*[A-Za-z_0-9]*$", before)


def _value_items(server: ArchServer, uri: str, line0: int) -> list[T.CompletionItem]:
    K = T.CompletionItemKind
    items = [T.CompletionItem(label=s, kind=K.Constant, sort_text=f"3{s}") for s in SYMBOLS]
    items += [T.CompletionItem(label=f, kind=K.Function, detail="function", sort_text=f"4{f}") for f in FUNCTIONS]
    items += [T.CompletionItem(label=w, kind=K.Keyword, sort_text=f"5{w}") for w in _VALUE_WORDS]
    d = _enclosing(server, uri, line0)
    if d is not None:
        names = [p.name for p in d.params] + [s.name for s in d.body.stmts if isinstance(s, S.Let)]
        for n in dict.fromkeys(names):
            items.append(T.CompletionItem(label=n, kind=K.Variable, detail=f"in {d.name}", sort_text=f"1{n}"))
        items += _tensor_items(d)
    return items


def _enclosing(server: ArchServer, uri: str, line0: int) -> S.BlockDef | S.NetworkDef | None:
    """The block or network around a line, in the file's tree (or the last tree it had)."""
    a = server.analyses.get(uri)
    module = a.module if a is not None and a.module is not None else None
    if module is None and uri in server.parsed:
        module = server.parsed[uri].module  # the last tree this file had
    if module is not None:
        for d in [*module.blocks, *module.networks]:
            if d.span.line <= line0 + 1 <= d.span.end_line:
                return d
    return None


def _tensor_items(d: S.BlockDef | S.NetworkDef | None) -> list[T.CompletionItem]:
    """The tensors a definition names (`h = ...`, `a, b = x split(2)`), for a chain's start or an
    argument of concat, add or like = ..."""
    if d is None:
        return []
    return [T.CompletionItem(label=n, kind=T.CompletionItemKind.Variable, detail=f"tensor in {d.name}",
                             sort_text=f"1{n}") for n in dict.fromkeys(n for n, _ in A.tensor_names(d))]


def _file_items(path: str, prefix: str) -> list[T.CompletionItem]:
    base = os.path.dirname(path)
    folder = os.path.dirname(prefix)
    items = []
    try:
        entries = sorted(os.listdir(os.path.join(base, folder)))
    except OSError:
        return []
    for e in entries:
        full = os.path.join(base, folder, e)
        rel = os.path.join(folder, e) if folder else e
        if os.path.isdir(full) and not e.startswith("."):
            items.append(T.CompletionItem(label=rel + "/", kind=T.CompletionItemKind.Folder))
        elif e.endswith(".arch") and A.norm(full) != path:
            items.append(T.CompletionItem(label=rel, kind=T.CompletionItemKind.File))
    return items


def _symbols(server: ArchServer, uri: str) -> list[T.DocumentSymbol] | None:
    a = server.analyses.get(uri)
    text = server.workspace.get_text_document(uri).source
    module = a.module if a is not None else None
    if module is None and uri in server.parsed:
        module = server.parsed[uri].module  # the last tree this file had
    if module is None:
        return []
    elab = a.elab if a is not None and a.elab is not None else None
    K = T.SymbolKind

    def sym(name: str, kind, span: Span, sel: Span, detail: str | None = None, children=None) -> T.DocumentSymbol:
        rng = server.span_range(span, text)
        sel_rng = server.span_range(sel, text)
        if not _within(sel_rng, rng):
            sel_rng = T.Range(start=rng.start, end=rng.start)
        return T.DocumentSymbol(name=name, kind=kind, range=rng, selection_range=sel_rng, detail=detail,
                                children=children or [])

    out = []
    for imp in module.imports:
        out.append(sym(imp.path, K.File, imp.span, imp.span, "import"))
    for block in module.blocks:
        children = [sym(p.name, K.TypeParameter, p.span, A.word_span(p.span, p.name), "parameter")
                    for p in block.params]
        children += _labels(block.body, sym)
        out.append(sym(block.name, K.Class, block.span, block.name_span,
                       A.block_signature(block, text).removeprefix(f"block {block.name}"), children))
    for net in module.networks:
        children = [sym(p.name, K.TypeParameter, p.span, A.word_span(p.span, p.name), "parameter")
                    for p in net.params]
        children += _labels(net.body, sym)
        detail = None
        if elab is not None:
            t = totals(rows(elab))
            detail = f"{outputs_text(elab)}, {grouped(t.params)} params, {humanize(t.macs)} MACs"
        shapes = dict(elab.outputs) if elab is not None else {}
        for stmt in net.body.stmts:
            if isinstance(stmt, S.Output):
                name_span = _name_span(stmt.span, "output", text)
                shape = shapes.get(stmt.name)
                children.append(sym(stmt.name, K.Event, stmt.span, name_span,
                                    f"output {shape.out_shape}" if shape is not None else "output"))
        children.sort(key=lambda s: (s.range.start.line, s.range.start.character))
        out.append(sym(net.name, K.Module, net.span, net.name_span, detail, children))
    return out


def _within(inner: T.Range, outer: T.Range) -> bool:
    def key(p: T.Position) -> tuple[int, int]:
        return (p.line, p.character)

    return key(outer.start) <= key(inner.start) and key(inner.end) <= key(outer.end)


def _name_span(span: Span, keyword: str, text: str) -> Span:
    """The span of the name after a keyword (`output name`, `let name`) at the start of a statement."""
    lines = text.split("\n")
    if 0 < span.line <= len(lines):
        m = re.compile(rf"{re.escape(keyword)}\s+({A.NAME_PATTERN})").match(lines[span.line - 1], span.column - 1)
        if m:
            return Span(span.file, span.line, m.start(1) + 1, span.line, m.end(1) + 1)
    return span


def _labels(body, sym) -> list[T.DocumentSymbol]:
    """Labelled items of a body (nested groups included), as fields."""
    out = []

    def visit_item(item):
        if item.label is not None and item.label_span is not None:
            what = item.name if isinstance(item, S.Call) else type(item).__name__.lower()
            whole = Span(item.label_span.file, item.label_span.line, item.label_span.column,
                         item.span.end_line, item.span.end_column)
            out.append(sym(item.label, T.SymbolKind.Field, whole, item.label_span, what))
        if isinstance(item, S.Repeat):
            visit_item(item.item)
        else:
            for b in _sub_bodies(item):
                visit(b)

    def visit(b):
        for stmt in b.stmts:
            if isinstance(stmt, (S.Chain, S.Bind)):
                for item in stmt.items:
                    visit_item(item)

    visit(body)
    return out


def _sub_bodies(item) -> list:
    if isinstance(item, S.Group):
        return [item.body]
    if isinstance(item, S.Concat):
        return list(item.branches)
    if isinstance(item, S.Residual):
        return [item.body] + ([item.shortcut] if item.shortcut is not None else [])
    if isinstance(item, S.Scale):
        return [item.body]
    if isinstance(item, S.If):
        return [item.then] + ([item.otherwise] if item.otherwise is not None else [])
    return []


def serve() -> None:
    """Serve the Language Server Protocol over stdin/stdout until the client says exit."""
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="archdsl lsp: %(levelname)s: %(message)s")
    create_server().start_io()
