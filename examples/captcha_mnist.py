"""captcha_mnist: read hand-written digits (10 classes).

Data (download): EpyNN's ``mnist_database.tar``, an MNIST mirror; the first
750 images and labels are read from the gzipped IDX files (28x28x1),
scaled to [0, 1], labels one-hot. Cached, SHA-256 checked and safely
extracted; without the data the script exits with status 2, and
``--synthetic`` trains on seven-segment digits of the same shape.
Models (categorical cross-entropy, mini-batches of 32): Flatten ->
Dropout(0.2) -> Dense(64, relu) -> Dropout(0.5) -> Dense(10, softmax, T=5);
Convolution(32 filters of 4x4) -> Pooling(2x2) -> Flatten -> Dense(10, softmax, T=5).

Learning rates: gradients are those of the summed loss, as in EpyNN, but the
softmax with temperature T has its exact gradient here (EpyNN's is T times
too large), so the models with T = 5 use rates about 5 times EpyNN's.

    python examples/captcha_mnist.py [--synthetic] [--quick] [--model feedforward|cnn]
"""

from __future__ import annotations

from epynn_jax import layers
from epynn_jax.layers.convolution import Convolution
from epynn_jax.layers.pooling import Pooling
from epynn_jax.maths.activations import ActivationHPars

from _common import load, parse_args, run, train

T5 = ActivationHPars(softmax_temperature=5.0)

MODELS = {
    "feedforward": lambda: [layers.Flatten(), layers.Dropout(0.2), layers.Dense(64, "relu"),
                            layers.Dropout(0.5), layers.Dense(10, "softmax", hpars=T5)],
    "cnn": lambda: [Convolution(32, (4, 4)), Pooling((2, 2)), layers.Flatten(),
                    layers.Dense(10, "softmax", hpars=T5)],
}
SETTINGS = {"feedforward": (0.02, 100, 20), "cnn": (0.05, 100, 15)}


def main(argv=None) -> dict:
    args = parse_args(__doc__, MODELS, argv, download=True)
    data = load("captcha_mnist", args)
    results = {}
    for name in args.models:
        lr, epochs, quick = SETTINGS[name]
        results[name] = train(name, MODELS[name], data, args, loss="CCE", lr=lr, epochs=epochs,
                              quick_epochs=quick, batch_size=32)
    return results


if __name__ == "__main__":
    run(main)
