"""Syntax highlighting: the Pygments lexer (archdsl/editor/highlight.py) and the VS Code extension's files
(editors/vscode/: TextMate grammar, language configuration, package.json).

Both highlighters spell out the language's words; these tests hold them to the compiler's lists
(grammar/archdsl.lark as Lark reads it, the layer catalog in archdsl/core/layers.py) and run them over
every spec and every example of docs/language.md, comparing what they mark with the compiler's
own lexer.
"""

from __future__ import annotations

import functools
import json
import re
import shutil
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest
from lark import Lark

from archdsl.core.layers import FUNCTIONS, LAYERS, SYMBOLS

try:
    import pygments
    from pygments.token import Comment, Error, Keyword, Name, Number, Operator, String
except ImportError:  # pragma: no cover - pygments is in the dev extra
    pygments = None

try:
    import regex
except ImportError:  # pragma: no cover
    regex = None

needs_pygments = pytest.mark.skipif(pygments is None, reason="pygments is not installed (it is in the dev extra)")

ROOT = Path(__file__).resolve().parent.parent
VSCODE = ROOT / "editors" / "vscode"
SPECS = sorted((ROOT / "specs").rglob("*.arch"))  # specs/ and specs/lib/
DOC_EXAMPLES = re.findall(r"```arch\n(.*?)```", (ROOT / "docs" / "language.md").read_text(encoding="utf-8"), re.DOTALL)
SOURCES = [pytest.param(p.read_text(encoding="utf-8"), id=str(p.relative_to(ROOT))) for p in SPECS] + [
    pytest.param(text, id=f"docs/language.md:example{i + 1}") for i, text in enumerate(DOC_EXAMPLES)]
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def test_sources_found():
    assert len(SPECS) > 30 and any(p.parent.name == "lib" for p in SPECS)
    assert len(DOC_EXAMPLES) > 10


# The compiler's own lists ------------------------------------------------------------------------


@functools.cache
def compiler_lark() -> Lark:
    """The compiler's grammar without its post-lexer: to read its terminals and lex specs."""
    return Lark((ROOT / "grammar" / "archdsl.lark").read_text(encoding="utf-8"), parser="lalr", lexer="basic")


@functools.cache
def compiler_keywords() -> frozenset[str]:
    """The words the compiler's lexer reserves: the grammar's literal terminals that look like names."""
    words = {t.pattern.value for t in compiler_lark().terminals
             if t.pattern.type == "str" and NAME.fullmatch(t.pattern.value)}
    return frozenset(words)


def test_compiler_keywords_are_reserved_and_documented():
    words = compiler_keywords()
    assert {"import", "block", "network", "residual", "in", "true", "tensor"} <= words
    for w in words:  # the lexer never reads them as a name
        assert [t.type for t in compiler_lark().lex(w)] != ["NAME"], w
    assert [t.type for t in compiler_lark().lex("conv")] == ["NAME"]
    doc = (ROOT / "docs" / "language.md").read_text(encoding="utf-8")
    m = re.search(r"\*\*Reserved words\*\* \(cannot be names, labels or parameters\): `([^`]*)`", doc)
    assert m, "the reserved-word list in docs/language.md section 1 moved"
    assert set(m.group(1).split()) == words


def lex(text: str):
    """The compiler's tokens of a spec, comments included."""
    return list(compiler_lark().lex(text, dont_ignore=True))


def is_label(text: str, tok) -> bool:
    return re.match(r"[ \t]*:", text[tok.end_pos:]) is not None


def is_assigned(text: str, tok) -> bool:
    """A name before `=`: a parameter, a keyword argument (a layer's name may be either) or a binding."""
    return re.match(r"[ \t]*=(?!=)", text[tok.end_pos:]) is not None


# The Pygments lexer -------------------------------------------------------------------------------


@needs_pygments
def test_word_lists_are_the_compilers():
    from archdsl.editor import highlight

    assert set(highlight.RESERVED) == compiler_keywords()
    assert set(highlight.LAYER_NAMES) == set(LAYERS)
    assert set(highlight.FUNCTION_NAMES) == set(FUNCTIONS)
    assert set(highlight.SYMBOL_NAMES) == set(SYMBOLS)
    assert set(highlight.grammar_keywords((ROOT / "grammar" / "archdsl.lark").read_text())) == compiler_keywords()


