"""Shared by the benchmark scripts: paths, timing helpers (interleaved repeats, medians), and the
machine/version facts that go at the top of the results. Imports neither torch nor tensorflow."""

from __future__ import annotations

import gc
import json
import math
import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks"
PYTHON = sys.executable


def median(xs: list[float]) -> float:
    return float(statistics.median(xs)) if xs else float("nan")


def spread(xs: list[float]) -> float:
    """Interquartile range relative to the median: a rough noise figure for one series."""
    if len(xs) < 4:
        return (max(xs) - min(xs)) / median(xs) if xs and median(xs) else float("nan")
    q = statistics.quantiles(xs, n=4)
    return (q[2] - q[0]) / median(xs)


def interleaved(fns: dict[str, Callable[[], object]], repeats: int, warmup: int = 1,
                sync: Callable[[], None] | None = None, min_sample_s: float = 0.0) -> dict[str, list[float]]:
    """Time every function once per repeat, alternating their order (ABBA...) so that a drift in
    the machine's load falls on all of them alike; warm-up calls are not timed, and the cyclic
    garbage collector runs between samples, not inside them. With min_sample_s,
    each timed sample is that many calls in a row that the slowest function's takes at least
    min_sample_s (the same count for all, measured in the warm-up), and the time is per call: on
    a shared machine a single call of a 60 ms model is too short a sample to tell 2% apart."""
    names = list(fns)

    def call(n: str) -> float:
        t = time.perf_counter()
        fns[n]()
        if sync:
            sync()
        return time.perf_counter() - t

    slowest = 0.0
    for _ in range(max(1, warmup) if min_sample_s else warmup):
        for n in names:
            slowest = max(slowest, call(n))
    calls = max(1, math.ceil(min_sample_s / slowest)) if min_sample_s and slowest > 0 else 1
    times: dict[str, list[float]] = {n: [] for n in names}
    collecting = gc.isenabled()
    try:
        for r in range(repeats):
            for n in (names if r % 2 == 0 else names[::-1]):
                # as timeit does: no cyclic garbage collection inside a sample, whose pause would
                # fall on whichever function happened to be running
                gc.collect()
                gc.disable()
                times[n].append(sum(call(n) for _ in range(calls)) / calls)
                if collecting:
                    gc.enable()
    finally:
        if collecting:
            gc.enable()
    return times


def ratio_stats(gen: list[float], ref: list[float]) -> dict:
    """The goal's ratio: the median over repeats of gen[i] / ref[i], each pair timed back to back,
    so that a drift of the machine's speed over the run (seen here: 30% within a minute) cancels
    in each ratio instead of entering the medians of the two series unevenly. Also the ratio of
    the two medians and the range of the per-repeat ratios, a view of the noise."""
    pairs = [g / r for g, r in zip(gen, ref)]
    return {
        "ratio": median(pairs),
        "ratio_of_medians": median(gen) / median(ref),
        "paired_ratio_median": median(pairs),
        "paired_ratio_min": min(pairs),
        "paired_ratio_max": max(pairs),
    }


# Machine facts ------------------------------------------------------------------------------------

def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return None


def version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def archdsl_version() -> str:
    sys.path.insert(0, str(ROOT))
    try:
        from archdsl import __version__
    finally:
        sys.path.pop(0)
    return __version__


def machine() -> dict:
    tf = version("tensorflow-cpu")
    if tf == "not installed":
        tf = version("tensorflow")
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = os.cpu_count()
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "cores_usable": affinity,
        "memory_gib": memory_gib(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "python_executable": PYTHON,
        "versions": {
            "torch": version("torch"),
            "torchvision": version("torchvision"),
            "tensorflow": tf,
            "keras": version("keras"),
            "archdsl": archdsl_version(),
            "lark": version("lark"),
            "jinja2": version("jinja2"),
        },
    }


class Load:
    """How busy the machine was with other work while a part ran: the CPU time all processes used
    (from /proc/stat) minus the CPU time this run used (this process and its waited-for children),
    as a share of the machine's capacity over the wall time; and the load average at the end."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.busy0 = self._busy()
        self.ours0 = self._ours()

    @staticmethod
    def _busy() -> float | None:
        try:
            fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        except (OSError, ValueError):
            return None
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
        return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")

    @staticmethod
    def _ours() -> float:
        s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime

    def stop(self) -> dict:
        wall = time.monotonic() - self.t0
        busy = self._busy()
        ours = self._ours() - self.ours0
        out = {"wall_s": wall, "cpu_ours_s": ours, "loadavg_end": os.getloadavg()[0]}
        if busy is not None and self.busy0 is not None and wall > 0:
            others = max(0.0, busy - self.busy0 - ours)
            out["cpu_others_s"] = others
            out["others_share"] = others / (wall * (os.cpu_count() or 1))
        return out


def write_json(path: Path | str, data) -> None:
    Path(path).write_text(json.dumps(data, indent=1, default=str) + "\n", encoding="utf-8")
