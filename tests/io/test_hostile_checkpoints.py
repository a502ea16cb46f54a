"""Checkpoints whose arrays have the wrong dtype, shape or values: refused at load, naming
the array, never cast into something else or left for JAX to trip over."""

from __future__ import annotations

import dataclasses

import archive
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from epynn_jax import layers, network
from epynn_jax.errors import ModelFileError
from epynn_jax.io import load_checkpoint, restore_opt_state, save_checkpoint
from epynn_jax.maths import schedules
from epynn_jax.maths.schedules import Schedule
from epynn_jax.network import checks

NET = network.build([layers.Dense(2, "softmax")], (3,))
PARAMS = network.init(NET, jax.random.key(0))
ADAM = optax.adam(1e-3)
STATE = ADAM.init(PARAMS)  # leaf 0: the int32 step count; then mu and nu per parameter
LEAVES, TREE = jax.tree.flatten(STATE)


def _save(tmp_path, leaves=LEAVES, key=None):
    return save_checkpoint(tmp_path / "ck.epynn", NET, PARAMS,
                           opt_state=jax.tree.unflatten(TREE, list(leaves)),
                           key=jax.random.key(0) if key is None else key, epoch=1)


def _with_leaf(j, value):
    return [value if i == j else leaf for i, leaf in enumerate(LEAVES)]


# -- optimizer state: dtype kinds and exact values -----------------------------------------


@pytest.mark.parametrize("count", [np.float32(np.nan), np.float64(2.9), np.float64(2.0),
                                   np.uint64(2**63), np.int64(2**40), np.bool_(True)],
                         ids=["nan", "fraction", "float", "uint64-huge", "int64-huge", "bool"])
def test_step_count_of_another_kind_or_range_is_refused(tmp_path, count):
    path = _save(tmp_path, _with_leaf(0, count))
    with pytest.raises(ModelFileError, match=r"ck\.epynn: optimizer state leaf 0\b.*int32"):
        load_checkpoint(path, optimizer=ADAM)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_float_leaf_is_refused(tmp_path, bad):
    mu = np.asarray(LEAVES[1]).copy()
    mu.flat[0] = bad
    path = _save(tmp_path, _with_leaf(1, mu))
    with pytest.raises(ModelFileError, match=r"ck\.epynn: optimizer state leaf 1 .*NaN or inf"):
        load_checkpoint(path, optimizer=ADAM)


def test_float64_leaf_and_int64_count_load_as_the_optimizers_dtypes(tmp_path):
    mu = np.full(np.shape(LEAVES[1]), 0.25, np.float64)
    path = _save(tmp_path, [np.int64(3), mu, *LEAVES[2:]])
    leaves = jax.tree.leaves(load_checkpoint(path, optimizer=ADAM).opt_state)
    assert leaves[0].dtype == jnp.int32 and int(leaves[0]) == 3
    assert leaves[1].dtype == LEAVES[1].dtype and np.all(np.asarray(leaves[1]) == 0.25)


def test_float64_beyond_float32_is_refused():
    mu = np.full(np.shape(LEAVES[1]), 1e300, np.float64)
    with pytest.raises(ValueError, match=r"optimizer state leaf 1: values beyond the range"):
        checks.restore_opt_state(ADAM, PARAMS, _with_leaf(1, mu))


def test_restore_without_a_file_raises_value_error_naming_the_leaf():
    with pytest.raises(ValueError, match=r"optimizer state leaf 0: saved as float64, the "
                                         r"optimizer keeps int32"):
        checks.restore_opt_state(ADAM, PARAMS, _with_leaf(0, np.float64(2.9)))


def _best_so_far() -> optax.GradientTransformation:
    """An optimizer whose fresh state holds inf (as optax's reduce_on_plateau does)."""
    return optax.GradientTransformation(lambda params: {"best": jnp.asarray(jnp.inf)},
                                        lambda updates, state, params=None: (updates, state))


def test_inf_loads_where_the_fresh_state_holds_inf_and_nan_never():
    opt = _best_so_far()
    restored = checks.restore_opt_state(opt, PARAMS, [np.float32(np.inf)])
    assert np.isposinf(np.asarray(restored["best"]))
    with pytest.raises(ValueError, match="optimizer state leaf 0 .*NaN or inf"):
        checks.restore_opt_state(opt, PARAMS, [np.float32(np.nan)])


# -- the optimizer: the state's structure is recorded and compared ------------------------

SGDM, RMSPROP = optax.sgd(0.1, momentum=0.9), optax.rmsprop(0.01)  # a W and a b each
DATA = {"dtrain": (np.ones((4, 3), np.float32), np.eye(2, dtype=np.float32)[[0, 1, 0, 1]])}


