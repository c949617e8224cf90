"""The language server (`archdsl lsp`), driven as an editor drives it: a real LSP client talking to
`python -m archdsl lsp` over stdio (pytest-lsp). One server serves the whole module; each test
opens its own copies of the specs, in a folder of its own."""

from __future__ import annotations

import asyncio
import importlib.util
import shutil
import sys
import time
from pathlib import Path

import pytest
import pytest_lsp
from lsprotocol import types as T
from pygls.protocol import default_converter
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities
from pytest_lsp.client import DEFAULT_CLIENT_FEATURES, register_lsp_features

from archdsl.language.limits import MAX_INSTANCES

pytestmark = pytest.mark.asyncio(loop_scope="module")

SPECS = Path(__file__).resolve().parent.parent / "specs"


def _make_client() -> LanguageClient:
    """pytest-lsp's test client, also keeping every publishDiagnostics in order (with its version)."""
    client = LanguageClient(converter_factory=default_converter)
    client.published = []  # type: ignore[attr-defined]

    def publish(c: LanguageClient, params: T.PublishDiagnosticsParams) -> None:
        c.diagnostics[params.uri] = params.diagnostics
        c.published.append(params)  # type: ignore[attr-defined]

    register_lsp_features(client, {**DEFAULT_CLIENT_FEATURES, T.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS: publish})
    return client


@pytest_lsp.fixture(scope="module", config=ClientServerConfig(
    server_command=[sys.executable, "-m", "archdsl", "lsp"], client_factory=_make_client))
async def client(lsp_client: LanguageClient):
    await lsp_client.initialize_session(T.InitializeParams(
        capabilities=client_capabilities("visual-studio-code"), initialization_options={"debounce": 0.02}))
    yield
    await lsp_client.shutdown_session()


# helpers -------------------------------------------------------------------------------------------

class Doc:
    """An open document: its text and version as the editor has them."""

    def __init__(self, client: LanguageClient, path: Path) -> None:
        self.client, self.path, self.uri = client, path, path.as_uri()
        self.text = path.read_text(encoding="utf-8")
        self.version = 1
        client.text_document_did_open(T.DidOpenTextDocumentParams(
            text_document=T.TextDocumentItem(uri=self.uri, language_id="arch", version=1, text=self.text)))

    def set(self, text: str) -> None:
        """Replace the whole text (a full-sync change)."""
        self.version += 1
        self.text = text
        self.client.text_document_did_change(T.DidChangeTextDocumentParams(
            text_document=T.VersionedTextDocumentIdentifier(uri=self.uri, version=self.version),
            content_changes=[T.TextDocumentContentChangeWholeDocument(text=text)]))

    def edit(self, old: str, new: str) -> None:
        """Replace the first `old` by `new` with an incremental change (a range and its new text)."""
        start = self.text.index(old)
        self.version += 1
        rng = T.Range(start=self.pos(start), end=self.pos(start + len(old)))
        self.text = self.text[:start] + new + self.text[start + len(old):]
        self.client.text_document_did_change(T.DidChangeTextDocumentParams(
            text_document=T.VersionedTextDocumentIdentifier(uri=self.uri, version=self.version),
            content_changes=[T.TextDocumentContentChangePartial(range=rng, text=new)]))

    def pos(self, offset: int) -> T.Position:
        before = self.text[:offset]
        return T.Position(line=before.count("\n"), character=len(before) - (before.rfind("\n") + 1))

    def at(self, needle: str, delta: int = 0) -> T.Position:
        """The position of the first `needle`, `delta` characters into it."""
        return self.pos(self.text.index(needle) + delta)

    async def diagnostics(self, timeout: float = 10.0) -> list[T.Diagnostic]:
        """The diagnostics published for the current version (waits for them)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for p in reversed(self.client.published):  # type: ignore[attr-defined]
                if p.uri == self.uri and p.version == self.version:
                    return list(p.diagnostics)
            await asyncio.sleep(0.01)
        raise AssertionError(f"no diagnostics for {self.uri} version {self.version}")

    async def hover(self, pos: T.Position) -> str | None:
        h = await self.client.text_document_hover_async(T.HoverParams(
            text_document=T.TextDocumentIdentifier(uri=self.uri), position=pos))
        return None if h is None else h.contents.value  # type: ignore[union-attr]

    async def definition(self, pos: T.Position):
        return await self.client.text_document_definition_async(T.DefinitionParams(
            text_document=T.TextDocumentIdentifier(uri=self.uri), position=pos))

    async def completion(self, pos: T.Position) -> list[str]:
        result = await self.client.text_document_completion_async(T.CompletionParams(
            text_document=T.TextDocumentIdentifier(uri=self.uri), position=pos))
        if result is None:
            return []
        items = result.items if isinstance(result, T.CompletionList) else result
        return [i.label for i in items]

    def close(self) -> None:
        self.client.text_document_did_close(T.DidCloseTextDocumentParams(
            text_document=T.TextDocumentIdentifier(uri=self.uri)))


@pytest.fixture
def resnet(tmp_path: Path) -> Path:
    """A copy of specs/resnet50.arch and the library it imports."""
    (tmp_path / "lib").mkdir()
    shutil.copy(SPECS / "resnet50.arch", tmp_path / "resnet50.arch")
    shutil.copy(SPECS / "lib" / "resnet.arch", tmp_path / "lib" / "resnet.arch")
    return tmp_path / "resnet50.arch"


TINY = """\
# A small residual network for 32x32 images.

