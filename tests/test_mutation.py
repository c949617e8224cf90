"""Mutation test: every spec of specs/ (and each library of specs/lib), broken in thousands of ways,
gets a located error or passes, quickly, through the command line's own code.

Each mutated input (token deletions, duplications, swaps, number and name replacements, truncations,
odd whitespace and control characters, line edits, and two or three of these at once) is run as the
command line runs it: `archdsl check`, then, when check passes, `archdsl compile` for both targets
(a library: check; then a spec that imports the mutated library). The commands run in a worker
process that calls archdsl.cli.main() in-process (the function the `archdsl` command calls), so a
hang or a runaway allocation can be stopped by ending the worker; a few inputs also run through a
real `python -m archdsl` subprocess. For every input:

- the exit status is 0 or 1, with no "internal error" and no traceback (a crash otherwise);
- no command takes more than TIME_LIMIT seconds of CPU (a hang otherwise; the worker is ended past
  WALL_LIMIT seconds of wall time);
- every error is located, on the right line: `file:line:column: error: ...`, the file one of the
  input's, the line inside it, the source line printed under it exactly the line that the line
  number names when lines are counted as the lexer counts them (archdsl.language.errors.source_lines), and
  the caret under the column's character;
- check accepts only what both backends compile (a disagreement otherwise).

Derandomized: the inputs come from a fixed seed. ARCHDSL_MUTATIONS sets how many (default
DEFAULT_COUNT, about two minutes on a 2-core machine); `ARCHDSL_MUTATIONS=10000 pytest
tests/test_mutation.py -s` runs a long local campaign and prints the counts. ARCHDSL_MUTATION_SEED
changes the seed.
"""

from __future__ import annotations

import json
import os
import random
import re
import select
import shutil
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_COUNT = 400
TIME_LIMIT = 5.0  # CPU seconds one command may take
WALL_LIMIT = 60.0  # wall seconds before the worker is taken for hung and ended (the machine may be busy)
MEMORY_LIMIT = 3 << 30  # bytes of address space for the worker

KEYWORDS = ["import", "block", "network", "input", "output", "auxiliary", "let", "assert", "concat", "branch",
            "residual", "shortcut", "scale", "if", "else", "for", "range", "and", "or", "not", "in", "true",
            "false", "tensor", "same", "valid", "global"]
ODD_NAMES = ["__x", "__init__", "params", "self", "x", "F", "nn", "torch", "keras", "layers", "ops", "np",
             "build_model", "forward", "Module", "None", "True", "class", "def", "lambda", "import_", "conv",
             "relu", "dense", "bn", "add", "min", "make_divisible", "caf\u00e9", "\u8ba1\u7b97", "\u00b5s", "_",
             "a" * 300, "Net", "N", "output", "in_channels", "out_channels", "training", "state_dict",
             "GENERATED", "AUXILIARY_OUTPUTS", "super", "print", "type", "list", "int", "float", "object"]
NUMBERS = ["0", "-1", "1", "2", "3", "7", "0.5", "1.5", "1e-9", "100000", "1000000000", "1" + "0" * 30,
           "18446744073709551616", "9223372036854775807", "2 ** 64", "2 ** 62", "1e308", "1e309", "1e400", "nan",
           "inf", "(0 - 1)", "-0.0", "0.0", "(1 / 3)", "9" * 5000, "2 ** 2 ** 2 ** 22", "(1e308 * 10)",
           "(-8) ** 0.5", "int(1e309)", "round(1e309 - 1e309)", "[1, 2]", "[]", "true", "same"]
ODD_CHARS = ["\f", "\v", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029", "\0", "\t", "\r", "\r\n", "\ufeff",
             "\x1b[31m", "\xa0", "\u200b", "\u202e", "\x7f", "\\", "\\\n", "\t\t\t"]
PUNCTUATION = ["{", "}", "(", ")", "[", "]", ",", "*", "**", "=", ":", ".", '"', "#", "?", "+", "-", "//", "%",
               "==", "<", "\n", "\n\n", "in", "..."]

_TOKEN = re.compile(r'"[^"\n]*"|#[^\n]*|[A-Za-z_][A-Za-z0-9_]*|\d+\.\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?'
                    r"|\d+(?:[eE][+-]?\d+)?|\*\*|//|==|!=|<=|>=|\s+|.", re.DOTALL)


