"""The output formats of the reporting commands, kept apart from the modules that write them so
that the command line can list them without importing those modules (start-up time)."""

# archdsl summary / sweep
FORMATS = ("table", "json", "csv", "markdown")
DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "int8": 1}
# archdsl summary --activations: every layer's output, or the lecture's count (reports/summary.py)
ACTIVATIONS = ("all", "lecture")

# archdsl graph: the formats, and the format an output file's name asks for
DRAW_FORMATS = ("dot", "mermaid", "svg", "png")
DRAW_SUFFIXES = {".dot": "dot", ".gv": "dot", ".mmd": "mermaid", ".md": "mermaid", ".svg": "svg", ".png": "png"}
