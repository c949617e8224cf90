"""The Keras emission of each catalog layer, and the rule that moves its weights from PyTorch.

Each function is registered against the catalog layers it writes (archdsl/backends/registry.py) and
called by backends/keras.py as `emitter(f, node, src, dst, path)`: f is the block's function being
written (_Function: the suite its statements go to, f.out; its names and expression printing), node
the layer, src the variable holding its input, dst the variable for its result, path its layer name.
It writes the layer's statements and returns the variable holding its result (src itself for a layer
that computes nothing). Where PyTorch's semantics differ from a Keras layer's (padding of a strided
convolution, ceil-mode pooling, padding that must not win a max, the order of features after a
flatten), the code does explicitly what PyTorch does. Custom layers come from
archdsl/runtime/keras_layers.py (f.m.need(name) copies one).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..core import graph as G
from ..core.layers import BILINEAR, GLOBAL, NEAREST, SAME, VALID, same_pads
from ..language.errors import ArchError
from .common import (
    agreed,
    const,
    fixed_values,
    is_false,
    is_none,
    is_one,
    is_true,
    is_zero,
    literal,
    pad_chosen,
    pad_parts,
    quote,
)
from .layout import Br
from .registry import keras_layer, transfer

if TYPE_CHECKING:
    from .keras import LayerPath

_ACTIVATIONS = {
    "relu": "relu", "relu6": "relu6", "tanh": "tanh", "sigmoid": "sigmoid", "softmax": "softmax",
    "silu": "silu", "hardswish": "hard_swish", "hardsigmoid": "hard_sigmoid", "gelu": "gelu",
}


def _name(path: LayerPath) -> str:
    return f"name={path.code()}"


@keras_layer("identity")
def identity(f, node: G.Layer, src: str, dst: str, path: LayerPath) -> str:
    return src


@keras_layer(*_ACTIVATIONS)
def activation(f, node: G.Layer, src: str, dst: str, path: LayerPath) -> str:
    return f.apply(Br("layers.Activation", [quote(_ACTIVATIONS[node.type.name]), _name(path)]), src, dst)


@keras_layer("leaky_relu")
def leaky_relu(f, node: G.Layer, src: str, dst: str, path: LayerPath) -> str:
    a = node.args
    cls = "layers.LeakyReLU"
    slopes = [i.args["slope"] for i in f.uses(node)] or [const(a["slope"])]
    if not all(isinstance(v, (int, float)) and v >= 0 for v in slopes):  # Keras' refuses < 0
        f.m.need("LeakyReLUAnySlope")
        cls = "LeakyReLUAnySlope"
    return f.apply(Br(cls, [f"negative_slope={f.typed(node, a['slope'])}", _name(path)]), src, dst)


@keras_layer("dropout")
def dropout(f, node: G.Layer, src: str, dst: str, path: LayerPath) -> str:
    return f.apply(Br("layers.Dropout", [f.typed(node, node.args["rate"]), _name(path)]), src, dst)


@keras_layer("spatial_dropout")
def spatial_dropout(f, node: G.Layer, src: str, dst: str, path: LayerPath) -> str:
    return f.apply(Br("layers.SpatialDropout2D", [f.typed(node, node.args["rate"]), _name(path)]), src, dst)


@keras_layer("dropblock")
def dropblock(f, node: G.Layer, src: str, dst: str, path: LayerPath) -> str:
    a = node.args
    if is_zero(a["rate"]):  # at a rate of the constant 0 it does nothing: no layer
        return src
    f.m.need("DropBlock2D")
    args = [f.typed(node, a["size"]), f.typed(node, a["rate"])]
    if not is_true(a["per_channel"]):
        args.append(f"per_channel={f.typed(node, a['per_channel'])}")
    return f.apply(Br("DropBlock2D", [*args, _name(path)]), src, dst)


@keras_layer("dense")
def dense(f, node: G.Layer, src: str, dst: str, path: LayerPath) -> str:
    a = node.args
    args = [f.typed(node, a["units"])]
    if not is_true(a["bias"]):
        args.append(f"use_bias={f.typed(node, a['bias'])}")
    return f.apply(Br("layers.Dense", [*args, _name(path)]), src, dst)


@keras_layer("bn")
def bn(f, node: G.Layer, src: str, dst: str, path: LayerPath) -> str:
    a = node.args
    m = a["momentum"]  # PyTorch's weight of the new batch; Keras' of the running statistics
    momentum = literal(round(1.0 - m.value, 12)) if isinstance(m, G.Const) else f"1 - {f.typed(node, m)}"
    args = [f"epsilon={f.typed(node, a['eps'])}", f"momentum={momentum}"]
    args += [f"{k}={f.typed(node, a[ours])}" for k, ours in (("scale", "gamma"), ("center", "beta"))
             if not is_true(a[ours])]
    return f.apply(Br("layers.BatchNormalization", [*args, _name(path)]), src, dst)


@keras_layer("lrn")
def lrn(f, node: G.Layer, src: str, dst: str, path: LayerPath) -> str:
    a = node.args
    e = lambda ex: f.typed(node, ex)
    f.m.need("LocalResponseNorm")
    return f.apply(Br("LocalResponseNorm", [e(a["size"]), f"alpha={e(a['alpha'])}", f"beta={e(a['beta'])}",
                                           f"k={e(a['k'])}", _name(path)]), src, dst)


@keras_layer("layernorm")
def layernorm(f, node: G.Layer, src: str, dst: str, path: LayerPath) -> str:
    return f.apply(Br("layers.LayerNormalization", [f"epsilon={f.typed(node, node.args['eps'])}", _name(path)]), src, dst)


@keras_layer("layerscale")
def layerscale(f, node: G.Layer, src: str, dst: str, path: LayerPath) -> str:
    f.m.need("LayerScale")
    return f.apply(Br("LayerScale", [f.typed(node, node.args["init"]), _name(path)]), src, dst)


@keras_layer("rescale")
def rescale(f, node: G.Layer, src: str, dst: str, path: LayerPath) -> str:
    a = node.args
    args = [f.typed(node, a["scale"])] + ([] if is_zero(a["offset"]) else [f"offset={f.typed(node, a['offset'])}"])
    return f.apply(Br("layers.Rescaling", [*args, _name(path)]), src, dst)


@keras_layer("preprocess")
def preprocess(f, node: G.Layer, src: str, dst: str, path: LayerPath) -> str:
    f.m.need("Preprocess")
    return f.apply(Br("Preprocess", [f.typed(node, node.args["mode"]), _name(path)]), src, dst)


@keras_layer("normalize")
def normalize(f, node: G.Layer, src: str, dst: str, path: LayerPath) -> str:
    a = node.args

    def per_channel(inst: G.Inst, arg: str) -> tuple:
        values = inst.args[arg]
        return values if len(values) > 1 else values * inst.in_shape.channels

    try:
        mean = agreed(node, f.uses(node), lambda i: per_channel(i, "mean"), "the mean", f.owner_desc(),
                      default=_constant_floats(a["mean"]))
        std = agreed(node, f.uses(node), lambda i: per_channel(i, "std"), "the standard deviation", f.owner_desc(),
                     default=_constant_floats(a["std"]))
    except ArchError:  # they differ between the uses of the block
        mean = std = None
    if mean is None or std is None:  # from the block's parameters, as the model is built
        f.m.need("normalize_stats")
        stats = Br("**normalize_stats", [f.typed(node, a["mean"]), f.typed(node, a["std"])])
        return f.apply(Br("layers.Normalization", [stats, _name(path)]), src, dst)
    if len(mean) != len(std):
        mean, std = (mean * len(std), std) if len(mean) == 1 else (mean, std * len(mean))
    variance = tuple(float(v) * float(v) for v in std)  # type: ignore[union-attr]
    return f.apply(Br("layers.Normalization", [f"mean={literal(mean)}", f"variance={literal(variance)}",
                                               _name(path)]), src, dst)


@keras_layer("zeropad_channels")
def zeropad_channels(f, node: G.Layer, src: str, dst: str, path: LayerPath) -> str:
    f.m.need("ChannelPad")
    parts = pad_parts(node.args["pad"], f.expr)
    if parts is None:
        pads = literal(agreed(node, f.uses(node), lambda i: i.args["pad"], "the channel padding", f.owner_desc()))
    else:
        pads = f"({parts[0]}, {parts[-1]})"
    return f.apply(Br("ChannelPad", [pads, _name(path)]), src, dst)


def _sides(f, node: G.Layer, arg: str) -> str:
    t, b, left, r = f.sides(node, arg)
    return f"(({t}, {b}), ({left}, {r}))"


@keras_layer("crop")
def crop(f, node: G.Layer, src: str, dst: str, path: LayerPath) -> str:
    if isinstance(node.args["like"], G.TensorRef):  # at the centre, to the tensor's size
        f.m.need("CenterCrop2D")
        return f.apply(Br("CenterCrop2D", [_name(path)]), _with_like(f, node, src), dst)
    return f.apply(Br("layers.Cropping2D", [_sides(f, node, "crop"), _name(path)]), src, dst)


@keras_layer("channel_slice")
def channel_slice(f, node: G.Layer, src: str, dst: str, path: LayerPath) -> str:
    f.m.need("ChannelSlice")
    return f.apply(Br("ChannelSlice", [f.typed(node, node.args["start"]), f.typed(node, node.args["count"]),
                                       _name(path)]), src, dst)


@keras_layer("split")
def split(f, node: G.Layer, src: str, dst: str, path: LayerPath) -> str:
    f.m.need("ChannelSplit")
    return f.apply(Br("ChannelSplit", [f.typed(node, node.args["parts"]), f.typed(node, node.args["index"]),
                                       _name(path)]), src, dst)


@keras_layer("zeropad")
def zeropad(f, node: G.Layer, src: str, dst: str, path: LayerPath) -> str:
    return f.apply(Br("layers.ZeroPadding2D", [_sides(f, node, "pad"), _name(path)]), src, dst)


@keras_layer("upsample")
def upsample(f, node: G.Layer, src: str, dst: str, path: LayerPath) -> str:
    """Keras' UpSampling2D where it computes what PyTorch does (an integer factor, nearest, or bilinear
    without aligned corners); Interpolate2D (PyTorch's source pixels and weights) else."""
    a = node.args
    mode, corners = const(a["mode"]), const(a["align_corners"])
    factor = const(a["factor"])
    factors = factor if isinstance(factor, tuple) else (factor, factor)
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) and float(v).is_integer() for v in factors) \
            and (mode == NEAREST or (mode == BILINEAR and corners is False)):
        size = literal(int(factors[0])) if factors[0] == factors[1] else literal(tuple(int(v) for v in factors))
        bilinear = ['interpolation="bilinear"'] if mode == BILINEAR else []
        return f.apply(Br("layers.UpSampling2D", [size, *bilinear, _name(path)]), src, dst)
    f.m.need("Interpolate2D")
    args = [f"size={f.typed(node, a['size'])}"] if not is_none(a["size"]) else \
        [f"scale={f.typed(node, a['factor'])}"] if not is_none(a["factor"]) else []
    if mode != NEAREST:
        args += [f"mode={f.typed(node, a['mode'])}", f"align_corners={f.typed(node, a['align_corners'])}"]
    return f.apply(Br("Interpolate2D", [*args, _name(path)]), _with_like(f, node, src), dst)