block Basic(width, stride = 1) {
    residual {
        conv(width, 3, stride = stride, pad = 1, bias = false) bn relu
        conv(width, 3, pad = 1, bias = false) bn
    } shortcut if stride != 1 or in.channels != width {
        conv(width, 1, stride = stride, bias = false) bn
    }
    relu
}

network TinyResNet(classes = 10, width = 16) {
    input [3, 32, 32]
    stem: conv(width, 3, pad = 1, bias = false)
    bn relu
    stage1: Basic(width) * 2
    stage2: Basic(width * 2, stride = 2)
    stage3: Basic(width * 4, stride = 2)
    avgpool(global) flatten
    output logits = dense(classes)
}
"""


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.arch"
    path.write_text(TINY, encoding="utf-8")
    return path


# diagnostics -----------------------------------------------------------------------------------------

async def test_diagnostics_syntax_error_and_back(client: LanguageClient, resnet: Path):
    doc = Doc(client, resnet)
    assert await doc.diagnostics() == []
    good = doc.text
    doc.set(good.replace("    bn1: bn\n", "    bn1: bn)\n"))
    [d] = await doc.diagnostics()
    assert d.message.startswith("syntax error: unexpected ')'")
    assert d.severity == T.DiagnosticSeverity.Error
    assert d.range.start == doc.at("bn)", 2) and d.range.end == doc.at("bn)", 3)
    doc.set(good)
    assert await doc.diagnostics() == []
    # a call left open: newlines inside parentheses are ignored, so the next line's word is unexpected
    doc.set(good.replace("fc: dense(classes)", "fc: dense(classes"))
    [d] = await doc.diagnostics()
    assert d.message.startswith("syntax error: unexpected 'output'")
    assert d.range.start == doc.at("output logits") and d.range.end == doc.at("output logits", 6)
    doc.set(good)
    assert await doc.diagnostics() == []
    doc.close()


async def test_diagnostics_shape_error_exact_range(client: LanguageClient, resnet: Path):
    doc = Doc(client, resnet)
    await doc.diagnostics()
    good = doc.text
    doc.set(good.replace("    flatten\n", "    \n"))  # dense on a feature map
    [d] = await doc.diagnostics()
    assert "fc (dense): dense needs a flat input [features], got the feature map [2048, 1, 1]" in d.message
    assert "note: input shape here: [2048, 1, 1]" in d.message
    assert d.range.start == doc.at("dense(classes)") and d.range.end == doc.at("dense(classes)", 14)
    # an unknown layer: the range is its name
    doc.set(good.replace("    relu\n    maxpool:", "    relux\n    maxpool:"))
    [d] = await doc.diagnostics()
    assert d.message == "unknown layer or block 'relux'; did you mean 'relu'?"
    assert d.range.start == doc.at("relux") and d.range.end == doc.at("relux", 5)
    doc.set(good)
    assert await doc.diagnostics() == []
    doc.close()


async def test_diagnostics_incremental_edits(client: LanguageClient, resnet: Path):
    doc = Doc(client, resnet)
    await doc.diagnostics()
    doc.edit("Stage(256, 6, stride = 2)", "Stage(256, 6, strde = 2)")
    [d] = await doc.diagnostics()
    assert "block Stage has no argument 'strde'; did you mean 'stride'?" in d.message
    assert d.range.start == doc.at("strde")
    doc.edit("strde", "stride")
    assert await doc.diagnostics() == []
    doc.close()


async def test_diagnostics_error_in_imported_file(client: LanguageClient, resnet: Path):
    doc = Doc(client, resnet)
    await doc.diagnostics()
    lib_uri = (resnet.parent / "lib" / "resnet.arch").as_uri()
    doc.edit("Stage(128, 4, stride = 2)", "Stage(128, 4, stride = 0)")
    [d] = await doc.diagnostics()
    # reported at the import in the open file, pointing into the library
    assert d.range.start == doc.at('import "lib/resnet.arch"')
    assert d.message.startswith("lib/resnet.arch:52:40: conv: 'stride' must be at least 1, got 0")
    assert "in layer2.bottleneck1 (Bottleneck)" in d.message
    [rel] = d.related_information
    assert rel.location.uri == lib_uri and rel.location.range.start == T.Position(line=51, character=39)
    # and in the library file itself, at the exact place
    for _ in range(200):
        if client.diagnostics.get(lib_uri):
            break
        await asyncio.sleep(0.01)
    [ld] = client.diagnostics[lib_uri]
    assert ld.range.start == T.Position(line=51, character=39) and ld.range.end == T.Position(line=51, character=60)
    doc.edit("stride = 0", "stride = 2")
    assert await doc.diagnostics() == []
    for _ in range(200):
        if not client.diagnostics.get(lib_uri):
            break
        await asyncio.sleep(0.01)
    assert list(client.diagnostics[lib_uri]) == []  # cleared there too
    doc.close()


async def test_unsaved_library_text_is_used(client: LanguageClient, resnet: Path):
    doc = Doc(client, resnet)
    lib = Doc(client, resnet.parent / "lib" / "resnet.arch")
    assert await doc.diagnostics() == [] and await lib.diagnostics() == []
    # an unsaved edit of the library breaks the spec that imports it
    lib.edit("block Stage(planes, blocks,", "block Stage(planes, nblocks,")
    ld = await lib.diagnostics()
    assert [d.message for d in ld] == ["unknown name 'blocks' in block Stage; did you mean 'nblocks'?"]
    for _ in range(200):
        if client.diagnostics.get(doc.uri):
            break
        await asyncio.sleep(0.01)
    [d] = client.diagnostics[doc.uri]
    assert d.range.start == doc.at('import "lib/resnet.arch"') and "unknown name 'blocks'" in d.message
    assert "Stage" in (await doc.hover(doc.at("Stage(64"))) or ""  # hover still answers from the last good analysis
    lib.edit("nblocks,", "blocks,")
    assert await lib.diagnostics() == []
    for _ in range(200):
        if not client.diagnostics.get(doc.uri):
            break
        await asyncio.sleep(0.01)
    assert list(client.diagnostics[doc.uri]) == []
    lib.close()
    doc.close()


async def test_change_storm_analyses_latest(client: LanguageClient, tiny: Path):
    doc = Doc(client, tiny)
    await doc.diagnostics()
    start = len(client.published)  # type: ignore[attr-defined]
    good = doc.text
    for i in range(40):
        doc.set(good.replace("classes = 10", f"classes = {i + 1}") + ("\n" if i % 2 else ""))
    doc.set(good.replace("    bn relu\n", "    bn relu)\n"))
    [d] = await doc.diagnostics()
    assert "unexpected ')'" in d.message
    mine = [p for p in client.published[start:] if p.uri == doc.uri]  # type: ignore[attr-defined]
    assert len(mine) < 20  # debounced: not one analysis per change
    versions = [p.version for p in mine]
    assert versions == sorted(versions)  # never an older version after a newer one
    doc.set(good)
    assert await doc.diagnostics() == []
    doc.close()


# hover --------------------------------------------------------------------------------------------

async def test_hover_layer_and_block_calls(client: LanguageClient, resnet: Path):
    doc = Doc(client, resnet)
    await doc.diagnostics()
    text = await doc.hover(doc.at("conv(64, 7", 1))
    assert "[3, 224, 224] → [64, 112, 112]" in text
    assert "params 9,408" in text and "MACs 118,013,952" in text
    assert "conv(filters, kernel, stride = 1" in text  # the layer's signature
    text = await doc.hover(doc.at("layer1: Stage", 9))
    assert "[64, 56, 56] → [256, 56, 56]" in text and "params 215,808" in text
    assert "block Stage(planes, blocks, stride = 1" in text and "planes = 64, blocks = 3" in text
    text = await doc.hover(doc.at("dense(classes)", 2))
    assert "[2048] → [1000]" in text and "params 2,049,000" in text
    text = await doc.hover(doc.at("ResNet50", 2))
    assert "25,557,032 params" in text and "output logits [1000]" in text
    assert await doc.hover(doc.at("# specs/resnet50.arch", 5)) is None  # comments have no hover
    doc.close()


async def test_hover_inside_block_shows_every_instance(client: LanguageClient, resnet: Path):
    doc = Doc(client, resnet)
    lib = Doc(client, resnet.parent / "lib" / "resnet.arch")
    await doc.diagnostics()
    await lib.diagnostics()
    text = await lib.hover(lib.at("conv2: conv(width, 3, stride = stride if", 8))
    assert "**16 instances**" in text
    assert "`layer1.bottleneck1.conv2` and 2 more | [64, 56, 56] → [64, 56, 56] | 36,864 | 116 M" in text
    assert "`layer2.bottleneck1.conv2` | [128, 56, 56] → [128, 28, 28] | 147,456 | 116 M" in text
    assert "in network ResNet50 (resnet50.arch)" in text
    text = await lib.hover(lib.at("block Bottleneck", 7))
    assert "**16 instances**" in text
    text = await lib.hover(lib.at("Bottleneck(planes, 1, groups", 1))  # the repeated call in Stage
    assert "**12 instances**" in text
    # a block nothing uses
    text = await lib.hover(lib.at("BasicBlock(planes, stride, drop_path)", 1))
    assert "block BasicBlock(planes, stride = 1, drop_path = 0.0)" in text
    lib.close()
    doc.close()


async def test_hover_keeps_last_good_analysis_during_syntax_error(client: LanguageClient, resnet: Path):
    doc = Doc(client, resnet)
    await doc.diagnostics()
    good = doc.text
    doc.set(good + "\nblock Broken(\n")
    [d] = await doc.diagnostics()
    assert d.message.startswith("syntax error")
    text = await doc.hover(doc.at("conv(64, 7", 1))
    assert "[3, 224, 224] → [64, 112, 112]" in text
    doc.set(good)
    assert await doc.diagnostics() == []
    doc.close()


# definitions ------------------------------------------------------------------------------------

async def test_definition_in_file_and_across_imports(client: LanguageClient, resnet: Path, tiny: Path):
    doc = Doc(client, resnet)
    lib_path = resnet.parent / "lib" / "resnet.arch"
    lib_text = lib_path.read_text(encoding="utf-8")
    loc = await doc.definition(doc.at("Stage(64", 2))
    loc = loc[0] if isinstance(loc, list) else loc
    assert loc.uri == lib_path.as_uri()
    line = lib_text[:lib_text.index("block Stage(")].count("\n")
    assert loc.range.start == T.Position(line=line, character=6) and loc.range.end.character == 11
    loc = await doc.definition(doc.at('"lib/resnet.arch"', 3))
    loc = loc[0] if isinstance(loc, list) else loc
    assert loc.uri == lib_path.as_uri() and loc.range.start == T.Position(line=0, character=0)
    small = Doc(client, tiny)
    loc = await small.definition(small.at("Basic(width * 2", 1))
    loc = loc[0] if isinstance(loc, list) else loc
    assert loc.uri == small.uri and loc.range.start == small.at("Basic(width, stride = 1)")
    loc = await small.definition(small.at("dense(classes)", 7))  # a network parameter
    loc = loc[0] if isinstance(loc, list) else loc
    assert loc.range.start == small.at("classes = 10")
    # from inside the library, to a block defined in it
    lib = Doc(client, lib_path)
    loc = await lib.definition(lib.at("se: if se { SqueezeExcite", 13))
    loc = loc[0] if isinstance(loc, list) else loc
    assert loc.uri == lib.uri and loc.range.start == lib.at("SqueezeExcite(ratio")
    lib.close()
    small.close()
    doc.close()


SPLIT = """\
block Unit(c) {
    a, b = in split(2)
    b2 = b conv(c, 1) relu
    concat(a, b2)
}

