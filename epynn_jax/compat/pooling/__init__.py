"""EpyNN-compatible ``pooling`` package (facade over the functional core)."""
