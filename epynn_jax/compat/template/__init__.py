"""EpyNN-compatible ``template`` package (facade over the functional core)."""
