"""What the language server knows about a file, without any LSP in it: the syntax tree, the typed
graph and the expansion of a spec read from editor buffers where they are open, and the queries
the server answers from them (what is at a position, hover text, completion context).

Positions here are 1-based lines and 1-based columns counted in code points, as the parser's
spans are; archdsl/editor/lsp/server.py converts them to and from the client's units.
"""

from __future__ import annotations

import difflib
import functools
import logging
import os
import re
import traceback
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from ...api import Pipeline, elaborate
from ...core import graph as G
from ...core.elaborate import Loader
from ...core.layers import FUNCTIONS, LAYERS, REQUIRED, LayerType, describe
from ...core.shapes import all_nodes
from ...language import syntax as S
from ...language import tokens
from ...language.errors import ArchError, Span, source_lines
from ...reports.summary import grouped, humanize, make_row, rows, totals
from ...util.running import collector_paused, deep

KEYWORDS = tokens.KEYWORDS  # the grammar's reserved words
log = logging.getLogger("archdsl.editor.lsp")
MAX_ROWS = 12  # instance rows shown in a hover before the rest is summarized


@functools.lru_cache(maxsize=1024)
def norm(path: str) -> str:
    """The key of a file: absolute and normalized, so that `lib/../lib/x.arch` and `lib/x.arch` meet."""
    return os.path.normpath(os.path.abspath(path))


def contains(span: Span, line: int, col: int) -> bool:
    """Whether a position lies in a span; the end column counts too (a cursor just after a word)."""
    if (line, col) < (span.line, span.column):
        return False
    return (line, col) <= (span.end_line, span.end_column)


# Loading from editor buffers --------------------------------------------------------------------

class OverlayLoader(Loader):
    """The compiler's Loader, reading the text of open documents (unsaved edits included) instead of
    their files on disk; every other file is read from disk. It also records every file it tried to
    read, so that a change to any of them marks the analysis stale."""

    def __init__(self, overlay: Mapping[str, str]) -> None:
        super().__init__()
        self.overlay = overlay  # normalized path -> text
        self.files: set[str] = set()

    def read(self, path: str, imported_at: Span | None = None) -> str:
        key = norm(path)
        self.files.add(key)
        text = self.overlay.get(key)
        return super().read(path, imported_at) if text is None else text


@dataclass(eq=False)
class Analysis:
    """One file analysed for one state of the open documents."""

    path: str  # normalized
    text: str
    module: S.Module | None = None  # this file's syntax tree; None on a syntax error in it
    program: G.Program | None = None  # the typed graph (a spec whose elaboration succeeded)
    elab: G.Elaborated | None = None  # the expansion (a spec whose shape check succeeded)
    # id of a definition node or block of `program` -> its instances in the expansion (elab.per_node), or
    # those made up to the error where the shape check stopped
    per_node: dict[int, list[G.Inst]] = field(default_factory=dict)
    error: ArchError | None = None  # the first error, as the compiler reports it
    internal: str | None = None  # a traceback: archdsl itself failed on this text
    library: bool = False  # a file without a network (only blocks)
    modules: dict[str, S.Module] = field(default_factory=dict)  # normalized path -> syntax tree
    sources: dict[str, str] = field(default_factory=dict)  # normalized path -> text read
    blocks: dict[str, S.BlockDef] = field(default_factory=dict)  # every block loaded, by name
    files: set[str] = field(default_factory=set)  # normalized paths it read or tried to read
    index: dict[Span, G.Node] = field(default_factory=dict)  # syntax span -> typed node

    def uses(self, node: G.Node | G.BlockDef) -> list[G.Inst]:
        """The instances of a typed node (or block) of `program` in the expansion, or in as much of it
        as the shape check got through."""
        return self.per_node.get(id(node), [])

    @property
    def network(self) -> S.NetworkDef | None:
        return self.module.networks[0] if self.module is not None and self.module.networks else None


