"""Test session set-up.

torchvision must be imported before TensorFlow: the other order crashes the interpreter
(a clash of the two frameworks' native libraries, seen with torchvision 0.29 and TensorFlow 2.21).
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import torch  # noqa: F401 (imported first on purpose)
import torchvision
import torchvision.models  # noqa: F401
