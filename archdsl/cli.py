"""The command line: `archdsl compile | check | summary | sweep | graph | inspect | zoo | fmt | lsp`.

Every error, whether in the spec or in the use of the command, is one clear message on stderr and
exit status 1; no traceback. Nothing here imports torch or tensorflow (`inspect` runs a model: its
module, archdsl.tools.inspection, imports torch when the command runs).
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import textwrap
from collections.abc import Sequence

from . import __version__
from .api import OPTIMIZATIONS, TARGETS, Pipeline, generate
from .core.elaborate import name_listing
from .core.graph import Elaborated, Library
from .core.values import parse_sets
from .language.errors import ArchError
from .language.parser import cache_directory, disk_cache
from .reports.formats import ACTIVATIONS, DRAW_FORMATS, DRAW_SUFFIXES, DTYPE_BYTES, FORMATS
from .util.files import abandon_writes, write_atomically
from .util.running import collector_paused, deep

PROG = "archdsl"

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_INTERRUPTED = 130

_DESCRIPTION = """\
Compile a declarative CNN spec (.arch) to PyTorch or Keras code, or check its shapes and print
the arithmetic of every layer: output size, parameters, multiply-accumulates (MACs), activations
and receptive field.
"""

_EPILOG = """\
examples:
  archdsl check specs/resnet50.arch
  archdsl summary specs/vgg16.arch --set classes=10
  archdsl summary specs/googlenet.arch --depth 0
  archdsl sweep specs/efficientnet.arch phi=0..7
  archdsl graph specs/resnet50.arch --depth 1 -o resnet50.svg
  archdsl compile specs/googlenet.arch --target torch -o generated/torch/googlenet.py
  archdsl inspect specs/lenet5.arch --input digits --plot lenet5.png

