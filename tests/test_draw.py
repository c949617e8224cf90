"""`archdsl graph`: the network drawn as DOT, Mermaid, SVG and PNG (archdsl/reports/draw.py).

The big specs go through the command line as a real subprocess; the SVG that Graphviz `dot` draws
is parsed as XML and its clusters (`<g class="cluster">`), nodes and edges read back by their
`<title>`s, which are the ids archdsl gives them (module paths with `_` for `.`). The data flow of a
small spec with every kind of join is checked edge by edge against what the spec says.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections import Counter

import pytest

from archdsl.api import load
from archdsl.reports import draw
from archdsl.reports.draw import build

from .frameworks import ROOT

SVG = "{http://www.w3.org/2000/svg}"

needs_dot = pytest.mark.skipif(shutil.which("dot") is None,
                               reason="Graphviz dot is not installed (apt-get install graphviz)")

# Every kind of join, small enough to check edge by edge: a residual with the identity shortcut, a
# scale (the SE gate) inside a block, a side output, a block with a second tensor input (`prev`,
# taken from the named tensor `s` three statements back), add() of named tensors, concat branches.
TINY = """\
block SE(ratio = 4) {
    scale { avgpool(global) conv(in.channels // ratio, 1) relu conv(in.channels, 1) sigmoid }
}

block Cell(prev: tensor) {
    a = in conv(8, 1)
    b = prev conv(8, 1, stride = 2)
    add(a, b)
}

network Tiny {
    input [3, 16, 16]
    stem: conv(8, 3, pad = 1)
    s = relu
    residual { conv(8, 3, pad = 1) }
    se: SE
    output side = avgpool(global) flatten dense(2)
    maxpool(2)
    cell: Cell(prev = s)
    concat { branch { conv(4, 1) } branch { maxpool(3, stride = 1, pad = 1) } }
    flatten
    output logits = dense(10)
}
"""

# The second convolution's 40x40 window does not fit the 30x30 map the first one leaves.
BROKEN = """\
network Broken {
    input [3, 32, 32]
    first: conv(8, 3) relu
    second: conv(16, 40)
}
"""


def archdsl(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "archdsl", *args], check=False, cwd=ROOT, capture_output=True,
                          text=True, env=env, timeout=120)


def read_svg(path) -> tuple[dict[str, list[str]], dict[str, list[str]], dict[str, list[str]]]:
    """Clusters, nodes and edges of an SVG that Graphviz drew: title -> the texts drawn in it."""
    root = ET.parse(path).getroot()
    assert root.tag == f"{SVG}svg"
    found: dict[str, dict[str, list[str]]] = {"cluster": {}, "node": {}, "edge": {}}
    for g in root.iter(f"{SVG}g"):
        kind = g.get("class")
        if kind in found:
            title = g.findtext(f"{SVG}title")
            found[kind][title] = [(t.text or "").strip() for t in g.iter(f"{SVG}text")]
    return found["cluster"], found["node"], found["edge"]


def dot_clusters(text: str) -> list[str]:
    return re.findall(r'^\s*subgraph "(cluster_[^"]*)" \{$', text, re.MULTILINE)


def dot_edges(text: str) -> list[tuple[str, str, str]]:
    return re.findall(r'^  "([^"]+)" -> "([^"]+)" \[label=" ([^"]*)"\];$', text, re.MULTILINE)


@needs_dot
def test_googlenet_svg_has_inception_clusters_and_side_heads(tmp_path):
    out = tmp_path / "googlenet.svg"
    done = archdsl("graph", "specs/googlenet.arch", "-o", str(out))
    assert done.returncode == 0, done.stderr
    clusters, nodes, edges = read_svg(out)

    inceptions = [f"inception{n}" for n in ("3a", "3b", "4a", "4b", "4c", "4d", "4e", "5a", "5b")]
    for name in inceptions:
        assert clusters[f"cluster_{name}"] == [f"{name} (Inception)"]
        # the four branches fork from one tensor and meet in the module's concat node
        assert sum(1 for title in edges if title.endswith(f"->{name}_concat1")) == 4
    # conv1..conv3, 9 Inception modules with 6 BasicConvs each, two AuxHeads with one BasicConv each
    assert len(clusters) == 3 + 9 * 7 + 2 * 2
    assert clusters["cluster_aux1"] == ["aux1 (AuxHead)"] and clusters["cluster_aux2"] == ["aux2 (AuxHead)"]

    # every output is a node at the end of its chain, the side heads included, with its shape; the
    # side heads say they are auxiliary (computed while training only)
    assert nodes["output_aux1"] == ["auxiliary output aux1", "1000"]
    assert nodes["output_aux2"] == ["auxiliary output aux2", "1000"]
    assert nodes["output_logits"] == ["output logits", "1000"]
    assert edges["aux1_fc2->output_aux1"] == ["1000"]
    assert edges["fc->output_logits"] == ["1000"]
    # aux1 taps the output of inception4a, aux2 that of inception4d; shapes are on the edges
    assert edges["inception4a_concat1->aux1_adaptive_avgpool1"] == ["512x14x14"]
    assert edges["inception4d_concat1->aux2_adaptive_avgpool1"] == ["528x14x14"]
    assert nodes["input"] == ["input", "3x224x224"]
    assert nodes["conv1_conv"] == ["conv 7x7/2, 64"]


@needs_dot
def test_resnet50_svg_has_stage_and_bottleneck_clusters(tmp_path):
    out = tmp_path / "resnet50.svg"
    done = archdsl("graph", "specs/resnet50.arch", "-o", str(out))
    assert done.returncode == 0, done.stderr
    clusters, nodes, edges = read_svg(out)

    for stage, blocks in (("layer1", 3), ("layer2", 4), ("layer3", 6), ("layer4", 3)):
        assert clusters[f"cluster_{stage}"] == [f"{stage} (Stage)"]
        bottlenecks = [t for t, texts in clusters.items()
                       if t.startswith(f"cluster_{stage}_") and texts[0].endswith("(Bottleneck)")]
        assert len(bottlenecks) == blocks
    assert len(clusters) == 4 + 16
    # one residual add per bottleneck, each with two inputs: the body and the shortcut
    adds = [t for t, texts in nodes.items() if texts == ["+"]]
    assert len(adds) == 16
    for add in adds:
        assert sum(1 for title in edges if title.endswith(f"->{add}")) == 2
    # the first block of a stage projects its input (1x1 conv + bn); the others add it unchanged
    assert edges["layer1_bottleneck1_shortcut1_1->layer1_bottleneck1_residual1"] == ["256x56x56"]
    assert edges["layer1_bottleneck1_relu3->layer1_bottleneck2_0_residual1"] == ["256x56x56"]
    assert edges["maxpool->layer1_bottleneck1_shortcut1_0"] == ["64x56x56"]
    assert nodes["output_logits"] == ["output logits", "1000"]


def test_data_flow_of_every_join(tmp_path):
    spec = tmp_path / "tiny.arch"
    spec.write_text(TINY)
    drawing = build(load(str(spec)))
    edges = {(e.tail, e.head): e.label for e in drawing.edges}
    assert edges == {
        ("input", "stem"): "3x16x16",
        ("stem", "relu1"): "8x16x16",
        # residual: body and identity shortcut meet in "+"
        ("relu1", "conv1"): "8x16x16",
        ("conv1", "residual1"): "8x16x16",
        ("relu1", "residual1"): "8x16x16",
        # scale: the gate [8, 1, 1] and its input meet in "x"
        ("residual1", "se_scale1_0"): "8x16x16",
        ("se_scale1_0", "se_scale1_1"): "8x1x1",
        ("se_scale1_1", "se_scale1_2"): "2x1x1",
        ("se_scale1_2", "se_scale1_3"): "2x1x1",
        ("se_scale1_3", "se_scale1_4"): "8x1x1",
        ("residual1", "se_scale1"): "8x16x16",
        ("se_scale1_4", "se_scale1"): "8x1x1",
        # the side output branches off, the main path goes on from the same tensor
        ("se_scale1", "side_0"): "8x16x16",
        ("side_0", "side_1"): "8x1x1",
        ("side_1", "side_2"): "8",
        ("side_2", "output_side"): "2",
        ("se_scale1", "maxpool1"): "8x16x16",
        # the cell: `in` is the main path, `prev` the named tensor s (relu1's output)
        ("maxpool1", "cell_conv1"): "8x8x8",
        ("relu1", "cell_conv2"): "8x16x16",
        ("cell_conv1", "cell_add1"): "8x8x8",
        ("cell_conv2", "cell_add1"): "8x8x8",
        # concat: two branches from one tensor
        ("cell_add1", "branch1"): "8x8x8",
        ("cell_add1", "branch2"): "8x8x8",
        ("branch1", "concat1"): "4x8x8",
        ("branch2", "concat1"): "8x8x8",
        ("concat1", "flatten1"): "12x8x8",
        ("flatten1", "logits"): "768",
        ("logits", "output_logits"): "10",
    }
    labels = {n.id: n.label for n in drawing.nodes()}
    assert labels["residual1"] == "+" and labels["se_scale1"] == "x" and labels["cell_add1"] == "+"
    assert labels["concat1"] == "concat"
    assert labels["stem"] == "stem: conv 3x3, 8" and labels["cell_conv2"] == "conv 1x1/2, 8"
    assert [c.label for c in drawing.root.clusters()] == ["se (SE)", "cell (Cell)"]


def test_dot_is_deterministic(tmp_path):
    runs = []
    for seed in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        done = archdsl("graph", "specs/googlenet.arch", env=env)
        assert done.returncode == 0, done.stderr
        runs.append(done.stdout)
    assert runs[0] == runs[1]
    assert runs[0].startswith("// GoogLeNet: 13,004,888 params")
    out = tmp_path / "googlenet.gv"
    assert archdsl("graph", "specs/googlenet.arch", "-o", str(out)).returncode == 0
    assert out.read_text() == runs[0]


def test_depth_collapses_blocks():
    text = {}
    for depth in (None, 1, 0):
        args = ["graph", "specs/resnet50.arch"] + ([] if depth is None else ["--depth", str(depth)])
        done = archdsl(*args)
        assert done.returncode == 0, done.stderr
        text[depth] = done.stdout
    assert len(dot_clusters(text[None])) == 20
    assert dot_clusters(text[1]) == ["cluster_layer1", "cluster_layer2", "cluster_layer3", "cluster_layer4"]
    assert dot_clusters(text[0]) == []
    # a collapsed block is one node: its name, output shape and parameters (torchvision's layer1: 215,808)
    assert len(re.findall(r"\(Bottleneck\)\\n[0-9x]+, [0-9,]+ params", text[1])) == 16
    assert '"layer1" [label="layer1 (Stage)\\n256x56x56, 215,808 params"' in text[0]
    edges = dot_edges(text[0])
    assert ("maxpool", "layer1", "64x56x56") in edges
    assert ("layer1", "layer2", "256x56x56") in edges
    assert ("layer4", "avgpool", "2048x7x7") in edges


def test_mermaid(tmp_path):
    done = archdsl("graph", "specs/googlenet.arch", "--format", "mermaid")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "flowchart TB"
    subgraphs = [line for line in lines if line.lstrip().startswith("subgraph ")]
    assert len(subgraphs) == 70
    assert sum(1 for line in lines if line.strip() == "end") == len(subgraphs)
    assert '  subgraph cluster_inception3a ["inception3a (Inception)"]' in lines
    assert "  inception4a_concat1 -->|512x14x14| aux1_adaptive_avgpool1" in lines
    assert '  output_aux1{{"auxiliary output aux1<br/>1000"}}:::output' in lines

    out = tmp_path / "googlenet.md"  # .md: a fenced block, ready for a Markdown page
    assert archdsl("graph", "specs/googlenet.arch", "--depth", "0", "-o", str(out)).returncode == 0
    md = out.read_text()
    assert md.startswith("```mermaid\nflowchart TB\n") and md.endswith("\n```\n")
    assert "subgraph" not in md


def test_named_tensor_dag(tmp_path):
    out = tmp_path / "nasnet.dot"
    done = archdsl("graph", "specs/nasnet_mobile.arch", "-o", str(out))
    assert done.returncode == 0, done.stderr
    text = out.read_text()
    edges = dot_edges(text)
    into = Counter(head for _, head, _ in edges)
    # x1 = add(l1, r1) in the first normal cell: l1 from h, r1 from p
    assert {(t, s) for t, h, s in edges if h == "cell_0_add1"} == {
        ("cell_0_sep_stack1_bn2", "44x28x28"), ("cell_0_sep_stack2_bn2", "44x28x28")}
    # every add() of the network has two inputs; 5 per cell, 12 normal and 4 reduction cells
    adds = re.findall(r'^\s*"([^"]+)" \[label="\+"', text, re.MULTILINE)
    assert len(adds) == 16 * 5 and all(into[a] == 2 for a in adds)
    # the output of stem_1 (s1) is the input of stem_2 and, as `prev`, of cell_0 two cells on
    assert ("stem_1_concat1", "stem_2_relu1", "44x56x56") in edges
    assert ("stem_1_concat1", "cell_0_adjust1_choice1_relu1", "44x56x56") in edges
    assert ("predictions", "output_output", "1000") in edges
    if shutil.which("dot"):
        svg = tmp_path / "nasnet.svg"
        assert archdsl("graph", "specs/nasnet_mobile.arch", "-o", str(svg)).returncode == 0
        clusters, _, _ = read_svg(svg)
        assert clusters["cluster_cell_0"] == ["cell_0 (NormalCell)"]


@needs_dot
def test_png(tmp_path):
    spec = tmp_path / "tiny.arch"
    spec.write_text(TINY)
    out = tmp_path / "tiny.png"
    done = archdsl("graph", str(spec), "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_missing_dot_is_a_clear_error(tmp_path):
    empty = tmp_path / "bin"
    empty.mkdir()
    env = dict(os.environ, PATH=str(empty))
    out = tmp_path / "googlenet.svg"
    done = archdsl("graph", "specs/googlenet.arch", "-o", str(out), env=env)
    assert done.returncode == 1
    assert "graphviz" in done.stderr and "--format dot" in done.stderr
    assert "Traceback" not in done.stderr
    assert not out.exists()
    # the text formats need no Graphviz
    done = archdsl("graph", "specs/googlenet.arch", "--format", "dot", "-o", str(tmp_path / "g.dot"), env=env)
    assert done.returncode == 0, done.stderr


def test_bad_spec_is_a_located_error_and_leaves_the_file(tmp_path):
    spec = tmp_path / "broken.arch"
    spec.write_text(BROKEN)
    out = tmp_path / "broken.dot"
    out.write_text("before\n")
    done = archdsl("graph", str(spec), "-o", str(out))
    assert done.returncode == 1
    assert re.search(r"broken\.arch:4:\d+: error: second \(conv\)", done.stderr), done.stderr
    assert "Traceback" not in done.stderr
    assert out.read_text() == "before\n"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".archdsl-")] == []


def test_usage_errors(tmp_path):
    done = archdsl("graph", "specs/resnet50.arch", "-o", str(tmp_path / "resnet.pdf"))
    assert done.returncode == 1 and "cannot tell the drawing format" in done.stderr
    assert not (tmp_path / "resnet.pdf").exists()
    done = archdsl("graph", "specs/resnet50.arch", "--depth", "-1")
    assert done.returncode == 1 and "--depth must be at least 0" in done.stderr
    done = archdsl("graph", "specs/resnet50.arch", "--format", "jpeg")
    assert done.returncode == 1 and "unknown format 'jpeg'" in done.stderr


@needs_dot
def test_concat_branches_are_drawn_in_the_spec_order():
    """The order of a concat's branches is the order of its channels: Graphviz draws them left to right
    (GoogLeNet's 1x1, 3x3, 5x5 and pool branches; ranks constrained, without moving them out of their
    inception's cluster)."""
    elab = load("specs/googlenet.arch")
    drawing = draw.build(elab, 1)
    assert ["inception4b_branch1", "inception4b_branch2_0", "inception4b_branch3_0", "inception4b_branch4_0"] \
        in drawing.rows and len(drawing.rows) == 9
    plain = subprocess.run(["dot", "-Tplain"], input=draw.to_dot(drawing), capture_output=True, text=True,
                           check=True).stdout
    x = {f[1]: float(f[2]) for f in (line.split() for line in plain.splitlines()) if f[0] == "node"}
    for row in drawing.rows:
        assert [x[n] for n in row] == sorted(x[n] for n in row), row


def test_mermaid_stays_within_its_default_limits(tmp_path):
    """Mermaid renders at most 500 edges and 50,000 characters unless the site's configuration says
    otherwise (a diagram cannot): graph -f mermaid draws every level that fits, folds the deeper blocks
    of the networks that do not, and says so in the diagram's title and on stderr."""
    for name in ("googlenet", "inception_resnet_v2", "densenet", "efficientnet_v2"):
        elab = load(f"specs/{name}.arch")
        text, note = draw.mermaid(elab)
        edges = sum(1 for line in text.splitlines() if "-->" in line)
        assert edges <= draw.MERMAID_MAX_EDGES and len(text) <= draw.MERMAID_MAX_TEXT, name
        assert (note is None) == (name == "googlenet"), name
        if note is not None:
            assert text.startswith("---\ntitle: ") and "to stay within Mermaid's default limits" in text
    assert "drawn at --depth 2" in draw.mermaid(load("specs/efficientnet_v2.arch"))[1]
    done = archdsl("graph", "specs/densenet.arch", "-f", "mermaid", "--depth", "3")  # as asked, with a note
    assert done.returncode == 0 and "544 edges and 102,683 characters, over Mermaid's default limits" in done.stderr
    assert done.stdout.startswith("flowchart TB")
