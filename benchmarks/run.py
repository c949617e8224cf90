"""Run every benchmark of issue 5 and write the results: benchmarks/results.md (tables: measured values,
ratios, goals, pass/miss) and benchmarks/results.json (every raw number).

    python benchmarks/run.py [--quick] [--only compile,scale,torch,keras] [-o benchmarks/results.md]
                             [--at REV]

Each part runs in its own processes (torch and tensorflow never share one). --quick is a smoke run:
few repeats, no 100k-layer networks. --at REV measures the committed tree REV (exported with `git
archive` into a temporary directory, with these benchmark scripts) instead of the working tree, for
numbers that do not depend on what is being edited. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_compile
import bench_scale
from common import BENCH, PYTHON, ROOT, Load, machine, median, write_json
from models import HANDWRITTEN_KEYS, KERAS_KEYS, TORCH_KEYS

PARTS = ("compile", "scale", "torch", "keras")
# the framework comparisons: registry keys with a torchvision / keras.applications reference, then
# those with a hand-written one (models.HANDWRITTEN)
TORCH_PAIRS = TORCH_KEYS + HANDWRITTEN_KEYS
KERAS_PAIRS = KERAS_KEYS + HANDWRITTEN_KEYS
IMPORT_CLI = "python -c 'import archdsl.cli'"

FULL = {"compile_repeats": 5, "all_repeats": 5, "scale_sizes": (1_000, 10_000, 100_000), "scale_rounds": 3,
        "repeats": 9, "repeats_train": 9, "warmup": 2, "profile_runs": 2, "framework_rounds": 3,
        "torch_rounds": 5}
QUICK = {"compile_repeats": 2, "all_repeats": 2, "scale_sizes": (1_000, 10_000), "scale_rounds": 1,
         "repeats": 3, "repeats_train": 2, "warmup": 1, "profile_runs": 1, "framework_rounds": 1,
         "torch_rounds": 1}


def git_state() -> dict:
    rev = os.environ.get("ARCHDSL_BENCH_REV")
    if rev:
        return {"commit": rev, "tree": f"committed tree {rev[:12]} (run with --at)", "dirty": []}
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "archdsl", "grammar", "specs"], cwd=ROOT,
                               capture_output=True, text=True, check=True).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):
        return {"commit": "unknown", "tree": "not a git checkout", "dirty": []}
    tree = "working tree, clean" if not dirty else (f"working tree with uncommitted changes in {len(dirty)} "
                                                   "file(s) of archdsl/, grammar/ or specs/")
    return {"commit": commit, "tree": tree, "dirty": [d.strip() for d in dirty]}


def gpu_probe() -> dict:
    """Whether torch sees a CUDA device (in a process of its own), and TensorFlow a GPU."""
    out = {"torch": None, "tensorflow": None}
    proc = subprocess.run([PYTHON, "-c", ("import torch; print(torch.cuda.get_device_name(0) "
                           "if torch.cuda.is_available() else '')")], capture_output=True, text=True, check=False)
    if proc.returncode == 0 and proc.stdout.strip():
        out["torch"] = proc.stdout.strip().splitlines()[-1]
    proc = subprocess.run([PYTHON, "-c", ("import os; os.environ['TF_CPP_MIN_LOG_LEVEL'] = '3'\n"
                           "import tensorflow as tf; print(len(tf.config.list_physical_devices('GPU')))")],
                          capture_output=True, text=True, check=False)
    if proc.returncode == 0 and proc.stdout.strip().splitlines()[-1:] not in ([], ["0"]):
        out["tensorflow"] = "GPU:0"
    return out


def run_worker(script: str, args: list[str], out_json: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([PYTHON, str(BENCH / script), *args, "-o", str(out_json)], cwd=ROOT, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False)
    log = [line for line in proc.stdout.splitlines() if ": forward " in line]
    for line in log:
        print("   ", line, flush=True)
    data = json.loads(out_json.read_text()) if out_json.exists() else {"pairs": []}
    if proc.returncode != 0:
        data["error"] = f"{script} exit status {proc.returncode}: {proc.stdout[-3000:]}"
        print(data["error"], file=sys.stderr)
    return data


def run_rounds(script: str, keys: tuple[str, ...], args: list[str], rounds: int, out_json: Path,
               first_only: list[str]) -> dict:
    """The worker in `rounds` fresh processes, the networks in reversed order every other round;
    one record per network, whose ratios are the medians of the rounds' (see merge_rounds). A
    process has luck of its own (where its memory and threads land), which stays for its life and
    falls unevenly on the two models: seen here, one MobileNetV2 ratio of 0.996 in one process and
    1.055 in the next. first_only: arguments for the first round alone (the profiles)."""
    datas = []
    for r in range(rounds):
        order = ",".join(keys if r % 2 == 0 else keys[::-1])
        if rounds > 1:
            print(f"   round {r + 1} of {rounds}", flush=True)
        datas.append(run_worker(script, [*args, "--keys", order, *(first_only if r == 0 else [])],
                                out_json.with_suffix(f".{r}.json")))
    return merge_rounds(datas)


def merge_rounds(datas: list[dict]) -> dict:
    """One worker result from several rounds: per network and step, the ratio is the median of the
    rounds' ratios, the times the medians of every round's samples; each round's ratio is kept."""
    out = {k: v for k, v in datas[0].items() if k != "pairs"}
    out["rounds"] = len(datas)
    errors = [d["error"] for d in datas if d.get("error")]
    if errors:
        out["error"] = "\n".join(errors)
    by_key: dict[str, list[dict]] = {}
    for d in datas:
        for p in d.get("pairs", []):
            by_key.setdefault(p["key"], []).append(p)
    out["pairs"] = []
    for key in (p["key"] for p in datas[0].get("pairs", [])):
        runs = by_key[key]
        merged = dict(runs[0])  # outputs, counts, profiles: the first round's
        for step in ("forward", "train"):
            parts = [r[step] for r in runs]
            s = dict(parts[0])
            for series in ("gen_times", "ref_times", "opt_times"):
                if series in s:
                    s[series] = [t for p in parts for t in p.get(series, [])]
            s["gen_s"], s["ref_s"] = median(s["gen_times"]), median(s["ref_times"])
            s["round_ratios"] = [p["ratio"] for p in parts]
            s["ratio"] = median(s["round_ratios"])
            s["ratio_of_medians"] = s["gen_s"] / s["ref_s"]
            pairs = [g / r for g, r in zip(s["gen_times"], s["ref_times"])]
            s["paired_ratio_median"], s["paired_ratio_min"], s["paired_ratio_max"] = \
                median(pairs), min(pairs), max(pairs)
            if "opt_times" in s:
                s["opt_s"] = median(s["opt_times"])
                s["opt_ratio"] = median([p["opt_ratio"] for p in parts if "opt_ratio" in p])
            s["repeats"] = sum(p["repeats"] for p in parts)
            s["pass"] = s["ratio"] <= s["goal"]
            merged[step] = s
        merged["outputs_match"] = all(r["outputs_match"] for r in runs)
        out["pairs"].append(merged)
    return out


