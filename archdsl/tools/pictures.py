"""Pictures of what a network's layers see (`archdsl inspect --pictures DIR`) and the plot of the
inspection's statistics along the depth (`archdsl inspect --plot FILE`).

- filters.png: the first convolution's filters, one tile each, in a grid of ceil(sqrt(n)) columns. A
  filter over 3 input channels is shown in colour (its RGB weights), any other as the mean over its
  input channels in gray; each tile is scaled to its own minimum (black) and maximum (white), and each
  weight is a square of max(1, 64 // k) pixels for a k x k kernel.
- features-PATH.png: the output of the layer at PATH for the first input of the batch, one tile per
  channel (the first 64), each map scaled to its own minimum (black) and maximum (white), each value a
  square of max(1, 64 // max(H, W)) pixels (Chollet's "intermediate activations").
- occlusion-CLASS.png: ZFNet's occlusion sensitivity (Zeiler and Fergus, 2014, figure 7): a square patch
  of the image's mean colour slides over the first input (side `patch`, stride patch // 2); the heat
  map gives, at each pixel, the class's probability (softmax of the output, or the output of a final
  softmax) averaged over the patch positions that cover the pixel: low (blue) where hiding the pixels
  lowers the class's probability, high (red) where it does not. The picture (matplotlib, OCCLUSION_SIZE
  pixels) has three panels: the input with the class's probability; the map in absolute probabilities
  (0 blue, 1 red, with its colour scale: ZFNet's figure); and the same map stretched to its own range
  (its minimum blue, its maximum red), which shows where the network looks even when no patch moves the
  probability much (the range is in its title and printed with the file's name).

The model runs in eval mode for the pictures, with the weights it was inspected with (the running
statistics of its batch norms as they were before the inspection's batch). Tiles are separated and
framed by 2 pixels of gray (128). Drawn with Pillow and numpy only; the plot
needs matplotlib. torch is imported only when a function here runs.
"""

from __future__ import annotations

import math
import os

import numpy as np

from ..language.errors import ArchError

GAP = 2
BACKGROUND = 128
MAX_MAPS = 64
# The heat map's colours: probability 0, 0.25, 0.5, 0.75, 1 (blue, cyan, green-yellow, orange, red).
OCCLUSION_SIZE = (960, 330)  # pixels of the occlusion picture


def _pil():
    try:
        from PIL import Image
    except ImportError:
        raise ArchError("pictures need Pillow: pip install 'archdsl[inspect]'") from None
    return Image


def _unit(a: np.ndarray) -> np.ndarray:
    """Scaled to 0..1 by its own minimum and maximum (a constant array: 0)."""
    lo, hi = float(a.min()), float(a.max())
    return (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a, dtype=np.float64)


def grid(tiles: list[np.ndarray], scale: int) -> np.ndarray:
    """Tiles (H x W gray or H x W x 3 colour, values 0..1, all of one size) in a grid of ceil(sqrt(n))
    columns, each value a scale x scale square, GAP pixels of gray between and around: uint8 RGB."""
    n = len(tiles)
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    h, w = tiles[0].shape[:2]
    th, tw = h * scale, w * scale
    out = np.full((rows * (th + GAP) + GAP, cols * (tw + GAP) + GAP, 3), BACKGROUND, dtype=np.uint8)
    for i, tile in enumerate(tiles):
        rgb = tile if tile.ndim == 3 else np.repeat(tile[..., None], 3, axis=2)
        big = np.kron(rgb, np.ones((scale, scale, 1)))
        r, c = divmod(i, cols)
        y, x = GAP + r * (th + GAP), GAP + c * (tw + GAP)
        out[y:y + th, x:x + tw] = np.clip(np.round(big * 255), 0, 255).astype(np.uint8)
    return out


