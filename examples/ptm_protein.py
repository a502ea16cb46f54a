"""ptm_protein: predict O-GlcNAcylation sites from 21-residue peptides.

Data (download): EpyNN's ``ptm_prediction_data.tar``: human O-GlcNAcylated
peptides (label 0) and presumably unmodified ones (label 1), balanced and
shuffled; one-hot encoded to (m, 21, 20). It is fetched once into the cache
(``--cache-dir``, ``$EPYNN_JAX_DATA`` or ``~/.cache/epynn_jax``), its SHA-256
checked, and extracted safely. Without the data the script says so and exits
with status 2; ``--synthetic`` trains on random peptides with a planted motif
instead.
Models (MSE, mini-batches of 32): Flatten -> Dropout(0.2) -> Dense(64, relu)
-> Dropout(0.3) -> Dense(2, softmax); LSTM(8, sequences=True) -> Flatten ->
Dense(2, softmax with temperature 5).

Learning rates: gradients are those of the summed loss, as in EpyNN, but the
softmax with temperature T has its exact gradient here (EpyNN's is T times
too large), so the models with T = 5 use rates about 5 times EpyNN's.

    python examples/ptm_protein.py [--synthetic] [--quick] [--model feedforward|lstm]
"""

from __future__ import annotations

from epynn_jax import layers
from epynn_jax.layers.lstm import LSTM
from epynn_jax.maths.activations import ActivationHPars

from _common import load, parse_args, run, train

T5 = ActivationHPars(softmax_temperature=5.0)

MODELS = {
    "feedforward": lambda: [layers.Flatten(), layers.Dropout(0.2), layers.Dense(64, "relu"),
                            layers.Dropout(0.3), layers.Dense(2, "softmax")],
    "lstm": lambda: [LSTM(8, sequences=True), layers.Flatten(),
                     layers.Dense(2, "softmax", hpars=T5)],
}
SETTINGS = {"feedforward": (0.005, 100, 20), "lstm": (0.5, 20, 8)}


def main(argv=None) -> dict:
    args = parse_args(__doc__, MODELS, argv, download=True)
    data = load("ptm_protein", args)
    results = {}
    for name in args.models:
        lr, epochs, quick = SETTINGS[name]
        results[name] = train(name, MODELS[name], data, args, loss="MSE", lr=lr, epochs=epochs,
                              quick_epochs=quick, batch_size=32)
    return results


if __name__ == "__main__":
    run(main)
