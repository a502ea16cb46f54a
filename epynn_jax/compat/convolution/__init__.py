"""EpyNN-compatible ``convolution`` package (facade over the functional core)."""