# Mutations --------------------------------------------------------------------------------------

def tokens(text: str) -> list[str]:
    return _TOKEN.findall(text)


def _pick(rng: random.Random, toks: list[str], test) -> int | None:
    places = [i for i, t in enumerate(toks) if test(t)]
    return rng.choice(places) if places else None


def mutate_once(text: str, rng: random.Random, names: list[str]) -> tuple[str, str]:
    """One random change to a text, and what it was (for the report)."""
    toks = tokens(text)
    solid = lambda t: not t.isspace()
    kind = rng.choice(["delete", "duplicate", "swap", "number", "name", "truncate", "char", "punct", "line-delete",
                       "line-duplicate", "line-swap", "newlines", "number", "name", "delete", "char"])
    if kind == "delete":
        i = _pick(rng, toks, solid)
        if i is not None:
            what = toks[i]
            del toks[i]
            return "".join(toks), f"delete {what!r}"
    elif kind == "duplicate":
        i = _pick(rng, toks, solid)
        if i is not None:
            toks.insert(i, toks[i] + rng.choice(["", " "]))
            return "".join(toks), f"duplicate {toks[i + 1]!r}"
    elif kind == "swap":
        solid_at = [i for i, t in enumerate(toks) if solid(t)]
        if len(solid_at) > 1:
            k = rng.randrange(len(solid_at) - 1)
            a, b = solid_at[k], solid_at[k + 1]
            toks[a], toks[b] = toks[b], toks[a]
            return "".join(toks), f"swap {toks[b]!r} {toks[a]!r}"
    elif kind == "number":
        i = _pick(rng, toks, lambda t: t[:1].isdigit() or (t[:1] == "." and t[1:2].isdigit()))
        if i is not None:
            new = rng.choice(NUMBERS)
            old, toks[i] = toks[i], new
            return "".join(toks), f"number {old} -> {new[:30]}"
    elif kind == "name":
        i = _pick(rng, toks, lambda t: t[:1].isalpha() or t[:1] == "_")
        if i is not None:
            new = rng.choice([*KEYWORDS, *ODD_NAMES, *names] if names else [*KEYWORDS, *ODD_NAMES])
            old, toks[i] = toks[i], new
            return "".join(toks), f"name {old} -> {new[:30]}"
    elif kind == "truncate":
        n = rng.randrange(len(text) + 1)
        return text[:n], f"truncate at {n}"
    elif kind == "char":
        n = rng.randrange(len(text) + 1)
        c = rng.choice(ODD_CHARS)
        return text[:n] + c + text[n:], f"insert {c!r} at {n}"
    elif kind == "punct":
        n = rng.randrange(len(text) + 1)
        c = rng.choice(PUNCTUATION)
        return text[:n] + c + text[n:], f"insert {c!r} at {n}"
    elif kind.startswith("line"):
        lines = text.split("\n")
        i = rng.randrange(len(lines))
        if kind == "line-delete":
            del lines[i]
        elif kind == "line-duplicate":
            lines.insert(i, lines[i])
        else:
            j = rng.randrange(len(lines))
            lines[i], lines[j] = lines[j], lines[i]
        return "\n".join(lines), f"{kind} {i + 1}"
    elif kind == "newlines":
        sep = rng.choice(["\r\n", "\r", "\n\n", "\f\n", "\n\f", " \\\n"])
        return text.replace("\n", sep), f"newlines -> {sep!r}"
    return text + "\n", "append a newline"


def mutate(text: str, rng: random.Random) -> tuple[str, list[str]]:
    """One, two or three changes at once."""
    names = sorted({t for t in tokens(text) if t[:1].isalpha() and t not in KEYWORDS})
    done = []
    for _ in range(rng.choice([1, 1, 1, 2, 2, 3])):
        text, what = mutate_once(text, rng, names)
        done.append(what)
    return text, done


# Inputs -----------------------------------------------------------------------------------------

@dataclass
class Case:
    """One mutated input: files to write (relative to the work directory) and the commands to run."""

    origin: str  # the spec it comes from
    changes: list[str]
    files: dict[str, str]  # relative path -> text
    commands: list[list[str]]  # each with {dir} for the work directory
    network: bool  # whether compile follows a passing check


