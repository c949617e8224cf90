"""Two regularized ResNets of the zoo, in training mode (the zoo checks them in evaluation).

ResNet-110 with stochastic depth as Huang et al. (2016) train it (specs/resnet_cifar_sd.arch): block l
of L = 54 is dropped for the whole mini-batch with probability 1 - p_l = l / L * (1 - p_L), p_L = 0.5;
a kept branch is scaled by 1 / p_l, so evaluation is the plain network, exactly, and the expectation
of a block's branch in training is its evaluation value; Huang et al.'s own test-time rule (the branch
times p_l) is the same function with bn2 scaled by p_l.

ResNet-50 with DropBlock as timm's resnet50(drop_block_rate = 0.1) places it
(specs/resnet50_dropblock.arch): PyTorch's model is timm's, draw for draw; in both frameworks every
DropBlock zeroes the share of activations the formula predicts, in blocks of its size, with one mask
per sample shared by the channels, the rest scaled by the element count over the kept count."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch  # before keras: the generated modules import it first too

from archdsl.api import generate, load
from archdsl.runtime.interop import load_torch_reference

from .frameworks import ROOT, import_path, randomize_batchnorm
from .test_dropblock import expected_share, gamma_of, in_blocks


def _modules(tmp_path_factory, spec: str, sets: dict) -> tuple:
    elab = load(str(ROOT / "specs" / f"{spec}.arch"), sets)
    folder = tmp_path_factory.mktemp(spec)
    modules = []
    for target in ("torch", "keras"):
        path = folder / f"{spec}_{target}.py"
        path.write_text(generate(elab, target))
        modules.append(import_path(path, f"_regularized_{spec}_{target}"))
    return tuple(modules)


# ResNet-110 with stochastic depth ---------------------------------------------------------------------

L = 54  # 3 stages of 18 blocks
P_L = 0.5
RESOLUTION = 8  # 8 x 8, 4 x 4, 2 x 2 maps: the smallest input the network takes, as in the zoo's test


def survival(l: int) -> float:
    """Huang et al.'s linear decay rule, p_l = 1 - l / L * (1 - p_L), l = 1..L."""
    return 1 - l / L * (1 - P_L)


@pytest.fixture(scope="module")
def sd(tmp_path_factory):
    """The generated modules, a PyTorch model and a Keras model; their drop layers, block l at l - 1."""
    tm, km = _modules(tmp_path_factory, "resnet_cifar_sd", {"resolution": RESOLUTION})
    torch_model = tm.build_model(resolution=RESOLUTION)
    keras_model = km.build_model(resolution=RESOLUTION)
    torch_drops = [m for m in torch_model.modules() if isinstance(m, tm.DropPath)]
    keras_drops = [layer for layer in keras_model.layers if layer.name.endswith("--drop_path")]
    return tm, km, torch_model, keras_model, torch_drops, keras_drops


def test_block_l_is_dropped_for_the_whole_batch_at_rate_l_over_L_times_one_half(sd):
    _, _, torch_model, _, torch_drops, keras_drops = sd
    assert len(torch_drops) == len(keras_drops) == L
    names = [name for name, m in torch_model.named_modules() if m in torch_drops]
    assert names[0] == "layer1.0.residual1" and names[18] == "layer2.0.residual1" and names[-1] == "layer3.17.residual1"
    for l, (t, k) in enumerate(zip(torch_drops, keras_drops), start=1):
        assert t.rate == pytest.approx(1 - survival(l), rel=1e-12, abs=0) and t.per_batch is True
        assert k.rate == pytest.approx(1 - survival(l), rel=1e-12, abs=0) and tuple(k.noise_shape) == (1, 1, 1, 1)
        assert k.name == names[l - 1].replace(".", "-") + "--drop_path"
    assert torch_drops[0].rate == pytest.approx(0.5 / 54) and torch_drops[-1].rate == pytest.approx(0.5)


PASSES = 2000
BLOCKS = (1, 27, 54)  # the first, the middle and the last block: p_l = 0.9907, 0.75, 0.5


def _four_sigma(dropped: int, p: float) -> None:
    d = 1 - p
    assert abs(dropped / PASSES - d) <= 4 * math.sqrt(d * p / PASSES), f"dropped {dropped} of {PASSES}, rate {d:.4f}"


