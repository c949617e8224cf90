"""A network used as a part of another (a base, cut after a label, with one feature map or several)
and frozen parts (`freeze` / `unfreeze`): what elaboration makes of them, the located errors, the
counts, and the generated PyTorch and Keras models (what trains, batch norms that keep their
statistics, the same outputs in both frameworks)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest

from archdsl.api import load
from archdsl.language.errors import ArchError

from .frameworks import count_torch, randomize_batchnorm, sample_input, torch_outputs
from .test_backends import assert_parity, build

TINY = Path(__file__).parent / "data" / "tiny_base.arch"


def _conv_bn(cin: int, cout: int) -> int:
    return cin * cout * 9 + 2 * cout


HEAD = f"""
import "{TINY}"

network Head(fine_tune = false, classes = 3) {{
    input [3, 16, 16]
    base: Tiny(width = 2) through stage2
    avgpool(global) flatten
    fc: dense(classes)
    freeze base
    unfreeze base.stage2 if fine_tune
}}
"""


def _spec(tmp_path, source: str, name: str = "spec") -> str:
    path = tmp_path / f"{name}.arch"
    path.write_text(textwrap.dedent(source))
    return str(path)


def test_a_base_is_the_network_up_to_its_label(tmp_path):
    elab = load(_spec(tmp_path, HEAD))
    base = elab.root.children[0]
    assert base.path == "base" and base.kind == "Tiny"
    assert [c.path for c in base.children] == ["base.stem", "base.stage1", "base.stage2"]
    assert tuple(base.out_shape.dims) == (8, 4, 4)
    stem, stage1, stage2 = _conv_bn(3, 2), _conv_bn(2, 4), _conv_bn(4, 8)
    assert base.total_params() == stem + stage1 + stage2
    assert elab.root.total_params() == stem + stage1 + stage2 + 8 * 3 + 3
    # frozen: the head trains; with fine_tune, stage2 too
    assert elab.root.trainable_params() == 8 * 3 + 3
    tuned = load(_spec(tmp_path, HEAD), {"fine_tune": True})
    assert tuned.root.trainable_params() == 8 * 3 + 3 + stage2
    # the base block keeps only the parameters its statements read
    assert [p.name for p in elab.program.blocks["Tiny"].params] == ["width"]


def test_a_base_at_another_input_size_and_a_whole_network(tmp_path):
    elab = load(_spec(tmp_path, f"""
        import "{TINY}"
        network N {{
            input [3, 40, 24]
            Tiny(classes = 5)
        }}
        """))
    assert tuple(elab.root.out_shape.dims) == (5,)  # the whole network, its input size the caller's
    assert elab.root.children[0].children[0].in_shape.dims == (3, 40, 24)


def test_feature_maps_at_several_labels(tmp_path):
    elab, tm, km, paths = build(tmp_path, f"""
        import "{TINY}"
        network Pyramid(classes = 2) {{
            input [3, 16, 16]
            a, b, c = backbone: Tiny() through stem, early, stage2
            pc = c conv(8, 1)
            pb = b conv(8, 1) upsample(like = a)
            up = pc upsample(like = a)
            concat(a, pb, up)
            conv(classes, 1)
            freeze backbone.stem
        }}
        """)
    shapes = {i.path: tuple(i.out_shape.dims) for i in elab.root.walk()}
    assert shapes["backbone"] == (16, 4, 4) and shapes["concat1"] == (4 + 8 + 8, 16, 16)
    torch_text, keras_text = paths["torch"].read_text(), paths["keras"].read_text()
    assert "a, b, c = self.backbone(x)" in torch_text and "self.feature_channels = (" in torch_text
    assert 'a, b, c = tiny(inputs, name="backbone")' in keras_text
    assert_parity(elab, tm, km, tol=1e-5)
    model = tm.build_model()
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen == {"backbone.stem.conv1.weight", "backbone.stem.bn1.weight", "backbone.stem.bn1.bias"}


def test_frozen_parts_in_pytorch_and_keras(tmp_path):
    elab, tm, km, _ = build(tmp_path, HEAD)
    for fine_tune in (False, True):
        model = tm.build_model(fine_tune=fine_tune)
        trainable = {n for n, p in model.named_parameters() if p.requires_grad}
        expected = {"fc.weight", "fc.bias"} | ({f"base.stage2.{n}" for n in ("conv1.weight", "bn1.weight",
                                                                             "bn1.bias")} if fine_tune else set())
        assert trainable == expected
        model.train()
        bns = {n: m.training for n, m in model.named_modules() if type(m).__name__ == "BatchNorm2d"}
        assert bns == {"base.stem.bn1": False, "base.stage1.bn1": False, "base.stage2.bn1": fine_tune}
        keras_model = km.build_model(fine_tune=fine_tune)
        trainable_layers = {layer.name for layer in keras_model.layers if layer.trainable and layer.weights}
        assert trainable_layers == {"fc"} | ({"base-stage2-conv1", "base-stage2-bn1"} if fine_tune else set())
        assert sum(int(np.prod(w.shape)) for w in keras_model.trainable_weights) == \
            load(_spec(tmp_path, HEAD), {"fine_tune": fine_tune}).root.trainable_params()
    # frozen batch norms: train mode computes what eval mode does, in both frameworks, and keeps the statistics
    import torch

    from archdsl.runtime.interop import torch_to_keras

    model, keras_model = tm.build_model(), km.build_model()
    randomize_batchnorm(model)
    torch_to_keras(model, keras_model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = sample_input(tm.INPUT_SHAPE, batch=4)
    model.train()
    trained = model(torch.from_numpy(x)).detach().numpy()
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    model.eval()
    assert np.abs(trained - torch_outputs(model, x)[0]).max() == 0
    got = np.asarray(keras_model(np.transpose(x, (0, 2, 3, 1)), training=True))
    assert np.abs(got - trained).max() < 1e-5
    assert count_torch(model) == elab.root.total_params()


def test_later_freeze_statements_win(tmp_path):
    elab = load(_spec(tmp_path, HEAD.replace("unfreeze base.stage2 if fine_tune",
                                             "unfreeze base\n    freeze base.stem, fc")))
    frozen = {i.path for i in elab.root.walk() if i.frozen and i.kind in ("conv", "bn", "dense")}
    assert frozen == {"base.stem.conv1", "base.stem.bn1", "fc"}


ERRORS = [
    ("base: Tiny() through stag2", ("network Tiny has no label 'stag2' at the top level of its body; did you "
                                   "mean 'stage2'?")),
    ("base: Tiny(classes = 3) through stage2", ("network Tiny through stage2 does not use its parameter "
                                               "'classes' (it takes: width)")),
    ("base: Tiny(10, 4) through stage2", "does not use its parameter 'classes'"),
    ("base: Tiny(resolution = 32) through stage1", "does not use its parameter 'resolution'"),
    ("base: ConvBN(4) through stage2", "`through` cuts a network used as a base; ConvBN is a block, called whole"),
    ("base: Tine() through stage2", "'Tine' is not a network of an imported file; did you mean 'Tiny'?"),
    ("base: Tiny() through stage1, stage2", "a base with several feature maps names each"),
    ("base: Tiny(8, 4, 16, 2) through stage2", "network Tiny takes 3 arguments (classes, width, resolution), got 4"),
    ("base: Tiny() through flatten1", "an automatic name like 'flatten1' is not one"),
    ("base: Tiny(width = 2, 3) through stage2", "a positional argument cannot follow a keyword argument"),
    ("a, b = in split(2) through stage1", "`through` cuts a network used as a base; 'split' is not a network"),
    ("a, b = base: Tiny() through stage2, stage1", ("the labels of `through` come in the order of network "
                                                   "Tiny's body, each after the one before: 'stage1' is not "
                                                   "after 'stage2'")),
    ("a, b, c = base: Tiny() through stage1, stage2", "3 names for 2 feature maps (stage1, stage2)"),
    ("base: Tiny() through stage2\n    freeze base.stage4", ("freeze: the network has no part 'base.stage4' (no "
                                                         "'stage4' under 'base'); did you mean 'stage2'?")),
    ("base: Tiny() through stage3\n    freeze base.stage3", "'base.stage3' is a residual written inline"),
    ("base: Tiny() through stage2\n    output early\n    freeze early", "freeze: 'early' marks an output"),
    ("base: Tiny() through stage2\n    freeze base if 1", "a freeze condition must be true or false"),
]


@pytest.mark.parametrize("line,message", ERRORS, ids=[m[:30] for _, m in ERRORS])
def test_located_errors(tmp_path, line, message):
    source = f'import "{TINY}"\n\nnetwork N {{\n    input [3, 16, 16]\n    {line}\n}}\n'
    with pytest.raises(ArchError) as err:
        load(_spec(tmp_path, source))
    assert message in str(err.value)
    assert err.value.span is not None and err.value.span.line >= 5


def test_more_located_errors(tmp_path):
    cases = {
        # a freeze statement belongs to the network
        f'import "{TINY}"\nblock B() {{\n    conv(4, 1)\n    freeze conv1\n}}\nnetwork N {{\n    input [3, 8, 8]\n'
        "    B\n}\n": "`freeze` is a statement of the network",
        # the base's channels are its input's
        f'import "{TINY}"\nnetwork N {{\n    input [1, 16, 16]\n    Tiny() through stage2\n}}\n':
            "network Tiny is used as a base on a tensor whose channels are not those of its input "
            "(`input [3, resolution, resolution]`)",
        # one cut of a network in a spec
        f'import "{TINY}"\nnetwork N {{\n    input [3, 16, 16]\n    Tiny() through stage1\n    '
        "Tiny() through stage2\n}\n": "network Tiny is used as a base through stage2 here and through stage1",
    }
    for source, message in cases.items():
        with pytest.raises(ArchError) as err:
            load(_spec(tmp_path, source))
        assert message in str(err.value), source


def test_feature_maps_in_the_drawing(tmp_path):
    """`graph` draws each feature map leaving the base (its cluster, or its one node at depth 0)."""
    from archdsl.reports.draw import build as draw

    elab = load(_spec(tmp_path, f"""
        import "{TINY}"
        network N {{
            input [3, 16, 16]
            a, b = backbone: Tiny() through stage1, stage2
            up = b conv(8, 1) upsample(like = a)
            add(a, up)
            freeze backbone
        }}
        """))
    for depth, source in ((0, "backbone"), (None, "backbone_stage1_relu1")):
        edges = {(e.tail, e.head, e.label) for e in draw(elab, depth).edges}
        assert (source, "add1", "8x8x8") in edges, edges
        assert ("backbone" if depth == 0 else "backbone_stage2_relu1", "conv1", "16x4x4") in edges


def test_frozen_batch_norms_of_any_setting_stay_in_eval_mode(tmp_path):
    """A batch norm that only another setting builds (`if batch_norm`) is kept in eval mode too when the
    module compiled at the setting without it builds it: train() is written wherever a bn may be."""
    _, tm, _, paths = build(tmp_path, """
        network N(batch_norm = false) {
            input [3, 8, 8]
            body: { conv(4, 3, pad = 1) if batch_norm { bn } relu }
            avgpool(global) flatten dense(2)
            freeze body
        }
        """)
    assert "def train(" in paths["torch"].read_text()
    model = tm.build_model(batch_norm=True).train()
    assert [m.training for m in model.modules() if type(m).__name__ == "BatchNorm2d"] == [False]
