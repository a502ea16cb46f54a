"""EpyNN-compatible ``network`` package (facade over the functional core)."""
