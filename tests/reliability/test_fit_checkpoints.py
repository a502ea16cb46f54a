"""fit with checkpoints: exact resume, periodic and best checkpoints, Ctrl-C."""

from __future__ import annotations

import os
import signal

import chex
import jax
import numpy as np
import pytest
import reliability_problem as problem
from reliability_problem import KW, NET, same_tree

from epynn_jax import layers, network
from epynn_jax.errors import ModelFileError, TrainingInterrupted
from epynn_jax.io import Checkpoints, load_checkpoint, load_model, save_checkpoint
from epynn_jax.maths import metrics


@pytest.fixture(scope="module")
def full_run():
    """The uninterrupted reference run of the shared problem."""
    return problem.reference_run()


DATA = problem.data()


def _fit(**kw):
    args = {**KW, "key": problem.train_key(), **kw}
    return network.fit(NET, problem.params0(), DATA, **args)


def _stop_after(n):
    return lambda epoch, history: epoch + 1 < n


@pytest.fixture(scope="module")
def half_run(tmp_path_factory):
    """The first 3 of 6 epochs, stopped by a callback, checkpointed at the end."""
    directory = tmp_path_factory.mktemp("half")
    return directory, _fit(checkpoints=Checkpoints(directory), callbacks=[_stop_after(3)])


def test_resume_gives_bitwise_the_uninterrupted_run(full_run, half_run):
    directory, half = half_run
    assert half.epochs == 3 and load_model(directory / "last.epynn").epoch == 3
    assert not same_tree(half.params, full_run.params)
    resumed = network.fit(NET, problem.params0(), DATA, resume=load_checkpoint(directory), **KW)
    assert resumed.epochs == KW["epochs"] == full_run.epochs
    chex.assert_trees_all_equal(resumed.params, full_run.params, strict=True)
    # the schedule's step count included
    chex.assert_trees_all_equal(resumed.opt_state, full_run.opt_state, strict=True)
    chex.assert_trees_all_equal(resumed.key, full_run.key, strict=True)
    assert resumed.history == full_run.history


def test_checkpoint_every_n_epochs(tmp_path):
    seen = []

    def record(epoch, history):
        path = tmp_path / "last.epynn"
        seen.append(load_model(path).epoch if path.exists() else None)

    result = _fit(checkpoints=Checkpoints(tmp_path, every=2), callbacks=[record])
    assert seen == [None, 2, 2, 4, 4, 6]
    assert result.checkpoints == {"last": tmp_path / "last.epynn"}


@pytest.mark.parametrize("metric, mode", [("accuracy", "max"), ("CCE", "min")])
def test_best_checkpoint_holds_the_best_epoch(full_run, tmp_path, metric, mode):
    _fit(checkpoints=Checkpoints(tmp_path, best=(metric, "dval", mode)))
    best = load_checkpoint(tmp_path / "best.epynn")
    values = full_run.history[metric]["dval"]
    k = best.epoch
    pick = max if mode == "max" else min
    assert values[k - 1] == pick(values)
    assert all(v != values[k - 1] for v in values[: k - 1])  # the first epoch reaching it
    X, Y = DATA["dval"]  # the saved parameters really score that value
    score = metrics.metric(metric, Y, network.predict(NET, best.params, X))
    np.testing.assert_allclose(float(score), values[k - 1], rtol=1e-6)


def test_ctrl_c_leaves_model_and_checkpoint_consistent(full_run, tmp_path):
    def interrupt(epoch, history):
        if epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(TrainingInterrupted) as info:
        _fit(checkpoints=Checkpoints(tmp_path), callbacks=[interrupt])
    err = info.value
    assert isinstance(err, KeyboardInterrupt)
    assert err.result.epochs == 3 and err.checkpoint == tmp_path / "last.epynn"
    assert all(len(v) == 3 for d in err.result.history.values() for v in d.values())
    saved = load_model(err.checkpoint)
    assert saved.epoch == 3
    chex.assert_trees_all_equal(saved.params, err.result.params, strict=True)
    resumed = network.fit(NET, problem.params0(), DATA, resume=load_checkpoint(err.checkpoint),
                          **KW)
    chex.assert_trees_all_equal(resumed.params, full_run.params, strict=True)


def test_real_sigint_between_epochs(tmp_path):
    def sigint(epoch, history):
        if epoch == 1:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(TrainingInterrupted) as info:
        _fit(checkpoints=Checkpoints(tmp_path), callbacks=[sigint])
    err = info.value
    saved = load_model(err.checkpoint)
    done = err.result.epochs
    assert done in (2, 3) and saved.epoch == done
    assert all(len(v) == done for d in saved.history.values() for v in d.values())
    chex.assert_trees_all_equal(saved.params, err.result.params, strict=True)


