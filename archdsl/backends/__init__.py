"""Backends: the typed graph (archdsl/core/graph.py) to PyTorch and Keras source code.

Each backend reads only the typed graph: block definitions with symbolic expressions (so a block
becomes one class or one function, reused) and their expanded instances (for the few facts that
depend on the concrete input size, such as the feature count after a flatten).
"""