def _save_state(tmp_path, state, name="ck.epynn"):
    return save_checkpoint(tmp_path / name, NET, PARAMS, opt_state=state,
                           key=jax.random.key(0), epoch=1,
                           metadata={"loss": "CCE", "batch_size": 4, "train_split": "dtrain"})


def test_a_state_of_another_optimizer_with_the_same_leaves_is_refused(tmp_path):
    """SGD with momentum and RMSprop keep as many leaves of the same shapes: only the
    recorded structure tells them apart."""
    path = _save_state(tmp_path, SGDM.init(PARAMS))
    with pytest.raises(ModelFileError, match=r"ck\.epynn: optimizer state saved with another "
                                             r"optimizer: .*TraceState.*ScaleByRmsState"):
        load_checkpoint(path, RMSPROP)
    leaves = load_checkpoint(path).opt_state
    with pytest.raises(ValueError, match=r"saved with another optimizer.*pass the leaves as a "
                                         r"plain tuple, tuple\(ck\.opt_state\)"):
        restore_opt_state(RMSPROP, PARAMS, leaves)
    # the way out the message gives (a library that renamed its state classes): a plain
    # tuple is not compared, only counted and shaped
    assert jax.tree.structure(restore_opt_state(RMSPROP, PARAMS, tuple(leaves))) == \
        jax.tree.structure(RMSPROP.init(PARAMS))
    with pytest.raises(ValueError, match="fit: resume checkpoint: optimizer state saved with "
                                         "another optimizer"):
        network.fit(NET, None, DATA, epochs=2, loss="CCE", optimizer=RMSPROP,
                    resume=load_checkpoint(path))
    restored = load_checkpoint(path, SGDM).opt_state
    assert jax.tree.structure(restored) == jax.tree.structure(SGDM.init(PARAMS))
    assert len(jax.tree.leaves(leaves)) == len(leaves) == 2  # a pytree of its arrays


def test_a_checkpoint_without_a_recorded_structure_restores_as_before(tmp_path):
    doc, members = archive.members(_save_state(tmp_path, SGDM.init(PARAMS)))
    assert doc["checkpoint"].pop("opt_structure").startswith("PyTreeDef(")
    old = archive.write(tmp_path / "old.epynn", doc, members)
    assert load_checkpoint(old).opt_state.structure is None
    restored = load_checkpoint(old, SGDM).opt_state
    assert jax.tree.structure(restored) == jax.tree.structure(SGDM.init(PARAMS))
    doc["checkpoint"]["opt_structure"] = 5
    with pytest.raises(ModelFileError, match="bad.epynn: checkpoint: invalid optimizer state "
                                             "structure 5"):
        load_checkpoint(archive.write(tmp_path / "bad.epynn", doc, members))


def test_epynn_sgd_restores_across_schedules_epochs_and_steps(tmp_path):
    """fit's own optimizer keeps its numbers in leaves: another schedule, epoch count or
    first epoch is the same structure."""
    saved = network.epynn_sgd(Schedule(), 3, 2)
    later = network.epynn_sgd(Schedule(learning_rate=0.5, schedule="exp_decay"), 7, 5,
                              first_epoch=2)
    path = _save_state(tmp_path, saved.init(PARAMS))
    restored = load_checkpoint(path, later).opt_state
    assert jax.tree.structure(restored) == jax.tree.structure(later.init(PARAMS))


def test_restore_arguments_of_the_wrong_type_raise_type_errors_naming_them(tmp_path):
    path = _save(tmp_path)
    with pytest.raises(TypeError, match="optimizer must be an optax GradientTransformation, "
                                        "got 'adam'"):
        load_checkpoint(path, "adam")
    leaves = load_checkpoint(path).opt_state
    with pytest.raises(TypeError, match="leaves must be a sequence of arrays .*got NoneType"):
        restore_opt_state(ADAM, PARAMS, None)
    with pytest.raises(TypeError, match="params must be the network's parameters .*got "
                                        "NoneType"):
        restore_opt_state(ADAM, None, leaves)


# -- numbers beyond the float range: refused at load, naming the field ---------------------


