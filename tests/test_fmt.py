"""`archdsl fmt` and archdsl.editor.fmt.format_source: the canonical layout (docs/fmt.md).

- every spec in specs/ (and specs/lib/) is already canonical: formatting leaves it byte for byte;
- the rules, one by one, on small messy inputs with the expected output written out;
- idempotence on messy inputs, and meaning: a spec scrambled here (re-indented, re-spaced, tabs,
  blank lines, CRLF, bodies folded onto their braces) formats back to the spec itself, and a wilder
  scramble (newlines and comments inside argument lists, `\\` continuations, random columns) formats
  to a text whose expanded network (summary and generated PyTorch code) is the original's;
- the command: in place, --check, --diff, stdin, directories, syntax errors, missing files.
"""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest

from archdsl.api import generate, load
from archdsl.cli import main
from archdsl.editor.fmt import format_source
from archdsl.language.errors import ArchError
from archdsl.language.parser import parse
from archdsl.reports.summary import render

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted((ROOT / "specs").rglob("*.arch"))
LIBS = sorted((ROOT / "specs" / "lib").glob("*.arch"))
NETWORKS = sorted((ROOT / "specs").glob("*.arch"))


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def test_there_are_specs():
    assert len(NETWORKS) >= 30 and len(LIBS) >= 10


# Every spec is canonical -----------------------------------------------------------------------

@pytest.mark.parametrize("path", SPECS, ids=rel)
def test_spec_is_left_unchanged(path):
    text = path.read_text(encoding="utf-8")
    assert format_source(text, rel(path)) == text


def test_reference_examples_are_canonical():
    """The examples of docs/language.md and docs/fmt.md are written in the canonical layout too."""
    for doc in ("language.md", "fmt.md"):
        examples = re.findall(r"```arch\n(.*?)```", (ROOT / "docs" / doc).read_text(), re.DOTALL)
        assert examples
        for example in examples:
            assert format_source(example) == example


def test_the_example_of_the_user_doc_is_real():
    doc = (ROOT / "docs" / "fmt.md").read_text()
    before = re.findall(r"```text\n(.*?)```", doc, re.DOTALL)[0]
    after = re.findall(r"```arch\n(.*?)```", doc, re.DOTALL)[0]
    assert format_source(before) == after


# The rules, one at a time ------------------------------------------------------------------------

