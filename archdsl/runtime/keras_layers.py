"""The Keras layers that generated Keras models use where Keras has no built-in layer that computes
what PyTorch does, registered for saving under the package name "archdsl" (`archdsl>Pad2D`, ...).

This module is the one source of these classes: the Keras backend copies the source of each class a
model needs into the generated module (archdsl.backends.keras reads this file as text; the compiler
never imports it), so generated code runs without archdsl installed. Importing this module registers
the classes with Keras, so a saved model loads in a process that never imported its generated
module:

    import keras
    import archdsl.runtime.keras_layers  # noqa: F401 (registers archdsl>Pad2D, ...)

    model = keras.saving.load_model("model.keras")

Every layer uses keras.ops only, so it runs on each Keras backend (TensorFlow, JAX, PyTorch), and
its get_config() returns every constructor argument. Channels last throughout.
"""

from __future__ import annotations

import keras
from keras import layers, ops

__all__ = [
    "AdaptiveAvgPool2D",
    "CenterCrop2D",
    "ChannelPad",
    "ChannelShuffle",
    "ChannelSlice",
    "ChannelSplit",
    "ConvTranspose2D",
    "DropBlock2D",
    "GroupedConv2D",
    "Interpolate2D",
    "LayerScale",
    "LeakyReLUAnySlope",
    "LocalResponseNorm",
    "Pad2D",
    "PaddedAvgPool2D",
    "Preprocess",
    "SamePad2D",
]