def filters_picture(weight: np.ndarray) -> np.ndarray:
    """The filters of a convolution (out, in, kh, kw) as a grid (see the module's docstring)."""
    if weight.ndim != 4:
        raise ArchError(f"filters: a convolution's weight has 4 dimensions, this one {weight.ndim}")
    tiles = []
    for f in weight:
        tiles.append(_unit(f.transpose(1, 2, 0)) if f.shape[0] == 3 else _unit(f.mean(axis=0)))
    return grid(tiles, max(1, 64 // max(weight.shape[2:])))


def feature_picture(maps: np.ndarray) -> np.ndarray:
    """One sample's feature maps (C, H, W) as a grid of the first MAX_MAPS channels."""
    if maps.ndim != 3:
        raise ArchError(f"feature maps are [channels, height, width]; this output is {list(maps.shape)}")
    return grid([_unit(m) for m in maps[:MAX_MAPS]], max(1, 64 // max(maps.shape[1:])))


def probabilities(model, x, final_softmax: bool):
    """The class probabilities of the model's first output for a batch x (eval mode, no gradient)."""
    import torch

    with torch.no_grad():
        out = model(x)
    out = out[0] if isinstance(out, (tuple, list)) else out
    if out.dim() != 2 or out.shape[1] < 2:
        raise ArchError(f"occlusion: the network's output {list(out.shape[1:])} is not a vector of class scores")
    return out if final_softmax else torch.softmax(out, dim=1)


def occlusion(model, image, cls: int, patch: int, final_softmax: bool, chunk: int = 256) -> tuple[np.ndarray, float]:
    """ZFNet's occlusion map of one image (C, H, W) for class `cls`: per pixel, the class probability
    averaged over the positions of the patch (of the image's mean colour, stride patch // 2) that cover
    it; and the probability of the unoccluded image."""
    import torch

    model.eval()
    _c, h, w = image.shape
    if not 1 <= patch <= min(h, w):
        raise ArchError(f"--patch must be between 1 and {min(h, w)} for a {h}x{w} input, got {patch}")
    stride = max(1, patch // 2)
    ys = list(range(0, h - patch + 1, stride))
    xs = list(range(0, w - patch + 1, stride))
    if ys[-1] != h - patch:
        ys.append(h - patch)
    if xs[-1] != w - patch:
        xs.append(w - patch)
    fill = image.mean(dim=(1, 2), keepdim=True)
    positions = [(y, x) for y in ys for x in xs]
    probs = []
    for start in range(0, len(positions), chunk):
        batch = image.unsqueeze(0).repeat(len(positions[start:start + chunk]), 1, 1, 1)
        for i, (y, x) in enumerate(positions[start:start + chunk]):
            batch[i, :, y:y + patch, x:x + patch] = fill
        p = probabilities(model, batch, final_softmax)
        if not 0 <= cls < p.shape[1]:
            raise ArchError(f"--occlusion: class {cls} is not among the network's {p.shape[1]} outputs")
        probs.append(p[:, cls])
    probs = torch.cat(probs).numpy().astype(np.float64)
    total = np.zeros((h, w))
    count = np.zeros((h, w))
    for p, (y, x) in zip(probs, positions):
        total[y:y + patch, x:x + patch] += p
        count[y:y + patch, x:x + patch] += 1
    base = float(probabilities(model, image.unsqueeze(0), final_softmax)[0, cls])
    return total / count, base


def occlusion_picture(image: np.ndarray, sensitivity: np.ndarray, cls: int, base: float, patch: int,
                      path: str) -> None:
    """ZFNet's figure, as a PNG at path: the image (C, H, W; gray or RGB, scaled by its own range), the
    class's probability with the patch centred over each pixel (0 to 1, with a colour scale), and the
    same map stretched to its own range, where a confident network's small drops show."""
    plt = _pyplot("occlusion pictures")
    picture = _unit(image.transpose(1, 2, 0)) if image.shape[0] == 3 else _unit(image.mean(axis=0))
    fig, axes = plt.subplots(1, 3, figsize=(OCCLUSION_SIZE[0] / 100, OCCLUSION_SIZE[1] / 100))
    axes[0].imshow(picture, cmap=None if picture.ndim == 3 else "gray")
    axes[0].set_title(f"input: P(class {cls}) = {base:.3f}", fontsize=9)
    shown = axes[1].imshow(sensitivity, cmap="jet", vmin=0.0, vmax=1.0)
    axes[1].set_title(f"P(class {cls}), the {patch}x{patch} patch there", fontsize=9)
    fig.colorbar(shown, ax=axes[1], fraction=0.046, pad=0.04)
    stretched = axes[2].imshow(sensitivity, cmap="jet")
    axes[2].set_title(f"the same, {sensitivity.min():.3f} to {sensitivity.max():.3f}", fontsize=9)
    fig.colorbar(stretched, ax=axes[2], fraction=0.046, pad=0.04)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=100)
    except OSError as e:
        raise ArchError(f"cannot write '{path}': {e.strerror or e}") from None
    finally:
        plt.close(fig)


def _pyplot(what: str):
    """matplotlib's pyplot on its file-only backend, or an error saying what to install."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ArchError(f"{what} need matplotlib: pip install 'archdsl[inspect]'") from None
    return plt


def save_png(pixels: np.ndarray, path: str) -> None:
    Image = _pil()
    try:
        Image.fromarray(pixels, "RGB").save(path, format="PNG")
    except OSError as e:
        raise ArchError(f"cannot write '{path}': {e.strerror or e}") from None


def file_name(path: str) -> str:
    """A layer path as part of a file name (dots kept, anything odd replaced)."""
    return "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in path) or "input"


def plot(result, path: str) -> None:
    """The inspection's statistics along the depth, three panels over the layers in order: the activations'
    std and signal (log scale; the layers flagged vanishing or exploding circled), the fractions of zeros,
    dead units and saturated outputs, and the gradient norm and gradient / weight norm of the layers with
    parameters (log scale; the layers flagged for their gradient circled).
    PNG or SVG, from the suffix of path."""
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in (".png", ".svg"):
        raise ArchError(f"--plot: write a .png or .svg file, not '{path}'")
    plt = _pyplot("--plot")
    layers = result.layers
    idx = np.arange(len(layers))

    def series(attr):
        return np.array([np.nan if getattr(s, attr) is None else getattr(s, attr) for s in layers], dtype=float)

    fig, axes = plt.subplots(3, 1, figsize=(max(8.0, min(24.0, 0.18 * len(layers) + 4)), 9), sharex=True)
    ax = axes[0]
    for attr, label in (("std", "std"), ("signal", "signal (spread across the batch)")):
        v = series(attr)
        v[v <= 0] = np.nan
        ax.plot(idx, v, marker=".", label=label)
    flagged = [i for i, s in enumerate(layers) if {"vanishing", "exploding"} & set(s.flags) and s.signal]
    if flagged:
        ax.scatter(flagged, [layers[i].signal for i in flagged], s=80, facecolors="none", edgecolors="red",
                   label="flagged: vanishing or exploding")
    ax.set_yscale("log")
    ax.set_ylabel("activations")
    ax.legend(loc="best", fontsize=8)
    ax = axes[1]
    for attr in ("zeros", "dead", "saturated"):
        v = series(attr)
        if not np.all(np.isnan(v)):
            ax.plot(idx, v, marker=".", linestyle="none" if attr == "saturated" else "-", label=attr)
    ax.set_ylim(-0.05, 1.05)
    ax.set_ylabel("fraction")
    ax.legend(loc="best", fontsize=8)
    ax = axes[2]
    grad, weight = series("grad_norm"), series("weight_norm")
    has = ~np.isnan(grad) & (grad > 0)
    if has.any():
        ax.plot(idx[has], grad[has], marker=".", label="grad norm")
        ax.plot(idx[has], (grad / weight)[has], marker=".", label="grad norm / weight norm")
        marked = [i for i, s in enumerate(layers) if has[i] and any(f.endswith("gradient") for f in s.flags)]
        if marked:
            ax.scatter(marked, [grad[i] / weight[i] for i in marked], s=80, facecolors="none", edgecolors="red",
                       label="flagged: vanishing or exploding gradient")
        ax.set_yscale("log")
        ax.legend(loc="best", fontsize=8)
    ax.set_ylabel("gradients")
    step = max(1, math.ceil(len(layers) / 60))
    ax.set_xticks(idx[::step])
    ax.set_xticklabels([s.path for s in layers][::step], rotation=90, fontsize=6)
    fig.suptitle(f"network {result.network}: {result.input}, {result.mode} mode", fontsize=10)
    fig.tight_layout()
    try:
        fig.savefig(path)
    except OSError as e:
        raise ArchError(f"cannot write '{path}': {e.strerror or e}") from None
    finally:
        plt.close(fig)


def default_feature_layers(table) -> list[str]:
    """The layers whose feature maps `--pictures` draws when none are named: the first, a middle and the
    last convolution with an output of at least 4x4, each taken after its activation where one follows."""
    convs = [i for i, s in enumerate(table) if s.layer in ("conv", "dwconv", "sepconv", "deconv")
             and len(s.output_shape) == 3 and None not in s.output_shape and min(s.output_shape[1:]) >= 4]
    if not convs:
        return []
    chosen = sorted({convs[0], convs[len(convs) // 2], convs[-1]})
    out = []
    for i in chosen:
        nxt = table[i + 1] if i + 1 < len(table) else None
        if nxt is not None and nxt.layer in ("relu", "relu6", "tanh", "sigmoid", "silu", "swish", "hardswish",
                                             "gelu", "leaky_relu", "bn"):
            i += 1
            after = table[i + 1] if i + 1 < len(table) else None
            if table[i].layer == "bn" and after is not None and after.layer in ("relu", "relu6", "silu", "hardswish"):
                i += 1
        out.append(table[i].path)
    return out


def first_convolution(model, table):
    """The path and weight (out, in, kh, kw) of the first convolution that is a module with such a weight."""
    modules = dict(model.named_modules())
    for s in table:
        module = modules.get(s.path) if s.path else None
        weight = getattr(module, "weight", None)
        if s.layer in ("conv", "dwconv", "sepconv", "deconv") and weight is not None and weight.dim() == 4:
            return s.path, weight.detach().cpu().numpy()
    raise ArchError("filters: the network has no convolution module with a 4-d weight")


def write_pictures(result, model, elab, x, directory: str, layers: list[str] | None = None,
                   cls: int | None = None, patch: int | None = None) -> list[tuple[str, str]]:
    """Write filters.png, features-PATH.png for each layer, and occlusion-CLASS.png (for a classifier)
    under directory, from the first input of batch x. Returns (file, what it shows) for each file."""
    from .inspection import capture, softmax_outputs

    if not os.path.isdir(directory):
        try:
            os.makedirs(directory)
        except OSError as e:
            raise ArchError(f"--pictures: cannot create '{directory}': {e.strerror or e}") from None
    written = []
    conv_path, weight = first_convolution(model, result.layers)
    name = os.path.join(directory, "filters.png")
    save_png(filters_picture(weight), name)
    written.append((name, f"the {weight.shape[0]} filters of {conv_path} ({weight.shape[2]}x{weight.shape[3]})"))
    layers = default_feature_layers(result.layers) if layers is None else layers
    sample = x[:1]
    maps = capture(model, elab, sample, layers)
    for path in layers:
        out = maps[path][0].numpy()
        name = os.path.join(directory, f"features-{file_name(path)}.png")
        save_png(feature_picture(out), name)
        written.append((name, (f"the output of {path}, {min(out.shape[0], MAX_MAPS)} of {out.shape[0]} maps "
                              f"{out.shape[1]}x{out.shape[2]}")))
    final_softmax = (softmax_outputs(elab, training=False) or [False])[0]
    first = next((inst for name, inst in elab.outputs if name not in set(elab.auxiliary)), None)
    out_shape = list(first.out_shape.dims) if first is not None else []
    if cls is not None or (len(out_shape) == 1 and (out_shape[0] or 0) >= 2 and x.dim() == 4):
        if x.dim() != 4:
            raise ArchError("--occlusion: the network's input is not an image")
        image = x[0]
        if cls is None:
            cls = int(probabilities(model.eval(), sample, final_softmax)[0].argmax())
        side = patch or max(1, round(min(image.shape[1:]) / 4))
        sensitivity, base = occlusion(model, image, cls, side, final_softmax)
        name = os.path.join(directory, f"occlusion-{cls}.png")
        occlusion_picture(image.numpy(), sensitivity, cls, base, side, name)
        written.append((name, (f"class {cls}: probability {base:.3g} unoccluded, {sensitivity.min():.3g} to "
                              f"{sensitivity.max():.3g} with the {side}x{side} patch over it")))
    return written