def test_pytorch_drops_each_block_at_its_rate_and_its_expectation_is_evaluation(sd):
    """Each pass drops the branch of the whole batch (zeros) or keeps it scaled by 1 / p_l; the share of
    passes that drop it is 1 - p_l (within 4 sigma), so the mean of the passes tends to the branch
    itself, what evaluation adds."""
    _, _, _, _, torch_drops, _ = sd
    x = torch.rand(4, 3, 2, 2) + 0.5
    for l in BLOCKS:
        layer = torch_drops[l - 1].train()
        p = 1 - layer.rate  # p_l as the layer computes it (survival(l) to 1e-12)
        torch.manual_seed(l)
        total, dropped = torch.zeros_like(x), 0
        with torch.no_grad():
            for _ in range(PASSES):
                y = layer(x)
                if torch.equal(y, torch.zeros_like(x)):
                    dropped += 1
                else:
                    assert torch.equal(y, x / p), f"block {l}: kept, but not scaled by 1 / p_l for the whole batch"
                total += y
        _four_sigma(dropped, p)
        mean = total / PASSES  # (kept passes) / PASSES / p_l times the branch
        torch.testing.assert_close(mean, x * (PASSES - dropped) / PASSES / p, rtol=1e-4, atol=0)
        assert float((mean / x - 1).abs().max()) <= 4 * math.sqrt((1 - p) / p / PASSES)
        assert torch.equal(layer.eval()(x), x)


def _keras_passes(layer, x: np.ndarray):
    """PASSES training calls of a Keras layer on x, its seed generator advancing each time: with
    TensorFlow in one graph (tf.map_fn), elsewhere one call after another."""
    import keras

    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        t = tf.constant(x)
        run = tf.function(lambda: tf.map_fn(lambda _: layer(t, training=True), tf.range(PASSES),
                                            fn_output_signature=tf.float32))
        return run().numpy()
    return np.stack([np.asarray(layer(x, training=True)) for _ in range(PASSES)])


def test_keras_drops_each_block_at_its_rate(sd):
    import keras

    _, _, _, _, _, keras_drops = sd
    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).uniform(0.5, 1.5, (4, 2, 2, 3)).astype("float32")
    for l in BLOCKS:
        layer = keras_drops[l - 1]
        p = 1 - layer.rate
        ys = _keras_passes(layer, x)
        dropped = np.all(ys == 0, axis=(1, 2, 3, 4))
        np.testing.assert_allclose(ys[~dropped], np.broadcast_to(x / p, ys[~dropped].shape), rtol=1e-6)
        _four_sigma(int(dropped.sum()), p)
        assert np.array_equal(np.asarray(layer(x, training=False)), x)


def test_whole_network_training_passes_drop_whole_blocks_in_both_frameworks(sd):
    """In the network: in each training pass every block's branch is dropped for the whole batch or
    kept scaled by 1 / p_l; over the passes, the blocks dropped number sum(1 - p_l) a pass (13.75).
    (Keras' functional model runs layer by layer here: fewer passes.)"""
    import keras

    _, _, torch_model, keras_model, torch_drops, keras_drops = sd
    x = np.random.default_rng(1).standard_normal((2, 3, RESOLUTION, RESOLUTION)).astype("float32")
    seen: list[tuple] = []
    hooks = [m.register_forward_hook(lambda m, i, o: seen.append((m, i[0].clone(), o.clone()))) for m in torch_drops]
    passes = {"torch": 2, "keras": 1}
    torch.manual_seed(0)
    torch_model.train()
    with torch.no_grad():
        for _ in range(passes["torch"]):
            torch_model(torch.from_numpy(x))
    for h in hooks:
        h.remove()
    torch_model.eval()
    assert len(seen) == passes["torch"] * L
    dropped = {"torch": 0, "keras": 0}
    for index, (m, i, o) in enumerate(seen):
        if torch.equal(o, torch.zeros_like(o)):
            dropped["torch"] += 1
        else:
            assert torch.equal(o, i / (1 - m.rate)), f"block {index % L + 1}: kept, but not scaled by 1 / p_l"
    probe = keras.Model(keras_model.input, [t for layer in keras_drops for t in (layer.input, layer.output)])
    keras.utils.set_random_seed(0)
    for _ in range(passes["keras"]):
        outs = probe(x.transpose(0, 2, 3, 1), training=True)
        for l in range(1, L + 1):
            i, o = np.asarray(outs[2 * l - 2]), np.asarray(outs[2 * l - 1])
            if not o.any():
                dropped["keras"] += 1
            else:
                np.testing.assert_allclose(o, i / survival(l), rtol=1e-5, atol=1e-6)
    mean = sum(1 - survival(l) for l in range(1, L + 1))
    sigma = math.sqrt(sum(survival(l) * (1 - survival(l)) for l in range(1, L + 1)))
    assert mean == pytest.approx(13.75)
    for name, count in dropped.items():
        n = passes[name]
        assert abs(count - n * mean) <= 4 * sigma * math.sqrt(n), f"{name}: dropped {count} of {n * L} blocks"