def _with_like(f, node: G.Layer, src: str) -> str:
    """A layer's inputs: [src, the named tensor it takes its size from] (`like = t`), or src alone."""
    like = node.args["like"]
    return f"[{src}, {f.tensors[like.name]}]" if isinstance(like, G.TensorRef) else src


@keras_layer("channel_shuffle")
def channel_shuffle(f, node: G.Layer, src: str, dst: str, path: LayerPath) -> str:
    f.m.need("ChannelShuffle")
    return f.apply(Br("ChannelShuffle", [f.typed(node, node.args["groups"]), _name(path)]), src, dst)


@keras_layer("adaptive_avgpool")
def adaptive_avgpool(f, node: G.Layer, src: str, dst: str, path: LayerPath) -> str:
    ratio = agreed(node, f.uses(node), lambda i: _adaptive_plan(i), "the pooling windows", f.owner_desc(),
                   default="general")
    if ratio == 1:
        return f.apply(Br("layers.Identity", [_name(path)]), src, dst)
    if isinstance(ratio, tuple):
        return f.apply(Br("layers.AveragePooling2D", [literal(ratio), _name(path)]), src, dst)
    f.m.need("AdaptiveAvgPool2D")
    return f.apply(Br("AdaptiveAvgPool2D", [f.typed(node, node.args["size"]), _name(path)]), src, dst)


