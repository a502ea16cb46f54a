"""digits: scikit-learn's 8x8 hand-written digits with a Dense net and a CNN.

Data: the 1797 8x8 images bundled with scikit-learn (no download; install
with ``pip install 'epynn-jax[examples]'``), values 0..16 scaled to [0, 1],
labels one-hot; 2/3 train, 1/3 validation, in order.
Models (categorical cross-entropy, mini-batches of 32):
Flatten -> Dense(64, relu) -> Dense(10, softmax), above 0.9 validation
accuracy within a few epochs; Convolution(8 filters of 3x3, stride 1) ->
Pooling(2x2) -> Flatten -> Dense(10, softmax).

    python examples/digits.py [--quick] [--model dense|cnn]
"""

from __future__ import annotations

from epynn_jax import layers
from epynn_jax.layers.convolution import Convolution
from epynn_jax.layers.pooling import Pooling

from _common import load, parse_args, run, train

MODELS = {
    "dense": lambda: [layers.Flatten(), layers.Dense(64, "relu"), layers.Dense(10, "softmax")],
    "cnn": lambda: [Convolution(8, (3, 3), strides=(1, 1)), Pooling((2, 2)), layers.Flatten(),
                    layers.Dense(10, "softmax")],
}
SETTINGS = {"dense": (0.01, 30, 10), "cnn": (0.01, 30, 5)}


def main(argv=None) -> dict:
    args = parse_args(__doc__, MODELS, argv)
    data = load("digits", args)
    results = {}
    for name in args.models:
        lr, epochs, quick = SETTINGS[name]
        results[name] = train(name, MODELS[name], data, args, loss="CCE", lr=lr, epochs=epochs,
                              quick_epochs=quick, batch_size=32)
    return results


if __name__ == "__main__":
    run(main)
