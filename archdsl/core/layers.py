"""The layer catalog: one entry per layer type, with everything the compiler knows of it.

An entry (LayerType) holds the layer's signature (its parameters, their argument kinds, defaults
and documentation), its shape rule (output shape, parameters, MACs and the window that the receptive
field grows by), its output channels as a symbolic rule over the input's channels and the arguments
(which generated code writes as an expression), its one-line description for drawings, and its
category. Elaboration binds calls against the signatures, shape inference runs the rules, and each
backend registers its emitter against the entry's name (archdsl/backends/*/layers.py: a test fails
where one is missing). No framework is imported. docs/internals.md walks through adding a layer.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction

from ..language.limits import MAX_INT
from .graph import Shape, Symbol, Value

REQUIRED = object()

SAME = Symbol("same")
VALID = Symbol("valid")
GLOBAL = Symbol("global")
NEAREST = Symbol("nearest")
BILINEAR = Symbol("bilinear")
CAFFE = Symbol("caffe")  # the three modes of keras.applications' preprocess_input
TF = Symbol("tf")
TORCH = Symbol("torch")
SYMBOLS = {s.name: s for s in (SAME, VALID, GLOBAL, NEAREST, BILINEAR, CAFFE, TF, TORCH)}


class ArgError(Exception):
    """A bad argument value; shape inference turns it into a located ArchError."""

    def __init__(self, message: str, arg: str | None = None) -> None:
        super().__init__(message)
        self.arg = arg


# Argument kinds: each checks a value and returns its normal form -------------------------------

def _is_int(v: Value) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _as_int(v: Value) -> int | None:
    if _is_int(v):
        return v  # type: ignore[return-value]
    if isinstance(v, float) and v.is_integer():
        if abs(v) > MAX_INT:
            raise ArgError(f"expects an integer of at most {MAX_INT:,} (2**63 - 1), got {describe(v)}")
        return int(v)
    return None


def describe(v: Value) -> str:
    """A value as the spec language writes it (true/false, [a, b])."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, tuple):
        return "[" + ", ".join(describe(x) for x in v) + "]"
    if v is None:
        return "nothing"
    return str(v)


def k_int(v: Value, minimum: int = 1) -> int:
    i = _as_int(v)
    if i is None:
        raise ArgError(f"expects an integer, got {describe(v)}")
    if i < minimum:
        raise ArgError(f"must be at least {minimum}, got {i}")
    return i


def k_int0(v: Value) -> int:
    return k_int(v, 0)


def k_float(v: Value) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ArgError(f"expects a number, got {describe(v)}")
    return float(v)


def k_rate(v: Value) -> float:
    f = k_float(v)
    if not 0.0 <= f < 1.0:
        raise ArgError(f"must be in [0, 1), got {describe(v)}")
    return f


def k_bool(v: Value) -> bool:
    if not isinstance(v, bool):
        raise ArgError(f"expects true or false, got {describe(v)}")
    return v


def _pair(v: Value, minimum: int) -> tuple[int, int]:
    if isinstance(v, tuple):
        if len(v) != 2:
            raise ArgError(f"expects an integer or a pair [height, width], got {describe(v)}")
        return (k_int(v[0], minimum), k_int(v[1], minimum))
    i = _as_int(v)
    if i is None:
        raise ArgError(f"expects an integer or a pair [height, width], got {describe(v)}")
    if i < minimum:
        raise ArgError(f"must be at least {minimum}, got {i}")
    return (i, i)


def k_int2(v: Value) -> tuple[int, int]:
    return _pair(v, 1)


def k_int2_0(v: Value) -> tuple[int, int]:
    """A size of at least 0 for height and width: an integer or [height, width] (no same/valid)."""
    return _pair(v, 0)


def k_stride(v: Value) -> tuple[int, int] | None:
    return None if v is None else _pair(v, 1)


def k_pad(v: Value) -> tuple[int, int] | Symbol:
    if isinstance(v, Symbol):
        if v not in (SAME, VALID):
            raise ArgError(f"expects an integer, a pair, same or valid, got {v}")
        return v
    return _pair(v, 0)


def k_pool(v: Value) -> tuple[int, int] | Symbol:
    if isinstance(v, Symbol):
        if v != GLOBAL:
            raise ArgError(f"expects a window size or global, got {v}")
        return v
    return _pair(v, 1)


def k_zpad(v: Value) -> tuple[int, int, int, int]:
    """Zero padding as (top, bottom, left, right); written as p, [ph, pw] or [top, bottom, left, right]."""
    if isinstance(v, tuple) and len(v) == 4:
        t, b, le, r = (k_int0(x) for x in v)
        return (t, b, le, r)
    ph, pw = _pair(v, 0)
    return (ph, ph, pw, pw)


def k_parts(v: Value) -> int | tuple[int, ...]:
    """A split's parts: their number (equal parts), or a list of their sizes."""
    if isinstance(v, tuple):
        if not v:
            raise ArgError("expects a number of parts or a list of sizes, got []")
        return tuple(k_int(x) for x in v)
    return k_int(v)


# Layer types ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class P:
    name: str
    kind: Callable[[Value], object]
    default: object = REQUIRED
    doc: str = ""

    def normal(self, value: Value) -> object:
        """A value of this parameter in its normal form (ArgError if it does not fit); an argument left
        out (None) stays None where the parameter has no default."""
        return self.kind(value) if value is not None or self.default is not None else None