CASES = {
    "token spacing": (
        ("network N(classes=10,width = 16){\n"
         "  input[3,32,32]\n"
         "  let  a=-2**-1+in.channels//2\n"
         "  let b = ( - a ) *2\n"
         "  stem:conv(width,3,stride=2 if a>0 else 1,pad=[0,1])  bn  relu\n"
         "  {relu}*(a-1)\n"
         "  if not(a==1)and true{} else{identity}\n"
         "  residual(drop_path=0.1){conv(16,1)}\n"
         "  flatten dense( classes , bias=false , )\n"
         "}\n"),
        ("network N(classes = 10, width = 16) {\n"
         "    input [3, 32, 32]\n"
         "    let a = -2 ** -1 + in.channels // 2\n"
         "    let b = (-a) * 2\n"
         "    stem: conv(width, 3, stride = 2 if a > 0 else 1, pad = [0, 1]) bn relu\n"
         "    { relu } * (a - 1)\n"
         "    if not (a == 1) and true {} else { identity }\n"
         "    residual(drop_path = 0.1) { conv(16, 1) }\n"
         "    flatten dense(classes, bias = false,)\n"
         "}\n")),
    "indentation, tabs, CRLF and trailing whitespace": (
        ("block B(c) {   \r\n"
         "\tresidual {\r\n"
         "\t\t\tconv(c, 3, pad = 1)\t\r\n"
         "  } shortcut if in.channels != c {\r\n"
         "conv(c, 1)\r\n"
         "\t}\r\n"
         "      relu\r\n"
         "}\r\n"),
        ("block B(c) {\n"
         "    residual {\n"
         "        conv(c, 3, pad = 1)\n"
         "    } shortcut if in.channels != c {\n"
         "        conv(c, 1)\n"
         "    }\n"
         "    relu\n"
         "}\n")),
    "blank lines": (
        ("\n"
         "\n"
         "import \"lib/a.arch\"\n"
         "import \"lib/b.arch\"\n"
         "block A() {\n"
         "\n"
         "    relu\n"
         "\n"
         "\n"
         "\n"
         "    relu\n"
         "\n"
         "}\n"
         "# about B\n"
         "# (two lines)\n"
         "block B() {\n"
         "    relu\n"
         "}\n"
         "\n"
         "\n"
         "\n"),
        ("import \"lib/a.arch\"\n"
         "import \"lib/b.arch\"\n"
         "\n"
         "block A() {\n"
         "    relu\n"
         "\n"
         "    relu\n"
         "}\n"
         "\n"
         "# about B\n"
         "# (two lines)\n"
         "block B() {\n"
         "    relu\n"
         "}\n")),
    "bodies that span lines open and close on lines of their own": (
        ("block B() {\n"
         "    residual { conv(8, 3)\n"
         "        relu } shortcut { conv(8, 1) }\n"
         "    concat { branch { relu }\n"
         "             branch { conv(8, 1)\n"
         "                      relu } }\n"
         "    if true { relu } else { identity }\n"
         "}\n"),
        ("block B() {\n"
         "    residual {\n"
         "        conv(8, 3)\n"
         "        relu\n"
         "    } shortcut { conv(8, 1) }\n"
         "    concat {\n"
         "        branch { relu }\n"
         "        branch {\n"
         "            conv(8, 1)\n"
         "            relu\n"
         "        }\n"
         "    }\n"
         "    if true { relu } else { identity }\n"
         "}\n")),
    "comments everywhere": (
        ("#header\n"
         "block B(  # parameters\n"
         "  c, # the width\n"
         "    # a comment inside the list\n"
         "  k = 3\n"
         "        ) {# opens\n"
         "          # at the wrong depth\n"
         "  conv(c, k)                # trailing: keeps its column, moved with its line\n"
         "                            # under it\n"
         "  conv(c,k,stride=1,pad=0,dilation=1,groups=1,bias=true) # pushed\n"
         "  relu\n"
         "         # at the end of the body\n"
         "}  # closes\n"
         "# at the end of the file"),
        ("#header\n"
         "block B(  # parameters\n"
         "    c, # the width\n"
         "    # a comment inside the list\n"
         "    k = 3\n"
         ") {  # opens\n"
         "    # at the wrong depth\n"
         "    conv(c, k)                # trailing: keeps its column, moved with its line\n"
         "                              # under it\n"
         "    conv(c, k, stride = 1, pad = 0, dilation = 1, groups = 1, bias = true)  # pushed\n"
         "    relu\n"
         "    # at the end of the body\n"
         "}  # closes\n"
         "# at the end of the file\n")),
    "continuation lines: aligned stays aligned, others get a hanging indent": (
        ("network N(classes = 1000, width = 1.0,\n"
         "          depth = 2) {\n"
         "  input [3, 224, 224]\n"
         "  conv(64, 3,\n"
         "    stride = 2,\n"
         "     pad = 1)\n"
         "  stage:  Stage(64,   3,\n"
         "                drop = 0.1)\n"
         "  if true { relu } \\\n"
         "  else { identity }\n"
         "}\n"),
        ("network N(classes = 1000, width = 1.0,\n"
         "          depth = 2) {\n"
         "    input [3, 224, 224]\n"
         "    conv(64, 3,\n"
         "        stride = 2,\n"
         "        pad = 1)\n"
         "    stage: Stage(64,   3,\n"
         "                 drop = 0.1)\n"
         "    if true { relu } \\\n"
         "    else { identity }\n"
         "}\n")),
    "an argument table keeps its columns": (
        ("block T() {\n"
         "    #     out   kernel stride\n"
         "    Stage(16,   3,     1)\n"
         "    Stage(    256, 5,     2,\n"
         "              drop = 0.2)\n"
         "}\n"),
        None),
    "empty and comment-only files": (
        ("\n"
         "\n"
         "  \n"),
        ""),
    "comments only": (
        ("  # one\n"
         "\n"
         "\n"
         "\t# two  \n"),
        ("# one\n"
         "\n"
         "# two\n")),
}


@pytest.mark.parametrize("name", CASES)
def test_rule(name):
    messy, expected = CASES[name]
    expected = messy if expected is None else expected
    assert format_source(messy) == expected
    assert format_source(expected) == expected


@pytest.mark.parametrize("name", CASES)
def test_rule_keeps_every_comment_and_token(name):
    messy, _ = CASES[name]
    formatted = format_source(messy)
    assert re.findall(r"#.*", formatted) == [c.rstrip() for c in re.findall(r"#.*", messy.replace("\r", ""))]
    assert _tokens(formatted) == _tokens(messy)


