"""archdsl: a declarative language for convolutional networks, compiled to PyTorch and Keras."""

__version__ = "0.1.0"
