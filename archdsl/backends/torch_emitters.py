"""The PyTorch emission of each catalog layer.

Each function is registered against the catalog layers it writes (archdsl/backends/registry.py) and
called by backends/torch.py as `emitter(c, node, cin, inplace)`: c is the class being written (_Class:
its names, expression printing, the module's helpers), node the layer, cin its input's channel
count (a channel expression, common.Code), inplace whether it may overwrite its input. It returns the constructor of the layer's module
(the class's `__init__` assigns it to an attribute, or nests it in a Sequential). The layers that
forward() may apply without a module (activations, flatten) also register a function form. A layer's
output channels come from its catalog entry's rule (torch.py writes them); the keyword arguments of
each registration are what memory planning needs to know of it (registry.TorchFacts).
"""

from __future__ import annotations

from ..core import graph as G
from ..core.layers import GLOBAL, NEAREST, SAME, VALID
from .common import (
    Code,
    Leaf,
    agreed,
    const,
    is_false,
    is_none,
    is_one,
    is_true,
    is_zero,
    literal,
    pad_chosen,
    parsed,
    plus,
    times,
)
from .layout import Br
from .registry import torch_functional, torch_module

# Activations: (module, function) and whether autograd lets them work in place in a trainable model
# (computing their gradient from their result or an in-place-safe formula, as torchvision's
# ReLU/ReLU6/SiLU/Hardswish(inplace=True)); every one of these may in --optimize inference.
_ACTIVATIONS = {
    "relu": ("nn.ReLU", "F.relu({x})", True), "relu6": ("nn.ReLU6", "F.relu6({x})", True),
    "silu": ("nn.SiLU", "F.silu({x})", True), "hardswish": ("nn.Hardswish", "F.hardswish({x})", True),
    "hardsigmoid": ("nn.Hardsigmoid", "F.hardsigmoid({x})", True),
    "tanh": ("nn.Tanh", "torch.tanh({x})", False), "sigmoid": ("nn.Sigmoid", "torch.sigmoid({x})", False),
    "gelu": ("nn.GELU", "F.gelu({x})", False),
}


def _inplace_arg(inplace: bool) -> list[str]:
    return ["inplace=True"] if inplace else []


for _kind, (_module, _function, _training) in _ACTIVATIONS.items():
    def _activation_module(c, node: G.Layer, cin: Code, inplace: bool, module=_module) -> Br:
        return Br(module, _inplace_arg(inplace))

    def _activation_function(c, node: G.Layer, src: str, inplace: bool, function=_function) -> str:
        code = function.format(x=src)
        return code[:-1] + ", inplace=True)" if inplace else code

    torch_module(_kind, inplace_training=_training, inplace_inference=_training)(_activation_module)
    torch_functional(_kind)(_activation_function)


@torch_module("softmax")
def softmax(c, node: G.Layer, cin: Code, inplace: bool) -> str:
    return "nn.Softmax(dim=1)"


@torch_functional("softmax")
def softmax_function(c, node: G.Layer, src: str, inplace: bool) -> str:
    return f"F.softmax({src}, dim=1)"


@torch_module("identity", passes_input=True)
def identity(c, node: G.Layer, cin: Code, inplace: bool) -> str:
    return "nn.Identity()"


@torch_functional("identity")
def identity_function(c, node: G.Layer, src: str, inplace: bool) -> str:
    return src  # nothing to compute: forward() writes no line


@torch_module("flatten")
def flatten(c, node: G.Layer, cin: Code, inplace: bool) -> str:
    return "nn.Flatten()"


@torch_functional("flatten")
def flatten_function(c, node: G.Layer, src: str, inplace: bool) -> str:
    return f"torch.flatten({src}, 1)"


def _nonnegative_slopes(uses: list) -> bool:
    """Autograd's in-place leaky_relu needs a slope >= 0."""
    return bool(uses) and all(isinstance(i.args["slope"], (int, float)) and i.args["slope"] >= 0 for i in uses)


@torch_module("leaky_relu", inplace_training=_nonnegative_slopes, inplace_inference=True)
def leaky_relu(c, node: G.Layer, cin: Code, inplace: bool) -> Br:
    return Br("nn.LeakyReLU", [c.typed(node, node.args["slope"]), *_inplace_arg(inplace)])


