"""dummy_boolean: a perceptron learns whether True outnumbers False.

Data: 50 samples of 11 random booleans; label 0 when more than half are True,
else 1 (EpyNN's example; 33 samples train, 17 validate, in order).
Model: one Dense unit with a sigmoid, MSE, SGD with learning rate 0.1,
100 full-batch epochs.

    python examples/dummy_boolean.py [--quick]
"""

from __future__ import annotations

from epynn_jax import layers

from _common import load, parse_args, run, train

MODELS = {
    "perceptron": lambda: [layers.Dense(1, "sigmoid")],
}


def main(argv=None) -> dict:
    args = parse_args(__doc__, MODELS, argv)
    data = load("dummy_boolean", args)
    return {"perceptron": train("perceptron", MODELS["perceptron"], data, args, loss="MSE",
                                lr=0.1, epochs=100, quick_epochs=100)}


if __name__ == "__main__":
    run(main)
