"""Default hyperparameters, as EpyNN's ``settings.se_hPars``.

The facade never mutates this dict: models and layers work on copies.
"""

se_hPars: dict = {
    "learning_rate": 0.1,
    "schedule": "steady",
    "decay_k": 0,
    "cycle_epochs": 0,
    "cycle_descent": 0,
    "ELU_alpha": 1,
    "LRELU_alpha": 0.3,
    "softmax_temperature": 1,
}
