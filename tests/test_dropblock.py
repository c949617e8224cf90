"""dropblock: DropBlock (Ghiasi, Lin and Le, 2018) as timm's drop_block_2d computes it with a mask per
sample and channel (couple_channels=False). Its shapes and errors; the identity in evaluation in both
generated models, with weights; nothing written at a rate of the constant 0. In training: PyTorch's
DropBlock2d is timm's math written out here, draw for draw (and timm's own function where timm is
installed); Keras' DropBlock2D is the same math on the same seeds; and both generated models drop the
share of activations the formula predicts, in blocks of the block size, the rest scaled by the
element count over the kept count."""

from __future__ import annotations

import inspect
import subprocess

import numpy as np
import pytest
import torch  # before keras: the generated modules import it first too
import torch.nn.functional as F

from archdsl.api import generate, load
from archdsl.core.layers import LAYERS

from .frameworks import import_path
from .test_backends import assert_parity, build
from .test_errors import check_error, net

# timm's drop_block_2d written out, and what it predicts --------------------------------------------


def gamma_of(size: int, rate: float, h: int, w: int) -> tuple[int, int, float]:
    """(kh, kw, gamma): the block clipped to the map (timm: min(block_size, H), min(block_size, W)) and
    the rate of the seeds, timm's formula with gamma_scale 1."""
    kh, kw = min(size, h), min(size, w)
    return kh, kw, float(rate * h * w) / float(kh * kw) / float((h - kh + 1) * (w - kw + 1))


