"""Learning-rate schedules against EpyNN's ``schedule_lrate``; the optax step mapping."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from epynn_jax.maths.schedules import Schedule, learning_rates, optax_schedule


@pytest.fixture(scope="module")
def schedule_lrate():
    from conftest import load_epynn

    load_epynn()
    from epynn.network.hyperparameters import schedule_lrate

    return schedule_lrate


CASES = [
    dict(),
    dict(decay_k=0.3),
    dict(cycle_epochs=4),
    dict(cycle_epochs=4, cycle_descent=0.2),
    dict(cycle_epochs=3, cycle_descent=0.5, decay_k=0.1),
    dict(cycle_epochs=20),
    dict(decay_k=0.001, cycle_descent=0.1),
]


@pytest.mark.parametrize("kind", ["steady", "exp_decay", "lin_decay"])
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("epochs", [1, 10, 13])
def test_matches_epynn(schedule_lrate, kind, case, epochs):
    hpars = {"learning_rate": 0.05, "schedule": kind, "decay_k": 0, "cycle_epochs": 0,
             "cycle_descent": 0, **case}
    _, expected = schedule_lrate(dict(hpars), epochs)
    got = learning_rates(Schedule.from_hpars(hpars), epochs)
    assert got.shape == (epochs,) and got.dtype == np.float64
    np.testing.assert_allclose(got, expected, rtol=1e-15, atol=0)


def test_known_values():
    np.testing.assert_allclose(learning_rates(Schedule(0.1, "exp_decay"), 10)[[0, 1, 9]],
                               [0.1, 0.1 * np.exp(-0.5), 0.1 * np.exp(-4.5)])
    np.testing.assert_allclose(learning_rates(Schedule(0.1, "lin_decay"), 10)[:2],
                               [0.1, 0.1 / 51])


def test_from_hpars_ignores_other_keys():
    s = Schedule.from_hpars({"learning_rate": 0.2, "schedule": "lin_decay", "ELU_alpha": 1,
                             "softmax_temperature": 5})
    assert s == Schedule(learning_rate=0.2, schedule="lin_decay")


def test_from_hpars_does_not_mutate():
    hp = {"learning_rate": 0.2, "schedule": "exp_decay", "decay_k": 0, "cycle_epochs": 0,
          "cycle_descent": 0}
    learning_rates(Schedule.from_hpars(hp), 5)
    assert hp["decay_k"] == 0 and "epochs" not in hp


def test_optax_schedule_maps_steps_to_epochs():
    rates = learning_rates(Schedule(0.1, "exp_decay"), 4)
    sched = optax_schedule(rates, steps_per_epoch=3)
    got = np.array([float(sched(jnp.asarray(s))) for s in range(14)])
    expected = np.array([rates[min(s // 3, 3)] for s in range(14)])
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_optax_schedule_one_step_per_epoch(x64):
    rates = learning_rates(Schedule(0.3, "lin_decay", decay_k=0.01), 5)
    sched = optax_schedule(rates, 1)
    np.testing.assert_allclose([float(sched(s)) for s in range(5)], rates, rtol=1e-15)


@pytest.mark.parametrize("kwargs,match", [
    (dict(schedule="cosine"), "unknown schedule 'cosine'"),
    (dict(learning_rate=float("nan")), "learning_rate"),
    (dict(learning_rate=float("inf")), "learning_rate"),
    (dict(learning_rate=-1.0), "learning_rate must be .*> 0, got -1.0"),
    (dict(learning_rate=0), "learning_rate must be .*> 0, got 0"),
    (dict(cycle_epochs=-1), "cycle_epochs must be .*>= 0, got -1"),
    (dict(decay_k=-0.1), "decay_k must be .*>= 0, got -0.1"),
    (dict(decay_k=float("nan")), "decay_k"),
    (dict(decay_k=float("inf")), "decay_k"),
    (dict(cycle_descent=1.0), r"cycle_descent must be .*\[0, 1\), got 1.0"),
    (dict(cycle_descent=-0.2), "cycle_descent .*got -0.2"),
    (dict(cycle_descent=float("nan")), "cycle_descent"),
])
def test_bad_values(kwargs, match):
    with pytest.raises(ValueError, match=match) as err:
        Schedule(**kwargs)
    assert "\n" not in str(err.value) and str(err.value).startswith("Schedule: ")


@pytest.mark.parametrize("kwargs,field", [
    (dict(learning_rate="0.1"), "learning_rate"),
    (dict(learning_rate=True), "learning_rate"),
    (dict(learning_rate=None), "learning_rate"),
    (dict(learning_rate=[0.1]), "learning_rate"),
    (dict(decay_k="0"), "decay_k"),
    (dict(decay_k=None), "decay_k"),
    (dict(cycle_epochs=2.5), "cycle_epochs"),
    (dict(cycle_epochs=4.0), "cycle_epochs"),
    (dict(cycle_epochs=True), "cycle_epochs"),
    (dict(cycle_epochs="4"), "cycle_epochs"),
    (dict(cycle_descent=None), "cycle_descent"),
    (dict(schedule=None), "schedule"),
    (dict(schedule=0), "schedule"),
])
def test_bad_types(kwargs, field):
    with pytest.raises(TypeError, match=f"Schedule: {field} must be") as err:
        Schedule(**kwargs)
    assert "\n" not in str(err.value)


def test_bad_hpars_name_the_key():
    with pytest.raises(ValueError, match="learning_rate"):
        Schedule.from_hpars({"learning_rate": -0.5})


def test_valid_values_of_every_kind_are_accepted():
    np_kinds = Schedule(learning_rate=np.float32(0.01), decay_k=np.float64(0.5),
                        cycle_epochs=np.int64(3), cycle_descent=np.float32(0.5))
    assert float(learning_rates(np_kinds, 4)[0]) == pytest.approx(0.01)
    assert Schedule(learning_rate=1, decay_k=0, cycle_epochs=0, cycle_descent=0)
    assert Schedule(learning_rate=1e-12, schedule="lin_decay", cycle_descent=0.999)


def test_epochs_must_be_positive():
    with pytest.raises(ValueError, match="epochs must be >= 1"):
        learning_rates(Schedule(), 0)
