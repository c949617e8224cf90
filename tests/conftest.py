"""Test session set-up.

torchvision must be imported before TensorFlow: the other order crashes the interpreter
(a clash of the two frameworks' native libraries, seen with torchvision 0.29 and TensorFlow 2.21).
"""

import atexit
import gc
import os
import shutil
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
# The suite runs in pytest-xdist workers (`-n 2` in pyproject.toml's addopts): each worker's frameworks get
# an equal share of the cores for their thread pools, where they would otherwise each start one thread
# per core and take turns on them. Set before torch and TensorFlow start their pools.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _WORKERS > 1:
    for _var in ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
        os.environ.setdefault(_var, str(max(1, (os.cpu_count() or 1) // _WORKERS)))
# The command line keeps syntax trees on disk (archdsl.language.parser.disk_cache): the tests' commands keep
# theirs in a folder of the session's own, never in the user's ~/.cache.
os.environ["ARCHDSL_CACHE_DIR"] = tempfile.mkdtemp(prefix="archdsl-test-cache-")
atexit.register(shutil.rmtree, os.environ["ARCHDSL_CACHE_DIR"], ignore_errors=True)

import pytest
import torch  # noqa: F401 (imported first on purpose)
import torchvision
import torchvision.models  # noqa: F401


@pytest.fixture(autouse=True)
def _collector_stays_on():
    """No test may leave Python's cyclic garbage collector off: the session builds hundreds of torch
    and Keras models, full of reference cycles, and without the collector none of them is freed (a
    CI run once ran out of memory that way, after archdsl.cli.main() had turned it off)."""
    yield
    if not gc.isenabled():
        gc.enable()
        pytest.fail("this test left the cyclic garbage collector off (gc.disable() without gc.enable())")


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the groups
def pytest_collection_modifyitems(config, items):
    """Tests that share the value of a module-scoped fixture (a zoo network, a compiled spec, a language
    server) run in one xdist worker (`--dist loadgroup`), which builds that value once; every other test
    goes to whichever worker is free."""
    for item in items:
        defs = getattr(item, "_fixtureinfo", None)
        shared = sorted(name for name, d in (defs.name2fixturedefs.items() if defs else ()) if d and d[-1].scope == "module")
        if shared:
            callspec = getattr(item, "callspec", None)
            key = ",".join(f"{n}={callspec.indices[n]}" if callspec and n in callspec.indices else n for n in shared)
            item.add_marker(pytest.mark.xdist_group(f"{item.module.__name__}:{key}"))
