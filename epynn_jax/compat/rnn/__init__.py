"""EpyNN-compatible ``rnn`` package (facade over the functional core)."""