def _times(p: float):
    """A forward hook that multiplies a module's output by p."""
    return lambda module, inputs, output: output * p


def test_evaluation_is_the_plain_network_exactly_and_huangs_rule_with_bn2_scaled(sd):
    """archdsl's eval output is the network without stochastic depth (survival_last = 1), bit for bit;
    Huang et al.'s test-time rule, each branch times p_l, on weights W is it on W with each block's bn2
    scale and shift times p_l. In Keras each drop layer passes its input on in inference."""
    tm, _, torch_model, _, _, keras_drops = sd
    randomize_batchnorm(torch_model, seed=2)
    plain = tm.build_model(resolution=RESOLUTION, survival_last=1.0).eval()
    assert all(m.rate == 0 for m in plain.modules() if isinstance(m, tm.DropPath))
    plain.load_state_dict(torch_model.state_dict())
    x = torch.randn(2, 3, RESOLUTION, RESOLUTION)
    with torch.no_grad():
        ours = torch_model.eval()(x)
        assert torch.equal(ours, plain(x))
        plain_drops = [m for m in plain.modules() if isinstance(m, tm.DropPath)]
        hooks = [m.register_forward_hook(_times(survival(l))) for l, m in enumerate(plain_drops, start=1)]
        huang = plain(x)  # W with Huang's rule: on plain (rate 0), the hooks scale each branch by p_l
        for h in hooks:
            h.remove()
        blocks = [m for m in torch_model.modules() if isinstance(m, tm.SDBlock)]
        for l, block in enumerate(blocks, start=1):
            block.bn2.weight.mul_(survival(l))
            block.bn2.bias.mul_(survival(l))
        torch.testing.assert_close(torch_model(x), huang, rtol=1e-5, atol=1e-5)
        assert float((huang - ours).abs().max()) > 1e-3  # the scaling matters
    y = np.random.default_rng(3).standard_normal((2, 2, 2, 64)).astype("float32")
    assert all(np.array_equal(np.asarray(layer(y, training=False)), y) for layer in keras_drops[-2:])


# ResNet-50 with DropBlock ------------------------------------------------------------------------------

DB_RESOLUTION = 32  # layer3 at 2 x 2, layer4 at 1 x 1: blocks clipped to the map


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    """The generated modules, a PyTorch model and a Keras model."""
    tm, km = _modules(tmp_path_factory, "resnet50_dropblock", {"resolution": DB_RESOLUTION})
    return tm, km, tm.build_model(resolution=DB_RESOLUTION), km.build_model(resolution=DB_RESOLUTION)


def _torch_dropblocks(model, tm) -> list:
    return [(name, m) for name, m in model.named_modules() if isinstance(m, tm.DropBlock2d)]


def test_pytorch_is_timms_layout_and_draws_for_draw_in_training(db):
    """The DropBlocks sit where timm's resnet50(drop_block_rate = 0.1) has them, with its block sizes,
    rates and shared masks; with its weights, both in training mode, the same outputs on the same random
    draws, DropBlock zeroing in the pass."""
    timm = pytest.importorskip("timm")
    tm, _, model, _ = db
    ref = timm.create_model("resnet50", pretrained=False, drop_block_rate=0.1)
    layout = [(m.size, m.rate, m.per_channel) for _, m in _torch_dropblocks(model, tm)]
    timms = [(m.block_size, m.drop_prob * m.gamma_scale, not m.couple_channels)
             for m in ref.modules() if type(m).__name__ == "DropBlock2d"]
    assert layout == timms == [(5, 0.025, False)] * 6 + [(3, 0.1, False)] * 3
    assert [name for name, _ in _torch_dropblocks(model, tm)][:2] == [
        "layer3.drop_block_bottleneck1.drop_block", "layer3.drop_block_bottleneck2.0.drop_block"]
    randomize_batchnorm(ref, seed=1)  # timm zeroes each bn3's scale: the branches would not count
    load_torch_reference(model, ref)
    zeros = []
    hooks = [m.register_forward_hook(lambda m, i, o: zeros.append(int((o == 0).sum())))
             for _, m in _torch_dropblocks(model, tm)]
    x = torch.randn(8, 3, DB_RESOLUTION, DB_RESOLUTION)  # 8 samples: 72 masks, some drop (p ~ 0.999)
    model.train()
    ref.train()
    with torch.no_grad():
        torch.manual_seed(0)
        ours = model(x)
        torch.manual_seed(0)
        theirs = ref(x)
    for h in hooks:
        h.remove()
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-6)
    assert sum(zeros) > 0  # the pass dropped blocks
    model.eval()