@pytest.mark.parametrize("edit, match", [
    (lambda doc: doc["metadata"]["schedule"].update(learning_rate=10**400),
     "metadata 'schedule' is no schedule: Schedule: learning_rate must be .* fits a float"),
    (lambda doc: doc["metadata"]["schedule"].update(cycle_epochs=10**400),
     "metadata 'schedule' is no schedule: Schedule: cycle_epochs must be .* fits a float"),
    (lambda doc: doc["metadata"].update(epochs=10**400),
     "metadata 'epochs' must be an int that fits a float, got one of 1329 bits"),
    (lambda doc: doc["history"]["MSE"]["dtrain"].append(-10**400),
     r"history\['MSE'\]\['dtrain'\]: a number too large for a float"),
], ids=["schedule-learning-rate", "schedule-cycle-epochs", "epochs", "history"])
def test_an_int_beyond_the_float_range_is_refused_naming_the_field(tmp_path, edit, match):
    path = save_checkpoint(tmp_path / "ck.epynn", NET, PARAMS, opt_state=STATE,
                           key=jax.random.key(0), epoch=1, history={"MSE": {"dtrain": [0.5]}},
                           metadata={"epochs": 2, "schedule": dataclasses.asdict(Schedule())})
    doc, members = archive.members(path)
    edit(doc)
    with pytest.raises(ModelFileError, match=r"bad\.epynn: (checkpoint: )?" + match):
        load_checkpoint(archive.write(tmp_path / "bad.epynn", doc, members))


def test_schedule_numbers_beyond_the_float_range_raise_value_error():
    for fields in ({"learning_rate": 10**400}, {"decay_k": 10**400}, {"cycle_epochs": 10**400},
                   {"cycle_descent": -10**400}):
        with pytest.raises(ValueError, match=f"Schedule: {next(iter(fields))} must be .*fits a "
                                             "float"):
            Schedule(**fields)
    with pytest.raises(ValueError, match="resolve: epochs must be an int that fits a float"):
        schedules.resolve(Schedule(), 10**400)


# -- the PRNG key: one key, never a batch or key data of another shape or dtype -------------


@pytest.mark.parametrize("data, impl", [
    (np.arange(3, dtype=np.uint32), None),
    (np.uint32(7), None),
    (np.arange(2, dtype=np.uint8), None),
    (np.arange(4, dtype=np.uint32).reshape(2, 2), None),
    (np.arange(6, dtype=np.uint32).reshape(3, 2), "threefry2x32"),
    (np.zeros((0, 2), np.uint32), "threefry2x32"),
], ids=["raw-3", "raw-scalar", "raw-uint8", "raw-2x2", "batch-of-3", "batch-of-0"])
def test_a_key_that_is_not_one_key_is_refused_at_load(tmp_path, data, impl):
    path = archive.replace_array(_save(tmp_path), tmp_path / "bad.epynn", "key", data,
                                 key_impl=impl)
    with pytest.raises(ModelFileError, match=r"bad\.epynn: array 'key': key must be a PRNG key"
                                             r".* got an array of dtype \S+ and shape"):
        load_checkpoint(path)


def test_legacy_raw_key_data_loads(tmp_path):
    path = archive.replace_array(_save(tmp_path), tmp_path / "raw.epynn", "key",
                                 np.array([0, 42], np.uint32), key_impl=None)
    key = load_checkpoint(path).key
    assert key.dtype == jnp.uint32 and np.asarray(key).tolist() == [0, 42]


def test_saving_a_batch_of_keys_is_refused(tmp_path):
    with pytest.raises(TypeError, match=r"save_model: key must be a PRNG key .*shape \(3,\)"):
        _save(tmp_path, key=jax.random.split(jax.random.key(0), 3))
    assert not (tmp_path / "ck.epynn").exists()


def test_resume_refuses_a_batch_of_keys_before_training(tmp_path):
    ck = load_checkpoint(_save(tmp_path))._replace(key=jax.random.split(jax.random.key(0), 3))
    data = {"dtrain": (np.ones((4, 3), np.float32), np.eye(2, dtype=np.float32)[[0, 1, 0, 1]])}
    with pytest.raises(TypeError, match=r"fit: resume checkpoint: key must be a PRNG key"):
        network.fit(NET, None, data, epochs=2, loss="CCE", resume=ck)


# -- parameters: float32 or float64 only ----------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float16, jnp.bfloat16, np.longdouble],
                         ids=["float16", "bfloat16", "longdouble"])
def test_parameters_of_another_float_dtype_are_refused_naming_the_array(tmp_path, dtype):
    good = _save(tmp_path)
    W = np.asarray(PARAMS[0]["W"]).astype(dtype)
    path = archive.replace_array(good, tmp_path / "bad.epynn", "params/0/W", W)
    with pytest.raises(ModelFileError, match=r"bad\.epynn: array 'params/0/W': unsupported "
                                             r"dtype '[^']+': parameters are stored as "
                                             r"float32 or float64"):
        load_checkpoint(path)


def test_saving_float16_parameters_is_refused(tmp_path):
    p16 = jax.tree.map(lambda a: a.astype(np.float16), PARAMS)
    with pytest.raises(TypeError, match=r"parameter 'W' is float16; parameters are stored as "
                                        r"float32 or float64"):
        save_checkpoint(tmp_path / "m.epynn", NET, p16, opt_state=STATE,
                        key=jax.random.key(0), epoch=1)
    assert not (tmp_path / "m.epynn").exists()
