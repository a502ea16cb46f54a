"""EpyNN-compatible ``flatten`` package (facade over the functional core)."""