def _tokens(text: str) -> list[str]:
    return re.findall(r"[A-Za-z_0-9.]+|\*\*|//|[=!<>]=|[^\s\\]", re.sub(r"#.*", "", text))


def test_syntax_error_is_located():
    with pytest.raises(ArchError) as info:
        format_source("network N {\n    input [3, 32, 32]\n    conv(8, 3;\n}\n", "bad.arch")
    assert str(info.value.span) == "bad.arch:3:14"
    assert "syntax error" in info.value.message


# Scrambled specs format back to the spec --------------------------------------------------------

def _code(line: str) -> str:
    return line.split("#", 1)[0]


def _bracket_change(line: str) -> int:
    code = _code(line)
    return sum(code.count(c) for c in "([") - sum(code.count(c) for c in ")]")


_WORD = re.compile(r"[A-Za-z0-9_.]")
_SCRAMBLE_TOKEN = re.compile(r'"[^"]*"|(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?|[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_]\w*)?'
                             r'|\*\*|//|[=!<>]=|\S')


def _joinable(a: str, b: str) -> bool:
    """Whether two tokens may touch without becoming other tokens."""
    if _WORD.match(a[-1]) and _WORD.match(b[0]):
        return False
    return not (a[-1] in "*/<>=!" and b[0] in "*/=")


def _respace(code: str, rng: random.Random) -> str:
    """One line of code (no indentation, no comment) with random spacing between its tokens; the
    columns of an argument table (2+ spaces after `,`, `(`, `[`) stay as they are."""
    pieces = []
    previous = None
    pos = 0
    for m in _SCRAMBLE_TOKEN.finditer(code):
        gap = code[pos:m.start()]
        tok = m.group()
        if previous is not None:
            if len(gap) >= 2 and previous in (",", "(", "["):
                pieces.append(gap)
            else:
                choices = [" ", "\t"] + ([""] if _joinable(previous, tok) else [])
                if previous not in (",", "(", "["):
                    choices.append("   ")
                pieces.append(rng.choice(choices))
        pieces.append(tok)
        previous = tok
        pos = m.end()
    return "".join(pieces)