network Net {
    input [8, 5, 5]
    t = Unit(4)
    p, q, r = t split([2, 3, 3])
    concat(r, q, p)
}
"""


async def test_the_names_of_a_split(client: LanguageClient, tmp_path: Path):
    """The tensors a split names: each one's shape on hover, its definition, and completion offers them."""
    path = tmp_path / "split.arch"
    path.write_text(SPLIT)
    doc = Doc(client, path)
    assert await doc.diagnostics() == []
    text = await doc.hover(doc.at("q, r = t split"))
    assert "tensor **q**, a part of a channel split" in text and "`split2`: **[8, 5, 5] → [3, 5, 5]**" in text
    text = await doc.hover(doc.at("b = in split"))
    assert "`unit1.split2`: **[8, 5, 5] → [4, 5, 5]**" in text
    text = await doc.hover(doc.at("b2 = b conv"))  # a name bound by `name = ...` too
    assert "tensor **b2**" in text and "[4, 5, 5] → [4, 5, 5]" in text
    text = await doc.hover(doc.at("split([2, 3, 3])", 1))
    assert "split(parts, index = 0, names = 2)" in text
    loc = await doc.definition(doc.at("q, p)"))
    loc = loc[0] if isinstance(loc, list) else loc
    assert loc.range.start == doc.at("q, r = t split") and loc.range.end.character == loc.range.start.character + 1
    loc = await doc.definition(doc.at("b conv"))
    loc = loc[0] if isinstance(loc, list) else loc
    assert loc.range.start == doc.at("b = in split")
    doc.edit("concat(r, q, p)", "concat(r, q, p, )")
    labels = await doc.completion(doc.at("p, )", 3))
    assert {"p", "q", "r", "t"} <= set(labels) and "a" not in labels  # the network's tensors, not Unit's
    labels = await doc.completion(doc.at("b2 = ", 5))  # where a chain starts
    assert {"a", "b", "b2"} <= set(labels) and "conv" in labels
    doc.close()


