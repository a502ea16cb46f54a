"""EpyNN-compatible ``commons`` package (facade over the functional core)."""