@torch_functional("leaky_relu")
def leaky_relu_function(c, node: G.Layer, src: str, inplace: bool) -> str:
    return f"F.leaky_relu({src}, {c.expr(node.args['slope'])}{', inplace=True' if inplace else ''})"


@torch_module("conv", "dwconv", "sepconv", allocates=True, fold_target=True)
def conv(c, node: G.Layer, cin: Code, inplace: bool) -> Br:
    kind = node.type.name
    a = node.args
    e = lambda ex: c.typed(node, ex)
    chosen = pad_chosen(node, c.uses(node))  # same, valid or a size, as build_model()'s parameters say
    same = not chosen and _pad_is(c, node, SAME)
    dynamic = same and _needs_dynamic_same(c, node)
    args: list[str] = [cin, c.layer_cout(node, cin) if kind == "dwconv" else e(a["filters"]), e(a["kernel"])]
    if not is_one(a["stride"]):
        args.append(f"stride={e(a['stride'])}")
    pad = c.expr(a["pad"]) if chosen else _conv_padding(c, node, dynamic)
    if pad is not None:
        args.append(f"padding={pad}")
    if not is_one(a["dilation"]):
        args.append(f"dilation={e(a['dilation'])}")
    if kind == "conv" and not is_one(a["groups"]):
        args.append(f"groups={e(a['groups'])}")
    if kind == "dwconv":
        args.append(f"groups={cin}")
    if kind == "sepconv":
        if not is_one(a["multiplier"]):
            args.append(f"multiplier={e(a['multiplier'])}")
        if dynamic:
            args.append("same=True")
    if not is_true(a["bias"]):
        args.append(f"bias={e(a['bias'])}")
    if kind == "sepconv":  # SeparableConv2d takes padding="same" too
        c.m.need("SeparableConv2d")
        return Br("SeparableConv2d", args)
    if dynamic:
        c.m.need("Conv2dSame")
        return Br("Conv2dSame", args)
    if chosen:
        c.m.need("conv2d")
        return Br("conv2d", args)
    return Br("nn.Conv2d", args)


@torch_module("deconv", allocates=True)
def deconv(c, node: G.Layer, cin: Code, inplace: bool) -> Br:
    """nn.ConvTranspose2d, its arguments in its own order, those at their defaults left out."""
    a = node.args
    e = lambda ex: c.typed(node, ex)
    args: list[str] = [cin, e(a["filters"]), e(a["kernel"])]
    if not is_one(a["stride"]):
        args.append(f"stride={e(a['stride'])}")
    if not is_zero(a["pad"]):
        args.append(f"padding={e(a['pad'])}")
    if not is_zero(a["output_pad"]):
        args.append(f"output_padding={e(a['output_pad'])}")
    if not is_one(a["groups"]):
        args.append(f"groups={e(a['groups'])}")
    if not is_true(a["bias"]):
        args.append(f"bias={e(a['bias'])}")
    if not is_one(a["dilation"]):
        args.append(f"dilation={e(a['dilation'])}")
    return Br("nn.ConvTranspose2d", args)


@torch_module("maxpool", "avgpool", allocates=True)
def pool(c, node: G.Layer, cin: Code, inplace: bool) -> Br | str:
    kind = node.type.name
    a = node.args
    e = lambda ex: c.typed(node, ex)
    if const(a["kernel"]) == GLOBAL:
        return "nn.AdaptiveMaxPool2d(1)" if kind == "maxpool" else "nn.AdaptiveAvgPool2d(1)"
    same = _pad_is(c, node, SAME)
    dynamic = same and _needs_dynamic_same(c, node)
    cls = {"maxpool": "nn.MaxPool2d", "avgpool": "nn.AvgPool2d"}[kind]
    args = [e(a["kernel"])]
    if not is_none(a["stride"]):
        args.append(f"stride={e(a['stride'])}")
    if pad_chosen(node, c.uses(node)):  # same, valid or a size, as build_model()'s parameters say
        helper = {"maxpool": "max_pool2d", "avgpool": "avg_pool2d"}[kind]
        c.m.need(helper)
        args.append(f"padding={c.expr(a['pad'])}")
        if not is_false(a["ceil"]):
            args.append(f"ceil_mode={e(a['ceil'])}")
        if kind == "avgpool" and not is_true(a["count_pad"]):
            args.append(f"count_include_pad={e(a['count_pad'])}")
        return Br(helper, args)
    if dynamic:
        cls = {"maxpool": "MaxPool2dSame", "avgpool": "AvgPool2dSame"}[kind]
        c.m.need(cls)
    elif same:
        args.append(f"padding={_half_kernel(c, node)}")
    elif not _pad_is(c, node, VALID) and not is_zero(a["pad"]):
        args.append(f"padding={e(a['pad'])}")
    if not dynamic and not is_false(a["ceil"]):
        args.append(f"ceil_mode={e(a['ceil'])}")
    if kind == "avgpool" and not dynamic:
        if same:
            args.append("count_include_pad=False")
        elif not is_true(a["count_pad"]):
            args.append(f"count_include_pad={e(a['count_pad'])}")
    return Br(cls, args)


