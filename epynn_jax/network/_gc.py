"""Python's cyclic garbage collector paused while a compiled function may be traced.

Tracing a program (an epoch, a prediction, the parameters' draws) creates tens of
thousands of short-lived Python objects. They trigger the collector's full passes
over the whole heap, most of it JAX's own long-lived objects, which find almost
nothing to free: one such pass was 0.035 s of the 0.09 s trace of the MLP's epoch on
a 2-core CPU, and the collections during ``fit``'s checks and first trace about
0.05 s of its first call. Reference counting still frees every acyclic object
while the collector is paused; the few cycles made meanwhile are collected at its
next pass after it resumes.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def paused() -> Iterator[None]:
    """The collector off inside the block (left as it was when it was already off).

    Only around library code that runs for a bounded time (checks, a compiled call
    and its trace), never around a user's callback or data loader."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