@needs_pygments
@pytest.mark.parametrize("text", SOURCES)
def test_pygments_lexes_spec(text):
    from archdsl.editor.highlight import ArchLexer

    tokens = list(ArchLexer().get_tokens_unprocessed(text))
    assert "".join(v for _, _, v in tokens) == text
    errors = [(text.count("\n", 0, i) + 1, v) for i, t, v in tokens if t in Error]
    assert not errors, f"Error tokens (line, text): {errors[:10]}"
    # every token's offset is where its text is
    assert all(text.startswith(v, i) for i, _, v in tokens)

    # what the compiler's lexer calls a keyword, number, string, comment or layer, Pygments does too
    at = {}
    for i, t, v in tokens:
        for k in range(i, i + len(v)):
            at[k] = t
    for tok in lex(text):
        kind = at[tok.start_pos]
        where = f"{tok.value!r} at line {tok.line}: {kind}"
        if tok.value in compiler_keywords() and tok.type != "NAME":
            assert kind in Keyword or kind in Operator.Word or kind in Name.Builtin.Pseudo, where
        elif tok.type == "NUMBER":
            assert kind in Number, where
        elif tok.type == "STRING":
            assert kind in String, where
        elif tok.type == "COMMENT":
            assert kind in Comment, where
        elif tok.type == "NAME" and tok.value in LAYERS and not is_assigned(text, tok):
            assert kind in (Name.Label if is_label(text, tok) else Name.Builtin), where


def kinds(text: str) -> list[tuple[object, str]]:
    from archdsl.editor.highlight import ArchLexer

    return [(t, v) for _, t, v in ArchLexer().get_tokens_unprocessed(text) if v.strip()]


SAMPLE = '''\
import "lib/resnet.arch"   # the library
block Basic(width, prev: tensor, stride = 1) {
    conv1: conv(width, 3, stride = stride, pad = same, bias = false) bn relu
    let c = max(in.channels, make_divisible(width * 0.5))
    h = prev maxpool(2, ceil = true)
    assert prev.height == in.height or not true, "sizes"
    for i in range(2) { dropout(1e-3) }
}
network Net(classes = 10) {
    input [3, ?, 32]
    stage: Basic(16) * 2
    output logits = dense(classes)
}
'''


@needs_pygments
def test_pygments_token_types():
    got = kinds(SAMPLE)
    expected = [
        (Keyword.Namespace, "import"), (String.Double, '"lib/resnet.arch"'), (Comment.Single, "# the library"),
        (Keyword.Declaration, "block"), (Name.Class, "Basic"), (Keyword.Declaration, "network"), (Name.Class, "Net"),
        (Name.Variable, "prev"), (Keyword.Type, "tensor"), (Name.Attribute, "stride"),
        (Name.Label, "conv1"), (Name.Builtin, "conv"), (Name.Builtin, "bn"), (Name.Builtin, "relu"),
        (Name.Builtin, "maxpool"), (Name.Builtin, "dense"), (Name.Builtin, "dropout"),
        (Name.Constant, "same"), (Keyword.Constant, "false"), (Keyword.Constant, "true"),
        (Keyword.Declaration, "let"), (Name.Function, "max"), (Name.Function, "make_divisible"),
        (Name.Builtin.Pseudo, "in"), (Name.Attribute, "channels"), (Name.Attribute, "height"),
        (Number.Integer, "10"), (Number.Integer, "3"), (Number.Float, "0.5"), (Number.Float, "1e-3"),
        (Name.Variable, "h"), (Name.Attribute, "ceil"),  # an argument named like a function is not one
        (Keyword, "assert"), (Operator.Word, "or"), (Operator.Word, "not"), (Operator, "=="), (Operator, "*"),
        (String.Double, '"sizes"'), (Keyword, "for"), (Name.Variable, "i"), (Keyword, "range"),
        (Keyword, "input"), (Operator, "?"), (Name.Label, "stage"), (Keyword, "output"), (Name.Label, "logits"),
    ]
    missing = [pair for pair in expected if pair not in got]
    assert not missing, f"not lexed as expected: {missing}\ngot: {got}"
    assert (Name.Function, "ceil") not in got
    assert not [v for t, v in got if t in Error]


