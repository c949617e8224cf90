"""Elaborate: syntax tree -> typed graph definitions.

Loads a spec and the library files it imports, resolves every name (parameters, `let`s, layers,
blocks, functions), binds each call to its signature, gives every node its module path, and
reports whatever is wrong with a located error. Repetition, conditions and shapes are expanded for
one setting of the parameters afterwards, in archdsl/core/shapes.py.
"""

from __future__ import annotations

import difflib
import keyword
import os
import re
from collections.abc import Iterator

from ..language import syntax as S
from ..language.errors import ArchError, Span, end_position
from ..language.parser import parse
from . import graph as G
from .layers import FUNCTIONS, LAYERS, REQUIRED, SYMBOLS, k_tensor

IN_ATTRS = ("channels", "height", "width")
MERGES = ("add", "mul", "concat")  # the items that take named tensors as their inputs
_TENSOR_USE = ("a named tensor can start a chain (`h = p conv(...)`), or be an argument of add(...), "
               "mul(...), concat(...), of a block's tensor parameter or of upsample(like = ...)")

# Attributes of torch.nn.Module (and what generated code defines): a layer named like one of these
# would shadow it, so such names get a trailing underscore in the module path.
MODULE_ATTRS = frozenset(["T_destination", "add_module", "apply", "bfloat16", "buffers", "call_super_init", "children", "compile", "cpu", "cuda", "double", "dump_patches", "eval", "extra_repr", "float", "forward", "get_buffer", "get_extra_state", "get_parameter", "get_submodule", "half", "ipu", "load_state_dict", "modules", "mtia", "named_buffers", "named_children", "named_modules", "named_parameters", "parameters", "register_backward_hook", "register_buffer", "register_forward_hook", "register_forward_pre_hook", "register_full_backward_hook", "register_full_backward_pre_hook", "register_load_state_dict_post_hook", "register_load_state_dict_pre_hook", "register_module", "register_parameter", "register_state_dict_post_hook", "register_state_dict_pre_hook", "requires_grad_", "set_extra_state", "set_submodule", "share_memory", "state_dict", "to", "to_empty", "train", "training", "type", "xpu", "zero_grad", "out_channels", "in_channels"])