def seeds() -> list[tuple[str, str]]:
    out = []
    for path in sorted((ROOT / "specs").glob("*.arch")) + sorted((ROOT / "specs" / "lib").glob("*.arch")):
        out.append((str(path.relative_to(ROOT / "specs")), path.read_text(encoding="utf-8")))
    return out


def importer_of(lib: str, specs: list[tuple[str, str]]) -> tuple[str, str] | None:
    """A spec that imports a library (the first, by name)."""
    for name, text in specs:
        if "/" not in name and f'import "{lib}"' in text:
            return name, text
    return None


def cases(count: int, seed: int) -> list[Case]:
    rng = random.Random(seed)
    specs = seeds()
    out = []
    for k in range(count):
        name, text = specs[k % len(specs)]
        mutated, changes = mutate(text, rng)
        if name.startswith("lib/"):
            target = f"lib/mutated_{k}.arch"
            files = {target: mutated}
            commands = [["check", "{dir}/" + target]]
            user = importer_of(name, specs)
            if user is not None:
                spec_name = f"user_{k}.arch"
                files[spec_name] = user[1].replace(f'import "{name}"', f'import "{target}"')
                commands.append(["check", "{dir}/" + spec_name])
            out.append(Case(name, changes, files, commands, network=user is not None))
        else:
            target = f"mutated_{k}.arch"
            out.append(Case(name, changes, {target: mutated}, [["check", "{dir}/" + target]], network=True))
    return out


# The worker: archdsl.cli.main() in a process of its own ---------------------------------------------

def worker() -> None:
    """Reads one JSON command line per line on stdin, runs archdsl.cli.main() on it with stdout and
    stderr captured, and writes one JSON line: the status, stderr, the CPU seconds it took."""
    import contextlib
    import io
    import resource

    try:
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    except (ValueError, OSError):
        pass
    from archdsl.cli import main

    for line in sys.stdin:
        args = json.loads(line)
        out, err = io.StringIO(), io.StringIO()
        start = time.process_time()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                status = main(args)
            except BaseException as e:  # noqa: BLE001 - reported to the test as a crash
                status = f"{type(e).__name__}: {e}"
        used = time.process_time() - start
        sys.__stdout__.write(json.dumps({"status": status, "stderr": err.getvalue()[:200000],
                                         "stdout": out.getvalue()[:2000], "cpu": used}) + "\n")
        sys.__stdout__.flush()


class Worker:
    """A worker process, restarted after a hang."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        env["ARCHDSL_CACHE_DIR"] = ""  # every input is new: no syntax trees on disk
        env.pop("ARCHDSL_TRACEBACK", None)
        self.proc = subprocess.Popen([sys.executable, __file__, "--worker"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
                                     cwd=str(ROOT))

    def run(self, args: list[str]) -> dict | None:
        """The worker's answer, or None if it took longer than WALL_LIMIT (the worker is then ended)."""
        if self.proc is None or self.proc.poll() is not None:
            self.start()
        assert self.proc is not None and self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(args) + "\n")
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], WALL_LIMIT)
        line = self.proc.stdout.readline() if ready else ""
        if not line:
            self.stop()
            return None
        return json.loads(line)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


# Judging an answer ------------------------------------------------------------------------------

_HEAD = re.compile(r"^(?P<file>.+?):(?P<line>\d+):(?P<column>\d+): error: ")


def read_as_compiler(path: Path) -> str:
    return path.read_bytes().decode("utf-8-sig", errors="replace")