@needs_pygments
def test_pygments_every_word_of_the_lists():
    for w in LAYERS:
        assert kinds(f"{w}(1)")[0] == (Name.Builtin, w)
    for w in FUNCTIONS:
        assert kinds(f"conv({w}(1), 3)")[2] == (Name.Function, w)
    for w in SYMBOLS:
        assert kinds(f"conv(8, 3, pad = {w})")[-2] == (Name.Constant, w)
    for w in compiler_keywords():
        t, v = kinds(f"x {w} y")[1]
        assert v == w and (t in Keyword or t in Operator.Word or t in Name.Builtin.Pseudo), (w, t)
    # names that merely start like a word are names
    assert kinds("conv2d relux inx") == [(Name, "conv2d"), (Name, "relux"), (Name, "inx")]


@needs_pygments
def test_pygments_flags_what_is_not_the_language():
    got = kinds("conv(8, 3) ; relu $ @x")
    assert [v for t, v in got if t in Error] == [";", "$", "@"]


@needs_pygments
def test_pygments_half_typed_text_has_no_errors():
    # an editor's or a tutorial's unfinished line: unbalanced brackets, an open string
    for text in ['conv(64, 3, stride = \nrelu\n', 'import "lib/res\nblock B(', 'network N {\n  input [3,', ')) }}']:
        got = kinds(text)
        assert not [v for t, v in got if t in Error], (text, got)


@needs_pygments
def test_pygments_finds_the_lexer_through_the_entry_point():
    eps = [ep for ep in entry_points(group="pygments.lexers") if ep.name == "archdsl"]
    if not eps:
        pytest.skip("archdsl's package metadata is not installed (pip install -e . --no-deps)")
    assert eps[0].value == "archdsl.editor.highlight:ArchLexer"
    from pygments.lexers import find_lexer_class_by_name, get_lexer_by_name, get_lexer_for_filename

    for lexer in (get_lexer_by_name("archdsl"), get_lexer_by_name("arch"), get_lexer_for_filename("specs/vgg.arch")):
        assert type(lexer).__module__ == "archdsl.editor.highlight" and type(lexer).__name__ == "ArchLexer"
    assert find_lexer_class_by_name("arch").name == "archdsl"
    from pygments import highlight
    from pygments.formatters import HtmlFormatter

    html = highlight("conv(64, 3) relu  # x\n", get_lexer_by_name("arch"), HtmlFormatter())
    assert '<span class="nb">conv</span>' in html and '<span class="c1"># x</span>' in html


def test_highlight_imports_no_framework_and_only_it_imports_pygments():
    if pygments is not None:
        code = ("import sys, archdsl.editor.highlight; "
                "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'tensorflow', 'keras', 'lark')))")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
        assert out.stdout.strip() == "[]"
    importers = [p.relative_to(ROOT).as_posix() for p in (ROOT / "archdsl").rglob("*.py")
                 if re.search(r"^\s*(import|from)\s+pygments\b", p.read_text(encoding="utf-8"), re.MULTILINE)]
    assert importers == ["archdsl/editor/highlight.py"]


# The VS Code extension -----------------------------------------------------------------------------


def load_json(name: str) -> dict:
    return json.loads((VSCODE / name).read_text(encoding="utf-8"))


GRAMMAR_PATH = "syntaxes/archdsl.tmLanguage.json"


def test_package_json():
    pkg = load_json("package.json")
    for key in ("name", "displayName", "version", "publisher", "engines", "main", "activationEvents", "contributes"):
        assert key in pkg, key
    assert pkg["engines"]["vscode"].startswith("^1.")
    assert (VSCODE / pkg["main"]).is_file()
    assert "onLanguage:archdsl" in pkg["activationEvents"]
    [language] = pkg["contributes"]["languages"]
    assert language["id"] == "archdsl" and ".arch" in language["extensions"]
    assert (VSCODE / language["configuration"]).is_file()
    [grammar] = pkg["contributes"]["grammars"]
    assert grammar["language"] == "archdsl"
    assert (VSCODE / grammar["path"]).resolve() == (VSCODE / GRAMMAR_PATH).resolve()
    assert grammar["scopeName"] == load_json(GRAMMAR_PATH)["scopeName"] == "source.archdsl"
    setting = pkg["contributes"]["configuration"]["properties"]["archdsl.server.command"]
    assert setting["type"] == "array" and setting["default"] == ["archdsl", "lsp"]
    assert re.fullmatch(r"\^\d+\.\d+\.\d+", pkg["dependencies"]["vscode-languageclient"])