@torch_module("adaptive_avgpool", allocates=True)
def adaptive_avgpool(c, node: G.Layer, cin: Code, inplace: bool) -> Br:
    return Br("nn.AdaptiveAvgPool2d", [c.typed(node, node.args["size"])])


@torch_module("dense", allocates=True)
def dense(c, node: G.Layer, cin: Code, inplace: bool) -> Br:
    a = node.args
    args = [cin, c.typed(node, a["units"])]
    if not is_true(a["bias"]):
        args.append(f"bias={c.typed(node, a['bias'])}")
    return Br("nn.Linear", args)


@torch_module("dropout")
def dropout(c, node: G.Layer, cin: Code, inplace: bool) -> Br:
    rate = node.args["rate"]
    return Br("nn.Dropout", [] if const(rate) == 0.5 else [c.typed(node, rate)])


@torch_module("spatial_dropout")
def spatial_dropout(c, node: G.Layer, cin: Code, inplace: bool) -> Br:
    rate = node.args["rate"]
    return Br("nn.Dropout2d", [] if const(rate) == 0.5 else [c.typed(node, rate)])


@torch_module("dropblock")
def dropblock(c, node: G.Layer, cin: Code, inplace: bool) -> Br | str:
    a = node.args
    if is_zero(a["rate"]):  # in a Sequential, where its place keeps the indices of the modules after it
        return "nn.Identity()"
    c.m.need("DropBlock2d")
    args = [c.typed(node, a["size"]), c.typed(node, a["rate"])]
    if not is_true(a["per_channel"]):  # one mask per sample
        args.append(f"per_channel={c.typed(node, a['per_channel'])}")
    return Br("DropBlock2d", args)


@torch_functional("dropblock")
def dropblock_function(c, node: G.Layer, src: str, inplace: bool) -> str | None:
    # at a rate of the constant 0 it does nothing, and forward() writes nothing for it (as for DropPath)
    return src if is_zero(node.args["rate"]) else None


def _rank(c, node: G.Layer) -> int:
    return agreed(node, c.uses(node), lambda i: i.in_shape.rank, "the input rank", c.owner_desc(), default=3)


@torch_module("bn", allocates=True, fold_source=True)
def bn(c, node: G.Layer, cin: Code, inplace: bool) -> Br:
    a = node.args
    e = lambda ex: c.typed(node, ex)
    rank = _rank(c, node)
    args = [cin]
    if const(a["eps"]) != 1e-5:
        args.append(f"eps={e(a['eps'])}")
    if const(a["momentum"]) != 0.1:
        args.append(f"momentum={e(a['momentum'])}")
    if is_true(a["gamma"]) and is_true(a["beta"]):
        return Br("nn.BatchNorm1d" if rank == 1 else "nn.BatchNorm2d", args)
    if is_false(a["gamma"]) and is_false(a["beta"]):
        return Br("nn.BatchNorm1d" if rank == 1 else "nn.BatchNorm2d", [*args, "affine=False"])
    partial = "PartialBatchNorm1d" if rank == 1 else "PartialBatchNorm2d"
    c.m.need(partial)
    return Br(partial, [*args, f"scale={e(a['gamma'])}", f"center={e(a['beta'])}"])


@torch_module("lrn", allocates=True)
def lrn(c, node: G.Layer, cin: Code, inplace: bool) -> Br:
    a = node.args
    e = lambda ex: c.typed(node, ex)
    return Br("nn.LocalResponseNorm", [e(a["size"]), f"alpha={e(a['alpha'])}", f"beta={e(a['beta'])}",
                                       f"k={e(a['k'])}"])