def located_problem(stderr: str) -> str | None:
    """What is wrong with an error message's place, or None: the file must be one of the input's (or a
    library it imports), the line inside it, the printed line the one the number names, the caret
    under the column."""
    from archdsl.language.errors import display, source_lines

    first = stderr.split("\n", 1)[0]
    m = _HEAD.match(first)
    if m is None:
        return f"not located: {first[:200]!r}"
    path = Path(m["file"])
    if not path.is_absolute():
        path = ROOT / path
    if not path.is_file():
        return f"names a file that is not there: {m['file']!r}"
    text = read_as_compiler(path)
    lines = source_lines(text)
    line, column = int(m["line"]), int(m["column"])
    if not 1 <= line <= len(lines):
        return f"line {line} is outside the file ({len(lines)} lines)"
    source = lines[line - 1]
    if not 1 <= column <= len(source) + 1:
        return f"column {column} is outside line {line} ({len(source)} characters)"
    printed, starts = display(source)
    gutter = f" {line} | "
    shown = stderr.split("\n")
    at = [i for i, ln in enumerate(shown) if ln.startswith(gutter)]
    if not at:
        return f"the source line {line} is not shown"
    if shown[at[0]] != gutter + printed:
        return f"the line shown is not line {line}: {shown[at[0]][:120]!r} vs {(gutter + printed)[:120]!r}"
    if at[0] + 1 >= len(shown) or "^" not in shown[at[0] + 1]:
        return "no caret"
    caret = shown[at[0] + 1][len(gutter):].index("^")
    if caret != starts[column - 1]:
        return f"the caret is at cell {caret}, the column's character at cell {starts[column - 1]}"
    return None


@dataclass
class Tally:
    inputs: int = 0
    clean_errors: int = 0
    passes: int = 0
    crashes: list[str] = field(default_factory=list)
    hangs: list[str] = field(default_factory=list)
    wrong_places: list[str] = field(default_factory=list)
    disagreements: list[str] = field(default_factory=list)
    commands: int = 0
    kinds: Counter = field(default_factory=Counter)

    def line(self) -> str:
        return (f"{self.inputs} inputs ({self.commands} commands): {self.clean_errors} clean errors, {self.passes} "
                f"passes, {len(self.crashes)} crashes, {len(self.hangs)} hangs, {len(self.wrong_places)} wrong "
                f"places, {len(self.disagreements)} disagreements")


def judge(case: Case, answer: dict | None, args: list[str], tally: Tally) -> str:
    """Record one command's outcome: "ok" (exit 0), "error" (a clean located error), "crash", "hang" or
    "wrong" (an error not located on the right line)."""
    tally.commands += 1
    label = f"{case.origin} {case.changes} {' '.join(args)}"
    if answer is None:
        tally.hangs.append(f"{label}: no answer in {WALL_LIMIT:.0f} s")
        return "hang"
    status, stderr = answer["status"], answer["stderr"]
    if status not in (0, 1) or "internal error" in stderr or "Traceback" in stderr:
        tally.crashes.append(f"{label}: status {status}: {stderr[:400]}")
        return "crash"
    if answer["cpu"] > TIME_LIMIT:
        tally.hangs.append(f"{label}: {answer['cpu']:.1f} s of CPU")
        return "hang"
    if status == 0:
        return "ok"
    problem = located_problem(stderr)
    if problem is not None:
        tally.wrong_places.append(f"{label}: {problem}\n{stderr[:600]}")
        return "wrong"
    tally.kinds[re.sub(r"'[^']*'|\d+", "_", stderr.split("error: ", 1)[-1].split("\n")[0])[:60]] += 1
    return "error"


def run_case(case: Case, work: Path, pool: Worker, tally: Tally) -> str:
    """Run a case's commands (and compile both targets after a passing check of a network); its outcome
    is that of the first command that does not pass, "ok" if all pass, "disagreement" if check passes
    and compile gives a clean error."""
    answer = None
    for command in case.commands:
        args = [a.replace("{dir}", str(work)) for a in command]
        answer = pool.run(args)
        outcome = judge(case, answer, args, tally)
        if outcome != "ok":
            return outcome
    if not case.network:
        return "ok"
    if answer is not None and ": library, " in answer["stdout"]:
        # the mutation left blocks and no network (a truncation, say): check checked a library, which
        # compile, as documented, refuses at its first block
        args = ["compile", case.commands[-1][1].replace("{dir}", str(work)), "--target", "torch", "-o", os.devnull]
        answer = pool.run(args)
        outcome = judge(case, answer, args, tally)
        if outcome == "error" and "is a library of blocks" in answer["stderr"]:
            return "ok"
        if outcome in ("ok", "error"):
            tally.disagreements.append(f"{case.origin} {case.changes}: check passes as a library, compile does "
                                       f"not say it is one: {answer['stderr'][:500] if answer else ''}")
            return "disagreement"
        return outcome
    for target in ("torch", "keras"):
        args = ["compile", case.commands[-1][1].replace("{dir}", str(work)), "--target", target, "-o", os.devnull]
        answer = pool.run(args)
        outcome = judge(case, answer, args, tally)
        if outcome == "error":
            tally.disagreements.append(f"{case.origin} {case.changes}: check passes, compile --target {target} "
                                       f"fails: {answer['stderr'][:500] if answer else ''}")
            return "disagreement"
        if outcome != "ok":
            return outcome
    return "ok"


