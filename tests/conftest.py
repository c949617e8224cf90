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
