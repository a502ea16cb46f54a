"""dummy_string: do the first and last letters of a DNA-like string match?

Data: 480 random strings of 12 letters from ATGC, one-hot encoded to
(m, 12, 4); label 0 when the first letter equals the last (about 1 in 4).
Models (BCE, full batch, 50 epochs): Flatten -> Dense(2, softmax), and
RNN(1), LSTM(1) or GRU(1) -> Dense(2, softmax). As in EpyNN's notebook, none
does much better than predicting the majority class: matching two distant
positions is not linearly separable, which is the example's lesson.

    python examples/dummy_string.py [--quick] [--model feedforward|rnn|lstm|gru]
"""

from __future__ import annotations

from epynn_jax import layers
from epynn_jax.layers.gru import GRU
from epynn_jax.layers.lstm import LSTM
from epynn_jax.layers.rnn import RNN

from _common import load, parse_args, run, train

MODELS = {
    "feedforward": lambda: [layers.Flatten(), layers.Dense(2, "softmax")],
    "rnn": lambda: [RNN(1), layers.Dense(2, "softmax")],
    "lstm": lambda: [LSTM(1), layers.Dense(2, "softmax")],
    "gru": lambda: [GRU(1), layers.Dense(2, "softmax")],
}
RATES = {"feedforward": 0.001, "rnn": 0.001, "lstm": 0.005, "gru": 0.005}  # EpyNN's


def main(argv=None) -> dict:
    args = parse_args(__doc__, MODELS, argv)
    data = load("dummy_string", args)
    return {name: train(name, MODELS[name], data, args, loss="BCE", lr=RATES[name], epochs=50,
                        quick_epochs=20)
            for name in args.models}


if __name__ == "__main__":
    run(main)