def analyze(path: str, text: str, overlay: Mapping[str, str] | None = None,
            overrides: dict | None = None) -> Analysis:
    """Parse, elaborate and shape-check `text` as the file `path`, reading the files it imports from
    `overlay` (normalized path -> text) where they are there. Never raises: the first error of the
    spec goes to `.error`, a failure of archdsl itself to `.internal`."""
    path = norm(path)
    a = Analysis(path, text)
    loader = OverlayLoader({**(overlay or {}), path: text})
    try:
        module = loader.load(path)
        a.module = module
        a.library = not module.networks
        # a file being written that has neither blocks nor a network yet is no error in the editor
        program = elaborate(path, loader, library=True) if module.networks or module.blocks else None
        if isinstance(program, G.Program):
            a.program = program
            a.index = build_index(a.program)
            # the compiler's expansion, with its limits (archdsl/language/limits.py): a half-typed `* 1000000000`
            # is an error at the count at once, and no expansion goes past MAX_INSTANCES
            pipeline = Pipeline()
            pipeline.program = a.program
            try:
                with collector_paused():
                    a.elab = deep(pipeline.expand, overrides)
            finally:
                a.per_node = pipeline.per_node
    except ArchError as e:
        a.error = e
    except RecursionError:
        a.error = ArchError("the spec nests too deeply to expand", Span(path, 1, 1, 1, 1))
    except Exception:  # a bug in archdsl: logged, and the server goes on
        log.exception("internal error analysing %s", path)
        a.internal = traceback.format_exc()
    if a.module is None and path in loader.modules:
        a.module = loader.modules[path]
    a.modules = dict(loader.modules)
    a.sources = {norm(p): t for p, t in loader.sources.items()}
    a.blocks = dict(loader.blocks)
    a.files = set(loader.files)
    return a


def build_index(program: G.Program) -> dict[Span, G.Node]:
    """Every node of the typed graph by the span of the syntax it came from (a layer or block call,
    a composite, a group), so that a place in the source finds the node and its instances."""
    index: dict[Span, G.Node] = {}
    bodies: list[G.Seq] = [program.network.body, *(b.body for b in program.blocks.values())]
    for body in bodies:
        for node in all_nodes(body):
            index.setdefault(node.span, node)
        last: G.Node | None = None  # a named tensor's name: the node whose result it names
        for item in body.items:
            if isinstance(item, G.Load):
                last = None
            elif isinstance(item, G.Node):
                last = item
            elif isinstance(item, G.Store) and last is not None:
                index.setdefault(item.span, last)
    return index


def tensor_names(d: S.BlockDef | S.NetworkDef) -> list[tuple[str, Span]]:
    """The tensors a block or network names (`h = ...`, `a, b = x split(2)`), with their names' places."""
    out: list[tuple[str, Span]] = []
    for stmt in d.body.stmts:
        if isinstance(stmt, S.Bind):
            out.append((stmt.name, stmt.name_span))
        elif isinstance(stmt, S.Split):
            out.extend(zip(stmt.names, stmt.name_spans, strict=True))
    return out


# What is at a position ----------------------------------------------------------------------------

@dataclass
class Target:
    """Something in the syntax tree the cursor can be on."""

    kind: str  # call, kwarg, composite, import, blockdef, network, output, tensor
    region: Span  # the hot region: a name, a keyword, an import statement
    node: object  # the syntax node (Call, composite Item, Import, BlockDef, NetworkDef, Output)
    name: str = ""  # the called layer or block, the keyword, the argument name, the block name
    call: S.Call | None = None  # for kwarg: the call it belongs to


def word_span(span: Span, word: str) -> Span:
    return Span(span.file, span.line, span.column, span.line, span.column + len(word))


_COMPOSITE_WORD = {S.Residual: "residual", S.Concat: "concat", S.Scale: "scale", S.If: "if"}


def targets(module: S.Module) -> Iterator[Target]:
    """Every target in a module, outer ones before the ones inside them."""
    for imp in module.imports:
        yield Target("import", imp.span, imp, imp.path)
    for block in module.blocks:
        yield Target("blockdef", block.name_span, block, block.name)
        yield from _body_targets(block.body)
    for net in module.networks:
        yield Target("network", net.name_span, net, net.name)
        yield from _body_targets(net.body)