@keras_layer("flatten")
def flatten(f, node: G.Layer, src: str, dst: str, path: LayerPath) -> str:
    """PyTorch flattens (C, H, W), Keras' Flatten the (H, W, C) it holds: a Permute to channels
    first before it, so every layer after a flatten sees PyTorch's features in PyTorch's order
    (a dense, a batch norm, a layer scale, a padding of the features, a model output). None
    where the order is the same: a 1 x 1 map or one channel, or features already flat."""
    def reorders(inst: G.Inst) -> bool:
        x = inst.in_shape
        return x.rank == 3 and x.channels != 1 and (x.height, x.width) != (1, 1)

    permute = Br("layers.Permute", ["(3, 1, 2)", f"name={path.suffix('chw').code()}"])
    insts = f.uses(node)
    if insts and all(reorders(i) for i in insts):
        src = f.apply(permute, src, dst)
    elif not insts or any(reorders(i) for i in insts):  # the input's rank is known as the model is built
        if src != dst:
            f.out.assign(dst, src)
        with f.into(f.out.if_(f"len({dst}.shape) == 4").body):
            src = f.apply(permute, dst, dst)
    return f.apply(Br("layers.Flatten", [f"name={path.code()}"]), src, dst)


@keras_layer("conv", "dwconv", "sepconv")
def conv(f, node: G.Layer, src: str, dst: str, path: LayerPath) -> str:
    kind = node.type.name
    a = node.args
    e = lambda ex: f.typed(node, ex)
    padding = _conv_padding(f, node)
    grouping = _grouping(f, node) if kind == "conv" else "none"
    subsample = _subsampled(f, node, grouping)
    window = f"({e(a['kernel'])}, {e(a['stride'])}, {e(a['dilation'])})"
    if padding == "explicit":
        src = f.apply(Br("layers.ZeroPadding2D", [e(a["pad"]), f"name={path.suffix('pad').code()}"]), src, dst)
    elif padding == "chosen":
        padding = _padded(f, a["pad"], src, dst, path, window=window if subsample else None)
        src = dst
    elif padding == "same" and subsample:  # `same` at the strides, before a convolution at stride 1
        f.m.need("SamePad2D")
        src = f.apply(Br("SamePad2D", [e(a["kernel"]), e(a["stride"]), e(a["dilation"]),
                                          f"name={path.suffix('pad').code()}"]), src, dst)
        padding = "valid"
    if grouping == "depthwise":
        kind = "dwconv"
    args: list[str] = []
    if kind in ("conv", "sepconv"):
        args.append(e(a["filters"]))
    args.append(e(a["kernel"]))
    if grouping == "chosen":
        args.append(e(a["groups"]))
    if not is_one(a["stride"]) and not subsample:
        args.append(f"strides={e(a['stride'])}")
    if padding == "same":
        args.append('padding="same"')
    elif padding not in ("valid", "explicit"):  # a local: what padded() chose
        args.append(f"padding={padding}")
    if not is_one(a["dilation"]):
        args.append(f"dilation_rate={e(a['dilation'])}")
    if grouping in ("grouped", "ungrouped"):
        args.append(f"groups={e(a['groups'])}")
    if grouping == "depthwise":
        multiplier = agreed(node, f.uses(node), lambda i: i.args["filters"] // i.args["groups"], "the depth multiplier",
                            f.owner_desc())
        if multiplier != 1:
            args.append(f"depth_multiplier={multiplier}")
    elif kind in ("dwconv", "sepconv") and not is_one(a["multiplier"]):
        args.append(f"depth_multiplier={e(a['multiplier'])}")
    if not is_true(a["bias"]):
        args.append(f"use_bias={e(a['bias'])}")
    cls = {"conv": "layers.Conv2D", "dwconv": "layers.DepthwiseConv2D", "sepconv": "layers.SeparableConv2D"}[kind]
    if grouping == "grouped":
        f.m.need("GroupedConv2D")
        cls = "GroupedConv2D"
    if grouping == "chosen":  # the layer is chosen as the model is built: a call, not a layer
        f.m.need("GroupedConv2D")
        f.m.need("conv2d_groups")
        f.out.assign(dst, Br("conv2d_groups", [src, *args, f"name={path.code()}"]))
        src = dst
    else:
        src = f.apply(Br(cls, [*args, f"name={path.code()}"]), src, dst)
    if subsample:  # every stride-th output of the convolution at stride 1: a pooling of one pixel
        src = f.apply(Br("layers.MaxPooling2D", ["1", f"strides={e(a['stride'])}",
                                                    f"name={path.suffix('stride').code()}"]), src, dst)
    return src


