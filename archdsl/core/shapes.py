"""Shape inference: expand the typed graph for one setting of the network parameters.

Every repetition is unrolled, every condition and expression evaluated, every block call bound;
each node's output shape, parameter count, multiply-accumulates and receptive field are computed,
and whatever does not fit is reported with the layer, the block instance and the source place.
The walk is iterative over repetitions, so deep networks cost no recursion depth.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from fractions import Fraction

from ..language.errors import ArchError
from ..language.limits import MAX_INSTANCES, MAX_INT, located, power_too_large
from . import graph as G
from .elaborate import suggestion
from .graph import Inst, Shape, Symbol, Value
from .layers import ArgError, call_function, describe

_BINOPS = {
    "+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv,
    "//": operator.floordiv, "%": operator.mod, "**": operator.pow,
    "==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le,
    ">": operator.gt, ">=": operator.ge,
}


@dataclass
class _Env:
    values: dict[str, Value]
    in_shape: Shape
    context: str  # e.g. "in layer2.0 (Bottleneck)"
    tensors: dict[str, _State] = field(default_factory=dict)  # named tensors of the block, `in` too

    def child(self) -> _Env:
        return _Env(dict(self.values), self.in_shape, self.context, self.tensors)


def evaluate(e: G.Expr, env: _Env) -> Value:
    """The value of an expression; a located error if it has none."""
    if isinstance(e, G.Const):
        return e.value
    if isinstance(e, G.Ref):
        return env.values[e.name]
    if isinstance(e, G.InShape):
        dims = {"channels": env.in_shape.channels, "height": env.in_shape.height, "width": env.in_shape.width}
        if env.in_shape.rank != 3 and e.attr != "channels":
            raise ArchError(f"in.{e.attr}: the input here is flat, {env.in_shape}", e.span, context=env.context)
        value = dims[e.attr]
        if value is None:
            raise ArchError(f"in.{e.attr} is not known: the network's input leaves it open (`?`)", e.span,
                            context=env.context)
        return value
    if isinstance(e, G.TensorAttr):
        shape = env.tensors[e.name].shape
        if shape.rank != 3 and e.attr != "channels":
            raise ArchError(f"{e.name}.{e.attr}: the tensor is flat, {shape}", e.span, context=env.context)
        value = {"channels": shape.channels, "height": shape.height, "width": shape.width}[e.attr]
        if value is None:
            raise ArchError(f"{e.name}.{e.attr} is not known: the network's input leaves it open (`?`)", e.span,
                            context=env.context)
        return value
    if isinstance(e, G.Cond):
        c = evaluate(e.cond, env)
        if not isinstance(c, bool):
            raise ArchError(f"a condition must be true or false, got {describe(c)}", e.cond.span, context=env.context)
        return evaluate(e.then if c else e.otherwise, env)
    if isinstance(e, G.ListE):
        return tuple(evaluate(i, env) for i in e.items)
    if isinstance(e, G.Func):
        args = [evaluate(a, env) for a in e.args]
        try:
            result = call_function(e.func, args)
        except ArgError as err:
            raise ArchError(str(err), e.span, context=env.context) from None
        except (OverflowError, ValueError) as err:  # pragma: no cover - arguments are finite and in range
            raise ArchError(f"cannot compute this: {err}", e.span, context=env.context) from None
        return located(result, e.span, what=f"the result of {e.func}()", context=env.context)
    if isinstance(e, G.Op):
        if e.op in ("and", "or"):
            left = evaluate(e.args[0], env)
            _need_bool(left, e.op, e.args[0], env)
            if (e.op == "and") != left:
                return left
            right = evaluate(e.args[1], env)
            _need_bool(right, e.op, e.args[1], env)
            return right
        vals = [evaluate(a, env) for a in e.args]
        if e.op == "not":
            _need_bool(vals[0], "not", e.args[0], env)
            return not vals[0]
        comparison = e.op in ("==", "!=")
        for v, a in zip(vals, e.args):
            if comparison:
                continue
            if isinstance(v, (Symbol, tuple)) or v is None or (isinstance(v, bool) and e.op not in ("==", "!=")):
                raise ArchError(f"'{e.op if e.op not in ('neg', 'pos') else '-'}' needs numbers, got {describe(v)}",
                                a.span, context=env.context)
        if e.op == "neg":
            return -vals[0]  # type: ignore[operator]
        if e.op == "pos":
            return vals[0]
        if e.op == "**" and power_too_large(*vals):
            raise ArchError(f"the value here is too large: {describe(vals[0])} ** {describe(vals[1])} is at least "
                            f"2**64; integers are limited to {MAX_INT:,} (2**63 - 1) in magnitude", e.span,
                            context=env.context)
        try:
            result = _BINOPS[e.op](*vals)
        except ZeroDivisionError:
            raise ArchError("division by zero", e.span, context=env.context) from None
        except OverflowError:
            raise ArchError("the result here is too large: it overflows the range of numbers (about 1.8e308)",
                            e.span, context=env.context) from None
        except TypeError as err:  # pragma: no cover - the operands are numbers
            raise ArchError(f"cannot compute this: {err}", e.span, context=env.context) from None
        return located(result, e.span, what="the result here", context=env.context)
    raise AssertionError(e)  # pragma: no cover


def _check(item: G.Check, env: _Env) -> None:
    ok = evaluate(item.cond, env)
    if not isinstance(ok, bool):
        raise ArchError(f"an assert condition must be true or false, got {describe(ok)}", item.cond.span,
                        context=env.context)
    if not ok:
        args = ", ".join(f"{k} = {describe(v)}" for k, v in env.values.items() if not k.startswith("_"))
        raise ArchError(item.message or "assertion failed", item.span, context=env.context,
                        notes=[f"with {args}"] if args else [])


def _need_bool(v: Value, op: str, e: G.Expr, env: _Env) -> None:
    if not isinstance(v, bool):
        raise ArchError(f"'{op}' needs true or false, got {describe(v)}", e.span, context=env.context)


def _flag(e: G.Expr | None, env: _Env, what: str) -> bool:
    """The value of a condition, which must be true or false; true where there is none."""
    if e is None:
        return True
    v = evaluate(e, env)
    if not isinstance(v, bool):
        raise ArchError(f"{what} must be true or false, got {describe(v)}", e.span, context=env.context)
    return v


@dataclass
class _State:
    shape: Shape
    rf: int | Fraction = 1  # in input pixels; a fraction of one after an upsampling
    jump: int | Fraction = 1


def _count(e: G.Expr, env: _Env, what: str) -> int:
    v = evaluate(e, env)
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise ArchError(f"{what} must be a whole number of at least 0, got {describe(v)}", e.span, context=env.context)
    if v > MAX_INSTANCES:
        raise ArchError(f"{what} of {v:,} is more than the limit of {MAX_INSTANCES:,} layers and composites "
                        "a network may expand to", e.span, context=env.context)
    return v


def _check_shape(shape: Shape, what: str, span, env: _Env) -> Shape:
    """A shape whose sizes are all in the language's integer range; else a located error."""
    for d in shape.dims:
        if d is not None and d > MAX_INT:
            raise ArchError(f"{what} would be {shape}: a size is more than {MAX_INT:,} (2**63 - 1), the limit of "
                            "integers", span, context=env.context)
    return shape