@torch_module("layernorm", allocates=True)
def layernorm(c, node: G.Layer, cin: Code, inplace: bool) -> Br:
    eps = node.args["eps"]
    args = [cin] if const(eps) == 1e-5 else [cin, f"eps={c.typed(node, eps)}"]
    if _rank(c, node) == 3:
        c.m.need("LayerNorm2d")
        return Br("LayerNorm2d", args)
    return Br("nn.LayerNorm", args)


@torch_module("layerscale", allocates=True)
def layerscale(c, node: G.Layer, cin: Code, inplace: bool) -> Br:
    c.m.need("LayerScale")
    return Br("LayerScale", [cin, c.typed(node, node.args["init"])])


@torch_module("rescale", allocates=True)
def rescale(c, node: G.Layer, cin: Code, inplace: bool) -> Br:
    a = node.args
    c.m.need("Rescale")
    return Br("Rescale", [c.typed(node, a["scale"])] + ([] if is_zero(a["offset"]) else [c.typed(node, a["offset"])]))


@torch_module("normalize", allocates=True)
def normalize(c, node: G.Layer, cin: Code, inplace: bool) -> Br:
    c.m.need("Normalize")
    return Br("Normalize", [c.typed(node, node.args["mean"]), c.typed(node, node.args["std"])])


@torch_module("preprocess", allocates=True)
def preprocess(c, node: G.Layer, cin: Code, inplace: bool) -> Br:
    c.m.need("Preprocess")
    return Br("Preprocess", [c.typed(node, node.args["mode"])])


@torch_module("zeropad_channels", allocates=True)
def zeropad_channels(c, node: G.Layer, cin: Code, inplace: bool) -> Br:
    c.m.need("ChannelPad")
    return Br("ChannelPad", [f"({c.arg_part(node, 'pad', 0)}, {c.arg_part(node, 'pad', 1)})"])


@torch_functional("crop")
def crop_function(c, node: G.Layer, src: str, inplace: bool) -> str | None:
    """To a named tensor's size: center_crop() in forward(), which holds the tensor; else a module."""
    like = _like(c, node)
    if like is None:
        return None
    c.m.need("center_crop")
    return f"center_crop({src}, {like})"


@torch_module("channel_slice")
def channel_slice(c, node: G.Layer, cin: Code, inplace: bool) -> Br:
    c.m.need("ChannelSlice")
    return Br("ChannelSlice", [c.typed(node, node.args["start"]), c.typed(node, node.args["count"])])


@torch_functional("channel_slice")
def channel_slice_function(c, node: G.Layer, src: str, inplace: bool) -> Br:
    start, count = node.args["start"], node.args["count"]
    if isinstance(const(start), int) and isinstance(const(count), int):
        first, end = ("" if const(start) == 0 else str(const(start))), str(const(start) + const(count))
        return Br(src, [":", f"{first}:{end}"], "[", "]")
    first, size = c.int_code(start), c.int_code(count)  # spaced as ruff format writes a slice of expressions
    return Br(src, [":", f": {size}" if const(start) == 0 else f"{first} : {plus(first, size)}"], "[", "]")


