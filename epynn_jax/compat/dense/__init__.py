"""EpyNN-compatible ``dense`` package (facade over the functional core)."""