# (layer, map size as ResNet-50 at 224 gives it, batch). The share one mask zeroes has a standard
# deviation of about 0.07 (14 x 14, size 5, rate 0.025: 0.4 seeds a mask) and 0.1 (7 x 7, size 3,
# rate 0.1); over the batch, the mean's is that over sqrt(batch), estimated from the draws.
STATISTICS = [("layer3", 14, 1500), ("layer4", 7, 1500)]


def _check_share(out: np.ndarray, size: int, rate: float, what: str) -> float:
    """out: [B, C, H, W] from ones. One mask per sample for all channels; zeros in blocks; the share of
    zeros the formula predicts (within 4 standard errors); the rest scaled to keep the sum."""
    b, _, h, w = out.shape
    zero = out == 0
    assert np.array_equal(zero, np.broadcast_to(zero[:, :1], zero.shape)), f"{what}: channels with other masks"
    kh, kw, _ = gamma_of(size, rate, h, w)
    assert in_blocks(zero, kh, kw), f"{what}: zeros outside any {kh} x {kw} block of zeros"
    shares = zero[:, 0].mean(axis=(1, 2))
    expected = expected_share(size, rate, h, w)
    error = shares.std(ddof=1) / math.sqrt(b)
    assert abs(shares.mean() - expected) <= 4 * error, f"{what}: dropped {shares.mean():.4f}, expected {expected:.4f}"
    np.testing.assert_allclose(out[~zero], out.size / (~zero).sum(), rtol=1e-5, err_msg=what)
    return float(shares.mean())


def test_every_dropblock_zeroes_the_predicted_share_in_shared_blocks_in_both_frameworks(db):
    """The layers of the two generated models as the spec configures them, on the maps ResNet-50 gives
    them at 224 x 224 (layer3: 14 x 14, 5 x 5 blocks at rate 0.1 / 4; layer4: 7 x 7, 3 x 3 at 0.1)."""
    import keras

    tm, _, model, keras_model = db
    layers = {name: m.train() for name, m in _torch_dropblocks(model, tm)}
    torch.manual_seed(0)
    keras.utils.set_random_seed(0)
    for stage, side, batch in STATISTICS:
        name = f"{stage}.drop_block_bottleneck1.drop_block"
        layer = layers[name]
        size, rate = layer.size, layer.rate
        x = np.ones((batch, 3, side, side), np.float32)
        with torch.no_grad():
            a = _check_share(layer(torch.from_numpy(x)).numpy(), size, rate, f"torch {name}")
        k = keras_model.get_layer(name.replace(".", "-"))
        assert (k.size, k.rate, k.per_channel) == (size, rate, False)
        b = _check_share(np.asarray(k(x.transpose(0, 2, 3, 1), training=True)).transpose(0, 3, 1, 2),
                         size, rate, f"keras {name}")
        assert abs(a - b) <= 0.02  # the two frameworks agree


def test_keras_training_pass_drops_shared_blocks_in_the_network(db):
    """A training pass of the Keras network: after each DropBlock the zeros of every sample are the
    same in all channels, in blocks (clipped to the 2 x 2 and 1 x 1 maps), the rest scaled."""
    import keras

    _, _, _, keras_model = db
    drops = [layer for layer in keras_model.layers if type(layer).__name__ == "DropBlock2D"]
    assert len(drops) == 9
    probe = keras.Model(keras_model.input, [t for layer in drops for t in (layer.input, layer.output)])
    keras.utils.set_random_seed(3)
    # 32 samples: on these small maps a sample keeps all nine layers whole with probability about 0.63
    # (layer4's 1 x 1 maps drop at 0.1, layer3's 2 x 2 at 0.025), so some layer drops unless the draws
    # are as unlikely as 0.63 ** 32 = 4e-7, whatever state the layers' seed generators are in
    x = np.random.default_rng(2).standard_normal((32, DB_RESOLUTION, DB_RESOLUTION, 3)).astype("float32")
    outs = [np.asarray(t).transpose(0, 3, 1, 2) for t in probe(x, training=True)]
    dropped = 0
    for layer, i, o in zip(drops, outs[::2], outs[1::2]):
        zero = (o == 0) & (i != 0)
        assert np.array_equal(zero, np.broadcast_to(zero[:, :1], zero.shape)), layer.name
        kh, kw, _ = gamma_of(layer.size, layer.rate, *o.shape[2:])
        assert in_blocks(zero, kh, kw), layer.name
        kept = ~zero[:, :1].repeat(o.shape[1], axis=1)
        np.testing.assert_allclose(o[kept], i[kept] * zero.size / kept.sum(), rtol=1e-5, atol=1e-6, err_msg=layer.name)
        dropped += int(zero.any())
    assert dropped > 0