# Runs extension.js under Node with stand-ins for the `vscode` and `vscode-languageclient/node` modules,
# and prints what it made of the settings: the LanguageClient's arguments, the commands it registered.
NODE_HARNESS = r"""
const Module = require('module');
const settings = JSON.parse(process.argv[2]);
const seen = { clients: [], commands: [], started: 0, stopped: 0 };
const vscode = {
  workspace: {
    getConfiguration: (section) => ({ get: (key, dflt) => {
      const v = settings[section + '.' + key]; return v === undefined ? dflt : v; } }),
    createFileSystemWatcher: (glob) => ({ glob }),
    onDidChangeConfiguration: (f) => { seen.onConfig = f; return { dispose() {} }; },
  },
  window: {
    createOutputChannel: (name) => ({ name, dispose() {} }),
    showErrorMessage: (m) => { seen.error = m; }, showWarningMessage: (m) => { seen.warning = m; },
  },
  commands: { registerCommand: (name, f) => { seen.commands.push(name); return { dispose() {} }; } },
};
class LanguageClient {
  constructor(id, name, serverOptions, clientOptions) {
    seen.clients.push({ id, name, serverOptions, documentSelector: clientOptions.documentSelector,
                        watcher: clientOptions.synchronize.fileEvents.glob });
  }
  async start() { seen.started += 1; if (settings.fail) throw new Error('spawn ENOENT'); }
  async stop() { seen.stopped += 1; }
}
const load = Module._load;
Module._load = function (request, ...rest) {
  if (request === 'vscode') return vscode;
  if (request === 'vscode-languageclient/node') return { LanguageClient };
  return load.call(this, request, ...rest);
};
(async () => {
  const ext = require(process.argv[1]);
  await ext.activate({ subscriptions: [] });
  if (settings.change) {
    settings['archdsl.server.command'] = settings.change;
    await seen.onConfig({ affectsConfiguration: (s) => s === 'archdsl.server.command' });
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  await ext.deactivate();
  delete seen.onConfig;
  console.log(JSON.stringify(seen));
})();
"""


def run_extension(settings: dict) -> dict:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    out = subprocess.run([node, "-e", NODE_HARNESS, str(VSCODE / "extension.js"), json.dumps(settings)],
                         capture_output=True, text=True, timeout=60, check=True)
    return json.loads(out.stdout)


def test_client_starts_the_configured_server_over_stdio():
    js = re.sub(r"//[^\n]*", "", (VSCODE / "extension.js").read_text(encoding="utf-8"))
    assert "TransportKind" not in js  # TransportKind.stdio would add a --stdio argument to the command

    seen = run_extension({})
    [client] = seen["clients"]
    assert client["id"] == "archdsl"  # so that the setting archdsl.trace.server applies
    assert client["serverOptions"]["run"] == {"command": "archdsl", "args": ["lsp"]}
    assert client["documentSelector"] == [{"scheme": "file", "language": "archdsl"}]
    assert client["watcher"] == "**/*.arch"
    assert seen["started"] == 1 and seen["stopped"] == 1 and "error" not in seen
    assert seen["commands"] == ["archdsl.restartServer"]
    pkg = load_json("package.json")
    assert [c["command"] for c in pkg["contributes"]["commands"]] == seen["commands"]

    seen = run_extension({"archdsl.server.command": ["/venv/bin/python", "-m", "archdsl", "lsp"]})
    assert seen["clients"][0]["serverOptions"]["run"] == {"command": "/venv/bin/python",
                                                          "args": ["-m", "archdsl", "lsp"]}

    seen = run_extension({"archdsl.server.command": []})  # unusable: the default, and a warning
    assert seen["clients"][0]["serverOptions"]["run"] == {"command": "archdsl", "args": ["lsp"]}
    assert "archdsl.server.command" in seen["warning"]

    seen = run_extension({"fail": True})  # no archdsl on PATH: a message that says what to do
    assert "archdsl.server.command" in seen["error"] and "PATH" in seen["error"]

    seen = run_extension({"change": ["archdsl2", "lsp"]})  # changing the setting restarts the server
    assert [c["serverOptions"]["run"]["command"] for c in seen["clients"]] == ["archdsl", "archdsl2"]
    assert seen["started"] == 2 and seen["stopped"] == 2


