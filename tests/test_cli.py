"""The command line, run as a real subprocess (`python -m archdsl ...`) on small specs written here.

The numbers are worked out by hand. For conv(8, 3) on [3, 32, 32]: 8*3*3*3 weights + 8 biases = 224
params; the output is [8, 30, 30] and every output element takes 3*3*3 = 27 multiply-accumulates,
so 8*27*30*30 = 194,400 MACs.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# conv(8, 3):  [3, 32, 32] -> [8, 30, 30]   224 params   194,400 MACs   7,200 activations  rf 3/1
# relu:        [8, 30, 30]                    0              0          7,200              3/1
# maxpool(2):  [8, 15, 15]                    0              0          1,800              4/2
# flatten:     [1800]                         0              0          1,800             32/2
# dense(10):   [10]       1800*10 + 10 = 18,010   18,000 MACs          10             32/2
# (flatten joins the whole 15x15 map: 4 + (15 - 1) * 2 = 32 input pixels)
# total:       18,234 params, 212,400 MACs, 18,010 activation elements (72,040 bytes as float32)
SMALL = """\
# a tiny network whose numbers are worked out by hand
network Small(classes = 10) {
    input [3, 32, 32]
    conv(8, 3) relu
    maxpool(2) flatten
    fc: dense(classes)
}
"""

TWO_OUTPUTS = """\
network Two(classes = 10) {
    input [3, 32, 32]
    conv(8, 3) relu
    output aux = avgpool(global) flatten dense(4)
    maxpool(2) flatten
    output logits = dense(classes)
}
"""

# The second convolution's 40x40 window does not fit the 30x30 map the first one leaves.
SHAPE_ERROR = """\
network Broken {
    input [3, 32, 32]
    first: conv(8, 3) relu
    second: conv(16, 40)
    third: conv(16, 1)
}
"""
SHAPE_ERROR_LINE = 4

RESIDUAL_ERROR = """\
block Down(c) {
    residual {
        conv(c, 3, stride = 2, pad = 1) bn
    }
}

