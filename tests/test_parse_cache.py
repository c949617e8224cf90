"""The command line's on-disk cache of syntax trees (archdsl.language.parser.disk_cache).

Each command runs in a fresh interpreter, as a user's would, with the cache in a folder of the test's
own. Whether a tree came from the cache is seen from outside: a hit never imports Lark.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

SPEC = """\
import "lib.arch"

network Small(classes = 10) {
    input [3, 32, 32]
    Stem(8)
    maxpool(2) flatten
    fc: dense(classes)
}
"""

LIB = """\
block Stem(width) {
    conv(width, 3) relu
}
"""

# Runs the command line in-process and reports what the parse needed, as JSON on the last line.
PROBE = """\
import json, sys
from archdsl import cli
from archdsl.language import parser
status = cli.main(sys.argv[1:])
print(json.dumps({"status": status, "lark": "lark" in sys.modules, "after": parser._cache_dir}))
"""


def archdsl(cwd: Path, cache: str | None, *args: str) -> tuple[dict, str]:
    """Runs `archdsl ARGS` in a fresh interpreter with ARCHDSL_CACHE_DIR=cache; returns the probe's
    report and what the command printed before it."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    if cache is None:
        env.pop("ARCHDSL_CACHE_DIR", None)
    else:
        env["ARCHDSL_CACHE_DIR"] = cache
    res = subprocess.run([sys.executable, "-c", PROBE, *args], check=False, capture_output=True, text=True, cwd=cwd,
                         env=env, timeout=120)
    assert "Traceback" not in res.stderr, res.stderr
    *printed, report = res.stdout.splitlines()
    return json.loads(report), "\n".join(printed) + res.stderr


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "small.arch").write_text(SPEC)
    (tmp_path / "lib.arch").write_text(LIB)
    return tmp_path


def entries(cache: Path) -> list[Path]:
    return sorted(cache.glob("*.tree"))


def test_second_compile_reads_the_trees_back(project: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first, code1 = archdsl(project, str(cache), "compile", "small.arch", "--target", "torch")
    assert first == {"status": 0, "lark": True, "after": None}  # parsed; main() leaves no cache set
    assert len(entries(cache)) == 2  # the spec and the file it imports
    assert (cache.stat().st_mode & 0o777) == 0o700
    second, code2 = archdsl(project, str(cache), "compile", "small.arch", "--target", "torch")
    assert second == {"status": 0, "lark": False, "after": None}  # both trees from the cache
    assert code2 == code1
    keras, _ = archdsl(project, str(cache), "compile", "small.arch", "--target", "keras")
    assert keras["lark"] is False


def test_changed_text_is_parsed_again(project: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    archdsl(project, str(cache), "check", "small.arch")
    (project / "lib.arch").write_text(LIB.replace("relu", "relu conv(width, 1)"))
    report, printed = archdsl(project, str(cache), "check", "small.arch")
    assert report["lark"] is True
    assert "18,306 params" in printed  # the new 1x1 convolution's 72 weights and 8 biases are counted
    assert len(entries(cache)) == 2  # the stale entry was replaced, not added to
    report, printed_again = archdsl(project, str(cache), "check", "small.arch")
    assert report["lark"] is False and printed_again == printed


def test_broken_entries_are_misses(project: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    _, code = archdsl(project, str(cache), "compile", "small.arch", "--target", "torch")
    for entry in entries(cache):
        data = entry.read_bytes()
        entry.write_bytes(data[:32] + b"not a pickle" + data[40:])  # the key intact, the tree broken
    report, code_again = archdsl(project, str(cache), "compile", "small.arch", "--target", "torch")
    assert report == {"status": 0, "lark": True, "after": None}
    assert code_again == code


def test_a_cache_others_can_write_is_not_used(project: Path, tmp_path: Path) -> None:
    if not hasattr(os, "getuid"):
        pytest.skip("no file owners here")
    cache = tmp_path / "cache"
    archdsl(project, str(cache), "check", "small.arch")
    cache.chmod(0o777)
    report, _ = archdsl(project, str(cache), "check", "small.arch")
    assert report["lark"] is True  # the entries there may have been planted: parsed instead
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)
    archdsl(project, str(shared), "check", "small.arch")
    assert entries(shared) == []


def test_empty_setting_turns_it_off(project: Path, tmp_path: Path) -> None:
    for _ in range(2):
        report, _ = archdsl(project, "", "check", "small.arch")
        assert report["lark"] is True


def test_default_place_is_the_users_cache_folder(project: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    archdsl(project, None, "check", "small.arch")
    assert len(entries(tmp_path / "xdg" / "archdsl")) == 2


def test_syntax_errors_are_reported_every_time(project: Path, tmp_path: Path) -> None:
    (project / "lib.arch").write_text(LIB.replace("relu", "relu("))
    cache = tmp_path / "cache"
    outputs = [archdsl(project, str(cache), "check", "small.arch") for _ in range(2)]
    for report, printed in outputs:
        assert report["status"] == 1
        assert "lib.arch:3:1: error: syntax error" in printed
    assert outputs[0][1] == outputs[1][1]
    assert len(entries(cache)) == 1  # the spec that parsed; the broken file has no entry


def test_unwritable_cache_is_passed_over(project: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder would be")
    report, printed = archdsl(project, str(blocker / "cache"), "check", "small.arch")
    assert report["status"] == 0 and printed.startswith("ok:")


def test_the_cache_keeps_a_bounded_number_of_entries(project: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o700)
    for i in range(5):  # stale entries of specs compiled long ago
        old = cache / f"{i:032x}.tree"
        old.write_bytes(b"old")
        os.utime(old, (1_000_000 + i, 1_000_000 + i))
    interrupted = cache / ".tree-abandoned"  # the temporary file of a store that never finished
    interrupted.write_bytes(b"half")
    os.utime(interrupted, (1_000_000, 1_000_000))
    in_progress = cache / ".tree-writing"  # another process's store, under way
    in_progress.write_bytes(b"half")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
               ARCHDSL_CACHE_DIR=str(cache))
    code = "import sys; from archdsl import cli; from archdsl.language import parser; parser.MAX_CACHE_ENTRIES = 4; sys.exit(cli.main(sys.argv[1:]))"
    res = subprocess.run([sys.executable, "-c", code, "check", "small.arch"], check=False, capture_output=True,
                         text=True, cwd=project, env=env, timeout=120)
    assert res.returncode == 0, res.stderr
    left = {p.name for p in entries(cache)}
    assert len(left) == 4
    assert {f"{i:032x}.tree" for i in (3, 4)} <= left  # the oldest went first
    assert not interrupted.exists() and in_progress.exists()
    report, _ = archdsl(project, str(cache), "check", "small.arch")
    assert report["lark"] is False  # the two just written stayed
