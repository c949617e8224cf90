"""The lecture's conventions in `archdsl summary`: activations counted as CS231n's VGG-16 slide counts
them (--activations lecture), the totals without the auxiliary heads, the parameters' memory at a
dtype (the "Size" column of the Keras Applications table), and weights and biases apart (--biases).

VGG-16 at 224x224, by hand: the input 3 * 224 * 224 = 150,528; the convolutions' outputs
2 * 64 * 224^2 + 2 * 128 * 112^2 + 3 * 256 * 56^2 + 3 * 512 * 28^2 + 3 * 512 * 14^2 = 6,422,528 + 3,211,264
+ 2,408,448 + 1,204,224 + 301,056 = 13,547,520; the five max pools' 64 * 112^2 + 128 * 56^2 + 256 * 28^2 +
512 * 14^2 + 512 * 7^2 = 802,816 + 401,408 + 200,704 + 100,352 + 25,088 = 1,530,368 (torchvision's
adaptive_avgpool(7) on the 7x7 map changes nothing and is not counted); the dense layers' 4096 + 4096 + 1000
= 9,192. In all 15,237,608. Biases: the convolutions' 2 * 64 + 2 * 128 + 3 * 256 + 6 * 512 = 4,224 and the
dense layers' 9,192, 13,416 of the 138,357,544 parameters, so 138,344,128 weights.

GoogLeNet without its two auxiliary heads (each: BasicConv 128 of 1x1 over 512 or 528 channels with its batch
norm, dense 2048 -> 1024 and 1024 -> 1000): 13,004,888 - 3,188,968 - 3,191,016 = 6,624,904 parameters, which
torchvision's googlenet(aux_logits=False) has; the MACs less the heads' 4,169,728 + 4,202,496.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from archdsl.api import load
from archdsl.cli import main
from archdsl.core.layers import LAYERS
from archdsl.reports.summary import rows, totals

SPECS = Path(__file__).resolve().parent.parent / "specs"
VGG16 = str(SPECS / "vgg16.arch")
GOOGLENET = str(SPECS / "googlenet.arch")
LECTURE = "activations (lecture convention: the input and the outputs of convolutions, poolings and dense layers): "


def cli(capsys, *args: str) -> str:
    capsys.readouterr()
    assert main(list(args)) == 0, capsys.readouterr().err
    return capsys.readouterr().out


def table_rows(out: str) -> dict[str, list[str]]:
    """The table's rows by path, split at runs of two spaces (shapes keep their inner spaces)."""
    lines = out.splitlines()
    rule = next(i for i, line in enumerate(lines) if line.startswith("---"))
    found = {}
    for line in lines[rule + 1:]:
        if line.startswith("---"):
            break
        cells = [c.strip() for c in line.split("  ") if c.strip()]
        found[cells[0]] = cells
    return found


def test_vgg16_activations_in_the_lecture_convention(capsys):
    elab = load(VGG16)
    table = rows(elab)
    by_category: dict[str, int] = {}
    for r in table:
        if r.lecture_layers:
            category = LAYERS[r.layer].category
            by_category[category] = by_category.get(category, 0) + r.lecture
    assert by_category == {"conv": 13_547_520, "pool": 1_530_368, "dense": 9_192}
    t = totals(table, input_activations=elab.root.in_shape.numel(), convention="lecture")
    assert (t.input_activations, t.lecture_activations, t.activations) == (150_528, 15_237_608, 28_701_160)

    out = cli(capsys, "summary", VGG16, "--activations", "lecture")
    assert f"\n{LECTURE}15,237,608 elements = 60,950,432 bytes as float32 (58.1 MiB) per sample\n" in out
    cells = table_rows(out)
    assert cells["avgpool"][1:] == ["adaptive_avgpool", "[512, 7, 7]", "0", "0", "-", "212/32"]  # output = input
    assert cells["block5.maxpool1"][-2] == "25,088"
    assert [cells[p][-2] for p in ("block1.group1.0.0", "block1.group1.0.1", "flatten1", "classifier.2")] == [
        "3,211,264", "-", "-", "-"]
    assert cells["classifier.6"][-2] == "1,000"
    default = cli(capsys, "summary", VGG16)
    assert "\nactivations: 28,701,160 elements = 114,804,640 bytes as float32 (109.5 MiB) per sample\n" in default
    assert "lecture convention" not in default and " - " not in default

    markdown = cli(capsys, "summary", VGG16, "--activations", "lecture", "--format", "markdown")
    assert "| `avgpool` | adaptive_avgpool | [512, 7, 7] | 0 | 0 | - | 212/32 |" in markdown
    assert f"{LECTURE}15,237,608 elements" in markdown
    # JSON and CSV carry both conventions, whatever the option
    data = json.loads(cli(capsys, "summary", VGG16, "--format", "json"))
    assert {k: data["totals"][k] for k in ("activations", "input_activations", "lecture_activations",
                                            "lecture_activation_bytes")} == {
        "activations": 28_701_160, "input_activations": 150_528, "lecture_activations": 15_237_608,
        "lecture_activation_bytes": 60_950_432}
    layers = {r["path"]: r for r in data["layers"]}
    assert (layers["avgpool"]["lecture_activations"], layers["avgpool"]["activations"]) == (0, 25_088)
    assert layers["block5.maxpool1"]["lecture_activations"] == 25_088
    got = list(csv.DictReader(io.StringIO(cli(capsys, "summary", VGG16, "--format", "csv"))))
    assert got[-1]["path"] == "total" and got[-1]["lecture_activations"] == "15237608"
    assert sum(int(r["lecture_activations"]) for r in got[:-1]) == 15_237_608 - 150_528


