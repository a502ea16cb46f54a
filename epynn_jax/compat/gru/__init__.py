"""EpyNN-compatible ``gru`` package (facade over the functional core)."""