@keras.saving.register_keras_serializable(package="archdsl")
class Pad2D(layers.Layer):
    """Pads height and width with a constant: ((top, bottom), (left, right)), channels last."""

    def __init__(self, padding, value: float = 0.0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.padding = tuple(tuple(p) for p in padding)
        self.value = value

    def call(self, x):
        (top, bottom), (left, right) = self.padding
        return ops.pad(
            x,
            [[0, 0], [top, bottom], [left, right], [0, 0]],
            constant_values=self.value,
        )

    def compute_output_shape(self, shape):
        (top, bottom), (left, right) = self.padding
        h = None if shape[1] is None else shape[1] + top + bottom
        w = None if shape[2] is None else shape[2] + left + right
        return (shape[0], h, w, shape[3])

    def get_config(self):
        return {**super().get_config(), "padding": self.padding, "value": self.value}


@keras.saving.register_keras_serializable(package="archdsl")
class SamePad2D(layers.Layer):
    """Pads height and width with zeros as TensorFlow's `same` does for a window of kernel_size
    taps dilation_rate apart moved by strides (the bottom/right side gets the odd pixel), from the
    input's size as it comes: for a layer that then computes at stride 1 without padding, and a
    subsampling that takes every stride-th output (Keras refuses strides and dilation together)."""

    def __init__(self, kernel_size, strides=1, dilation_rate=1, **kwargs) -> None:
        super().__init__(**kwargs)
        self.kernel_size, self.strides, self.dilation_rate = (
            tuple(v) if isinstance(v, (tuple, list)) else (v, v)
            for v in (kernel_size, strides, dilation_rate)
        )

    def _pads(self, sizes):
        """((top, bottom), (left, right)): (ceil(n / s) - 1) * s + (k - 1) * d + 1 - n
        pixels in all, at least none, for each size n (an int, or a tensor where the
        size is known only as the model runs)."""
        pads = []
        windows = zip(self.kernel_size, self.strides, self.dilation_rate)
        for n, (k, s, d) in zip(sizes, windows):
            total = (k - 1) * d - (n - 1) % s
            total = max(total, 0) if isinstance(total, int) else ops.maximum(total, 0)
            pads.append([total // 2, total - total // 2])
        return pads

    def call(self, x):
        shape = ops.shape(x)
        sizes = [shape[1] if x.shape[1] is None else x.shape[1]]
        sizes.append(shape[2] if x.shape[2] is None else x.shape[2])
        return ops.pad(x, [[0, 0], *self._pads(sizes), [0, 0]])

    def compute_output_shape(self, shape):
        if shape[1] is None or shape[2] is None:
            return (shape[0], None, None, shape[3])
        (t, b), (left, r) = self._pads(shape[1:3])
        return (shape[0], shape[1] + t + b, shape[2] + left + r, shape[3])

    def get_config(self):
        config = {
            "kernel_size": self.kernel_size,
            "strides": self.strides,
            "dilation_rate": self.dilation_rate,
        }
        return {**super().get_config(), **config}


@keras.saving.register_keras_serializable(package="archdsl")
class PaddedAvgPool2D(layers.Layer):
    """Average pooling as PyTorch computes it over a padding: the input padded with zeros, each
    window's sum divided by the number of its cells that count: the input's own, and of the
    padding only the part in `counted` (PyTorch counts the padding it was given when
    count_include_pad is true, never the overhang that ceil mode adds after it). `padding` is
    ((top, bottom), (left, right)), or "same": TensorFlow's (the odd pixel after), from the
    input's size, none of it counted (Keras' torch backend averages repeated edge pixels into an
    uneven `same` of AveragePooling2D)."""

    def __init__(
        self,
        pool_size,
        strides=None,
        padding=((0, 0), (0, 0)),
        counted=((0, 0), (0, 0)),
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        strides = pool_size if strides is None else strides
        self.pool_size, self.strides = (
            tuple(v) if isinstance(v, (tuple, list)) else (v, v)
            for v in (pool_size, strides)
        )
        self.padding = (
            padding if padding == "same" else tuple(tuple(p) for p in padding)
        )
        self.counted = tuple(tuple(p) for p in counted)

    def _pads(self, sizes):
        if self.padding != "same":
            return self.padding
        pads = []
        for n, k, s in zip(sizes, self.pool_size, self.strides):
            total = max(k - 1 - (n - 1) % s, 0)
            pads.append((total // 2, total - total // 2))
        return tuple(pads)

    def call(self, x):
        padding = self._pads(x.shape[1:3])
        options = {"pool_size": self.pool_size, "strides": self.strides}
        total = ops.average_pool(ops.pad(x, [[0, 0], *padding, [0, 0]]), **options)
        ones = ops.pad(
            ops.ones_like(x[:1, :, :, :1]),
            [[0, 0], *self.counted, [0, 0]],
            constant_values=1.0,
        )
        rest = [[b - cb, a - ca] for (b, a), (cb, ca) in zip(padding, self.counted)]
        ones = ops.pad(ones, [[0, 0], *rest, [0, 0]])
        return total / ops.average_pool(ones, **options)

    def compute_output_shape(self, shape):
        if self.padding == "same":
            return (
                shape[0],
                *(
                    None if n is None else -(-n // s)
                    for n, s in zip(shape[1:3], self.strides)
                ),
                shape[3],
            )
        sizes = []
        for n, (before, after), k, s in zip(
            shape[1:3], self.padding, self.pool_size, self.strides
        ):
            sizes.append(None if n is None else (n + before + after - k) // s + 1)
        return (shape[0], *sizes, shape[3])

    def get_config(self):
        config = {
            "pool_size": self.pool_size,
            "strides": self.strides,
            "padding": self.padding,
            "counted": self.counted,
        }
        return {**super().get_config(), **config}


@keras.saving.register_keras_serializable(package="archdsl")
class ChannelPad(layers.Layer):
    """Adds (before, after) zero channels, channels last."""

    def __init__(self, pad, **kwargs) -> None:
        super().__init__(**kwargs)
        self.pad = tuple(pad)

    def call(self, x):
        return ops.pad(x, [[0, 0]] * (len(x.shape) - 1) + [list(self.pad)])

    def compute_output_shape(self, shape):
        return (*shape[:-1], shape[-1] + sum(self.pad))

    def get_config(self):
        return {**super().get_config(), "pad": self.pad}


@keras.saving.register_keras_serializable(package="archdsl")
class ChannelShuffle(layers.Layer):
    """ShuffleNet's channel shuffle, as PyTorch's nn.ChannelShuffle: the channels, read as
    [groups, channels / groups], transposed (output channel j * groups + i is input channel
    i * channels / groups + j); channels last."""

    def __init__(self, groups, **kwargs) -> None:
        super().__init__(**kwargs)
        self.groups = groups

    def call(self, x):
        shape = ops.shape(x)
        channels = x.shape[-1]
        x = ops.reshape(
            x, (-1, shape[1], shape[2], self.groups, channels // self.groups)
        )
        x = ops.transpose(x, (0, 1, 2, 4, 3))
        return ops.reshape(x, (-1, shape[1], shape[2], channels))

    def compute_output_shape(self, shape):
        return shape

    def get_config(self):
        return {**super().get_config(), "groups": self.groups}


@keras.saving.register_keras_serializable(package="archdsl")
class ChannelSlice(layers.Layer):
    """Channels start to start + count - 1 of its input (one part of a split), channels last."""

    def __init__(self, start, count, **kwargs) -> None:
        super().__init__(**kwargs)
        self.start, self.count = start, count

    def call(self, x):
        return x[..., self.start : self.start + self.count]

    def compute_output_shape(self, shape):
        return (*shape[:-1], self.count)

    def get_config(self):
        return {**super().get_config(), "start": self.start, "count": self.count}


@keras.saving.register_keras_serializable(package="archdsl")
class ChannelSplit(layers.Layer):
    """Part `index` (from 0) of a split of the channels into `parts`: a number of equal parts, or a
    list of their sizes; channels last."""

    def __init__(self, parts, index, **kwargs) -> None:
        super().__init__(**kwargs)
        self.parts, self.index = parts, index

    def _bounds(self, channels):
        if isinstance(self.parts, (list, tuple)):
            sizes = list(self.parts)
        else:
            sizes = [channels // self.parts] * self.parts
        return sum(sizes[: self.index]), sizes[self.index]

    def call(self, x):
        start, count = self._bounds(x.shape[-1])
        return x[..., start : start + count]

    def compute_output_shape(self, shape):
        return (*shape[:-1], self._bounds(shape[-1])[1])

    def get_config(self):
        return {**super().get_config(), "parts": self.parts, "index": self.index}


@keras.saving.register_keras_serializable(package="archdsl")
class CenterCrop2D(layers.Layer):
    """Crops its first input at the centre to the height and width of its second: (excess // 2)
    rows and columns before, the rest after (the U-Net paper's crop before a concatenation)."""

    def call(self, inputs):
        x, reference = inputs
        sizes = [
            (n if n is not None else ops.shape(t)[axis])
            for t in (x, reference)
            for axis, n in ((1, t.shape[1]), (2, t.shape[2]))
        ]
        (height_in, width_in, height, width) = sizes
        top, left = (height_in - height) // 2, (width_in - width) // 2
        return x[:, top : top + height, left : left + width, :]

    def compute_output_shape(self, shape):
        (batch, _, _, channels), (_, height, width, _) = shape
        return (batch, height, width, channels)


@keras.saving.register_keras_serializable(package="archdsl")
class GroupedConv2D(layers.Conv2D):
    """Conv2D with groups (the same weights), computed without XLA: Keras' TensorFlow backend
    compiles each grouped convolution with XLA anew on every call on CPU. A use whose groups are
    single input channels runs as a depthwise convolution, any other as one convolution per group."""

    def convolution_op(self, inputs, kernel):
        options = {
            "strides": self.strides,
            "padding": self.padding,
            "dilation_rate": self.dilation_rate,
        }
        channels = inputs.shape[-1]
        if self.groups == 1:
            return ops.conv(inputs, kernel, **options)
        if self.groups == channels:
            shape = (*self.kernel_size, channels, self.filters // channels)
            return ops.depthwise_conv(inputs, ops.reshape(kernel, shape), **options)
        pairs = zip(
            ops.split(inputs, self.groups, axis=-1),
            ops.split(kernel, self.groups, axis=-1),
        )
        return ops.concatenate([ops.conv(x, k, **options) for x, k in pairs], axis=-1)


@keras.saving.register_keras_serializable(package="archdsl")
class ConvTranspose2D(layers.Layer):
    """A transposed convolution as PyTorch's ConvTranspose2d computes it, for what Keras'
    Conv2DTranspose refuses: groups (one transposed convolution per group, each with its slice
    of one kernel of shape (kh, kw, filters // groups, input channels)), strides with a
    dilation, an output_padding not smaller than the strides. Along each axis: the whole
    transposed convolution, (n - 1) * stride + dilation * (kernel - 1) + 1 pixels, with
    `padding` cropped from each side and `output_padding` added at the end (zeros where it
    reaches past the whole), then the bias."""

    def __init__(
        self,
        filters,
        kernel_size,
        strides=1,
        padding=0,
        output_padding=0,
        dilation_rate=1,
        groups=1,
        use_bias=True,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.filters, self.groups, self.use_bias = filters, groups, use_bias
        pairs = (kernel_size, strides, padding, output_padding, dilation_rate)
        (
            self.kernel_size,
            self.strides,
            self.padding,
            self.output_padding,
            self.dilation_rate,
        ) = (tuple(v) if isinstance(v, (tuple, list)) else (v, v) for v in pairs)

    def build(self, shape):
        self.kernel = self.add_weight(
            shape=(*self.kernel_size, self.filters // self.groups, shape[-1]),
            initializer="glorot_uniform",
            name="kernel",
        )
        if self.use_bias:
            self.bias = self.add_weight(
                shape=(self.filters,), initializer="zeros", name="bias"
            )

    def call(self, x):
        options = {
            "strides": self.strides,
            "padding": "valid",
            "output_padding": 0,
            "dilation_rate": self.dilation_rate,
        }
        if self.groups == 1:
            y = ops.conv_transpose(x, self.kernel, **options)
        else:
            pairs = zip(
                ops.split(x, self.groups, axis=-1),
                ops.split(self.kernel, self.groups, axis=-1),
            )
            y = ops.concatenate(
                [ops.conv_transpose(xg, k, **options) for xg, k in pairs], axis=-1
            )
        (ph, pw), (oh, ow) = self.padding, self.output_padding
        if oh > ph or ow > pw:
            y = ops.pad(y, [[0, 0], [0, max(oh - ph, 0)], [0, max(ow - pw, 0)], [0, 0]])
        rows = slice(ph, oh - ph if ph > oh else None)  # the end: the padding less oh
        cols = slice(pw, ow - pw if pw > ow else None)
        y = y[:, rows, cols, :]
        return y + self.bias if self.use_bias else y

    def compute_output_shape(self, shape):
        sizes = []
        for n, k, s, p, op, d in zip(
            shape[1:3],
            self.kernel_size,
            self.strides,
            self.padding,
            self.output_padding,
            self.dilation_rate,
        ):
            sizes.append(
                None if n is None else (n - 1) * s - 2 * p + d * (k - 1) + op + 1
            )
        return (shape[0], *sizes, self.filters)

    def get_config(self):
        config = {
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "strides": self.strides,
            "padding": self.padding,
            "output_padding": self.output_padding,
            "dilation_rate": self.dilation_rate,
            "groups": self.groups,
            "use_bias": self.use_bias,
        }
        return {**super().get_config(), **config}


@keras.saving.register_keras_serializable(package="archdsl")
class Interpolate2D(layers.Layer):
    """PyTorch's F.interpolate over height and width, channels last: to a size, by a scale, or
    (called on [x, reference]) to the reference's height and width; nearest (PyTorch's "nearest":
    output pixel i reads input pixel floor(i * scale)) or bilinear (align_corners as PyTorch has
    it). The source pixels and weights are worked out as PyTorch works them out, in float32."""

    def __init__(
        self, size=None, scale=None, mode="nearest", align_corners=False, **kwargs
    ) -> None:
        super().__init__(**kwargs)
        self.size, self.scale = (
            v if v is None else tuple(v) if isinstance(v, (tuple, list)) else (v, v)
            for v in (size, scale)
        )
        self.mode, self.align_corners = mode, align_corners

    def call(self, inputs):
        x, reference = inputs if isinstance(inputs, (list, tuple)) else (inputs, None)
        for axis in (1, 2):
            n_in = x.shape[axis] if x.shape[axis] is not None else ops.shape(x)[axis]
            scale = None if self.scale is None else self.scale[axis - 1]
            if reference is not None:
                n_out = reference.shape[axis]
                n_out = ops.shape(reference)[axis] if n_out is None else n_out
            elif self.size is not None:
                n_out = self.size[axis - 1]
            elif isinstance(n_in, int):
                n_out = int(n_in * scale // 1)
            else:
                n_out = ops.cast(ops.floor(ops.cast(n_in, "float32") * scale), "int32")
            x = self._resize(x, axis, n_in, n_out, scale)
        return x

    def _resize(self, x, axis, n_in, n_out, scale):
        out = ops.arange(n_out, dtype="float32")
        if self.mode == "bilinear" and self.align_corners:
            step = ops.cast(n_in - 1, "float32") / ops.cast(
                ops.maximum(n_out - 1, 1), "float32"
            )
            source = out * step
        else:
            step = (
                1.0 / scale
                if scale is not None
                else ops.cast(n_in, "float32") / ops.cast(n_out, "float32")
            )
            source = out * step
            if self.mode == "bilinear":
                source = ops.maximum((out + 0.5) * step - 0.5, 0.0)
        low = ops.minimum(ops.cast(ops.floor(source), "int32"), n_in - 1)
        if self.mode == "nearest":
            return ops.take(x, low, axis=axis)
        high = ops.minimum(low + 1, n_in - 1)
        weight = ops.clip(source - ops.cast(low, "float32"), 0.0, 1.0)
        weight = ops.reshape(weight, (1, -1, 1, 1) if axis == 1 else (1, 1, -1, 1))
        weight = ops.cast(weight, x.dtype)
        return (
            ops.take(x, low, axis=axis) * (1 - weight)
            + ops.take(x, high, axis=axis) * weight
        )

    def compute_output_shape(self, shape):
        if isinstance(shape, list) or (shape and isinstance(shape[0], (tuple, list))):
            (batch, _, _, channels), (_, height, width, _) = shape
            return (batch, height, width, channels)
        if self.size is not None:
            return (shape[0], *self.size, shape[3])
        sizes = [
            None if n is None else int(n * s // 1)
            for n, s in zip(shape[1:3], self.scale)
        ]
        return (shape[0], *sizes, shape[3])

    def get_config(self):
        return {
            **super().get_config(),
            "size": self.size,
            "scale": self.scale,
            "mode": self.mode,
            "align_corners": self.align_corners,
        }


@keras.saving.register_keras_serializable(package="archdsl")
class LayerScale(layers.Layer):
    """Multiplies each channel by a learned scale."""

    def __init__(self, init: float = 1e-6, **kwargs) -> None:
        super().__init__(**kwargs)
        self.init = init

    def build(self, shape):
        self.gamma = self.add_weight(
            shape=(shape[-1],),
            initializer=keras.initializers.Constant(self.init),
            name="gamma",
        )

    def call(self, x):
        return x * self.gamma

    def get_config(self):
        return {**super().get_config(), "init": self.init}


@keras.saving.register_keras_serializable(package="archdsl")
class LeakyReLUAnySlope(layers.Layer):
    """x where x >= 0, negative_slope * x elsewhere, for any slope (Keras' LeakyReLU refuses a
    negative one, which PyTorch's takes)."""

    def __init__(self, negative_slope: float = 0.01, **kwargs) -> None:
        super().__init__(**kwargs)
        self.negative_slope = negative_slope

    def call(self, x):
        return ops.where(x >= 0, x, x * self.negative_slope)

    def compute_output_shape(self, shape):
        return shape

    def get_config(self):
        return {**super().get_config(), "negative_slope": self.negative_slope}


@keras.saving.register_keras_serializable(package="archdsl")
class LocalResponseNorm(layers.Layer):
    """Local response normalization across channels, as torch.nn.LocalResponseNorm computes it:
    x / (k + alpha / size * sum of x^2 over `size` neighbouring channels) ** beta."""

    def __init__(
        self,
        size: int,
        alpha: float = 1e-4,
        beta: float = 0.75,
        k: float = 1.0,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.size, self.alpha, self.beta, self.k = size, alpha, beta, k

    def call(self, x):
        channels = x.shape[-1]
        squared = ops.pad(
            ops.square(x),
            [[0, 0], [0, 0], [0, 0], [self.size // 2, (self.size - 1) // 2]],
        )
        total = squared[..., 0:channels]
        for i in range(1, self.size):
            total = total + squared[..., i : i + channels]
        return x / ops.power(self.k + self.alpha / self.size * total, self.beta)

    def get_config(self):
        config = {
            "size": self.size,
            "alpha": self.alpha,
            "beta": self.beta,
            "k": self.k,
        }
        return {**super().get_config(), **config}


@keras.saving.register_keras_serializable(package="archdsl")
class AdaptiveAvgPool2D(layers.Layer):
    """Average pooling to a fixed output size with PyTorch's windows: output cell i covers input
    rows floor(i * n / out) to ceil((i + 1) * n / out)."""

    def __init__(self, output_size, **kwargs) -> None:
        super().__init__(**kwargs)
        self.output_size = (
            tuple(output_size)
            if isinstance(output_size, (tuple, list))
            else (output_size,) * 2
        )

    def call(self, x):
        (oh, ow), (h, w) = self.output_size, (x.shape[1], x.shape[2])
        rows = []
        for i in range(oh):
            r0, r1 = i * h // oh, -(-(i + 1) * h // oh)
            cells = []
            for j in range(ow):
                c0, c1 = j * w // ow, -(-(j + 1) * w // ow)
                cells.append(ops.mean(x[:, r0:r1, c0:c1, :], axis=(1, 2)))
            rows.append(ops.stack(cells, axis=1))
        return ops.stack(rows, axis=1)

    def compute_output_shape(self, shape):
        return (shape[0], *self.output_size, shape[3])

    def get_config(self):
        return {**super().get_config(), "output_size": self.output_size}


@keras.saving.register_keras_serializable(package="archdsl")
class DropBlock2D(layers.Layer):
    """DropBlock (Ghiasi et al., 2018) as archdsl's PyTorch DropBlock2d computes it (timm's
    drop_block_2d with a mask per sample and channel, or with per_channel=False one per
    sample that all its channels share), channels last: while training, seeds drawn anywhere
    on the map at gamma = rate * H * W / (kh * kw) / ((H - kh + 1) * (W - kw + 1)) (kh, kw:
    size clipped to the map) each zero the kh x kw block around them (rows -(kh // 2) to
    (kh - 1) // 2 of the seed, clipped at the borders), and the kept activations are scaled
    by numel / kept count; the identity in inference."""

    def __init__(self, size=7, rate=0.1, per_channel=True, seed=None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.size, self.rate, self.seed = size, rate, seed
        self.per_channel = per_channel
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, x, training=None):
        if not training or self.rate == 0:
            return x
        sizes, blocks = [], []
        for axis in (1, 2):
            n = x.shape[axis]
            if n is None:  # known only as the model runs
                n = ops.cast(ops.shape(x)[axis], "float32")
                blocks.append(ops.minimum(float(self.size), n))
            else:
                blocks.append(min(self.size, n))
            sizes.append(n)
        (h, w), (kh, kw) = sizes, blocks
        gamma = self.rate * h * w / (kh * kw) / ((h - kh + 1) * (w - kw + 1))
        shape = ops.shape(x) if self.per_channel else (*ops.shape(x)[:3], 1)
        noise = keras.random.uniform(shape, seed=self.seed_generator)
        dropped = ops.cast(noise < gamma, "float32")
        dropped = self._spread(self._spread(dropped, 1, kh), 2, kw)
        keep = 1.0 - dropped
        scale = ops.cast(ops.size(keep), "float32") / (ops.sum(keep) + 1e-7)
        return x * ops.cast(keep * scale, x.dtype)

    def _spread(self, seeds, axis, k):
        """Each seed spread along an axis over the k pixels from -(k // 2) to (k - 1) // 2 of
        it, clipped at the borders: pixel i takes the max of the seeds from i - (k - 1) // 2
        to i + k // 2, shifted copies of the seeds padded for the unclipped size (k may be
        known only as the model runs)."""
        before = (self.size - 1) // 2
        padding = [[0, 0]] * 4
        padding[axis] = [before, self.size // 2]
        padded = ops.pad(seeds, padding)
        out = None
        for j in range(self.size):
            offset = j - before  # this copy reads, at pixel i, the seed at i + offset
            stop = j - (self.size - 1) or None
            shifted = padded[:, j:stop] if axis == 1 else padded[:, :, j:stop]
            if isinstance(k, int):
                if not -((k - 1) // 2) <= offset <= k // 2:
                    continue
            else:
                inside = ops.logical_and(offset >= -((k - 1) // 2), offset <= k // 2)
                shifted = shifted * ops.cast(inside, shifted.dtype)
            out = shifted if out is None else ops.maximum(out, shifted)
        return out

    def compute_output_shape(self, shape):
        return shape

    def get_config(self):
        return {
            **super().get_config(),
            "size": self.size,
            "rate": self.rate,
            "per_channel": self.per_channel,
            "seed": self.seed,
        }


@keras.saving.register_keras_serializable(package="archdsl")
class Preprocess(layers.Layer):
    """The input preprocessing of a pretrained network, on RGB images of 0 to 255, as
    keras.applications' preprocess_input(x, mode) computes it, channels last: "caffe" reverses
    the channels to BGR and subtracts ImageNet's mean pixel, "tf" scales to [-1, 1], "torch"
    scales to [0, 1] and normalizes by ImageNet's mean and standard deviation."""

    def __init__(self, mode, **kwargs) -> None:
        super().__init__(**kwargs)
        self.mode = mode
        self.mean_std = {
            "caffe": ((103.939, 116.779, 123.68), (1.0, 1.0, 1.0)),  # BGR order
            "tf": ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
            "torch": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
        }[mode]

    def call(self, x):
        mean, std = (ops.convert_to_tensor(v, dtype=x.dtype) for v in self.mean_std)
        if self.mode == "caffe":
            return ops.flip(x, axis=-1) - mean
        if self.mode == "tf":
            return x / 127.5 - 1.0
        return (x / 255.0 - mean) / std

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}