def test_no_node_modules_in_git():
    try:
        out = subprocess.run(["git", "ls-files", "editors"], capture_output=True, text=True, cwd=ROOT, check=True)
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    assert not [f for f in out.stdout.splitlines() if "node_modules/" in f or f.endswith(".vsix")]
    assert "node_modules" in (VSCODE / ".gitignore").read_text(encoding="utf-8")
    assert (VSCODE / ".vscodeignore").is_file() and (VSCODE / "README.md").is_file()


def test_language_configuration():
    conf = load_json("language-configuration.json")
    assert conf["comments"]["lineComment"] == "#"
    assert ["{", "}"] in conf["brackets"] and ["(", ")"] in conf["brackets"] and ["[", "]"] in conf["brackets"]
    assert {p["open"] for p in conf["autoClosingPairs"]} >= {"{", "(", "[", '"'}
    increase = re.compile(conf["indentationRules"]["increaseIndentPattern"])
    decrease = re.compile(conf["indentationRules"]["decreaseIndentPattern"])
    for line in ("block Basic(width) {", "} shortcut if stride != 1 {", "    conv(64, 3,", "input [3,  # size",
                 "residual {"):
        assert increase.search(line), line
    for line in ("conv(64, 3) bn relu", "network N { }", "# a comment {", 'assert c, "a { b"'):
        assert not increase.search(line), line
    assert decrease.search("    } else {") and not decrease.search("    conv")


