"""Shared fixtures: a scoped float64 switch, the EpyNN 1.2.13 oracle, trace budgets, the
streamed fit's dispatch and read events."""

from __future__ import annotations

import os

# The command and the script runner switch JAX's persistent compilation cache on for
# the rest of their process (epynn_jax.config.setup); the tests call them in-process,
# and must neither write the user's cache nor compile every later test through it.
os.environ["EPYNN_JAX_NO_CACHE"] = "1"

import chex  # noqa: E402
import numpy as np
import pytest

from epynn_jax.testing import x64 as _x64


@pytest.fixture
def x64():
    """Run the test with ``jax_enable_x64`` on (float64 everywhere), then switch it off."""
    with _x64(True):
        yield


def load_epynn():
    """Import EpyNN 1.2.13 (the test oracle) with its one NumPy 2 incompatibility aliased.

    Skips the test when EpyNN is not installed.
    """
    if not hasattr(np, "VisibleDeprecationWarning"):
        np.VisibleDeprecationWarning = np.exceptions.VisibleDeprecationWarning
    return pytest.importorskip("epynn")


@pytest.fixture
def epynn():
    """The EpyNN package (skips when absent)."""
    return load_epynn()


class TraceBudget:
    """How often a library function that is already ``jax.jit``-ed may still be traced,
    checked by ``chex.assert_max_traces``.

    ``chex.assert_max_traces`` counts the calls of a Python function that receive
    tracers, so it must sit *inside* ``jit``; ``network.run_epoch`` and
    ``predict_jit`` are already jit objects, and re-jitting their bodies here would
    test this file's static arguments instead of the library's. What the budget wraps
    instead is a module-level function the jitted body calls *while it is traced*
    (looked up in its module then, never when the compiled program runs), ``calls``
    times per trace: the library's own jit is what is counted, and nothing in the
    library changes for the test.
    """

    def __init__(self, monkeypatch, module, name: str, calls: int = 1):
        self._monkeypatch, self._module, self._name = monkeypatch, module, name
        self._original, self._calls = getattr(module, name), calls

    def allow(self, traces: int) -> None:
        """From now on at most ``traces`` more traces; one more raises ``AssertionError``."""
        chex.clear_trace_counter()
        self._monkeypatch.setattr(self._module, self._name, chex.assert_max_traces(
            self._original, traces * self._calls))

    def exactly_once(self, call) -> None:
        """``call()`` traces exactly once: refused with no trace allowed, fine with one.

        (The refused trace is never cached: the second call traces again.)
        """
        self.allow(0)
        with pytest.raises(AssertionError, match="is traced > 0 times"):
            call()
        self.allow(1)
        call()


@pytest.fixture
def trace_budget(monkeypatch):
    """``trace_budget(module, name, calls=1)``: a :class:`TraceBudget` on ``module.name``,
    which the jitted function under test calls ``calls`` times per trace."""
    return lambda module, name, calls=1: TraceBudget(monkeypatch, module, name, calls)


@pytest.fixture
def epoch_traces(trace_budget):
    """``epoch_traces(splits)``: the :class:`TraceBudget` of ``network.run_epoch``, whose body
    evaluates each of its ``splits`` data splits once per trace."""
    from epynn_jax.network import epoch

    return lambda splits: trace_budget(epoch, "evaluate", splits)


@pytest.fixture
def events(monkeypatch):
    """What a streamed ``fit`` asks of the device, in order: ``'d'`` for each chunk
    dispatched (``streaming.train_chunk``), ``'r'`` for each chunk guard the host reads
    (``streaming.fetch`` of a flag)."""
    from epynn_jax.network import streaming

    seen: list[str] = []
    chunk, fetch = streaming.train_chunk, streaming.fetch

    def dispatch(*a, **k):
        seen.append("d")
        return chunk(*a, **k)

    def read(tree):
        if isinstance(tree, np.ndarray | np.bool_) or getattr(tree, "shape", None) == ():
            seen.append("r")
        return fetch(tree)

    monkeypatch.setattr(streaming, "train_chunk", dispatch)
    monkeypatch.setattr(streaming, "fetch", read)
    return seen


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    """Drop JAX's compiled programs after each test module.

    Every XLA:CPU executable keeps a few memory mappings of its code; a process
    may hold ``vm.max_map_count`` (65,530 by default) of them, and the whole suite
    in one process compiles enough programs to pass that (LLVM then crashes
    compiling the next one). Modules share no compiled programs they rely on.
    """
    yield
    import jax

    jax.clear_caches()