BASES = """\
import "tiny_base.arch"

network Net(fine_tune = false) {
    input [3, 16, 16]
    a, b = backbone: Tiny() through stage1, stage2
    up = b conv(8, 1) upsample(like = a)
    add(a, up)
    freeze backbone
    unfreeze backbone.stage2 if fine_tune
}
"""


async def test_a_base_and_its_feature_maps(client: LanguageClient, tmp_path: Path):
    """A network used as a base: no diagnostics, its call hovers with its instance, goes to the network's
    definition in the imported file; the feature maps' names hover with their shapes."""
    shutil.copy(SPECS.parent / "tests" / "data" / "tiny_base.arch", tmp_path / "tiny_base.arch")
    path = tmp_path / "bases.arch"
    path.write_text(BASES)
    doc = Doc(client, path)
    assert await doc.diagnostics() == []
    text = await doc.hover(doc.at("Tiny()", 1))
    assert "backbone" in text and "[3, 16, 16] → [16, 4, 4]" in text
    loc = await doc.definition(doc.at("Tiny()", 1))
    loc = loc[0] if isinstance(loc, list) else loc
    assert loc.uri == (tmp_path / "tiny_base.arch").as_uri()
    text = await doc.hover(doc.at("a, b = backbone"))
    assert "tensor **a**, the feature map of backbone (Tiny) at `stage1`" in text
    text = await doc.hover(doc.at("b = backbone"))  # the last: the call's result, with its shapes
    assert "at `stage2`" in text and "[3, 16, 16] → [16, 4, 4]" in text
    doc.edit("freeze backbone\n", "freeze backbone.stem2\n")
    diagnostics = await doc.diagnostics()
    assert len(diagnostics) == 1 and "did you mean 'stem'" in diagnostics[0].message
    doc.close()