network Res {
    input [8, 16, 16]
    stem: conv(8, 3, pad = 1)
    Down(8)
}
"""

SYNTAX_ERROR = """\
network Syntax {
    input [3, 32, 32]
    conv(8, 3
}
"""


def run(*args: str, cwd: Path | None = None, **kwargs) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.pop("ARCHDSL_TRACEBACK", None)
    return subprocess.run([sys.executable, "-m", "archdsl", *args], check=False, capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=300, **kwargs)


def assert_clean_failure(res: subprocess.CompletedProcess) -> None:
    """Exit status 1, a message on stderr, no traceback anywhere."""
    assert res.returncode == 1, (res.returncode, res.stdout, res.stderr)
    assert res.stderr.strip(), "an error must say something on stderr"
    for stream in (res.stdout, res.stderr):
        assert "Traceback" not in stream
        assert "Exception ignored" not in stream


@pytest.fixture
def spec(tmp_path: Path):
    def write(text: str, name: str = "net.arch") -> str:
        (tmp_path / name).write_text(text, encoding="utf-8")
        return name

    return write


# Help -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("command", [[], ["compile"], ["check"], ["summary"]])
def test_help_exits_0_with_examples(command):
    res = run(*command, "--help")
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("usage: archdsl")
    assert "example" in res.stdout
    assert res.stderr == ""


def test_version():
    res = run("--version")
    assert res.returncode == 0
    assert res.stdout.startswith("archdsl ")


# check ----------------------------------------------------------------------------------------

def test_check_prints_totals_and_output(tmp_path, spec):
    res = run("check", spec(SMALL), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout == "ok: net.arch: network Small, 18,234 params, 212 K MACs, output [10]\n"
    assert res.stderr == ""


def test_check_with_set(tmp_path, spec):
    # dense(4) on 1800 features: 7,204 params and 7,200 MACs; the total 7,428 params, 201,600 MACs
    res = run("check", spec(SMALL), "--set", "classes=3", "--set", "classes=4", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout == "ok: net.arch: network Small, 7,428 params, 202 K MACs, output [4]\n"


def test_check_lists_every_named_output(tmp_path, spec):
    res = run("check", spec(TWO_OUTPUTS), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout.rstrip().endswith("outputs aux [4], logits [10]")
    # conv 224 + dense(4) on 8 features 36 + dense(10) on 1800 features 18,010
    assert "18,270 params" in res.stdout


def test_single_conv_numbers(tmp_path, spec):
    res = run("summary", spec("network One {\n    input [3, 32, 32]\n    conv(8, 3)\n}\n"), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    row = next(line for line in res.stdout.splitlines() if line.startswith("conv1 "))
    assert row.split() == ["conv1", "conv", "[8,", "30,", "30]", "224", "194,400", "7,200", "3/1"]
    assert "total: 224 params, 194,400 MACs (194 K)" in res.stdout


# summary --------------------------------------------------------------------------------------

def _table_rows(stdout: str) -> dict[str, list[str]]:
    rows = {}
    for line in stdout.splitlines():
        parts = line.split()
        if parts and parts[0] in ("conv1", "relu1", "maxpool1", "flatten1", "fc"):
            rows[parts[0]] = parts
    return rows


def test_summary_table(tmp_path, spec):
    res = run("summary", spec(SMALL), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    out = res.stdout
    for column in ("path", "layer", "output shape", "params", "MACs", "activations", "receptive field"):
        assert column in out
    assert "FLOP" not in out
    rows = _table_rows(out)
    assert list(rows) == ["conv1", "relu1", "maxpool1", "flatten1", "fc"]
    assert rows["conv1"][-4:] == ["224", "194,400", "7,200", "3/1"]
    assert rows["maxpool1"][1:] == ["maxpool", "[8,", "15,", "15]", "0", "0", "1,800", "4/2"]
    assert rows["flatten1"][1:] == ["flatten", "[1800]", "0", "0", "1,800", "32/2"]
    assert rows["fc"][1:] == ["dense", "[10]", "18,010", "18,000", "10", "32/2"]
    assert "total: 18,234 params, 212,400 MACs (212 K)" in out
    assert "18,010 elements = 72,040 bytes as float32" in out


def test_summary_dtype(tmp_path, spec):
    res = run("summary", spec(SMALL), "--dtype", "float16", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "18,010 elements = 36,020 bytes as float16" in res.stdout
    res = run("summary", spec(SMALL), "--dtype", "int8", "--format", "json", cwd=tmp_path)
    assert json.loads(res.stdout)["totals"]["activation_bytes"] == 18010


def test_summary_leaves_out_blocks_and_composites(tmp_path, spec):
    text = """\
block Pair(c) {
    residual {
        conv(c, 3, pad = 1) relu
    }
}
network Blocks {
    input [4, 8, 8]
    Pair(4) * 2
}
"""
    res = run("summary", spec(text), "--format", "csv", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    table = list(csv.DictReader(io.StringIO(res.stdout)))
    layers = [r["layer"] for r in table if r["path"] != "total"]
    assert layers == ["conv", "relu", "conv", "relu"]
    # conv(4, 3) on [4, 8, 8] with pad 1: 4*4*9 + 4 = 148 params, 4*36*8*8 = 9,216 MACs each
    assert table[-1]["path"] == "total"
    assert table[-1]["params"] == "296"
    assert table[-1]["macs"] == "18432"


def test_summary_json(tmp_path, spec):
    res = run("summary", spec(SMALL), "--format", "json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    assert data["network"] == "Small"
    assert data["complete"] is True
    assert [layer["path"] for layer in data["layers"]] == ["conv1", "relu1", "maxpool1", "flatten1", "fc"]
    conv = data["layers"][0]
    assert conv["output_shape"] == [8, 30, 30]
    assert (conv["params"], conv["macs"], conv["activations"]) == (224, 194400, 7200)
    assert conv["receptive_field"] == {"size": 3, "jump": 1}
    assert data["totals"]["params"] == 18234
    assert data["totals"]["macs"] == 212400
    assert data["totals"]["activations"] == 18010
    assert data["totals"]["activation_bytes"] == 72040


def test_summary_csv_and_markdown(tmp_path, spec):
    res = run("summary", spec(SMALL), "--format", "csv", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    table = list(csv.DictReader(io.StringIO(res.stdout)))
    assert table[0] == {"path": "conv1", "layer": "conv", "output_shape": "[8, 30, 30]", "params": "224",
                        "macs": "194400", "activations": "7200", "receptive_field": "3/1",
                        "trainable_params": "224", "frozen_params": "0", "bn_statistics": "0", "keras_params": "224",
                        "keras_non_trainable_params": "0", "frozen": "false", "weights": "216", "biases": "8",
                        "lecture_activations": "7200", "auxiliary": "false"}
    assert table[-1]["params"] == "18234"
    res = run("summary", spec(SMALL), "--format", "markdown", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "| path | layer | output shape | params | MACs | activations | receptive field |" in res.stdout
    assert "| `conv1` | conv | [8, 30, 30] | 224 | 194,400 | 7,200 | 3/1 |" in res.stdout


def test_summary_output_is_stable(tmp_path, spec):
    name = spec(TWO_OUTPUTS)
    first = run("summary", name, cwd=tmp_path)
    second = run("summary", name, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert first.stdout == second.stdout


# Shape errors ---------------------------------------------------------------------------------

def test_check_shape_error_is_located(tmp_path, spec):
    res = run("check", spec(SHAPE_ERROR, "broken.arch"), cwd=tmp_path)
    assert_clean_failure(res)
    err = res.stderr
    assert f"broken.arch:{SHAPE_ERROR_LINE}:" in err
    first = err.splitlines()[0]
    assert first.startswith(f"broken.arch:{SHAPE_ERROR_LINE}:") and ": error: " in first
    column = int(first.split(":")[2])
    source = SHAPE_ERROR.splitlines()[SHAPE_ERROR_LINE - 1]
    assert f"| {source}" in err  # the source line
    caret = next(line for line in err.splitlines() if line.rstrip().endswith(("^", "~")) and "^" in line)
    gutter = caret.index("|") + 2
    assert caret.index("^") - gutter == column - 1  # the caret sits under the column named
    assert res.stdout == ""


def test_summary_shape_error_shows_rows_before_it(tmp_path, spec):
    res = run("summary", spec(SHAPE_ERROR, "broken.arch"), cwd=tmp_path)
    assert_clean_failure(res)
    assert "first " in res.stdout and "relu1 " in res.stdout  # the layers checked before the error
    assert "194,400" in res.stdout
    assert "second" not in res.stdout and "third" not in res.stdout
    assert f"broken.arch:{SHAPE_ERROR_LINE}:" in res.stderr
    assert "^" in res.stderr


def test_summary_shape_error_json_is_partial(tmp_path, spec):
    res = run("summary", spec(SHAPE_ERROR, "broken.arch"), "--format", "json", cwd=tmp_path)
    assert_clean_failure(res)
    data = json.loads(res.stdout)
    assert data["complete"] is False
    assert [layer["path"] for layer in data["layers"]] == ["first", "relu1"]


def test_residual_error_names_block_instance(tmp_path, spec):
    res = run("check", spec(RESIDUAL_ERROR, "res.arch"), cwd=tmp_path)
    assert_clean_failure(res)
    assert "res.arch:2:" in res.stderr
    assert "Down" in res.stderr
    assert "[8, 8, 8]" in res.stderr and "[8, 16, 16]" in res.stderr


def test_syntax_error_is_located(tmp_path, spec):
    res = run("check", spec(SYNTAX_ERROR, "syntax.arch"), cwd=tmp_path)
    assert_clean_failure(res)
    assert res.stderr.startswith("syntax.arch:")
    assert "^" in res.stderr


# Bad usage ------------------------------------------------------------------------------------

@pytest.mark.parametrize("args", [
    [],
    ["frobnicate"],
    ["check"],
    ["check", "{spec}", "--bogus"],
    ["summary", "{spec}", "--format", "xml"],
    ["summary", "{spec}", "--dtype", "float64"],
    ["check", "{spec}", "--set", "classes"],
    ["check", "{spec}", "--set", "classes=ten"],
    ["check", "{spec}", "--set"],
    ["check", "{spec}", "--set", "nosuch=1"],
    ["check", "missing.arch"],
    ["summary", "missing.arch"],
    ["compile", "missing.arch", "--target", "torch"],
    ["compile", "{spec}"],
    ["compile", "{spec}", "--target", "jax"],
    ["compile", "{spec}", "--target"],
], ids=lambda a: " ".join(a) or "no-args")
def test_bad_usage_exits_1_without_traceback(tmp_path, spec, args):
    name = spec(SMALL)
    res = run(*(a.replace("{spec}", name) for a in args), cwd=tmp_path)
    assert_clean_failure(res)
    assert res.stdout == ""


def test_messages_name_the_problem(tmp_path, spec):
    name = spec(SMALL)
    assert "nosuch" in run("check", name, "--set", "nosuch=1", cwd=tmp_path).stderr
    assert "missing.arch" in run("check", "missing.arch", cwd=tmp_path).stderr
    assert "jax" in run("compile", name, "--target", "jax", cwd=tmp_path).stderr
    bogus = run("check", name, "--bogus", cwd=tmp_path).stderr
    assert "--bogus" in bogus and "usage: archdsl check" in bogus


# compile -o -------------------------------------------------------------------------------------

def test_output_into_missing_directory_leaves_nothing(tmp_path, spec):
    name = spec(SMALL)
    before = sorted(p.name for p in tmp_path.iterdir())
    res = run("compile", name, "--target", "torch", "-o", "nowhere/net.py", cwd=tmp_path)
    assert_clean_failure(res)
    assert "nowhere" in res.stderr
    assert not (tmp_path / "nowhere").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_output_onto_a_directory_fails(tmp_path, spec):
    name = spec(SMALL)
    (tmp_path / "out").mkdir()
    res = run("compile", name, "--target", "torch", "-o", "out", cwd=tmp_path)
    assert_clean_failure(res)
    assert list((tmp_path / "out").iterdir()) == []


@pytest.mark.parametrize("target", ["torch", "keras"])
def test_failed_compile_keeps_the_old_file(tmp_path, spec, target):
    name = spec(SHAPE_ERROR, "broken.arch")
    old = tmp_path / "model.py"
    old.write_text("# the previous model\n", encoding="utf-8")
    res = run("compile", name, "--target", target, "-o", "model.py", cwd=tmp_path)
    assert_clean_failure(res)
    assert f"broken.arch:{SHAPE_ERROR_LINE}:" in res.stderr
    assert old.read_text(encoding="utf-8") == "# the previous model\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.arch", "model.py"]


def test_failed_compile_bad_set_keeps_the_old_file(tmp_path, spec):
    name = spec(SMALL)
    old = tmp_path / "model.py"
    old.write_text("# the previous model\n", encoding="utf-8")
    res = run("compile", name, "--target", "torch", "--set", "nosuch=3", "-o", "model.py", cwd=tmp_path)
    assert_clean_failure(res)
    assert old.read_text(encoding="utf-8") == "# the previous model\n"


# compile (needs the backends) -------------------------------------------------------------------

@pytest.mark.parametrize("target, marker", [("torch", "nn.Module"), ("keras", "keras")])
def test_compile_to_stdout(tmp_path, spec, target, marker):
    res = run("compile", spec(SMALL), "--target", target, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert marker in res.stdout
    assert "Small" in res.stdout
    assert res.stdout.endswith("\n")
    compile(res.stdout, f"<generated {target}>", "exec")  # valid Python
    again = run("compile", spec(SMALL), "--target", target, cwd=tmp_path)
    assert again.stdout == res.stdout  # byte-identical on every run


@pytest.mark.parametrize("target", ["torch", "keras"])
def test_compile_to_file(tmp_path, spec, target):
    name = spec(SMALL)
    out = tmp_path / "model.py"
    out.write_text("# the previous model\n", encoding="utf-8")
    res = run("compile", name, "--target", target, "-o", "model.py", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout == ""
    stdout = run("compile", name, "--target", target, cwd=tmp_path).stdout
    assert out.read_text(encoding="utf-8") == stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.py", "net.arch"]  # no temporary left


def test_compile_with_set(tmp_path, spec):
    name = spec(SMALL)
    res = run("compile", name, "--target", "torch", "--set", "classes=7", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "7" in res.stdout
    assert res.stdout != run("compile", name, "--target", "torch", cwd=tmp_path).stdout


def test_compile_does_not_import_frameworks(tmp_path, spec):
    name = spec(SMALL)
    code = (
        "import sys\n"
        "from archdsl.cli import main\n"
        f"for target in ('torch', 'keras'):\n"
        f"    assert main(['compile', {name!r}, '--target', target, '-o', 'out_' + target + '.py']) == 0\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'tensorflow', 'keras'))\n"
        "assert not loaded, loaded\n"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    res = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, cwd=tmp_path, env=env,
                         timeout=300)
    assert res.returncode == 0, res.stderr



def test_main_leaves_the_garbage_collector_as_it_found_it(tmp_path, spec, monkeypatch):
    """main() turns the cyclic collector off while a command runs; called in-process (tests, scripts)
    it must turn it back on, after success and after an error alike, or every later reference cycle
    leaks (a whole test session's torch and Keras models once did)."""
    import gc

    from archdsl.cli import main

    name = spec(SMALL)
    monkeypatch.chdir(tmp_path)
    assert gc.isenabled()
    assert main(["check", name]) == 0
    assert gc.isenabled()
    assert main(["check", "no_such_file.arch"]) == 1
    assert gc.isenabled()
    gc.disable()
    try:
        assert main(["check", name]) == 0
        assert not gc.isenabled(), "a collector that was off stays off"
    finally:
        gc.enable()

# Signals and pipes --------------------------------------------------------------------------------

def test_closed_stdout_is_quiet(tmp_path, spec):
    name = spec(SMALL)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "archdsl", "summary", name], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader goes away before the first line is written
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 1
    assert b"Traceback" not in err and b"Exception ignored" not in err


def test_keyboard_interrupt_exits_130_quietly(tmp_path, spec):
    name = spec(SMALL)
    code = (
        "import archdsl.cli as cli\n"
        "def interrupted(args, session):\n"
        "    raise KeyboardInterrupt\n"
        "cli.COMMANDS['check'] = interrupted\n"
        "import sys\n"
        f"sys.argv = ['archdsl', 'check', {name!r}]\n"
        "cli.run()\n"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    res = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, cwd=tmp_path, env=env,
                         timeout=300)
    assert res.returncode == 130
    assert res.stderr == "" and res.stdout == ""


# Collapsing blocks and sweeping parameters -----------------------------------------------------

BLOCKS = """\
block Pair(c) {
    conv(c, 3, pad = 1) relu
    conv(c, 3, pad = 1) relu
}

block Stage(c) {
    first: Pair(c)
    second: Pair(c)
    maxpool(2)
}

network Staged(width = 8, size = 32) {
    input [3, size, size]
    stage1: Stage(width)
    stage2: Stage(2 * width)
    avgpool(global) flatten
    fc: dense(10)
}
"""


def test_summary_depth_collapses_blocks_into_rows_with_their_sums(tmp_path, spec):
    name = spec(BLOCKS)
    full = json.loads(run("summary", name, "--format", "json", cwd=tmp_path).stdout)
    one = json.loads(run("summary", name, "--format", "json", "--depth", "0", cwd=tmp_path).stdout)
    two = json.loads(run("summary", name, "--format", "json", "--depth", "1", cwd=tmp_path).stdout)
    assert [r["path"] for r in one["layers"]] == ["stage1", "stage2", "avgpool1", "flatten1", "fc"]
    assert [r["path"] for r in two["layers"]][:3] == ["stage1.first", "stage1.second", "stage1.maxpool1"]
    assert two["layers"][0]["layer"] == "Pair" and two["layers"][0]["collapsed_layers"] == 4
    stage1 = one["layers"][0]
    assert stage1["layer"] == "Stage" and stage1["output_shape"] == [8, 16, 16]
    inside = [r for r in full["layers"] if r["path"].startswith("stage1.")]
    assert stage1["collapsed_layers"] == len(inside) == 9
    for key in ("params", "macs", "activations"):
        assert stage1[key] == sum(r[key] for r in inside)
    assert one["totals"] == two["totals"] == full["totals"]
    table = run("summary", name, "--depth", "0", cwd=tmp_path).stdout
    assert "stage2    Stage" in table and "stage2.first" not in table


def test_summary_depth_must_be_a_whole_number(tmp_path, spec):
    assert_clean_failure(run("summary", spec(BLOCKS), "--depth", "-1", cwd=tmp_path))
    assert_clean_failure(run("summary", spec(BLOCKS), "--depth", "x", cwd=tmp_path))


def test_sweep_prints_one_row_per_setting(tmp_path, spec):
    name = spec(BLOCKS)
    res = run("sweep", name, "width=4,8", "size=16..17", "--format", "json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    assert [(r["setting"]["width"], r["setting"]["size"]) for r in data] == [(4, 16), (4, 17), (8, 16), (8, 17)]
    for r in data:
        check = json.loads(run("summary", name, "--format", "json", "--set", f"width={r['setting']['width']}",
                               "--set", f"size={r['setting']['size']}", cwd=tmp_path).stdout)
        assert r["params"] == check["totals"]["params"] and r["macs"] == check["totals"]["macs"]
        assert r["input_shape"] == [3, r["setting"]["size"], r["setting"]["size"]]
    # params depend on the width only; MACs grow with the input size
    assert data[0]["params"] == data[1]["params"] != data[2]["params"]
    assert data[0]["macs"] < data[1]["macs"]
    table = run("sweep", name, "width=4,8", cwd=tmp_path).stdout
    assert table.splitlines()[1].split()[:2] == ["width", "input"]


def test_sweep_of_efficientnet_compound_coefficient(tmp_path):
    res = run("sweep", "specs/efficientnet.arch", "phi=0..7", "--format", "csv", cwd=ROOT)
    assert res.returncode == 0, res.stderr
    lines = list(csv.DictReader(io.StringIO(res.stdout)))
    assert [int(r["phi"]) for r in lines] == list(range(8))
    assert [r["input_shape"] for r in lines][::7] == ["[3, 224, 224]", "[3, 600, 600]"]
    assert int(lines[0]["params"]) == 5_288_548  # EfficientNet-B0, as torchvision's efficientnet_b0
    params = [int(r["params"]) for r in lines]
    assert params == sorted(params)


@pytest.mark.parametrize("args, message", [
    (["phi"], "a sweep is NAME=VALUES"),
    (["width=8..4"], "the range 8..4 is empty"),
    (["width=4,,8"], "an empty value"),
    (["nope=1,2"], "has no parameter 'nope'"),
    (["width=4", "--set", "width=8"], "both swept and set"),
    (["width=0,8"], "in the sweep at width = 0"),
])
def test_sweep_errors(tmp_path, spec, args, message):
    res = run("sweep", spec(BLOCKS), *args, cwd=tmp_path)
    assert_clean_failure(res)
    assert message in res.stderr, res.stderr


def test_output_to_a_pipe_stays_a_pipe(tmp_path, spec):
    # -o onto something that is not a regular file (a named pipe; /dev/null alike) is written in
    # place: the atomic rename would replace it with a file (and, as root, /dev/null with it)
    import stat
    import threading

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received: list[str] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_text()))
    reader.start()
    res = run("compile", spec(SMALL), "--target", "torch", "-o", str(fifo), cwd=tmp_path)
    reader.join(timeout=60)
    assert res.returncode == 0, res.stderr
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert received and "class Small(nn.Module)" in received[0]


