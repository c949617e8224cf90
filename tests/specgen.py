"""Random valid specs for the property-based differential test (tests/test_properties.py).

`Generator(source).spec()` writes the text of one spec that the checker should accept: it tracks the
shape of the tensor while it draws each layer, so every convolution, pooling, crop, `concat`,
`residual`, `scale`, named-tensor `add`/`concat` and block call fits by construction. The draws come
from a `Source`: hypothesis's `data.draw` in the test (so examples shrink and replay), or a seeded
`random.Random` for long runs outside pytest.

What it covers: every layer of the catalog (archdsl/core/layers.py) and its aliases, with the argument
forms of docs/language.md (pairs, lists, `same`/`valid`, `global`, ceil mode, dilation, groups, odd
sizes); blocks with parameters (defaults, positional and keyword calls, `in.channels`/`in.height`,
`let`, `assert`), reused blocks, tensor parameters; repetition `* n` (0 included) and `for`; groups;
residual with no, a plain and a conditional shortcut, with drop_path; concat of branches; scale; if /
else if / else; named tensors with `add`/`concat`; labels (hostile names included: Python keywords,
builtins, the generated code's own names, dunder and `__` names, nn.Module attributes); side,
auxiliary and final outputs; flat inputs and flatten + dense heads; network parameters used in
expressions.

A spec also carries `tags`: the constructs in it that once made the Keras model compute something
else or fail (issue 13: flatten order, a stride with a dilation, unequal depthwise strides, a
negative leaky slope, an identity-only conditional shortcut); a long run counts the examples
compared in Keras with each, so a report shows they were exercised.
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass, field

from archdsl.core.layers import make_divisible
from archdsl.editor.highlight import FUNCTION_NAMES, LAYER_NAMES, RESERVED, SYMBOL_NAMES


class Source:
    """Where the random choices come from."""

    def int(self, lo: int, hi: int) -> int:  # pragma: no cover - each source says how
        raise NotImplementedError

    def prob(self, p: float) -> bool:
        return self.int(0, 999) < p * 1000

    def pick(self, options):
        options = list(options)
        return options[self.int(0, len(options) - 1)]


class RandomSource(Source):
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def int(self, lo: int, hi: int) -> int:
        return self.rng.randint(lo, hi)


class HypothesisSource(Source):
    def __init__(self, data) -> None:
        from hypothesis import strategies as st

        self.data, self.st = data, st

    def int(self, lo: int, hi: int) -> int:
        return self.data.draw(self.st.integers(lo, hi))


# Names ---------------------------------------------------------------------------------------------

# Names that the generated Python could trip over: keywords and soft keywords, builtins, the
# frameworks' module names, the generated modules' own names and locals, nn.Module's attributes and
# private state, names that mangle in a class body, dunders, and names one underscore away from these.
HOSTILE = (
    "def", "class", "return", "lambda", "yield", "pass", "None", "True", "False", "del", "from", "with",
    "while", "try", "except", "finally", "raise", "global", "nonlocal", "is", "async", "await", "break",
    "continue", "elif", "match", "case", "type", "_", "print", "len", "list", "dict", "super", "object",
    "int_", "float_", "range_", "self", "x", "x_", "inputs", "outputs", "in_channels", "in_height",
    "in_width", "out_channels", "name", "torch", "nn", "F", "keras", "layers", "ops", "np", "math",
    "OrderedDict", "Callable", "annotations", "build_model", "params", "INPUT_SHAPE", "OUTPUT_NAMES",
    "AUXILIARY_OUTPUTS", "make_divisible_", "Concat", "Residual", "Scale", "DropPath", "SeparableConv2d",
    "Conv2dSame", "PartialBatchNorm2d", "LayerNorm2d", "conv2d", "padded", "identity", "identity1",
    "channels", "channels2", "m", "m1", "t", "i", "rep", "shortcut1", "branch1", "scaled", "padding",
    "forward", "train", "training", "eval", "to", "cuda", "float_", "half", "children", "modules",
    "parameters", "state_dict", "_modules", "_parameters", "_buffers", "_version", "dump_patches",
    "T_destination", "__x", "__y_", "__init__", "__class__", "__dict__", "__call__", "__name__", "__",
    "___", "_x", "__slots__", "def_", "class_", "self_", "nn_", "F_", "folds", "weight", "bias",
    "conv", "relu", "bn", "dense", "flatten", "sum", "abs_", "Model", "Input", "Net", "Sequential",
)
PLAIN = ("stem", "head", "body", "feat", "trunk", "stage", "cell", "proj", "mix", "side", "gate", "down",
         "up", "left", "right", "tail", "core", "branch_a", "pre", "post", "mid", "lo", "hi")
RESERVED_WORDS = frozenset(RESERVED) | {"in"}
NOT_VALUE_NAMES = frozenset(FUNCTION_NAMES) | frozenset(SYMBOL_NAMES)  # not a parameter, let or index
LAYERS = frozenset(LAYER_NAMES) | {"add", "mul", "concat"}


@dataclass
class Shape:
    dims: tuple[int, ...]

    @property
    def flat(self) -> bool:
        return len(self.dims) == 1

    @property
    def c(self) -> int:
        return self.dims[0]

    @property
    def hw(self) -> tuple[int, int]:
        return self.dims[1], self.dims[2]

    def with_c(self, c: int) -> Shape:
        return Shape((c, *self.dims[1:]))


def _conv_size(n: int, k: int, s: int, p, d: int = 1) -> int:
    if p == "same":
        return -(-n // s)
    p = 0 if p == "valid" else p
    return (n + 2 * p - d * (k - 1) - 1) // s + 1


def _pool_size(n: int, k: int, s: int, p, ceil: bool) -> int:
    if p == "same":
        return -(-n // s)
    p = 0 if p == "valid" else p
    span = n + 2 * p - k
    if ceil:
        out = -(-span // s) + 1
        if (out - 1) * s >= n + p:
            out -= 1
        return out
    return span // s + 1


_SIMPLE_CALL = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\([^()]*(\([^()]*\)[^()]*)*\))?")


def _pair_text(v: tuple[int, int]) -> str:
    return str(v[0]) if v[0] == v[1] else f"[{v[0]}, {v[1]}]"


@dataclass
class Block:
    name: str
    in_shape: Shape
    out_shape: Shape
    call: str  # a call with the arguments it was generated for


@dataclass
class Spec:
    text: str
    tags: set[str] = field(default_factory=set)  # constructs that once broke the Keras backend (above)
    input_shape: tuple[int, ...] = ()


_NAME = re.compile(r"\bin\.[a-z]+\b|\b[A-Za-z_][A-Za-z0-9_]*\b")
_EVAL_FUNCS = {"max": max, "min": min, "int": int, "round": round, "abs": abs, "float": float,
               "ceil": math.ceil, "floor": math.floor, "make_divisible": make_divisible}


class Generator:
    """Draws one valid spec. Sizes stay small (a few channels, 8-40 pixels) so that models build fast."""

    def __init__(self, source: Source, max_items: int = 14, hostile: float = 0.2) -> None:
        self.r = source
        self.budget = max_items  # top-level-equivalent items left to draw
        self.hostile = hostile
        self.used: set[str] = set()
        self.blocks: list[Block] = []
        self.block_texts: list[str] = []
        self.tags: set[str] = set()
        self.env: dict[str, object] = {}  # the names in scope and their values (parameters, lets, index)
        self.block_depth = 0
        self.indices: set[str] = set()  # loop indices in scope: not for sizes, which must not vary
        self.unordered_flat = False  # a flat tensor from flattening a map, in PyTorch's (C, H, W) order

    # names

    def name(self, kind: str = "label") -> str:
        """A fresh name for a label, tensor, parameter, let, block or output."""
        for _ in range(20):
            if self.r.prob(self.hostile):
                n = self.r.pick(HOSTILE)
            else:
                n = self.r.pick(PLAIN) + str(self.r.int(1, 99))
            if kind == "block":
                n = n[:1].upper() + n[1:] if self.r.prob(0.7) else n
            if n in self.used or n in RESERVED_WORDS:
                continue
            if kind in ("param", "let", "index", "tensor", "block") and (n in NOT_VALUE_NAMES or n in LAYERS):
                continue
            if kind in ("param", "let", "index") and n.startswith("__") and n.endswith("__"):
                continue  # the evaluator below cannot tell these apart; they are labels' business
            self.used.add(n)
            return n
        n = f"n{len(self.used)}"
        self.used.add(n)
        return n

    def labelled(self, item: str, p: float = 0.15) -> str:
        return f"{self.name()}: {item}" if self.r.prob(p) else item

    # expressions

    def value(self, text: str):
        """The value of an expression of the language (the subset these specs write) in this scope."""
        names = {k: f"v{i}" for i, k in enumerate(self.env)}
        py = {"true": "True", "false": "False", **names}
        code = _NAME.sub(lambda m: py.get(m.group(0), m.group(0)), text)
        env = {names[k]: v for k, v in self.env.items()}
        return eval(code, {"__builtins__": {}, **_EVAL_FUNCS}, env)  # our own expressions

    def ints_in_scope(self) -> list[str]:
        """Integer names whose value is fixed in this scope (not a loop index)."""
        return [k for k, v in self.env.items()
                if isinstance(v, int) and not isinstance(v, bool) and k not in self.indices]

    def iexpr(self, lo: int, hi: int) -> tuple[str, int]:
        """An integer expression with a value in [lo, hi], often over the names in scope."""
        names = self.ints_in_scope()
        if names and self.r.prob(0.45):
            n = self.r.pick(names)
            a = self.env[n]
            forms = [n, f"{n} + {self.r.int(0, 3)}", f"{n} * {self.r.int(1, 2)}", f"max({n}, {lo})",
                     f"{n} // {self.r.int(1, 2)}", f"int({n} * 1.5)", f"make_divisible({n} * 2, 4)",
                     f"({n} + 1) % 3 + {lo}", f"{n} - 1 if {n} > {lo} else {n}", f"round({n} / 2)"]
            text = self.r.pick(forms)
            v = self.value(text)
            if isinstance(v, int) and lo <= v <= hi:
                return text, v
            if isinstance(a, int) and lo <= a <= hi:
                return n, a
        v = self.r.int(lo, hi)
        if self.r.prob(0.08):
            return f"{v * 2} // 2", v
        if self.r.prob(0.05):
            return f"{v}.0", v  # an integral float where an integer is wanted
        return str(v), v

    def fexpr(self, lo: float, hi: float) -> str:
        """A float expression in [lo, hi]."""
        forms = [f"{lo + (hi - lo) * self.r.int(0, 10) / 10:g}", f"1 / {self.r.int(2, 9)}", "1e-3", "0.5 * 0.5"]
        indices = sorted(i for i in self.indices if i in self.env)
        if indices and lo <= 0 and hi >= 0.15 and self.r.prob(0.5):
            forms.append(f"0.05 * {self.r.pick(indices)}")
        for _ in range(4):
            text = self.r.pick(forms)
            if lo <= self.value(text) <= hi:
                return text
        return f"{lo:g}"

    def bexpr(self) -> tuple[str, bool]:
        """A condition whose value is known here."""
        names = self.ints_in_scope()
        forms = ["true", "false"]
        if names:
            n = self.r.pick(names)
            forms += [f"{n} > {self.r.int(0, 8)}", f"{n} % 2 == 0", f"not {n} == 3"]
        bools = [k for k, v in self.env.items() if isinstance(v, bool)]
        if bools:
            b = self.r.pick(bools)
            forms += [b, f"not {b}", f"{b} or false"]
        if "in.channels" in self.env:
            forms.append(f"in.channels != {self.r.int(1, 8)}")
        text = self.r.pick(forms)
        return text, bool(self.value(text))

    def pair(self, lo: int, hi: int, p_pair: float = 0.2) -> tuple[str, tuple[int, int]]:
        if self.r.prob(p_pair):
            a, b = self.r.int(lo, hi), self.r.int(lo, hi)
            return f"[{a}, {b}]", (a, b)
        text, v = self.iexpr(lo, hi)
        return text, (v, v)

    # layers on a feature map

    def conv_like(self, kind: str, x: Shape) -> tuple[str, Shape]:
        c, (h, w) = x.c, x.hw
        kt, k = self.pair(1, 5)
        dt, d = ("1", (1, 1)) if self.r.prob(0.8) else self.pair(1, 2, 0.3)
        st, s = ("1", (1, 1)) if self.r.prob(0.55) else self.pair(1, 3, 0.15)
        mode = self.r.int(0, 9)
        if mode < 5:
            pt, p = self.pair(0, 2, 0.15)
        elif mode < 7:
            pt, p = "same", ("same", "same")
        elif mode < 8:
            pt, p = "valid", ("valid", "valid")
        else:  # the classic "keeps the size" padding
            ph, pw = (d[0] * (k[0] - 1)) // 2, (d[1] * (k[1] - 1)) // 2
            pt, p = _pair_text((ph, pw)), (ph, pw)
        oh, ow = _conv_size(h, k[0], s[0], p[0], d[0]), _conv_size(w, k[1], s[1], p[1], d[1])
        if oh < 1 or ow < 1:
            pt, p, oh, ow = "same", ("same", "same"), -(-h // s[0]), -(-w // s[1])
        args = []
        if kind == "conv":
            groups = 1
            if self.r.prob(0.25):
                groups = self.r.pick([g for g in range(1, c + 1) if c % g == 0])
            ft, f = self.iexpr(1, 12)
            if groups > 1:
                f = groups * self.r.int(1, 3)
                ft = str(f)
            args.append(ft)
            cout = f
        elif kind == "sepconv":
            ft, cout = self.iexpr(1, 12)
            args.append(ft)
        else:
            cout = c
        args.append(kt)
        keywords = []
        if s != (1, 1) or self.r.prob(0.1):
            keywords.append(f"stride = {st}")
        if pt != "0" or self.r.prob(0.1):
            keywords.append(f"pad = {pt}")
        if d != (1, 1) or self.r.prob(0.05):
            keywords.append(f"dilation = {dt}")
        if kind == "conv" and groups > 1:
            keywords.append(f"groups = {groups}")
        if kind != "conv" and self.r.prob(0.3):
            m = self.r.int(1, 2)
            keywords.append(f"multiplier = {m}")
            if kind == "dwconv":
                cout = c * m
        if self.r.prob(0.3):
            keywords.append(f"bias = {self.bexpr()[0]}")
        if s != (1, 1) and d != (1, 1):
            self.tags.add("stride_and_dilation")
        if kind != "conv" and s[0] != s[1]:
            self.tags.add("depthwise_unequal_strides")
        return f"{kind}({', '.join(args + keywords)})", Shape((cout, oh, ow))

    def pool(self, kind: str, x: Shape) -> tuple[str, Shape]:
        if self.r.prob(0.12):
            return f"{kind}(global)", Shape((x.c, 1, 1))
        h, w = x.hw
        kt, k = self.pair(1, min(4, h, w) if min(h, w) >= 1 else 1)
        args = [kt]
        s = k
        if self.r.prob(0.5):
            st, s = self.pair(1, 3, 0.15)
            args.append(f"stride = {st}")
        mode = self.r.int(0, 9)
        p: tuple = (0, 0)
        if mode < 3:
            p = (self.r.int(0, k[0] // 2), self.r.int(0, k[1] // 2))
            args.append(f"pad = {_pair_text(p)}")
        elif mode < 4:
            p = ("same", "same")
            args.append("pad = same")
        elif mode < 5:
            p = ("valid", "valid")
            args.append("pad = valid")
        ceil = False
        if p[0] != "same" and self.r.prob(0.3):
            ceil = True
            args.append("ceil = true")
        if kind == "avgpool" and self.r.prob(0.25):
            args.append("count_pad = false")
        oh, ow = _pool_size(h, k[0], s[0], p[0], ceil), _pool_size(w, k[1], s[1], p[1], ceil)
        if oh < 1 or ow < 1:
            return f"{kind}(global)", Shape((x.c, 1, 1))
        return f"{kind}({', '.join(args)})", Shape((x.c, oh, ow))

    def map_layer(self, x: Shape) -> tuple[str, Shape]:
        """One layer that takes a feature map (any layer of the catalog but dense and flatten)."""
        c, (h, w) = x.c, x.hw
        kind = self.r.pick(["conv"] * 6 + ["dwconv"] * 2 + ["sepconv"] * 2 + ["maxpool", "avgpool"] * 2 + [
            "adaptive_avgpool", "bn", "batchnorm", "layernorm", "layerscale", "lrn", "dropout", "zeropad",
            "zeropad_channels", "crop", "rescale", "normalize", "act", "act", "act", "leaky_relu"])
        if kind in ("conv", "dwconv", "sepconv"):
            return self.conv_like(kind, x)
        if kind in ("maxpool", "avgpool"):
            return self.pool(kind, x)
        if kind == "adaptive_avgpool":
            a, b = self.r.int(1, h), self.r.int(1, w)
            text = _pair_text((a, b)) if self.r.prob(0.6) else f"[{a}, {b}]"
            return f"adaptive_avgpool({text})", Shape((c, a, b))
        if kind == "lrn":
            args = [] if self.r.prob(0.4) else [str(self.r.int(1, 5))]
            if self.r.prob(0.5):
                args.append(f"alpha = {self.fexpr(1e-4, 0.5)}")
            if self.r.prob(0.3):
                args.append(f"beta = {self.fexpr(0.5, 1.0)}")
            if self.r.prob(0.3):
                args.append(f"k = {self.fexpr(1.0, 2.0)}")
            return f"lrn({', '.join(args)})" if args else "lrn", x
        if kind == "zeropad":
            form = self.r.int(0, 2)
            if form == 0:
                p = self.r.int(0, 2)
                return f"zeropad({p})", Shape((c, h + 2 * p, w + 2 * p))
            if form == 1:
                a, b = self.r.int(0, 2), self.r.int(0, 2)
                return f"zeropad([{a}, {b}])", Shape((c, h + 2 * a, w + 2 * b))
            t, b, le, r = (self.r.int(0, 2) for _ in range(4))
            return f"zeropad([{t}, {b}, {le}, {r}])", Shape((c, h + t + b, w + le + r))
        if kind == "crop":
            if h < 3 or w < 3:
                return "identity", x
            form = self.r.int(0, 2)
            if form == 0:
                q = self.r.int(0, min(h, w) // 3)
                return f"crop({q})", Shape((c, h - 2 * q, w - 2 * q))
            if form == 1:
                a, b = self.r.int(0, h // 3), self.r.int(0, w // 3)
                return f"crop([{a}, {b}])", Shape((c, h - 2 * a, w - 2 * b))
            t, b = self.r.int(0, h // 3), self.r.int(0, h // 3)
            le, r = self.r.int(0, w // 3), self.r.int(0, w // 3)
            return f"crop([{t}, {b}, {le}, {r}])", Shape((c, h - t - b, w - le - r))
        return self.any_layer(kind, x)

    def any_layer(self, kind: str, x: Shape) -> tuple[str, Shape]:
        """Layers that take a feature map or a flat tensor."""
        c = x.c
        if kind in ("bn", "batchnorm"):
            args = []
            if self.r.prob(0.3):
                args.append(f"eps = {self.fexpr(1e-5, 1e-2)}")
            if self.r.prob(0.2):
                args.append(f"momentum = {self.fexpr(0.01, 0.5)}")
            if self.r.prob(0.25):
                args.append(f"gamma = {self.bexpr()[0]}")
            if self.r.prob(0.25):
                args.append(f"beta = {self.bexpr()[0]}")
            return (f"{kind}({', '.join(args)})" if args else kind), x
        if kind == "layernorm":
            return ("layernorm" if self.r.prob(0.6) else f"layernorm(eps = {self.fexpr(1e-6, 1e-3)})"), x
        if kind == "layerscale":
            self.flat_use(x)
            return self.r.pick(["layerscale", "layerscale(0.5)", "layerscale(init = 1e-2)"]), x
        if kind == "dropout":
            return self.r.pick(["dropout", "dropout(0.1)", f"dropout(rate = {self.fexpr(0.0, 0.9)})"]), x
        if kind == "zeropad_channels":
            self.flat_use(x)
            if self.r.prob(0.5):
                p = self.r.int(0, 2)
                return f"zeropad_channels({p})", x.with_c(c + 2 * p)
            a, b = self.r.int(0, 3), self.r.int(0, 3)
            return f"zeropad_channels([{a}, {b}])", x.with_c(c + a + b)
        if kind == "rescale":
            off = f", offset = {self.fexpr(-1.0, 1.0)}" if self.r.prob(0.5) else ""
            return f"rescale({self.fexpr(0.1, 2.0)}{off})", x
        if kind == "normalize":
            if c <= 6 and self.r.prob(0.5):
                self.flat_use(x)
                mean = ", ".join(f"{self.r.int(-5, 5) / 10:g}" for _ in range(c))
                std = ", ".join(f"{self.r.int(1, 9) / 4:g}" for _ in range(c))
                return f"normalize([{mean}], std = [{std}])", x
            return f"normalize({self.fexpr(-1.0, 1.0)}, {self.fexpr(0.5, 2.0)})", x
        if kind == "leaky_relu":
            if self.r.prob(0.15):
                self.tags.add("negative_leaky_slope")
                return "leaky_relu(slope = -0.1)", x
            return self.r.pick(["leaky_relu", "leaky_relu(0.2)", f"leaky_relu({self.fexpr(0.0, 0.5)})"]), x
        act = self.r.pick(["relu", "relu6", "tanh", "sigmoid", "softmax", "silu", "swish", "hardswish",
                           "hardsigmoid", "gelu", "identity", "relu()"])
        return act, x

    def flat_layer(self, x: Shape) -> tuple[str, Shape]:
        kind = self.r.pick(["dense"] * 4 + ["linear", "bn", "layernorm", "layerscale", "dropout", "rescale",
                                            "normalize", "zeropad_channels", "act", "act", "leaky_relu"])
        if kind in ("dense", "linear"):
            ut, u = self.iexpr(1, 24)
            bias = f", bias = {self.bexpr()[0]}" if self.r.prob(0.2) else ""
            self.unordered_flat = False
            return f"{kind}({ut}{bias})", Shape((u,))
        return self.any_layer(kind, x)

    def flat_use(self, x: Shape) -> None:
        """A per-feature use of a flat tensor: wrong in Keras while its features are in another order."""
        if x.flat and self.unordered_flat:
            self.tags.add("flatten_order")

    # chains

    def chain(self, x: Shape, n: int, depth: int) -> tuple[list[str], Shape]:
        items = []
        for _ in range(n):
            item, x = self.item(x, depth)
            items.append(item)
        return items, x

    def item(self, x: Shape, depth: int, bare: bool = False) -> tuple[str, Shape]:
        """One item (a layer, block call or composite); labelled sometimes unless bare."""
        self.budget -= 1
        room = depth < 3 and self.budget > 0
        roll = self.r.int(0, 99)
        label = (lambda text: text) if bare else self.labelled
        if x.flat:
            if room and roll < 12:
                return self.composite(x, depth, label)
            item, out = self.flat_layer(x)
            return label(item), out
        if room and roll < 30:
            return self.composite(x, depth, label)
        if roll < 33 and self.block_depth < 2 and self.budget > 1:
            item, out = self.block_call(x)
            return label(item), out
        item, out = self.map_layer(x)
        return label(item), out

    def fix(self, x: Shape, to: Shape) -> list[str]:
        """Layers that take shape x to shape `to` (same rank)."""
        items = []
        if x.flat:
            if x.c != to.c:
                self.unordered_flat = False
                items.append(f"dense({to.c})")
            return items
        (h, w), (th, tw) = x.hw, to.hw
        if (h, w) != (th, tw):
            if h >= th and w >= tw:
                if self.r.prob(0.5):
                    items.append(f"adaptive_avgpool({_pair_text((th, tw))})")
                else:
                    t, le = (h - th) // 2, (w - tw) // 2
                    items.append(f"crop([{t}, {h - th - t}, {le}, {w - tw - le}])")
            elif h <= th and w <= tw:
                items.append(f"zeropad([0, {th - h}, {tw - w}, 0])")
            else:
                items.append(f"adaptive_avgpool({_pair_text((min(h, th), min(w, tw)))})")
                items.append(f"zeropad([0, {th - min(h, th)}, 0, {tw - min(w, tw)}])")
        if x.c != to.c:
            if x.c < to.c and self.r.prob(0.3):
                items.append(f"zeropad_channels([0, {to.c - x.c}])")
            else:
                items.append(self.r.pick([f"conv({to.c}, 1)", f"conv({to.c}, 1, bias = false) bn"]))
        return items

    def body(self, items: list[str]) -> str:
        if not items:
            return "{ }" if self.r.prob(0.5) else "{\n}"
        if len(items) <= 3 and all("\n" not in i for i in items) and self.r.prob(0.4):
            return "{ " + " ".join(items) + " }"
        lines = []
        for item in items:
            lines.extend("    " + line for line in item.split("\n"))
        return "{\n" + "\n".join(lines) + "\n}"

    def preserving(self, x: Shape, depth: int, n: int | None = None) -> list[str]:
        """A chain that gives back shape x."""
        items, out = self.chain(x, self.r.int(1, 3) if n is None else n, depth + 1)
        if out.flat != x.flat:  # cannot happen: bodies draw no flatten
            raise AssertionError((x, out))
        return items + self.fix(out, x)

    def composite(self, x: Shape, depth: int, label) -> tuple[str, Shape]:
        kinds = ["residual", "residual", "group", "repeat", "for", "scale", "if"]
        if not x.flat:
            kinds += ["concat", "concat"]
        kind = self.r.pick(kinds)
        if kind == "residual":
            if x.flat:
                self.flat_use(x)
            args = ""
            if self.r.prob(0.2):
                args = self.r.pick(["(drop_path = 0.1)", "(0.2)", "(drop_path = 0)"])
            items, out = self.chain(x, self.r.int(1, 3), depth + 1)
            shortcut = self.r.int(0, 2)
            if shortcut == 0 or x.flat:
                items += self.fix(out, x)
                return label(f"residual{args} {self.body(items)}"), x
            if shortcut == 1:
                sc = self.fix(x, out) or ["identity"]
                return label(f"residual{args} {self.body(items)} shortcut {self.body(sc)}"), out
            cond, value = self.bexpr()
            if not value:
                items += self.fix(out, x)
                out = x
            sc = self.fix(x, out) or [self.r.pick(["identity", "bn", f"conv({x.c}, 1)"])]
            if sc == ["identity"]:
                self.tags.add("empty_conditional_shortcut")
            return label(f"residual{args} {self.body(items)} shortcut if {cond} {self.body(sc)}"), out
        if kind == "group":
            items, out = self.chain(x, self.r.int(1, 3), depth + 1)
            return label(self.body(items)), out
        if kind == "repeat":
            n = self.r.int(0, 3)
            if self.r.prob(0.5):  # one item repeated
                item, out = self.item(x, depth + 1, bare=True)
                if out.dims != x.dims:
                    item = self.body([item, *self.fix(out, x)])
                elif not _SIMPLE_CALL.fullmatch(item):
                    item = self.body([item])
                return label(f"{item} * {n}"), x
            return label(f"{self.body(self.preserving(x, depth))} * {n}"), x
        if kind == "for":
            index = self.name("index")
            n = self.r.int(0, 3)
            saved = dict(self.env)
            self.env[index] = 0  # the body's shapes may not depend on it
            self.indices.add(index)
            lo = f"{index} * 0 + " if self.r.prob(0.3) else ""
            items = self.preserving(x, depth)
            if self.r.prob(0.7):
                items.append(self.r.pick([f"dropout({lo}0.1 * {index})", f"leaky_relu(0.1 * ({index} + 1))",
                                          f"rescale(1 + {index})"]))
            self.env = saved
            self.indices.discard(index)
            return f"for {index} in range({n}) {self.body(items)}", x
        if kind == "scale":
            self.flat_use(x)
            if not x.flat and self.r.prob(0.5):
                r = max(1, x.c // 2)
                items = [self.r.pick(["avgpool(global)", "adaptive_avgpool(1)"]), f"conv({r}, 1)", "relu",
                         f"conv({x.c}, 1)", self.r.pick(["sigmoid", "hardsigmoid"])]
            else:
                items = self.preserving(x, depth) + ["sigmoid"]
            return label(f"scale {self.body(items)}"), x
        if kind == "if":
            cond, value = self.bexpr()
            taken, out = self.chain(x, self.r.int(0, 2), depth + 1)
            saved = self.tags.copy()
            other, _ = self.chain(x, self.r.int(0, 2), depth + 1)  # never expanded
            self.tags = saved
            then, otherwise = (taken, other) if value else (other, taken)
            text = f"if {cond} {self.body(then)}"
            if otherwise or self.r.prob(0.5):
                if self.r.prob(0.3):
                    c2, v2 = self.bexpr()
                    # `else if c2 { A } else { B }`: the taken side of the else is where it must be
                    inner = (otherwise, []) if v2 else ([], otherwise)
                    text += f" else if {c2} {self.body(inner[0])} else {self.body(inner[1])}"
                else:
                    text += f" else {self.body(otherwise)}"
            elif not value:
                out = x  # no else: a false condition passes the tensor on
            return label(text), out
        # concat of branches that keep one size
        branches, couts = [], []
        target = None
        for _ in range(self.r.int(2, 3)):
            items, out = self.chain(x, self.r.int(1, 2), depth + 1)
            if target is None:
                target = out
            items += self.fix(out, Shape((out.c, *target.hw)))
            branches.append(self.body(items))
            couts.append(out.c)
        lines = "\n".join(f"    branch {b}".replace("\n", "\n    ") for b in branches)
        return label(f"concat {{\n{lines}\n}}"), Shape((sum(couts), *target.hw))

    # blocks

    def block_call(self, x: Shape) -> tuple[str, Shape]:
        """A call of a block defined for this input (a new one, or one drawn before)."""
        reuse = [b for b in self.blocks if b.in_shape.dims == x.dims]
        if reuse and self.r.prob(0.3):
            b = self.r.pick(reuse)
            if b.out_shape.dims == x.dims and self.r.prob(0.5):
                return f"{b.call} * {self.r.int(0, 2)}", b.out_shape
            return b.call, b.out_shape
        name = self.name("block")
        params, call_args = [], []
        saved_env, saved_flat = self.env, self.unordered_flat
        env = {"in.channels": x.c}
        if not x.flat:
            env["in.height"], env["in.width"] = x.hw
        positional = True
        for i in range(self.r.int(0, 3)):
            p = self.name("param")
            value = self.r.int(1, 12) if i or self.r.prob(0.8) else self.r.pick([True, False])
            has_default = self.r.prob(0.4) or (params and "=" in params[-1])
            literal = ("true" if value else "false") if isinstance(value, bool) else str(value)
            if has_default:
                default = literal if self.r.prob(0.6) else str(self.r.int(1, 9))
                params.append(f"{p} = {default}")
                if default == literal and self.r.prob(0.5):
                    positional = False  # left out: the default is the value
                elif positional and self.r.prob(0.5):
                    call_args.append(literal)
                else:
                    positional = False
                    call_args.append(f"{p} = {literal}")
            else:
                params.append(p)
                call_args.append(literal if positional else f"{p} = {literal}")
            env[p] = value
        self.env = env
        self.block_depth += 1
        lines = []
        if self.r.prob(0.3):
            lines.append(f"assert in.channels == {x.c}" + (', "channels"' if self.r.prob(0.5) else ""))
        if self.r.prob(0.3):
            let = self.name("let")
            text, v = self.iexpr(1, 12)
            lines.append(f"let {let} = {text}")
            env[let] = v
        if not x.flat and self.r.prob(0.15):
            lines.append(f"conv(in.channels, 3, pad = 1{', bias = false' if self.r.prob(0.5) else ''})")
        y = x
        body_lines, y = self.statements(y, self.r.int(1, 3))
        lines += body_lines
        self.block_depth -= 1
        self.env, self.unordered_flat = saved_env, saved_flat
        body = "\n".join("    " + line for text in lines for line in text.split("\n"))
        self.block_texts.append(f"block {name}({', '.join(params)}) {{\n{body}\n}}")
        call = f"{name}({', '.join(call_args)})" if call_args or self.r.prob(0.5) else name
        self.blocks.append(Block(name, x, y, call))
        return call, y

    # statements: the lines of a block or network body

    def statements(self, x: Shape, n: int) -> tuple[list[str], Shape]:
        lines = []
        for _ in range(n):
            roll = self.r.int(0, 99)
            if roll < 12 and self.budget > 2:
                more, x = self.named_tensors(x)
                lines += more
                continue
            if roll < 17 and self.ints_in_scope():
                let = self.name("let")
                text, v = self.iexpr(1, 12)
                lines.append(f"let {let} = {text}")
                self.env[let] = v
                continue
            items, x = self.chain(x, self.r.int(1, 3), 0)
            if self.r.prob(0.5):
                lines.append(" ".join(items) if all("\n" not in i for i in items) else "\n".join(items))
            else:
                lines += items
        return lines, x

    def named_tensors(self, x: Shape) -> tuple[list[str], Shape]:
        """`a = chain`, `b = a chain` and their `add`, `concat`, or a block with a tensor parameter; or `a`
        split into named parts (`p, q = a split(2)`, `p, q, r = a split([1, 4, 2])`) joined again in
        another order."""
        a = self.name("tensor")
        first, xa = self.chain(x, self.r.int(1, 2), 1)
        if xa.flat:
            return [" ".join(first)], xa
        b = self.name("tensor")
        kind = self.r.pick(["add", "concat", "tensor_block", "split"])
        if kind == "split":
            return self.split(a, first, xa)
        second, xb = self.chain(xa, self.r.int(1, 2), 1)
        start = f"{a} " if self.r.prob(0.6) else ""  # a chain continues from the line before anyway
        if kind == "add":
            second += self.fix(xb, xa)
            lines = [f"{a} = {' '.join(first)}", f"{b} = {start}{' '.join(second)}"]
            more = " relu" if self.r.prob(0.3) else ""
            lines.append(f"{self.r.pick([f'add({a}, {b})', f'add({b}, {a})'])}{more}")
            return lines, xa
        second += self.fix(xb, Shape((xb.c, *xa.hw)))
        if kind == "tensor_block":  # the block takes the second line's result: it needs no name
            lines = [f"{a} = {' '.join(first)}", f"{start}{' '.join(second)}"]
        else:
            lines = [f"{a} = {' '.join(first)}", f"{b} = {start}{' '.join(second)}"]
        if kind == "concat":
            lines.append(f"concat({a}, {b})")
            return lines, Shape((xa.c + xb.c, *xa.hw))
        # a block that takes `prev` as its second input, of the same height and width
        name = self.name("block")
        prev = self.name("tensor")
        t1, t2 = self.name("tensor"), self.name("tensor")
        filters = self.r.int(1, 8)
        join = self.r.pick(["add", "concat", "concat_in"])
        body = [f"assert {prev}.height == in.height and {prev}.width == in.width"]
        if join == "concat_in":
            body.append(f"concat(in, {prev})")
            out = Shape((xb.c + xa.c, *xa.hw))
        else:
            body.append(f"{t1} = in conv(c, 1)")
            body.append(f"{t2} = {prev} {self.r.pick(['conv(c, 1)', 'conv(c, 3, pad = 1) bn', 'sepconv(c, 3, pad = same)'])}")
            body.append(f"{join}({t1}, {t2})" + (" relu" if self.r.prob(0.5) else ""))
            out = Shape((filters if join == "add" else 2 * filters, *xa.hw))
        text = "\n".join("    " + line for line in body)
        self.block_texts.append(f"block {name}(c, {prev}: tensor, extra = 1) {{\n{text}\n}}")
        lines.append(f"{name}({filters}, {prev} = {a})" if self.r.prob(0.5) else f"{name}(c = {filters}, {prev} = {a})")
        return lines, out

    def split(self, a: str, first: list[str], x: Shape) -> tuple[list[str], Shape]:
        c = x.c
        if c < 2:
            return [" ".join(first)], x
        equal = [n for n in (2, 3) if c % n == 0]
        if equal and self.r.prob(0.5):
            n = self.r.pick(equal)
            parts = f"split({n})"
        else:
            n = self.r.int(2, min(3, c))
            cuts = sorted({self.r.int(1, c - 1) for _ in range(n - 1)})
            sizes = [b - a_ for a_, b in zip([0, *cuts], [*cuts, c])]
            n = len(sizes)
            parts = f"split([{', '.join(map(str, sizes))}])"
        names = [self.name("tensor") for _ in range(n)]
        order = names[1:] + names[:1] if self.r.prob(0.7) else names[::-1]
        return [f"{a} = {' '.join(first)}", f"{', '.join(names)} = {a} {parts}", f"concat({', '.join(order)})"], x

    # the network

    def spec(self) -> Spec:
        net = self.name("block")
        flat_input = self.r.prob(0.1)
        params, self.env = [], {}
        for _ in range(self.r.int(0, 2)):
            p = self.name("param")
            value = self.r.pick([self.r.int(1, 12), True, False])
            literal = ("true" if value else "false") if isinstance(value, bool) else str(value)
            params.append(f"{p} = {literal}")
            self.env[p] = value
        if flat_input:
            x = Shape((self.r.int(1, 40),))
            header = f"input [{x.c}]"
        else:
            x = Shape((self.r.int(1, 4), self.r.int(8, 40), self.r.int(8, 40)))
            header = f"input [{x.c}, {x.dims[1]}, {x.dims[2]}]"
        self.env["in.channels"] = x.c
        lines = [header]
        out_lines, y = self.statements(x, self.r.int(1, 4))
        lines += out_lines
        outputs = []
        if self.r.prob(0.3):  # a side head (maybe for training only), before the end
            saved = self.unordered_flat
            head, _ = self.head(y)
            self.unordered_flat = saved
            kind = self.r.pick(["output", "auxiliary output"])
            o = self.name("output")
            outputs.append(o)
            lines.append(f"{kind} {o} = {' '.join(head)}")
            more, y = self.statements(y, 1)
            lines += more
        if self.r.prob(0.5):
            head, y = self.head(y, dense=self.r.prob(0.85))
            lines.append(" ".join(head))
            if self.r.prob(0.2):
                more, y = self.statements(y, 1)
                lines += more
        if self.unordered_flat:
            self.tags.add("flatten_order")  # the network's output is the flattened tensor itself
        if outputs or self.r.prob(0.3):
            lines.append(f"output {self.name('output')}")
        params_text = f"({', '.join(params)})" if params or self.r.prob(0.3) else ""
        body = "\n".join("    " + line for text in lines for line in text.split("\n"))
        text = "\n\n".join([*self.block_texts, f"network {net}{params_text} {{\n{body}\n}}"]) + "\n"
        return Spec(text, self.tags, x.dims)

    def head(self, x: Shape, dense: bool = True) -> tuple[list[str], Shape]:
        """flatten + dense layers: a classifier head."""
        items = []
        if not x.flat:
            if self.r.prob(0.5):
                items.append(self.r.pick(["avgpool(global)", "maxpool(global)", "adaptive_avgpool(2)"]))
                x = Shape((x.c, 1, 1)) if "global" in items[-1] else Shape((x.c, *(min(2, s) for s in x.hw)))
                if items[-1] == "adaptive_avgpool(2)" and min(x.hw) < 2:
                    items[-1] = "avgpool(global)"
                    x = Shape((x.c, 1, 1))
            items.append("flatten")
            self.unordered_flat = x.hw != (1, 1)
            x = Shape((x.c * x.hw[0] * x.hw[1],))
        for _ in range(self.r.int(0, 2)):
            item, x = self.flat_layer(x)
            items.append(item)
        if dense:
            ut, u = self.iexpr(1, 12)
            items.append(f"dense({ut})")
            self.unordered_flat = False
            x = Shape((u,))
        return items, x


def random_spec(seed: int, **options) -> Spec:
    return Generator(RandomSource(seed), **options).spec()