# completion -------------------------------------------------------------------------------------------

async def test_completion_layers_blocks_and_keywords(client: LanguageClient, resnet: Path):
    doc = Doc(client, resnet)
    await doc.diagnostics()
    doc.edit("    avgpool: avgpool(global)\n", "    avgpool: avgpool(global)\n    \n")
    await doc.diagnostics()
    labels = await doc.completion(doc.at("    \n", 4))
    assert {"conv", "dwconv", "bn", "relu", "dense", "maxpool"} <= set(labels)
    assert {"Stage", "Bottleneck", "BasicBlock", "SqueezeExcite"} <= set(labels)  # imported blocks
    assert {"residual", "concat"} <= set(labels)
    # keyword arguments of a layer: those not given yet
    doc.edit("    \n", "    conv(64, 3, \n")
    labels = await doc.completion(doc.at("conv(64, 3, ", 12))
    assert {"stride =", "pad =", "dilation =", "groups =", "bias ="} <= set(labels)
    assert "filters =" not in labels and "kernel =" not in labels
    # ... and of a block
    doc.edit("conv(64, 3, \n", "Bottleneck(64, se = true, \n")
    labels = await doc.completion(doc.at("se = true, ", 11))
    assert {"stride =", "groups =", "base_width =", "drop_path ="} <= set(labels)
    assert "se =" not in labels and "planes =" not in labels
    # a value: symbols and the network's parameters
    doc.edit("se = true, \n", "se = true, stride = \n")
    labels = await doc.completion(doc.at("stride = \n", 9))
    assert "classes" in labels and "stride =" not in labels
    # an import path
    doc.edit('import "lib/resnet.arch"', 'import "li')
    labels = await doc.completion(doc.at('import "li', 10))
    assert "lib/" in labels
    doc.close()