def campaign(count: int, seed: int, work: Path, subprocess_sample: int = 3) -> Tally:
    (work / "lib").mkdir(parents=True, exist_ok=True)
    for lib in (ROOT / "specs" / "lib").glob("*.arch"):
        shutil.copy(lib, work / "lib" / lib.name)
    tally = Tally()
    pool = Worker()
    sampled = 0
    try:
        for case in cases(count, seed):
            paths = []
            for rel, text in case.files.items():
                path = work / rel
                path.write_bytes(text.encode("utf-8", errors="surrogatepass"))
                paths.append(path)
            tally.inputs += 1
            outcome = run_case(case, work, pool, tally)
            if outcome == "ok":
                tally.passes += 1
            elif outcome == "error":
                tally.clean_errors += 1
                if sampled < subprocess_sample:
                    sampled += 1
                    _compare_with_subprocess(case, work, pool)
            for path in paths:
                path.unlink()
    finally:
        pool.stop()
    return tally


def _compare_with_subprocess(case: Case, work: Path, pool: Worker) -> None:
    """The real command gives what the in-process worker gave: the same status and message."""
    args = [a.replace("{dir}", str(work)) for a in case.commands[0]]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.pop("ARCHDSL_TRACEBACK", None)
    real = subprocess.run([sys.executable, "-m", "archdsl", *args], capture_output=True, text=True, env=env,
                          timeout=WALL_LIMIT, check=False, cwd=str(ROOT))
    inner = pool.run(args)
    assert inner is not None
    assert (real.returncode, real.stderr) == (inner["status"], inner["stderr"]), (case.changes, real.stderr)
    assert "Traceback" not in real.stderr and "internal error" not in real.stderr


# The test -----------------------------------------------------------------------------------------

def test_mutated_specs_get_located_errors_or_pass(tmp_path):
    count = int(os.environ.get("ARCHDSL_MUTATIONS", str(DEFAULT_COUNT)))
    seed = int(os.environ.get("ARCHDSL_MUTATION_SEED", "13"))
    start = time.perf_counter()
    tally = campaign(count, seed, tmp_path)
    elapsed = time.perf_counter() - start
    print(f"\nmutation test, seed {seed}: {tally.line()} in {elapsed:.0f} s")
    for name, records in (("crashes", tally.crashes), ("hangs", tally.hangs), ("wrong places", tally.wrong_places),
                          ("disagreements", tally.disagreements)):
        for r in records[:20]:
            print(f"{name}: {r}")
    assert tally.inputs == count
    assert not tally.crashes, tally.crashes[:5]
    assert not tally.hangs, tally.hangs[:5]
    assert not tally.wrong_places, tally.wrong_places[:5]
    assert not tally.disagreements, tally.disagreements[:5]
    assert tally.clean_errors > count // 4 and tally.passes > count // 20  # the mutations do both


def test_mutations_are_derandomized():
    first = [(c.files, c.commands) for c in cases(30, 13)]
    assert first == [(c.files, c.commands) for c in cases(30, 13)]
    assert len({json.dumps(f, sort_keys=True) for f, _ in first}) == 30


def test_a_wrong_line_is_caught(tmp_path):
    """The judge itself: a message that shows another line than its number names is caught."""
    spec = tmp_path / "x.arch"
    spec.write_text("network N {  # \f\n    input [3, 8, 8]\n    conv(4, 1, stride = 0)\n}\n")
    right = (f"{spec}:3:25: error: conv: 'stride' must be at least 1, got 0\n"
             " 3 |     conv(4, 1, stride = 0)\n   |                         ^\n")
    assert located_problem(right) is None
    assert "not line 3" in located_problem(right.replace("conv(4, 1, stride = 0)\n", "input [3, 8, 8]\n", 1))
    assert "caret" in located_problem(right.replace("   ^", "  ^ "))
    assert "not located" in located_problem("error: something\n")


if __name__ == "__main__":
    if sys.argv[1:] == ["--worker"]:
        worker()