def test_blocks_nested_a_thousand_deep(tmp_path):
    """Block Ck calls C(k-1): the elaborator, the shape checker and both emitters at 1,000 levels of
    nesting, far past what Python's default recursion limit lets a recursive walk reach (~150)."""
    depth = 1000
    lines = ["block C1(w) {\n    conv(w, 3, pad = 1) relu\n}"]
    lines += [f"block C{k}(w) {{\n    C{k - 1}(w)\n    conv(w, 1)\n}}" for k in range(2, depth + 1)]
    lines.append(f"network Deep {{\n    input [8, 16, 16]\n    C{depth}(8)\n}}")
    (tmp_path / "deep.arch").write_text("\n".join(lines) + "\n")
    res = run("check", "deep.arch", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    # 3x3 conv: 8*8*9 + 8 = 584 params; each of the 999 1x1 convs: 8*8 + 8 = 72
    assert res.stdout.startswith(f"ok: deep.arch: network Deep, {584 + 72 * (depth - 1):,} params")
    for target, first_block in (("torch", "class C1(nn.Module):"), ("keras", "def c1(")):
        res = run("compile", "deep.arch", "--target", target, "-o", f"deep_{target}.py", cwd=tmp_path)
        assert res.returncode == 0, res.stderr
        code = (tmp_path / f"deep_{target}.py").read_text()
        # one definition per block, each after the block it calls
        assert code.index(first_block) < code.index(first_block.replace("1", "2", 1)) < code.index(
            first_block.replace("1", str(depth), 1))


def test_an_interrupted_write_leaves_the_target_and_no_temporary_file(tmp_path, monkeypatch):
    """Ctrl-C stops the command line's main thread while the command, on its own thread
    (running.deep), may be writing -o FILE: abandon_writes(), which the interrupt handler calls,
    removes the half-written temporary file, and the target keeps its old text."""
    import threading

    from archdsl.util import files

    target = tmp_path / "out.py"
    target.write_text("old\n")
    writing, release = threading.Event(), threading.Event()
    fsync = os.fsync

    def slow_fsync(fd: int) -> None:
        writing.set()
        release.wait(30)
        fsync(fd)

    monkeypatch.setattr(os, "fsync", slow_fsync)
    failures: list[BaseException] = []

    def write() -> None:
        try:
            files.write_atomically(str(target), "new\n")
        except BaseException as e:  # noqa: BLE001
            failures.append(e)

    worker = threading.Thread(target=write)
    worker.start()
    assert writing.wait(30)
    assert len(list(tmp_path.glob(".archdsl-*.tmp"))) == 1  # the write is under way
    files.abandon_writes()
    release.set()
    worker.join(30)
    assert list(tmp_path.glob(".archdsl-*.tmp")) == []
    assert target.read_text() == "old\n"
    assert len(failures) == 1 and isinstance(failures[0], FileNotFoundError)
    files.write_atomically(str(target), "new\n")  # nothing is left pending
    assert target.read_text() == "new\n" and not files._writing


_HIDE_AND_RUN = """
import importlib.abc, sys

class Hide(importlib.abc.MetaPathFinder):  # as if the package were not installed
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] == sys.argv[1]:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, Hide())
from archdsl.cli import main
sys.exit(main(["lsp"]))
"""


@pytest.mark.parametrize("hidden", ["pygls", "lsprotocol", "cattrs", "attrs"])
def test_lsp_without_its_extra_says_what_to_install(hidden):
    """The plain install has no pygls (it is the extra `lsp`): `archdsl lsp` says how to install it, exit 1."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.pop("ARCHDSL_TRACEBACK", None)
    res = subprocess.run([sys.executable, "-c", _HIDE_AND_RUN, hidden], check=False, capture_output=True, text=True,
                         stdin=subprocess.DEVNULL, env=env, timeout=120)
    assert_clean_failure(res)
    assert res.stdout == ""  # stdout is the protocol's channel: nothing may be written there
    assert f"the language server needs {hidden}, which is not installed" in res.stderr
    assert 'pip install "archdsl[lsp]"' in res.stderr


# Numbers out of range, limits, unreadable imports: located errors, exit 1 ------------------------------

WIDTH_NET = """\
network Net(classes = 10, width = 1.0, pad = 1) {
    input [3, 32, 32]
    conv(make_divisible(16 * width), 3, pad = pad)
    flatten
    dense(classes)
}
"""


@pytest.mark.parametrize("body, sets, where", [
    ("conv(2 ** 20000, 1)", [], "3:10"),
    ("conv(2 ** 2 ** 2 ** 22, 1)", [], "3:15"),
    ("conv(int(1e309), 1)", [], "3:14"),
    ("conv(round(1e309 - 1e309), 1)", [], "3:16"),
    ("relu * 1000000000", [], "3:12"),
    (None, ["--set", "width=nan"], "1:27"),
    (None, ["--set", "width=inf"], "1:27"),
    (None, ["--set", "width=1e308"], "3:25"),
    (None, ["--set", "width=1e400"], "1:27"),
    (None, ["--set", "pad=1e308"], "3:47"),
    (None, ["--set", "classes=1e308"], "5:11"),
], ids=lambda v: " ".join(v) if isinstance(v, list) else v)
def test_out_of_range_is_a_located_error(tmp_path, spec, body, sets, where):
    text = WIDTH_NET if body is None else f"network N {{\n    input [3, 8, 8]\n    {body}\n}}\n"
    for command in (["check"], ["compile", "--target", "torch"]):
        res = run(*command, spec(text), *sets, cwd=tmp_path)
        assert_clean_failure(res)
        assert res.stderr.startswith(f"net.arch:{where}: error: "), res.stderr
        assert "internal error" not in res.stderr and "^" in res.stderr


def test_import_with_a_nul_byte_is_a_located_error(tmp_path, spec):
    res = run("check", spec('import "lib\0.arch"\nnetwork N {\n    input [3, 8, 8]\n    relu\n}\n'), cwd=tmp_path)
    assert_clean_failure(res)
    assert res.stderr.startswith("net.arch:1:1: error: cannot read 'lib\\x00.arch': a file name cannot contain a NUL")
    assert "\0" not in res.stderr and 'import "lib\u2400.arch"' in res.stderr


# A library file (blocks, no network) ----------------------------------------------------------------

def test_check_a_library_checks_its_blocks(tmp_path):
    lib = ROOT / "specs" / "lib" / "resnet.arch"
    res = run("check", str(lib), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout == (f"ok: {lib}: library, 7 blocks (BasicBlock, SqueezeExcite, Bottleneck, BasicStage, "
                          "Stage, DilatedBottleneck, DilatedStage)\n")
    res = run("check", str(ROOT / "specs" / "lib" / "inception_v3.arch"), cwd=tmp_path)
    assert res.returncode == 0 and res.stdout.endswith("InceptionAux), importing 1 file\n"), res.stdout


def test_check_a_library_reports_an_error_in_a_block(tmp_path, spec):
    name = spec("# blocks\nblock A(c) {\n    conv(c, 3)\n}\n\nblock B(c) {\n    A(c, 2)\n}\n", "lib.arch")
    res = run("check", name, cwd=tmp_path)
    assert_clean_failure(res)
    assert res.stderr.startswith("lib.arch:7:10: error: block A takes 1 argument (c), got 2")


@pytest.mark.parametrize("command", [["compile", "--target", "torch"], ["summary"], ["graph"], ["sweep", "a=1,2"]])
def test_commands_that_need_a_network_say_so_for_a_library(tmp_path, spec, command):
    name = spec("# blocks\nblock A(c) {\n    conv(c, 3)\n}\n", "lib.arch")
    args = [command[0], name, *command[1:]]
    res = run(*args, cwd=tmp_path)
    assert_clean_failure(res)
    assert res.stderr.startswith("lib.arch:2:1: error: this file is a library of blocks (A) with no network: "
                                 "`archdsl check` checks it")


def test_set_on_a_library_is_an_error(tmp_path, spec):
    res = run("check", spec("block A(c) {\n    conv(c, 3)\n}\n", "lib.arch"), "--set", "c=3", cwd=tmp_path)
    assert_clean_failure(res)
    assert "--set c: 'lib.arch' is a library of blocks with no network" in res.stderr


def test_empty_file_is_a_located_error(tmp_path, spec):
    res = run("check", spec("# nothing yet\n\n", "empty.arch"), cwd=tmp_path)
    assert_clean_failure(res)
    assert res.stderr.startswith("empty.arch:1:14: error: the file defines no network and no blocks")


def test_check_accepts_only_what_both_targets_compile(tmp_path, spec):
    """A layer in a branch no use takes, whose code needs a size only a use gives: compile cannot
    generate it, so check says so too, at the same place."""
    name = spec("block B(n, flat = false) {\n    conv(4, 1)\n    if flat {\n        flatten\n        dense(n)\n    }\n}\n"
                "network N {\n    input [3, 8, 8]\n    B(2)\n}\n")
    compiled = run("compile", name, "--target", "torch", cwd=tmp_path)
    checked = run("check", name, cwd=tmp_path)
    for res in (compiled, checked):
        assert_clean_failure(res)
        assert res.stderr.startswith("net.arch:4:9: error: the input size is not known here")
    assert "note: `archdsl compile --target torch` cannot generate this, so check reports it" in checked.stderr
