"""Benchmarks: ``python -m benchmarks`` runs the suite (see ``benchmarks/README.md``)."""

import os

# EpyNN's NumPy must run single-threaded, and the variable only counts when it is set
# before NumPy loads: the suite's workers inherit it from here.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