class Expander:
    def __init__(self, program: G.Program) -> None:
        self.program = program
        self.done: list[Inst] = []  # layers checked so far, in order (the report up to an error)
        self.count = 0  # instances made so far (limits.MAX_INSTANCES)
        self.repeats: list[tuple[G.Repeat, str]] = []  # the repetitions being expanded, outermost first, and
        # the context each is in
        self.least: dict[int, int] = {}  # id of a definition node -> the fewest instances it expands to
        # id of a definition node or block -> its instances in the last run (Elaborated.per_node; after an
        # error, those made up to it)
        self.per_node: dict[int, list[Inst]] = {}

    def run(self, overrides: dict[str, Value] | None = None) -> G.Elaborated:
        net = self.program.network
        self.per_node = {}  # this run's own: nothing of an earlier expansion is touched
        overrides = dict(overrides or {})
        unknown = [k for k in overrides if k not in {p.name for p in net.params}]
        if unknown:
            names = ", ".join(p.name for p in net.params) or "none"
            raise ArchError(f"--set {unknown[0]}: network {net.name} has no parameter '{unknown[0]}' "
                            f"(its parameters: {names})")
        placeholder = Shape((1, None, None))
        env = _Env({}, placeholder, f"in network {net.name}")
        self.count = 0
        self.repeats = []
        for p in net.params:
            if p.name in overrides:
                env.values[p.name] = located(overrides[p.name], p.span, what=f"the value set for '{p.name}'")
            elif p.default is not None:
                env.values[p.name] = evaluate(p.default, env)
            else:
                raise ArchError(f"network parameter '{p.name}' has no default; set it with --set {p.name}=VALUE",
                                p.span)
        dims: list[int | None] = []
        for d in net.input:
            if d is None:
                dims.append(None)
                continue
            v = raw = evaluate(d, env)
            if isinstance(v, float) and v.is_integer():
                v = int(v)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ArchError(f"an input size must be a whole number of at least 1, got {describe(v)}", d.span)
            if v > MAX_INT:
                raise ArchError(f"an input size must be at most {MAX_INT:,} (2**63 - 1), the limit of integers, "
                                f"got {describe(raw)}", d.span)
            dims.append(v)
        in_shape = Shape(tuple(dims))
        env.in_shape = in_shape
        root = Inst(None, "", net.name, in_shape, in_shape)
        state = _State(in_shape)
        outputs: list[tuple[str, Inst]] = []
        last: Inst | None = None
        freezes: list[tuple[G.Freeze, bool]] = []
        seq_env = env.child()
        seq_env.tensors = {"in": state}
        for item in net.body.items:
            if isinstance(item, G.Load):
                state = seq_env.tensors[item.name]
                continue
            if isinstance(item, G.Store):
                seq_env.tensors[item.name] = state
                continue
            if isinstance(item, G.Let):
                seq_env.values[item.name] = evaluate(item.value, seq_env)
                continue
            if isinstance(item, G.Check):
                _check(item, seq_env)
                continue
            if isinstance(item, G.Freeze):
                freezes.append((item, _flag(item.cond, seq_env, "a freeze condition")))
                continue
            if isinstance(item, G.Output):
                if item.body is None:
                    marker = Inst(item, item.name, "output", state.shape, state.shape)
                    marker.rf = (state.rf, state.jump)
                    root.children.append(marker)
                    outputs.append((item.name, marker))
                else:
                    inst = Inst(item, item.name, "output", state.shape, state.shape)
                    out = self._seq(item.body, _State(state.shape, state.rf, state.jump), seq_env, item.name,
                                    inst.children)
                    inst.out_shape, inst.rf = out.shape, (out.rf, out.jump)
                    root.children.append(inst)
                    outputs.append((item.name, inst))
                continue
            state = self._node(item, state, seq_env, "", root.children)
            last = root.children[-1]
        root.out_shape = outputs[-1][1].out_shape if outputs else state.shape
        if not outputs:
            end = Inst(None, "output", "output", state.shape, state.shape)
            end.rf = (state.rf, state.jump)
            outputs.append(("output", last if last is not None else end))
        if freezes:
            _freeze(root, freezes)
        return G.Elaborated(self.program, dict(env.values), root, outputs, frozenset(overrides),
                            per_node=self.per_node)

    def _use(self, node: G.Node | G.BlockDef, inst: Inst) -> None:
        self.per_node.setdefault(id(node), []).append(inst)

    # walking

    def _seq(self, seq: G.Seq, state: _State, env: _Env, path: str, out: list[Inst]) -> _State:
        env = env.child()
        for item in seq.items:
            if isinstance(item, G.Load):
                state = env.tensors[item.name]
            elif isinstance(item, G.Store):
                env.tensors[item.name] = state
            elif isinstance(item, G.Let):
                env.values[item.name] = evaluate(item.value, env)
            elif isinstance(item, G.Check):
                _check(item, env)
            else:
                state = self._node(item, state, env, path, out)
        return state

    def _node(self, node: G.Node, state: _State, env: _Env, parent: str, out: list[Inst]) -> _State:
        path = f"{parent}.{node.name}" if parent and node.name else (node.name or parent)
        self.count += 1
        if self.count > MAX_INSTANCES:
            self._too_many(node, env)
        if isinstance(node, G.Layer):
            return self._layer(node, state, env, path, out)
        if isinstance(node, G.BlockCall):
            return self._call(node, state, env, path, out)
        if isinstance(node, G.Merge):
            return self._merge(node, env, path, out)
        inst = Inst(node, path, type(node).__name__.lower(), state.shape, state.shape)
        self._use(node, inst)
        out.append(inst)
        if isinstance(node, G.Seq):
            inst.kind = "group"
            end = self._seq(node, state, env, path, inst.children)
        elif isinstance(node, G.Repeat):
            n = _count(node.count, env, "a repetition count")
            inst.args = {"count": n}
            end = state
            self.repeats.append((node, env.context))
            if self.count + n * self._least(node.body) > MAX_INSTANCES:  # no need to expand it to know
                self._too_many(node, env)
            for i in range(n):
                body_env = env
                if node.index is not None:
                    body_env = env.child()
                    body_env.values[node.index] = i
                end = self._node(node.body, end, body_env, f"{path}.{i}", inst.children)
            self.repeats.pop()
        elif isinstance(node, G.Choice):
            c = evaluate(node.condition, env)
            if not isinstance(c, bool):
                raise ArchError(f"an `if` condition must be true or false, got {describe(c)}",
                                node.condition.span, context=env.context)
            inst.args = {"condition": c}
            end = self._seq(node.then if c else node.otherwise, state, env, path, inst.children)
        elif isinstance(node, G.Concat):
            base = parent if node.inline else path
            ends = [self._seq(b, state, env, _join(base, b.name), inst.children) for b in node.branches]
            end = self._concat(node, ends, env)
        elif isinstance(node, G.Residual):
            base = parent if node.inline else path
            rate = evaluate(node.drop_path, env)
            if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate < 1:
                raise ArchError(f"drop_path must be a number in [0, 1), got {describe(rate)}", node.drop_path.span,
                                context=env.context)
            use = _flag(node.condition, env, "a shortcut condition")
            per_batch = _flag(node.per_batch, env, "per_batch")
            skip = _flag(node.when, env, "a residual's condition")
            inst.args = {"shortcut": use and node.shortcut is not None, "drop_path": float(rate),
                         "per_batch": per_batch, "skip": skip}
            body_end = self._seq(node.body, state, env, _join(base, node.body.name), inst.children)
            # `residual if` whose condition is false: the body alone
            end = self._residual_sum(node, state, body_end, use, env, base, inst) if skip else body_end
        elif isinstance(node, G.Scale):
            base = parent if node.inline else path
            body_end = self._seq(node.body, state, env, _join(base, node.body.name), inst.children)
            self._check_scale(node, state.shape, body_end.shape, env)
            end = _State(state.shape, max(state.rf, body_end.rf), state.jump)
        else:  # pragma: no cover
            raise TypeError(node)
        inst.out_shape = end.shape
        inst.rf = (end.rf, end.jump)
        return end

    def _residual_sum(self, node: G.Residual, state: _State, body_end: _State, use: bool, env: _Env, base: str,
                      inst: Inst) -> _State:
        """The end of a residual's sum: the shortcut (or the identity) added to the body's end."""
        sc_end = state
        if node.shortcut is not None and use:
            sc_end = self._seq(node.shortcut, state, env, _join(base, node.shortcut.name), inst.children)
        if body_end.shape != sc_end.shape:
            what = "the shortcut" if node.shortcut is not None and use else "the identity shortcut"
            notes = []
            if node.shortcut is not None and not use:
                notes.append("the shortcut's condition is false here, so the input is added unchanged")
            elif node.shortcut is None:
                notes.append("add a projection: `residual { ... } shortcut { conv(...) bn }`")
            raise ArchError(f"residual add of unequal shapes: the body gives {body_end.shape}, "
                            f"{what} gives {sc_end.shape}", node.span, context=env.context, notes=notes)
        return _State(body_end.shape, max(body_end.rf, sc_end.rf), body_end.jump)

    def _least(self, node: G.Node) -> int:
        """The fewest instances a node can expand to, whatever the parameters: each layer, block call and
        composite is one, a repetition of a constant count that many copies of its body, an `if` its
        smaller branch (so a repetition that is surely past MAX_INSTANCES is an error before it is
        expanded)."""
        key = id(node)
        if key in self.least:
            return self.least[key]
        if isinstance(node, (G.Layer, G.Merge)):
            n = 1
        elif isinstance(node, G.BlockCall):
            n = 1 + self._least(self.program.blocks[node.block].body)
        elif isinstance(node, G.Seq):
            n = 1 + sum(self._least(child) for child in node.nodes)
        elif isinstance(node, G.Repeat):
            count = node.count.value if isinstance(node.count, G.Const) else 0
            n = 1 + (count * self._least(node.body) if isinstance(count, int) and count > 0 else 0)
        elif isinstance(node, G.Choice):
            n = 1 + min(self._least(node.then), self._least(node.otherwise))
        elif isinstance(node, G.Concat):
            n = 1 + sum(self._least(b) for b in node.branches)
        elif isinstance(node, G.Residual):
            n = 1 + self._least(node.body)  # the shortcut may be off
        elif isinstance(node, (G.Scale, G.Output)):
            n = 1 + (self._least(node.body) if node.body is not None else 0)
        else:  # pragma: no cover
            n = 1
        self.least[key] = n
        return n

    def _too_many(self, node: G.Node, env: _Env) -> None:
        """The error for an expansion past MAX_INSTANCES: at the outermost repetition being expanded
        (the one that multiplies the most), else at the node that went past."""
        where, context = self.repeats[0] if self.repeats else (node, env.context)
        what = "this repetition makes the network expand" if self.repeats else "the network expands"
        raise ArchError(f"{what} to more than the limit of {MAX_INSTANCES:,} layers and composites", where.span,
                        context=context if "(" in context else None)

    def _layer(self, node: G.Layer, state: _State, env: _Env, path: str, out: list[Inst]) -> _State:
        args: dict[str, object] = {}
        for p in node.type.params:
            expr = node.args[p.name]
            value = env.tensors[expr.name].shape if isinstance(expr, G.TensorRef) else evaluate(expr, env)
            try:
                args[p.name] = p.normal(value)
            except ArgError as err:
                raise ArchError(f"{node.type.name}: '{p.name}' {err}", expr.span, context=env.context) from None
        try:
            res = node.type.infer(args, state.shape)
        except ArgError as err:
            span = node.args[err.arg].span if err.arg in node.args and node.args[err.arg].span != node.span \
                else node.span
            where = f"{path} ({node.type.name})" if path else node.type.name
            raise ArchError(f"{where}: {err}", span, context=env.context if "(" in env.context else None,
                            notes=[f"input shape here: {state.shape}"]) from None
        _check_shape(res.shape, f"the output of {path or node.type.name} ({node.type.name})", node.span, env)
        inst = Inst(node, path, node.type.name, state.shape, res.shape, args, res.params, res.macs)
        rf, jump = state.rf, state.jump
        if res.window is not None:
            k, s = res.window
            rf, jump = rf + (k - 1) * jump, jump * s
        inst.rf = (rf, jump)
        self._use(node, inst)
        out.append(inst)
        self.done.append(inst)
        return _State(res.shape, rf, jump)

    def _call(self, node: G.BlockCall, state: _State, env: _Env, path: str, out: list[Inst]) -> _State:
        block = self.program.blocks[node.block]
        context = f"in {path or '<network>'} ({block.name})"
        inner = _Env({}, state.shape, context, {"in": state})
        values: dict[str, Value] = {}
        for p in block.params:
            if p.tensor:
                ref = node.args[p.name]
                assert isinstance(ref, G.TensorRef)
                inner.tensors[p.name] = env.tensors[ref.name]
                continue
            if p.name in node.args:
                values[p.name] = evaluate(node.args[p.name], env)
            else:
                assert p.default is not None
                values[p.name] = evaluate(p.default, inner)
            inner.values[p.name] = values[p.name]
        inst = Inst(node, path, block.name, state.shape, state.shape, values, block=block)
        self._use(node, inst)
        self._use(block, inst)
        out.append(inst)
        end = self._seq(block.body, _State(state.shape, state.rf, state.jump), inner, path, inst.children)
        for name, tap in zip(node.unpack, block.taps, strict=True):  # a base's feature maps
            env.tensors[name] = inner.tensors[tap]
        inst.taps = tuple(inner.tensors[tap].shape for tap in block.taps)
        inst.out_shape = end.shape
        inst.rf = (end.rf, end.jump)
        return end

    def _merge(self, node: G.Merge, env: _Env, path: str, out: list[Inst]) -> _State:
        ins = [env.tensors[r.name] for r in node.inputs]
        shapes = [s.shape for s in ins]
        if node.op == "concat":
            end = self._concat(node, ins, env, [f"'{r.name}'" for r in node.inputs])
        elif node.op == "mul":
            first = shapes[0]
            for r, s in zip(node.inputs[1:], shapes[1:]):
                if not (s.rank == first.rank and all(b in (a, 1) for a, b in zip(first.dims, s.dims))):
                    raise ArchError(f"mul multiplies '{node.inputs[0].name}' {first} by tensors of its shape or one "
                                    f"that broadcasts to it (e.g. [{first.channels}, 1, 1]); '{r.name}' is {s}",
                                    node.span, context=env.context)
            end = _State(first, max(s.rf for s in ins), max(s.jump for s in ins))
        else:
            if len(set(shapes)) > 1:
                listing = ", ".join(f"'{r.name}' is {s}" for r, s in zip(node.inputs, shapes))
                raise ArchError(f"add of unequal shapes: {listing}", node.span, context=env.context)
            end = _State(shapes[0], max(s.rf for s in ins), max(s.jump for s in ins))
        inst = Inst(node, path, node.op, shapes[0], end.shape)
        inst.args = {"inputs": tuple(r.name for r in node.inputs)}
        inst.rf = (end.rf, end.jump)
        self._use(node, inst)
        out.append(inst)
        self.done.append(inst)
        return end

    def _concat(self, node: G.Concat | G.Merge, ends: list[_State], env: _Env,
                names: list[str] | None = None) -> _State:
        shapes = [s.shape for s in ends]
        for sh in shapes:
            if sh.rank != 3:
                raise ArchError(f"concat joins feature maps on channels; {'a branch gives' if names is None else 'got'} "
                                f"the flat {sh}", node.span, context=env.context)
        sizes = {(s.height, s.width) for s in shapes}
        if len(sizes) > 1:
            listing = ", ".join(f"branch {i + 1} gives {s}" if names is None else f"{names[i]} is {s}"
                                for i, s in enumerate(shapes))
            raise ArchError(f"concat of unequal spatial sizes: {listing}", node.span, context=env.context,
                            notes=["the inputs must have the same height and width to be joined on channels"])
        first = shapes[0]
        shape = _check_shape(Shape((sum(s.channels for s in shapes), first.height, first.width)), "the concatenation",
                             node.span, env)
        return _State(shape, max(s.rf for s in ends), max(s.jump for s in ends))

    def _check_scale(self, node: G.Scale, x: Shape, g: Shape, env: _Env) -> None:
        ok = x.rank == g.rank and all(b in (a, 1) for a, b in zip(x.dims, g.dims))
        if not ok:
            raise ArchError(f"scale multiplies its input {x} by what its body computes, {g}; the body must give "
                            f"the same shape or one that broadcasts (e.g. [{x.channels}, 1, 1])", node.span,
                            context=env.context)