def suggestion(name: str, options) -> str:
    close = difflib.get_close_matches(name, sorted(options), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


_PRIVATE = re.compile(r"u*_")  # what safe_attr prefixes with "u": nn.Module's own names, and their images


def safe_attr(name: str) -> str:
    """A module attribute name for a label (or a name made from a block's): a valid identifier that
    shadows nothing, and that no other label is also written as.

    - A name beginning with an underscore could be one of nn.Module's own attributes (`_modules`,
      `_buffers`) or, with two, be mangled in the class body (`self.__x` is `self._Net__x` there): it
      gets a leading "u" (`__x` -> `u__x`); so that `u__x` of the spec stays another name, every name
      of the form u..._... gets one too (`u_x` -> `uu_x`).
    - A name whose stem (without trailing underscores) is a keyword or an attribute of nn.Module gets
      a trailing underscore (`training` -> `training_`, and `training_` -> `training__`)."""
    return G.escaped(name, _PRIVATE,
                     lambda stem: keyword.iskeyword(stem) or keyword.issoftkeyword(stem) or stem in MODULE_ATTRS)


def _shown(path: str) -> str:
    """A file name as an error message shows it: control characters escaped, so that a name with a NUL,
    a newline or an escape sequence in it prints as one plain line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in path)


class Loader:
    """Reads a spec and, transitively, the files it imports; each file once."""

    def __init__(self) -> None:
        self.sources: dict[str, str] = {}
        self.modules: dict[str, S.Module] = {}
        self.blocks: dict[str, S.BlockDef] = {}
        # the networks of imported files, which a spec may use as parts (bases); the spec's own is not
        self.networks: dict[str, S.NetworkDef] = {}

    def read(self, path: str, imported_at: Span | None = None) -> str:
        """The text of a file (the language server reads open documents' unsaved text instead): UTF-8,
        a byte order mark at the start passed over. An imported file must be a regular file (not a
        directory, a device like /dev/zero or a pipe that would never end); the spec named on the
        command line may also be a pipe (`archdsl check <(...)`)."""
        shown = _shown(path)
        if "\0" in path:
            raise ArchError(f"cannot read '{shown}': a file name cannot contain a NUL character", imported_at)
        try:
            if os.path.isdir(path):
                raise ArchError(f"cannot read '{shown}': it is a directory, not a spec file", imported_at)
            if imported_at is not None and os.path.exists(path) and not os.path.isfile(path):
                raise ArchError(f"cannot read '{shown}': it is not a regular file (a device or a pipe)", imported_at)
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            raise ArchError(f"cannot find '{shown}'", imported_at) from None
        except (OSError, ValueError) as e:
            raise ArchError(f"cannot read '{shown}': {getattr(e, 'strerror', None) or e}", imported_at) from None
        try:
            return data.decode("utf-8-sig")
        except UnicodeDecodeError as e:
            line = data.count(b"\n", 0, e.start) + 1
            column = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
            raise ArchError(f"cannot read '{shown}': it is not UTF-8 text (byte 0x{data[e.start]:02x} at line {line}, "
                            f"byte {column} of the line)", imported_at) from None

    def load(self, path: str, imported_at: Span | None = None) -> S.Module:
        key = os.path.normpath(os.path.abspath(path))
        if key in self.modules:
            return self.modules[key]
        text = self.read(path, imported_at)
        self.sources[path] = text
        module = parse(text, path)
        self.modules[key] = module
        for block in module.blocks:
            if block.name in self.blocks:
                first = self.blocks[block.name]
                raise ArchError(f"block '{block.name}' is defined twice", block.name_span,
                                notes=[f"first defined at {first.name_span}"])
            if block.name in LAYERS or block.name in MERGES:
                raise ArchError(f"block '{block.name}' has the name of a built-in layer", block.name_span)
            self.blocks[block.name] = block
        if imported_at is not None:
            for net in module.networks[:1]:  # a second network is the error of its own spec
                if net.name in self.networks:
                    first = self.networks[net.name]
                    raise ArchError(f"network '{net.name}' is defined in two imported files", net.name_span,
                                    notes=[f"first defined at {first.name_span}"])
                self.networks[net.name] = net
        base = os.path.dirname(path)
        for imp in module.imports:
            self.load(os.path.join(base, imp.path), imp.span)
        return module


def elaborate(spec: str, loader: Loader | None = None) -> G.Program:
    """Load a spec (and its imports) and build its typed graph definitions. A library (blocks and no
    network) is checked first, so that an error in its blocks is the error reported; then it is an
    error here, since what follows elaboration needs a network."""
    program = elaborate_file(spec, loader)
    if isinstance(program, G.Library):
        names = name_listing(program.own)
        module_span = program.blocks[program.own[0]].span if program.own else None
        first = Span(spec, module_span.line, module_span.column, module_span.line, module_span.column + len("block")) \
            if module_span else None
        raise ArchError(f"this file is a library of blocks ({names}) with no network: `archdsl check` checks it; "
                        "compile, summary, sweep and graph need a spec with a network (import the library from it)",
                        first)
    return program


def elaborate_file(spec: str, loader: Loader | None = None) -> G.Program | G.Library:
    """Load a file (and its imports): a spec with a network is elaborated into its typed graph; a file
    of blocks without a network into a Library, each of its blocks (and those it imports) elaborated,
    as a spec does for the blocks it does not use. loader: where the files are read from (the
    language server's reads the editor's unsaved text); a fresh Loader of the files on disk by
    default. What it has read stays in it, an error or not."""
    loader = Loader() if loader is None else loader
    module = loader.load(spec)
    if len(module.networks) > 1:
        raise ArchError("a spec defines one network; this is a second one "
                        "(put shared blocks in a library file and import it)", module.networks[1].name_span,
                        notes=[f"the first is at {module.networks[0].name_span}"])
    if module.networks:
        return _Elaborator(loader, spec).run(module.networks[0])
    if not module.blocks:
        line, column = end_position(loader.sources[spec])
        raise ArchError("the file defines no network and no blocks; a spec needs one `network Name { ... }`, "
                        "a library `block Name(...) { ... }`", Span(spec, line, column, line, column + 1))
    return _Elaborator(loader, spec).library(module)


def name_listing(names: list[str], most: int = 8) -> str:
    """`A, B, C` or, past `most` names, `A, B, ... and 5 more`."""
    if len(names) <= most:
        return ", ".join(names)
    return ", ".join(names[:most]) + f", ... and {len(names) - most} more"


class _Scope:
    """Names visible at a point: parameters and `let`s, innermost last."""

    def __init__(self, params: dict[str, Span], where: str) -> None:
        self.frames: list[dict[str, str]] = [{p: "param" for p in params}]
        self.where = where

    def lookup(self, name: str) -> str | None:
        for frame in reversed(self.frames):
            if name in frame:
                return frame[name]
        return None

    def names(self) -> set[str]:
        return {n for f in self.frames for n in f}


class _Elaborator:
    def __init__(self, loader: Loader, spec: str) -> None:
        self.loader = loader
        self.spec = spec
        self.done: dict[str, G.BlockDef] = {}
        self.active: list[str] = []  # blocks being elaborated, to catch recursion
        self.in_assert = False  # elaborating an assert condition (tensor sizes are readable there)
        # the body being elaborated: its named tensors (where bound, how often used) and tensor parameters
        self.tensors: dict[str, tuple[Span, int]] = {}
        self.tensor_params: dict[str, int] = {}
        self.bases: dict[str, tuple[tuple[str, ...], Span]] = {}  # network used as a base -> its cut, where
        self.taps: dict[str, list[str]] = {}  # a base with several feature maps -> the tensors it returns first
        self.returning: list[str] = []  # the tensors the block being elaborated returns (used by that)
        self.unpacking = False  # elaborating the call of `c3, c4 = R() through a, b`

    def run(self, net: S.NetworkDef) -> G.Program:
        if net.name in self.loader.blocks:
            block = self.loader.blocks[net.name]
            raise ArchError(f"the network has the name of a block, '{net.name}': the generated code defines a class "
                            "or function for each, so they need different names", net.name_span,
                            notes=[f"block {net.name} is defined at {block.name_span}"])
        for p in net.params:
            if p.tensor:
                raise ArchError("a network's parameters are numbers; its input tensor is given by `input`", p.span)
        params = self._params(net.params, f"network {net.name}")
        scope = _Scope({p.name: p.span for p in net.params}, f"network {net.name}")
        scope.frames[0]["in"] = "tensor"
        self.uses_in: set[str] = set()
        stmts = list(net.body.stmts)
        if not stmts or not isinstance(stmts[0], S.Input):
            span = stmts[0].span if stmts else net.body.span
            raise ArchError("a network starts with its input shape, e.g. `input [3, 224, 224]`", span)
        inp = stmts[0]
        if len(inp.dims) not in (1, 3):
            raise ArchError(f"input takes [channels, height, width] or [features], got {len(inp.dims)} sizes",
                            inp.span)
        dims = [None if isinstance(d, S.Unknown) else self._expr(d, scope) for d in inp.dims]
        if dims[0] is None:
            raise ArchError("the number of input channels must be given", inp.dims[0].span)
        self._prepare_bases(net.body)
        self._callees(net.body)
        body = self._seq(S.Body(stmts[1:], net.body.span), scope, network=True)
        outputs = [n for n in body.items if isinstance(n, G.Output)]
        _name_top(body, {}, set(), network=True)
        network = G.NetworkDef(net.name, params, dims, inp.span, body, net.span, outputs)
        if outputs and all(o.auxiliary for o in outputs):
            raise ArchError("every output of this network is auxiliary, computed only while training, so in "
                            "evaluation it would return nothing; give it an output that is not auxiliary "
                            "(`output name`)", outputs[-1].span)
        if outputs:
            last = max(i for i, n in enumerate(body.items) if isinstance(n, G.Output))
            for n in body.items[last + 1:]:
                if isinstance(n, G.Node):
                    raise ArchError("this comes after the last output, so its result is never used; "
                                    "end the network with an output (`output name`) or remove it", n.span)
        used = list(self.done)
        for name, src in self.loader.blocks.items():  # check the blocks nothing calls too; emit only those used
            self._callees(src.body)
            self._block(name, src.name_span)
        ordered = {name: self.done[name] for name in used}
        return G.Program(self.spec, self.loader.sources, ordered, network)

    def library(self, module: S.Module) -> G.Library:
        """Elaborate every block loaded (a library's own and those it imports), callees first."""
        self.uses_in = set()
        self._prepare_bases()
        for name, src in self.loader.blocks.items():
            self._callees(src.body)
            self._block(name, src.name_span)
        blocks = {name: self.done[name] for name in self.done}
        return G.Library(self.spec, self.loader.sources, blocks, [b.name for b in module.blocks],
                         len(self.loader.modules) - 1)

    # networks used as bases

    def _prepare_bases(self, network: S.Body | None = None) -> None:
        """Makes a block of each imported network that a body calls (`base: VGG16() through block5`), and
        of those that its body calls in turn: the network's statements up to its label, with the
        parameters they use. From then on a base is called, checked and generated as a block is."""
        todo = ([network] if network is not None else []) + [b.body for b in self.loader.blocks.values()]
        while todo:
            body = todo.pop()
            for call in _block_calls(body, self.loader.networks):  # type: ignore[arg-type]
                cut = tuple(label for label, _ in call.through or ())
                if call.name in self.bases:
                    first, where = self.bases[call.name]
                    if first != cut:
                        raise ArchError(f"network {call.name} is used as a base {_cut_words(cut)} here and "
                                        f"{_cut_words(first)} at {where}; a spec uses one cut of a network "
                                        "(a block of its own)", call.span)
                    continue
                net = self.loader.networks[call.name]
                if call.name in self.loader.blocks:
                    block = self.loader.blocks[call.name]
                    raise ArchError(f"'{call.name}' is both a network (used here as a base) and a block",
                                    call.name_span, notes=[f"the network is defined at {net.name_span}",
                                                           f"the block at {block.name_span}"])
                self.bases[call.name] = (cut, call.span)
                block, self.taps[call.name] = _base_block(net, call, self.loader.sources)
                self.loader.blocks[call.name] = block
                todo.append(block.body)

    # definitions

    def _params(self, params: list[S.Param], where: str) -> list[G.Param]:
        seen: dict[str, Span] = {}
        out = []
        scope = _Scope({}, where)
        for p in params:
            if p.name in seen:
                raise ArchError(f"parameter '{p.name}' is listed twice", p.span)
            if p.name in FUNCTIONS or p.name in SYMBOLS:
                raise ArchError(f"'{p.name}' is a built-in name and cannot be a parameter", p.span)
            if p.tensor and (p.name in LAYERS or p.name in self.loader.blocks or p.name in MERGES):
                raise ArchError(f"'{p.name}' is the name of a layer or block and cannot name a tensor", p.span)
            default = self._expr(p.default, scope) if p.default is not None else None
            if out and out[-1].default is not None and default is None:
                raise ArchError(f"parameter '{p.name}' needs a default: it follows one that has one", p.span)
            out.append(G.Param(p.name, default, p.span, tensor=p.tensor))
            seen[p.name] = p.span
            scope.frames[0][p.name] = "tensor" if p.tensor else "param"
        return out

    def _block(self, name: str, called_at: Span) -> G.BlockDef:
        if name in self.done:
            return self.done[name]
        if name in self.active:
            raise ArchError(f"block '{name}' calls itself (through {' -> '.join(self.active)}); "
                            "blocks cannot be recursive", called_at)
        src = self.loader.blocks[name]
        self.active.append(name)
        saved = self.uses_in
        self.uses_in = set()
        params = self._params(src.params, f"block {name}")
        scope = _Scope({p.name: p.span for p in src.params}, f"block {name}")
        for p in params:
            if p.tensor:
                scope.frames[0][p.name] = "tensor"
        scope.frames[0]["in"] = "tensor"
        returning, self.returning = self.returning, self.taps.get(name, [])
        body = self._seq(src.body, scope, network=False)
        self.returning = returning
        _name_top(body, {}, set(), network=False)
        block = G.BlockDef(name, params, body, src.span, self.uses_in,
                           _cut_words(self.bases[name][0]) if name in self.bases else None,
                           list(self.taps.get(name, [])))
        self.uses_in = saved
        self.active.pop()
        self.done[name] = block
        return block

    def _callees(self, body: S.Body) -> None:
        """Elaborates the blocks a body calls, directly or through others, each after the blocks it
        calls and in the order the body reaches them (the order the backends emit them in). A loop
        with a stack of the blocks being visited, not recursion: blocks nest to any depth. Called for
        the network's body and each uncalled block's, so _block always finds what a body calls done."""
        stack: list[tuple[str, Iterator[S.Call]]] = []
        visiting: set[str] = set()
        calls = _block_calls(body, self.loader.blocks)
        while True:
            call = next(calls, None)
            if call is None:
                if not stack:
                    return
                name, calls = stack.pop()
                visiting.discard(name)
                self._block(name, self.loader.blocks[name].name_span)  # what it calls is done: no recursion
                continue
            if call.name in self.done:
                continue
            if call.name in visiting:
                path = " -> ".join(name for name, _ in stack)
                raise ArchError(f"block '{call.name}' calls itself (through {path}); blocks cannot be recursive",
                                call.name_span)
            visiting.add(call.name)
            stack.append((call.name, calls))
            calls = _block_calls(self.loader.blocks[call.name].body, self.loader.blocks)

    # bodies and items

    def _seq(self, body: S.Body, scope: _Scope, network: bool, top: bool = True) -> G.Seq:
        scope.frames.append({})
        items: list[G.Node | G.Let | G.Check | G.Load | G.Store] = []
        if top:  # a block's body is elaborated in the middle of its caller's: keep the caller's state
            saved = self.tensors, self.tensor_params
            self.tensors = {}
            self.tensor_params = {n: 0 for n, k in scope.frames[0].items() if k == "tensor" and n != "in"}
        unbound: S.Stmt | None = None  # the last statement, when its result goes only to the next one
        for stmt in body.stmts:
            if isinstance(stmt, (S.Chain, S.Bind, S.Split)) and top:
                starts = self._starts_fresh(stmt.items[0], scope)
                if starts and unbound is not None:
                    raise ArchError("the result of this line is never used: the next line starts from "
                                    f"{starts}", unbound.span,
                                    notes=["name it (`name = ...`) to use it later, or remove it"])
                unbound = stmt if isinstance(stmt, S.Chain) else None
                items.extend(self._split(stmt, scope) if isinstance(stmt, S.Split)
                             else self._statement(stmt, scope, network))
                continue
            if isinstance(stmt, (S.Bind, S.Split)):
                raise ArchError("named tensors (`name = ...`) can be bound only at the top level of a block or "
                                "network body, not inside a group, branch, repetition or `if`",
                                stmt.name_span if isinstance(stmt, S.Bind) else stmt.name_spans[0])
            if isinstance(stmt, S.Output):
                unbound = None
            if isinstance(stmt, S.Let):
                if stmt.name in FUNCTIONS or stmt.name in SYMBOLS:
                    raise ArchError(f"'{stmt.name}' is a built-in name and cannot be bound by let", stmt.span)
                if scope.lookup(stmt.name) == "tensor":
                    raise ArchError(f"'{stmt.name}' names a tensor; a let needs another name", stmt.span)
                value = self._expr(stmt.value, scope)
                scope.frames[-1][stmt.name] = "let"
                items.append(G.Let(stmt.span, stmt.name, value))
            elif isinstance(stmt, S.Input):
                raise ArchError("`input` comes once, first in the network", stmt.span)
            elif isinstance(stmt, S.Freeze):
                word = "unfreeze" if stmt.trainable else "freeze"
                if not (network and top):
                    raise ArchError(f"`{word}` is a statement of the network, at the top level of its body (it "
                                    "names the parts by their paths from there)", stmt.span)
                cond = self._expr(stmt.cond, scope) if stmt.cond is not None else None
                paths = [(written, ".".join(safe_attr(n) for n in written.split(".")), span)
                         for written, span in stmt.paths]
                items.append(G.Freeze(stmt.span, paths, stmt.trainable, cond))
            elif isinstance(stmt, S.Output):
                if not (network and top):
                    raise ArchError("`output` is allowed only at the top level of a network", stmt.span)
                out_body = None
                if stmt.chain is not None:
                    out_body = self._seq(S.Body([S.Chain(stmt.span, stmt.chain)], stmt.span), scope, network, False)
                items.append(G.Output(stmt.span, stmt.name, out_body, stmt.auxiliary, label=stmt.name))
            elif isinstance(stmt, S.Assert):
                self.in_assert = True
                try:
                    items.append(G.Check(stmt.span, self._expr(stmt.cond, scope), stmt.message))
                finally:
                    self.in_assert = False
            else:
                for item in stmt.items:
                    items.append(self._item(item, scope, network))
        if top:
            for name, (span, uses) in self.tensors.items():
                if not uses and name not in self.returning:
                    raise ArchError(f"the tensor name '{name}' is never used", span,
                                    notes=["the next line takes the result anyway; drop the name, or use it: "
                                           + _TENSOR_USE])
            for name, uses in self.tensor_params.items():
                if not uses:
                    p = next(p for p in self.loader.blocks[self.active[-1]].params if p.name == name)
                    raise ArchError(f"the tensor parameter '{name}' is never used", p.span, notes=[_TENSOR_USE])
            self.tensors, self.tensor_params = saved
        scope.frames.pop()
        return G.Seq(body.span, "", items)

    # named tensors

    def _tensor_name(self, item: S.Item, scope: _Scope) -> str | None:
        """The tensor an item names (`in`, or a bound name), if it is one."""
        if isinstance(item, S.InRef):
            return "in"
        if isinstance(item, S.Call) and not item.args and scope.lookup(item.name) == "tensor":
            return item.name
        return None

    def _starts_fresh(self, item: S.Item, scope: _Scope) -> str | None:
        """What a statement starts from when it does not take the previous statement's result."""
        name = self._tensor_name(item, scope)
        if name is not None:
            return f"the tensor '{name}'" if name != "in" else "the block's input `in`"
        if isinstance(item, S.ConcatCall) or (isinstance(item, S.Call) and item.name in MERGES
                                                and item.name not in self.loader.blocks):
            return f"the inputs of {item.name if isinstance(item, S.Call) else 'concat'}(...)"
        return None

    def _use(self, name: str, span: Span) -> None:
        if name in self.tensors:
            where, uses = self.tensors[name]
            self.tensors[name] = (where, uses + 1)
        elif name in self.tensor_params:
            self.tensor_params[name] += 1

    def _statement(self, stmt: S.Chain | S.Bind, scope: _Scope, network: bool) -> list:
        out: list = []
        items = list(stmt.items)
        name = self._tensor_name(items[0], scope)
        if name is not None:
            first = items.pop(0)
            if first.label is not None:
                raise ArchError("a label names a layer or block; a tensor is named by `name = ...`",
                                first.label_span or first.span)
            self._use(name, first.span)
            out.append(G.Load(first.span, name))
        for i, item in enumerate(items):
            inner = item.item if isinstance(item, S.Repeat) else item
            if self._tensor_name(inner, scope) is not None:
                raise ArchError("a named tensor starts a chain; here it follows something whose result would be lost",
                                item.span, notes=[_TENSOR_USE])
            if (i or out) and self._starts_fresh(inner, scope) is not None:
                op = inner.name if isinstance(inner, S.Call) else "concat"
                raise ArchError(f"{op}(...) takes its inputs from its arguments, so it starts a chain", item.span)
            out.append(self._item(item, scope, network, top=True))
        if isinstance(stmt, S.Bind):
            self._bind_name(stmt.name, stmt.name_span, scope)
            out.append(G.Store(stmt.name_span, stmt.name))
        elif not out:  # pragma: no cover - the grammar makes a chain at least one item
            raise ArchError("empty statement", stmt.span)
        return out

    def _split(self, stmt: S.Split, scope: _Scope) -> list:
        """`a, b = x split(2)`: for each name, the tensor x through one part of the split (a `split` layer
        whose index is the part's), stored under the name. A number of parts that is not a literal is
        checked against the names where the spec is expanded (the layer's `names`)."""
        call, source = stmt.items[-1], stmt.items[:-1]
        names = ", ".join(stmt.names)
        if isinstance(call, S.Call) and call.through is not None:
            return self._feature_maps(stmt, scope)
        if not isinstance(call, S.Call) or call.name != "split":
            raise ArchError(f"`{names} = ...` names the parts of a channel split, so it ends with split(...): "
                            f"`{names} = x split({len(stmt.names)})`", call.span)
        name = self._tensor_name(source[0], scope) if len(source) == 1 else None
        if name is None:
            where = source[1].span if len(source) > 1 and self._tensor_name(source[0], scope) else \
                source[0].span if source else call.span
            raise ArchError("split(...) takes the named tensor (or `in`) just before it, "
                            f"`{names} = x split({len(stmt.names)})`; name a chain's result first (`t = ...`) "
                            "to split it", where)
        for item in (source[0], call):
            if item.label is not None:
                raise ArchError("a label names a layer or block; the parts of a split are named by "
                                f"`{names} = ...`", item.label_span or item.span)
        for i, arg in enumerate(call.args):
            if arg.name == "index" or (arg.name is None and i == 1):
                raise ArchError("a split's parts take their indices from the names before `=`; split takes "
                                "only its parts (a number, or a list of sizes)", arg.span)
        parts = self._bind([("parts", REQUIRED)], call, scope, "split")["parts"]
        count = len(parts.items) if isinstance(parts, G.ListE) else parts.value \
            if isinstance(parts, G.Const) and isinstance(parts.value, int) else None
        out: list = []
        if count is not None and count != len(stmt.names):
            what = f"{count} sizes" if isinstance(parts, G.ListE) else f"{count} parts"
            raise ArchError(f"split into {what}, but {len(stmt.names)} names are given ({names}): "
                            "one name a part", parts.span)
        for part, (target, span) in enumerate(zip(stmt.names, stmt.name_spans, strict=True)):
            self._bind_name(target, span, scope)
            self._use(name, source[0].span)
            out += [G.Load(source[0].span, name),
                    G.Layer(call.span, "", LAYERS["split"], {"parts": parts, "index": G.Const(call.span, part),
                                                             "names": G.Const(call.span, len(stmt.names))}),
                    G.Store(span, target)]
        return out

    def _feature_maps(self, stmt: S.Split, scope: _Scope) -> list:
        """`c3, c4, c5 = backbone: R() through layer2, layer3, layer4`: a base's feature maps at its labels,
        one name each; the last is also the main tensor for the next line."""
        call = stmt.items[-1]
        assert isinstance(call, S.Call) and call.through is not None
        if call.name not in self.bases:
            raise ArchError(f"`through` cuts a network used as a base; '{call.name}' is not a network of an "
                            f"imported file{suggestion(call.name, self.loader.networks)}", call.through[0][1])
        if len(stmt.items) > 1:
            raise ArchError("a base's feature maps are named by a line of their own: "
                            f"`{', '.join(stmt.names)} = {call.name}(...) through ...`", stmt.items[0].span)
        if len(call.through) != len(stmt.names):
            raise ArchError(f"{len(stmt.names)} names for {len(call.through)} feature map"
                            f"{'s' * (len(call.through) != 1)} ({', '.join(n for n, _ in call.through)}): one name "
                            "a label of `through`", stmt.name_spans[0])
        self.unpacking = True
        try:
            node = self._item(call, scope, network=False, top=True)
        finally:
            self.unpacking = False
        assert isinstance(node, G.BlockCall)
        for name, span in zip(stmt.names, stmt.name_spans, strict=True):
            self._bind_name(name, span, scope)
        node.unpack = stmt.names[:-1]
        return [node, G.Store(stmt.name_spans[-1], stmt.names[-1])]

    def _bind_name(self, name: str, span: Span, scope: _Scope) -> None:
        kind = scope.lookup(name)
        if kind == "tensor":
            where = self.tensors[name][0] if name in self.tensors else None
            raise ArchError(f"the tensor '{name}' is already bound{f' (at {where})' if where else ''}; "
                            "give this one a new name", span)
        if kind is not None:
            raise ArchError(f"'{name}' is a {'parameter' if kind == 'param' else kind}; a tensor needs another name",
                            span)
        if name in LAYERS or name in self.loader.blocks or name in MERGES:
            raise ArchError(f"'{name}' is the name of a layer or block and cannot name a tensor", span)
        if name in FUNCTIONS or name in SYMBOLS:
            raise ArchError(f"'{name}' is a built-in name and cannot name a tensor", span)
        scope.frames[1][name] = "tensor"
        self.tensors[name] = (span, 0)

    def _tensor_arg(self, e: S.Expr, scope: _Scope, what: str) -> G.TensorRef:
        if isinstance(e, S.InTensor):
            self._use("in", e.span)
            return G.TensorRef(e.span, "in")
        if isinstance(e, S.Name) and scope.lookup(e.id) == "tensor":
            self._use(e.id, e.span)
            return G.TensorRef(e.span, e.id)
        if isinstance(e, S.Name) and scope.lookup(e.id) is None:
            options = {n for f in scope.frames for n, k in f.items() if k == "tensor"}
            raise ArchError(f"unknown tensor '{e.id}'{suggestion(e.id, options)}", e.span)
        raise ArchError(f"{what} takes a named tensor (or `in`) here, not a value", e.span)

    def _merge(self, call: S.Call | S.ConcatCall, scope: _Scope) -> G.Merge:
        op = call.name if isinstance(call, S.Call) else "concat"
        for arg in call.args:
            if arg.name is not None:
                raise ArchError(f"{op}(...) takes tensors, not keyword arguments", arg.span)
        if len(call.args) < 2:
            raise ArchError(f"{op}(...) needs at least two tensors", call.span)
        inputs = [self._tensor_arg(a.value, scope, f"{op}(...)") for a in call.args]
        return G.Merge(call.span, "", op, inputs)

    def _item(self, item: S.Item, scope: _Scope, network: bool, top: bool = False) -> G.Node:
        if not top:
            for_what = self._starts_fresh(item, scope)
            if for_what is not None:
                raise ArchError(f"{for_what} can be used only at the top level of a block or network body, "
                                "not inside a group, branch, repetition or `if`", item.span)
        node = self._item_inner(item, scope, network, top)
        node.label, node.label_span = item.label, item.label_span
        if isinstance(node, G.Repeat) and node.label is None and node.body.label is not None:
            # `stage: Block(64) * 3` names the repetition, not each copy
            node.label, node.label_span = node.body.label, node.body.label_span
            node.body.label = node.body.label_span = None
        return node

    def _item_inner(self, item: S.Item, scope: _Scope, network: bool, top: bool) -> G.Node:
        sub = lambda b: self._seq(b, scope, network, top=False)
        if isinstance(item, S.ConcatCall) or (isinstance(item, S.Call) and item.name in MERGES):
            return self._merge(item, scope)
        if isinstance(item, S.Call):
            return self._call(item, scope, top)
        if isinstance(item, S.Group):
            return sub(item.body)
        if isinstance(item, S.Concat):
            if len(item.branches) < 2:
                raise ArchError("concat needs at least two branches", item.span)
            return G.Concat(item.span, "", [sub(b) for b in item.branches])
        if isinstance(item, S.Residual):
            values = {"drop_path": G.Const(item.span, 0.0), "per_batch": G.Const(item.span, False)}
            if len(item.args) > 2:
                raise ArchError("residual takes two arguments: drop_path, per_batch", item.args[2].span)
            given: set[str] = set()
            for i, arg in enumerate(item.args):
                key = arg.name if arg.name is not None else ("drop_path", "per_batch")[min(i, 1)]
                if key not in values:
                    raise ArchError(f"residual has no argument '{key}'; it takes: drop_path, per_batch", arg.span)
                if key in given:
                    raise ArchError(f"argument '{key}' of residual is given twice", arg.span)
                given.add(key)
                values[key] = self._expr(arg.value, scope)
            if item.when is not None and not top:
                raise ArchError("`residual if` can be used only at the top level of a block or network body, "
                                "not inside a group, branch, repetition or `if` (there its layers would be named "
                                "one way with the skip and another without): make the group a block", item.span)
            if item.when is not None and item.shortcut is not None:
                raise ArchError("a `residual if` skips with the identity where its condition holds; a projection "
                                "shortcut has a condition of its own: `residual { ... } shortcut if cond { ... }`",
                                item.shortcut_span)
            cond = self._expr(item.shortcut_if, scope) if item.shortcut_if is not None else None
            shortcut = sub(item.shortcut) if item.shortcut is not None else None
            when = self._expr(item.when, scope) if item.when is not None else None
            return G.Residual(item.span, "", sub(item.body), shortcut, cond, values["drop_path"],
                              values["per_batch"], when)
        if isinstance(item, S.Scale):
            return G.Scale(item.span, "", sub(item.body))
        if isinstance(item, S.If):
            otherwise = sub(item.otherwise) if item.otherwise is not None else G.Seq(item.span, "", [])
            return G.Choice(item.span, "", self._expr(item.cond, scope), sub(item.then), otherwise)
        if isinstance(item, S.Repeat):
            count = self._expr(item.count, scope)
            if item.index is not None:
                if item.index in FUNCTIONS or item.index in SYMBOLS:
                    raise ArchError(f"'{item.index}' is a built-in name and cannot be a loop index", item.span)
                scope.frames.append({item.index: "index"})
            body = self._item(item.item, scope, network)  # repeated: never at the top level
            if item.index is not None:
                scope.frames.pop()
            return G.Repeat(item.span, "", body, count, item.index)
        raise AssertionError(item)  # pragma: no cover

    def _call(self, call: S.Call, scope: _Scope, top: bool = False) -> G.Node:
        if call.name == "split":
            raise ArchError("split(...) gives one tensor a part, so its parts are named where it is used: "
                            "`a, b = x split(2)`", call.name_span)
        if call.name in LAYERS:
            ltype = LAYERS[call.name]
            tensors = {p.name for p in ltype.params if p.kind is k_tensor}
            args = self._bind([(p.name, p.default) for p in ltype.params], call, scope, f"{call.name}",
                              tensors=tensors)
            named = sorted(t for t in tensors if isinstance(args[t], G.TensorRef))
            if named and not top:
                raise ArchError(f"{call.name}({named[0]} = ...) takes a named tensor, so it can be used only at the "
                                "top level of a block or network body, not inside a group, branch, repetition "
                                "or `if`", call.name_span)
            return G.Layer(call.span, "", ltype, args)
        if call.name in self.loader.blocks:
            block = self._block(call.name, call.name_span)
            tensors = {p.name for p in block.params if p.tensor}
            if tensors and not top:
                raise ArchError(f"block {call.name} takes a tensor ({', '.join(sorted(tensors))}), so it can be "
                                "called only at the top level of a block or network body, not inside a group, "
                                "branch, repetition or `if`", call.name_span)
            if call.through is not None and call.name not in self.bases:
                raise ArchError(f"`through` cuts a network used as a base; {call.name} is a block, called whole",
                                call.through[0][1])
            if call.through is not None and len(call.through) > 1 and not self.unpacking:
                labels = ", ".join(n for n, _ in call.through)
                raise ArchError(f"a base with several feature maps names each: `{', '.join(n + '_' for n, _ in call.through)}"
                                f" = {call.name}(...) through {labels}` (the last is the main tensor too)",
                                call.through[1][1])
            what = f"block {call.name}"
            if call.name in self.bases:
                what = f"network {call.name}"
                call = self._base_args(call, block)
            args = self._bind([(p.name, REQUIRED if p.default is None else p.default) for p in block.params],
                              call, scope, what, fill=False, tensors=tensors)
            return G.BlockCall(call.span, "", call.name, args)
        if call.through is not None:
            raise ArchError(f"`through` cuts a network used as a base; '{call.name}' is not a network of an "
                            f"imported file{suggestion(call.name, self.loader.networks)}", call.name_span)
        known = set(LAYERS) | set(self.loader.blocks)
        raise ArchError(f"unknown layer or block '{call.name}'{suggestion(call.name, known)}", call.name_span)

    def _base_args(self, call: S.Call, block: G.BlockDef) -> S.Call:
        """A base's arguments by name: positions are the network's own parameters' (its block keeps only
        those its statements up to the cut use), and a parameter that the cut leaves unused is an error
        rather than a setting that does nothing."""
        net = self.loader.networks[call.name]
        names = [p.name for p in net.params]
        kept = {p.name for p in block.params}
        args = []
        extra = [arg for i, arg in enumerate(call.args) if arg.name is None and i >= len(names)]
        if extra:
            raise ArchError(f"network {call.name} takes {len(names)} argument{'s' * (len(names) != 1)} "
                            f"({', '.join(names) or 'none'}), got {len(call.args)}", extra[0].span)
        for i, arg in enumerate(call.args):
            if arg.name is None and any(a.name is not None for a in call.args[:i]):
                raise ArchError("a positional argument cannot follow a keyword argument", arg.span)
            name = arg.name if arg.name is not None else names[i]
            if name in names and name not in kept:
                cut = f" {_cut_words(self.bases[call.name][0])}" if call.through else ""
                raise ArchError(f"network {call.name}{cut} does not use its parameter '{name}' (it takes: "
                                f"{', '.join(p.name for p in block.params) or 'no arguments'})", arg.span,
                                notes=["a base takes the height and width of the tensor it is given"]
                                if _input_reads(net, name) else [])
            args.append(S.Arg(name, arg.value, arg.span))
        return S.Call(call.span, call.name, args, call.name_span, through=call.through, label=call.label,
                      label_span=call.label_span)

    def _bind(self, sig: list[tuple[str, object]], call: S.Call, scope: _Scope, what: str,
              fill: bool = True, tensors: set[str] = frozenset()) -> dict[str, G.Expr]:  # type: ignore[assignment]
        names = [n for n, _ in sig]
        bound: dict[str, G.Expr] = {}
        seen_keyword = False
        for i, arg in enumerate(call.args):
            if arg.name is None:
                if seen_keyword:
                    raise ArchError("a positional argument cannot follow a keyword argument", arg.span)
                if i >= len(names):
                    takes = ", ".join(names) if names else "no arguments"
                    raise ArchError(f"{what} takes {len(names)} argument{'s' * (len(names) != 1)} "
                                    f"({takes}), got {len(call.args)}", arg.span)
                key = names[i]
            else:
                seen_keyword = True
                key = arg.name
                if key not in names:
                    takes = ", ".join(names) if names else "no arguments"
                    raise ArchError(f"{what} has no argument '{key}'{suggestion(key, names)} (it takes: {takes})",
                                    arg.span)
                if key in bound:
                    raise ArchError(f"argument '{key}' of {what} is given twice", arg.span)
            if key in tensors:
                bound[key] = self._tensor_arg(arg.value, scope, f"parameter '{key}' of {what}")
            else:
                bound[key] = self._expr(arg.value, scope)
        for name, default in sig:
            if name in bound:
                continue
            if default is REQUIRED:
                raise ArchError(f"{what} needs its argument '{name}'", call.span)
            if fill:  # layers get every argument; blocks keep their own defaults
                bound[name] = G.Const(call.span, default)  # type: ignore[arg-type]
        return {n: bound[n] for n in names if n in bound}

    # expressions

    def _expr(self, e: S.Expr, scope: _Scope) -> G.Expr:
        if isinstance(e, S.Num):
            return G.Const(e.span, e.value)
        if isinstance(e, S.Bool):
            return G.Const(e.span, e.value)
        if isinstance(e, S.Name):
            kind = scope.lookup(e.id)
            if kind == "tensor":
                raise ArchError(f"'{e.id}' is a tensor, not a value", e.span, notes=[_TENSOR_USE])
            if kind is not None:
                return G.Ref(e.span, e.id, kind)
            if e.id in SYMBOLS:
                return G.Const(e.span, SYMBOLS[e.id])
            options = scope.names() | set(SYMBOLS)
            raise ArchError(f"unknown name '{e.id}' in {scope.where}{suggestion(e.id, options)}", e.span)
        if isinstance(e, S.InAttr):
            if e.attr not in IN_ATTRS:
                raise ArchError(f"'in' has no attribute '{e.attr}' (it has: {', '.join(IN_ATTRS)})", e.span)
            if not self.in_assert:  # an assert generates no code
                self.uses_in.add(e.attr)
            return G.InShape(e.span, e.attr)
        if isinstance(e, S.InTensor):
            raise ArchError("`in` is a tensor, not a value; its sizes are in.channels, in.height and in.width",
                            e.span)
        if isinstance(e, S.TensorAttr):
            if scope.lookup(e.name) != "tensor":
                raise ArchError(f"unknown tensor '{e.name}' (only tensors have attributes, like "
                                f"{e.name}.channels)", e.span)
            if e.attr not in IN_ATTRS:
                raise ArchError(f"a tensor has no attribute '{e.attr}' (it has: {', '.join(IN_ATTRS)})", e.span)
            if not self.in_assert:
                raise ArchError(f"{e.name}.{e.attr}: the sizes of a named tensor can be used only in `assert` "
                                "(the generated code fixes structure from parameters and in.*)", e.span)
            return G.TensorAttr(e.span, e.name, e.attr)
        if isinstance(e, S.FunCall):
            if e.func not in FUNCTIONS:
                raise ArchError(f"unknown function '{e.func}'{suggestion(e.func, FUNCTIONS)}"
                                f" (functions: {', '.join(sorted(FUNCTIONS))})", e.span)
            lo, hi = FUNCTIONS[e.func]
            if not lo <= len(e.args) <= hi:
                count = str(lo) if lo == hi else f"{lo} to {hi}"
                raise ArchError(f"{e.func}() takes {count} argument{'s' * (hi != 1)}, got {len(e.args)}", e.span)
            return G.Func(e.span, e.func, [self._expr(a, scope) for a in e.args])
        if isinstance(e, S.ListExpr):
            return G.ListE(e.span, [self._expr(a, scope) for a in e.items])
        if isinstance(e, S.BinOp):
            return G.Op(e.span, e.op, [self._expr(e.left, scope), self._expr(e.right, scope)])
        if isinstance(e, S.UnaryOp):
            op = {"-": "neg", "+": "pos"}.get(e.op, e.op)
            return G.Op(e.span, op, [self._expr(e.operand, scope)])
        if isinstance(e, S.Ternary):
            return G.Cond(e.span, self._expr(e.cond, scope), self._expr(e.then, scope),
                          self._expr(e.otherwise, scope))
        if isinstance(e, S.Unknown):
            raise ArchError("`?` stands only for a spatial size in `input`", e.span)
        raise AssertionError(e)  # pragma: no cover


# Naming ---------------------------------------------------------------------------------------
#
# Every node gets the path component it has in the generated PyTorch module (and, joined with
# dots, the name of its layer in Keras). At the top of a block (and inside a residual body at the
# top, which the generated forward() writes inline) a node is an attribute: its label, or its kind
# and a counter (conv1, bn1, conv2, branch1, ...). Inside a group (a concat branch, a shortcut,
# a repeated body) nodes are numbered like nn.Sequential's children, or keep their labels.

def _block_calls(body: S.Body, blocks: dict[str, S.BlockDef]) -> Iterator[S.Call]:
    """The calls of blocks in a body, in the order _Elaborator reaches them (a residual's shortcut
    before its body, an if's else-branch before its then-branch), not looking into the blocks."""
    for stmt in body.stmts:
        if isinstance(stmt, (S.Chain, S.Bind, S.Split)):
            items = stmt.items
        elif isinstance(stmt, S.Output) and stmt.chain is not None:
            items = stmt.chain
        else:
            continue
        for item in items:
            yield from _item_block_calls(item, blocks)


def _item_block_calls(item: S.Item, blocks: dict[str, S.BlockDef]) -> Iterator[S.Call]:
    if isinstance(item, S.Call):
        if item.name in blocks and item.name not in LAYERS and item.name not in MERGES:
            yield item
    elif isinstance(item, S.Repeat):
        yield from _item_block_calls(item.item, blocks)
    elif isinstance(item, S.Residual):
        if item.shortcut is not None:
            yield from _block_calls(item.shortcut, blocks)
        yield from _block_calls(item.body, blocks)
    elif isinstance(item, S.If):
        if item.otherwise is not None:
            yield from _block_calls(item.otherwise, blocks)
        yield from _block_calls(item.then, blocks)
    elif isinstance(item, S.Concat):
        for branch in item.branches:
            yield from _block_calls(branch, blocks)
    elif isinstance(item, (S.Group, S.Scale)):
        yield from _block_calls(item.body, blocks)


def _cut_words(cut: tuple[str, ...]) -> str:
    return f"through {', '.join(cut)}" if cut else "whole"


def _base_block(net: S.NetworkDef, call: S.Call, sources: dict[str, str]) -> tuple[S.BlockDef, list[str]]:
    """A network as a block, for its use as a base: its statements up to and including the item each
    label of `through` names (at the top level of its body; `output name` marks count as labels), the
    whole body without `through`. The base takes the tensor it is given: its `input` line is replaced by
    a check of the channels (the height and width are the caller's); outputs (marks and side heads)
    and freeze statements are left out, and so are the parameters that nothing kept uses, so that
    a call cannot set what does nothing. A name bound before the cut and read only after it is
    dropped."""
    stmts = list(net.body.stmts)
    if not stmts or not isinstance(stmts[0], S.Input):
        raise ArchError(f"network {net.name} does not start with its input shape, so it cannot be used as a base",
                        call.name_span, notes=[f"it is defined at {net.name_span}"])
    inp = stmts.pop(0)
    taps: list[str] = []
    if call.through is not None:
        stmts, taps = _cut(net, stmts, call.through)
    kept = [s for s in stmts if not isinstance(s, (S.Output, S.Freeze))]
    used: set[str] = set(taps)
    body: list[S.Stmt] = []
    for stmt in reversed(kept):  # from the end, to know which names the statements after one read
        if isinstance(stmt, S.Bind) and stmt.name not in used:
            stmt = S.Chain(stmt.span, stmt.items)
        body.append(stmt)
        _names_read(stmt, used)
    body.reverse()
    source = sources.get(inp.span.file, "").splitlines()
    line = source[inp.span.line - 1].strip() if 0 < inp.span.line <= len(source) else "input"
    channels = S.BinOp(inp.span, "==", S.InAttr(inp.span, "channels"), inp.dims[0])
    body.insert(0, S.Assert(inp.span, channels, f"network {net.name} is used as a base on a tensor whose channels "
                                                f"are not those of its input (`{line}`)"))
    _names_read(body[0], used)
    params: list[S.Param] = []
    for p in reversed(net.params):  # a default may read earlier parameters
        if p.name in used:
            params.append(p)
            if p.default is not None:
                _names_read(p.default, used)
    params.reverse()
    return S.BlockDef(net.name, params, S.Body(body, net.body.span), net.span, net.name_span), taps


def _cut(net: S.NetworkDef, stmts: list[S.Stmt], through: list[tuple[str, Span]]) -> tuple[list[S.Stmt], list[str]]:
    """A network's statements (its input line removed) up to its last label of `through`, and the
    feature maps at the labels before it bound to names the base returns (`layer2 = ...`, the label's
    own name where the network reads no such name)."""
    places: dict[str, tuple[int, int]] = {}  # label -> (statement, item) it ends
    for i, stmt in enumerate(stmts):
        if isinstance(stmt, S.Output) and stmt.chain is None:  # a mark: the end of the statement before
            k = i - 1
            while k >= 0 and not isinstance(stmts[k], (S.Chain, S.Bind, S.Split)):
                k -= 1
            places[stmt.name] = (k, len(stmts[k].items) - 1) if k >= 0 else (-1, -1)  # type: ignore[attr-defined]
        for j, item in enumerate(getattr(stmt, "items", ())):
            label = item.label if item.label is not None or not isinstance(item, S.Repeat) else item.item.label
            if label is not None:
                places[label] = (i, j)
    cuts: list[tuple[int, int]] = []
    for label, span in through:
        if label not in places:
            notes = [f"its labels: {name_listing(list(places))}"] if places else []
            if re.fullmatch(r"[a-z_]+\d+", label):
                notes.append(f"a cut needs a label (`name: item` in network {net.name}); an automatic name like "
                             f"'{label}' is not one")
            raise ArchError(f"network {net.name} has no label '{label}' at the top level of its body"
                            f"{suggestion(label, places)}", span, notes=notes)
        if cuts and places[label] <= cuts[-1]:
            raise ArchError(f"the labels of `through` come in the order of network {net.name}'s body, each after "
                            f"the one before: '{label}' is not after '{through[len(cuts) - 1][0]}'", span)
        cuts.append(places[label])
    taken: set[str] = set()
    _names_read(stmts, taken)
    taken |= {s.name for s in stmts if isinstance(s, S.Bind)} | {n for s in stmts if isinstance(s, S.Split)
                                                                   for n in s.names}
    names = []
    for label, _ in through[:-1]:
        name = label
        while name in taken:
            name += "_features"
        taken.add(name)
        names.append(name)
    last_i, last_j = cuts[-1]
    out: list[S.Stmt] = []
    tap_at = dict(zip(cuts[:-1], names))
    if (-1, -1) in tap_at:  # a mark right after the input
        out.append(S.Bind(net.body.span, tap_at[(-1, -1)], net.body.span, [S.InRef(net.body.span)]))
    for i, stmt in enumerate(stmts[:last_i + 1]):
        items = list(getattr(stmt, "items", ()))
        if i == last_i:
            items = items[:last_j + 1]
        ends = sorted(j for (k, j) in tap_at if k == i)
        if not ends:
            out.append(stmt if i < last_i else _with_items(stmt, items))
            continue
        start = 0
        for j in ends:
            if j == len(items) - 1 and not isinstance(stmt, S.Chain):
                break  # the end of a named statement: the name is the tap's source (below)
            out.append(S.Bind(stmt.span, tap_at[(i, j)], stmt.span, items[start:j + 1]))
            start = j + 1
        if start < len(items):
            out.append(_with_items(stmt, items[start:]))
        if ends[-1] == len(items) - 1 and not isinstance(stmt, S.Chain):
            source = stmt.name if isinstance(stmt, S.Bind) else stmt.names[-1]  # type: ignore[attr-defined]
            out.append(S.Bind(stmt.span, tap_at[(i, ends[-1])], stmt.span, [S.Call(stmt.span, source, [], stmt.span)]))
    return out, names


def _with_items(stmt: S.Stmt, items: list[S.Item]) -> S.Stmt:
    """A chain statement (a plain one, `name = ...` or a split) with other items."""
    if isinstance(stmt, S.Bind):
        return S.Bind(stmt.span, stmt.name, stmt.name_span, items)
    if isinstance(stmt, S.Split):
        return S.Split(stmt.span, stmt.names, stmt.name_spans, items)
    if isinstance(stmt, S.Chain):
        return S.Chain(stmt.span, items)
    return stmt


def _input_reads(net: S.NetworkDef, name: str) -> bool:
    """Whether a network's input line reads a parameter (`input [3, resolution, resolution]`)."""
    found: set[str] = set()
    _names_read(net.body.stmts[0] if net.body.stmts else [], found)
    return name in found


def _names_read(node, out: set[str]) -> None:
    """Adds the names a piece of syntax reads (values, tensors, blocks) to out."""
    stack = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, (list, tuple)):
            stack.extend(n)
        elif isinstance(n, (S.Expr, S.Item, S.Stmt, S.Body, S.Arg)):
            if isinstance(n, S.Name):
                out.add(n.id)
            elif isinstance(n, (S.Call, S.TensorAttr)):
                out.add(n.name)
            stack.extend(getattr(n, f) for f in n.__dataclass_fields__ if f not in ("span", "label_span"))


def _kind(node: G.Node) -> str:
    if isinstance(node, G.Layer):
        return node.type.name
    if isinstance(node, G.Merge):
        return node.op
    if isinstance(node, G.BlockCall):
        return G.snake(node.block)
    if isinstance(node, G.Repeat):
        return _kind(node.body)
    if isinstance(node, G.Choice):
        return "choice"
    if isinstance(node, G.Repeat) and isinstance(node.body, G.Seq) and len(node.body.nodes) == 1:
        return _kind(node.body.nodes[0])
    if isinstance(node, G.Seq):
        return "group"
    return type(node).__name__.lower()


def _name_top(seq: G.Seq, counters: dict[str, int], taken: set[str], network: bool) -> None:
    labels = _collect_labels(seq)
    taken |= labels

    def fresh(kind: str) -> str:
        while True:
            counters[kind] = counters.get(kind, 0) + 1
            name = safe_attr(f"{kind}{counters[kind]}")
            if name not in taken:
                taken.add(name)
                return name

    def visit(s: G.Seq) -> None:
        for node in s.nodes:
            if isinstance(node, (G.Residual, G.Concat, G.Scale)):
                node.inline = True
            if isinstance(node, G.Residual):
                node.name = safe_attr(node.label) if node.label else fresh("residual")
                visit(node.body)
                if node.shortcut is not None:
                    node.shortcut.name = fresh("shortcut")
                    _name_group(node.shortcut)
            elif isinstance(node, G.Concat):
                node.name = safe_attr(node.label) if node.label else fresh("concat")
                for b in node.branches:
                    b.name = fresh("branch")
                    _name_group(b)
            elif isinstance(node, G.Scale):
                node.name = safe_attr(node.label) if node.label else fresh("scale")
                node.body.name = node.name
                _name_group(node.body)
            elif isinstance(node, G.Output):
                node.name = safe_attr(node.label)  # type: ignore[arg-type]
                if node.body is not None:
                    node.body.name = node.name
                    _name_group(node.body)
            else:
                node.name = safe_attr(node.label) if node.label else fresh(_kind(node))
                _name_inside(node)

    visit(seq)


def _collect_labels(seq: G.Seq) -> set[str]:
    """Labels at the top of a scope (inlined residual bodies included); duplicates are an error."""
    seen: dict[str, G.Node] = {}

    def visit(s: G.Seq) -> None:
        for node in s.nodes:
            if node.label is not None:
                name = safe_attr(node.label)
                if name in seen:
                    raise ArchError(f"the name '{node.label}' is used twice in the same block",
                                    node.label_span or node.span,
                                    notes=[f"first used at {seen[name].span}"])
                seen[name] = node
            if isinstance(node, G.Residual):
                visit(node.body)

    visit(seq)
    return set(seen)


def _name_group(seq: G.Seq) -> None:
    nodes = seq.nodes
    if len(nodes) == 1 and nodes[0].label is None:
        nodes[0].name = ""
        _name_inside(nodes[0])
        return
    seen: set[str] = set()
    for i, node in enumerate(nodes):
        if node.label is not None:
            name = safe_attr(node.label)
            if name in seen:
                raise ArchError(f"the name '{node.label}' is used twice in the same group",
                                node.label_span or node.span)
            seen.add(name)
            node.name = name
        else:
            node.name = str(i)
        _name_inside(node)


def _name_inside(node: G.Node) -> None:
    """Names below a node that is a module of its own inside a group."""
    if isinstance(node, G.Seq):
        _name_group(node)
    elif isinstance(node, G.Concat):
        for j, b in enumerate(node.branches):
            b.name = f"branches.{j}"
            _name_group(b)
    elif isinstance(node, G.Residual):
        node.body.name = "body"
        _name_group(node.body)
        if node.shortcut is not None:
            node.shortcut.name = "shortcut"
            _name_group(node.shortcut)
    elif isinstance(node, G.Scale):
        node.body.name = "body"
        _name_group(node.body)
    elif isinstance(node, G.Choice):
        node.then.name = node.otherwise.name = ""
        _name_group(node.then)
        _name_group(node.otherwise)
    elif isinstance(node, G.Repeat):
        node.body.name = ""
        _name_inside(node.body)
