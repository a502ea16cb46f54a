"""dummy_time: is there a sine wave in the noise?

Data: 1024 series of 1 s sampled at 128 Hz, shape (m, 128, 1); every one is
white noise (sigma 0.5), the positive ones (label 0) add a sine of random
frequency below 32 Hz. Labels one-hot, MSE loss.
Models: Flatten -> Dense(64, relu) -> Dense(2, softmax), the same with
Dropout(0.2) and Dropout(0.5), and RNN(10) -> Dense(2, softmax with
temperature 5) trained with mini-batches of 32.

Learning rates: gradients are those of the summed loss, as in EpyNN, but the
softmax with temperature T has its exact gradient here (EpyNN's is T times
too large), so the models with T = 5 use rates about 5 times EpyNN's.

    python examples/dummy_time.py [--quick] [--model feedforward|dropout|rnn]
"""

from __future__ import annotations

from epynn_jax import layers
from epynn_jax.layers.rnn import RNN
from epynn_jax.maths.activations import ActivationHPars

from _common import load, parse_args, run, train

T5 = ActivationHPars(softmax_temperature=5.0)

MODELS = {
    "feedforward": lambda: [layers.Flatten(), layers.Dense(64, "relu"),
                            layers.Dense(2, "softmax")],
    "dropout": lambda: [layers.Flatten(), layers.Dropout(0.2), layers.Dense(64, "relu"),
                        layers.Dropout(0.5), layers.Dense(2, "softmax")],
    "rnn": lambda: [RNN(10), layers.Dense(2, "softmax", hpars=T5)],
}
SETTINGS = {  # learning rate, epochs, quick epochs, batch size
    "feedforward": (0.005, 100, 30, None),
    "dropout": (0.005, 100, 30, None),
    "rnn": (0.2, 100, 15, 32),
}


def main(argv=None) -> dict:
    args = parse_args(__doc__, MODELS, argv)
    data = load("dummy_time", args)
    results = {}
    for name in args.models:
        lr, epochs, quick, batch = SETTINGS[name]
        results[name] = train(name, MODELS[name], data, args, loss="MSE", lr=lr, epochs=epochs,
                              quick_epochs=quick, batch_size=batch)
    return results


if __name__ == "__main__":
    run(main)