def _body_targets(body: S.Body) -> Iterator[Target]:
    for stmt in body.stmts:
        if isinstance(stmt, S.Bind):
            yield Target("tensor", stmt.name_span, stmt, stmt.name)
        elif isinstance(stmt, S.Split):
            for name, span in zip(stmt.names, stmt.name_spans, strict=True):
                yield Target("tensor", span, stmt, name)
        if isinstance(stmt, (S.Chain, S.Bind, S.Split)):
            for item in stmt.items:
                yield from _item_targets(item)
        elif isinstance(stmt, S.Output):
            yield Target("output", word_span(stmt.span, "output"), stmt, stmt.name)
            for item in stmt.chain or []:
                yield from _item_targets(item)


def _item_targets(item: S.Item) -> Iterator[Target]:
    if isinstance(item, S.Call):
        if item.label_span is not None:
            yield Target("call", item.label_span, item, item.name)
        yield Target("call", item.name_span, item, item.name)
        for arg in item.args:
            if arg.name is not None:
                yield Target("kwarg", word_span(arg.span, arg.name), arg, arg.name, call=item)
        return
    word = _COMPOSITE_WORD.get(type(item))
    if word is not None or (isinstance(item, S.Repeat) and item.index is not None):
        word = word or "for"
        region = item.label_span if item.label_span is not None else word_span(item.span, word)
        yield Target("composite", region, item, word)
        if item.label_span is not None:
            yield Target("composite", word_span(item.span, word), item, word)
    if isinstance(item, S.Group):
        yield from _body_targets(item.body)
    elif isinstance(item, S.Concat):
        for b in item.branches:
            yield from _body_targets(b)
    elif isinstance(item, S.Residual):
        yield from _body_targets(item.body)
        if item.shortcut is not None:
            yield from _body_targets(item.shortcut)
    elif isinstance(item, S.Scale):
        yield from _body_targets(item.body)
    elif isinstance(item, S.If):
        yield from _body_targets(item.then)
        if item.otherwise is not None:
            yield from _body_targets(item.otherwise)
    elif isinstance(item, S.Repeat):
        yield from _item_targets(item.item)


def target_at(module: S.Module, line: int, col: int) -> Target | None:
    """The innermost target at a position (1-based line and column)."""
    best: Target | None = None
    for t in targets(module):
        if contains(t.region, line, col) and (best is None or _size(t.region) <= _size(best.region)):
            best = t
    return best


def _size(span: Span) -> tuple[int, int]:
    return (span.end_line - span.line, span.end_column - span.column)


