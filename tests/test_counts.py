"""Trainable and frozen parameters in `check`, `summary` and `sweep`, in archdsl's convention
(PyTorch's parameters()) and in Keras' (count_params() also counts each batch norm's moving mean and
variance, as non-trainable weights).

The two transfer-learning networks of Chollet's book, on the repository's VGG16 and Xception:
- cats and dogs (5.3): VGG16's convolutions (14,714,688 params) on 150x150 images, then
  flatten [512 * 4 * 4 = 8192] -> dense(256): 8192 * 256 + 256 = 2,097,408, dense(1): 257. Total
  16,812,353; with the base frozen 2,097,665 train; with block5 (3 convs of 512 * 512 * 9 + 512 =
  2,359,808 each, 7,079,424) unfrozen, 9,177,089. No batch norm: Keras counts the same.
- flowers: Xception through its exit flow (20,806,952 params) -> global pool -> dense(5): 2048 * 5 + 5
  = 10,245 trainable, 20,817,197 in all; its 40 batch norms over 27,264 channels in all keep 54,528
  moving statistics, so Keras counts 20,871,725, of which 20,806,952 + 54,528 = 20,861,480 non-trainable.
The last tests build both generated models and count their weights.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest

from archdsl.api import load
from archdsl.cli import main
from archdsl.reports.summary import COUNT_FIELDS, rows, totals

from .frameworks import generated_modules

ROOT = Path(__file__).resolve().parent.parent

CATS_DOGS = f"""import "{ROOT / 'specs' / 'vgg16.arch'}"

network CatsDogs(fine_tune = false, resolution = 150) {{
    input [3, resolution, resolution]
    base: VGG16() through block5
    flatten
    dense(256) relu
    dropout(0.5)
    dense(1) sigmoid
    freeze base
    unfreeze base.block5 if fine_tune
}}
"""

FLOWERS = f"""import "{ROOT / 'specs' / 'xception.arch'}"

