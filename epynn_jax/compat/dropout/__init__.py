"""EpyNN-compatible ``dropout`` package (facade over the functional core)."""