@dataclass
class Result:
    shape: Shape
    params: int = 0
    macs: int = 0
    # (effective kernel, stride) along height, for the receptive field; a transposed convolution's
    # stride is a Fraction (1 / its stride: it spreads each input pixel over `stride` output pixels)
    window: tuple[int, int | Fraction] | None = None


# Output channels as a rule: what a layer makes of its input's channels, in terms of its arguments.
# Shape inference gives the number for each use; the backends write the rule as an expression of
# the generated code's own variables, so one class or function serves every use of a block.

class Chan:
    """A layer's output channels as an expression: of its input's channels (IN), its arguments (Arg),
    the input's height and width (InSize), sums and products of those."""

    def __add__(self, other: Chan) -> Chan:
        return Sum((*(self.terms if isinstance(self, Sum) else (self,)), other))

    def __mul__(self, other: Chan) -> Chan:
        return Product((*(self.factors if isinstance(self, Product) else (self,)), other))


@dataclass(frozen=True)
class InChannels(Chan):
    """The input's channels (a flat input's features)."""


@dataclass(frozen=True)
class Arg(Chan):
    """An argument's value; with an index, one element of the argument's normal form (a channel padding's
    [before, after])."""

    name: str
    index: int | None = None


@dataclass(frozen=True)
class InSize(Chan):
    """The input's height or width (1 for a flat input)."""

    attr: str


@dataclass(frozen=True)
class Sum(Chan):
    terms: tuple[Chan, ...]


@dataclass(frozen=True)
class Product(Chan):
    factors: tuple[Chan, ...]


@dataclass(frozen=True)
class SplitPart(Chan):
    """One part of a split (`a, b = x split(parts)`): the input's channels over `parts` for equal parts,
    the part's own size for a list of sizes; `index` says which part."""


IN = InChannels()


def channels_of(rule: Chan, args: dict, x: Shape) -> int | None:
    """A rule's number for one use: the layer's arguments (normal forms) and its input shape."""
    if isinstance(rule, InChannels):
        return x.channels if x.rank == 3 else x.dims[0]
    if isinstance(rule, Arg):
        value = args[rule.name]
        return value if rule.index is None else value[rule.index]
    if isinstance(rule, InSize):
        return getattr(x, rule.attr) if x.rank == 3 else 1
    if isinstance(rule, SplitPart):
        return split_sizes(args["parts"], rule_channels(x))[args["index"]]
    parts = [channels_of(r, args, x) for r in (rule.terms if isinstance(rule, Sum) else rule.factors)]  # type: ignore[attr-defined]
    if None in parts:
        return None
    return sum(parts) if isinstance(rule, Sum) else math.prod(parts)  # type: ignore[arg-type]


@dataclass(frozen=True)
class LayerType:
    name: str
    params: tuple[P, ...]
    infer: Callable[[dict, Shape], Result]
    category: str
    doc: str
    weights: bool = False  # has trainable parameters
    # running statistics kept per input channel (a batch norm's mean and variance: buffers in PyTorch,
    # non-trainable weights that Keras counts among its parameters)
    statistics: int = field(default=0, kw_only=True)
    # how many of its parameters are biases (additive terms: a convolution's or dense layer's bias, a
    # norm's shift, which PyTorch calls bias too), from its arguments' normal forms and its input shape;
    # the rest of its parameters are weights. None: no biases
    biases: Callable[[dict, Shape], int] | None = field(default=None, kw_only=True)
    channels: Chan = field(kw_only=True)  # the output channels (features), IN where the layer keeps them
    # the layer in a few characters for drawings, as a lecture slide writes it (`conv 7x7/2, 64`), from
    # its arguments' normal forms; the type's name where None
    describe: Callable[[dict], str] | None = None

    def description(self, args: dict) -> str:
        return self.describe(args) if self.describe is not None else self.name

    def bias_count(self, args: dict, x: Shape) -> int:
        """The biases among a use's parameters (0 for a layer without them)."""
        return self.biases(args, x) if self.biases is not None else 0


# Descriptions for drawings ------------------------------------------------------------------------

def _pair_text(v: object) -> str:
    if isinstance(v, tuple):
        return "x".join(str(x) for x in v)
    return f"{v}x{v}"


def _stride_text(v: object) -> str:
    if v is None or v == (1, 1):
        return ""
    if isinstance(v, tuple) and len(v) == 2 and v[0] == v[1]:
        return f"/{v[0]}"
    return f"/{_pair_text(v)}"


def _describe_conv(kind: str) -> Callable[[dict], str]:
    def describe(a: dict) -> str:
        text = f"{kind} {_pair_text(a['kernel'])}{_stride_text(a['stride'])}, {a['filters']}"
        if a.get("groups", 1) != 1:
            text += f", groups {a['groups']}"
        if a.get("dilation", (1, 1)) != (1, 1):
            text += f", dilation {_pair_text(a['dilation'])}"
        return text
    return describe


def _describe_dwconv(a: dict) -> str:
    text = f"dwconv {_pair_text(a['kernel'])}{_stride_text(a['stride'])}"
    return text + (f", x{a['multiplier']}" if a.get("multiplier", 1) != 1 else "")