def regexes(node, path="$"):
    """Every (path, pattern) of a TextMate grammar."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("match", "begin", "end", "while") and isinstance(value, str):
                yield f"{path}.{key}", value
            else:
                yield from regexes(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from regexes(value, f"{path}[{i}]")


def test_textmate_regexes_compile():
    grammar = load_json(GRAMMAR_PATH)
    found = list(regexes(grammar))
    assert len(found) > 20
    for path, pattern in found:
        re.compile(pattern)
        if regex is not None:
            regex.compile(pattern)
        # constructs that Oniguruma and Python read differently stay out
        assert not re.search(r"\\[AzZGhHRXK]|\(\?[<]?[A-Za-z]|\\p\{|\(\?>|[*+?]\+", pattern), (path, pattern)


def test_textmate_includes_resolve():
    grammar = load_json(GRAMMAR_PATH)
    text = json.dumps(grammar)
    names = set(re.findall(r'"include": "#([^"]+)"', text))
    assert names and names <= set(grammar["repository"])


def words_of(pattern: str) -> set[str]:
    m = re.fullmatch(r"\\b\(\?:([A-Za-z0-9_|]+)\)\\b(?:\(\?=[^)]*\))?", pattern)
    assert m, pattern
    return set(m.group(1).split("|"))


def test_textmate_word_lists_are_the_compilers():
    repo = load_json(GRAMMAR_PATH)["repository"]
    keywords = set().union(*(words_of(p["match"]) for p in repo["keywords"]["patterns"]))
    assert keywords == compiler_keywords()
    assert words_of(repo["layers"]["match"]) == set(LAYERS)
    assert words_of(repo["functions"]["match"]) == set(FUNCTIONS)
    assert words_of(repo["symbols"]["match"]) == set(SYMBOLS)


class TextMate:
    """Just enough of a TextMate tokenizer to run the grammar: match and begin/end rules, includes,
    captures, the earliest match winning (the first rule on a tie, the end pattern before all)."""

    def __init__(self, grammar: dict) -> None:
        self.grammar = grammar
        self.compile = functools.cache(regex.compile if regex is not None else re.compile)

    def rules(self, patterns: list) -> list[dict]:
        out = []
        for p in patterns:
            if "include" in p:
                out += self.rules([self.grammar["repository"][p["include"][1:]]])
            elif "match" in p or "begin" in p:
                out.append(p)
            else:
                out += self.rules(p["patterns"])
        return out

    def scopes(self, text: str) -> list[list[str]]:
        """The scope names at each offset of text."""
        result: list[list[str]] = [[] for _ in text]

        def mark(m, rule: dict, base: int, captures_key: str) -> None:
            if rule.get("name"):
                for k in range(base + m.start(), base + m.end()):
                    result[k].append(rule["name"])
            for group, capture in rule.get(captures_key, rule.get("captures", {})).items():
                if m.group(int(group)) is not None and "name" in capture:
                    for k in range(base + m.start(int(group)), base + m.end(int(group))):
                        result[k].append(capture["name"])

        stack: list[dict] = []
        base = 0
        for line in text.splitlines(keepends=True):
            pos = 0
            while pos < len(line):
                best = None
                if stack:
                    m = self.compile(stack[-1]["end"]).search(line, pos)
                    if m:
                        best = (m, None)
                for rule in self.rules(stack[-1]["patterns"] if stack else self.grammar["patterns"]):
                    m = self.compile(rule.get("match") or rule["begin"]).search(line, pos)
                    if m and (best is None or m.start() < best[0].start()):
                        best = (m, rule)
                if best is None:
                    break
                m, rule = best
                if rule is None:
                    mark(m, stack.pop(), base, "endCaptures")
                elif "match" in rule:
                    mark(m, rule, base, "captures")
                else:
                    mark(m, rule, base, "beginCaptures")
                    stack.append(rule)
                pos = max(m.end(), pos + 1) if m.end() == m.start() else m.end()
            base += len(line)
        return result


KEYWORD_SCOPES = ("keyword.", "storage.type", "constant.language.boolean", "variable.language.in")


@pytest.mark.parametrize("text", SOURCES)
def test_textmate_grammar_marks_what_the_compiler_lexes(text):
    scopes = TextMate(load_json(GRAMMAR_PATH)).scopes(text)
    for tok in lex(text):
        got = scopes[tok.start_pos]
        where = f"{tok.value!r} at line {tok.line}: {got}"
        if tok.value in compiler_keywords() and tok.type != "NAME":
            assert any(s.startswith(KEYWORD_SCOPES) for s in got), where
        elif tok.type == "NUMBER":
            assert any(s.startswith("constant.numeric") for s in got), where
            assert all(any(s.startswith("constant.numeric") for s in scopes[k]) for k in range(tok.start_pos,
                                                                                              tok.end_pos)), where
        elif tok.type == "STRING":
            assert any(s.startswith("string.quoted.double") for s in got), where
        elif tok.type == "COMMENT":
            assert all(any(s.startswith("comment.line") for s in scopes[k]) for k in range(tok.start_pos,
                                                                                          tok.end_pos)), where
        elif tok.type == "NAME" and tok.value in LAYERS and not is_assigned(text, tok):
            want = "entity.name.label" if is_label(text, tok) else "support.function.layer"
            assert any(s.startswith(want) for s in got), where
        elif tok.type == "NAME" and tok.value in FUNCTIONS and text[tok.end_pos:].lstrip(" ").startswith("("):
            assert any(s.startswith("support.function.builtin") for s in got), where


def test_textmate_definitions_and_labels():
    tm = TextMate(load_json(GRAMMAR_PATH))
    text = SAMPLE
    scopes = tm.scopes(text)

    def at(word: str, nth: int = 0) -> list[str]:
        return scopes[[m.start() for m in re.finditer(rf"\b{re.escape(word)}\b", text)][nth]]

    assert "entity.name.type.block.archdsl" in at("Basic")
    assert "entity.name.type.network.archdsl" in at("Net")
    assert "storage.type.block.archdsl" in at("block")
    assert "entity.name.label.archdsl" in at("conv1") and "entity.name.label.archdsl" in at("stage")
    assert "storage.type.tensor.archdsl" in at("tensor")
    assert "variable.parameter.archdsl" in at("stride")  # stride = 1 in the parameter list
    assert "variable.parameter.archdsl" in at("ceil")  # maxpool's argument, not the function
    assert not any(s.startswith("support.function") for s in at("ceil"))
    assert "variable.language.in.archdsl" in at("in") and "variable.other.property.archdsl" in at("channels")
    assert "constant.language.symbol.archdsl" in at("same")
    assert "string.quoted.double.path.archdsl" in scopes[text.index('"lib')]
    assert "comment.line.number-sign.archdsl" in scopes[text.index("# the")]
    assert "keyword.operator.archdsl" in scopes[text.index("==")]
    assert "keyword.operator.unknown-size.archdsl" in scopes[text.index("?")]


def test_the_textmate_word_lists_are_written_from_the_catalog():
    """`python -m archdsl.editor.textmate` (run by tools/regenerate) leaves the grammar as it is."""
    from archdsl.editor import textmate

    text = textmate.GRAMMAR.read_text(encoding="utf-8")
    assert textmate.updated(text) == text, "run `python -m archdsl.editor.textmate` (or tools/regenerate)"