def _indent(width: int, rng: random.Random) -> str:
    if rng.random() < 0.5:
        return " " * width
    return "\t" * (width // 4) + " " * (width % 4)  # a tab is 4 columns for the formatter


def scramble(text: str, seed: int) -> str:
    """A messy text that formats back to `text` (a canonical spec): every statement re-indented (its
    continuation lines and trailing comments with it), single-line statements re-spaced, blank lines
    added and removed where they mean nothing, bodies folded onto their braces, tabs, trailing
    whitespace, CRLF line ends."""
    rng = random.Random(seed)
    lines = text.rstrip("\n").split("\n")
    out: list[str] = []
    folds: set[int] = set()  # lines to fold onto the `{` line above
    depth = 0  # open brackets
    backslash = False
    delta = 0  # the shift of the current statement
    prev_comment: tuple[int, int] | None = None  # (column in text, column in the output) of the last line's comment
    for i, line in enumerate(lines):
        stripped = line.strip()
        indent = len(line) - len(line.lstrip(" "))
        continuing = depth > 0 or backslash
        if not stripped:
            out.extend([rng.choice(["", " ", "\t"])] * rng.choice([1, 1, 2, 3]))
            prev_comment = None
            backslash = False
            continue
        if stripped.startswith("#"):
            if prev_comment is not None and prev_comment[0] == indent:
                col = prev_comment[1]  # kept under the comment above
            elif continuing:
                col = indent + delta
            else:
                col = rng.randrange(0, 13)
                while prev_comment is not None and col == prev_comment[1]:
                    col = rng.randrange(0, 13)
            out.append(_indent(col, rng) + stripped)
            prev_comment = (indent, col)
            backslash = False
            continue
        code = _code(line).rstrip()
        comment = line[len(_code(line)):] if "#" in line else ""
        comment_col = len(_code(line)) if comment else None
        opens_multiline = _bracket_change(line) > 0 or code.endswith("\\")
        if not continuing:
            delta = rng.randrange(-indent, 9)
        new_code = code.strip()
        if not continuing and not opens_multiline:
            new_code = _respace(new_code, rng)
        new_line = _indent(indent + delta, rng) + new_code
        if comment:
            target = comment_col + delta
            if len(new_line.expandtabs(4)) + 1 > target:  # the respaced code reaches the comment: no respacing
                new_line = _indent(indent + delta, rng) + code.strip()
            new_line = new_line + " " * (target - len(new_line.expandtabs(4))) + comment
            prev_comment = (comment_col, target)
        else:
            prev_comment = None
            if not code.endswith("\\") and rng.random() < 0.3:
                new_line += rng.choice([" ", "\t", "   "])
        out.append("\0" + new_line if i in folds else new_line)
        depth += _bracket_change(line)
        backslash = code.endswith("\\")
        # fold the next line onto this `{` (the formatter opens the body on a line of its own again)
        if (code.endswith("{") and not comment and i + 1 < len(lines) and rng.random() < 0.5
                and depth == 0 and _foldable(lines[i + 1])):
            folds.add(i + 1)
    joined: list[str] = []
    for line in out:  # a line marked with \0 joins the line before it
        if line.startswith("\0"):
            joined[-1] = joined[-1].rstrip() + rng.choice([" ", "", "  "]) + line[1:].lstrip(" \t")
        else:
            joined.append(line)
    joined = [rng.choice(["", "\n", " \n"]) + joined[0]] + joined[1:]
    ending = "\r\n" if rng.random() < 0.3 else "\n"
    return ending.join(joined) + ending * rng.choice([1, 1, 2])


def _foldable(line: str) -> bool:
    """Whether the first line of a body can join the `{` line above: a one-line statement without a
    comment that does not close the body."""
    line = line.strip()
    return bool(line) and "#" not in line and not line.startswith("}") and _bracket_change(line) == 0 \
        and not line.endswith("\\")


def _graph(spec: Path) -> tuple[str, str]:
    """What a spec means, independent of its layout: the summary (every layer's path, type, shapes,
    params, MACs) and the generated PyTorch code without its source locations."""
    elab = load(str(spec))
    code = generate(elab, "torch")
    return render(elab, "json"), re.sub(r"(?:[\w.-]*/)*([\w.-]+\.arch)(?::\d+)?", r"\1", code)


def _write_scrambled(tmp_path: Path, seed: int, wild: bool) -> dict[Path, str]:
    """Scrambled copies of every spec and library under tmp_path; returns {original: scrambled text}."""
    (tmp_path / "lib").mkdir()
    result = {}
    for i, path in enumerate(SPECS):
        text = path.read_text(encoding="utf-8")
        messy = wild_scramble(text, seed * 1000 + i) if wild else scramble(text, seed * 1000 + i)
        result[path] = messy
        (tmp_path / path.relative_to(ROOT / "specs")).write_text(messy, encoding="utf-8", newline="")
    return result


@pytest.fixture(scope="module")
def original_graphs():
    return {path: _graph(path) for path in NETWORKS}


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_scrambled_specs_format_back(tmp_path, seed, original_graphs):
    messy = _write_scrambled(tmp_path, seed, wild=False)
    for path, text in messy.items():
        assert text != path.read_text(encoding="utf-8")
        formatted = format_source(text, str(path))
        assert formatted == path.read_text(encoding="utf-8"), path
        assert format_source(formatted, str(path)) == formatted
    for path in NETWORKS:  # the scrambled specs (with scrambled libraries) mean what the specs mean
        assert _graph(tmp_path / path.name) == original_graphs[path], path


# Wilder inputs: idempotent, same meaning ----------------------------------------------------------

_WILD_TOKEN = re.compile(r'(?P<comment>#[^\n]*)|(?P<nl>\\?\n[ \t]*)|(?P<ws>[ \t]+)|(?P<tok>' + _SCRAMBLE_TOKEN.pattern + ')')


def wild_scramble(text: str, seed: int) -> str:
    """A messy text with the meaning of `text`: random spacing; newlines, comments and blank lines
    inside brackets; bodies broken after `{` and before `}`; `\\` continuations; random
    indentation; blank lines and comments between statements."""
    rng = random.Random(seed)
    out: list[str] = []
    depth = 0  # open brackets
    previous = None  # the previous token, None at the start of a line

    def indent() -> str:
        return rng.choice(["", " ", "  ", "    ", "\t", "        ", "\t  ", " " * rng.randrange(0, 30)])

    def comment() -> str:
        return rng.choice(["#", "# c", "#  wild comment", "# (x, y) = {z}"])

    for m in _WILD_TOKEN.finditer(text):
        kind, value = m.lastgroup, m.group()
        if kind == "comment":
            out.append(value)
        elif kind == "nl":
            out.append("\\\n" if value.startswith("\\") else "\n")
            if not value.startswith("\\") and rng.random() < 0.2:
                out.append(rng.choice(["\n", "\n\n", "  \n"]))  # blank lines mean nothing
            if not value.startswith("\\") and rng.random() < 0.1:
                out.append(indent() + comment() + "\n")
            out.append(indent())
            previous = None
        elif kind == "ws":
            continue
        else:
            if previous is not None:
                r = rng.random()
                if depth > 0 and r < 0.15:  # inside brackets a newline means nothing
                    out.append(rng.choice(["\n", "  # " + comment() + "\n", "\n\n", "\n" + comment() + "\n"]))
                    out.append(indent())
                elif depth == 0 and (previous == "{" or value == "}") and r < 0.3:  # nor after { and before }
                    out.append(rng.choice(["\n", " " + comment() + "\n"]))
                    out.append(indent())
                elif depth == 0 and r < 0.05:
                    out.append(" \\\n" + indent())
                else:
                    choices = [" ", "  ", "\t", "   "] + ([""] if _joinable(previous, value) else [])
                    out.append(rng.choice(choices))
            out.append(value)
            if value in ("(", "["):
                depth += 1
            elif value in (")", "]"):
                depth -= 1
            previous = value
    return "".join(out)


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_wild_inputs_are_idempotent_and_keep_their_meaning(tmp_path, seed, original_graphs):
    messy = _write_scrambled(tmp_path, seed, wild=True)
    for path in NETWORKS:  # the wild texts themselves mean what the specs mean
        assert _graph(tmp_path / path.name) == original_graphs[path], path
    for path, text in messy.items():
        formatted = format_source(text, str(path))
        assert format_source(formatted, str(path)) == formatted, path
        assert re.findall(r"#.*", formatted) == [c.rstrip() for c in re.findall(r"#.*", text)]
        (tmp_path / path.relative_to(ROOT / "specs")).write_text(formatted, encoding="utf-8")
    for path in NETWORKS:  # and so do the formatted texts (with the formatted libraries)
        assert _graph(tmp_path / path.name) == original_graphs[path], path


def test_wild_inputs_are_really_wild():
    text = (ROOT / "specs" / "resnet50.arch").read_text()
    wild = wild_scramble(text, 7)
    assert wild != text and format_source(wild) != wild
    parse(wild, "wild.arch")


# The command -------------------------------------------------------------------------------------

CANONICAL = "network N {\n    input [3, 32, 32]\n    conv(8, 3) relu  # a comment\n}\n"
MESSY = "network N{\n  input [3,32,32]\n  conv(8,3)relu  # a comment\n}\n"
BROKEN = "network N {\n    input [3, 32, 32]\n    conv(8, 3;\n}\n"


def fmt(capsys, *args: str) -> tuple[int, str, str]:
    status = main(["fmt", *args])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8", newline="")
    return path


def test_rewrites_in_place(tmp_path, capsys):
    messy = write(tmp_path / "messy.arch", MESSY)
    clean = write(tmp_path / "clean.arch", CANONICAL)
    before = clean.stat()
    status, out, err = fmt(capsys, str(messy), str(clean))
    assert status == 0
    assert messy.read_text() == CANONICAL and clean.read_text() == CANONICAL
    assert clean.stat().st_ino == before.st_ino and clean.stat().st_mtime_ns == before.st_mtime_ns  # not rewritten
    assert out == ""
    assert err == "1 file reformatted, 1 file left unchanged\n"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".archdsl-")]  # no temporary file left