POOLS = """network Pools {
    input [4, 8, 8]
    a: maxpool(3, stride = 1, pad = 1)     # [4, 8, 8], but each output is a maximum of 9: counted
    b: maxpool(1)                          # one pixel a window: the input unchanged
    c: adaptive_avgpool(4)                 # [4, 4, 4]: counted
    d: adaptive_avgpool(4)                 # 4x4 to 4x4: unchanged
    e: avgpool(2)                          # [4, 2, 2]
    f: avgpool(global)                     # [4, 1, 1]
    g: avgpool(global)                     # 1x1 to 1x1: unchanged
    h: conv(2, 1) relu
}
"""


def test_a_pooling_is_left_out_only_where_its_output_is_its_input(tmp_path, capsys):
    spec = tmp_path / "pools.arch"
    spec.write_text(POOLS)
    cells = table_rows(cli(capsys, "summary", str(spec), "--activations", "lecture"))
    assert {p: cells[p][5] for p in "abcdefgh" if p in cells} == {
        "a": "256", "b": "-", "c": "64", "d": "-", "e": "16", "f": "4", "g": "-", "h": "2"}
    assert cells["relu1"][5] == "-"
    out = cli(capsys, "summary", str(spec), "--activations", "lecture", "--dtype", "int8")
    assert f"{LECTURE}598 elements = 598 bytes as int8 per sample" in out  # 256 + 256 + 64 + 16 + 4 + 2


def test_vgg16_weights_and_biases_apart(capsys):
    out = cli(capsys, "summary", VGG16, "--biases")
    header = [c.strip() for c in out.splitlines()[1].split("  ") if c.strip()]
    assert header[3:6] == ["params", "weights", "biases"]
    cells = table_rows(out)
    assert cells["classifier.0"][3:6] == ["102,764,544", "102,760,448", "4,096"]
    assert cells["block1.group1.0.0"][3:6] == ["1,792", "1,728", "64"]
    assert "\ntotal: 138,357,544 params (138,344,128 weights, 13,416 biases), 15,470,264,320 MACs (15.5 G)\n" in out
    assert "weights" not in cli(capsys, "summary", VGG16)
    data = json.loads(cli(capsys, "summary", VGG16, "--format", "json"))
    assert (data["totals"]["weights"], data["totals"]["biases"]) == (138_344_128, 13_416)
    total = list(csv.DictReader(io.StringIO(cli(capsys, "summary", VGG16, "--format", "csv"))))[-1]
    assert (total["weights"], total["biases"]) == ("138344128", "13416")


def test_a_frozen_network_splits_both_ways(tmp_path, capsys):
    spec = tmp_path / "frozen.arch"
    spec.write_text("network Frozen {\n    input [3, 8, 8]\n    base: { conv(4, 3) bn(beta = false) }\n"
                    "    flatten dense(2)\n    freeze base\n}\n")
    # conv 4 * 27 + 4 = 112 (4 biases), bn gamma only: 4 weights; dense 144 * 2 + 2 = 290 (2 biases)
    out = cli(capsys, "summary", str(spec), "--biases", "--format", "markdown")
    assert "| path | layer | output shape | params | weights | biases | frozen | MACs |" in out
    assert "total: 406 params (290 trainable, 116 frozen; 400 weights, 6 biases), " in out


