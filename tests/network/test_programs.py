"""The store of compiled programs (``network/programs.py``): a fresh process finds ``fit``'s
and ``predict``'s programs without tracing them, with the same numbers; a damaged file is
compiled again; what the key cannot see is never stored."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from epynn_jax import config, layers, network
from epynn_jax.layers.dense import Dense
from epynn_jax.network import optim, programs

ROOT = Path(__file__).resolve().parents[2]



def _net(width: int) -> network.Network:
    """A small network; each test its own width, so that no program it stores was compiled
    and run before in this process (XLA:CPU does not serialize an executable that ran)."""
    return network.build([layers.Flatten(), layers.Dense(width, "relu"),
                          layers.Dense(2, "softmax")], (6, 1))


NET = _net(8)
_rng = np.random.default_rng(0)
X = _rng.standard_normal((40, 6, 1))
Y = np.eye(2)[_rng.integers(0, 2, 40)]
DATA = {"dtrain": (X[:30], Y[:30]), "dval": (X[30:], Y[30:])}


@pytest.fixture
def store(tmp_path, monkeypatch):
    """JAX's persistent cache on in ``tmp_path`` (so the store is too), memory cleared."""
    keys = ("jax_enable_compilation_cache", "jax_compilation_cache_dir",
            "jax_persistent_cache_min_compile_time_secs")
    saved = {k: getattr(jax.config, k) for k in keys}
    monkeypatch.delenv("EPYNN_JAX_NO_PROGRAM_STORE", raising=False)
    config.enable_compilation_cache(True, tmp_path)
    programs.clear_memory()
    yield tmp_path / programs.SUBDIR
    programs.clear_memory()
    for k, v in saved.items():
        jax.config.update(k, v)
    config._reset_jax_cache()


def _fit(net=NET, **kw):
    r = network.fit(net, network.init(net, jax.random.key(0)), DATA, epochs=3, batch_size=8,
                    key=jax.random.key(1), **kw)
    return r, np.asarray(network.predict(net, r.params, X[:5]))


def _same(a, b):
    (ra, Aa), (rb, Ab) = a, b
    assert ra.history == rb.history
    for pa, pb in zip(ra.params, rb.params):
        for k in pa:
            np.testing.assert_array_equal(np.asarray(pa[k]), np.asarray(pb[k]))
    np.testing.assert_array_equal(Aa, Ab)


def _files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.glob("*.program") if not p.name.startswith(".")) \
        if directory.exists() else []


def test_off_unless_the_persistent_cache_is_on(store, monkeypatch):
    assert programs.store_dir() == store
    monkeypatch.setenv("EPYNN_JAX_NO_PROGRAM_STORE", "1")
    assert programs.store_dir() is None
    monkeypatch.delenv("EPYNN_JAX_NO_PROGRAM_STORE")
    config.enable_compilation_cache(False)
    assert programs.store_dir() is None
    before = programs.stats()
    _fit()
    assert programs.stats() == before  # neither loaded nor compiled for the store


def test_off_it_keys_nothing(monkeypatch):
    """JAX's switch is on by default; with no cache directory the store is off, and says
    so before computing anything per call (the facade calls it once per epoch)."""
    assert jax.config.jax_compilation_cache_dir is None  # conftest: EPYNN_JAX_NO_CACHE

    def boom(*args):
        raise AssertionError("a key was computed with the store off")

    monkeypatch.setattr(programs, "_leaf", boom)
    monkeypatch.setattr(programs, "_registries", boom)
    r, A = _fit()
    assert A.shape == (5, 2) and np.isfinite(A).all()


def test_a_stored_program_gives_the_numbers_of_a_compiled_one(store, monkeypatch):
    net = _net(9)
    before = programs.stats()
    first = _fit(net)
    assert len(_files(store)) == 2  # the epochs' program and predict's
    assert programs.stats()["compiled"] - before["compiled"] == 2
    programs.clear_memory()  # as a fresh process: read from the files
    loaded = _fit(net)
    assert programs.stats()["loaded"] - before["loaded"] == 2
    _same(first, loaded)
    monkeypatch.setenv("EPYNN_JAX_NO_PROGRAM_STORE", "1")
    _same(first, _fit(net))  # jax.jit's own program


