"""`archdsl inspect`: per-layer statistics of a batch through the generated PyTorch model, the flags
along the depth, the formats, loading weights, and the pictures of what a trained LeNet-5 sees.

The statistics are checked against the same quantities computed here by hand with torch; the flags on
two networks whose behaviour at initialisation is known: 20 convolutions with sigmoid and no batch
norm (the signal and the gradients vanish) and a ResNet-20 with batch norm (they do not)."""

from __future__ import annotations

import csv
import io
import itertools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from archdsl import api
from archdsl.cli import main
from archdsl.tools import inspection, pictures

ROOT = Path(__file__).resolve().parent.parent

# conv(4, 3) on [2, 6, 6] -> [4, 4, 4]; the relu and the flatten are function calls in forward();
# a tanh on the dense layer's output; a 3-way dense classifier.
TINY = """\
network Tiny {
    input [2, 6, 6]
    conv1: conv(4, 3) relu
    flatten
    fc1: dense(5) tanh
    logits: dense(3)
}
"""

DEEP_SIGMOID = """\
network DeepSigmoid(depth = 20) {
    input [3, 8, 8]
    body: { conv(8, 3, pad = 1) sigmoid } * depth
    avgpool(global) flatten
    logits: dense(10)
}
"""


@pytest.fixture
def one_thread():
    """Small models run fastest on one thread (and do not fight the other test worker for the cores)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _spec(tmp_path: Path, text: str, name: str = "net.arch") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_statistics_are_those_computed_by_hand(tmp_path, one_thread):
    spec = _spec(tmp_path, TINY)
    elab = api.load(spec)
    result, model, x, _ = inspection.inspect(elab, batch=4, seed=3)
    by = {s.path: s for s in result.layers}
    assert [s.path for s in result.layers] == [r.path for r in api.report(elab)]
    assert [by[p].measured for p in ("conv1", "relu1", "flatten1", "fc1", "tanh1", "logits")] == \
        ["module", "call", "call", "module", "call", "module"]

    # the same batch and the same weights, by hand
    assert torch.equal(x, torch.randn((4, 2, 6, 6), generator=torch.Generator().manual_seed(3)))
    model.zero_grad(set_to_none=True)
    conv = F.conv2d(x, model.conv1.weight, model.conv1.bias)
    relu = conv.clamp_min(0)
    fc = F.linear(relu.flatten(1), model.fc1.weight, model.fc1.bias)
    tanh = torch.tanh(fc)
    logits = F.linear(tanh, model.logits.weight, model.logits.bias)
    labels = torch.randint(0, 3, (4,), generator=torch.Generator().manual_seed(3 + 1))
    loss = F.cross_entropy(logits, labels)
    assert result.loss == pytest.approx(float(loss.detach()), rel=1e-5)
    loss.backward()

    for path, t in (("conv1", conv), ("relu1", relu), ("fc1", fc), ("tanh1", tanh), ("logits", logits)):
        s, t = by[path], t.detach()
        assert s.mean == pytest.approx(float(t.mean()), abs=1e-6)
        assert s.std == pytest.approx(float(t.std(correction=0)), rel=1e-5)
        assert (s.min, s.max) == (pytest.approx(float(t.min())), pytest.approx(float(t.max())))
        assert s.zeros == pytest.approx(float((t == 0).float().mean()))
        assert s.signal == pytest.approx(float(t.var(dim=0, correction=0).mean().sqrt()), rel=1e-5)
    # relu: zeros by hand; a channel is dead when it is 0 at every sample and position
    assert 0 < by["relu1"].zeros < 1
    dead = float((relu.detach().amax(dim=(0, 2, 3)) == 0).float().mean())
    assert by["relu1"].dead == pytest.approx(dead)
    assert by["tanh1"].saturated == pytest.approx(float((tanh.detach().abs() > 0.99).float().mean()))
    assert by["relu1"].saturated is None and by["fc1"].dead is None  # fc1: 4 values a unit, too few
    for path in ("conv1", "fc1", "logits"):
        module = model.get_submodule(path)
        norm = torch.sqrt(module.weight.grad.pow(2).sum() + module.bias.grad.pow(2).sum())
        assert by[path].grad_norm == pytest.approx(float(norm), rel=1e-5)
        assert by[path].weight_norm == pytest.approx(
            float(torch.sqrt(module.weight.detach().pow(2).sum() + module.bias.detach().pow(2).sum())), rel=1e-5)
    assert by["relu1"].grad_norm is None


def test_deep_sigmoid_network_without_batch_norm_is_flagged_vanishing(tmp_path, one_thread):
    elab = api.load(_spec(tmp_path, DEEP_SIGMOID))
    result, *_ = inspection.inspect(elab, batch=8)
    convs = [s for s in result.layers if s.layer == "conv"]
    assert len(convs) == 20
    # the spread across the batch falls by orders of magnitude along the depth, and so do the gradients
    assert convs[-1].signal < convs[0].signal / 1e4
    assert convs[0].relative_grad < convs[-1].relative_grad / 1e6
    text = " ".join(result.findings)
    assert "the signal vanishes" in text and "vanishing gradients" in text
    assert "sigmoid activations" in text and "no normalization layer" in text
    assert "vanishing" in convs[-1].flags and "vanishing gradient" in convs[0].flags
    assert not convs[0].flags or convs[0].flags == ["vanishing gradient"]


def test_resnet_with_batch_norm_is_not_flagged(one_thread):
    elab = api.load(str(ROOT / "specs/resnet_cifar.arch"), {"depth": 20, "resolution": 16})
    result, model, *_ = inspection.inspect(elab, batch=8)
    assert sum(s.layer == "conv" for s in result.layers) == 19
    assert result.findings == []
    assert not any(s.flags for s in result.layers)
    # README.md: "grad norm / weight norm of its 20 weighted layers stays within a factor of ten (0.35 to 2.5
    # at 16x16, batch 8)"
    relative = [s.relative_grad for s in result.layers if s.weighted]
    assert len(relative) == 20 and (round(min(relative), 2), round(max(relative), 1)) == (0.35, 2.5)
    assert all(s.measured != "-" for s in result.layers)
    # the train-mode batch moved the batch norms' running statistics; inspect put them back
    fresh = dict(inspection.build(elab).named_buffers())
    assert all(torch.equal(b, fresh[name]) for name, b in model.named_buffers())


def test_formats_parse_and_agree(tmp_path, capsys, one_thread):
    spec = _spec(tmp_path, TINY)
    outputs = {}
    for fmt in ("table", "json", "csv", "markdown"):
        assert main(["inspect", spec, "--batch", "4", "--format", fmt]) == 0
        outputs[fmt] = capsys.readouterr().out
    data = json.loads(outputs["json"])
    assert [layer["path"] for layer in data["layers"]] == ["conv1", "relu1", "flatten1", "fc1", "tanh1", "logits"]
    assert data["mode"] == "train" and data["batch"] == 4 and data["findings"] == []
    table = list(csv.DictReader(io.StringIO(outputs["csv"])))
    assert [r["path"] for r in table] == [layer["path"] for layer in data["layers"]]
    for row, layer in zip(table, data["layers"]):
        assert float(row["mean"]) == layer["mean"] and row["measured"] == layer["measured"]
        assert (row["grad_norm"] == "") == (layer["grad_norm"] is None)
    md = [line for line in outputs["markdown"].splitlines() if line.startswith("|")]
    assert len(md) == 2 + 6 and all(line.count("|") == md[0].count("|") for line in md)
    lines = outputs["table"].splitlines()
    assert lines[1].split()[:4] == ["path", "layer", "output", "shape"] and "no layer flagged" in outputs["table"]
    for path in ("a.png", "a.svg"):
        assert main(["inspect", spec, "--batch", "4", "-o", str(tmp_path / "r.json"), "-f", "json",
                     "--plot", str(tmp_path / path)]) == 0
    assert (tmp_path / "a.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert b"<svg" in (tmp_path / "a.svg").read_bytes()[:1000]
    assert json.loads((tmp_path / "r.json").read_text()) == data


def test_weights_from_a_state_dict_change_the_numbers(tmp_path, capsys, one_thread):
    spec = _spec(tmp_path, TINY)
    elab = api.load(spec)
    model = inspection.build(elab)
    state = model.state_dict()
    state["conv1.weight"] = torch.zeros_like(state["conv1.weight"])
    state["conv1.bias"] = torch.tensor([0.5, -0.25, 0.0, 2.0])
    torch.save(state, tmp_path / "w.pt")
    assert main(["inspect", spec, "--batch", "4", "--weights", str(tmp_path / "w.pt"), "-f", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    conv, relu = data["layers"][0], data["layers"][1]
    assert data["mode"] == "eval" and data["weights"] == str(tmp_path / "w.pt")
    # every output of channel c is its bias: mean (0.5 - 0.25 + 0 + 2) / 4, no spread across the batch
    assert conv["mean"] == pytest.approx(0.5625) and conv["min"] == -0.25 and conv["max"] == 2.0
    assert conv["signal"] == 0.0
    assert relu["zeros"] == pytest.approx(0.5) and relu["dead"] == pytest.approx(0.5)  # channels 2 and 3
    # a file that does not fit: one clear message, exit 1
    del state["fc1.bias"]
    torch.save(state, tmp_path / "bad.pt")
    assert main(["inspect", spec, "--weights", str(tmp_path / "bad.pt")]) == 1
    err = capsys.readouterr().err
    assert "does not fit network Tiny: missing 1 tensor: fc1.bias" in err and "Traceback" not in err


def test_an_open_input_size_is_given_with_size(tmp_path, capsys, one_thread):
    spec = _spec(tmp_path, TINY.replace("input [2, 6, 6]", "input [2, ?, ?]").replace("flatten", "avgpool(global) flatten"))
    assert main(["inspect", spec, "--batch", "2"]) == 1
    assert "its input size is open ([2, ?, ?]); inspect needs one: give it with --size" in capsys.readouterr().err
    assert main(["inspect", spec, "--batch", "2", "--size", "7x9", "-f", "json"]) == 0
    layers = json.loads(capsys.readouterr().out)["layers"]
    assert layers[0]["output_shape"] == [4, 5, 7] and layers[1]["output_shape"] == [4, 5, 7]


AUX = """\
network Aux {
    input [2, 8, 8]
    conv1: conv(4, 3) relu
    auxiliary output aux = avgpool(global) flatten head: dense(3)
    conv2: conv(4, 3) relu
    flatten
    output logits = dense(3)
}
"""


def test_an_auxiliary_head_is_measured_in_train_mode_only(tmp_path, one_thread):
    """Train mode runs the auxiliary head (its loss is added); eval mode neither runs nor measures it, and
    does not flag its layers `no gradient`."""
    elab = api.load(_spec(tmp_path, AUX))
    train, *_ = inspection.inspect(elab, batch=4, mode="train")
    evaluated, *_ = inspection.inspect(elab, batch=4, mode="eval")
    head = {r.path: r for r in train.layers}["aux.head"]
    assert head.measured == "module" and head.grad_norm > 0
    head = {r.path: r for r in evaluated.layers}["aux.head"]
    assert head.measured == "-" and head.grad_norm is None and head.flags == []
    assert evaluated.findings == [] and {r.path: r for r in evaluated.layers}["conv1"].grad_norm > 0
    # the loss: the sum of the cross-entropies of both heads in train mode, of the main one in eval mode
    assert train.loss > evaluated.loss > 0


def test_errors_are_one_line(tmp_path, capsys):
    spec = _spec(tmp_path, TINY)
    for args, message in (
        (["--pictures", str(tmp_path / "p"), "--feature-maps", "conv9"], "no layer 'conv9' in network Tiny"),
        (["--plot", str(tmp_path / "p.jpg")], "--plot: write a .png or .svg file"),
        (["--input", "cifar"], "unknown input 'cifar'"),
        (["--weights", str(tmp_path / "none.pt")], "--weights: no file"),
        (["--occlusion", "1"], "--occlusion chooses what --pictures DIR draws"),
        (["--size", "8x8"], "--size is for a spec that leaves its input's height and width open"),
        (["--pictures", str(tmp_path / "p"), "--occlusion", "3"], "class 3 is not among the network's 3 outputs"),
    ):
        assert main(["inspect", spec, "--batch", "2", *args]) == 1, args
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, err


def test_the_command_line_imports_no_framework_until_inspect_runs():
    code = ("import sys\nfrom archdsl.cli import build_parser\nbuild_parser().parse_args(['inspect', 'x.arch'])\n"
            "print(','.join(m for m in ('torch', 'numpy', 'PIL', 'matplotlib') if m in sys.modules))\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", path
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_pictures_of_a_lenet5_trained_on_digits(tmp_path, capsys, one_thread):
    spec = str(ROOT / "specs/lenet5.arch")
    elab = api.load(spec)
    model = inspection.build(elab, seed=0)
    initial = model.c1.weight.detach().clone()
    x, y = inspection.digits_batch((1, 32, 32), 1797)
    torch.manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    model.train()
    for _ in range(4):
        order = torch.randperm(1500)
        for i in range(0, 1500, 50):
            batch = order[i:i + 50]
            loss = F.cross_entropy(model(x[batch]), y[batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        accuracy = float((model(x[1500:]).argmax(1) == y[1500:]).float().mean())
    assert accuracy > 0.85  # trained: the held-out digits are mostly right
    assert (model.c1.weight - initial).abs().max() > 0.05  # the filters learned
    torch.save(model.state_dict(), tmp_path / "lenet5.pt")

    # a held-out digit as an image file, resized by inspect to LeNet-5's 32x32 input
    from PIL import Image

    sample, label = 1500, int(y[1500])
    image = np.round(x[sample, 0].numpy() * 255).astype(np.uint8)
    Image.fromarray(image, "L").save(tmp_path / "digit.png")
    out = tmp_path / "pictures"
    assert main(["inspect", spec, "--weights", str(tmp_path / "lenet5.pt"), "--image", str(tmp_path / "digit.png"),
                 "--pictures", str(out), "--feature-maps", "c1,tanh2", "--occlusion", str(label)]) == 0
    captured = capsys.readouterr()
    assert "occlusion" in captured.err and "1 input, image" in captured.out

    # the sizes the pictures' layout gives (pictures.py): tiles of 6 filters 5x5 at 12 px a weight in a
    # 3x2 grid; 6 maps 28x28 at 2 px a value (3x2); 16 maps 10x10 at 6 px (4x4); 2 px of gray between and
    # around the tiles
    assert _png_size(out / "filters.png") == (3 * (60 + 2) + 2, 2 * (60 + 2) + 2)
    assert _png_size(out / "features-c1.png") == (3 * (56 + 2) + 2, 2 * (56 + 2) + 2)
    assert _png_size(out / "features-tanh2.png") == (4 * (60 + 2) + 2, 4 * (60 + 2) + 2)
    assert _png_size(out / f"occlusion-{label}.png") == pictures.OCCLUSION_SIZE  # matplotlib's figure

    # the trained filters are not the initial ones: the picture of the initial filters differs
    trained = np.asarray(Image.open(out / "filters.png"))
    assert not np.array_equal(trained, pictures.filters_picture(initial.numpy()))

    # the occlusion map: the true class's probability drops where the patch hides the digit, not on the
    # empty border (the pixels 4 or more from any ink: an 8x8 patch over them hides no ink)
    sensitivity, base = pictures.occlusion(model, x[sample], label, 8, final_softmax=False)
    assert base > 0.5
    ink = x[sample, :1] > 0.5
    near = F.max_pool2d(ink[None].float(), 7, stride=1, padding=3)[0, 0].numpy() > 0
    ink, empty = ink[0].numpy(), ~near
    assert ink.sum() > 50 and empty.sum() > 50
    assert sensitivity[ink].mean() < sensitivity[empty].mean() - 0.2


def test_keras_weights_give_the_numbers_of_the_same_weights_in_pytorch(tmp_path, capsys, one_thread):
    """A .keras or .weights.h5 file of the generated Keras model is copied into the PyTorch model
    (interop.keras_to_torch): the report is the one of the PyTorch state_dict holding those weights."""
    spec = _spec(tmp_path, TINY)
    elab = api.load(spec)
    model = inspection.build(elab, seed=5)
    torch.save(model.state_dict(), tmp_path / "w.pt")
    import keras  # noqa: F401 (after torch, which the module imported first)

    from archdsl.runtime.interop import torch_to_keras

    keras_model = inspection.generated_module(elab, "keras").build_model()
    torch_to_keras(model, keras_model)
    keras_model.save(tmp_path / "w.keras")
    keras_model.save_weights(tmp_path / "w.weights.h5")
    reports = []
    for name in ("w.pt", "w.keras", "w.weights.h5"):
        assert main(["inspect", spec, "--batch", "4", "--weights", str(tmp_path / name), "-f", "json"]) == 0
        data = json.loads(capsys.readouterr().out)
        reports.append([{k: v for k, v in layer.items()} for layer in data["layers"]])
    assert reports[0] == reports[1] == reports[2]
    assert reports[0][0]["grad_norm"] > 0


def test_the_readme_example_is_what_inspect_prints(tmp_path, capsys, one_thread, monkeypatch):
    """README.md, "Looking inside a network": the spec and every line shown of the report (`...` stands
    for lines left out), and the numbers its prose quotes."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## Looking inside a network"):]
    blocks = section.split("```")
    spec_text, shown = blocks[1].strip("\n") + "\n", blocks[3].strip("\n").splitlines()
    assert spec_text == DEEP_SIGMOID
    command = shown[0].removeprefix("$ ").split()
    assert command[:3] == ["archdsl", "inspect", "deep_sigmoid.arch"]
    (tmp_path / "deep_sigmoid.arch").write_text(spec_text)
    monkeypatch.chdir(tmp_path)
    assert main(command[1:]) == 0
    printed = capsys.readouterr().out.splitlines()
    at = 0
    for line in shown[1:]:
        if line == "...":
            continue
        assert line in printed[at:], line
        at = printed.index(line, at) + 1
    assert (tmp_path / "deep_sigmoid.png").read_bytes()[:4] == b"\x89PNG"
    # the prose: "The std of every layer stays between 0.04 and 0.54", "shrinks about 7.5x a layer",
    # "10^17 times weaker"
    assert "stays between 0.04 and 0.54" in section and "shrinks about 7.5x a layer" in section
    result, *_ = inspection.inspect(api.load("deep_sigmoid.arch"))
    stds = [s.std for s in result.layers]
    assert (round(min(stds), 2), round(max(stds), 2)) == (0.04, 0.54)
    convs = [s for s in result.layers if s.layer == "conv"]
    steps = [a.signal / b.signal for a, b in itertools.pairwise(convs[:8])]
    assert 7 < float(np.median(steps)) < 8
    assert "10^17 times weaker" in section
    assert 1e17 < convs[-1].relative_grad / convs[0].relative_grad < 1e18