def split_part(c, node: G.Layer, cin: Code) -> tuple[Code, Code]:
    """(first channel, channel count) of a split's part as code: a part of equal ones in terms of the
    input's channels, a listed size as the spec writes it (a list, or a parameter's elements), with
    the sums of literals folded."""
    parts, index = node.args["parts"], const(node.args["index"])
    if isinstance(parts, G.ListE):
        sizes = [c.int_code(e) for e in parts.items]
    else:  # a number of equal parts, or sizes given by a parameter (its value in every use, to tell which)
        value = parts.value if isinstance(parts, G.Const) else \
            agreed(node, c.uses(node), lambda i: i.args["parts"], "the split's parts", c.owner_desc())
        if isinstance(value, int):
            n = Leaf(str(value)) if isinstance(parts, G.Const) else c.int_code(parts)
            if str(cin).isdigit() and str(n).isdigit():
                count: Code = Leaf(str(int(str(cin)) // int(str(n))))
                return Leaf(str(index * int(str(count)))), count
            count = parsed(f"{cin.operand(6)} // {n.operand(7)}")
            return (Leaf("0") if index == 0 else count if index == 1 else times(Leaf(str(index)), count)), count
        whole = c.leaf(parts)
        sizes = [Leaf(str(v)) if isinstance(parts, G.Const) else Leaf(f"{whole.operand(9)}[{i}]")
                 for i, v in enumerate(value)]  # type: ignore[arg-type]
    before = sizes[:index]
    if all(str(size).isdigit() for size in before):
        return Leaf(str(sum(int(str(size)) for size in before))), sizes[index]
    return plus(*before), sizes[index]


@torch_module("split")
def split(c, node: G.Layer, cin: Code, inplace: bool) -> Br:
    c.m.need("ChannelSlice")
    return Br("ChannelSlice", [str(code) for code in split_part(c, node, cin)])


@torch_module("crop")
def crop(c, node: G.Layer, cin: Code, inplace: bool) -> Br:
    c.m.need("Crop2d")
    t, b, left, r = c.sides(node, "crop")
    return Br("Crop2d", [f"({t}, {b}, {left}, {r})"])


@torch_module("zeropad", allocates=True)
def zeropad(c, node: G.Layer, cin: Code, inplace: bool) -> Br:
    t, b, left, r = c.sides(node, "pad")
    return Br("nn.ZeroPad2d", [f"({left}, {r}, {t}, {b})"])


@torch_module("upsample", allocates=True)
def upsample(c, node: G.Layer, cin: Code, inplace: bool) -> Br:
    a = node.args
    size = f"size={c.typed(node, a['size'])}" if not is_none(a["size"]) else f"scale_factor={c.typed(node, a['factor'])}"
    return Br("nn.Upsample", [size, *_interpolation(c, node)])


@torch_functional("upsample")
def upsample_function(c, node: G.Layer, src: str, inplace: bool) -> Br | None:
    """To a named tensor's size: F.interpolate in forward(), which holds the tensor; else a module."""
    like = _like(c, node)
    if like is None:
        return None
    return Br("F.interpolate", [src, f"size={like}.shape[-2:]", *_interpolation(c, node)])


def _like(c, node: G.Layer) -> str | None:
    """The variable of the named tensor a layer takes its size from (`like = t`), if it takes one."""
    like = node.args["like"]
    return c.tensors[like.name][0] if isinstance(like, G.TensorRef) else None


def _interpolation(c, node: G.Layer) -> list[str]:
    mode = node.args["mode"]
    if const(mode) == NEAREST:
        return []
    return [f"mode={c.typed(node, mode)}", f"align_corners={c.typed(node, node.args['align_corners'])}"]


@torch_module("channel_shuffle")
def channel_shuffle(c, node: G.Layer, cin: Code, inplace: bool) -> Br:
    return Br("nn.ChannelShuffle", [c.typed(node, node.args["groups"])])


# padding

def _pad_is(c, node: G.Layer, symbol) -> bool:
    uses = c.uses(node)
    if not uses:
        return const(node.args["pad"]) == symbol
    return all(i.args.get("pad") == symbol for i in uses)


def _needs_dynamic_same(c, node: G.Layer) -> bool:
    """TensorFlow's `same` is symmetric only for stride 1 and an odd (dilated) kernel."""
    uses = c.uses(node)
    if not uses:
        return True  # not seen in use: the general form
    for inst in uses:
        (kh, kw), stride = inst.args["kernel"], inst.args.get("stride") or inst.args["kernel"]
        dh, dw = inst.args.get("dilation", (1, 1))
        if stride != (1, 1) or (dh * (kh - 1)) % 2 or (dw * (kw - 1)) % 2:
            return True
    return False


def _half_kernel(c, node: G.Layer) -> str:
    pads = agreed(node, c.uses(node), lambda i: tuple((k - 1) // 2 for k in i.args["kernel"]), "the padding",
                  c.owner_desc())
    return literal(pads[0] if pads[0] == pads[1] else pads)  # type: ignore[index]


def _conv_padding(c, node: G.Layer, dynamic: bool) -> str | None:
    pad = node.args["pad"]
    if dynamic or _pad_is(c, node, VALID) or is_zero(pad):
        return None
    if _pad_is(c, node, SAME):
        return '"same"'
    return c.typed(node, pad)  # an integral float (`pad = 1.0`) as an integer


