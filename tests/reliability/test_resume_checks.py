"""fit(resume=...) refuses a checkpoint that cannot continue this run, before training:
a data fingerprint of the wrong type, a batch beyond the epoch, another schedule."""

from __future__ import annotations

import shutil

import chex
import numpy as np
import optax
import pytest
import reliability_problem as problem
from reliability_problem import KW, NET

from epynn_jax import network
from epynn_jax.io import Checkpoints, load_checkpoint
from epynn_jax.maths.schedules import Schedule

DATA = problem.data()  # 30 training samples, batches of 8: 3 batches per epoch


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """The checkpoint of the shared problem after 1 of its 6 epochs."""
    directory = tmp_path_factory.mktemp("one_epoch")
    network.fit(NET, problem.params0(), DATA, key=problem.train_key(),
                checkpoints=Checkpoints(directory), callbacks=[lambda e, h: False], **KW)
    ck = load_checkpoint(directory)
    assert (ck.epoch, ck.batch) == (1, 0)
    return ck


def _resume(ck, **kw):
    return network.fit(NET, None, DATA, resume=ck, **{**KW, **kw})


@pytest.mark.parametrize("data", [5, "abc", [1], {"dtrain": 5}])
def test_a_data_fingerprint_of_the_wrong_type_is_named(checkpoint, data):
    ck = checkpoint._replace(metadata={**checkpoint.metadata, "data": data})
    with pytest.raises(ValueError, match=r"fit: resume checkpoint: metadata 'data' \(the data "
                                         r"fingerprint\)"):
        _resume(ck)


def test_a_batch_beyond_the_epoch_is_refused(checkpoint):
    with pytest.raises(ValueError, match=r"fit: resume checkpoint is 4 batches into epoch 1, "
                                         r"but an epoch of this fit has 3 batches"):
        _resume(checkpoint._replace(batch=4))


def test_every_batch_done_but_not_evaluated_resumes_to_the_uninterrupted_run(tmp_path):
    """A streamed epoch's last chunk is saved (batch == batches per epoch) before the epoch
    is evaluated; a run killed then resumes from that file."""
    kept = tmp_path / "kept.epynn"

    class Keep(Checkpoints):
        def after_batches(self, net, progress, metadata):
            saved = super().after_batches(net, progress, metadata)
            if (progress.epoch, progress.batch) == (1, 3):
                shutil.copy(saved["last"], kept)
            return saved

    network.fit(NET, problem.params0(), DATA, key=problem.train_key(),
                checkpoints=Keep(tmp_path / "run", every_batches=3),
                callbacks=[lambda e, h: e + 1 < 2], **KW)
    ck = load_checkpoint(kept)
    assert (ck.epoch, ck.batch) == (1, 3)
    resumed = _resume(ck)
    chex.assert_trees_all_equal(resumed.params, problem.reference_run().params, strict=True)


@pytest.mark.parametrize("schedule, given", [
    (Schedule(5.0, "exp_decay"), r"Schedule\(learning_rate=5\.0, schedule='exp_decay'"),
    (Schedule(0.05), r"Schedule\(learning_rate=0\.05, schedule='steady'"),
], ids=["rate", "kind"])
def test_another_schedule_is_refused_naming_both(checkpoint, schedule, given):
    with pytest.raises(ValueError, match=r"fit: resume checkpoint was trained with schedule "
                                         r"Schedule\(learning_rate=0\.05, schedule='exp_decay'"
                                         rf".*, this fit has {given}"):
        _resume(checkpoint, schedule=schedule)


def test_an_optimizer_instead_of_the_recorded_schedule_is_refused(checkpoint):
    with pytest.raises(ValueError, match=r"this fit has none \(an optimizer was given\)"):
        _resume(checkpoint, optimizer=optax.sgd(0.05), schedule=Schedule())


def test_the_same_schedule_with_other_total_epochs_warns_and_trains(checkpoint):
    with pytest.warns(UserWarning, match="planned for 6 epochs with epochs=2"):
        result = _resume(checkpoint, epochs=2)
    assert result.epochs == 2 and np.all(np.isfinite(np.asarray(result.params[0]["W"])))