exit status: 0 on success, 1 on any error (in the spec or in the command), 130 when interrupted.
Run `archdsl COMMAND --help` for the options of a command.
"""

_SET_HELP = ("set a parameter of the network, e.g. --set classes=10 --set width=0.5; VALUE is an integer, "
             "a number, true, false or [a, b, ...]; may be given many times, the last one wins")


class UsageError(Exception):
    """Bad use of the command line, reported as `archdsl: error: ...` with the usage line."""

    def __init__(self, message: str, usage: str, prog: str) -> None:
        super().__init__(message)
        self.message = message
        self.usage = usage
        self.prog = prog


class ArgumentParser(argparse.ArgumentParser):
    """argparse that raises instead of exiting with status 2, so that every error exits with 1."""

    def error(self, message: str):  # type: ignore[override]
        raise UsageError(message, self.format_usage(), self.prog)


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Help 100 columns wide; the description is filled, the examples in the epilog kept as written."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=30, width=100)


def _para(text: str) -> str:
    return textwrap.fill(" ".join(text.split()), width=100)


def _add_spec(p: argparse.ArgumentParser) -> None:
    p.add_argument("spec", metavar="SPEC", help="the .arch file to read")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="NAME=VALUE", help=_SET_HELP)


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog=PROG, description=_DESCRIPTION, epilog=_EPILOG, formatter_class=_Formatter)
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands",
                                parser_class=ArgumentParser)
    sub.required = True

    p = sub.add_parser(
        "compile", help="generate PyTorch or Keras code from a spec", formatter_class=_Formatter,
        description=_para("Check a spec and generate the code of its network for one framework. The code goes to "
                          "stdout, or to FILE with -o; FILE is replaced whole or not at all, so a failed compile "
                          "leaves an existing FILE as it was."),
        epilog="examples:\n"
               "  archdsl compile specs/googlenet.arch --target torch\n"
               "  archdsl compile specs/resnet50.arch --target keras -o generated/keras/resnet50.py\n"
               "  archdsl compile specs/mobilenet_v2.arch --target torch --set width=0.5 --set classes=10\n"
               "  archdsl compile specs/resnet50.arch --target torch --optimize inference -o resnet50_fast.py\n")
    _add_spec(p)
    p.add_argument("-t", "--target", required=True, metavar="{" + ",".join(TARGETS) + "}",
                   help="the framework to generate code for: torch (PyTorch nn.Module classes) or keras "
                        "(Keras 3 functional API)")
    p.add_argument("-o", "--output", metavar="FILE", help="write the code to FILE instead of stdout")
    p.add_argument("--optimize", metavar="{" + ",".join(OPTIMIZATIONS) + "}",
                   help="inference (torch only): a model for inference: activations in place where nothing else "
                        "holds their input, every batch norm that follows a convolution folded into it when "
                        "build_model(state_dict) loads the weights of the plain model, channels-last memory")

    p = sub.add_parser(
        "check", help="parse a spec and check every shape", formatter_class=_Formatter,
        description=_para("Parse a spec, expand it and check every layer's shapes, and that both targets can "
                          "generate its code (what check accepts compiles). Prints one line with the network's "
                          "parameters (and how many train, where a part is frozen), MACs and output shapes, or a "
                          "located error. A library file (blocks, no network) is checked as a library: every "
                          "block elaborated, one line listing them."),
        epilog="examples:\n"
               "  archdsl check specs/resnet50.arch\n"
               "  archdsl check specs/efficientnet_b0.arch --set classes=10\n")
    _add_spec(p)

    p = sub.add_parser(
        "summary", help="print the per-layer table: shapes, params, MACs, activations, receptive field",
        formatter_class=_Formatter,
        description=_para("Print one row per layer (blocks and groups are not rows): its path, layer type, output "
                          "shape, parameters, multiply-accumulates (MACs), activations (output elements, per "
                          "sample) and receptive field (size/jump, in input pixels), then the totals, with the "
                          "activation memory for --dtype. Frozen layers are marked and the total parameters split "
                          "into trainable and frozen; with batch norms, a line gives Keras' counts, which include "
                          "their moving means and variances as non-trainable weights (JSON and CSV always carry "
                          "both conventions). Where the network has auxiliary outputs, a last line gives the totals "
                          "without the layers of their heads. --activations lecture counts activations as the "
                          "lecture does (CS231n's VGG-16 slide: the input and the outputs of the convolution, "
                          "pooling and dense layers, a pooling whose output is its input left out; `-` marks the "
                          "layers it does not count). JSON and CSV carry weights and biases, both counts of "
                          "activations and the totals without auxiliary heads whatever the options. If a shape "
                          "check fails, the rows up to the failing layer are printed before the error."),
        epilog="examples:\n"
               "  archdsl summary specs/resnet50.arch\n"
               "  archdsl summary specs/vgg16.arch --activations lecture --biases\n"
               "  archdsl summary specs/vgg16.arch --format markdown --dtype float16\n"
               "  archdsl summary specs/alexnet.arch --format csv > alexnet.csv\n")
    _add_spec(p)
    p.add_argument("-f", "--format", default="table", metavar="{" + ",".join(FORMATS) + "}",
                   help="table (default), json, csv or markdown")
    p.add_argument("--dtype", default=None, metavar="{" + ",".join(DTYPE_BYTES) + "}",
                   help="element type of the activation memory total (default float32); given, the totals also "
                        "say the memory the parameters take at it (and Keras' weights, which count the batch-norm "
                        "moving statistics)")
    p.add_argument("--depth", type=_depth, default=None, metavar="N",
                   help="show N levels of blocks; a block nested deeper is one row with the sums of its layers "
                        "(--depth 0: the network's own layers and one row per block it calls)")
    p.add_argument("--activations", default="all", metavar="{" + ",".join(ACTIVATIONS) + "}",
                   help="how activations are counted: all (default), every layer's output elements, the input not "
                        "included; lecture, the input and the outputs of the convolution, pooling and dense layers "
                        "(the memory of a forward pass as CS231n's VGG-16 slide counts it)")
    p.add_argument("--biases", action="store_true",
                   help="columns weights and biases: the parameters split into the biases (of convolutions and "
                        "dense layers, a norm's shift) and the rest")

    p = sub.add_parser(
        "sweep", help="one row per setting of network parameters: input size, params, MACs",
        formatter_class=_Formatter,
        description=_para("Expand the network once for each value of one or more of its parameters and print "
                          "one row per setting: the input shape, parameters (and the trainable ones, where a part "
                          "is frozen), multiply-accumulates (MACs), activations and output shapes. NAME=VALUES is "
                          "a comma-separated list (width=0.5,0.75,1.0) or a range of whole numbers with both ends "
                          "included (phi=0..7); several give every combination, the last varying fastest."),
        epilog="examples:\n"
               "  archdsl sweep specs/efficientnet.arch phi=0..7\n"
               "  archdsl sweep specs/mobilenet_v1.arch alpha=0.25,0.5,0.75,1.0 resolution=128,160,192,224\n"
               "  archdsl sweep specs/resnet.arch depth=18,34,50,101,152 --format markdown\n")
    _add_spec(p)
    p.add_argument("axes", nargs="+", metavar="NAME=VALUES", help="a network parameter and the values to sweep")
    p.add_argument("-f", "--format", default="table", metavar="{" + ",".join(FORMATS) + "}",
                   help="table (default), json, csv or markdown")

    p = sub.add_parser(
        "zoo", help="write docs/zoo.md: every network, its size, reference and what is verified",
        formatter_class=_Formatter,
        description=_para("Render the zoo table from the registry specs/zoo/*.toml and the specs it names "
                          "(parameters and MACs at each spec's default input). With --check, compare with FILE "
                          "instead and fail if it is not current."),
        epilog="examples:\n"
               "  archdsl zoo -o docs/zoo.md\n"
               "  archdsl zoo --check -o docs/zoo.md\n")
    p.add_argument("--root", default=".", metavar="DIR", help="the repository root (default: the current folder)")
    p.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of stdout")
    p.add_argument("--check", action="store_true", help="fail (exit 1) if FILE differs from what would be written")

    p = sub.add_parser(
        "graph", help="draw the network: blocks as clusters, shapes on edges (SVG, PNG, DOT or Mermaid)",
        formatter_class=_Formatter,
        description=_para("Draw the expanded network as a data-flow graph: the input at the top, one node per "
                          "layer, block instances as labelled clusters (nested blocks nested), parallel branches "
                          "side by side meeting in concat, + (residual add) or x (scale) nodes, the tensor's "
                          "shape on every edge, and every named output (side heads too) as an output node. "
                          "svg and png are drawn by Graphviz `dot` (the system package graphviz); dot and "
                          "mermaid are text, for documentation. The format comes from --format, else from the "
                          "suffix of FILE (.svg, .png, .dot/.gv, .mmd, .md: a ```mermaid block); without -o the "
                          "DOT text goes to stdout. FILE is replaced whole or not at all."),
        epilog="examples:\n"
               "  archdsl graph specs/googlenet.arch -o googlenet.svg\n"
               "  archdsl graph specs/resnet50.arch --depth 1 -o resnet50.png\n"
               "  archdsl graph specs/mobilenet_v2.arch --depth 0 -o mobilenet_v2.md\n"
               "  archdsl graph specs/vgg16.arch | dot -Tpdf -o vgg16.pdf\n")
    _add_spec(p)
    p.add_argument("-o", "--output", metavar="FILE", help="write the drawing to FILE instead of stdout")
    p.add_argument("-f", "--format", metavar="{" + ",".join(DRAW_FORMATS) + "}",
                   help="svg or png (drawn by Graphviz dot), dot or mermaid (text); default: from the suffix "
                        "of FILE, dot on stdout")
    p.add_argument("--depth", type=int, metavar="N",
                   help="draw N levels of nested blocks expanded as clusters; a block nested deeper is one node "
                        "(its name, output shape and parameters). 0: every block the network calls is one "
                        "node. Default: every level expanded")

    p = sub.add_parser(
        "inspect", help="run the PyTorch model on a batch: per-layer activation and gradient statistics, flags",
        formatter_class=_Formatter,
        description=_para(INSPECT_DESCRIPTION),
        epilog="what is measured:\n" + INSPECT_DEFINITIONS + "\nexamples:\n"
               "  archdsl inspect specs/resnet_cifar.arch --set depth=20\n"
               "  archdsl inspect specs/lenet5.arch --weights lenet5.pt --input digits --plot lenet5.svg\n"
               "  archdsl inspect specs/lenet5.arch --weights lenet5.pt --image seven.png --pictures pictures/\n"
               "  archdsl inspect specs/zfnet.arch --image cat.jpg --pictures out/ --feature-maps conv1,conv5 "
               "--occlusion 281\n")
    _add_spec(p)
    p.add_argument("--weights", metavar="FILE",
                   help="load the weights of FILE: a PyTorch state_dict (.pt, .pth) of the generated model, or a "
                        "Keras weights file (.keras, .weights.h5) of the generated Keras model (needs Keras; "
                        "copied into the PyTorch model). Default: the default initialisation, seeded by --seed")
    p.add_argument("--input", dest="inputs", default="random", metavar="{random,digits}",
                   help="the batch: random (standard normal, seeded by --seed; the default) or digits "
                        "(scikit-learn's 8x8 digits, resized to the input, gray repeated over its channels; "
                        "the loss then uses their labels)")
    p.add_argument("--image", dest="images", action="append", default=[], metavar="FILE",
                   help="an image file as the batch (may be given many times): resized to the input's size, "
                        "RGB or gray as its channels ask")
    p.add_argument("--size", type=_size, metavar="HEIGHTxWIDTH",
                   help="the input's height and width where the spec leaves them open (`input [3, ?, ?]`)")
    p.add_argument("--batch", type=int, default=16, metavar="N", help="the batch size of random or digits "
                   "inputs (default 16)")
    p.add_argument("--seed", type=int, default=0, metavar="N", help="the seed of the initialisation, the random "
                   "inputs and the random labels (default 0)")
    p.add_argument("--mode", metavar="{train,eval}",
                   help="the model's mode: train (batch norms normalize with the batch's statistics, dropout "
                        "drops; the default without --weights) or eval (the running statistics; the default "
                        "with --weights)")
    p.add_argument("-f", "--format", default="table", metavar="{" + ",".join(FORMATS) + "}",
                   help="table (default), json, csv or markdown")
    p.add_argument("-o", "--output", metavar="FILE", help="write the report to FILE instead of stdout")
    p.add_argument("--plot", metavar="FILE", help="also plot the statistics along the depth to FILE (.png or "
                   ".svg; needs matplotlib)")
    p.add_argument("--pictures", metavar="DIR",
                   help="also write PNG pictures to DIR (created if missing): filters.png (the first "
                        "convolution's filters), features-PATH.png (feature maps of the first input), "
                        "occlusion-CLASS.png (occlusion sensitivity, for a classifier); needs Pillow")
    p.add_argument("--feature-maps", metavar="PATH,...",
                   help="the layers whose feature maps --pictures draws (summary paths); default: the first, a "
                        "middle and the last convolution (after its activation)")
    p.add_argument("--occlusion", type=int, metavar="CLASS",
                   help="the class of the occlusion map (default: the class the network predicts)")
    p.add_argument("--patch", type=int, metavar="N",
                   help="the side of the occlusion patch in input pixels (default: a quarter of the input's side)")

    p = sub.add_parser(
        "fmt", help="format specs in the canonical layout (comments kept, meaning unchanged)",
        formatter_class=_Formatter,
        description=_para("Rewrite each SPEC in the canonical layout: indentation, spacing, blank lines and "
                          "line breaks, with every comment kept and nothing else changed. A file is replaced "
                          "whole or not at all; `-` reads stdin and writes stdout. With --check nothing is "
                          "written: the files that would change are listed and the exit status is 1 if any."),
        epilog="examples:\n"
               "  archdsl fmt specs/*.arch\n"
               "  archdsl fmt --check specs/\n"
               "  archdsl fmt --diff specs/resnet50.arch\n")
    p.add_argument("specs", nargs="+", metavar="SPEC",
                   help="the .arch files to format; a folder: every .arch file under it; - for stdin")
    p.add_argument("--check", action="store_true",
                   help="write nothing; exit 1 if any file is not in canonical form")
    p.add_argument("--diff", action="store_true", help="write nothing; print a unified diff of the changes")

    p = sub.add_parser(
        "lsp", help="run the language server (LSP over stdio) for editors",
        formatter_class=_Formatter,
        description=_para("Serve the Language Server Protocol over stdin/stdout: diagnostics as you type, "
                          "hover with shapes, parameters and MACs, go to definition, completion, document "
                          "symbols and formatting. Editors start it; see editors/vscode."))
    p.add_argument("--stdio", action="store_true", help="talk over stdin/stdout (the default and only transport)")
    return parser


# Running ----------------------------------------------------------------------------------------

class _Session(Pipeline):
    """What one command has loaded so far (api.Pipeline), so an error can show the source it points into;
    `--set` options read from the command line's text."""

    def load_sets(self, spec: str, sets: list[str]) -> Elaborated:
        return self.load(spec, parse_sets(sets))

    def check_sets(self, spec: str, sets: list[str]) -> Elaborated | Library:
        return self.check(spec, parse_sets(sets))