def _subsampled(f, node: G.Layer, grouping: str) -> bool:
    """Whether a convolution computes at stride 1, a pooling of one pixel then taking every
    stride-th output (PyTorch's windows exactly): where Keras has no layer for it. Keras'
    Conv2D refuses strides with a dilation; TensorFlow's depthwise convolution on CPU (where
    oneDNN does not run it) refuses unequal strides. Decided from the uses, as they were
    expanded (from the spec alone for a layer no use reaches)."""
    depthwise = node.type.name in ("dwconv", "sepconv") or grouping not in ("none", "ungrouped")

    def needs(stride, dilation) -> bool:
        stride, dilation = (v if isinstance(v, tuple) else (v, v) for v in (stride, dilation))
        return (max(stride) > 1 and max(dilation) > 1) or (depthwise and stride[0] != stride[1])

    if f.uses(node):
        return any(needs(i.args["stride"], i.args["dilation"]) for i in f.uses(node))
    stride, dilation = const(node.args["stride"]), const(node.args["dilation"])
    return isinstance(stride, (int, tuple)) and isinstance(dilation, (int, tuple)) and needs(stride, dilation)


def _grouping(f, node: G.Layer) -> str:
    """How a conv's groups are written in Keras: 'none' (one group: Conv2D), 'ungrouped' (groups
    from the block's parameters, which every call in the module leaves at 1 whatever build_model()
    is given: Conv2D(groups=...), which a call of the block with other groups also computes right),
    'chosen' (other groups from the block's parameters: conv2d_groups() picks Conv2D,
    DepthwiseConv2D or GroupedConv2D as the model is built, for whatever values build_model() is
    given), 'depthwise' (groups a
    constant and one input channel per group in every use, with one depth multiplier:
    DepthwiseConv2D) or 'grouped' (other constant groups: GroupedConv2D). Keras' own
    Conv2D(groups=g) computes right, but its TensorFlow backend compiles every grouped
    convolution with XLA anew on each call on CPU (MobileNetV2 ran 8x slower than
    keras.applications'); a layer that picks its kernel at run time ran 5% slower than
    Conv2D and DepthwiseConv2D do."""
    groups = node.args["groups"]
    if is_one(groups):
        return "none"
    if not isinstance(groups, G.Const):
        return "ungrouped" if fixed_values(f.m.elab.program, f.owner, groups) == {1} else "chosen"
    if f.uses(node) and all(i.args["groups"] == i.in_shape.channels for i in f.uses(node)) and \
            len({i.args["filters"] // i.args["groups"] for i in f.uses(node)}) == 1:
        return "depthwise"
    return "grouped"


def _padded(f, pad: G.Expr, src: str, dst: str, path: LayerPath, value: str | None = None,
           window: str | None = None) -> str:
    """`dst, paddingN = padded(src, pad, ...)`: the padding chosen as the model is built (see
    common.pad_chosen); returns the local that holds the Keras padding for the layer. window:
    (kernel, strides, dilation) of a convolution subsampled after it (`same` pads here)."""
    f.m.need("Pad2D")
    f.m.need("padded")
    if window:
        f.m.need("SamePad2D")
    var = f.fresh("padding")
    args = [src, f.expr(pad), *([value] if value else []), f"name={path.suffix('pad').code()}",
            *([f"window={window}"] if window else [])]
    f.out.line(Br("padded", args), f"{dst}, {var} = ")
    return var


def _conv_padding(f, node: G.Layer) -> str:
    """'valid', 'same' (where Keras' same pads exactly as the spec says), 'explicit' or 'chosen'
    (same, valid or a size from the parameters, chosen as the model is built)."""
    if pad_chosen(node, f.uses(node)):
        return "chosen"
    insts = f.uses(node)
    if not insts:  # not seen in use: decide from the spec alone
        pad = const(node.args["pad"])
        return "same" if pad == SAME else "valid" if pad in (VALID, 0, (0, 0)) else "explicit"
    if all(i.args["pad"] == SAME for i in insts):
        return "same"
    if all(i.args["pad"] == VALID or i.args["pad"] == (0, 0) for i in insts):
        return "valid"
    if any(isinstance(i.args["pad"], G.Symbol) for i in insts):
        raise ArchError("the padding mixes same/valid and sizes between uses of this layer", node.span)
    if all(_symmetric_same(i) for i in insts):
        return "same"
    return "explicit"


@keras_layer("deconv")
def deconv(f, node: G.Layer, src: str, dst: str, path: LayerPath) -> str:
    """PyTorch's ConvTranspose2d: Keras' Conv2DTranspose at `valid` (the whole transposed
    convolution, (n - 1) * stride + dilation * (kernel - 1) + 1 pixels, and output_padding more
    at the end, zeros before the bias), then a Cropping2D of `pad` on each side: PyTorch's
    output, pixel for pixel. Where Conv2DTranspose refuses the arguments (groups, strides with
    a dilation, an output_padding not smaller than the strides), ConvTranspose2D of
    archdsl/runtime/keras_layers.py computes the same with the padding in it."""
    a = node.args
    e = lambda ex: f.typed(node, ex)
    args = [e(a["filters"]), e(a["kernel"])]
    if not is_one(a["stride"]):
        args.append(f"strides={e(a['stride'])}")
    if _deconv_builtin(f, node):
        if not is_zero(a["output_pad"]) or _deconv_short_kernel(f, node):
            args.append(f"output_padding={e(a['output_pad'])}")
        if not is_one(a["dilation"]):
            args.append(f"dilation_rate={e(a['dilation'])}")
        if not is_true(a["bias"]):
            args.append(f"use_bias={e(a['bias'])}")
        src = f.apply(Br("layers.Conv2DTranspose", [*args, _name(path)]), src, dst)
        if not is_zero(a["pad"]):
            # p or (ph, pw): Cropping2D takes both, as PyTorch's padding
            src = f.apply(Br("layers.Cropping2D", [e(a["pad"]), f"name={path.suffix('crop').code()}"]), src, dst)
        return src
    f.m.need("ConvTranspose2D")
    for key, arg in (("padding", "pad"), ("output_padding", "output_pad")):
        if not is_zero(a[arg]):
            args.append(f"{key}={e(a[arg])}")
    if not is_one(a["dilation"]):
        args.append(f"dilation_rate={e(a['dilation'])}")
    if not is_one(a["groups"]):
        args.append(f"groups={e(a['groups'])}")
    if not is_true(a["bias"]):
        args.append(f"use_bias={e(a['bias'])}")
    return f.apply(Br("ConvTranspose2D", [*args, _name(path)]), src, dst)


def _constant_pair(e: G.Expr) -> tuple | None:
    """A size argument written as constants in the spec (k or [h, w]) as (h, w); None otherwise."""
    if isinstance(e, G.ListE):
        values = tuple(const(i) for i in e.items)
    else:
        v = const(e)
        values = v if isinstance(v, tuple) else (v, v)
    ok = len(values) == 2 and all(isinstance(v, int) and not isinstance(v, bool) for v in values)
    return values if ok else None


def _deconv_values(f, node: G.Layer, *names: str) -> list[tuple] | None:
    """The arguments' normal forms ((h, w) pairs) in each use of a deconv, or, where no use is
    expanded, from the spec's constants alone; None where they are not constants."""
    if f.uses(node):
        return [tuple(i.args[n] for n in names) for i in f.uses(node)]
    values = tuple(_constant_pair(node.args[n]) for n in names)
    return None if None in values else [values]


def _deconv_builtin(f, node: G.Layer) -> bool:
    """Whether Keras' Conv2DTranspose takes a deconv's arguments: one group whatever
    build_model() is given (constant, or a block's parameter that every call leaves at 1), and in
    every use no strides with a dilation, an output_padding smaller than the strides."""
    groups = node.args["groups"]
    if not (is_one(groups) or fixed_values(f.m.elab.program, f.owner, groups) == {1}):
        return False
    values = _deconv_values(f, node, "stride", "dilation", "output_pad")
    return values is not None and all(
        not (max(s) > 1 and max(d) > 1) and all(o < t for o, t in zip(op, s)) for s, d, op in values)


def _deconv_short_kernel(f, node: G.Layer) -> bool:
    """Whether a deconv's dilated kernel may be shorter than its stride: Keras' Conv2DTranspose,
    given no output_padding, then makes the output stride * n pixels, not PyTorch's (n - 1) *
    stride + kernel. Decided from constants where the spec writes them (so every model
    build_model() makes is right), else true (output_padding written out)."""
    a = node.args
    if any(_constant_pair(a[n]) is None for n in ("kernel", "stride", "dilation")):
        return True
    values = _deconv_values(f, node, "kernel", "stride", "dilation")
    return values is None or any(d * (k - 1) + 1 < s for kernel, stride, dilation in values
                                 for k, s, d in zip(kernel, stride, dilation))


@keras_layer("maxpool", "avgpool")
def pool(f, node: G.Layer, src: str, dst: str, path: LayerPath) -> str:
    kind = node.type.name
    a = node.args
    e = lambda ex: f.typed(node, ex)
    name = f"name={path.code()}"
    if all(i.args["kernel"] == GLOBAL for i in f.uses(node)):
        cls = "layers.GlobalMaxPooling2D" if kind == "maxpool" else "layers.GlobalAveragePooling2D"
        return f.apply(Br(cls, ["keepdims=True", name]), src, dst)
    cls = "layers.MaxPooling2D" if kind == "maxpool" else "layers.AveragePooling2D"
    args = [e(a["kernel"])]
    if not (isinstance(a["stride"], G.Const) and a["stride"].value is None):
        args.append(f"strides={e(a['stride'])}")
    if pad_chosen(node, f.uses(node)) and is_false(a["ceil"]) and (kind == "maxpool" or is_true(a["count_pad"])):
        padding = _padded(f, a["pad"], src, dst, path, 'float("-inf")' if kind == "maxpool" else None)
        return f.apply(Br(cls, [*args, f"padding={padding}", name]), dst, dst)
    plan = agreed(node, f.uses(node), lambda i: _pool_plan(i), "the padding this pooling needs in Keras", f.owner_desc(),
                  default=None)
    if plan is None:  # not seen in use: what the spec alone says
        plan = _static_pool_plan(node)
    if plan == "same" and kind == "avgpool" and not all(_even_same(i) for i in f.uses(node)):
        f.m.need("PaddedAvgPool2D")
        return f.apply(Br("PaddedAvgPool2D", [*args, 'padding="same"', name]), src, dst)
    if plan == "same":
        args.append('padding="same"')
    elif plan != "valid":
        pads, value = plan  # type: ignore[misc]
        if value == "zero":
            src = f.apply(Br("layers.ZeroPadding2D", [literal(pads), f"name={path.suffix('pad').code()}"]), src, dst)
        elif value == "-inf":
            f.m.prelude.add("Pad2D")
            src = f.apply(Br("Pad2D", [literal(pads), 'value=float("-inf")',
                                          f"name={path.suffix('pad').code()}"]), src, dst)
        elif isinstance(value, tuple):  # ("counted", pads): the padding that counts in the average
            f.m.need("PaddedAvgPool2D")
            return f.apply(Br("PaddedAvgPool2D", [*args, f"padding={literal(pads)}",
                                                     f"counted={literal(value[1])}", name]), src, dst)
        else:
            raise ArchError(f"{kind}: {value}", node.span)
    return f.apply(Br(cls, [*args, name]), src, dst)


def _constant_floats(e: G.Expr) -> tuple | None:
    """A number or a list of numbers written as constants in the spec."""
    if isinstance(e, G.Const) and isinstance(e.value, (int, float)) and not isinstance(e.value, bool):
        return (float(e.value),)
    if isinstance(e, G.ListE) and all(isinstance(i, G.Const) for i in e.items):
        return tuple(float(i.value) for i in e.items)  # type: ignore[arg-type]
    if isinstance(e, G.Const) and isinstance(e.value, tuple):
        return tuple(float(v) for v in e.value)
    return None


def _static_pool_plan(node: G.Layer):
    """The Keras form of a pooling no use of which is expanded: from constant arguments only."""
    a = node.args
    pad, ceil = const(a["pad"]), const(a["ceil"])
    if pad == SAME:
        return "same"
    if ceil is not False:
        raise ArchError("ceil-mode pooling in a branch no use takes: its Keras padding depends on the input size",
                        node.span)
    if pad in (VALID, 0, (0, 0)):
        return "valid"
    if not isinstance(pad, (int, tuple)):
        raise ArchError("the padding of a pooling in a branch no use takes must be a constant", node.span)
    ph, pw = (pad, pad) if isinstance(pad, int) else pad
    if node.type.name == "maxpool":
        return (((ph, ph), (pw, pw)), "-inf")
    if const(a["count_pad"]) is False:
        return (((ph, ph), (pw, pw)), ("counted", ((0, 0), (0, 0))))
    return (((ph, ph), (pw, pw)), "zero")


def _even_same(inst: G.Inst) -> bool:
    """Whether TensorFlow's `same` pads a pooling alike before and after: Keras' own
    AveragePooling2D(padding="same") then computes it on every backend (its torch backend repeats
    the edge pixels for an uneven padding, and averages them in)."""
    x, kernel = inst.in_shape, inst.args["kernel"]
    stride = inst.args["stride"] or kernel
    return all(n is not None and len(set(same_pads(n, k, s))) == 1
               for n, k, s in zip((x.height, x.width), kernel, stride))


def _symmetric_same(inst: G.Inst) -> bool:
    """Keras' `same` pads (k - 1) / 2 on each side when the stride is 1 and the kernel odd."""
    (kh, kw), (sh, sw), (dh, dw), (ph, pw) = (inst.args["kernel"], inst.args["stride"], inst.args["dilation"],
                                              inst.args["pad"])
    return (sh, sw) == (1, 1) and all(d * (k - 1) % 2 == 0 and p == d * (k - 1) // 2
                                      for k, d, p in ((kh, dh, ph), (kw, dw, pw)))


def _pool_plan(inst: G.Inst):
    """How Keras reproduces a PyTorch pooling on this input: 'valid', 'same', or (pads, value)."""
    a = inst.args
    kernel, stride = a["kernel"], a["stride"] or a["kernel"]
    if a["pad"] == SAME:
        return "same"
    pad = (0, 0) if a["pad"] == VALID else a["pad"]
    x, y = inst.in_shape, inst.out_shape
    needed = []  # (before, after) per axis for the windows PyTorch takes
    for n, o, k, s, p in ((x.height, y.height, kernel[0], stride[0], pad[0]),
                          (x.width, y.width, kernel[1], stride[1], pad[1])):
        if n is None:
            if a["ceil"]:
                return (None, "ceil mode needs the input size known to be written in Keras")
            needed.append((p, p))
            continue
        needed.append((p, max((o - 1) * s + k - n - p, 0)))
    if all(b == 0 and after == 0 for b, after in needed):
        return "valid"
    same_ok = all(n is not None for n in (x.height, x.width))
    if same_ok:
        tf = [same_pads(n, k, s) for n, k, s in ((x.height, kernel[0], stride[0]), (x.width, kernel[1], stride[1]))]
        outs_match = (-(-x.height // stride[0]), -(-x.width // stride[1])) == (y.height, y.width)
        same_ok = outs_match and all(t[0] == nb[0] for t, nb in zip(tf, needed))
    if a.get("count_pad", True) is False or inst.kind == "maxpool":
        # padded pixels must not count (average) or win (max): Keras' same does exactly that
        if same_ok:
            return "same"
        if inst.kind == "maxpool":
            return (tuple(needed), "-inf")
        return (tuple(needed), ("counted", ((0, 0), (0, 0))))  # no padding counts
    # average pooling counting padded zeros: pad with zeros, but PyTorch does not count a ceil-mode overhang
    if any(after > p for (_, after), p in zip(needed, pad)):
        if all(p == 0 for p in pad) and same_ok:
            return "same"
        return (tuple(needed), ("counted", tuple((p, min(after, p)) for (_, after), p in zip(needed, pad))))
    return (tuple(needed), "zero")


def _adaptive_plan(inst: G.Inst):
    (oh, ow), x = inst.args["size"], inst.in_shape
    if x.height is None:
        return "general"
    if (x.height, x.width) == (oh, ow):
        return 1
    if x.height % oh == 0 and x.width % ow == 0:
        return (x.height // oh, x.width // ow)
    return "general"


# Weights: where each Keras layer class these emitters write keeps the PyTorch tensors --------------

def _bias(layer) -> list[tuple[str, str, str]]:
    return [("", "bias", "same")] if getattr(layer, "use_bias", False) else []


@transfer("Conv2D", "conv")
@transfer("GroupedConv2D", "conv")  # the generated code's Conv2D with groups
def _conv_weights(layer) -> list[tuple[str, str, str]]:
    return [("", "weight", "conv"), *_bias(layer)]


@transfer("Conv2DTranspose", "deconv")
@transfer("ConvTranspose2D", "deconv")  # the generated code's transposed convolution with groups
def _deconv_weights(layer) -> list[tuple[str, str, str]]:
    # PyTorch's (in, out / groups, kh, kw) as Keras' (kh, kw, out / groups, in): the conv layout's permutation
    return [("", "weight", "conv"), *_bias(layer)]


@transfer("DepthwiseConv2D", "dwconv", "conv")  # a conv whose groups are its input channels, too
def _depthwise_weights(layer) -> list[tuple[str, str, str]]:
    return [("", "weight", "depthwise"), *_bias(layer)]


@transfer("SeparableConv2D", "sepconv")  # PyTorch: SeparableConv2d's depthwise and pointwise convolutions
def _separable_weights(layer) -> list[tuple[str, str, str]]:
    return [("depthwise", "weight", "depthwise"), ("pointwise", "weight", "conv"),
            *[("pointwise", "bias", "same")] * bool(_bias(layer))]


@transfer("Dense", "dense")
def _dense_weights(layer) -> list[tuple[str, str, str]]:
    return [("", "weight", "dense"), *_bias(layer)]


@transfer("BatchNormalization", "bn")
def _bn_weights(layer) -> list[tuple[str, str, str]]:
    return ([("", "weight", "same")] * bool(layer.scale) + [("", "bias", "same")] * bool(layer.center)
            + [("", "running_mean", "same"), ("", "running_var", "same")])


@transfer("LayerNormalization", "layernorm")
def _layernorm_weights(layer) -> list[tuple[str, str, str]]:
    return [("", "weight", "same"), ("", "bias", "same")]


@transfer("LayerScale", "layerscale")
def _layerscale_weights(layer) -> list[tuple[str, str, str]]:
    return [("", "gamma", "same")]