async def test_completion_in_a_file_with_a_syntax_error(client: LanguageClient, tiny: Path):
    doc = Doc(client, tiny)
    await doc.diagnostics()
    doc.edit("    avgpool(global) flatten\n", "    avgpool(global) flatten\n    Basic(8, \n")
    [d] = await doc.diagnostics()
    assert d.message.startswith("syntax error")
    labels = await doc.completion(doc.at("Basic(8, ", 9))
    assert "stride =" in labels and "width =" not in labels
    doc.edit("    Basic(8, \n", "    Ba\n")
    labels = await doc.completion(doc.at("    Ba\n", 6))
    assert "Basic" in labels and "conv" in labels
    doc.close()


# document symbols ----------------------------------------------------------------------------------

# the blocks of specs/lib/resnet.arch, in their order
LIB_RESNET_BLOCKS = ["BasicBlock", "SqueezeExcite", "Bottleneck", "BasicStage", "Stage", "DilatedBottleneck",
                     "DilatedStage"]


async def test_document_symbols(client: LanguageClient, resnet: Path, tiny: Path):
    lib = Doc(client, resnet.parent / "lib" / "resnet.arch")
    symbols = await client.text_document_document_symbol_async(T.DocumentSymbolParams(
        text_document=T.TextDocumentIdentifier(uri=lib.uri)))
    assert [s.name for s in symbols] == LIB_RESNET_BLOCKS
    bottleneck = symbols[2]
    assert bottleneck.kind == T.SymbolKind.Class
    assert bottleneck.selection_range.start == lib.at("Bottleneck(planes, stride")
    children = [c.name for c in bottleneck.children]
    assert children[:3] == ["planes", "stride", "groups"] and {"conv1", "conv2", "conv3", "se"} <= set(children)
    small = Doc(client, tiny)
    await small.diagnostics()
    symbols = await client.text_document_document_symbol_async(T.DocumentSymbolParams(
        text_document=T.TextDocumentIdentifier(uri=small.uri)))
    assert [s.name for s in symbols] == ["Basic", "TinyResNet"]
    net = symbols[1]
    assert net.kind == T.SymbolKind.Module and "82,714 params" in net.detail
    names = [c.name for c in net.children]
    assert names == ["classes", "width", "stem", "stage1", "stage2", "stage3", "logits"]
    logits = net.children[-1]
    assert logits.kind == T.SymbolKind.Event and logits.detail == "output [10]"
    assert logits.selection_range.start == small.at("logits =")
    # while the library has a syntax error, the outline is the last one that parsed
    lib.edit("block BasicStage(", "block BasicStage((")
    [d] = await lib.diagnostics()
    assert d.message.startswith("syntax error")
    symbols = await client.text_document_document_symbol_async(T.DocumentSymbolParams(
        text_document=T.TextDocumentIdentifier(uri=lib.uri)))
    assert [s.name for s in symbols] == LIB_RESNET_BLOCKS
    small.close()
    lib.close()