def test_crlf_file_is_rewritten_with_newlines(tmp_path, capsys):
    spec = write(tmp_path / "crlf.arch", CANONICAL.replace("\n", "\r\n"))
    assert fmt(capsys, str(spec))[0] == 0
    assert spec.read_bytes() == CANONICAL.encode()


def test_check(tmp_path, capsys):
    messy = write(tmp_path / "messy.arch", MESSY)
    clean = write(tmp_path / "clean.arch", CANONICAL)
    status, out, err = fmt(capsys, "--check", str(messy), str(clean))
    assert status == 1
    assert out == f"would reformat: {messy}\n"
    assert err == "1 file would be reformatted, 1 file already formatted\n"
    assert messy.read_text() == MESSY  # nothing written
    status, out, err = fmt(capsys, "--check", str(clean))
    assert (status, out) == (0, "")
    assert err == "0 files would be reformatted, 1 file already formatted\n"


def test_diff(tmp_path, capsys):
    messy = write(tmp_path / "messy.arch", MESSY)
    status, out, _ = fmt(capsys, "--diff", str(messy))
    assert status == 1
    assert messy.read_text() == MESSY
    assert out.startswith(f"--- {messy} (original)\n+++ {messy} (formatted)\n@@ ")
    assert "-  conv(8,3)relu  # a comment\n" in out
    assert "+    conv(8, 3) relu  # a comment\n" in out
    clean = write(tmp_path / "clean.arch", CANONICAL)
    assert fmt(capsys, "--diff", str(clean))[:2] == (0, "")