def _describe_pool(kind: str) -> Callable[[dict], str]:
    def describe(a: dict) -> str:
        if isinstance(a["kernel"], Symbol):
            return f"{kind} {a['kernel']}"
        stride = a["stride"] if a["stride"] is not None else a["kernel"]
        return f"{kind} {_pair_text(a['kernel'])}{_stride_text(stride)}"
    return describe


def _need_map(shape: Shape, what: str) -> None:
    if shape.rank != 3:
        raise ArgError(f"{what} needs a feature map [channels, height, width], got {shape}; "
                       "it cannot follow flatten or dense")


def out_size(n: int | None, k: int, s: int, p: int, d: int = 1, ceil: bool = False) -> int | None:
    """Output length of a convolution or pooling window over n (PyTorch's formula)."""
    if n is None:
        return None
    eff = d * (k - 1) + 1
    span = n + 2 * p - eff
    if ceil:
        out = -(-span // s) + 1
        if (out - 1) * s >= n + p:  # the last window must start inside the input or left padding
            out -= 1
    else:
        out = span // s + 1
    return out


def same_pads(n: int, k: int, s: int, d: int = 1) -> tuple[int, int]:
    """TensorFlow's `same` padding along one axis: (before, after); the odd pixel goes after."""
    eff = d * (k - 1) + 1
    out = -(-n // s)
    total = max((out - 1) * s + eff - n, 0)
    return total // 2, total - total // 2


def _spatial(shape: Shape, kernel, stride, pad, dilation, ceil: bool = False) -> tuple:
    (kh, kw), (sh, sw), (dh, dw) = kernel, stride, dilation
    sizes = []
    for n, k, s, d, axis in ((shape.height, kh, sh, dh, 0), (shape.width, kw, sw, dw, 1)):
        if pad == SAME:
            size = None if n is None else -(-n // s)
        else:
            p = 0 if pad == VALID else pad[axis]
            size = out_size(n, k, s, p, d, ceil)
        if size is not None and size < 1:
            raise ArgError(f"the output would be {size} pixels {('high', 'wide')[axis]}: "
                           f"window {d * (k - 1) + 1} over an input of {n}"
                           f"{'' if pad in (SAME, VALID) else f' padded by {pad[axis]}'}")
        sizes.append(size)
    return tuple(sizes)


def _conv(a: dict, x: Shape) -> Result:
    _need_map(x, "conv")
    cin, groups = x.channels, a["groups"]
    if cin % groups or a["filters"] % groups:
        raise ArgError(f"groups={groups} must divide both the input channels ({cin}) and the "
                       f"filters ({a['filters']})", "groups")
    h, w = _spatial(x, a["kernel"], a["stride"], a["pad"], a["dilation"])
    kh, kw = a["kernel"]
    weights = a["filters"] * (cin // groups) * kh * kw
    out = Shape((a["filters"], h, w))
    return Result(out, weights + (a["filters"] if a["bias"] else 0), weights * (h or 0) * (w or 0),
                  (a["dilation"][0] * (kh - 1) + 1, a["stride"][0]))


def _dwconv(a: dict, x: Shape) -> Result:
    _need_map(x, "dwconv")
    c = x.channels * a["multiplier"]
    h, w = _spatial(x, a["kernel"], a["stride"], a["pad"], a["dilation"])
    kh, kw = a["kernel"]
    weights = c * kh * kw
    return Result(Shape((c, h, w)), weights + (c if a["bias"] else 0), weights * (h or 0) * (w or 0),
                  (a["dilation"][0] * (kh - 1) + 1, a["stride"][0]))


def _sepconv(a: dict, x: Shape) -> Result:
    _need_map(x, "sepconv")
    mid = x.channels * a["multiplier"]
    h, w = _spatial(x, a["kernel"], a["stride"], a["pad"], a["dilation"])
    kh, kw = a["kernel"]
    dw, pw = mid * kh * kw, mid * a["filters"]
    hw = (h or 0) * (w or 0)
    return Result(Shape((a["filters"], h, w)), dw + pw + (a["filters"] if a["bias"] else 0),
                  (dw + pw) * hw, (a["dilation"][0] * (kh - 1) + 1, a["stride"][0]))


def _deconv(a: dict, x: Shape) -> Result:
    """A transposed convolution, PyTorch's ConvTranspose2d: each input pixel scatters the whole
    kernel into the output at `stride` pixels apart, the result cropped by `pad` on each side and
    grown by `output_pad` at the bottom and right."""
    _need_map(x, "deconv")
    cin, groups, filters = x.channels, a["groups"], a["filters"]
    if cin % groups or filters % groups:
        raise ArgError(f"groups={groups} must divide both the input channels ({cin}) and the "
                       f"filters ({filters})", "groups")
    sizes = []
    for axis, n in enumerate((x.height, x.width)):
        k, s, p, op, d = (a[name][axis] for name in ("kernel", "stride", "pad", "output_pad", "dilation"))
        if op >= s and op >= d:
            raise ArgError(f"output_pad {op} must be smaller than the stride ({s}) or the dilation ({d}) "
                           f"along the {('height', 'width')[axis]}, as PyTorch requires", "output_pad")
        size = None if n is None else (n - 1) * s - 2 * p + d * (k - 1) + op + 1
        if size is not None and size < 1:
            raise ArgError(f"the output would be {size} pixels {('high', 'wide')[axis]}: an input of {n} "
                           f"at stride {s}, window {d * (k - 1) + 1} and output_pad {op} gives "
                           f"{size + 2 * p}, less the padding {p} on each side", "pad")
        sizes.append(size)
    h, w = sizes
    kh, kw = a["kernel"]
    weights = cin * (filters // groups) * kh * kw
    eff, stride = a["dilation"][0] * (kh - 1) + 1, a["stride"][0]
    return Result(Shape((filters, h, w)), weights + (filters if a["bias"] else 0),
                  weights * (x.height or 0) * (x.width or 0),  # the whole kernel once per input pixel
                  (math.ceil(eff / stride), Fraction(1, stride) if stride != 1 else 1))


def k_scale(v: Value) -> tuple[float, float]:
    """A resize factor: a positive number, or [height, width]."""
    pair = v if isinstance(v, tuple) else (v, v)
    if len(pair) != 2:
        raise ArgError(f"expects a number or a pair [height, width], got {describe(v)}")
    factors = (k_float(pair[0]), k_float(pair[1]))
    if min(factors) <= 0:
        raise ArgError(f"must be more than 0, got {describe(v)}")
    return factors


def k_interp(v: Value) -> Symbol:
    if v not in (NEAREST, BILINEAR):
        raise ArgError(f"expects nearest or bilinear, got {describe(v)}")
    return v  # type: ignore[return-value]


def k_preprocessing(v: Value) -> Symbol:
    if v not in (CAFFE, TF, TORCH):
        raise ArgError(f"expects caffe, tf or torch (keras.applications' preprocess_input modes), got {describe(v)}")
    return v  # type: ignore[return-value]


def _rgb(a: dict, x: Shape) -> Result:
    _need_map(x, "preprocess")
    if x.channels != 3:
        raise ArgError(f"preprocess takes RGB images, 3 channels, got {x}")
    return Result(x)


def k_tensor(v: Value) -> Shape:
    """A named tensor (or `in`): its shape, which shape inference passes for the name."""
    if not isinstance(v, Shape):  # pragma: no cover - elaboration takes only a tensor's name here
        raise ArgError(f"expects a named tensor, got {describe(v)}")
    return v


def _upsample(a: dict, x: Shape) -> Result:
    _need_map(x, "upsample")
    given = [name for name in ("factor", "size", "like") if a[name] is not None]
    if len(given) != 1:
        raise ArgError("upsample takes one of factor, size or like" if given else
                       "upsample needs a factor, a size, or like = a named tensor")
    if a["align_corners"] and a["mode"] != BILINEAR:
        raise ArgError("align_corners is for bilinear interpolation", "align_corners")
    if a["like"] is not None:
        _need_map(a["like"], "upsample's like")
        h, w = a["like"].height, a["like"].width
    elif a["size"] is not None:
        h, w = a["size"]
    else:
        sh, sw = a["factor"]
        h = None if x.height is None else math.floor(x.height * sh)
        w = None if x.width is None else math.floor(x.width * sw)
        if (h is not None and h < 1) or (w is not None and w < 1):
            raise ArgError(f"a factor of {describe(a['factor'])} leaves nothing of {x}", "factor")
    # output pixels per input pixel along the height: the factor's inverse, or the sizes' ratio
    jump = 1 / Fraction(a["factor"][0]).limit_denominator(1000) if a["factor"] is not None else \
        Fraction(x.height, h) if x.height is not None and h is not None else None
    taps = 2 if a["mode"] == BILINEAR else 1  # the input pixels an output pixel reads, along an axis
    return Result(Shape((x.channels, h, w)), window=None if jump is None else (taps, jump))


def _channel_shuffle(a: dict, x: Shape) -> Result:
    _need_map(x, "channel_shuffle")
    if x.channels % a["groups"]:
        raise ArgError(f"groups={a['groups']} must divide the input channels ({x.channels})", "groups")
    return Result(x)


def _describe_upsample(a: dict) -> str:
    how = f"x{describe(a['factor'][0]) if a['factor'][0] == a['factor'][1] else describe(a['factor'])}" \
        if a["factor"] is not None else "to " + ("like" if a["like"] is not None else _pair_text(a["size"]))
    return f"upsample {how}" + (", bilinear" if a["mode"] == BILINEAR else "")


def k_floats(v: Value) -> tuple[float, ...]:
    """A number, or a list of numbers (one per channel)."""
    if isinstance(v, tuple):
        if not v:
            raise ArgError("expects a number or a list of numbers, got []")
        return tuple(k_float(x) for x in v)
    return (k_float(v),)


def _per_channel(name: str, *args: str):
    def infer(a: dict, x: Shape) -> Result:
        for arg in args:
            n = len(a[arg])
            if n not in (1, x.channels):
                raise ArgError(f"{name}: '{arg}' has {n} values for {x.channels} channels", arg)
        return Result(x)
    return infer


def k_pad2(v: Value) -> tuple[int, int]:
    """Padding on the two ends of one axis: p (both) or [before, after]."""
    if isinstance(v, tuple):
        if len(v) != 2:
            raise ArgError(f"expects an integer or [before, after], got {describe(v)}")
        return (k_int0(v[0]), k_int0(v[1]))
    p = k_int0(v)
    return (p, p)


def _chanpad(a: dict, x: Shape) -> Result:
    before, after = a["pad"]
    return Result(Shape((x.channels + before + after, *x.dims[1:])))


def _crop(a: dict, x: Shape) -> Result:
    _need_map(x, "crop")
    if (a["crop"] is None) == (a["like"] is None):
        raise ArgError("crop takes its sides or like = a named tensor" if a["crop"] is None else
                       "crop takes its sides or like, not both")
    if a["like"] is not None:  # at the centre, to the tensor's size
        _need_map(a["like"], "crop's like")
        h, w = a["like"].height, a["like"].width
        for size, n, what in ((h, x.height, "high"), (w, x.width, "wide")):
            if size is not None and n is not None and size > n:
                raise ArgError(f"cannot crop {x} to {a['like']}: the tensor is {size} {what}, more than {n}", "like")
        return Result(Shape((x.channels, h, w)))
    t, b, le, r = a["crop"]
    h = None if x.height is None else x.height - t - b
    w = None if x.width is None else x.width - le - r
    if (h is not None and h < 1) or (w is not None and w < 1):
        raise ArgError(f"cropping {a['crop']} leaves nothing of {x}")
    return Result(Shape((x.channels, h, w)))


def _channel_slice(a: dict, x: Shape) -> Result:
    channels = x.channels if x.rank == 3 else x.dims[0]
    if a["start"] + a["count"] > channels:
        raise ArgError(f"channels {a['start']} to {a['start'] + a['count'] - 1} are not all in the input's "
                       f"{channels}", "count")
    return Result(Shape((a["count"], *x.dims[1:])))


def rule_channels(x: Shape) -> int:
    return x.channels if x.rank == 3 else x.dims[0]


def split_sizes(parts: int | tuple[int, ...], channels: int) -> tuple[int, ...]:
    """The sizes of a split's parts: `parts` equal ones, or the sizes listed."""
    return parts if isinstance(parts, tuple) else (channels // parts,) * parts


def _split(a: dict, x: Shape) -> Result:
    channels, parts = rule_channels(x), a["parts"]
    count = len(parts) if isinstance(parts, tuple) else parts
    if count != a["names"]:
        what = "sizes" if isinstance(parts, tuple) else "parts"
        raise ArgError(f"split into {count} {what}, but {a['names']} names are given: one name a part", "parts")
    if isinstance(parts, tuple) and sum(parts) != channels:
        raise ArgError(f"the sizes {describe(parts)} add up to {sum(parts)}, not to the input's {channels} "
                       "channels", "parts")
    if not isinstance(parts, tuple) and channels % parts:
        raise ArgError(f"the input's {channels} channels do not split into {parts} equal parts "
                       f"({channels} is not a multiple of {parts}); give the sizes as a list", "parts")
    return Result(Shape((split_sizes(parts, channels)[a["index"]], *x.dims[1:])))


def _describe_split(a: dict) -> str:
    parts = a["parts"]
    return f"split {a['index'] + 1} of {a['names']}" + (f", {parts[a['index']]} channels" if isinstance(parts, tuple) else "")


def _pool(name: str):
    def infer(a: dict, x: Shape) -> Result:
        _need_map(x, name)
        if a["kernel"] == GLOBAL:
            return Result(Shape((x.channels, 1, 1)), window=(x.height or 1, 1))
        stride = a["stride"] or a["kernel"]
        if a["pad"] not in (SAME, VALID):
            for axis in (0, 1):
                if a["pad"][axis] * 2 > a["kernel"][axis]:
                    raise ArgError(f"padding {a['pad'][axis]} is more than half the window "
                                   f"{a['kernel'][axis]}", "pad")
        h, w = _spatial(x, a["kernel"], stride, a["pad"], (1, 1), a["ceil"])
        return Result(Shape((x.channels, h, w)), window=(a["kernel"][0], stride[0]))
    return infer


def _adaptive(a: dict, x: Shape) -> Result:
    _need_map(x, "adaptive_avgpool")
    oh, ow = a["size"]
    window = -(-(x.height or oh) // oh)
    return Result(Shape((x.channels, oh, ow)), window=(window, max(1, (x.height or oh) // oh)))


def _dense(a: dict, x: Shape) -> Result:
    if x.rank != 1:
        raise ArgError(f"dense needs a flat input [features], got the feature map {x}; "
                       "put flatten (or avgpool(global) flatten) before it")
    weights = x.dims[0] * a["units"]
    return Result(Shape((a["units"],)), weights + (a["units"] if a["bias"] else 0), weights)


def _bn(a: dict, x: Shape) -> Result:
    return Result(x, (int(a["gamma"]) + int(a["beta"])) * x.channels)


def _same_shape(name: str, needs_map: bool = False):
    def infer(a: dict, x: Shape) -> Result:
        if needs_map:
            _need_map(x, name)
        return Result(x)
    return infer


def _flatten(a: dict, x: Shape) -> Result:
    n = x.numel()
    if n is None:
        raise ArgError(f"flatten of {x} needs every size known; give the input a size or pool "
                       "to a fixed size first (avgpool(global) or adaptive_avgpool)")
    return Result(Shape((n,)), window=(x.height or 1, 1) if x.rank == 3 else None)


def _zeropad(a: dict, x: Shape) -> Result:
    _need_map(x, "zeropad")
    t, b, le, r = a["pad"]
    h = None if x.height is None else x.height + t + b
    w = None if x.width is None else x.width + le + r
    return Result(Shape((x.channels, h, w)))


def _bias_per(arg: str) -> Callable[[dict, Shape], int]:
    """Biases: one per output channel (the argument `arg` gives them) where the layer's `bias` is on."""
    return lambda a, x: a[arg] if a["bias"] else 0


_CONV_COMMON = (
    P("stride", k_int2, 1, "step of the window: an integer or [height, width]"),
    P("pad", k_pad, 0, "zero padding on each side: an integer, [height, width], same or valid"),
    P("dilation", k_int2, 1, "spacing of the kernel taps"),
)

LAYERS: dict[str, LayerType] = {}


def _add(t: LayerType, *aliases: str) -> None:
    for name in (t.name, *aliases):
        LAYERS[name] = t


_add(LayerType("conv", (
    P("filters", k_int, doc="output channels"),
    P("kernel", k_int2, doc="kernel size: an integer or [height, width]"),
    *_CONV_COMMON,
    P("groups", k_int, 1, "grouped convolution: input and output channels split in this many groups"),
    P("bias", k_bool, True, "add a learned bias"),
), _conv, "conv", "2-D convolution", weights=True, channels=Arg("filters"), describe=_describe_conv("conv"),
   biases=_bias_per("filters")))
_add(LayerType("dwconv", (
    P("kernel", k_int2, doc="kernel size"),
    *_CONV_COMMON,
    P("multiplier", k_int, 1, "output channels per input channel"),
    P("bias", k_bool, True, "add a learned bias"),
), _dwconv, "conv", "depthwise convolution: one filter (or `multiplier` filters) per channel", weights=True,
   channels=IN * Arg("multiplier"), describe=_describe_dwconv,
   biases=lambda a, x: x.channels * a["multiplier"] if a["bias"] else 0))
_add(LayerType("sepconv", (
    P("filters", k_int, doc="output channels"),
    P("kernel", k_int2, doc="kernel size of the depthwise part"),
    *_CONV_COMMON,
    P("multiplier", k_int, 1, "depthwise channel multiplier"),
    P("bias", k_bool, True, "bias on the pointwise part"),
), _sepconv, "conv", "separable convolution: depthwise, then a 1x1 pointwise convolution", weights=True,
   channels=Arg("filters"), describe=_describe_conv("sepconv"), biases=_bias_per("filters")))
_add(LayerType("deconv", (
    P("filters", k_int, doc="output channels"),
    P("kernel", k_int2, doc="kernel size: an integer or [height, width]"),
    P("stride", k_int2, 1, "spacing of the input pixels in the output: an integer or [height, width]"),
    P("pad", k_int2_0, 0, "rows and columns cropped from each side (PyTorch's padding): an integer or "
                          "[height, width]"),
    P("output_pad", k_int2_0, 0, "rows and columns added at the bottom and right (PyTorch's output_padding), "
                                 "smaller than the stride or the dilation"),
    P("groups", k_int, 1, "grouped: input and output channels split in this many groups"),
    P("dilation", k_int2, 1, "spacing of the kernel taps"),
    P("bias", k_bool, True, "add a learned bias"),
), _deconv, "conv", "2-D transposed convolution (PyTorch's ConvTranspose2d), e.g. a learned upsampling",
   weights=True, channels=Arg("filters"), describe=_describe_conv("deconv"), biases=_bias_per("filters")))
_add(LayerType("maxpool", (
    P("kernel", k_pool, doc="window size, or global"),
    P("stride", k_stride, None, "step; the window size when left out"),
    P("pad", k_pad, 0, "implicit -inf padding on each side, or same/valid"),
    P("ceil", k_bool, False, "round the output size up (PyTorch's ceil_mode)"),
), _pool("maxpool"), "pool", "max pooling", describe=_describe_pool("maxpool"), channels=IN))
_add(LayerType("avgpool", (
    P("kernel", k_pool, doc="window size, or global"),
    P("stride", k_stride, None, "step; the window size when left out"),
    P("pad", k_pad, 0, "zero padding on each side, or same/valid"),
    P("ceil", k_bool, False, "round the output size up (PyTorch's ceil_mode)"),
    P("count_pad", k_bool, True, "padded zeros count in the average (PyTorch's count_include_pad)"),
), _pool("avgpool"), "pool", "average pooling", describe=_describe_pool("avgpool"), channels=IN))
_add(LayerType("adaptive_avgpool", (
    P("size", k_int2, doc="output size: an integer or [height, width]"),
), _adaptive, "pool", "average pooling to a fixed output size (PyTorch's AdaptiveAvgPool2d)",
   describe=lambda a: f"adaptive_avgpool {_pair_text(a['size'])}", channels=IN))
_add(LayerType("dense", (
    P("units", k_int, doc="output features"),
    P("bias", k_bool, True, "add a learned bias"),
), _dense, "dense", "fully connected layer on a flat input", weights=True, channels=Arg("units"),
   describe=lambda a: f"dense {a['units']}", biases=_bias_per("units")), "linear")
_add(LayerType("dropout", (P("rate", k_rate, 0.5, "probability of zeroing an element"),),
               _same_shape("dropout"), "regularization", "dropout (active in training only)",
               describe=lambda a: f"dropout {a['rate']:g}", channels=IN))
_add(LayerType("spatial_dropout", (P("rate", k_rate, 0.5, "probability of zeroing a whole channel"),),
               _same_shape("spatial_dropout", True), "regularization",
               "dropout of whole channels (Tompson et al., 2015; active in training only)",
               describe=lambda a: f"spatial_dropout {a['rate']:g}", channels=IN))
_add(LayerType("dropblock", (
    P("size", k_int, 7, "side of the square blocks zeroed (clipped to the map's height and width)"),
    P("rate", k_rate, 0.1, "the drop rate that gamma, the rate of block seeds, is computed from"),
    P("per_channel", k_bool, True, "a mask per sample and channel; false: one per sample, shared by its channels "
                                   "(timm's couple_channels=True, its default and its ResNet's)"),
), _same_shape("dropblock", True), "regularization",
   "DropBlock (Ghiasi et al., 2018; active in training only), as timm's drop_block_2d(couple_channels=not "
   "per_channel): seeds drawn per sample, channel (per_channel) and pixel at gamma = rate * H * W / (kh * kw) / "
   "((H - kh + 1) * (W - kw + 1)), kh = min(size, H), kw = min(size, W), each zeroing the kh x kw block from "
   "kh // 2 rows above it to (kh - 1) // 2 below (columns alike, clipped at the borders); the kept activations "
   "scaled by numel / kept count of the batch",
   describe=lambda a: f"dropblock {a['size']}, {a['rate']:g}" + ("" if a.get("per_channel", True) else ", shared"),
   channels=IN))
_add(LayerType("bn", (
    P("eps", k_float, 1e-5, "added to the variance"),
    P("momentum", k_float, 0.1, "PyTorch's meaning: weight of the new batch in the running statistics"),
    P("gamma", k_bool, True, "learn a per-channel scale (Keras' scale)"),
    P("beta", k_bool, True, "learn a per-channel shift (Keras' center)"),
), _bn, "norm", "batch normalization over channels", weights=True, channels=IN, statistics=2,
   biases=lambda a, x: x.channels if a["beta"] else 0), "batchnorm")
_add(LayerType("lrn", (
    P("size", k_int, 5, "channels in the window"),
    P("alpha", k_float, 1e-4, "scale (PyTorch's convention: divided by size)"),
    P("beta", k_float, 0.75, "exponent"),
    P("k", k_float, 1.0, "additive constant"),
), _same_shape("lrn", True), "norm", "local response normalization across channels (AlexNet, GoogLeNet)", channels=IN))
for _name, _doc in (
    ("relu", "max(x, 0)"), ("relu6", "min(max(x, 0), 6)"), ("tanh", "hyperbolic tangent"),
    ("sigmoid", "1 / (1 + exp(-x))"), ("softmax", "softmax over channels (features)"),
    ("silu", "x * sigmoid(x), also called swish"), ("hardswish", "x * relu6(x + 3) / 6"),
    ("hardsigmoid", "relu6(x + 3) / 6"), ("gelu", "Gaussian error linear unit (exact, erf form)"),
    ("identity", "passes its input on unchanged"),
):
    _add(LayerType(_name, (), _same_shape(_name), "activation" if _name != "identity" else "misc", _doc, channels=IN),
         *(("swish",) if _name == "silu" else ()))
_add(LayerType("leaky_relu", (P("slope", k_float, 0.01, "slope for negative inputs"),),
               _same_shape("leaky_relu"), "activation", "max(x, 0) + slope * min(x, 0)",
               describe=lambda a: f"leaky_relu {a['slope']:g}", channels=IN))
_add(LayerType("layernorm", (P("eps", k_float, 1e-5, "added to the variance"),),
               lambda a, x: Result(x, 2 * x.channels), "norm",
               "layer normalization over the channels at each position (over the features of a flat input)",
               weights=True, channels=IN, biases=lambda a, x: x.channels))
_add(LayerType("layerscale", (P("init", k_float, 1e-6, "initial value of the learned per-channel scale"),),
               lambda a, x: Result(x, x.channels), "norm", "multiplies each channel by a learned scale (ConvNeXt)",
               weights=True, channels=IN))
_add(LayerType("rescale", (P("scale", k_float, doc="multiplier"), P("offset", k_float, 0.0, "added after")),
               _same_shape("rescale"), "shape", "x * scale + offset, e.g. rescale(1 / 255) for 8-bit images",
               channels=IN))
_add(LayerType("normalize", (P("mean", k_floats, doc="a number or one per channel"),
                             P("std", k_floats, doc="a number or one per channel")),
               _per_channel("normalize", "mean", "std"), "shape", "(x - mean) / std per channel, constants",
               channels=IN))
_add(LayerType("preprocess", (P("mode", k_preprocessing, doc="caffe, tf or torch"),), _rgb, "shape",
               "the input preprocessing a pretrained network expects, on RGB images of 0 to 255, as "
               "keras.applications' preprocess_input: caffe (VGG16, ResNet50) reverses the channels to BGR and "
               "subtracts ImageNet's mean pixel (103.939, 116.779, 123.68 in BGR order); tf (Xception, MobileNet, "
               "Inception) scales to [-1, 1], x / 127.5 - 1; torch (DenseNet) scales to [0, 1] and normalizes by "
               "ImageNet's mean (0.485, 0.456, 0.406) and standard deviation (0.229, 0.224, 0.225)",
               describe=lambda a: f"preprocess {a['mode']}", channels=IN))
_add(LayerType("zeropad_channels", (P("pad", k_pad2, doc="p, or [before, after]"),),
               _chanpad, "shape", "adds zero channels (the identity shortcut of ResNet's option A)",
               channels=IN + Arg("pad", 0) + Arg("pad", 1)))
_add(LayerType("crop", (P("crop", k_zpad, None, "c, [ch, cw], or [top, bottom, left, right]"),
                        P("like", k_tensor, None, "a named tensor (or `in`): crop at the centre to its height "
                                                  "and width")),
               _crop, "shape", "removes rows and columns at the borders, or crops at the centre to a named "
               "tensor's size (the U-Net paper's crop before a concatenation)", channels=IN))
_add(LayerType("channel_slice", (P("start", k_int0, doc="the first channel taken (from 0)"),
                                 P("count", k_int, doc="how many channels are taken")),
               _channel_slice, "shape", "channels start to start + count - 1 (a split: one slice a part)",
               channels=Arg("count"), describe=lambda a: f"channels {a['start']}..{a['start'] + a['count'] - 1}"))
_add(LayerType("split", (P("parts", k_parts, doc="the number of equal parts, or a list of their sizes"),
                         P("index", k_int0, 0, "which part (from 0): set by `a, b = x split(2)`, one a name"),
                         P("names", k_int, 2, "how many names the parts are given: set by `a, b = ...`")),
               _split, "shape", "channel split into named tensors: `a, b = x split(2)` (equal halves), "
               "`a, b, c = x split([16, 32, 16])` (sizes that add up to the channels); one layer a part",
               channels=SplitPart(), describe=_describe_split))
_add(LayerType("flatten", (), _flatten, "shape", "flattens [C, H, W] to [C*H*W] (channel-major, as PyTorch)",
               channels=IN * InSize("height") * InSize("width")))
_add(LayerType("zeropad", (P("pad", k_zpad, doc="p, [ph, pw], or [top, bottom, left, right]"),),
               _zeropad, "shape", "explicit zero padding", channels=IN))
_add(LayerType("upsample", (
    P("factor", k_scale, None, "a number or [height, width]: the output is floor(input * factor)"),
    P("size", k_int2, None, "output size: an integer or [height, width]"),
    P("like", k_tensor, None, "a named tensor (or `in`) whose height and width the output takes"),
    P("mode", k_interp, NEAREST, "nearest (PyTorch's: the pixel at floor(i * in / out)) or bilinear"),
    P("align_corners", k_bool, False, "bilinear: the corner pixels of input and output aligned (PyTorch's)"),
), _upsample, "shape", "resize of the feature map by a factor, to a size or to a named tensor's size, "
   "nearest or bilinear (PyTorch's F.interpolate)", channels=IN, describe=_describe_upsample))
_add(LayerType("channel_shuffle", (P("groups", k_int, doc="the groups whose channels are interleaved"),),
               _channel_shuffle, "shape", "channel shuffle (ShuffleNet): the channels of `groups` groups "
               "interleaved, [g, c / g] transposed", channels=IN,
               describe=lambda a: f"channel_shuffle {a['groups']}"))

# argument kinds whose values are integers (generated code passes them through int() unless the
# expression is surely an integer)
INT_KINDS = frozenset({k_parts, k_int, k_int0, k_int2, k_int2_0, k_stride, k_pad, k_pool, k_zpad, k_pad2})



def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round a channel count to a multiple of divisor, never more than 10% down (MobileNet's rule)."""
    if min_value is None:
        min_value = divisor
    new_value = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new_value < 0.9 * value:
        new_value += divisor
    return new_value


FUNCTIONS: dict[str, tuple[int, int]] = {  # name -> (min args, max args)
    "min": (1, 99), "max": (1, 99), "round": (1, 1), "ceil": (1, 1), "floor": (1, 1),
    "int": (1, 1), "float": (1, 1), "abs": (1, 1), "make_divisible": (1, 3),
}


def call_function(name: str, args: list) -> Value:
    for a in args:
        if isinstance(a, (Symbol, tuple, bool)) or a is None:
            raise ArgError(f"{name}() expects numbers, got {describe(a)}")
    if name == "min":
        return min(args)
    if name == "max":
        return max(args)
    if name == "round":
        return round(args[0])
    if name == "ceil":
        return math.ceil(args[0])
    if name == "floor":
        return math.floor(args[0])
    if name == "int":
        return int(args[0])
    if name == "float":
        return float(args[0])
    if name == "abs":
        return abs(args[0])
    if name == "make_divisible":
        return make_divisible(*args)
    raise ArgError(f"unknown function {name}()")  # pragma: no cover - elaboration checks names
