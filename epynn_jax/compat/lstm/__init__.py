"""EpyNN-compatible ``lstm`` package (facade over the functional core)."""