@pytest.mark.parametrize("damage", ["garbage", "truncated", "another version"])
def test_a_damaged_file_is_deleted_and_compiled_again(store, damage):
    net = _net({"garbage": 10, "truncated": 11, "another version": 12}[damage])
    expected = _fit(net)
    assert len(_files(store)) == 2
    for path in _files(store):
        data = path.read_bytes()
        path.write_bytes({"garbage": b"\x00not a program",
                          "truncated": data[: len(data) // 2],
                          "another version": data.replace(b"program 1\n", b"program 0\n", 1),
                          }[damage])
    programs.clear_memory()
    before = programs.stats()
    _same(expected, _fit(net))
    after = programs.stats()
    assert (after["loaded"], after["compiled"]) == (before["loaded"], before["compiled"] + 2)
    # the damaged files were deleted; what is there now (predict's program, written again:
    # the epoch's had run, see _net) reads back whole
    left = _files(store)
    assert len(left) < 2 and all(p.read_bytes().startswith(programs.MAGIC) for p in left)
    programs.clear_memory()
    _fit(net)
    assert programs.stats()["loaded"] == after["loaded"] + len(left)


def test_a_jax_setting_is_in_the_key(store):
    net = _net(13)
    _fit(net)
    with jax.default_matmul_precision("highest"):
        _fit(net)
    assert len(_files(store)) == 4


def test_what_the_key_cannot_see_is_not_stored(store, monkeypatch):
    import optax

    net = _net(14)
    _fit(net, optimizer=optax.sgd(0.01))  # the user's optimizer: its code is not in the key
    assert len(_files(store)) == 1  # predict's only
    assert optim.describe(optax.sgd(0.01).update) is None
    assert "steady" in optim.describe(optim.epynn_sgd().update)

    class MyDense(Dense):  # a layer defined outside epynn_jax
        pass

    mine = network.build([layers.Flatten(), MyDense(2, "softmax")], (6, 1))
    assert programs.describe_net(mine) is None
    assert programs.describe_net(NET) == repr(NET)

    from epynn_jax.maths import activations
    monkeypatch.setitem(activations.ACTIVATIONS, "relu",
                        (lambda x, hp=None: x, activations.ACTIVATIONS["relu"][1]))
    assert programs._registries() is None
    programs.clear_memory()
    _fit(_net(15))
    assert len(_files(store)) == 1


def test_the_least_recently_used_go_and_no_temporary_file_stays(store, monkeypatch):
    store.mkdir(parents=True)
    killed = store / ".tmp-killed.part"  # what a process killed while saving leaves
    killed.write_bytes(b"half a progr")
    os.utime(killed, (1.0, 1.0))
    recent = store / ".tmp-writing.part"  # another process saving now
    recent.write_bytes(b"half a progr")
    monkeypatch.setattr(programs, "MAX_PROGRAMS", 1)
    _fit(_net(16))
    assert len(_files(store)) == 1
    assert sorted(store.glob(".tmp-*")) == [recent]


def test_a_file_too_large_to_be_a_program_is_not_read(store, monkeypatch):
    net = _net(17)
    expected = _fit(net)
    monkeypatch.setattr(programs, "MAX_BYTES", 100)
    programs.clear_memory()
    before = programs.stats()
    _same(expected, _fit(net))
    assert programs.stats()["loaded"] == before["loaded"]


@pytest.mark.parametrize("obstacle", ["a directory for a program", "a file for the store"])
def test_what_stands_in_the_stores_way_is_compiled_around(store, monkeypatch, obstacle):
    """A path the store can neither read, delete nor write (a directory where a program
    file goes, a file where its directory goes): ``fit`` and ``predict`` compile as
    without the store, with the same numbers, raise nothing and leave the path as it is."""
    net = _net({"a directory for a program": 18, "a file for the store": 19}[obstacle])
    if obstacle == "a directory for a program":
        expected = _fit(net)
        paths = _files(store)
        assert len(paths) == 2
        for path in paths:
            path.unlink()
            (path / "inside").mkdir(parents=True)
    else:
        monkeypatch.setenv("EPYNN_JAX_NO_PROGRAM_STORE", "1")
        expected = _fit(net)
        monkeypatch.delenv("EPYNN_JAX_NO_PROGRAM_STORE")
        store.write_bytes(b"not a directory")
    programs.clear_memory()
    before = programs.stats()
    _same(expected, _fit(net))
    after = programs.stats()
    assert (after["loaded"], after["compiled"]) == (before["loaded"], before["compiled"] + 2)
    if obstacle == "a directory for a program":
        assert all((path / "inside").is_dir() for path in paths)
    else:
        assert store.read_bytes() == b"not a directory"


SCRIPT = """
import json, numpy as np, jax
from epynn_jax import config, layers, network
from epynn_jax.network import programs
config.setup()
net = network.build([layers.Flatten(), layers.Dense(8, 'relu'), layers.Dense(2, 'softmax')],
                    (6, 1))
rng = np.random.default_rng(0)
X = rng.standard_normal((40, 6, 1)); Y = np.eye(2)[rng.integers(0, 2, 40)]
traced = []
jax.monitoring.register_event_time_span_listener(
    lambda event, start, end, **kw: traced.append(kw.get('fun_name'))
    if event == '/jax/core/compile/jaxpr_trace_duration' else None)
r = network.fit(net, network.init(net, jax.random.key(0)),
                {'dtrain': (X[:30], Y[:30]), 'dval': (X[30:], Y[30:])}, epochs=3, batch_size=8)
A = network.predict(net, r.params, X[:5])
print('RESULT', json.dumps({'stats': programs.stats(), 'history': r.history,
                            'A': np.asarray(A).tolist(), 'traced': traced}))
"""


def _fresh(script: str, cache_home: Path) -> dict:
    """Run ``script`` in a fresh process with the cache (and the store) in ``cache_home``;
    the JSON it prints after ``RESULT``."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("EPYNN_JAX_NO_CACHE", "EPYNN_JAX_NO_PROGRAM_STORE",
                        "JAX_COMPILATION_CACHE_DIR")}
    env.update(XDG_CACHE_HOME=str(cache_home), PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", script], env=env, cwd=ROOT, text=True,
                         capture_output=True, timeout=300)
    assert out.returncode == 0, out.stderr
    line = [x for x in out.stdout.splitlines() if x.startswith("RESULT")][0]
    return json.loads(line[len("RESULT"):])


def test_a_fresh_process_reads_the_programs_without_tracing_them(tmp_path):
    first, second = _fresh(SCRIPT, tmp_path), _fresh(SCRIPT, tmp_path)
    assert first["stats"]["compiled"] == 2 and first["stats"]["loaded"] == 0
    assert second["stats"]["compiled"] == 0 and second["stats"]["loaded"] == 2
    assert {"run_epochs", "predict_jit"} <= set(first["traced"])
    assert not {"run_epochs", "predict_jit"} & set(second["traced"])
    assert second["history"] == first["history"] and second["A"] == first["A"]


FACADE = """
import json, numpy as np
from epynn_jax import config
from epynn_jax.compat import set_quiet
from epynn_jax.compat.commons.maths import relu, sigmoid
from epynn_jax.compat.dense.models import Dense
from epynn_jax.compat.embedding.models import Embedding
from epynn_jax.compat.network.models import EpyNN
from epynn_jax.network import programs
config.setup()
set_quiet(True)
rng = np.random.default_rng(3)
X = rng.normal(size=(48, 5)); Y = (X[:, 0] > 0).astype(int)
emb = Embedding(X_data=X, Y_data=Y, X_scale=True, Y_encode=True, relative_size=(2, 1, 1),
                batch_size=8)
model = EpyNN([emb, Dense(6, relu), Dense(2, sigmoid)], name='store')
model.initialize(loss='MSE', seed=1, metrics=['accuracy'])
model.train(2, init_logs=False)
A = model.embedding.dtrain.A
print('RESULT', json.dumps({'stats': programs.stats(), 'A': np.asarray(A).tolist(),
                            'W': np.asarray(model.layers[1].p['W']).tolist()}))
"""


def test_the_facade_reads_the_core_programs_too(tmp_path):
    first, second = _fresh(FACADE, tmp_path), _fresh(FACADE, tmp_path)
    assert first["stats"]["compiled"] == 2 and first["stats"]["loaded"] == 0  # epoch, forward
    assert second["stats"]["compiled"] == 0 and second["stats"]["loaded"] == 2
    assert second["A"] == first["A"] and second["W"] == first["W"]