def test_interrupt_without_checkpointing_still_returns_the_state():
    def interrupt(epoch, history):
        raise KeyboardInterrupt

    with pytest.raises(TrainingInterrupted) as info:
        _fit(callbacks=[interrupt])
    assert info.value.checkpoint is None and info.value.result.epochs == 1


@pytest.mark.parametrize("kw, match", [
    ({"every": 0}, "positive int"),
    ({"every": True}, "positive int"),
    ({"best": ("accuracy", "dval")}, "triple"),
    ({"best": ("accuracy", "dval", "up")}, "'max' or 'min'"),
    ({"best": ("nonsense", "dval", "max")}, "nonsense"),
])
def test_checkpoint_arguments_are_validated(tmp_path, kw, match):
    with pytest.raises(ValueError, match=match):
        Checkpoints(tmp_path / "ck", **kw)


@pytest.mark.parametrize("best, match", [
    (("precision", "dval", "max"), "not computed"),
    (("accuracy", "dtest", "max"), "not evaluated"),
])
def test_checkpoint_policy_is_checked_against_the_fit(tmp_path, best, match):
    with pytest.raises(ValueError, match=match):
        _fit(checkpoints=Checkpoints(tmp_path / "ck", best=best))
    assert not (tmp_path / "ck").exists()  # refused before anything was made


def test_checkpoint_directory_must_not_be_a_file(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(ValueError, match="not a directory"):
        Checkpoints(tmp_path / "f")


def test_resume_takes_a_loaded_checkpoint_not_a_path(half_run):
    directory, _ = half_run
    with pytest.raises(TypeError, match="load_checkpoint"):
        network.fit(NET, problem.params0(), DATA, resume=directory, **KW)


def test_resume_on_other_data_is_refused_unless_intended(half_run):
    directory, _ = half_run
    X, Y = DATA["dtrain"]
    other = {**DATA, "dtrain": (X[:-3], Y[:-3])}  # same shapes, another N
    with pytest.raises(ValueError, match=r"other data \(splits \['dtrain'\]"):
        network.fit(NET, problem.params0(), other, resume=load_checkpoint(directory), **KW)
    flipped = {**DATA, "dtrain": (X[::-1], Y[::-1])}  # same N, other content
    with pytest.raises(ValueError, match="allow_new_data=True"):
        network.fit(NET, problem.params0(), flipped, resume=load_checkpoint(directory), **KW)
    done = network.fit(NET, problem.params0(), other, resume=load_checkpoint(directory),
                       allow_new_data=True, **KW)
    assert done.epochs == KW["epochs"]


def test_resume_with_another_split_names_the_difference(half_run):
    directory, _ = half_run
    more = {**DATA, "dtest": DATA["dval"]}
    with pytest.raises(ValueError) as info:
        network.fit(NET, problem.params0(), more, resume=load_checkpoint(directory),
                    allow_new_data=True, **KW)
    msg = str(info.value)
    assert "splits ['dtrain', 'dval'] in the checkpoint, ['dtest', 'dtrain', 'dval'] in this " \
        "fit" in msg and "metrics" not in msg


def test_resume_warns_only_when_the_schedule_depends_on_the_total(tmp_path, recwarn):
    from epynn_jax import Schedule

    for sched, warns in ((Schedule(0.05), False), (Schedule(0.05, "exp_decay"), True),
                         (Schedule(0.05, "exp_decay", decay_k=0.1, cycle_epochs=2), False)):
        d = tmp_path / sched.schedule / str(sched.decay_k)
        _fit(checkpoints=Checkpoints(d), schedule=sched, epochs=2)
        recwarn.clear()
        network.fit(NET, problem.params0(), DATA, resume=load_checkpoint(d),
                    **{**KW, "schedule": sched, "epochs": 3})
        assert any("will not match" in str(w.message) for w in recwarn.list) == warns, sched


def test_resume_mismatches_are_refused(half_run, tmp_path):
    directory, _ = half_run
    with pytest.raises(ValueError, match="batch_size"):
        network.fit(NET, problem.params0(), DATA, resume=load_checkpoint(directory),
                    **{**KW, "batch_size": 5})
    with pytest.raises(ValueError, match="beyond epochs"):
        network.fit(NET, problem.params0(), DATA, resume=load_checkpoint(directory),
                    **{**KW, "epochs": 2})
    other = network.build([layers.Dense(2, "softmax")], (5,))
    p = network.init(other, jax.random.key(0))
    path = save_checkpoint(tmp_path / "o.epynn", other, p, opt_state=(), key=jax.random.key(0),
                           epoch=1)
    with pytest.raises(ValueError, match="another architecture"):
        network.fit(NET, problem.params0(), DATA, resume=load_checkpoint(path), **KW)
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "none.epynn")
    (tmp_path / "junk.epynn").write_bytes(b"junk")
    with pytest.raises(ModelFileError):
        load_checkpoint(tmp_path / "junk.epynn")