def part_torch(cfg: dict, gpu: dict, tmp: Path, keys: tuple[str, ...] = TORCH_PAIRS) -> dict:
    common = ["--repeats", str(cfg["repeats"]), "--repeats-train", str(cfg["repeats_train"]),
              "--warmup", str(cfg["warmup"]), "--profile-runs", "0"]
    rounds = cfg["torch_rounds"]
    result = {"cpu": run_rounds("bench_torch.py", keys, common, rounds, tmp / "torch_cpu.json",
                                ["--profile-runs", str(cfg["profile_runs"])])}
    if gpu.get("torch"):  # item 5: the same comparisons on the lent GPU
        result["gpu"] = run_rounds("bench_torch.py", keys, [*common, "--device", "cuda"], rounds,
                                   tmp / "torch_gpu.json", [])
    return result


def part_keras(cfg: dict, gpu: dict, tmp: Path, keys: tuple[str, ...] = KERAS_PAIRS) -> dict:
    common = ["--repeats", str(cfg["repeats"]), "--repeats-train", str(cfg["repeats_train"]),
              "--warmup", str(cfg["warmup"])]
    rounds = cfg["framework_rounds"]
    result = {"cpu": run_rounds("bench_keras.py", keys, [*common, "--device", "/CPU:0"], rounds,
                                tmp / "keras_cpu.json", [])}
    if gpu.get("tensorflow"):
        result["gpu"] = run_rounds("bench_keras.py", keys, [*common, "--device", "/GPU:0"], rounds,
                                   tmp / "keras_gpu.json", [])
    return result