def test_parameter_memory_at_a_dtype(capsys):
    """The Keras Applications table's Size is its weights file in MiB, near Keras' count at 4 bytes:
    VGG16 138,357,544 * 4 bytes = 527.8 MiB (528 in the table), Xception 22,910,480 * 4 = 87.4 MiB (88)."""
    out = cli(capsys, "summary", VGG16, "--dtype", "float32")
    assert "\nparameter memory: 553,430,176 bytes as float32 (527.8 MiB) for 138,357,544 params\n" in out
    assert abs(553_430_176 / 2**20 - 528) < 1
    assert "parameter memory" not in cli(capsys, "summary", VGG16)  # only where a dtype is asked for
    xception = cli(capsys, "summary", str(SPECS / "xception.arch"), "--dtype", "float32", "--depth", "0")
    assert ("\nparameter memory: 91,423,808 bytes as float32 (87.2 MiB) for 22,855,952 params; Keras' 22,910,480: "
            "91,641,920 bytes (87.4 MiB)\n") in xception
    assert abs(91_641_920 / 2**20 - 88) < 1
    data = json.loads(cli(capsys, "summary", VGG16, "--format", "json", "--dtype", "float16"))
    assert (data["totals"]["param_bytes"], data["totals"]["keras_param_bytes"]) == (276_715_088, 276_715_088)


def test_googlenet_totals_without_the_auxiliary_heads(capsys):
    line = ("\nwithout the auxiliary heads (aux1, aux2): 6,624,904 params, 1,498,376,192 MACs (1.50 G), "
            "11,100,024 activations; Keras: 6,639,464 params\n")
    full = cli(capsys, "summary", GOOGLENET)
    assert "\ntotal: 13,004,888 params, 1,506,748,416 MACs (1.51 G)\n" in full
    assert full.endswith(line[1:])
    assert cli(capsys, "summary", GOOGLENET, "--depth", "0").endswith(line[1:])
    lecture = cli(capsys, "summary", GOOGLENET, "--depth", "0", "--activations", "lecture", "--biases",
                  "--dtype", "float16")
    assert lecture.splitlines()[-1] == (
        "without the auxiliary heads (aux1, aux2): 6,624,904 params (6,616,624 weights, 8,280 biases) = "
        "13,249,808 bytes as float16 (12.6 MiB), 1,498,376,192 MACs (1.50 G), 4,796,184 activations "
        "(lecture convention); Keras: 6,639,464 params")

    data = json.loads(cli(capsys, "summary", GOOGLENET, "--format", "json"))
    without = data["totals"]["without_auxiliary"]
    assert (without["params"], without["macs"], without["activations"], without["keras_params"]) == (
        6_624_904, 1_498_376_192, 11_100_024, 6_639_464)
    auxiliary = {r["path"].split(".")[0] for r in data["layers"] if r["auxiliary"]}
    assert auxiliary == {"aux1", "aux2"}
    assert all(r["auxiliary"] == r["path"].startswith("aux") for r in data["layers"])
    got = list(csv.DictReader(io.StringIO(cli(capsys, "summary", GOOGLENET, "--format", "csv"))))
    assert [r["path"] for r in got[-2:]] == ["total", "total without auxiliary"]
    assert (got[-1]["params"], got[-1]["macs"], got[-1]["activations"]) == ("6624904", "1498376192", "11100024")
    # a network without auxiliary outputs has none of it
    assert "auxiliary" not in cli(capsys, "summary", VGG16)
    assert "without_auxiliary" not in json.loads(cli(capsys, "summary", VGG16, "--format", "json"))["totals"]


def test_torchvision_counts_the_networks_without_their_auxiliary_heads():
    torchvision = pytest.importorskip("torchvision")

    def count(model) -> int:
        return sum(p.numel() for p in model.parameters())

    for spec, build, n in (("googlenet.arch", torchvision.models.googlenet, 6_624_904),
                           ("inception_v3.arch", torchvision.models.inception_v3, 23_834_568)):
        t = totals(rows(load(str(SPECS / spec))))
        assert t.without_auxiliary is not None and t.without_auxiliary.params == n
        assert count(build(weights=None, aux_logits=False, init_weights=False)) == n
        assert count(build(weights=None, aux_logits=True, init_weights=False)) == t.params


def test_an_unknown_convention_is_a_clean_error(capsys):
    capsys.readouterr()
    assert main(["summary", VGG16, "--activations", "slides"]) == 1
    err = capsys.readouterr().err
    assert "unknown activation convention 'slides' (activation conventions: all, lecture)" in err
    assert "Traceback" not in err
