"""author_music: was this guitar clip played by the author?

Data (download): EpyNN's ``author_music.tar``: WAV files in ``data/true``
(label 0) and ``data/false`` (label 1), cut into 1 s clips resampled to
10 kHz, normalized per file and quantized to 16 levels, one-hot encoded to
(m, 10000, 16). Cached, SHA-256 checked and safely extracted like the other
downloads; without the data the script exits with status 2, and
``--synthetic`` trains on synthetic clips (clean tones against noisy ones).
Models (MSE, metrics accuracy/recall/precision, mini-batches of 16):
Flatten -> Dense(64, relu) -> Dropout(0.5) -> Dense(2, softmax, T=5);
RNN(1, sequences=True) or GRU(1, sequences=True) -> Flatten -> Dense(64, relu)
-> Dropout(0.5) -> Dense(2, softmax).

Learning rates: gradients are those of the summed loss, as in EpyNN, but the
softmax with temperature T has its exact gradient here (EpyNN's is T times
too large), so the models with T = 5 use rates about 5 times EpyNN's.

    python examples/author_music.py [--synthetic] [--quick] [--model feedforward|rnn|gru]
"""

from __future__ import annotations

from epynn_jax import layers
from epynn_jax.layers.gru import GRU
from epynn_jax.layers.rnn import RNN
from epynn_jax.maths.activations import ActivationHPars

from _common import load, parse_args, run, train

T5 = ActivationHPars(softmax_temperature=5.0)


def head():
    return [layers.Flatten(), layers.Dense(64, "relu"), layers.Dropout(0.5),
            layers.Dense(2, "softmax")]


MODELS = {
    "feedforward": lambda: [layers.Flatten(), layers.Dense(64, "relu"), layers.Dropout(0.5),
                            layers.Dense(2, "softmax", hpars=T5)],
    "rnn": lambda: [RNN(1, sequences=True), *head()],
    "gru": lambda: [GRU(1, sequences=True), *head()],
}
SETTINGS = {"feedforward": (0.01, 10, 10), "rnn": (0.01, 3, 5), "gru": (0.01, 5, 5)}


def main(argv=None) -> dict:
    args = parse_args(__doc__, MODELS, argv, download=True)
    data = load("author_music", args)
    results = {}
    for name in args.models:
        lr, epochs, quick = SETTINGS[name]
        results[name] = train(name, MODELS[name], data, args, loss="MSE", lr=lr, epochs=epochs,
                              quick_epochs=quick, batch_size=16,
                              metrics=("accuracy", "recall", "precision"))
    return results


if __name__ == "__main__":
    run(main)