def timm_drop_block(x: torch.Tensor, size: int, rate: float, seeds: torch.Tensor | None = None,
                    per_channel: bool = True) -> torch.Tensor:
    """timm/layers/drop.py's drop_block_2d (timm 1.0.23 and later) with gamma_scale=1, with_noise=False,
    couple_channels=not per_channel, scale_by_keep=True; the seeds drawn as timm draws them (a Bernoulli
    tensor of B x C x H x W, or B x 1 x H x W for a mask per sample) unless given."""
    b, c, h, w = x.shape
    kh, kw, gamma = gamma_of(size, rate, h, w)
    if seeds is None:
        seeds = torch.empty((b, c if per_channel else 1, h, w), dtype=x.dtype, device=x.device).bernoulli_(gamma)
    dropped = F.max_pool2d(seeds, kernel_size=(kh, kw), stride=1, padding=(kh // 2, kw // 2))
    if kh % 2 == 0 or kw % 2 == 0:  # a pooling of an even size gives one row (column) more: the first goes
        dropped = dropped[..., (kh + 1) % 2:, (kw + 1) % 2:]
    keep = 1.0 - dropped
    keep = keep * (keep.numel() / keep.to(torch.float32).sum().add(1e-7)).to(x.dtype)
    return x * keep


def expected_share(size: int, rate: float, h: int, w: int) -> float:
    """The expected share of activations dropped: pixel (i, j) is dropped unless none of the n_i * m_j
    seeds whose blocks cover it is drawn, n_i the rows s of the map with s - kh // 2 <= i <= s + (kh - 1) // 2
    (m_j the columns alike), each drawn at gamma."""
    kh, kw, gamma = gamma_of(size, rate, h, w)
    n = np.array([sum(0 <= s < h for s in range(i - (kh - 1) // 2, i + kh // 2 + 1)) for i in range(h)])
    m = np.array([sum(0 <= s < w for s in range(j - (kw - 1) // 2, j + kw // 2 + 1)) for j in range(w)])
    return float(np.mean(1.0 - (1.0 - gamma) ** np.outer(n, m)))


def _window_max(a: torch.Tensor, kh: int, kw: int, up: int, left: int) -> torch.Tensor:
    """At each pixel, the max of `a` over rows i - up .. i - up + kh - 1 (columns alike), 0 outside the map."""
    return F.max_pool2d(F.pad(a, (left, kw - 1 - left, up, kh - 1 - up)), (kh, kw), stride=1)


def in_blocks(zero: np.ndarray, kh: int, kw: int) -> bool:
    """Whether every zero of a [B, C, H, W] mask lies in a kh x kw block of zeros placed as a seed's block
    is (rows s - kh // 2 .. s + (kh - 1) // 2 of a pixel s of the map, clipped at the borders; away from
    the borders a whole kh x kw square): the union of the blocks that are all zeros is the mask."""
    z = torch.from_numpy(zero.astype(np.float32))
    possible = 1.0 - _window_max(1.0 - z, kh, kw, kh // 2, kw // 2)  # the pixels whose whole block is zero
    covered = _window_max(possible, kh, kw, (kh - 1) // 2, (kw - 1) // 2)  # their blocks
    return torch.equal(covered, z)


def test_the_block_check_refuses_what_is_no_block():
    zero = np.zeros((1, 1, 12, 12), bool)
    zero[0, 0, 3:6, 4:7] = True
    assert in_blocks(zero, 3, 3)
    zero[0, 0, 0, 0:2] = True  # a strip of 1 x 2: no seed's block, clipped at the border, is that
    assert not in_blocks(zero, 3, 3)
    zero[0, 0, 1, 0:2] = True  # 2 x 2 in the corner: the block of a seed at (0, 0), clipped
    assert in_blocks(zero, 3, 3)
    zero[0, 0, 9, 9] = True  # a lone zero inside the map
    assert not in_blocks(zero, 3, 3)
    assert in_blocks(zero, 1, 1)


# The layer in the catalog ------------------------------------------------------------------------


def _layers(tmp_path, body: str, input_shape: str = "[8, 12, 10]"):
    spec = tmp_path / "dropblock.arch"
    spec.write_text(f"network D {{\n    input {input_shape}\n    {body}\n}}\n")
    return [i for i in load(str(spec)).root.walk() if i.kind == "dropblock"]


def test_shape_arguments_and_description(tmp_path):
    default, given = _layers(tmp_path, "conv(8, 3, pad = 1) dropblock dropblock(3, rate = 0.25) flatten")
    assert default.args == {"size": 7, "rate": 0.1, "per_channel": True}
    assert given.args == {"size": 3, "rate": 0.25, "per_channel": True}
    for inst in (default, given):
        assert tuple(inst.out_shape.dims) == tuple(inst.in_shape.dims) == (8, 12, 10)
        assert (inst.params, inst.macs) == (0, 0)
    assert LAYERS["dropblock"].description(default.args) == "dropblock 7, 0.1"
    (shared,) = _layers(tmp_path, "dropblock(5, 0.025, per_channel = false)")
    assert shared.args == {"size": 5, "rate": 0.025, "per_channel": False}
    assert LAYERS["dropblock"].description(shared.args) == "dropblock 5, 0.025, shared"
    assert LAYERS["dropblock"].category == "regularization" and not LAYERS["dropblock"].weights
    # a block larger than the map is clipped to it, not refused
    (big,) = _layers(tmp_path, "dropblock(size = 9)", "[4, 5, 3]")
    assert tuple(big.out_shape.dims) == (4, 5, 3)


@pytest.mark.parametrize("body, message, column", [
    ("flatten dropblock", "dropblock needs a feature map [channels, height, width], got [3072]", 13),
    ("dropblock(rate = 1)", "'rate' must be in [0, 1), got 1", 22),
    ("dropblock(3, -0.1)", "'rate' must be in [0, 1), got -0.1", 18),
    ("dropblock(0)", "'size' must be at least 1, got 0", 15),
    ("dropblock(2.5)", "'size' expects an integer, got 2.5", 15),
    ("dropblock(3, 0.1, 2)", "'per_channel' expects true or false, got 2", 23),
    ("dropblock(3, 0.1, false, 2)", "dropblock takes 3 arguments (size, rate, per_channel), got 4", 30),
])
def test_bad_arguments_are_refused_with_a_located_message(tmp_path, body, message, column):
    check_error(tmp_path, net(body), message, 3, column)


# The generated models: evaluation, rate 0 ----------------------------------------------------------

WEIGHTS = """
network Net(r = 0.2) {
    input [3, 16, 14]
    conv(8, 3, pad = 1) bn relu dropblock(5, 0.2)
    { conv(8, 3, pad = 1) dropblock(3, r) relu } * 2
    residual { conv(8, 1) bn dropblock }
    dropblock(4, 0.3)
    avgpool(global) flatten dense(4)
}
"""


def test_evaluation_is_the_identity_with_weights_in_both_frameworks(tmp_path):
    elab, tm, km, paths = build(tmp_path, WEIGHTS)
    assert_parity(elab, tm, km, tol=1e-5)  # eval mode: every DropBlock2d and DropBlock2D passes its input on
    for target, cls in (("torch", "DropBlock2d"), ("keras", "DropBlock2D")):
        assert paths[target].read_text().count(f"{cls}(") == 5, target  # the class, and four layers


def test_the_generated_modules_are_ruff_clean_and_formatted(tmp_path):
    """The prelude's DropBlock2d and the copied DropBlock2D as ruff lays them out, in the plain and the
    inference emission, and with per_channel (a mask shared by the channels)."""
    from .test_generated import _ruff

    spec = tmp_path / "weights.arch"
    spec.write_text(WEIGHTS)
    shared = tmp_path / "shared.arch"  # one mask per sample: DropBlock2d's per_channel
    shared.write_text(WEIGHTS.replace("dropblock(3, r)", "dropblock(3, r, per_channel = false)"))
    folder = tmp_path / "generated"
    folder.mkdir()
    for name, target, optimize in (("plain", "torch", None), ("inference", "torch", "inference"),
                                   ("functional", "keras", None), ("shared", "torch", None),
                                   ("shared_functional", "keras", None)):
        elab = load(str(shared if name.startswith("shared") else spec))
        code = generate(elab, target, optimize)
        assert ("class DropBlock2d(nn.Module):" if target == "torch" else "class DropBlock2D(layers.Layer):") in code
        (folder / f"{name}_{target}.py").write_text(code)
    for command in (["check", "--isolated"], ["format", "--isolated", "--check"]):
        result = subprocess.run([*_ruff(), *command, str(folder)], check=False, capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr


RATE_ZERO = """
network Zero(r = 0) {
    input [4, 10, 10]
    conv(4, 3, pad = 1) dropblock(3, 0)
    { conv(4, 1) dropblock(rate = 0) relu } * 2
    dropblock(size = 5, rate = 0.0)
    conv(2, 1)
}
"""


def test_a_rate_of_the_constant_zero_writes_no_layer(tmp_path):
    elab, tm, km, paths = build(tmp_path, RATE_ZERO)
    torch_code, keras_code = paths["torch"].read_text(), paths["keras"].read_text()
    assert "DropBlock" not in torch_code and "DropBlock" not in keras_code
    assert "dropblock" not in torch_code.split("def forward")[1]  # forward() writes no line for one
    # in a Sequential, its place holds an nn.Identity, so that the relu keeps its index (group1.0.2, as
    # the Keras layer is named)
    assert "nn.Sequential(nn.Conv2d(channels1, 4, 1), nn.Identity(), nn.ReLU())" in torch_code
    assert 'name=f"group1-{i}-2"' in keras_code
    assert_parity(elab, tm, km, tol=1e-5)


def test_a_rate_from_a_parameter_is_a_layer_that_passes_zero_through(tmp_path):
    spec = tmp_path / "param.arch"
    spec.write_text("network P(r = 0.1) {\n    input [4, 10, 10]\n    dropblock(3, r)\n}\n")
    elab = load(str(spec), {"r": 0})
    code = generate(elab, "torch")
    assert "self.dropblock1 = DropBlock2d(3, r)" in code
    path = tmp_path / "param_torch.py"
    path.write_text(code)
    model = import_path(path).build_model(r=0).train()
    x = torch.rand(2, 4, 10, 10)
    assert torch.equal(model(x), x)


# Training: the math, draw for draw ------------------------------------------------------------------

# (shape [B, C, H, W], size, rate): a block inside the map, one clipped to a map smaller than it along
# one axis or both (a 1 x 1 map: every seed drops its pixel), and even sizes (timm crops the pooling)
CASES = [((4, 3, 24, 24), 7, 0.1), ((4, 3, 5, 9), 7, 0.3), ((3, 5, 10, 11), 4, 0.2), ((3, 2, 1, 1), 3, 0.5),
         ((2, 3, 6, 6), 6, 0.5), ((4, 2, 7, 3), 2, 0.25), ((4, 2, 9, 8), 1, 0.2)]


def _modules(tmp_path, per_channel: bool = True):
    """The generated modules of a one-layer spec: their DropBlock2d and DropBlock2D classes (PyTorch's
    takes per_channel only where a spec gives it false)."""
    spec = tmp_path / "one.arch"
    spec.write_text(f"network One {{\n    input [3, 8, 8]\n    dropblock(3, 0.5, {str(per_channel).lower()})\n}}\n")
    elab = load(str(spec))
    modules = []
    for target in ("torch", "keras"):
        path = tmp_path / f"one_{target}.py"
        path.write_text(generate(elab, target))
        modules.append(import_path(path, f"_{tmp_path.name}_one_{target}"))
    return modules


@pytest.mark.parametrize("shape, size, rate", CASES)
def test_pytorch_dropblock_is_timms_math_draw_for_draw(tmp_path, shape, size, rate):
    tm, _ = _modules(tmp_path)
    x = torch.rand(shape) + 1.0
    layer = tm.DropBlock2d(size, rate).train()
    torch.manual_seed(3)
    got = layer(x)
    torch.manual_seed(3)
    assert torch.equal(got, timm_drop_block(x, size, rate))
    assert torch.equal(layer.eval()(x), x)


@pytest.mark.parametrize("shape, size, rate", CASES)
def test_pytorch_dropblock_is_timms_own(tmp_path, shape, size, rate):
    """Where timm is installed: its drop_block_2d with couple_channels=False (1.0.23 and later), or before
    that the fast form that its DropBlock2d ran by default (for an odd size within the map, where that
    form's gamma is the same; it added 1e-6 to the kept count)."""
    drop = pytest.importorskip("timm.layers.drop")
    tm, _ = _modules(tmp_path)
    x = torch.rand(shape) + 1.0
    torch.manual_seed(5)
    got = tm.DropBlock2d(size, rate).train()(x)
    torch.manual_seed(5)
    if "couple_channels" in inspect.signature(drop.drop_block_2d).parameters:
        assert torch.equal(got, drop.drop_block_2d(x, rate, size, couple_channels=False))
    elif size % 2 == 1 and size <= min(shape[2:]):
        assert torch.allclose(got, drop.drop_block_fast_2d(x, rate, size), rtol=1e-5, atol=0)
    else:
        pytest.skip("timm before 1.0.23 has no per-channel form for an even size or a clipped block")


@pytest.mark.parametrize("shape, size, rate", CASES)
def test_keras_dropblock_is_the_same_math_on_the_same_seeds(tmp_path, monkeypatch, shape, size, rate):
    """Keras' random draws are not PyTorch's: the uniform noise is given, seeds where it is below gamma."""
    import keras

    _, km = _modules(tmp_path)
    b, c, h, w = shape
    noise = np.random.default_rng(size).uniform(size=(b, h, w, c)).astype(np.float32)  # channels last
    monkeypatch.setattr(keras.random, "uniform", lambda shape, seed=None, **kw: keras.ops.convert_to_tensor(noise))
    x = np.random.default_rng(1).uniform(1.0, 2.0, shape).astype(np.float32)
    got = np.asarray(km.DropBlock2D(size, rate)(x.transpose(0, 2, 3, 1), training=True)).transpose(0, 3, 1, 2)
    _, _, gamma = gamma_of(size, rate, h, w)
    seeds = torch.from_numpy((noise < np.float32(gamma)).astype(np.float32).transpose(0, 3, 1, 2).copy())
    expected = timm_drop_block(torch.from_numpy(x), size, rate, seeds).numpy()
    assert np.array_equal(got == 0, expected == 0)
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=0)
    assert np.array_equal(np.asarray(km.DropBlock2D(size, rate)(x.transpose(0, 2, 3, 1), training=False)),
                          x.transpose(0, 2, 3, 1))


# One mask per sample, shared by its channels (per_channel = false; timm's couple_channels=True, what its
# ResNet's drop_block_rate builds): the same math on seeds drawn B x 1 x H x W.

def test_a_shared_mask_is_asked_for_only_where_a_spec_asks_for_it(tmp_path):
    plain, shared = (generate(load(str(p)), "torch") for p in _specs(tmp_path))
    assert "self.dropblock1 = DropBlock2d(3, 0.5)\n" in plain and "per_channel=False)" not in plain
    assert "self.dropblock1 = DropBlock2d(3, 0.5, per_channel=False)" in shared
    assert "self, size: int = 7, rate: float = 0.1, per_channel: bool = True" in shared
    keras_code = generate(load(str(_specs(tmp_path)[1])), "keras")
    assert 'DropBlock2D(3, 0.5, per_channel=False, name="dropblock1")' in keras_code


def _specs(tmp_path):
    paths = []
    for flag in ("true", "false"):
        path = tmp_path / f"flag_{flag}.arch"
        path.write_text(f"network F {{\n    input [3, 8, 8]\n    dropblock(3, 0.5, per_channel = {flag})\n}}\n")
        paths.append(path)
    return paths


@pytest.mark.parametrize("shape, size, rate", CASES[:4])
def test_a_shared_mask_is_timms_coupled_channels_draw_for_draw(tmp_path, shape, size, rate):
    drop = pytest.importorskip("timm.layers.drop")
    tm, _ = _modules(tmp_path, per_channel=False)
    x = torch.rand(shape) + 1.0
    layer = tm.DropBlock2d(size, rate, per_channel=False).train()
    torch.manual_seed(7)
    got = layer(x)
    torch.manual_seed(7)
    assert torch.equal(got, timm_drop_block(x, size, rate, per_channel=False))
    if "couple_channels" in inspect.signature(drop.drop_block_2d).parameters:
        torch.manual_seed(7)
        assert torch.equal(got, drop.drop_block_2d(x, rate, size, couple_channels=True))
    zero = (got == 0).numpy()
    assert np.array_equal(zero, np.broadcast_to(zero[:, :1], zero.shape))  # every channel, one mask


@pytest.mark.parametrize("shape, size, rate", CASES[:4])
def test_keras_shared_mask_is_the_same_math_on_the_same_seeds(tmp_path, monkeypatch, shape, size, rate):
    import keras

    _, km = _modules(tmp_path, per_channel=False)
    b, _, h, w = shape
    noise = np.random.default_rng(size).uniform(size=(b, h, w, 1)).astype(np.float32)
    drawn = []

    def uniform(shape, seed=None, **kw):
        drawn.append(tuple(shape))
        return keras.ops.convert_to_tensor(noise)

    monkeypatch.setattr(keras.random, "uniform", uniform)
    x = np.random.default_rng(1).uniform(1.0, 2.0, shape).astype(np.float32)
    layer = km.DropBlock2D(size, rate, per_channel=False)
    got = np.asarray(layer(x.transpose(0, 2, 3, 1), training=True)).transpose(0, 3, 1, 2)
    assert [tuple(int(n) for n in d) for d in drawn] == [(b, h, w, 1)]  # one draw per sample and pixel
    _, _, gamma = gamma_of(size, rate, h, w)
    seeds = torch.from_numpy((noise < np.float32(gamma)).astype(np.float32).transpose(0, 3, 1, 2).copy())
    expected = timm_drop_block(torch.from_numpy(x), size, rate, seeds).numpy()
    assert np.array_equal(got == 0, expected == 0)
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=0)
    assert km.DropBlock2D.from_config(layer.get_config()).per_channel is False


# Training: the generated models, statistically --------------------------------------------------------

# (batch, map [C, H, W], size, rate, tolerance). The share dropped over the batch has a standard deviation
# of about 0.003 (24 x 24, 1024 maps) and 0.005 (5 x 9, 4096 maps) around expected_share (0.142 and 0.597),
# measured over 40 draws; the tolerances are 5 of them. What a wrong implementation drops instead:
# seeds only where a whole block fits (timm's old fast=False form) 0.094 and 0.096; gamma without the
# division by the places a block fits, rate / size**2, 0.083 and 0.059; the block clipped to a square
# of min(size, H, W) on 5 x 9, 0.445; the block not clipped at all makes gamma negative on 5 x 9.
STATISTICS = [(64, (16, 24, 24), 7, 0.1, 0.015), (256, (16, 5, 9), 7, 0.1, 0.025)]


def _train_outputs(tmp_path, c: int, h: int, w: int, size: int, rate: float, batch: int) -> dict[str, np.ndarray]:
    import keras

    spec = tmp_path / "stats.arch"
    spec.write_text(f"network S {{\n    input [{c}, {h}, {w}]\n    dropblock({size}, {rate})\n}}\n")
    elab = load(str(spec))
    for target in ("torch", "keras"):
        (tmp_path / f"stats_{target}.py").write_text(generate(elab, target))
    tm = import_path(tmp_path / "stats_torch.py", f"_{tmp_path.name}_stats_torch")
    km = import_path(tmp_path / "stats_keras.py", f"_{tmp_path.name}_stats_keras")
    x = np.ones((batch, c, h, w), np.float32)
    torch_model = tm.build_model().train()
    torch.manual_seed(0)
    with torch.no_grad():
        outputs = {"torch": torch_model(torch.from_numpy(x)).numpy()}
    keras.utils.set_random_seed(0)
    keras_model = km.build_model()
    outputs["keras"] = np.asarray(keras_model(x.transpose(0, 2, 3, 1), training=True)).transpose(0, 3, 1, 2)
    torch_model.eval()
    with torch.no_grad():
        assert torch.equal(torch_model(torch.from_numpy(x)), torch.from_numpy(x))
    assert np.array_equal(np.asarray(keras_model(x.transpose(0, 2, 3, 1), training=False)), x.transpose(0, 2, 3, 1))
    return outputs


@pytest.mark.parametrize("batch, shape, size, rate, tolerance", STATISTICS)
def test_training_drops_the_predicted_share_in_blocks_in_both_frameworks(tmp_path, batch, shape, size, rate,
                                                                         tolerance):
    c, h, w = shape
    kh, kw, _ = gamma_of(size, rate, h, w)
    expected = expected_share(size, rate, h, w)
    for name, out in _train_outputs(tmp_path, c, h, w, size, rate, batch).items():
        zero = out == 0
        share = float(zero.mean())
        assert abs(share - expected) <= tolerance, f"{name}: dropped {share:.4f}, expected {expected:.4f}"
        assert in_blocks(zero, kh, kw), f"{name}: zeros outside any {kh} x {kw} block of zeros"
        # on ones, every kept activation is the scale: the element count over the kept count
        kept = out[~zero]
        np.testing.assert_allclose(kept, out.size / kept.size, rtol=1e-5, err_msg=name)
        # a mask per sample and channel (timm's couple_channels=False), not one per sample
        shared = np.all(zero == zero[:, :1], axis=(1, 2, 3))
        assert shared.mean() < 0.05, f"{name}: the channels of {shared.mean():.0%} of the samples share a mask"


def test_keras_with_sizes_known_only_as_the_model_runs(tmp_path):
    """An open input size (`?`): in a TensorFlow graph the clipped block and gamma are computed from
    the tensor's shape as it runs."""
    import keras

    if keras.backend.backend() != "tensorflow":
        pytest.skip("a graph with open sizes is TensorFlow's")
    import tensorflow as tf

    spec = tmp_path / "open.arch"
    spec.write_text("network O {\n    input [16, ?, ?]\n    dropblock(7, 0.1)\n}\n")
    (tmp_path / "open_keras.py").write_text(generate(load(str(spec)), "keras"))
    model = import_path(tmp_path / "open_keras.py", f"_{tmp_path.name}_open_keras").build_model()
    keras.utils.set_random_seed(0)
    run = tf.function(lambda t: model(t, training=True),
                      input_signature=[tf.TensorSpec((None, None, None, 16), tf.float32)])
    for (h, w), tolerance in (((24, 24), 0.015), ((5, 9), 0.025)):
        x = np.ones((256 if h == 5 else 64, h, w, 16), np.float32)
        out = run(x).numpy().transpose(0, 3, 1, 2)
        zero = out == 0
        kh, kw, _ = gamma_of(7, 0.1, h, w)
        assert abs(float(zero.mean()) - expected_share(7, 0.1, h, w)) <= tolerance
        assert in_blocks(zero, kh, kw)
        np.testing.assert_allclose(out[~zero], out.size / (~zero).sum(), rtol=1e-5)
