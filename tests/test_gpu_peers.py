"""benchmarks/gpu_peers.py: it runs on a CPU (``--quick``), reports missing peers as
skipped, counts FLOPs as documented, and its ratios are paired round by round.

The subprocess run is the one place anything is timed; its figures are only checked
to exist and be finite (speed is judged from the benchmark's own output, never here).
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import gpu_peers, peers, suite

ROOT = Path(__file__).resolve().parents[1]


def _parse_table(lines: list[str]) -> list[dict[str, str]]:
    """Every row of the markdown tables whose header starts with ``| workload |``."""
    rows, heads = [], None
    for line in lines:
        if line.startswith("| workload |"):
            heads = [c.strip() for c in line.strip("|").split("|")]
        elif heads and line.startswith("|") and not line.startswith("|---"):
            rows.append(dict(zip(heads, (c.strip() for c in line.strip("|").split("|")))))
        elif not line.startswith("|"):
            heads = None
    return rows


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """One ``--quick`` run on this machine's CPU (the RNN workload: the recurrent path,
    the slowest to compile; whatever peers are installed), the JAX rows' first epochs
    two at a time (the threaded start a GPU host uses)."""
    out = tmp_path_factory.mktemp("gpu_peers") / "run.json"
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in [str(ROOT), env.get("PYTHONPATH")] if p)
    proc = subprocess.run([sys.executable, "-m", "benchmarks.gpu_peers", "--quick",
                           "--workloads", "RNN", "--compile-threads", "2", "--json", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout, json.loads(out.read_text())


def test_quick_run_has_the_epynn_jax_rows(quick_run):
    stdout, res = quick_run
    rows = _parse_table(stdout.splitlines())
    got = {(r["implementation"], r["policy"]): r for r in rows if r["workload"] == "RNN"}
    for label, policy in (("epynn_jax functional", "float32"),
                          ("epynn_jax functional", "bfloat16"), ("epynn_jax facade", "float32")):
        ms = float(got[(label, policy)]["ms/epoch (best)"])
        assert math.isfinite(ms) and ms > 0, (label, policy)
    cell = res["cells"][0]
    assert cell["size"] == "quick" and cell["cfg"]["steps"] == 16
    timed = cell["result"]["rows"]["functional/float32"]
    assert len(timed["timings_s"]) == timed["rounds"] == 2
    assert timed["compile_threads"] == 2 and "2 at a time" in stdout
    assert res["peaks"]["bfloat16"]["matmul_dtype"] == "bfloat16"


def test_quick_run_names_every_missing_peer(quick_run):
    stdout, res = quick_run
    rows = _parse_table(stdout.splitlines())
    shown = {r["implementation"] for r in rows}
    for peer, module in (("flax", "flax"), ("equinox", "equinox"), ("torch", "torch")):
        if importlib.util.find_spec(module) is None:
            assert f"- {peer}: skipped: {module} not installed" in stdout
            assert gpu_peers.LABELS[peer] not in shown
            assert res["notes"][peer] == f"skipped: {module} not installed"
        else:  # an installed peer has its two rows and a ratio to the best peer
            for policy in peers.POLICIES:
                row = next(r for r in rows if r["implementation"] == gpu_peers.LABELS[peer]
                           and r["policy"] == policy)
                assert float(row["ms/epoch (best)"]) > 0 and float(row["vs best peer"]) > 0


def test_available_names_the_missing_package(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name.split(".")[0] == "equinox"
                        else real(name, *a))
    have = peers.available()
    assert have["equinox"] == "equinox not installed"
    with pytest.raises(ModuleNotFoundError, match="equinox not installed"):
        peers.make_epoch("equinox", suite.WORKLOADS["Dense"], "float32", {})


def test_make_epoch_refuses_unknown_names():
    with pytest.raises(ValueError, match="impl"):
        peers.make_epoch("keras", suite.WORKLOADS["Dense"], "float32", {})
    with pytest.raises(ValueError, match="policy"):
        peers.make_epoch("flax", suite.WORKLOADS["Dense"], "float16", {})


# -- FLOPs, counted by hand -------------------------------------------------------------


def test_flops_of_a_small_dense_epoch():
    """Flatten(4 x 1) -> Dense(3) -> Dense(2): 2·4·3 + 2·3·2 = 36 FLOPs per sample forward;
    2 batches of 3 trained (x3: forward + backward) and 10 samples evaluated:
    3·36·6 + 36·10 = 648 + 360 = 1008."""
    cfg = dict(kind="dense", n=10, n_train=7, steps=4, features=1, width=3, batch=3)
    assert gpu_peers.epoch_flops(cfg) == 1008


def test_flops_of_a_small_lstm_epoch():
    """LSTM(2) over 3 steps of 1 feature: per step 4 gates x 2·(1·2 + 2·2) = 48, so 144,
    plus the output Dense 2·2·2 = 8: 152 per sample. 1 batch of 4 trained, 5 evaluated:
    3·152·4 + 152·5 = 1824 + 760 = 2584."""
    cfg = dict(kind="lstm", n=5, n_train=4, steps=3, features=1, hidden=2, batch=4)
    assert gpu_peers.epoch_flops(cfg) == 2584


def test_flops_of_a_small_cnn_epoch():
    """Convolution(2, 2x2, stride 2) on 4x4x1: 2x2 outputs x 2·4·2 = 64; pooled 1x1x2 ->
    Dense(2): 2·2·2 = 8; 72 per sample. 2 batches of 1, 3 evaluated: 3·72·2 + 72·3 = 648."""
    cfg = dict(kind="cnn", n=3, n_train=2, side=4, filters=2, kernel=2, pool=2, batch=1)
    assert gpu_peers.epoch_flops(cfg) == 648


def test_sizes():
    q = gpu_peers.sized(suite.WORKLOADS["CNN"], "quick")
    assert (q["n"], q["n_train"], q["batch"], q["side"]) == (96, 64, 16, 16) and "steps" not in q
    x = gpu_peers.sized(suite.WORKLOADS["LSTM"], "xlarge")
    assert (x["n"], x["n_train"], x["batch"], x["hidden"]) == (65536, 43712, 1024, 80)
    assert gpu_peers.sized(suite.WORKLOADS["Dense"], "large") == suite.sized(
        suite.WORKLOADS["Dense"], "large")


# -- the report, from given timings ------------------------------------------------------


def _row(ms, first=1.0):
    """A timed row from its per-round timings in milliseconds."""
    timings = [t / 1e3 for t in ms]
    return {"timings_s": timings, "epoch_s": min(timings),
            "epoch_median_s": sorted(timings)[len(timings) // 2], "first_call_s": first}


def test_report_ratio_is_paired_against_the_best_peer_of_the_same_policy():
    rows = {"functional/float32": _row([1.0, 2.0, 2.0]),
            "functional/bfloat16": _row([0.5, 0.5, 0.5]),
            "flax/float32": _row([1.5, 2.2, 2.2]),
            "torch/float32": _row([2.0, 2.0, 2.0]),
            "torch/bfloat16": {**_row([1.0, 1.0, 1.0]), "note": "LSTM computed in float32"},
            "equinox/bfloat16": {"error": "FloatingPointError: non-finite"}}
    res = {"peaks": {"float32": {"matmul_flops": 1e12, "matmul_n": 8, "matmul_precision": "x"},
                     "bfloat16": {"matmul_flops": 4e12, "matmul_n": 8,
                                  "matmul_precision": "x"}},
           "notes": {"torch": "skipped: torch not installed"},
           "cells": [{"size": "large", "workload": "RNN", "epoch_flops": 1e9,
                      "cfg": {"n": 8, "n_train": 4, "batch": 2, "hidden": 10},
                      "result": {"rows": rows}}]}
    lines = gpu_peers.render(res)
    got = {(r["implementation"], r["policy"]): r for r in _parse_table(lines)}
    # torch is the fastest float32 peer (median 2.0 ms against flax's 2.2 ms, although
    # flax has the best single timing); the ratio is the median of 1.0/2.0, 2.0/2.0,
    # 2.0/2.0 = 1.00 (best / best would say 0.50)
    assert got[("epynn_jax functional", "float32")]["vs best peer"] == "1.00"
    assert got[("PyTorch", "float32")]["vs best peer"] == "1.00"
    assert got[("Flax NNX", "float32")]["vs best peer"] == "1.10"  # median of .75, 1.1, 1.1
    assert got[("epynn_jax functional", "bfloat16")]["vs best peer"] == "0.50"
    # 1 GFLOP in 1 ms = 1 TFLOP/s: 100 % of the f32 peak, 25 % of the bf16 peak
    assert got[("epynn_jax functional", "float32")]["% f32 peak"] == "100.0"
    assert got[("epynn_jax functional", "float32")]["% bf16 peak"] == "25.0"
    assert got[("epynn_jax functional", "float32")]["ms/epoch (best)"] == "1.00"
    assert got[("epynn_jax functional", "float32")]["ms/epoch (median)"] == "2.00"
    assert got[("Equinox", "bfloat16")]["ms/epoch (best)"].startswith("error")
    assert "- torch: skipped: torch not installed" in lines
    assert "- RNN, PyTorch bfloat16: LSTM computed in float32" in lines


def test_report_of_a_cell_the_budget_left_out():
    res = {"cells": [{"size": "xlarge", "workload": "GRU", "epoch_flops": 1, "cfg": {},
                      "result": {"skipped": "time budget spent"}}]}
    row = _parse_table(gpu_peers.render(res))[0]
    assert row["workload"] == "GRU" and row["implementation"] == "skipped: time budget spent"


# -- the peers themselves (where installed): the same models as epynn_jax ----------------


def _param_count(impl: str, state) -> int:
    if impl == "torch":
        return sum(p.numel() for p in state.parameters())
    import jax

    return sum(x.size for x in jax.tree.leaves(state[0]))


@pytest.mark.parametrize("impl", ["flax", "equinox", "torch"])
@pytest.mark.parametrize("workload", ["Dense", "CNN"])
def test_peer_models_have_the_parameters_of_the_epynn_jax_model(impl, workload):
    """Dense and CNN: the same parameter count as ``network.init`` gives (the recurrent
    cells differ in their biases from library to library), and one epoch runs."""
    if peers.available()[impl]:
        pytest.skip(peers.available()[impl])
    import jax

    from epynn_jax import network

    cfg = gpu_peers.sized(suite.WORKLOADS[workload], "quick")
    layers, shape = suite.functional_net(cfg)
    net = network.build(layers, shape)
    want = sum(x.size for x in jax.tree.leaves(network.init(net, jax.random.key(0))))
    state, epoch = peers.make_epoch(impl, cfg, "float32", gpu_peers._data(cfg))
    assert _param_count(impl, state) == want
    state, scores = epoch(state)
    assert set(scores) == {"dtrain", "dval"}
    assert all(0 <= acc <= 1 and 0 <= mse <= 1 for acc, mse in scores.values())
