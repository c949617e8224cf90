"""Part 1, compile speed.

- One fresh `python -m archdsl compile SPEC --target T -o FILE` process per spec and target, wall
  time from outside (interpreter start-up included), with `python -c pass` and
  `python -c "import archdsl.cli"` timed in the same rounds for reference. Every round runs every
  command once, in an order that alternates between rounds; the figure is the median over rounds.
- Every spec to both targets in one process: `compile_spec` in a loop, in a fresh interpreter per
  repeat so no cache carries over; the first pass over the specs and a second (warm) pass in the
  same process, and the whole process's wall time.

`-o FILE` writes into a temporary directory, never to /dev/null: the compiler writes a file next to
FILE and renames it over FILE, which, run as root, would replace the /dev/null device with a file.

Run alone: python benchmarks/bench_compile.py [--repeats N]   (prints JSON)
As the in-process worker: python benchmarks/bench_compile.py --worker
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import PYTHON, ROOT, interleaved, median, spread

TARGETS = ("torch", "keras")
GOAL_SINGLE_S = 0.3
GOAL_ALL_S = 2.0


def spec_files() -> list[str]:
    return sorted(os.path.relpath(p, ROOT) for p in (ROOT / "specs").glob("*.arch"))


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def _run(cmd: list[str], env: dict) -> float:
    t = time.perf_counter()
    proc = subprocess.run(cmd, check=False, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.decode()[-2000:]}")
    return wall


def compile_bytecode() -> bool:
    """Compile archdsl's modules to bytecode (archdsl/**/__pycache__), as pip does when it installs
    the wheel. A checkout run with PYTHONDONTWRITEBYTECODE=1, as on this project's machines, never
    writes it itself and compiles every module from source on every start (about 40 ms here), which
    no installed copy does. Returns whether that variable is set."""
    import compileall

    compileall.compile_dir(str(ROOT / "archdsl"), quiet=1)
    return bool(os.environ.get("PYTHONDONTWRITEBYTECODE"))


def single_spec_times(repeats: int, specs: list[str] | None = None) -> dict:
    """Every spec and target compiled twice a round: with the command line's syntax-tree cache (in a
    folder of this run's, filled by the warm-up round: a spec compiled again unchanged) and without
    it (ARCHDSL_CACHE_DIR empty: every file parsed, as the first compile of a new or edited spec)."""
    specs = specs or spec_files()
    dont_write_bytecode = compile_bytecode()
    with tempfile.TemporaryDirectory(prefix="archdsl-bench-") as tmp:
        warm = _env() | {"ARCHDSL_CACHE_DIR": os.path.join(tmp, "cache")}
        cold = _env() | {"ARCHDSL_CACHE_DIR": ""}
        cmds: dict[str, tuple[list[str], dict]] = {
            "python -c pass": ([PYTHON, "-c", "pass"], warm),
            "python -c 'import archdsl.cli'": ([PYTHON, "-c", "import archdsl.cli"], warm),
            "resnet50 torch to stdout": ([PYTHON, "-m", "archdsl", "compile", "specs/resnet50.arch",
                                          "--target", "torch"], warm),
        }
        for spec in specs:
            for target in TARGETS:
                out = os.path.join(tmp, f"{Path(spec).stem}_{target}.py")
                cmd = [PYTHON, "-m", "archdsl", "compile", spec, "--target", target, "-o", out]
                cmds[f"{spec} {target}"] = (cmd, warm)
                cmds[f"{spec} {target} cold"] = (cmd, cold)
        fns = {name: (lambda c=cmd, e=env: _run(c, e)) for name, (cmd, env) in cmds.items()}
        times = interleaved(fns, repeats, warmup=1)
    rows = []
    for spec in specs:
        for target in TARGETS:
            t, c = times[f"{spec} {target}"], times[f"{spec} {target} cold"]
            rows.append({"spec": spec, "target": target, "median_s": median(t), "spread": spread(t), "times_s": t,
                         "cold_median_s": median(c), "cold_times_s": c,
                         "goal_s": GOAL_SINGLE_S, "pass": median(t) <= GOAL_SINGLE_S,
                         "cold_pass": median(c) <= GOAL_SINGLE_S})
    reference = {name: {"median_s": median(times[name]), "times_s": times[name]}
                 for name in list(cmds)[:3]}
    return {"repeats": repeats, "rows": rows, "reference": reference, "bytecode_compiled": True,
            "pythondontwritebytecode": dont_write_bytecode}


def all_specs_times(repeats: int) -> dict:
    """Fresh interpreter per repeat; each runs the worker below and reports its own timings."""
    env = _env()
    runs = []
    for _ in range(repeats):
        t = time.perf_counter()
        proc = subprocess.run([PYTHON, str(Path(__file__).resolve()), "--worker"], check=False, cwd=ROOT, env=env,
                              capture_output=True, text=True)
        wall = time.perf_counter() - t
        if proc.returncode != 0:
            raise RuntimeError(f"all-specs worker failed: {proc.stderr[-2000:]}")
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        result["process_wall_s"] = wall
        runs.append(result)
    keys = ("process_wall_s", "import_s", "first_pass_s", "warm_pass_s")
    summary = {k: median([r[k] for r in runs]) for k in keys}
    # the slowest specs of the first pass (median over repeats), for the report
    per_spec: dict[str, list[float]] = {}
    for r in runs:
        for name, s in r["first_pass_per_spec_s"].items():
            per_spec.setdefault(name, []).append(s)
    slowest = sorted(((median(v), k) for k, v in per_spec.items()), reverse=True)[:8]
    goal_value = summary["import_s"] + summary["first_pass_s"]
    return {"repeats": repeats, "runs": runs, **summary, "n_compiles": runs[0]["n_compiles"],
            "slowest_first_pass": [{"spec_target": k, "s": v} for v, k in slowest],
            "goal_s": GOAL_ALL_S, "goal_value_s": goal_value, "pass": goal_value <= GOAL_ALL_S}


def worker() -> None:
    t0 = time.perf_counter()
    from archdsl.api import compile_spec

    t1 = time.perf_counter()
    specs = spec_files()
    per: dict[str, float] = {}
    for spec in specs:
        for target in TARGETS:
            t = time.perf_counter()
            compile_spec(spec, target)
            per[f"{spec} {target}"] = time.perf_counter() - t
    t2 = time.perf_counter()
    for spec in specs:
        for target in TARGETS:
            compile_spec(spec, target)
    t3 = time.perf_counter()
    print(json.dumps({"import_s": t1 - t0, "first_pass_s": t2 - t1, "warm_pass_s": t3 - t2,
                      "n_compiles": len(per), "first_pass_per_spec_s": per}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    if args.worker:
        os.chdir(ROOT)
        worker()
        return
    print(json.dumps({"single": single_spec_times(args.repeats), "all": all_specs_times(args.repeats)}, indent=1))


if __name__ == "__main__":
    main()
