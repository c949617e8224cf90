"""How the pipeline runs: on a deep stack, with the cyclic garbage collector paused.

Shape inference and code generation walk nested blocks recursively; deep() gives them a thread with a
deep stack and a raised recursion limit. collector_paused() keeps Python's collector from rescanning
the growing syntax tree and graph on every allocation burst.
"""

from __future__ import annotations

import contextlib
import gc
import sys
import threading
from collections.abc import Callable, Iterator
from typing import TypeVar


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
