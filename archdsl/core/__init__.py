"""The compiler's core: the layer catalog, elaboration to the typed graph, and expansion (shape inference)."""