def map_line(old: str, new: str, line: int) -> int | None:
    """The line (1-based) of `old` that line `line` of `new` was, if it is unchanged in between."""
    old_lines, new_lines = source_lines(old), source_lines(new)
    if old_lines[line - 1:line] == new_lines[line - 1:line] and len(old_lines) == len(new_lines):
        return line
    matcher = difflib.SequenceMatcher(None, old_lines, new_lines, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal" and j1 <= line - 1 < j2:
            return i1 + (line - 1 - j1) + 1
    return None


def node_at(analysis: Analysis, path: str, text: str, line: int, col: int) -> tuple[Target, G.Node] | None:
    """The typed node (with its instances) under a position of the file `path` whose current text
    is `text`, found in `analysis` (which may be of an older text: the position is mapped through
    the unchanged lines)."""
    if analysis.program is None:
        return None
    module = analysis.modules.get(path)
    old = analysis.sources.get(path)
    if module is None or old is None:
        return None
    if old != text:
        mapped = map_line(old, text, line)
        if mapped is None:
            return None
        line = mapped
    t = target_at(module, line, col)
    if t is None:
        return None
    if t.kind == "blockdef":
        block = analysis.program.blocks.get(t.name)
        return (t, block) if block is not None else None  # type: ignore[return-value]
    if t.kind in ("call", "composite", "tensor"):
        node = analysis.index.get(t.region if t.kind == "tensor" else t.node.span)  # type: ignore[attr-defined]
        if node is not None:
            return t, node
    if t.kind == "output":
        for node in analysis.program.network.body.nodes:
            if isinstance(node, G.Output) and node.name == t.name:
                return t, node
    return None


# Hover text -------------------------------------------------------------------------------------------

def layer_signature(ltype: LayerType, name: str | None = None) -> str:
    params = []
    for p in ltype.params:
        if p.default is REQUIRED:
            params.append(p.name)
        elif p.default is None:
            params.append(f"[{p.name}]")
        else:
            params.append(f"{p.name} = {describe(p.default)}")  # type: ignore[arg-type]
    head = name or ltype.name
    return f"{head}({', '.join(params)})" if params else head


def layer_doc(ltype: LayerType, name: str | None = None) -> str:
    lines = [f"```arch\n{layer_signature(ltype, name)}\n```", f"{ltype.doc} (layer, {ltype.category})"]
    if ltype.params:
        lines.append("")
        for p in ltype.params:
            lines.append(f"- `{p.name}`: {p.doc}" if p.doc else f"- `{p.name}`")
    return "\n".join(lines)


def block_signature(block: S.BlockDef, source: str | None = None) -> str:
    """`block Bottleneck(planes, stride = 1, ...)`, the parameters as written."""
    params = []
    for p in block.params:
        if p.tensor:
            params.append(f"{p.name}: tensor")
        elif p.default is None:
            params.append(p.name)
        else:
            params.append(f"{p.name} = {expr_text(p.default, source)}")
    return f"block {block.name}({', '.join(params)})"


def expr_text(e: S.Expr, source: str | None) -> str:
    """The source text of an expression (one line), or a rendering of it."""
    if source is not None and e.span.line == e.span.end_line:
        lines = source_lines(source)
        if 0 < e.span.line <= len(lines):
            return lines[e.span.line - 1][e.span.column - 1:e.span.end_column - 1]
    if isinstance(e, S.Num):
        return str(e.value)
    if isinstance(e, S.Bool):
        return "true" if e.value else "false"
    if isinstance(e, S.Name):
        return e.id
    return "..."


def param_doc(callee: str, arg: str, blocks: Mapping[str, S.BlockDef]) -> str | None:
    if callee in LAYERS:
        for p in LAYERS[callee].params:
            if p.name == arg:
                default = "" if p.default is REQUIRED else f" (default {describe(p.default)})"  # type: ignore
                return f"`{arg}` of layer `{callee}`{default}: {p.doc}"
    if callee in blocks:
        for p in blocks[callee].params:
            if p.name == arg:
                return f"`{arg}`: parameter of block `{callee}`"
    return None


def _shape_pair(inst: G.Inst) -> str:
    return f"{inst.in_shape} → {inst.out_shape}"


def _numbers(inst: G.Inst) -> tuple[int, int | None]:
    """Params and MACs of an instance with everything below it (MACs None where a size is open)."""
    if not inst.children:
        if inst.kind in LAYERS and inst.block is None:
            row = make_row(inst)
            return row.params, row.macs
        return inst.params, inst.macs
    t = totals(rows(inst.walk()))
    return t.params, t.macs


def _args_text(inst: G.Inst) -> str:
    return ", ".join(f"{k} = {describe(v)}" for k, v in inst.args.items())  # type: ignore[arg-type]


def instances_text(node: G.Node | G.BlockDef, insts: list[G.Inst], where: str) -> str:
    """The shapes, parameters and MACs of every instance of a node, `insts`, as Markdown."""
    insts = list(insts)
    if not insts:
        return ""
    out = []
    if len(insts) == 1:
        inst = insts[0]
        params, macs = _numbers(inst)
        out.append(f"`{inst.path or '(network)'}`: **{inst.in_shape} → {inst.out_shape}**  ")
        out.append(f"params {grouped(params)} · MACs {grouped(macs)} ({humanize(macs)})")
        if inst.block is not None and inst.args:
            out.append(f"\nwith {_args_text(inst)}")
        elif isinstance(node, G.Repeat):
            out.append(f"\nrepeated {inst.args.get('count')} times")
        out.append(f"\n_{where}_")
        return "\n".join(out)
    all_params = all_macs = 0
    open_macs = False
    table = ["| instance | input → output | params | MACs |", "|---|---|---:|---:|"]
    runs: list[list] = []  # consecutive instances with the same numbers make one row
    for inst in insts:
        params, macs = _numbers(inst)
        all_params += params
        if macs is None:
            open_macs = True
        else:
            all_macs += macs
        key = (str(inst.in_shape), str(inst.out_shape), params, macs)
        if runs and runs[-1][0] == key:
            runs[-1][2] += 1
        else:
            runs.append([key, inst.path or "(network)", 1])
    for (ins, outs, params, macs), path, count in runs[:MAX_ROWS]:
        more = f" and {count - 1} more" if count > 1 else ""
        table.append(f"| `{path}`{more} | {ins} → {outs} | {grouped(params)} | {humanize(macs)} |")
    if len(runs) > MAX_ROWS:
        table.append(f"| … {sum(r[2] for r in runs[MAX_ROWS:])} more | | | |")
    shapes = {(str(i.in_shape), str(i.out_shape)) for i in insts}
    out.append(f"**{len(insts)} instances**" + (f", all {insts[0].in_shape} → {insts[0].out_shape}"
                                                 if len(shapes) == 1 else f", {len(shapes)} different shapes"))
    out.append("")
    out.extend(table)
    out.append("")
    total_macs = None if open_macs else all_macs
    out.append(f"all together: params {grouped(all_params)} · MACs {grouped(total_macs)} ({humanize(total_macs)})")
    out.append(f"\n_{where}_")
    return "\n".join(out)


def where_text(analysis: Analysis) -> str:
    net = analysis.program.network if analysis.program is not None else None
    name = os.path.basename(analysis.path)
    return f"in network {net.name} ({name})" if net is not None else f"in {name}"


# Text-based context (works on half-typed text) -------------------------------------------------

# The scanners below read text with the language's token table (archdsl/language/tokens.py): names,
# keywords, strings and comments are what the grammar says they are, in half-typed text too.

NAME_PATTERN = tokens.pattern("NAME")
_IDENT = re.compile(NAME_PATTERN)


def word_at(line_text: str, col0: int) -> tuple[str, int, int]:
    """The identifier around a 0-based column: (word, start, end), '' where there is none."""
    for m in _IDENT.finditer(line_text):
        if m.start() <= col0 <= m.end():
            return m.group(), m.start(), m.end()
    return "", col0, col0


def strip_comment(line_text: str) -> str:
    """A line without its comment (a '#' outside a string)."""
    for tok in tokens.scan(line_text):
        if tok.category == tokens.COMMENT:
            return line_text[:tok.offset]
    return line_text


def in_comment(line_text: str, col0: int) -> bool:
    return len(strip_comment(line_text)) < col0


@dataclass
class CallContext:
    """The call whose argument list the cursor is in."""

    callee: str
    given: set[str]  # keyword arguments already written
    positional: int  # positional arguments before the cursor
    at_name: bool  # the cursor is where an argument (or its name) starts, not after `name =`


def call_context(text: str, line0: int, col0: int) -> CallContext | None:
    """Whether the cursor (0-based line and column) is inside the parentheses of a call of a layer,
    block or function, found by scanning back over the text; comments and strings are skipped."""
    lines = text.split("\n")
    if line0 >= len(lines):
        return None
    before = [strip_comment(lines[i].rstrip("\r")) for i in range(max(0, line0 - 60), line0)]
    current = lines[line0].rstrip("\r")[:col0]
    if in_comment(lines[line0], col0):
        return None
    chunk = "\n".join([*before, current])
    depth = 0
    i = len(chunk) - 1
    while i >= 0:
        c = chunk[i]
        if c in ")]":
            depth += 1
        elif c in "([":
            if depth == 0:
                if c == "[":
                    return None
                m = re.search(rf"({NAME_PATTERN})\s*$", chunk[:i])
                if m is None:
                    return None
                callee = m.group(1)
                if callee in FUNCTIONS or callee in ("range",):
                    # an expression inside a function call: the enclosing call, if any, decides
                    i -= 1
                    continue
                inside = chunk[i + 1:]
                return _arg_context(callee, inside)
            depth -= 1
        elif c in "{}":
            return None
        i -= 1
    return None


def _arg_context(callee: str, inside: str) -> CallContext:
    # the arguments at depth 0 of the list, split on commas
    parts: list[str] = []
    depth = 0
    cur = ""
    for c in inside:
        if c in "([":
            depth += 1
        elif c in ")]":
            depth -= 1
        if c == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += c
    given = set()
    positional = 0
    for p in parts:
        m = re.match(rf"\s*({NAME_PATTERN})\s*=(?!=)", p)
        if m:
            given.add(m.group(1))
        elif p.strip():
            positional += 1
    at_name = re.fullmatch(r"\s*[A-Za-z_0-9]*", cur) is not None and depth == 0
    return CallContext(callee, given, positional, at_name)


def _code(text: str) -> list[tokens.Token]:
    """The tokens of a text without its whitespace and comments (line ends kept)."""
    return [t for t in tokens.scan(text) if t.category not in (tokens.WHITESPACE, tokens.COMMENT)]


def _closed(tok: tokens.Token) -> bool:
    return tok.category == tokens.STRING and len(tok.text) > 1 and tok.text.endswith('"')


def _import_string(line_text: str) -> tokens.Token | None:
    """The string of a line that is an `import "..."` (closed or not)."""
    code = _code(line_text)
    if len(code) >= 2 and code[0].category == tokens.KEYWORD and code[0].text == "import" \
            and code[1].category == tokens.STRING:
        return code[1]
    return None


def import_prefix(line_text: str, col0: int) -> str | None:
    """The path typed so far when the cursor is inside the string of an `import "..."`."""
    tok = _import_string(line_text[:col0])
    return tok.text[1:] if tok is not None and tok.end == col0 and not _closed(tok) else None


def import_at(line_text: str, col0: int) -> str | None:
    """The path of an `import "..."` whose string the cursor is on."""
    tok = _import_string(line_text)
    if tok is not None and _closed(tok) and tok.offset <= col0 <= tok.end:
        return tok.text[1:-1]
    return None


def _statements(text: str) -> Iterator[list[tokens.Token]]:
    """The tokens of each line of a text (without whitespace and comments) that has any."""
    line: list[tokens.Token] = []
    for tok in _code(text):
        if tok.category == tokens.NEWLINE:
            if line:
                yield line
            line = []
        else:
            line.append(tok)
    if line:
        yield line


def scan_blocks(text: str) -> dict[str, list[str]]:
    """Block names and their parameter names from the text alone (for a file that does not parse)."""
    out: dict[str, list[str]] = {}
    code = [t for t in _code(text) if t.category != tokens.NEWLINE]  # a parameter list may span lines
    for i, tok in enumerate(code):
        if not (tok.category == tokens.KEYWORD and tok.text == "block" and i + 2 < len(code)
                and code[i + 1].category == tokens.NAME and code[i + 2].text == "("):
            continue
        names: list[str] = []
        depth = 0
        for k in range(i + 2, len(code)):
            t = code[k]
            if t.text in ("{", "}"):
                break  # a body: the list was left open
            if t.text in ("(", "["):
                depth += 1
            elif t.text in (")", "]"):
                depth -= 1
                if depth == 0:
                    break
            elif t.category == tokens.NAME and depth == 1 and code[k - 1].text in ("(", ","):
                names.append(t.text)
        out[code[i + 1].text] = names
    return out


def scan_imports(text: str) -> list[str]:
    """The paths of the `import "..."` lines of a text."""
    return [line[1].text[1:-1] for line in _statements(text)
            if len(line) >= 2 and line[0].category == tokens.KEYWORD and line[0].text == "import"
            and _closed(line[1])]


def imported_blocks(path: str, text: str, overlay: Mapping[str, str]) -> dict[str, S.BlockDef]:
    """The blocks of the files a text imports (transitively), each file loaded on its own so that
    one that fails does not hide the others."""
    out: dict[str, S.BlockDef] = {}
    base = os.path.dirname(path)
    for imp in scan_imports(text):
        loader = OverlayLoader(overlay)
        try:
            loader.load(os.path.join(base, imp))
        except ArchError:
            pass  # a half-written file: whatever was loaded before the error still counts
        except Exception:
            log.exception("internal error loading %s", imp)
        for name, block in loader.blocks.items():
            out.setdefault(name, block)
    return out
