"""The pipeline in one place: spec file -> typed graph -> shapes -> generated code.

    parse (parser.py) -> syntax tree (syntax.py) -> elaborate (elaborate.py) -> typed graph (graph.py)
    -> shape inference (shapes.py) -> backends (backends/torch.py, backends/keras.py)

Nothing on this path imports torch or tensorflow.
"""

from __future__ import annotations

import contextlib
import gc
import os
import stat
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from typing import TypeVar

from .elaborate import elaborate
from .errors import ArchError
from .graph import Elaborated, Value
from .shapes import Expander
from .values import parse_sets, parse_value  # noqa: F401 - the command line's values, here as before

TARGETS = ("torch", "keras")

@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off for the duration, then as it was. The compiler makes
    few reference cycles, but it allocates many objects, and every allocation burst makes the
    collector rescan everything still alive: the growing syntax tree and graph, again and again
    (a 10,000-layer compile took twice as long with it on). Garbage made meanwhile is collected
    after, as usual."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()


T = TypeVar("T")

DEEP_STACK_BYTES = 512 << 20  # address space; memory is used only as deep as the recursion goes
DEEP_RECURSION_LIMIT = 200_000  # frames: blocks nested ~20,000 deep
_deep = threading.local()


def deep(fn: Callable[..., T], *args, **kwargs) -> T:
    """fn(*args, **kwargs), run on a thread with a deep stack and Python's recursion limit raised to
    match while it runs. Shape inference and code generation walk block instances recursively, a
    few frames per level of nesting: on the main thread's stack and limit, blocks nested ~150 deep
    would be too deep. Returns what fn returns and raises what it raises, in the calling thread; a
    call made from inside fn runs directly."""
    if getattr(_deep, "active", False):
        return fn(*args, **kwargs)
    outcome: list = []

    def run() -> None:
        _deep.active = True
        try:
            outcome.append((True, fn(*args, **kwargs)))
        except BaseException as e:  # noqa: BLE001 - handed to the caller as it is
            outcome.append((False, e))

    try:
        previous = threading.stack_size(DEEP_STACK_BYTES)
    except (ValueError, RuntimeError):  # a platform that cannot set it: as deep as the usual stack goes
        return fn(*args, **kwargs)
    try:
        worker = threading.Thread(target=run, name="archdsl", daemon=True)
        worker.start()
    finally:
        threading.stack_size(previous)
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, DEEP_RECURSION_LIMIT))
    try:
        worker.join()
    finally:
        sys.setrecursionlimit(limit)
    ok, value = outcome[0]
    if not ok:
        raise value
    return value


def load(spec: str, overrides: dict[str, Value] | None = None) -> Elaborated:
    """Parse, elaborate and shape-check a spec for one setting of its network parameters."""
    with collector_paused():
        return deep(lambda: Expander(elaborate(spec)).run(overrides))


OPTIMIZATIONS = ("inference",)


def generate(elab: Elaborated, target: str, optimize: str | None = None) -> str:
    """Generated source code for a target ("torch" or "keras"); `optimize="inference"` gives the
    PyTorch emission for inference (in-place activations, batch norms folded, channels-last)."""
    if optimize is not None and optimize not in OPTIMIZATIONS:
        raise ArchError(f"unknown optimization '{optimize}' (optimizations: {', '.join(OPTIMIZATIONS)})")
    with collector_paused():
        return deep(_generate, elab, target, optimize)


def _generate(elab: Elaborated, target: str, optimize: str | None) -> str:
    if target == "torch":
        from .backends import torch as backend

        return backend.emit(elab, optimize)
    if target == "keras":
        if optimize is not None:
            raise ArchError(f"--optimize {optimize} is for --target torch; Keras models are optimized by "
                            "TensorFlow's own graph compiler (XLA)")
        from .backends import keras as backend_keras

        return backend_keras.emit(elab)
    raise ArchError(f"unknown target '{target}' (targets: {', '.join(TARGETS)})")


def verify(elab: Elaborated) -> None:
    """Raise the error that `compile` would report for some target, if any: `check` accepts exactly what
    both backends compile. The code generated is thrown away; a backend error says which target."""
    for target in TARGETS:
        try:
            generate(elab, target)
        except ArchError as err:
            err.notes.append(f"`archdsl compile --target {target}` cannot generate this, so check reports it")
            raise


def compile_spec(spec: str, target: str, overrides: dict[str, Value] | None = None) -> str:
    if target not in TARGETS:
        raise ArchError(f"unknown target '{target}' (targets: {', '.join(TARGETS)})")
    return generate(load(spec, overrides), target)


_writing: set[str] = set()  # temporary files write_atomically has made and not yet renamed over their target


def abandon_writes() -> None:
    """Remove the temporary files of writes still under way. The command line calls it when it is
    interrupted: the command runs on another thread (deep), which an interrupt does not stop, so a
    write it was in the middle of would otherwise leave its temporary file next to the target."""
    for tmp in list(_writing):
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def write_atomically(path: str, text: str | bytes) -> None:
    """Write a file so that it is either replaced whole or left as it was: text as UTF-8 with
    newline line ends, bytes (an SVG or PNG from dot) as they are. A path that exists and is not a
    regular file (/dev/null, a named pipe, a terminal) is written in place: renaming over it would
    replace the device or pipe with a file."""
    if os.path.exists(path) and not stat.S_ISREG(os.stat(path).st_mode):
        with open(path, "wb" if isinstance(text, bytes) else "w", **({} if isinstance(text, bytes) else
                                                                      {"encoding": "utf-8", "newline": "\n"})) as out:
            out.write(text)
        return
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".archdsl-", suffix=".tmp", dir=directory)
    _writing.add(tmp)
    try:
        f = os.fdopen(fd, "wb") if isinstance(text, bytes) else os.fdopen(fd, "w", encoding="utf-8", newline="\n")
        with f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        if os.path.exists(path):
            os.chmod(tmp, os.stat(path).st_mode & 0o7777)
        else:
            os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    finally:
        _writing.discard(tmp)