def keep_others(new: dict, old: dict, order: tuple[str, ...]) -> dict:
    """A framework part measured for some networks (--keys), completed with the other networks' results of
    an earlier run (--merge), per device, in the benchmarks' order of networks."""
    out = {}
    for where, data in new.items():
        pairs = {p["key"]: p for p in old.get(where, {}).get("pairs", [])}
        pairs.update({p["key"]: p for p in data.get("pairs", [])})
        out[where] = {**data, "pairs": [pairs[k] for k in order if k in pairs]}
    return out


# The report -----------------------------------------------------------------------------------------

def _s(x: float | None, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _ok(flag: bool | None) -> str:
    return "-" if flag is None else ("pass" if flag else "**miss**")


def _table(head: list[str], rows: list[list], align: str | None = None) -> list[str]:
    align = align or "l" + "r" * (len(head) - 1)
    sep = ["---:" if a == "r" else "---" for a in align]
    return ["| " + " | ".join(head) + " |", "| " + " | ".join(sep) + " |"] + [
        "| " + " | ".join(str(c) for c in r) + " |" for r in rows]


def report(res: dict) -> str:
    m = res["machine"]
    v = m["versions"]
    g = res["git"]
    runs = res.get("runs", {})
    distinct = {(r.get("date"), (r.get("git") or {}).get("commit")) for r in runs.values()}
    lines = ["# archdsl benchmarks (issue 5)", "",
             f"Written by `{res['command']}` on {res['date']}; the run took {res['wall_s'] / 60:.1f} min.", ""]
    if len(distinct) > 1:
        lines += ["The parts come from different runs (`--merge`):", ""]
        for part, r in runs.items():
            lines.append(f"- {part}: `{r['command']}` on {r['date']}, commit `{r['git']['commit'][:12]}`, "
                         f"{r['git']['tree']}, {r.get('cpu', 'CPU not recorded')}")
            while r.get("keys"):  # --keys: the part's other networks come from the runs before
                e = r["earlier"]
                lines.append(f"  (networks {', '.join(r['keys'])}; the others: `{e['command']}` on {e['date']}, "
                             f"commit `{e['git']['commit'][:12]}`, {e.get('cpu', 'CPU not recorded')})")
                r = e
        cpus = {r.get("cpu") for r in runs.values()}
        if len(cpus) > 1:
            lines += ["", ("**The parts ran on different machines**: compare times only within one row (each ratio is "
                           "measured within one run, on one machine).")]
        lines += ["", _same_generators(sorted({c for _, c in distinct if c})), ""]
    lines += [f"- archdsl {v['archdsl']}, commit `{g['commit'][:12]}`, {g['tree']}",
             (f"- machine: {m['cpu']}, {m['cores']} cores ({m['cores_usable']} usable), "
             f"{m['memory_gib']:.1f} GiB memory; {m['platform']}"),
             (f"- Python {m['python']}; torch {v['torch']}, torchvision {v['torchvision']}, "
              f"tensorflow {v['tensorflow']}, keras {v['keras']}; lark {v['lark']}, jinja2 {v['jinja2']}")]
    gpu = res.get("gpu", {})
    if gpu.get("torch") or gpu.get("tensorflow"):
        lines.append(f"- GPU: {gpu.get('torch') or gpu.get('tensorflow')} (item 5: the comparisons below are "
                     "repeated on it)")
    else:
        lines.append("- GPU: none lent to this run (item 5: the GPU comparisons were not run; they run "
                     "by themselves where torch or TensorFlow sees a GPU)")
    shares = {p: res["load"][p].get("others_share") for p in res.get("load", {})}
    busy = [f"{p} {100 * s:.0f}%" for p, s in shares.items() if s is not None]
    if busy:
        shared = any(s is not None and s > 0.05 for s in shares.values())
        lines.append(f"- load: CPU capacity used by other processes while each part ran: {', '.join(busy)}"
                     + (" — **the machine was shared with other work during this run**: absolute times are "
                        "inflated and noisy; the ratios, timed side by side and interleaved, much less so"
                        if shared else ""))
    lines += ["", ("Every figure is a median of repeats; every ratio is measured within one run, the two sides "
              "timed alternately (ABBA). See benchmarks/README.md for the method."), ""]

    summary: list[list] = []
    body: list[str] = []
    if "compile" in res:
        body += _compile_section(res["compile"], summary)
    if "scale" in res:
        body += _scale_section(res["scale"], summary)
    if "torch" in res:
        body += _framework_section(res["torch"], "PyTorch", "3a. Generated PyTorch vs torchvision", summary)
    if "keras" in res:
        body += _framework_section(res["keras"], "Keras", "3b. Generated Keras vs keras.applications", summary)
    body += _optimize_section(res)
    body += ["## 5. GPU", ""]
    if gpu.get("torch") or gpu.get("tensorflow"):
        body += [f"Device: {gpu.get('torch') or gpu.get('tensorflow')}; its tables are in sections 3a/3b.", ""]
    else:
        body += ["No GPU was lent to this run: nothing was measured on a GPU.", ""]
    lines += ["## Summary", ""] + _table(["goal", "measured", "target", ""], summary, "llll") + [""] + body
    return "\n".join(lines) + "\n"


def _same_generators(commits: list[str]) -> str:
    """Whether the code generators, the weight loaders and the specs are the same at these commits (then
    the runtime comparisons of one commit hold for the other)."""
    paths = ["archdsl/backends", "archdsl/runtime/interop.py", "specs", "grammar"]
    try:
        same = all(subprocess.run(["git", "diff", "--quiet", commits[0], c, "--", *paths], cwd=ROOT,
                                  capture_output=True, check=False).returncode == 0 for c in commits[1:])
    except OSError:
        return ""
    short = ", ".join(f"`{c[:12]}`" for c in commits)
    return (f"Between commits {short}, {', '.join(paths)} are " + ("the same." if same else "**not** the same."))


def _compile_section(c: dict, summary: list) -> list[str]:
    out = ["## 1. Compile", ""]
    single = c["single"]
    ref = single["reference"]
    rows = {}
    for r in single["rows"]:
        rows.setdefault(r["spec"], {})[r["target"]] = r
    out.append(f"Wall time of one fresh `python -m archdsl compile SPEC --target T -o FILE` process (interpreter "
               f"start-up included), median of {single['repeats']} interleaved rounds. For reference, "
               f"`python -c pass`: {_s(ref['python -c pass']['median_s'])} s; "
               f"`python -c 'import archdsl.cli'`: {_s(ref[IMPORT_CLI]['median_s'])} s; "
               f"resnet50 to torch, code to stdout (no file written): "
               f"{_s(ref['resnet50 torch to stdout']['median_s'])} s.")
    if single.get("bytecode_compiled"):
        out += ["", ("archdsl's modules were compiled to bytecode first, as pip does when it installs the wheel"
                     + (" (this machine sets PYTHONDONTWRITEBYTECODE=1, so a checkout never writes it itself and "
                        "would compile every module from source on every start, about 40 ms more)"
                        if single.get("pythondontwritebytecode") else "") + ".")]
    cold = all("cold_median_s" in r for r in single["rows"])
    if cold:
        out += ["", ("Each compile is timed twice a round: as a spec is compiled again unchanged, its syntax trees "
                     "read back from the command line's cache (the warm-up round filled it), and as the first "
                     "compile of a new or edited spec, every file parsed (the cache off: ARCHDSL_CACHE_DIR empty). "
                     "The goal is judged on both.")]
    out.append("")
    table = []
    for spec, t in rows.items():
        cells = [f"`{spec}`", _s(t["torch"]["median_s"]), _s(t["keras"]["median_s"])]
        worst = max(t["torch"]["median_s"], t["keras"]["median_s"])
        if cold:
            cells += [_s(t["torch"]["cold_median_s"]), _s(t["keras"]["cold_median_s"])]
            worst = max(worst, t["torch"]["cold_median_s"], t["keras"]["cold_median_s"])
        table.append(cells + ["0.3", _ok(worst <= bench_compile.GOAL_SINGLE_S)])
    heads = ["spec", "torch (s)", "keras (s)"] + (["torch, parsed (s)", "keras, parsed (s)"] if cold else [])
    out += _table(heads + ["goal (s)", ""], table) + [""]
    worst = max(single["rows"], key=lambda r: r["median_s"])
    n_pass = sum(r["pass"] for r in single["rows"])
    summary.append(["1. single-spec `archdsl compile` <= 0.3 s wall" + (" (again, unchanged)" if cold else ""),
                    (f"slowest {_s(worst['median_s'])} s ({worst['spec']} {worst['target']}); "
                     f"{n_pass}/{len(single['rows'])} within"), "<= 0.3 s", _ok(n_pass == len(single["rows"]))])
    if cold:
        worst = max(single["rows"], key=lambda r: r["cold_median_s"])
        n_pass = sum(r["cold_pass"] for r in single["rows"])
        summary.append(["1. single-spec `archdsl compile` <= 0.3 s wall (first compile, every file parsed)",
                        (f"slowest {_s(worst['cold_median_s'])} s ({worst['spec']} {worst['target']}); "
                         f"{n_pass}/{len(single['rows'])} within"), "<= 0.3 s",
                        _ok(n_pass == len(single["rows"]))])
    a = c["all"]
    out += [(f"Every spec to both targets in one process ({a['n_compiles']} `compile_spec` calls), a fresh "
            f"interpreter per repeat, median of {a['repeats']}:"), ""]
    out += _table(["", "s"], [["import archdsl.api", _s(a["import_s"])],
                             ["first pass over all specs", _s(a["first_pass_s"])],
                             ["second (warm) pass, same process", _s(a["warm_pass_s"])],
                             ["import + first pass (the goal's measure)", _s(a["goal_value_s"])],
                             ["whole process, interpreter start-up included", _s(a["process_wall_s"])]])
    out += ["", "Slowest compiles of the first pass: " + ", ".join(
        f"{x['spec_target']} {x['s']:.3f} s" for x in a["slowest_first_pass"][:6]) + ".", ""]
    summary.append(["1. all specs x both targets, one process <= 2 s",
                    f"{_s(a['goal_value_s'])} s (import + first pass; warm pass {_s(a['warm_pass_s'])} s)",
                    "<= 2 s", _ok(a["pass"])])
    return out


def _scale_section(sc: dict, summary: list) -> list[str]:
    out = ["## 2. Scale", "", (f"Synthetic networks (see benchmarks/bench_scale.py). One timing per fresh interpreter, "
           "after a warm-up compile of a tiny spec (so imports, grammar and templates are not counted; part 1 "
           f"counts them); medians of {sc['rounds']} round(s) x {sc.get('per_round', 1)} process(es) per size, "
           "100k: a single timing. check = elaborate (which parses) + expand (shape check); compile T = check + "
           "generate T; parse: the parse alone, timed apart."), ""]
    table = []
    for r in sc["rows"]:
        if "load_s" not in r:
            table.append([r["shape"], f"{r['n']:,}", "-", "-", "-", "-", "-", "-", "-", "-", "-",
                          f"**failed**: {r.get('error', '')[:160]}"])
            continue
        table.append([r["shape"], f"{r['n']:,}", f"{r['layers']:,}", f"{r['source_lines']:,}", _s(r["parse_s"], 2),
                      _s(r["elaborate_s"], 2), _s(r["expand_s"], 2), _s(r["load_s"], 2), _s(r["torch_s"], 2),
                      _s(r["keras_s"], 2), _s(r["check_compile_s"], 2),
                      (f"<= 2 s per target: {_ok(r['pass'])}" if "pass" in r else "")
                      + ("" if r["ok"] else f" **failed**: {r.get('error', '')[:160]}")])
    out += _table(["shape", "n", "layers", "source lines", "parse", "elaborate (incl. parse)", "expand", "check",
                   "gen torch", "gen keras", "check + both (s)", "10k goal"], table, "llrrrrrrrrrl") + [""]
    grow = []
    for gr in sc["growth"]:
        if "time_ratio" not in gr:
            grow.append([gr["shape"], f"{gr['from']:,} -> {gr['to']:,}", "-", "-", "-", "-", "-", "-",
                         gr.get("note", ""), _ok(False)])
            continue
        grow.append([gr["shape"], f"{gr['from']:,} -> {gr['to']:,}", _s(gr["layers_ratio"], 2),
                     _s(gr["time_ratio"], 1), _s(gr["parse_ratio"], 1), _s(gr["expand_ratio"], 1),
                     _s(gr["torch_ratio"], 1), _s(gr["keras_ratio"], 1), _s(gr["ratio_per_10x_layers"], 1),
                     _ok(gr["pass"])])
    out += [("Growth: time ratio of the bigger network to the smaller (check + both targets; per stage), and the "
            "total scaled to exactly 10x the layers. Goal: <= 12."), ""]
    out += _table(["shape", "layers", "layer ratio", "time ratio", "parse", "expand", "gen torch", "gen keras",
                   "per 10x layers", ""], grow, "llrrrrrrrl") + [""]
    failures = [r for r in sc["rows"] if not r["ok"]]
    recursion = [r for r in failures if "RecursionError" in r.get("error", "")]
    for r in failures:
        out += [f"Failure, {r['shape']} {r['n']:,}: {r.get('error', '')}", "", "```", r.get("trace", "").strip(),
                "```", ""]
    probe = sc.get("depth_probe", [])
    if probe:
        fail = next((p for p in probe if not p["ok"]), None)
        deepest = max((p["depth"] for p in probe if p["ok"]), default=0)
        out += ["Block nesting depth (not a goal; no real network nests deeper than a few levels): the `chain` "
                "shape, block Ck calling C(k-1), checked and compiled to both targets at depths "
                + ", ".join(f"{p['depth']:,}" + (f" ({p['check_compile_s']:.2f} s)" if p.get("check_compile_s")
                                                  is not None else "") for p in probe)
                + f": fine up to {deepest:,}"
                + (f"; at {fail['depth']}: {fail['error']}" if fail else "") + ".", ""]
    worst = max((g for g in sc["growth"] if "ratio_per_10x_layers" in g), key=lambda g: g["ratio_per_10x_layers"],
                default=None)
    all_growth = all(g["pass"] for g in sc["growth"])
    summary.append(["2. 10x the layers -> <= 12x check + compile time",
                    f"worst {_s(worst['ratio_per_10x_layers'], 1)}x ({worst['shape']} {worst['from']:,} -> "
                    f"{worst['to']:,})" if worst else "not measured", "<= 12x", _ok(all_growth)])
    tenk = [r for r in sc["rows"] if r["n"] == 10_000 and "pass" in r]
    if tenk:
        slow = max(tenk, key=lambda r: max(r["compile_torch_s"], r["compile_keras_s"]))
        summary.append(["2. 10k layers compile <= 2 s",
                        f"slowest {_s(max(slow['compile_torch_s'], slow['compile_keras_s']), 2)} s ({slow['shape']})",
                        "<= 2 s", _ok(all(r["pass"] for r in tenk))])
    summary.append(["2. no recursion-depth failure", "RecursionError in " + ", ".join(
        f"{r['shape']} {r['n']:,}" for r in recursion) if recursion else
        f"none (sizes up to {max(sc['sizes']):,})", "none", _ok(not recursion)])
    return out


def _framework_section(part: dict, name: str, title: str, summary: list) -> list[str]:
    out = [f"## {title}", ""]
    for where, data in part.items():
        pairs = data.get("pairs", [])
        dev = data.get("device_name", where)
        mode = ("eval mode under torch.no_grad()" if name == "PyTorch" else "`model(x, training=False)`")
        train = ("train mode, loss = sum of all outputs, backward" if name == "PyTorch" else
                 "`model(x, training=True)` under tf.GradientTape, loss = sum of all outputs, gradients")
        out += [(f"Device: {dev}; {data.get('threads', '?')} threads; batch 8, 224x224 (the hand-written "
                f"references' pairs: the batch and input their reference column gives). Forward: {mode}; "
                f"forward+backward: {train}. Ratio (the goal's measure) = the median over {data.get('rounds', 1)} "
                "rounds, each a fresh process, of the round's median over repeats of generated / reference, "
                "each pair timed back to back; in brackets the rounds' own ratios, the ratio of the medians "
                "of all samples, and the range of the per-repeat ratios: a view of the noise. On a shared "
                "machine a range wider than the 2% goal means one repeat cannot tell a 2% difference."), ""]
        if data.get("error"):
            out += ["**The worker failed**:", "", "```", data["error"][-1500:], "```", ""]
        rows = []
        for p in pairs:
            f, t = p["forward"], p["train"]
            rows.append([p["key"], p["reference"].replace("torchvision:", "torchvision."),
                         f"{'yes' if p['outputs_match'] else '**NO**'} ({p['max_abs_diff']:.1e})",
                         _s(f["gen_s"]), _s(f["ref_s"]),
                         _ratio(f), _ok(f["pass"]), _s(t["gen_s"]), _s(t["ref_s"]), _ratio(t), _ok(t["pass"])])
            for kind, r in (("forward", f), ("forward+backward", t)):
                summary.append([f"3. {name} {p['key']} {kind} ({where}) generated/reference",
                                f"{r['ratio']:.3f}", "<= 1.02", _ok(r["pass"])])
        out += _table(["network", "reference", "same outputs (max abs diff)", "fwd gen (s)", "fwd ref (s)",
                       "fwd ratio", "<= 1.02", "fwd+bwd gen (s)", "fwd+bwd ref (s)", "fwd+bwd ratio", "<= 1.02"],
                      rows, "lllrrrlrrrl") + [""]
        if name == "PyTorch":
            for p in pairs:
                if "forward_ops" not in p:
                    continue
                out += [(f"Where the time differs, {p['key']}: self CPU time per operator (torch.profiler, ms per "
                        "call of the model, few runs: a rough guide), the largest differences:"), ""]
                ops = []
                for kind in ("forward_ops", "train_ops"):
                    for o in p[kind][:6]:
                        ops.append(["forward" if kind == "forward_ops" else "fwd+bwd", f"`{o['op']}`",
                                    _s(o["gen_ms"], 1), _s(o["ref_ms"], 1), f"{o['diff_ms']:+.1f}",
                                    f"{o['gen_calls']:g} / {o['ref_calls']:g}"])
                out += _table(["step", "operator", "generated ms", "reference ms", "difference", "calls gen / ref"],
                              ops, "llrrrr") + [""]
        else:
            for p in pairs:
                kinds = sorted(set(p["gen_layer_kinds"]) | set(p["ref_layer_kinds"]))
                out += [f"Layers of {p['key']} by class, generated / reference ({p['gen_layers']} / "
                        f"{p['ref_layers']}): " + ", ".join(
                            f"{k} {p['gen_layer_kinds'].get(k, 0)}/{p['ref_layer_kinds'].get(k, 0)}" for k in kinds)
                        + ".", ""]
    return out


def _ratio(r: dict) -> str:
    of_medians = r.get("ratio_of_medians", r["ratio"])
    rounds = "/".join(f"{x:.3f}" for x in r.get("round_ratios", []))
    return (f"{r['ratio']:.3f} ({rounds + '; ' if rounds else ''}{of_medians:.3f}; "
            f"{r['paired_ratio_min']:.2f}-{r['paired_ratio_max']:.2f})")


def _optimize_section(res: dict) -> list[str]:
    """Item 4: the optimized inference emission (`archdsl compile --optimize inference`), timed in the
    forward comparison of the torch and keras parts when the compiler has the option."""
    out = ["## 4. Optimized inference emission", ""]
    notes, rows = [], []
    errors: dict[tuple[str, str, str], list[str]] = {}
    for part in ("torch", "keras"):
        for where, data in res.get(part, {}).items():
            if "optimize" in data:
                notes.append(f"{part}: {data['optimize']}")
            for p in data.get("pairs", []):
                f = p["forward"]
                if "opt_ratio" in f:
                    rows.append([f"{p['key']} ({where})", _s(f["opt_s"]), _s(f["ref_s"]), _s(f["gen_s"]),
                                 f"{f['opt_ratio']:.3f}", "yes" if p.get("optimized_outputs_match") else
                                 f"**no** ({p.get('optimized_max_abs_diff', float('nan')):.1e})"])
                elif "optimized_error" in p:
                    errors.setdefault((part, where, p["optimized_error"]), []).append(p["key"])
    notes += [f"{part} ({where}), not timed for {', '.join(keys)}: {err}"
              for (part, where, err), keys in errors.items()]
    if not notes and not rows:
        return out + ["Not run (neither the torch nor the keras part ran).", ""]
    out += [f"- {n}" for n in dict.fromkeys(notes)] + [""]
    if rows:
        out += ["Forward (inference), timed interleaved with the plain generated model and the reference:", ""]
        out += _table(["network", "optimized (s)", "reference (s)", "plain generated (s)", "optimized / reference",
                       "same outputs"], rows, "lrrrrl") + [""]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="few repeats, no 100k-layer networks (a smoke run)")
    ap.add_argument("--only", default=",".join(PARTS), help="comma-separated parts: " + ",".join(PARTS))
    ap.add_argument("-o", "--output", default=str(BENCH / "results.md"),
                    help="the Markdown report; the raw numbers go next to it as .json")
    ap.add_argument("--at", metavar="REV", help="measure the committed tree REV instead of the working tree")
    ap.add_argument("--render", metavar="JSON", help="only write the Markdown report of an earlier run's JSON")
    ap.add_argument("--keys", help="comma-separated networks: the torch and keras parts measure only these; with "
                                    "--merge they keep the other networks' results of the existing report")
    ap.add_argument("--merge", action="store_true",
                    help="run only the --only parts and keep the other parts of the existing results (the report "
                         "says when and at which commit each part ran)")
    args = ap.parse_args()
    if args.render:
        Path(args.output).write_text(report(json.loads(Path(args.render).read_text())), encoding="utf-8")
        return None
    parts = [p.strip() for p in args.only.split(",") if p.strip()]
    unknown = set(parts) - set(PARTS)
    if unknown:
        ap.error(f"unknown part(s): {', '.join(sorted(unknown))}")
    output = Path(args.output).resolve()
    output.parent.mkdir(parents=True, exist_ok=True)
    if args.at:
        return _run_at(args, output)
    cfg = QUICK if args.quick else FULL
    command = "python benchmarks/run.py " + " ".join(sys.argv[1:]) if os.environ.get("ARCHDSL_BENCH_REV") is None \
        else os.environ.get("ARCHDSL_BENCH_COMMAND", "")
    res: dict = {"command": command.strip(), "date": dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
                 "config": {k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items()},
                 "machine": machine(), "git": git_state(), "load": {}}
    t0 = time.monotonic()
    res["gpu"] = gpu_probe() if ("torch" in parts or "keras" in parts) else {}
    json_path = output.with_suffix(".json")
    this_run = {**{k: res[k] for k in ("command", "date", "git", "config")}, "cpu": res["machine"]["cpu"]}
    res["runs"] = {}
    keys = tuple(k.strip() for k in args.keys.split(",") if k.strip()) if args.keys else ()
    unknown = set(keys) - set(TORCH_PAIRS) - set(KERAS_PAIRS)
    if unknown:
        ap.error(f"unknown network(s): {', '.join(sorted(unknown))}")
    old: dict = {}
    if args.merge and json_path.exists():
        old = json.loads(json_path.read_text())
        for part in PARTS:
            if part not in parts and part in old:
                res[part] = old[part]
                res["load"][part] = old.get("load", {}).get(part, {})
                res["runs"][part] = old.get("runs", {}).get(part) or {k: old.get(k) for k in this_run}
        if not res["gpu"]:
            res["gpu"] = old.get("gpu", {})

    def save() -> None:
        res["wall_s"] = time.monotonic() - t0
        write_json(json_path, res)
        output.write_text(report(res), encoding="utf-8")

    with tempfile.TemporaryDirectory(prefix="archdsl-bench-run-") as tmp:
        for part in parts:
            print(f"== {part}", flush=True)
            load = Load()
            if part == "compile":
                res["compile"] = {"single": bench_compile.single_spec_times(cfg["compile_repeats"]),
                                  "all": bench_compile.all_specs_times(cfg["all_repeats"])}
            elif part == "scale":
                res["scale"] = bench_scale.run(cfg["scale_sizes"], cfg["scale_rounds"])
                res["scale"]["depth_probe"] = bench_scale.depth_probe()
            elif part in ("torch", "keras"):
                every = TORCH_PAIRS if part == "torch" else KERAS_PAIRS
                chosen = tuple(k for k in every if k in keys) if keys else every
                if not chosen:
                    continue
                measure = part_torch if part == "torch" else part_keras
                res[part] = measure(cfg, res["gpu"], Path(tmp), chosen)
                if keys and part in old:
                    res[part] = keep_others(res[part], old[part], every)
            res["load"][part] = load.stop()
            res["runs"][part] = this_run
            if keys and part in old:
                earlier = old.get("runs", {}).get(part) or {k: old.get(k) for k in this_run}
                while set(earlier.get("keys", ["(all)"])) <= set(chosen):  # every network of it measured again
                    earlier = earlier["earlier"]
                res["runs"][part] = {**this_run, "keys": list(chosen), "earlier": earlier}
            print(f"   {part}: {res['load'][part]['wall_s']:.0f} s", flush=True)
            save()
    save()
    print(f"wrote {output} and {json_path} ({res['wall_s'] / 60:.1f} min)")


def _run_at(args: argparse.Namespace, output: Path) -> None:
    rev = subprocess.run(["git", "rev-parse", args.at], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="archdsl-bench-at-") as tmp:
        archive = subprocess.run(["git", "archive", rev], cwd=ROOT, capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        shutil.rmtree(Path(tmp) / "benchmarks", ignore_errors=True)
        shutil.copytree(BENCH, Path(tmp) / "benchmarks", ignore=shutil.ignore_patterns("__pycache__", "results.*"))
        argv = ["--only", args.only, "-o", str(output)] + (["--quick"] if args.quick else []) + (
            ["--merge"] if args.merge else []) + (["--keys", args.keys] if args.keys else [])
        env = {**os.environ, "ARCHDSL_BENCH_REV": rev,
               "ARCHDSL_BENCH_COMMAND": "python benchmarks/run.py " + " ".join(sys.argv[1:])}
        subprocess.run([PYTHON, str(Path(tmp) / "benchmarks" / "run.py"), *argv], env=env, check=True)


if __name__ == "__main__":
    main()
