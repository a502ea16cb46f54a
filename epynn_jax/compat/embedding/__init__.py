"""EpyNN-compatible ``embedding`` package (facade over the functional core)."""