def _freeze(root: Inst, freezes: list[tuple[G.Freeze, bool]]) -> None:
    """Marks what the freeze statements name (Inst.frozen), in their order: a later statement wins over
    an earlier one for the parts both name. Every path is checked, where its condition holds or not."""
    parts: dict[str, Inst] = {}
    for inst in root.walk():
        if inst is not root:
            parts.setdefault(inst.path, inst)
    for item, holds in freezes:
        word = "unfreeze" if item.trainable else "freeze"
        for written, path, span in item.paths:
            inst = parts.get(path)
            if inst is None:
                parent, _, last = path.rpartition(".")
                while parent and parent not in parts:
                    parent, _, last = parent.rpartition(".")
                below = [i.path.rpartition(".")[2] for i in parts.values()
                         if i.path.rpartition(".")[0] == parent and i.path.rpartition(".")[2]
                         and not i.path.rpartition(".")[2].isdigit()]
                where = f"under '{parent}'" if parent else "at the top of the network"
                raise ArchError(f"{word}: the network has no part '{written}' (no '{last}' {where})"
                                f"{suggestion(last, below)}", span,
                                notes=[f"the parts {where}: {', '.join(dict.fromkeys(below))}"] if below else [])
            if isinstance(inst.node, G.Output) and inst.node.body is None:
                raise ArchError(f"{word}: '{written}' marks an output; name the layers or blocks that compute it",
                                span)
            if inst.node is not None and inst.node.inline:
                raise ArchError(f"{word}: '{written}' is a {inst.kind} written inline in its block's code, not a "
                                "part of its own; name the layers inside it, or make it a block", span)
            if holds:
                for i in inst.walk():
                    i.frozen = not item.trainable


def _join(parent: str, name: str) -> str:
    if not name:
        return parent
    return f"{parent}.{name}" if parent else name


def all_nodes(seq: G.Node):
    """Every definition node under seq (itself included), in no particular order."""
    stack: list[G.Node] = [seq]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, G.Seq):
            stack.extend(node.nodes)
        elif isinstance(node, G.Concat):
            stack.extend(node.branches)
        elif isinstance(node, G.Residual):
            stack.append(node.body)
            if node.shortcut is not None:
                stack.append(node.shortcut)
        elif isinstance(node, (G.Scale, G.Output)):
            if node.body is not None:
                stack.append(node.body)
        elif isinstance(node, G.Choice):
            stack.extend([node.then, node.otherwise])
        elif isinstance(node, G.Repeat):
            stack.append(node.body)