network FlowersXception(classes = 5, resolution = 224) {{
    input [3, resolution, resolution]
    preprocess(tf)
    base: Xception() through exit_flow
    avgpool(global) flatten
    dense(classes) softmax
    freeze base
}}
"""

# no freeze, one batch norm: conv(8, 3) 8*3*9 + 8 = 224 params, 224 * 36 - 8 * 36 = 7,776 MACs; bn 16 params and
# 16 moving statistics
SMALL_BN = """network SmallBN(width = 8) {
    input [3, 8, 8]
    conv(width, 3) bn relu
}
"""


@pytest.fixture(scope="module")
def specs(tmp_path_factory) -> dict[str, str]:
    tmp = tmp_path_factory.mktemp("counts")
    out = {}
    for name, text in (("cats_dogs", CATS_DOGS), ("flowers", FLOWERS), ("small_bn", SMALL_BN)):
        (tmp / f"{name}.arch").write_text(text)
        out[name] = str(tmp / f"{name}.arch")
    return out


def cli(capsys, *args: str) -> str:
    capsys.readouterr()
    assert main(list(args)) == 0, capsys.readouterr().err
    return capsys.readouterr().out


def test_cats_and_dogs_with_and_without_fine_tuning(specs, capsys):
    spec = specs["cats_dogs"]
    assert ", 16,812,353 params (2,097,665 trainable), " in cli(capsys, "check", spec)
    assert ", 16,812,353 params (9,177,089 trainable), " in cli(capsys, "check", spec, "--set", "fine_tune=true")
    table = cli(capsys, "summary", spec, "--depth", "1")
    assert "total: 16,812,353 params (2,097,665 trainable, 14,714,688 frozen), " in table
    assert "Keras" not in table  # no batch norm: Keras counts the same
    lines = table.splitlines()
    header = lines[1].split()
    assert header[4:6] == ["params", "frozen"]  # after "output shape"
    marks = {line.split()[0]: line.split()[6] for line in lines[3:8]}  # after "[64, 75, 75]" and the params
    assert marks == dict.fromkeys(["base.block1", "base.block2", "base.block3", "base.block4", "base.block5"], "yes")
    dense1 = next(line for line in lines if line.startswith("dense1 "))
    assert dense1.split()[:5] == ["dense1", "dense", "[256]", "2,097,408", "2,097,152"]  # no mark before the MACs
    collapsed = cli(capsys, "summary", spec, "--depth", "0", "--set", "fine_tune=true")
    assert collapsed.splitlines()[3].split()[:6] == ["base", "VGG16", "[512,", "4,", "4]", "14,714,688"]
    assert collapsed.splitlines()[3].split()[6] == "partly"
    assert "total: 16,812,353 params (9,177,089 trainable, 7,635,264 frozen), " in collapsed
    data = json.loads(cli(capsys, "summary", spec, "--format", "json", "--set", "fine_tune=true"))
    assert {k: data["totals"][k] for k in ("params", *COUNT_FIELDS)} == {
        "params": 16_812_353, "trainable_params": 9_177_089, "frozen_params": 7_635_264, "bn_statistics": 0,
        "keras_params": 16_812_353, "keras_non_trainable_params": 7_635_264}
    layers = {r["path"]: r for r in data["layers"]}
    frozen, tuned = layers["base.block4.group1.2.0"], layers["base.block5.group1.0.0"]  # the last and first conv
    assert frozen["frozen"] and (frozen["trainable_params"], frozen["frozen_params"]) == (0, 2_359_808)
    assert not tuned["frozen"] and (tuned["trainable_params"], tuned["frozen_params"]) == (2_359_808, 0)


def test_sweep_has_a_trainable_column(specs, capsys):
    table = cli(capsys, "sweep", specs["cats_dogs"], "fine_tune=false,true").splitlines()
    assert table[1].split()[:4] == ["fine_tune", "input", "params", "trainable"]
    assert [line.split()[4:6] for line in table[3:]] == [["16,812,353", "2,097,665"], ["16,812,353", "9,177,089"]]
    got = list(csv.DictReader(io.StringIO(cli(capsys, "sweep", specs["flowers"], "classes=5,10", "--format", "csv"))))
    assert [(r["params"], r["trainable_params"], r["keras_params"], r["keras_non_trainable_params"]) for r in got] == [
        ("20817197", "10245", "20871725", "20861480"), ("20827442", "20490", "20881970", "20861480")]
    # no freeze: no trainable column in the table; JSON carries the counts all the same
    assert "trainable" not in cli(capsys, "sweep", specs["small_bn"], "width=8,4")
    data = json.loads(cli(capsys, "sweep", specs["small_bn"], "width=8,4", "--format", "json"))
    assert [(r["params"], r["trainable_params"], r["bn_statistics"], r["keras_params"]) for r in data] == [
        (240, 240, 16, 256), (120, 120, 8, 128)]


def test_flowers_xception_in_both_conventions(specs, capsys):
    spec = specs["flowers"]
    assert ", 20,817,197 params (10,245 trainable), " in cli(capsys, "check", spec)
    table = cli(capsys, "summary", spec, "--depth", "0")
    assert ("total: 20,817,197 params (10,245 trainable, 20,806,952 frozen), 4,550,841,312 MACs (4.55 G)\n"
            "Keras: 20,871,725 params (10,245 trainable, 20,861,480 non-trainable), counting the 54,528 batch-norm "
            "moving statistics\nactivations: ") in table
    got = list(csv.DictReader(io.StringIO(cli(capsys, "summary", spec, "--format", "csv"))))
    total = got[-1]
    assert total["path"] == "total"
    assert {k: int(total[k]) for k in ("params", *COUNT_FIELDS)} == {
        "params": 20_817_197, "trainable_params": 10_245, "frozen_params": 20_806_952, "bn_statistics": 54_528,
        "keras_params": 20_871_725, "keras_non_trainable_params": 20_861_480}
    bns = [r for r in got if r["layer"] == "bn"]
    assert len(bns) == 40 and all(r["frozen"] == "true" for r in bns)
    assert sum(int(r["bn_statistics"]) for r in bns) == 54_528
    first = bns[0]  # entry_flow's first bn, after conv(32): 64 params, 64 statistics
    assert (first["params"], first["bn_statistics"], first["keras_params"], first["keras_non_trainable_params"]) == (
        "64", "64", "128", "128")
    markdown = cli(capsys, "summary", spec, "--format", "markdown", "--depth", "0")
    assert "| path | layer | output shape | params | frozen | MACs | activations | receptive field |" in markdown
    assert "| `base` | Xception | [2048, 7, 7] | 20,806,952 | yes | 4,550,831,072 |" in markdown


def test_a_network_without_freeze_keeps_its_compact_lines(specs, capsys):
    spec = specs["small_bn"]
    assert ", 240 params, " in cli(capsys, "check", spec)
    table = cli(capsys, "summary", spec)
    assert "frozen" not in table
    assert ("total: 240 params, 7,776 MACs (7.78 K)\n"
            "Keras: 256 params (240 trainable, 16 non-trainable), counting the 16 batch-norm moving statistics\n"
            "activations: ") in table
    data = json.loads(cli(capsys, "summary", spec, "--format", "json"))
    assert data["totals"]["frozen_layers"] == 0
    assert [(r["bn_statistics"], r["keras_params"], r["frozen"]) for r in data["layers"]] == [
        (0, 224, False), (16, 32, False), (0, 0, False)]


@pytest.mark.parametrize("name, setting", [
    ("cats_dogs", {"resolution": 32}),
    ("cats_dogs", {"resolution": 32, "fine_tune": True}),
    ("flowers", {"resolution": 71}),  # the counts do not depend on the input size
])
def test_the_report_counts_what_both_frameworks_build(specs, tmp_path, name, setting):
    import keras  # torch is imported first, by conftest

    elab = load(specs[name], setting)
    t = totals(rows(elab))
    modules = generated_modules(elab, tmp_path, f"counts_{name}_{len(setting)}")
    model = modules["torch"].build_model(**setting)
    assert sum(p.numel() for p in model.parameters()) == t.params
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == t.trainable_params
    keras.utils.clear_session()
    model = modules["keras"].build_model(**setting)

    def size(weights) -> int:
        return sum(int(np.prod(w.shape)) for w in weights)

    assert model.count_params() == t.keras_params
    assert size(model.trainable_weights) == t.trainable_params
    assert size(model.non_trainable_weights) == t.keras_non_trainable
    if name == "flowers":
        assert (t.keras_params, t.trainable_params, t.keras_non_trainable) == (20_871_725, 10_245, 20_861_480)