def _choice(value: str, options: Sequence[str], what: str) -> str:
    if value not in options:
        raise ArchError(f"unknown {what} '{value}' ({what}s: {', '.join(options)})")
    return value


def _out(text: str) -> None:
    """Write to stdout in pieces, so that a reader that stops early (`| head`) is noticed at once."""
    if text and not text.endswith("\n"):
        text += "\n"
    step = 1 << 16
    for start in range(0, len(text), step):
        sys.stdout.write(text[start:start + step])
        sys.stdout.flush()


def _emit(text: str, output: str | None) -> None:
    """Text to stdout (no output, or `-`), or into the file output, replaced whole or not at all."""
    if output is None or output == "-":
        _out(text)
        return
    try:
        write_atomically(output, text)
    except OSError as e:
        raise ArchError(f"cannot write '{output}': {e.strerror or e}") from None


def cmd_compile(args: argparse.Namespace, session: _Session) -> int:
    target = _choice(args.target, TARGETS, "target")
    if args.output is not None and args.output != "-":
        _check_writable(args.output)
    elab = session.load_sets(args.spec, args.sets)
    code = generate(elab, target, args.optimize)
    if not code.endswith("\n"):
        code += "\n"
    _emit(code, args.output)
    return EXIT_OK


def _check_writable(path: str) -> None:
    """Fail before any work when -o cannot be written: a missing directory, a directory, no permission."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise ArchError(f"cannot write '{path}': the directory '{os.path.dirname(path) or '.'}' does not exist")
    if os.path.isdir(path):
        raise ArchError(f"cannot write '{path}': it is a directory")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise ArchError(f"cannot write '{path}': no permission to create files in "
                        f"'{os.path.dirname(path) or '.'}'")


def cmd_check(args: argparse.Namespace, session: _Session) -> int:
    elab = session.check_sets(args.spec, args.sets)
    if isinstance(elab, Library):
        _out(library_line(args.spec, elab))
        return EXIT_OK
    from .reports.summary import check_line

    _out(check_line(args.spec, elab))
    return EXIT_OK


def library_line(spec: str, library: Library) -> str:
    """`ok: specs/lib/resnet.arch: library, 5 blocks (BasicBlock, Bottleneck, ...)`."""
    n = len(library.own)
    imports = f", importing {library.imports} file{'s' * (library.imports != 1)}" if library.imports else ""
    return f"ok: {spec}: library, {n} block{'s' * (n != 1)} ({name_listing(library.own)}){imports}"


def _depth(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--depth takes a whole number, got '{text}'") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"--depth must be at least 0, got {value}")
    return value


def cmd_sweep(args: argparse.Namespace, session: _Session) -> int:
    from .tools.sweep import parse_axis, sweep
    from .tools.sweep import render as render_sweep

    fmt = _choice(args.format, FORMATS, "format")
    axes = [parse_axis(a) for a in args.axes]
    fixed = parse_sets(args.sets)
    session.elaborate(args.spec)
    table = sweep(session.program, axes, fixed)
    _out(render_sweep(table, axes, fmt, title=f"network {session.program.network.name} ({args.spec})"))
    return EXIT_OK


def cmd_summary(args: argparse.Namespace, session: _Session) -> int:
    from .reports.summary import render

    fmt = _choice(args.format, FORMATS, "format")
    dtype = _choice(args.dtype if args.dtype is not None else "float32", tuple(DTYPE_BYTES), "dtype")
    options = {"depth": args.depth, "activations": _choice(args.activations, ACTIVATIONS, "activation convention"),
               "biases": args.biases, "param_memory": args.dtype is not None}
    try:
        elab = session.load_sets(args.spec, args.sets)
    except ArchError as err:
        # The shape check stopped at a layer: show the layers it got through, then the error.
        if session.done and err.report is None:
            err.report = render(session.done, fmt, dtype, network=session.program.network.name,
                                spec=args.spec, **options)
        raise
    _out(render(elab, fmt, dtype, spec=args.spec, **options))
    return EXIT_OK


INSPECT_DESCRIPTION = """\
Build the spec's generated PyTorch model, optionally load weights, run one batch forward and one backward,
and print one row per layer (the paths of `archdsl summary`): the statistics of its output (mean, std, min,
max, fraction of zeros, dead units, saturated outputs, and the signal: the spread across the batch) and the
gradient norm of its parameters. Then the statistics are read along the depth: layers where the signal or
the gradient vanishes or explodes (by more than 100x), dead ReLUs and saturated activations are flagged,
each finding with a sentence why. Needs torch; --image and --pictures need Pillow, --input digits
scikit-learn, --plot matplotlib: pip install 'archdsl[inspect]'.
"""

INSPECT_DEFINITIONS = """\
  measured   module: the output of the layer's module (a forward hook); call: the result of the layer's
             function call in its block's forward() (F.relu(x), torch.flatten(x, 1), a crop's
             indexing), seen by a torch function mode; -: neither (identity, dropblock at rate 0:
             forward() writes nothing for them): not measured
  mean, std  over every element of the output for the whole batch (std: population)
  zeros      the fraction of elements exactly 0
  dead       the fraction of units (channels, or features) that are 0 for every sample and position
             (blank where a unit has fewer than 16 values in the batch)
  saturated  sigmoid: x < 0.01 or x > 0.99; tanh: |x| > 0.99; hardsigmoid: x = 0 or 1; relu6: x = 6
  signal     sqrt(mean over units and positions of the variance across the batch): how much the
             output depends on the input
  grad norm  the L2 norm of the gradient of the layer's parameters after one backward pass of the loss:
             the cross-entropy against random labels (digits: their labels) for an output of 2 or more
             classes (a final softmax's output taken as probabilities), the mean square error against
             standard normal targets for any other output, summed over the outputs
  flags      vanishing/exploding: the median signal of the last three convolution/dense layers is below
             (above) the first three's divided (multiplied) by 100; vanishing/exploding gradient: the
             median grad norm / weight norm of the first three such layers is below (above) the last
             three's divided (multiplied) by 1000; dead: a ReLU with half its units dead; saturated: an
             activation with half its outputs saturated; no gradient: a convolution or dense layer
             whose gradient is exactly 0 in this pass (left out of the gradient reading)
"""


def _size(text: str) -> tuple[int, int]:
    parts = text.lower().replace(",", "x").split("x")
    try:
        height, width = (int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--size takes HEIGHTxWIDTH, e.g. 224x224, got '{text}'") from None
    if height < 1 or width < 1:
        raise argparse.ArgumentTypeError(f"--size must be positive, got '{text}'")
    return height, width


def cmd_inspect(args: argparse.Namespace, session: _Session) -> int:
    fmt = _choice(args.format, FORMATS, "format")
    if args.mode is not None:
        _choice(args.mode, ("train", "eval"), "mode")
    if args.pictures is None:
        extra = [flag for flag, value in (("--feature-maps", args.feature_maps), ("--occlusion", args.occlusion),
                                          ("--patch", args.patch)) if value is not None]
        if extra:
            raise ArchError(f"{extra[0]} chooses what --pictures DIR draws: give --pictures DIR too")
    for path in (args.output, args.plot):
        if path is not None and path != "-":
            _check_writable(path)
    elab = session.load_sets(args.spec, args.sets)
    try:
        import torch  # noqa: F401
    except ImportError:
        raise ArchError("inspect runs the PyTorch model: pip install 'archdsl[inspect]' (torch, and Pillow, "
                        "scikit-learn and matplotlib for images, digits, pictures and plots)") from None
    from .tools import inspection, pictures

    result, model, x, _ = inspection.inspect(elab, spec=args.spec, weights=args.weights, inputs=args.inputs,
                                              images=args.images, batch=args.batch, seed=args.seed, mode=args.mode,
                                              size=args.size)
    text = inspection.render(result, fmt)
    _emit(text, args.output)
    if args.plot:
        pictures.plot(result, args.plot)
        _error(f"wrote {args.plot}")
    if args.pictures:
        layers = None if args.feature_maps is None else [p.strip() for p in args.feature_maps.split(",") if p.strip()]
        for name, what in pictures.write_pictures(result, model, elab, x, args.pictures, layers, args.occlusion,
                                                  args.patch):
            _error(f"wrote {name}: {what}")
    return EXIT_OK


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def cmd_zoo(args: argparse.Namespace, session: _Session) -> int:
    from pathlib import Path

    from .tools.zoo import render as render_zoo

    text = render_zoo(Path(args.root))
    if args.check:
        if not args.output:
            raise ArchError("--check needs -o FILE, the file to compare with")
        try:
            current = Path(args.output).read_text(encoding="utf-8")
        except OSError as e:
            raise ArchError(f"cannot read '{args.output}': {e.strerror or e}") from None
        if current != text:
            raise ArchError(f"'{args.output}' is not current: run `archdsl zoo -o {args.output}`")
        _out(f"ok: {args.output} is current")
        return EXIT_OK
    if args.output is None or args.output == "-":
        _out(text)
    else:
        _check_writable(args.output)
        write_atomically(args.output, text)
    return EXIT_OK


def _graph_format(fmt: str | None, output: str | None) -> str:
    """The drawing format: --format if given, else the suffix of -o FILE; DOT text on stdout."""
    if fmt is not None:
        return _choice(fmt, DRAW_FORMATS, "format")
    if output is None or output == "-":
        return "dot"
    suffix = os.path.splitext(output)[1].lower()
    if suffix not in DRAW_SUFFIXES:
        raise ArchError(f"cannot tell the drawing format from '{output}': give --format "
                        f"({', '.join(DRAW_FORMATS)}) or a FILE ending in {', '.join(DRAW_SUFFIXES)}")
    return DRAW_SUFFIXES[suffix]


def cmd_graph(args: argparse.Namespace, session: _Session) -> int:
    from .reports import draw

    fmt = _graph_format(args.format, args.output)
    to_file = args.output is not None and args.output != "-"
    if args.depth is not None and args.depth < 0:
        raise ArchError(f"--depth must be at least 0, got {args.depth}")
    if fmt in ("svg", "png"):
        draw.find_dot()  # before any work: say at once that Graphviz is missing
    if to_file:
        _check_writable(args.output)
    elab = session.load_sets(args.spec, args.sets)
    if fmt in ("dot", "mermaid"):
        fenced = fmt == "mermaid" and to_file and args.output.lower().endswith(".md")
        if fmt == "dot":
            text = draw.to_dot(draw.build(elab, args.depth))
        else:
            text, note = draw.mermaid(elab, args.depth, fenced=fenced)
            if note is not None:
                print(f"archdsl graph: note: {note}", file=sys.stderr)
        if not to_file:
            _out(text)
            return EXIT_OK
        data = text.encode("utf-8")
    else:
        data = draw.render(draw.to_dot(draw.build(elab, args.depth)), fmt)
        if not to_file:
            sys.stdout.buffer.write(data)
            sys.stdout.flush()
            return EXIT_OK
    try:
        write_atomically(args.output, data)
    except OSError as e:
        raise ArchError(f"cannot write '{args.output}': {e.strerror or e}") from None
    return EXIT_OK


def cmd_fmt(args: argparse.Namespace, session: _Session) -> int:
    from .editor.fmt import run  # imported only for this command

    return run(args.specs, check=args.check, diff=args.diff, out=_out, err=_error)


def cmd_lsp(args: argparse.Namespace, session: _Session) -> int:
    gc.enable()  # a long-running server: main() turns the collector off for one-shot commands
    from .editor.lsp import MissingDependency, serve  # pygls is imported only for this command

    try:
        serve()
    except MissingDependency as e:  # the plain install has no pygls: say what to install
        _error(f"{PROG}: error: {e}")
        return EXIT_ERROR
    return EXIT_OK


COMMANDS = {"compile": cmd_compile, "check": cmd_check, "summary": cmd_summary, "sweep": cmd_sweep, "zoo": cmd_zoo,
            "graph": cmd_graph, "inspect": cmd_inspect, "fmt": cmd_fmt, "lsp": cmd_lsp}


def _error(text: str) -> None:
    try:
        sys.stdout.flush()
    except (BrokenPipeError, OSError):
        pass
    sys.stderr.write(text if text.endswith("\n") else text + "\n")
    sys.stderr.flush()


def _silence_stdout() -> None:
    """After a broken pipe, point stdout at /dev/null so that the interpreter's final flush is quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `archdsl` command; returns the exit status."""
    # The cyclic garbage collector is off while the command runs (see running.collector_paused),
    # and back as it was when main() returns: main() is also called in-process, by tests and
    # scripts, where a collector left off would leak every reference cycle made after.
    with collector_paused():
        return _main(argv)


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    session = _Session()
    try:
        try:
            args, extras = parser.parse_known_args(argv)
            if extras:  # report them with the usage of the subcommand they were given to
                sub = _subparsers(parser).get(args.command, parser)
                sub.error(f"unrecognized arguments: {' '.join(extras)}")
        except UsageError as e:
            _error(f"{e.usage}{e.prog}: error: {e.message}")
            return EXIT_ERROR
        # one-shot commands keep syntax trees on disk; the language server parses buffers as typed
        if args.command == "lsp":
            return COMMANDS[args.command](args, session)
        with disk_cache(cache_directory()):
            return deep(COMMANDS[args.command], args, session)  # blocks may nest deeply (running.deep)
    except ArchError as err:
        if err.report:
            try:
                _out(err.report)
            except BrokenPipeError:
                _silence_stdout()
        _error(err.format(session.sources))
        return EXIT_ERROR
    except KeyboardInterrupt:
        abandon_writes()  # the command's thread may be writing -o FILE: the target stays as it was
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_ERROR
    except RecursionError:
        _error(f"{PROG}: error: the spec nests too deeply to expand")
        return EXIT_ERROR
    except Exception as e:  # a bug in archdsl, not in the spec: still no traceback unless asked for
        if os.environ.get("ARCHDSL_TRACEBACK"):
            raise
        _error(f"{PROG}: internal error: {type(e).__name__}: {e}\n"
               f"This is a bug in archdsl; run again with ARCHDSL_TRACEBACK=1 for the details and report it.")
        return EXIT_ERROR


def run() -> None:
    """Run main() and exit with its status (what `python -m archdsl` does)."""
    try:
        status = main()
    except KeyboardInterrupt:  # pressed while the error handlers themselves ran
        status = EXIT_INTERRUPTED
    sys.exit(status)