# every half-typed state ----------------------------------------------------------------------------

async def test_typing_a_spec_character_by_character(client: LanguageClient, tmp_path: Path):
    path = tmp_path / "typed.arch"
    path.write_text("", encoding="utf-8")
    doc = Doc(client, path)
    await doc.diagnostics()
    for i in range(1, len(TINY) + 1):
        doc.set(TINY[:i])
        end = doc.pos(i)
        if i % 3 == 0:
            await doc.completion(end)
        if i % 3 == 1:
            await doc.hover(T.Position(line=end.line, character=max(0, end.character - 1)))
    assert await doc.diagnostics() == []
    assert "[16, 32, 32]" in await doc.hover(doc.at("stem: conv", 7))
    doc.close()


async def test_every_truncation_of_big_specs(client: LanguageClient, tmp_path: Path):
    for name, step in (("resnet50.arch", 7), ("efficientnet.arch", 23), ("nasnet_mobile.arch", 41)):
        (tmp_path / "lib").mkdir(exist_ok=True)
        for lib in (SPECS / "lib").glob("*.arch"):
            shutil.copy(lib, tmp_path / "lib" / lib.name)
        shutil.copy(SPECS / name, tmp_path / name)
        doc = Doc(client, tmp_path / name)
        full = doc.text
        assert await doc.diagnostics() == []
        for i in range(0, len(full), step):
            doc.set(full[:i])
            end = doc.pos(i)
            hover = await doc.hover(T.Position(line=end.line, character=max(0, end.character - 2)))
            assert hover is None or isinstance(hover, str)
            assert isinstance(await doc.completion(end), list)
        doc.set(full)
        assert await doc.diagnostics() == []
        doc.close()


async def test_odd_requests_do_not_kill_the_server(client: LanguageClient, tiny: Path, tmp_path: Path):
    doc = Doc(client, tiny)
    await doc.diagnostics()
    # positions past the end, unknown documents, binary junk, a spec importing itself
    # a position past the end is taken as the end of the last line (empty here: nothing to hover or go to)
    assert await doc.hover(T.Position(line=999, character=999)) is None
    end = doc.pos(len(doc.text))
    assert end.character == 0  # the text ends with a newline
    at_end = await doc.completion(end)
    assert "network" in at_end and "block" in at_end  # top level: the keywords that start a definition
    assert await doc.completion(T.Position(line=999, character=0)) == at_end
    assert await doc.definition(T.Position(line=0, character=999)) is None  # past the end of a comment line
    assert await doc.definition(T.Position(line=999, character=999)) is None
    junk = tmp_path / "junk.arch"
    junk.write_text("", encoding="utf-8")
    other = Doc(client, junk)
    other.set("\x00\ufeff network ((( }}} \u00e9\n\t\r\n" * 3)
    assert (await other.diagnostics())[0].message.startswith("syntax error")
    other.set('import "junk.arch"\nblock A() { A }\nnetwork N { input [3, 8, 8]\n A }\n')
    [d] = await other.diagnostics()
    assert "calls itself" in d.message
    other.set("network N { input [3, 8, 8]\n relu * 100000000\n}\n")  # half-typed into a huge count
    [d] = await other.diagnostics()
    assert f"is more than the limit of {MAX_INSTANCES:,} layers and composites" in d.message
    assert d.range.start.line == 1  # on the line of the count, found at once (nothing is expanded)
    other.set('import "missing.arch"\nnetwork N { input [3, 8, 8]\n conv(4, 3) }\n')
    [d] = await other.diagnostics()
    assert d.message == f"cannot find '{tmp_path / 'missing.arch'}'" and d.range.start.line == 0
    other.close()
    unknown = await client.text_document_hover_async(T.HoverParams(
        text_document=T.TextDocumentIdentifier(uri=(tmp_path / "nowhere.arch").as_uri()),
        position=T.Position(line=0, character=0)))
    assert unknown is None
    text = await doc.hover(doc.at("stem: conv", 7))
    assert "[3, 32, 32] → [16, 32, 32]" in text and "params 432" in text  # still alive and right
    doc.close()