def test_diff_of_a_file_without_final_newline(tmp_path, capsys):
    spec = write(tmp_path / "x.arch", CANONICAL.rstrip("\n"))
    status, out, _ = fmt(capsys, "--diff", str(spec))
    assert status == 1
    assert "-}\n\\ No newline at end of file\n+}\n" in out


def run_stdin(text: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "archdsl", "fmt", *args], input=text, capture_output=True,
                          text=True, cwd=ROOT, timeout=120, check=False)


def test_stdin_to_stdout():
    res = run_stdin(MESSY, "-")
    assert (res.returncode, res.stdout, res.stderr) == (0, CANONICAL, "")
    res = run_stdin(CANONICAL, "-")
    assert (res.returncode, res.stdout, res.stderr) == (0, CANONICAL, "")
    res = run_stdin(MESSY, "--check", "-")
    assert (res.returncode, res.stdout, res.stderr) == (1, "would reformat: -\n", "")
    res = run_stdin(MESSY, "--diff", "-")
    assert res.returncode == 1 and res.stdout.startswith("--- <stdin> (original)\n+++ <stdin> (formatted)\n")
    res = run_stdin(BROKEN, "-")
    assert res.returncode == 1 and res.stdout == ""
    assert res.stderr.startswith("<stdin>:3:14: error: syntax error")
    assert "Traceback" not in res.stderr


def test_syntax_error_is_reported_and_the_others_are_formatted(tmp_path, capsys):
    first = write(tmp_path / "a.arch", MESSY)
    broken = write(tmp_path / "b.arch", BROKEN)
    last = write(tmp_path / "c.arch", MESSY)
    status, _, err = fmt(capsys, str(first), str(broken), str(last))
    assert status == 1
    assert first.read_text() == CANONICAL and last.read_text() == CANONICAL
    assert broken.read_text() == BROKEN
    lines = err.splitlines()
    assert lines[0].startswith(f"{broken}:3:14: error: syntax error: unexpected character ';'")
    assert lines[1] == " 3 |     conv(8, 3;"
    assert lines[2] == "   |              ^"
    assert lines[-1] == "2 files reformatted, 0 files left unchanged, 1 file could not be formatted"
    assert "Traceback" not in err


def test_missing_file(tmp_path, capsys):
    spec = write(tmp_path / "a.arch", MESSY)
    missing = tmp_path / "missing.arch"
    status, _, err = fmt(capsys, str(missing), str(spec))
    assert status == 1
    assert err.splitlines()[0] == f"error: cannot read '{missing}': No such file or directory"
    assert spec.read_text() == CANONICAL


def test_directories_are_searched_for_specs(tmp_path, capsys):
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    (tmp_path / ".hidden").mkdir()
    a = write(tmp_path / "a.arch", MESSY)
    b = write(tmp_path / "sub" / "deeper" / "b.arch", MESSY)
    other = write(tmp_path / "sub" / "notes.txt", MESSY)
    hidden = write(tmp_path / ".hidden" / "h.arch", MESSY)
    status, out, err = fmt(capsys, "--check", str(tmp_path), str(a))  # a twice: once
    assert status == 1
    assert out.splitlines() == [f"would reformat: {a}", f"would reformat: {b}"]
    status, out, err = fmt(capsys, str(tmp_path))
    assert status == 0 and err == "2 files reformatted, 0 files left unchanged\n"
    assert a.read_text() == b.read_text() == CANONICAL
    assert other.read_text() == hidden.read_text() == MESSY


def test_specs_directory_is_canonical(capsys):
    """What CI runs."""
    status, out, err = fmt(capsys, "--check", str(ROOT / "specs"))
    assert (status, out) == (0, "")
    assert err == f"0 files would be reformatted, {len(SPECS)} files already formatted\n"


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_unwritable_file(tmp_path, capsys):
    spec = write(tmp_path / "a.arch", MESSY)
    tmp_path.chmod(0o555)
    try:
        status, _, err = fmt(capsys, str(spec))
    finally:
        tmp_path.chmod(0o755)
    assert status == 1
    assert f"error: cannot write '{spec}'" in err
    assert spec.read_text() == MESSY
