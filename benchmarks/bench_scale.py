"""Part 2, scale: synthetic networks of about 1k, 10k and 100k layers, written by this script into a
temporary directory, checked (`load`: parse, elaborate, expand and shape-check) and compiled to both
targets (`generate`). Three shapes, so that each stage of the compiler gets its share:

- flat:   one network of n/2 lines `conv(8, 3, pad = 1) relu`: a long source, a long flat sequence
          (the parser, the elaborator, the shape checker and the emitters on one long chain);
- blocks: n/18 distinct blocks of 18 layers, each calling distinct small blocks inside a `residual`,
          a repetition and a `concat` (many definitions, nested block expansion, composites);
- tree:   a few lines: block T0 is `conv relu`, block Tk calls T(k-1) twice, the network calls the
          biggest tree and repeats the rest (a tiny source whose expansion is large, nesting
          depth log2(n)).

"Layers" are the layer instances of the expanded network (block instances and composites not
counted), as the compiler reports them. Each (shape, size) runs in a fresh interpreter with a time
limit; a RecursionError (or any failure) is caught and reported with the stage it happened in.
One timing per process (after a warm-up compile of a tiny spec), 2 processes per (shape, size) and
round, rounds alternating the order; figures are medians (100k: one timing, first round only).

Run alone: python benchmarks/bench_scale.py [--sizes 1000,10000] [--rounds N]
Worker:    python benchmarks/bench_scale.py --worker SHAPE N
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import PYTHON, ROOT, median

SHAPES = ("flat", "blocks", "tree")
SIZES = (1_000, 10_000, 100_000)
GOAL_GROWTH = 12.0  # 10x the layers -> at most 12x the time
GOAL_10K_S = 2.0
LIMIT_S = 600


def spec_flat(n: int) -> str:
    lines = ["# synthetic: a flat chain of conv/relu pairs", "network Flat {", "    input [8, 16, 16]"]
    lines += ["    conv(8, 3, pad = 1) relu"] * max(1, n // 2)
    lines.append("}")
    return "\n".join(lines) + "\n"


def spec_blocks(n: int) -> str:
    """Each M block: residual { L L } (6 layers), L * 2 (6), concat { L(w/2) | L(w/2) } (6) = 18
    layers, 5 distinct L blocks of 3 layers each per M block."""
    m = max(1, n // 18)
    out = ["# synthetic: many distinct blocks, nested, with composites"]
    for i in range(5 * m):
        out.append(f"block L{i}(w) {{\n    conv(w, 3, pad = 1) bn relu\n}}")
    for j in range(m):
        a, b, c, d, e = (5 * j + k for k in range(5))
        out.append(
            f"block M{j}(w) {{\n"
            f"    residual {{ L{a}(w) L{b}(w) }}\n"
            f"    L{c}(w) * 2\n"
            f"    concat {{\n        branch {{ L{d}(w // 2) }}\n        branch {{ L{e}(w // 2) }}\n    }}\n"
            f"}}"
        )
    out.append("network Blocks {\n    input [8, 16, 16]")
    out += [f"    M{j}(8)" for j in range(m)]
    out.append("}")
    return "\n".join(out) + "\n"


def spec_tree(n: int) -> str:
    """T0 has 2 layers, Tk 2^(k+1); the network calls the largest T that fits, then the next..."""
    depth = max(0, (max(2, n) // 2).bit_length() - 1)
    out = ["# synthetic: a binary tree of nested blocks", "block T0(w) {\n    conv(w, 3, pad = 1) relu\n}"]
    for k in range(1, depth + 1):
        out.append(f"block T{k}(w) {{\n    T{k - 1}(w)\n    T{k - 1}(w)\n}}")
    out.append("network Tree {\n    input [8, 16, 16]")
    left = n // 2
    for k in range(depth, -1, -1):
        size = 2**k
        if left >= size:
            out.append(f"    T{k}(8) * {left // size}")
            left %= size
    out.append("}")
    return "\n".join(out) + "\n"


def spec_chain(n: int) -> str:
    """Nesting as deep as it gets: block Ck calls C(k-1), then a conv and a relu; n/2 levels. Not a
    goal's shape (no real network nests so deep), a probe of where recursion runs out."""
    depth = max(1, n // 2)
    out = ["# synthetic: a chain of nested blocks", "block C1(w) {\n    conv(w, 3, pad = 1) relu\n}"]
    for k in range(2, depth + 1):
        out.append(f"block C{k}(w) {{\n    C{k - 1}(w)\n    conv(w, 3, pad = 1) relu\n}}")
    out.append(f"network Chain {{\n    input [8, 16, 16]\n    C{depth}(8)\n}}")
    return "\n".join(out) + "\n"


GENERATORS = {"flat": spec_flat, "blocks": spec_blocks, "tree": spec_tree, "chain": spec_chain}
DEPTHS = (25, 50, 100, 150, 200, 400, 800, 1_600, 3_200)


def depth_probe(depths: tuple[int, ...] = DEPTHS) -> list[dict]:
    """Block nesting depth: the chain shape at each depth, once; the first failure ends the probe."""
    rows = []
    for d in depths:
        r = _one("chain", 2 * d)
        rows.append({"depth": d, "layers": r.get("layers"), "ok": r["ok"], "error": r.get("error"),
                     "stage": r.get("stage"), "check_compile_s": r.get("check_compile_s")})
        if not r["ok"]:
            break
    return rows


WARMUP_SPEC = "network Warm {\n    input [3, 8, 8]\n    conv(4, 3, pad = 1) bn relu\n}\n"


def worker(shape: str, n: int) -> dict:
    """In a fresh interpreter: compile a tiny spec to both targets first (the grammar, the templates
    and the imports are then loaded: one-time costs, part 1's business), then time the synthetic
    network once: elaborate (parse included), expand, generate for each target; then the parse alone
    once more, under another file name (the parser keeps each file's tree for the process, so the
    same name would not parse again). One timing per process: nothing cached carries over."""
    # The collector is off as archdsl's command line and compiler.load()/generate() turn it off
    # (compiler.collector_paused); elaborate and Expander, timed apart here, are called directly.
    gc.disable()
    t = time.perf_counter()
    from archdsl.api import generate, load
    from archdsl.core.elaborate import elaborate
    from archdsl.core.layers import LAYERS
    from archdsl.core.shapes import Expander
    from archdsl.language.parser import parse
    from archdsl.util.running import deep

    result: dict = {"shape": shape, "n": n, "import_s": time.perf_counter() - t, "ok": True}
    with tempfile.TemporaryDirectory(prefix="archdsl-scale-") as tmp:
        warm = os.path.join(tmp, "warm.arch")
        Path(warm).write_text(WARMUP_SPEC, encoding="utf-8")
        t = time.perf_counter()
        elab = load(warm)
        generate(elab, "torch")
        generate(elab, "keras")
        result["warmup_s"] = time.perf_counter() - t
        path = os.path.join(tmp, f"{shape}_{n}.arch")
        source = GENERATORS[shape](n)
        Path(path).write_text(source, encoding="utf-8")
        result["source_lines"] = source.count("\n")
        result["source_bytes"] = len(source)
        stage = ["elaborate"]

        def stages() -> None:
            # load(spec) is Expander(elaborate(spec)).run(): its two steps are timed apart
            t = time.perf_counter()
            program = elaborate(path)
            t1 = time.perf_counter()
            stage[0] = "expand (shape check)"
            elab = Expander(program).run(None)
            t2 = time.perf_counter()
            result.update(elaborate_s=t1 - t, expand_s=t2 - t1, load_s=t2 - t)
            for target in ("torch", "keras"):
                stage[0] = f"generate {target}"
                t = time.perf_counter()
                code = generate(elab, target)
                result[f"{target}_s"] = time.perf_counter() - t
                result[f"{target}_code_lines"] = code.count("\n")
            stage[0] = "parse"
            t = time.perf_counter()
            parse(source, path + ".again")
            result["parse_s"] = time.perf_counter() - t
            result["layers"] = sum(1 for i in elab.root.walk() if i.kind in LAYERS and not i.children)

        try:
            # on a deep stack, as the command line and compiler.load()/generate() run the compiler
            deep(stages)
        except RecursionError as e:
            result.update(ok=False, error=f"RecursionError in {stage[0]}: {e}", stage=stage[0],
                          trace=traceback.format_exc(limit=-6))
        except Exception as e:  # noqa: BLE001 - every failure is a result here
            result.update(ok=False, error=f"{type(e).__name__} in {stage[0]}: {e}"[:500], stage=stage[0],
                          trace=traceback.format_exc(limit=-6))
    if result["ok"]:
        # check + compile to both targets: what the growth ratios are taken of
        result["check_compile_s"] = result["load_s"] + result["torch_s"] + result["keras_s"]
        # what one `archdsl compile --target T` does: check, then generate for T
        result["compile_torch_s"] = result["load_s"] + result["torch_s"]
        result["compile_keras_s"] = result["load_s"] + result["keras_s"]
    return result


def _one(shape: str, n: int) -> dict:
    t = time.perf_counter()
    try:
        proc = subprocess.run([PYTHON, str(Path(__file__).resolve()), "--worker", shape, str(n)],
                              check=False, cwd=ROOT, capture_output=True, text=True, timeout=LIMIT_S,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    except subprocess.TimeoutExpired:
        return {"shape": shape, "n": n, "ok": False, "error": f"over the time limit of {LIMIT_S} s"}
    wall = time.perf_counter() - t
    if proc.returncode != 0 or not proc.stdout.strip():
        return {"shape": shape, "n": n, "ok": False,
                "error": f"worker exit status {proc.returncode}: {proc.stderr[-1500:]}"}
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    r["process_wall_s"] = wall
    return r


def run(sizes: tuple[int, ...] = SIZES, rounds: int = 3, shapes: tuple[str, ...] = SHAPES, per_round: int = 2) -> dict:
    """Rounds of fresh processes, `per_round` per (shape, size) and round, one timing each, the order
    reversed every other round. Sizes of 100k and more run once, in the first round (a run takes
    from seconds to minutes, so the noise is small next to it)."""
    jobs = [(s, n) for s in shapes for n in sizes]
    results: dict[tuple[str, int], list[dict]] = {j: [] for j in jobs}
    for r in range(rounds):
        for shape, n in (jobs if r % 2 == 0 else jobs[::-1]):
            for _ in range(1 if n >= 100_000 else per_round):
                if results[(shape, n)] and (n >= 100_000 or not results[(shape, n)][-1]["ok"]):
                    break  # a big one runs once; a failure repeats, do not spend the time again
                results[(shape, n)].append(_one(shape, n))
    rows = []
    for (shape, n), rs in results.items():
        ok = [x for x in rs if x["ok"]]
        row = {"shape": shape, "n": n, "ok": len(ok) == len(rs), "rounds": len(rs)}
        if len(ok) < len(rs):
            bad = next(x for x in rs if not x["ok"])
            row["error"] = bad["error"]
            row["trace"] = bad.get("trace", "")
        if ok:
            for k in ("load_s", "parse_s", "elaborate_s", "expand_s", "torch_s", "keras_s", "check_compile_s",
                      "compile_torch_s", "compile_keras_s", "import_s", "process_wall_s"):
                row[k] = median([x[k] for x in ok])
            for k in ("layers", "source_lines", "source_bytes", "torch_code_lines", "keras_code_lines"):
                row[k] = ok[0].get(k)
        row["raw"] = rs
        rows.append(row)
    growth = []
    for shape in shapes:
        by_n = {row["n"]: row for row in rows if row["shape"] == shape}
        for small, big in itertools.pairwise(sizes):
            a, b = by_n.get(small), by_n.get(big)
            entry = {"shape": shape, "from": small, "to": big, "goal": GOAL_GROWTH}
            if a and b and "check_compile_s" in a and "check_compile_s" in b:
                # the layer counts are close to, not exactly, n: compare time per layer
                entry["layers_ratio"] = b["layers"] / a["layers"]
                entry["time_ratio"] = b["check_compile_s"] / a["check_compile_s"]
                entry["ratio_per_10x_layers"] = entry["time_ratio"] / entry["layers_ratio"] * 10
                for k in ("load", "parse", "elaborate", "expand"):
                    entry[f"{k}_ratio"] = b[f"{k}_s"] / a[f"{k}_s"]
                entry["torch_ratio"] = b["torch_s"] / a["torch_s"]
                entry["keras_ratio"] = b["keras_s"] / a["keras_s"]
                entry["pass"] = entry["ratio_per_10x_layers"] <= GOAL_GROWTH
            else:
                entry["pass"] = False
                entry["note"] = "not measured: a run failed or was skipped"
            growth.append(entry)
    for row in rows:
        if row["n"] == 10_000 and "check_compile_s" in row:
            row["goal_s"] = GOAL_10K_S
            row["pass"] = max(row["compile_torch_s"], row["compile_keras_s"]) <= GOAL_10K_S
    return {"sizes": list(sizes), "rounds": rounds, "per_round": per_round, "rows": rows, "growth": growth}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worker", nargs=2, metavar=("SHAPE", "N"), help=argparse.SUPPRESS)
    ap.add_argument("--sizes", default="1000,10000,100000")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--write", metavar="DIR", help="only write the synthetic specs into DIR")
    args = ap.parse_args()
    if args.worker:
        shape, n = args.worker
        print(json.dumps(worker(shape, int(n))))
        return
    sizes = tuple(int(s) for s in args.sizes.split(","))
    if args.write:
        os.makedirs(args.write, exist_ok=True)
        for shape, gen in GENERATORS.items():
            for n in sizes:
                Path(args.write, f"{shape}_{n}.arch").write_text(gen(n), encoding="utf-8")
        return
    print(json.dumps(run(sizes, args.rounds), indent=1))


if __name__ == "__main__":
    main()