# formatting ----------------------------------------------------------------------------------------

def _formatter_available() -> bool:
    if importlib.util.find_spec("archdsl.editor.fmt") is None:
        return False
    import archdsl.editor.fmt

    return hasattr(archdsl.editor.fmt, "format_source")


@pytest.mark.skipif(not _formatter_available(), reason="archdsl.editor.fmt.format_source is not there yet")
async def test_formatting(client: LanguageClient, tiny: Path):
    from archdsl.editor.fmt import format_source

    doc = Doc(client, tiny)
    await doc.diagnostics()
    messy = doc.text.replace("stem: conv(width, 3, pad = 1, bias = false)", "stem:conv( width,3,pad=1 , bias=false )")
    doc.set(messy)
    await doc.diagnostics()
    edits = await client.text_document_formatting_async(T.DocumentFormattingParams(
        text_document=T.TextDocumentIdentifier(uri=doc.uri), options=T.FormattingOptions(tab_size=4,
                                                                                            insert_spaces=True)))
    assert edits is not None and len(edits) == 1
    assert edits[0].new_text == format_source(messy, str(tiny))
    doc.close()


async def test_library_changed_on_disk(client: LanguageClient, resnet: Path):
    doc = Doc(client, resnet)
    assert await doc.diagnostics() == []
    lib = resnet.parent / "lib" / "resnet.arch"
    good = lib.read_text(encoding="utf-8")
    lib.write_text(good.replace("block Stage(planes, blocks,", "block Stage(planes, nblocks,"), encoding="utf-8")
    client.workspace_did_change_watched_files(T.DidChangeWatchedFilesParams(
        changes=[T.FileEvent(uri=lib.as_uri(), type=T.FileChangeType.Changed)]))
    for _ in range(500):
        if client.diagnostics.get(doc.uri):
            break
        await asyncio.sleep(0.01)
    [d] = client.diagnostics[doc.uri]
    assert "unknown name 'blocks' in block Stage" in d.message
    lib.write_text(good, encoding="utf-8")
    client.workspace_did_change_watched_files(T.DidChangeWatchedFilesParams(
        changes=[T.FileEvent(uri=lib.as_uri(), type=T.FileChangeType.Changed)]))
    for _ in range(500):
        if not client.diagnostics.get(doc.uri):
            break
        await asyncio.sleep(0.01)
    assert list(client.diagnostics[doc.uri]) == []
    doc.close()


async def test_source_text_is_read_by_the_lexers_lines():
    """Hover texts take an expression's text from the line its span names, counted as the lexer counts
    lines (at "\\n" only): a form feed, a vertical tab or U+2028 before it is no line break."""
    from archdsl.editor.lsp.analysis import expr_text, map_line
    from archdsl.language.parser import parse

    for odd in ("\f", "\v", "\x1c", "\x85", "\u2028"):
        source = f"# a comment{odd}with an odd character\nblock B(k = 3 + 1) {{\n    relu\n}}\n"
        block = parse(source, "odd.arch").blocks[0]
        assert expr_text(block.params[0].default, source) == "3 + 1"
        assert map_line(source, "# new first line\n" + source, 3) == 2
